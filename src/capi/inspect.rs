//! `mlxrun_inspect_attention`: every layer's post-RoPE keys and queries over a prompt.
use std::ffi::c_char;

use super::generate::{call_params, mlxrun_generate_params};
use super::{c_str, guard, mlxrun_model, mlxrun_status, non_null};
use crate::engine::AttentionSnapshot;
use crate::error::Error;

/// The keys and queries of every attention layer over a prompt (see
/// `mlxrun_inspect_attention`). Owns its arrays; released with
/// `mlxrun_attention_snapshot_free`. Immutable: safe to read from several threads.
pub struct mlxrun_attention_snapshot {
    snap: AttentionSnapshot,
}

/// A snapshot's dimensions. Fill `struct_size` before `mlxrun_attention_snapshot_get_info`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct mlxrun_attention_info {
    /// `sizeof(mlxrun_attention_info)`.
    pub struct_size: u32,
    pub num_layers: u32,
    /// Key/value heads (fewer than the query heads under grouped-query attention).
    pub num_heads: u32,
    /// Query heads.
    pub num_query_heads: u32,
    /// Prompt positions (tokens, BOS included when the tokenizer adds it).
    pub seq_len: u32,
    pub head_dim: u32,
    /// Whether queries were captured (always, for this library's models).
    pub has_queries: bool,
    /// NUL-terminated `model_type`, e.g. "gemma3_text", "qwen3".
    pub architecture: [c_char; 32],
}

/// Runs the prefill of `prompt` (NUL-terminated UTF-8, encoded as `mlxrun_generate`
/// encodes it; "" is an error) on fresh caches and captures, for every layer, the keys and
/// queries its attention computed over ALL prompt positions: after the per-head norms and
/// rotary embedding, before the KV cache write. So a Gemma 3 sliding-window layer, whose
/// cache keeps only its window, still gives every position. Float32 whatever the compute
/// dtype. Of `params` (NULL for the defaults) only `prefill_step_size` applies (the
/// prompt goes through in chunks of that many tokens, as a generation's prefill does),
/// with the model's context length. Nothing is generated and the model's metrics are not
/// changed; `mlxrun_cancel` stops it between chunks (MLXRUN_ERR_CANCELLED). On success
/// `*out` owns a new snapshot; on failure it is NULL. Native backend only
/// (MLXRUN_ERR_UNSUPPORTED otherwise). Thread-safe; waits for a running call on the model.
#[no_mangle]
pub unsafe extern "C" fn mlxrun_inspect_attention(
    model: *const mlxrun_model,
    prompt: *const c_char,
    params: *const mlxrun_generate_params,
    out: *mut *mut mlxrun_attention_snapshot,
) -> mlxrun_status {
    guard(|| {
        non_null(out, "out")?;
        *out = std::ptr::null_mut();
        non_null(model, "model")?;
        let prompt = c_str(prompt, "prompt")?;
        let m = &*model;
        let params = call_params(m, params)?;
        let mut guard = m.lock();
        let snap = guard.native("attention inspection")?.inspect_attention(prompt, &params)?;
        *out = Box::into_raw(Box::new(mlxrun_attention_snapshot { snap }));
        Ok(())
    })
}

/// Releases a snapshot. NULL is accepted.
#[no_mangle]
pub unsafe extern "C" fn mlxrun_attention_snapshot_free(snapshot: *mut mlxrun_attention_snapshot) {
    if !snapshot.is_null() {
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| drop(Box::from_raw(snapshot))));
    }
}

/// Writes the snapshot's dimensions into `*out` (whose `struct_size` the caller sets).
#[no_mangle]
pub unsafe extern "C" fn mlxrun_attention_snapshot_get_info(
    snapshot: *const mlxrun_attention_snapshot,
    out: *mut mlxrun_attention_info,
) -> mlxrun_status {
    guard(|| {
        non_null(snapshot, "snapshot")?;
        non_null(out, "out")?;
        let full = std::mem::size_of::<mlxrun_attention_info>();
        let size = (*out).struct_size as usize;
        if size < full {
            return Err(Error::invalid(format!(
                "mlxrun_attention_info.struct_size is {size}, at least {full} expected (set it to sizeof(mlxrun_attention_info))"
            )));
        }
        let s = &(*snapshot).snap;
        let mut info = mlxrun_attention_info {
            struct_size: full as u32,
            num_layers: s.num_layers as u32,
            num_heads: s.num_heads as u32,
            num_query_heads: s.num_query_heads as u32,
            seq_len: s.seq_len as u32,
            head_dim: s.head_dim as u32,
            has_queries: !s.queries.is_empty(),
            architecture: [0; 32],
        };
        super::device::fill(&mut info.architecture, &s.architecture);
        *out = info;
        Ok(())
    })
}

/// The keys of `layer`'s key/value head `head`: `*data` points at `*len` floats
/// (`seq_len * head_dim`, position-major: position p's vector at `p * head_dim`), owned by
/// the snapshot until it is freed. An index out of range is MLXRUN_ERR_INVALID_ARGUMENT.
#[no_mangle]
pub unsafe extern "C" fn mlxrun_attention_snapshot_keys(
    snapshot: *const mlxrun_attention_snapshot,
    layer: u32,
    head: u32,
    data: *mut *const f32,
    len: *mut usize,
) -> mlxrun_status {
    slice_out(snapshot, layer, head, data, len, false)
}

/// As `mlxrun_attention_snapshot_keys`, for the queries of query head `head`.
#[no_mangle]
pub unsafe extern "C" fn mlxrun_attention_snapshot_queries(
    snapshot: *const mlxrun_attention_snapshot,
    layer: u32,
    head: u32,
    data: *mut *const f32,
    len: *mut usize,
) -> mlxrun_status {
    slice_out(snapshot, layer, head, data, len, true)
}

unsafe fn slice_out(
    snapshot: *const mlxrun_attention_snapshot,
    layer: u32,
    head: u32,
    data: *mut *const f32,
    len: *mut usize,
    queries: bool,
) -> mlxrun_status {
    guard(|| {
        non_null(data, "data")?;
        non_null(len, "len")?;
        *data = std::ptr::null();
        *len = 0;
        non_null(snapshot, "snapshot")?;
        let s = &(*snapshot).snap;
        let (what, heads, v) = if queries {
            ("query", s.num_query_heads, s.query(layer as usize, head as usize))
        } else {
            ("key/value", s.num_heads, s.key(layer as usize, head as usize))
        };
        let v = v.ok_or_else(|| {
            Error::invalid(format!(
                "layer {layer}, {what} head {head} is out of range ({} layers, {heads} {what} heads)",
                s.num_layers
            ))
        })?;
        *data = v.as_ptr();
        *len = v.len();
        Ok(())
    })
}
