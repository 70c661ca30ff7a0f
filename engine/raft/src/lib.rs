//! Sans-IO Raft: one replica of one consensus group as a pure state machine.
//!
//! Time enters only through [`RawNode::tick`], randomness only through [`Config::seed`], and
//! every effect leaves through [`Ready`]: entries and hard state to persist, messages to send
//! (some only after persisting), committed entries to apply, confirmed reads. The same inputs
//! always give the same outputs, so a simulation seed replays a whole cluster.
//!
//! Features: leader election with pre-vote and check-quorum; log replication with batching
//! (entries and bytes per append), pipelining and flow control (appends and bytes in flight per
//! follower), fast backtracking of diverged logs; the commitment rule of Raft §5.4.2 (Figure 8);
//! ReadIndex for linearizable reads, and leader leases that answer them at once within a bound
//! that accounts for clock drift ([`Config::lease_ticks`]); leader transfer; log compaction with snapshots streamed to
//! followers in chunks (asked of the application through `Ready::snapshot_requests`, staged by
//! the follower through `Ready::snapshot_chunks`, resumed from the acknowledged offset after a
//! loss, a crash or a leader change); membership change by joint consensus with
//! learners (see [`membership`]: a change takes effect once appended, the leader leaves a joint
//! configuration by itself once it committed, and a leader that the new configuration drops steps
//! down once that committed).
//!
//! Fault model: messages may be lost, duplicated, delayed and reordered; a replica may crash at
//! any point and restart from what it persisted (see [`node`] for what must be durable when).
//! Invariants are asserted in release builds: see [`raft`] and [`log`].

mod log;
pub mod membership;
pub mod node;
mod progress;
mod raft;
pub mod wire;

pub use membership::{ConfChange, ConfChangeError, ConfChangeStep, Membership};
pub use node::{RawNode, Ready};
pub use progress::ProgressState;
pub use strata_rt::NodeId;
pub use wire::{
    DecodeError, Entry, EntryKind, HardState, Message, MessageBody, SnapshotMeta,
    SNAPSHOT_CHUNK_BYTES_MAX,
};

/// The role a replica plays in its current term.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Follower,
    /// Asking whether it could win an election, without raising its term (Raft thesis §9.6).
    PreCandidate,
    Candidate,
    Leader,
}

/// A confirmed ReadIndex request: reads made after applying up to `index` are linearizable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReadState {
    pub context: u64,
    pub index: u64,
}

/// The leader asks the application for bytes of its snapshot `meta`, for follower `to`: read up
/// to `length_max` bytes at `offset` of the snapshot's stream and hand them to
/// [`RawNode::snapshot_chunk`] (`done` if they reach the end; an empty `done` chunk if `offset`
/// is the end). A request for a snapshot the application no longer has may be ignored: the
/// leader asks again, for its current snapshot, after an election timeout without progress.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotRequest {
    pub to: NodeId,
    pub meta: SnapshotMeta,
    pub offset: u64,
    pub length_max: u64,
}

/// A follower received bytes `offset..offset + data.len()` of snapshot `meta` from `from`: the
/// application writes them to its staging area for that snapshot (offset 0 starts it over) and
/// makes them durable before sending the `Ready`'s `persisted_messages`, which acknowledge them.
/// Chunks come in order, without gaps. After the `done` chunk, the application installs the
/// staged snapshot into its state machine and calls [`RawNode::snapshot_installed`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotChunk {
    pub from: NodeId,
    pub meta: SnapshotMeta,
    pub offset: u64,
    pub data: Vec<u8>,
    pub done: bool,
}

/// The leader's view of one follower's replication.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerProgress {
    pub match_index: u64,
    pub next_index: u64,
    pub state: ProgressState,
    /// No append goes out until an answer arrives (probe outstanding or window full).
    pub paused: bool,
}

