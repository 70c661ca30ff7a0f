//! `strata-multiraft`: the multi-Raft host. It drives every Raft group of one node (one
//! `strata_raft::RawNode` each) on the runtime layer.
//!
//! # How a round goes
//!
//! One driver task gathers what arrived (peer envelopes, ticks, local proposals and reads),
//! steps it into the groups, then takes every group's `Ready` at once: messages that need
//! nothing durable go out first; every group's new entries and hard state are appended to ONE
//! shared WAL with ONE sync ([`storage`]); then the messages that promise durability go out,
//! committed entries go to each group's apply task, and confirmed reads are answered. Everything
//! a round sends to one peer, of every group, travels as one envelope ([`envelope`]).
//!
//! # Invariants
//!
//! - An entry is acknowledged to a client only after the local replica applied it, which Raft
//!   allows only once it is committed and durable here.
//! - A vote or an append acknowledgement leaves only after the round's WAL sync.
//! - A failed WAL write or sync latches the host ([`HostError::Latched`]): it stops, and every
//!   waiting request fails, until the process restarts and reopens the WAL.
//! - Reads are linearizable: ReadIndex through the leader (forwarded by followers), then the
//!   local replica serves the read once it applied up to the read index.
//!
//! # Fault model
//!
//! Peer messages may be lost, duplicated, delayed or reordered (the transport checksums them);
//! a bad envelope is dropped and counted. The WAL checksums every record; a record that does not
//! continue its group's log is reported as corruption at open, never skipped.
//!
//! # Membership and leases
//!
//! [`Host::change_membership`] changes a group's voters and learners by joint consensus, on the
//! group's leader. With [`HostConfig::lease_reads`], read barriers on a leader are answered from
//! its lease; ticks follow the clock, so a host held up makes up its missed ticks (and loses its
//! lease) before it serves anything.
//!
//! # Snapshots and compaction
//!
//! Every [`HostConfig::snapshot_entries`] applied entries (or [`HostConfig::snapshot_bytes`]
//! of them), a group's apply task asks its machine for a snapshot ([`StateMachine::snapshot`]):
//! the machine makes its state durable and hands back a reader of it; the group's in-memory log
//! is then compacted up to there, and the reader (with the one before it) serves followers that
//! need compacted entries, streamed in checksummed frames ([`snapshot`]).
//! A follower stages the frames in a file (synced before it acknowledges them), reads the file
//! through to verify it, records the snapshot as its log's new start in the WAL, then has its
//! machine install it ([`StateMachine::install`]); a crash before the install finished installs
//! again from the staged file on reopen.
//!
//! Once the WAL grew by [`HostConfig::wal_segments_kept`] segments since the last checkpoint, a
//! round writes a checkpoint: one snapshot record per group (its snapshot's meta, hard state and whole
//! in-memory log), after which the WAL's older segments are dropped. So the WAL and the
//! in-memory logs stay bounded by what groups applied since their last snapshot.
//!
//! # Groups at run time
//!
//! [`Host::create_group`] adds a group with its own bootstrap voters, recorded in the WAL (a
//! snapshot record at index 0 that names them) before it is answered; [`Host::remove_group`]
//! drops a replica and records its removal, after which replay forgets everything the group
//! wrote. Both go through the driver's round, so they are ordered with checkpoints.
//!
//! # Not yet
//!
//! Heartbeats of all groups to one peer leave in the same envelope (ticks are shared), but each
//! group still sends its own heartbeat item.

pub mod envelope;
mod host;
mod proposals;
pub mod snapshot;
pub mod storage;

pub use snapshot::SnapshotSource;
pub use storage::GroupId;

use std::collections::BTreeMap;
use std::future::Future;
use std::rc::Rc;
use strata_raft::{ConfChange, Membership};
use strata_rt::{Duration, NodeId, Runtime};
use strata_wal::WalError;

