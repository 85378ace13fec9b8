//! What a device is: its name, kind, memory, and the allocator limits MLX applies to it.
//!
//! The GPU's description comes from MLX itself (`mlx::core::device_info`: Metal reports
//! `device_name`, `architecture`, `memory_size`, `max_recommended_working_set_size`; CUDA
//! `device_name`, `architecture`, `total_memory`, `free_memory`, `uuid`, `pci_bus_id`, the
//! compute capability). For the CPU MLX reports only its name and architecture, so the
//! memory size is the system's RAM (`/proc/meminfo` on Linux, `hw.memsize` on macOS), and
//! the name falls back to `/proc/cpuinfo`'s `model name` where MLX gives none.
use std::ffi::{c_char, c_void, CStr};
use std::os::raw::c_int;

use super::array::check;
use super::device::{Device, DeviceType};
use super::{ffi, memory};
use crate::error::Result;

/// Which MLX backend runs a device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceKind {
    Cpu,
    /// Apple's GPUs (macOS).
    Metal,
    /// NVIDIA GPUs (Linux with MLX's CUDA wheel).
    Cuda,
}

impl DeviceKind {
    pub fn name(self) -> &'static str {
        match self {
            DeviceKind::Cpu => "cpu",
            DeviceKind::Metal => "metal",
            DeviceKind::Cuda => "cuda",
        }
    }
}

/// One property as MLX reported it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InfoValue {
    Text(String),
    Number(usize),
}

/// A device's description and the memory limits in force. Sizes are bytes.
#[derive(Clone, Debug, PartialEq)]
pub struct DeviceInfo {
    pub device: Device,
    pub kind: DeviceKind,
    /// "Apple M2 Max", "NVIDIA H100 80GB HBM3", the CPU's model name.
    pub name: String,
    /// "applegpu_g14s", "sm_90", "x86_64"; empty when not reported.
    pub architecture: String,
    /// The device's memory: unified memory on Apple silicon, the card's memory on CUDA,
    /// the system's RAM for the CPU. `None` when it could not be read.
    pub memory_size: Option<u64>,
    /// Memory the card has free now (CUDA only).
    pub free_memory: Option<u64>,
    /// Metal's recommended working-set size (`max_recommended_working_set_size`); MLX's
    /// default memory limit there is 1.5 times it. `None` off Metal.
    pub max_recommended_working_set_size: Option<u64>,
    /// MLX's memory limit (`set_memory_limit`).
    pub memory_limit: u64,
    /// MLX's allocator cache limit (`set_cache_limit`).
    pub cache_limit: u64,
    /// The wired limit in force (see [`memory::wired_limit`]; applied on Metal only).
    pub wired_limit: u64,
    /// Every property MLX reported, in key order (the fields above are read from these).
    pub properties: Vec<(String, InfoValue)>,
}

impl DeviceInfo {
    /// Describes the calling thread's default device (the one models load onto).
    pub fn current() -> Result<DeviceInfo> {
        DeviceInfo::of(Device::default_device()?)
    }

    /// Describes `device`.
    pub fn of(device: Device) -> Result<DeviceInfo> {
        let mut properties = mlx_properties(device)?;
        properties.sort_by(|a, b| a.0.cmp(&b.0));
        let text = |k: &str| {
            properties.iter().find(|(key, _)| key == k).and_then(|(_, v)| match v {
                InfoValue::Text(t) if !t.trim().is_empty() => Some(t.trim().to_string()),
                _ => None,
            })
        };
        let number = |k: &str| {
            properties.iter().find(|(key, _)| key == k).and_then(|(_, v)| match v {
                InfoValue::Number(n) => Some(*n as u64),
                _ => None,
            })
        };
        let kind = match device.kind {
            DeviceType::Cpu => DeviceKind::Cpu,
            // MLX has one GPU backend per build: Metal on macOS, CUDA elsewhere.
            DeviceType::Gpu if cfg!(target_os = "macos") => DeviceKind::Metal,
            DeviceType::Gpu => DeviceKind::Cuda,
        };
        let (name, memory_size) = match kind {
            DeviceKind::Cpu => (text("device_name").or_else(cpu_model_name), system_memory()),
            _ => (text("device_name"), number("memory_size").or(number("total_memory"))),
        };
        Ok(DeviceInfo {
            device,
            kind,
            name: name.unwrap_or_default(),
            architecture: text("architecture").unwrap_or_default(),
            memory_size,
            free_memory: number("free_memory"),
            max_recommended_working_set_size: number("max_recommended_working_set_size"),
            memory_limit: memory::memory_limit() as u64,
            cache_limit: memory::cache_limit()? as u64,
            wired_limit: memory::wired_limit() as u64,
            properties,
        })
    }

    /// A property MLX reported as text (e.g. CUDA's `pci_bus_id`).
    pub fn text(&self, key: &str) -> Option<&str> {
        self.properties.iter().find(|(k, _)| k == key).and_then(|(_, v)| match v {
            InfoValue::Text(t) => Some(t.as_str()),
            InfoValue::Number(_) => None,
        })
    }
}

