import XCTest
@testable import MLXRun

final class ChatTests: XCTestCase {
    /// A one-message chat is the Rust engine's first turn, token for token.
    func testChatMatchesRustEngine() async throws {
        let ref = try reference("chat-qwen3.json", as: ChatReference.self)
        let m = try model(ref.fixture)
        let turn = ref.turns[0]
        let got = try await collect(m.chat([.user(turn.message)], options: GenerateOptions(maxTokens: ref.max_tokens)))
        XCTAssertEqual(got.ids, turn.tokens)
        XCTAssertEqual(got.text, turn.reply)
        XCTAssertEqual(finishName(got.finish), turn.finish_reason)
    }

    /// The rendered prompt is the template's, and generating from it is what chat does.
    func testApplyChatTemplate() async throws {
        let m = try model("qwen3")
        let messages: [Message] = [.system("Be brief."), .user("Hello")]
        let text = try m.applyChatTemplate(messages)
        XCTAssertTrue(text.contains("Be brief."))
        XCTAssertTrue(text.contains("Hello"))
        XCTAssertTrue(text.hasSuffix("<|im_start|>assistant\n"), "no generation prompt at the end of \(text)")
        let bare = try m.applyChatTemplate(messages, template: ChatTemplateOptions(addGenerationPrompt: false))
        XCTAssertFalse(bare.hasSuffix("<|im_start|>assistant\n"))
        let viaChat = try await collect(m.chat(messages, options: GenerateOptions(maxTokens: 5)))
        let viaGenerate = try await collect(m.generate(text, options: GenerateOptions(maxTokens: 5)))
        XCTAssertEqual(viaChat.ids, viaGenerate.ids)
    }

    func testTemplateErrors() async throws {
        let m = try model("qwen3")
        await assertMLXRunError(MLXRunError.template, ["no-such-template"]) {
            _ = try m.applyChatTemplate([.user("Hi")], template: ChatTemplateOptions(templateName: "no-such-template"))
        }
        await assertMLXRunError(MLXRunError.invalidArgument, ["messages[0].content", "NUL"]) {
            _ = try await collect(m.chat([.user("a\u{0}b")]))
        }
    }

    /// A session replays the Rust engine's two-turn conversation, serving the second
    /// turn's shared prefix from its cache.
    func testSessionMatchesRustEngineAndKeepsItsCache() async throws {
        let ref = try reference("chat-qwen3.json", as: ChatReference.self)
        let m = try model(ref.fixture)
        let session = try ChatSession(model: m)
        XCTAssertEqual(session.messageCount, 0)
        for (i, turn) in ref.turns.enumerated() {
            let got = try await collect(session.send(turn.message, options: GenerateOptions(maxTokens: ref.max_tokens)))
            XCTAssertEqual(got.ids, turn.tokens, "turn \(i)")
            XCTAssertEqual(got.text, turn.reply, "turn \(i)")
            let metrics = try m.metrics
            if i > 0 {
                XCTAssertGreaterThan(metrics.cachedPromptTokens, 0, "turn \(i) recomputed the conversation")
                XCTAssertLessThan(metrics.cachedPromptTokens, metrics.promptTokens)
            }
        }
        XCTAssertEqual(session.messageCount, 2 * ref.turns.count)

        // After a reset the first turn is computed again from nothing, with the same reply.
        try session.reset()
        XCTAssertEqual(session.messageCount, 0)
        let again = try await collect(session.send(ref.turns[0].message, options: GenerateOptions(maxTokens: ref.max_tokens)))
        XCTAssertEqual(again.ids, ref.turns[0].tokens)
        XCTAssertEqual(try m.metrics.cachedPromptTokens, 0)
    }

    /// addMessage adds context without generating; a system prompt changes the reply's
    /// prompt exactly as chat() renders it.
    func testSessionAddMessage() async throws {
        let m = try model("qwen3")
        let session = try ChatSession(model: m)
        try session.addMessage(.system("Be brief."))
        XCTAssertEqual(session.messageCount, 1)
        let viaSession = try await collect(session.send("Hello", options: GenerateOptions(maxTokens: 5)))
        let viaChat = try await collect(m.chat([.system("Be brief."), .user("Hello")], options: GenerateOptions(maxTokens: 5)))
        XCTAssertEqual(viaSession.ids, viaChat.ids)
        XCTAssertEqual(session.messageCount, 3)
        await assertMLXRunError(MLXRunError.invalidArgument, ["role", "NUL"]) {
            try session.addMessage(Message(role: "us\u{0}er", content: "x"))
        }
        XCTAssertEqual(session.messageCount, 3)
    }

    /// Breaking out of a session's turn stops it; the session stays usable.
    func testSessionTurnCancelled() async throws {
        let m = try model("qwen3")
        let session = try ChatSession(model: m)
        var options = GenerateOptions(maxTokens: 500)
        options.ignoreEOS = true
        var n = 0
        for try await t in session.send("Hello", options: options) where t.id >= 0 {
            n += 1
            if n == 2 { break }
        }
        await waitUntilIdle(m)
        XCTAssertLessThanOrEqual(try m.metrics.generatedTokens, 3)
        let next = try await collect(session.send("Again", options: GenerateOptions(maxTokens: 3)))
        XCTAssertEqual(next.finish, .length)
    }
}
