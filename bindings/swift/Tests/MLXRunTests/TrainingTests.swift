import Foundation
import XCTest
@testable import MLXRun

// LoRA training through the binding, on the qwen3 fixture and the datasets in
// tests/data/lora, against mlx-lm's own training runs on them (scripts/lora_refs.py:
// mlx-lm 0.32.2, float32, CPU, a seeded initial adapter). scripts/test_swift.sh mounts
//   MLXRUN_LORA_DATA   tests/data/lora
//   MLXRUN_LORA_REFS   .deps/refs/lora (one folder per case: ref.json, init.safetensors,
//                      and mlx-lm's trained adapter/)

/// ref.json: mlx-lm's run (the fields the tests read).
struct LoRAReference: Decodable {
    struct Params: Decodable {
        let rank: Int
        let scale: Float
        let dropout: Float
        let keys: [String]
    }
    struct Step: Decodable {
        let iteration: Int
        let loss: Double
    }
    let fixture: String
    let format: String
    let mask_prompt: Bool
    let lora: Params
    let num_layers: Int
    let learning_rate: Double
    let steps: Int
    let train: [Step]
    let val: [Step]
    let prompt_tokens: [Int32]
    let greedy_with_adapter: [Int32]
}

/// A LoRA dataset folder of tests/data/lora ("completions", "text", "chat").
func loraData(_ format: String) throws -> String {
    try environment("MLXRUN_LORA_DATA") + "/" + format
}

/// A case of mlx-lm's runs: its folder and ref.json.
func loraReference(_ name: String) throws -> (dir: String, ref: LoRAReference) {
    let dir = try environment("MLXRUN_LORA_REFS") + "/" + name
    guard let data = FileManager.default.contents(atPath: dir + "/ref.json") else {
        XCTFail("\(dir)/ref.json is missing: run scripts/setup.sh")
        throw MLXRunError.io("no reference \(dir)")
    }
    return (dir, try JSONDecoder().decode(LoRAReference.self, from: data))
}

