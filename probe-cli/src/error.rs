//! probe-cli's errors and the exit code each maps to (see PRODUCT.md).

use std::fmt;

/// Why a command could not finish. Each variant is one line for the user.
#[derive(Debug)]
pub enum Error {
    /// Bad arguments the parser could not catch (exit 2).
    Usage(String),
    /// Missing privilege, naming what is missing (exit 3).
    NotPermitted(String),
    /// No such process (exit 4).
    NoProcess(u32),
    /// The process runs, but hakmem is not in it (exit 4).
    NoHakmem(String),
    /// The program to measure is missing or failed (exit 4).
    Target(String),
    /// The kernel lacks something the probes need (exit 1).
    Kernel(String),
    /// Anything else (exit 1).
    Other(String),
}

impl Error {
    /// The process exit code for this error.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Usage(_) => 2,
            Error::NotPermitted(_) => 3,
            Error::NoProcess(_) | Error::NoHakmem(_) | Error::Target(_) => 4,
            Error::Kernel(_) | Error::Other(_) => 1,
        }
    }

    /// An `Other` error with context, for `map_err`.
    pub fn other(context: &str) -> impl FnOnce(std::io::Error) -> Error + '_ {
        move |e| Error::Other(format!("{context}: {e}"))
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Usage(m) => write!(f, "usage: {m}"),
            Error::NotPermitted(m) => write!(f, "not permitted: {m}"),
            Error::NoProcess(pid) => write!(f, "no such process: {pid}"),
            Error::NoHakmem(m) => write!(f, "hakmem not found: {m}"),
            Error::Target(m) => write!(f, "target: {m}"),
            Error::Kernel(m) => write!(f, "kernel: {m}"),
            Error::Other(m) => write!(f, "{m}"),
        }
    }
}

/// Result of a probe-cli operation.
pub type Result<T> = std::result::Result<T, Error>;
