import CMLXRun
import Dispatch
import Foundation

// How a generation runs (Model.generate, Model.chat, ChatSession.send):
//
// The call prepares the C arguments (in a CArena) and queues the blocking C call on the
// model's serial queue, so generations of one model run one at a time, in the order they
// were asked for, each on a queue thread and never on a Swift concurrency thread. The
// caller gets an AsyncThrowingStream whose elements are pulled from a Pipe: the C
// library calls `tokenCallback` on the queue thread for each token, and the pipe hands the
// token over only when the consumer asks for the next element, then lets the library go
// on. So the consumer's loop body never runs inside a C frame, and:
//
//   - breaking out of the loop (the stream is released) or cancelling the consuming Task
//     stops generation before the next token: the waiting callback wakes and returns
//     false;
//   - a stop during prefill, where no callback runs, is delivered with mlxrun_cancel,
//     repeated until the C call returns (the library forgets a cancel that arrives while
//     the prompt is still being encoded). The repeats hold the pipe's lock, and the
//     producer marks the call finished under it before the queue can start the next one,
//     so a late cancel never reaches another generation.
//
// Whatever needs to outlive the C call (the model, the C arguments, the pipe) is retained
// by the queued work item, so releasing the model or the stream mid-generation is safe:
// the model is freed only when its last generation has returned.

/// The C call of one generation, given the callback, its user data and the finish reason.
typealias GenerationCall = (mlxrun_token_callback, UnsafeMutableRawPointer,
                            UnsafeMutablePointer<mlxrun_finish_reason>) -> mlxrun_status

/// A C call that streams into a pipe: given the pipe as the callback's user data, it
/// returns the call's status and the elements that close the stream when it succeeded.
typealias PipeCall<Element> = (UnsafeMutableRawPointer) -> (mlxrun_status, [Element])

/// The token callback handed to the C library: never throws, never blocks forever (a stop
/// wakes it), answers false to stop.
private let tokenCallback: mlxrun_token_callback = { token, userData in
    guard let token, let userData else { return false }
    let pipe = Unmanaged<Pipe<Token>>.fromOpaque(userData).takeUnretainedValue()
    guard let t = Token(token.pointee, logprobs: pipe.logprobs) else { return !pipe.isStopped }
    return pipe.hand(t)
}

extension Token {
    /// The binding's copy of a C token; nil for an empty text-only piece (nothing to show).
    init?(_ t: mlxrun_token, logprobs: Bool) {
        var text = ""
        if t.text_len > 0, let p = t.text {
            text = String(decoding: UnsafeRawBufferPointer(start: p, count: t.text_len), as: UTF8.self)
        }
        if t.id < 0 && text.isEmpty { return nil }
        self.init(id: t.id, text: text, logprob: logprobs && t.id >= 0 && !t.logprob.isNaN ? t.logprob : nil)
    }
}

/// Hands elements (tokens) from a C call (the producer, on the model's queue) to the
/// stream's consumer one at a time; see the comment at the top of this file.
final class Pipe<Element: Sendable>: @unchecked Sendable {
    private let model: Model
    /// Whether the caller asked for log-probabilities (read by the callbacks).
    let logprobs: Bool
    private let lock = NSLock()
    /// Signalled once per element the consumer asks for, and by `stop`.
    private let demand = DispatchSemaphore(value: 0)
    /// The consumer waiting for its next element.
    private var waiter: CheckedContinuation<Element?, Error>?
    private var stopRequested = false
    /// The C call is in progress (mlxrun_cancel may be sent).
    private var running = false
    /// The C call has returned; `tail` holds what the consumer has not read yet.
    private var ended = false
    private var tail: [Result<Element?, Error>] = []

    init(model: Model, logprobs: Bool) {
        self.model = model
        self.logprobs = logprobs
    }

    // MARK: consumer side

    /// The stream the caller iterates. Releasing it (and its iterator) stops generation.
    func stream() -> AsyncThrowingStream<Element, Error> {
        let owner = StreamOwner(self)
        return AsyncThrowingStream(unfolding: { try await owner.pipe.next() })
    }

