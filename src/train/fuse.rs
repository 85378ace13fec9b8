//! Fusing a LoRA adapter into its base model's weights, writing a model folder that mlx-lm
//! and this engine load without the adapter (`mlx_lm.fuse`).
//!
//! Every adapted projection becomes `W + (scale·Bᵀ)·Aᵀ`, the product taken in the
//! adapter's dtype and cast to the weight's before the sum, as mlx-lm's `LoRALinear.fuse`
//! does. A quantized projection is dequantized, fused and quantized again with its own
//! group size, bits and mode, unless `dequantize` asks for a dense folder (then every
//! quantized matrix of the model is unpacked and the config loses its `quantization`).
//! Tensors the adapter does not touch are written as they were read.
//!
//! The work is done on the base folder's tensors, not on a loaded model, so the written
//! folder keeps the checkpoint's names and everything in it the engine would not load
//! (a vision tower, say). A GGUF base is first converted (`engine::convert`) into a
//! scratch folder inside the output and fused from there.
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde_json::Value as Json;

use super::adapter::{read_config, write_atomic, ADAPTER_FILE};
use crate::engine::convert::convert_gguf_with;
use crate::error::{Error, Result};
use crate::mlx::quant::{dequantize as unpack, quantize, QuantParams};
use crate::mlx::{io, Array, Dtype};
use crate::models::config::ConfigFile;
use crate::models::quantization::QuantConfig;
use crate::models::weights::weight_files;

/// Shards are cut at this size, as mlx-lm's `save` cuts them.
const SHARD_BYTES: usize = 5 << 30;

/// What [`fuse`] wrote.
#[derive(Clone, Debug)]
pub struct Fused {
    pub dir: PathBuf,
    /// Projections that received their adapter.
    pub fused: usize,
    /// Tensors written.
    pub tensors: usize,
    /// Whether adapted projections stayed quantized.
    pub quantized: bool,
    pub files: Vec<String>,
}

/// Fuses the adapter folder `adapter` into the model at `model` (an HF-layout folder, or a
/// GGUF file, converted with `gguf_dtype` for its float tensors), writing the result to
/// the folder `out` (created if needed; files of the same names are replaced).
pub fn fuse(model: &Path, adapter: &Path, out: &Path, dequantize: bool, gguf_dtype: Dtype) -> Result<Fused> {
    let same = |a: &Path, b: &Path| matches!((a.canonicalize(), b.canonicalize()), (Ok(x), Ok(y)) if x == y);
    if model.is_dir() && same(model, out) {
        return Err(Error::invalid(format!("fuse: the output folder {} is the base model's own folder", out.display())));
    }
    // The adapter is read before anything is written, so a bad one leaves `out` alone.
    let lora = read_adapter(adapter)?;
    std::fs::create_dir_all(out).map_err(|e| Error::Io(format!("{}: {e}", out.display())))?;
    if model.is_file() {
        let scratch = out.join(".gguf-base.partial");
        let result = convert_gguf_with(model, &scratch, gguf_dtype, !dequantize, |_, _| {})
            .and_then(|_| fuse_folder(&scratch, &lora, out, dequantize));
        let _ = std::fs::remove_dir_all(&scratch);
        return result;
    }
    fuse_folder(model, &lora, out, dequantize)
}

/// One adapted projection's factors.
struct Factors {
    a: Array,
    b: Array,
}

struct AdapterWeights {
    file: PathBuf,
    scale: f32,
    /// By projection path (`model.layers.0.self_attn.q_proj`).
    factors: BTreeMap<String, Factors>,
}

fn read_adapter(dir: &Path) -> Result<AdapterWeights> {
    let cfg = read_config(dir)?;
    let file = dir.join(ADAPTER_FILE);
    let mut halves: BTreeMap<String, (Option<Array>, Option<Array>)> = BTreeMap::new();
    for (name, a) in io::load_safetensors(&file)?.tensors {
        let (path, which) = name.rsplit_once('.').unwrap_or(("", name.as_str()));
        let slot = halves.entry(path.to_string()).or_default();
        match which {
            "lora_a" => slot.0 = Some(a),
            "lora_b" => slot.1 = Some(a),
            _ => {
                return Err(Error::Weights(format!(
                    "{}: tensor {name} is not a LoRA factor (lora_a or lora_b)",
                    file.display()
                )))
            }
        }
    }
    let mut factors = BTreeMap::new();
    for (path, pair) in halves {
        match pair {
            (Some(a), Some(b)) => {
                factors.insert(path, Factors { a, b });
            }
            (a, _) => {
                let missing = if a.is_none() { "lora_a" } else { "lora_b" };
                return Err(Error::Weights(format!("{}: {path}.{missing} is missing", file.display())));
            }
        }
    }
    if factors.is_empty() {
        return Err(Error::Weights(format!("{}: the adapter holds no LoRA factors", file.display())));
    }
    Ok(AdapterWeights { file, scale: cfg.scale, factors })
}

