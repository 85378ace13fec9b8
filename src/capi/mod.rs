//! The C API: the product's contract with C, Go, Swift and every other language.
//!
//! Conventions (see include/mlxrun.h, generated from this module by cbindgen):
//! - Opaque handles (`mlxrun_model`) made by `*_load`/`*_new`, released by `*_free`,
//!   which accept NULL.
//! - Parameter structs are passed by pointer, start with `struct_size` (set it to
//!   `sizeof` the struct; `*_default_params()` does), so fields can be added later without
//!   breaking the ABI. A `struct_size` smaller than the first version of the struct is an
//!   error; a larger one (a newer header) is accepted and its unknown tail ignored.
//! - Every fallible call returns an `mlxrun_status`; on failure `mlxrun_last_error()`
//!   gives a message for the calling thread.
//! - No Rust panic and no C++ exception crosses this boundary: every entry point runs
//!   under `catch_unwind`, and the layers below turn MLX's exceptions into errors.
#![allow(non_camel_case_types)]

mod batch;
mod chat;
mod device;
mod discover;
mod generate;
mod inspect;
mod memory;
mod model;
mod tokenizer;
mod train;

use std::cell::RefCell;
use std::ffi::{c_char, CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};

use crate::error::Error;

pub use batch::*;
pub use chat::*;
pub use device::*;
pub use discover::*;
pub use generate::*;
pub use inspect::*;
pub use memory::*;
pub use model::*;
pub use tokenizer::*;
pub use train::*;

/// The result of every fallible call.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum mlxrun_status {
    MLXRUN_OK = 0,
    /// A NULL pointer, a value out of range, a `struct_size` too small, invalid UTF-8.
    MLXRUN_ERR_INVALID_ARGUMENT = 1,
    /// A file or folder could not be read.
    MLXRUN_ERR_IO = 2,
    /// A model configuration is missing, malformed or unsupported.
    MLXRUN_ERR_CONFIG = 3,
    /// Weights are missing, truncated or do not match the configuration.
    MLXRUN_ERR_WEIGHTS = 4,
    /// The tokenizer files are missing or malformed, or text could not be tokenized.
    MLXRUN_ERR_TOKENIZER = 5,
    /// MLX refused an operation (e.g. out of memory, unsupported on this device).
    MLXRUN_ERR_MLX = 6,
    /// A caller-provided buffer is too small; the needed size was written.
    MLXRUN_ERR_BUFFER_TOO_SMALL = 7,
    /// An internal error (a bug in the library); the handle stays usable.
    MLXRUN_ERR_INTERNAL = 8,
    /// The chat template is missing, malformed, or refused the conversation (its
    /// `raise_exception` message is in `mlxrun_last_error()`).
    MLXRUN_ERR_TEMPLATE = 9,
    /// Training was cancelled (the progress callback returned false, or `mlxrun_cancel`).
    MLXRUN_ERR_CANCELLED = 10,
    /// A backend is unavailable (`mlxrun_backend_list` says why), or its worker process
    /// exited, hung or broke the protocol; load the model again.
    MLXRUN_ERR_BACKEND = 11,
    /// The model's backend does not do this (the `mlx_lm` backend does not train, say).
    MLXRUN_ERR_UNSUPPORTED = 12,
}

thread_local! {
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

pub(crate) fn set_last_error(msg: &str) {
    let c = CString::new(msg.replace('\0', "\\0")).unwrap_or_default();
    LAST_ERROR.with(|e| *e.borrow_mut() = c);
}

/// Records `e` as the thread's last error and returns its status.
pub(crate) fn fail(e: &Error) -> mlxrun_status {
    set_last_error(&e.to_string());
    status_of(e)
}

/// The status that reports `e`.
pub(crate) fn status_of(e: &Error) -> mlxrun_status {
    match e {
        Error::InvalidArgument(_) => mlxrun_status::MLXRUN_ERR_INVALID_ARGUMENT,
        Error::Io(_) => mlxrun_status::MLXRUN_ERR_IO,
        Error::Config(_) => mlxrun_status::MLXRUN_ERR_CONFIG,
        Error::Weights(_) => mlxrun_status::MLXRUN_ERR_WEIGHTS,
        Error::Tokenizer(_) => mlxrun_status::MLXRUN_ERR_TOKENIZER,
        Error::Mlx(_) => mlxrun_status::MLXRUN_ERR_MLX,
        Error::BufferTooSmall(_) => mlxrun_status::MLXRUN_ERR_BUFFER_TOO_SMALL,
        Error::Template(_) => mlxrun_status::MLXRUN_ERR_TEMPLATE,
        Error::Cancelled => mlxrun_status::MLXRUN_ERR_CANCELLED,
        Error::Backend(_) => mlxrun_status::MLXRUN_ERR_BACKEND,
        Error::Unsupported(_) => mlxrun_status::MLXRUN_ERR_UNSUPPORTED,
        #[allow(unreachable_patterns)]
        _ => mlxrun_status::MLXRUN_ERR_INTERNAL,
    }
}

/// Runs an entry point's body, turning errors and panics into a status.
pub(crate) fn guard(f: impl FnOnce() -> Result<(), Error>) -> mlxrun_status {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(())) => mlxrun_status::MLXRUN_OK,
        Ok(Err(e)) => fail(&e),
        Err(p) => {
            let what = p
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| p.downcast_ref::<&str>().copied())
                .unwrap_or("unknown panic");
            set_last_error(&format!("internal error: {what}"));
            mlxrun_status::MLXRUN_ERR_INTERNAL
        }
    }
}

