//! A counter of `i64` with add and read.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

use super::Model;

/// A counter operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CounterInput {
    /// Add a (possibly negative) amount.
    Add(i64),
    /// Read the value.
    Read,
}

/// A counter result.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CounterOutput {
    /// An add was acknowledged.
    Done,
    /// What a read returned.
    Value(i64),
}

/// The counter model: initially zero.
#[derive(Clone, Copy, Debug, Default)]
pub struct CounterModel;

impl Model for CounterModel {
    type Input = CounterInput;
    type Output = CounterOutput;
    type State = i64;

    fn init(&self) -> i64 {
        0
    }

    fn is_read_only(&self, input: &CounterInput, _output: Option<&CounterOutput>) -> bool {
        matches!(input, CounterInput::Read | CounterInput::Add(0))
    }

    fn step<'s>(
        &self,
        state: &'s i64,
        input: &CounterInput,
        output: Option<&CounterOutput>,
    ) -> Option<Cow<'s, i64>> {
        match (input, output) {
            (CounterInput::Add(amount), None | Some(CounterOutput::Done)) => {
                Some(Cow::Owned(state.wrapping_add(*amount)))
            }
            (CounterInput::Read, None) => Some(Cow::Borrowed(state)),
            (CounterInput::Read, Some(CounterOutput::Value(value))) => {
                (value == state).then_some(Cow::Borrowed(state))
            }
            _ => None,
        }
    }
}
