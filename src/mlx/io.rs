//! Safetensors files through MLX's own reader and writer (lazy: tensors are read from
//! disk when first evaluated).
use std::collections::BTreeMap;
use std::ffi::{CStr, CString};
use std::path::Path;

use super::array::{check, new_array, ptrs, Array};
use super::ffi;
use crate::error::{Error, Result};

/// The tensors and the string metadata of one safetensors file.
#[derive(Debug, Default)]
pub struct Safetensors {
    pub tensors: BTreeMap<String, Array>,
    pub metadata: BTreeMap<String, String>,
}

fn c_path(path: &Path) -> Result<CString> {
    CString::new(path.to_string_lossy().as_bytes())
        .map_err(|_| Error::invalid(format!("path {} contains a NUL byte", path.display())))
}

fn with_path(path: &Path, e: Error) -> Error {
    match e {
        Error::Mlx(m) => Error::Mlx(format!("{}: {m}", path.display())),
        other => other,
    }
}

/// Reads a safetensors file. Errors name the file.
pub fn load_safetensors(path: impl AsRef<Path>) -> Result<Safetensors> {
    let path = path.as_ref();
    if !path.is_file() {
        return Err(Error::Io(format!("{}: no such file", path.display())));
    }
    let cpath = c_path(path)?;
    let mut map: *mut ffi::shim_map = std::ptr::null_mut();
    check(unsafe { ffi::shim_load_safetensors(cpath.as_ptr(), &mut map) }).map_err(|e| with_path(path, e))?;
    // Free the C++ map on every path out of here.
    struct Guard(*mut ffi::shim_map);
    impl Drop for Guard {
        fn drop(&mut self) {
            unsafe { ffi::shim_map_free(self.0) }
        }
    }
    let guard = Guard(map);
    let mut out = Safetensors::default();
    for i in 0..unsafe { ffi::shim_map_len(guard.0) } {
        let mut name: *const std::os::raw::c_char = std::ptr::null();
        let arr = new_array(|a| unsafe { ffi::shim_map_entry(guard.0, i, &mut name, a) })?;
        let name = unsafe { CStr::from_ptr(name) }.to_string_lossy().into_owned();
        out.tensors.insert(name, arr);
    }
    for i in 0..unsafe { ffi::shim_map_meta_len(guard.0) } {
        let (mut k, mut v) = (std::ptr::null(), std::ptr::null());
        check(unsafe { ffi::shim_map_meta_entry(guard.0, i, &mut k, &mut v) })?;
        let (k, v) = unsafe { (CStr::from_ptr(k), CStr::from_ptr(v)) };
        out.metadata.insert(k.to_string_lossy().into_owned(), v.to_string_lossy().into_owned());
    }
    Ok(out)
}

/// Writes `tensors` (evaluating them) and `metadata` to a safetensors file.
pub fn save_safetensors(path: impl AsRef<Path>, tensors: &[(&str, &Array)], metadata: &[(&str, &str)]) -> Result<()> {
    let path = path.as_ref();
    let cpath = c_path(path)?;
    let cstr = |s: &str| CString::new(s).map_err(|_| Error::invalid(format!("name {s:?} contains a NUL byte")));
    let names = tensors.iter().map(|(n, _)| cstr(n)).collect::<Result<Vec<_>>>()?;
    let name_ptrs: Vec<_> = names.iter().map(|n| n.as_ptr()).collect();
    let arrays: Vec<&Array> = tensors.iter().map(|(_, a)| *a).collect();
    let arr_ptrs = ptrs(&arrays);
    let keys = metadata.iter().map(|(k, _)| cstr(k)).collect::<Result<Vec<_>>>()?;
    let values = metadata.iter().map(|(_, v)| cstr(v)).collect::<Result<Vec<_>>>()?;
    let key_ptrs: Vec<_> = keys.iter().map(|k| k.as_ptr()).collect();
    let value_ptrs: Vec<_> = values.iter().map(|v| v.as_ptr()).collect();
    check(unsafe {
        ffi::shim_save_safetensors(
            cpath.as_ptr(),
            name_ptrs.as_ptr(),
            arr_ptrs.as_ptr(),
            arr_ptrs.len(),
            key_ptrs.as_ptr(),
            value_ptrs.as_ptr(),
            key_ptrs.len(),
        )
    })
    .map_err(|e| with_path(path, e))
}
