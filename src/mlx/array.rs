//! `Array`: an owned handle to an MLX array (a node of MLX's lazy graph), freed on `Drop`.
use std::ffi::CStr;
use std::os::raw::c_int;
use std::ptr::NonNull;

use super::dtype::{Dtype, Element};
use super::ffi;
use crate::error::{Error, Result};

/// An MLX array. Cheap to clone (the clone shares the same graph node and data). Arrays
/// are evaluated lazily: ops build a graph, and `eval`, `to_vec` or `item` compute it.
///
/// `Send` because MLX's array is a reference-counted handle whose count is atomic; not
/// `Sync`, because building graphs over the same array from several threads at once is
/// not something MLX promises to be safe.
pub struct Array {
    ptr: NonNull<ffi::shim_array>,
}

unsafe impl Send for Array {}

/// Turns a shim status into a `Result`, taking MLX's message on failure.
pub(crate) fn check(status: c_int) -> Result<()> {
    if status == 0 {
        Ok(())
    } else {
        Err(Error::Mlx(last_error()))
    }
}

pub(crate) fn last_error() -> String {
    // SAFETY: the shim returns a NUL-terminated thread-local string that lives until the
    // next failing call on this thread; we copy it at once.
    unsafe { CStr::from_ptr(ffi::shim_last_error()) }.to_string_lossy().into_owned()
}

/// Runs a shim call that writes a new array handle and wraps it.
pub(crate) fn new_array(f: impl FnOnce(*mut *mut ffi::shim_array) -> c_int) -> Result<Array> {
    let mut out: *mut ffi::shim_array = std::ptr::null_mut();
    check(f(&mut out))?;
    NonNull::new(out)
        .map(|ptr| Array { ptr })
        .ok_or_else(|| Error::Mlx("MLX returned no array".into()))
}

/// Product of a shape's dimensions, rejecting negative ones.
pub(crate) fn shape_size(shape: &[i32]) -> Result<usize> {
    shape.iter().try_fold(1usize, |acc, &d| {
        if d < 0 {
            Err(Error::invalid(format!("negative dimension {d} in shape {shape:?}")))
        } else {
            Ok(acc * d as usize)
        }
    })
}

impl Array {
    pub(crate) fn as_ptr(&self) -> *const ffi::shim_array {
        self.ptr.as_ptr()
    }

    /// Copies `data` into a new array of the given shape. `data.len()` must equal the
    /// product of `shape`.
    pub fn from_slice<T: Element>(data: &[T], shape: &[i32]) -> Result<Array> {
        let n = shape_size(shape)?;
        if n != data.len() {
            return Err(Error::invalid(format!(
                "{} elements given for shape {shape:?} ({n} elements)",
                data.len()
            )));
        }
        new_array(|out| unsafe {
            ffi::shim_array_from_data(
                data.as_ptr().cast(),
                shape.as_ptr(),
                shape.len(),
                T::DTYPE as c_int,
                out,
            )
        })
    }

    /// A 0-dimensional array holding `value`.
    pub fn scalar<T: Element>(value: T) -> Result<Array> {
        Array::from_slice(&[value], &[])
    }

    /// An array of `shape` filled with `value` converted to `dtype`.
    pub fn full(shape: &[i32], value: f64, dtype: Dtype) -> Result<Array> {
        shape_size(shape)?;
        new_array(|out| unsafe {
            ffi::shim_array_full(shape.as_ptr(), shape.len(), value, dtype as c_int, out)
        })
    }

    pub fn zeros(shape: &[i32], dtype: Dtype) -> Result<Array> {
        Array::full(shape, 0.0, dtype)
    }

    pub fn ones(shape: &[i32], dtype: Dtype) -> Result<Array> {
        Array::full(shape, 1.0, dtype)
    }

    /// `[start, start + step, ...)` up to `stop` (exclusive).
    pub fn arange(start: f64, stop: f64, step: f64, dtype: Dtype) -> Result<Array> {
        new_array(|out| unsafe { ffi::shim_array_arange(start, stop, step, dtype as c_int, out) })
    }

    /// The array's identity: equal for every handle of one array (clones included), unequal
    /// for two arrays that are both alive.
    pub fn id(&self) -> usize {
        unsafe { ffi::shim_array_id(self.as_ptr()) }
    }

    pub fn ndim(&self) -> usize {
        unsafe { ffi::shim_array_ndim(self.as_ptr()) }
    }

    pub fn shape(&self) -> Vec<i32> {
        let mut s = vec![0i32; self.ndim()];
        unsafe { ffi::shim_array_shape(self.as_ptr(), s.as_mut_ptr()) };
        s
    }

    /// Size of one axis; negative axes count from the end.
    pub fn dim(&self, axis: i32) -> Result<i32> {
        let shape = self.shape();
        let n = shape.len() as i32;
        let a = if axis < 0 { axis + n } else { axis };
        if a < 0 || a >= n {
            return Err(Error::invalid(format!("axis {axis} out of range for {n} dimensions")));
        }
        Ok(shape[a as usize])
    }

