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
pub fn write_history<I: Serialize, O: Serialize>(history: &History<I, O>, model: &str) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{KvInput, KvOutput, RegisterInput, RegisterOutput};

    #[test]
    fn a_history_survives_a_round_trip() {
        let mut history: History<RegisterInput, RegisterOutput> = History::new();
        let write = history.invoke(0, RegisterInput::Write(3));
        let cas = history.invoke(1, RegisterInput::Cas { from: None, to: 1 });
        let read = history.invoke(2, RegisterInput::Read);
        history.complete(write, Outcome::Ok(RegisterOutput::Done));
        history.complete(read, Outcome::Ok(RegisterOutput::Value(Some(3))));
        history.complete(cas, Outcome::Info);
        let failed = history.invoke(0, RegisterInput::Read);
        history.complete(failed, Outcome::Fail);
        history.invoke(3, RegisterInput::Write(4));
        let text = write_history(&history, "register");
        let AnyHistory::Register(parsed) = parse(&text).unwrap() else { panic!("{text}") };
        assert_eq!(parsed, history, "{text}");
    }

    #[test]
    fn completions_match_by_process_without_ids() {
        let text = "{\"model\":\"kv\"}\n\
            {\"process\":0,\"type\":\"invoke\",\"op\":{\"put\":{\"key\":\"a\",\"value\":\"x\"}}}\n\
            {\"process\":1,\"type\":\"invoke\",\"op\":{\"get\":{\"key\":\"a\"}}}\n\
            {\"process\":1,\"type\":\"ok\",\"result\":{\"value\":\"x\"}}\n\
            {\"process\":0,\"type\":\"ok\",\"result\":\"done\"}\n";
        let AnyHistory::Kv(history) = parse(text).unwrap() else { panic!() };
        assert_eq!(history.len(), 2);
        assert_eq!(history.operations()[1].output(), Some(&KvOutput::Value(Some("x".into()))));
        assert_eq!(
            history.operations()[0].input,
            KvInput::Put { key: "a".into(), value: "x".into() }
        );
    }

    #[test]
    fn a_bad_line_is_reported_with_its_number() {
        let error =
            parse("{\"model\":\"register\"}\n{\"process\":0,\"type\":\"ok\"}\n").unwrap_err();
        assert!(matches!(error, FormatError::Line { line: 2, .. }), "{error}");
    }
}