/// A temporary folder, removed with the object.
final class Scratch {
    let path: String
    init() throws {
        path = FileManager.default.temporaryDirectory.appendingPathComponent("mlxrun-swift-train-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }
    deinit { try? FileManager.default.removeItem(atPath: path) }

    func sub(_ name: String) -> String { path + "/" + name }

    /// Writes `text` to `name` (folders made as needed) and returns its path.
    @discardableResult
    func write(_ name: String, _ text: String) throws -> String {
        let p = sub(name)
        try FileManager.default.createDirectory(atPath: (p as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        try text.write(toFile: p, atomically: true, encoding: .utf8)
        return p
    }
}

/// Everything a training stream produced.
func collectTraining(_ stream: AsyncThrowingStream<TrainProgress, Error>) async throws -> [TrainProgress] {
    var events: [TrainProgress] = []
    for try await e in stream { events.append(e) }
    return events
}

/// The training reports among `events`.
func trainReports(_ events: [TrainProgress]) -> [TrainReport] {
    events.compactMap { if case .train(let r) = $0 { return r } else { return nil } }
}

/// Greedy ids of `tokens`' continuation.
func greedy(_ m: Model, _ tokens: [Int32], _ n: Int) async throws -> [Int32] {
    try await collect(m.generate(tokens: tokens, options: GenerateOptions(maxTokens: n))).ids
}

/// The steps of the numbered checkpoints (`0000004_adapters.safetensors`) in `dir`.
func checkpoints(_ dir: String) throws -> [Int] {
    try FileManager.default.contentsOfDirectory(atPath: dir).compactMap { f -> Int? in
        guard f.hasSuffix("_adapters.safetensors") else { return nil }
        return Int(f.prefix(while: { $0 != "_" }))
    }.sorted()
}

func assertWithin(_ what: String, _ got: Double, _ want: Double, rtol: Double,
                  file: StaticString = #filePath, line: UInt = #line) {
    XCTAssertLessThanOrEqual(abs(got - want), rtol * abs(want), "\(what): got \(got), mlx-lm \(want) (rtol \(rtol))",
                             file: file, line: line)
}

final class TrainingTests: XCTestCase {
    /// A fresh qwen3 fixture (training changes the model, so tests do not share one).
    private func freshModel() throws -> Model {
        try Model(path: fixture("qwen3"))
    }

    /// The case's initial adapter as an adapter folder (mlx-lm's config beside the seeded
    /// initial weights), made in `scratch`.
    private func initialAdapter(_ refDir: String, _ scratch: Scratch) throws -> String {
        let dir = scratch.sub("init")
        let fm = FileManager.default
        try fm.createDirectory(atPath: dir, withIntermediateDirectories: true)
        try fm.copyItem(atPath: refDir + "/adapter/adapter_config.json", toPath: dir + "/adapter_config.json")
        try fm.copyItem(atPath: refDir + "/init.safetensors", toPath: dir + "/adapters.safetensors")
        return dir
    }

    /// mlx-lm's training settings of tests/train.rs for a reference run.
    private func referenceOptions(_ r: LoRAReference, adapterPath: String?) -> TrainOptions {
        TrainOptions(iters: r.steps, batchSize: 4, learningRate: Float(r.learning_rate), optimizer: .adam,
                     stepsPerReport: 1, stepsPerEval: r.steps, valBatches: nil, saveEvery: 0,
                     maskPrompt: r.mask_prompt, adapterPath: adapterPath)
    }

    /// From mlx-lm's initial adapter, 20 steps of Adam on the prompt/completion data with
    /// the prompt masked give mlx-lm's loss at every step and its two validation losses
    /// (within 1e-4 relative), reported in order; the loss falls. mlx-lm's trained adapter
    /// then loads and gives mlx-lm's greedy tokens.
    func testTwentyStepsGiveMLXLMLosses() async throws {
        let (refDir, r) = try loraReference("completions-masked")
        let scratch = try Scratch()
        let m = try freshModel()
        try m.loadAdapter(from: initialAdapter(refDir, scratch))
        let out = scratch.sub("out")
        let events = try await collectTraining(m.train(data: loraData(r.format), options: referenceOptions(r, adapterPath: out)))

        // The order: validation before the first step, one report per step, validation
        // before the last step, the adapter written at the end.
        var want: [String] = ["val 0"]
        for i in 1...r.steps {
            if i == r.steps { want.append("val \(r.steps - 1)") }
            want.append("train \(i)")
        }
        want.append("saved \(r.steps)")
        let got = events.map { e -> String in
            switch e {
            case .train(let t): return "train \(t.iteration)"
            case .validation(let i, _): return "val \(i)"
            case .saved(let i, _): return "saved \(i)"
            case .warning(let w): return "warning \(w)"
            }
        }
        XCTAssertEqual(got, want)

        let reports = trainReports(events)
        XCTAssertEqual(reports.count, r.train.count)
        for (t, w) in zip(reports, r.train) {
            XCTAssertEqual(t.iteration, w.iteration)
            assertWithin("step \(t.iteration) loss", t.loss, w.loss, rtol: 1e-4)
            XCTAssertEqual(t.learningRate, Double(Float(r.learning_rate)))
            XCTAssertGreaterThan(t.iterationsPerSecond, 0)
            XCTAssertGreaterThan(t.tokensPerSecond, 0)
            XCTAssertGreaterThan(t.peakMemory, 0)
        }
        XCTAssertEqual(reports.map(\.trainedTokens), reports.map(\.trainedTokens).sorted())
        XCTAssertLessThan(reports[0].trainedTokens, reports[reports.count - 1].trainedTokens)
        XCTAssertLessThan(reports[reports.count - 1].loss, reports[0].loss, "training lowers the loss")

        let vals = events.compactMap { e -> (Int, Double)? in
            if case .validation(let i, let l) = e { return (i, l) } else { return nil }
        }
        XCTAssertEqual(vals.map(\.0), r.val.map(\.iteration))
        for (v, w) in zip(vals, r.val) {
            assertWithin("validation loss after \(v.0)", v.1, w.loss, rtol: 1e-4)
        }
        if case .saved(_, let path)? = events.last {
            XCTAssertEqual(path, out + "/adapters.safetensors")
            XCTAssertTrue(FileManager.default.fileExists(atPath: path))
            XCTAssertTrue(FileManager.default.fileExists(atPath: out + "/adapter_config.json"))
        }

        // mlx-lm's trained adapter, here: mlx-lm's greedy tokens.
        try m.removeAdapter()
        try m.loadAdapter(from: refDir + "/adapter")
        let ids = try await greedy(m, r.prompt_tokens, r.greedy_with_adapter.count)
        XCTAssertEqual(ids, r.greedy_with_adapter, "greedy tokens with mlx-lm's adapter")
    }

    /// `evaluate` on the validation file with mlx-lm's initial adapter gives mlx-lm's
    /// validation loss before training.
    func testEvaluateGivesMLXLMValidationLoss() async throws {
        let (refDir, r) = try loraReference("completions-masked")
        let scratch = try Scratch()
        let m = try freshModel()
        try m.loadAdapter(from: initialAdapter(refDir, scratch))
        let file = try loraData(r.format) + "/valid.jsonl"
        let options = TrainOptions(batchSize: 4, maskPrompt: true)
        let loss = try await m.evaluate(file: file, options: options)
        assertWithin("evaluate", loss, r.val[0].loss, rtol: 1e-4)
        let first = try await m.evaluate(file: file, options: options, batches: 1)
        XCTAssertEqual(first, loss, "the file is one batch")
        // The base model's loss differs.
        try m.removeAdapter()
        let base = try await m.evaluate(file: file, options: options)
        XCTAssertTrue(base.isFinite)
        XCTAssertNotEqual(base, loss)
    }

    /// A fresh adapter counts its values and leaves the output as it was; training moves
    /// the loss down; the adapter saved, removed and loaded again (on this model, and with
    /// a new model from the training's own folder) gives the trained greedy tokens, and so
    /// does the base model with the adapter fused into it.
    func testApplyTrainSaveReloadAndFuse() async throws {
        let scratch = try Scratch()
        let m = try freshModel()
        let i = m.info
        let prompt = try loraReference("completions-masked").ref.prompt_tokens
        let before = try await greedy(m, prompt, 12)

        let config = LoRAConfig(rank: 4, alpha: 40, numLayers: 2)
        XCTAssertEqual(config.scale, 10)
        XCTAssertEqual(config.targetKeys, ["q_proj", "v_proj"])
        let n = try m.applyLoRA(config)
        let q = i.hiddenSize + i.numHeads * i.headDim
        let v = i.hiddenSize + i.numKVHeads * i.headDim
        XCTAssertEqual(n, 2 * 4 * (q + v), "trainable values: A and B of q_proj and v_proj in 2 layers")
        let fresh = try await greedy(m, prompt, 12)
        XCTAssertEqual(fresh, before, "a fresh adapter changes nothing")
        await assertMLXRunError(MLXRunError.invalidArgument, ["already has an adapter"]) {
            _ = try m.applyLoRA(config)
        }

        let out = scratch.sub("out")
        let options = TrainOptions(iters: 8, learningRate: 1e-2, stepsPerReport: 2, saveEvery: 4,
                                   maskPrompt: true, adapterPath: out)
        let events = try await collectTraining(m.train(data: loraData("completions"), options: options))
        let reports = trainReports(events)
        XCTAssertEqual(reports.map(\.iteration), [2, 4, 6, 8])
        XCTAssertLessThan(reports[3].loss, reports[0].loss, "training lowers the loss")
        let saved = events.compactMap { e -> Int? in if case .saved(let it, _) = e { return it } else { return nil } }
        XCTAssertEqual(saved, [4, 8, 8], "checkpoints at 4 and 8, then the end")
        XCTAssertEqual(try checkpoints(out), [4, 8])

        let trained = try await greedy(m, prompt, 12)
        XCTAssertNotEqual(trained, before, "training changed the output")

        let dir = scratch.sub("saved")
        try m.saveAdapter(to: dir)
        try m.removeAdapter()
        let removed = try await greedy(m, prompt, 12)
        XCTAssertEqual(removed, before, "without the adapter, the base model's output")
        try m.loadAdapter(from: dir)
        let reloaded = try await greedy(m, prompt, 12)
        XCTAssertEqual(reloaded, trained, "the saved adapter, loaded again")

        let other = try Model(path: fixture("qwen3"), options: LoadOptions(adapterPath: out))
        let fromRun = try await greedy(other, prompt, 12)
        XCTAssertEqual(fromRun, trained, "the training's own adapter folder")

        let fusedDir = scratch.sub("fused")
        let fused = try await Model.fuse(model: fixture("qwen3"), adapter: dir, output: fusedDir)
        XCTAssertEqual(fused, 4, "q_proj and v_proj of 2 layers")
        let fusedModel = try Model(path: fusedDir)
        let fromFused = try await greedy(fusedModel, prompt, 12)
        XCTAssertEqual(fromFused, trained, "the base model with the adapter fused in")
    }

    /// The seed fixes the initial adapter: the same seed, the same weights; another seed,
    /// others.
    func testSeedFixesTheInitialAdapter() throws {
        let scratch = try Scratch()
        func initial(_ seed: UInt64, _ name: String) throws -> Data? {
            let m = try freshModel()
            try m.applyLoRA(LoRAConfig(rank: 4, seed: seed))
            try m.saveAdapter(to: scratch.sub(name))
            return FileManager.default.contents(atPath: scratch.sub(name) + "/adapters.safetensors")
        }
        let a = try initial(7, "a")
        XCTAssertNotNil(a)
        XCTAssertEqual(try initial(7, "b"), a, "the same seed")
        XCTAssertNotEqual(try initial(8, "c"), a, "another seed")
    }

    /// Options for a long run that writes a checkpoint after every step.
    private func longRun(_ out: String) -> TrainOptions {
        TrainOptions(iters: 1000, learningRate: 1e-4, stepsPerReport: 1, stepsPerEval: 1000, saveEvery: 1,
                     maskPrompt: true, adapterPath: out)
    }

    /// After a run was stopped: it stopped within a step or two of `seen` (the last step
    /// its reader saw; every step writes a checkpoint after its report, so a stop that
    /// lands between the two leaves step `seen - 1`'s), and the adapter file is the last
    /// checkpoint, whole, and loads.
    private func assertStoppedSoon(_ m: Model, _ out: String, seen: Int,
                                   file: StaticString = #filePath, line: UInt = #line) async throws {
        await waitUntilIdle(m)
        let steps = try checkpoints(out)
        let last = try XCTUnwrap(steps.last, "no checkpoint", file: file, line: line)
        XCTAssertGreaterThanOrEqual(last, seen - 1, file: file, line: line)
        XCTAssertLessThanOrEqual(last, seen + 2, "training went on after the stop", file: file, line: line)
        let adapter = FileManager.default.contents(atPath: out + "/adapters.safetensors")
        XCTAssertNotNil(adapter, file: file, line: line)
        XCTAssertEqual(adapter, FileManager.default.contents(atPath: out + String(format: "/%07d_adapters.safetensors", last)),
                       "the adapter is the last checkpoint", file: file, line: line)
        let again = try Model(path: fixture("qwen3"), options: LoadOptions(adapterPath: out))
        let withCheckpoint = try await collect(again.generate("Hello", options: GenerateOptions(maxTokens: 2)))
        XCTAssertEqual(withCheckpoint.ids.count, 2, file: file, line: line)
        // The model serves its next call.
        let next = try await collect(m.generate("Hello", options: GenerateOptions(maxTokens: 2)))
        XCTAssertEqual(next.ids.count, 2, file: file, line: line)
    }

    /// Task.cancel() on the task reading the stream, while it waits for the next report:
    /// the stream throws CancellationError, and training stops within a step, its last
    /// checkpoint intact.
    func testTaskCancelStopsTraining() async throws {
        let scratch = try Scratch()
        let m = try freshModel()
        try m.applyLoRA(LoRAConfig(rank: 4))
        let out = scratch.sub("out")
        let stream = try m.train(data: loraData("completions"), options: longRun(out))
        let gotFive = expectation(description: "five steps reported")
        gotFive.assertForOverFulfill = false
        let seen = Counter()
        let reader = Task { () -> Error? in
            // A stream that ends early ends the wait too.
            defer { gotFive.fulfill() }
            do {
                for try await e in stream {
                    if case .train(let r) = e {
                        seen.set(r.iteration)
                        if r.iteration == 5 { gotFive.fulfill() }
                    }
                }
                return nil
            } catch {
                return error
            }
        }
        await fulfillment(of: [gotFive], timeout: 300)
        let started = Date()
        reader.cancel()
        let error = await reader.value
        XCTAssertTrue(error is CancellationError, "the stream ended with \(String(describing: error))")
        await waitUntilIdle(m)
        XCTAssertLessThan(Date().timeIntervalSince(started), 30, "training did not stop soon")
        try await assertStoppedSoon(m, out, seen: seen.value)
    }

    /// A reader that cancels its own Task between two reports gets CancellationError from
    /// its next read; training stops.
    func testCancelBetweenReports() async throws {
        let scratch = try Scratch()
        let m = try freshModel()
        try m.applyLoRA(LoRAConfig(rank: 4))
        let out = scratch.sub("out")
        let stream = try m.train(data: loraData("completions"), options: longRun(out))
        let reader = Task { () -> (Int, Error?) in
            var last = 0
            do {
                for try await e in stream {
                    if case .train(let r) = e {
                        last = r.iteration
                        if r.iteration == 3 { withUnsafeCurrentTask { $0?.cancel() } }
                    }
                }
                return (last, nil)
            } catch {
                return (last, error)
            }
        }
        let (last, error) = await reader.value
        XCTAssertTrue(error is CancellationError, "the stream ended with \(String(describing: error))")
        XCTAssertGreaterThanOrEqual(last, 3)
        try await assertStoppedSoon(m, out, seen: 3)
    }

    /// Breaking out of the loop releases the stream, which stops training.
    func testBreakStopsTraining() async throws {
        let scratch = try Scratch()
        let m = try freshModel()
        try m.applyLoRA(LoRAConfig(rank: 4))
        let out = scratch.sub("out")
        for try await e in m.train(data: try loraData("completions"), options: longRun(out)) {
            if case .train(let r) = e, r.iteration == 3 { break }
        }
        try await assertStoppedSoon(m, out, seen: 3)
    }

    /// A run cancelled while it waits behind a generation never starts (it would have
    /// written its adapter config first).
    func testCancelWhileQueued() async throws {
        let scratch = try Scratch()
        let m = try freshModel()
        try m.applyLoRA(LoRAConfig(rank: 4))
        let out = scratch.sub("out")
        // Holds the model's queue until it is read.
        let generation = m.generate("Hello", options: GenerateOptions(maxTokens: 4))
        let data = try loraData("completions")
        let queued = Task { try await collectTraining(m.train(data: data, options: self.longRun(out))) }
        queued.cancel()
        _ = try await collect(generation)
        do {
            let events = try await queued.value
            XCTFail("a cancelled run ended normally, with \(events.count) reports")
        } catch {
            XCTAssertTrue(error is CancellationError, "got \(error)")
        }
        await waitUntilIdle(m)
        XCTAssertFalse(FileManager.default.fileExists(atPath: out), "the cancelled run started")
    }

    /// Bad settings, data and folders are refused with errors that name the problem, and
    /// leave the model usable.
    func testBadInputsNameTheProblem() async throws {
        let scratch = try Scratch()
        let m = try freshModel()
        let data = try loraData("completions")

        await assertMLXRunError(MLXRunError.invalidArgument, ["rank must be at least 1"]) {
            _ = try m.applyLoRA(LoRAConfig(rank: 0))
        }
        await assertMLXRunError(MLXRunError.invalidArgument, ["\"x_proj\" matches no projection", "self_attn.q_proj"]) {
            _ = try m.applyLoRA(LoRAConfig(targetKeys: ["q_proj", "x_proj"]))
        }
        await assertMLXRunError(MLXRunError.invalidArgument, ["targetKeys[0]", "comma"]) {
            _ = try m.applyLoRA(LoRAConfig(targetKeys: ["q_proj,v_proj"]))
        }
        await assertMLXRunError(MLXRunError.invalidArgument, ["no target keys"]) {
            _ = try m.applyLoRA(LoRAConfig(targetKeys: []))
        }
        await assertMLXRunError(MLXRunError.invalidArgument, ["num_layers 9", "3 layers"]) {
            _ = try m.applyLoRA(LoRAConfig(numLayers: 9))
        }
        await assertMLXRunError(MLXRunError.invalidArgument, ["numLayers", "0"]) {
            _ = try m.applyLoRA(LoRAConfig(numLayers: 0))
        }
        await assertMLXRunError(MLXRunError.invalidArgument, ["dropout"]) {
            _ = try m.applyLoRA(LoRAConfig(dropout: 1))
        }

        // No adapter yet.
        await assertMLXRunError(MLXRunError.invalidArgument, ["no adapter"]) {
            _ = try await collectTraining(m.train(data: data, options: TrainOptions(iters: 1)))
        }
        await assertMLXRunError(MLXRunError.invalidArgument, ["no adapter"]) {
            try m.saveAdapter(to: scratch.sub("none"))
        }
        await assertMLXRunError(MLXRunError.io, ["/nonexistent/adapter"]) {
            try m.loadAdapter(from: "/nonexistent/adapter")
        }
        try m.applyLoRA(LoRAConfig(rank: 2))

        // Data.
        await assertMLXRunError(MLXRunError.invalidArgument, ["/nonexistent/data", "not a folder"]) {
            _ = try await collectTraining(m.train(data: "/nonexistent/data", options: TrainOptions(iters: 1)))
        }
        let good = #"{"prompt": "a", "completion": "b"}"#
        try scratch.write("bad-json/train.jsonl", good + "\n" + #"{"prompt": "a", "completion": "b""# + "\n" + good + "\n" + good + "\n")
        await assertMLXRunError(MLXRunError.invalidArgument, ["train.jsonl:2:", "not valid JSON"]) {
            _ = try await collectTraining(m.train(data: scratch.sub("bad-json"), options: TrainOptions(iters: 1)))
        }
        try scratch.write("bad-key/train.jsonl", good + "\n" + good + "\n" + #"{"prompt": "a", "completion": "b", "id": 3}"# + "\n")
        await assertMLXRunError(MLXRunError.invalidArgument, ["train.jsonl:3:", "unknown key \"id\""]) {
            _ = try await collectTraining(m.train(data: scratch.sub("bad-key"), options: TrainOptions(iters: 1)))
        }
        try scratch.write("bad-valid/train.jsonl", String(repeating: good + "\n", count: 4))
        try scratch.write("bad-valid/valid.jsonl", good + "\n" + #"{"prompt": "a"}"# + "\n")
        await assertMLXRunError(MLXRunError.invalidArgument, ["valid.jsonl:2:", "missing field \"completion\""]) {
            _ = try await collectTraining(m.train(data: scratch.sub("bad-valid"), options: TrainOptions(iters: 1)))
        }
        try scratch.write("small/train.jsonl", good + "\n" + good + "\n")
        await assertMLXRunError(MLXRunError.invalidArgument, ["train.jsonl", "at least batch_size=4"]) {
            _ = try await collectTraining(m.train(data: scratch.sub("small"), options: TrainOptions(iters: 1)))
        }
        await assertMLXRunError(MLXRunError.invalidArgument, ["prompt masking"]) {
            _ = try await collectTraining(m.train(data: try loraData("text"), options: TrainOptions(iters: 1, maskPrompt: true)))
        }

        // Options.
        await assertMLXRunError(MLXRunError.invalidArgument, ["iters must be at least 1"]) {
            _ = try await collectTraining(m.train(data: data, options: TrainOptions(iters: 0)))
        }
        await assertMLXRunError(MLXRunError.invalidArgument, ["batchSize", "-1"]) {
            _ = try await collectTraining(m.train(data: data, options: TrainOptions(batchSize: -1)))
        }
        await assertMLXRunError(MLXRunError.invalidArgument, ["valBatches", "0"]) {
            _ = try await collectTraining(m.train(data: data, options: TrainOptions(valBatches: 0)))
        }
        await assertMLXRunError(MLXRunError.invalidArgument, ["learning rate"]) {
            _ = try await collectTraining(m.train(data: data, options: TrainOptions(iters: 1, learningRate: -1)))
        }
        await assertMLXRunError(MLXRunError.invalidArgument, ["adapterPath", "NUL"]) {
            _ = try await collectTraining(m.train(data: data, options: TrainOptions(adapterPath: "a\u{0}b")))
        }
        await assertMLXRunError(MLXRunError.invalidArgument, ["data", "NUL"]) {
            _ = try await collectTraining(m.train(data: "a\u{0}b"))
        }

        // evaluate and fuse.
        await assertMLXRunError(MLXRunError.io, ["/nonexistent/valid.jsonl"]) {
            _ = try await m.evaluate(file: "/nonexistent/valid.jsonl")
        }
        await assertMLXRunError(MLXRunError.invalidArgument, ["batches", "0"]) {
            _ = try await m.evaluate(file: data + "/valid.jsonl", batches: 0)
        }
        await assertMLXRunError(MLXRunError.io, ["/nonexistent/adapter"]) {
            _ = try await Model.fuse(model: fixture("qwen3"), adapter: "/nonexistent/adapter", output: scratch.sub("fused"))
        }

        // The model still trains.
        let events = try await collectTraining(m.train(data: data, options: TrainOptions(iters: 1, maskPrompt: true)))
        XCTAssertEqual(trainReports(events).map(\.iteration), [1])
    }

    /// The options' defaults are the library's (mlx-lm's).
    func testDefaults() {
        let o = TrainOptions()
        XCTAssertEqual(o.batchSize, 4)
        XCTAssertEqual(o.iters, 1000)
        XCTAssertEqual(o.learningRate, 1e-5)
        XCTAssertEqual(o.optimizer, .adam)
        XCTAssertEqual(o.stepsPerReport, 10)
        XCTAssertEqual(o.stepsPerEval, 200)
        XCTAssertEqual(o.saveEvery, 100)
        XCTAssertEqual(o.maxSeqLength, 2048)
        XCTAssertEqual(o.gradAccumulationSteps, 1)
        XCTAssertEqual(o.valBatches, TrainOptions.defaultValBatches)
        XCTAssertFalse(o.maskPrompt)
        XCTAssertFalse(o.gradCheckpoint)
        XCTAssertNil(o.adapterPath)
        XCTAssertNil(TrainOptions(valBatches: nil).valBatches)
        let l = LoRAConfig()
        XCTAssertEqual(l.rank, 8)
        XCTAssertEqual(l.scale, 20)
        XCTAssertEqual(l.alpha, 160)
        XCTAssertEqual(l.dropout, 0)
        XCTAssertNil(l.numLayers)
        XCTAssertEqual(l.targetKeys, ["q_proj", "v_proj"])
        XCTAssertEqual(l.seed, 0)
    }
}

/// An Int shared between a reading task and the test.
final class Counter: @unchecked Sendable {
    private let lock = NSLock()
    private var v = 0
    func set(_ x: Int) { lock.lock(); v = x; lock.unlock() }
    var value: Int { lock.lock(); defer { lock.unlock() }; return v }
}
