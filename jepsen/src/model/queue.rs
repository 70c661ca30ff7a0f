//! A FIFO queue of `u64` with enqueue and dequeue.

use std::borrow::Cow;
use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use super::Model;

/// A queue operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QueueInput {
    /// Append to the tail.
    Enqueue(u64),
    /// Take from the head.
    Dequeue,
}

/// A queue result.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QueueOutput {
    /// An enqueue was acknowledged.
    Done,
    /// What a dequeue returned (`None`: the queue was empty).
    Value(Option<u64>),
}

/// The queue model: initially empty.
#[derive(Clone, Copy, Debug, Default)]
pub struct QueueModel;

impl Model for QueueModel {
    type Input = QueueInput;
    type Output = QueueOutput;
    type State = VecDeque<u64>;

    fn init(&self) -> VecDeque<u64> {
        VecDeque::new()
    }

    fn step<'s>(
        &self,
        state: &'s VecDeque<u64>,
        input: &QueueInput,
        output: Option<&QueueOutput>,
    ) -> Option<Cow<'s, VecDeque<u64>>> {
        match (input, output) {
            (QueueInput::Enqueue(value), None | Some(QueueOutput::Done)) => {
                let mut next = state.clone();
                next.push_back(*value);
                Some(Cow::Owned(next))
            }
            (QueueInput::Dequeue, None) => {
                let mut next = state.clone();
                next.pop_front();
                Some(Cow::Owned(next))
            }
            (QueueInput::Dequeue, Some(QueueOutput::Value(value))) => {
                if state.front() != value.as_ref() {
                    return None;
                }
                let mut next = state.clone();
                next.pop_front();
                Some(Cow::Owned(next))
            }
            _ => None,
        }
    }
}
