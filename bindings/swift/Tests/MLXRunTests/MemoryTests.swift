import XCTest
@testable import MLXRun

final class MemoryTests: XCTestCase {
    func testMemoryFunctions() async throws {
        let m = try model("qwen3")
        XCTAssertGreaterThan(Memory.active, 1_000_000, "the weights are not counted")
        Memory.resetPeak()
        let afterReset = Memory.peak
        XCTAssertLessThanOrEqual(afterReset, Memory.active + 1)
        _ = try await collect(m.generate("Hello there", options: GenerateOptions(maxTokens: 4)))
        XCTAssertGreaterThan(Memory.peak, afterReset, "a generation did not raise the peak")
        XCTAssertGreaterThanOrEqual(Memory.peak, Memory.active)

        Memory.clearCache()
        XCTAssertEqual(Memory.cache, 0, "clearCache left cached buffers")

        // Limits return the previous value, and setting it back returns the one set.
        let oldCache = try Memory.setCacheLimit(1 << 20)
        XCTAssertEqual(try Memory.setCacheLimit(oldCache), 1 << 20)
        let oldMemory = try Memory.setMemoryLimit(1 << 40)
        XCTAssertEqual(try Memory.setMemoryLimit(oldMemory), 1 << 40)
        let oldWired = try Memory.setWiredLimit(0)
        XCTAssertEqual(try Memory.setWiredLimit(oldWired), 0)
        await assertMLXRunError(MLXRunError.invalidArgument, ["cache limit", "-1"]) {
            try Memory.setCacheLimit(-1)
        }
    }
}
