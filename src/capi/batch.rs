//! Batched inference: classify many prompts with one prefill per batch, and generate from
//! many prompts with continuous batching.
use std::ffi::{c_char, c_void};

use super::generate::{c_token, finish_code, mlxrun_finish_reason, mlxrun_generate_params, mlxrun_token, to_params};
use super::{c_str, guard, status_of, mlxrun_model, mlxrun_status, non_null, read_params};
use crate::engine::{BatchParams, TokenEvent};
use crate::error::{Error, Result};

/// Batch settings. Get one from `mlxrun_batch_default_params()`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct mlxrun_batch_params {
    /// `sizeof(mlxrun_batch_params)`.
    pub struct_size: u32,
    /// Most rows computed together; 0 = automatic (chosen from the memory limit and
    /// prompt lengths).
    pub max_batch_size: u32,
    /// Classify: fill the caller's logits buffer.
    pub return_logits: bool,
}

const BATCH_PARAMS_V1: usize = std::mem::size_of::<mlxrun_batch_params>();

/// Default batch settings: automatic batch size, no logits.
#[no_mangle]
pub extern "C" fn mlxrun_batch_default_params() -> mlxrun_batch_params {
    mlxrun_batch_params { struct_size: BATCH_PARAMS_V1 as u32, max_batch_size: 0, return_logits: false }
}

/// One prompt's classification.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct mlxrun_classify_result {
    /// `mlxrun_status` of this prompt (MLXRUN_OK, or e.g. MLXRUN_ERR_INVALID_ARGUMENT for
    /// an empty or too long prompt).
    pub status: i32,
    /// The chosen next token (greedy or sampled per the generate params); -1 on error.
    pub token: i32,
    /// Its log-probability when `logprobs` was asked for, else NaN.
    pub logprob: f32,
    /// Length of the encoded prompt.
    pub prompt_tokens: u32,
    /// NUL-terminated message when `status` is not MLXRUN_OK (truncated at a character
    /// boundary).
    pub error: [c_char; 256],
}

/// One row of a batch generation, reported at the end.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct mlxrun_batch_result {
    /// `mlxrun_status` of this prompt.
    pub status: i32,
    /// `mlxrun_finish_reason`.
    pub finish_reason: i32,
    pub prompt_tokens: u32,
    pub generated_tokens: u32,
    pub error: [c_char; 256],
}

/// Receives each new token of row `index` (streamed in the order rows produce them, on the
/// calling thread). Return false to stop THAT row (its finish_reason becomes
/// MLXRUN_FINISH_CALLBACK); the other rows go on. `mlxrun_cancel(model)` stops all rows
/// (MLXRUN_FINISH_CANCELLED).
pub type mlxrun_batch_callback =
    Option<unsafe extern "C" fn(index: usize, token: *const mlxrun_token, user_data: *mut c_void) -> bool>;

/// Copies `msg` into a fixed message field, cut at a character boundary, NUL-terminated.
fn write_error(dst: &mut [c_char; 256], msg: &str) {
    let mut n = msg.len().min(dst.len() - 1);
    while !msg.is_char_boundary(n) {
        n -= 1;
    }
    for (d, &b) in dst.iter_mut().zip(&msg.as_bytes()[..n]) {
        *d = b as c_char;
    }
    dst[n] = 0;
}

/// The status code and message of a per-prompt failure.
fn row_error(e: &Error, out: &mut [c_char; 256]) -> i32 {
    let status = status_of(e);
    write_error(out, &e.to_string());
    status as i32
}

/// The prompts, the batch settings (with the model's context length) and the results
/// array of a batch call.
unsafe fn batch_inputs<'a, R>(
    model: *mut mlxrun_model,
    prompts: *const *const c_char,
    n_prompts: usize,
    batch: *const mlxrun_batch_params,
    results: *mut R,
) -> Result<(&'a mlxrun_model, Vec<&'a str>, BatchParams, &'a mut [R])> {
    non_null(model, "model")?;
    non_null(prompts, "prompts")?;
    non_null(results, "results")?;
    if n_prompts == 0 {
        return Err(Error::invalid("n_prompts is 0: give at least one prompt"));
    }
    let p = read_params(batch, mlxrun_batch_default_params(), BATCH_PARAMS_V1, "mlxrun_batch_params")?;
    let texts = std::slice::from_raw_parts(prompts, n_prompts)
        .iter()
        .enumerate()
        .map(|(i, &s)| c_str(s, &format!("prompts[{i}]")))
        .collect::<Result<Vec<&str>>>()?;
    let m = &*model;
    let params = BatchParams {
        max_batch_size: p.max_batch_size as usize,
        return_logits: p.return_logits,
        context_length: m.context_length,
    };
    Ok((m, texts, params, std::slice::from_raw_parts_mut(results, n_prompts)))
}