/// The static configuration of one replica.
#[derive(Clone, Debug)]
pub struct Config {
    pub id: NodeId,
    /// The group's bootstrap configuration: its voters at index 0, before any membership entry
    /// of the log (and before any snapshot). Every replica of a group must be given the same.
    /// A replica that joins later is not among them; it learns the configuration from the log
    /// or a snapshot and does not campaign while it is not a voter.
    pub voters: Vec<NodeId>,
    /// The bootstrap configuration's learners (none by default).
    pub learners: Vec<NodeId>,
    /// Ticks without hearing from a leader before campaigning, randomised up to twice this.
    pub election_ticks: u32,
    pub heartbeat_ticks: u32,
    pub pre_vote: bool,
    pub check_quorum: bool,
    /// Batching: entries and bytes per append message (at least one entry is always sent).
    pub append_entries_max: u64,
    pub append_bytes_max: u64,
    /// Flow control: appends and bytes in flight to one follower.
    pub inflight_appends_max: u64,
    pub inflight_bytes_max: u64,
    /// Snapshot streaming: the bytes asked of the application per chunk (at most
    /// `SNAPSHOT_CHUNK_BYTES_MAX`), and the chunks sent and unacknowledged per follower. A
    /// follower also holds at most this many received chunks not yet taken by a `Ready`.
    pub snapshot_chunk_bytes_max: u64,
    pub snapshot_chunks_inflight_max: u64,
    /// Leader leases: `read_index` is answered at once, without a round of heartbeats, while
    /// the lease holds (see [`Config::lease_ticks`]). Needs `check_quorum` and `pre_vote`, and
    /// every replica of the group must enable it (a replica then also refuses votes for an
    /// election timeout after it starts, since it may have acknowledged a lease before a crash).
    pub lease_reads: bool,
    /// The most any replica's tick period may differ from nominal, in parts per million. The
    /// simulator's clocks drift by at most 50,001 ppm (`sim/src/faults.rs`); the default bound,
    /// 100,000 ppm, covers it twice over.
    pub clock_drift_ppm_max: u64,
    /// Seeds the randomised election timeout.
    pub seed: u64,
}

impl Config {
    /// Sensible defaults for replica `id` of a group of `voters`.
    pub fn new(id: NodeId, voters: Vec<NodeId>, seed: u64) -> Config {
        Config {
            id,
            voters,
            learners: Vec::new(),
            election_ticks: 10,
            heartbeat_ticks: 2,
            pre_vote: true,
            check_quorum: true,
            append_entries_max: 64,
            append_bytes_max: 1 << 20,
            inflight_appends_max: 16,
            inflight_bytes_max: 8 << 20,
            snapshot_chunk_bytes_max: 1 << 20,
            snapshot_chunks_inflight_max: 4,
            lease_reads: false,
            clock_drift_ppm_max: 100_000,
            seed,
        }
    }

    /// How long a leader's lease lasts, in its own ticks, from the start of a heartbeat round
    /// that a quorum acknowledged.
    ///
    /// Why it is safe: each voter that acknowledged the round received it after the round
    /// started, and from then on refuses to help elect anyone else (check-quorum, pre-vote) until
    /// `election_ticks` of its own ticks passed, which is at least `election_ticks - 1` whole tick
    /// periods; a new leader needs one of them. With tick periods within a factor `1 ± ρ` of
    /// nominal (`ρ = clock_drift_ppm_max / 10^6`), that is at least
    /// `(election_ticks - 1) × (1 - ρ)` nominal periods of real time, while the leader's
    /// `lease_ticks` (plus the tick already under way when the round started) last at most
    /// `(lease_ticks + 1) × (1 + ρ)`. So `lease_ticks = ⌊(election_ticks - 1)(1 - ρ)/(1 + ρ)⌋ - 1`.
    /// Message delay only shortens the real lease. A leader that started a transfer gives up its
    /// lease for the rest of its term (the target's election ignores the voters' leases).
    pub fn lease_ticks(&self) -> u64 {
        let ppm = self.clock_drift_ppm_max.min(999_999);
        let periods = u64::from(self.election_ticks.saturating_sub(1));
        (periods * (1_000_000 - ppm) / (1_000_000 + ppm)).saturating_sub(1)
    }

