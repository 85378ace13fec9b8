//! GPU utilisation from NVIDIA's management library (NVML), for MLX's CUDA backend.
//!
//! NVML is loaded with `dlopen("libnvidia-ml.so.1")` when first asked for, never linked:
//! the library ships with the NVIDIA driver, not with CUDA or MLX, and a build of mlxrun
//! must run on machines without it. Its absence (or a driver that refuses) is "not
//! available", with the reason, never an error of the call that wanted the numbers.
//!
//! Metal has no public utilisation counter short of IOKit's undocumented
//! `IOAccelerator` statistics, which could not be tried on these machines, so macOS
//! reports none. Not run here: these machines have no NVIDIA driver; the tests cover the
//! absent library and a library without NVML's symbols.
use std::ffi::{c_char, c_int, c_uint, c_void, CStr, CString};
use std::sync::OnceLock;

/// The soname the NVIDIA driver installs.
pub const LIBRARY: &str = "libnvidia-ml.so.1";

/// `nvmlReturn_t`: 0 is success.
type NvmlReturn = c_int;
type NvmlDevice = *mut c_void;

#[repr(C)]
#[derive(Default)]
struct NvmlUtilization {
    /// Percent of the last sample period in which a kernel ran.
    gpu: c_uint,
    /// Percent of it in which device memory was read or written.
    memory: c_uint,
}

/// The loaded library and the functions used.
pub struct Nvml {
    /// Kept open for the process's life (device handles point into the library).
    _handle: *mut c_void,
    init: unsafe extern "C" fn() -> NvmlReturn,
    error_string: unsafe extern "C" fn(NvmlReturn) -> *const c_char,
    by_index: unsafe extern "C" fn(c_uint, *mut NvmlDevice) -> NvmlReturn,
    by_pci_bus_id: unsafe extern "C" fn(*const c_char, *mut NvmlDevice) -> NvmlReturn,
    utilization: unsafe extern "C" fn(NvmlDevice, *mut NvmlUtilization) -> NvmlReturn,
}

// NVML's functions are thread-safe (documented by NVIDIA); the handle is only read.
unsafe impl Send for Nvml {}
unsafe impl Sync for Nvml {}

/// One GPU as NVML names it.
#[derive(Clone, Copy)]
pub struct Gpu(NvmlDevice);

// A device handle is an opaque token valid for the process's life after nvmlInit.
unsafe impl Send for Gpu {}
unsafe impl Sync for Gpu {}

impl Nvml {
    /// Loads NVML from `library` (a soname or a path) and initialises it. The error says
    /// why not: the loader's message for a missing library, the missing symbol, or NVML's
    /// own message when initialisation fails (no driver, no device).
    pub fn open(library: &str) -> Result<Nvml, String> {
        let nvml = Nvml::load(library)?;
        nvml.call("nvmlInit_v2", unsafe { (nvml.init)() })?;
        Ok(nvml)
    }

    #[cfg(target_os = "linux")]
    fn load(library: &str) -> Result<Nvml, String> {
        let name = CString::new(library).map_err(|_| format!("{library:?} contains a NUL byte"))?;
        // SAFETY: dlopen/dlsym/dlerror with valid C strings; the handle stays open for the
        // process's life (a loaded NVML is never unloaded: device handles point into it).
        unsafe {
            let handle = libc::dlopen(name.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL);
            if handle.is_null() {
                return Err(format!("{library} could not be loaded: {}", dl_error()));
            }
            let sym = |s: &str| -> Result<*mut c_void, String> {
                let c = CString::new(s).expect("symbol names have no NUL");
                let p = libc::dlsym(handle, c.as_ptr());
                if p.is_null() {
                    Err(format!("{library} has no {s} (not NVML, or too old a driver)"))
                } else {
                    Ok(p)
                }
            };
            let loaded = (|| {
                Ok(Nvml {
                    _handle: handle,
                    init: std::mem::transmute::<*mut c_void, _>(sym("nvmlInit_v2")?),
                    error_string: std::mem::transmute::<*mut c_void, _>(sym("nvmlErrorString")?),
                    by_index: std::mem::transmute::<*mut c_void, _>(sym("nvmlDeviceGetHandleByIndex_v2")?),
                    by_pci_bus_id: std::mem::transmute::<*mut c_void, _>(sym("nvmlDeviceGetHandleByPciBusId_v2")?),
                    utilization: std::mem::transmute::<*mut c_void, _>(sym("nvmlDeviceGetUtilizationRates")?),
                })
            })();
            if loaded.is_err() {
                libc::dlclose(handle);
            }
            loaded
        }
    }

