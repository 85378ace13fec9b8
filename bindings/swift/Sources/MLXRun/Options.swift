import CMLXRun

/// Where a model computes.
public enum Device: Sendable, Equatable {
    /// The GPU when MLX has one, else the CPU. The device becomes MLX's default device for
    /// the process.
    case automatic
    case cpu
    case gpu

    var cValue: Int32 {
        switch self {
        case .automatic: return Int32(MLXRUN_DEVICE_DEFAULT.rawValue)
        case .cpu: return Int32(MLXRUN_DEVICE_CPU.rawValue)
        case .gpu: return Int32(MLXRUN_DEVICE_GPU.rawValue)
        }
    }
}

/// The dtype a model computes in.
public enum DType: Sendable, Equatable {
    /// float32 on the CPU, the checkpoint's own dtype on a GPU (load option only).
    case automatic
    case float32
    case float16
    case bfloat16

    var cValue: Int32 {
        switch self {
        case .automatic: return Int32(MLXRUN_DTYPE_DEFAULT.rawValue)
        case .float32: return Int32(MLXRUN_DTYPE_FLOAT32.rawValue)
        case .float16: return Int32(MLXRUN_DTYPE_FLOAT16.rawValue)
        case .bfloat16: return Int32(MLXRUN_DTYPE_BFLOAT16.rawValue)
        }
    }

    init(cValue: Int32) {
        switch UInt32(bitPattern: cValue) {
        case MLXRUN_DTYPE_FLOAT32.rawValue: self = .float32
        case MLXRUN_DTYPE_FLOAT16.rawValue: self = .float16
        case MLXRUN_DTYPE_BFLOAT16.rawValue: self = .bfloat16
        default: self = .automatic
        }
    }
}

/// How to load a model (`mlxrun_load_params`).
public struct LoadOptions: Sendable, Equatable {
    public var device: Device = .automatic
    public var dtype: DType = .automatic
    /// Longest prompt + generation accepted, in tokens; 0 = the model's own maximum.
    public var contextLength: Int = 0
    /// A LoRA adapter folder (adapters.safetensors + adapter_config.json, as mlx_lm.lora
    /// and `mlxrun train` write them) to put on the model; nil for none.
    public var adapterPath: String? = nil
    /// What runs the model: "native" (nil too: this library, in process) or "mlx_lm"
    /// (mlx-lm in a Python worker process; see `Backends.list`).
    public var backend: String? = nil
    /// The mlx_lm backend's Python executable (nil: `venv`'s, else $MLXRUN_PYTHON, else
    /// $VIRTUAL_ENV's, else python3 on the PATH).
    public var python: String? = nil
    /// A virtualenv whose bin/python the mlx_lm backend runs.
    public var venv: String? = nil
    /// How long the mlx_lm worker may stay silent during a call before it is declared hung
    /// and killed, in seconds (0: two minutes).
    public var backendTimeout: Double = 0
    /// MLX's distributed backend ("ring", "jaccl", "mpi", "nccl" or "any") to run this
    /// process as one rank of a group and shard the model over its ranks (tensor
    /// parallelism); nil loads it whole. The group is the one MLX's environment describes
    /// (ring: MLX_RANK and MLX_HOSTFILE, a JSON list of one ["ip:port", ...] list per rank).
    /// Every rank loads the same model with the same options and makes the same calls in the
    /// same order; each gets the same tokens. A rank that dies makes the others' calls throw.
    public var distributed: String? = nil
    /// How long the load waits for every rank to join, in seconds (0: 10 s); then also the
    /// longest a call may wait on the other ranks without computing before it throws.
    public var distributedTimeout: Double = 0

    public init(device: Device = .automatic, dtype: DType = .automatic, contextLength: Int = 0, adapterPath: String? = nil,
                backend: String? = nil, python: String? = nil, venv: String? = nil, backendTimeout: Double = 0,
                distributed: String? = nil, distributedTimeout: Double = 0) {
        self.device = device
        self.dtype = dtype
        self.contextLength = contextLength
        self.adapterPath = adapterPath
        self.backend = backend
        self.python = python
        self.venv = venv
        self.backendTimeout = backendTimeout
        self.distributed = distributed
        self.distributedTimeout = distributedTimeout
    }

    func cParams() throws -> mlxrun_load_params {
        var p = mlxrun_load_default_params()
        p.device = device.cValue
        p.dtype = dtype.cValue
        p.context_length = try uint32Field(contextLength, "contextLength")
        guard backendTimeout >= 0, backendTimeout * 1000 <= Double(UInt32.max) else {
            throw MLXRunError.invalidArgument("backendTimeout \(backendTimeout) s is out of range")
        }
        p.backend_timeout_ms = UInt32(backendTimeout * 1000)
        guard distributedTimeout >= 0, distributedTimeout * 1000 <= Double(UInt32.max) else {
            throw MLXRunError.invalidArgument("distributedTimeout \(distributedTimeout) s is out of range")
        }
        p.distributed_timeout_ms = UInt32(distributedTimeout * 1000)
        return p
    }
}

