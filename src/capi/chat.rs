//! Chat through the model's own template, and sessions that keep their KV cache between
//! turns.
use std::ffi::{c_char, c_void};
use std::sync::Mutex;

use super::generate::{c_callback, call_params, finish};
use super::{c_str, guard, mlxrun_generate_params, mlxrun_model, mlxrun_status, mlxrun_token_callback, non_null, read_params, write_c_string};
use super::mlxrun_finish_reason;
use crate::chat::{ChatOptions, ChatSession, Message};
use crate::error::{Error, Result};

/// One message of a conversation. Both strings are NUL-terminated UTF-8, borrowed for the
/// call.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct mlxrun_message {
    /// "system", "user", "assistant", or any role the template knows.
    pub role: *const c_char,
    pub content: *const c_char,
}

/// How to render the chat template. Get one from `mlxrun_chat_default_params()`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct mlxrun_chat_params {
    /// `sizeof(mlxrun_chat_params)`.
    pub struct_size: u32,
    /// End the prompt with the assistant's turn header (default true).
    pub add_generation_prompt: bool,
    /// A named template from tokenizer_config.json (e.g. "tool_use"); NULL for the default.
    pub template_name: *const c_char,
    /// Extra template variables as a JSON object, e.g. `{"enable_thinking": false}` for
    /// Qwen3; NULL for none.
    pub template_kwargs_json: *const c_char,
}

const CHAT_PARAMS_V1: usize = std::mem::size_of::<mlxrun_chat_params>();

/// Default chat parameters: the default template, with the generation prompt.
#[no_mangle]
pub extern "C" fn mlxrun_chat_default_params() -> mlxrun_chat_params {
    mlxrun_chat_params {
        struct_size: CHAT_PARAMS_V1 as u32,
        add_generation_prompt: true,
        template_name: std::ptr::null(),
        template_kwargs_json: std::ptr::null(),
    }
}

unsafe fn to_options(p: *const mlxrun_chat_params) -> Result<ChatOptions> {
    let p = read_params(p, mlxrun_chat_default_params(), CHAT_PARAMS_V1, "mlxrun_chat_params")?;
    let mut opts = ChatOptions { add_generation_prompt: p.add_generation_prompt, ..ChatOptions::default() };
    if !p.template_name.is_null() {
        opts.template = Some(c_str(p.template_name, "template_name")?.to_string());
    }
    if !p.template_kwargs_json.is_null() {
        let text = c_str(p.template_kwargs_json, "template_kwargs_json")?;
        match serde_json::from_str::<serde_json::Value>(text) {
            Ok(serde_json::Value::Object(map)) => opts.template_kwargs = map.into_iter().collect(),
            Ok(_) => return Err(Error::invalid("template_kwargs_json must be a JSON object")),
            Err(e) => return Err(Error::invalid(format!("template_kwargs_json is not valid JSON: {e}"))),
        }
    }
    Ok(opts)
}

unsafe fn to_message(m: &mlxrun_message, i: usize) -> Result<Message> {
    Ok(Message::new(c_str(m.role, &format!("messages[{i}].role"))?, c_str(m.content, &format!("messages[{i}].content"))?))
}

unsafe fn to_messages(messages: *const mlxrun_message, n: usize) -> Result<Vec<Message>> {
    if n == 0 {
        return Ok(vec![]);
    }
    non_null(messages, "messages")?;
    std::slice::from_raw_parts(messages, n).iter().enumerate().map(|(i, m)| to_message(m, i)).collect()
}

/// Renders `messages` with the model's chat template into `buf` (NUL-terminated UTF-8).
/// `*needed` receives the size including the NUL; when `capacity` is smaller (or `buf` is
/// NULL) only `*needed` is written and the status is MLXRUN_ERR_BUFFER_TOO_SMALL. A
/// template error (e.g. the template rejects the roles) is MLXRUN_ERR_TEMPLATE.
#[no_mangle]
pub unsafe extern "C" fn mlxrun_apply_chat_template(
    model: *mut mlxrun_model,
    messages: *const mlxrun_message,
    n_messages: usize,
    chat_params: *const mlxrun_chat_params,
    buf: *mut c_char,
    capacity: usize,
    needed: *mut usize,
) -> mlxrun_status {
    guard(|| {
        non_null(model, "model")?;
        let msgs = to_messages(messages, n_messages)?;
        let opts = to_options(chat_params)?;
        let text = (*model).lock().render_chat(&msgs, &opts)?;
        write_c_string(&text, buf, capacity, needed)
    })
}

