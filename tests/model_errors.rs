//! Bad model folders get errors that name the problem (file, field, tensor, expected and
//! found), and the process — and models already loaded — carry on.
mod common;

use std::path::{Path, PathBuf};

use mlxrun::engine::generate::forward_logits;
use mlxrun::mlx::{io, Array};
use mlxrun::models::{load, LoadOptions};

/// A scratch copy of a fixture that a test may damage.
fn copy_fixture(name: &str, tag: &str) -> PathBuf {
    let src = common::deps_file(&format!("fixtures/{name}"));
    let dst = std::env::temp_dir().join(format!("mlxrun-bad-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dst);
    std::fs::create_dir_all(&dst).unwrap();
    for e in std::fs::read_dir(&src).unwrap() {
        let p = e.unwrap().path();
        std::fs::copy(&p, dst.join(p.file_name().unwrap())).unwrap();
    }
    dst
}

fn load_err(dir: &Path) -> String {
    match load(dir, &LoadOptions::default()) {
        Ok(_) => panic!("{} loaded, expected an error", dir.display()),
        Err(e) => e.to_string(),
    }
}

fn assert_has(msg: &str, needles: &[&str]) {
    for n in needles {
        assert!(msg.contains(n), "error {msg:?} should mention {n:?}");
    }
}

fn edit_config(dir: &Path, f: impl FnOnce(&mut serde_json::Value)) {
    let p = dir.join("config.json");
    let mut v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
    f(&mut v);
    std::fs::write(&p, serde_json::to_string_pretty(&v).unwrap()).unwrap();
}

/// Rewrites model.safetensors with one tensor replaced (or removed when `None`).
fn edit_tensor(dir: &Path, name: &str, new: Option<Array>) {
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

#[test]
fn bad_model_folders_are_reported_and_other_models_keep_working() {
    // A good model loaded first must keep working through all the failures below.
    let good = load(&common::deps_file("fixtures/qwen3"), &LoadOptions::default()).unwrap();
    let before = forward_logits(good.as_ref(), &[1, 2, 3]).unwrap().to_vec::<f32>().unwrap();

    assert_has(&load_err(Path::new("/nonexistent/model")), &["/nonexistent/model", "not a folder"]);

    let d = copy_fixture("qwen3", "noconfig");
    std::fs::remove_file(d.join("config.json")).unwrap();
    assert_has(&load_err(&d), &["config.json", "not found"]);

    let d = copy_fixture("qwen3", "badjson");
    std::fs::write(d.join("config.json"), "{ \"model_type\": ").unwrap();
    assert_has(&load_err(&d), &["config.json", "not valid JSON"]);

    let d = copy_fixture("qwen3", "type");
    edit_config(&d, |v| v["model_type"] = "mamba9".into());
    assert_has(&load_err(&d), &["mamba9", "not supported", "qwen3"]);

    let d = copy_fixture("qwen3", "field");
    edit_config(&d, |v| v.as_object_mut().unwrap().remove("hidden_size").map(|_| ()).unwrap());
    assert_has(&load_err(&d), &["hidden_size", "missing"]);

    let d = copy_fixture("qwen3", "fieldtype");
    edit_config(&d, |v| v["num_attention_heads"] = "four".into());
    assert_has(&load_err(&d), &["num_attention_heads", "positive integer", "\"four\""]);

    let d = copy_fixture("qwen3", "rope");
    edit_config(&d, |v| v["rope_scaling"] = serde_json::json!({"rope_type": "su-perfect", "factor": 2.0}));
    assert_has(&load_err(&d), &["su-perfect", "not supported"]);

    let d = copy_fixture("qwen3", "noweights");
    std::fs::remove_file(d.join("model.safetensors")).unwrap();
    assert_has(&load_err(&d), &["no *.safetensors"]);

    let d = copy_fixture("qwen3", "missing");
    edit_tensor(&d, "model.layers.1.self_attn.k_norm.weight", None);
    assert_has(&load_err(&d), &["model.layers.1.self_attn.k_norm.weight", "missing"]);

    let d = copy_fixture("qwen3", "shape");
    edit_tensor(&d, "model.layers.0.mlp.up_proj.weight", Some(Array::zeros(&[100, 64], mlxrun::mlx::Dtype::F32).unwrap()));
    assert_has(&load_err(&d), &["model.layers.0.mlp.up_proj.weight", "[100, 64]", "[192, 64]"]);

    let d = copy_fixture("qwen3", "extra");
    edit_tensor(&d, "model.layers.0.self_attn.q_proj.bias", Some(Array::zeros(&[128], mlxrun::mlx::Dtype::F32).unwrap()));
    assert_has(&load_err(&d), &["model.layers.0.self_attn.q_proj.bias", "not used"]);

    let d = copy_fixture("qwen3", "truncated");
    let p = d.join("model.safetensors");
    let bytes = std::fs::read(&p).unwrap();
    std::fs::write(&p, &bytes[..bytes.len() - 1000]).unwrap();
    assert_has(&load_err(&d), &["model.safetensors", "truncated"]);

    let d = copy_fixture("qwen3", "header");
    let p = d.join("model.safetensors");
    let mut b = std::fs::read(&p).unwrap();
    b[12] = b'#'; // inside the JSON header
    std::fs::write(&p, &b).unwrap();
    assert_has(&load_err(&d), &["model.safetensors", "header"]);

    let d = copy_fixture("llama-linear", "shard");
    std::fs::remove_file(d.join("model-00002-of-00003.safetensors")).unwrap();
    assert_has(&load_err(&d), &["model-00002-of-00003.safetensors", "missing"]);

    // Zero-length weights file.
    let d = copy_fixture("qwen3", "empty");
    std::fs::write(d.join("model.safetensors"), b"").unwrap();
    assert_has(&load_err(&d), &["model.safetensors", "too short"]);

    let after = forward_logits(good.as_ref(), &[1, 2, 3]).unwrap().to_vec::<f32>().unwrap();
    assert_eq!(before, after, "the model loaded first still gives the same logits");
}
