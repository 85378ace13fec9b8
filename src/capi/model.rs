//! Loading a model, its description, its metrics, cancelling its generation.
use std::ffi::c_char;
use std::sync::{Mutex, MutexGuard};

use super::{c_str, guard, mlxrun_status, non_null, read_params};
use crate::engine::backend::{self, BackendChoice, MlxLmOptions, TextModel};
use crate::engine::{CancelToken, Metrics};
use crate::error::Error;
use crate::mlx::quant::{QuantMode, QuantParams};
use crate::mlx::{Device, Dtype};
use crate::models::LoadOptions;
use crate::tokenizer::Tokenizer;

/// A loaded model (whichever backend runs it) and its tokenizer. Thread-safe: calls on one
/// model from several threads are serialized (one generation at a time per model);
/// `mlxrun_cancel` and `mlxrun_model_metrics` never wait for a running generation.
pub struct mlxrun_model {
    pub(crate) model: Mutex<TextModel>,
    pub(crate) cancel: CancelToken,
    pub(crate) metrics: Mutex<Option<Metrics>>,
    /// The native model's tokenizer, shared so that encoding never waits for a
    /// generation. `None` for the `mlx_lm` backend, whose tokenizer lives in its worker.
    pub(crate) tokenizer: Option<Tokenizer>,
    /// Longest prompt + generation accepted (None: unlimited).
    pub(crate) context_length: Option<usize>,
    /// This process's rank and the group's size when the model is sharded; (0, 1) otherwise.
    pub(crate) rank: (i32, i32),
}

impl mlxrun_model {
    pub(crate) fn lock(&self) -> MutexGuard<'_, TextModel> {
        // A panic inside a call (reported as MLXRUN_ERR_INTERNAL) poisons the mutex; the
        // model itself holds no half-updated state between calls, so keep using it.
        self.model.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Ids of `text` (a native model's tokenizer without waiting for the model; the
    /// worker's otherwise).
    pub(crate) fn encode(&self, text: &str, add_special_tokens: bool) -> crate::error::Result<Vec<u32>> {
        match &self.tokenizer {
            Some(t) => t.encode(text, add_special_tokens),
            None => self.lock().encode(text, add_special_tokens),
        }
    }

    pub(crate) fn decode(&self, ids: &[u32], skip_special_tokens: bool) -> crate::error::Result<String> {
        match &self.tokenizer {
            Some(t) => t.decode(ids, skip_special_tokens),
            None => self.lock().decode(ids, skip_special_tokens),
        }
    }

    /// How many ids `text` encodes to as a prompt, for reporting a failed row (0 when
    /// that is not known without the model).
    pub(crate) fn prompt_len(&self, text: &str) -> u32 {
        self.tokenizer.as_ref().and_then(|t| t.encode_prompt(text).ok()).map_or(0, |ids| ids.len() as u32)
    }
}

/// Values of `mlxrun_load_params.device`. (The struct field is an `int32_t` so that any
/// value a caller passes can be checked.)
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum mlxrun_device {
    /// The GPU when MLX has one, else the CPU.
    MLXRUN_DEVICE_DEFAULT = 0,
    MLXRUN_DEVICE_CPU = 1,
    MLXRUN_DEVICE_GPU = 2,
}

/// Values of `mlxrun_load_params.dtype` and `mlxrun_model_info.dtype`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum mlxrun_dtype {
    MLXRUN_DTYPE_DEFAULT = 0,
    MLXRUN_DTYPE_FLOAT32 = 1,
    MLXRUN_DTYPE_FLOAT16 = 2,
    MLXRUN_DTYPE_BFLOAT16 = 3,
}

