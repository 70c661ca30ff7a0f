//! Many independent objects of one model, one per key (Jepsen's `independent`).
//!
//! A real-cluster workload touches many registers, sets or counters at once; operations on
//! different keys never constrain each other. [`KeyedModel`] wraps a model so that a history of
//! [`KeyedInput`]s is split by key and each key is checked alone (in parallel, under one budget),
//! each key starting from the inner model's initial state. [`split_by_key`] turns such a history
//! into one plain history per key, e.g. to write them as files that `jepsen check` reads.

use std::borrow::Cow;
use std::collections::BTreeMap;

use super::Model;
use crate::history::{History, OpId, Outcome};

/// An operation on the object named `key`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct KeyedInput<I> {
    /// The object.
    pub key: String,
    /// What was asked of it.
    pub input: I,
}

/// The model of independent objects of the inner model, one per key. Only correct for histories
/// split by key, which the checker always does since every operation has a key.
#[derive(Clone, Copy, Debug, Default)]
pub struct KeyedModel<M> {
    /// The model of one object.
    pub inner: M,
}

impl<M: Model> Model for KeyedModel<M> {
    type Input = KeyedInput<M::Input>;
    type Output = M::Output;
    type State = M::State;

    fn init(&self) -> M::State {
        self.inner.init()
    }

    fn step<'s>(
        &self,
        state: &'s M::State,
        input: &Self::Input,
        output: Option<&M::Output>,
    ) -> Option<Cow<'s, M::State>> {
        self.inner.step(state, &input.input, output)
    }

    fn partition_key(&self, input: &Self::Input) -> Option<String> {
        Some(input.key.clone())
    }

    fn is_read_only(&self, input: &Self::Input, output: Option<&M::Output>) -> bool {
        self.inner.is_read_only(&input.input, output)
    }

    fn describe_operation(&self, input: &Self::Input, output: Option<&M::Output>) -> String {
        self.inner.describe_operation(&input.input, output)
    }

    fn describe_state(&self, state: &M::State) -> String {
        self.inner.describe_state(state)
    }

    fn explain_rejection(
        &self,
        state: &M::State,
        input: &Self::Input,
        output: Option<&M::Output>,
    ) -> String {
        self.inner.explain_rejection(state, &input.input, output)
    }
}

/// One history per key, each keeping the real-time order of its events.
pub fn split_by_key<I: Clone, O: Clone>(
    history: &History<KeyedInput<I>, O>,
) -> BTreeMap<String, History<I, O>> {
    let mut by_key: BTreeMap<String, History<I, O>> = BTreeMap::new();
    // Keyed operation id to (key, id in that key's history).
    let mut ids: Vec<Option<OpId>> = vec![None; history.len()];
    for (_, id, is_invocation) in history.events() {
        let operation = &history.operations()[id.0];
        let part = by_key.entry(operation.input.key.clone()).or_default();
        if is_invocation {
            ids[id.0] = Some(part.invoke(operation.process, operation.input.input.clone()));
        } else {
            let part_id = ids[id.0].expect("an operation is invoked before it completes");
            let outcome = operation.outcome.clone().unwrap_or(Outcome::Info);
            part.complete(part_id, outcome);
        }
    }
    by_key
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checker::{check, Budget, Verdict};
    use crate::model::{RegisterInput, RegisterModel, RegisterOutput};

    fn keyed(key: &str, input: RegisterInput) -> KeyedInput<RegisterInput> {
        KeyedInput { key: key.to_string(), input }
    }

    #[test]
    fn keys_are_checked_independently() {
        let mut history = History::new();
        let write_a = history.invoke(0, keyed("a", RegisterInput::Write(1)));
        history.complete(write_a, Outcome::Ok(RegisterOutput::Done));
        let read_b = history.invoke(1, keyed("b", RegisterInput::Read));
        history.complete(read_b, Outcome::Ok(RegisterOutput::Value(None)));
        let model = KeyedModel { inner: RegisterModel::default() };
        assert_eq!(check(&history, &model, &Budget::unlimited()), Verdict::Linearizable);

        let read_a = history.invoke(1, keyed("a", RegisterInput::Read));
        history.complete(read_a, Outcome::Ok(RegisterOutput::Value(None)));
        let Verdict::NotLinearizable(counterexample) =
            check(&history, &model, &Budget::unlimited())
        else {
            panic!("a lost write on key a is not linearizable");
        };
        assert_eq!(counterexample.partition.as_deref(), Some("a"));
    }

    #[test]
    fn a_split_keeps_each_key_in_order() {
        let mut history = History::new();
        let write_a = history.invoke(0, keyed("a", RegisterInput::Write(1)));
        let write_b = history.invoke(1, keyed("b", RegisterInput::Write(2)));
        history.complete(write_b, Outcome::Ok(RegisterOutput::Done));
        let read_a = history.invoke(1, keyed("a", RegisterInput::Read));
        history.complete(read_a, Outcome::Ok(RegisterOutput::Value(Some(1))));
        let _pending = write_a;
        let parts = split_by_key(&history);
        assert_eq!(parts.keys().collect::<Vec<_>>(), ["a", "b"]);
        let a = &parts["a"];
        assert_eq!(a.len(), 2);
        assert!(a.operations()[0].unknown());
        assert_eq!(a.operations()[1].call_time, 1);
        assert_eq!(a.operations()[1].output(), Some(&RegisterOutput::Value(Some(1))));
        assert_eq!(parts["b"].operations()[0].output(), Some(&RegisterOutput::Done));
    }
}
