//! Jepsen etcd logs: one compare-and-set register, initially absent.
//!
//! ```text
//! INFO  jepsen.util - 3    :invoke    :cas    [3 0]
//! INFO  jepsen.util - 3    :fail    :cas    [3 0]
//! ```
//! Fields are separated by tabs or runs of spaces. The reading follows Porcupine's:
//! - `:ok :read nil` read the absent register;
//! - `:fail :cas` is a constraint (the value was not `from`): a completed CAS that did not swap;
//! - `:fail :read :timed-out` closes a read with an unknown output, which constrains nothing, so
//!   it is recorded as [`Outcome::Fail`] (dropped);
//! - `:info ... :timed-out` leaves the operation's outcome unknown ([`Outcome::Info`]): it may take
//!   effect at any time after its call, or never.

use std::collections::BTreeMap;

use super::{line_error, FormatError};
use crate::history::{History, OpId, Outcome};
use crate::model::{RegisterInput, RegisterOutput};

/// Parses an etcd log.
pub fn parse(content: &str) -> Result<History<RegisterInput, RegisterOutput>, FormatError> {
    let mut history = History::new();
    let mut pending: BTreeMap<u64, OpId> = BTreeMap::new();
    for (index, line) in content.lines().enumerate() {
        let number = index + 1;
        if line.trim().is_empty() {
            continue;
        }
        let body = match line.find("jepsen.util - ") {
            Some(start) => &line[start + "jepsen.util - ".len()..],
            None => return Err(line_error(number, "expected `jepsen.util - <process> ...`")),
        };
        let mut fields = body.split_whitespace();
        let (Some(process), Some(kind), Some(function)) =
            (fields.next(), fields.next(), fields.next())
        else {
            return Err(line_error(number, "expected `<process> <type> <f> <value>`"));
        };
        let value: Vec<&str> = fields.collect();
        let value = value.join(" ");
        let process: u64 =
            process.parse().map_err(|_| line_error(number, format!("bad process {process:?}")))?;
        match kind {
            ":invoke" => {
                let input = match function {
                    ":read" => RegisterInput::Read,
                    ":write" => RegisterInput::Write(integer(number, &value)?),
                    ":cas" => {
                        let (from, to) = pair(number, &value)?;
                        RegisterInput::Cas { from: Some(from), to }
                    }
                    _ => return Err(line_error(number, format!("unknown function {function}"))),
                };
                if pending.contains_key(&process) {
                    return Err(line_error(number, format!("process {process} invoked twice")));
                }
                pending.insert(process, history.invoke(process, input));
            }
            ":ok" | ":fail" | ":info" => {
                let id = pending
                    .remove(&process)
                    .ok_or_else(|| line_error(number, format!("process {process} has no call")))?;
                let input = history.operations()[id.0].input;
                let outcome = match (kind, input) {
                    (":info", _) => Outcome::Info,
                    (":ok", RegisterInput::Read) => {
                        Outcome::Ok(RegisterOutput::Value(if value == "nil" {
                            None
                        } else {
                            Some(integer(number, &value)?)
                        }))
                    }
                    (":ok", RegisterInput::Write(_)) => Outcome::Ok(RegisterOutput::Done),
                    (":ok", RegisterInput::Cas { .. }) => Outcome::Ok(RegisterOutput::Cas(true)),
                    (":fail", RegisterInput::Cas { .. }) => Outcome::Ok(RegisterOutput::Cas(false)),
                    (_, _) => Outcome::Fail,
                };
                history.complete(id, outcome);
            }
            _ => return Err(line_error(number, format!("unknown type {kind}"))),
        }
    }
    Ok(history)
}

fn integer(line: usize, text: &str) -> Result<u64, FormatError> {
    text.trim().parse().map_err(|_| line_error(line, format!("expected an integer, got {text:?}")))
}

fn pair(line: usize, text: &str) -> Result<(u64, u64), FormatError> {
    let inner = text
        .trim()
        .strip_prefix('[')
        .and_then(|rest| rest.strip_suffix(']'))
        .ok_or_else(|| line_error(line, format!("expected [from to], got {text:?}")))?;
    let mut parts = inner.split_whitespace();
    match (parts.next(), parts.next(), parts.next()) {
        (Some(from), Some(to), None) => Ok((integer(line, from)?, integer(line, to)?)),
        _ => Err(line_error(line, format!("expected [from to], got {text:?}"))),
    }
}
