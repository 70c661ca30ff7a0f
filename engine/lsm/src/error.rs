//! The LSM's typed error.

use std::fmt;
use std::io;
use strata_wal::WalError;

/// Everything the store reports. Clonable, because a latched failure is handed to every later
/// writer until the store is reopened.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum LsmError {
    Io {
        operation: &'static str,
        path: String,
        kind: io::ErrorKind,
        message: String,
    },
    /// A checksum, magic, version or structural check failed on stored bytes.
    Corruption {
        path: String,
        offset: u64,
        reason: String,
    },
    /// The write-ahead log failed or found corruption.
    Wal(WalError),
    /// An earlier write, sync or background task failed; writes are refused until reopen.
    Latched {
        cause: Box<LsmError>,
    },
    /// Bad options or arguments (an empty key, a batch over its bounds).
    Invalid {
        reason: String,
    },
    /// A read through a snapshot taken before the store was replaced (`Db::replace`): what it
    /// saw is gone. Read again with a new snapshot.
    Replaced,
}

impl LsmError {
    pub(crate) fn io(operation: &'static str, path: &str, error: io::Error) -> LsmError {
        LsmError::Io {
            operation,
            path: path.to_string(),
            kind: error.kind(),
            message: error.to_string(),
        }
    }

    pub(crate) fn corruption(path: &str, offset: u64, reason: impl Into<String>) -> LsmError {
        LsmError::Corruption { path: path.to_string(), offset, reason: reason.into() }
    }

    /// Whether this is (or was latched because of) detected corruption.
    pub fn is_corruption(&self) -> bool {
        match self {
            LsmError::Corruption { .. } => true,
            LsmError::Wal(error) => error.is_corruption(),
            LsmError::Latched { cause } => cause.is_corruption(),
            _ => false,
        }
    }
}

impl From<WalError> for LsmError {
    fn from(error: WalError) -> LsmError {
        LsmError::Wal(error)
    }
}

impl fmt::Display for LsmError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LsmError::Io { operation, path, message, .. } => {
                write!(formatter, "lsm: {operation} {path}: {message}")
            }
            LsmError::Corruption { path, offset, reason } => {
                write!(formatter, "lsm: corruption in {path} at offset {offset}: {reason}")
            }
            LsmError::Wal(error) => write!(formatter, "lsm: {error}"),
            LsmError::Latched { cause } => {
                write!(formatter, "lsm: failed earlier, reopen required: {cause}")
            }
            LsmError::Invalid { reason } => write!(formatter, "lsm: {reason}"),
            LsmError::Replaced => {
                write!(formatter, "lsm: the store was replaced since the snapshot; read again")
            }
        }
    }
}

impl std::error::Error for LsmError {}