/// The name of the projection `path` among the base's tensors: as written, or under the
/// other of the two layouts HF checkpoints of multimodal Gemma 3 use for the text model
/// (`language_model.model.…`, the one mlx-lm writes, and `model.language_model.…`).
fn base_path(tensors: &BTreeMap<String, Array>, path: &str) -> Option<String> {
    let alt = if let Some(rest) = path.strip_prefix("language_model.model.") {
        Some(format!("model.language_model.{rest}"))
    } else {
        path.strip_prefix("model.language_model.").map(|rest| format!("language_model.model.{rest}"))
    };
    std::iter::once(path.to_string()).chain(alt).find(|p| tensors.contains_key(&format!("{p}.weight")))
}

fn fuse_folder(base: &Path, lora: &AdapterWeights, out: &Path, dequantize: bool) -> Result<Fused> {
    let config = ConfigFile::read(base, "config.json")?;
    let quant = QuantConfig::from_config(&config)?;
    let mut tensors = BTreeMap::new();
    for file in weight_files(base)? {
        tensors.extend(io::load_safetensors(&file)?.tensors);
    }
    // Quantized matrices: `X.weight` packed beside `X.scales`.
    let packed: BTreeSet<String> = tensors
        .keys()
        .filter_map(|k| k.strip_suffix(".scales"))
        .filter(|p| tensors.contains_key(&format!("{p}.weight")))
        .map(str::to_string)
        .collect();
    let params_of = |path: &str| -> Result<QuantParams> {
        quant.as_ref().and_then(|q| q.for_layer(path)).ok_or_else(|| {
            Error::Config(format!(
                "{}: {path} is quantized but config.json gives no quantization settings for it",
                config.path.display()
            ))
        })
    };
    let take = |tensors: &mut BTreeMap<String, Array>, name: &str| {
        tensors.remove(name).ok_or_else(|| Error::Weights(format!("{}: tensor {name} is missing", base.display())))
    };
    let dense_of = |tensors: &mut BTreeMap<String, Array>, path: &str| -> Result<Array> {
        let w = take(tensors, &format!("{path}.weight"))?;
        if !packed.contains(path) {
            return Ok(w);
        }
        let p = params_of(path)?;
        let scales = take(tensors, &format!("{path}.scales"))?;
        let biases = tensors.remove(&format!("{path}.biases"));
        unpack(&w, &scales, biases.as_ref(), p.group_size, p.bits, p.mode, None)
    };

    let mut fused = 0;
    let mut stays_packed = false;
    for (path, f) in &lora.factors {
        let Some(p) = base_path(&tensors, path) else {
            return Err(Error::Weights(format!(
                "{}: the adapter's {path} has no projection {path}.weight in the base model at {} (an adapter for another model?)",
                lora.file.display(),
                base.display()
            )));
        };
        let w = dense_of(&mut tensors, &p)?;
        let (rows, cols) = match w.shape()[..] {
            [r, c] => (r, c),
            _ => return Err(Error::Weights(format!("{}: {p}.weight is not a matrix", base.display()))),
        };
        let (sa, sb) = (f.a.shape(), f.b.shape());
        let rank = sa.get(1).copied().unwrap_or(-1);
        if sa != [cols, rank] || sb != [rank, rows] {
            return Err(Error::Weights(format!(
                "{}: {path}: lora_a {sa:?} and lora_b {sb:?} do not fit the base's [{rows}, {cols}] projection \
                 (expected lora_a [{cols}, r] and lora_b [r, {rows}]; an adapter for another model?)",
                lora.file.display()
            )));
        }
        let delta = f.b.transpose(&[1, 0])?.mul_scalar(lora.scale as f64)?.matmul(&f.a.transpose(&[1, 0])?)?;
        let w = w.add(&delta.astype(w.dtype())?)?;
        if packed.contains(&p) && !dequantize {
            let q = params_of(&p)?;
            let qw = quantize(&w, q.group_size, q.bits, q.mode)?;
            tensors.insert(format!("{p}.weight"), qw.weight);
            tensors.insert(format!("{p}.scales"), qw.scales);
            if let Some(b) = qw.biases {
                tensors.insert(format!("{p}.biases"), b);
            }
            stays_packed = true;
        } else {
            tensors.insert(format!("{p}.weight"), w);
        }
        fused += 1;
    }
    if dequantize {
        for p in &packed {
            if tensors.contains_key(&format!("{p}.scales")) {
                let w = dense_of(&mut tensors, p)?;
                tensors.insert(format!("{p}.weight"), w);
            }
        }
    }

    let mut files = write_tensors(out, &tensors)?;
    let mut cfg = config.json.clone();
    if dequantize {
        if let Json::Object(m) = &mut cfg {
            m.remove("quantization");
            m.remove("quantization_config");
        }
    }
    write_atomic(&out.join("config.json"), serde_json::to_string_pretty(&cfg).unwrap_or_default().as_bytes())?;
    files.push("config.json".into());
    files.extend(copy_other_files(base, out)?);
    Ok(Fused { dir: out.to_path_buf(), fused, tensors: tensors.len(), quantized: stays_packed, files })
}