const MLXRUN_DEVICE_DEFAULT: i32 = mlxrun_device::MLXRUN_DEVICE_DEFAULT as i32;
const MLXRUN_DEVICE_CPU: i32 = mlxrun_device::MLXRUN_DEVICE_CPU as i32;
const MLXRUN_DEVICE_GPU: i32 = mlxrun_device::MLXRUN_DEVICE_GPU as i32;
const MLXRUN_DTYPE_DEFAULT: i32 = mlxrun_dtype::MLXRUN_DTYPE_DEFAULT as i32;
const MLXRUN_DTYPE_FLOAT32: i32 = mlxrun_dtype::MLXRUN_DTYPE_FLOAT32 as i32;
const MLXRUN_DTYPE_FLOAT16: i32 = mlxrun_dtype::MLXRUN_DTYPE_FLOAT16 as i32;
const MLXRUN_DTYPE_BFLOAT16: i32 = mlxrun_dtype::MLXRUN_DTYPE_BFLOAT16 as i32;

/// Values of `mlxrun_load_params.quantize_mode` and `mlxrun_model_info.quant_mode`: MLX's
/// quantization modes (`affine` is what mlx-lm's 2–8 bit checkpoints use).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum mlxrun_quant_mode {
    MLXRUN_QUANT_MODE_AFFINE = 0,
    MLXRUN_QUANT_MODE_MXFP4 = 1,
    MLXRUN_QUANT_MODE_MXFP8 = 2,
    MLXRUN_QUANT_MODE_NVFP4 = 3,
}

/// Values of `mlxrun_load_params.keep_quantized`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum mlxrun_keep_quantized {
    /// Keep quantized weights packed on a GPU, and on the CPU where the engine's CPU kernels
    /// take them (affine 4/8-bit, group size 32/64/128, float32 compute dtype); otherwise
    /// unpack them at load on the CPU, where MLX's quantized matmul is slower than float32.
    MLXRUN_KEEP_QUANTIZED_DEFAULT = 0,
    MLXRUN_KEEP_QUANTIZED_YES = 1,
    MLXRUN_KEEP_QUANTIZED_NO = 2,
}

const QUANT_MODES: [(i32, QuantMode); 4] = [
    (mlxrun_quant_mode::MLXRUN_QUANT_MODE_AFFINE as i32, QuantMode::Affine),
    (mlxrun_quant_mode::MLXRUN_QUANT_MODE_MXFP4 as i32, QuantMode::Mxfp4),
    (mlxrun_quant_mode::MLXRUN_QUANT_MODE_MXFP8 as i32, QuantMode::Mxfp8),
    (mlxrun_quant_mode::MLXRUN_QUANT_MODE_NVFP4 as i32, QuantMode::Nvfp4),
];

