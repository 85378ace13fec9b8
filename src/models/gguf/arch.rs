//! From a GGUF file's metadata to the HF `config.json` our families read, and from
//! llama.cpp's tensor names and conventions back to HF's.
//!
//! llama.cpp's converter renames every tensor (`blk.0.attn_q.weight` for
//! `model.layers.0.self_attn.q_proj.weight`), stores the configuration under
//! `{architecture}.*` keys, and changes two things that must be undone:
//! - for the `llama` architecture it permutes the rows of the query and key projections so
//!   that its interleaved (GPT-J style) rotary embedding computes what HF's half-split one
//!   does; the permutation is undone here and the model keeps HF's rotary;
//! - Gemma's RMS norms scale by `1 + weight`; llama.cpp stores `1 + weight` so that its
//!   norm is a plain one, and 1 is subtracted here again.
use serde_json::{json, Map, Value as Json};

use super::reader::{GgufFile, Value};
use crate::error::{Error, Result};

/// The architectures whose GGUF files load.
pub const SUPPORTED: &[&str] = &["gemma3", "llama", "qwen2", "qwen3"];

/// What the loader needs to know about a file's architecture.
#[derive(Clone, Debug)]
pub struct Arch {
    /// `general.architecture`.
    pub name: String,
    /// The equivalent HF configuration (`model_type` and the fields its family reads).
    pub config: Json,
    /// Query/key rows are stored permuted for interleaved rotary (llama-family files).
    pub permuted_qk: bool,
    /// Norm weights are stored with 1 added (Gemma).
    pub norm_plus_one: bool,
    pub n_heads: u64,
    pub n_kv_heads: u64,
}

/// Typed reads of `{arch}.*` metadata with errors that name the file and the key.
struct Meta<'a> {
    f: &'a GgufFile,
    arch: &'a str,
}

impl Meta<'_> {
    fn key(&self, k: &str) -> String {
        format!("{}.{k}", self.arch)
    }

    fn get(&self, k: &str) -> Option<&Value> {
        self.f.get(&self.key(k))
    }

    fn bad(&self, k: &str, want: &str, v: &Value) -> Error {
        Error::Config(format!(
            "{}: metadata {} must be {want}, found {} {v}",
            self.f.path.display(),
            self.key(k),
            v.type_name()
        ))
    }

    fn opt_dim(&self, k: &str) -> Result<Option<u64>> {
        match self.get(k) {
            None => Ok(None),
            Some(v) => match v.as_i64() {
                Some(n) if n > 0 && n <= i32::MAX as i64 => Ok(Some(n as u64)),
                _ => Err(self.bad(k, "a positive integer", v)),
            },
        }
    }

    fn dim(&self, k: &str) -> Result<u64> {
        self.opt_dim(k)?.ok_or_else(|| {
            Error::Config(format!("{}: required metadata {} is missing", self.f.path.display(), self.key(k)))
        })
    }

    fn opt_f64(&self, k: &str) -> Result<Option<f64>> {
        match self.get(k) {
            None => Ok(None),
            Some(v) => v.as_f64().map(Some).ok_or_else(|| self.bad(k, "a number", v)),
        }
    }
}

