import CMLXRun
import Dispatch
import Foundation

// LoRA fine-tuning, over the C API's training calls (src/capi/train.rs; docs/training.md).
//
// How a training run works (Model.train):
//
// The call prepares the C arguments (in a CArena) and queues the blocking
// mlxrun_model_train on the model's queue (its own thread: see ModelQueue), behind the
// calls asked for before it, so it never runs on a Swift concurrency thread. Its reports
// go into the AsyncThrowingStream's buffer as the library makes them: unlike a
// generation, training does not wait for its consumer (a slow reader never slows the run
// down).
//
// Stopping it: cancelling the Task that reads the stream, or releasing the stream (breaking
// out of the loop), ends the stream with CancellationError at once, and stops the library
// within a training step: the progress callback answers false from then on, and
// mlxrun_cancel is sent until the C call returns (the library checks it after every step,
// and forgets a cancel that arrives while it still loads the data, hence the repeats; see
// cancelUntilReturned in Generation.swift). A run cancelled while it waits on the queue
// never starts. The library writes each adapter file through a temporary file and a
// rename, so the adapter last saved stays whole.
//
// (AsyncThrowingStream ends a cancelled consumer's stream with nil, not an error. The
// stream's termination handler runs before that happens, and finishing the stream there
// with CancellationError makes the waiting `next()` throw it instead; a consumer cancelled
// between two elements gets the elements already buffered, then the error.)

/// Where LoRA adapters go and their shape (`mlxrun_lora_params`). The defaults are the
/// library's (`mlxrun_lora_default_params()`, mlx-lm's): rank 8, scale 20, no dropout,
/// every layer, `q_proj` and `v_proj`, seed 0.
public struct LoRAConfig: Sendable, Equatable {
    /// The projections adapted when `targetKeys` is not given (the library's default).
    public static let defaultTargetKeys = ["q_proj", "v_proj"]

    /// Rank of the adapters (at least 1).
    public var rank: Int
    /// Scale of the adapters' output: mlx-lm's `scale`, which is `alpha / rank` in the PEFT
    /// convention (see `init(rank:alpha:dropout:numLayers:targetKeys:seed:)` and `alpha`).
    public var scale: Float
    /// Dropout on the adapters' input while training, in [0, 1).
    public var dropout: Float
    /// Adapt the last `numLayers` layers; nil adapts all of them.
    public var numLayers: Int?
    /// The projections to adapt in each layer: any of `q_proj`, `k_proj`, `v_proj`,
    /// `o_proj`, `gate_proj`, `up_proj`, `down_proj` (or with their `self_attn.` / `mlp.`
    /// prefix). A key no projection of the model has is refused, naming it.
    public var targetKeys: [String]
    /// Seeds the adapters' random initial weights: the same seed, the same start (as
    /// mlx-lm's `--seed`).
    public var seed: UInt64

    /// A configuration with the library's defaults for what is not given.
    public init(rank: Int? = nil, scale: Float? = nil, dropout: Float? = nil,
                numLayers: Int? = nil, targetKeys: [String]? = nil, seed: UInt64? = nil) {
        let d = mlxrun_lora_default_params()
        self.rank = rank ?? Int(d.rank)
        self.scale = scale ?? d.scale
        self.dropout = dropout ?? d.dropout
        self.numLayers = numLayers ?? (d.num_layers == 0 ? nil : Int(d.num_layers))
        self.targetKeys = targetKeys ?? Self.defaultTargetKeys
        self.seed = seed ?? d.seed
    }

    /// A configuration given in the PEFT convention: `scale = alpha / rank`.
    public init(rank: Int, alpha: Float, dropout: Float? = nil,
                numLayers: Int? = nil, targetKeys: [String]? = nil, seed: UInt64? = nil) {
        self.init(rank: rank, scale: rank == 0 ? alpha : alpha / Float(rank), dropout: dropout,
                  numLayers: numLayers, targetKeys: targetKeys, seed: seed)
    }

    /// `scale * rank`: the PEFT convention's alpha.
    public var alpha: Float { scale * Float(rank) }

