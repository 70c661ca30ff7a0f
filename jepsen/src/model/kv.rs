//! A key-value map of strings with get, put, append and delete; partitioned by key.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::Model;

/// A key-value operation.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KvInput {
    /// Read a key.
    Get {
        /// The key.
        key: String,
    },
    /// Overwrite a key.
    Put {
        /// The key.
        key: String,
        /// The new value.
        value: String,
    },
    /// Append to a key's value (an absent key counts as empty).
    Append {
        /// The key.
        key: String,
        /// What to append.
        value: String,
    },
    /// Remove a key.
    Delete {
        /// The key.
        key: String,
    },
}

impl KvInput {
    /// The key the operation touches.
    pub fn key(&self) -> &str {
        match self {
            KvInput::Get { key }
            | KvInput::Put { key, .. }
            | KvInput::Append { key, .. }
            | KvInput::Delete { key } => key,
        }
    }
}

/// A key-value result.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KvOutput {
    /// What a get returned (`None`: absent).
    Value(Option<String>),
    /// A put, append or delete was acknowledged.
    Done,
}

/// The key-value model: every key starts absent.
#[derive(Clone, Copy, Debug, Default)]
pub struct KvModel;

impl Model for KvModel {
    type Input = KvInput;
    type Output = KvOutput;
    type State = BTreeMap<String, String>;

    fn init(&self) -> Self::State {
        BTreeMap::new()
    }

    fn step(
        &self,
        state: &Self::State,
        input: &KvInput,
        output: Option<&KvOutput>,
    ) -> Option<Self::State> {
        match (input, output) {
            (KvInput::Get { .. }, None) => Some(state.clone()),
            (KvInput::Get { key }, Some(KvOutput::Value(value))) => {
                (state.get(key) == value.as_ref()).then(|| state.clone())
            }
            (KvInput::Put { key, value }, None | Some(KvOutput::Done)) => {
                let mut next = state.clone();
                next.insert(key.clone(), value.clone());
                Some(next)
            }
            (KvInput::Append { key, value }, None | Some(KvOutput::Done)) => {
                let mut next = state.clone();
                next.entry(key.clone()).or_default().push_str(value);
                Some(next)
            }
            (KvInput::Delete { key }, None | Some(KvOutput::Done)) => {
                let mut next = state.clone();
                next.remove(key);
                Some(next)
            }
            _ => None,
        }
    }

    fn partition_key(&self, input: &KvInput) -> Option<String> {
        Some(input.key().to_string())
    }

    fn describe_operation(&self, input: &KvInput, output: Option<&KvOutput>) -> String {
        let unknown = if output.is_none() { " (unknown)" } else { "" };
        match input {
            KvInput::Get { key } => match output {
                Some(KvOutput::Value(value)) => format!("get {key:?} -> {}", show(value.as_ref())),
                _ => format!("get {key:?} -> ?"),
            },
            KvInput::Put { key, value } => format!("put {key:?} {value:?}{unknown}"),
            KvInput::Append { key, value } => format!("append {key:?} {value:?}{unknown}"),
            KvInput::Delete { key } => format!("delete {key:?}{unknown}"),
        }
    }

    fn describe_state(&self, state: &Self::State) -> String {
        let entries: Vec<String> =
            state.iter().map(|(key, value)| format!("{key:?}: {value:?}")).collect();
        format!("{{{}}}", entries.join(", "))
    }

    fn explain_rejection(
        &self,
        state: &Self::State,
        input: &KvInput,
        output: Option<&KvOutput>,
    ) -> String {
        match (input, output) {
            (KvInput::Get { key }, Some(KvOutput::Value(value))) => format!(
                "needs {key:?} = {}, map holds {}",
                show(value.as_ref()),
                show(state.get(key))
            ),
            _ => "a different output kind".to_string(),
        }
    }
}

fn show(value: Option<&String>) -> String {
    match value {
        Some(value) => format!("{value:?}"),
        None => "absent".to_string(),
    }
}
