//! The crate's error type. Every fallible call returns `Result<T>`; nothing panics on bad
//! input and nothing unwinds across the FFI.
use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// MLX refused an operation (shape mismatch, bad dtype, bad axis, ...): its message.
    Mlx(String),
    /// An argument the caller passed is invalid before MLX is even asked.
    InvalidArgument(String),
    /// A file could not be read or written.
    Io(String),
    /// A model's configuration (config.json and friends) is missing, unparsable, or
    /// describes something unsupported. The message names the file and the field.
    Config(String),
    /// A model's weights do not fit its configuration: a tensor missing, or of the wrong
    /// shape or dtype. The message names the tensor, with expected and found values.
    Weights(String),
    /// Generation was stopped by a cancellation request.
    Cancelled,
    /// A caller's buffer is too small for the result (C API "needed size" calls).
    BufferTooSmall(String),
    /// A tokenizer file (tokenizer.json, tokenizer_config.json, ...) is missing or
    /// unparsable, or the tokenizer refused an input. The message names the file.
    Tokenizer(String),
    /// A chat template is missing or does not compile, or rendering it failed (the
    /// template called `raise_exception`, say). The message names the template's file and
    /// line, or carries the template's own message.
    Template(String),
    /// A backend is unavailable (no Python, no mlx-lm, a version it cannot speak to), or
    /// its worker process failed: exited, hung, or broke the protocol. The message says
    /// which, with the process's last words on stderr.
    Backend(String),
    /// The model's backend cannot do what was asked (the `mlx_lm` backend does not train,
    /// say). The message names the backend and the operation.
    Unsupported(String),
}

pub type Result<T> = std::result::Result<T, Error>;

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Mlx(m) => write!(f, "MLX: {m}"),
            Error::InvalidArgument(m) => write!(f, "invalid argument: {m}"),
            Error::Io(m) => write!(f, "I/O: {m}"),
            Error::Config(m) => write!(f, "config: {m}"),
            Error::Weights(m) => write!(f, "weights: {m}"),
            Error::Cancelled => write!(f, "cancelled"),
            Error::BufferTooSmall(m) => write!(f, "buffer too small: {m}"),
            Error::Tokenizer(m) => write!(f, "tokenizer: {m}"),
            Error::Template(m) => write!(f, "chat template: {m}"),
            Error::Backend(m) => write!(f, "backend: {m}"),
            Error::Unsupported(m) => write!(f, "unsupported: {m}"),
        }
    }
}

impl std::error::Error for Error {}

impl Error {
    pub(crate) fn invalid(msg: impl Into<String>) -> Self {
        Error::InvalidArgument(msg.into())
    }
}
