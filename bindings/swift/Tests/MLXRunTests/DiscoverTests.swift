import Foundation
import XCTest
@testable import MLXRun

/// Model discovery over a folder of links to the fixtures, a broken copy and a link loop.
final class DiscoverTests: XCTestCase {
    /// A fresh temporary folder, removed after the test.
    private func scratch() throws -> String {
        let fm = FileManager.default
        let dir = fm.temporaryDirectory.appendingPathComponent("mlxrun-discover-\(UUID().uuidString)").path
        try fm.createDirectory(atPath: dir, withIntermediateDirectories: true)
        addTeardownBlock { try? fm.removeItem(atPath: dir) }
        return dir
    }

    /// `dst` as a folder of links to the files of `src`, leaving out `skip`.
    private func linkModel(_ src: String, _ dst: String, skip: Set<String> = []) throws {
        let fm = FileManager.default
        try fm.createDirectory(atPath: dst, withIntermediateDirectories: true)
        for f in try fm.contentsOfDirectory(atPath: src) where !skip.contains(f) {
            try fm.createSymbolicLink(atPath: dst + "/" + f, withDestinationPath: src + "/" + f)
        }
    }

    /// The Qwen3 fixture's parameter count from its config.json's sizes (tied embeddings,
    /// per-head q/k norms), computed apart from the library.
    private func qwen3Parameters(_ dir: String) throws -> Int {
        let data = try Data(contentsOf: URL(fileURLWithPath: dir + "/config.json"))
        let c = try XCTUnwrap(JSONSerialization.jsonObject(with: data) as? [String: Any])
        func n(_ k: String) throws -> Int { try XCTUnwrap(c[k] as? Int, k) }
        XCTAssertEqual(c["tie_word_embeddings"] as? Bool, true, "the formula here is for tied embeddings")
        let hidden = try n("hidden_size"), headDim = try n("head_dim")
        let heads = try n("num_attention_heads"), kvHeads = try n("num_key_value_heads")
        let inter = try n("intermediate_size"), vocab = try n("vocab_size"), layers = try n("num_hidden_layers")
        let layer = 2 * hidden * heads * headDim + 2 * hidden * kvHeads * headDim + 3 * hidden * inter + 2 * hidden + 2 * headDim
        return vocab * hidden + layers * layer + hidden
    }

    func testFindsModelsAndBrokenOnes() throws {
        let qwen3 = try fixture("qwen3")
        let base = try scratch()
        try linkModel(qwen3, base + "/org/qwen3")
        try linkModel(qwen3, base + "/broken", skip: ["model.safetensors"])
        try FileManager.default.createSymbolicLink(atPath: base + "/org/loop", withDestinationPath: base)

        let found = try discoverModels(in: base)
        XCTAssertEqual(found.map(\.path), [base + "/broken", base + "/org/qwen3"])

        let m = found[1]
        XCTAssertNil(m.error)
        XCTAssertEqual(m.format, .safetensors)
        XCTAssertEqual(m.modelType, "qwen3")
        XCTAssertEqual(m.dtype, "float32")
        XCTAssertNil(m.quantization)
        XCTAssertEqual(m.parameters, try qwen3Parameters(qwen3))
        XCTAssertEqual(m.fileCount, 1)
        XCTAssertGreaterThan(m.sizeBytes, 4 * (m.parameters ?? 0))
        XCTAssertTrue(m.hasTokenizer && m.hasChatTemplate)
        XCTAssertEqual(m.backends.first?.name, "native")
        XCTAssertTrue(m.canLoad(backend: "native"))

        let b = found[0]
        let error = try XCTUnwrap(b.error)
        XCTAssertTrue(error.contains("no *.safetensors weights") && error.contains("broken"), error)
        XCTAssertEqual(b.modelType, "qwen3")
        XCTAssertNil(b.parameters)
        XCTAssertFalse(b.backends.contains { $0.ok })

        XCTAssertEqual(try discoverModels(in: base, maxDepth: 0), [], "no model in the folder itself")
        XCTAssertEqual(try discoverModels(in: base, maxDepth: 1).map(\.path), [base + "/broken"])
    }

    func testBadFolders() async throws {
        await assertMLXRunError(MLXRunError.io, ["/nonexistent/models"]) {
            _ = try discoverModels(in: "/nonexistent/models")
        }
        let config = try fixture("qwen3") + "/config.json"
        await assertMLXRunError(MLXRunError.invalidArgument, ["not a folder"]) {
            _ = try discoverModels(in: config)
        }
        await assertMLXRunError(MLXRunError.invalidArgument, ["maxDepth"]) {
            _ = try discoverModels(in: "/tmp", maxDepth: -1)
        }
        await assertMLXRunError(MLXRunError.invalidArgument, ["dir", "NUL"]) {
            _ = try discoverModels(in: "/tmp/a\u{0}b")
        }
    }
}
