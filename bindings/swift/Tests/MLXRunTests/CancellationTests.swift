import XCTest
@testable import MLXRun

/// Stopping a generation: it ends within a token of the stop, and the model goes on
/// serving other calls.
final class CancellationTests: XCTestCase {
    let prompt = "The capital of France is"

    /// Generated tokens of the model's last call, once its queue is idle.
    private func generatedAfterIdle(_ m: Model) async throws -> Int {
        await waitUntilIdle(m)
        return try m.metrics.generatedTokens
    }

    /// Task.cancel() on the reading task ends the stream (without an error) and stops the
    /// library within a token of the last one read.
    func testTaskCancelStopsWithinAToken() async throws {
        let m = try model("qwen3")
        let options = longRun(m, promptTokens: 8)
        let gotThree = expectation(description: "three tokens read")
        let reader = Task { () -> Int in
            var n = 0
            for try await t in m.generate(prompt, options: options) where t.id >= 0 {
                n += 1
                if n == 3 { gotThree.fulfill() }
            }
            return n
        }
        await fulfillment(of: [gotThree], timeout: 60)
        let started = Date()
        reader.cancel()
        let read = try await reader.value
        let generated = try await generatedAfterIdle(m)
        XCTAssertLessThan(Date().timeIntervalSince(started), 10, "the generation did not stop soon")
        XCTAssertGreaterThanOrEqual(read, 3)
        XCTAssertLessThanOrEqual(generated, read + 1, "the library went on after the cancel")
        XCTAssertLessThan(generated, options.maxTokens)
    }

    /// Breaking out of the loop stops generation before the next token.
    func testBreakStopsWithinAToken() async throws {
        let m = try model("qwen3")
        let options = longRun(m, promptTokens: 8)
        var read = 0
        for try await t in m.generate(prompt, options: options) where t.id >= 0 {
            read += 1
            if read == 4 { break }
        }
        let generated = try await generatedAfterIdle(m)
        XCTAssertEqual(read, 4)
        XCTAssertLessThanOrEqual(generated, read + 1, "the library went on after the break")
        // The model serves the next call normally.
        let ref = try reference("generate-qwen3.json", as: GenerateReference.self)
        let again = try await collect(m.generate(ref.prompt, options: GenerateOptions(maxTokens: ref.max_tokens)))
        XCTAssertEqual(again.ids, ref.result.tokens)
    }

    /// A stream that is released without being read stops its generation, which had
    /// prefilled the prompt and was waiting for the first read.
    func testDroppedStreamStops() async throws {
        let m = try model("qwen3")
        let longPrompt = String(repeating: "word ", count: 40)
        let promptTokens = try m.tokenize(longPrompt).count
        do {
            let unread = m.generate(longPrompt, options: longRun(m, promptTokens: promptTokens))
            try await Task.sleep(nanoseconds: 300_000_000)
            _ = unread
        }
        await waitUntilIdle(m)
        let metrics = try m.metrics
        XCTAssertEqual(metrics.promptTokens, promptTokens, "the generation did not run")
        XCTAssertLessThanOrEqual(metrics.generatedTokens, 1)
    }

    /// A cancel that lands during a long prefill (no token callback runs there) stops it
    /// through mlxrun_cancel: the call ends before generating anything.
    func testCancelDuringPrefill() async throws {
        let m = try model("qwen3")
        // A prompt of several thousand tokens, prefilled in small chunks.
        let long = String(repeating: "Paris is the capital of France. ", count: 500)
        var options = GenerateOptions(maxTokens: 8)
        options.prefillStepSize = 64
        let reader = Task { try await collect(m.generate(long, options: options)) }
        try await Task.sleep(nanoseconds: 200_000_000)
        reader.cancel()
        let got = try await reader.value
        await waitUntilIdle(m)
        XCTAssertNil(got.finish, "a cancelled stream has no closing element")
        XCTAssertTrue(got.ids.isEmpty, "tokens came after the cancel")
        let metrics = try m.metrics
        XCTAssertEqual(metrics.promptTokens, try m.tokenize(long).count, "the cancelled call did not run")
        XCTAssertEqual(metrics.generatedTokens, 0, "the prefill was not interrupted")
        XCTAssertLessThan(metrics.prefillSeconds, 5)
    }

    /// A generation cancelled while it waits behind another never runs, and does not
    /// disturb the one running.
    func testCancelWhileQueued() async throws {
        let m = try model("qwen3")
        let ref = try reference("generate-qwen3.json", as: GenerateReference.self)
        let first = m.generate(ref.prompt, options: GenerateOptions(maxTokens: ref.max_tokens))
        let queued = Task { try await collect(m.generate(prompt, options: longRun(m, promptTokens: 8))) }
        queued.cancel()
        let a = try await collect(first)
        XCTAssertEqual(a.ids, ref.result.tokens)
        let b = try await queued.value
        XCTAssertTrue(b.ids.isEmpty)
        await waitUntilIdle(m)
        XCTAssertEqual(try m.metrics.generatedTokens, ref.result.tokens.count, "the cancelled call ran")
    }
}