/// Reads the architecture and its configuration. An architecture other than the supported
/// ones is an error naming it.
pub fn read(f: &GgufFile) -> Result<Arch> {
    let name = f.architecture()?.to_string();
    if !SUPPORTED.contains(&name.as_str()) {
        return Err(Error::Config(format!(
            "{}: architecture {name:?} is not supported (supported: {})",
            f.path.display(),
            SUPPORTED.join(", ")
        )));
    }
    let m = Meta { f, arch: &name };
    let hidden = m.dim("embedding_length")?;
    let n_heads = m.dim("attention.head_count")?;
    let n_kv_heads = m.opt_dim("attention.head_count_kv")?.unwrap_or(n_heads);
    if n_heads % n_kv_heads != 0 {
        return Err(Error::Config(format!(
            "{}: {} ({n_heads}) is not a multiple of {} ({n_kv_heads})",
            f.path.display(),
            m.key("attention.head_count"),
            m.key("attention.head_count_kv")
        )));
    }
    let head_dim = match m.opt_dim("attention.key_length")? {
        Some(d) => d,
        None if hidden % n_heads == 0 => hidden / n_heads,
        None => {
            return Err(Error::Config(format!(
                "{}: {} is missing and {} ({hidden}) is not a multiple of the {n_heads} heads",
                f.path.display(),
                m.key("attention.key_length"),
                m.key("embedding_length")
            )))
        }
    };
    if let Some(v) = m.opt_dim("attention.value_length")? {
        if v != head_dim {
            return Err(Error::Config(format!(
                "{}: {} ({v}) differs from the key length ({head_dim}); such attention is not supported",
                f.path.display(),
                m.key("attention.value_length")
            )));
        }
    }
    if let Some(r) = m.opt_dim("rope.dimension_count")? {
        if r != head_dim {
            return Err(Error::Config(format!(
                "{}: {} is {r} but heads have {head_dim} dimensions; partial rotary embeddings are not supported",
                f.path.display(),
                m.key("rope.dimension_count")
            )));
        }
    }
    let rope_factors = rope_factors(f, head_dim)?;
    let embed = f.tensor("token_embd.weight").ok_or_else(|| f.err("tensor token_embd.weight is missing"))?;
    let vocab = *embed.dims.get(1).ok_or_else(|| f.err("tensor token_embd.weight is not a matrix"))?;
    let rope_scaling = rope_scaling(&m)?;

    let mut c = Map::new();
    c.insert("hidden_size".into(), json!(hidden));
    c.insert("intermediate_size".into(), json!(m.dim("feed_forward_length")?));
    c.insert("num_hidden_layers".into(), json!(m.dim("block_count")?));
    c.insert("num_attention_heads".into(), json!(n_heads));
    c.insert("num_key_value_heads".into(), json!(n_kv_heads));
    c.insert("head_dim".into(), json!(head_dim));
    c.insert("vocab_size".into(), json!(vocab));
    let eps = m.opt_f64("attention.layer_norm_rms_epsilon")?.ok_or_else(|| {
        Error::Config(format!(
            "{}: required metadata {} is missing",
            f.path.display(),
            m.key("attention.layer_norm_rms_epsilon")
        ))
    })?;
    c.insert("rms_norm_eps".into(), json!(eps));
    if let Some(n) = m.opt_dim("context_length")? {
        c.insert("max_position_embeddings".into(), json!(n));
    }
    match (rope_scaling, rope_factors) {
        (Some(_), Some(_)) => {
            return Err(Error::Config(format!(
                "{}: the file has both {} and tensor {ROPE_FACTORS}; one rotary scaling at a time is supported",
                f.path.display(),
                m.key("rope.scaling.type")
            )))
        }
        (Some(s), None) => {
            c.insert("rope_scaling".into(), s);
        }
        (None, Some(factors)) => {
            c.insert("rope_scaling".into(), json!({"rope_type": FREQ_FACTORS, "factors": factors}));
        }
        (None, None) => {}
    }
    let tied = f.tensor("output.weight").is_none();
    c.insert("tie_word_embeddings".into(), json!(tied));
    let base = m.opt_f64("rope.freq_base")?;

    let (model_type, permuted_qk, norm_plus_one) = match name.as_str() {
        "llama" => {
            c.insert("rope_theta".into(), json!(base.unwrap_or(10_000.0)));
            let bias = f.tensor("blk.0.attn_q.bias").is_some();
            c.insert("attention_bias".into(), json!(bias));
            c.insert("mlp_bias".into(), json!(f.tensor("blk.0.ffn_up.bias").is_some()));
            ("llama", true, false)
        }
        "qwen2" => {
            c.insert("rope_theta".into(), json!(base.unwrap_or(1_000_000.0)));
            if head_dim * n_heads != hidden {
                return Err(Error::Config(format!(
                    "{}: qwen2 heads must split the hidden size evenly ({n_heads} × {head_dim} ≠ {hidden})",
                    f.path.display()
                )));
            }
            ("qwen2", false, false)
        }
        "qwen3" => {
            c.insert("rope_theta".into(), json!(base.unwrap_or(1_000_000.0)));
            ("qwen3", false, false)
        }
        "gemma3" => {
            // llama.cpp keeps these fixed for Gemma 3 rather than storing them: local
            // layers use base 10000, every 6th layer is global, and attention is scaled by
            // head_dim^-0.5 except in the 27B model (hidden 5376), which uses
            // (hidden / heads)^-0.5.
            c.insert("rope_theta".into(), json!(base.unwrap_or(1_000_000.0)));
            c.insert("rope_local_base_freq".into(), json!(10_000.0));
            c.insert("sliding_window_pattern".into(), json!(6));
            if let Some(w) = m.opt_dim("attention.sliding_window")? {
                c.insert("sliding_window".into(), json!(w));
            }
            let scalar = if hidden == 5376 { hidden / n_heads } else { head_dim };
            c.insert("query_pre_attn_scalar".into(), json!(scalar));
            if let Some(cap) = m.opt_f64("final_logit_softcapping")? {
                c.insert("final_logit_softcapping".into(), json!(cap));
            }
            ("gemma3_text", false, true)
        }
        _ => unreachable!("checked against SUPPORTED above"),
    };
    c.insert("model_type".into(), json!(model_type));
    Ok(Arch { name, config: Json::Object(c), permuted_qk, norm_plus_one, n_heads, n_kv_heads })
}

