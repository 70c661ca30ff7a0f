//! The linearizability checker: Wing-Gong-Lowe search with memoization, P-compositional.
//!
//! [`check`] splits a history by [`Model::partition_key`] (operations on different keys never
//! constrain each other), checks the parts in parallel with scoped threads, and returns one
//! [`Verdict`]. Failed operations are dropped; operations with an unknown outcome may take effect
//! at any time after their call, or never. The verdict is deterministic: partitions are ordered by
//! key, and the counterexample is always the one of the first failing partition in that order.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

mod counterexample;
mod memo;
mod search;

pub use counterexample::{Candidate, Counterexample, OperationView};

use crate::history::History;
use crate::model::Model;
use search::{Limits, PartOperation, Search, SearchEnd};

/// Limits on one check; when one is hit the verdict is [`Verdict::Unknown`] with the reason.
#[derive(Clone, Debug, Default)]
pub struct Budget {
    /// Wall-clock time for the whole check (not deterministic: a simulator should prefer steps).
    pub time_max: Option<Duration>,
    /// Approximate bytes the checker's memo may hold over all partitions.
    pub memory_bytes_max: Option<u64>,
    /// Search steps per partition (deterministic).
    pub steps_max: Option<u64>,
    /// Threads for partitions checked in parallel; 0 means the machine's parallelism.
    pub threads: usize,
}

impl Budget {
    /// No limit at all.
    pub fn unlimited() -> Self {
        Self::default()
    }

    /// A wall-clock limit.
    pub fn with_time(time_max: Duration) -> Self {
        Self { time_max: Some(time_max), ..Self::default() }
    }
}

/// The result of a check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Some order of the operations, consistent with real time, satisfies the model.
    Linearizable,
    /// None does; the counterexample says where the search got stuck.
    NotLinearizable(Box<Counterexample>),
    /// The budget ran out first.
    Unknown(String),
}

impl Verdict {
    /// Whether the verdict is [`Verdict::Linearizable`].
    pub fn is_linearizable(&self) -> bool {
        matches!(self, Verdict::Linearizable)
    }

    /// Whether the verdict is [`Verdict::NotLinearizable`].
    pub fn is_not_linearizable(&self) -> bool {
        matches!(self, Verdict::NotLinearizable(_))
    }
}

/// A verdict with figures about the check.
#[derive(Clone, Debug)]
pub struct Report {
    /// The verdict.
    pub verdict: Verdict,
    /// Operations checked (failed operations are dropped).
    pub operations_count: usize,
    /// Partitions checked independently.
    pub partitions_count: usize,
    /// Wall-clock time of the check.
    pub elapsed: Duration,
    /// Search steps taken over all partitions (not counting the counterexample's second pass).
    pub steps_count: u64,
    /// (linearized set, state) configurations visited over all partitions.
    pub configurations_count: u64,
}

/// Checks `history` against `model` within `budget`.
pub fn check<M: Model>(
    history: &History<M::Input, M::Output>,
    model: &M,
    budget: &Budget,
) -> Verdict {
    check_report(history, model, budget).verdict
}

