import CMLXRun
import Foundation

/// A conversation with a model that keeps its KV cache between turns, so each turn
/// computes only what is new (see `Metrics.cachedPromptTokens`).
///
/// `Sendable` (checked by hand): the session's C handle is used under the session's own
/// lock, which a turn holds until its generation returns, so calls never overlap as the C
/// library requires. Turns run on the model's queue like the model's other generations.
/// The synchronous methods wait for a running turn: do not call them from inside a loop
/// over this session's stream. The session keeps its model alive; `deinit` frees the
/// session.
public final class ChatSession: @unchecked Sendable {
    public let model: Model
    private let handle: OpaquePointer
    private let lock = NSLock()

    /// An empty conversation. `template` fixes the chat template options for every turn.
    public init(model: Model, template: ChatTemplateOptions = ChatTemplateOptions()) throws {
        let arena = CArena()
        var params = try template.cParams(arena)
        var out: OpaquePointer?
        try check(mlxrun_session_new(model.handle, &params, &out))
        guard let handle = out else {
            throw MLXRunError.internal("mlxrun_session_new returned OK without a session")
        }
        self.model = model
        self.handle = handle
    }

    deinit {
        mlxrun_session_free(handle)
    }

    /// Adds a message without generating (a system prompt, or earlier turns to replay).
    public func addMessage(_ message: Message) throws {
        let arena = CArena()
        let role = try arena.string(message.role, "role")
        let content = try arena.string(message.content, "content")
        try withLock { try check(mlxrun_session_add_message(handle, role, content)) }
    }

    /// Adds a message from `role` and streams the assistant's reply, which then joins the
    /// conversation; a stream as `Model.generate` returns. On an error the conversation is
    /// unchanged.
    public func send(_ content: String, role: String = "user",
                     options: GenerateOptions = GenerateOptions()) -> AsyncThrowingStream<Token, Error> {
        model.startGeneration(options: options, sessionLock: lock) { arena, params in
            let cRole = try arena.string(role, "role")
            let cContent = try arena.string(content, "content")
            // The closure keeps the session (and so its handle) alive until the call returns.
            return { cb, ud, finish in
                mlxrun_session_send(self.handle, cRole, cContent, params, cb, ud, finish)
            }
        }
    }

    /// Forgets the conversation and frees the cache.
    public func reset() throws {
        try withLock { try check(mlxrun_session_reset(handle)) }
    }

    /// Messages in the conversation (user, assistant and others).
    public var messageCount: Int {
        withLock { mlxrun_session_message_count(handle) }
    }

    private func withLock<T>(_ body: () throws -> T) rethrows -> T {
        lock.lock()
        defer { lock.unlock() }
        return try body()
    }
}