/// The replicated state machine of one group, as the host drives it.
pub trait StateMachine: 'static {
    type Output: 'static;
    /// A reader of the machine's state at one index.
    type Snapshot: SnapshotReader;

    /// Applies committed entry `index` (indexes strictly increase across calls). Must be
    /// deterministic: every replica applies the same commands and must compute the same state
    /// and output.
    fn apply(&self, index: u64, command: &[u8]) -> impl Future<Output = Self::Output>;

    /// Every entry up to here survives a crash in the machine's own storage; on reopen the host
    /// replays its log from the next one.
    fn durable_index(&self) -> u64;

    /// Why the machine cannot go on (its storage failed), if it cannot. Checked after every
    /// apply: the host then latches without counting the entry as applied, so no read is served
    /// from a machine that skipped an entry.
    fn failure(&self) -> Option<String> {
        None
    }

    /// Takes a snapshot of the state as of the last entry applied (or snapshot installed),
    /// captured when this is called (between two applies), not when the future first runs; the
    /// host compacts the log up to that entry. The future makes that state durable in the
    /// machine's own storage (`durable_index()` reaches its index: the log up to there may go)
    /// and resolves to a reader of it that later applies do not change. It runs beside later
    /// applies (never beside an install), so it must not borrow the machine. A machine that
    /// cannot snapshot answers an error; the host then keeps its whole log.
    fn snapshot(&self) -> impl Future<Output = Result<Self::Snapshot, String>> + 'static;

    /// Replaces the whole state with the snapshot of entry `index` that `source` streams (as a
    /// [`SnapshotReader`] of another replica produced it), durably: once this resolves `Ok`,
    /// `durable_index()` is `index`. After a crash midway, `durable_index()` must be below
    /// `index` on reopen (the host then installs again). `Err` latches the host.
    fn install(
        &self,
        index: u64,
        source: &mut SnapshotSource,
    ) -> impl Future<Output = Result<(), String>>;
}

/// A consistent view of a state machine's state at one applied index, read as a byte stream.
pub trait SnapshotReader: 'static {
    /// Up to `length_max` bytes of the stream from `offset`; fewer only at its end (none at or
    /// past it). Reads mostly go forward, one after the other; a read may also start over at an
    /// earlier offset (a lost transfer resumes). The stream of a given state must be the same
    /// bytes on every replica: a follower may go on with another leader's transfer of it.
    fn read(
        &mut self,
        offset: u64,
        length_max: usize,
    ) -> impl Future<Output = Result<Vec<u8>, String>>;
}

/// The snapshot type of a machine that cannot take snapshots (it keeps everything in memory,
/// and the log is its durable copy): its `snapshot` answers an error, and its group's log is
/// never compacted.
pub enum NoSnapshot {}

impl SnapshotReader for NoSnapshot {
    async fn read(&mut self, _offset: u64, _length_max: usize) -> Result<Vec<u8>, String> {
        match *self {}
    }
}

