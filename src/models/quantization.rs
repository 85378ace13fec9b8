//! Quantized checkpoints in mlx-lm's format, and quantizing at load.
//!
//! mlx-lm stores a quantized matrix `P` as `P.weight` (uint32 words, `32 / bits` values
//! each), `P.scales` and, in the affine mode, `P.biases` (one per group of `group_size`
//! inputs), and describes it in config.json's `quantization` entry: the default
//! `group_size`, `bits` and `mode`, plus per-layer entries keyed by module path (other
//! settings, or `false` for a layer left dense). A matrix is quantized exactly when its
//! `P.scales` tensor exists — as mlx-lm's loader decides it — and its shapes are checked
//! against the settings that apply to it, so a corrupt checkpoint fails naming the tensor.
use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

use super::config::ConfigFile;
use super::weights::Weights;
use crate::error::{Error, Result};
use crate::mlx::quant::{quantize, QuantMode, QuantParams, Quantized};
use crate::mlx::{Device, Dtype};
use crate::nn::Weight;

/// config.json's `quantization` entry.
#[derive(Clone, Debug, PartialEq)]
pub struct QuantConfig {
    pub default: QuantParams,
    /// Per-layer settings keyed by module path (`model.layers.0.mlp.down_proj`); `None`
    /// for a layer the config marks `false` (dense).
    pub layers: BTreeMap<String, Option<QuantParams>>,
}

/// How the loader treats quantization.
#[derive(Clone, Debug, Default)]
pub struct QuantLoad {
    /// The checkpoint's own quantization (config.json's entry, or a GGUF file's types).
    pub config: Option<QuantConfig>,
    /// Quantize dense matrices at load, choosing the layers mlx-lm's converter quantizes.
    pub quantize: Option<QuantParams>,
    /// Keep packed matrices packed (quantized matmuls); else unpack them into dense
    /// matrices of the compute dtype at load.
    pub keep: bool,
    /// The dtype dense matrices are cast to before quantizing at load: mlx-lm's converter
    /// casts the checkpoint to config.json's `torch_dtype` first. `None`: as stored.
    pub source_dtype: Option<Dtype>,
}

/// What the matrices taken so far hold.
#[derive(Clone, Debug, Default)]
pub struct QuantSummary {
    /// The settings of the first quantized matrix, or the config's default when it has one.
    pub params: Option<QuantParams>,
    pub quantized: i32,
    pub dense: i32,
}

/// The quantization settings pieces of a loaded model report (see `ModelInfo`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QuantInfo {
    /// The default settings (mlx-lm's top-level `quantization` entry); layers may differ.
    pub params: QuantParams,
    /// Matrices (linear layers and embeddings) quantized, and left dense.
    pub quantized_layers: i32,
    pub dense_layers: i32,
    /// Whether the packed weights stay packed in memory (else they were unpacked at load).
    pub kept: bool,
}

const MODES: &str = "affine, mxfp4, mxfp8, nvfp4";

/// Checks that MLX supports `p` (bits and group size per mode); `what` names the field.
fn validate(p: QuantParams, what: &dyn Fn() -> String) -> Result<QuantParams> {
    let ok = match p.mode {
        QuantMode::Affine => [2, 3, 4, 5, 6, 8].contains(&p.bits) && [32, 64, 128].contains(&p.group_size),
        QuantMode::Mxfp4 => p.bits == 4 && p.group_size == 32,
        QuantMode::Mxfp8 => p.bits == 8 && p.group_size == 32,
        QuantMode::Nvfp4 => p.bits == 4 && p.group_size == 16,
    };
    if ok {
        Ok(p)
    } else {
        Err(Error::Config(format!(
            "{}: {p} is not supported (affine: bits 2, 3, 4, 5, 6 or 8 with group size 32, 64 or 128; \
             mxfp4: 4 bits, group 32; mxfp8: 8 bits, group 32; nvfp4: 4 bits, group 16)",
            what()
        )))
    }
}

