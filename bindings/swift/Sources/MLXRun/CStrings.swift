import CMLXRun
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// C copies of Swift strings (and arrays) that live as long as this object: the C calls
/// borrow their strings for the whole call, which may run on another thread than the one
/// that prepared it.
final class CArena {
    private var blocks: [UnsafeMutableRawPointer] = []

    /// A NUL-terminated copy of `s`. `what` names the argument in the error for a string
    /// with a NUL byte inside (C would silently cut it there).
    func string(_ s: String, _ what: String) throws -> UnsafeMutablePointer<CChar> {
        let utf8 = Array(s.utf8)
        if let i = utf8.firstIndex(of: 0) {
            throw MLXRunError.invalidArgument("\(what) contains a NUL byte at UTF-8 offset \(i)")
        }
        let p = allocate(CChar.self, count: utf8.count + 1)
        utf8.withUnsafeBytes { raw in
            UnsafeMutableRawPointer(p).copyMemory(from: raw.baseAddress!, byteCount: raw.count)
        }
        p[utf8.count] = 0
        return p
    }

    /// `string` for an optional: nil stays NULL.
    func optionalString(_ s: String?, _ what: String) throws -> UnsafeMutablePointer<CChar>? {
        guard let s else { return nil }
        return try string(s, what)
    }

    /// A C array holding `values` (NULL when empty, as the C API allows with a count of 0).
    func array<T>(_ values: [T]) -> UnsafeMutablePointer<T>? {
        if values.isEmpty { return nil }
        let p = allocate(T.self, count: values.count)
        p.initialize(from: values, count: values.count)
        return p
    }

    private func allocate<T>(_: T.Type, count: Int) -> UnsafeMutablePointer<T> {
        let raw = UnsafeMutableRawPointer.allocate(
            byteCount: max(1, count * MemoryLayout<T>.stride), alignment: MemoryLayout<T>.alignment)
        blocks.append(raw)
        return raw.bindMemory(to: T.self, capacity: max(1, count))
    }

    deinit {
        // Only trivial types (C strings, pointers, integers) are stored: no deinitialize.
        for b in blocks { b.deallocate() }
    }
}

/// Reads text through a C call that follows the "needed size" idiom (`mlxrun_detokenize`,
/// `mlxrun_apply_chat_template`): try a buffer, and when the call answers
/// MLXRUN_ERR_BUFFER_TOO_SMALL with the size it needs, call again with that much.
func neededSizeText(_ call: (UnsafeMutablePointer<CChar>?, Int, UnsafeMutablePointer<Int>) -> mlxrun_status) throws -> String {
    var capacity = 1024
    while true {
        var buf = [CChar](repeating: 0, count: capacity)
        var needed = 0
        let status = buf.withUnsafeMutableBufferPointer { call($0.baseAddress, capacity, &needed) }
        if status == MLXRUN_ERR_BUFFER_TOO_SMALL && needed > capacity {
            capacity = needed
            continue
        }
        try check(status)
        // needed counts the NUL; the text may itself hold none.
        let length = max(0, min(needed, capacity) - 1)
        return buf.withUnsafeBufferPointer { p in
            p.baseAddress!.withMemoryRebound(to: UInt8.self, capacity: length) {
                String(decoding: UnsafeBufferPointer(start: $0, count: length), as: UTF8.self)
            }
        }
    }
}

/// `value` as a C unsigned 32-bit field; `name` names the option in the error.
func uint32Field(_ value: Int, _ name: String) throws -> UInt32 {
    guard let v = UInt32(exactly: value) else {
        throw MLXRunError.invalidArgument("\(name) must be in 0...\(UInt32.max), got \(value)")
    }
    return v
}

/// `value` as a C signed 32-bit field; `name` names the option in the error.
func int32Field(_ value: Int, _ name: String) throws -> Int32 {
    guard let v = Int32(exactly: value) else {
        throw MLXRunError.invalidArgument("\(name) must be in \(Int32.min)...\(Int32.max), got \(value)")
    }
    return v
}
