//! GGUF: the container reader (header, metadata, tensor table), and what the loader
//! derives from a file that reads: the architecture and its HF config (checked as a
//! config.json is), the tokenizer built from the vocabulary in the metadata, and the
//! tensors' values (small tensors only, to keep each input fast). The input is the file.
use mlxrun::models::config::ConfigFile;
use mlxrun::models::gguf::{self, GgufFile};
use mlxrun::tokenizer::Tokenizer;

/// Tensors up to this many elements are read and dequantized.
const MAX_READ_ELEMENTS: u64 = 1 << 16;

/// Nothing to load.
pub fn init() {}

pub fn run(data: &[u8]) {
    let dir = super::scratch_dir("gguf");
    let path = super::write(&dir, "model.gguf", data);
    let Ok(f) = GgufFile::open(&path) else { return };
    for (_, v) in &f.metadata {
        let _ = (v.to_string(), v.to_json());
    }
    let _ = f.architecture();
    if let Ok(arch) = gguf::arch::read(&f) {
        if let Ok(json) = gguf::arch::hf_config(&f, &arch) {
            let _ = mlxrun::models::check_config(&ConfigFile::from_json(&path, json));
        }
        for t in f.tensors.iter().filter(|t| t.elements() <= MAX_READ_ELEMENTS) {
            let _ = gguf::hf_tensor(&f, &arch, t);
        }
    }
    for t in f.tensors.iter().filter(|t| t.elements() <= MAX_READ_ELEMENTS) {
        let _ = f.read_f32(t);
    }
    if let Ok(tok) = Tokenizer::from_gguf(&f) {
        super::tokenizer::exercise(&tok, data);
    }
}
