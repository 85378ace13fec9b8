import CMLXRun
import Foundation

// classify and batchGenerate, over mlxrun_classify and mlxrun_batch_generate (the batch
// C API: src/capi/batch.rs). Both run on the model's queue like its other generations.
//
// Stopping them: mlxrun_cancel stops both. The library checks it in classify between
// batches and between prefill chunks (prompts not yet computed then fail with "the call
// was cancelled"), and in a batch generation before each decoding step. So cancelling the
// Task that awaits classify interrupts it (it throws CancellationError), and cancelling
// the Task reading a batch generation (or releasing its stream) stops every row within a
// token: the waiting callback answers false, the others too, and mlxrun_cancel is sent
// until the call returns (as for generate; see Generation.swift).

/// Batch settings (`mlxrun_batch_params`).
public struct BatchOptions: Sendable, Equatable {
    /// Most rows computed together; 0 = automatic (chosen by the library from the memory
    /// limit and the prompts' lengths).
    public var maxBatchSize: Int
    /// classify: return each prompt's last-position logits (`ClassifyResult.logits`).
    public var returnLogits: Bool

    public init(maxBatchSize: Int? = nil, returnLogits: Bool? = nil) {
        let d = mlxrun_batch_default_params()
        self.maxBatchSize = maxBatchSize ?? Int(d.max_batch_size)
        self.returnLogits = returnLogits ?? d.return_logits
    }

    func cParams() throws -> mlxrun_batch_params {
        var p = mlxrun_batch_default_params()
        p.max_batch_size = try uint32Field(maxBatchSize, "maxBatchSize")
        p.return_logits = returnLogits
        return p
    }
}

/// One prompt's classification: the token after its last position.
public struct ClassifyResult: Sendable, Equatable {
    /// The chosen token (greedy, or sampled with the options' settings); nil when this
    /// prompt failed (see `error`).
    public var token: Int32?
    /// Its log-probability, when `GenerateOptions.logprobs` was set.
    public var logprob: Float?
    /// The length of the encoded prompt.
    public var promptTokens: Int
    /// The last position's logits (vocabSize floats), with `BatchOptions.returnLogits`.
    public var logits: [Float]?
    /// Why this prompt failed (e.g. `.invalidArgument` for an empty or too long prompt);
    /// the other prompts are unaffected.
    public var error: MLXRunError?
}

/// What a row of a batch generation ended with.
public struct BatchRowResult: Sendable, Equatable {
    /// Why the row ended; nil when it failed (see `error`).
    public var finishReason: FinishReason?
    public var promptTokens: Int
    public var generatedTokens: Int
    /// Why this row failed; the other rows are unaffected.
    public var error: MLXRunError?
}

/// An element of a batch generation's stream.
public enum BatchEvent: Sendable, Equatable {
    /// A new piece of row `index`'s output, in the order the rows produce them.
    case token(index: Int, Token)
    /// Row `index` is over. The library reports rows at the end of the call, so these come
    /// last, one per prompt, in prompt order.
    case finished(index: Int, BatchRowResult)
}

/// Rows of a batch generation its consumer stopped (`BatchGeneration.stop(row:)`).
private final class RowStops: @unchecked Sendable {
    private let lock = NSLock()
    private var rows = Set<Int>()
    func stop(_ row: Int) { lock.lock(); rows.insert(row); lock.unlock() }
    func isStopped(_ row: Int) -> Bool { lock.lock(); defer { lock.unlock() }; return rows.contains(row) }
}

/// The batch callback's user data: the stream's pipe and the stopped rows.
private final class BatchContext {
    let pipe: Pipe<BatchEvent>
    let stops: RowStops
    init(_ pipe: Pipe<BatchEvent>, _ stops: RowStops) {
        self.pipe = pipe
        self.stops = stops
    }
}

/// The batch callback handed to the C library: never throws; false stops that row (a
/// row its consumer stopped, every row of a stopped stream; mlxrun_cancel stops them all).
private let batchCallback: mlxrun_batch_callback = { index, token, userData in
    guard let token, let userData else { return false }
    let ctx = Unmanaged<BatchContext>.fromOpaque(userData).takeUnretainedValue()
    if ctx.stops.isStopped(index) { return false }
    guard let t = Token(token.pointee, logprobs: ctx.pipe.logprobs) else { return !ctx.pipe.isStopped }
    // Asked again once the consumer wants its next element: it may have stopped this row
    // on reading the previous one.
    return ctx.pipe.hand(.token(index: index, t), dropped: { ctx.stops.isStopped(index) })
}