/// How to load a model. Get one from `mlxrun_load_default_params()`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct mlxrun_load_params {
    /// `sizeof(mlxrun_load_params)`.
    pub struct_size: u32,
    /// `MLXRUN_DEVICE_*`. DEFAULT: the GPU when MLX has one, else the CPU. The device
    /// becomes MLX's default device for the process.
    pub device: i32,
    /// `MLXRUN_DTYPE_*` compute dtype. DEFAULT: float32 on the CPU, the checkpoint's own
    /// dtype on a GPU.
    pub dtype: i32,
    /// Longest prompt + generation accepted, in tokens; 0 = the model's own maximum
    /// (`max_position_embeddings`), or unlimited when the config has none.
    pub context_length: u32,
    /// Quantize the dense weights of a bf16/f16/f32 checkpoint at load to this many bits
    /// (the layers mlx-lm's converter would quantize); 0 = no.
    pub quantize_bits: i32,
    /// Group size for `quantize_bits`; 0 = the mode's default (affine: 64).
    pub quantize_group_size: i32,
    /// `MLXRUN_QUANT_MODE_*` for `quantize_bits`.
    pub quantize_mode: i32,
    /// `MLXRUN_KEEP_QUANTIZED_*`: whether quantized weights (an mlx-lm quantized
    /// checkpoint, GGUF Q4_0/Q4_1/Q5_0/Q5_1/Q8_0/Q4_K/Q5_K tensors, `quantize_bits`) stay
    /// packed.
    pub keep_quantized: i32,
    /// NUL-terminated LoRA adapter folder (adapters.safetensors + adapter_config.json, as
    /// mlx_lm.lora and `mlxrun_model_train` write them) to put on the model; NULL = none.
    pub adapter_path: *const c_char,
    /// NUL-terminated backend name: "native" (NULL or "" too) or "mlx_lm" (mlx-lm in a
    /// Python worker process; see `mlxrun_backend_available`).
    pub backend: *const c_char,
    /// For "mlx_lm": the Python executable (NULL: `venv`'s, else `$MLXRUN_PYTHON`, else
    /// `$VIRTUAL_ENV`'s, else `python3` on the PATH).
    pub python: *const c_char,
    /// For "mlx_lm": a virtualenv whose `bin/python` to run (NULL: none).
    pub venv: *const c_char,
    /// For "mlx_lm": the longest the worker may stay silent during a call before it is
    /// declared hung and killed, in milliseconds; 0 = 120000.
    pub backend_timeout_ms: u32,
    /// Run as one rank of a distributed group and shard the model over its ranks (tensor
    /// parallelism): the NUL-terminated name of MLX's backend, "ring" (TCP), "jaccl"
    /// (Thunderbolt), "mpi", "nccl" or "any"; NULL or "" = not distributed. The group is
    /// the one MLX's environment describes (ring: `MLX_RANK` and `MLX_HOSTFILE`, a JSON list
    /// with one list of "ip:port" strings per rank). Every rank must load the same model
    /// with the same parameters and then make the same calls with the same arguments in
    /// the same order; each returns the same tokens (rank 0 typically shows them). A rank
    /// that dies makes the others' calls fail (MLXRUN_ERR_MLX, "connection to a peer was
    /// lost"). The native backend only.
    pub distributed_backend: *const c_char,
    /// How long loading waits for every rank to join, in milliseconds; 0 = 10000. Then
    /// also the longest a call may wait on the other ranks without this process computing
    /// anything before it fails (MLXRUN_ERR_MLX, "a peer is gone or stuck"). After such a
    /// failure MLX may keep a thread waiting for good, and a normal exit() would wait for
    /// it: end the process with _exit() (`mlxrun_distributed_failed` says when).
    pub distributed_timeout_ms: u32,
}

/// The size of the first version of the struct, before the quantization fields.
const LOAD_PARAMS_V1: usize = std::mem::offset_of!(mlxrun_load_params, quantize_bits);

/// Default load parameters (device and dtype chosen by the library).
#[no_mangle]
pub extern "C" fn mlxrun_load_default_params() -> mlxrun_load_params {
    mlxrun_load_params {
        struct_size: std::mem::size_of::<mlxrun_load_params>() as u32,
        device: MLXRUN_DEVICE_DEFAULT,
        dtype: MLXRUN_DTYPE_DEFAULT,
        context_length: 0,
        quantize_bits: 0,
        quantize_group_size: 0,
        quantize_mode: mlxrun_quant_mode::MLXRUN_QUANT_MODE_AFFINE as i32,
        keep_quantized: mlxrun_keep_quantized::MLXRUN_KEEP_QUANTIZED_DEFAULT as i32,
        adapter_path: std::ptr::null(),
        backend: std::ptr::null(),
        python: std::ptr::null(),
        venv: std::ptr::null(),
        backend_timeout_ms: 0,
        distributed_backend: std::ptr::null(),
        distributed_timeout_ms: 0,
    }
}

pub(crate) fn dtype_code(d: Dtype) -> i32 {
    match d {
        Dtype::F32 => MLXRUN_DTYPE_FLOAT32,
        Dtype::F16 => MLXRUN_DTYPE_FLOAT16,
        Dtype::Bf16 => MLXRUN_DTYPE_BFLOAT16,
        _ => MLXRUN_DTYPE_DEFAULT,
    }
}

