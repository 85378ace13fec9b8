import XCTest
@testable import MLXRun

/// One prompt of batch-qwen3.json, generated alone by the Rust engine.
struct BatchReferenceRow: Decodable {
    let prompt: String
    let result: RustGeneration
}

/// batch-qwen3.json: `mlxrun generate --json` of each batch prompt, with max_tokens.
struct BatchReference: Decodable {
    let fixture: String
    let max_tokens: Int
    let rows: [BatchReferenceRow]
}

/// classify and batchGenerate against the Rust engine's greedy single-prompt generation
/// of the same prompts (scripts/test_swift.sh writes it with the mlxrun program).
final class BatchTests: XCTestCase {
    private func batchReference() throws -> BatchReference {
        try reference("batch-qwen3.json", as: BatchReference.self)
    }

    /// Each prompt's classification is the first token of its greedy generation; its
    /// logits are the whole vocabulary and the token is their argmax; an empty prompt
    /// fails alone.
    func testClassifyMatchesGenerate() async throws {
        let ref = try batchReference()
        let m = try model(ref.fixture)
        var options = GenerateOptions()
        options.logprobs = true
        let prompts = ref.rows.map(\.prompt)
        // The empty prompt sits between others, so that it is left out of a batch.
        let results = try await m.classify(Array(prompts[..<2]) + [""] + Array(prompts[2...]), options: options,
                                           batch: BatchOptions(maxBatchSize: 2, returnLogits: true))
        XCTAssertEqual(results.count, prompts.count + 1)
        let bad = results[2]
        XCTAssertNil(bad.token)
        XCTAssertNil(bad.logits)
        XCTAssertEqual(bad.error?.status, MLXRunError.invalidArgument("").status)
        XCTAssertFalse(bad.error?.message.isEmpty ?? true)
        let good = Array(results[..<2]) + Array(results[3...])
        for (i, (row, r)) in zip(ref.rows, good).enumerated() {
            XCTAssertNil(r.error, "prompt \(i)")
            XCTAssertEqual(r.token, try XCTUnwrap(row.result.tokens.first), "prompt \(i)")
            XCTAssertEqual(r.promptTokens, row.result.prompt_tokens.count, "prompt \(i)")
            let logits = try XCTUnwrap(r.logits)
            XCTAssertEqual(logits.count, m.info.vocabSize)
            let argmax = logits.indices.max(by: { logits[$0] < logits[$1] })!
            XCTAssertEqual(Int32(argmax), r.token, "prompt \(i): the token is not the logits' argmax")
            XCTAssertLessThanOrEqual(try XCTUnwrap(r.logprob), 0)
        }
        // Without returnLogits (the default), none.
        let plain = try await m.classify([prompts[0]])
        XCTAssertNil(plain[0].logits)
        XCTAssertNil(plain[0].logprob)
        XCTAssertEqual(plain[0].token, ref.rows[0].result.tokens.first)
    }

    func testClassifyBadArguments() async throws {
        let m = try model("qwen3")
        await assertMLXRunError(MLXRunError.invalidArgument, ["prompts[1]", "NUL"]) {
            _ = try await m.classify(["ok", "a\u{0}b"])
        }
        await assertMLXRunError(MLXRunError.invalidArgument, ["maxBatchSize", "-1"]) {
            _ = try await m.classify(["ok"], batch: BatchOptions(maxBatchSize: -1))
        }
        await assertMLXRunError(MLXRunError.invalidArgument, ["no prompts"]) {
            _ = try await m.classify([])
        }
        await assertMLXRunError(MLXRunError.invalidArgument, ["no prompts"]) {
            for try await _ in m.batchGenerate([]) {}
        }
    }