/// A batch generation's stream (`Model.batchGenerate`). Iterate it once; releasing it, or
/// cancelling the Task that reads it, stops every row within a token.
public struct BatchGeneration: AsyncSequence, Sendable {
    public typealias Element = BatchEvent
    fileprivate let stream: AsyncThrowingStream<BatchEvent, Error>
    fileprivate let stops: RowStops

    public func makeAsyncIterator() -> AsyncThrowingStream<BatchEvent, Error>.AsyncIterator {
        stream.makeAsyncIterator()
    }

    /// Stops row `index` only: no `.token` event of it comes after this call, and it ends
    /// with `FinishReason.stopped` (its token computed meanwhile is dropped); the other
    /// rows go on. Any thread; an index out of range is ignored.
    public func stop(row index: Int) {
        stops.stop(index)
    }
}

/// A classify call's C arguments, made on the caller's side and used on the model's
/// queue. `Sendable` by hand: the arena is written only here, then only read by the one
/// queued call.
private final class ClassifyArgs: @unchecked Sendable {
    let arena = CArena()
    let prompts: UnsafePointer<UnsafePointer<CChar>?>?
    let gen: UnsafePointer<mlxrun_generate_params>?
    let batch: UnsafePointer<mlxrun_batch_params>?

    init(_ prompts: [String], _ options: GenerateOptions, _ batch: BatchOptions) throws {
        self.prompts = try cPromptArray(prompts, arena)
        gen = UnsafePointer(arena.array([try options.cParams(arena)]))
        self.batch = UnsafePointer(arena.array([try batch.cParams()]))
    }
}

/// A classify's C call as Task cancellation sees it: cancelled before it started, it is
/// not made; cancelled while it runs, mlxrun_cancel is sent until it returns. (Also used
/// by `inspectAttention`, the other blocking call.)
final class ClassifyCall: @unchecked Sendable {
    private let model: Model
    private let lock = NSLock()
    private var cancelled = false
    private var running = false

    init(_ model: Model) { self.model = model }

    /// Marks the call started; false when it was cancelled before.
    func begin() -> Bool {
        lock.lock(); defer { lock.unlock() }
        running = !cancelled
        return running
    }

    /// Marks the call returned; true when it was cancelled meanwhile.
    func end() -> Bool {
        lock.lock(); defer { lock.unlock() }
        running = false
        return cancelled
    }

    func cancel() {
        lock.lock()
        cancelled = true
        let interrupt = running
        lock.unlock()
        if interrupt {
            DispatchQueue.global().async { cancelUntilReturned(self.model, self.lock) { self.running } }
        }
    }
}

/// The text of a result struct's `char error[256]` (NUL-terminated).
private func cText<T>(_ field: T) -> String {
    withUnsafeBytes(of: field) { raw in
        String(decoding: raw.prefix(while: { $0 != 0 }), as: UTF8.self)
    }
}

/// A per-row status and message as an error (nil for MLXRUN_OK).
private func rowError<T>(_ status: Int32, _ message: T) -> MLXRunError? {
    MLXRunError(status: status, message: cText(message))
}

/// `prompts` as an array of C strings in `arena`.
private func cPromptArray(_ prompts: [String], _ arena: CArena) throws -> UnsafePointer<UnsafePointer<CChar>?>? {
    if prompts.isEmpty {
        throw MLXRunError.invalidArgument("no prompts given: a batch call needs at least one")
    }
    let c: [UnsafePointer<CChar>?] = try prompts.enumerated().map {
        UnsafePointer(try arena.string($0.element, "prompts[\($0.offset)]"))
    }
    return UnsafePointer(arena.array(c))
}