/// How a host runs.
#[derive(Clone, Debug)]
pub struct HostConfig {
    pub node: NodeId,
    /// Every group's bootstrap voters (the same on every node, before any membership change).
    /// A node that joins later is not among them: it learns its groups' configuration from
    /// the log its leader sends once a change added it.
    pub voters: Vec<NodeId>,
    /// WAL directory, relative to the runtime's data directory.
    pub wal_dir: String,
    pub wal: strata_wal::Options,
    pub tick: Duration,
    pub election_ticks: u32,
    pub heartbeat_ticks: u32,
    /// Leader leases (`strata_raft::Config::lease_reads`): a read barrier on the leader needs no
    /// round of heartbeats while the lease holds. Safe while every node's clock runs within
    /// `strata_raft::Config::clock_drift_ppm_max` of true time; a paused or slow host makes up
    /// its missed ticks before it serves a read. The same on every node.
    pub lease_reads: bool,
    /// A request that has not completed after this resolves as a timeout (outcome unknown).
    pub request_timeout: Duration,
    /// Proposals and reads queued per group while no leader is known.
    pub proposals_queued_max: usize,
    pub reads_queued_max: usize,
    /// Proposals waiting for their entry to be applied, per group.
    pub proposals_waiting_max: usize,
    /// A group's machine takes a snapshot (and the group's log is compacted to it) after this
    /// many entries applied since its last one; 0: never (the log grows without bound).
    pub snapshot_entries: u64,
    /// ... or after this many bytes of entries, whichever comes first: it keeps a group's log
    /// (so its checkpoint record) well under the WAL's record size.
    pub snapshot_bytes: u64,
    /// Bytes of a snapshot per chunk sent to a follower (`strata_raft::Config`'s bound).
    pub snapshot_chunk_bytes: u64,
    /// Past this many WAL segments, a round writes a checkpoint and drops the older segments.
    pub wal_segments_kept: usize,
    /// Where snapshots received from leaders are staged, relative to the data directory.
    pub snapshot_dir: String,
    /// Adaptive group commit: how long a leader may hold proposals at most, so that the clients
    /// answered by the last round join the next one (the last sync's time at most; zero turns
    /// it off).
    pub group_commit_wait_max: Duration,
}

impl HostConfig {
    pub fn new(node: NodeId, voters: Vec<NodeId>) -> HostConfig {
        HostConfig {
            node,
            voters,
            wal_dir: "raft".into(),
            wal: strata_wal::Options::default(),
            tick: Duration::from_millis(10),
            election_ticks: 15,
            heartbeat_ticks: 3,
            lease_reads: false,
            request_timeout: Duration::from_secs(5),
            proposals_queued_max: 65_536,
            reads_queued_max: 65_536,
            proposals_waiting_max: 65_536,
            snapshot_entries: 50_000,
            snapshot_bytes: 4 << 20,
            snapshot_chunk_bytes: 1 << 20,
            wal_segments_kept: 4,
            snapshot_dir: "raft-snapshots".into(),
            group_commit_wait_max: Duration::from_millis(1),
        }
    }
}

/// Why a request failed.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum HostError {
    /// No answer in time: the write may or may not have been applied.
    Timeout,
    /// Too many requests queued; retry later. Nothing was proposed.
    Busy,
    UnknownGroup {
        group: GroupId,
    },
    /// The WAL failed; the host stopped and refuses everything until the process restarts.
    Latched {
        cause: String,
    },
    /// What the WAL holds does not make a valid log.
    Corruption {
        reason: String,
    },
    Stopped,
    /// Only the group's leader takes this request; `leader` is the last one heard of.
    NotLeader {
        leader: Option<NodeId>,
    },
    /// The WAL holds a group (created at run time, not removed) that `Host::open` was given
    /// no machine for.
    UnhostedGroup {
        group: GroupId,
    },
    /// The leader refused a membership change (another is under way, or it makes no sense).
    ChangeRefused {
        reason: String,
    },
}

impl std::fmt::Display for HostError {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HostError::Timeout => write!(formatter, "timed out; the outcome is unknown"),
            HostError::Busy => write!(formatter, "too many requests queued"),
            HostError::UnknownGroup { group } => write!(formatter, "no group {group} here"),
            HostError::Latched { cause } => write!(formatter, "storage failed: {cause}"),
            HostError::Corruption { reason } => write!(formatter, "corrupt log: {reason}"),
            HostError::Stopped => write!(formatter, "the host stopped"),
            HostError::NotLeader { leader: Some(leader) } => {
                write!(formatter, "not the leader; {leader} is")
            }
            HostError::NotLeader { leader: None } => write!(formatter, "no leader known"),
            HostError::UnhostedGroup { group } => {
                write!(formatter, "the WAL holds group {group}, which this node was not given")
            }
            HostError::ChangeRefused { reason } => {
                write!(formatter, "membership change refused: {reason}")
            }
        }
    }
}

impl std::error::Error for HostError {}

