//! MLX's allocator: what it holds and the limits it enforces. Sizes are in bytes.
use super::array::check;
use super::ffi;
use crate::error::Result;

/// Bytes held by live arrays.
pub fn active_memory() -> usize {
    unsafe { ffi::shim_get_active_memory() }
}

/// Highest `active_memory` since start or the last `reset_peak_memory`.
pub fn peak_memory() -> usize {
    unsafe { ffi::shim_get_peak_memory() }
}

pub fn reset_peak_memory() {
    unsafe { ffi::shim_reset_peak_memory() }
}

/// Bytes freed by arrays but kept by the allocator for reuse.
pub fn cache_memory() -> usize {
    unsafe { ffi::shim_get_cache_memory() }
}

/// Returns the cached buffers to the system.
pub fn clear_cache() {
    unsafe { ffi::shim_clear_cache() }
}

/// Caps the allocator's cache; returns the previous cap.
pub fn set_cache_limit(limit: usize) -> Result<usize> {
    let mut prev = 0;
    check(unsafe { ffi::shim_set_cache_limit(limit, &mut prev) })?;
    Ok(prev)
}

/// Caps the memory MLX will allocate before it waits for work to finish (or fails);
/// returns the previous limit.
pub fn set_memory_limit(limit: usize) -> Result<usize> {
    let mut prev = 0;
    check(unsafe { ffi::shim_set_memory_limit(limit, &mut prev) })?;
    Ok(prev)
}

pub fn memory_limit() -> usize {
    unsafe { ffi::shim_get_memory_limit() }
}

/// Caps wired (resident, unpageable) memory; meaningful on Apple silicon, accepted and
/// ignored elsewhere. Returns the previous limit.
pub fn set_wired_limit(limit: usize) -> Result<usize> {
    let mut prev = 0;
    check(unsafe { ffi::shim_set_wired_limit(limit, &mut prev) })?;
    Ok(prev)
}

/// The allocator's cache cap (MLX's default: the memory limit).
pub fn cache_limit() -> Result<usize> {
    let mut limit = 0;
    check(unsafe { ffi::shim_get_cache_limit(&mut limit) })?;
    Ok(limit)
}

/// The wired limit in force: the last one set through [`set_wired_limit`], else MLX's
/// default of 0 (MLX has no getter, and reading it by setting it would resize Metal's
/// residency set). Only Metal applies it.
pub fn wired_limit() -> usize {
    unsafe { ffi::shim_get_wired_limit() }
}