/// Loads the model in the HF-layout folder `path` (NUL-terminated UTF-8): config.json,
/// safetensors weights, tokenizer.json. On success `*out` owns a new handle, released
/// with `mlxrun_model_free`; on failure `*out` is set to NULL. `params` may be NULL for
/// the defaults. Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn mlxrun_model_load(
    path: *const c_char,
    params: *const mlxrun_load_params,
    out: *mut *mut mlxrun_model,
) -> mlxrun_status {
    guard(|| {
        non_null(out, "out")?;
        *out = std::ptr::null_mut();
        let path = c_str(path, "path")?;
        let p = read_params(params, mlxrun_load_default_params(), LOAD_PARAMS_V1, "mlxrun_load_params")?;
        match p.device {
            MLXRUN_DEVICE_DEFAULT => {}
            MLXRUN_DEVICE_CPU => Device::cpu().set_default()?,
            MLXRUN_DEVICE_GPU => {
                if !Device::gpu().is_available() {
                    return Err(Error::invalid("device GPU requested, but this build of MLX has no GPU backend"));
                }
                Device::gpu().set_default()?
            }
            other => return Err(Error::invalid(format!("mlxrun_load_params.device = {other} is not an MLXRUN_DEVICE_* value"))),
        }
        let dtype = match p.dtype {
            MLXRUN_DTYPE_DEFAULT => None,
            MLXRUN_DTYPE_FLOAT32 => Some(Dtype::F32),
            MLXRUN_DTYPE_FLOAT16 => Some(Dtype::F16),
            MLXRUN_DTYPE_BFLOAT16 => Some(Dtype::Bf16),
            other => return Err(Error::invalid(format!("mlxrun_load_params.dtype = {other} is not an MLXRUN_DTYPE_* value"))),
        };
        let quantize = match p.quantize_bits {
            0 => None,
            bits => {
                let mode = QUANT_MODES.iter().find(|(c, _)| *c == p.quantize_mode).map(|(_, m)| *m).ok_or_else(|| {
                    Error::invalid(format!("mlxrun_load_params.quantize_mode = {} is not an MLXRUN_QUANT_MODE_* value", p.quantize_mode))
                })?;
                let group = (p.quantize_group_size != 0).then_some(p.quantize_group_size);
                Some(QuantParams::parse(mode.name(), group, Some(bits)).map_err(|e| Error::invalid(format!("mlxrun_load_params: {e}")))?)
            }
        };
        let keep_quantized = match p.keep_quantized {
            0 => None,
            1 => Some(true),
            2 => Some(false),
            other => {
                return Err(Error::invalid(format!(
                    "mlxrun_load_params.keep_quantized = {other} is not an MLXRUN_KEEP_QUANTIZED_* value"
                )))
            }
        };
        let adapter_path = if p.adapter_path.is_null() {
            None
        } else {
            Some(std::path::PathBuf::from(c_str(p.adapter_path, "mlxrun_load_params.adapter_path")?))
        };
        let choice = backend_choice(&p)?;
        let group = distributed_group(&p)?;
        let rank = group.as_ref().map_or((0, 1), |g| (g.rank(), g.size()));
        let model = backend::load(path, &LoadOptions { dtype, quantize, keep_quantized, adapter_path, stack_projections: None, group }, &choice)?;
        let context_length = match p.context_length {
            0 => model.info().max_position_embeddings.map(|n| n as usize),
            n => Some(n as usize),
        };
        let cancel = model.canceller();
        let tokenizer = model.native_ref("").ok().map(|m| m.tokenizer().clone());
        *out = Box::into_raw(Box::new(mlxrun_model { tokenizer, model: Mutex::new(model), cancel, metrics: Mutex::new(None), context_length, rank }));
        Ok(())
    })
}

/// The group a load joins when it asks to be distributed.
unsafe fn distributed_group(p: &mlxrun_load_params) -> crate::error::Result<Option<crate::mlx::distributed::Group>> {
    if p.distributed_backend.is_null() {
        return Ok(None);
    }
    let name = c_str(p.distributed_backend, "mlxrun_load_params.distributed_backend")?;
    if name.is_empty() {
        return Ok(None);
    }
    let ms = if p.distributed_timeout_ms == 0 { 10_000 } else { p.distributed_timeout_ms };
    crate::mlx::distributed::Group::init(name, std::time::Duration::from_millis(ms as u64)).map(Some)
}