impl From<WalError> for HostError {
    fn from(error: WalError) -> HostError {
        if error.is_corruption() {
            HostError::Corruption { reason: error.to_string() }
        } else {
            HostError::Latched { cause: error.to_string() }
        }
    }
}

/// Counters, for metrics and benchmarks.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HostStats {
    pub wal_syncs: u64,
    /// Time the rounds waited for their WAL appends to be durable, summed: over `wal_syncs`, the
    /// mean latency of one sync.
    pub wal_sync_micros: u64,
    pub entries_persisted: u64,
    pub entries_committed: u64,
    pub proposals: u64,
    pub proposals_forwarded_out: u64,
    pub proposals_forwarded_in: u64,
    pub reads: u64,
    /// ReadIndex rounds a leader answered from its lease, without a round of heartbeats.
    pub read_barriers_by_lease: u64,
    pub envelopes_sent: u64,
    pub items_sent: u64,
    pub envelopes_refused: u64,
    pub messages_refused: u64,
    /// Times this node, leading, told a node that a group's configuration leaves it out.
    pub removal_notices_sent: u64,
    /// Snapshots machines took (each compacting its group's log).
    pub snapshots_taken: u64,
    /// Snapshot chunks read for followers, and snapshots installed from leaders.
    pub snapshot_chunks_sent: u64,
    pub snapshots_installed: u64,
    /// Checkpoints written (each dropping the WAL's older segments).
    pub checkpoints: u64,
    /// The WAL's segments after the last round (a gauge).
    pub wal_segments: u64,
}

/// One group's state, for status pages and tests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupStatus {
    pub role: strata_raft::Role,
    pub term: u64,
    pub leader: Option<NodeId>,
    pub commit_index: u64,
    pub applied_index: u64,
    pub last_index: u64,
    /// What the in-memory log starts after (0: nothing compacted).
    pub snapshot_index: u64,
    /// A leader told this node that the group's committed configuration, made at this index,
    /// leaves it out (it was removed); `None` again once a leader replicates to it.
    pub removed_at: Option<u64>,
}

/// The host of this node's groups. Clones share it.
pub struct Host<M: StateMachine> {
    inner: Rc<host::Inner<M>>,
}

impl<M: StateMachine> Clone for Host<M> {
    fn clone(&self) -> Self {
        Host { inner: self.inner.clone() }
    }
}

impl<M: StateMachine> Host<M> {
    /// Opens the WAL, restores every group of `machines` from it and starts the driver.
    pub async fn open(
        rt: &Runtime,
        config: HostConfig,
        machines: BTreeMap<GroupId, Rc<M>>,
    ) -> Result<Host<M>, HostError> {
        Ok(Host { inner: host::open_inner(rt, config, machines).await? })
    }

    /// Replicates `command` in `group` and resolves to the output of the local replica's
    /// machine when it applies it. `Timeout` means the outcome is unknown.
    pub async fn propose(&self, group: GroupId, command: &[u8]) -> Result<M::Output, HostError> {
        let mut outputs = self.propose_many(group, std::slice::from_ref(&command)).await;
        outputs.pop().expect("one output per command")
    }

