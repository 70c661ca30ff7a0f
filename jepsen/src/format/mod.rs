//! History files: the JSON-lines format of this crate and readers for the public test data.
//!
//! - [`jsonl`]: one JSON object per line, any model (`docs/history-format.md`);
//! - [`etcd`]: Jepsen etcd logs (a single compare-and-set register), as in Porcupine's test data;
//! - [`edn`]: Jepsen EDN key-value logs (`get`/`put`/`append`/`delete` on string keys).

use std::fmt;
use std::path::Path;

use crate::history::History;
use crate::model::{
    CounterInput, CounterOutput, KvInput, KvOutput, QueueInput, QueueOutput, RegisterInput,
    RegisterOutput, SetInput, SetOutput,
};

pub mod edn;
pub mod etcd;
pub mod jsonl;

/// A history of any built-in model, as read from a file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AnyHistory {
    /// A register history.
    Register(History<RegisterInput, RegisterOutput>),
    /// A key-value history.
    Kv(History<KvInput, KvOutput>),
    /// A set history.
    Set(History<SetInput, SetOutput>),
    /// A queue history.
    Queue(History<QueueInput, QueueOutput>),
    /// A counter history.
    Counter(History<CounterInput, CounterOutput>),
}

impl AnyHistory {
    /// The number of operations.
    pub fn len(&self) -> usize {
        match self {
            AnyHistory::Register(history) => history.len(),
            AnyHistory::Kv(history) => history.len(),
            AnyHistory::Set(history) => history.len(),
            AnyHistory::Queue(history) => history.len(),
            AnyHistory::Counter(history) => history.len(),
        }
    }

    /// Whether the history has no operation.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The file formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Jepsen etcd log (`.log`).
    Etcd,
    /// EDN key-value log (`.txt`, `.edn`).
    Edn,
    /// This crate's JSON lines (`.jsonl`).
    Jsonl,
}

/// A file that could not be read as a history.
#[derive(Debug)]
#[non_exhaustive]
pub enum FormatError {
    /// The file could not be read.
    Io(std::io::Error),
    /// Neither the extension nor the content says which format this is.
    UnknownFormat,
    /// A line does not parse.
    Line {
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        message: String,
    },
}

impl fmt::Display for FormatError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FormatError::Io(error) => write!(formatter, "cannot read: {error}"),
            FormatError::UnknownFormat => write!(
                formatter,
                "unknown format: expected an etcd .log, an EDN .txt/.edn or a .jsonl history"
            ),
            FormatError::Line { line, message } => write!(formatter, "line {line}: {message}"),
        }
    }
}

impl std::error::Error for FormatError {}

pub(crate) fn line_error(line: usize, message: impl Into<String>) -> FormatError {
    FormatError::Line { line, message: message.into() }
}

/// Which format a file is in: by its first non-empty line, else by its extension.
pub fn detect(path: &Path, content: &str) -> Option<Format> {
    if let Some(first) = content.lines().map(str::trim).find(|line| !line.is_empty()) {
        if first.starts_with("INFO") || first.contains("jepsen.util") {
            return Some(Format::Etcd);
        }
        if first.starts_with("{:") {
            return Some(Format::Edn);
        }
        if first.starts_with("{\"") {
            return Some(Format::Jsonl);
        }
    }
    match path.extension().and_then(|extension| extension.to_str()) {
        Some("log") => Some(Format::Etcd),
        Some("txt" | "edn") => Some(Format::Edn),
        Some("jsonl" | "json") => Some(Format::Jsonl),
        _ => None,
    }
}

/// Parses `content` in `format`.
pub fn parse(format: Format, content: &str) -> Result<AnyHistory, FormatError> {
    match format {
        Format::Etcd => etcd::parse(content).map(AnyHistory::Register),
        Format::Edn => edn::parse(content).map(AnyHistory::Kv),
        Format::Jsonl => jsonl::parse(content),
    }
}

/// Reads a history file, detecting its format.
pub fn read_file(path: &Path) -> Result<(Format, AnyHistory), FormatError> {
    let content = std::fs::read_to_string(path).map_err(FormatError::Io)?;
    let format = detect(path, &content).ok_or(FormatError::UnknownFormat)?;
    Ok((format, parse(format, &content)?))
}
