//! Sequential specifications ("models") that histories are checked against.
//!
//! A model is a deterministic state machine: [`Model::step`] says whether an operation with its
//! observed output is legal in a state, and what the state becomes. A service adds its own model by
//! implementing the trait; the checker needs nothing else.

use std::borrow::Cow;
use std::fmt::Debug;
use std::hash::Hash;

pub mod counter;
pub mod keyed;
pub mod kv;
pub mod queue;
pub mod register;
pub mod set;

pub use counter::{CounterInput, CounterModel, CounterOutput};
pub use keyed::{KeyedInput, KeyedModel};
pub use kv::{KvInput, KvModel, KvOutput};
pub use queue::{QueueInput, QueueModel, QueueOutput};
pub use register::{RegisterInput, RegisterModel, RegisterOutput};
pub use set::{SetInput, SetModel, SetOutput};

/// A sequential specification.
pub trait Model: Sync {
    /// What a client asks.
    type Input: Debug + Sync;
    /// What a client is told.
    type Output: Debug + Sync;
    /// The state of the specification; compared exactly and hashed by the checker's memo.
    type State: Clone + Eq + Hash + Debug + Send;

    /// The state before any operation.
    fn init(&self) -> Self::State;

    /// Applies `input` in `state`. `output` is `None` when the outcome is unknown (an `Info`
    /// operation), in which case any output is acceptable. Returns the next state
    /// (`Cow::Borrowed(state)` when unchanged, which spares the checker a copy), or `None` when
    /// the observed output is impossible in `state`.
    fn step<'s>(
        &self,
        state: &'s Self::State,
        input: &Self::Input,
        output: Option<&Self::Output>,
    ) -> Option<Cow<'s, Self::State>>;

    /// The partition an operation belongs to, for P-compositional checking: operations on
    /// different keys never constrain each other, so each key's sub-history is checked alone. All
    /// operations must return `Some` for the history to be split; the default never splits.
    fn partition_key(&self, input: &Self::Input) -> Option<String> {
        let _ = input;
        None
    }

    /// Whether this operation never changes the state, in any state where it is legal (a read, a
    /// failed compare-and-set). The checker takes such an operation as soon as it is legal instead
    /// of branching on it, and ignores it when its outcome is unknown. Default: `false` (always
    /// safe; `true` for an operation that can change the state makes the checker wrong).
    fn is_read_only(&self, input: &Self::Input, output: Option<&Self::Output>) -> bool {
        let _ = (input, output);
        false
    }

    /// A short human description of an operation, e.g. `write 3` or `read -> 3`.
    fn describe_operation(&self, input: &Self::Input, output: Option<&Self::Output>) -> String {
        match output {
            Some(output) => format!("{input:?} -> {output:?}"),
            None => format!("{input:?} -> ?"),
        }
    }

    /// A short human description of a state.
    fn describe_state(&self, state: &Self::State) -> String {
        format!("{state:?}")
    }

    /// Why `step` rejected this operation in `state`: what state it would have needed.
    fn explain_rejection(
        &self,
        state: &Self::State,
        input: &Self::Input,
        output: Option<&Self::Output>,
    ) -> String {
        let _ = (input, output);
        format!("impossible in state {}", self.describe_state(state))
    }
}
