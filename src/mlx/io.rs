//! Safetensors files: validated by the `safetensors` crate, then read by MLX's loader
//! (lazily: tensors are read from disk when first evaluated); written by the crate.
//!
//! What MLX's loader (`mlx::core::load_safetensors`, MLX 0.32) still does after the
//! validation in [`header`]: it opens the file again, reads the 8-byte length (refusing 0
//! and 100,000,000 or more) and the header (refusing one longer than the file), parses it
//! with nlohmann::json, and for each tensor checks that the dtype is one it reads, that
//! `data_offsets` has two entries with end ≥ start spanning exactly shape × dtype bytes, and
//! that the end lies inside the file. It does not check that tensors are contiguous, that
//! they do not overlap or that they cover the data — which is why [`header`] runs first.
//! It then returns lazy arrays, each holding the open file and its offset: nothing is
//! mapped; a tensor's bytes are read with `pread` (in parallel chunks) into a buffer of
//! MLX's own when the tensor is first evaluated. A file cut short or replaced in place
//! after loading fails that evaluation with "[read] Unable to read from file"; one renamed
//! over (as this module's writer does) leaves the loaded arrays reading the old file.
use std::collections::{BTreeMap, HashMap, HashSet};
use std::ffi::{CStr, CString};
use std::path::Path;

use safetensors::tensor::TensorView;
use safetensors::Dtype as StDtype;

use super::array::{check, new_array, Array};
use super::dtype::Dtype;
use super::ffi;
use crate::error::{Error, Result};

pub mod header;
pub use header::{read_header, Header, HeaderTensor, MAX_HEADER_LEN};

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

/// Reads a safetensors file: its header is validated by [`read_header`] (errors are
/// `Error::Weights` naming the file and tensor), then MLX's loader takes it.
pub fn load_safetensors(path: impl AsRef<Path>) -> Result<Safetensors> {
    let path = path.as_ref();
    if !path.is_file() {
        return Err(Error::Io(format!("{}: no such file", path.display())));
    }
    header::read_header(path)?;
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

/// Writes `tensors` (evaluating them) and `metadata` (as `__metadata__`, left out when
/// empty) to the safetensors file `path`, through the `safetensors` crate.
///
/// Memory: as MLX's own writer did, every tensor is made row-contiguous (a copy only where
/// its layout is not: a transpose, a broadcast) and evaluated in one batch; the crate then
/// writes each tensor's bytes straight from MLX's buffer ([`Array::bytes`], no copy)
/// through a buffered writer. Writing a 2 GB model so needs the 2 GB of tensors the caller
/// holds, not twice that (the crate's in-memory `serialize` is not used).
///
/// The crate writes a temporary file beside `path` and renames it over `path`: a reader
/// never sees half a file, and arrays still loading from an older `path` keep reading the
/// file they opened. The file gets the permissions a newly created file gets (the crate's
/// temporary file is private to its owner).
pub fn save_safetensors(path: impl AsRef<Path>, tensors: &[(&str, &Array)], metadata: &[(&str, &str)]) -> Result<()> {
    let path = path.as_ref();
    let bad = |what: String| Error::InvalidArgument(format!("{}: {what}", path.display()));
    let mut seen = HashSet::new();
    let mut dtypes = Vec::with_capacity(tensors.len());
    for (name, a) in tensors {
        if !seen.insert(*name) {
            return Err(bad(format!("tensor {name} is given twice")));
        }
        dtypes.push(st_dtype(a.dtype()).ok_or_else(|| {
            bad(format!("tensor {name} is {}, which MLX's safetensors loader cannot read back", a.dtype()))
        })?);
    }
    let arrays = tensors.iter().map(|(_, a)| a.contiguous()).collect::<Result<Vec<_>>>()?;
    super::transforms::eval(&arrays.iter().collect::<Vec<_>>()).map_err(|e| with_path(path, e))?;
    let mut views = Vec::with_capacity(arrays.len());
    for (((name, _), a), dtype) in tensors.iter().zip(&arrays).zip(dtypes) {
        let shape = a.shape().iter().map(|&d| d as usize).collect();
        let view = TensorView::new(dtype, shape, a.bytes()?)
            .map_err(|e| bad(format!("tensor {name}: {e}")))?;
        views.push((*name, view));
    }
    let meta: HashMap<String, String> = metadata.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    safetensors::serialize_to_file(views, (!meta.is_empty()).then_some(meta), path)
        .map_err(|e| Error::Io(format!("{}: {e}", path.display())))?;
    set_default_permissions(path)
}

/// The safetensors dtype an MLX dtype is written as: those MLX's loader reads back.
fn st_dtype(d: Dtype) -> Option<StDtype> {
    Some(match d {
        Dtype::Bool => StDtype::BOOL,
        Dtype::U8 => StDtype::U8,
        Dtype::U16 => StDtype::U16,
        Dtype::U32 => StDtype::U32,
        Dtype::U64 => StDtype::U64,
        Dtype::I8 => StDtype::I8,
        Dtype::I16 => StDtype::I16,
        Dtype::I32 => StDtype::I32,
        Dtype::I64 => StDtype::I64,
        Dtype::F16 => StDtype::F16,
        Dtype::F32 => StDtype::F32,
        Dtype::Bf16 => StDtype::BF16,
        Dtype::F64 => return None,
    })
}

/// Gives `path` the mode a file created by `File::create` would have (0666 less the
/// umask), as MLX's writer left it, instead of the 0600 of the crate's temporary file.
#[cfg(unix)]
fn set_default_permissions(path: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mask = current_umask();
    let mode = 0o666 & !mask;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| Error::Io(format!("{}: {e}", path.display())))
}

/// The process's umask. Linux reports it in /proc/self/status; elsewhere POSIX has no way
/// to read it without setting it, so it is swapped and put back at once (a file another
/// thread creates in that instant gets 022).
#[cfg(unix)]
fn current_umask() -> u32 {
    let reported = std::fs::read_to_string("/proc/self/status").ok().and_then(|s| {
        s.lines().find_map(|l| l.strip_prefix("Umask:")).and_then(|v| u32::from_str_radix(v.trim(), 8).ok())
    });
    reported.unwrap_or_else(|| {
        // SAFETY: umask takes and returns plain integers.
        unsafe {
            let m = libc::umask(0o022);
            libc::umask(m);
            m as u32
        }
    })
}

#[cfg(not(unix))]
fn set_default_permissions(_path: &Path) -> Result<()> {
    Ok(())
}
