//! The safe layer over MLX: arrays that free themselves, dtypes, ops, fused kernels,
//! quantization, random numbers, devices and streams, memory, safetensors, evaluation and
//! transformations. With `capi`, the only place that holds `unsafe`.
mod array;
pub mod device;
pub mod device_info;
pub mod distributed;
pub mod dtype;
pub mod cpu_qmm;
pub mod fast;
pub mod graph;
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