impl QuantParams {
    /// Settings from the command line or an API: mlx-lm's defaults fill what is left out,
    /// and combinations MLX does not support are refused.
    pub fn parse(mode: &str, group_size: Option<i32>, bits: Option<i32>) -> Result<QuantParams> {
        let m = QuantMode::from_name(mode)
            .ok_or_else(|| Error::invalid(format!("quantization mode {mode:?} is not one of {MODES}")))?;
        validate(QuantParams::with_defaults(m, group_size, bits), &|| "quantization".to_string())
            .map_err(|e| Error::invalid(e.to_string()))
    }
}

impl QuantConfig {
    /// The `quantization` entry of a config (or `quantization_config` in the same format,
    /// which mlx-lm writes beside it); `None` for a dense model.
    pub fn from_config(cfg: &ConfigFile) -> Result<Option<QuantConfig>> {
        let (key, entry) = match (cfg.get("quantization"), cfg.get("quantization_config")) {
            (Some(q), _) => ("quantization", q),
            (None, Some(q)) => ("quantization_config", q),
            (None, None) => return Ok(None),
        };
        let field = |k: &str| format!("{}: field {:?}", cfg.path.display(), cfg.field(&format!("{key}.{k}")));
        let obj = entry.as_object().ok_or_else(|| cfg.bad(key, "a JSON object", entry))?;
        if !obj.contains_key("bits") && !obj.contains_key("group_size") {
            let method = obj.get("quant_method").and_then(Value::as_str).unwrap_or("unknown");
            return Err(Error::Config(format!(
                "{}: field {:?} describes quant_method {method:?}, which is not supported \
                 (mlx-lm's format with \"group_size\", \"bits\" and \"mode\" is)",
                cfg.path.display(),
                cfg.field(key)
            )));
        }
        let default = params_of(obj, true, &|k| field(k))?;
        let mut layers = BTreeMap::new();
        for (k, v) in obj {
            if ["group_size", "bits", "mode", "quant_method"].contains(&k.as_str()) {
                continue;
            }
            let p = match v {
                Value::Bool(false) => None,
                Value::Bool(true) => Some(default),
                Value::Object(o) => Some(params_of(o, false, &|x| field(&format!("{k}.{x}")))?),
                other => {
                    return Err(Error::Config(format!(
                        "{}: a per-layer entry must be an object with group_size/bits/mode or false, found {other}",
                        field(k)
                    )))
                }
            };
            layers.insert(k.clone(), p);
        }
        Ok(Some(QuantConfig { default, layers }))
    }

    /// The settings config.json gives module `path`: its own entry, else the default.
    pub fn for_layer(&self, path: &str) -> Option<QuantParams> {
        match self.layers.get(path) {
            Some(p) => *p,
            None => Some(self.default),
        }
    }

    /// The entry as mlx-lm writes it (`quantization` and `quantization_config`).
    pub fn to_json(&self) -> Value {
        let one = |p: &QuantParams| json!({"group_size": p.group_size, "bits": p.bits, "mode": p.mode.name()});
        let mut m: Map<String, Value> = one(&self.default).as_object().cloned().unwrap_or_default();
        for (k, p) in &self.layers {
            m.insert(k.clone(), p.as_ref().map_or(Value::Bool(false), one));
        }
        Value::Object(m)
    }
}

/// Settings from one object of the entry. The top-level one must name group size and
/// bits (mlx-lm's loader reads both); a per-layer one gets mlx-lm's defaults for its mode
/// for what it leaves out, as `to_quantized(**entry)` does.
fn params_of(o: &Map<String, Value>, top: bool, field: &dyn Fn(&str) -> String) -> Result<QuantParams> {
    let mode = match o.get("mode") {
        None | Some(Value::Null) => QuantMode::Affine,
        Some(Value::String(s)) => QuantMode::from_name(s)
            .ok_or_else(|| Error::Config(format!("{}: mode {s:?} is not one of {MODES}", field("mode"))))?,
        Some(v) => return Err(Error::Config(format!("{}: must be a string, found {v}", field("mode")))),
    };
    let int = |k: &str| -> Result<Option<i32>> {
        match o.get(k) {
            None | Some(Value::Null) if top => Err(Error::Config(format!("{} is missing", field(k)))),
            None | Some(Value::Null) => Ok(None),
            Some(v) => match v.as_i64() {
                Some(n) if n > 0 && n <= 1024 => Ok(Some(n as i32)),
                _ => Err(Error::Config(format!("{}: must be a positive integer, found {v}", field(k)))),
            },
        }
    };
    let p = QuantParams::with_defaults(mode, int("group_size")?, int("bits")?);
    validate(p, &|| field(if p.mode == QuantMode::Affine { "bits" } else { "mode" }))
}