    /// The C struct, its keys copied into `arena`. Values the C struct cannot hold, and
    /// keys it would read wrongly, are refused here; the library checks the rest.
    func cParams(_ arena: CArena) throws -> mlxrun_lora_params {
        var p = mlxrun_lora_default_params()
        p.rank = try int32Field(rank, "rank")
        p.scale = scale
        p.dropout = dropout
        if let n = numLayers {
            // 0 means "all" to the C API; here that is nil.
            guard n >= 1 else {
                throw MLXRunError.invalidArgument("numLayers must be at least 1 (nil adapts every layer), got \(n)")
            }
            p.num_layers = try int32Field(n, "numLayers")
        } else {
            p.num_layers = 0
        }
        for (i, k) in targetKeys.enumerated() where k.contains(",") {
            throw MLXRunError.invalidArgument("targetKeys[\(i)] \"\(k)\" contains a comma: give one projection per key")
        }
        // An empty list stays empty (the library refuses it, saying so), not the default.
        p.keys = UnsafePointer(try arena.string(targetKeys.joined(separator: ","), "targetKeys"))
        p.seed = seed
        return p
    }
}

/// The optimizer of a training run (`mlxrun_optimizer`).
public enum Optimizer: Sendable, Equatable {
    /// MLX's Adam (betas 0.9, 0.999, eps 1e-8, no bias correction): mlx-lm's default.
    case adam
    /// AdamW with weight decay 0.01.
    case adamw
    /// Plain SGD.
    case sgd

    var cValue: Int32 {
        switch self {
        case .adam: return Int32(MLXRUN_OPTIMIZER_ADAM.rawValue)
        case .adamw: return Int32(MLXRUN_OPTIMIZER_ADAMW.rawValue)
        case .sgd: return Int32(MLXRUN_OPTIMIZER_SGD.rawValue)
        }
    }

    init(cValue: Int32) {
        switch UInt32(bitPattern: cValue) {
        case MLXRUN_OPTIMIZER_ADAMW.rawValue: self = .adamw
        case MLXRUN_OPTIMIZER_SGD.rawValue: self = .sgd
        default: self = .adam
        }
    }
}

/// How to train (`mlxrun_train_params`). The defaults are the library's
/// (`mlxrun_train_default_params()`), which are mlx-lm's `lora` defaults: batch 4, 1000
/// iterations, Adam at 1e-5, reports every 10 steps, validation every 200, checkpoints
/// every 100, sequences of up to 2048 tokens, seed 0. `evaluate` reads `batchSize`,
/// `maxSeqLength` and `maskPrompt`.
public struct TrainOptions: Sendable, Equatable {
    /// Training steps (at least 1).
    public var iters: Int
    /// Examples per batch (at least 1; a data file needs at least this many examples).
    public var batchSize: Int
    /// The learning rate (the peak, with warmup or cosine decay).
    public var learningRate: Float
    public var optimizer: Optimizer
    /// Linear warmup steps from 0 to `learningRate`; 0 = none.
    public var warmup: Int
    /// Cosine decay from `learningRate` to `lrEnd` over this many steps after the warmup;
    /// 0 = a constant rate.
    public var cosineDecaySteps: Int
    /// The learning rate at the end of the cosine decay.
    public var lrEnd: Float
    /// Average the gradients of this many steps before each update (at least 1).
    public var gradAccumulationSteps: Int
    /// A `.train` report every this many steps (and after the last).
    public var stepsPerReport: Int
    /// A validation (on `valid.jsonl`, when the data folder has one) every this many
    /// steps, and before the first and the last.
    public var stepsPerEval: Int
    /// Validation batches per validation; nil = the whole validation set.
    public var valBatches: Int?
    /// Write the adapter (into `adapterPath`) every this many steps, with a numbered copy;
    /// 0 = only at the end.
    public var saveEvery: Int
    /// Longer examples are truncated to this many tokens (with a `.warning`).
    public var maxSeqLength: Int
    /// Seeds the batch order and the adapters' dropout.
    public var seed: UInt64
    /// Leave the prompt out of the loss (prompt/completion and chat data; refused for
    /// text data).
    public var maskPrompt: Bool
    /// The folder the adapter is written to: `adapter_config.json` at the start,
    /// `adapters.safetensors` at checkpoints and at the end. nil = not written (save it
    /// with `Model.saveAdapter(to:)`).
    public var adapterPath: String?
    /// Gradient checkpointing: recompute each layer in the backward pass (less memory,
    /// about a third more compute).
    public var gradCheckpoint: Bool

