//! `RawNode`: the application's handle on one Raft group, raft-rs style.
//!
//! The driver loop: feed `tick()`, `step(message)`, `propose(data)` and `read_index(context)`;
//! when `has_ready()`, take `ready()` and perform it in this order:
//!
//! 1. send `ready.messages` (they need nothing durable first); start reading the chunks of
//!    `ready.snapshot_requests` (answer each through `snapshot_chunk`, now or later);
//! 2. persist `ready.entries` (truncating the stored log from the first entry's index, then
//!    appending), `ready.hard_state` and the chunks of `ready.snapshot_chunks` (to the staging
//!    area of their snapshot), and sync: atomically, or entries first (the stored commit index
//!    must never point past the stored log);
//! 3. send `ready.persisted_messages` (votes and acknowledgements promise what is now durable);
//! 4. apply `ready.committed_entries` in order; answer `ready.read_states` once applied;
//! 5. call `advance()`; if a chunk of step 2 was `done`, install its snapshot into the state
//!    machine and call `snapshot_installed(meta)`.
//!
//! A crash anywhere in 1-5 is safe as long as what step 2 wrote is either durable or not
//! acknowledged. Committed entries are only handed out once durable on this replica.
//!
//! Compaction: once the state machine has a durable snapshot at applied index `i`, call
//! `compact(i)` and store the returned `SnapshotMeta` with it; entries up to `i` may then be
//! dropped from storage. A restart passes the snapshot's meta to `new_with_snapshot`.

use crate::membership::{ConfChange, Membership};
use crate::raft::Raft;
use crate::wire::SnapshotMeta;
use crate::wire::{Entry, HardState, Message, MessageBody};
use crate::{Config, Error, ReadState, Role, SnapshotChunk, SnapshotRequest};
use strata_rt::NodeId;

/// What the application must do next; see the module documentation for the order.
#[derive(Debug, Default)]
pub struct Ready {
    /// Changed hard state to persist, after `entries`.
    pub hard_state: Option<HardState>,
    /// Entries to persist: drop stored entries from `entries[0].index` on, then append these.
    pub entries: Vec<Entry>,
    /// Messages to send at once.
    pub messages: Vec<Message>,
    /// Messages to send only after `entries` and `hard_state` are durable.
    pub persisted_messages: Vec<Message>,
    /// Committed, durable entries to apply, in order.
    pub committed_entries: Vec<Entry>,
    /// Confirmed ReadIndex requests: serve each once applied up to its `index`.
    pub read_states: Vec<ReadState>,
    /// Leader: snapshot chunks to read from the state machine's snapshot and hand back through
    /// `RawNode::snapshot_chunk` (at once or later; at most one per follower at a time).
    pub snapshot_requests: Vec<SnapshotRequest>,
    /// Follower: snapshot chunks received, to write to the staging area of their snapshot
    /// (durably, with step 2 below: `persisted_messages` acknowledge them). After a `done` one,
    /// and after `advance`, install the staged snapshot and call `RawNode::snapshot_installed`.
    pub snapshot_chunks: Vec<SnapshotChunk>,
}

#[derive(Debug)]
struct Handed {
    last_entry: Option<(u64, u64)>,
    hard_state: Option<HardState>,
    applied: Option<u64>,
}

/// One replica of one Raft group.
#[derive(Debug)]
pub struct RawNode {
    raft: Raft,
    hard_state_persisted: HardState,
    handed: Option<Handed>,
}

impl RawNode {
    /// A replica restored from what it persisted: its hard state and its log (entries from index
    /// 1, contiguous). `applied` is how far the state machine already applied (0 if it is rebuilt
    /// from the log). A new replica passes `HardState::default()` and no entries.
    pub fn new(
        config: Config,
        hard_state: HardState,
        entries: Vec<Entry>,
        applied: u64,
    ) -> Result<RawNode, Error> {
        RawNode::new_with_snapshot(config, SnapshotMeta::default(), hard_state, entries, applied)
    }

    /// A replica restored from a snapshot and what it persisted after it: `entries` follow
    /// `snapshot.index` contiguously, and the state machine holds at least the snapshot
    /// (`applied >= snapshot.index`; a smaller value is raised to it). The configuration is the
    /// snapshot's, updated by the membership entries of `entries`. `snapshot.index == 0` means no
    /// snapshot: the same as [`RawNode::new`].
    pub fn new_with_snapshot(
        config: Config,
        snapshot: SnapshotMeta,
        hard_state: HardState,
        entries: Vec<Entry>,
        applied: u64,
    ) -> Result<RawNode, Error> {
        config.validate()?;
        if snapshot.index > 0 && snapshot.membership.validate().is_err() {
            return Err(Error::InvalidState { reason: "snapshot membership is invalid" });
        }
        let contiguous = entries
            .iter()
            .enumerate()
            .all(|(position, entry)| entry.index == snapshot.index + 1 + position as u64);
        if !contiguous {
            return Err(Error::InvalidState { reason: "entries do not follow the snapshot" });
        }
        let last_index = snapshot.index + entries.len() as u64;
        if hard_state.commit > last_index {
            return Err(Error::InvalidState { reason: "commit index past the log" });
        }
        if applied > hard_state.commit.max(snapshot.index) {
            return Err(Error::InvalidState { reason: "applied index past the commit index" });
        }
        let raft = Raft::new(config, snapshot, hard_state, entries, applied);
        let hard_state_persisted = hard_state;
        Ok(RawNode { raft, hard_state_persisted, handed: None })
    }