extension Model {
    /// The next token after each prompt (prefill only), computed in batches. Prompts are
    /// encoded as `generate` encodes them; `options` gives the sampling settings (its
    /// maxTokens and stop settings are ignored; the defaults are greedy). A prompt that
    /// cannot be classified (empty, too long) gets its own `error`; the call throws only
    /// for failures of the whole call. Runs on the model's queue after the generations
    /// asked for before it, never blocking a Swift concurrency thread. Cancelling the
    /// awaiting Task throws CancellationError: before the call starts it never runs; while
    /// it runs, the library stops at its next batch or prefill chunk (`prefillStepSize`
    /// tokens).
    public func classify(_ prompts: [String], options: GenerateOptions = GenerateOptions(),
                         batch: BatchOptions = BatchOptions()) async throws -> [ClassifyResult] {
        let args = try ClassifyArgs(prompts, options, batch)
        let vocab = info.vocabSize
        let n = prompts.count
        let call = ClassifyCall(self)
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (c: CheckedContinuation<[ClassifyResult], Error>) in
                queue.async {
                    guard call.begin() else {
                        c.resume(throwing: CancellationError())
                        return
                    }
                    var results = [mlxrun_classify_result](repeating: mlxrun_classify_result(), count: n)
                    var logits = [Float](repeating: 0, count: batch.returnLogits ? n * vocab : 0)
                    let status = results.withUnsafeMutableBufferPointer { r in
                        logits.withUnsafeMutableBufferPointer { l in
                            mlxrun_classify(self.handle, args.prompts, n, args.gen, args.batch, r.baseAddress,
                                            batch.returnLogits ? l.baseAddress : nil)
                        }
                    }
                    // The message is per thread: read it before anything else can fail.
                    let callError = Result { try check(status) }
                    if call.end() {
                        c.resume(throwing: CancellationError())
                        return
                    }
                    if case .failure(let error) = callError {
                        c.resume(throwing: error)
                        return
                    }
                    c.resume(returning: results.enumerated().map { i, r in
                        let error = rowError(r.status, r.error)
                        return ClassifyResult(
                            token: error == nil ? r.token : nil,
                            logprob: error == nil && options.logprobs && !r.logprob.isNaN ? r.logprob : nil,
                            promptTokens: Int(r.prompt_tokens),
                            logits: batch.returnLogits && error == nil ? Array(logits[i * vocab ..< (i + 1) * vocab]) : nil,
                            error: error)
                    })
                }
            }
        } onCancel: {
            call.cancel()
        }
    }

    /// Generates every prompt with `options` by continuous batching (rows that finish
    /// leave the batch and waiting prompts join it), streaming `.token` events as the rows
    /// produce them, then one `.finished` event per prompt. Greedy output of a row is that
    /// prompt's `generate` output. Like `generate`'s stream, it decodes as the consumer
    /// reads; cancelling the reading Task or releasing the stream stops every row within a
    /// token, and `BatchGeneration.stop(row:)` stops one.
    public func batchGenerate(_ prompts: [String], options: GenerateOptions = GenerateOptions(),
                              batch: BatchOptions = BatchOptions()) -> BatchGeneration {
        let stops = RowStops()
        let stream: AsyncThrowingStream<BatchEvent, Error> = startStream(options: options) { arena, gen in
            let cPrompts = try cPromptArray(prompts, arena)
            let batchParams = UnsafePointer(arena.array([try batch.cParams()]))
            let n = prompts.count
            return { userData in
                let ctx = BatchContext(Unmanaged<Pipe<BatchEvent>>.fromOpaque(userData).takeUnretainedValue(), stops)
                var results = [mlxrun_batch_result](repeating: mlxrun_batch_result(), count: n)
                let status = withExtendedLifetime(ctx) {
                    results.withUnsafeMutableBufferPointer {
                        mlxrun_batch_generate(self.handle, cPrompts, n, gen, batchParams, batchCallback,
                                              Unmanaged.passUnretained(ctx).toOpaque(), $0.baseAddress)
                    }
                }
                let finished = results.enumerated().map { i, r -> BatchEvent in
                    let error = rowError(r.status, r.error)
                    return .finished(index: i, BatchRowResult(
                        finishReason: error == nil ? FinishReason(mlxrun_finish_reason(rawValue: UInt32(bitPattern: r.finish_reason))) : nil,
                        promptTokens: Int(r.prompt_tokens),
                        generatedTokens: Int(r.generated_tokens),
                        error: error))
                }
                return (status, finished)
            }
        }
        return BatchGeneration(stream: stream, stops: stops)
    }
}