    /// The library's default `valBatches` (nil: all).
    public static let defaultValBatches: Int? = {
        let d = mlxrun_train_default_params()
        return d.val_batches < 0 ? nil : Int(d.val_batches)
    }()

    /// Options with the library's defaults for what is not given (`valBatches: nil` means
    /// the whole validation set; left out, it is the library's default).
    public init(iters: Int? = nil, batchSize: Int? = nil, learningRate: Float? = nil,
                optimizer: Optimizer? = nil, warmup: Int? = nil, cosineDecaySteps: Int? = nil,
                lrEnd: Float? = nil, gradAccumulationSteps: Int? = nil, stepsPerReport: Int? = nil,
                stepsPerEval: Int? = nil, valBatches: Int? = TrainOptions.defaultValBatches, saveEvery: Int? = nil,
                maxSeqLength: Int? = nil, seed: UInt64? = nil, maskPrompt: Bool? = nil,
                adapterPath: String? = nil, gradCheckpoint: Bool? = nil) {
        let d = mlxrun_train_default_params()
        self.iters = iters ?? Int(d.iters)
        self.batchSize = batchSize ?? Int(d.batch_size)
        self.learningRate = learningRate ?? d.learning_rate
        self.optimizer = optimizer ?? Optimizer(cValue: d.optimizer)
        self.warmup = warmup ?? Int(d.warmup)
        self.cosineDecaySteps = cosineDecaySteps ?? Int(d.cosine_decay_steps)
        self.lrEnd = lrEnd ?? d.lr_end
        self.gradAccumulationSteps = gradAccumulationSteps ?? Int(d.grad_accumulation_steps)
        self.stepsPerReport = stepsPerReport ?? Int(d.steps_per_report)
        self.stepsPerEval = stepsPerEval ?? Int(d.steps_per_eval)
        self.valBatches = valBatches
        self.saveEvery = saveEvery ?? Int(d.save_every)
        self.maxSeqLength = maxSeqLength ?? Int(d.max_seq_length)
        self.seed = seed ?? d.seed
        self.maskPrompt = maskPrompt ?? d.mask_prompt
        self.adapterPath = adapterPath
        self.gradCheckpoint = gradCheckpoint ?? d.grad_checkpoint
    }

    /// The C struct, its strings copied into `arena`. Values the C struct cannot hold are
    /// refused here; the library checks the rest (e.g. `iters` 0) and names the field.
    func cParams(_ arena: CArena) throws -> mlxrun_train_params {
        var p = mlxrun_train_default_params()
        p.iters = try uint32Field(iters, "iters")
        p.batch_size = try uint32Field(batchSize, "batchSize")
        p.learning_rate = learningRate
        p.optimizer = optimizer.cValue
        p.warmup = try uint32Field(warmup, "warmup")
        p.cosine_decay_steps = try uint32Field(cosineDecaySteps, "cosineDecaySteps")
        p.lr_end = lrEnd
        p.grad_accumulation_steps = try uint32Field(gradAccumulationSteps, "gradAccumulationSteps")
        p.steps_per_report = try uint32Field(stepsPerReport, "stepsPerReport")
        p.steps_per_eval = try uint32Field(stepsPerEval, "stepsPerEval")
        p.val_batches = try batchLimit(valBatches, "valBatches", "nil validates on every batch")
        p.save_every = try uint32Field(saveEvery, "saveEvery")
        p.max_seq_length = try uint32Field(maxSeqLength, "maxSeqLength")
        p.seed = seed
        p.mask_prompt = maskPrompt
        p.adapter_path = UnsafePointer(try arena.optionalString(adapterPath, "adapterPath"))
        p.grad_checkpoint = gradCheckpoint
        return p
    }
}

