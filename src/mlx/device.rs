//! Devices (CPU, GPU) and streams. Ops run on the default stream of the default device of
//! the calling thread.
use std::os::raw::c_int;

use super::array::check;
use super::ffi;
use crate::error::Result;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceType {
    Cpu = 0,
    Gpu = 1,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Device {
    pub kind: DeviceType,
    pub index: i32,
}

impl Device {
    pub const fn cpu() -> Device {
        Device { kind: DeviceType::Cpu, index: 0 }
    }
    pub const fn gpu() -> Device {
        Device { kind: DeviceType::Gpu, index: 0 }
    }

    /// The device ops go to when none is named.
    pub fn default_device() -> Result<Device> {
        let (mut t, mut i) = (0 as c_int, 0 as c_int);
        check(unsafe { ffi::shim_default_device(&mut t, &mut i) })?;
        Ok(Device { kind: if t == 0 { DeviceType::Cpu } else { DeviceType::Gpu }, index: i })
    }

    pub fn set_default(self) -> Result<()> {
        check(unsafe { ffi::shim_set_default_device(self.kind as c_int, self.index) })
    }

    /// Whether this build of MLX has a backend for the device (GPU: Metal or CUDA).
    pub fn is_available(self) -> bool {
        let mut a = 0;
        check(unsafe { ffi::shim_device_available(self.kind as c_int, &mut a) }).is_ok() && a != 0
    }

    pub fn count(kind: DeviceType) -> Result<i32> {
        let mut n = 0;
        check(unsafe { ffi::shim_device_count(kind as c_int, &mut n) })?;
        Ok(n)
    }

    /// Waits until everything queued on this device's default stream has run.
    pub fn synchronize(self) -> Result<()> {
        check(unsafe { ffi::shim_synchronize(self.kind as c_int, -1) })
    }
}

/// A queue of work on one device. Work on different streams may overlap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stream {
    pub device: Device,
    pub index: i32,
}

impl Stream {
    pub fn new(device: Device) -> Result<Stream> {
        let mut i = 0;
        check(unsafe { ffi::shim_new_stream(device.kind as c_int, &mut i) })?;
        Ok(Stream { device, index: i })
    }

    /// The calling thread's default stream on `device`.
    pub fn default_for(device: Device) -> Result<Stream> {
        let mut i = 0;
        check(unsafe { ffi::shim_default_stream(device.kind as c_int, &mut i) })?;
        Ok(Stream { device, index: i })
    }

    /// Makes this the calling thread's default stream for its device.
    pub fn set_default(self) -> Result<()> {
        check(unsafe { ffi::shim_set_default_stream(self.device.kind as c_int, self.index) })
    }

    pub fn synchronize(self) -> Result<()> {
        check(unsafe { ffi::shim_synchronize(self.device.kind as c_int, self.index) })
    }
}
