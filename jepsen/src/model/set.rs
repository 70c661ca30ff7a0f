//! A set of `u64` with add, remove and read-all.

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

    fn step(
        &self,
        state: &BTreeSet<u64>,
        input: &SetInput,
        output: Option<&SetOutput>,
    ) -> Option<BTreeSet<u64>> {
        match (input, output) {
            (SetInput::Add(value), None | Some(SetOutput::Done)) => {
                let mut next = state.clone();
                next.insert(*value);
                Some(next)
            }
            (SetInput::Remove(value), None | Some(SetOutput::Done)) => {
                let mut next = state.clone();
                next.remove(value);
                Some(next)
            }
            (SetInput::Read, None) => Some(state.clone()),
            (SetInput::Read, Some(SetOutput::Values(values))) => (values.len() == state.len()
                && values.iter().eq(state.iter()))
            .then(|| state.clone()),
            _ => None,
        }
    }
}
