//! Array operations: element-wise math with numpy broadcasting, matrix products,
//! reductions, scans, shape manipulation, indexing, sorting and selection. Each returns
//! `Err` with MLX's message when MLX rejects its arguments.
use std::os::raw::c_int;

use super::array::{check, new_array, opt_ptr, ptrs, Array, ArrayVec};
use super::dtype::Dtype;
use super::ffi;
use crate::error::{Error, Result};

// Operation codes understood by the shim's shim_unary / shim_binary / shim_reduce /
// shim_scan dispatchers; keep in step with src/shim/shim.cpp.
macro_rules! unary_ops {
    ($($(#[$doc:meta])* $name:ident = $code:expr;)*) => {
        impl Array {
            $($(#[$doc])* pub fn $name(&self) -> Result<Array> {
                new_array(|out| unsafe { ffi::shim_unary($code, self.as_ptr(), out) })
            })*
        }
    };
}

unary_ops! {
    neg = 0; abs = 1; exp = 2; log = 3; log1p = 4; sqrt = 5; rsqrt = 6; square = 7;
    sin = 8; cos = 9; tanh = 10;
    /// The error function (GELU's exact form uses it).
    erf = 11;
    sigmoid = 12; floor = 13; ceil = 14; logical_not = 15; reciprocal = 16; sign = 17;
    /// Identity in the forward pass; blocks gradients.
    stop_gradient = 18;
    copy = 19; expm1 = 20;
    /// Rounds half to even, like numpy.
    round = 21;
    erfinv = 22; isnan = 23; isinf = 24;
}

macro_rules! binary_ops {
    ($($(#[$doc:meta])* $name:ident = $code:expr;)*) => {
        impl Array {
            $($(#[$doc])* pub fn $name(&self, other: &Array) -> Result<Array> {
                new_array(|out| unsafe { ffi::shim_binary($code, self.as_ptr(), other.as_ptr(), out) })
            })*
        }
    };
}

binary_ops! {
    add = 0; sub = 1; mul = 2; div = 3; power = 4; maximum = 5; minimum = 6;
    equal = 7; not_equal = 8; less = 9; less_equal = 10; greater = 11; greater_equal = 12;
    logical_and = 13; logical_or = 14; floor_divide = 15; remainder = 16;
    /// Matrix product with numpy semantics (batched over leading axes, broadcasting).
    matmul = 17;
    /// `log(exp(a) + exp(b))`, computed stably.
    logaddexp = 18;
}

/// Reductions, selected by shim code.
#[derive(Clone, Copy)]
enum Reduce {
    Sum = 0,
    Mean = 1,
    Max = 2,
    Min = 3,
    Prod = 4,
    LogSumExp = 5,
    All = 6,
    Any = 7,
}

/// Scans, selected by shim code.
#[derive(Clone, Copy)]
enum Scan {
    Sum = 0,
    Prod = 1,
    Max = 2,
    Min = 3,
    LogSumExp = 4,
}

impl Array {
    fn reduce(&self, op: Reduce, axes: Option<&[i32]>, keepdims: bool) -> Result<Array> {
        let (p, n, all) = match axes {
            Some(a) => (a.as_ptr(), a.len(), 0),
            None => (std::ptr::null(), 0, 1),
        };
        new_array(|out| unsafe {
            ffi::shim_reduce(op as c_int, self.as_ptr(), p, n, all, keepdims as c_int, out)
        })
    }

    /// Sum over `axes` (all axes when `None`).
    pub fn sum(&self, axes: Option<&[i32]>, keepdims: bool) -> Result<Array> {
        self.reduce(Reduce::Sum, axes, keepdims)
    }
    pub fn mean(&self, axes: Option<&[i32]>, keepdims: bool) -> Result<Array> {
        self.reduce(Reduce::Mean, axes, keepdims)
    }
    pub fn max(&self, axes: Option<&[i32]>, keepdims: bool) -> Result<Array> {
        self.reduce(Reduce::Max, axes, keepdims)
    }
    pub fn min(&self, axes: Option<&[i32]>, keepdims: bool) -> Result<Array> {
        self.reduce(Reduce::Min, axes, keepdims)
    }
    pub fn prod(&self, axes: Option<&[i32]>, keepdims: bool) -> Result<Array> {
        self.reduce(Reduce::Prod, axes, keepdims)
    }
    pub fn logsumexp(&self, axes: Option<&[i32]>, keepdims: bool) -> Result<Array> {
        self.reduce(Reduce::LogSumExp, axes, keepdims)
    }
    pub fn all(&self, axes: Option<&[i32]>, keepdims: bool) -> Result<Array> {
        self.reduce(Reduce::All, axes, keepdims)
    }
    pub fn any(&self, axes: Option<&[i32]>, keepdims: bool) -> Result<Array> {
        self.reduce(Reduce::Any, axes, keepdims)
    }

    pub fn argmax(&self, axis: i32, keepdims: bool) -> Result<Array> {
        new_array(|out| unsafe { ffi::shim_arg_reduce(0, self.as_ptr(), axis, keepdims as c_int, out) })
    }
    pub fn argmin(&self, axis: i32, keepdims: bool) -> Result<Array> {
        new_array(|out| unsafe { ffi::shim_arg_reduce(1, self.as_ptr(), axis, keepdims as c_int, out) })
    }

    fn scan(&self, op: Scan, axis: i32, reverse: bool, inclusive: bool) -> Result<Array> {
        new_array(|out| unsafe {
            ffi::shim_scan(op as c_int, self.as_ptr(), axis, reverse as c_int, inclusive as c_int, out)
        })
    }
    pub fn cumsum(&self, axis: i32, reverse: bool, inclusive: bool) -> Result<Array> {
        self.scan(Scan::Sum, axis, reverse, inclusive)
    }
    pub fn cumprod(&self, axis: i32, reverse: bool, inclusive: bool) -> Result<Array> {
        self.scan(Scan::Prod, axis, reverse, inclusive)
    }
    pub fn cummax(&self, axis: i32, reverse: bool, inclusive: bool) -> Result<Array> {
        self.scan(Scan::Max, axis, reverse, inclusive)
    }
    pub fn cummin(&self, axis: i32, reverse: bool, inclusive: bool) -> Result<Array> {
        self.scan(Scan::Min, axis, reverse, inclusive)
    }
    pub fn logcumsumexp(&self, axis: i32, reverse: bool, inclusive: bool) -> Result<Array> {
        self.scan(Scan::LogSumExp, axis, reverse, inclusive)
    }

    /// Softmax over `axes`. `precise` accumulates in f32 for half-precision inputs.
    pub fn softmax(&self, axes: &[i32], precise: bool) -> Result<Array> {
        new_array(|out| unsafe {
            ffi::shim_softmax(self.as_ptr(), axes.as_ptr(), axes.len(), precise as c_int, out)
        })
    }

    pub fn astype(&self, dtype: Dtype) -> Result<Array> {
        new_array(|out| unsafe { ffi::shim_astype(self.as_ptr(), dtype as c_int, out) })
    }

    /// A 0-dimensional array of this array's dtype, for scalar arithmetic that keeps the
    /// dtype (a plain f32 scalar would promote f16/bf16 arrays to f32).
    pub fn scalar_like(&self, value: f64) -> Result<Array> {
        Array::full(&[], value, self.dtype())
    }

    /// `self * value`, in this array's dtype.
    pub fn mul_scalar(&self, value: f64) -> Result<Array> {
        self.mul(&self.scalar_like(value)?)
    }

    /// `self + value`, in this array's dtype.
    pub fn add_scalar(&self, value: f64) -> Result<Array> {
        self.add(&self.scalar_like(value)?)
    }

    /// Clamps to `[lo, hi]`; either bound may be absent.
    pub fn clip(&self, lo: Option<&Array>, hi: Option<&Array>) -> Result<Array> {
        new_array(|out| unsafe { ffi::shim_clip(self.as_ptr(), opt_ptr(lo), opt_ptr(hi), out) })
    }

    /// `beta * self + alpha * (a @ b)` in one kernel. (Like [`Array::matmul`], a one-row
    /// float32 product on the CPU goes to BLAS's matrix-vector routine; see
    /// [`cpu_gemv_active`].)
    pub fn addmm(&self, a: &Array, b: &Array, alpha: f32, beta: f32) -> Result<Array> {
        new_array(|out| unsafe { ffi::shim_addmm(self.as_ptr(), a.as_ptr(), b.as_ptr(), alpha, beta, out) })
    }

    /// Lower triangle (elements above diagonal `k` zeroed).
    pub fn tril(&self, k: i32) -> Result<Array> {
        new_array(|out| unsafe { ffi::shim_tri(0, self.as_ptr(), k, out) })
    }
    /// Upper triangle (elements below diagonal `k` zeroed).
    pub fn triu(&self, k: i32) -> Result<Array> {
        new_array(|out| unsafe { ffi::shim_tri(1, self.as_ptr(), k, out) })
    }

    // ---- shape -----------------------------------------------------------------------

    /// New shape with the same elements; one dimension may be -1 (inferred).
    pub fn reshape(&self, shape: &[i32]) -> Result<Array> {
        new_array(|out| unsafe { ffi::shim_reshape(self.as_ptr(), shape.as_ptr(), shape.len(), out) })
    }
    /// Permutes the axes (reverses them when `axes` is empty).
    pub fn transpose(&self, axes: &[i32]) -> Result<Array> {
        let all: Vec<i32>;
        let axes = if axes.is_empty() {
            all = (0..self.ndim() as i32).rev().collect();
            &all
        } else {
            axes
        };
        new_array(|out| unsafe { ffi::shim_transpose(self.as_ptr(), axes.as_ptr(), axes.len(), out) })
    }
    pub fn swapaxes(&self, axis1: i32, axis2: i32) -> Result<Array> {
        new_array(|out| unsafe { ffi::shim_swapaxes(self.as_ptr(), axis1, axis2, out) })
    }
    pub fn expand_dims(&self, axes: &[i32]) -> Result<Array> {
        new_array(|out| unsafe { ffi::shim_expand_dims(self.as_ptr(), axes.as_ptr(), axes.len(), out) })
    }
    /// Removes the given size-1 axes (all of them when `axes` is empty).
    pub fn squeeze(&self, axes: &[i32]) -> Result<Array> {
        new_array(|out| unsafe { ffi::shim_squeeze(self.as_ptr(), axes.as_ptr(), axes.len(), out) })
    }
    /// Merges axes `start..=end` into one.
    pub fn flatten(&self, start: i32, end: i32) -> Result<Array> {
        new_array(|out| unsafe { ffi::shim_flatten(self.as_ptr(), start, end, out) })
    }
    pub fn broadcast_to(&self, shape: &[i32]) -> Result<Array> {
        new_array(|out| unsafe { ffi::shim_broadcast_to(self.as_ptr(), shape.as_ptr(), shape.len(), out) })
    }
    /// Repeats each element `repeats` times along `axis`.
    pub fn repeat(&self, repeats: i32, axis: i32) -> Result<Array> {
        new_array(|out| unsafe { ffi::shim_repeat(self.as_ptr(), repeats, axis, out) })
    }
    /// A row-contiguous copy (no-op when already row-contiguous).
    pub fn contiguous(&self) -> Result<Array> {
        new_array(|out| unsafe { ffi::shim_contiguous(self.as_ptr(), out) })
    }

    /// Splits along `axis` before each of `indices`.
    pub fn split_at(&self, indices: &[i32], axis: i32) -> Result<Vec<Array>> {
        let mut v = ArrayVec::new()?;
        check(unsafe { ffi::shim_split(self.as_ptr(), indices.as_ptr(), indices.len(), axis, v.as_mut_ptr()) })?;
        v.into_arrays()
    }
    /// Splits along `axis` into `parts` equal pieces.
    pub fn split(&self, parts: i32, axis: i32) -> Result<Vec<Array>> {
        let mut v = ArrayVec::new()?;
        check(unsafe { ffi::shim_split_equal(self.as_ptr(), parts, axis, v.as_mut_ptr()) })?;
        v.into_arrays()
    }

    // ---- indexing --------------------------------------------------------------------

    /// `self[start0:stop0:stride0, start1:stop1:stride1, ...]`; the three slices have one
    /// entry per dimension.
    pub fn slice(&self, start: &[i32], stop: &[i32], strides: &[i32]) -> Result<Array> {
        check_slice_args(self.ndim(), start, stop, strides)?;
        new_array(|out| unsafe {
            ffi::shim_slice(self.as_ptr(), start.as_ptr(), stop.as_ptr(), strides.as_ptr(), start.len(), out)
        })
    }

    /// `self[..., start:stop, ...]` on one axis, the others whole.
    pub fn slice_axis(&self, axis: i32, start: i32, stop: i32) -> Result<Array> {
        let shape = self.shape();
        let n = shape.len() as i32;
        let ax = if axis < 0 { axis + n } else { axis };
        if ax < 0 || ax >= n {
            return Err(Error::invalid(format!("axis {axis} out of range for {n} dimensions")));
        }
        let mut lo = vec![0; shape.len()];
        let mut hi = shape.clone();
        lo[ax as usize] = start;
        hi[ax as usize] = stop;
        self.slice(&lo, &hi, &vec![1; shape.len()])
    }

    /// A copy of `self` with `self[start:stop:strides] = update`.
    pub fn slice_update(&self, update: &Array, start: &[i32], stop: &[i32], strides: &[i32]) -> Result<Array> {
        check_slice_args(self.ndim(), start, stop, strides)?;
        new_array(|out| unsafe {
            ffi::shim_slice_update(
                self.as_ptr(), update.as_ptr(), start.as_ptr(), stop.as_ptr(), strides.as_ptr(), start.len(), out,
            )
        })
    }

    /// Slice of `sizes` along `axes`, starting at the offsets held in the array `start`.
    /// The graph does not depend on the offset's value (useful under `compile`).
    pub fn slice_dynamic(&self, start: &Array, axes: &[i32], sizes: &[i32]) -> Result<Array> {
        new_array(|out| unsafe {
            ffi::shim_slice_dynamic(self.as_ptr(), start.as_ptr(), axes.as_ptr(), axes.len(), sizes.as_ptr(), sizes.len(), out)
        })
    }

    /// `slice_update` at offsets held in the array `start` along `axes`.
    pub fn slice_update_dynamic(&self, update: &Array, start: &Array, axes: &[i32]) -> Result<Array> {
        new_array(|out| unsafe {
            ffi::shim_slice_update_dynamic(self.as_ptr(), update.as_ptr(), start.as_ptr(), axes.as_ptr(), axes.len(), out)
        })
    }

    /// Gathers along `axis` at `indices` (any shape; it replaces that axis).
    pub fn take(&self, indices: &Array, axis: i32) -> Result<Array> {
        new_array(|out| unsafe { ffi::shim_take(self.as_ptr(), indices.as_ptr(), axis, out) })
    }
    pub fn take_along_axis(&self, indices: &Array, axis: i32) -> Result<Array> {
        new_array(|out| unsafe { ffi::shim_take_along_axis(self.as_ptr(), indices.as_ptr(), axis, out) })
    }
    pub fn put_along_axis(&self, indices: &Array, values: &Array, axis: i32) -> Result<Array> {
        new_array(|out| unsafe {
            ffi::shim_put_along_axis(self.as_ptr(), indices.as_ptr(), values.as_ptr(), axis, out)
        })
    }

    // ---- sorting and selection -------------------------------------------------------

    pub fn sort(&self, axis: i32) -> Result<Array> {
        new_array(|out| unsafe { ffi::shim_sort(self.as_ptr(), axis, out) })
    }
    pub fn argsort(&self, axis: i32) -> Result<Array> {
        new_array(|out| unsafe { ffi::shim_argsort(self.as_ptr(), axis, out) })
    }
    /// Elements rearranged so that the `kth` is in its sorted place, smaller ones before.
    pub fn partition(&self, kth: i32, axis: i32) -> Result<Array> {
        new_array(|out| unsafe { ffi::shim_partition(self.as_ptr(), kth, axis, out) })
    }
    pub fn argpartition(&self, kth: i32, axis: i32) -> Result<Array> {
        new_array(|out| unsafe { ffi::shim_argpartition(self.as_ptr(), kth, axis, out) })
    }
    /// The `k` largest elements along `axis` (in no particular order).
    pub fn topk(&self, k: i32, axis: i32) -> Result<Array> {
        new_array(|out| unsafe { ffi::shim_topk(self.as_ptr(), k, axis, out) })
    }
}

fn check_slice_args(ndim: usize, start: &[i32], stop: &[i32], strides: &[i32]) -> Result<()> {
    if start.len() != ndim || stop.len() != ndim || strides.len() != ndim {
        return Err(Error::invalid(format!(
            "slice of a {ndim}-dimensional array needs {ndim} starts, stops and strides, got {}, {} and {}",
            start.len(),
            stop.len(),
            strides.len()
        )));
    }
    Ok(())
}

/// `cond ? x : y` element-wise, with broadcasting.
pub fn where_(cond: &Array, x: &Array, y: &Array) -> Result<Array> {
    new_array(|out| unsafe { ffi::shim_where(cond.as_ptr(), x.as_ptr(), y.as_ptr(), out) })
}

/// Joins arrays along an existing axis.
pub fn concatenate(arrays: &[&Array], axis: i32) -> Result<Array> {
    let p = ptrs(arrays);
    new_array(|out| unsafe { ffi::shim_concatenate(p.as_ptr(), p.len(), axis, out) })
}

/// Joins arrays along a new axis.
pub fn stack(arrays: &[&Array], axis: i32) -> Result<Array> {
    let p = ptrs(arrays);
    new_array(|out| unsafe { ffi::shim_stack(p.as_ptr(), p.len(), axis, out) })
}

/// Whether one-row float32 matrix products on the CPU (every projection of a decode step)
/// go to BLAS's `sgemv` instead of MLX's `sgemm`, which packs the whole weight matrix per
/// call first: 2.7-5.8x faster per product on an x86-64 CPU with OpenBLAS 0.3.21. Active where a
/// BLAS with `cblas_sgemv` is loaded, except on macOS; `MLXRUN_CPU_GEMV=0` turns it off.
pub fn cpu_gemv_active() -> Result<bool> {
    let mut on: c_int = 0;
    check(unsafe { ffi::shim_cpu_gemv_active(&mut on) })?;
    Ok(on != 0)
}

/// `g * sigmoid(g) * u`, SwiGLU's gate: on the CPU one graph node instead of three (see
/// [`set_cpu_fast_kernels`]), with the same values; elsewhere the three ops.
pub fn silu_mul(g: &Array, u: &Array) -> Result<Array> {
    new_array(|out| unsafe { ffi::shim_gate_mul(0, g.as_ptr(), u.as_ptr(), out) })
}

/// `gelu_approx(g) * u`, GeGLU's gate with mlx.nn.gelu_approx's tanh GELU: on the CPU one
/// graph node instead of fifteen (ten ops and five scalars), with the same values;
/// elsewhere those ops.
pub fn gelu_tanh_mul(g: &Array, u: &Array) -> Result<Array> {
    new_array(|out| unsafe { ffi::shim_gate_mul(1, g.as_ptr(), u.as_ptr(), out) })
}

/// Turns the CPU's one-node kernels for `fast::rms_norm`, `fast::rope` and single-query
/// attention on or off for graphs built on the calling thread, and says whether they were
/// on. MLX has no CPU implementation of its fast kernels and builds each from 11-29 ordinary
/// ops there; the project's own compute the same values (to rounding) in one graph node
/// each, which is what a decode step's time on the CPU goes to. On by default except on
/// macOS; `MLXRUN_CPU_FAST=0` turns them off for the process. Tests and benchmarks turn
/// them off to build MLX's composition beside them.
pub fn set_cpu_fast_kernels(on: bool) -> Result<bool> {
    let mut was: c_int = 0;
    check(unsafe { ffi::shim_cpu_fast_set_thread(on as c_int, &mut was) })?;
    Ok(was != 0)
}