impl Weights {
    /// The matrix `name.weight: [rows, cols]`: packed when `name.scales` exists, else dense
    /// (and quantized here when quantize-at-load asks for it). Packed matrices are kept or
    /// unpacked into the compute dtype as `self.quant.keep` says.
    pub fn matrix(&mut self, name: &str, rows: i32, cols: i32) -> Result<Weight> {
        let w_name = format!("{name}.weight");
        if self.contains(&format!("{name}.scales")) {
            let p = self.stored_params(name)?;
            let q = self.take_packed(name, rows, cols, p)?;
            return self.quantized_weight(q);
        }
        if let Some(w) = self.tensors.get(&w_name) {
            if w.dtype() == Dtype::U32 {
                let says = match self.quant.config.as_ref().and_then(|c| c.for_layer(name)) {
                    Some(p) => format!("config.json quantizes it ({p})"),
                    None => "config.json has no quantization for it".to_string(),
                };
                return Err(Error::Weights(format!(
                    "tensor {name}.scales is missing from {}: {w_name} is packed (uint32 {:?}) and {says}",
                    self.dir.display(),
                    w.shape()
                )));
            }
        }
        match self.quant.quantize {
            // mlx-lm's converter quantizes every Linear and Embedding whose input size the
            // group size divides; the others stay dense.
            Some(p) if cols % p.group_size == 0 => {
                let w = self.take_stored(&w_name, &[rows, cols])?;
                let w = match self.quant.source_dtype {
                    Some(d) if w.dtype() != d => w.astype(d)?,
                    _ => w,
                };
                let q = quantize(&w, p.group_size, p.bits, p.mode)?;
                self.quantized_weight(q)
            }
            _ => {
                self.quant_summary.dense += 1;
                Ok(Weight::Dense(self.take(&w_name, &[rows, cols])?))
            }
        }
    }

    /// The settings config.json gives the packed matrix `name`.
    fn stored_params(&self, name: &str) -> Result<QuantParams> {
        let Some(cfg) = &self.quant.config else {
            return Err(Error::Weights(format!(
                "tensor {name}.scales in {} marks {name} as quantized, but config.json has no \"quantization\" entry",
                self.dir.display()
            )));
        };
        cfg.for_layer(name).ok_or_else(|| {
            Error::Weights(format!(
                "tensor {name}.scales in {} marks {name} as quantized, but config.json's quantization entry for {name:?} is false",
                self.dir.display()
            ))
        })
    }