/// A training-loss report (`TrainProgress.train`).
public struct TrainReport: Sendable, Equatable {
    /// Steps done.
    public var iteration: Int
    /// The mean training loss of the steps since the previous report.
    public var loss: Double
    /// The learning rate of the last step.
    public var learningRate: Double
    public var iterationsPerSecond: Double
    public var tokensPerSecond: Double
    /// Tokens trained on since the start of the run.
    public var trainedTokens: Int
    /// MLX's peak memory so far, bytes.
    public var peakMemory: Int

    public init(iteration: Int, loss: Double, learningRate: Double, iterationsPerSecond: Double,
                tokensPerSecond: Double, trainedTokens: Int, peakMemory: Int) {
        self.iteration = iteration
        self.loss = loss
        self.learningRate = learningRate
        self.iterationsPerSecond = iterationsPerSecond
        self.tokensPerSecond = tokensPerSecond
        self.trainedTokens = trainedTokens
        self.peakMemory = peakMemory
    }
}

/// What a training run tells its reader, in the order it happens.
public enum TrainProgress: Sendable, Equatable {
    /// A training-loss report, every `TrainOptions.stepsPerReport` steps and after the last.
    case train(TrainReport)
    /// The validation loss after `iteration` steps (0: before the first step), on the data
    /// folder's `valid.jsonl`.
    case validation(iteration: Int, loss: Double)
    /// The adapter's weights were written to `path` (`adapters.safetensors` in
    /// `TrainOptions.adapterPath`) after `iteration` steps: a checkpoint, or the end.
    case saved(iteration: Int, path: String)
    /// A warning (examples truncated to `TrainOptions.maxSeqLength`).
    case warning(String)

    /// The binding's copy of a C report; nil for a kind this binding does not know.
    init?(_ p: mlxrun_train_progress) {
        let message = p.message.map { String(cString: $0) } ?? ""
        switch UInt32(bitPattern: p.kind) {
        case MLXRUN_PROGRESS_TRAIN.rawValue:
            self = .train(TrainReport(
                iteration: Int(p.iteration), loss: Double(p.train_loss), learningRate: Double(p.learning_rate),
                iterationsPerSecond: p.iterations_per_second, tokensPerSecond: p.tokens_per_second,
                trainedTokens: Int(p.trained_tokens), peakMemory: Int(p.peak_memory)))
        case MLXRUN_PROGRESS_VAL.rawValue:
            self = .validation(iteration: Int(p.iteration), loss: Double(p.val_loss))
        case MLXRUN_PROGRESS_SAVED.rawValue:
            self = .saved(iteration: Int(p.iteration), path: message)
        case MLXRUN_PROGRESS_WARNING.rawValue:
            self = .warning(message)
        default:
            return nil
        }
    }
}

/// One training run as its stream and Task cancellation see it (see the comment at the top
/// of this file).
private final class TrainingRun: @unchecked Sendable {
    private let model: Model
    private let continuation: AsyncThrowingStream<TrainProgress, Error>.Continuation
    private let lock = NSLock()
    private var stopRequested = false
    /// The C call is in progress (mlxrun_cancel may be sent).
    private var running = false

    init(model: Model, continuation: AsyncThrowingStream<TrainProgress, Error>.Continuation) {
        self.model = model
        self.continuation = continuation
    }

    /// Ends the stream with CancellationError and stops the run within a step (or before it
    /// starts). Idempotent; any thread.
    func stop() {
        lock.lock()
        if stopRequested {
            lock.unlock()
            return
        }
        stopRequested = true
        let interrupt = running
        lock.unlock()
        continuation.finish(throwing: CancellationError())
        if interrupt {
            DispatchQueue.global().async { cancelUntilReturned(self.model, self.lock) { self.running } }
        }
    }

    /// Called by the C callback with each report: hands it to the stream; false stops.
    func report(_ progress: TrainProgress?) -> Bool {
        lock.lock()
        let stopped = stopRequested
        lock.unlock()
        if stopped { return false }
        if let progress { continuation.yield(progress) }
        return true
    }

