//! Building blocks shared by the model families: linear layers and embeddings (dense or
//! quantized), norms, rotary embeddings, attention and KV caches. Each computes exactly what mlx-lm's counterpart
//! computes (same ops in the same order), so that greedy tokens match it bit for bit.
pub mod attention;
mod banded;
pub mod batch_kv_cache;
pub mod capture;
pub mod embedding;
pub mod kv_cache;
pub mod linear;
pub mod lora;
pub mod mlp;
pub mod norm;
pub mod quantized;
pub mod quantized_kv_cache;
pub mod rope;
pub mod stacked;

pub use attention::{causal_mask, Attention, AttentionConfig, Mask};
pub use batch_kv_cache::BatchKvCache;
pub use embedding::Embedding;
pub use kv_cache::{FullKvCache, KvCache, RotatingKvCache};
pub use linear::Linear;
pub use lora::Lora;
pub use mlp::{Activation, SwiGlu};
pub use norm::RmsNorm;
pub use quantized::Weight;
pub use quantized_kv_cache::KvQuantization;
pub use rope::Rope;