/// Writes the tensors in shards of at most [`SHARD_BYTES`]: `model.safetensors` alone, or
/// `model-0000i-of-0000n.safetensors` with the index mlx-lm and transformers read. Stale
/// shards of an earlier write are removed.
fn write_tensors(out: &Path, tensors: &BTreeMap<String, Array>) -> Result<Vec<String>> {
    let mut shards: Vec<Vec<(&str, &Array)>> = vec![Vec::new()];
    let mut size = 0;
    for (name, a) in tensors {
        let n = a.nbytes();
        if size + n > SHARD_BYTES && !shards.last().is_some_and(Vec::is_empty) {
            shards.push(Vec::new());
            size = 0;
        }
        size += n;
        shards.last_mut().map(|s| s.push((name.as_str(), a)));
    }
    let count = shards.len();
    let names: Vec<String> = (1..=count)
        .map(|i| if count == 1 { "model.safetensors".into() } else { format!("model-{i:05}-of-{count:05}.safetensors") })
        .collect();
    for old in std::fs::read_dir(out).map_err(|e| Error::Io(format!("{}: {e}", out.display())))?.flatten() {
        let name = old.file_name().to_string_lossy().into_owned();
        let stale = name.ends_with(".safetensors") && !names.contains(&name) || name == "model.safetensors.index.json";
        if stale && old.path().is_file() {
            std::fs::remove_file(old.path()).map_err(|e| Error::Io(format!("{}: {e}", old.path().display())))?;
        }
    }
    let mut map = serde_json::Map::new();
    for (shard, name) in shards.iter().zip(&names) {
        // Written to a temporary file renamed over `name` by `io::save_safetensors`.
        io::save_safetensors(out.join(name), shard, &[("format", "mlx")])?;
        for (t, _) in shard {
            map.insert(t.to_string(), Json::String(name.clone()));
        }
    }
    let mut files = names.clone();
    if count > 1 {
        let total: usize = tensors.values().map(Array::nbytes).sum();
        let index = serde_json::json!({"metadata": {"total_size": total}, "weight_map": map});
        write_atomic(&out.join("model.safetensors.index.json"), serde_json::to_string_pretty(&index).unwrap_or_default().as_bytes())?;
        files.push("model.safetensors.index.json".into());
    }
    Ok(files)
}

/// Copies the base folder's other files (tokenizer, templates, generation config): every
/// regular file but the weights and the config, which were written anew.
fn copy_other_files(base: &Path, out: &Path) -> Result<Vec<String>> {
    let mut copied = Vec::new();
    for e in std::fs::read_dir(base).map_err(|e| Error::Io(format!("{}: {e}", base.display())))?.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let skip = name.ends_with(".safetensors") || name == "model.safetensors.index.json" || name == "config.json" || name.starts_with('.');
        if skip || !e.path().is_file() {
            continue;
        }
        std::fs::copy(e.path(), out.join(&name)).map_err(|err| Error::Io(format!("{} → {}: {err}", e.path().display(), out.display())))?;
        copied.push(name);
    }
    copied.sort();
    Ok(copied)
}