    /// Cancelling the Task awaiting a classify interrupts the library's prefill (through
    /// mlxrun_cancel): it throws CancellationError, and the model serves the next call.
    func testClassifyCancelled() async throws {
        let ref = try batchReference()
        let m = try model(ref.fixture)
        let long = String(repeating: "Paris is the capital of France. ", count: 500)
        var options = GenerateOptions()
        options.prefillStepSize = 64
        let task = Task { try await m.classify([long], options: options) }
        try await Task.sleep(nanoseconds: 200_000_000)
        task.cancel()
        do {
            _ = try await task.value
            XCTFail("the classify was not interrupted")
        } catch is CancellationError {}
        await waitUntilIdle(m)
        XCTAssertLessThan(try m.metrics.prefillSeconds, 5)
        let again = try await m.classify([ref.rows[0].prompt])
        XCTAssertEqual(again[0].token, ref.rows[0].result.tokens.first)
    }

    /// A classify cancelled while it waits behind a generation never runs.
    func testClassifyCancelledWhileQueued() async throws {
        let ref = try batchReference()
        let m = try model(ref.fixture)
        let first = m.generate(ref.rows[0].prompt, options: GenerateOptions(maxTokens: ref.max_tokens))
        let queued = Task { try await m.classify([ref.rows[1].prompt]) }
        queued.cancel()
        let a = try await collect(first)
        XCTAssertEqual(a.ids, ref.rows[0].result.tokens)
        do {
            _ = try await queued.value
            XCTFail("the cancelled classify ran")
        } catch is CancellationError {}
        await waitUntilIdle(m)
        XCTAssertEqual(try m.metrics.generatedTokens, ref.rows[0].result.tokens.count, "the cancelled classify ran")
    }

    /// Rows, their tokens and their ends, read from a batch generation.
    private struct Batch {
        var rows: [[Int32]]
        var finished: [Int: BatchRowResult] = [:]
        init(_ n: Int) { rows = Array(repeating: [], count: n) }

        mutating func add(_ event: BatchEvent) {
            switch event {
            case .token(let i, let t):
                XCTAssertNil(finished[i], "a token of row \(i) after its end")
                if t.id >= 0 { rows[i].append(t.id) }
            case .finished(let i, let r):
                XCTAssertNil(finished[i], "row \(i) ended twice")
                finished[i] = r
            }
        }
    }

    /// Every row of a batch generation is that prompt generated alone by the Rust engine
    /// (and by `generate`); rows are reported once each, after their tokens.
    func testBatchGenerateMatchesGenerate() async throws {
        let ref = try batchReference()
        let m = try model(ref.fixture)
        let options = GenerateOptions(maxTokens: ref.max_tokens)
        var got = Batch(ref.rows.count)
        for try await event in m.batchGenerate(ref.rows.map(\.prompt), options: options, batch: BatchOptions(maxBatchSize: 3)) {
            got.add(event)
        }
        XCTAssertEqual(got.finished.count, ref.rows.count)
        for (i, row) in ref.rows.enumerated() {
            XCTAssertEqual(got.rows[i], row.result.tokens, "row \(i)")
            XCTAssertEqual(finishName(got.finished[i]?.finishReason), row.result.finish_reason, "row \(i)")
            XCTAssertEqual(got.finished[i]?.generatedTokens, row.result.tokens.count, "row \(i)")
            XCTAssertEqual(got.finished[i]?.promptTokens, row.result.prompt_tokens.count, "row \(i)")
            XCTAssertNil(got.finished[i]?.error)
            let alone = try await collect(m.generate(row.prompt, options: options))
            XCTAssertEqual(got.rows[i], alone.ids, "row \(i)")
        }
    }

    /// An empty prompt fails alone; the other rows are generated as usual.
    func testBatchGenerateRowError() async throws {
        let ref = try batchReference()
        let m = try model(ref.fixture)
        var got = Batch(2)
        for try await event in m.batchGenerate([ref.rows[0].prompt, ""], options: GenerateOptions(maxTokens: ref.max_tokens)) {
            got.add(event)
        }
        XCTAssertEqual(got.rows[0], ref.rows[0].result.tokens)
        XCTAssertNil(got.finished[0]?.error)
        XCTAssertEqual(got.rows[1], [])
        XCTAssertNil(got.finished[1]?.finishReason)
        XCTAssertEqual(got.finished[1]?.error?.status, MLXRunError.invalidArgument("").status)
    }

