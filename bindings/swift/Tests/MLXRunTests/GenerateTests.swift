import XCTest
@testable import MLXRun

final class GenerateTests: XCTestCase {
    /// Greedy output is the Rust engine's, token for token, on each fixture family.
    func testGreedyMatchesRustEngine() async throws {
        for name in ["qwen3", "llama3", "gemma3"] {
            let ref = try reference("generate-\(name).json", as: GenerateReference.self)
            let m = try model(name)
            let got = try await collect(m.generate(ref.prompt, options: GenerateOptions(maxTokens: ref.max_tokens)))
            XCTAssertEqual(got.ids, ref.result.tokens, "\(name): tokens differ from the Rust engine's")
            XCTAssertEqual(got.text, ref.result.text, "\(name): text differs")
            XCTAssertEqual(finishName(got.finish), ref.result.finish_reason, "\(name): finish reason")
            let metrics = try m.metrics
            XCTAssertEqual(metrics.generatedTokens, ref.result.tokens.count)
            XCTAssertEqual(metrics.promptTokens, ref.result.prompt_tokens.count)
        }
    }

    /// The prompt is encoded as the Rust engine encoded it, and generating from those ids
    /// gives the same continuation.
    func testTokenizeDetokenizeAndTokenPrompt() async throws {
        let ref = try reference("generate-qwen3.json", as: GenerateReference.self)
        let m = try model("qwen3")
        let ids = try m.tokenize(ref.prompt)
        XCTAssertEqual(ids, ref.result.prompt_tokens)
        XCTAssertEqual(try m.detokenize(ids), ref.prompt)
        XCTAssertEqual(try m.detokenize(ref.result.tokens), ref.result.text)
        XCTAssertEqual(try m.detokenize([]), "")
        let got = try await collect(m.generate(tokens: ids, options: GenerateOptions(maxTokens: ref.max_tokens)))
        XCTAssertEqual(got.ids, ref.result.tokens)
        // A long text needs more than the first buffer the binding tries.
        let long = String(repeating: "Paris is the capital of France. ", count: 200)
        let longIDs = try m.tokenize(long, addSpecialTokens: false)
        XCTAssertGreaterThan(longIDs.count, 1000)
        XCTAssertEqual(try m.detokenize(longIDs), long)
    }

    /// Tokens arrive one element at a time while the model decodes, each with its
    /// log-probability when asked for, and the stream ends with the finish reason.
    func testStreaming() async throws {
        let m = try model("qwen3")
        var options = GenerateOptions(maxTokens: 10)
        options.logprobs = true
        options.ignoreEOS = true
        var tokens: [Token] = []
        for try await t in m.generate("Once upon a time", options: options) {
            tokens.append(t)
        }
        XCTAssertEqual(tokens.count, 11, "10 tokens and the closing element")
        XCTAssertEqual(tokens.last?.finishReason, .length)
        XCTAssertEqual(tokens.last?.id, -1)
        for t in tokens.dropLast() {
            XCTAssertGreaterThanOrEqual(t.id, 0)
            XCTAssertNil(t.finishReason)
            let lp = try XCTUnwrap(t.logprob, "no log-probability")
            XCTAssertLessThanOrEqual(lp, 0)
        }
        // Without logprobs, none.
        let plain = try await collect(m.generate("Once upon a time", options: GenerateOptions(maxTokens: 3)))
        XCTAssertEqual(plain.ids.count, 3)
        // Metrics describe this call.
        XCTAssertEqual(try m.metrics.generatedTokens, 3)
    }

    /// Stop strings end the text before them; the finish reason says so.
    func testStopString() async throws {
        let ref = try reference("generate-qwen3.json", as: GenerateReference.self)
        let m = try model("qwen3")
        // A stop string taken from the reference's own text: the text ends before it.
        let text = ref.result.text
        let cut = text.index(text.startIndex, offsetBy: max(1, text.count / 2))
        let stop = String(text[cut...].prefix(3))
        var options = GenerateOptions(maxTokens: ref.max_tokens)
        options.stopStrings = [stop]
        let got = try await collect(m.generate(ref.prompt, options: options))
        XCTAssertEqual(got.finish, .stopString)
        XCTAssertTrue(text.hasPrefix(got.text), "\(got.text) is not a prefix of \(text)")
        XCTAssertFalse(got.text.contains(stop))
    }

    func testInfoAndVersion() throws {
        let m = try model("qwen3")
        XCTAssertEqual(m.info.modelType, "qwen3")
        XCTAssertGreaterThan(m.info.vocabSize, 1000)
        XCTAssertGreaterThan(m.info.numLayers, 0)
        XCTAssertEqual(m.info.dtype, .float32, "the CPU computes in float32")
        XCTAssertFalse(Model.libraryVersion.isEmpty)
    }
}
