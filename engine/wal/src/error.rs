//! The WAL's typed error.

use std::fmt;
use std::io;

/// Everything the WAL reports. Clonable, because a latched failure is handed to every later
/// caller until the log is reopened.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum WalError {
    /// An I/O operation failed.
    Io { operation: &'static str, path: String, kind: io::ErrorKind, message: String },
    /// Acknowledged data is damaged: a checksum, header or sequence check failed where a torn
    /// tail cannot explain it.
    Corruption { path: String, segment: u64, offset: u64, reason: &'static str },
    /// An earlier write or sync failed; the log refuses everything until it is reopened (after a
    /// process restart: the page cache may hold writes that the failed sync forgot).
    Latched { cause: Box<WalError> },
    /// A record above `Options::record_bytes_max`.
    RecordTooLarge { size_bytes: usize, size_bytes_max: u32 },
    /// An index outside the log's readable range.
    OutOfRange { index: u64, first: u64, last: u64 },
    /// Bad options or arguments.
    Invalid { reason: String },
}

impl WalError {
    pub(crate) fn io(operation: &'static str, path: &str, error: io::Error) -> WalError {
        WalError::Io {
            operation,
            path: path.to_string(),
            kind: error.kind(),
            message: error.to_string(),
        }
    }

    /// Whether this is (or was latched because of) detected corruption.
    pub fn is_corruption(&self) -> bool {
        match self {
            WalError::Corruption { .. } => true,
            WalError::Latched { cause } => cause.is_corruption(),
            _ => false,
        }
    }
}

impl fmt::Display for WalError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WalError::Io { operation, path, message, .. } => {
                write!(formatter, "wal: {operation} {path}: {message}")
            }
            WalError::Corruption { path, segment, offset, reason } => write!(
                formatter,
                "wal: corruption in segment {segment} ({path}) at offset {offset}: {reason}"
            ),
            WalError::Latched { cause } => {
                write!(formatter, "wal: failed earlier, reopen required: {cause}")
            }
            WalError::RecordTooLarge { size_bytes, size_bytes_max } => {
                write!(formatter, "wal: record of {size_bytes} bytes exceeds {size_bytes_max}")
            }
            WalError::OutOfRange { index, first, last } => {
                write!(formatter, "wal: index {index} outside {first}..={last}")
            }
            WalError::Invalid { reason } => write!(formatter, "wal: {reason}"),
        }
    }
}

impl std::error::Error for WalError {}