/// The tensor of per-frequency rotary factors (Llama 3.1 and later files): frequency i is
/// divided by factor i. It configures the rotary embedding and is no weight.
pub const ROPE_FACTORS: &str = "rope_freqs.weight";

/// The `rope_type` under which the factors reach `nn::rope` (the engine's own kind; HF
/// configs state the same scaling as `llama3`, see `hf_config`).
pub const FREQ_FACTORS: &str = "freq_factors";

/// Whether tensor `name` configures the model rather than being one of its weights.
pub fn is_config_tensor(name: &str) -> bool {
    name == ROPE_FACTORS
}

/// `rope_freqs.weight`, if the file has it: one positive factor per rotary pair.
fn rope_factors(f: &GgufFile, head_dim: u64) -> Result<Option<Vec<f32>>> {
    let Some(t) = f.tensor(ROPE_FACTORS) else { return Ok(None) };
    let factors = f.read_f32(t)?;
    if t.dims.len() != 1 || factors.len() as u64 != head_dim / 2 {
        return Err(f.err(format!(
            "tensor {ROPE_FACTORS} has shape {:?}; expected [{}], one factor per rotary pair of the {head_dim}-dimensional heads",
            t.shape(),
            head_dim / 2
        )));
    }
    if let Some((i, x)) = factors.iter().enumerate().find(|(_, x)| !(x.is_finite() && **x > 0.0)) {
        return Err(f.err(format!("tensor {ROPE_FACTORS} holds {x} at {i}; rotary factors must be positive")));
    }
    Ok(Some(factors))
}

/// The HF `config.json` equivalent of `arch.config`: per-frequency rotary factors become the
/// `llama3` scaling that produces them (as llama.cpp's converter computes them from it); any
/// other factors have no HF equivalent and are an error naming the tensor.
pub fn hf_config(f: &GgufFile, arch: &Arch) -> Result<Json> {
    let mut config = arch.config.clone();
    let Some(scaling) = config.get_mut("rope_scaling") else { return Ok(config) };
    if scaling.get("rope_type").and_then(Json::as_str) != Some(FREQ_FACTORS) {
        return Ok(config);
    }
    let factors: Vec<f64> =
        scaling["factors"].as_array().map(|a| a.iter().filter_map(Json::as_f64).collect()).unwrap_or_default();
    let base = arch.config.get("rope_theta").and_then(Json::as_f64).unwrap_or(10_000.0);
    let dims = 2 * factors.len();
    *scaling = llama3_scaling(&factors, base, dims).ok_or_else(|| {
        f.err(format!(
            "tensor {ROPE_FACTORS} ({factors:?}) is not Llama 3's rotary scaling (llama3) for base {base} and {dims} dimensions, and HF configs cannot state other per-frequency factors"
        ))
    })?;
    Ok(config)
}

/// The `llama3` `rope_scaling` whose factors (by llama.cpp's formula) are `factors`, if any.
/// The scaling factor is the last (lowest-frequency) one; the band edges are fitted to the
/// smoothly blended factors when there are two or more, else Llama 3.1's are tried.
fn llama3_scaling(factors: &[f64], base: f64, dims: usize) -> Option<Json> {
    let factor = *factors.last()?;
    if factor <= 1.0 {
        return None;
    }
    let wavelen = |i: usize| 2.0 * std::f64::consts::PI * base.powf((2 * i) as f64 / dims as f64);
    // Blended: 1/f = (1 - s)/factor + s, with s = old/(λ(high - low)) - low/(high - low).
    let blended: Vec<(f64, f64)> = factors
        .iter()
        .enumerate()
        .filter(|(_, &x)| (x - 1.0).abs() > 1e-6 && (x - factor).abs() > 1e-6 * factor)
        .map(|(i, &x)| (1.0 / wavelen(i), (1.0 / x - 1.0 / factor) / (1.0 - 1.0 / factor)))
        .collect();
    let mut candidates = vec![(1.0, 4.0, 8192.0)];
    if let [(x0, s0), .., (x1, s1)] = blended[..] {
        // s = a·x + b with a = old/(high - low), b = -low/(high - low); with low = 1:
        let a = (s1 - s0) / (x1 - x0);
        let b = s0 - a * x0;
        if b < 0.0 {
            // Configs state these as short decimals; the check below takes them exactly.
            let high = ((1.0 - 1.0 / b) * 1e4).round() / 1e4;
            candidates.insert(0, (1.0, high, (a * (high - 1.0)).round()));
        }
    }
    candidates.into_iter().find_map(|(low, high, old): (f64, f64, f64)| {
        let ok = factors.iter().enumerate().all(|(i, &x)| {
            let w = wavelen(i);
            let want = if w < old / high {
                1.0
            } else if w > old / low {
                factor
            } else {
                let s = (old / w - low) / (high - low);
                1.0 / ((1.0 - s) / factor + s)
            };
            (x - want).abs() <= 1e-5 * want
        });
        ok.then(|| {
            json!({"rope_type": "llama3", "factor": factor, "low_freq_factor": low,
                   "high_freq_factor": high, "original_max_position_embeddings": old as u64})
        })
    })
}

