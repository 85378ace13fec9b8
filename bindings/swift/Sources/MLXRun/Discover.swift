import CMLXRun

/// How a discovered model is stored.
public enum ModelFormat: String, Sendable, Equatable {
    /// A Hugging Face-layout folder: config.json and safetensors weights.
    case safetensors
    /// A single GGUF file.
    case gguf
}

/// How a discovered model's weights are quantized.
public struct DiscoveredQuantization: Sendable, Equatable {
    /// Bits per weight: mlx-lm's default setting (some layers may differ), or the nominal
    /// bits of a GGUF file type.
    public var bits: Int
    /// Weights per scale (GGUF: the block size).
    public var groupSize: Int
    /// mlx-lm's mode ("affine", "mxfp4", "mxfp8", "nvfp4"), or for GGUF llama.cpp's file
    /// type in lower case ("q4_k_m").
    public var mode: String
}

/// Whether one backend can load a discovered model, and why not.
public struct BackendSupport: Sendable, Equatable {
    /// "native" or "mlx_lm".
    public var name: String
    public var ok: Bool
    /// Why not (nil when `ok`).
    public var reason: String?
}

/// A model found by `discoverModels(in:maxDepth:)`, read from its headers only.
public struct DiscoveredModel: Sendable, Equatable {
    /// The model folder or GGUF file (absolute; links not resolved).
    public var path: String
    /// nil only for a folder that could not be listed (see `error`).
    public var format: ModelFormat?
    /// config.json's `model_type`, or GGUF `general.architecture`.
    public var modelType: String?
    /// Safetensors: the float dtype most parameters are stored in ("bfloat16", "float16",
    /// "float32"), else config.json's `torch_dtype`. GGUF: the file type in llama.cpp's
    /// names ("Q4_K_M", "F16").
    public var dtype: String?
    /// nil for a dense model.
    public var quantization: DiscoveredQuantization?
    /// Parameters from the headers' shapes (quantized matrices counted unpacked, as mlx-lm
    /// counts them); nil when unknown (a broken model).
    public var parameters: Int?
    /// Bytes of the model's files: every file directly in the folder, or the GGUF file.
    public var sizeBytes: Int
    /// Weight files: safetensors shards, or 1 for a GGUF file.
    public var fileCount: Int
    /// A tokenizer.json, or a tokenizer in the GGUF metadata.
    public var hasTokenizer: Bool
    /// chat_template.jinja, tokenizer_config.json's chat_template, or GGUF's template.
    public var hasChatTemplate: Bool
    /// What is wrong with a broken model (malformed config, missing weights or shard,
    /// truncated file), naming the file; nil when its metadata reads cleanly.
    public var error: String?
    /// Each backend's verdict; a broken model is refused by all of them.
    public var backends: [BackendSupport]

    /// Whether the backend named `backend` can load the model.
    public func canLoad(backend: String) -> Bool {
        backends.contains { $0.name == backend && $0.ok }
    }
}

/// The models under `dir`, sorted by path: Hugging Face-layout folders and GGUF files,
/// searched `maxDepth` folder levels deep (`dir` itself being level 0), links followed,
/// each folder visited once (a link loop is harmless). Only headers are read, never
/// weights, but it is file I/O: call it off the main thread for large trees.
///
/// Broken models and folders that cannot be listed are entries with an `error`. Throws
/// `.io` when `dir` is missing or unreadable, `.invalidArgument` when it is a file or
/// `maxDepth` is negative. Thread-safe.
///
/// ```swift
/// for m in try discoverModels(in: "/models") where m.error == nil {
///     print(m.path, m.modelType ?? "?", m.quantization?.bits ?? 16)
/// }
/// ```
public func discoverModels(in dir: String, maxDepth: Int = 4) throws -> [DiscoveredModel] {
    guard maxDepth >= 0 else {
        throw MLXRunError.invalidArgument("maxDepth must be 0 or more, got \(maxDepth)")
    }
    let arena = CArena()
    let cDir = try arena.string(dir, "dir")
    var params = mlxrun_discover_default_params()
    params.max_depth = UInt32(min(maxDepth, Int(UInt32.max)))
    var out: OpaquePointer?
    try withExtendedLifetime(arena) { try check(mlxrun_discover(cDir, &params, &out)) }
    guard let list = out else {
        throw MLXRunError.internal("mlxrun_discover returned OK without a list")
    }
    // The list owns the strings the entries point at: copy them before freeing it.
    defer { mlxrun_discovered_list_free(list) }
    return try (0..<mlxrun_discovered_list_count(list)).map { i in
        var c = mlxrun_discovered_model()
        c.struct_size = UInt32(MemoryLayout<mlxrun_discovered_model>.size)
        try check(mlxrun_discovered_list_get(list, i, &c))
        let text = { (p: UnsafePointer<CChar>?) -> String? in
            guard let p, p.pointee != 0 else { return nil }
            return String(cString: p)
        }
        let backends = try (0..<Int(c.n_backends)).map { j -> BackendSupport in
            var b = mlxrun_discovered_backend()
            b.struct_size = UInt32(MemoryLayout<mlxrun_discovered_backend>.size)
            try check(mlxrun_discovered_list_get_backend(list, i, j, &b))
            return BackendSupport(name: text(b.name) ?? "", ok: b.ok, reason: text(b.reason))
        }
        return DiscoveredModel(
            path: text(c.path) ?? "",
            format: text(c.format).flatMap(ModelFormat.init(rawValue:)),
            modelType: text(c.model_type),
            dtype: text(c.dtype),
            quantization: c.quant_bits == 0
                ? nil
                : DiscoveredQuantization(bits: Int(c.quant_bits), groupSize: Int(c.quant_group_size), mode: text(c.quant_mode) ?? ""),
            parameters: c.params == 0 ? nil : Int(c.params),
            sizeBytes: Int(c.size_bytes),
            fileCount: Int(c.num_files),
            hasTokenizer: c.has_tokenizer,
            hasChatTemplate: c.has_chat_template,
            error: text(c.error),
            backends: backends)
    }
}
