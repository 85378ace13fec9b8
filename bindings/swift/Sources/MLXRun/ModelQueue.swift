import Foundation

/// A model's queue: runs the model's library calls one at a time, in the order they were
/// asked for, on one thread of its own (never on a Swift concurrency thread).
///
/// Why a thread of its own rather than a serial dispatch queue: MLX keeps its streams per
/// thread, and an array that a call leaves unevaluated can only be evaluated on the thread
/// that made it. The adapters that `mlxrun_model_apply_lora`, `mlxrun_model_load_adapter`
/// and `mlxrun_model_load` (with an adapter path) put on a model are such arrays: used by a
/// later call on another living thread, they fail it with "There is no Stream(cpu, N) in
/// current thread". A serial dispatch queue runs its work items on whichever worker thread
/// is free, so the binding runs every call that touches a model's arrays — loading,
/// generations, batches, sessions, adapters, training — here instead.
///
/// The thread ends once the queue is released and its queued work is done.
final class ModelQueue: @unchecked Sendable {
    /// The work, shared with the thread (which must not keep the queue itself alive).
    private final class Mailbox: @unchecked Sendable {
        let condition = NSCondition()
        var items: [() -> Void] = []
        var closed = false

        /// The thread's body: runs the items in order until the queue is closed and empty.
        func loop() {
            Thread.current.threadDictionary[ModelQueue.key] = self
            while true {
                condition.lock()
                while items.isEmpty && !closed { condition.wait() }
                if items.isEmpty {
                    condition.unlock()
                    return
                }
                let item = items.removeFirst()
                condition.unlock()
                item()
            }
        }
    }

    private static let key = "mlxrun.model-queue"
    private let mailbox: Mailbox

    init(name: String = "mlxrun.model") {
        let mailbox = Mailbox()
        self.mailbox = mailbox
        let thread = Thread { mailbox.loop() }
        thread.name = name
        thread.qualityOfService = .userInitiated
        // As much stack as a process's main thread usually has (MLX's graph code recurses).
        thread.stackSize = 8 << 20
        thread.start()
    }

    deinit {
        mailbox.condition.lock()
        mailbox.closed = true
        mailbox.condition.signal()
        mailbox.condition.unlock()
    }

    /// Queues `work`; returns at once.
    func async(_ work: @escaping () -> Void) {
        mailbox.condition.lock()
        mailbox.items.append(work)
        mailbox.condition.signal()
        mailbox.condition.unlock()
    }

    /// Whether the caller runs on this queue's thread.
    private var isCurrent: Bool {
        (Thread.current.threadDictionary[ModelQueue.key] as AnyObject?) === mailbox
    }

    /// Runs `body` on the queue's thread after the work queued before it, and waits for
    /// it (on the queue's own thread, runs it at once).
    func sync<T>(_ body: @escaping () throws -> T) throws -> T {
        if isCurrent { return try body() }
        var result: Result<T, Error>?
        let done = DispatchSemaphore(value: 0)
        async {
            result = Result { try body() }
            done.signal()
        }
        done.wait()
        return try result!.get()
    }
}
