//! The project's CPU quantized-matmul kernels (src/shim/cpu_qmm.cpp, qmm_kernels.cpp): an
//! MLX primitive computing what `quantized_matmul(x, w, scales, biases, transpose = true,
//! group_size, bits, "affine")` computes, several times faster than MLX's own CPU kernel
//! and, at decode sizes, faster than a dense f32 matmul (it reads 4 or 8 bits a weight).
//! Takes float32 activations, scales and biases in float32, float16 or bfloat16 (both
//! alike), bits 4 or 8 and group sizes 32, 64, 128.
use std::ffi::CStr;
use std::sync::OnceLock;

use super::array::{new_array, Array};
use super::device::Device;
use super::dtype::Dtype;
use super::ffi;
use super::quant::{QuantMode, QuantParams, Quantized};
use crate::error::Result;

/// `x @ Wᵀ` on the project's kernels; an error for settings they do not take (see
/// [`takes`]) or when the default device is not the CPU.
pub fn matmul(x: &Array, w: &Array, scales: &Array, biases: &Array, group_size: i32, bits: i32) -> Result<Array> {
    new_array(|out| unsafe {
        ffi::shim_cpu_quantized_matmul(x.as_ptr(), w.as_ptr(), scales.as_ptr(), biases.as_ptr(), group_size, bits, out)
    })
}

/// Whether `x @ qᵀ` runs on these kernels: the CPU is the default device, the settings are
/// ones they take, and `MLXRUN_CPU_QMM=mlx` does not send quantized matmuls to MLX's kernel.
pub fn takes(q: &Quantized, x: &Array) -> Result<bool> {
    let scales = q.scales.dtype();
    let fits = takes_params(q.params(), x.dtype())
        && q.weight.ndim() == 2
        && matches!(scales, Dtype::F32 | Dtype::F16 | Dtype::Bf16)
        && q.biases.as_ref().is_some_and(|b| b.dtype() == scales);
    Ok(fits && Device::default_device()? == Device::cpu())
}

/// Whether matrices quantized with `p`, computing in `dtype`, run on these kernels (when
/// the CPU is the default device).
pub fn takes_params(p: QuantParams, dtype: Dtype) -> bool {
    enabled()
        && p.mode == QuantMode::Affine
        && matches!(p.bits, 4 | 8)
        && matches!(p.group_size, 32 | 64 | 128)
        && dtype == Dtype::F32
}

/// The narrowest dtype that holds every value of `scales` and `biases` (f32 arrays)
/// exactly: float16, bfloat16 or float32. The kernels read scales and biases held narrower
/// in half the bytes, and convert them back to the same f32 values, so a model that keeps
/// them so computes exactly what it computed with f32 ones, faster (a decode step reads
/// every scale and bias once). GGUF's Q4_0/Q4_1/Q8_0 store theirs in f16; a checkpoint
/// saved in bf16 has bf16 ones.
pub fn exact_scale_dtype(scales: &Array, biases: &Array) -> Result<Dtype> {
    for dt in [Dtype::F16, Dtype::Bf16] {
        let exact = |a: &Array| -> Result<bool> { a.astype(dt)?.astype(Dtype::F32)?.equal(a)?.all(None, false)?.item::<bool>() };
        if exact(scales)? && exact(biases)? {
            return Ok(dt);
        }
    }
    Ok(Dtype::F32)
}

fn enabled() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| std::env::var("MLXRUN_CPU_QMM").map_or(true, |v| v != "mlx"))
}

/// Makes the kernels run their portable code (`true`) or the best the CPU has; returns the
/// previous setting. For tests of the fallback: the setting is process-wide.
pub fn set_portable(portable: bool) -> bool {
    unsafe { ffi::shim_cpu_qmm_set_portable(portable as i32) != 0 }
}

/// Makes single-row products (decode) quantize their activations to int8 per block of 32
/// and multiply in integers, as llama.cpp does (`true`), or multiply in f32; returns the
/// previous setting. About twice the speed of the f32 kernel, and y moves by at most
/// Σ_k |w_k|·d(k)/2 (d = a block's max |x| / 127). AVX2 only (the portable code stays f32).
/// Starts from `MLXRUN_CPU_QMM_ACT=int8`; process-wide.
pub fn set_int8_activations(on: bool) -> bool {
    unsafe { ffi::shim_cpu_qmm_set_int8_activations(on as i32) != 0 }
}

/// The code the kernels run now: `"avx2"` or `"scalar"`.
pub fn isa() -> &'static str {
    unsafe { CStr::from_ptr(ffi::shim_cpu_qmm_isa()) }.to_str().unwrap_or("?")
}
