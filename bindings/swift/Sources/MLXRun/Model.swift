import CMLXRun
import Dispatch

/// A loaded model and its tokenizer.
///
/// ```swift
/// let model = try Model(path: "/models/Qwen3-0.6B")
/// for try await token in model.generate("The capital of France is", options: GenerateOptions(maxTokens: 32)) {
///     print(token.text, terminator: "")
/// }
/// ```
///
/// ## Concurrency
///
/// `Model` is `Sendable` (checked by hand, hence `@unchecked`): its C handle never changes
/// after `init`, the C library serialises the calls made on one model (a lock per model),
/// and the binding's own mutable state lives in lock-protected objects. So one model can be
/// shared by any number of tasks:
///
/// - Generations (`generate`, `chat`, `ChatSession.send`) are queued on the model's queue
///   and run one at a time, in the order they were asked for, on that queue's own thread —
///   never blocking a Swift concurrency thread. Each stream yields its own generation's
///   tokens only. Training and the adapter calls run there too (all of a model's work
///   with MLX arrays runs on one thread: see `ModelQueue` for why).
/// - `info` and `metrics` never wait. `tokenize`, `detokenize`, `applyChatTemplate` and
///   `ChatSession`'s synchronous methods call the library directly and wait while a
///   generation of this model is running. Do not call them from inside a loop over one of
///   this model's streams: the generation waits for the loop, which would wait for the
///   generation. Finish (or break out of) the loop first.
///
/// ## Lifetime
///
/// `deinit` frees the model. Every running generation and every `ChatSession` keeps its
/// model alive, so the handle is freed only once none of them can use it.
public final class Model: @unchecked Sendable {
    let handle: OpaquePointer
    /// What the model is (read once at load).
    public let info: ModelInfo
    /// This process's rank in the group the model is sharded over, and the group's size
    /// (`LoadOptions.distributed`); 0 and 1 for a model loaded whole.
    public let rank: (rank: Int, size: Int)
    /// Runs this model's calls one at a time, on a thread of its own.
    let queue: ModelQueue

    /// Loads the Hugging Face model folder at `path` (config.json, *.safetensors,
    /// tokenizer.json, tokenizer_config.json). Throws `.config` for a missing folder or
    /// config.json or an unsupported model type, `.weights` for missing or truncated
    /// weights, `.tokenizer` for bad tokenizer files, `.invalidArgument` for a bad option;
    /// the message names the file and what is wrong.
    public init(path: String, options: LoadOptions = LoadOptions()) throws {
        let arena = CArena()
        let cPath = try arena.string(path, "model path")
        var params = try options.cParams()
        if let adapter = options.adapterPath {
            params.adapter_path = UnsafePointer(try arena.string(adapter, "adapter path"))
        }
        if let name = options.backend {
            params.backend = UnsafePointer(try arena.string(name, "backend"))
        }
        if let python = options.python {
            params.python = UnsafePointer(try arena.string(python, "python"))
        }
        if let venv = options.venv {
            params.venv = UnsafePointer(try arena.string(venv, "venv"))
        }
        if let backend = options.distributed {
            params.distributed_backend = UnsafePointer(try arena.string(backend, "distributed backend"))
        }
        // Loaded on the model's own thread, where its adapter (if any) will be used.
        let queue = ModelQueue()
        let (handle, ci, rank) = try queue.sync { () throws -> (OpaquePointer, mlxrun_model_info, (Int, Int)) in
            var out: OpaquePointer?
            try withExtendedLifetime(arena) { try check(mlxrun_model_load(cPath, &params, &out)) }
            guard let handle = out else {
                throw MLXRunError.internal("mlxrun_model_load returned OK without a model")
            }
            var ci = mlxrun_model_info()
            ci.struct_size = UInt32(MemoryLayout<mlxrun_model_info>.size)
            var r: Int32 = 0, n: Int32 = 1
            do {
                try check(mlxrun_model_get_info(handle, &ci))
                try check(mlxrun_model_rank(handle, &r, &n))
            } catch {
                mlxrun_model_free(handle)
                throw error
            }
            return (handle, ci, (Int(r), Int(n)))
        }
        self.queue = queue
        self.handle = handle
        self.info = ModelInfo(ci)
        self.rank = (rank: rank.0, size: rank.1)
    }

    deinit {
        // On the model's thread too, after the calls still queued (none can be: each
        // holds the model), like all of its work with MLX arrays.
        let handle = self.handle
        queue.async { mlxrun_model_free(handle) }
    }

    /// The library's version, e.g. "0.1.0".
    public static var libraryVersion: String { String(cString: mlxrun_version()) }

