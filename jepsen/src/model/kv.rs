//! A key-value map of strings with get, put, append and delete; partitioned by key.

use std::borrow::Cow;

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
    /// The present keys with their values, sorted by key (a flat vector: after partitioning by
    /// key it holds at most one entry, and copies cheaply).
    type State = Vec<(String, String)>;

    fn init(&self) -> Self::State {
        Vec::new()
    }

    fn is_read_only(&self, input: &KvInput, _output: Option<&KvOutput>) -> bool {
        matches!(input, KvInput::Get { .. })
    }

    fn step<'s>(
        &self,
        state: &'s Self::State,
        input: &KvInput,
        output: Option<&KvOutput>,
    ) -> Option<Cow<'s, Self::State>> {
        let position = state.binary_search_by(|(key, _)| key.as_str().cmp(input.key()));
        match (input, output) {
            (KvInput::Get { .. }, None) => Some(Cow::Borrowed(state)),
            (KvInput::Get { .. }, Some(KvOutput::Value(value))) => {
                let current = position.ok().map(|index| &state[index].1);
                (current == value.as_ref()).then_some(Cow::Borrowed(state))
            }
            (KvInput::Put { key, value }, None | Some(KvOutput::Done)) => {
                let mut next = state.clone();
                match position {
                    Ok(index) => next[index].1.clone_from(value),
                    Err(index) => next.insert(index, (key.clone(), value.clone())),
                }
                Some(Cow::Owned(next))
            }
            (KvInput::Append { key, value }, None | Some(KvOutput::Done)) => {
                let mut next = state.clone();
                match position {
                    Ok(index) => next[index].1.push_str(value),
                    Err(index) => next.insert(index, (key.clone(), value.clone())),
                }
                Some(Cow::Owned(next))
            }
            (KvInput::Delete { .. }, None | Some(KvOutput::Done)) => match position {
                Ok(index) => {
                    let mut next = state.clone();
                    next.remove(index);
                    Some(Cow::Owned(next))
                }
                Err(_) => Some(Cow::Borrowed(state)),
            },
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
            (KvInput::Get { key }, Some(KvOutput::Value(value))) => {
                let current =
                    state.iter().find(|(present, _)| present == key).map(|(_, value)| value);
                format!("needs {key:?} = {}, map holds {}", show(value.as_ref()), show(current))
            }
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
