package mlx

/*
#include "bridge.h"
*/
import "C"

// MLX's memory counters and limits are process-wide; every function is safe to call
// from any goroutine at any time.

// SetCacheLimit caps the memory MLX's allocator keeps cached for reuse, in bytes, and
// returns the previous cap.
func SetCacheLimit(limit uint64) uint64 {
	return setLimit(func(prev *C.size_t) C.enum_mlxrun_status { return C.mlxrun_set_cache_limit(C.size_t(limit), prev) })
}

// SetMemoryLimit caps the memory MLX allocates, in bytes, and returns the previous limit.
func SetMemoryLimit(limit uint64) uint64 {
	return setLimit(func(prev *C.size_t) C.enum_mlxrun_status { return C.mlxrun_set_memory_limit(C.size_t(limit), prev) })
}

// SetWiredLimit caps wired (unpageable) memory, in bytes, and returns the previous
// limit. It matters on Apple silicon; elsewhere it is accepted and has no effect.
func SetWiredLimit(limit uint64) uint64 {
	return setLimit(func(prev *C.size_t) C.enum_mlxrun_status { return C.mlxrun_set_wired_limit(C.size_t(limit), prev) })
}

// setLimit returns the previous value, or 0 if MLX refused (it has no reason to: the
// limits are plain settings).
func setLimit(f func(prev *C.size_t) C.enum_mlxrun_status) uint64 {
	var prev C.size_t
	if err := call(func() C.enum_mlxrun_status { return f(&prev) }); err != nil {
		return 0
	}
	return uint64(prev)
}

// GetActiveMemory is the memory held by live MLX arrays (weights, caches, activations).
func GetActiveMemory() uint64 { return uint64(C.mlxrun_get_active_memory()) }

// GetPeakMemory is the highest active memory since start or ResetPeakMemory. (Every
// generation resets it when it starts; its own peak is in GenerateMetrics.)
func GetPeakMemory() uint64 { return uint64(C.mlxrun_get_peak_memory()) }

// GetCacheMemory is the memory freed by arrays but kept by MLX's allocator for reuse.
func GetCacheMemory() uint64 { return uint64(C.mlxrun_get_cache_memory()) }

// ResetPeakMemory restarts GetPeakMemory from the current active memory.
func ResetPeakMemory() { C.mlxrun_reset_peak_memory() }

// ClearCache returns the allocator's cached memory to the system.
func ClearCache() { C.mlxrun_clear_cache() }
