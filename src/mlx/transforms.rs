//! Evaluation and function transformations: `eval` / `async_eval`, `vjp`,
//! `value_and_grad` and `compile`, over Rust closures.
//!
//! A closure crosses into C++ as a context pointer plus the `trampoline` below. MLX calls
//! it while tracing; a Rust error or panic inside it is turned into a shim error (never an
//! unwind through C++ frames), and the transformation returns that error.
use std::ffi::{c_void, CString};
use std::os::raw::c_int;
use std::panic::{catch_unwind, AssertUnwindSafe};

use super::array::{check, new_array, ptrs, Array, ArrayVec};
use super::ffi;
use crate::error::{Error, Result};

/// Computes the given arrays (and what they depend on), blocking until done.
pub fn eval(arrays: &[&Array]) -> Result<()> {
    let p = ptrs(arrays);
    check(unsafe { ffi::shim_eval(p.as_ptr(), p.len()) })
}

/// Queues the computation of the given arrays and returns at once; a later `eval` or read
/// waits for it. The decode loop uses this to build step n+1 while step n runs.
pub fn async_eval(arrays: &[&Array]) -> Result<()> {
    let p = ptrs(arrays);
    check(unsafe { ffi::shim_async_eval(p.as_ptr(), p.len()) })
}

/// A function from arrays to arrays, as the transformations take it.
pub type ArrayFn<'a> = dyn FnMut(&[Array]) -> Result<Vec<Array>> + 'a;

fn set_shim_error(msg: &str) {
    let c = CString::new(msg.replace('\0', " ")).unwrap_or_default();
    unsafe { ffi::shim_set_error(c.as_ptr()) }
}

