//! A single register of `u64` with read, write and compare-and-set, initially absent (or a value).

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

use super::Model;

/// A register operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RegisterInput {
    /// Read the value.
    Read,
    /// Overwrite the value.
    Write(u64),
    /// Set to `to` if the value is `from` (`None`: absent).
    Cas {
        /// Expected current value.
        from: Option<u64>,
        /// New value.
        to: u64,
    },
}

/// A register result.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RegisterOutput {
    /// What a read returned (`None`: absent).
    Value(Option<u64>),
    /// A write was acknowledged.
    Done,
    /// Whether a compare-and-set swapped. `false` is a constraint: the value was not `from`.
    Cas(bool),
}

/// The register model; `initial` is the value before any write (`None`: absent).
#[derive(Clone, Copy, Debug, Default)]
pub struct RegisterModel {
    /// The value before any write.
    pub initial: Option<u64>,
}

impl Model for RegisterModel {
    type Input = RegisterInput;
    type Output = RegisterOutput;
    type State = Option<u64>;

    fn init(&self) -> Option<u64> {
        self.initial
    }

    fn is_read_only(&self, input: &RegisterInput, output: Option<&RegisterOutput>) -> bool {
        matches!(
            (input, output),
            (RegisterInput::Read, _)
                | (RegisterInput::Cas { .. }, Some(RegisterOutput::Cas(false)))
        )
    }

    fn step<'s>(
        &self,
        state: &'s Option<u64>,
        input: &RegisterInput,
        output: Option<&RegisterOutput>,
    ) -> Option<Cow<'s, Option<u64>>> {
        let unchanged = Some(Cow::Borrowed(state));
        match (input, output) {
            (RegisterInput::Read, None) => unchanged,
            (RegisterInput::Read, Some(RegisterOutput::Value(value))) => {
                if value == state {
                    unchanged
                } else {
                    None
                }
            }
            (RegisterInput::Write(value), None | Some(RegisterOutput::Done)) => {
                Some(Cow::Owned(Some(*value)))
            }
            (RegisterInput::Cas { from, to }, None) => {
                if state == from {
                    Some(Cow::Owned(Some(*to)))
                } else {
                    unchanged
                }
            }
            (RegisterInput::Cas { from, to }, Some(RegisterOutput::Cas(true))) => {
                (state == from).then_some(Cow::Owned(Some(*to)))
            }
            (RegisterInput::Cas { from, .. }, Some(RegisterOutput::Cas(false))) => {
                if state != from {
                    unchanged
                } else {
                    None
                }
            }
            _ => None,
        }
    }

    fn describe_operation(&self, input: &RegisterInput, output: Option<&RegisterOutput>) -> String {
        match (input, output) {
            (RegisterInput::Read, Some(RegisterOutput::Value(value))) => {
                format!("read -> {}", show(*value))
            }
            (RegisterInput::Read, _) => "read -> ?".to_string(),
            (RegisterInput::Write(value), Some(_)) => format!("write {value}"),
            (RegisterInput::Write(value), None) => format!("write {value} (unknown)"),
            (RegisterInput::Cas { from, to }, Some(RegisterOutput::Cas(true))) => {
                format!("cas {} -> {to} ok", show(*from))
            }
            (RegisterInput::Cas { from, to }, Some(_)) => {
                format!("cas {} -> {to} failed", show(*from))
            }
            (RegisterInput::Cas { from, to }, None) => {
                format!("cas {} -> {to} (unknown)", show(*from))
            }
        }
    }

    fn describe_state(&self, state: &Option<u64>) -> String {
        show(*state)
    }

    fn explain_rejection(
        &self,
        state: &Option<u64>,
        input: &RegisterInput,
        output: Option<&RegisterOutput>,
    ) -> String {
        let needed = match (input, output) {
            (RegisterInput::Read, Some(RegisterOutput::Value(value))) => show(*value),
            (RegisterInput::Cas { from, .. }, Some(RegisterOutput::Cas(true))) => show(*from),
            (RegisterInput::Cas { from, .. }, Some(RegisterOutput::Cas(false))) => {
                format!("anything but {}", show(*from))
            }
            _ => "a different output kind".to_string(),
        };
        format!("needs value {needed}, register holds {}", show(*state))
    }
}

fn show(value: Option<u64>) -> String {
    match value {
        Some(value) => value.to_string(),
        None => "absent".to_string(),
    }
}
