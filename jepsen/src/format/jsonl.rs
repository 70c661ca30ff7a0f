//! The JSON-lines history format (described in `docs/history-format.md`).
//!
//! ```text
//! {"model":"register"}
//! {"id":0,"process":0,"type":"invoke","op":{"write":3}}
//! {"id":1,"process":1,"type":"invoke","op":"read"}
//! {"id":0,"process":0,"type":"ok","result":"done"}
//! {"id":1,"process":1,"type":"ok","result":{"value":3}}
//! ```
//! The first line names the model; every later line is one event in real-time order. A
//! completion names its operation by `id` (the writer always does) or, without `id`, by
//! `process` (the process's pending operation, as in Jepsen).

use std::collections::BTreeMap;

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{json, Value};

use super::{line_error, AnyHistory, FormatError};
use crate::history::{History, OpId, Outcome};

/// Model names used in the header line.
pub const MODEL_NAMES: [&str; 5] = ["register", "kv", "set", "queue", "counter"];

/// Writes `history` as JSON lines, with `model` (one of [`MODEL_NAMES`]) in the header.
pub fn write<I: Serialize, O: Serialize>(history: &History<I, O>, model: &str) -> String {
    let mut out = String::new();
    out.push_str(&json!({ "model": model }).to_string());
    out.push('\n');
    for (_, id, is_invocation) in history.events() {
        let operation = &history.operations()[id.0];
        let line = if is_invocation {
            json!({ "id": id.0, "process": operation.process, "type": "invoke", "op": operation.input })
        } else {
            match &operation.outcome {
                Some(Outcome::Ok(output)) => json!({
                    "id": id.0, "process": operation.process, "type": "ok", "result": output
                }),
                Some(Outcome::Fail) => {
                    json!({ "id": id.0, "process": operation.process, "type": "fail" })
                }
                Some(Outcome::Info) | None => {
                    json!({ "id": id.0, "process": operation.process, "type": "info" })
                }
            }
        };
        out.push_str(&line.to_string());
        out.push('\n');
    }
    out
}

/// Parses JSON lines; the header picks the model.
pub fn parse(content: &str) -> Result<AnyHistory, FormatError> {
    let mut lines = content.lines().enumerate().filter(|(_, line)| !line.trim().is_empty());
    let Some((index, header)) = lines.next() else {
        return Err(line_error(1, "empty file: expected a {\"model\": ...} header"));
    };
    let header: Value =
        serde_json::from_str(header).map_err(|error| line_error(index + 1, error.to_string()))?;
    let model = header.get("model").and_then(Value::as_str).ok_or_else(|| {
        line_error(index + 1, format!("expected a header naming the model, one of {MODEL_NAMES:?}"))
    })?;
    Ok(match model {
        "register" => AnyHistory::Register(parse_events(lines)?),
        "kv" => AnyHistory::Kv(parse_events(lines)?),
        "set" => AnyHistory::Set(parse_events(lines)?),
        "queue" => AnyHistory::Queue(parse_events(lines)?),
        "counter" => AnyHistory::Counter(parse_events(lines)?),
        other => {
            return Err(line_error(
                index + 1,
                format!("unknown model {other:?}, expected one of {MODEL_NAMES:?}"),
            ))
        }
    })
}

fn parse_events<'a, I: DeserializeOwned, O: DeserializeOwned>(
    lines: impl Iterator<Item = (usize, &'a str)>,
) -> Result<History<I, O>, FormatError> {
    let mut history = History::new();
    // File ids and processes to pending operations.
    let mut by_id: BTreeMap<u64, OpId> = BTreeMap::new();
    let mut by_process: BTreeMap<u64, OpId> = BTreeMap::new();
    for (index, line) in lines {
        let number = index + 1;
        let error = |message: String| line_error(number, message);
        let mut event: Value = serde_json::from_str(line).map_err(|e| error(e.to_string()))?;
        let process = event
            .get("process")
            .and_then(Value::as_u64)
            .ok_or_else(|| error("expected \"process\": a non-negative integer".to_string()))?;
        let file_id = event.get("id").and_then(Value::as_u64);
        let kind = event.get("type").and_then(Value::as_str).unwrap_or("").to_string();
        if kind == "invoke" {
            let op = event
                .get_mut("op")
                .map(Value::take)
                .ok_or_else(|| error("invoke without \"op\"".to_string()))?;
            let input: I =
                serde_json::from_value(op).map_err(|e| error(format!("bad \"op\": {e}")))?;
            let id = history.invoke(process, input);
            if let Some(file_id) = file_id {
                if by_id.insert(file_id, id).is_some() {
                    return Err(error(format!("id {file_id} invoked twice")));
                }
            } else if by_process.insert(process, id).is_some() {
                return Err(error(format!("process {process} invoked twice without ids")));
            }
            continue;
        }
        let id = match file_id {
            Some(file_id) => by_id.remove(&file_id),
            None => by_process.remove(&process),
        }
        .ok_or_else(|| error("completion of an operation that is not pending".to_string()))?;
        let outcome = match kind.as_str() {
            "ok" => {
                let result = event
                    .get_mut("result")
                    .map(Value::take)
                    .ok_or_else(|| error("ok without \"result\"".to_string()))?;
                Outcome::Ok(
                    serde_json::from_value(result)
                        .map_err(|e| error(format!("bad \"result\": {e}")))?,
                )
            }
            "fail" => Outcome::Fail,
            "info" => Outcome::Info,
            other => return Err(error(format!("unknown type {other:?}"))),
        };
        history.complete(id, outcome);
    }
    Ok(history)
}
