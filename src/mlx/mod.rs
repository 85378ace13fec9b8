//! The safe layer over MLX: arrays that free themselves, dtypes, ops, fused kernels,
//! quantization, random numbers, devices and streams, memory, safetensors, evaluation and
//! transformations. With `capi`, the only place that holds `unsafe`.
mod array;
pub mod device;
pub mod device_info;
pub mod dtype;
pub mod fast;
mod ffi;
pub mod io;
pub mod memory;
pub mod nvml;
pub mod ops;
pub mod quant;
pub mod random;
pub mod transforms;

pub use array::Array;
pub use device::{Device, DeviceType, Stream};
pub use dtype::{Dtype, Element};
pub use ops::{concatenate, stack, where_};
pub use transforms::{async_eval, eval, value_and_grad, with_compiled, Compiled};

/// The version string of the MLX library linked in.
pub fn version() -> String {
    unsafe { std::ffi::CStr::from_ptr(ffi::shim_mlx_version()) }.to_string_lossy().into_owned()
}

/// Ends the process at once with `code`, without running C and C++ exit handlers.
///
/// Why: Debian's OpenBLAS 0.3.21 (pthreads build), which the Linux CPU build links, can
/// deadlock in its exit handler — it joins a worker thread that missed the shutdown
/// wake-up while still spinning after the last BLAS call, which is exactly the state of a
/// program that exits right after generating. The command-line program flushes its
/// output and leaves through here. (The serial build has no such race, but changes
/// float32 results relative to the references, which are recorded with this build.)
pub fn exit_now(code: i32) -> ! {
    extern "C" {
        fn _exit(code: i32) -> !;
    }
    // SAFETY: _exit takes no pointers and never returns.
    unsafe { _exit(code) }
}