/// Called by the shim with `ctx` = `*mut &mut ArrayFn`.
unsafe extern "C" fn trampoline(
    ctx: *mut c_void,
    inputs: *const *const ffi::shim_array,
    n: usize,
    outputs: *mut ffi::shim_vec,
) -> c_int {
    let result = catch_unwind(AssertUnwindSafe(|| -> Result<()> {
        let f = &mut *(ctx as *mut &mut ArrayFn<'_>);
        // The inputs are borrowed for the call; take owned handles to them.
        let ins = (0..n)
            .map(|i| new_array(|out| ffi::shim_array_clone(*inputs.add(i), out)))
            .collect::<Result<Vec<_>>>()?;
        for o in f(&ins)? {
            check(ffi::shim_vec_push(outputs, o.as_ptr()))?;
        }
        Ok(())
    }));
    match result {
        Ok(Ok(())) => 0,
        Ok(Err(e)) => {
            set_shim_error(&match e {
                Error::Mlx(m) => m,
                other => other.to_string(),
            });
            1
        }
        Err(_) => {
            set_shim_error("a Rust closure panicked inside an MLX transformation");
            1
        }
    }
}

/// Vector-Jacobian product: runs `f` on `primals` and pulls `cotangents` (one per output)
/// back through it. Returns `(outputs, vjps)` with one vjp per primal.
pub fn vjp(
    mut f: impl FnMut(&[Array]) -> Result<Vec<Array>>,
    primals: &[&Array],
    cotangents: &[&Array],
) -> Result<(Vec<Array>, Vec<Array>)> {
    let mut dynf: &mut ArrayFn<'_> = &mut f;
    let (p, c) = (ptrs(primals), ptrs(cotangents));
    let (mut outs, mut grads) = (ArrayVec::new()?, ArrayVec::new()?);
    check(unsafe {
        ffi::shim_vjp(
            trampoline,
            &mut dynf as *mut &mut ArrayFn<'_> as *mut c_void,
            p.as_ptr(),
            p.len(),
            c.as_ptr(),
            c.len(),
            outs.as_mut_ptr(),
            grads.as_mut_ptr(),
        )
    })?;
    Ok((outs.into_arrays()?, grads.into_arrays()?))
}

/// Runs `f` on `inputs` and differentiates its first output (which must be a scalar) with
/// respect to the inputs at `argnums`. Returns `(all outputs, one gradient per argnum)`.
pub fn value_and_grad(
    mut f: impl FnMut(&[Array]) -> Result<Vec<Array>>,
    inputs: &[&Array],
    argnums: &[i32],
) -> Result<(Vec<Array>, Vec<Array>)> {
    let mut dynf: &mut ArrayFn<'_> = &mut f;
    let p = ptrs(inputs);
    let (mut vals, mut grads) = (ArrayVec::new()?, ArrayVec::new()?);
    check(unsafe {
        ffi::shim_value_and_grad(
            trampoline,
            &mut dynf as *mut &mut ArrayFn<'_> as *mut c_void,
            p.as_ptr(),
            p.len(),
            argnums.as_ptr(),
            argnums.len(),
            vals.as_mut_ptr(),
            grads.as_mut_ptr(),
        )
    })?;
    Ok((vals.into_arrays()?, grads.into_arrays()?))
}

/// A function traced once per input signature and replayed as one fused graph, or a
/// function under gradient checkpointing ([`Compiled::checkpoint`]).
pub struct Compiled {
    raw: *mut ffi::shim_compiled,
    // The closure the shim calls while tracing; boxed twice so the thin pointer handed to
    // C++ stays valid for the life of `raw`. Dropped after `raw` (see Drop). `None` when
    // C++ owns it (checkpoint).
    ctx: Option<*mut &'static mut ArrayFn<'static>>,
}

impl Compiled {
    /// Compiles `f`. With `shapeless`, one trace serves inputs of any shape (only for
    /// functions whose graph does not depend on shapes).
    pub fn new(f: impl FnMut(&[Array]) -> Result<Vec<Array>> + 'static, shapeless: bool) -> Result<Compiled> {
        let ctx = into_ctx(f);
        let mut raw = std::ptr::null_mut();
        if let Err(e) = check(unsafe { ffi::shim_compile(trampoline, ctx as *mut c_void, shapeless as c_int, &mut raw) }) {
            unsafe { free_ctx(ctx) };
            return Err(e);
        }
        Ok(Compiled { raw, ctx: Some(ctx) })
    }

    /// `f` under gradient checkpointing: called, it runs `f`; a gradient taken through the
    /// call recomputes `f` from the call's inputs in the backward pass instead of keeping
    /// what `f` computed in between (less memory for a second forward pass). Gradients
    /// reach only the call's inputs, not arrays `f` captures. The graphs a call builds keep
    /// `f` alive as long as they need it, so the `Compiled` itself may be dropped at once.
    pub fn checkpoint(f: impl FnMut(&[Array]) -> Result<Vec<Array>> + Send + 'static) -> Result<Compiled> {
        let ctx = into_ctx(f);
        let mut raw = std::ptr::null_mut();
        // The shim owns ctx from here, failure included.
        check(unsafe { ffi::shim_checkpoint(trampoline, ctx as *mut c_void, free_owned_ctx, &mut raw) })?;
        Ok(Compiled { raw, ctx: None })
    }

    pub fn call(&self, inputs: &[&Array]) -> Result<Vec<Array>> {
        let p = ptrs(inputs);
        let mut outs = ArrayVec::new()?;
        check(unsafe { ffi::shim_compiled_call(self.raw, p.as_ptr(), p.len(), outs.as_mut_ptr()) })?;
        outs.into_arrays()
    }
}

fn into_ctx(f: impl FnMut(&[Array]) -> Result<Vec<Array>> + 'static) -> *mut &'static mut ArrayFn<'static> {
    let boxed: &'static mut ArrayFn<'static> = Box::leak(Box::new(f));
    Box::into_raw(Box::new(boxed))
}

unsafe fn free_ctx(ctx: *mut &'static mut ArrayFn<'static>) {
    let inner: &'static mut ArrayFn<'static> = *Box::from_raw(ctx);
    drop(Box::from_raw(inner as *mut ArrayFn<'static>));
}

/// The destructor the shim calls for a context it owns; a panic in the closure's drop
/// stays on this side.
unsafe extern "C" fn free_owned_ctx(ctx: *mut c_void) {
    let _ = catch_unwind(AssertUnwindSafe(|| free_ctx(ctx as *mut &'static mut ArrayFn<'static>)));
}

impl Drop for Compiled {
    fn drop(&mut self) {
        unsafe {
            ffi::shim_compiled_free(self.raw);
            if let Some(ctx) = self.ctx {
                free_ctx(ctx);
            }
        }
    }
}

/// Compiles `f` for the length of `body`, which calls it through the [`Compiled`] it is
/// lent. Unlike [`Compiled::new`], `f` may borrow from the caller: MLX calls `f` only while
/// tracing inside [`Compiled::call`], and its compiled copy (with the cache of traces) is
/// freed before this returns, so `f` is never called after its borrows end.
pub fn with_compiled<'f, R>(
    f: impl FnMut(&[Array]) -> Result<Vec<Array>> + 'f,
    body: impl FnOnce(&Compiled) -> R,
) -> Result<R> {
    let boxed: Box<ArrayFn<'f>> = Box::new(f);
    // SAFETY: the lifetime is extended only for the `Compiled` below, which is dropped
    // (freeing MLX's function and the closure) before `'f` can end; `body` only borrows it.
    let boxed: Box<ArrayFn<'static>> = unsafe { std::mem::transmute::<Box<ArrayFn<'f>>, Box<ArrayFn<'static>>>(boxed) };
    let compiled = Compiled::new(boxed, false)?;
    let out = body(&compiled);
    drop(compiled);
    Ok(out)
}
