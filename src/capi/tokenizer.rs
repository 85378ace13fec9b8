//! Text to token ids and back, with the model's tokenizer.
use std::ffi::c_char;

use super::{c_str, guard, mlxrun_model, mlxrun_status, non_null, token_ids, write_c_string};
use crate::error::Error;

/// Encodes `text` (NUL-terminated UTF-8). With `add_special_tokens`, the tokens the
/// tokenizer adds (such as BOS) are added. Writes up to `capacity` ids to `out_tokens`
/// and the number of ids to `*n_tokens`; when `capacity` is too small (or `out_tokens` is
/// NULL) nothing is written but `*n_tokens`, and the status is MLXRUN_ERR_BUFFER_TOO_SMALL
/// — call again with a buffer that large. Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn mlxrun_tokenize(
    model: *const mlxrun_model,
    text: *const c_char,
    add_special_tokens: bool,
    out_tokens: *mut i32,
    capacity: usize,
    n_tokens: *mut usize,
) -> mlxrun_status {
    guard(|| {
        non_null(model, "model")?;
        non_null(n_tokens, "n_tokens")?;
        let text = c_str(text, "text")?;
        let ids = (*model).encode(text, add_special_tokens)?;
        *n_tokens = ids.len();
        if out_tokens.is_null() || capacity < ids.len() {
            return Err(too_small(ids.len(), capacity));
        }
        for (i, id) in ids.iter().enumerate() {
            *out_tokens.add(i) = *id as i32;
        }
        Ok(())
    })
}

/// Decodes `n_tokens` ids into `buf` as NUL-terminated UTF-8. `*needed` receives the
/// size the text needs including its NUL; when `capacity` is smaller (or `buf` is NULL)
/// nothing is written but `*needed`, and the status is MLXRUN_ERR_BUFFER_TOO_SMALL.
/// With `skip_special_tokens`, special tokens are left out. Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn mlxrun_detokenize(
    model: *const mlxrun_model,
    tokens: *const i32,
    n_tokens: usize,
    skip_special_tokens: bool,
    buf: *mut c_char,
    capacity: usize,
    needed: *mut usize,
) -> mlxrun_status {
    guard(|| {
        non_null(model, "model")?;
        let ids = token_ids(tokens, n_tokens, "tokens")?;
        let text = (*model).decode(&ids, skip_special_tokens)?;
        write_c_string(&text, buf, capacity, needed)
    })
}

fn too_small(needed: usize, capacity: usize) -> Error {
    Error::BufferTooSmall(format!("the buffer holds {capacity} ids, {needed} needed"))
}
