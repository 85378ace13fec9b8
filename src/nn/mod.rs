//! Building blocks shared by the model families: linear layers, embeddings, norms, rotary
//! embeddings, attention and KV caches. Each computes exactly what mlx-lm's counterpart
//! computes (same ops in the same order), so that greedy tokens match it bit for bit.
pub mod attention;
pub mod embedding;
pub mod kv_cache;
pub mod linear;
pub mod mlp;
pub mod norm;
pub mod rope;

pub use attention::{Attention, AttentionConfig};
pub use embedding::Embedding;
pub use kv_cache::KvCache;
pub use linear::Linear;
pub use mlp::SwiGlu;
pub use norm::RmsNorm;
pub use rope::Rope;
