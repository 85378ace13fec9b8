//! LoRA adapters on a model's projections, and adapter folders in mlx-lm's layout:
//! `adapters.safetensors` (the `lora_a` / `lora_b` of each adapted projection, under the
//! projection's key, e.g. `model.layers.3.self_attn.q_proj.lora_a`) beside
//! `adapter_config.json` (`fine_tune_type`, `num_layers`, `lora_parameters` with `rank`,
//! `scale`, `dropout` and `keys`). mlx-lm's `load_adapters` reads such a folder, and this
//! module reads mlx-lm's.
use std::path::Path;

use serde_json::{json, Value as Json};

use crate::error::{Error, Result};
use crate::mlx::{io, Array, Dtype};
use crate::models::LanguageModel;
use crate::nn::Lora;

pub const ADAPTER_FILE: &str = "adapters.safetensors";
pub const CONFIG_FILE: &str = "adapter_config.json";

/// Where adapters go and their shape.
#[derive(Clone, Debug, PartialEq)]
pub struct LoraConfig {
    /// The rank `r` of `A: [in, r]` and `B: [r, out]`.
    pub rank: i32,
    /// The factor on the adapter's output (mlx-lm's `scale`; `alpha / rank` in the
    /// PEFT convention, see [`LoraConfig::with_alpha`]).
    pub scale: f32,
    pub dropout: f32,
    /// Adapt the last `num_layers` layers; `None` for all of them.
    pub num_layers: Option<i32>,
    /// The projections to adapt, by their key inside a layer: `self_attn.q_proj`, or just
    /// `q_proj`. Known: q/k/v/o_proj (attention) and gate/up/down_proj (MLP).
    pub keys: Vec<String>,
    /// The dtype of new adapter weights: float32 whatever the model computes in, so that
    /// with a bfloat16 or float16 model the adapter and its optimizer state stay float32.
    pub dtype: Dtype,
    /// Seeds MLX's generator before the adapters' initial `A` is drawn, so that a seed
    /// gives the same start (mlx-lm seeds with its `--seed` before making its LoRA
    /// layers); `None` draws from the generator as it stands.
    pub seed: Option<u64>,
}

impl Default for LoraConfig {
    fn default() -> Self {
        LoraConfig {
            rank: 8,
            scale: 20.0,
            dropout: 0.0,
            num_layers: None,
            keys: vec!["self_attn.q_proj".into(), "self_attn.v_proj".into()],
            dtype: Dtype::F32,
            seed: None,
        }
    }
}

impl LoraConfig {
    /// The scale of a PEFT-style `alpha`: `alpha / rank`.
    pub fn with_alpha(mut self, alpha: f32) -> LoraConfig {
        self.scale = alpha / self.rank as f32;
        self
    }
}

/// What [`apply`] put on the model.
#[derive(Clone, Debug, PartialEq)]
pub struct AdapterInfo {
    /// The layers adapted (the last `num_layers`).
    pub num_layers: i32,
    /// The full keys inside a layer (`self_attn.q_proj`, …).
    pub keys: Vec<String>,
    /// The number of trainable values (all `A` and `B` elements).
    pub trainable_params: usize,
    /// The adapted projections' full names (`model.layers.3.self_attn.q_proj`).
    pub modules: Vec<String>,
}

