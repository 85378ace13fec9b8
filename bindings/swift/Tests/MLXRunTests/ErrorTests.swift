import Foundation
import XCTest
@testable import MLXRun

/// Bad inputs give the right MLXRunError case, with a message that names the problem.
final class ErrorTests: XCTestCase {
    func testMissingFolder() async {
        await assertMLXRunError(MLXRunError.config, ["/nonexistent/model"]) {
            _ = try Model(path: "/nonexistent/model")
        }
    }

    /// A LoRA adapter folder that is not there fails the load, naming it.
    func testMissingAdapter() async throws {
        let path = try fixture("qwen3")
        await assertMLXRunError(MLXRunError.io, ["/nonexistent/adapter"]) {
            _ = try Model(path: path, options: LoadOptions(adapterPath: "/nonexistent/adapter"))
        }
    }

    func testNulInPath() async {
        await assertMLXRunError(MLXRunError.invalidArgument, ["model path", "NUL"]) {
            _ = try Model(path: "/tmp/a\u{0}b")
        }
    }

    /// A fixture copy without its weights, or with a broken tokenizer.
    func testDamagedFixtures() async throws {
        let src = try fixture("qwen3")
        let fm = FileManager.default
        let dir = fm.temporaryDirectory.appendingPathComponent("mlxrun-swift-\(UUID().uuidString)").path
        try fm.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? fm.removeItem(atPath: dir) }
        for f in try fm.contentsOfDirectory(atPath: src) where !f.hasSuffix(".safetensors") {
            try fm.copyItem(atPath: src + "/" + f, toPath: dir + "/" + f)
        }
        await assertMLXRunError(MLXRunError.weights, []) { _ = try Model(path: dir) }

        try fm.copyItem(atPath: src + "/model.safetensors", toPath: dir + "/model.safetensors")
        try "{ not json".write(toFile: dir + "/tokenizer.json", atomically: true, encoding: .utf8)
        await assertMLXRunError(MLXRunError.tokenizer, ["tokenizer"]) { _ = try Model(path: dir) }
    }

    func testBadLoadOptions() async throws {
        let path = try fixture("qwen3")
        await assertMLXRunError(MLXRunError.invalidArgument, ["contextLength", "-1"]) {
            _ = try Model(path: path, options: LoadOptions(contextLength: -1))
        }
    }

    /// Bad generation options end the stream with the error before anything runs.
    func testBadGenerateOptions() async throws {
        let m = try model("qwen3")
        await assertMLXRunError(MLXRunError.invalidArgument, ["maxTokens", "-5"]) {
            _ = try await collect(m.generate("Hi", options: GenerateOptions(maxTokens: -5)))
        }
        var o = GenerateOptions(maxTokens: 4)
        o.topP = 1.5
        await assertMLXRunError(MLXRunError.invalidArgument, ["top_p"]) {
            _ = try await collect(m.generate("Hi", options: o))
        }
        o = GenerateOptions(maxTokens: 4)
        o.stopStrings = ["ok", "a\u{0}b"]
        await assertMLXRunError(MLXRunError.invalidArgument, ["stopStrings[1]", "NUL"]) {
            _ = try await collect(m.generate("Hi", options: o))
        }
        await assertMLXRunError(MLXRunError.invalidArgument, ["prompt", "NUL"]) {
            _ = try await collect(m.generate("a\u{0}b"))
        }
        // The model is still fine.
        let ok = try await collect(m.generate("Hi", options: GenerateOptions(maxTokens: 2)))
        XCTAssertEqual(ok.ids.count, 2)
    }

    func testPromptLongerThanContext() async throws {
        let small = try Model(path: fixture("qwen3"), options: LoadOptions(contextLength: 8))
        XCTAssertEqual(small.info.contextLength, 8)
        await assertMLXRunError(MLXRunError.invalidArgument, ["context length"]) {
            _ = try await collect(small.generate(String(repeating: "word ", count: 50)))
        }
    }

    func testErrorDescription() {
        let e = MLXRunError(status: 3, message: "config.json: missing")!
        XCTAssertEqual(e, .config("config.json: missing"))
        XCTAssertEqual(e.description, "mlxrun: config error: config.json: missing")
        XCTAssertNil(MLXRunError(status: 0, message: ""))
        XCTAssertEqual(MLXRunError(status: 99, message: "x"), .internal("unknown mlxrun status 99: x"))
    }
}
