//! Capturing the queries and keys attention computes, for inspecting a model
//! (`Model::inspect_attention`).
//!
//! The sink is per thread: every forward pass of one call runs on the calling thread (MLX's
//! streams are per thread too), and a thread-local lets the one attention layer all
//! families share record what it computes without a parameter threaded through every
//! family's forward pass, the `LanguageModel` trait and the KV caches. While no capture is
//! active, attention pays one thread-local check per layer.
use std::cell::RefCell;

use crate::error::Result;
use crate::mlx::Array;

/// What one attention layer computed for the positions of one forward pass, after the
/// per-head norms and rotary embedding, before the KV cache saw them.
pub struct Captured {
    /// `[batch, n_heads, seq, head_dim]`.
    pub queries: Array,
    /// `[batch, n_kv_heads, seq, head_dim]`.
    pub keys: Array,
}

thread_local! {
    static SINK: RefCell<Option<Vec<Captured>>> = const { RefCell::new(None) };
}

/// Runs `f` with capturing on; returns its result and what every attention layer it ran
/// recorded, in call order (layer 0..n of the first forward pass, then of the next).
/// Capturing ends when `f` returns or fails.
pub fn capturing<R>(f: impl FnOnce() -> Result<R>) -> Result<(R, Vec<Captured>)> {
    struct Restore(Option<Vec<Captured>>);
    impl Drop for Restore {
        fn drop(&mut self) {
            let outer = self.0.take();
            SINK.with(|s| *s.borrow_mut() = outer);
        }
    }
    // A capture inside a capture keeps the outer one's records apart.
    let restore = Restore(SINK.with(|s| s.borrow_mut().replace(Vec::new())));
    let out = f();
    let captured = SINK.with(|s| s.borrow_mut().take()).unwrap_or_default();
    drop(restore);
    Ok((out?, captured))
}

/// Records one layer's queries and keys when a capture is active (cheap handle clones).
pub(crate) fn record(queries: &Array, keys: &Array) {
    SINK.with(|s| {
        if let Some(v) = s.borrow_mut().as_mut() {
            v.push(Captured { queries: queries.clone(), keys: keys.clone() });
        }
    });
}