/// `key` as a full in-layer key (`q_proj` → `self_attn.q_proj`), checked against the
/// projections a layer has.
fn resolve_key(key: &str, known: &[&'static str]) -> Result<&'static str> {
    known
        .iter()
        .find(|k| **k == key || k.rsplit('.').next() == Some(key))
        .copied()
        .ok_or_else(|| {
            Error::invalid(format!("target key {key:?} matches no projection of the model (its layers have: {})", known.join(", ")))
        })
}

/// Puts fresh adapters (`A` uniform, `B` zero: the model's output is unchanged) on the
/// chosen projections of the last `num_layers` layers. Base weights stay as they are.
pub fn apply(model: &mut dyn LanguageModel, cfg: &LoraConfig) -> Result<AdapterInfo> {
    if cfg.rank < 1 {
        return Err(Error::invalid(format!("LoRA rank must be at least 1, not {}", cfg.rank)));
    }
    if !(cfg.scale.is_finite()) {
        return Err(Error::invalid(format!("LoRA scale must be a finite number, not {}", cfg.scale)));
    }
    if !(0.0..1.0).contains(&cfg.dropout) {
        return Err(Error::invalid(format!("LoRA dropout must be in [0, 1), not {}", cfg.dropout)));
    }
    if cfg.keys.is_empty() {
        return Err(Error::invalid("no target keys: name the projections to adapt (e.g. q_proj, v_proj)"));
    }
    let mut layers = model.layer_linears();
    let total = layers.len() as i32;
    let n = cfg.num_layers.unwrap_or(total);
    if n < 1 || n > total {
        return Err(Error::invalid(format!("num_layers {n}: the model has {total} layers (give 1 to {total}, or all)")));
    }
    let known: Vec<&'static str> = layers.first().map(|l| l.linears.iter().map(|(k, _)| *k).collect()).unwrap_or_default();
    let mut keys: Vec<&'static str> = Vec::new();
    for k in &cfg.keys {
        let full = resolve_key(k, &known)?;
        if !keys.contains(&full) {
            keys.push(full);
        }
    }
    let mut info = AdapterInfo { num_layers: n, keys: keys.iter().map(|k| k.to_string()).collect(), trainable_params: 0, modules: Vec::new() };
    // Checked before anything changes, so that a refused call leaves the model as it was.
    for layer in layers.iter().skip((total - n) as usize) {
        if let Some((key, _)) = layer.linears.iter().find(|(k, l)| keys.contains(k) && l.lora.is_some()) {
            return Err(Error::invalid(format!("{}.{key} already has an adapter", layer.prefix)));
        }
    }
    if let Some(seed) = cfg.seed {
        crate::mlx::random::seed(seed)?;
    }
    for layer in layers.iter_mut().skip((total - n) as usize) {
        for (key, linear) in layer.linears.iter_mut().filter(|(k, _)| keys.contains(k)) {
            let name = format!("{}.{key}", layer.prefix);
            let (inp, out) = linear.dims();
            let lora = Lora::new(inp, out, cfg.rank, cfg.scale, cfg.dropout, cfg.dtype)?;
            info.trainable_params += (lora.a.size() + lora.b.size()) as usize;
            linear.lora = Some(lora);
            info.modules.push(name);
        }
    }
    drop(layers);
    // Computed now, on this thread: MLX's streams are per thread, and an unevaluated
    // array built here could not be evaluated from another (a caller that generates or
    // trains on other threads).
    let arrays: Vec<Array> = parameters(model).into_iter().map(|(_, a)| a).collect();
    crate::mlx::eval(&arrays.iter().collect::<Vec<_>>())?;
    Ok(info)
}

/// The adapters on the model, by projection name, first layer first.
pub fn adapters_mut(model: &mut dyn LanguageModel) -> Vec<(String, &mut Lora)> {
    let mut out = Vec::new();
    for layer in model.layer_linears() {
        let prefix = layer.prefix;
        for (key, linear) in layer.linears {
            if let Some(lora) = linear.lora.as_mut() {
                out.push((format!("{prefix}.{key}"), lora));
            }
        }
    }
    out
}

/// The trainable arrays in a fixed order: each adapter's `A` then `B`.
pub fn parameters(model: &mut dyn LanguageModel) -> Vec<(String, Array)> {
    let mut out = Vec::new();
    for (name, lora) in adapters_mut(model) {
        out.push((format!("{name}.lora_a"), lora.a.clone()));
        out.push((format!("{name}.lora_b"), lora.b.clone()));
    }
    out
}

/// Replaces the trainable arrays, in [`parameters`]' order.
pub fn set_parameters(model: &mut dyn LanguageModel, values: &[Array]) -> Result<()> {
    let mut adapters = adapters_mut(model);
    if values.len() != adapters.len() * 2 {
        return Err(Error::invalid(format!("{} arrays for {} adapter parameters", values.len(), adapters.len() * 2)));
    }
    for ((_, lora), ab) in adapters.iter_mut().zip(values.chunks_exact(2)) {
        lora.a = ab[0].clone();
        lora.b = ab[1].clone();
    }
    Ok(())
}

/// Turns dropout on (training) or off.
pub fn set_training(model: &mut dyn LanguageModel, training: bool) {
    for (_, lora) in adapters_mut(model) {
        lora.training = training;
    }
}

/// Writes `adapter_config.json` for `cfg` into `dir` (created if needed).
pub fn save_config(dir: &Path, cfg: &LoraConfig, info: &AdapterInfo) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::Io(format!("{}: {e}", dir.display())))?;
    let config = json!({
        "fine_tune_type": "lora",
        "num_layers": info.num_layers,
        "lora_parameters": {"rank": cfg.rank, "scale": cfg.scale, "dropout": cfg.dropout, "keys": info.keys},
    });
    let text = serde_json::to_string_pretty(&config).map_err(|e| Error::Io(e.to_string()))?;
    write_atomic(&dir.join(CONFIG_FILE), text.as_bytes())
}

/// Writes the adapter weights to `file`. `io::save_safetensors` writes a temporary file and
/// renames it over `file`, so a crash or cancellation never leaves a half-written adapter
/// where the last one was.
pub fn save_weights(model: &mut dyn LanguageModel, file: &Path) -> Result<()> {
    let params = parameters(model);
    let named: Vec<(&str, &Array)> = params.iter().map(|(n, a)| (n.as_str(), a)).collect();
    io::save_safetensors(file, &named, &[])
}

/// Writes `path` through a `.partial` file renamed over it, so a reader never sees half of it.
pub(super) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("partial");
    std::fs::write(&tmp, bytes)
        .and_then(|_| std::fs::rename(&tmp, path))
        .map_err(|e| Error::Io(format!("{}: {e}", path.display())))
}

