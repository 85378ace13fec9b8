//! mlxrun: LLM inference and fine-tuning on Apple's MLX, embeddable from any language
//! through a C ABI.
//!
//! Layers, each depending only on those below it:
//! - `mlx`: the safe array layer over the project's C++ shim (`src/shim`).
pub mod error;
pub mod mlx;

pub use error::{Error, Result};

// On macOS MLX (with Metal) is compiled and linked by mlx-sys; the shim calls into it.
#[cfg(target_os = "macos")]
use mlx_sys as _;
