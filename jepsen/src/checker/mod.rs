//! The linearizability checker: Wing-Gong-Lowe search with memoization, P-compositional.
//!
//! [`check`] splits a history by [`Model::partition_key`] (operations on different keys never
//! constrain each other), checks the parts in parallel with scoped threads, and returns one
//! [`Verdict`]. Failed operations are dropped; operations with an unknown outcome may take effect
//! at any time after their call, or never. The verdict is deterministic: partitions are ordered by
//! key, and the counterexample is always the one of the first failing partition in that order.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

mod counterexample;
mod memo;
mod search;

pub use counterexample::{Candidate, Counterexample, OperationView};

use crate::history::History;
use crate::model::Model;
use search::{Limits, PartOperation, SearchEnd};

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
    let limits = Limits {
        steps_max: budget.steps_max,
        deadline: budget.time_max.map(|time| started + time),
        memory_bytes_max: budget.memory_bytes_max,
        memory_bytes_used: &memory_bytes_used,
        failed_partition_min: &failed_partition_min,
    };
    let threads = if budget.threads == 0 {
        std::thread::available_parallelism().map_or(1, |count| count.get())
    } else {
        budget.threads
    }
    .min(partitions.len())
    .max(1);

    // Largest partitions first, for load balance; results are placed by partition index.
    let mut order: Vec<usize> = (0..partitions.len()).collect();
    order.sort_by_key(|&index| std::cmp::Reverse(partitions[index].1.len()));
    let cursor = AtomicUsize::new(0);
    let worker = || {
        let mut results = Vec::new();
        loop {
            let position = cursor.fetch_add(1, Ordering::Relaxed);
            let Some(&index) = order.get(position) else { break };
            if failed_partition_min.load(Ordering::Relaxed) < index {
                continue;
            }
            let (key, operations) = &partitions[index];
            let result = check_partition(model, key.as_deref(), operations, index, &limits);
            if matches!(result, PartResult::NotLinearizable(_)) {
                failed_partition_min.fetch_min(index, Ordering::Relaxed);
            }
            results.push((index, result));
        }
        results
    };
    let mut results: Vec<(usize, PartResult)> = if threads == 1 {
        worker()
    } else {
        std::thread::scope(|scope| {
            let handles: Vec<_> = (0..threads).map(|_| scope.spawn(worker)).collect();
            handles
                .into_iter()
                .flat_map(|handle| handle.join().expect("a checker thread panicked"))
                .collect()
        })
    };
    results.sort_by_key(|(index, _)| *index);

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
    Report { verdict, operations_count, partitions_count, elapsed: started.elapsed() }
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

fn check_partition<M: Model>(
    model: &M,
    key: Option<&str>,
    operations: &[PartOperation<'_, M>],
    index: usize,
    limits: &Limits<'_>,
) -> PartResult {
    match search::search(model, operations, index, limits, None) {
        SearchEnd::Linearizable => PartResult::Linearizable,
        SearchEnd::Aborted(Some(reason)) => PartResult::Unknown(reason),
        SearchEnd::Aborted(None) => PartResult::Superseded,
        SearchEnd::NotLinearizable { depth_max, .. } => {
            // Search again, stopping at the first dead end of the greatest depth reached.
            let unlimited = Limits {
                steps_max: None,
                deadline: None,
                memory_bytes_max: None,
                memory_bytes_used: limits.memory_bytes_used,
                failed_partition_min: &AtomicUsize::new(usize::MAX),
            };
            match search::search(model, operations, index, &unlimited, Some(depth_max)) {
                SearchEnd::NotLinearizable { stuck: Some(stuck), .. } => {
                    PartResult::NotLinearizable(Box::new(counterexample::build(
                        model, key, operations, &stuck,
                    )))
                }
                _ => unreachable!("the search is deterministic: the second pass fails alike"),
            }
        }
    }
}