    pub fn dtype(&self) -> Dtype {
        let code = unsafe { ffi::shim_array_dtype(self.as_ptr()) };
        // Arrays are only created through this crate, with dtypes it knows; complex64
        // cannot be produced by the exposed ops.
        Dtype::from_code(code).unwrap_or(Dtype::F32)
    }

    /// Number of elements.
    pub fn size(&self) -> usize {
        unsafe { ffi::shim_array_size(self.as_ptr()) }
    }

    pub fn nbytes(&self) -> usize {
        unsafe { ffi::shim_array_nbytes(self.as_ptr()) }
    }

    /// A second handle to the same array, reporting failure instead of panicking.
    pub fn try_clone(&self) -> Result<Array> {
        new_array(|out| unsafe { ffi::shim_array_clone(self.as_ptr(), out) })
    }

    /// Computes the array (and what it depends on) now.
    pub fn eval(&self) -> Result<()> {
        super::transforms::eval(&[self])
    }

    /// Evaluates and copies the elements out in row-major order. `T` must match the dtype
    /// (convert with `astype` first).
    pub fn to_vec<T: Element>(&self) -> Result<Vec<T>> {
        if self.dtype() != T::DTYPE {
            return Err(Error::invalid(format!(
                "array has dtype {}, asked for {}",
                self.dtype(),
                T::DTYPE
            )));
        }
        let mut v = vec![T::default(); self.size()];
        check(unsafe {
            ffi::shim_array_copy_out(
                self.as_ptr(),
                v.as_mut_ptr().cast(),
                v.len() * std::mem::size_of::<T>(),
            )
        })?;
        Ok(v)
    }

    /// The elements' bytes, row-major and little-endian as MLX stores them, borrowed from
    /// MLX's buffer without a copy (for writing files). The array must already be evaluated
    /// and row-contiguous — `contiguous()` then `eval()` makes it so — or this fails.
    pub fn bytes(&self) -> Result<&[u8]> {
        let mut data: *const std::ffi::c_void = std::ptr::null();
        let mut n = 0usize;
        check(unsafe { ffi::shim_array_bytes(self.as_ptr(), &mut data, &mut n) })?;
        if n == 0 || data.is_null() {
            return Ok(&[]);
        }
        // SAFETY: an evaluated array's buffer holds `n` bytes at `data` for as long as the
        // array holds its data, which `self` keeps alive for the borrow. MLX writes into an
        // input's buffer only when donating it, which needs the only reference to the array.
        Ok(unsafe { std::slice::from_raw_parts(data.cast::<u8>(), n) })
    }

    /// The single element of a one-element array.
    pub fn item<T: Element>(&self) -> Result<T> {
        if self.size() != 1 {
            return Err(Error::invalid(format!(
                "item() needs one element, the array has shape {:?}",
                self.shape()
            )));
        }
        Ok(self.to_vec::<T>()?[0])
    }
}

impl Clone for Array {
    fn clone(&self) -> Array {
        // Only allocation of the small handle can fail here.
        self.try_clone().expect("out of memory cloning an array handle")
    }
}

impl Drop for Array {
    fn drop(&mut self) {
        unsafe { ffi::shim_array_free(self.ptr.as_ptr()) }
    }
}

impl std::fmt::Debug for Array {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Array(shape={:?}, dtype={})", self.shape(), self.dtype())
    }
}

/// An owned `std::vector<array>` on the C++ side, for multi-output calls.
pub(crate) struct ArrayVec {
    ptr: NonNull<ffi::shim_vec>,
}

impl ArrayVec {
    pub(crate) fn new() -> Result<ArrayVec> {
        NonNull::new(unsafe { ffi::shim_vec_new() })
            .map(|ptr| ArrayVec { ptr })
            .ok_or_else(|| Error::Mlx("out of memory allocating an array list".into()))
    }

    pub(crate) fn as_mut_ptr(&mut self) -> *mut ffi::shim_vec {
        self.ptr.as_ptr()
    }

    pub(crate) fn into_arrays(self) -> Result<Vec<Array>> {
        let n = unsafe { ffi::shim_vec_len(self.ptr.as_ptr()) };
        (0..n)
            .map(|i| new_array(|out| unsafe { ffi::shim_vec_get(self.ptr.as_ptr(), i, out) }))
            .collect()
    }
}

impl Drop for ArrayVec {
    fn drop(&mut self) {
        unsafe { ffi::shim_vec_free(self.ptr.as_ptr()) }
    }
}

/// Raw handles of a list of arrays, borrowed for one shim call.
pub(crate) fn ptrs(arrays: &[&Array]) -> Vec<*const ffi::shim_array> {
    arrays.iter().map(|a| a.as_ptr()).collect()
}

/// The raw handle of an optional array, null when absent.
pub(crate) fn opt_ptr(a: Option<&Array>) -> *const ffi::shim_array {
    a.map_or(std::ptr::null(), |a| a.as_ptr())
}