/// An adapter folder's `adapter_config.json` as a [`LoraConfig`].
pub fn read_config(dir: &Path) -> Result<LoraConfig> {
    let path = dir.join(CONFIG_FILE);
    let text = std::fs::read_to_string(&path).map_err(|e| Error::Io(format!("{}: {e}", path.display())))?;
    let v: Json = serde_json::from_str(&text).map_err(|e| Error::Config(format!("{}: not valid JSON: {e}", path.display())))?;
    let bad = |field: &str, want: &str| Error::Config(format!("{}: field {field:?} must be {want}", path.display()));
    match v.get("fine_tune_type").and_then(Json::as_str).unwrap_or("lora") {
        "lora" => {}
        other => {
            return Err(Error::Config(format!(
                "{}: fine_tune_type {other:?} is not supported (supported: lora)",
                path.display()
            )))
        }
    }
    let num_layers = v.get("num_layers").and_then(Json::as_i64).ok_or_else(|| bad("num_layers", "an integer"))? as i32;
    let p = v.get("lora_parameters").ok_or_else(|| bad("lora_parameters", "an object with rank, scale and dropout"))?;
    let num = |k: &str| p.get(k).and_then(Json::as_f64).ok_or_else(|| bad(&format!("lora_parameters.{k}"), "a number"));
    let keys = match p.get("keys") {
        Some(Json::Array(a)) => a.iter().map(|k| k.as_str().map(str::to_string)).collect::<Option<Vec<_>>>().ok_or_else(|| bad("lora_parameters.keys", "a list of strings"))?,
        Some(Json::Null) | None => Vec::new(),
        Some(_) => return Err(bad("lora_parameters.keys", "a list of strings")),
    };
    Ok(LoraConfig {
        rank: num("rank")? as i32,
        scale: num("scale")? as f32,
        dropout: p.get("dropout").and_then(Json::as_f64).unwrap_or(0.0) as f32,
        num_layers: Some(num_layers),
        keys,
        dtype: Dtype::F32,
        seed: None,
    })
}

/// Puts the adapter in folder `dir` on the model: its config decides where adapters go
/// (without `keys`, mlx-lm adapts every projection of a layer, and so does this), its
/// weights replace theirs. Every tensor must be an adapter parameter of the right shape,
/// and every adapter must be in the file. Returns the configuration read (its keys
/// resolved to full in-layer keys) and what was applied.
pub fn load(model: &mut dyn LanguageModel, dir: &Path) -> Result<(LoraConfig, AdapterInfo)> {
    if !dir.is_dir() {
        return Err(Error::Io(format!("{}: the adapter folder does not exist", dir.display())));
    }
    let mut cfg = read_config(dir)?;
    if cfg.keys.is_empty() {
        cfg.keys = model.layer_linears().first().map(|l| l.linears.iter().map(|(k, _)| k.to_string()).collect()).unwrap_or_default();
    }
    let info = apply(model, &cfg)?;
    if let Err(e) = load_weights(model, &dir.join(ADAPTER_FILE)) {
        remove(model);
        return Err(e);
    }
    cfg.keys = info.keys.clone();
    Ok((cfg, info))
}

/// Takes every adapter off the model, leaving the base model as it was loaded.
pub fn remove(model: &mut dyn LanguageModel) {
    for layer in model.layer_linears() {
        for (_, linear) in layer.linears {
            linear.lora = None;
        }
    }
}

/// Reads adapter weights (a folder's `adapters.safetensors`, or a checkpoint to resume
/// from) into the adapters already on the model.
pub fn load_weights(model: &mut dyn LanguageModel, file: &Path) -> Result<()> {
    let mut st = io::load_safetensors(file)?.tensors;
    let shown = |names: Vec<String>| {
        let n = names.len();
        let mut s = names.into_iter().take(4).collect::<Vec<_>>().join(", ");
        if n > 4 {
            s.push_str(", …");
        }
        s
    };
    let expected: Vec<(String, Vec<i32>)> = parameters(model).into_iter().map(|(n, a)| (n, a.shape())).collect();
    let mut values = Vec::with_capacity(expected.len());
    let mut missing = Vec::new();
    for (name, shape) in &expected {
        match st.remove(name) {
            Some(a) if &a.shape() == shape => values.push(a),
            Some(a) => {
                return Err(Error::Weights(format!(
                    "{}: tensor {name} has shape {:?}, the model's adapter expects {shape:?} (an adapter for another model or rank?)",
                    file.display(),
                    a.shape()
                )))
            }
            None => missing.push(name.clone()),
        }
    }
    if !st.is_empty() {
        return Err(Error::Weights(format!(
            "{}: {} tensor(s) are not adapter parameters of this model as configured: {}",
            file.display(),
            st.len(),
            shown(st.into_keys().collect())
        )));
    }
    if !missing.is_empty() {
        return Err(Error::Weights(format!("{}: missing adapter tensor(s): {}", file.display(), shown(missing))));
    }
    // Read now, on this thread, before the model changes (see `apply`).
    crate::mlx::eval(&values.iter().collect::<Vec<_>>())?;
    set_parameters(model, &values)
}
