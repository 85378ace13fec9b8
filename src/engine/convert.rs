//! Converting a GGUF model into an HF-layout folder that mlx-lm and transformers load:
//! `config.json`, `model.safetensors`, `tokenizer.json`, `tokenizer_config.json` (with the
//! chat template) and `generation_config.json`.
//!
//! The weights are those the engine itself loads from the GGUF file: dequantized, with
//! llama.cpp's conversions undone (q/k row permutation, Gemma's +1 norms), under HF names,
//! then cast to the requested dtype. So the folder and the file give the same model, and
//! a reference run on the folder checks the engine on the file.
use std::path::{Path, PathBuf};

use serde_json::{json, Map, Value as Json};

use crate::error::{Error, Result};
use crate::mlx::{io, Array, Dtype};
use crate::models::gguf::{self, GgufFile};
use crate::tokenizer::{gguf_template_variables, Tokenizer};

/// What a conversion wrote.
#[derive(Clone, Debug)]
pub struct Converted {
    pub dir: PathBuf,
    pub tensors: usize,
    pub dtype: Dtype,
    pub files: Vec<String>,
}

/// Converts the GGUF file `file` into the folder `out` (created if needed; files of the
/// same names are replaced). `progress` is called with (tensors done, tensor count).
pub fn convert_gguf(file: &Path, out: &Path, dtype: Dtype, progress: impl FnMut(usize, usize)) -> Result<Converted> {
    convert_gguf_with(file, out, dtype, false, progress)
}

/// As `convert_gguf`; with `keep_quantized`, Q4_0/Q4_1/Q5_0/Q5_1/Q8_0/Q4_K/Q5_K matrices are written
/// packed in MLX's affine layout (group size 32; scales and biases in float32 when `dtype`
/// is float32, else Q4_0/Q4_1/Q5_0/Q5_1/Q8_0's in the file's float16 and Q4_K/Q5_K's in
/// `dtype`) with the `quantization` config mlx-lm reads, so mlx-lm loads the same quantized
/// weights the engine keeps.
pub fn convert_gguf_with(
    file: &Path,
    out: &Path,
    dtype: Dtype,
    keep_quantized: bool,
    mut progress: impl FnMut(usize, usize),
) -> Result<Converted> {
    if !dtype.is_float() {
        return Err(Error::invalid(format!("convert: the weights' dtype must be a float type, got {dtype}")));
    }
    let g = GgufFile::open(file)?;
    let arch = gguf::arch::read(&g)?;
    // The tokenizer first: a file whose vocabulary cannot be rebuilt fails before the
    // weights are written.
    let beside = file.parent().map(|d| d.join("tokenizer.json")).is_some_and(|p| p.is_file());
    let tokenizer = if beside { Tokenizer::beside_gguf(&g)? } else { Tokenizer::from_gguf(&g)? };
    std::fs::create_dir_all(out).map_err(|e| Error::Io(format!("{}: {e}", out.display())))?;
    let write = |name: &str, text: String| -> Result<String> {
        let p = out.join(name);
        std::fs::write(&p, text).map_err(|e| Error::Io(format!("{}: {e}", p.display())))?;
        Ok(name.to_string())
    };
    let pretty = |v: &Json| serde_json::to_string_pretty(v).unwrap_or_default();

    let (tensors, quant) = gguf::read_tensors(&g, &arch, keep_quantized, &mut progress)?;
    let mut files = Vec::new();
    let mut config = gguf::arch::hf_config(&g, &arch)?;
    if let Json::Object(c) = &mut config {
        let class = match c.get("model_type").and_then(Json::as_str) {
            Some("llama") => "LlamaForCausalLM",
            Some("qwen2") => "Qwen2ForCausalLM",
            Some("qwen3") => "Qwen3ForCausalLM",
            Some("gemma3_text") => "Gemma3ForCausalLM",
            _ => "",
        };
        c.insert("architectures".into(), json!([class]));
        c.insert("torch_dtype".into(), json!(dtype.name()));
        if let Some(id) = tokenizer.bos_token_id() {
            c.insert("bos_token_id".into(), json!(id));
        }
        if let Some(&id) = tokenizer.eos_token_ids().first() {
            c.insert("eos_token_id".into(), json!(id));
        }
        if let Some(q) = &quant {
            c.insert("quantization".into(), q.to_json());
            c.insert("quantization_config".into(), q.to_json());
        }
    }
    files.push(write("config.json", pretty(&config))?);

    let mut gen = Map::new();
    if let Some(id) = tokenizer.bos_token_id() {
        gen.insert("bos_token_id".into(), json!(id));
    }
    gen.insert("eos_token_id".into(), json!(tokenizer.eos_token_ids()));
    files.push(write("generation_config.json", pretty(&Json::Object(gen)))?);

    files.push(write("tokenizer.json", tokenizer.to_json()?)?);
    let mut tc = Map::new();
    for (k, v) in gguf_template_variables(&g) {
        tc.insert(k, json!(v));
    }
    tc.insert("add_bos_token".into(), json!(tokenizer.adds_bos()));
    tc.insert("tokenizer_class".into(), json!("PreTrainedTokenizerFast"));
    if let Some(t) = g.get("tokenizer.chat_template").and_then(|v| v.as_str()) {
        tc.insert("chat_template".into(), json!(t));
    }
    files.push(write("tokenizer_config.json", pretty(&Json::Object(tc)))?);

    let total = tensors.len();
    let mut arrays: Vec<(String, Array)> = Vec::with_capacity(total);
    for (name, a) in tensors {
        let packed_float = name.ends_with(".scales") || name.ends_with(".biases");
        let a = match a.dtype() {
            d if d == dtype || !d.is_float() => a,
            Dtype::F16 if packed_float && dtype != Dtype::F32 => a,
            _ => a.astype(dtype)?,
        };
        a.eval()?;
        arrays.push((name, a));
    }
    let refs: Vec<(&str, &Array)> = arrays.iter().map(|(n, a)| (n.as_str(), a)).collect();
    io::save_safetensors(out.join("model.safetensors"), &refs, &[("format", "pt")])?;
    files.push("model.safetensors".into());
    Ok(Converted { dir: out.to_path_buf(), tensors: total, dtype, files })
}