/// How to generate (`mlxrun_generate_params`). The defaults are the library's own
/// (`mlxrun_generate_default_params()`): greedy, 256 tokens, no extra stops.
public struct GenerateOptions: Sendable, Equatable {
    /// Most tokens to generate.
    public var maxTokens: Int
    /// 0 = greedy.
    public var temperature: Float
    /// Keep the k most likely tokens; 0 = off.
    public var topK: Int
    /// Nucleus sampling mass in (0, 1]; 1 = off.
    public var topP: Float
    /// Keep tokens with probability >= minP * the top one's; 0 = off.
    public var minP: Float
    /// > 0; 1 = off. Applied over the last `repetitionContextSize` tokens.
    public var repetitionPenalty: Float
    public var repetitionContextSize: Int
    /// With a seed, sampling is reproducible run to run.
    public var seed: UInt64?
    /// Keep generating through end-of-sequence tokens.
    public var ignoreEOS: Bool
    /// Fill `Token.logprob`.
    public var logprobs: Bool
    /// Extra stop token ids.
    public var stopTokens: [Int32]
    /// Stop strings: the text ends before the first one that appears.
    public var stopStrings: [String]
    /// Prompt tokens per prefill chunk.
    public var prefillStepSize: Int

    public init(maxTokens: Int? = nil, temperature: Float? = nil, seed: UInt64? = nil) {
        let d = mlxrun_generate_default_params()
        self.maxTokens = maxTokens ?? Int(d.max_tokens)
        self.temperature = temperature ?? d.temperature
        topK = Int(d.top_k)
        topP = d.top_p
        minP = d.min_p
        repetitionPenalty = d.repetition_penalty
        repetitionContextSize = Int(d.repetition_context_size)
        self.seed = seed ?? (d.has_seed ? d.seed : nil)
        ignoreEOS = d.ignore_eos
        logprobs = d.logprobs
        stopTokens = []
        stopStrings = []
        prefillStepSize = Int(d.prefill_step_size)
    }

    /// The C struct, with its arrays and strings copied into `arena` (which must outlive
    /// the call). Values the C struct cannot hold are refused here; the library checks the
    /// rest (e.g. topP out of range) and names the field.
    func cParams(_ arena: CArena) throws -> mlxrun_generate_params {
        var p = mlxrun_generate_default_params()
        p.max_tokens = try uint32Field(maxTokens, "maxTokens")
        p.temperature = temperature
        p.top_k = try int32Field(topK, "topK")
        p.top_p = topP
        p.min_p = minP
        p.repetition_penalty = repetitionPenalty
        p.repetition_context_size = try uint32Field(repetitionContextSize, "repetitionContextSize")
        p.has_seed = seed != nil
        p.seed = seed ?? 0
        p.ignore_eos = ignoreEOS
        p.logprobs = logprobs
        p.stop_tokens = UnsafePointer(arena.array(stopTokens))
        p.n_stop_tokens = stopTokens.count
        let stops: [UnsafePointer<CChar>?] = try stopStrings.enumerated().map {
            UnsafePointer(try arena.string($0.element, "stopStrings[\($0.offset)]"))
        }
        p.stop_strings = UnsafePointer(arena.array(stops))
        p.n_stop_strings = stops.count
        p.prefill_step_size = try uint32Field(prefillStepSize, "prefillStepSize")
        return p
    }
}

/// How to render the chat template (`mlxrun_chat_params`).
public struct ChatTemplateOptions: Sendable, Equatable {
    /// End the prompt with the assistant's turn header.
    public var addGenerationPrompt: Bool
    /// A named template from tokenizer_config.json (e.g. "tool_use"); nil for the default.
    public var templateName: String?
    /// Extra template variables as a JSON object, e.g. `{"enable_thinking": false}` for
    /// Qwen3; nil for none.
    public var templateKwargsJSON: String?

    public init(addGenerationPrompt: Bool = true, templateName: String? = nil, templateKwargsJSON: String? = nil) {
        self.addGenerationPrompt = addGenerationPrompt
        self.templateName = templateName
        self.templateKwargsJSON = templateKwargsJSON
    }

    func cParams(_ arena: CArena) throws -> mlxrun_chat_params {
        var p = mlxrun_chat_default_params()
        p.add_generation_prompt = addGenerationPrompt
        p.template_name = UnsafePointer(try arena.optionalString(templateName, "templateName"))
        p.template_kwargs_json = UnsafePointer(try arena.optionalString(templateKwargsJSON, "templateKwargsJSON"))
        return p
    }
}
