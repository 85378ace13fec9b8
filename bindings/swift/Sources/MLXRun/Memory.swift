import CMLXRun

/// MLX's memory, process-wide (all models share MLX's allocator). Thread-safe.
public enum Memory {
    /// Bytes held by live MLX arrays (weights, caches, activations).
    public static var active: Int { mlxrun_get_active_memory() }
    /// The highest `active` since start or the last `resetPeak()`.
    public static var peak: Int { mlxrun_get_peak_memory() }
    /// Bytes freed by arrays but kept by MLX's allocator for reuse.
    public static var cache: Int { mlxrun_get_cache_memory() }

    public static func resetPeak() { mlxrun_reset_peak_memory() }

    /// Returns the allocator's cached buffers to the system.
    public static func clearCache() { mlxrun_clear_cache() }

    /// Caps the allocator's cache at `bytes`; returns the previous cap.
    @discardableResult
    public static func setCacheLimit(_ bytes: Int) throws -> Int {
        try setLimit(bytes, "cache limit", mlxrun_set_cache_limit)
    }

    /// Caps the memory MLX allocates at `bytes`; returns the previous limit.
    @discardableResult
    public static func setMemoryLimit(_ bytes: Int) throws -> Int {
        try setLimit(bytes, "memory limit", mlxrun_set_memory_limit)
    }

    /// Caps wired (unpageable) memory at `bytes` (Apple silicon; accepted elsewhere);
    /// returns the previous limit.
    @discardableResult
    public static func setWiredLimit(_ bytes: Int) throws -> Int {
        try setLimit(bytes, "wired limit", mlxrun_set_wired_limit)
    }

    private static func setLimit(_ bytes: Int, _ what: String,
                                 _ call: (Int, UnsafeMutablePointer<Int>?) -> mlxrun_status) throws -> Int {
        guard bytes >= 0 else { throw MLXRunError.invalidArgument("the \(what) must be >= 0 bytes, got \(bytes)") }
        var previous = 0
        try check(call(bytes, &previous))
        return previous
    }
}
