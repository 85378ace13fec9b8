//! What each fuzz target does with one input. Shared by the fuzz binaries
//! (fuzz/fuzz_targets/) and by tests/fuzz_regressions.rs, which replays every input kept in
//! fuzz/regressions/<target>/ through the same function, so a fixed crash stays fixed.
//!
//! Each `run` may return an error for a bad input (that is the point); it must never
//! panic, abort, hang or read out of bounds.
#![allow(dead_code)]

pub mod capi_params;
pub mod chat_template;
pub mod config_json;
pub mod gguf_reader;
pub mod safetensors_header;
pub mod tokenizer;

#[path = "../../tests/common/gguf_writer.rs"]
pub mod gguf_writer;

use std::path::{Path, PathBuf};

/// Every target, as named in fuzz/Cargo.toml, fuzz/corpus/ and fuzz/regressions/.
pub const TARGETS: &[(&str, fn(&[u8]))] = &[
    ("safetensors_header", safetensors_header::run),
    ("config_json", config_json::run),
    ("gguf_reader", gguf_reader::run),
    ("tokenizer", tokenizer::run),
    ("chat_template", chat_template::run),
    ("capi_params", capi_params::run),
];

/// A folder of this process's own for inputs the library reads by path: on tmpfs where
/// there is one (no disk writes at thousands of inputs a second).
pub fn scratch_dir(tag: &str) -> PathBuf {
    let shm = Path::new("/dev/shm");
    let base = if shm.is_dir() { shm.to_path_buf() } else { std::env::temp_dir() };
    let dir = base.join(format!("mlxrun-fuzz-{}-{tag}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("cannot make the fuzz scratch folder");
    dir
}

/// Writes `data` to `dir/name` and returns the path.
pub fn write(dir: &Path, name: &str, data: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, data).expect("cannot write the fuzz input file");
    path
}

/// The fixture models made by scripts/setup.sh (their tokenizers and chat templates):
/// `$MLXRUN_FUZZ_FIXTURES`, else `.deps/fixtures` of the checkout.
pub fn fixture(name: &str) -> PathBuf {
    let base = match std::env::var_os("MLXRUN_FUZZ_FIXTURES") {
        Some(d) => PathBuf::from(d),
        None => {
            let here = Path::new(env!("CARGO_MANIFEST_DIR"));
            // CARGO_MANIFEST_DIR is fuzz/ for the fuzz binaries, the checkout for the tests.
            let root = if here.join(".deps").is_dir() { here } else { here.parent().unwrap_or(here) };
            root.join(".deps/fixtures")
        }
    };
    base.join(name)
}

/// The fixtures whose tokenizers and templates the targets use: byte-level BPE (Qwen3,
/// Llama 3) and SentencePiece-style BPE with byte fallback (Gemma 3).
pub const FIXTURES: &[&str] = &["qwen3", "llama3", "gemma3"];

/// Splits an input into its NUL-separated parts (text never holds NUL: C strings cannot).
pub fn parts(data: &[u8]) -> Vec<&[u8]> {
    data.split(|&b| b == 0).collect()
}

/// A part as text, invalid UTF-8 replaced (the library takes `&str`).
pub fn text(part: &[u8]) -> String {
    String::from_utf8_lossy(part).into_owned()
}
