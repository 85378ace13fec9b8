//! What the device is: `mlxrun_get_device_info`.
use std::ffi::c_char;

use super::{guard, mlxrun_status, non_null};
use crate::error::Error;
use crate::mlx::device_info::{DeviceInfo, DeviceKind};
use crate::mlx::DeviceType;

/// Values of `mlxrun_device_info.kind`: the MLX backend that runs the device.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum mlxrun_device_kind {
    MLXRUN_DEVICE_KIND_CPU = 0,
    /// Apple's GPUs (macOS).
    MLXRUN_DEVICE_KIND_METAL = 1,
    /// NVIDIA GPUs (Linux, MLX's CUDA backend).
    MLXRUN_DEVICE_KIND_CUDA = 2,
}

/// A device and the memory limits MLX applies to it. Sizes are bytes; 0 where the
/// platform does not report a value. Fill `struct_size` before calling
/// `mlxrun_get_device_info`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct mlxrun_device_info {
    /// `sizeof(mlxrun_device_info)`.
    pub struct_size: u32,
    /// `MLXRUN_DEVICE_CPU` or `MLXRUN_DEVICE_GPU`.
    pub device: i32,
    /// The device's index among its type (0 for the CPU).
    pub index: i32,
    /// `MLXRUN_DEVICE_KIND_*`.
    pub kind: i32,
    /// NUL-terminated UTF-8, cut at a character boundary to fit: the GPU's name as MLX
    /// reports it ("Apple M2 Max", "NVIDIA H100 80GB HBM3"), or the CPU's model name.
    pub name: [c_char; 256],
    /// NUL-terminated: "applegpu_g14s", "sm_90", "x86_64"; "" when not reported.
    pub architecture: [c_char; 64],
    /// The device's memory: unified memory on Apple silicon, the card's on CUDA, the
    /// system's RAM for the CPU.
    pub memory_size: u64,
    /// The card's free memory now (CUDA only).
    pub free_memory: u64,
    /// Metal's recommended working-set size (MLX's default memory limit there is 1.5
    /// times it); 0 off Metal.
    pub max_recommended_working_set_size: u64,
    /// MLX's memory limit (`mlxrun_set_memory_limit`).
    pub memory_limit: u64,
    /// MLX's allocator cache limit (`mlxrun_set_cache_limit`).
    pub cache_limit: u64,
    /// The wired limit in force: the last one set with `mlxrun_set_wired_limit`, else 0
    /// (MLX's default; MLX cannot be asked). Applied on Metal only.
    pub wired_limit: u64,
}

/// Copies `s` into a fixed C buffer as NUL-terminated UTF-8, cut at a character boundary.
pub(crate) fn fill(buf: &mut [c_char], s: &str) {
    let mut n = s.len().min(buf.len() - 1);
    while !s.is_char_boundary(n) {
        n -= 1;
    }
    for (d, b) in buf.iter_mut().zip(s.as_bytes()[..n].iter()) {
        *d = *b as c_char;
    }
    buf[n] = 0;
}

/// Describes the device models load onto (MLX's default device: the GPU when MLX has one,
/// unless a load chose the CPU) into `*out`, whose `struct_size` the caller sets to
/// `sizeof(mlxrun_device_info)`; on return it holds the size the library filled (a newer
/// header's larger struct keeps its unknown tail). Process-wide; thread-safe.
/// (Named `get_` because C would not allow a function named like the struct's typedef.)
#[no_mangle]
pub unsafe extern "C" fn mlxrun_get_device_info(out: *mut mlxrun_device_info) -> mlxrun_status {
    guard(|| {
        non_null(out, "out")?;
        let full = std::mem::size_of::<mlxrun_device_info>();
        let size = (*out).struct_size as usize;
        if size < full {
            return Err(Error::invalid(format!(
                "mlxrun_device_info.struct_size is {size}, at least {full} expected (set it to sizeof(mlxrun_device_info))"
            )));
        }
        let d = DeviceInfo::current()?;
        let mut info = mlxrun_device_info {
            struct_size: full as u32,
            device: match d.device.kind {
                DeviceType::Cpu => super::mlxrun_device::MLXRUN_DEVICE_CPU as i32,
                DeviceType::Gpu => super::mlxrun_device::MLXRUN_DEVICE_GPU as i32,
            },
            index: d.device.index,
            kind: match d.kind {
                DeviceKind::Cpu => mlxrun_device_kind::MLXRUN_DEVICE_KIND_CPU,
                DeviceKind::Metal => mlxrun_device_kind::MLXRUN_DEVICE_KIND_METAL,
                DeviceKind::Cuda => mlxrun_device_kind::MLXRUN_DEVICE_KIND_CUDA,
            } as i32,
            name: [0; 256],
            architecture: [0; 64],
            memory_size: d.memory_size.unwrap_or(0),
            free_memory: d.free_memory.unwrap_or(0),
            max_recommended_working_set_size: d.max_recommended_working_set_size.unwrap_or(0),
            memory_limit: d.memory_limit,
            cache_limit: d.cache_limit,
            wired_limit: d.wired_limit,
        };
        fill(&mut info.name, &d.name);
        fill(&mut info.architecture, &d.architecture);
        *out = info;
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::fill;

    #[test]
    fn fill_cuts_at_a_character_boundary() {
        let mut buf = [1 as std::ffi::c_char; 5];
        fill(&mut buf, "abé!"); // a b 0xC3 0xA9 ! : é fits in 4 bytes + NUL
        assert_eq!(buf.map(|c| c as u8), [b'a', b'b', 0xC3, 0xA9, 0]);
        fill(&mut buf, "abcé"); // é would straddle the end: dropped whole
        assert_eq!(buf[..4].iter().map(|&c| c as u8).collect::<Vec<_>>(), [b'a', b'b', b'c', 0]);
    }
}
