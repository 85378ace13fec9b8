//! MLX's memory counters and limits. Process-wide; every function is thread-safe.
use super::{guard, mlxrun_status};
use crate::mlx::memory;

/// Bytes held by live MLX arrays (weights, caches, activations).
#[no_mangle]
pub extern "C" fn mlxrun_get_active_memory() -> usize {
    memory::active_memory()
}

/// The highest active memory since start or the last `mlxrun_reset_peak_memory`.
#[no_mangle]
pub extern "C" fn mlxrun_get_peak_memory() -> usize {
    memory::peak_memory()
}

/// Bytes freed by arrays but kept by MLX's allocator for reuse.
#[no_mangle]
pub extern "C" fn mlxrun_get_cache_memory() -> usize {
    memory::cache_memory()
}

#[no_mangle]
pub extern "C" fn mlxrun_reset_peak_memory() {
    memory::reset_peak_memory()
}

/// Returns the allocator's cached buffers to the system.
#[no_mangle]
pub extern "C" fn mlxrun_clear_cache() {
    memory::clear_cache()
}

/// Caps the allocator's cache at `limit` bytes; writes the previous cap to `previous`
/// (which may be NULL).
#[no_mangle]
pub unsafe extern "C" fn mlxrun_set_cache_limit(limit: usize, previous: *mut usize) -> mlxrun_status {
    set_limit(memory::set_cache_limit, limit, previous)
}

/// Caps the memory MLX allocates at `limit` bytes; writes the previous limit to
/// `previous` (which may be NULL).
#[no_mangle]
pub unsafe extern "C" fn mlxrun_set_memory_limit(limit: usize, previous: *mut usize) -> mlxrun_status {
    set_limit(memory::set_memory_limit, limit, previous)
}

/// Caps wired (unpageable) memory at `limit` bytes (Apple silicon; accepted elsewhere);
/// writes the previous limit to `previous` (which may be NULL).
#[no_mangle]
pub unsafe extern "C" fn mlxrun_set_wired_limit(limit: usize, previous: *mut usize) -> mlxrun_status {
    set_limit(memory::set_wired_limit, limit, previous)
}

unsafe fn set_limit(f: fn(usize) -> crate::Result<usize>, limit: usize, previous: *mut usize) -> mlxrun_status {
    guard(|| {
        let prev = f(limit)?;
        if !previous.is_null() {
            *previous = prev;
        }
        Ok(())
    })
}