    #[cfg(not(target_os = "linux"))]
    fn load(library: &str) -> Result<Nvml, String> {
        Err(format!("{library} not loaded: GPU utilisation is read through NVML, on Linux only"))
    }

    fn call(&self, what: &str, rc: NvmlReturn) -> Result<(), String> {
        if rc == 0 {
            return Ok(());
        }
        // SAFETY: nvmlErrorString returns a static string for any code.
        let msg = unsafe {
            let p = (self.error_string)(rc);
            if p.is_null() { String::new() } else { CStr::from_ptr(p).to_string_lossy().into_owned() }
        };
        Err(format!("{what} failed: {msg} (NVML error {rc})"))
    }

    /// The GPU with PCI bus id `bus_id` (as CUDA and MLX's `pci_bus_id` write it,
    /// "0000:65:00.0"); with CUDA_VISIBLE_DEVICES set, CUDA's indices are not NVML's,
    /// but bus ids are the same.
    pub fn gpu_by_pci_bus_id(&self, bus_id: &str) -> Result<Gpu, String> {
        let c = CString::new(bus_id).map_err(|_| format!("bus id {bus_id:?} contains a NUL byte"))?;
        let mut dev: NvmlDevice = std::ptr::null_mut();
        self.call("nvmlDeviceGetHandleByPciBusId_v2", unsafe { (self.by_pci_bus_id)(c.as_ptr(), &mut dev) })?;
        Ok(Gpu(dev))
    }

    /// The GPU at NVML's `index`.
    pub fn gpu_by_index(&self, index: u32) -> Result<Gpu, String> {
        let mut dev: NvmlDevice = std::ptr::null_mut();
        self.call("nvmlDeviceGetHandleByIndex_v2", unsafe { (self.by_index)(index, &mut dev) })?;
        Ok(Gpu(dev))
    }

    /// The percentage of the driver's last sample period (1/6 s to 1 s depending on the
    /// card) during which one or more kernels ran on `gpu`.
    pub fn utilization(&self, gpu: Gpu) -> Result<u32, String> {
        let mut u = NvmlUtilization::default();
        self.call("nvmlDeviceGetUtilizationRates", unsafe { (self.utilization)(gpu.0, &mut u) })?;
        Ok(u.gpu)
    }
}

#[cfg(target_os = "linux")]
unsafe fn dl_error() -> String {
    let p = libc::dlerror();
    if p.is_null() {
        "unknown dlopen error".into()
    } else {
        CStr::from_ptr(p).to_string_lossy().into_owned()
    }
}

/// The process's NVML, loaded and initialised on first use; the error says why there is
/// none (kept, so a machine without the driver pays for the attempt once).
pub fn shared() -> Result<&'static Nvml, &'static str> {
    static NVML: OnceLock<Result<Nvml, String>> = OnceLock::new();
    NVML.get_or_init(|| Nvml::open(LIBRARY)).as_ref().map_err(String::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_library_is_unavailable_with_the_loaders_reason() {
        let err = Nvml::open("libmlxrun-no-such-nvml.so.1").err().expect("a missing library must not load");
        assert!(err.contains("libmlxrun-no-such-nvml.so.1"), "{err}");
        if cfg!(target_os = "linux") {
            // The loader's own message names the reason.
            assert!(err.contains("cannot open shared object file") || err.contains("No such file"), "{err}");
        }
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_library_without_nvml_symbols_is_refused() {
        // libm is on every glibc system and has none of NVML's functions.
        let err = Nvml::open("libm.so.6").err().expect("libm is not NVML");
        assert!(err.contains("has no nvmlInit_v2"), "{err}");
    }

    #[test]
    fn the_shared_instance_answers_either_way() {
        // Here (no NVIDIA driver) it is an error with a reason; on a GPU machine a library.
        match shared() {
            Ok(_) => {}
            Err(why) => assert!(why.contains(LIBRARY), "{why}"),
        }
    }
}
