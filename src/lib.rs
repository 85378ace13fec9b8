//! mlxrun: LLM inference and fine-tuning on Apple's MLX, embeddable from any language
//! through a C ABI.
//!
//! Layers, each depending only on those below it:
//! - `mlx`: the safe array layer over the project's C++ shim (`src/shim`).
//! - `nn`: layers shared by model families (linear, norms, rotary, attention, KV cache).
//! - `models`: one file per family, config and weight loading.
//! - `tokenizer`: HF tokenizers, special tokens, streaming detokenization.
//! - `engine`: sampling, the generate loop, metrics, `Model` (text in, text out).
//! - `chat`: the model's chat template, `Model::chat`, and chat sessions that keep their
//!   KV cache between turns.
//! - `train`: LoRA fine-tuning: adapters, mlx-lm's datasets, the loss, optimizers, the
//!   training loop, adapter folders in mlx-lm's layout.
//! - `cli`: the `mlxrun` command-line program.
//! - `capi`: the C API (include/mlxrun.h), the contract with every other language.
pub mod capi;
pub mod chat;
pub mod cli;
pub mod engine;
pub mod error;
pub mod mlx;
pub mod models;
pub mod serve;
pub mod nn;
pub mod tokenizer;
pub mod train;

pub use chat::{ChatOptions, ChatSession, ChatTemplate, Message};
pub use engine::{GenerateParams, Generation, Model, SamplerParams};
pub use error::{Error, Result};
pub use engine::discover::{discover, DiscoverOptions, DiscoveredModel};
pub use models::LoadOptions;

// On macOS MLX (with Metal) is compiled and linked by mlx-sys; the shim calls into it.
#[cfg(target_os = "macos")]
use mlx_sys as _;
