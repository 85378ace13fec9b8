import CMLXRun

/// Whether one of the library's backends can run here (`mlxrun_backend_available`).
public struct BackendStatus: Sendable, Equatable {
    /// "native" (this library, in process) or "mlx_lm" (mlx-lm in a Python worker).
    public let name: String
    public let available: Bool
    /// Why not, when it is not available.
    public let reason: String?
    /// What it runs on, when it is.
    public let version: String?
}

/// The library's backends.
public enum Backends {
    /// The backends' names, in the library's order of preference.
    public static var names: [String] {
        var out: [String] = []
        var i = 0
        while let p = mlxrun_backend_name(i) {
            out.append(String(cString: p))
            i += 1
        }
        return out
    }

    /// Every backend with its availability. `python`/`venv` choose the mlx_lm backend's
    /// Python as `LoadOptions` does. The first check of a Python starts it once (seconds);
    /// later answers come from memory.
    public static func list(python: String? = nil, venv: String? = nil) throws -> [BackendStatus] {
        try names.map { try status(of: $0, python: python, venv: venv) }
    }

    /// One backend's availability; an unknown name throws `.invalidArgument`.
    public static func status(of name: String, python: String? = nil, venv: String? = nil) throws -> BackendStatus {
        let arena = CArena()
        let cName = try arena.string(name, "backend name")
        let cPython = try python.map { try arena.string($0, "python") }
        let cVenv = try venv.map { try arena.string($0, "venv") }
        var available = false
        let text = try withExtendedLifetime(arena) {
            try neededSizeText { buf, capacity, needed in
                mlxrun_backend_available(cName, cPython, cVenv, &available, buf, capacity, needed)
            }
        }
        return BackendStatus(name: name, available: available, reason: available ? nil : text, version: available ? text : nil)
    }
}

extension Model {
    /// The backend that runs the model ("native" or "mlx_lm").
    public var backend: String {
        mlxrun_model_backend(handle).map { String(cString: $0) } ?? ""
    }
}