    /// Makes the C call (on the model's queue) unless the run was stopped before it
    /// started, then ends the stream: normally, or with the call's error.
    func run(_ call: (UnsafeMutableRawPointer) -> mlxrun_status) {
        lock.lock()
        if stopRequested {
            lock.unlock()
            return
        }
        running = true
        lock.unlock()

        let status = call(Unmanaged.passUnretained(self).toOpaque())
        // The message is per thread: read it here, before anything else can fail.
        let error = MLXRunError(status: Int32(bitPattern: status.rawValue), message: String(cString: mlxrun_last_error()))

        lock.lock()
        running = false
        let stopped = stopRequested
        lock.unlock()
        // A stopped run's stream has already ended, with CancellationError.
        if stopped { return }
        if let error {
            continuation.finish(throwing: error)
        } else {
            continuation.finish()
        }
    }
}

/// The progress callback handed to the C library: never throws, never blocks; false stops.
private let trainCallback: mlxrun_train_callback = { progress, userData in
    guard let progress, let userData else { return false }
    let run = Unmanaged<TrainingRun>.fromOpaque(userData).takeUnretainedValue()
    return run.report(TrainProgress(progress.pointee))
}

/// A call on the model's queue as Task cancellation sees it: cancelled before it started,
/// it is not made. (The calls run this way — evaluate — cannot be interrupted.)
private final class QueuedCall: @unchecked Sendable {
    private let lock = NSLock()
    private var cancelled = false

    /// False when the call was cancelled before it started.
    func begin() -> Bool {
        lock.lock(); defer { lock.unlock() }
        return !cancelled
    }

    /// True when the call was cancelled at any point.
    var wasCancelled: Bool {
        lock.lock(); defer { lock.unlock() }
        return cancelled
    }

    func cancel() {
        lock.lock(); cancelled = true; lock.unlock()
    }
}

/// The C arguments of a training run, made on the caller's side and read on the model's
/// queue. `Sendable` by hand: the arena is written only here.
private final class TrainArgs: @unchecked Sendable {
    let arena = CArena()
    let data: UnsafeMutablePointer<CChar>
    let params: UnsafePointer<mlxrun_train_params>

    init(_ data: String, _ options: TrainOptions) throws {
        self.data = try arena.string(data, "data")
        params = UnsafePointer(arena.array([try options.cParams(arena)])!)
    }
}

/// The C arguments of an evaluate call, made on the caller's side and read on the model's
/// queue. `Sendable` by hand: the arena is written only here.
private final class EvaluateArgs: @unchecked Sendable {
    let arena = CArena()
    let file: UnsafeMutablePointer<CChar>
    let params: UnsafePointer<mlxrun_train_params>
    let batches: Int32

    init(_ file: String, _ options: TrainOptions, _ batches: Int?) throws {
        self.file = try arena.string(file, "file")
        params = UnsafePointer(arena.array([try options.cParams(arena)])!)
        self.batches = try batchLimit(batches, "batches", "nil evaluates every batch")
    }
}

extension Model {
    /// Puts fresh LoRA adapters on the model, as `config` says, and returns the number of
    /// trainable values. The model's output is unchanged until they are trained (their `B`
    /// is zero). Throws `.invalidArgument`, leaving the model as it was, for a bad
    /// configuration (rank 0, a key that matches no projection — the message lists the
    /// model's) or when the model already has an adapter (`removeAdapter()` first).
    ///
    /// Like the other adapter calls, it runs on the model's queue after the calls asked for
    /// before it, and waits for them: do not call it from inside a loop over one of this
    /// model's generation streams (the generation waits for the loop).
    @discardableResult
    public func applyLoRA(_ config: LoRAConfig = LoRAConfig()) throws -> Int {
        let arena = CArena()
        var params = try config.cParams(arena)
        return try queue.sync {
            var trainable: UInt64 = 0
            try withExtendedLifetime(arena) {
                try check(mlxrun_model_apply_lora(self.handle, &params, &trainable))
            }
            return Int(trainable)
        }
    }