    pub fn validate(&self) -> Result<(), Error> {
        let invalid = |reason| Err(Error::InvalidConfig { reason });
        if self.voters.is_empty() {
            return invalid("the bootstrap configuration needs a voter");
        }
        let mut sorted = self.voters.clone();
        sorted.extend(self.learners.iter().copied());
        sorted.sort();
        sorted.dedup();
        if sorted.len() != self.voters.len() + self.learners.len() {
            return invalid("voters and learners must be distinct");
        }
        if sorted.len() > membership::MEMBERS_MAX {
            return invalid("too many members");
        }
        if self.heartbeat_ticks == 0 || self.election_ticks <= self.heartbeat_ticks {
            return invalid("need 0 < heartbeat_ticks < election_ticks");
        }
        if self.append_entries_max == 0 || self.append_bytes_max == 0 {
            return invalid("append limits must be positive");
        }
        if self.inflight_appends_max == 0 || self.inflight_bytes_max == 0 {
            return invalid("in-flight limits must be positive");
        }
        if self.snapshot_chunk_bytes_max == 0
            || self.snapshot_chunk_bytes_max > SNAPSHOT_CHUNK_BYTES_MAX
        {
            return invalid("need 0 < snapshot_chunk_bytes_max <= SNAPSHOT_CHUNK_BYTES_MAX");
        }
        if self.snapshot_chunks_inflight_max == 0 {
            return invalid("snapshot_chunks_inflight_max must be positive");
        }
        if self.lease_reads {
            if !self.check_quorum || !self.pre_vote {
                return invalid("lease reads need check_quorum and pre_vote");
            }
            if self.clock_drift_ppm_max >= 1_000_000 {
                return invalid("clock_drift_ppm_max must be below 1,000,000");
            }
            if self.lease_ticks() <= u64::from(self.heartbeat_ticks) {
                return invalid("the lease must outlast a heartbeat period: raise election_ticks");
            }
        }
        Ok(())
    }
}

/// Why a request was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// Only the leader takes proposals and reads; `leader` is the last one heard of.
    NotLeader {
        leader: Option<NodeId>,
    },
    /// A leader transfer is under way; retry on the new leader.
    TransferInProgress,
    /// A message from, or a request about, a replica outside the group.
    UnknownPeer {
        id: NodeId,
    },
    /// A message addressed to another replica.
    WrongRecipient {
        to: NodeId,
    },
    InvalidConfig {
        reason: &'static str,
    },
    /// A membership change that cannot be made now.
    ConfChange(ConfChangeError),
    /// Leadership can only go to a voter.
    NotVoter {
        id: NodeId,
    },
    /// Compaction must stop at or below what the state machine applied.
    CompactBeyondApplied {
        index: u64,
        applied: u64,
    },
    /// A snapshot at or below what the state machine already applied.
    SnapshotStale {
        index: u64,
        applied: u64,
    },
    /// A snapshot chunk the application handed over breaks the request's contract.
    InvalidSnapshotChunk {
        reason: &'static str,
    },
    /// A restored state that cannot be: entries not following the snapshot, a commit index past
    /// the log.
    InvalidState {
        reason: &'static str,
    },
}

impl std::fmt::Display for Error {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::NotLeader { leader: Some(leader) } => {
                write!(formatter, "not leader; try {leader}")
            }
            Error::NotLeader { leader: None } => write!(formatter, "not leader; leader unknown"),
            Error::TransferInProgress => write!(formatter, "leader transfer in progress"),
            Error::UnknownPeer { id } => write!(formatter, "{id} is not in the group"),
            Error::WrongRecipient { to } => write!(formatter, "message addressed to {to}"),
            Error::InvalidConfig { reason } => write!(formatter, "invalid config: {reason}"),
            Error::ConfChange(error) => write!(formatter, "membership change refused: {error}"),
            Error::NotVoter { id } => write!(formatter, "{id} does not vote"),
            Error::CompactBeyondApplied { index, applied } => {
                write!(formatter, "cannot compact to {index}: applied only {applied}")
            }
            Error::SnapshotStale { index, applied } => {
                write!(formatter, "snapshot at {index} is not ahead of applied {applied}")
            }
            Error::InvalidSnapshotChunk { reason } => {
                write!(formatter, "invalid snapshot chunk: {reason}")
            }
            Error::InvalidState { reason } => write!(formatter, "invalid restored state: {reason}"),
        }
    }
}

impl std::error::Error for Error {}
