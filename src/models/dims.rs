//! The architecture dimensions every family shares, and the checks they must pass before
//! any weight is read or any buffer sized from them: a config that is inconsistent or
//! absurd is a `Config` error naming the file, the field and the value, never an
//! allocation sized by a corrupt number or an integer overflow.
use serde_json::Value;

use super::config::ConfigFile;
use crate::error::{Error, Result};
use crate::nn::Rope;

/// Upper bounds far above any released model (largest today, roughly: 25,600 hidden,
/// 106,496 intermediate, 200 layers, 128 heads, 512 head size, 1M vocabulary) and low
/// enough that every product the loader computes in `i32` (heads × head size, MLX's
/// dimension type) stays in range. A value above one is a corrupt or hostile config.
pub const MAX_HIDDEN: i32 = 1 << 20;
pub const MAX_INTERMEDIATE: i32 = 1 << 22;
pub const MAX_LAYERS: i32 = 1 << 14;
pub const MAX_HEADS: i32 = 1 << 14;
pub const MAX_HEAD_DIM: i32 = 1 << 14;
/// Also the bound the sampler's greedy shortcut assumes (exact f32 indices).
pub const MAX_VOCAB: i32 = 1 << 24;

/// The dimensions a family's spec was read with, under the names its config uses.
pub struct Dims {
    pub hidden: i32,
    pub intermediate: i32,
    pub layers: i32,
    pub n_heads: i32,
    pub n_kv_heads: i32,
    pub head_dim: i32,
    /// True when the head size is `hidden_size / num_attention_heads` (no `head_dim`
    /// field): the division must then be exact.
    pub head_dim_derived: bool,
    pub vocab: i32,
    pub norm_eps: f32,
    /// Each rotary embedding: its base with the field it came from (`rope_theta`,
    /// `rope_local_base_freq`), and its scaling entry (`rope_scaling`) if any.
    pub ropes: Vec<(&'static str, f32, Option<Value>)>,
}

impl Dims {
    /// Checks the dimensions read from `cfg` (whose path and section name the fields).
    pub fn check(&self, cfg: &ConfigFile) -> Result<()> {
        // First: a derived head size of 0 (hidden < heads) is this problem, not a bound's.
        if self.head_dim_derived && self.hidden % self.n_heads != 0 {
            return Err(self.config(
                cfg,
                &format!(
                    "{:?} ({}) is not a multiple of {:?} ({}), and there is no {:?} to give the head size",
                    cfg.field("hidden_size"),
                    self.hidden,
                    cfg.field("num_attention_heads"),
                    self.n_heads,
                    cfg.field("head_dim")
                ),
            ));
        }
        let bounded = [
            ("hidden_size", self.hidden, MAX_HIDDEN),
            ("intermediate_size", self.intermediate, MAX_INTERMEDIATE),
            ("num_hidden_layers", self.layers, MAX_LAYERS),
            ("num_attention_heads", self.n_heads, MAX_HEADS),
            ("num_key_value_heads", self.n_kv_heads, MAX_HEADS),
            ("head_dim", self.head_dim, MAX_HEAD_DIM),
            ("vocab_size", self.vocab, MAX_VOCAB),
        ];
        for (field, value, max) in bounded {
            // Positivity is checked where the field is read, but a head size may be derived.
            if value < 1 || value > max {
                return Err(self.config(cfg, &format!("field {:?} is {value}; it must be between 1 and {max}", cfg.field(field))));
            }
        }
        if self.head_dim % 2 != 0 {
            let from = if self.head_dim_derived { " (hidden_size / num_attention_heads)" } else { "" };
            return Err(self.config(
                cfg,
                &format!("the head size{from} is {}; rotary embeddings need an even head size", self.head_dim),
            ));
        }
        if self.n_heads % self.n_kv_heads != 0 {
            return Err(self.config(
                cfg,
                &format!(
                    "{:?} ({}) must be a multiple of {:?} ({}): each key/value head serves a whole group of query heads",
                    cfg.field("num_attention_heads"),
                    self.n_heads,
                    cfg.field("num_key_value_heads"),
                    self.n_kv_heads
                ),
            ));
        }
        if !(self.norm_eps.is_finite() && self.norm_eps >= 0.0) {
            return Err(self.config(
                cfg,
                &format!("field {:?} is {}; it must be a finite number >= 0", cfg.field("rms_norm_eps"), self.norm_eps),
            ));
        }
        for (field, base, scaling) in &self.ropes {
            if !(base.is_finite() && *base > 0.0) {
                return Err(self.config(
                    cfg,
                    &format!("field {:?} is {base}; a rotary base must be a finite number > 0", cfg.field(field)),
                ));
            }
            // The scaling kind and its numbers, as the layers will build it (a few floats).
            Rope::from_config(self.head_dim, *base, false, scaling.as_ref()).map_err(|e| match e {
                Error::Config(m) => self.config(cfg, &m),
                other => other,
            })?;
        }
        Ok(())
    }

    fn config(&self, cfg: &ConfigFile, msg: &str) -> Error {
        Error::Config(format!("{}: {msg}", cfg.path.display()))
    }
}
