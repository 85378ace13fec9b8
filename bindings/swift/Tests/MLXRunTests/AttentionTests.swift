import Foundation
import XCTest
@testable import MLXRun

final class AttentionTests: XCTestCase {
    /// Dimensions match the model; attention is causal, so a prompt's prefix gives the same
    /// keys and queries at its positions (up to matmul rounding across shapes).
    func testInspectAttention() async throws {
        let m = try model("qwen3")
        let info = m.info
        let long = try await m.inspectAttention("The capital of France is")
        let short = try await m.inspectAttention("The capital of France")
        let ids = try m.tokenize("The capital of France is")
        XCTAssertEqual(long.numLayers, info.numLayers)
        XCTAssertEqual(long.numHeads, info.numKVHeads)
        XCTAssertEqual(long.numQueryHeads, info.numHeads)
        XCTAssertEqual(long.headDim, info.headDim)
        XCTAssertEqual(long.seqLen, ids.count)
        XCTAssertEqual(long.architecture, info.modelType)
        XCTAssertTrue(long.hasQueries)
        XCTAssertLessThan(short.seqLen, long.seqLen)
        var worst: Float = 0, magnitude: Float = 0
        for l in 0..<long.numLayers {
            for (a, b) in zip(long.keys[l] + long.queries[l], short.keys[l] + short.queries[l]) {
                XCTAssertEqual(a.count, long.seqLen * long.headDim)
                for i in 0..<b.count {
                    worst = max(worst, abs(a[i] - b[i]))
                    magnitude = max(magnitude, abs(a[i]))
                }
            }
        }
        XCTAssertLessThan(worst, 1e-4, "prefix positions differ")
        XCTAssertGreaterThan(magnitude, 1e-2, "the keys are all near zero")
        await assertMLXRunError(MLXRunError.invalidArgument, ["empty"]) {
            _ = try await m.inspectAttention("")
        }
    }

    func testDeviceInfo() async throws {
        _ = try model("qwen3")
        let d = try DeviceInfo.current()
        XCTAssertFalse(d.name.isEmpty)
        XCTAssertGreaterThan(d.memorySize, 0)
        XCTAssertGreaterThan(d.memoryLimit, 0)
        XCTAssertGreaterThan(d.cacheLimit, 0)
        if !d.isGPU {
            XCTAssertEqual(d.kind, .cpu)
            if let meminfo = try? String(contentsOfFile: "/proc/meminfo", encoding: .utf8),
               let line = meminfo.split(separator: "\n").first(where: { $0.hasPrefix("MemTotal:") }),
               let kib = UInt64(line.split(separator: " ").dropFirst().first ?? "") {
                XCTAssertEqual(d.memorySize, kib * 1024, "the CPU's memory is MemTotal")
            }
        }
        let previous = try Memory.setCacheLimit(33 << 20)
        XCTAssertEqual(UInt64(previous), d.cacheLimit)
        XCTAssertEqual(try DeviceInfo.current().cacheLimit, 33 << 20)
        try Memory.setCacheLimit(previous)

        // GPU utilisation is reported only where it is sampled.
        let m = try model("qwen3")
        _ = try await collect(m.generate("Hello", options: GenerateOptions(maxTokens: 2)))
        let met = try m.metrics
        if !d.isGPU {
            XCTAssertNil(met.gpuUtilizationMean)
            XCTAssertNil(met.gpuUtilizationMax)
        }
    }
}