    func next() async throws -> Element? {
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (c: CheckedContinuation<Element?, Error>) in
                lock.lock()
                if ended {
                    let r = tail.isEmpty ? .success(nil) : tail.removeFirst()
                    lock.unlock()
                    c.resume(with: r)
                } else if stopRequested {
                    lock.unlock()
                    c.resume(returning: nil)
                } else if waiter != nil {
                    lock.unlock()
                    c.resume(throwing: MLXRunError.invalidArgument(
                        "a generation stream was iterated by two tasks at once; it has one consumer"))
                } else {
                    waiter = c
                    lock.unlock()
                    demand.signal()
                }
            }
        } onCancel: {
            self.stop()
        }
    }

    /// Stops the generation before its next token (or prefill chunk); the consumer's
    /// pending request, if any, ends the stream. Idempotent; any thread.
    func stop() {
        lock.lock()
        if stopRequested || ended {
            lock.unlock()
            return
        }
        stopRequested = true
        let w = waiter
        waiter = nil
        let cancelC = running
        lock.unlock()
        demand.signal()
        w?.resume(returning: nil)
        if cancelC {
            DispatchQueue.global().async { cancelUntilReturned(self.model, self.lock) { self.running } }
        }
    }


    // MARK: producer side (the model's queue)

    /// Makes the C call unless the generation was stopped before it started, then ends the
    /// stream with the call's closing elements or its error. `sessionLock` is held for the
    /// call's duration.
    func run(sessionLock: NSLock?, _ call: PipeCall<Element>) {
        lock.lock()
        if stopRequested {
            ended = true
            lock.unlock()
            return
        }
        running = true
        lock.unlock()

        sessionLock?.lock()
        let (status, closing) = call(Unmanaged.passUnretained(self).toOpaque())
        // The message is per thread: read it here, before anything else can fail.
        let error = MLXRunError(status: Int32(bitPattern: status.rawValue), message: String(cString: mlxrun_last_error()))
        sessionLock?.unlock()

        if let error {
            end([.failure(error)])
        } else {
            end(closing.map { .success($0) })
        }
    }

    /// Ends the stream with `result` before any C call was made (bad arguments).
    func fail(_ error: Error) {
        end([.failure(error)])
    }

    private func end(_ results: [Result<Element?, Error>]) {
        lock.lock()
        running = false
        ended = true
        // A stopped consumer gets nothing more.
        tail = stopRequested ? [] : results
        let w = waiter
        waiter = nil
        let first = w == nil || tail.isEmpty ? nil : tail.removeFirst()
        lock.unlock()
        w?.resume(with: first ?? .success(nil))
    }

    var isStopped: Bool {
        lock.lock()
        defer { lock.unlock() }
        return stopRequested
    }

    /// Called by the C callbacks: waits until the consumer asks for an element (or a
    /// stop), then gives it `element`. False means stop. `dropped` is asked once the
    /// consumer has asked (so it sees what the consumer did with the previous element):
    /// when true, `element` is not handed over and the request waits for the next one.
    func hand(_ element: Element, dropped: () -> Bool = { false }) -> Bool {
        if isStopped { return false }
        demand.wait()
        if dropped() {
            demand.signal()
            return false
        }
        lock.lock()
        guard !stopRequested, let w = waiter else {
            lock.unlock()
            return false
        }
        waiter = nil
        lock.unlock()
        w.resume(returning: element)
        return true
    }
}

/// Sends mlxrun_cancel to `model` every millisecond until its C call has returned, that is
/// until `running` (read under `lock`, which the caller's producer takes to mark the call
/// over) is false. The library forgets a cancel that arrives before the call reached its
/// loop (while it encodes the prompt), hence the repeats; holding the lock while sending
/// keeps a late cancel from reaching the model's next call.
func cancelUntilReturned(_ model: Model, _ lock: NSLock, running: () -> Bool) {
    while true {
        lock.lock()
        if !running() {
            lock.unlock()
            return
        }
        _ = mlxrun_cancel(model.handle)
        lock.unlock()
        usleep(1000)
    }
}

/// Held only by the stream's closure: when the stream and its iterators are gone, the
/// consumer has stopped reading, and the generation stops.
private final class StreamOwner<Element: Sendable>: @unchecked Sendable {
    let pipe: Pipe<Element>
    init(_ pipe: Pipe<Element>) { self.pipe = pipe }
    deinit { pipe.stop() }
}

extension Model {
    /// Starts a generation on the model's queue and returns its stream. `prepare` converts
    /// the call's own arguments into `arena` and returns the C call; its errors (and those
    /// of `options`) end the stream before anything runs.
    func startGeneration(options: GenerateOptions, sessionLock: NSLock? = nil,
                         prepare: (CArena, UnsafePointer<mlxrun_generate_params>) throws -> GenerationCall)
        -> AsyncThrowingStream<Token, Error>
    {
        startStream(options: options, sessionLock: sessionLock) { arena, params in
            let call = try prepare(arena, params)
            return { userData in
                var finish = MLXRUN_FINISH_STOP
                let status = call(tokenCallback, userData, &finish)
                return (status, [Token(id: -1, text: "", finishReason: FinishReason(finish))])
            }
        }
    }

    /// Starts a C call that streams into a `Pipe` on the model's queue and returns the
    /// pipe's stream (generations and batch generations share this).
    func startStream<Element: Sendable>(options: GenerateOptions, sessionLock: NSLock? = nil,
                                        prepare: (CArena, UnsafePointer<mlxrun_generate_params>) throws -> PipeCall<Element>)
        -> AsyncThrowingStream<Element, Error>
    {
        let pipe = Pipe<Element>(model: self, logprobs: options.logprobs)
        let arena = CArena()
        do {
            let params = UnsafePointer(arena.array([try options.cParams(arena)])!)
            let call = try prepare(arena, params)
            queue.async {
                withExtendedLifetime(arena) { pipe.run(sessionLock: sessionLock, call) }
            }
        } catch {
            pipe.fail(error)
        }
        return pipe.stream()
    }
}