/// This process's rank in the group `model` is sharded over into `*rank`, and the group's
/// size into `*size` (either may be NULL); 0 and 1 for a model loaded whole. Thread-safe;
/// never waits for a running call.
#[no_mangle]
pub unsafe extern "C" fn mlxrun_model_rank(model: *const mlxrun_model, rank: *mut i32, size: *mut i32) -> mlxrun_status {
    guard(|| {
        non_null(model, "model")?;
        let (r, n) = (*model).rank;
        if !rank.is_null() {
            *rank = r;
        }
        if !size.is_null() {
            *size = n;
        }
        Ok(())
    })
}

/// Whether work of a distributed group in this process has failed or stalled (a peer gone),
/// after which MLX may keep a thread waiting for good: the process should then end with
/// `_exit()`, since `exit()` waits for MLX's work to drain. Thread-safe.
#[no_mangle]
pub extern "C" fn mlxrun_distributed_failed() -> bool {
    crate::mlx::distributed::group_failed()
}

/// The backend a load asks for, with the `mlx_lm` worker's settings.
unsafe fn backend_choice(p: &mlxrun_load_params) -> crate::error::Result<BackendChoice> {
    let opt = |ptr: *const c_char, what: &str| -> crate::error::Result<Option<String>> {
        if ptr.is_null() {
            Ok(None)
        } else {
            Ok(Some(c_str(ptr, what)?.to_string()).filter(|s| !s.is_empty()))
        }
    };
    let mut mlx_lm = mlx_lm_options(opt(p.python, "mlxrun_load_params.python")?, opt(p.venv, "mlxrun_load_params.venv")?);
    if p.backend_timeout_ms != 0 {
        mlx_lm.reply_timeout = std::time::Duration::from_millis(p.backend_timeout_ms as u64);
    }
    Ok(BackendChoice { name: opt(p.backend, "mlxrun_load_params.backend")?, mlx_lm })
}

fn mlx_lm_options(python: Option<String>, venv: Option<String>) -> MlxLmOptions {
    MlxLmOptions { python: python.map(Into::into), venv: venv.map(Into::into), ..MlxLmOptions::default() }
}

/// The name of backend `index` (0: "native", 1: "mlx_lm"), or NULL past the last. A
/// static string. Thread-safe.
#[no_mangle]
pub extern "C" fn mlxrun_backend_name(index: usize) -> *const c_char {
    match index {
        0 => c"native".as_ptr(),
        1 => c"mlx_lm".as_ptr(),
        _ => std::ptr::null(),
    }
}

/// Whether the backend `name` can run here, into `*available`. When it cannot, the
/// reason (no Python, no mlx-lm, an mlx-lm too old, …) is copied into `reason` as
/// NUL-terminated UTF-8, the "needed size" way (`*needed` gets its size; a NULL or short
/// buffer gets nothing else and MLXRUN_ERR_BUFFER_TOO_SMALL); when it can, `reason`
/// gets the versions it runs on. `python`/`venv` (NULL for the defaults) choose the
/// `mlx_lm` backend's Python as `mlxrun_load_params` does. The first check of a Python
/// starts it once (seconds); later answers come from memory. An unknown name fails with
/// MLXRUN_ERR_INVALID_ARGUMENT. Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn mlxrun_backend_available(
    name: *const c_char,
    python: *const c_char,
    venv: *const c_char,
    available: *mut bool,
    reason: *mut c_char,
    capacity: usize,
    needed: *mut usize,
) -> mlxrun_status {
    guard(|| {
        let name = c_str(name, "name")?;
        non_null(available, "available")?;
        let python = if python.is_null() { None } else { Some(c_str(python, "python")?.to_string()) };
        let venv = if venv.is_null() { None } else { Some(c_str(venv, "venv")?.to_string()) };
        let a = backend::availability(name, &mlx_lm_options(python, venv))?;
        *available = a.available;
        super::write_c_string(a.reason.as_deref().unwrap_or(&a.version), reason, capacity, needed)
    })
}

/// The name of the backend that runs `model` ("native", "mlx_lm"); a static string,
/// NULL for a NULL model. Thread-safe; never waits for a running call.
#[no_mangle]
pub unsafe extern "C" fn mlxrun_model_backend(model: *const mlxrun_model) -> *const c_char {
    if model.is_null() {
        return std::ptr::null();
    }
    if (*model).tokenizer.is_some() {
        c"native".as_ptr()
    } else {
        c"mlx_lm".as_ptr()
    }
}