    /// Replicates `commands` in `group` as consecutive entries, in order, even through a
    /// follower (which forwards them to the leader as one item); resolves to each one's output,
    /// as [`Host::propose`] does. A pipeline of writes from one client goes this way, so that
    /// its writes apply in the order it sent them.
    pub async fn propose_many(
        &self,
        group: GroupId,
        commands: &[&[u8]],
    ) -> Vec<Result<M::Output, HostError>> {
        let failed = |error: HostError| commands.iter().map(|_| Err(error.clone())).collect();
        if commands.is_empty() {
            return Vec::new();
        }
        if let Err(error) = self.check_running() {
            return failed(error);
        }
        let inner = &self.inner;
        let mut ids = Vec::with_capacity(commands.len());
        let mut completions = Vec::with_capacity(commands.len());
        {
            let groups = inner.groups.borrow();
            let Some(group_state) = groups.get(&group) else {
                return failed(HostError::UnknownGroup { group });
            };
            let mut proposals = group_state.applier.proposals.borrow_mut();
            if proposals.len() + commands.len() > inner.config.proposals_waiting_max {
                return failed(HostError::Busy);
            }
            for _ in commands {
                let id = inner.rng.borrow_mut().next_u64();
                let (completer, completion) = strata_rt::sync::completion();
                proposals.insert(id, completer);
                ids.push(id);
                completions.push(completion);
            }
        }
        let entries = ids
            .iter()
            .zip(commands)
            .map(|(id, command)| {
                let mut data = Vec::with_capacity(8 + command.len());
                data.extend_from_slice(&id.to_le_bytes());
                data.extend_from_slice(command);
                data
            })
            .collect();
        if let Err(error) = inner.queue_proposal(group, entries) {
            ids.iter().for_each(|&id| self.forget_proposal(group, id));
            return failed(error);
        }
        inner.stats.borrow_mut().proposals += commands.len() as u64;
        // One timer for the whole batch: they were proposed together and apply in order.
        let deadline = inner.rt.now() + inner.config.request_timeout;
        let mut outputs = Vec::with_capacity(commands.len());
        let all_done = async {
            for completion in completions {
                outputs.push(completion.await.unwrap_or(Err(HostError::Stopped)));
            }
        };
        if inner.rt.timeout_at(deadline, all_done).await.is_err() {
            for &id in &ids[outputs.len()..] {
                self.forget_proposal(group, id);
                outputs.push(Err(HostError::Timeout));
            }
        }
        outputs
    }

    fn forget_proposal(&self, group: GroupId, id: u64) {
        if let Some(group) = self.inner.groups.borrow().get(&group) {
            group.applier.proposals.borrow_mut().remove(id);
        }
    }

    /// Resolves once the local replica of `group` applied every entry committed before the call:
    /// a read of the local machine after it is linearizable.
    pub async fn read_barrier(&self, group: GroupId) -> Result<(), HostError> {
        self.check_running()?;
        let inner = &self.inner;
        inner.stats.borrow_mut().reads += 1;
        let deadline = inner.config.request_timeout;
        let completion = inner.queue_read(group)?;
        let wait = async {
            let index = completion.await.ok_or(HostError::Stopped)??;
            self.wait_applied(group, index).await
        };
        inner.rt.timeout(deadline, wait).await.unwrap_or(Err(HostError::Timeout))
    }

    /// Changes the membership of `group` by joint consensus (on its leader only) and resolves
    /// once the new configuration is in force (committed, and the joint phase left): to add a
    /// node, add it as a learner, then promote it once it caught up; a replacement is
    /// `[AddVoter(new), Remove(old)]`. One change at a time per group. `Timeout` means the
    /// outcome is unknown: read [`Host::membership`] on the leader.
    pub async fn change_membership(
        &self,
        group: GroupId,
        change: ConfChange,
    ) -> Result<Membership, HostError> {
        self.check_running()?;
        let inner = &self.inner;
        let (index, term) = inner.propose_conf_change(group, change)?;
        let wait = async {
            self.wait_applied(group, index).await?;
            if self.inner.term_at(group, index) != Some(term) {
                // Overwritten by a new leader: the change was never committed.
                let leader = self.status(group).and_then(|status| status.leader);
                return Err(HostError::NotLeader { leader });
            }
            // The leader leaves the joint configuration by itself once the change committed;
            // done when a simple configuration is applied here (so committed).
            loop {
                if let Some(membership) = self.membership_applied(group) {
                    if !membership.is_joint() {
                        return Ok(membership);
                    }
                }
                self.check_running()?;
                inner.rt.sleep(inner.config.tick).await;
            }
        };
        inner
            .rt
            .timeout(inner.config.request_timeout, wait)
            .await
            .unwrap_or(Err(HostError::Timeout))
    }

