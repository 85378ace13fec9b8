import CMLXRun
import Foundation

/// The post-RoPE keys and queries of every attention layer over a prompt, in go-inference's
/// `AttentionSnapshot` shape. Every layer gives all `seqLen` prompt positions as its
/// attention computed them (after the per-head norms and rotary embedding, before the KV
/// cache write) — also Gemma 3's sliding-window layers, whose cache keeps only the window.
public struct AttentionSnapshot: Sendable, Equatable {
    public var numLayers: Int
    /// Key/value heads (fewer than the query heads under grouped-query attention).
    public var numHeads: Int
    /// Query heads (0 when queries were not captured).
    public var numQueryHeads: Int
    /// Prompt tokens, BOS included when the tokenizer adds it.
    public var seqLen: Int
    public var headDim: Int
    /// `[layer][kv head]` → `seqLen * headDim` values, position-major.
    public var keys: [[[Float]]]
    /// `[layer][query head]` → `seqLen * headDim` values; empty when not captured.
    public var queries: [[[Float]]]
    /// The model's `model_type`.
    public var architecture: String

    public var hasQueries: Bool { !queries.isEmpty }
}

/// The prompt and parameters of an inspection, made on the caller's side and read by the
/// one queued call.
private final class InspectArgs: @unchecked Sendable {
    let arena = CArena()
    let prompt: UnsafePointer<CChar>
    let params: UnsafePointer<mlxrun_generate_params>?

    init(_ prompt: String, _ options: GenerateOptions) throws {
        self.prompt = UnsafePointer(try arena.string(prompt, "prompt"))
        params = UnsafePointer(arena.array([try options.cParams(arena)]))
    }
}

extension Model {
    /// Runs the prefill of `prompt` (encoded as `generate` encodes it; "" is an error) on
    /// fresh caches and returns every layer's keys and queries. Of `options` only
    /// `prefillStepSize` applies (the prompt goes through in chunks of that many tokens);
    /// nothing is generated and `metrics` are unchanged. Runs on the model's queue after
    /// the calls asked for before it. Cancelling the Task throws CancellationError: before
    /// the call starts it never runs; while it runs, the library stops at its next chunk.
    public func inspectAttention(_ prompt: String, options: GenerateOptions = GenerateOptions()) async throws -> AttentionSnapshot {
        let args = try InspectArgs(prompt, options)
        let call = ClassifyCall(self)
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (c: CheckedContinuation<AttentionSnapshot, Error>) in
                queue.async {
                    guard call.begin() else {
                        c.resume(throwing: CancellationError())
                        return
                    }
                    var snap: OpaquePointer?
                    let status = mlxrun_inspect_attention(self.handle, args.prompt, args.params, &snap)
                    // The message is per thread: read it before anything else can fail.
                    let result = Result { () throws -> AttentionSnapshot in
                        try check(status)
                        defer { mlxrun_attention_snapshot_free(snap) }
                        return try copySnapshot(snap)
                    }
                    if call.end() {
                        c.resume(throwing: CancellationError())
                        return
                    }
                    c.resume(with: result)
                }
            }
        } onCancel: {
            call.cancel()
        }
    }
}

/// Copies a C snapshot into Swift arrays.
private func copySnapshot(_ snap: OpaquePointer?) throws -> AttentionSnapshot {
    var info = mlxrun_attention_info()
    info.struct_size = UInt32(MemoryLayout<mlxrun_attention_info>.size)
    try check(mlxrun_attention_snapshot_get_info(snap, &info))
    let architecture = withUnsafeBytes(of: info.architecture) { raw in
        String(decoding: raw.prefix(while: { $0 != 0 }), as: UTF8.self)
    }
    typealias Getter = (OpaquePointer?, UInt32, UInt32, UnsafeMutablePointer<UnsafePointer<Float>?>?,
                        UnsafeMutablePointer<Int>?) -> mlxrun_status
    func read(_ heads: UInt32, _ get: Getter) throws -> [[[Float]]] {
        try (0..<info.num_layers).map { layer in
            try (0..<heads).map { head in
                var data: UnsafePointer<Float>?
                var n = 0
                try check(get(snap, layer, head, &data, &n))
                return Array(UnsafeBufferPointer(start: data, count: n))
            }
        }
    }
    let keys = try read(info.num_heads, mlxrun_attention_snapshot_keys)
    let queries = info.has_queries ? try read(info.num_query_heads, mlxrun_attention_snapshot_queries) : []
    return AttentionSnapshot(
        numLayers: Int(info.num_layers), numHeads: Int(info.num_heads),
        numQueryHeads: info.has_queries ? Int(info.num_query_heads) : 0, seqLen: Int(info.seq_len),
        headDim: Int(info.head_dim), keys: keys, queries: queries, architecture: architecture)
}
