import Foundation
import XCTest
@testable import MLXRun

/// Lifetime and bad inputs (docs/reliability.md). Swift has no `close()`: a `Model` is
/// freed by `deinit` once nothing holds it, and every `ChatSession` and running stream
/// holds it, so no call can reach a freed handle. Swift strings are always valid UTF-8;
/// an interior NUL is refused by the binding (ErrorTests.testNulInPath and
/// testBadGenerateOptions).
final class ReliabilityTests: XCTestCase {
    /// A session outlives the caller's last reference to its model and still works; once
    /// the session goes, the model is freed.
    func testSessionKeepsItsModelAlive() async throws {
        var m: Model? = try Model(path: fixture("qwen3"))
        weak var weakModel = m
        var s: ChatSession? = try ChatSession(model: m!)
        m = nil
        XCTAssertNotNil(weakModel, "the session holds its model")
        let reply = try await collect(s!.send("Name a colour.", options: GenerateOptions(maxTokens: 3)))
        XCTAssertEqual(reply.ids.count, 3)
        try s!.reset()
        s = nil
        for _ in 0..<100 where weakModel != nil { try await Task.sleep(nanoseconds: 10_000_000) }
        XCTAssertNil(weakModel, "the model was freed with its last session")
    }

    /// Paths that are not model folders and absurd configs: `.config` naming the path,
    /// the field and the value.
    func testBadPathsAndAbsurdConfigs() async throws {
        let fm = FileManager.default
        let dir = fm.temporaryDirectory.appendingPathComponent("mlxrun-swift-rel-\(UUID().uuidString)").path
        try fm.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? fm.removeItem(atPath: dir) }
        let file = dir + "/notes.txt"
        try "not a model".write(toFile: file, atomically: true, encoding: .utf8)
        await assertMLXRunError(MLXRunError.config, [file, "not a folder"]) { _ = try Model(path: file) }
        let dangling = dir + "/dangling"
        try fm.createSymbolicLink(atPath: dangling, withDestinationPath: dir + "/gone")
        await assertMLXRunError(MLXRunError.config, [dangling, "not a folder"]) { _ = try Model(path: dangling) }

        let src = try fixture("qwen3")
        let cfg = try String(contentsOfFile: src + "/config.json", encoding: .utf8)
        let edited = cfg.replacingOccurrences(of: "\"hidden_size\": 64", with: "\"hidden_size\": 1099511627776")
        XCTAssertNotEqual(edited, cfg)
        try fm.createDirectory(atPath: dir + "/absurd", withIntermediateDirectories: true)
        try edited.write(toFile: dir + "/absurd/config.json", atomically: true, encoding: .utf8)
        // The tokenizer is read first; the weights are never reached.
        for f in ["tokenizer.json", "tokenizer_config.json"] {
            try fm.copyItem(atPath: src + "/" + f, toPath: dir + "/absurd/" + f)
        }
        await assertMLXRunError(MLXRunError.config, ["hidden_size", "1099511627776"]) { _ = try Model(path: dir + "/absurd") }
    }

    /// The empty prompt and a bad sampler value end the stream with `.invalidArgument`;
    /// the model keeps working.
    func testEmptyPromptAndBadSampler() async throws {
        let m = try model("qwen3")
        await assertMLXRunError(MLXRunError.invalidArgument, ["no tokens"]) {
            _ = try await collect(m.generate("", options: GenerateOptions(maxTokens: 2)))
        }
        var o = GenerateOptions(maxTokens: 2)
        o.temperature = -1
        await assertMLXRunError(MLXRunError.invalidArgument, ["temperature"]) {
            _ = try await collect(m.generate("Hi", options: o))
        }
        let ok = try await collect(m.generate("Hi", options: GenerateOptions(maxTokens: 2)))
        XCTAssertEqual(ok.ids.count, 2)
    }
}