/// Releases a model and everything it holds. NULL is accepted. The handle must not be in
/// use by another thread.
#[no_mangle]
pub unsafe extern "C" fn mlxrun_model_free(model: *mut mlxrun_model) {
    if !model.is_null() {
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| drop(Box::from_raw(model))));
    }
}

/// What a model is. Fill `struct_size` before calling `mlxrun_model_get_info`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct mlxrun_model_info {
    pub struct_size: u32,
    /// NUL-terminated `model_type` from config.json, e.g. "llama", "qwen3".
    pub model_type: [c_char; 32],
    pub vocab_size: i32,
    pub hidden_size: i32,
    pub num_layers: i32,
    pub num_heads: i32,
    pub num_kv_heads: i32,
    pub head_dim: i32,
    /// The model's maximum context (0 when its config does not say).
    pub max_position_embeddings: i32,
    /// The context length in force (`mlxrun_load_params.context_length`, else the above).
    pub context_length: i32,
    /// `MLXRUN_DTYPE_*` the model computes in.
    pub dtype: i32,
    /// Whether the output head shares the input embedding.
    pub tied_embeddings: bool,
    /// Bits of the model's quantized weights (mlx-lm's default setting; some layers may
    /// differ); 0 for a dense model.
    pub quant_bits: i32,
    /// Their group size; 0 for a dense model.
    pub quant_group_size: i32,
    /// `MLXRUN_QUANT_MODE_*` of the quantized weights.
    pub quant_mode: i32,
    /// Whether the quantized weights stay packed in memory (else they were unpacked at load).
    pub quant_kept: bool,
}

/// The size of the first version of the struct, before the quantization fields.
const MODEL_INFO_V1: usize = std::mem::offset_of!(mlxrun_model_info, quant_bits);

/// Describes `model` into `*out`, whose `struct_size` the caller sets to
/// `sizeof(mlxrun_model_info)` (a smaller size from an older header gets the fields it
/// covers). Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn mlxrun_model_get_info(model: *const mlxrun_model, out: *mut mlxrun_model_info) -> mlxrun_status {
    guard(|| {
        non_null(model, "model")?;
        non_null(out, "out")?;
        let min = MODEL_INFO_V1;
        let size = (*out).struct_size as usize;
        if size < min {
            return Err(Error::invalid(format!("mlxrun_model_info.struct_size is {size}, at least {min} expected")));
        }
        let m = (*model).lock();
        let i = m.info();
        let mut name = [0 as c_char; 32];
        for (d, s) in name.iter_mut().zip(i.model_type.bytes().take(31)) {
            *d = s as c_char;
        }
        let q = i.quantization.as_ref();
        let full = std::mem::size_of::<mlxrun_model_info>();
        let info = mlxrun_model_info {
            struct_size: size.min(full) as u32,
            model_type: name,
            vocab_size: i.vocab_size,
            hidden_size: i.hidden_size,
            num_layers: i.num_layers,
            num_heads: i.num_heads,
            num_kv_heads: i.num_kv_heads,
            head_dim: i.head_dim,
            max_position_embeddings: i.max_position_embeddings.unwrap_or(0),
            context_length: (*model).context_length.map_or(0, |c| c.min(i32::MAX as usize) as i32),
            dtype: dtype_code(i.dtype),
            tied_embeddings: i.tied_embeddings,
            quant_bits: q.map_or(0, |q| q.params.bits),
            quant_group_size: q.map_or(0, |q| q.params.group_size),
            quant_mode: q.and_then(|q| QUANT_MODES.iter().find(|(_, m)| *m == q.params.mode)).map_or(0, |(c, _)| *c),
            quant_kept: q.is_some_and(|q| q.kept),
        };
        // A caller built against an older header gets the fields its struct has.
        std::ptr::copy_nonoverlapping(&info as *const mlxrun_model_info as *const u8, out as *mut u8, size.min(full));
        Ok(())
    })
}