/// A NUL-terminated UTF-8 string argument.
pub(crate) unsafe fn c_str<'a>(p: *const c_char, what: &str) -> Result<&'a str, Error> {
    if p.is_null() {
        return Err(Error::invalid(format!("{what} is NULL")));
    }
    CStr::from_ptr(p).to_str().map_err(|_| Error::invalid(format!("{what} is not valid UTF-8")))
}

/// A required pointer argument.
pub(crate) fn non_null<T>(p: *const T, what: &str) -> Result<(), Error> {
    if p.is_null() {
        Err(Error::invalid(format!("{what} is NULL")))
    } else {
        Ok(())
    }
}

/// Token ids from C (`n` of them at `p`, which may be NULL when `n` is 0).
pub(crate) unsafe fn token_ids(p: *const i32, n: usize, what: &str) -> Result<Vec<u32>, Error> {
    if n == 0 {
        return Ok(vec![]);
    }
    non_null(p, what)?;
    std::slice::from_raw_parts(p, n)
        .iter()
        .map(|&t| u32::try_from(t).map_err(|_| Error::invalid(format!("token id {t} in {what} is negative"))))
        .collect()
}

/// Copies `text` into a caller's buffer as NUL-terminated UTF-8, the "needed size" way:
/// `*needed` always receives the size including the NUL; a NULL or short buffer gets
/// nothing else and the call fails with MLXRUN_ERR_BUFFER_TOO_SMALL.
pub(crate) unsafe fn write_c_string(text: &str, buf: *mut c_char, capacity: usize, needed: *mut usize) -> Result<(), Error> {
    non_null(needed, "needed")?;
    *needed = text.len() + 1;
    if buf.is_null() || capacity < text.len() + 1 {
        return Err(Error::BufferTooSmall(format!("the buffer holds {capacity} bytes, {} needed", text.len() + 1)));
    }
    std::ptr::copy_nonoverlapping(text.as_ptr(), buf as *mut u8, text.len());
    *buf.add(text.len()) = 0;
    Ok(())
}

/// Reads a versioned parameter struct: the caller's first `struct_size` bytes over the
/// defaults. `min` is the size of the struct's first version.
pub(crate) unsafe fn read_params<T: Copy>(p: *const T, defaults: T, min: usize, what: &str) -> Result<T, Error> {
    if p.is_null() {
        return Ok(defaults);
    }
    let size = *(p as *const u32) as usize;
    if size < min {
        return Err(Error::invalid(format!(
            "{what}.struct_size is {size}, at least {min} expected (set it to sizeof({what}))"
        )));
    }
    let mut out = defaults;
    let n = size.min(std::mem::size_of::<T>());
    std::ptr::copy_nonoverlapping(p as *const u8, &mut out as *mut T as *mut u8, n);
    Ok(out)
}

/// The message of the last failed call on the calling thread ("" if none). Owned by the
/// library; valid until the next failing call on the same thread. Never NULL.
#[no_mangle]
pub extern "C" fn mlxrun_last_error() -> *const c_char {
    LAST_ERROR.with(|e| e.borrow().as_ptr())
}

/// The library's version, e.g. "0.1.0". A static string; never NULL.
#[no_mangle]
pub extern "C" fn mlxrun_version() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr() as *const c_char
}
