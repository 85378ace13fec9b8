//! Streaming generation through a C callback.
use std::ffi::{c_char, c_void};

use super::{c_str, guard, mlxrun_model, mlxrun_status, non_null, read_params, token_ids};
use crate::nn::KvQuantization;
use crate::engine::{FinishReason, GenerateParams, Generation, SamplerParams, TokenEvent};
use crate::error::Result;

/// How to generate. Get one from `mlxrun_generate_default_params()`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct mlxrun_generate_params {
    /// `sizeof(mlxrun_generate_params)`.
    pub struct_size: u32,
    /// Most tokens to generate (default 256).
    pub max_tokens: u32,
    /// 0 = greedy (default).
    pub temperature: f32,
    /// Keep the k most likely tokens; 0 = off.
    pub top_k: i32,
    /// Nucleus sampling mass in (0, 1]; 1 = off.
    pub top_p: f32,
    /// Keep tokens with probability >= min_p * the top one's; 0 = off.
    pub min_p: f32,
    /// > 0; 1 = off. Applied over the last `repetition_context_size` tokens.
    pub repetition_penalty: f32,
    pub repetition_context_size: u32,
    /// With `has_seed`, sampling is reproducible run to run.
    pub seed: u64,
    pub has_seed: bool,
    /// Keep generating through end-of-sequence tokens.
    pub ignore_eos: bool,
    /// Fill `mlxrun_token.logprob` with the token's log-probability.
    pub logprobs: bool,
    /// Extra stop token ids (`n_stop_tokens` of them; may be NULL when 0). Borrowed for
    /// the call.
    pub stop_tokens: *const i32,
    pub n_stop_tokens: usize,
    /// Stop strings, NUL-terminated UTF-8 (`n_stop_strings`; may be NULL when 0). The
    /// text ends before the first one that appears. Borrowed for the call.
    pub stop_strings: *const *const c_char,
    pub n_stop_strings: usize,
    /// Prompt tokens per prefill chunk (default 2048).
    pub prefill_step_size: u32,
    /// Store the KV cache quantized to this many bits (mlx-lm's `kv_bits`: 2, 3, 4, 5, 6
    /// or 8); 0 = full precision (default). Not for models with sliding-window layers.
    pub kv_bits: i32,
    /// Group size of the KV cache quantization (32, 64 or 128; default 64). It must
    /// divide the model's head dimension.
    pub kv_group_size: i32,
    /// Positions held before the cache is quantized (default 5000, as mlx-lm's
    /// `quantized_kv_start`).
    pub quantized_kv_start: i32,
}

/// The size of the first version of the struct, before the KV cache quantization fields.
const GENERATE_PARAMS_V1: usize = std::mem::offset_of!(mlxrun_generate_params, kv_bits);

/// Default generation parameters: greedy, 256 tokens, no extra stops.
#[no_mangle]
pub extern "C" fn mlxrun_generate_default_params() -> mlxrun_generate_params {
    let g = GenerateParams::default();
    let s = SamplerParams::default();
    mlxrun_generate_params {
        struct_size: std::mem::size_of::<mlxrun_generate_params>() as u32,
        max_tokens: g.max_tokens as u32,
        temperature: s.temperature,
        top_k: s.top_k,
        top_p: s.top_p,
        min_p: s.min_p,
        repetition_penalty: s.repetition_penalty,
        repetition_context_size: s.repetition_context_size as u32,
        seed: 0,
        has_seed: false,
        ignore_eos: false,
        logprobs: false,
        stop_tokens: std::ptr::null(),
        n_stop_tokens: 0,
        stop_strings: std::ptr::null(),
        n_stop_strings: 0,
        prefill_step_size: g.prefill_step_size as u32,
        kv_bits: 0,
        kv_group_size: KvQuantization::new(8).group_size,
        quantized_kv_start: KvQuantization::new(8).start,
    }
}

/// One piece of streamed output, valid only during the callback.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct mlxrun_token {
    /// The token id, or -1 for a final piece of text that no single token produced (text
    /// held back for a possible stop string, released at the end).
    pub id: i32,
    /// New text, UTF-8, NUL-terminated; never part of a character; may be empty.
    pub text: *const c_char,
    pub text_len: usize,
    /// The token's log-probability when `logprobs` was asked for, else NaN.
    pub logprob: f32,
}

/// Receives each token; return false to stop generation (the call then returns
/// MLXRUN_OK with MLXRUN_FINISH_CALLBACK). Called on the thread that called generate.
pub type mlxrun_token_callback = Option<unsafe extern "C" fn(token: *const mlxrun_token, user_data: *mut c_void) -> bool>;

/// Why a generation ended.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum mlxrun_finish_reason {
    /// An end-of-sequence or stop token.
    MLXRUN_FINISH_STOP = 0,
    /// A stop string.
    MLXRUN_FINISH_STOP_STRING = 1,
    /// `max_tokens` (or the context length) was reached.
    MLXRUN_FINISH_LENGTH = 2,
    /// The callback returned false.
    MLXRUN_FINISH_CALLBACK = 3,
    /// `mlxrun_cancel` was called.
    MLXRUN_FINISH_CANCELLED = 4,
}