/// `{arch}.rope.scaling.*` as HF's `rope_scaling`.
fn rope_scaling(m: &Meta<'_>) -> Result<Option<Json>> {
    let kind = match m.get("rope.scaling.type") {
        None => return Ok(None),
        Some(Value::Str(s)) => s.clone(),
        Some(v) => return Err(m.bad("rope.scaling.type", "a string", v)),
    };
    match kind.as_str() {
        "none" => Ok(None),
        "linear" => {
            let factor = m.opt_f64("rope.scaling.factor")?.ok_or_else(|| {
                Error::Config(format!("{}: {} is missing", m.f.path.display(), m.key("rope.scaling.factor")))
            })?;
            Ok(if factor == 1.0 { None } else { Some(json!({"rope_type": "linear", "factor": factor})) })
        }
        other => Err(Error::Config(format!(
            "{}: {} {other:?} is not supported (supported: none, linear)",
            m.f.path.display(),
            m.key("rope.scaling.type")
        ))),
    }
}

/// The HF name of a llama.cpp tensor name, or `None` for a name this architecture does not
/// have.
pub fn hf_name(arch: &Arch, name: &str) -> Option<String> {
    let top = match name {
        "token_embd.weight" => Some("model.embed_tokens.weight"),
        "output_norm.weight" => Some("model.norm.weight"),
        "output.weight" => Some("lm_head.weight"),
        _ => None,
    };
    if let Some(t) = top {
        return Some(t.to_string());
    }
    let rest = name.strip_prefix("blk.")?;
    let (layer, rest) = rest.split_once('.')?;
    layer.parse::<u32>().ok()?;
    let (part, suffix) = rest.rsplit_once('.')?;
    if suffix != "weight" && suffix != "bias" {
        return None;
    }
    let gemma = arch.name == "gemma3";
    let hf = match part {
        "attn_norm" => "input_layernorm",
        "attn_q" => "self_attn.q_proj",
        "attn_k" => "self_attn.k_proj",
        "attn_v" => "self_attn.v_proj",
        "attn_output" => "self_attn.o_proj",
        "attn_q_norm" => "self_attn.q_norm",
        "attn_k_norm" => "self_attn.k_norm",
        "ffn_gate" => "mlp.gate_proj",
        "ffn_up" => "mlp.up_proj",
        "ffn_down" => "mlp.down_proj",
        // Llama-style layers have one norm before the MLP, which HF calls the
        // post-attention norm; Gemma has four, named for where they sit.
        "ffn_norm" if gemma => "pre_feedforward_layernorm",
        "ffn_norm" => "post_attention_layernorm",
        "post_attention_norm" if gemma => "post_attention_layernorm",
        "post_ffw_norm" if gemma => "post_feedforward_layernorm",
        _ => return None,
    };
    Some(format!("model.layers.{layer}.{hf}.{suffix}"))
}

/// Heads of the query or key projection whose rows llama.cpp permuted, if `name` is one.
pub fn permuted_heads(arch: &Arch, name: &str) -> Option<u64> {
    if !arch.permuted_qk || !name.starts_with("blk.") {
        return None;
    }
    let part = name.rsplit('.').nth(1)?;
    match part {
        "attn_q" => Some(arch.n_heads),
        "attn_k" => Some(arch.n_kv_heads),
        _ => None,
    }
}

/// Undoes llama.cpp's rotary permutation of a `[rows, cols]` matrix (or a `[rows]` bias)
/// with `heads` heads. llama.cpp made, per head of `d` rows, row `2j + a` out of HF's row
/// `a * d/2 + j` (`reshape(heads, 2, d/2, …).swapaxes(1, 2)`); this puts each back.
pub fn unpermute_rows(data: &[f32], rows: usize, cols: usize, heads: usize) -> Option<Vec<f32>> {
    if heads == 0 || rows % heads != 0 || (rows / heads) % 2 != 0 || data.len() != rows * cols {
        return None;
    }
    let d = rows / heads;
    let half = d / 2;
    let mut out = vec![0f32; data.len()];
    for h in 0..heads {
        for a in 0..2 {
            for j in 0..half {
                let hf = h * d + a * half + j;
                let gg = h * d + 2 * j + a;
                out[hf * cols..(hf + 1) * cols].copy_from_slice(&data[gg * cols..(gg + 1) * cols]);
            }
        }
    }
    Some(out)
}
