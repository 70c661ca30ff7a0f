//! A set of `u64` with add, remove and read-all.

use std::borrow::Cow;
use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use super::Model;

/// A set operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SetInput {
    /// Add an element.
    Add(u64),
    /// Remove an element.
    Remove(u64),
    /// Read every element.
    Read,
}

/// A set result.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SetOutput {
    /// An add or remove was acknowledged.
    Done,
    /// What a read returned, in ascending order.
    Values(Vec<u64>),
}

/// The set model: initially empty.
#[derive(Clone, Copy, Debug, Default)]
pub struct SetModel;

impl Model for SetModel {
    type Input = SetInput;
    type Output = SetOutput;
    type State = BTreeSet<u64>;

    fn init(&self) -> BTreeSet<u64> {
        BTreeSet::new()
    }

    fn is_read_only(&self, input: &SetInput, _output: Option<&SetOutput>) -> bool {
        matches!(input, SetInput::Read)
    }

    fn step<'s>(
        &self,
        state: &'s BTreeSet<u64>,
        input: &SetInput,
        output: Option<&SetOutput>,
    ) -> Option<Cow<'s, BTreeSet<u64>>> {
        match (input, output) {
            (SetInput::Add(value), None | Some(SetOutput::Done)) => {
                let mut next = state.clone();
                next.insert(*value);
                Some(Cow::Owned(next))
            }
            (SetInput::Remove(value), None | Some(SetOutput::Done)) => {
                let mut next = state.clone();
                next.remove(value);
                Some(Cow::Owned(next))
            }
            (SetInput::Read, None) => Some(Cow::Borrowed(state)),
            (SetInput::Read, Some(SetOutput::Values(values))) => (values.len() == state.len()
                && values.iter().eq(state.iter()))
            .then_some(Cow::Borrowed(state)),
            _ => None,
        }
    }
}