pub(crate) unsafe fn to_params(p: *const mlxrun_generate_params) -> Result<GenerateParams> {
    let p = read_params(p, mlxrun_generate_default_params(), GENERATE_PARAMS_V1, "mlxrun_generate_params")?;
    let stop_tokens = token_ids(p.stop_tokens, p.n_stop_tokens, "mlxrun_generate_params.stop_tokens")?;
    let stop_strings = if p.n_stop_strings == 0 {
        vec![]
    } else {
        non_null(p.stop_strings, "mlxrun_generate_params.stop_strings")?;
        std::slice::from_raw_parts(p.stop_strings, p.n_stop_strings)
            .iter()
            .enumerate()
            .map(|(i, &s)| c_str(s, &format!("stop_strings[{i}]")).map(str::to_owned))
            .collect::<Result<_>>()?
    };
    let params = GenerateParams {
        max_tokens: p.max_tokens as usize,
        sampler: SamplerParams {
            temperature: p.temperature,
            top_k: p.top_k,
            top_p: p.top_p,
            min_p: p.min_p,
            repetition_penalty: p.repetition_penalty,
            repetition_context_size: p.repetition_context_size as usize,
            seed: p.has_seed.then_some(p.seed),
            logprobs: p.logprobs,
            ..SamplerParams::default()
        },
        stop_tokens,
        stop_strings,
        ignore_eos: p.ignore_eos,
        prefill_step_size: p.prefill_step_size as usize,
        kv_quantization: (p.kv_bits != 0).then_some(KvQuantization {
            bits: p.kv_bits,
            group_size: p.kv_group_size,
            start: p.quantized_kv_start,
        }),
        context_length: None,
    };
    params.validate()?;
    Ok(params)
}

/// Hands each event to the C callback with NUL-terminated text.
pub(crate) fn c_callback(cb: mlxrun_token_callback, user_data: *mut c_void) -> impl FnMut(&TokenEvent<'_>) -> bool {
    let mut buf: Vec<u8> = Vec::new();
    move |ev| {
        let Some(f) = cb else { return true };
        let tok = c_token(ev, &mut buf);
        unsafe { f(&tok, user_data) }
    }
}

/// The C view of an event; its text lives in `buf` (NUL-terminated) until the next call.
pub(crate) fn c_token(ev: &TokenEvent<'_>, buf: &mut Vec<u8>) -> mlxrun_token {
    buf.clear();
    buf.extend_from_slice(ev.text.as_bytes());
    buf.push(0);
    mlxrun_token {
        id: ev.token.map_or(-1, |t| t as i32),
        text: buf.as_ptr() as *const c_char,
        text_len: ev.text.len(),
        logprob: ev.logprob.unwrap_or(f32::NAN),
    }
}

pub(crate) fn finish_code(r: FinishReason) -> mlxrun_finish_reason {
    match r {
        FinishReason::Stop => mlxrun_finish_reason::MLXRUN_FINISH_STOP,
        FinishReason::StopString => mlxrun_finish_reason::MLXRUN_FINISH_STOP_STRING,
        FinishReason::Length => mlxrun_finish_reason::MLXRUN_FINISH_LENGTH,
        FinishReason::Callback => mlxrun_finish_reason::MLXRUN_FINISH_CALLBACK,
        FinishReason::Cancelled => mlxrun_finish_reason::MLXRUN_FINISH_CANCELLED,
    }
}

/// The call's generation settings: `params` (NULL for the defaults) with the model
/// handle's context length, which the engine enforces (a longer prompt is an error,
/// `max_tokens` is cut to what fits).
pub(crate) unsafe fn call_params(model: &mlxrun_model, params: *const mlxrun_generate_params) -> Result<GenerateParams> {
    let mut p = to_params(params)?;
    p.context_length = model.context_length;
    Ok(p)
}

/// Records the metrics and the finish reason of a completed call.
pub(crate) unsafe fn finish(model: &mlxrun_model, g: &Generation, finish_out: *mut mlxrun_finish_reason) {
    *model.metrics.lock().unwrap_or_else(|p| p.into_inner()) = Some(g.metrics.clone());
    if !finish_out.is_null() {
        *finish_out = finish_code(g.finish_reason);
    }
}

/// Generates a continuation of `prompt` (NUL-terminated UTF-8; BOS is added unless the
/// text starts with it), calling `callback` (may be NULL) with each piece of text.
/// `params` may be NULL for the defaults; `finish_reason` may be NULL. Returns when
/// generation ends; `mlxrun_cancel` from another thread ends it early. Thread-safe:
/// concurrent calls on one model run one after another.
#[no_mangle]
pub unsafe extern "C" fn mlxrun_generate(
    model: *mut mlxrun_model,
    prompt: *const c_char,
    params: *const mlxrun_generate_params,
    callback: mlxrun_token_callback,
    user_data: *mut c_void,
    finish_reason: *mut mlxrun_finish_reason,
) -> mlxrun_status {
    guard(|| {
        non_null(model, "model")?;
        let prompt = c_str(prompt, "prompt")?;
        let m = &*model;
        let params = call_params(m, params)?;
        // Encoded inside the call, under the model's lock: a cancel that arrives while the
        // prompt is encoded stops this call.
        let g = m.lock().generate(prompt, &params, c_callback(callback, user_data))?;
        finish(m, &g, finish_reason);
        Ok(())
    })
}

/// Like `mlxrun_generate` with the prompt given as `n_tokens` token ids.
#[no_mangle]
pub unsafe extern "C" fn mlxrun_generate_tokens(
    model: *mut mlxrun_model,
    tokens: *const i32,
    n_tokens: usize,
    params: *const mlxrun_generate_params,
    callback: mlxrun_token_callback,
    user_data: *mut c_void,
    finish_reason: *mut mlxrun_finish_reason,
) -> mlxrun_status {
    guard(|| {
        non_null(model, "model")?;
        let ids = token_ids(tokens, n_tokens, "tokens")?;
        let m = &*model;
        let params = call_params(m, params)?;
        let g = m.lock().generate_ids(&ids, &params, c_callback(callback, user_data))?;
        finish(m, &g, finish_reason);
        Ok(())
    })
}
