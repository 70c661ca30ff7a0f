//! Client histories, the linearizability checker and the real-cluster fault harness.
//!
//! - [`history`]: record what clients saw: [`History::invoke`], [`History::complete`].
//! - [`model`]: sequential specifications (register, key-value map, set, queue, counter) behind
//!   the small [`Model`] trait.
//! - [`checker`]: [`check`] a history against a model within a [`Budget`]; the [`Verdict`] carries
//!   a readable [`Counterexample`] (text and HTML) when the history is not linearizable.
//! - [`format`](mod@format): the JSON-lines history format (`docs/history-format.md`) and readers for the Jepsen
//!   etcd logs and the EDN key-value logs of the shared test data.
//! - [`generate`]: seeded, deterministic generators of linearizable key-value histories.
//! - [`harness`]: `jepsen run`: real `node` processes on loopback, real faults (kill -9, SIGSTOP,
//!   partitions through per-link TCP proxies), concurrent RESP clients, and the checks above.
//!
//! ```
//! use strata_jepsen::{check, Budget, History, Outcome, Verdict};
//! use strata_jepsen::model::{RegisterInput, RegisterModel, RegisterOutput};
//!
//! let mut history = History::new();
//! let write = history.invoke(0, RegisterInput::Write(1));
//! let read = history.invoke(1, RegisterInput::Read);
//! history.complete(write, Outcome::Ok(RegisterOutput::Done));
//! history.complete(read, Outcome::Ok(RegisterOutput::Value(None)));
//! assert_eq!(check(&history, &RegisterModel::default(), &Budget::unlimited()), Verdict::Linearizable);
//! ```

pub mod checker;
pub mod format;
pub mod generate;
pub mod harness;
pub mod history;
pub mod model;

pub use checker::{check, check_report, Budget, Counterexample, Report, Verdict};
pub use history::{History, OpId, Operation, Outcome};
pub use model::Model;