    /// Adds group `group` to this node with bootstrap `voters` (the same on every node that
    /// creates it) and `machine` (empty), and starts its replica. Resolves once the group is
    /// recorded in the WAL: from then on it must be among the machines passed to
    /// [`Host::open`] (which restores its voters from the WAL). Nodes may create it at different
    /// times; a replica that does not exist yet ignores the group's messages.
    pub async fn create_group(
        &self,
        group: GroupId,
        machine: Rc<M>,
        voters: Vec<NodeId>,
    ) -> Result<(), HostError> {
        self.check_running()?;
        self.inner.create_group(group, machine, voters).await
    }

    /// Removes this node's replica of `group`: its waiting requests fail with `UnknownGroup`,
    /// its apply task ends, and once this resolves the removal is durable (the group is no
    /// longer among the machines to pass to [`Host::open`]; its staged snapshots are deleted;
    /// its machine's own storage is the caller's to delete). Remove a replica from the group's
    /// membership first, or the others count on it.
    pub async fn remove_group(&self, group: GroupId) -> Result<(), HostError> {
        self.check_running()?;
        self.inner.remove_group(group).await
    }

    /// The configuration of `group` as this replica knows it (its log's latest, committed or
    /// not).
    pub fn membership(&self, group: GroupId) -> Option<Membership> {
        self.inner.membership(group).map(|(membership, _)| membership)
    }

    /// The configuration of `group` if this replica applied it (so it is committed).
    pub fn membership_applied(&self, group: GroupId) -> Option<Membership> {
        let (membership, index) = self.inner.membership(group)?;
        let applied = self.status(group)?.applied_index;
        (applied >= index).then_some(membership)
    }

    /// Resolves once the local replica of `group` applied `index`.
    async fn wait_applied(&self, group: GroupId, index: u64) -> Result<(), HostError> {
        let applied = {
            let groups = self.inner.groups.borrow();
            let applier = &groups.get(&group).ok_or(HostError::UnknownGroup { group })?.applier;
            if applier.applied_index() >= index {
                return Ok(());
            }
            let (completer, completion) = strata_rt::sync::completion();
            applier.wait_applied(index, completer);
            completion
        };
        applied.await.ok_or(HostError::Stopped)
    }

    fn check_running(&self) -> Result<(), HostError> {
        if let Some(error) = self.inner.failed.borrow().clone() {
            return Err(error);
        }
        if self.inner.stopped.get() {
            return Err(HostError::Stopped);
        }
        Ok(())
    }

    /// The local replica's machine of `group`.
    pub fn machine(&self, group: GroupId) -> Option<Rc<M>> {
        self.inner.groups.borrow().get(&group).map(|group| group.applier.machine.clone())
    }

    pub fn groups(&self) -> Vec<GroupId> {
        self.inner.groups.borrow().keys().copied().collect()
    }

    pub fn status(&self, group: GroupId) -> Option<GroupStatus> {
        let groups = self.inner.groups.borrow();
        let group = groups.get(&group)?;
        Some(GroupStatus {
            role: group.node.role(),
            term: group.node.term(),
            leader: group.node.leader(),
            commit_index: group.node.commit_index(),
            applied_index: group.applier.applied_index(),
            last_index: group.node.last_index(),
            snapshot_index: group.node.first_index() - 1,
            removed_at: group.removed_at,
        })
    }

    pub fn stats(&self) -> HostStats {
        self.inner.stats.borrow().clone()
    }

    /// Why the host stopped, if it failed.
    pub fn failure(&self) -> Option<HostError> {
        self.inner.failed.borrow().clone()
    }

    /// Stops the host and waits for its tasks to end: waiting requests fail with `Stopped`
    /// (unless it failed already), and afterwards nothing of it writes to the WAL or applies to
    /// a state machine, so both may be reopened.
    pub async fn close(&self) {
        self.inner.close().await;
    }
}
