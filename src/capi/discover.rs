//! Finding models under a folder: `mlxrun_discover` and the list it returns.
use std::ffi::{c_char, CString};

use super::{c_str, guard, mlxrun_status, non_null, read_params};
use crate::error::{Error, Result};
use crate::engine::discover::{discover, DiscoverOptions, DiscoveredModel};

/// How to search. Get one from `mlxrun_discover_default_params()`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct mlxrun_discover_params {
    /// `sizeof(mlxrun_discover_params)`.
    pub struct_size: u32,
    /// The deepest folder level searched, `dir` itself being level 0 (0: only `dir`;
    /// the default, 4, reaches a Hugging Face cache's snapshot folders).
    pub max_depth: u32,
    /// The Python (NUL-terminated path) whose mlx-lm judges whether the "mlx_lm" backend
    /// can load each model, as `mlxrun_load_params.python`; NULL: the default choice.
    pub python: *const c_char,
    /// A virtualenv whose `bin/python` judges it instead; NULL: none.
    pub venv: *const c_char,
}

const DISCOVER_PARAMS_V1: usize = std::mem::offset_of!(mlxrun_discover_params, python);

/// Default search settings: depth 4.
#[no_mangle]
pub extern "C" fn mlxrun_discover_default_params() -> mlxrun_discover_params {
    mlxrun_discover_params {
        struct_size: std::mem::size_of::<mlxrun_discover_params>() as u32,
        max_depth: DiscoverOptions::default().max_depth as u32,
        python: std::ptr::null(),
        venv: std::ptr::null(),
    }
}

/// One backend's verdict on a discovered model (see `mlxrun_discovered_list_get_backend`).
/// Its strings are owned by the list and valid until `mlxrun_discovered_list_free`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct mlxrun_discovered_backend {
    /// `sizeof(mlxrun_discovered_backend)`, set by the caller.
    pub struct_size: u32,
    /// The backend's name: "native" or "mlx_lm".
    pub name: *const c_char,
    /// Whether it can load the model.
    pub ok: bool,
    /// Why it cannot (NULL when `ok`, and possibly when the backend gives no reason).
    pub reason: *const c_char,
}

/// One model found under the searched folder (see `mlxrun_discovered_list_get`). Its
/// strings are owned by the list and valid until `mlxrun_discovered_list_free`; unknown
/// strings are "" (never NULL), except `error`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct mlxrun_discovered_model {
    /// `sizeof(mlxrun_discovered_model)`, set by the caller.
    pub struct_size: u32,
    /// The model folder or GGUF file (absolute; links not resolved).
    pub path: *const c_char,
    /// "safetensors" (an HF-layout folder), "gguf" (a GGUF file), or "" for a folder
    /// that could not be listed (`error` says why).
    pub format: *const c_char,
    /// config.json's `model_type`, or GGUF `general.architecture`.
    pub model_type: *const c_char,
    /// Safetensors: the float dtype most parameters are stored in ("bfloat16",
    /// "float16", "float32"), else config.json's `torch_dtype`. GGUF: the file type in
    /// llama.cpp's names ("Q4_K_M", "F16").
    pub dtype: *const c_char,
    /// Bits of the quantized weights (mlx-lm's default setting, or the nominal bits of a
    /// GGUF file type); 0 for a dense model.
    pub quant_bits: i32,
    /// Their group size (GGUF: the block size); 0 for a dense model.
    pub quant_group_size: i32,
    /// "affine", "mxfp4", "mxfp8", "nvfp4", or for GGUF the file type in lower case
    /// ("q4_k_m"); "" for a dense model.
    pub quant_mode: *const c_char,
    /// Parameters, from the headers' shapes (quantized matrices counted unpacked, as
    /// mlx-lm counts them); 0 when unknown (a broken model).
    pub params: u64,
    /// Bytes of the model's files (every file directly in the folder, or the GGUF file).
    pub size_bytes: u64,
    /// Weight files: safetensors shards, or 1 for a GGUF file.
    pub num_files: u32,
    /// A tokenizer.json, or a tokenizer in the GGUF metadata.
    pub has_tokenizer: bool,
    /// A chat template (chat_template.jinja, tokenizer_config.json's chat_template, GGUF
    /// tokenizer.chat_template).
    pub has_chat_template: bool,
    /// NULL when the model's metadata reads cleanly; else what is wrong, naming the file.
    pub error: *const c_char,
    /// Backends judged; read each with `mlxrun_discovered_list_get_backend`.
    pub n_backends: u32,
}