/// Prefill only: the token after each prompt's last position. `prompts`: `n_prompts`
/// NUL-terminated UTF-8 strings, encoded like `mlxrun_generate` encodes a prompt. `gen`:
/// sampling settings (max_tokens and stop settings ignored); NULL = defaults (greedy).
/// `batch`: NULL = defaults. `results`: caller array of `n_prompts`. `logits`: NULL, or a
/// caller buffer of `n_prompts * vocab_size` floats, filled (row i = prompt i's
/// last-position logits, float32) when `batch->return_logits`; rows of failed prompts are
/// left untouched. Returns MLXRUN_OK when the call ran (per-prompt failures are in
/// `results[i].status`), an error status for call-level failures. Thread-safe: calls on
/// one model run one after another.
#[no_mangle]
pub unsafe extern "C" fn mlxrun_classify(
    model: *mut mlxrun_model,
    prompts: *const *const c_char,
    n_prompts: usize,
    gen: *const mlxrun_generate_params,
    batch: *const mlxrun_batch_params,
    results: *mut mlxrun_classify_result,
    logits: *mut f32,
) -> mlxrun_status {
    guard(|| {
        let (m, texts, mut params, results) = batch_inputs(model, prompts, n_prompts, batch, results)?;
        let gen = to_params(gen)?;
        params.return_logits &= !logits.is_null();
        let mut model = m.lock();
        let vocab = model.info().vocab_size as usize;
        let out = model.classify(&texts, &gen, &params)?;
        if let Some(metrics) = model.last_metrics() {
            *m.metrics.lock().unwrap_or_else(|p| p.into_inner()) = Some(metrics.clone());
        }
        drop(model);
        for (i, (r, res)) in out.into_iter().zip(results.iter_mut()).enumerate() {
            let mut error = [0 as c_char; 256];
            *res = match r {
                Ok(c) => {
                    if let (Some(l), false) = (&c.logits, logits.is_null()) {
                        std::ptr::copy_nonoverlapping(l.as_ptr(), logits.add(i * vocab), vocab);
                    }
                    mlxrun_classify_result {
                        status: mlxrun_status::MLXRUN_OK as i32,
                        token: c.token as i32,
                        logprob: c.logprob.unwrap_or(f32::NAN),
                        prompt_tokens: c.prompt_tokens.len() as u32,
                        error,
                    }
                }
                Err(e) => mlxrun_classify_result {
                    status: row_error(&e, &mut error),
                    token: -1,
                    logprob: f32::NAN,
                    prompt_tokens: m.prompt_len(texts[i]),
                    error,
                },
            };
        }
        Ok(())
    })
}

/// Continuous batching: all prompts are generated with `gen`'s settings (NULL =
/// defaults); rows that finish leave the batch and waiting prompts join it. `batch`: NULL
/// = defaults. `callback` may be NULL. `results`: caller array of `n_prompts`, filled when
/// the call returns MLXRUN_OK (per-prompt failures are in `results[i].status`). Greedy
/// output of a row equals that prompt generated alone with `mlxrun_generate`.
/// Thread-safe: calls on one model run one after another; `mlxrun_cancel` from another
/// thread stops every row.
#[no_mangle]
pub unsafe extern "C" fn mlxrun_batch_generate(
    model: *mut mlxrun_model,
    prompts: *const *const c_char,
    n_prompts: usize,
    gen: *const mlxrun_generate_params,
    batch: *const mlxrun_batch_params,
    callback: mlxrun_batch_callback,
    user_data: *mut c_void,
    results: *mut mlxrun_batch_result,
) -> mlxrun_status {
    guard(|| {
        let (m, texts, params, results) = batch_inputs(model, prompts, n_prompts, batch, results)?;
        let gen = to_params(gen)?;
        let mut buf: Vec<u8> = Vec::new();
        let on_text = |index: usize, ev: &TokenEvent<'_>| -> bool {
            let Some(f) = callback else { return true };
            let tok = c_token(ev, &mut buf);
            unsafe { f(index, &tok, user_data) }
        };
        let mut model = m.lock();
        let out = model.batch_generate(&texts, &gen, &params, on_text)?;
        if let Some(metrics) = model.last_metrics() {
            *m.metrics.lock().unwrap_or_else(|p| p.into_inner()) = Some(metrics.clone());
        }
        drop(model);
        for (i, (r, res)) in out.into_iter().zip(results.iter_mut()).enumerate() {
            let mut error = [0 as c_char; 256];
            *res = match r {
                Ok(g) => mlxrun_batch_result {
                    status: mlxrun_status::MLXRUN_OK as i32,
                    finish_reason: finish_code(g.finish_reason) as i32,
                    prompt_tokens: g.prompt_tokens.len() as u32,
                    generated_tokens: g.metrics.generated_tokens as u32,
                    error,
                },
                Err(e) => mlxrun_batch_result {
                    status: row_error(&e, &mut error),
                    finish_reason: mlxrun_finish_reason::MLXRUN_FINISH_STOP as i32,
                    prompt_tokens: m.prompt_len(texts[i]),
                    generated_tokens: 0,
                    error,
                },
            };
        }
        Ok(())
    })
}
