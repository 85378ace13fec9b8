//! Damaging scratch copies of fixture models, for tests of load errors.
use std::path::Path;

use super::Scratch;
use mlxrun::mlx::{io, Array};
use mlxrun::models::{load, LoadOptions};

/// A scratch copy of a fixture that a test may damage (removed when dropped).
pub fn copy_fixture(name: &str, tag: &str) -> Scratch {
    copy_model(&format!("fixtures/{name}"), tag)
}

/// A scratch copy of the model folder `.deps/<rel>` that a test may damage (removed when
/// dropped).
pub fn copy_model(rel: &str, tag: &str) -> Scratch {
    let src = super::deps_file(rel);
    let dst = Scratch::new(&format!("bad-{tag}"));
    for e in std::fs::read_dir(&src).unwrap() {
        let p = e.unwrap().path();
        std::fs::copy(&p, dst.join(p.file_name().unwrap())).unwrap();
    }
    dst
}

/// The error loading `dir` gives; panics if it loads.
pub fn load_err(dir: &Path) -> String {
    match load(dir, &LoadOptions::default()) {
        Ok(_) => panic!("{} loaded, expected an error", dir.display()),
        Err(e) => e.to_string(),
    }
}

pub fn assert_has(msg: &str, needles: &[&str]) {
    for n in needles {
        assert!(msg.contains(n), "error {msg:?} should mention {n:?}");
    }
}

pub fn edit_config(dir: &Path, f: impl FnOnce(&mut serde_json::Value)) {
    let p = dir.join("config.json");
    let mut v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
    f(&mut v);
    std::fs::write(&p, serde_json::to_string_pretty(&v).unwrap()).unwrap();
}

/// Rewrites model.safetensors with one tensor replaced (or removed when `None`).
pub fn edit_tensor(dir: &Path, name: &str, new: Option<Array>) {
    let p = dir.join("model.safetensors");
    let f = io::load_safetensors(&p).unwrap();
    let mut kept: Vec<(String, Array)> = f.tensors.into_iter().filter(|(k, _)| k != name).collect();
    if let Some(a) = new {
        kept.push((name.to_string(), a));
    }
    for (_, a) in &kept {
        a.eval().unwrap();
    }
    let refs: Vec<(&str, &Array)> = kept.iter().map(|(k, a)| (k.as_str(), a)).collect();
    let tmp = dir.join("rewritten.safetensors");
    io::save_safetensors(&tmp, &refs, &[]).unwrap();
    std::fs::rename(&tmp, &p).unwrap();
}

/// The bytes of a safetensors file laid out by hand: the 8-byte little-endian header
/// length (`claimed_len`, or the header's real length), the header as given (not padded,
/// not checked), then `data`.
pub fn raw_safetensors(header: &[u8], claimed_len: Option<u64>, data: &[u8]) -> Vec<u8> {
    let mut b = claimed_len.unwrap_or(header.len() as u64).to_le_bytes().to_vec();
    b.extend_from_slice(header);
    b.extend_from_slice(data);
    b
}

/// Replaces `dir`'s model.safetensors with a file of `header` (JSON text) and `data_len`
/// data bytes.
pub fn write_weights(dir: &Path, header: &str, data_len: usize) {
    std::fs::write(dir.join("model.safetensors"), raw_safetensors(header.as_bytes(), None, &vec![0x3c; data_len])).unwrap();
}
