import XCTest
@testable import MLXRun

/// One model shared by several tasks: every stream gets exactly its own generation.
final class ConcurrencyTests: XCTestCase {
    func testConcurrentGenerationsFromSeveralTasks() async throws {
        let ref = try reference("generate-qwen3.json", as: GenerateReference.self)
        let m = try model("qwen3")
        let session = try ChatSession(model: m)
        let chatRef = try reference("chat-qwen3.json", as: ChatReference.self)
        try await withThrowingTaskGroup(of: (String, Collected).self) { group in
            for i in 0..<4 {
                group.addTask {
                    ("generate \(i)", try await collect(m.generate(ref.prompt, options: GenerateOptions(maxTokens: ref.max_tokens))))
                }
            }
            group.addTask {
                ("session", try await collect(session.send(chatRef.turns[0].message,
                                                           options: GenerateOptions(maxTokens: chatRef.max_tokens))))
            }
            group.addTask {
                // Metadata calls from another task while generations run.
                XCTAssertEqual(try m.tokenize(ref.prompt), ref.result.prompt_tokens)
                _ = try m.metrics
                return ("tokenize", Collected())
            }
            for try await (what, got) in group {
                switch what {
                case "tokenize": break
                case "session": XCTAssertEqual(got.ids, chatRef.turns[0].tokens, what)
                default: XCTAssertEqual(got.ids, ref.result.tokens, what)
                }
            }
        }
    }

    /// Models of different fixtures generate at the same time.
    func testTwoModelsAtOnce() async throws {
        let a = try reference("generate-qwen3.json", as: GenerateReference.self)
        let b = try reference("generate-llama3.json", as: GenerateReference.self)
        let ma = try model("qwen3"), mb = try model("llama3")
        async let ra = collect(ma.generate(a.prompt, options: GenerateOptions(maxTokens: a.max_tokens)))
        async let rb = collect(mb.generate(b.prompt, options: GenerateOptions(maxTokens: b.max_tokens)))
        let (ga, gb) = try await (ra, rb)
        XCTAssertEqual(ga.ids, a.result.tokens)
        XCTAssertEqual(gb.ids, b.result.tokens)
    }

    /// Releasing the last reference to a model while its generation runs is safe: the
    /// generation keeps it alive and finishes.
    func testModelReleasedDuringGeneration() async throws {
        let ref = try reference("generate-qwen3.json", as: GenerateReference.self)
        var m: Model? = try Model(path: fixture("qwen3"))
        weak var weakModel = m
        let stream = m!.generate(ref.prompt, options: GenerateOptions(maxTokens: ref.max_tokens))
        m = nil
        let got = try await collect(stream)
        XCTAssertEqual(got.ids, ref.result.tokens)
        // Once the generation has returned, nothing holds the model any more.
        for _ in 0..<100 where weakModel != nil { try await Task.sleep(nanoseconds: 10_000_000) }
        XCTAssertNil(weakModel, "the model leaked")
    }
}
