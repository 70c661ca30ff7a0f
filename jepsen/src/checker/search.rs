//! The Wing-Gong-Lowe search over one partition, in the shape of Lowe's "just-in-time
//! linearization" and Porcupine: the history is a doubly linked list of call and return entries in
//! time order. The search walks the list from its head; at a call it tries to linearize that
//! operation next (the model must accept it and the resulting (linearized set, state) must be new),
//! and if so lifts the call and its return out of the list and starts again from the head. Reaching
//! a return means that operation cannot be left out any longer: the search backtracks, undoing the
//! last linearization. The history is linearizable when the list empties, and not when the search
//! must backtrack past the start.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Instant;

use super::memo::{FxMap, Interner, Linearized, Visited};
use crate::history::OpId;
use crate::model::Model;

/// One operation of a partition, ready for the search.
pub(crate) struct PartOperation<'a, M: Model> {
    pub(crate) id: OpId,
    pub(crate) process: u64,
    pub(crate) input: &'a M::Input,
    pub(crate) output: Option<&'a M::Output>,
    pub(crate) call_time: u64,
    /// `u64::MAX` when the outcome is unknown: it may take effect any time after its call.
    pub(crate) return_time: u64,
}

/// What stops a search early, shared by every partition of one check.
pub(crate) struct Limits<'a> {
    pub(crate) steps_max: Option<u64>,
    pub(crate) deadline: Option<Instant>,
    pub(crate) memory_bytes_max: Option<u64>,
    pub(crate) memory_bytes_used: &'a AtomicU64,
    /// The smallest index of a partition found not linearizable so far (`usize::MAX`: none).
    pub(crate) failed_partition_min: &'a AtomicUsize,
}

/// Where the search got stuck at its deepest: the linearized prefix, the state after it, and the
/// operations it tried next (calls before the first return still in the list).
pub(crate) struct Stuck<S> {
    pub(crate) prefix: Vec<usize>,
    pub(crate) state: S,
    pub(crate) candidates: Vec<usize>,
    /// The operation whose return ended the attempt: it had to be linearized by then.
    pub(crate) blocking: usize,
}

pub(crate) enum SearchEnd<S> {
    Linearizable,
    NotLinearizable {
        depth_max: usize,
        stuck: Option<Stuck<S>>,
    },
    /// Stopped by a limit (the reason), or because a partition before this one failed (`None`).
    Aborted(Option<String>),
}

const NO_STATE: u32 = u32::MAX;
const CHECK_EVERY: u64 = 1 << 12;