    /// Generates a continuation of `prompt` (BOS is added unless the text starts with it).
    ///
    /// The stream yields each piece of text as a `Token`, then one last element with
    /// `finishReason` set (id -1, empty text), then ends; it throws an `MLXRunError` if the
    /// generation fails. Generation starts at once (its prefill runs while the caller gets
    /// ready to read) and decodes one token per element read. Cancelling the reading Task,
    /// or breaking out of the loop (releasing the stream), stops it before the next token.
    public func generate(_ prompt: String, options: GenerateOptions = GenerateOptions()) -> AsyncThrowingStream<Token, Error> {
        startGeneration(options: options) { arena, params in
            let cPrompt = try arena.string(prompt, "prompt")
            return { cb, ud, finish in mlxrun_generate(self.handle, cPrompt, params, cb, ud, finish) }
        }
    }

    /// Like `generate(_:options:)` with the prompt given as token ids (no BOS is added).
    public func generate(tokens: [Int32], options: GenerateOptions = GenerateOptions()) -> AsyncThrowingStream<Token, Error> {
        startGeneration(options: options) { arena, params in
            let ids = UnsafePointer(arena.array(tokens))
            let n = tokens.count
            return { cb, ud, finish in mlxrun_generate_tokens(self.handle, ids, n, params, cb, ud, finish) }
        }
    }

    /// Generates the assistant's reply to `messages`, rendered with the model's chat
    /// template; a stream as `generate` returns. Generation also stops at the template's
    /// end-of-turn token.
    public func chat(_ messages: [Message], options: GenerateOptions = GenerateOptions(),
                     template: ChatTemplateOptions = ChatTemplateOptions()) -> AsyncThrowingStream<Token, Error> {
        startGeneration(options: options) { arena, params in
            let cMessages = try cMessageArray(messages, arena)
            let chatParams = UnsafePointer(arena.array([try template.cParams(arena)]))
            let n = messages.count
            return { cb, ud, finish in
                mlxrun_chat(self.handle, cMessages, n, chatParams, params, cb, ud, finish)
            }
        }
    }

    /// Measurements of the model's last completed generation (all zero before the first).
    /// Never waits for a running generation.
    public var metrics: Metrics {
        get throws {
            var m = mlxrun_metrics()
            m.struct_size = UInt32(MemoryLayout<mlxrun_metrics>.size)
            try check(mlxrun_model_metrics(handle, &m))
            return Metrics(m)
        }
    }

    /// The token ids of `text`; with `addSpecialTokens`, those the tokenizer adds (such as
    /// BOS) too. Waits while a generation of this model runs.
    public func tokenize(_ text: String, addSpecialTokens: Bool = true) throws -> [Int32] {
        let arena = CArena()
        let cText = try arena.string(text, "text")
        var capacity = text.utf8.count + 16
        while true {
            var ids = [Int32](repeating: 0, count: capacity)
            var n = 0
            let status = ids.withUnsafeMutableBufferPointer {
                mlxrun_tokenize(handle, cText, addSpecialTokens, $0.baseAddress, capacity, &n)
            }
            if status == MLXRUN_ERR_BUFFER_TOO_SMALL && n > capacity {
                capacity = n
                continue
            }
            try check(status)
            return Array(ids.prefix(n))
        }
    }

    /// The text of `tokens`; with `skipSpecialTokens`, special tokens are left out. Waits
    /// while a generation of this model runs.
    public func detokenize(_ tokens: [Int32], skipSpecialTokens: Bool = false) throws -> String {
        try tokens.withUnsafeBufferPointer { ids in
            try neededSizeText { buf, capacity, needed in
                mlxrun_detokenize(handle, ids.baseAddress, ids.count, skipSpecialTokens, buf, capacity, needed)
            }
        }
    }

    /// `messages` rendered with the model's chat template (the prompt `chat` generates
    /// from). Throws `.template` when the template refuses the conversation. Waits while a
    /// generation of this model runs.
    public func applyChatTemplate(_ messages: [Message], template: ChatTemplateOptions = ChatTemplateOptions()) throws -> String {
        let arena = CArena()
        let cMessages = try cMessageArray(messages, arena)
        var chatParams = try template.cParams(arena)
        return try neededSizeText { buf, capacity, needed in
            mlxrun_apply_chat_template(handle, cMessages, messages.count, &chatParams, buf, capacity, needed)
        }
    }
}

/// `messages` as a C array in `arena` (NULL when empty).
private func cMessageArray(_ messages: [Message], _ arena: CArena) throws -> UnsafePointer<mlxrun_message>? {
    let c = try messages.enumerated().map { i, m in
        mlxrun_message(role: UnsafePointer(try arena.string(m.role, "messages[\(i)].role")),
                       content: UnsafePointer(try arena.string(m.content, "messages[\(i)].content")))
    }
    return UnsafePointer(arena.array(c))
}