/// Generates the assistant's reply to `messages`, rendered with the model's chat
/// template, streaming it to `callback` (may be NULL). Generation also stops at the
/// template's end-of-turn token. Parameters may be NULL for the defaults. Thread-safe as
/// `mlxrun_generate`.
#[no_mangle]
pub unsafe extern "C" fn mlxrun_chat(
    model: *mut mlxrun_model,
    messages: *const mlxrun_message,
    n_messages: usize,
    chat_params: *const mlxrun_chat_params,
    params: *const mlxrun_generate_params,
    callback: mlxrun_token_callback,
    user_data: *mut c_void,
    finish_reason: *mut mlxrun_finish_reason,
) -> mlxrun_status {
    guard(|| {
        non_null(model, "model")?;
        let m = &*model;
        let msgs = to_messages(messages, n_messages)?;
        let opts = to_options(chat_params)?;
        let params = call_params(m, params)?;
        let g = m.lock().chat(&msgs, &opts, &params, c_callback(callback, user_data))?;
        finish(m, &g, finish_reason);
        Ok(())
    })
}

/// A conversation with a model that keeps its KV cache between turns, so each turn
/// computes only what is new. Belongs to the model it was made from, which must outlive
/// it. Calls on one session must not overlap; sessions of one model may be used from
/// different threads (their calls run one at a time).
pub struct mlxrun_session {
    model: *mut mlxrun_model,
    session: Mutex<ChatSession>,
}

/// Starts an empty conversation with `model`. `chat_params` (may be NULL) fixes the
/// template options for every turn. Release with `mlxrun_session_free`.
#[no_mangle]
pub unsafe extern "C" fn mlxrun_session_new(
    model: *mut mlxrun_model,
    chat_params: *const mlxrun_chat_params,
    out: *mut *mut mlxrun_session,
) -> mlxrun_status {
    guard(|| {
        non_null(out, "out")?;
        *out = std::ptr::null_mut();
        non_null(model, "model")?;
        let opts = to_options(chat_params)?;
        let session = ChatSession::new((*model).lock().native("chat sessions")?, opts)?;
        *out = Box::into_raw(Box::new(mlxrun_session { model, session: Mutex::new(session) }));
        Ok(())
    })
}

/// Releases a session and its cache. NULL is accepted.
#[no_mangle]
pub unsafe extern "C" fn mlxrun_session_free(session: *mut mlxrun_session) {
    if !session.is_null() {
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| drop(Box::from_raw(session))));
    }
}

/// Adds a message without generating (a system prompt, or earlier turns to replay).
#[no_mangle]
pub unsafe extern "C" fn mlxrun_session_add_message(
    session: *mut mlxrun_session,
    role: *const c_char,
    content: *const c_char,
) -> mlxrun_status {
    guard(|| {
        non_null(session, "session")?;
        let msg = to_message(&mlxrun_message { role, content }, 0)?;
        (*session).session.lock().unwrap_or_else(|p| p.into_inner()).messages_mut().push(msg);
        Ok(())
    })
}

/// Adds a message from `role` (usually "user") and generates the assistant's reply,
/// streaming it to `callback` (may be NULL); the reply joins the conversation. Only the
/// tokens after the longest prefix already in the cache are computed (see
/// `mlxrun_metrics.cached_prompt_tokens`). On an error the conversation is unchanged.
#[no_mangle]
pub unsafe extern "C" fn mlxrun_session_send(
    session: *mut mlxrun_session,
    role: *const c_char,
    content: *const c_char,
    params: *const mlxrun_generate_params,
    callback: mlxrun_token_callback,
    user_data: *mut c_void,
    finish_reason: *mut mlxrun_finish_reason,
) -> mlxrun_status {
    guard(|| {
        non_null(session, "session")?;
        let s = &*session;
        non_null(s.model, "session's model")?;
        let m = &*s.model;
        let msg = to_message(&mlxrun_message { role, content }, 0)?;
        let params = call_params(m, params)?;
        let mut sess = s.session.lock().unwrap_or_else(|p| p.into_inner());
        let g = sess.send(m.lock().native("chat sessions")?, msg, &params, c_callback(callback, user_data))?;
        finish(m, &g, finish_reason);
        Ok(())
    })
}

/// Forgets the conversation and frees the cache; the session can start over.
#[no_mangle]
pub unsafe extern "C" fn mlxrun_session_reset(session: *mut mlxrun_session) -> mlxrun_status {
    guard(|| {
        non_null(session, "session")?;
        (*session).session.lock().unwrap_or_else(|p| p.into_inner()).reset();
        Ok(())
    })
}

/// Number of messages in the conversation (user, assistant and others), or 0 for NULL.
#[no_mangle]
pub unsafe extern "C" fn mlxrun_session_message_count(session: *const mlxrun_session) -> usize {
    if session.is_null() {
        return 0;
    }
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        (*session).session.lock().unwrap_or_else(|p| p.into_inner()).messages().len()
    }))
    .unwrap_or(0)
}
