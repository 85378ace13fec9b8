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

/// Fails when `need` bytes for `what` exceed what the memory limit leaves free, with an
/// error naming the need, the limit and what is in use, so that a caller learns which
/// limit to raise. MLX's CPU allocator does not enforce the limit at all (it counts bytes
/// and calls `malloc`), and on a GPU exceeding it throws from inside an evaluation after
/// part of the work is done; checking before large allocations (a model's weights) gives
/// the same clean refusal on every device.
pub fn check_fits(what: &str, need: usize) -> Result<()> {
    let (limit, active) = (memory_limit(), active_memory());
    let free = limit.saturating_sub(active);
    if need > free {
        return Err(crate::error::Error::Mlx(format!(
            "{what} needs about {need} bytes ({}), but the memory limit is {limit} bytes ({}) with {active} bytes in use, \
             leaving {free}; raise the limit (set_memory_limit / mlxrun_set_memory_limit) or free other models",
            human(need),
            human(limit)
        )));
    }
    Ok(())
}

/// `bytes` in MiB or GiB, for messages.
fn human(bytes: usize) -> String {
    let b = bytes as f64;
    if b >= (1u64 << 30) as f64 {
        format!("{:.2} GiB", b / (1u64 << 30) as f64)
    } else {
        format!("{:.1} MiB", b / (1u64 << 20) as f64)
    }
}