    /// Trains the model's adapter (`applyLoRA`, `loadAdapter(from:)`, or
    /// `LoadOptions.adapterPath`; training a loaded adapter resumes it) on the data folder
    /// `data`: `train.jsonl`, and `valid.jsonl` for validation if it is there, in mlx-lm's
    /// formats (docs/training.md).
    ///
    /// ```swift
    /// try model.applyLoRA(LoRAConfig(rank: 8))
    /// for try await event in model.train(data: "data", options: TrainOptions(iters: 600, learningRate: 1e-4,
    ///                                                                        maskPrompt: true, adapterPath: "adapters")) {
    ///     if case .train(let r) = event { print(r.iteration, r.loss) }
    /// }
    /// ```
    ///
    /// The stream yields the run's reports in order (`TrainProgress`) and ends when the run
    /// is over; it throws an `MLXRunError` when training fails (`.invalidArgument` naming
    /// the file and line for malformed data, a missing data folder, bad options, a model
    /// without an adapter). The run is queued on the model's queue like its generations and
    /// never blocks a Swift concurrency thread; reports are buffered, so a slow reader
    /// does not slow training down.
    ///
    /// Cancelling the reading Task, or releasing the stream (breaking out of the loop),
    /// ends the stream with `CancellationError` at once and stops training within a step
    /// (a run still waiting on the queue never starts). The adapter last written to
    /// `adapterPath` stays whole; the adapter on the model keeps the steps done. The
    /// model's next call waits until the step in progress has finished.
    public func train(data: String, options: TrainOptions = TrainOptions()) -> AsyncThrowingStream<TrainProgress, Error> {
        var captured: AsyncThrowingStream<TrainProgress, Error>.Continuation?
        let stream = AsyncThrowingStream<TrainProgress, Error> { captured = $0 }
        guard let continuation = captured else {
            return AsyncThrowingStream { $0.finish(throwing: MLXRunError.internal("AsyncThrowingStream gave no continuation")) }
        }
        let run = TrainingRun(model: self, continuation: continuation)
        continuation.onTermination = { termination in
            if case .cancelled = termination { run.stop() }
        }
        do {
            let args = try TrainArgs(data, options)
            queue.async {
                run.run { userData in mlxrun_model_train(self.handle, args.data, args.params, trainCallback, userData) }
            }
        } catch {
            continuation.finish(throwing: error)
        }
        return stream
    }