/// Searches one partition. With `record_at_depth`, stops at the first dead end at that depth and
/// returns where it was (the depth is the maximum depth found by a first search).
pub(crate) fn search<M: Model>(
    model: &M,
    operations: &[PartOperation<'_, M>],
    partition_index: usize,
    limits: &Limits<'_>,
    record_at_depth: Option<usize>,
) -> SearchEnd<M::State> {
    let count = operations.len();
    if count == 0 {
        return SearchEnd::Linearizable;
    }
    assert!(count < (u32::MAX / 2) as usize - 1, "too many operations in one partition");
    // Entries: 0 is the head, 1..=2n the calls and returns in time order, 2n+1 the tail.
    let mut events: Vec<(u64, bool, u32)> = Vec::with_capacity(count * 2);
    for (index, operation) in operations.iter().enumerate() {
        assert!(operation.call_time < operation.return_time, "an operation returns after its call");
        events.push((operation.call_time, false, index as u32));
        events.push((operation.return_time, true, index as u32));
    }
    // Unknown returns share the time u64::MAX: order them by operation; calls before returns.
    events.sort_unstable();
    let tail = count * 2 + 1;
    let mut entry_operation = vec![0u32; tail + 1];
    let mut entry_is_call = vec![false; tail + 1];
    let mut return_entry_of = vec![0u32; count];
    let mut call_entry_of = vec![0u32; count];
    for (position, &(_, is_return, operation)) in events.iter().enumerate() {
        let entry = position + 1;
        entry_operation[entry] = operation;
        entry_is_call[entry] = !is_return;
        if is_return {
            return_entry_of[operation as usize] = entry as u32;
        } else {
            call_entry_of[operation as usize] = entry as u32;
        }
    }
    drop(events);
    let mut next: Vec<u32> = (1..=tail as u32 + 1).collect();
    let mut previous: Vec<u32> = (0..=tail as u32).map(|entry| entry.wrapping_sub(1)).collect();
    next[tail] = tail as u32;
    previous[0] = 0;

    let mut interner: Interner<M::State> = Interner::new();
    let mut step_memo: FxMap<u64, u32> = FxMap::default();
    let mut visited = Visited::new();
    let mut linearized = Linearized::new(count);
    let mut state = interner.intern(model.init());
    // (call entry, state before it)
    let mut stack: Vec<(u32, u32)> = Vec::new();
    let mut depth_max = 0usize;
    let mut steps = 0u64;
    let mut memory_reported = 0u64;
    let mut entry = next[0] as usize;

    loop {
        steps += 1;
        if steps % CHECK_EVERY == 0 {
            let memory = (visited.bytes()
                + step_memo.capacity() * 16
                + interner.len() * (2 * std::mem::size_of::<M::State>() + 16)
                + stack.capacity() * 8) as u64;
            limits
                .memory_bytes_used
                .fetch_add(memory.wrapping_sub(memory_reported), Ordering::Relaxed);
            memory_reported = memory;
            if let Some(reason) = exceeded(limits, steps, visited.len()) {
                limits.memory_bytes_used.fetch_sub(memory_reported, Ordering::Relaxed);
                return SearchEnd::Aborted(Some(reason));
            }
            if limits.failed_partition_min.load(Ordering::Relaxed) < partition_index {
                limits.memory_bytes_used.fetch_sub(memory_reported, Ordering::Relaxed);
                return SearchEnd::Aborted(None);
            }
        }
        if entry_is_call[entry] {
            let operation = entry_operation[entry] as usize;
            let memo_key = (u64::from(state) << 32) | operation as u64;
            let next_state = match step_memo.get(&memo_key) {
                Some(&next_state) => next_state,
                None => {
                    let part = &operations[operation];
                    let next_state = match model.step(interner.get(state), part.input, part.output)
                    {
                        Some(next_state) => interner.intern(next_state),
                        None => NO_STATE,
                    };
                    step_memo.insert(memo_key, next_state);
                    next_state
                }
            };
            if next_state != NO_STATE {
                linearized.set(operation);
                if visited.insert(&mut linearized, next_state) {
                    stack.push((entry as u32, state));
                    state = next_state;
                    lift(&mut next, &mut previous, entry, return_entry_of[operation] as usize);
                    if next[0] as usize == tail {
                        limits.memory_bytes_used.fetch_sub(memory_reported, Ordering::Relaxed);
                        return SearchEnd::Linearizable;
                    }
                    entry = next[0] as usize;
                    continue;
                }
                linearized.clear(operation);
            }
            entry = next[entry] as usize;
        } else {
            let depth = stack.len();
            depth_max = depth_max.max(depth);
            if record_at_depth == Some(depth) {
                let mut candidates = Vec::new();
                let mut cursor = next[0] as usize;
                while cursor != entry {
                    if entry_is_call[cursor] {
                        candidates.push(entry_operation[cursor] as usize);
                    }
                    cursor = next[cursor] as usize;
                }
                let prefix = stack
                    .iter()
                    .map(|&(call, _)| entry_operation[call as usize] as usize)
                    .collect();
                limits.memory_bytes_used.fetch_sub(memory_reported, Ordering::Relaxed);
                return SearchEnd::NotLinearizable {
                    depth_max: depth,
                    stuck: Some(Stuck {
                        prefix,
                        state: interner.get(state).clone(),
                        candidates,
                        blocking: entry_operation[entry] as usize,
                    }),
                };
            }
            let Some((call, previous_state)) = stack.pop() else {
                limits.memory_bytes_used.fetch_sub(memory_reported, Ordering::Relaxed);
                return SearchEnd::NotLinearizable { depth_max, stuck: None };
            };
            let call = call as usize;
            let operation = entry_operation[call] as usize;
            linearized.clear(operation);
            state = previous_state;
            unlift(&mut next, &mut previous, call, return_entry_of[operation] as usize);
            entry = next[call] as usize;
        }
    }
}

fn exceeded(limits: &Limits<'_>, steps: u64, visited_count: usize) -> Option<String> {
    if let Some(steps_max) = limits.steps_max {
        if steps > steps_max {
            return Some(format!("step budget of {steps_max} exceeded in one partition"));
        }
    }
    if let Some(memory_max) = limits.memory_bytes_max {
        let used = limits.memory_bytes_used.load(Ordering::Relaxed);
        if used > memory_max {
            return Some(format!(
                "memory budget of {} MiB exceeded (memo ~{} MiB, {visited_count} configurations \
                 in this partition)",
                memory_max >> 20,
                used >> 20
            ));
        }
    }
    if let Some(deadline) = limits.deadline {
        if Instant::now() > deadline {
            return Some(format!(
                "time budget exceeded after {steps} steps, {visited_count} configurations in this \
                 partition"
            ));
        }
    }
    None
}

#[inline]
fn lift(next: &mut [u32], previous: &mut [u32], call: usize, ret: usize) {
    for entry in [call, ret] {
        let (before, after) = (previous[entry], next[entry]);
        next[before as usize] = after;
        previous[after as usize] = before;
    }
}

#[inline]
fn unlift(next: &mut [u32], previous: &mut [u32], call: usize, ret: usize) {
    for entry in [ret, call] {
        let (before, after) = (previous[entry], next[entry]);
        next[before as usize] = entry as u32;
        previous[after as usize] = entry as u32;
    }
}
