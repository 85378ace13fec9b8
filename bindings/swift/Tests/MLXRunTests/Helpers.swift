import Foundation
import XCTest
@testable import MLXRun

// The tests run on the repository's fixture models (random weights, real tokenizers and
// chat templates) and compare with the Rust engine's outputs, which scripts/test_swift.sh
// writes with the mlxrun program before it runs them:
//   MLXRUN_FIXTURES    the fixtures folder (.deps/fixtures)
//   MLXRUN_SWIFT_REFS  the Rust engine's outputs (generate-NAME.json, chat-qwen3.json,
//                      batch-qwen3.json)

/// The value of a variable the test script sets.
func environment(_ name: String) throws -> String {
    guard let v = ProcessInfo.processInfo.environment[name], !v.isEmpty else {
        throw XCTSkip("\(name) is not set: run the tests through scripts/test_swift.sh")
    }
    return v
}

/// The folder of a fixture model.
func fixture(_ name: String) throws -> String {
    let path = try environment("MLXRUN_FIXTURES") + "/" + name
    guard FileManager.default.fileExists(atPath: path + "/config.json") else {
        XCTFail("fixture \(path) is missing: run scripts/setup.sh")
        throw MLXRunError.io("no fixture \(path)")
    }
    return path
}

/// Models are loaded once per fixture and shared by the tests (as an app shares one).
private let modelCache = NSCache<NSString, Model>()
private let modelLock = NSLock()

func model(_ name: String) throws -> Model {
    modelLock.lock()
    defer { modelLock.unlock() }
    if let m = modelCache.object(forKey: name as NSString) { return m }
    let m = try Model(path: fixture(name))
    modelCache.setObject(m, forKey: name as NSString)
    return m
}

/// What `mlxrun generate --json` printed.
struct RustGeneration: Decodable {
    let text: String
    let prompt_tokens: [Int32]
    let tokens: [Int32]
    let finish_reason: String
}

/// generate-NAME.json: the call's arguments and the Rust engine's result.
struct GenerateReference: Decodable {
    let fixture: String
    let prompt: String
    let max_tokens: Int
    let result: RustGeneration
}

/// One turn of `mlxrun chat --message ... --json`.
struct RustChatTurn: Decodable {
    let message: String
    let reply: String
    let tokens: [Int32]
    let finish_reason: String
}

/// chat-qwen3.json: a conversation through one session.
struct ChatReference: Decodable {
    let fixture: String
    let max_tokens: Int
    let turns: [RustChatTurn]
}

func reference<T: Decodable>(_ file: String, as: T.Type) throws -> T {
    let path = try environment("MLXRUN_SWIFT_REFS") + "/" + file
    guard let data = FileManager.default.contents(atPath: path) else {
        XCTFail("reference \(path) is missing: scripts/test_swift.sh writes it")
        throw MLXRunError.io("no reference \(path)")
    }
    return try JSONDecoder().decode(T.self, from: data)
}

/// The CLI's finish_reason names.
func finishName(_ r: FinishReason?) -> String {
    switch r {
    case .stop?: return "stop"
    case .stopString?: return "stop_string"
    case .length?: return "length"
    case .stopped?: return "callback"
    case .cancelled?: return "cancelled"
    case nil: return "none"
    }
}

/// Everything a stream produced.
struct Collected {
    var ids: [Int32] = []
    var text = ""
    var elements = 0
    var finish: FinishReason?
}

func collect(_ stream: AsyncThrowingStream<Token, Error>) async throws -> Collected {
    var c = Collected()
    for try await t in stream {
        c.elements += 1
        XCTAssertNil(c.finish, "an element came after the one with the finish reason")
        if t.id >= 0 { c.ids.append(t.id) }
        c.text += t.text
        if let f = t.finishReason { c.finish = f }
    }
    return c
}

/// Checks that `body` throws the MLXRunError case `expected` (compared by status) whose
/// message mentions each needle.
func assertMLXRunError(_ expected: (String) -> MLXRunError, _ needles: [String],
                       file: StaticString = #filePath, line: UInt = #line, _ body: () async throws -> Void) async {
    do {
        try await body()
        XCTFail("no error; want \(expected(""))", file: file, line: line)
    } catch let e as MLXRunError {
        XCTAssertEqual(e.status, expected("").status, "error \(e) has the wrong case", file: file, line: line)
        for n in needles {
            XCTAssertTrue(e.message.contains(n), "error message \"\(e.message)\" does not mention \"\(n)\"", file: file, line: line)
        }
    } catch {
        XCTFail("error \(error) is not an MLXRunError", file: file, line: line)
    }
}

/// Waits until the model's queued generations have returned.
func waitUntilIdle(_ m: Model) async {
    await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
        m.queue.async { c.resume() }
    }
}

/// Options for a run long enough to be interrupted: it stops only at maxTokens.
func longRun(_ m: Model, promptTokens: Int) -> GenerateOptions {
    var o = GenerateOptions(maxTokens: min(2000, m.info.contextLength > 0 ? m.info.contextLength - promptTokens - 1 : 2000))
    o.ignoreEOS = true
    return o
}
