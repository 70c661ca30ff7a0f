//! The Wing-Gong-Lowe search over one partition, in the shape of Lowe's "just-in-time
//! linearization" and Porcupine: the operations with a known outcome form a doubly linked list of
//! call and return entries in time order. The search walks the list from its head; at a call it
//! tries to linearize that operation next (the model must accept it and the resulting (linearized
//! set, state) must be new), and if so lifts the call and its return out of the list and starts
//! again from the head. Reaching a return means that operation cannot be left out any longer; the
//! search then also tries the pending operations of unknown outcome called before that return (a
//! second list, tried last because they may always wait), and when none fits it backtracks,
//! undoing the last linearization. The history is linearizable when the list of known outcomes
//! empties (operations of unknown outcome left over simply never took effect), and not when the
//! search must backtrack past the start.
//!
//! A configuration is also not searched when one with fewer unknown outcomes taken and the same
//! state was: an unknown outcome may never take effect, so the smaller one can go every way this
//! one can. An unknown write that a later write overwrote is then searched once, not once per
//! subset of the unknown writes taken before it (etcd's histories: 622,509 steps to 35,143).

use std::borrow::Cow;
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
    /// Steps and visited configurations of finished searches, for reports.
    pub(crate) steps_total: &'a AtomicU64,
    pub(crate) configurations_total: &'a AtomicU64,
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
/// Up to this many unknown outcomes taken, a configuration is checked against every subset of
/// them left out (2^n - 1 lookups); past it, against each one left out alone.
const SUBSETS_CHECKED_UNKNOWNS_MAX: usize = 4;
const CHECK_EVERY: u64 = 1 << 12;
const _: () = assert!(CHECK_EVERY.is_power_of_two());

/// The search over one partition, resumable: [`Search::run`] takes a number of steps and either
/// finishes or pauses where it was, so partitions can be interleaved deterministically.
pub(crate) struct Search<'o, 'a, M: Model> {
    model: &'o M,
    operations: &'o [PartOperation<'a, M>],
    partition_index: usize,
    record_at_depth: Option<usize>,
    /// Main list: entry 0 is the head, then calls and returns in time order, `tail` last.
    tail: usize,
    entry_operation: Vec<u32>,
    entry_is_call: Vec<bool>,
    return_entry_of: Vec<u32>,
    /// Per operation: the model says it never changes the state.
    read_only: Vec<bool>,
    next: Vec<u32>,
    previous: Vec<u32>,
    /// Unknown-outcome list over operation indices, in call order; head `count`, tail `count+1`.
    info_next: Vec<u32>,
    info_previous: Vec<u32>,
    interner: Interner<M::State>,
    /// Per operation: the last state it was stepped from and the result (a one-entry memo).
    step_cache: Vec<(u32, u32)>,
    /// Every (state, operation) stepped so far, behind the one-entry cache.
    step_memo: FxMap<u64, u32>,
    visited: Visited,
    linearized: Linearized,
    /// The operations of unknown outcome in `linearized`, in the order they were taken.
    unknowns_taken: Vec<u32>,
    state: u32,
    stack: Vec<Frame>,
    depth_max: usize,
    steps: u64,
    memory_reported: u64,
    /// Cursor in the main list (phase 1) ...
    entry: usize,
    /// ... or in the unknown-outcome list (phase 2), bounded by the return entry `limit`.
    in_info_phase: bool,
    info_cursor: usize,
    limit: usize,
}

/// A linearized operation: how to undo it and where to resume.
#[derive(Clone, Copy)]
struct Frame {
    /// The call entry in the main list, or the operation index for an unknown outcome.
    item: u32,
    is_info: bool,
    /// A read-only operation taken as soon as it was legal: not a choice point.
    forced: bool,
    state: u32,
    /// For an unknown outcome: the return entry bounding phase 2 when it was chosen.
    limit: u32,
}