/// Like [`check`], with figures.
pub fn check_report<M: Model>(
    history: &History<M::Input, M::Output>,
    model: &M,
    budget: &Budget,
) -> Report {
    let started = Instant::now();
    let partitions = partition(history, model);
    let operations_count = partitions.iter().map(|(_, operations)| operations.len()).sum();
    let partitions_count = partitions.len();
    let memory_bytes_used = AtomicU64::new(0);
    let failed_partition_min = AtomicUsize::new(usize::MAX);
    let steps_total = AtomicU64::new(0);
    let configurations_total = AtomicU64::new(0);
    let limits = Limits {
        steps_max: budget.steps_max,
        deadline: budget.time_max.map(|time| started + time),
        memory_bytes_max: budget.memory_bytes_max,
        memory_bytes_used: &memory_bytes_used,
        failed_partition_min: &failed_partition_min,
        steps_total: &steps_total,
        configurations_total: &configurations_total,
    };
    let threads = if budget.threads == 0 {
        std::thread::available_parallelism().map_or(1, |count| count.get())
    } else {
        budget.threads
    }
    .min(partitions.len())
    .max(1);

    // Partitions advance in rounds of a doubling number of steps, largest first within a round
    // for load balance. After each round the first partition (by key) found not linearizable
    // wins, so the verdict and its counterexample depend on step counts only, never on thread
    // timing, and a failure found early in one partition is not held up by a slow other one.
    let mut slots: Vec<Mutex<Slot<'_, '_, M>>> = partitions
        .iter()
        .enumerate()
        .map(|(index, (_, operations))| {
            Mutex::new(Slot::Running(Box::new(Search::new(model, operations, index, None))))
        })
        .collect();
    let mut order: Vec<usize> = (0..partitions.len()).collect();
    order.sort_by_key(|&index| std::cmp::Reverse(partitions[index].1.len()));
    let mut round_steps = ROUND_STEPS_FIRST;
    loop {
        let running: Vec<usize> = order
            .iter()
            .copied()
            .filter(|&index| matches!(*lock(&slots[index]), Slot::Running(_)))
            .collect();
        if running.is_empty() {
            break;
        }
        let cursor = AtomicUsize::new(0);
        let worker = || loop {
            let position = cursor.fetch_add(1, Ordering::Relaxed);
            let Some(&index) = running.get(position) else { break };
            let mut slot = lock(&slots[index]);
            let Slot::Running(search) = &mut *slot else { continue };
            if let Some(end) = search.run(&limits, round_steps) {
                *slot = Slot::Done(end);
            }
        };
        let threads_now = threads.min(running.len());
        if threads_now == 1 {
            worker();
        } else {
            std::thread::scope(|scope| {
                for _ in 0..threads_now {
                    scope.spawn(worker);
                }
            });
        }
        let failed = slots
            .iter()
            .position(|slot| matches!(*lock(slot), Slot::Done(SearchEnd::NotLinearizable { .. })));
        let unknown =
            slots.iter().any(|slot| matches!(*lock(slot), Slot::Done(SearchEnd::Aborted(_))));
        if let Some(index) = failed {
            failed_partition_min.store(index, Ordering::Relaxed);
            break;
        }
        if unknown {
            break;
        }
        round_steps = round_steps.saturating_mul(2);
    }

    let mut results: Vec<(usize, PartResult)> = Vec::new();
    for (index, slot) in slots.iter_mut().enumerate() {
        let slot =
            std::mem::replace(slot.get_mut().unwrap_or_else(|p| p.into_inner()), Slot::Taken);
        let result = match slot {
            Slot::Done(SearchEnd::Linearizable) => PartResult::Linearizable,
            Slot::Done(SearchEnd::Aborted(Some(reason))) => PartResult::Unknown(reason),
            Slot::Done(SearchEnd::NotLinearizable { depth_max, .. }) => {
                let (key, operations) = &partitions[index];
                PartResult::NotLinearizable(Box::new(explain(
                    model,
                    key.as_deref(),
                    operations,
                    index,
                    depth_max,
                    &memory_bytes_used,
                )))
            }
            Slot::Done(SearchEnd::Aborted(None)) | Slot::Running(_) | Slot::Taken => {
                PartResult::Superseded
            }
        };
        results.push((index, result));
        if matches!(results.last(), Some((_, PartResult::NotLinearizable(_)))) {
            break;
        }
    }

    let mut verdict = Verdict::Linearizable;
    for (_, result) in results {
        match result {
            PartResult::NotLinearizable(counterexample) => {
                verdict = Verdict::NotLinearizable(counterexample);
                break;
            }
            PartResult::Unknown(reason) => {
                if verdict.is_linearizable() {
                    verdict = Verdict::Unknown(reason);
                }
            }
            PartResult::Linearizable | PartResult::Superseded => {}
        }
    }
    Report {
        verdict,
        operations_count,
        partitions_count,
        elapsed: started.elapsed(),
        steps_count: steps_total.load(Ordering::Relaxed),
        configurations_count: configurations_total.load(Ordering::Relaxed),
    }
}

enum PartResult {
    Linearizable,
    NotLinearizable(Box<Counterexample>),
    Unknown(String),
    Superseded,
}

type Partitions<'a, M> = Vec<(Option<String>, Vec<PartOperation<'a, M>>)>;

fn partition<'a, M: Model>(
    history: &'a History<M::Input, M::Output>,
    model: &M,
) -> Partitions<'a, M> {
    let mut operations = Vec::with_capacity(history.len());
    for (index, operation) in history.operations().iter().enumerate() {
        if operation.failed() {
            continue;
        }
        let return_time = match operation.output() {
            Some(_) => operation.completion_time.expect("a completed operation has a time"),
            None => u64::MAX,
        };
        operations.push(PartOperation {
            id: crate::history::OpId(index),
            process: operation.process,
            input: &operation.input,
            output: operation.output(),
            call_time: operation.call_time,
            return_time,
        });
    }
    let keys: Option<Vec<String>> =
        operations.iter().map(|operation| model.partition_key(operation.input)).collect();
    let Some(keys) = keys else {
        return vec![(None, operations)];
    };
    let mut by_key: BTreeMap<String, Vec<PartOperation<'a, M>>> = BTreeMap::new();
    for (operation, key) in operations.into_iter().zip(keys) {
        by_key.entry(key).or_default().push(operation);
    }
    by_key.into_iter().map(|(key, operations)| (Some(key), operations)).collect()
}

/// Searches a failed partition again, stopping at the first dead end of the greatest depth the
/// first search reached, and explains it.
fn explain<M: Model>(
    model: &M,
    key: Option<&str>,
    operations: &[PartOperation<'_, M>],
    index: usize,
    depth_max: usize,
    memory_bytes_used: &AtomicU64,
) -> Counterexample {
    let unlimited = Limits {
        steps_max: None,
        deadline: None,
        memory_bytes_max: None,
        memory_bytes_used,
        failed_partition_min: &AtomicUsize::new(usize::MAX),
        steps_total: &AtomicU64::new(0),
        configurations_total: &AtomicU64::new(0),
    };
    let mut search = Search::new(model, operations, index, Some(depth_max));
    match search.run(&unlimited, u64::MAX) {
        Some(SearchEnd::NotLinearizable { stuck: Some(stuck), .. }) => {
            counterexample::build(model, key, operations, &stuck)
        }
        _ => unreachable!("the search is deterministic: the second pass fails alike"),
    }
}

/// The first round's steps per partition; later rounds double it.
const ROUND_STEPS_FIRST: u64 = 1 << 14;

enum Slot<'o, 'a, M: Model> {
    Running(Box<Search<'o, 'a, M>>),
    Done(SearchEnd<M::State>),
    Taken,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
