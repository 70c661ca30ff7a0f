//! The leader's view of one follower: how far its log matches, what to send next, and the
//! window of appends in flight (flow control).
//!
//! Invariant: `match_index < next_index`. In `Probe` state at most one append is outstanding;
//! in `Replicate` state appends are pipelined until the in-flight window (count and bytes) is full;
//! in `Snapshot` state no append goes out while the snapshot streams in chunks: at most one chunk
//! is asked of the application at a time, and at most `snapshot_chunks_inflight_max` chunks are
//! sent and unacknowledged.

use crate::wire::SnapshotMeta;
use std::collections::VecDeque;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProgressState {
    /// The leader does not yet know where the follower's log matches; one append at a time.
    Probe,
    /// The follower's log matches up to `match_index`; appends stream optimistically.
    Replicate,
    /// The follower needs entries the leader compacted: a snapshot streams to it.
    Snapshot,
}

/// The leader's side of one snapshot transfer to one follower.
#[derive(Clone, Debug)]
pub(crate) struct SnapshotTransfer {
    pub(crate) meta: SnapshotMeta,
    /// The follower holds bytes `0..acknowledged`.
    pub(crate) acknowledged: u64,
    /// The next byte to ask the application for.
    pub(crate) next_offset: u64,
    /// A chunk was asked of the application and not yet given.
    pub(crate) requested: bool,
    /// Ends of the chunks sent and not yet acknowledged.
    pub(crate) inflight: VecDeque<u64>,
    /// The last chunk went out.
    pub(crate) done_sent: bool,
    /// Ticks since the follower last acknowledged more bytes.
    pub(crate) idle_ticks: u32,
}

impl SnapshotTransfer {
    pub(crate) fn new(meta: SnapshotMeta) -> SnapshotTransfer {
        SnapshotTransfer {
            meta,
            acknowledged: 0,
            next_offset: 0,
            requested: false,
            inflight: VecDeque::new(),
            done_sent: false,
            idle_ticks: 0,
        }
    }

    /// Resends from `offset`, what the follower says it holds.
    pub(crate) fn rewind(&mut self, offset: u64) {
        self.acknowledged = offset;
        self.next_offset = offset;
        self.requested = false;
        self.inflight.clear();
        self.done_sent = false;
        self.idle_ticks = 0;
    }

    /// The follower holds `0..offset`.
    pub(crate) fn acknowledge(&mut self, offset: u64) {
        if offset > self.acknowledged {
            self.acknowledged = offset;
            self.idle_ticks = 0;
        }
        while self.inflight.front().is_some_and(|&end| end <= offset) {
            self.inflight.pop_front();
        }
    }

    /// May the next chunk be asked of the application?
    pub(crate) fn wants_chunk(&self, inflight_max: u64) -> bool {
        !self.requested && !self.done_sent && (self.inflight.len() as u64) < inflight_max
    }
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
    /// In `Snapshot` state: the transfer under way.
    pub(crate) transfer: Option<SnapshotTransfer>,
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
            transfer: None,
        }
    }

    pub(crate) fn is_paused(&self, inflight_count_max: u64, inflight_bytes_max: u64) -> bool {
        match self.state {
            ProgressState::Probe => self.probe_sent,
            ProgressState::Snapshot => true,
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
            ProgressState::Snapshot => unreachable!("no append goes out during a snapshot"),
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
        self.transfer = None;
        self.clear_inflight();
    }

    pub(crate) fn become_probe(&mut self, next_index: u64) {
        assert!(next_index > self.match_index, "probe would go at or below match");
        self.state = ProgressState::Probe;
        self.next_index = next_index;
        self.probe_sent = false;
        self.transfer = None;
        self.clear_inflight();
    }

    pub(crate) fn become_snapshot(&mut self, meta: SnapshotMeta) {
        assert!(meta.index > self.match_index, "snapshot {} at or below match", meta.index);
        self.state = ProgressState::Snapshot;
        self.next_index = meta.index + 1;
        self.probe_sent = false;
        self.transfer = Some(SnapshotTransfer::new(meta));
        self.clear_inflight();
    }

    fn clear_inflight(&mut self) {
        self.inflight.clear();
        self.inflight_bytes = 0;
    }
}
