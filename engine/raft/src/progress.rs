//! The leader's view of one follower: how far its log matches, what to send next, and the
//! window of appends in flight (flow control).
//!
//! Invariant: `match_index < next_index`. In `Probe` state at most one append is outstanding;
//! in `Replicate` state appends are pipelined until the in-flight window (count and bytes) is full.

use std::collections::VecDeque;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProgressState {
    /// The leader does not yet know where the follower's log matches; one append at a time.
    Probe,
    /// The follower's log matches up to `match_index`; appends stream optimistically.
    Replicate,
}

#[derive(Clone, Debug)]
pub(crate) struct Progress {
    pub(crate) match_index: u64,
    pub(crate) next_index: u64,
    pub(crate) state: ProgressState,
    /// In `Probe`: an append was sent and no answer came yet.
    pub(crate) probe_sent: bool,
    /// Appends in flight: the last index each carried and its size in bytes.
    inflight: VecDeque<(u64, u64)>,
    inflight_bytes: u64,
    /// Heard from since the last check-quorum round.
    pub(crate) recent_active: bool,
    /// The highest ReadIndex round this follower acknowledged in the current term.
    pub(crate) read_acknowledged: u64,
}

impl Progress {
    pub(crate) fn new(next_index: u64) -> Progress {
        assert!(next_index >= 1);
        Progress {
            match_index: 0,
            next_index,
            state: ProgressState::Probe,
            probe_sent: false,
            inflight: VecDeque::new(),
            inflight_bytes: 0,
            recent_active: true,
            read_acknowledged: 0,
        }
    }

    pub(crate) fn is_paused(&self, inflight_count_max: u64, inflight_bytes_max: u64) -> bool {
        match self.state {
            ProgressState::Probe => self.probe_sent,
            ProgressState::Replicate => {
                self.inflight.len() as u64 >= inflight_count_max
                    || self.inflight_bytes >= inflight_bytes_max
            }
        }
    }

    /// Records an append of entries ending at `last_index` and `size_bytes` in total.
    pub(crate) fn sent(&mut self, last_index: Option<u64>, size_bytes: u64) {
        match self.state {
            ProgressState::Probe => self.probe_sent = true,
            ProgressState::Replicate => {
                if let Some(last_index) = last_index {
                    assert!(last_index >= self.next_index, "sent entries behind next_index");
                    self.next_index = last_index + 1;
                    self.inflight.push_back((last_index, size_bytes));
                    self.inflight_bytes += size_bytes;
                }
            }
        }
    }

    /// A success response up to `index`; `false` if it was stale.
    pub(crate) fn update(&mut self, index: u64) -> bool {
        while let Some(&(last, bytes)) = self.inflight.front() {
            if last > index {
                break;
            }
            self.inflight.pop_front();
            self.inflight_bytes -= bytes;
        }
        if index <= self.match_index {
            return false;
        }
        self.match_index = index;
        self.next_index = self.next_index.max(index + 1);
        // Only progress unpauses a probe: a stale answer must not trigger a resend, or
        // duplicated answers would multiply appends.
        self.probe_sent = false;
        true
    }

    pub(crate) fn free_first_inflight(&mut self) {
        if let Some((_, bytes)) = self.inflight.pop_front() {
            self.inflight_bytes -= bytes;
        }
    }

    pub(crate) fn become_replicate(&mut self) {
        self.state = ProgressState::Replicate;
        self.next_index = self.match_index + 1;
        self.probe_sent = false;
        self.clear_inflight();
    }

    pub(crate) fn become_probe(&mut self, next_index: u64) {
        assert!(next_index > self.match_index, "probe would go at or below match");
        self.state = ProgressState::Probe;
        self.next_index = next_index;
        self.probe_sent = false;
        self.clear_inflight();
    }

    fn clear_inflight(&mut self) {
        self.inflight.clear();
        self.inflight_bytes = 0;
    }
}