    /// stop(row:) ends that row after the tokens read so far (`.stopped`); the others go
    /// on to their full output.
    func testStopOneRow() async throws {
        let ref = try batchReference()
        let m = try model(ref.fixture)
        let stopped = 1, keep = 2
        XCTAssertGreaterThan(ref.rows[stopped].result.tokens.count, keep, "the reference row is too short")
        let gen = m.batchGenerate(ref.rows.map(\.prompt), options: GenerateOptions(maxTokens: ref.max_tokens))
        var got = Batch(ref.rows.count)
        for try await event in gen {
            got.add(event)
            if case .token(stopped, let t) = event, t.id >= 0, got.rows[stopped].count == keep {
                gen.stop(row: stopped)
            }
        }
        XCTAssertEqual(got.rows[stopped], Array(ref.rows[stopped].result.tokens.prefix(keep)))
        XCTAssertEqual(got.finished[stopped]?.finishReason, .stopped)
        XCTAssertLessThanOrEqual(try XCTUnwrap(got.finished[stopped]?.generatedTokens), keep + 1)
        for (i, row) in ref.rows.enumerated() where i != stopped {
            XCTAssertEqual(got.rows[i], row.result.tokens, "row \(i)")
            XCTAssertEqual(finishName(got.finished[i]?.finishReason), row.result.finish_reason, "row \(i)")
        }
    }

    /// Generated tokens of the model's last call, once its queue is idle.
    private func generatedAfterIdle(_ m: Model) async throws -> Int {
        await waitUntilIdle(m)
        return try m.metrics.generatedTokens
    }

    /// Breaking out of a batch generation stops every row within a token, and the model
    /// serves the next call.
    func testBreakStopsEveryRow() async throws {
        let ref = try batchReference()
        let m = try model(ref.fixture)
        var seen = 0
        for try await event in m.batchGenerate(ref.rows.map(\.prompt), options: longRun(m, promptTokens: 16)) {
            if case .token = event { seen += 1 }
            if seen == 5 { break }
        }
        let generated = try await generatedAfterIdle(m)
        XCTAssertLessThanOrEqual(generated, seen + ref.rows.count, "the rows went on after the break")
        let after = try await collect(m.generate(ref.rows[0].prompt, options: GenerateOptions(maxTokens: ref.max_tokens)))
        XCTAssertEqual(after.ids, ref.rows[0].result.tokens)
    }

    /// Task.cancel() on the reading task ends the stream (without an error) and stops
    /// every row within a token of the last one read.
    func testTaskCancelStopsEveryRow() async throws {
        let ref = try batchReference()
        let m = try model(ref.fixture)
        let options = longRun(m, promptTokens: 16)
        let gotFive = expectation(description: "five tokens read")
        let reader = Task { () -> (Int, Int) in
            var tokens = 0, ends = 0
            for try await event in m.batchGenerate(ref.rows.map(\.prompt), options: options) {
                switch event {
                case .token: tokens += 1
                case .finished: ends += 1
                }
                if tokens == 5 { gotFive.fulfill() }
            }
            return (tokens, ends)
        }
        await fulfillment(of: [gotFive], timeout: 60)
        let started = Date()
        reader.cancel()
        let (read, ends) = try await reader.value
        let generated = try await generatedAfterIdle(m)
        XCTAssertLessThan(Date().timeIntervalSince(started), 10, "the batch did not stop soon")
        XCTAssertEqual(ends, 0, "a cancelled stream has no closing events")
        XCTAssertLessThanOrEqual(generated, read + ref.rows.count, "the library went on after the cancel")
    }
}