/// Models found by `mlxrun_discover`. Immutable once made: the accessors may be called
/// from several threads at once; free it once, when no accessor is running.
pub struct mlxrun_discovered_list {
    models: Vec<CModel>,
}

/// A model's strings as C strings, kept alive by the list.
struct CModel {
    path: CString,
    format: CString,
    model_type: CString,
    dtype: CString,
    quant_mode: CString,
    error: Option<CString>,
    backends: Vec<(CString, bool, Option<CString>)>,
    m: DiscoveredModel,
}

/// A C string of `s`; an interior NUL (possible only in a path) is escaped as in error
/// messages rather than cutting the string short.
fn c_string(s: &str) -> CString {
    CString::new(s.replace('\0', "\\0")).unwrap_or_default()
}

impl CModel {
    fn new(m: DiscoveredModel) -> CModel {
        let opt = |s: &Option<String>| c_string(s.as_deref().unwrap_or(""));
        CModel {
            path: c_string(&m.path.to_string_lossy()),
            format: c_string(m.format.map_or("", |f| f.name())),
            model_type: opt(&m.model_type),
            dtype: opt(&m.dtype),
            quant_mode: c_string(m.quantization.as_ref().map_or("", |q| q.mode.as_str())),
            error: m.error.as_deref().map(c_string),
            backends: m.backends.iter().map(|b| (c_string(&b.backend), b.ok, b.reason.as_deref().map(c_string))).collect(),
            m,
        }
    }
}

/// Finds the models under `dir` (NUL-terminated UTF-8): HF-layout folders (config.json +
/// safetensors) and GGUF files, searched to `params->max_depth` folders deep (NULL params:
/// the defaults), links followed, each folder visited once (link loops are harmless).
/// Only headers are read, never weights. Broken models and folders that cannot be listed
/// are entries with an `error`, not failures: the call fails only when `dir` itself is
/// missing, not a folder, or unreadable. On success `*out` owns a new list, sorted by
/// path, released with `mlxrun_discovered_list_free`; on failure `*out` is NULL.
/// Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn mlxrun_discover(
    dir: *const c_char,
    params: *const mlxrun_discover_params,
    out: *mut *mut mlxrun_discovered_list,
) -> mlxrun_status {
    guard(|| {
        non_null(out, "out")?;
        *out = std::ptr::null_mut();
        let dir = c_str(dir, "dir")?;
        let p = read_params(params, mlxrun_discover_default_params(), DISCOVER_PARAMS_V1, "mlxrun_discover_params")?;
        let found = discover(std::path::Path::new(dir), &DiscoverOptions { max_depth: p.max_depth as usize, mlx_lm: mlx_lm_options(&p)? })?;
        *out = Box::into_raw(Box::new(mlxrun_discovered_list { models: found.into_iter().map(CModel::new).collect() }));
        Ok(())
    })
}

/// The number of entries in `list` (0 for NULL). Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn mlxrun_discovered_list_count(list: *const mlxrun_discovered_list) -> usize {
    if list.is_null() {
        0
    } else {
        (*list).models.len()
    }
}

/// The entry at `list[index]` (`list` of `index`, checked).
unsafe fn entry<'a>(list: *const mlxrun_discovered_list, index: usize) -> Result<&'a CModel> {
    non_null(list, "list")?;
    let models = &(*list).models;
    models
        .get(index)
        .ok_or_else(|| Error::invalid(format!("index {index} is out of range: the list holds {} models", models.len())))
}

/// The caller's `struct_size`, checked against the struct's first version (`min`).
unsafe fn out_size<T>(out: *const T, min: usize, what: &str) -> Result<usize> {
    non_null(out, "out")?;
    let size = *(out as *const u32) as usize;
    if size < min {
        return Err(Error::invalid(format!("{what}.struct_size is {size}, at least {min} expected (set it to sizeof({what}))")));
    }
    Ok(size.min(std::mem::size_of::<T>()))
}

