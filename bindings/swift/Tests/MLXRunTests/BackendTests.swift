import XCTest
@testable import MLXRun

/// The backends: listed with their availability, and the mlx_lm backend (mlx-lm in a
/// Python worker) giving the native backend's tokens.
final class BackendTests: XCTestCase {
    func testBackendsAreListedWithTheirAvailability() throws {
        XCTAssertEqual(Backends.names, ["native", "mlx_lm"])
        let native = try Backends.status(of: "native")
        XCTAssertTrue(native.available)
        XCTAssertNil(native.reason)
        let missing = try Backends.status(of: "mlx_lm", python: "/nonexistent/python3")
        XCTAssertFalse(missing.available)
        XCTAssertTrue(missing.reason?.contains("/nonexistent/python3") ?? false, "\(missing)")
        XCTAssertThrowsError(try Backends.status(of: "onnx")) { e in
            XCTAssertEqual((e as? MLXRunError)?.status, MLXRunError.invalidArgument("").status)
            XCTAssertTrue((e as? MLXRunError)?.message.contains("unknown backend") ?? false, "\(e)")
        }
    }

    func testAMissingPythonFailsTheLoadWithABackendError() async throws {
        let path = try fixture("qwen3")
        await assertMLXRunError(MLXRunError.backend, ["/nonexistent/python3", "cannot start"]) {
            _ = try Model(path: path, options: LoadOptions(backend: "mlx_lm", python: "/nonexistent/python3"))
        }
    }

    func testTheMLXLMBackendGivesNativeTokens() async throws {
        let venv = try environment("MLXRUN_SWIFT_VENV")
        XCTAssertTrue(try Backends.status(of: "mlx_lm", venv: venv).available)
        let native = try model("qwen3")
        let remote = try Model(path: try fixture("qwen3"), options: LoadOptions(backend: "mlx_lm", venv: venv))
        XCTAssertEqual(remote.backend, "mlx_lm")
        XCTAssertEqual(native.backend, "native")
        XCTAssertEqual(remote.info.numLayers, native.info.numLayers)
        var options = GenerateOptions()
        options.maxTokens = 10
        let want = try await collect(native.generate("The capital of France is", options: options))
        let got = try await collect(remote.generate("The capital of France is", options: options))
        XCTAssertEqual(got.ids, want.ids)
        XCTAssertEqual(got.text, want.text)
        let prompts = ["I love this film", "Terrible service"]
        let a = try await native.classify(prompts)
        let b = try await remote.classify(prompts)
        XCTAssertEqual(a.map(\.token), b.map(\.token))
        await assertMLXRunError(MLXRunError.unsupported, ["mlx_lm backend does not do"]) {
            _ = try remote.applyLoRA()
        }
    }
}
