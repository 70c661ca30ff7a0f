//! Jepsen EDN key-value logs: one EDN map per line, in real-time order.
//!
//! ```text
//! {:process 0, :type :invoke, :f :append, :key "4", :value "x 0 1 y"}
//! {:process 2, :type :ok, :f :get, :key "0", :value "x 0 0 yx 3 2 y"}
//! ```
//! `:f` is `:get`, `:put`, `:append` or `:delete`; `:type` is `:invoke`, `:ok`, `:fail` or
//! `:info`. Every key starts as the empty string, so a get that returns `""` (or `nil`) is read as
//! "absent" ([`KvOutput::Value`]`(None)`); `put` of `""` does not occur in these logs.

use std::collections::BTreeMap;

use super::{line_error, FormatError};
use crate::history::{History, OpId, Outcome};
use crate::model::{KvInput, KvOutput};

/// An EDN scalar, as far as these logs need.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Value {
    Nil,
    Integer(i64),
    Keyword(String),
    String(String),
}

/// Parses an EDN key-value log.
pub fn parse(content: &str) -> Result<History<KvInput, KvOutput>, FormatError> {
    let mut history = History::new();
    let mut pending: BTreeMap<u64, OpId> = BTreeMap::new();
    for (index, line) in content.lines().enumerate() {
        let number = index + 1;
        if line.trim().is_empty() {
            continue;
        }
        let map = parse_map(line).map_err(|message| line_error(number, message))?;
        let field =
            |name: &str| map.get(name).ok_or_else(|| line_error(number, format!("no :{name}")));
        let process = match field("process")? {
            Value::Integer(process) if *process >= 0 => *process as u64,
            other => return Err(line_error(number, format!("bad :process {other:?}"))),
        };
        let kind = keyword(number, field("type")?)?;
        let function = keyword(number, field("f")?)?;
        let key = match field("key")? {
            Value::String(key) => key.clone(),
            Value::Integer(key) => key.to_string(),
            other => return Err(line_error(number, format!("bad :key {other:?}"))),
        };
        let value = map.get("value").cloned().unwrap_or(Value::Nil);
        let text = |value: &Value| match value {
            Value::String(text) => Ok(text.clone()),
            other => Err(line_error(number, format!("expected a string :value, got {other:?}"))),
        };
        match kind {
            "invoke" => {
                let input = match function {
                    "get" => KvInput::Get { key },
                    "put" => KvInput::Put { key, value: text(&value)? },
                    "append" => KvInput::Append { key, value: text(&value)? },
                    "delete" => KvInput::Delete { key },
                    _ => return Err(line_error(number, format!("unknown :f :{function}"))),
                };
                if pending.contains_key(&process) {
                    return Err(line_error(number, format!("process {process} invoked twice")));
                }
                pending.insert(process, history.invoke(process, input));
            }
            "ok" | "fail" | "info" => {
                let id = pending
                    .remove(&process)
                    .ok_or_else(|| line_error(number, format!("process {process} has no call")))?;
                let outcome = match kind {
                    "fail" => Outcome::Fail,
                    "info" => Outcome::Info,
                    _ => match &history.operations()[id.0].input {
                        KvInput::Get { .. } => Outcome::Ok(KvOutput::Value(match value {
                            Value::Nil => None,
                            Value::String(text) if text.is_empty() => None,
                            Value::String(text) => Some(text),
                            other => {
                                return Err(line_error(number, format!("bad get :value {other:?}")))
                            }
                        })),
                        _ => Outcome::Ok(KvOutput::Done),
                    },
                };
                history.complete(id, outcome);
            }
            _ => return Err(line_error(number, format!("unknown :type :{kind}"))),
        }
    }
    Ok(history)
}

fn keyword(line: usize, value: &Value) -> Result<&str, FormatError> {
    match value {
        Value::Keyword(keyword) => Ok(keyword),
        other => Err(line_error(line, format!("expected a keyword, got {other:?}"))),
    }
}

/// Parses `{:k v, :k v ...}` with scalar values.
fn parse_map(line: &str) -> Result<BTreeMap<String, Value>, String> {
    let mut chars = line.trim().chars().peekable();
    if chars.next() != Some('{') {
        return Err("expected `{`".to_string());
    }
    let mut map = BTreeMap::new();
    loop {
        while chars.peek().is_some_and(|&c| c == ',' || c.is_whitespace()) {
            chars.next();
        }
        match chars.peek() {
            Some('}') => return Ok(map),
            None => return Err("unterminated map".to_string()),
            _ => {}
        }
        let key = match parse_value(&mut chars)? {
            Value::Keyword(key) => key,
            other => return Err(format!("expected a keyword key, got {other:?}")),
        };
        while chars.peek().is_some_and(|&c| c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let value = parse_value(&mut chars)?;
        map.insert(key, value);
    }
}

fn parse_value(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) -> Result<Value, String> {
    match chars.peek().copied() {
        Some('"') => {
            chars.next();
            let mut text = String::new();
            loop {
                match chars.next() {
                    Some('"') => return Ok(Value::String(text)),
                    Some('\\') => match chars.next() {
                        Some('n') => text.push('\n'),
                        Some('t') => text.push('\t'),
                        Some('r') => text.push('\r'),
                        Some(other) => text.push(other),
                        None => return Err("unterminated string".to_string()),
                    },
                    Some(other) => text.push(other),
                    None => return Err("unterminated string".to_string()),
                }
            }
        }
        Some(_) => {
            let mut token = String::new();
            while let Some(&c) = chars.peek() {
                if c == ',' || c == '}' || c.is_whitespace() {
                    break;
                }
                token.push(c);
                chars.next();
            }
            if token == "nil" {
                Ok(Value::Nil)
            } else if let Some(keyword) = token.strip_prefix(':') {
                Ok(Value::Keyword(keyword.to_string()))
            } else if let Ok(integer) = token.parse() {
                Ok(Value::Integer(integer))
            } else {
                Err(format!("unsupported EDN value {token:?}"))
            }
        }
        None => Err("expected a value".to_string()),
    }
}