/// Measurements of a model's most recent generation or chat call.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct mlxrun_metrics {
    pub struct_size: u32,
    pub prompt_tokens: u64,
    /// Prompt tokens served from a session's KV cache instead of being computed.
    pub cached_prompt_tokens: u64,
    pub generated_tokens: u64,
    pub prefill_seconds: f64,
    pub decode_seconds: f64,
    pub prefill_tokens_per_second: f64,
    pub decode_tokens_per_second: f64,
    /// MLX's peak memory during the call, bytes.
    pub peak_memory: u64,
    /// MLX's active memory at the end of the call, bytes.
    pub active_memory: u64,
    /// Whether the GPU's utilisation was sampled during the call (Linux with an NVIDIA
    /// GPU and its driver's NVML; never on the CPU or, for now, on macOS).
    pub gpu_utilization_available: bool,
    /// Mean GPU utilisation during the call, percent of time a kernel ran (sampled every
    /// 50 ms); 0 when not available.
    pub gpu_utilization_mean: f64,
    /// Highest sampled GPU utilisation during the call, percent; 0 when not available.
    pub gpu_utilization_max: f64,
}

/// The size of the first version of the struct, before the GPU utilisation fields.
const METRICS_V1: usize = std::mem::offset_of!(mlxrun_metrics, gpu_utilization_available);

/// Writes the metrics of the model's last completed call into `*out` (whose
/// `struct_size` the caller sets). Before any call, all values are zero. Thread-safe; does
/// not wait for a running generation (it reports the previous one).
#[no_mangle]
pub unsafe extern "C" fn mlxrun_model_metrics(model: *const mlxrun_model, out: *mut mlxrun_metrics) -> mlxrun_status {
    guard(|| {
        non_null(model, "model")?;
        non_null(out, "out")?;
        let min = METRICS_V1;
        let size = (*out).struct_size as usize;
        if size < min {
            return Err(Error::invalid(format!("mlxrun_metrics.struct_size is {size}, at least {min} expected")));
        }
        let m = (*model).metrics.lock().unwrap_or_else(|p| p.into_inner()).clone().unwrap_or_default();
        let full = std::mem::size_of::<mlxrun_metrics>();
        let metrics = mlxrun_metrics {
            struct_size: size.min(full) as u32,
            prompt_tokens: m.prompt_tokens as u64,
            cached_prompt_tokens: m.cached_prompt_tokens as u64,
            generated_tokens: m.generated_tokens as u64,
            prefill_seconds: m.prefill.as_secs_f64(),
            decode_seconds: m.decode.as_secs_f64(),
            prefill_tokens_per_second: m.prefill_tok_s(),
            decode_tokens_per_second: m.decode_tok_s(),
            peak_memory: m.peak_memory as u64,
            active_memory: m.active_memory as u64,
            gpu_utilization_available: m.gpu_utilization_mean.is_some(),
            gpu_utilization_mean: m.gpu_utilization_mean.unwrap_or(0.0) as f64,
            gpu_utilization_max: m.gpu_utilization_max.unwrap_or(0.0) as f64,
        };
        // A caller built against an older header gets the fields its struct has.
        std::ptr::copy_nonoverlapping(&metrics as *const mlxrun_metrics as *const u8, out as *mut u8, size.min(full));
        Ok(())
    })
}

/// Asks the call running on `model` (in another thread: a generate, chat, session,
/// classify, batch or training call) to stop before its next token, prefill chunk, batch
/// or training step; a generation then returns MLXRUN_OK with finish reason
/// MLXRUN_FINISH_CANCELLED, training MLXRUN_ERR_CANCELLED. A call
/// runs from the moment it holds the model (calls on one model run one at a time): a
/// cancel that arrives while it encodes or renders its prompt stops it too. A cancel
/// while no call runs is forgotten when the next one starts, so a caller that may race
/// the start of its own call repeats the cancel until the call returns. Thread-safe,
/// returns at once.
#[no_mangle]
pub unsafe extern "C" fn mlxrun_cancel(model: *const mlxrun_model) -> mlxrun_status {
    guard(|| {
        non_null(model, "model")?;
        (*model).cancel.cancel();
        Ok(())
    })
}