impl<'o, 'a, M: Model> Search<'o, 'a, M> {
    /// Prepares the search of one partition. With `record_at_depth`, the search stops at the
    /// first dead end at that depth and returns where it was (the depth is the maximum depth found
    /// by a first search).
    pub(crate) fn new(
        model: &'o M,
        operations: &'o [PartOperation<'a, M>],
        partition_index: usize,
        record_at_depth: Option<usize>,
    ) -> Self {
        let count = operations.len();
        assert!(count < (u32::MAX / 2) as usize - 2, "too many operations in one partition");
        let mut events: Vec<(u64, bool, u32)> = Vec::with_capacity(count * 2);
        let mut info_operations: Vec<u32> = Vec::new();
        for (index, operation) in operations.iter().enumerate() {
            assert!(operation.call_time < operation.return_time, "a return precedes its call");
            if operation.return_time == u64::MAX {
                // An unknown outcome that changes nothing need never take effect.
                if !model.is_read_only(operation.input, operation.output) {
                    info_operations.push(index as u32);
                }
                continue;
            }
            events.push((operation.call_time, false, index as u32));
            events.push((operation.return_time, true, index as u32));
        }
        events.sort_unstable();
        info_operations.sort_by_key(|&index| (operations[index as usize].call_time, index));
        let tail = events.len() + 1;
        let mut entry_operation = vec![0u32; tail + 1];
        let mut entry_is_call = vec![false; tail + 1];
        let mut return_entry_of = vec![0u32; count];
        for (position, &(_, is_return, operation)) in events.iter().enumerate() {
            let entry = position + 1;
            entry_operation[entry] = operation;
            entry_is_call[entry] = !is_return;
            if is_return {
                return_entry_of[operation as usize] = entry as u32;
            }
        }
        let mut next: Vec<u32> = (1..=tail as u32 + 1).collect();
        let mut previous: Vec<u32> = (0..=tail as u32).map(|entry| entry.wrapping_sub(1)).collect();
        next[tail] = tail as u32;
        previous[0] = 0;
        let (info_head, info_tail) = (count as u32, count as u32 + 1);
        let mut info_next = vec![info_tail; count + 2];
        let mut info_previous = vec![info_head; count + 2];
        let mut last = info_head;
        for &operation in &info_operations {
            info_next[last as usize] = operation;
            info_previous[operation as usize] = last;
            last = operation;
        }
        info_next[last as usize] = info_tail;
        info_previous[info_tail as usize] = last;
        let mut interner = Interner::new();
        let state = interner.intern(model.init());
        let entry = next[0] as usize;
        Self {
            model,
            operations,
            partition_index,
            record_at_depth,
            tail,
            entry_operation,
            entry_is_call,
            return_entry_of,
            read_only: operations
                .iter()
                .map(|operation| model.is_read_only(operation.input, operation.output))
                .collect(),
            next,
            previous,
            info_next,
            info_previous,
            interner,
            step_cache: vec![(NO_STATE, NO_STATE); count],
            step_memo: FxMap::with_capacity_and_hasher(count * 2, Default::default()),
            visited: Visited::with_capacity(count * 2),
            linearized: Linearized::new(
                &operations
                    .iter()
                    .map(|operation| operation.return_time == u64::MAX)
                    .collect::<Vec<_>>(),
            ),
            unknowns_taken: Vec::new(),
            state,
            stack: Vec::new(),
            depth_max: 0,
            steps: 0,
            memory_reported: 0,
            entry,
            in_info_phase: false,
            info_cursor: 0,
            limit: 0,
        }
    }

    fn memory_bytes(&self) -> u64 {
        (self.visited.bytes()
            + self.step_cache.capacity() * 8
            + self.step_memo.capacity() * 16
            + self.interner.len() * (2 * std::mem::size_of::<M::State>() + 16)
            + self.stack.capacity() * std::mem::size_of::<Frame>()) as u64
    }

    /// Releases this search's share of the memory count.
    fn finish(
        &mut self,
        limits: &Limits<'_>,
        end: SearchEnd<M::State>,
    ) -> Option<SearchEnd<M::State>> {
        limits.memory_bytes_used.fetch_sub(self.memory_reported, Ordering::Relaxed);
        self.memory_reported = 0;
        limits.steps_total.fetch_add(self.steps, Ordering::Relaxed);
        limits.configurations_total.fetch_add(self.visited.len() as u64, Ordering::Relaxed);
        Some(end)
    }

    /// The state after linearizing `operation` next, memoized; `NO_STATE` if the model refuses.
    #[inline]
    fn step(&mut self, operation: usize) -> u32 {
        self.step_from(self.state, operation)
    }

    /// The state after `operation` in `state`, memoized; `NO_STATE` if the model refuses.
    #[inline]
    fn step_from(&mut self, state: u32, operation: usize) -> u32 {
        let (cached_state, cached_next) = self.step_cache[operation];
        if cached_state == state {
            return cached_next;
        }
        let memo_key = (u64::from(state) << 32) | operation as u64;
        let next_state = match self.step_memo.get(&memo_key) {
            Some(&next_state) => next_state,
            None => {
                let part = &self.operations[operation];
                let next_state =
                    match self.model.step(self.interner.get(state), part.input, part.output) {
                        Some(Cow::Borrowed(_)) => state,
                        Some(Cow::Owned(next_state)) => self.interner.intern(next_state),
                        None => NO_STATE,
                    };
                self.step_memo.insert(memo_key, next_state);
                next_state
            }
        };
        self.step_cache[operation] = (state, next_state);
        next_state
    }

    /// Tries to linearize `operation`, of unknown outcome, next; on success records it as
    /// visited and moves there.
    #[inline]
    fn try_linearize_unknown(&mut self, operation: usize) -> Option<u32> {
        let next_state = self.step(operation);
        if next_state == NO_STATE {
            return None;
        }
        self.linearized.set(operation);
        self.unknowns_taken.push(operation as u32);
        if self.enter(next_state) {
            Some(next_state)
        } else {
            self.linearized.clear(operation);
            self.unknowns_taken.pop();
            None
        }
    }

    /// Records the configuration (`linearized`, `state`) as visited; returns false if it needs no
    /// search: it was visited, or one like it with fewer unknown outcomes taken and the same
    /// state was. That one dominates it: an unknown outcome may also never take effect, so every
    /// way on from here is a way on from there, and a visited configuration either failed or is
    /// an ancestor still trying its other ways on.
    #[inline]
    fn enter(&mut self, state: u32) -> bool {
        if !self.visited.insert(&mut self.linearized, state) {
            return false;
        }
        let count = self.unknowns_taken.len();
        if count == 0 {
            return true;
        }
        // Every subset of a few unknown outcomes; beyond that, each one alone (the check runs on
        // every step, and a pending write that never took effect is the usual case).
        let dominated = if count <= SUBSETS_CHECKED_UNKNOWNS_MAX {
            (1..1u32 << count)
                .any(|mask| self.visited_without(state, |index| mask >> index & 1 == 1))
        } else {
            (0..count).any(|removed| self.visited_without(state, |index| index == removed))
        };
        !dominated
    }

    /// Whether (`linearized` without the unknown outcomes taken whose positions `removed` picks,
    /// `state`) was visited.
    fn visited_without(&mut self, state: u32, removed: impl Fn(usize) -> bool) -> bool {
        for (index, &operation) in self.unknowns_taken.iter().enumerate() {
            if removed(index) {
                self.linearized.clear(operation as usize);
            }
        }
        let visited = self.visited.contains(&mut self.linearized, state);
        for (index, &operation) in self.unknowns_taken.iter().enumerate() {
            if removed(index) {
                self.linearized.set(operation as usize);
            }
        }
        visited
    }

    /// Runs until the search ends (`Some`) or `steps_count` more steps are taken (`None`).
    pub(crate) fn run(
        &mut self,
        limits: &Limits<'_>,
        steps_count: u64,
    ) -> Option<SearchEnd<M::State>> {
        let tail = self.tail;
        if self.next[0] as usize == tail {
            return self.finish(limits, SearchEnd::Linearizable);
        }
        let info_tail = self.operations.len() + 1;
        let steps_end = self.steps.saturating_add(steps_count);
        loop {
            self.steps += 1;
            if self.steps & (CHECK_EVERY - 1) == 0 {
                let memory = self.memory_bytes();
                limits
                    .memory_bytes_used
                    .fetch_add(memory.wrapping_sub(self.memory_reported), Ordering::Relaxed);
                self.memory_reported = memory;
                if let Some(reason) = exceeded(limits, self.steps, self.visited.len()) {
                    return self.finish(limits, SearchEnd::Aborted(Some(reason)));
                }
                if limits.failed_partition_min.load(Ordering::Relaxed) < self.partition_index {
                    return self.finish(limits, SearchEnd::Aborted(None));
                }
            }
            if self.steps >= steps_end {
                return None;
            }
            if !self.in_info_phase {
                let entry = self.entry;
                if !self.entry_is_call[entry] {
                    // A return: only operations of unknown outcome called before it remain.
                    self.in_info_phase = true;
                    self.limit = entry;
                    self.info_cursor = self.info_next[self.operations.len()] as usize;
                    continue;
                }
                let operation = self.entry_operation[entry] as usize;
                let next_state = self.step(operation);
                if next_state == NO_STATE {
                    self.entry = self.next[entry] as usize;
                    continue;
                }
                // A read-only operation legal now can go first in any linearization from here
                // (it is pending, so nothing still pending returned before its call, and it
                // changes no state): take it without making it a choice point. If that leads to
                // a configuration already explored, this whole node fails.
                let forced = self.read_only[operation];
                self.linearized.set(operation);
                if !self.enter(next_state) {
                    self.linearized.clear(operation);
                    if forced {
                        if !self.backtrack() {
                            let depth_max = self.depth_max;
                            return self.finish(
                                limits,
                                SearchEnd::NotLinearizable { depth_max, stuck: None },
                            );
                        }
                    } else {
                        self.entry = self.next[entry] as usize;
                    }
                    continue;
                }
                self.stack.push(Frame {
                    item: entry as u32,
                    is_info: false,
                    forced,
                    state: self.state,
                    limit: 0,
                });
                self.state = next_state;
                let ret = self.return_entry_of[operation] as usize;
                lift(&mut self.next, &mut self.previous, entry, ret);
                if self.next[0] as usize == tail {
                    return self.finish(limits, SearchEnd::Linearizable);
                }
                self.entry = self.next[0] as usize;
                continue;
            }
            let operation = self.info_cursor;
            let limit_time = self.operations[self.entry_operation[self.limit] as usize].return_time;
            if operation != info_tail && self.operations[operation].call_time < limit_time {
                // Right after another unknown outcome X: if this one leads to the same state
                // whether X took effect or not, X was pointless here, and the branch that skips X
                // (taken at the node before X) covers this one.
                if let Some(&Frame { is_info: true, state: before, .. }) = self.stack.last() {
                    let next_state = self.step(operation);
                    if next_state != NO_STATE && self.step_from(before, operation) == next_state {
                        self.info_cursor = self.info_next[operation] as usize;
                        continue;
                    }
                }
                if let Some(next_state) = self.try_linearize_unknown(operation) {
                    self.stack.push(Frame {
                        item: operation as u32,
                        is_info: true,
                        forced: false,
                        state: self.state,
                        limit: self.limit as u32,
                    });
                    self.state = next_state;
                    info_lift(&mut self.info_next, &mut self.info_previous, operation);
                    self.in_info_phase = false;
                    self.entry = self.next[0] as usize;
                } else {
                    self.info_cursor = self.info_next[operation] as usize;
                }
                continue;
            }
            // Nothing can be linearized before the return at `limit`: backtrack.
            let depth = self.stack.len();
            self.depth_max = self.depth_max.max(depth);
            if self.record_at_depth == Some(depth) {
                let stuck = self.stuck_here();
                return self.finish(
                    limits,
                    SearchEnd::NotLinearizable { depth_max: depth, stuck: Some(stuck) },
                );
            }
            if !self.backtrack() {
                let depth_max = self.depth_max;
                return self.finish(limits, SearchEnd::NotLinearizable { depth_max, stuck: None });
            }
        }
    }

    /// Undoes the last choice and moves the cursor past it; forced frames are undone on the way
    /// (they were no choice). Returns false when there is nothing left to undo.
    fn backtrack(&mut self) -> bool {
        loop {
            let Some(frame) = self.stack.pop() else { return false };
            self.state = frame.state;
            if frame.is_info {
                let operation = frame.item as usize;
                self.linearized.clear(operation);
                let taken_last = self.unknowns_taken.pop();
                assert_eq!(taken_last, Some(frame.item), "unknown outcomes are undone in order");
                info_unlift(&mut self.info_next, &mut self.info_previous, operation);
                self.in_info_phase = true;
                self.limit = frame.limit as usize;
                self.info_cursor = self.info_next[operation] as usize;
            } else {
                let call = frame.item as usize;
                let operation = self.entry_operation[call] as usize;
                self.linearized.clear(operation);
                let ret = self.return_entry_of[operation] as usize;
                unlift(&mut self.next, &mut self.previous, call, ret);
                self.in_info_phase = false;
                self.entry = self.next[call] as usize;
            }
            if !frame.forced {
                return true;
            }
        }
    }

    /// The dead end the search is at: prefix, state and every candidate before the return at
    /// `limit`.
    fn stuck_here(&self) -> Stuck<M::State> {
        let mut candidates = Vec::new();
        let mut cursor = self.next[0] as usize;
        while cursor != self.limit {
            if self.entry_is_call[cursor] {
                candidates.push(self.entry_operation[cursor] as usize);
            }
            cursor = self.next[cursor] as usize;
        }
        let blocking = self.entry_operation[self.limit] as usize;
        let limit_time = self.operations[blocking].return_time;
        let mut operation = self.info_next[self.operations.len()] as usize;
        while operation != self.operations.len() + 1
            && self.operations[operation].call_time < limit_time
        {
            candidates.push(operation);
            operation = self.info_next[operation] as usize;
        }
        Stuck {
            prefix: self
                .stack
                .iter()
                .map(|frame| {
                    if frame.is_info {
                        frame.item as usize
                    } else {
                        self.entry_operation[frame.item as usize] as usize
                    }
                })
                .collect(),
            state: self.interner.get(self.state).clone(),
            candidates,
            blocking,
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

#[inline]
fn info_lift(next: &mut [u32], previous: &mut [u32], operation: usize) {
    let (before, after) = (previous[operation], next[operation]);
    next[before as usize] = after;
    previous[after as usize] = before;
}

#[inline]
fn info_unlift(next: &mut [u32], previous: &mut [u32], operation: usize) {
    let (before, after) = (previous[operation], next[operation]);
    next[before as usize] = operation as u32;
    previous[after as usize] = operation as u32;
}
