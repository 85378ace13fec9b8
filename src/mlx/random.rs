//! MLX's counter-based random numbers. With an explicit `key` results depend only on the
//! key; without one they draw from MLX's global generator (see `seed`).
use std::os::raw::c_int;

use super::array::{check, new_array, opt_ptr, Array};
use super::dtype::Dtype;
use super::ffi;
use crate::error::Result;

/// Seeds MLX's global generator.
pub fn seed(seed: u64) -> Result<()> {
    check(unsafe { ffi::shim_random_seed(seed) })
}

/// A PRNG key from a seed.
pub fn key(seed: u64) -> Result<Array> {
    new_array(|out| unsafe { ffi::shim_random_key(seed, out) })
}

/// Splits a key into `num` independent keys (shape `[num, 2]`).
pub fn split(key: &Array, num: i32) -> Result<Array> {
    new_array(|out| unsafe { ffi::shim_random_split(key.as_ptr(), num, out) })
}

/// Uniform samples in `[low, high)`.
pub fn uniform(low: f32, high: f32, shape: &[i32], dtype: Dtype, key: Option<&Array>) -> Result<Array> {
    let (lo, hi) = (Array::scalar(low)?, Array::scalar(high)?);
    new_array(|out| unsafe {
        ffi::shim_random_uniform(lo.as_ptr(), hi.as_ptr(), shape.as_ptr(), shape.len(), dtype as c_int, opt_ptr(key), out)
    })
}

/// Normal samples with mean `loc` and standard deviation `scale`.
pub fn normal(shape: &[i32], dtype: Dtype, loc: f32, scale: f32, key: Option<&Array>) -> Result<Array> {
    new_array(|out| unsafe {
        ffi::shim_random_normal(shape.as_ptr(), shape.len(), dtype as c_int, loc, scale, opt_ptr(key), out)
    })
}

/// Samples indices from the unnormalised log-probabilities `logits` along `axis`; one
/// sample per distribution, or `num_samples` of them (a new last axis).
pub fn categorical(logits: &Array, axis: i32, num_samples: Option<i32>, key: Option<&Array>) -> Result<Array> {
    let n = num_samples.unwrap_or(0);
    new_array(|out| unsafe { ffi::shim_random_categorical(logits.as_ptr(), axis, n, opt_ptr(key), out) })
}

/// Integers in `[low, high)`.
pub fn randint(low: i32, high: i32, shape: &[i32], dtype: Dtype, key: Option<&Array>) -> Result<Array> {
    new_array(|out| unsafe {
        ffi::shim_random_randint(low, high, shape.as_ptr(), shape.len(), dtype as c_int, opt_ptr(key), out)
    })
}
