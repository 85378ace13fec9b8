import CMLXRun

/// The device models load onto and the memory limits MLX applies to it
/// (`mlxrun_get_device_info`). Sizes are bytes; 0 where the platform reports none.
public struct DeviceInfo: Sendable, Equatable {
    public enum Kind: Sendable, Equatable {
        case cpu
        /// Apple's GPUs.
        case metal
        /// NVIDIA GPUs (Linux).
        case cuda
    }

    /// False for the CPU.
    public var isGPU: Bool
    public var index: Int
    public var kind: Kind
    /// The GPU's name as MLX reports it, or the CPU's model name.
    public var name: String
    /// "applegpu_g14s", "sm_90", "x86_64"; "" when not reported.
    public var architecture: String
    /// Unified memory on Apple silicon, the card's memory on CUDA, the system's RAM for the CPU.
    public var memorySize: UInt64
    /// The card's free memory now (CUDA only).
    public var freeMemory: UInt64
    /// Metal's recommended working-set size (0 elsewhere).
    public var maxRecommendedWorkingSetSize: UInt64
    public var memoryLimit: UInt64
    public var cacheLimit: UInt64
    /// The last `Memory.setWiredLimit` value (0, MLX's default, before any); Metal only.
    public var wiredLimit: UInt64

    /// Describes MLX's default device (the GPU when MLX has one, unless a model was loaded
    /// on the CPU). Thread-safe.
    public static func current() throws -> DeviceInfo {
        var d = mlxrun_device_info()
        d.struct_size = UInt32(MemoryLayout<mlxrun_device_info>.size)
        try check(mlxrun_get_device_info(&d))
        func text<T>(_ field: T) -> String {
            withUnsafeBytes(of: field) { String(decoding: $0.prefix(while: { $0 != 0 }), as: UTF8.self) }
        }
        let kind: Kind
        switch d.kind {
        case Int32(MLXRUN_DEVICE_KIND_METAL.rawValue): kind = .metal
        case Int32(MLXRUN_DEVICE_KIND_CUDA.rawValue): kind = .cuda
        default: kind = .cpu
        }
        return DeviceInfo(
            isGPU: d.device == Int32(MLXRUN_DEVICE_GPU.rawValue), index: Int(d.index), kind: kind,
            name: text(d.name), architecture: text(d.architecture), memorySize: d.memory_size,
            freeMemory: d.free_memory, maxRecommendedWorkingSetSize: d.max_recommended_working_set_size,
            memoryLimit: d.memory_limit, cacheLimit: d.cache_limit, wiredLimit: d.wired_limit)
    }
}
