//! Recorded client histories.
//!
//! A history is what clients saw, in real-time order: each operation is *invoked* by a process and
//! later *completed* with one of three outcomes:
//!
//! - [`Outcome::Ok`]: the operation took effect, exactly once, somewhere between its invocation and
//!   its completion, and returned the recorded output;
//! - [`Outcome::Fail`]: the operation certainly did not take effect (the checker drops it);
//! - [`Outcome::Info`]: unknown; it may or may not have taken effect, at any time after its
//!   invocation (even after the end of the history). An operation never completed counts as `Info`.
//!
//! Time is the position of an event in the history: the caller records events in the order it
//! observed them, and that order is the only clock the checker uses.

/// Names one operation of a [`History`]: its index in invocation order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct OpId(pub usize);

/// How an operation ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome<O> {
    /// It took effect and returned this output.
    Ok(O),
    /// It certainly did not take effect.
    Fail,
    /// Unknown: it may or may not have taken effect.
    Info,
}

/// One operation of a history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Operation<I, O> {
    /// The process (client thread) that invoked it; only used to display histories.
    pub process: u64,
    /// What was asked.
    pub input: I,
    /// How it ended; `None` while pending (the checker treats that as [`Outcome::Info`]).
    pub outcome: Option<Outcome<O>>,
    /// Event index of the invocation.
    pub call_time: u64,
    /// Event index of the completion, if any.
    pub completion_time: Option<u64>,
}

impl<I, O> Operation<I, O> {
    /// The output if the operation completed with `Ok`, else `None`.
    pub fn output(&self) -> Option<&O> {
        match &self.outcome {
            Some(Outcome::Ok(output)) => Some(output),
            _ => None,
        }
    }

    /// Whether the operation certainly did not take effect.
    pub fn failed(&self) -> bool {
        matches!(self.outcome, Some(Outcome::Fail))
    }

    /// Whether the outcome is unknown (`Info` or never completed).
    pub fn unknown(&self) -> bool {
        matches!(self.outcome, None | Some(Outcome::Info))
    }
}

/// A history under construction or complete: record events with [`History::invoke`] and
/// [`History::complete`] in the real-time order they happened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct History<I, O> {
    operations: Vec<Operation<I, O>>,
    events_count: u64,
}

impl<I, O> Default for History<I, O> {
    fn default() -> Self {
        Self::new()
    }
}

impl<I, O> History<I, O> {
    /// An empty history.
    pub fn new() -> Self {
        Self { operations: Vec::new(), events_count: 0 }
    }

    /// Records that `process` invoked an operation now; returns its id for [`History::complete`].
    pub fn invoke(&mut self, process: u64, input: I) -> OpId {
        let id = OpId(self.operations.len());
        self.operations.push(Operation {
            process,
            input,
            outcome: None,
            call_time: self.events_count,
            completion_time: None,
        });
        self.events_count += 1;
        id
    }

    /// Records that operation `id` completed now with `outcome`.
    ///
    /// Panics if `id` is unknown or already completed: that is a bug in the recorder.
    pub fn complete(&mut self, id: OpId, outcome: Outcome<O>) {
        let time = self.events_count;
        let operation = self.operations.get_mut(id.0).expect("complete: unknown operation id");
        assert!(operation.outcome.is_none(), "complete: operation {} completed twice", id.0);
        operation.outcome = Some(outcome);
        operation.completion_time = Some(time);
        self.events_count += 1;
    }

    /// The operations in invocation order (index = [`OpId`]).
    pub fn operations(&self) -> &[Operation<I, O>] {
        &self.operations
    }

    /// Mutable access, for tests that tamper with a history.
    pub fn operations_mut(&mut self) -> &mut [Operation<I, O>] {
        &mut self.operations
    }

    /// The number of operations.
    pub fn len(&self) -> usize {
        self.operations.len()
    }

    /// Whether no operation was recorded.
    pub fn is_empty(&self) -> bool {
        self.operations.is_empty()
    }

    /// The number of events (invocations plus completions) recorded so far.
    pub fn events_count(&self) -> u64 {
        self.events_count
    }

    /// The events in time order: `(time, op, is_invocation)`.
    pub fn events(&self) -> Vec<(u64, OpId, bool)> {
        let mut events = Vec::with_capacity(self.operations.len() * 2);
        for (index, operation) in self.operations.iter().enumerate() {
            events.push((operation.call_time, OpId(index), true));
            if let Some(time) = operation.completion_time {
                events.push((time, OpId(index), false));
            }
        }
        events.sort_unstable_by_key(|event| event.0);
        events
    }
}