    /// Advances logical time by one tick: election and heartbeat timers.
    pub fn tick(&mut self) {
        self.raft.tick();
    }

    /// Feeds a message from a peer.
    pub fn step(&mut self, message: Message) -> Result<(), Error> {
        self.raft.step(message)
    }

    /// Appends `data` to the log if this replica leads; returns the entry's index. The entry is
    /// committed once it shows up in `Ready::committed_entries` with the same index and term.
    pub fn propose(&mut self, data: Vec<u8>) -> Result<u64, Error> {
        self.raft.propose(data)
    }

    /// Appends a membership change if this replica leads; returns the entry's index. The change
    /// takes effect at once (quorums follow it from now on). If it changes the voters, the group
    /// passes through a joint configuration that the leader leaves by itself once it committed.
    /// One change at a time: `ConfChangeError::ChangePending` until the previous one (and its
    /// leave) committed.
    pub fn propose_conf_change(&mut self, change: ConfChange) -> Result<u64, Error> {
        self.raft.propose_conf_change(change)
    }

    /// Compacts the log up to `index`, which the state machine's snapshot covers (so at most
    /// the applied index). Returns the meta to store with that snapshot: persist both durably,
    /// then drop stored entries at or below `meta.index`; restart with
    /// [`RawNode::new_with_snapshot`]. The leader streams this snapshot to followers that need
    /// compacted entries (see `Ready::snapshot_requests`), so keep it readable until the next
    /// compaction. Compacting at or below an earlier compaction changes nothing and returns the
    /// current meta.
    pub fn compact(&mut self, index: u64) -> Result<SnapshotMeta, Error> {
        self.raft.compact(index)
    }

    /// The snapshot the in-memory log starts after (index 0: none).
    pub fn snapshot_meta(&self) -> SnapshotMeta {
        self.raft.snapshot_meta()
    }

    /// Answers a `SnapshotRequest`: `data` is up to `length_max` bytes of snapshot `meta` at
    /// `offset`, `done` if they reach its end (an empty `done` chunk if `offset` is the end). A
    /// non-final chunk must not be empty. Answers no longer wanted are dropped silently.
    pub fn snapshot_chunk(
        &mut self,
        to: NodeId,
        meta: &SnapshotMeta,
        offset: u64,
        data: Vec<u8>,
        done: bool,
    ) -> Result<(), Error> {
        self.raft.snapshot_chunk(to, meta, offset, data, done)
    }

    /// Reports that the state machine now holds snapshot `meta` (received through
    /// `Ready::snapshot_chunks`), durably. Call between `advance` and the next `ready`; committed
    /// entries at or below `meta.index` handed out earlier and not applied yet must be skipped.
    /// The log restarts after `meta.index`: afterwards keep only stored entries above
    /// `meta.index` and up to `last_index()` (entries that followed the snapshot's last entry
    /// in this log are kept, anything else conflicted with it), and persist `meta` as the
    /// snapshot to restart from.
    pub fn snapshot_installed(&mut self, meta: SnapshotMeta) -> Result<(), Error> {
        assert!(self.handed.is_none(), "snapshot_installed() between ready() and advance()");
        self.raft.snapshot_installed(meta)
    }

    /// Starts a linearizable read: once a quorum confirms this replica still leads, a
    /// `ReadState` with the same `context` appears in a `Ready` (at once while a lease holds,
    /// with `Config::lease_reads`). Requests are dropped if
    /// leadership is lost first; the caller retries on a timeout.
    pub fn read_index(&mut self, context: u64) -> Result<(), Error> {
        self.raft.read_index(context)
    }

    /// With `Config::lease_reads`: whether this leader's lease holds now, so that `read_index`
    /// is answered at once.
    pub fn has_lease(&self) -> bool {
        self.raft.lease_valid()
    }

    /// Hands leadership to `target` once its log is caught up; proposals are refused meanwhile.
    /// Abandoned after an election timeout.
    pub fn transfer_leader(&mut self, target: NodeId) -> Result<(), Error> {
        self.raft.transfer_leader(target)
    }

    /// Starts an election now, as if the election timer fired.
    pub fn campaign(&mut self) {
        self.raft.campaign_now();
    }