    /// The mean loss of the model (with its adapter, if it has one) on the JSONL file `file`
    /// (any of the training formats), as mlx_lm.lora's `--test` computes it: in batches of
    /// `options.batchSize` examples of at most `options.maxSeqLength` tokens, the prompt
    /// left out with `options.maskPrompt`, over the first `batches` batches in length order
    /// (nil: all of them). The perplexity is `exp(loss)`.
    ///
    /// Runs on the model's queue after the calls asked for before it. Throws `.io` naming a
    /// file that cannot be read, `.invalidArgument` naming the file and line of malformed
    /// data or a file with fewer examples than a batch. Cancelling the awaiting Task throws
    /// `CancellationError`; the library cannot interrupt an evaluation, so one that had
    /// started runs to its end first.
    public func evaluate(file: String, options: TrainOptions = TrainOptions(), batches: Int? = nil) async throws -> Double {
        let args = try EvaluateArgs(file, options, batches)
        let call = QueuedCall()
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (c: CheckedContinuation<Double, Error>) in
                queue.async {
                    guard call.begin() else {
                        c.resume(throwing: CancellationError())
                        return
                    }
                    var loss: Float = 0
                    let status = mlxrun_model_evaluate(self.handle, args.file, args.params, args.batches, &loss)
                    // The message is per thread: read it before anything else can fail.
                    let result = Result { try check(status) }
                    if call.wasCancelled {
                        c.resume(throwing: CancellationError())
                    } else {
                        c.resume(with: result.map { Double(loss) })
                    }
                }
            }
        } onCancel: {
            call.cancel()
        }
    }

    /// Writes the model's adapter to the folder `path` (created if needed) in mlx-lm's
    /// layout: `adapters.safetensors` and `adapter_config.json`, which `loadAdapter(from:)`,
    /// `LoadOptions.adapterPath`, `fuse` and mlx-lm read. Throws when the model has no
    /// adapter or the folder cannot be written. Runs on the model's queue (see `applyLoRA`).
    public func saveAdapter(to path: String) throws {
        let arena = CArena()
        let dir = try arena.string(path, "adapter path")
        try queue.sync { try withExtendedLifetime(arena) { try check(mlxrun_model_save_adapter(self.handle, dir)) } }
    }

    /// Puts the adapter in the folder `path` (mlx-lm's layout, from mlx_lm.lora,
    /// `Model.train` or `saveAdapter(to:)`) on the model. Throws, leaving the model as it
    /// was, when the folder is missing (`.io`), or when its shapes or layers do not fit the
    /// model (the message names the tensor or field). Runs on the model's queue (see
    /// `applyLoRA`).
    public func loadAdapter(from path: String) throws {
        let arena = CArena()
        let dir = try arena.string(path, "adapter path")
        try queue.sync { try withExtendedLifetime(arena) { try check(mlxrun_model_load_adapter(self.handle, dir)) } }
    }

    /// Takes the adapter off the model (nothing happens without one): its output is the
    /// base model's again. Runs on the model's queue (see `applyLoRA`).
    public func removeAdapter() throws {
        try queue.sync { try check(mlxrun_model_remove_adapter(self.handle)) }
    }

    /// Fuses the adapter folder `adapter` into the base model at `model` (a Hugging Face
    /// model folder, or a GGUF file whose float tensors are written as float32) and writes
    /// the result to the folder `output` (created if needed), as mlx_lm.fuse does: a
    /// quantized base stays quantized unless `dequantize`. The folder loads as a model
    /// without the adapter, here and in mlx-lm. Works on files alone (no loaded model is
    /// needed or touched), off the caller's thread; it cannot be interrupted. Returns the
    /// number of projections fused. Throws when the adapter does not fit the model, naming
    /// the tensor or field, and writes nothing then.
    @discardableResult
    public static func fuse(model: String, adapter: String, output: String, dequantize: Bool = false) async throws -> Int {
        let arena = CArena()
        let cModel = try arena.string(model, "model path")
        let cAdapter = try arena.string(adapter, "adapter path")
        let cOutput = try arena.string(output, "output path")
        let args = FuseArgs(arena, cModel, cAdapter, cOutput)
        return try await withCheckedThrowingContinuation { (c: CheckedContinuation<Int, Error>) in
            DispatchQueue.global(qos: .userInitiated).async {
                var fused: UInt64 = 0
                let status = mlxrun_fuse_adapter(args.model, args.adapter, args.output, dequantize, &fused)
                c.resume(with: Result { try check(status) }.map { Int(fused) })
            }
        }
    }
}

/// A fuse call's C strings, made on the caller's side and read on a dispatch thread.
/// `Sendable` by hand: the arena is written only before the call.
private final class FuseArgs: @unchecked Sendable {
    let arena: CArena
    let model: UnsafeMutablePointer<CChar>
    let adapter: UnsafeMutablePointer<CChar>
    let output: UnsafeMutablePointer<CChar>

    init(_ arena: CArena, _ model: UnsafeMutablePointer<CChar>, _ adapter: UnsafeMutablePointer<CChar>,
         _ output: UnsafeMutablePointer<CChar>) {
        self.arena = arena
        self.model = model
        self.adapter = adapter
        self.output = output
    }
}

/// A batch count for the C API, where -1 means all of them; here that is nil. `allMeans`
/// says what nil does, for the error.
func batchLimit(_ n: Int?, _ name: String, _ allMeans: String) throws -> Int32 {
    guard let n = n else { return -1 }
    guard n >= 1 else {
        throw MLXRunError.invalidArgument("\(name) must be at least 1 (\(allMeans)), got \(n)")
    }
    return try int32Field(n, name)
}