/// Describes entry `index` of `list` into `*out`, whose `struct_size` the caller sets to
/// `sizeof(mlxrun_discovered_model)` (a smaller size from an older header gets the fields
/// it covers). The strings stay valid until the list is freed. Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn mlxrun_discovered_list_get(
    list: *const mlxrun_discovered_list,
    index: usize,
    out: *mut mlxrun_discovered_model,
) -> mlxrun_status {
    guard(|| {
        let size = out_size(out, std::mem::size_of::<mlxrun_discovered_model>(), "mlxrun_discovered_model")?;
        let c = entry(list, index)?;
        let q = c.m.quantization.as_ref();
        let model = mlxrun_discovered_model {
            struct_size: size as u32,
            path: c.path.as_ptr(),
            format: c.format.as_ptr(),
            model_type: c.model_type.as_ptr(),
            dtype: c.dtype.as_ptr(),
            quant_bits: q.map_or(0, |q| q.bits),
            quant_group_size: q.map_or(0, |q| q.group_size),
            quant_mode: c.quant_mode.as_ptr(),
            params: c.m.params.unwrap_or(0),
            size_bytes: c.m.size_bytes,
            num_files: c.m.num_files.min(u32::MAX as usize) as u32,
            has_tokenizer: c.m.has_tokenizer,
            has_chat_template: c.m.has_chat_template,
            error: c.error.as_ref().map_or(std::ptr::null(), |e| e.as_ptr()),
            n_backends: c.backends.len() as u32,
        };
        std::ptr::copy_nonoverlapping(&model as *const mlxrun_discovered_model as *const u8, out as *mut u8, size);
        Ok(())
    })
}

/// Backend `backend_index` (below the entry's `n_backends`) of entry `index` of `list`,
/// into `*out`, whose `struct_size` the caller sets to
/// `sizeof(mlxrun_discovered_backend)`. The strings stay valid until the list is freed.
/// Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn mlxrun_discovered_list_get_backend(
    list: *const mlxrun_discovered_list,
    index: usize,
    backend_index: usize,
    out: *mut mlxrun_discovered_backend,
) -> mlxrun_status {
    guard(|| {
        let size = out_size(out, std::mem::size_of::<mlxrun_discovered_backend>(), "mlxrun_discovered_backend")?;
        let c = entry(list, index)?;
        let (name, ok, reason) = c.backends.get(backend_index).ok_or_else(|| {
            Error::invalid(format!("backend_index {backend_index} is out of range: model {index} has {} backends", c.backends.len()))
        })?;
        let b = mlxrun_discovered_backend {
            struct_size: size as u32,
            name: name.as_ptr(),
            ok: *ok,
            reason: reason.as_ref().map_or(std::ptr::null(), |r| r.as_ptr()),
        };
        std::ptr::copy_nonoverlapping(&b as *const mlxrun_discovered_backend as *const u8, out as *mut u8, size);
        Ok(())
    })
}

/// Releases a list and every string it handed out. NULL is accepted. No accessor may be
/// running on the list.
#[no_mangle]
pub unsafe extern "C" fn mlxrun_discovered_list_free(list: *mut mlxrun_discovered_list) {
    if !list.is_null() {
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| drop(Box::from_raw(list))));
    }
}

/// The `mlx_lm` backend's Python the parameters choose.
unsafe fn mlx_lm_options(p: &mlxrun_discover_params) -> crate::error::Result<crate::engine::backend::MlxLmOptions> {
    let path = |ptr: *const c_char, what: &str| -> crate::error::Result<Option<std::path::PathBuf>> {
        if ptr.is_null() {
            Ok(None)
        } else {
            Ok(Some(super::c_str(ptr, what)?.into()))
        }
    };
    Ok(crate::engine::backend::MlxLmOptions {
        python: path(p.python, "mlxrun_discover_params.python")?,
        venv: path(p.venv, "mlxrun_discover_params.venv")?,
        ..Default::default()
    })
}
