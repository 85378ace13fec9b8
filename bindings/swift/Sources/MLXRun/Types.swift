import CMLXRun

/// Why a generation ended.
public enum FinishReason: Sendable, Equatable {
    /// An end-of-sequence or stop token.
    case stop
    /// A stop string.
    case stopString
    /// `maxTokens` (or the context length) was reached.
    case length
    /// The consumer stopped reading (the library's MLXRUN_FINISH_CALLBACK).
    case stopped
    /// The generation was cancelled.
    case cancelled

    init(_ c: mlxrun_finish_reason) {
        switch c {
        case MLXRUN_FINISH_STOP: self = .stop
        case MLXRUN_FINISH_STOP_STRING: self = .stopString
        case MLXRUN_FINISH_LENGTH: self = .length
        case MLXRUN_FINISH_CALLBACK: self = .stopped
        default: self = .cancelled
        }
    }
}

/// One piece of streamed output.
public struct Token: Sendable, Equatable {
    /// The token id, or -1 for text no single token produced (text held back for a
    /// possible stop string, released at the end) and for the closing element.
    public var id: Int32
    /// New text: complete UTF-8 characters only; may be empty.
    public var text: String
    /// The token's log-probability when `GenerateOptions.logprobs` was set.
    public var logprob: Float?
    /// Set on the stream's last element only (id -1, empty text): why generation ended.
    public var finishReason: FinishReason?

    public init(id: Int32, text: String, logprob: Float? = nil, finishReason: FinishReason? = nil) {
        self.id = id
        self.text = text
        self.logprob = logprob
        self.finishReason = finishReason
    }
}

/// One message of a conversation.
public struct Message: Sendable, Equatable {
    /// "system", "user", "assistant", or any role the template knows.
    public var role: String
    public var content: String

    public init(role: String, content: String) {
        self.role = role
        self.content = content
    }

    public static func system(_ content: String) -> Message { Message(role: "system", content: content) }
    public static func user(_ content: String) -> Message { Message(role: "user", content: content) }
    public static func assistant(_ content: String) -> Message { Message(role: "assistant", content: content) }
}

/// What a model is (`mlxrun_model_info`).
public struct ModelInfo: Sendable, Equatable {
    /// `model_type` from config.json, e.g. "llama", "qwen3".
    public var modelType: String
    public var vocabSize: Int
    public var hiddenSize: Int
    public var numLayers: Int
    public var numHeads: Int
    public var numKVHeads: Int
    public var headDim: Int
    /// The model's maximum context (0 when its config does not say).
    public var maxPositionEmbeddings: Int
    /// The context length in force.
    public var contextLength: Int
    /// The dtype the model computes in.
    public var dtype: DType
    /// Whether the output head shares the input embedding.
    public var tiedEmbeddings: Bool

    init(_ c: mlxrun_model_info) {
        var c = c
        modelType = withUnsafeBytes(of: &c.model_type) { raw in
            let bytes = raw.bindMemory(to: UInt8.self)
            return String(decoding: bytes.prefix(while: { $0 != 0 }), as: UTF8.self)
        }
        vocabSize = Int(c.vocab_size)
        hiddenSize = Int(c.hidden_size)
        numLayers = Int(c.num_layers)
        numHeads = Int(c.num_heads)
        numKVHeads = Int(c.num_kv_heads)
        headDim = Int(c.head_dim)
        maxPositionEmbeddings = Int(c.max_position_embeddings)
        contextLength = Int(c.context_length)
        dtype = DType(cValue: c.dtype)
        tiedEmbeddings = c.tied_embeddings
    }
}

/// Measurements of a model's most recent completed generation, chat or session turn
/// (`mlxrun_metrics`).
public struct Metrics: Sendable, Equatable {
    public var promptTokens: Int
    /// Prompt tokens served from a session's KV cache instead of being computed.
    public var cachedPromptTokens: Int
    public var generatedTokens: Int
    public var prefillSeconds: Double
    public var decodeSeconds: Double
    public var prefillTokensPerSecond: Double
    public var decodeTokensPerSecond: Double
    /// MLX's peak memory during the call, bytes.
    public var peakMemory: Int
    /// MLX's active memory at the end of the call, bytes.
    public var activeMemory: Int
    /// Mean GPU utilisation during the call, percent of time a kernel ran (50 ms samples);
    /// nil where it is not sampled (the CPU, macOS, Linux without NVIDIA's NVML).
    public var gpuUtilizationMean: Double?
    /// Highest sampled GPU utilisation during the call, percent; nil as above.
    public var gpuUtilizationMax: Double?

    init(_ c: mlxrun_metrics) {
        promptTokens = Int(c.prompt_tokens)
        cachedPromptTokens = Int(c.cached_prompt_tokens)
        generatedTokens = Int(c.generated_tokens)
        prefillSeconds = c.prefill_seconds
        decodeSeconds = c.decode_seconds
        prefillTokensPerSecond = c.prefill_tokens_per_second
        decodeTokensPerSecond = c.decode_tokens_per_second
        peakMemory = Int(c.peak_memory)
        activeMemory = Int(c.active_memory)
        gpuUtilizationMean = c.gpu_utilization_available ? c.gpu_utilization_mean : nil
        gpuUtilizationMax = c.gpu_utilization_available ? c.gpu_utilization_max : nil
    }
}