/// MLX's property map for `device`.
fn mlx_properties(device: Device) -> Result<Vec<(String, InfoValue)>> {
    unsafe extern "C" fn entry(ctx: *mut c_void, key: *const c_char, text: *const c_char, number: usize) {
        // Nothing here can panic but an allocation failure, which aborts anyway; a panic
        // must not unwind into C++.
        let out = &mut *(ctx as *mut Vec<(String, InfoValue)>);
        if key.is_null() {
            return;
        }
        let key = CStr::from_ptr(key).to_string_lossy().into_owned();
        let value = if text.is_null() {
            InfoValue::Number(number)
        } else {
            InfoValue::Text(CStr::from_ptr(text).to_string_lossy().into_owned())
        };
        out.push((key, value));
    }
    let mut out: Vec<(String, InfoValue)> = Vec::new();
    check(unsafe {
        ffi::shim_device_info(device.kind as c_int, device.index, entry, &mut out as *mut _ as *mut c_void)
    })?;
    Ok(out)
}

/// The CPU's model name: `/proc/cpuinfo`'s first `model name` (x86) or `Model` (some ARM
/// boards) line on Linux, `machdep.cpu.brand_string` on macOS.
pub fn cpu_model_name() -> Option<String> {
    #[cfg(target_os = "macos")]
    {
        sysctl_string("machdep.cpu.brand_string")
    }
    #[cfg(not(target_os = "macos"))]
    {
        parse_cpuinfo(&std::fs::read_to_string("/proc/cpuinfo").ok()?)
    }
}

/// The first `model name` (else `Model`) value of a `/proc/cpuinfo` text.
pub fn parse_cpuinfo(text: &str) -> Option<String> {
    let field = |name: &str| {
        text.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            (k.trim() == name && !v.trim().is_empty()).then(|| v.trim().to_string())
        })
    };
    field("model name").or_else(|| field("Model"))
}

/// The system's RAM in bytes: `/proc/meminfo`'s `MemTotal` on Linux, `hw.memsize` on
/// macOS.
pub fn system_memory() -> Option<u64> {
    #[cfg(target_os = "macos")]
    {
        sysctl_u64("hw.memsize")
    }
    #[cfg(not(target_os = "macos"))]
    {
        parse_meminfo_total(&std::fs::read_to_string("/proc/meminfo").ok()?)
    }
}

/// `MemTotal` of a `/proc/meminfo` text, in bytes (the file gives kibibytes).
pub fn parse_meminfo_total(text: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let mut words = line["MemTotal:".len()..].split_whitespace();
    let n: u64 = words.next()?.parse().ok()?;
    match words.next() {
        Some("kB") => Some(n * 1024),
        None => Some(n),
        Some(_) => None,
    }
}

#[cfg(target_os = "macos")]
fn sysctl_u64(name: &str) -> Option<u64> {
    let name = std::ffi::CString::new(name).ok()?;
    let mut value: u64 = 0;
    let mut len = std::mem::size_of::<u64>();
    let rc = unsafe {
        libc::sysctlbyname(name.as_ptr(), &mut value as *mut u64 as *mut c_void, &mut len, std::ptr::null_mut(), 0)
    };
    (rc == 0).then_some(value)
}

#[cfg(target_os = "macos")]
fn sysctl_string(name: &str) -> Option<String> {
    let name = std::ffi::CString::new(name).ok()?;
    let mut buf = [0u8; 256];
    let mut len = buf.len();
    let rc = unsafe {
        libc::sysctlbyname(name.as_ptr(), buf.as_mut_ptr() as *mut c_void, &mut len, std::ptr::null_mut(), 0)
    };
    if rc != 0 {
        return None;
    }
    let s = CStr::from_bytes_until_nul(&buf[..len.min(buf.len())]).ok()?.to_string_lossy().trim().to_string();
    (!s.is_empty()).then_some(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meminfo_total() {
        let text = "MemTotal:       24683792 kB\nMemFree:         1000 kB\n";
        assert_eq!(parse_meminfo_total(text), Some(24683792 * 1024));
        assert_eq!(parse_meminfo_total("MemFree: 3 kB\n"), None);
        assert_eq!(parse_meminfo_total("MemTotal: x kB\n"), None);
    }

    #[test]
    fn cpuinfo_model() {
        let x86 = "processor\t: 0\nvendor_id\t: GenuineIntel\nmodel\t\t: 106\nmodel name\t: Intel(R) Xeon(R) Processor\n";
        assert_eq!(parse_cpuinfo(x86).as_deref(), Some("Intel(R) Xeon(R) Processor"));
        let arm = "processor\t: 0\nBogoMIPS\t: 108.00\n\nModel\t\t: Raspberry Pi 4 Model B Rev 1.4\n";
        assert_eq!(parse_cpuinfo(arm).as_deref(), Some("Raspberry Pi 4 Model B Rev 1.4"));
        assert_eq!(parse_cpuinfo("processor\t: 0\n"), None);
    }
}
