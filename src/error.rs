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
}

pub type Result<T> = std::result::Result<T, Error>;

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Mlx(m) => write!(f, "MLX: {m}"),
            Error::InvalidArgument(m) => write!(f, "invalid argument: {m}"),
            Error::Io(m) => write!(f, "I/O: {m}"),
        }
    }
}

impl std::error::Error for Error {}

impl Error {
    pub(crate) fn invalid(msg: impl Into<String>) -> Self {
        Error::InvalidArgument(msg.into())
    }
}
