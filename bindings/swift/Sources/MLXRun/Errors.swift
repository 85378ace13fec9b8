import CMLXRun

/// An error from mlxrun: one case per `mlxrun_status` of the C library, each carrying the
/// library's message (which names the file, tensor or field at fault).
public enum MLXRunError: Error, Equatable, Sendable {
    /// A value out of range, a string with a NUL byte, a prompt too long for the context.
    case invalidArgument(String)
    /// A file or folder could not be read.
    case io(String)
    /// A model configuration is missing, malformed or unsupported (also: a missing model
    /// folder, as config.json is the first file read).
    case config(String)
    /// Weights are missing, truncated or do not match the configuration.
    case weights(String)
    /// The tokenizer files are missing or malformed, or text could not be tokenized.
    case tokenizer(String)
    /// MLX refused an operation (e.g. out of memory).
    case mlx(String)
    /// A buffer was too small (the binding sizes its buffers itself, so this is rare).
    case bufferTooSmall(String)
    /// A bug in the library; the model stays usable.
    case `internal`(String)
    /// The chat template is missing, malformed, or refused the conversation.
    case template(String)
    /// Training was cancelled.
    case cancelled(String)
    /// A backend is unavailable, or its worker process exited, hung or broke the protocol.
    case backend(String)
    /// The model's backend does not do this (the mlx_lm backend does not train, say).
    case unsupported(String)

    /// The library's message.
    public var message: String {
        switch self {
        case .invalidArgument(let m), .io(let m), .config(let m), .weights(let m), .tokenizer(let m),
             .mlx(let m), .bufferTooSmall(let m), .internal(let m), .template(let m), .cancelled(let m),
             .backend(let m), .unsupported(let m):
            return m
        }
    }

    /// The `mlxrun_status` value this error stands for.
    public var status: Int32 {
        switch self {
        case .invalidArgument: return Int32(MLXRUN_ERR_INVALID_ARGUMENT.rawValue)
        case .io: return Int32(MLXRUN_ERR_IO.rawValue)
        case .config: return Int32(MLXRUN_ERR_CONFIG.rawValue)
        case .weights: return Int32(MLXRUN_ERR_WEIGHTS.rawValue)
        case .tokenizer: return Int32(MLXRUN_ERR_TOKENIZER.rawValue)
        case .mlx: return Int32(MLXRUN_ERR_MLX.rawValue)
        case .bufferTooSmall: return Int32(MLXRUN_ERR_BUFFER_TOO_SMALL.rawValue)
        case .internal: return Int32(MLXRUN_ERR_INTERNAL.rawValue)
        case .template: return Int32(MLXRUN_ERR_TEMPLATE.rawValue)
        case .cancelled: return Int32(MLXRUN_ERR_CANCELLED.rawValue)
        case .backend: return Int32(MLXRUN_ERR_BACKEND.rawValue)
        case .unsupported: return Int32(MLXRUN_ERR_UNSUPPORTED.rawValue)
        }
    }

    /// The error for a status code and message; nil for MLXRUN_OK. A status this binding
    /// does not know (a newer library) becomes `.internal`, with the code in the message.
    public init?(status: Int32, message: String) {
        switch UInt32(bitPattern: status) {
        case MLXRUN_OK.rawValue: return nil
        case MLXRUN_ERR_INVALID_ARGUMENT.rawValue: self = .invalidArgument(message)
        case MLXRUN_ERR_IO.rawValue: self = .io(message)
        case MLXRUN_ERR_CONFIG.rawValue: self = .config(message)
        case MLXRUN_ERR_WEIGHTS.rawValue: self = .weights(message)
        case MLXRUN_ERR_TOKENIZER.rawValue: self = .tokenizer(message)
        case MLXRUN_ERR_MLX.rawValue: self = .mlx(message)
        case MLXRUN_ERR_BUFFER_TOO_SMALL.rawValue: self = .bufferTooSmall(message)
        case MLXRUN_ERR_INTERNAL.rawValue: self = .internal(message)
        case MLXRUN_ERR_TEMPLATE.rawValue: self = .template(message)
        case MLXRUN_ERR_CANCELLED.rawValue: self = .cancelled(message)
        case MLXRUN_ERR_BACKEND.rawValue: self = .backend(message)
        case MLXRUN_ERR_UNSUPPORTED.rawValue: self = .unsupported(message)
        default: self = .internal("unknown mlxrun status \(status): \(message)")
        }
    }
}

extension MLXRunError: CustomStringConvertible {
    public var description: String {
        let name: String
        switch self {
        case .invalidArgument: name = "invalid argument"
        case .io: name = "I/O error"
        case .config: name = "config error"
        case .weights: name = "weights error"
        case .tokenizer: name = "tokenizer error"
        case .mlx: name = "MLX error"
        case .bufferTooSmall: name = "buffer too small"
        case .internal: name = "internal error"
        case .template: name = "chat template error"
        case .cancelled: name = "cancelled"
        case .backend: name = "backend error"
        case .unsupported: name = "unsupported"
        }
        return "mlxrun: \(name): \(message)"
    }
}

/// Throws the error for `status`, with the calling thread's `mlxrun_last_error()`. Call it
/// on the thread that made the failing call, right after it (the message is per thread).
func check(_ status: mlxrun_status) throws {
    if status == MLXRUN_OK { return }
    throw MLXRunError(status: Int32(bitPattern: status.rawValue), message: String(cString: mlxrun_last_error()))!
}