    pub fn has_ready(&self) -> bool {
        let raft = &self.raft;
        raft.hard_state() != self.hard_state_persisted
            || raft.log.persisted < raft.log.last_index()
            || !raft.messages.is_empty()
            || raft.log.applicable() > raft.log.applied
            || !raft.read_states.is_empty()
            || !raft.snapshot_requests.is_empty()
            || !raft.snapshot_chunks.is_empty()
            || (raft.role == Role::Leader && raft.broadcast_pending)
    }

    /// Collects what must be persisted, sent and applied. Call `advance` before the next `ready`.
    pub fn ready(&mut self) -> Ready {
        assert!(self.handed.is_none(), "ready() called again before advance()");
        self.raft.flush_broadcast();
        let raft = &mut self.raft;
        let hard_state = raft.hard_state();
        let hard_state = (hard_state != self.hard_state_persisted).then_some(hard_state);
        let entries = raft.log.slice(raft.log.persisted + 1, raft.log.last_index()).to_vec();
        let committed_entries = if raft.log.applicable() > raft.log.applied {
            raft.log.slice(raft.log.applied + 1, raft.log.applicable()).to_vec()
        } else {
            Vec::new()
        };
        let (messages, persisted_messages) =
            std::mem::take(&mut raft.messages).into_iter().partition(|message| {
                // A leader's appends, heartbeats and transfer orders promise nothing about its
                // own disk (Raft thesis §10.2.1); votes and acknowledgements do.
                matches!(
                    message.body,
                    MessageBody::Append { .. }
                        | MessageBody::Heartbeat { .. }
                        | MessageBody::TimeoutNow
                        | MessageBody::Snapshot { .. }
                )
            });
        self.handed = Some(Handed {
            last_entry: entries.last().map(|entry| (entry.index, entry.term)),
            hard_state,
            applied: committed_entries.last().map(|entry| entry.index),
        });
        Ready {
            hard_state,
            entries,
            messages,
            persisted_messages,
            committed_entries,
            read_states: std::mem::take(&mut raft.read_states),
            snapshot_requests: std::mem::take(&mut raft.snapshot_requests),
            snapshot_chunks: std::mem::take(&mut raft.snapshot_chunks),
        }
    }

    /// Reports the last `Ready` done: its entries and hard state durable, its entries applied.
    pub fn advance(&mut self) {
        let handed = self.handed.take().expect("advance() without a ready()");
        if let Some((index, term)) = handed.last_entry {
            self.raft.log.persisted_to(index, term);
        }
        if let Some(hard_state) = handed.hard_state {
            self.hard_state_persisted = hard_state;
        }
        if let Some(applied) = handed.applied {
            self.raft.log.applied_to(applied);
        }
        // The leader counts itself toward a quorum only for entries durable on its own disk.
        self.raft.maybe_commit();
    }

    pub fn id(&self) -> NodeId {
        self.raft.id()
    }

    pub fn role(&self) -> Role {
        self.raft.role
    }

    pub fn term(&self) -> u64 {
        self.raft.term
    }

    pub fn vote(&self) -> Option<NodeId> {
        self.raft.vote
    }

    pub fn leader(&self) -> Option<NodeId> {
        self.raft.leader
    }

    pub fn commit_index(&self) -> u64 {
        self.raft.log.commit
    }

    pub fn applied_index(&self) -> u64 {
        self.raft.log.applied
    }

    pub fn persisted_index(&self) -> u64 {
        self.raft.log.persisted
    }

    pub fn last_index(&self) -> u64 {
        self.raft.log.last_index()
    }

    pub fn last_term(&self) -> u64 {
        self.raft.log.last_term()
    }

    /// The term of entry `index`, `None` past the end or before the snapshot (0 for index 0).
    pub fn term_at(&self, index: u64) -> Option<u64> {
        self.raft.log.term(index)
    }

    /// Entries `low..=high` of the in-memory log, clipped to its start (after the snapshot) and
    /// end.
    pub fn entries(&self, low: u64, high: u64) -> &[Entry] {
        self.raft.log.slice(low.max(self.raft.log.first_index()), high)
    }

    /// The first index the in-memory log holds (the snapshot's index + 1).
    pub fn first_index(&self) -> u64 {
        self.raft.log.first_index()
    }

    pub fn hard_state(&self) -> HardState {
        self.raft.hard_state()
    }

    /// On a leader, its view of `peer`'s replication.
    pub fn progress(&self, peer: NodeId) -> Option<crate::PeerProgress> {
        self.raft.peer_progress(peer)
    }

    /// The configuration in effect: the last membership entry of the log, committed or not.
    pub fn membership(&self) -> &Membership {
        self.raft.membership()
    }

    /// The index of the entry that set the current configuration (0: bootstrap).
    pub fn membership_index(&self) -> u64 {
        self.raft.memberships.current_index()
    }

    pub fn config(&self) -> &Config {
        &self.raft.config
    }
}