    /// Takes `name.weight`, `name.scales` and (affine) `name.biases`, checking each against
    /// the shapes `p` implies for a `[rows, cols]` matrix.
    fn take_packed(&mut self, name: &str, rows: i32, cols: i32, p: QuantParams) -> Result<Quantized> {
        let dir = self.dir.clone();
        let bad = |what: String| Error::Weights(format!("{what} (in {}, quantized {p})", dir.display()));
        if (cols * p.bits) % 32 != 0 || cols % p.group_size != 0 {
            return Err(bad(format!(
                "{name}: input size {cols} cannot be packed at {} bits in groups of {}",
                p.bits, p.group_size
            )));
        }
        let packed = [rows, cols * p.bits / 32];
        let groups = [rows, cols / p.group_size];
        let w = &self.tensors[&format!("{name}.weight")];
        if w.dtype() != Dtype::U32 {
            return Err(bad(format!("tensor {name}.weight must be packed uint32 since {name}.scales exists, found {}", w.dtype())));
        }
        if w.shape() != packed {
            let found = w.shape();
            let implied = if found.len() == 2 && found[0] == rows { format!(" (that packing holds {} bits per value)", found[1] * 32 / cols) } else { String::new() };
            return Err(bad(format!(
                "tensor {name}.weight has packed shape {found:?}, expected {packed:?} for a [{rows}, {cols}] matrix{implied}"
            )));
        }
        let weight = self.take_stored(&format!("{name}.weight"), &packed)?;
        let s = &self.tensors[&format!("{name}.scales")];
        if s.shape() != groups {
            return Err(bad(format!(
                "tensor {name}.scales has shape {:?}, expected {groups:?} (one per group of {} inputs)",
                s.shape(),
                p.group_size
            )));
        }
        let scales_float = s.dtype().is_float();
        if scales_float != (p.mode == QuantMode::Affine) {
            return Err(bad(format!("tensor {name}.scales has dtype {}, which does not fit the {} mode", s.dtype(), p.mode.name())));
        }
        let scales = self.take(&format!("{name}.scales"), &groups)?;
        let b_name = format!("{name}.biases");
        let biases = match (p.mode, self.contains(&b_name)) {
            (QuantMode::Affine, true) => Some(self.take(&b_name, &groups)?),
            (QuantMode::Affine, false) => {
                return Err(bad(format!("tensor {b_name} is missing: the affine mode needs biases beside {name}.scales")))
            }
            (_, true) => return Err(bad(format!("tensor {b_name} is not used: the {} mode has no biases", p.mode.name()))),
            (_, false) => None,
        };
        Ok(Quantized { weight, scales, biases, group_size: p.group_size, bits: p.bits, mode: p.mode })
    }

    /// A packed matrix as the model will hold it: its floating scales and biases in the
    /// compute dtype, kept packed or unpacked.
    fn quantized_weight(&mut self, mut q: Quantized) -> Result<Weight> {
        let dtype = match self.dtype {
            Some(d) => d,
            None if q.scales.dtype().is_float() => q.scales.dtype(),
            None => Dtype::F32,
        };
        if q.scales.dtype().is_float() && q.scales.dtype() != dtype {
            q.scales = q.scales.astype(dtype)?;
            q.biases = q.biases.map(|b| b.astype(dtype)).transpose()?;
        }
        let s = &mut self.quant_summary;
        s.quantized += 1;
        if s.params.is_none() {
            s.params = Some(self.quant.config.as_ref().map_or(q.params(), |c| c.default));
        }
        if let Some(p) = self.quant.quantize {
            s.params = Some(p);
        }
        if !self.quant.keep {
            return Ok(Weight::Dense(q.dequantize(Some(dtype))?));
        }
        narrow_for_cpu_kernels(&mut q, dtype)?;
        Ok(Weight::Quantized { q, dtype })
    }

    /// What the model's matrices hold, for `ModelInfo`; `None` when all are dense.
    pub fn quant_info(&self) -> Option<QuantInfo> {
        let s = &self.quant_summary;
        s.params.filter(|_| s.quantized > 0).map(|params| QuantInfo {
            params,
            quantized_layers: s.quantized,
            dense_layers: s.dense,
            kept: self.quant.keep,
        })
    }
}

/// On the CPU, an f32 layer the project's kernels take keeps its scales and biases in the
/// narrowest dtype that holds them exactly (`cpu_qmm::exact_scale_dtype`: a checkpoint's
/// own f16/bf16 ones, GGUF's f16 `d` and `m`): the kernels compute the same values from half the bytes,
/// which a decode step reads once each. Everything else that reads them (unpacking rows of
/// an embedding, gradients) asks for the compute dtype.
fn narrow_for_cpu_kernels(q: &mut Quantized, dtype: Dtype) -> Result<()> {
    let Some(biases) = &q.biases else { return Ok(()) };
    if dtype != Dtype::F32 || !crate::mlx::cpu_qmm::takes_params(q.params(), dtype) || Device::default_device()? != Device::cpu() {
        return Ok(());
    }
    let narrow = crate::mlx::cpu_qmm::exact_scale_dtype(&q.scales, biases)?;
    if narrow != Dtype::F32 {
        q.biases = Some(biases.astype(narrow)?);
        q.scales = q.scales.astype(narrow)?;
    }
    Ok(())
}
