//! The driver: one task runs every group's `RawNode` through rounds of
//! step/tick/propose → ready → persist (one WAL sync for all groups) → send → apply → advance.
//!
//! Requests from local clients never wait inside the driver: a proposal registers a waiter keyed
//! by a random proposal id carried in the entry, and resolves when the LOCAL replica applies that
//! entry (every replica computes the same output, so the node that took the request answers it,
//! wherever the leader is). A follower forwards proposals and ReadIndex requests to the leader it
//! knows; a forwarded request that is lost resolves as a timeout, an unknown outcome.

use crate::envelope::{self, Item};
use crate::proposals::Proposals;
use crate::snapshot::{self, FramedReader, SnapshotSource};
use crate::storage::{self, GroupId};
use crate::{HostConfig, HostError, HostStats, StateMachine};
use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::future::Future;
use std::rc::{Rc, Weak};
use std::task::{Poll, Waker};
use strata_raft::{
    Config, Entry, EntryKind, HardState, Message, MessageBody, RawNode, Ready, Role, SnapshotChunk,
    SnapshotMeta, SnapshotRequest,
};
use strata_rt::sync::{completion, Completer, Completion};
use strata_rt::{Instant, JoinHandle, NodeId, Rng, Runtime};
use strata_wal::Wal;

/// Items per envelope sent in one round (the decoder's bound is far above).
const ENVELOPE_ITEMS_PER_SEND: usize = 4096;
/// Peer messages waiting for the driver; past this, new ones are dropped (they are unreliable).
const INBOX_MESSAGES_MAX: usize = 16_384;
/// Forwarded proposal ids a leader remembers per group, to drop duplicated deliveries.
const FORWARDS_REMEMBERED: usize = 65_536;
/// Missed ticks made up at once after the driver was held up (a pause, a slow round), at least:
/// the bound used is also above twice the election timeout, past which more ticks change
/// nothing (every lease and election timer has run out), so it only bounds the work.
const TICKS_CAUGHT_UP_MAX: u64 = 1024;

/// A wake-up flag for one task.
#[derive(Default)]
pub(crate) struct Signal {
    set: Cell<bool>,
    waker: RefCell<Option<Waker>>,
}

impl Signal {
    pub(crate) fn notify(&self) {
        self.set.set(true);
        if let Some(waker) = self.waker.borrow_mut().take() {
            waker.wake();
        }
    }

    pub(crate) fn wait(&self) -> impl Future<Output = ()> + '_ {
        std::future::poll_fn(move |context| {
            if self.set.replace(false) {
                return Poll::Ready(());
            }
            *self.waker.borrow_mut() = Some(context.waker().clone());
            Poll::Pending
        })
    }
}

type Reply<M> = Result<<M as StateMachine>::Output, HostError>;

/// What a group's apply task does, in order.
enum Work {
    Apply(Entry),
    /// Read a snapshot staged from a leader through, checking it, then hand it to the driver.
    Verify(SnapshotMeta),
    /// Install a verified snapshot into the machine, once the completion says its snapshot
    /// record is durable in the WAL.
    Install(SnapshotMeta, Completion<()>),
}

/// The apply side of one group: its own task applies committed entries in order, takes the
/// machine's snapshots and installs those received from leaders.
pub(crate) struct Applier<M: StateMachine> {
    group: GroupId,
    pub(crate) machine: Rc<M>,
    queue: RefCell<VecDeque<Work>>,
    signal: Signal,
    applied: Cell<u64>,
    /// The last entry the machine itself applied (or the snapshot it installed): entries after
    /// it, up to `applied`, were not for it (membership changes, a new leader's empty entry), so
    /// a snapshot of the machine is a snapshot of the log up to there.
    machine_index: Cell<u64>,
    /// Local proposals by proposal id.
    pub(crate) proposals: RefCell<Proposals<Reply<M>>>,
    /// Reads waiting for `applied` to reach an index.
    reads: RefCell<Vec<(u64, Completer<()>)>>,
    /// The index of the last snapshot taken, asked for or installed.
    snapshot_index: Cell<u64>,
    /// Bytes of the entries applied since then.
    bytes_since_snapshot: Cell<u64>,
    /// A follower needs a snapshot and the one held is gone or older than the log's start.
    snapshot_wanted: Cell<bool>,
    /// The task making the last snapshot durable, awaited on close: it writes to the machine's
    /// storage.
    snapshot_task: RefCell<Option<JoinHandle<()>>>,
    /// A snapshot taken (its index and reader), for the driver to compact the log to.
    taken: RefCell<Option<(u64, M::Snapshot)>>,
    /// A staged snapshot read through and found whole, for the driver to record.
    verified: RefCell<Option<SnapshotMeta>>,
    /// The apply task, awaited on close and on the group's removal.
    task: RefCell<Option<JoinHandle<()>>>,
    /// Set when the group is removed: the apply task ends.
    removed: Cell<bool>,
}

impl<M: StateMachine> Applier<M> {
    pub(crate) fn applied_index(&self) -> u64 {
        self.applied.get()
    }

    pub(crate) fn wait_applied(&self, index: u64, completer: Completer<()>) {
        self.reads.borrow_mut().push((index, completer));
    }

    fn release_reads(&self) {
        let applied = self.applied.get();
        let mut reads = self.reads.borrow_mut();
        // Checked before splitting: this runs after every applied entry, and reads are rare
        // beside writes.
        if reads.iter().all(|(index, _)| *index > applied) {
            return;
        }
        let (ready, waiting): (Vec<_>, Vec<_>) =
            std::mem::take(&mut *reads).into_iter().partition(|(index, _)| *index <= applied);
        *reads = waiting;
        drop(reads);
        for (_, completer) in ready {
            completer.complete(());
        }
    }
}

/// Entries proposed together (one client's pipeline): a follower forwards them as one item, so
/// nothing on the way reorders them.
struct QueuedProposal {
    entries: Vec<Vec<u8>>,
    queued_at: Instant,
}

/// Answers a read with its read index.
type ReadCompleter = Completer<Result<u64, HostError>>;

struct QueuedRead {
    completer: ReadCompleter,
    queued_at: Instant,
}

pub(crate) struct Group<M: StateMachine> {
    pub(crate) node: RawNode,
    pub(crate) applier: Rc<Applier<M>>,
    proposals: VecDeque<QueuedProposal>,
    reads: Vec<QueuedRead>,
    /// Reads sent to the leader or started here, by context.
    reads_in_flight: BTreeMap<u64, (Instant, Vec<ReadCompleter>)>,
    /// ReadIndex requests this leader serves for followers: local context → (follower, theirs).
    reads_for_peers: BTreeMap<u64, (Instant, NodeId, u64)>,
    persisted_hard_state: HardState,
    /// Ids of the proposals followers forwarded here lately, oldest first: the network may
    /// deliver a forward twice, and appending it twice would apply one write twice.
    forwarded_seen: (BTreeSet<u64>, VecDeque<u64>),
    /// Created at run time and not yet recorded: answered once its record is durable.
    creation: Option<Completer<()>>,
    /// A leader said this node is not in the group's committed configuration (it was removed,
    /// and Raft itself never tells a removed node): the index of that configuration. Cleared
    /// when a leader replicates to this node again.
    pub(crate) removed_at: Option<u64>,
}

/// A snapshot chunk read for a follower: the request it answers, its bytes, whether it ends the
/// snapshot.
struct ChunkRead {
    group: GroupId,
    request: SnapshotRequest,
    data: Vec<u8>,
    done: bool,
}

pub(crate) struct Inner<M: StateMachine> {
    pub(crate) rt: Runtime,
    pub(crate) config: HostConfig,
    wal: Wal,
    /// The WAL's segment count right after the last checkpoint (0 before the first).
    checkpoint_segments: Cell<usize>,
    pub(crate) groups: RefCell<BTreeMap<GroupId, Group<M>>>,
    inbox: RefCell<VecDeque<(NodeId, Vec<u8>)>>,
    pub(crate) signal: Signal,
    /// Each group's newest snapshots for followers, by (group, index): the newest two, so that
    /// a transfer under way goes on when the log is compacted again (a reader is taken out
    /// while a chunk is read).
    snapshot_readers: RefCell<Readers<M::Snapshot>>,
    /// Chunks leaders' Raft asked for, and the answers read, for the driver.
    snapshot_requests: RefCell<VecDeque<(GroupId, SnapshotRequest)>>,
    snapshot_answers: RefCell<Vec<ChunkRead>>,
    snapshot_signal: Signal,
    /// Groups removed, whose removal record the next round writes.
    removals: RefCell<Vec<(GroupId, Completer<()>)>>,
    /// Groups whose removal has not finished: their id cannot be created again meanwhile.
    removing: RefCell<BTreeSet<GroupId>>,
    /// When the last tick was due: ticks follow the clock, not the tick task's wake-ups, so
    /// that a driver held up (paused, or stuck in a long round) makes up the ticks it missed
    /// before it serves anything, and a lease never outlasts its real time.
    last_tick: Cell<Instant>,
    next_context: Cell<u64>,
    pub(crate) rng: RefCell<Rng>,
    pub(crate) failed: RefCell<Option<HostError>>,
    pub(crate) stopped: Cell<bool>,
    pub(crate) stats: RefCell<HostStats>,
    /// The driver and appliers, awaited by [`Inner::close`].
    tasks: RefCell<Vec<JoinHandle<()>>>,
    group_commit: GroupCommit,
}

/// Adaptive group commit, as MySQL's binlog group commit delay and PostgreSQL's commit_delay.
/// When every round writes what queued during the sync before it, a closed loop of clients
/// splits into cohorts that wait on alternate syncs, so each client waits for two. A round that
/// persisted entries expects their clients back, with those queued meanwhile (`expected`); until
/// that many proposals queued, leaders hold them (not proposing them yet), for at most that
/// round's sync time (capped by `HostConfig::group_commit_wait_max`). The cohorts merge into one
/// round per sync (tests/group_commit.rs). A lone client is never held, and a client that does
/// not come back costs one wait, after which `expected` no longer counts it.
struct GroupCommit {
    expected: Cell<u64>,
    /// When leaders take held proposals anyway: the last round's end plus its sync time.
    release_at: Cell<Instant>,
    /// Whether proposals are held now (the driver then wakes at `release_at` at the latest).
    holding: Cell<bool>,
}

pub(crate) async fn open_inner<M: StateMachine>(
    rt: &Runtime,
    config: HostConfig,
    machines: BTreeMap<GroupId, Rc<M>>,
) -> Result<Rc<Inner<M>>, HostError> {
    let wal = Wal::open(rt, &config.wal_dir, config.wal.clone()).await?;
    let records = wal.read_from(wal.first_index()).await?;
    let mut persisted =
        storage::replay(records.iter().map(|(index, bytes)| (*index, bytes.as_slice())))
            .map_err(|reason| HostError::Corruption { reason })?;
    drop(records);
    let storage_error = |what: &str, error: std::io::Error| HostError::Latched {
        cause: format!("{what} {}: {error}", config.snapshot_dir),
    };
    let disk = rt.disk();
    disk.create_dir_all(&config.snapshot_dir)
        .await
        .map_err(|error| storage_error("create", error))?;
    if let Some(&group) = persisted.keys().find(|group| !machines.contains_key(group)) {
        return Err(HostError::UnhostedGroup { group });
    }
    let mut rng = rt.rng();
    let mut groups = BTreeMap::new();
    for (&group, machine) in &machines {
        let state = persisted.remove(&group).unwrap_or_default();
        if machine.durable_index() < state.snapshot.index {
            // Recorded, not installed before a crash: install it again from the staged file.
            install_staged(rt, &config, group, machine.as_ref(), &state.snapshot).await?;
        }
        remove_staged(rt, &config.snapshot_dir, group, u64::MAX)
            .await
            .map_err(|error| storage_error("clean up", error))?;
        let seed = rng.next_u64();
        groups.insert(group, new_group(&config, group, state, machine.clone(), seed)?);
    }
    let first_context = rng.next_u64() >> 1;
    let inner = Rc::new(Inner {
        rt: rt.clone(),
        config,
        wal,
        checkpoint_segments: Cell::new(0),
        groups: RefCell::new(groups),
        inbox: RefCell::default(),
        signal: Signal::default(),
        snapshot_readers: RefCell::default(),
        snapshot_requests: RefCell::default(),
        snapshot_answers: RefCell::default(),
        snapshot_signal: Signal::default(),
        removals: RefCell::default(),
        removing: RefCell::default(),
        last_tick: Cell::new(rt.now()),
        group_commit: GroupCommit {
            expected: Cell::new(0),
            release_at: Cell::new(rt.now()),
            holding: Cell::new(false),
        },
        // Random, not 1: a peer's late or duplicated ReadIndexResponse meant for an earlier
        // incarnation of this host must not match a read of this one (seed 1110 of the node's
        // simulation: a stale read).
        next_context: Cell::new(first_context),
        rng: RefCell::new(rng),
        failed: RefCell::new(None),
        stopped: Cell::new(false),
        stats: RefCell::default(),
        tasks: RefCell::default(),
    });
    start_tasks(&inner);
    Ok(inner)
}

/// The proposal ids of the log's newest entries, oldest first: a forward delivered again after
/// this host restarted must still be recognised if its first delivery made it into the log.
fn proposals_in_log(entries: &[Entry]) -> (BTreeSet<u64>, VecDeque<u64>) {
    let newest = &entries[entries.len().saturating_sub(FORWARDS_REMEMBERED)..];
    let order: VecDeque<u64> = newest
        .iter()
        .filter(|entry| entry.kind == EntryKind::Normal)
        .filter_map(|entry| split_proposal(&entry.data).map(|(id, _)| id))
        .collect();
    (order.iter().copied().collect(), order)
}

/// A group restored from what it persisted (nothing, for a new one), its apply task not started.
fn new_group<M: StateMachine>(
    config: &HostConfig,
    group: GroupId,
    state: storage::GroupState,
    machine: Rc<M>,
    seed: u64,
) -> Result<Group<M>, HostError> {
    let forwarded_seen = proposals_in_log(&state.entries);
    let node = restore_group(config, group, state, machine.durable_index(), seed)?;
    let applier = Rc::new(Applier {
        group,
        applied: Cell::new(node.applied_index()),
        machine_index: Cell::new(node.applied_index()),
        machine,
        queue: RefCell::default(),
        signal: Signal::default(),
        proposals: RefCell::default(),
        reads: RefCell::default(),
        snapshot_index: Cell::new(node.first_index() - 1),
        bytes_since_snapshot: Cell::new(0),
        snapshot_wanted: Cell::new(false),
        snapshot_task: RefCell::default(),
        taken: RefCell::default(),
        verified: RefCell::default(),
        task: RefCell::default(),
        removed: Cell::new(false),
    });
    let persisted_hard_state = node.hard_state();
    Ok(Group {
        node,
        applier,
        proposals: VecDeque::new(),
        reads: Vec::new(),
        reads_in_flight: BTreeMap::new(),
        reads_for_peers: BTreeMap::new(),
        forwarded_seen,
        persisted_hard_state,
        creation: None,
        removed_at: None,
    })
}

/// Installs the snapshot recorded as `group`'s log start from its staged file, on reopen.
async fn install_staged<M: StateMachine>(
    rt: &Runtime,
    config: &HostConfig,
    group: GroupId,
    machine: &M,
    meta: &SnapshotMeta,
) -> Result<(), HostError> {
    let path = snapshot::staged_path(&config.snapshot_dir, group, meta);
    let mut source =
        SnapshotSource::open(rt, &path, meta).await.map_err(|reason| HostError::Corruption {
            reason: format!("group {group}: the recorded snapshot's file: {reason}"),
        })?;
    // A read error or a damaged frame: reported, and tried again on the next open.
    machine.install(meta.index, &mut source).await.map_err(|cause| HostError::Latched {
        cause: format!("group {group}: installing snapshot {} again: {cause}", meta.index),
    })?;
    if machine.durable_index() < meta.index {
        return Err(HostError::Corruption {
            reason: format!("group {group}: snapshot {} installed, not durable", meta.index),
        });
    }
    Ok(())
}

/// Removes `group`'s staged snapshots up to index `through` (all with `u64::MAX`).
async fn remove_staged(
    rt: &Runtime,
    dir: &str,
    group: GroupId,
    through: u64,
) -> std::io::Result<()> {
    let disk = rt.disk();
    let mut removed = false;
    for name in disk.list(dir).await? {
        let staged = snapshot::parse_staged_name(&name);
        if staged.is_some_and(|(of, index)| of == group && index <= through) {
            disk.remove(&format!("{dir}/{name}")).await?;
            removed = true;
        }
    }
    if removed {
        disk.sync_dir(dir).await?;
    }
    Ok(())
}

fn restore_group(
    config: &HostConfig,
    group: GroupId,
    state: storage::GroupState,
    durable_index: u64,
    seed: u64,
) -> Result<RawNode, HostError> {
    let last_index = state.last_index();
    if durable_index > last_index {
        return Err(HostError::Corruption {
            reason: format!(
                "group {group}: the state machine applied up to {durable_index}, the log ends at \
                 {last_index}"
            ),
        });
    }
    let mut hard_state = state.hard_state;
    // Commit-only changes are not synced (see `persist_round`); what the machine applied was
    // committed, so the commit index is at least that.
    hard_state.commit = hard_state.commit.max(durable_index).min(last_index);
    // A group created at run time recorded its own bootstrap voters (so does a checkpoint of
    // any group, before its first snapshot); the others start from the host's.
    let bootstrap = &state.snapshot.membership;
    let voters = if state.snapshot.index == 0 && !bootstrap.voters.is_empty() {
        bootstrap.voters.iter().copied().collect()
    } else {
        config.voters.clone()
    };
    let mut raft = Config::new(config.node, voters, seed);
    raft.election_ticks = config.election_ticks;
    raft.heartbeat_ticks = config.heartbeat_ticks;
    raft.lease_reads = config.lease_reads;
    raft.snapshot_chunk_bytes_max = config.snapshot_chunk_bytes;
    RawNode::new_with_snapshot(raft, state.snapshot, hard_state, state.entries, durable_index)
        .map_err(|error| HostError::Corruption { reason: format!("group {group}: {error}") })
}

fn start_tasks<M: StateMachine>(inner: &Rc<Inner<M>>) {
    let rt = inner.rt.clone();
    let mut tasks = inner.tasks.borrow_mut();
    tasks.push(rt.spawn(drive(Rc::downgrade(inner))));
    tasks.push(rt.spawn(serve_snapshots(Rc::downgrade(inner))));
    for group in inner.groups.borrow().values() {
        start_applier(inner, &group.applier);
    }
    // Both end at their next wake-up once stopped, and touch no storage: not awaited.
    drop(rt.spawn(tick(Rc::downgrade(inner))));
    drop(rt.spawn(receive(Rc::downgrade(inner))));
}

fn start_applier<M: StateMachine>(inner: &Rc<Inner<M>>, applier: &Rc<Applier<M>>) {
    let task = inner.rt.spawn(apply(Rc::downgrade(inner), applier.clone()));
    *applier.task.borrow_mut() = Some(task);
}

async fn tick<M: StateMachine>(weak: Weak<Inner<M>>) {
    let Some(period) = weak.upgrade().map(|inner| inner.config.tick) else { return };
    let rt = weak.upgrade().map(|inner| inner.rt.clone()).expect("just upgraded");
    loop {
        rt.sleep(period).await;
        let Some(inner) = weak.upgrade() else { return };
        if inner.stopped.get() {
            return;
        }
        inner.signal.notify();
    }
}

async fn receive<M: StateMachine>(weak: Weak<Inner<M>>) {
    let Some(net) = weak.upgrade().map(|inner| inner.rt.net()) else { return };
    loop {
        let (from, bytes) = net.receive().await;
        let Some(inner) = weak.upgrade() else { return };
        if inner.stopped.get() {
            return;
        }
        let mut inbox = inner.inbox.borrow_mut();
        if inbox.len() < INBOX_MESSAGES_MAX {
            inbox.push_back((from, bytes));
        }
        drop(inbox);
        inner.signal.notify();
    }
}

async fn apply<M: StateMachine>(weak: Weak<Inner<M>>, applier: Rc<Applier<M>>) {
    loop {
        applier.signal.wait().await;
        if applier.removed.get() || weak.upgrade().is_none_or(|inner| inner.stopped.get()) {
            return;
        }
        loop {
            let Some(work) = applier.queue.borrow_mut().pop_front() else { break };
            let running = weak.upgrade().filter(|inner| !inner.stopped.get());
            let Some(inner) = running.filter(|_| !applier.removed.get()) else {
                return;
            };
            let result = match work {
                Work::Apply(entry) => apply_entry(&applier, entry).await,
                Work::Verify(meta) => inner.verify_staged(&applier, meta).await,
                Work::Install(meta, recorded) => {
                    if recorded.await.is_none() || inner.stopped.get() || applier.removed.get() {
                        return; // Stopped: the record may not be durable; reopen installs.
                    }
                    // A snapshot being made durable must not run beside an install.
                    let snapshotting = applier.snapshot_task.borrow_mut().take();
                    if let Some(task) = snapshotting {
                        task.await;
                    }
                    inner.install(&applier, meta).await
                }
            };
            if let Err(cause) = result {
                // Whatever failed is not done: an entry's effects may be partly in the
                // machine's store, which only a restart (replaying from the durable index, or
                // installing the recorded snapshot again) repairs.
                inner.fail(HostError::Latched { cause });
                return;
            }
            drop(inner);
        }
        if let Some(inner) = weak.upgrade() {
            inner.maybe_snapshot(&applier);
        }
    }
}

async fn apply_entry<M: StateMachine>(applier: &Applier<M>, entry: Entry) -> Result<(), String> {
    assert_eq!(entry.index, applier.applied.get() + 1, "entries apply in order");
    if entry.kind == EntryKind::Normal {
        apply_one(applier, &entry).await?;
    }
    applier.applied.set(entry.index);
    let bytes = applier.bytes_since_snapshot.get() + entry.size_bytes();
    applier.bytes_since_snapshot.set(bytes);
    applier.release_reads();
    Ok(())
}

/// Reads the snapshots leaders' Raft asks for, one chunk at a time, for the driver to send.
async fn serve_snapshots<M: StateMachine>(weak: Weak<Inner<M>>) {
    loop {
        let Some(inner) = weak.upgrade() else { return };
        inner.snapshot_signal.wait().await;
        if inner.stopped.get() {
            return;
        }
        loop {
            let Some((group, request)) = inner.snapshot_requests.borrow_mut().pop_front() else {
                break;
            };
            if let Err(cause) = inner.read_chunk(group, request).await {
                inner.fail(HostError::Latched { cause });
                return;
            }
            if inner.stopped.get() {
                return;
            }
        }
    }
}

/// Applies one entry and answers its proposer here, if any; `Err` if the machine failed.
async fn apply_one<M: StateMachine>(applier: &Applier<M>, entry: &Entry) -> Result<(), String> {
    let Some((id, command)) = split_proposal(&entry.data) else {
        // Not written by a host: nothing to apply and nobody to answer.
        return Ok(());
    };
    let output = applier.machine.apply(entry.index, command).await;
    if let Some(cause) = applier.machine.failure() {
        return Err(cause);
    }
    applier.machine_index.set(entry.index);
    if let Some(completer) = applier.proposals.borrow_mut().remove(id) {
        completer.complete(Ok(output));
    }
    Ok(())
}

/// Notes a forwarded proposal's id; false if it was seen already (a duplicated delivery).
fn remember_forward<M: StateMachine>(group: &mut Group<M>, id: u64) -> bool {
    let (seen, order) = &mut group.forwarded_seen;
    if !seen.insert(id) {
        return false;
    }
    order.push_back(id);
    if order.len() > FORWARDS_REMEMBERED {
        let oldest = order.pop_front().expect("longer than the bound");
        seen.remove(&oldest);
    }
    true
}

pub(crate) fn split_proposal(data: &[u8]) -> Option<(u64, &[u8])> {
    let (id, command) = data.split_first_chunk::<8>()?;
    Some((u64::from_le_bytes(*id), command))
}

/// Snapshot readers a host keeps per group.
const SNAPSHOT_READERS_KEPT: usize = 2;

/// Snapshot readers by (group, snapshot index).
type Readers<R> = BTreeMap<(GroupId, u64), FramedReader<R>>;

/// The snapshot a chunk request is for, if this host still has it.
fn matching_reader<R: crate::SnapshotReader>(
    readers: &mut Readers<R>,
    group: GroupId,
    meta: &SnapshotMeta,
) -> Option<FramedReader<R>> {
    let reader = readers.remove(&(group, meta.index))?;
    if reader.meta() == meta {
        return Some(reader);
    }
    readers.insert((group, meta.index), reader);
    None
}

/// Keeps `reader` among the group's readers, then only the newest [`SNAPSHOT_READERS_KEPT`].
fn keep_reader<R: crate::SnapshotReader>(
    readers: &mut Readers<R>,
    group: GroupId,
    reader: FramedReader<R>,
) {
    readers.entry((group, reader.meta().index)).or_insert(reader);
    let held: Vec<u64> =
        readers.range((group, 0)..=(group, u64::MAX)).map(|(key, _)| key.1).collect();
    for index in held.iter().rev().skip(SNAPSHOT_READERS_KEPT) {
        readers.remove(&(group, *index));
    }
}

fn drop_readers<R: crate::SnapshotReader>(readers: &mut Readers<R>, group: GroupId) {
    readers.retain(|(of, _), _| *of != group);
}

async fn drive<M: StateMachine>(weak: Weak<Inner<M>>) {
    loop {
        let Some(inner) = weak.upgrade() else { return };
        let commit = &inner.group_commit;
        if commit.holding.get() {
            let sleep = inner.rt.sleep_until(commit.release_at.get());
            strata_rt::sync::select(inner.signal.wait(), sleep).await;
        } else {
            inner.signal.wait().await;
        }
        if inner.stopped.get() {
            return;
        }
        inner.take_inputs();
        if let Err(error) = inner.round().await {
            inner.fail(error);
            return;
        }
    }
}

impl<M: StateMachine> Inner<M> {
    pub(crate) fn fail(&self, error: HostError) {
        *self.failed.borrow_mut() = Some(error.clone());
        self.stopped.set(true);
        for group in self.groups.borrow_mut().values_mut() {
            let proposals: Vec<_> = group.applier.proposals.borrow_mut().take_all().collect();
            for completer in proposals {
                completer.complete(Err(error.clone()));
            }
            for read in group.reads.drain(..) {
                read.completer.complete(Err(error.clone()));
            }
        }
    }

    /// Stops the host (if a failure has not already) and waits until no task of it touches
    /// storage or a state machine any more, so both can be reopened.
    pub(crate) async fn close(&self) {
        if self.failed.borrow().is_none() {
            self.fail(HostError::Stopped);
        }
        self.signal.notify();
        self.snapshot_signal.notify();
        let mut tasks = std::mem::take(&mut *self.tasks.borrow_mut());
        let appliers: Vec<Rc<Applier<M>>> =
            self.groups.borrow().values().map(|group| group.applier.clone()).collect();
        for applier in &appliers {
            applier.signal.notify();
            tasks.extend(applier.task.borrow_mut().take());
        }
        for task in tasks {
            task.await;
        }
        // Only now: an apply task may have started one before it saw the stop.
        for applier in &appliers {
            let snapshotting = applier.snapshot_task.borrow_mut().take();
            if let Some(task) = snapshotting {
                task.await;
            }
        }
    }

    /// Adds a group with bootstrap `voters` and starts its replica; resolves once the group is
    /// recorded in the WAL (so it is restored on reopen, with the same voters).
    pub(crate) async fn create_group(
        self: &Rc<Self>,
        group_id: GroupId,
        machine: Rc<M>,
        voters: Vec<NodeId>,
    ) -> Result<(), HostError> {
        let refused = |reason: &str| HostError::ChangeRefused { reason: reason.to_owned() };
        if voters.is_empty() {
            return Err(refused("a group needs voters"));
        }
        if machine.durable_index() != 0 {
            return Err(refused("a new group's machine must be empty"));
        }
        if self.groups.borrow().contains_key(&group_id)
            || self.removing.borrow().contains(&group_id)
        {
            return Err(refused("the group exists already, or its removal is under way"));
        }
        let membership = strata_raft::Membership::with_voters(voters);
        let snapshot = SnapshotMeta { index: 0, term: 0, membership };
        let state = storage::GroupState { snapshot, ..storage::GroupState::default() };
        let seed = self.rng.borrow_mut().next_u64();
        let mut group = new_group(&self.config, group_id, state, machine, seed)?;
        let (done, recorded) = completion();
        group.creation = Some(done);
        start_applier(self, &group.applier);
        self.groups.borrow_mut().insert(group_id, group);
        self.signal.notify();
        recorded.await.ok_or_else(|| self.failure_or_stopped())
    }

    /// Removes a group's replica: its waiting requests fail, its apply task ends, and it is
    /// gone from the WAL once the removal record is durable (when this resolves).
    pub(crate) async fn remove_group(&self, group_id: GroupId) -> Result<(), HostError> {
        let mut group = self
            .groups
            .borrow_mut()
            .remove(&group_id)
            .ok_or(HostError::UnknownGroup { group: group_id })?;
        self.removing.borrow_mut().insert(group_id);
        drop_readers(&mut self.snapshot_readers.borrow_mut(), group_id);
        let gone = HostError::UnknownGroup { group: group_id };
        let proposals: Vec<_> = group.applier.proposals.borrow_mut().take_all().collect();
        for completer in proposals {
            completer.complete(Err(gone.clone()));
        }
        for read in group.reads.drain(..) {
            read.completer.complete(Err(gone.clone()));
        }
        group.applier.removed.set(true);
        group.applier.signal.notify();
        let (done, recorded) = completion();
        self.removals.borrow_mut().push((group_id, done));
        self.signal.notify();
        let result = recorded.await.ok_or_else(|| self.failure_or_stopped());
        let task = group.applier.task.borrow_mut().take();
        if let Some(task) = task {
            task.await;
        }
        let snapshotting = group.applier.snapshot_task.borrow_mut().take();
        if let Some(task) = snapshotting {
            task.await;
        }
        self.removing.borrow_mut().remove(&group_id);
        result?;
        // Leftovers are removed on reopen if this fails.
        let _ = remove_staged(&self.rt, &self.config.snapshot_dir, group_id, u64::MAX).await;
        Ok(())
    }

    fn failure_or_stopped(&self) -> HostError {
        self.failed.borrow().clone().unwrap_or(HostError::Stopped)
    }

    /// Asks the machine for a snapshot if enough was applied since the last one, or a follower
    /// needs one. Called by the apply task between applies, so at exactly its applied index.
    fn maybe_snapshot(self: &Rc<Self>, applier: &Rc<Applier<M>>) {
        if self.stopped.get() || applier.removed.get() {
            return; // Nothing may touch the machine's storage once close or removal awaits.
        }
        let index = applier.machine_index.get();
        let every = self.config.snapshot_entries;
        let due = every > 0
            && (index >= applier.snapshot_index.get() + every
                || applier.bytes_since_snapshot.get() >= self.config.snapshot_bytes);
        let busy = applier.snapshot_task.borrow().as_ref().is_some_and(|task| !task.is_finished());
        if busy || index == 0 || !(due || applier.snapshot_wanted.get()) {
            return;
        }
        applier.snapshot_wanted.set(false);
        applier.snapshot_index.set(index);
        applier.bytes_since_snapshot.set(0);
        let taking = applier.machine.snapshot();
        let weak = Rc::downgrade(self);
        let applier_for_task = applier.clone();
        let task = self.rt.spawn(async move {
            let result = taking.await;
            let Some(inner) = weak.upgrade() else { return };
            match result {
                Ok(reader) => {
                    *applier_for_task.taken.borrow_mut() = Some((index, reader));
                    inner.stats.borrow_mut().snapshots_taken += 1;
                    inner.signal.notify();
                }
                // A machine that cannot snapshot keeps its log; one whose storage failed stops
                // the host.
                Err(cause) if applier_for_task.machine.failure().is_some() => {
                    inner.fail(HostError::Latched { cause });
                }
                Err(_) => {}
            }
        });
        *applier.snapshot_task.borrow_mut() = Some(task);
    }

    /// Reads a staged snapshot through; if whole, hands it to the driver to record.
    async fn verify_staged(&self, applier: &Applier<M>, meta: SnapshotMeta) -> Result<(), String> {
        if meta.index <= applier.applied.get() {
            return Ok(()); // Superseded by a later install: its file may be gone already.
        }
        let path = snapshot::staged_path(&self.config.snapshot_dir, applier.group, &meta);
        snapshot::verify(&self.rt, &path, &meta).await?;
        *applier.verified.borrow_mut() = Some(meta);
        self.signal.notify();
        Ok(())
    }

    /// Installs a recorded snapshot into the machine, from its staged file.
    async fn install(&self, applier: &Applier<M>, meta: SnapshotMeta) -> Result<(), String> {
        let path = snapshot::staged_path(&self.config.snapshot_dir, applier.group, &meta);
        let mut source = SnapshotSource::open(&self.rt, &path, &meta).await?;
        applier.machine.install(meta.index, &mut source).await?;
        if applier.machine.durable_index() < meta.index {
            return Err(format!("snapshot {} installed, not durable", meta.index));
        }
        applier.applied.set(meta.index);
        applier.machine_index.set(meta.index);
        applier.snapshot_index.set(meta.index);
        applier.release_reads();
        self.stats.borrow_mut().snapshots_installed += 1;
        // Leftovers are removed again on reopen if this fails.
        let _ = remove_staged(&self.rt, &self.config.snapshot_dir, applier.group, meta.index).await;
        Ok(())
    }

    /// Reads the chunk `request` asks for, if this host still has its snapshot; otherwise asks
    /// the group's machine for a new one (Raft asks again for it after an election timeout).
    /// A reader that fails is dropped for a new snapshot, unless the machine's storage failed.
    async fn read_chunk(&self, group: GroupId, request: SnapshotRequest) -> Result<(), String> {
        let reader = matching_reader(&mut self.snapshot_readers.borrow_mut(), group, &request.meta);
        let Some(mut reader) = reader else {
            self.want_snapshot(group);
            return Ok(());
        };
        let (data, done) = match reader.read(request.offset, request.length_max).await {
            Ok(read) => read,
            Err(cause) => {
                let machine = self.groups.borrow().get(&group).map(|g| g.applier.machine.clone());
                if machine.is_some_and(|machine| machine.failure().is_some()) {
                    return Err(cause);
                }
                self.want_snapshot(group);
                return Ok(());
            }
        };
        // Put back unless the group is gone or two newer snapshots replaced it: a stale reader
        // would hold the machine's old storage.
        if self.groups.borrow().contains_key(&group) {
            keep_reader(&mut self.snapshot_readers.borrow_mut(), group, reader);
        }
        self.snapshot_answers.borrow_mut().push(ChunkRead { group, request, data, done });
        self.stats.borrow_mut().snapshot_chunks_sent += 1;
        self.signal.notify();
        Ok(())
    }

    fn want_snapshot(&self, group: GroupId) {
        if let Some(group) = self.groups.borrow().get(&group) {
            group.applier.snapshot_wanted.set(true);
            group.applier.signal.notify();
        }
    }

    fn next_context(&self) -> u64 {
        let context = self.next_context.get();
        self.next_context.set(context + 1);
        context
    }

    /// Tick periods that ended since the last tick, at most [`TICKS_CAUGHT_UP_MAX`].
    fn ticks_due(&self, now: Instant) -> u64 {
        let period = u64::try_from(self.config.tick.as_nanos()).unwrap_or(u64::MAX).max(1);
        let last = self.last_tick.get().as_nanos();
        let due = now.as_nanos().saturating_sub(last) / period;
        self.last_tick.set(Instant::from_nanos(last + due * period));
        let election_ticks = u64::from(self.config.election_ticks);
        due.min(TICKS_CAUGHT_UP_MAX.max(2 * election_ticks + 2))
    }

    /// Steps peer messages, ticks, queued proposals and reads into the groups.
    fn take_inputs(&self) {
        let now = self.rt.now();
        let mut outgoing: BTreeMap<NodeId, Vec<(GroupId, Item)>> = BTreeMap::new();
        let mut groups = self.groups.borrow_mut();
        // Ticks first: a host held up must let its lease lapse before a peer's ReadIndex
        // request, stepped below, could be answered from it.
        let ticks = self.ticks_due(now);
        if ticks > 0 {
            for group in groups.values_mut() {
                for _ in 0..ticks {
                    group.node.tick();
                }
                expire_requests(group, now, self.config.request_timeout);
            }
        }
        let inbox = std::mem::take(&mut *self.inbox.borrow_mut());
        for (from, bytes) in inbox {
            let Ok(items) = envelope::decode(&bytes) else {
                self.stats.borrow_mut().envelopes_refused += 1;
                continue;
            };
            for (group_id, item) in items {
                let Some(group) = groups.get_mut(&group_id) else { continue };
                self.step_item(group_id, group, from, item, now, &mut outgoing);
            }
        }
        let hold = self.hold_proposals(now, leaders_queued_entries(&groups));
        for (&group_id, group) in groups.iter_mut() {
            self.compact(group_id, group);
            if !(hold && group.node.role() == Role::Leader) {
                self.take_proposals(group_id, group, &mut outgoing);
            }
            self.take_reads(group_id, group, now, &mut outgoing);
        }
        let answers = std::mem::take(&mut *self.snapshot_answers.borrow_mut());
        for ChunkRead { group, request, data, done } in answers {
            let Some(group) = groups.get_mut(&group) else { continue };
            let sent =
                group.node.snapshot_chunk(request.to, &request.meta, request.offset, data, done);
            assert!(sent.is_ok(), "chunks are read within Raft's bounds: {sent:?}");
        }
        drop(groups);
        self.send(outgoing);
    }

    /// Whether leaders hold their `queued` proposals for now (see [`GroupCommit`]).
    fn hold_proposals(&self, now: Instant, queued: u64) -> bool {
        let commit = &self.group_commit;
        let hold = queued > 0 && queued < commit.expected.get() && now < commit.release_at.get();
        commit.holding.set(hold);
        hold
    }

    /// Compacts the group's log to the snapshot its machine took, which then serves followers.
    fn compact(&self, group_id: GroupId, group: &mut Group<M>) {
        let Some((index, reader)) = group.applier.taken.borrow_mut().take() else { return };
        let meta = group.node.compact(index).expect("the machine snapshots applied entries only");
        if meta.index == index {
            let reader = FramedReader::new(meta, reader);
            keep_reader(&mut self.snapshot_readers.borrow_mut(), group_id, reader);
        }
        // Otherwise a snapshot installed meanwhile is newer: the log starts after it already.
    }

    fn step_item(
        &self,
        group_id: GroupId,
        group: &mut Group<M>,
        from: NodeId,
        item: Item,
        now: Instant,
        outgoing: &mut BTreeMap<NodeId, Vec<(GroupId, Item)>>,
    ) {
        match item {
            Item::Raft(message) => {
                if message.from != from {
                    self.stats.borrow_mut().messages_refused += 1;
                    return;
                }
                self.tell_if_removed(group_id, group, from, outgoing);
                if matches!(
                    message.body,
                    MessageBody::Append { .. } | MessageBody::Heartbeat { .. }
                ) {
                    group.removed_at = None;
                }
                if group.node.step(message).is_err() {
                    self.stats.borrow_mut().messages_refused += 1;
                }
            }
            // Only reported (status, /health): it changes nothing of what Raft does.
            Item::NotMember { configuration_index } => group.removed_at = Some(configuration_index),
            Item::Forward(data) => self.step_forward(group, data),
            Item::ForwardMany(entries) => {
                for data in entries {
                    self.step_forward(group, data);
                }
            }
            Item::ReadIndexRequest { context } => {
                let local = self.next_context();
                let by_lease = group.node.has_lease();
                if group.node.read_index(local).is_ok() {
                    group.reads_for_peers.insert(local, (now, from, context));
                    self.stats.borrow_mut().read_barriers_by_lease += u64::from(by_lease);
                }
            }
            Item::ReadIndexResponse { context, index } => {
                if let Some((_, completers)) = group.reads_in_flight.remove(&context) {
                    for completer in completers {
                        completer.complete(Ok(index));
                    }
                }
                let _ = (group_id, outgoing);
            }
        }
    }

    /// A leader whose committed configuration leaves out `from` tells it so: a removed node
    /// hears no more from the group (its leader stops replicating to it), so it would go on
    /// campaigning, unheard, and report itself healthy.
    fn tell_if_removed(
        &self,
        group_id: GroupId,
        group: &Group<M>,
        from: NodeId,
        outgoing: &mut BTreeMap<NodeId, Vec<(GroupId, Item)>>,
    ) {
        let node = &group.node;
        let configuration_index = node.membership_index();
        let committed = configuration_index <= node.commit_index();
        if node.role() == Role::Leader && committed && !node.membership().contains(from) {
            let item = Item::NotMember { configuration_index };
            outgoing.entry(from).or_default().push((group_id, item));
            self.stats.borrow_mut().removal_notices_sent += 1;
        }
    }

    /// Appends a proposal a follower forwarded, if this replica leads (a stale forward is
    /// dropped, and its client times out) and has not appended it already.
    fn step_forward(&self, group: &mut Group<M>, data: Vec<u8>) {
        let Some((id, _)) = split_proposal(&data) else { return };
        if group.node.role() != Role::Leader || !remember_forward(group, id) {
            return;
        }
        if group.node.propose(data).is_ok() {
            self.stats.borrow_mut().proposals_forwarded_in += 1;
        }
    }

    fn take_proposals(
        &self,
        group_id: GroupId,
        group: &mut Group<M>,
        outgoing: &mut BTreeMap<NodeId, Vec<(GroupId, Item)>>,
    ) {
        let leader = group.node.leader();
        while let Some(mut proposal) = group.proposals.pop_front() {
            if group.node.role() == Role::Leader {
                for data in proposal.entries {
                    // Refused while a leader transfer is under way: the client retries on a
                    // timeout.
                    let _ = group.node.propose(data);
                }
            } else if let Some(leader) = leader.filter(|&leader| leader != self.config.node) {
                let count = proposal.entries.len() as u64;
                let item = match proposal.entries.len() {
                    1 => Item::Forward(proposal.entries.pop().expect("one entry")),
                    _ => Item::ForwardMany(proposal.entries),
                };
                outgoing.entry(leader).or_default().push((group_id, item));
                self.stats.borrow_mut().proposals_forwarded_out += count;
            } else {
                // No leader known yet: keep it for a later round (expired on ticks).
                group.proposals.push_front(proposal);
                break;
            }
        }
    }

    fn take_reads(
        &self,
        group_id: GroupId,
        group: &mut Group<M>,
        now: Instant,
        outgoing: &mut BTreeMap<NodeId, Vec<(GroupId, Item)>>,
    ) {
        if group.reads.is_empty() {
            return;
        }
        let context = self.next_context();
        let leader = group.node.leader();
        if group.node.role() == Role::Leader {
            let by_lease = group.node.has_lease();
            if group.node.read_index(context).is_err() {
                return;
            }
            self.stats.borrow_mut().read_barriers_by_lease += u64::from(by_lease);
        } else if let Some(leader) = leader.filter(|&leader| leader != self.config.node) {
            outgoing
                .entry(leader)
                .or_default()
                .push((group_id, Item::ReadIndexRequest { context }));
        } else {
            return; // No leader known yet: try again next round.
        }
        // One ReadIndex round serves every read queued since the last one.
        let completers = group.reads.drain(..).map(|read| read.completer).collect();
        group.reads_in_flight.insert(context, (now, completers));
    }

    fn send(&self, outgoing: BTreeMap<NodeId, Vec<(GroupId, Item)>>) {
        let net = self.rt.net();
        let mut stats = self.stats.borrow_mut();
        for (to, items) in outgoing {
            for chunk in items.chunks(ENVELOPE_ITEMS_PER_SEND) {
                stats.envelopes_sent += 1;
                stats.items_sent += chunk.len() as u64;
                net.send(to, envelope::encode(chunk));
            }
        }
    }

    /// Persists and performs every group's `Ready`: one WAL sync for all of them.
    async fn round(self: &Rc<Self>) -> Result<(), HostError> {
        let mut readies: Vec<(GroupId, Rc<Applier<M>>, Ready)> = Vec::new();
        let mut records = Vec::new();
        let mut staged: Vec<(GroupId, Vec<SnapshotChunk>)> = Vec::new();
        let mut installs: Vec<Completer<()>> = Vec::new();
        let mut recorded: Vec<Completer<()>> = Vec::new();
        let mut entries_count = 0u64;
        // Entries of the groups this node leads: their clients are the ones group commit waits for.
        let mut entries_led = 0u64;
        let checkpoint = self.checkpoint_due();
        let mut checkpointed = false;
        {
            let mut groups = self.groups.borrow_mut();
            let mut outgoing: BTreeMap<NodeId, Vec<(GroupId, Item)>> = BTreeMap::new();
            // Removals first: a checkpoint below keeps them and replaces what follows.
            for (group_id, done) in std::mem::take(&mut *self.removals.borrow_mut()) {
                records.push(storage::encode_removal(group_id));
                recorded.push(done);
            }
            let removals = records.len();
            for (&group_id, group) in groups.iter_mut() {
                if let Some(done) = group.creation.take() {
                    records.push(checkpoint_record(group_id, group));
                    recorded.push(done);
                }
                records.extend(self.record_verified_snapshot(group_id, group, &mut installs));
                if !group.node.has_ready() {
                    continue;
                }
                let mut ready = group.node.ready();
                queue_messages(group_id, std::mem::take(&mut ready.messages), &mut outgoing);
                self.ask_for_chunks(group_id, std::mem::take(&mut ready.snapshot_requests));
                if !ready.snapshot_chunks.is_empty() {
                    staged.push((group_id, std::mem::take(&mut ready.snapshot_chunks)));
                }
                // Committed entries were durable here before this round (Raft hands out only
                // those), and read states need nothing of this round's sync: neither waits for it.
                self.hand_to_applier(group, std::mem::take(&mut ready.committed_entries));
                self.answer_reads(group_id, group, &ready, &mut outgoing);
                let bytes_max = self.config.wal.record_bytes_max as usize;
                records.extend(persist_records(group_id, group, &ready, bytes_max));
                entries_count += ready.entries.len() as u64;
                if group.node.role() == Role::Leader {
                    entries_led += ready.entries.len() as u64;
                }
                readies.push((group_id, group.applier.clone(), ready));
            }
            if let Some(checkpoint) = checkpoint.then(|| self.checkpoint_records(&mut groups)) {
                checkpointed = checkpoint.is_some();
                if let Some(checkpoint) = checkpoint {
                    // It covers only the groups still here: the removals stay.
                    records.truncate(removals);
                    records.extend(checkpoint);
                }
            }
            drop(groups);
            self.send(outgoing);
        }
        if readies.is_empty() && records.is_empty() {
            return Ok(());
        }
        if !records.is_empty() {
            let started = self.rt.now();
            let (first, _) = self.wal.append_many(records).await?;
            let now = self.rt.now();
            let sync_time = now.saturating_duration_since(started);
            if entries_led > 0 {
                let commit = &self.group_commit;
                let queued = leaders_queued_entries(&self.groups.borrow());
                commit.expected.set(entries_led + queued);
                commit.release_at.set(now + sync_time.min(self.config.group_commit_wait_max));
            }
            {
                let mut stats = self.stats.borrow_mut();
                stats.wal_syncs += 1;
                stats.wal_sync_micros += sync_time.as_micros() as u64;
                stats.entries_persisted += entries_count;
            }
            if checkpointed {
                // Every group's log is whole from the checkpoint on.
                self.wal.truncate_prefix(first).await?;
                self.stats.borrow_mut().checkpoints += 1;
            }
        }
        self.stats.borrow_mut().wal_segments = self.wal.segment_count() as u64;
        if checkpoint {
            self.checkpoint_segments.set(self.wal.segment_count());
        }
        let received = self.stage_chunks(staged).await?;
        for done in installs.into_iter().chain(recorded) {
            done.complete(());
        }
        let mut outgoing: BTreeMap<NodeId, Vec<(GroupId, Item)>> = BTreeMap::new();
        let mut groups = self.groups.borrow_mut();
        let mut again = false;
        for (group_id, applier, mut ready) in readies {
            // A group removed meanwhile: its replica is gone, nothing more to do.
            let Some(group) = groups.get_mut(&group_id) else { continue };
            assert!(Rc::ptr_eq(&group.applier, &applier), "a group's id is not reused mid-round");
            queue_messages(group_id, std::mem::take(&mut ready.persisted_messages), &mut outgoing);
            group.node.advance();
            again |= group.node.has_ready();
        }
        for (group_id, meta) in received {
            let Some(group) = groups.get(&group_id) else { continue };
            let applier = &group.applier;
            applier.queue.borrow_mut().push_back(Work::Verify(meta));
            applier.signal.notify();
        }
        drop(groups);
        self.send(outgoing);
        if again {
            self.signal.notify();
        }
        Ok(())
    }

    fn checkpoint_due(&self) -> bool {
        let kept = self.config.wal_segments_kept.max(1);
        self.wal.segment_count() >= self.checkpoint_segments.get() + kept
    }

    /// One snapshot record per group, or `None` if a group's log is too long for one record (a
    /// group that cannot snapshot): the WAL then keeps its prefix, and tries again once it grew
    /// by as much again.
    fn checkpoint_records(&self, groups: &mut BTreeMap<GroupId, Group<M>>) -> Option<Vec<Vec<u8>>> {
        let bytes_max = self.config.wal.record_bytes_max as u64;
        let fits = groups.values().all(|group| {
            let node = &group.node;
            let entries = node.entries(node.first_index(), node.last_index());
            let bytes: u64 = entries.iter().map(|entry| entry.size_bytes() + 4).sum();
            bytes + 1024 <= bytes_max
        });
        if !fits {
            return None;
        }
        Some(
            groups
                .iter_mut()
                .map(|(&group_id, group)| checkpoint_record(group_id, group))
                .collect(),
        )
    }

    /// If the apply task found a staged snapshot whole, makes it the log's start: Raft drops the
    /// log it covers, and the returned snapshot record says so in the WAL. The machine installs
    /// it once the record is durable (`installs`).
    fn record_verified_snapshot(
        &self,
        group_id: GroupId,
        group: &mut Group<M>,
        installs: &mut Vec<Completer<()>>,
    ) -> Option<Vec<u8>> {
        let meta = group.applier.verified.borrow_mut().take()?;
        if group.node.snapshot_installed(meta.clone()).is_err() {
            // The log caught up meanwhile (committed past it): nothing to install. The staged
            // file goes with the next install or reopen.
            return None;
        }
        drop_readers(&mut self.snapshot_readers.borrow_mut(), group_id);
        let (recorded, recording) = completion();
        installs.push(recorded);
        group.applier.queue.borrow_mut().push_back(Work::Install(meta, recording));
        group.applier.signal.notify();
        Some(checkpoint_record(group_id, group))
    }

    fn ask_for_chunks(&self, group_id: GroupId, requests: Vec<SnapshotRequest>) {
        if requests.is_empty() {
            return;
        }
        let mut queued = self.snapshot_requests.borrow_mut();
        for request in requests {
            // A newer request for the same follower supersedes a queued one (Raft asks again
            // after a rewind): at most one per follower and group waits.
            queued.retain(|(group, old)| *group != group_id || old.to != request.to);
            queued.push_back((group_id, request));
        }
        self.snapshot_signal.notify();
    }

    /// Writes the snapshot chunks followers received to their staging files, durably (Raft
    /// acknowledges them in the messages sent after persisting). Returns the transfers done.
    async fn stage_chunks(
        &self,
        staged: Vec<(GroupId, Vec<SnapshotChunk>)>,
    ) -> Result<Vec<(GroupId, SnapshotMeta)>, HostError> {
        let disk = self.rt.disk();
        let dir = &self.config.snapshot_dir;
        let mut done = Vec::new();
        let mut created = false;
        for (group_id, chunks) in staged {
            for chunk in chunks {
                let path = snapshot::staged_path(dir, group_id, &chunk.meta);
                let failed = |what: &str, error: std::io::Error| HostError::Latched {
                    cause: format!("{what} {path}: {error}"),
                };
                // Never truncated: a snapshot's stream is the same bytes from every leader, so a
                // transfer started over rewrites what the file holds (which an apply task may be
                // verifying or installing from) with the same bytes.
                let file = disk.create(&path).await.map_err(|error| failed("create", error))?;
                created |= chunk.offset == 0;
                let (result, _) = file.write_at(chunk.data, chunk.offset).await;
                result.map_err(|error| failed("write", error))?;
                file.sync().await.map_err(|error| failed("sync", error))?;
                if chunk.done {
                    done.push((group_id, chunk.meta));
                }
            }
        }
        if created {
            disk.sync_dir(dir).await.map_err(|error| HostError::Latched {
                cause: format!("sync dir {dir}: {error}"),
            })?;
        }
        Ok(done)
    }

    fn hand_to_applier(&self, group: &mut Group<M>, entries: Vec<Entry>) {
        if entries.is_empty() {
            return;
        }
        self.stats.borrow_mut().entries_committed += entries.len() as u64;
        group.applier.queue.borrow_mut().extend(entries.into_iter().map(Work::Apply));
        group.applier.signal.notify();
    }

    fn answer_reads(
        &self,
        group_id: GroupId,
        group: &mut Group<M>,
        ready: &Ready,
        outgoing: &mut BTreeMap<NodeId, Vec<(GroupId, Item)>>,
    ) {
        for read in &ready.read_states {
            if let Some((_, completers)) = group.reads_in_flight.remove(&read.context) {
                for completer in completers {
                    completer.complete(Ok(read.index));
                }
            }
            if let Some((_, peer, context)) = group.reads_for_peers.remove(&read.context) {
                let item = Item::ReadIndexResponse { context, index: read.index };
                outgoing.entry(peer).or_default().push((group_id, item));
            }
        }
    }

    pub(crate) fn queue_proposal(
        &self,
        group: GroupId,
        entries: Vec<Vec<u8>>,
    ) -> Result<(), HostError> {
        let mut groups = self.groups.borrow_mut();
        let group = groups.get_mut(&group).ok_or(HostError::UnknownGroup { group })?;
        if group.proposals.len() >= self.config.proposals_queued_max {
            return Err(HostError::Busy);
        }
        group.proposals.push_back(QueuedProposal { entries, queued_at: self.rt.now() });
        drop(groups);
        self.signal.notify();
        Ok(())
    }

    /// Appends a membership change on the group's leader: its (index, term).
    pub(crate) fn propose_conf_change(
        &self,
        group: GroupId,
        change: strata_raft::ConfChange,
    ) -> Result<(u64, u64), HostError> {
        let mut groups = self.groups.borrow_mut();
        let group = groups.get_mut(&group).ok_or(HostError::UnknownGroup { group })?;
        let index = group.node.propose_conf_change(change).map_err(|error| match error {
            strata_raft::Error::NotLeader { leader } => HostError::NotLeader { leader },
            other => HostError::ChangeRefused { reason: other.to_string() },
        })?;
        let term = group.node.term();
        drop(groups);
        self.signal.notify();
        Ok((index, term))
    }

    /// The group's latest configuration and the index of the entry that made it.
    pub(crate) fn membership(&self, group: GroupId) -> Option<(strata_raft::Membership, u64)> {
        let groups = self.groups.borrow();
        let node = &groups.get(&group)?.node;
        Some((node.membership().clone(), node.membership_index()))
    }

    /// The term of entry `index` of the group's log, also if it was just compacted into the
    /// snapshot; `None` if this replica cannot tell.
    pub(crate) fn term_at(&self, group: GroupId, index: u64) -> Option<u64> {
        let groups = self.groups.borrow();
        let node = &groups.get(&group)?.node;
        node.term_at(index).or_else(|| {
            let snapshot = node.snapshot_meta();
            (snapshot.index == index).then_some(snapshot.term)
        })
    }

    pub(crate) fn queue_read(
        &self,
        group: GroupId,
    ) -> Result<strata_rt::sync::Completion<Result<u64, HostError>>, HostError> {
        let mut groups = self.groups.borrow_mut();
        let group = groups.get_mut(&group).ok_or(HostError::UnknownGroup { group })?;
        if group.reads.len() >= self.config.reads_queued_max {
            return Err(HostError::Busy);
        }
        let (completer, completion) = completion();
        group.reads.push(QueuedRead { completer, queued_at: self.rt.now() });
        drop(groups);
        self.signal.notify();
        Ok(completion)
    }
}

fn queue_messages(
    group_id: GroupId,
    messages: Vec<Message>,
    outgoing: &mut BTreeMap<NodeId, Vec<(GroupId, Item)>>,
) {
    for message in messages {
        outgoing.entry(message.to).or_default().push((group_id, Item::Raft(message)));
    }
}

/// The WAL records for `ready`, if it needs any. A hard state whose only change is the commit
/// index is not worth a sync: it rides along with other changes, and on restart the commit index
/// is recomputed (it only ever needs to be at most the true one).
fn persist_records<M: StateMachine>(
    group_id: GroupId,
    group: &mut Group<M>,
    ready: &Ready,
    bytes_max: usize,
) -> Vec<Vec<u8>> {
    let persisted = group.persisted_hard_state;
    let hard_state = ready.hard_state.filter(|&state| {
        state.term != persisted.term || state.vote != persisted.vote || !ready.entries.is_empty()
    });
    if hard_state.is_none() && ready.entries.is_empty() {
        return Vec::new();
    }
    if let Some(state) = hard_state {
        group.persisted_hard_state = state;
    }
    storage::encode_records(group_id, hard_state, &ready.entries, bytes_max)
}

/// A snapshot record of the group as it stands: its log's start, hard state and whole log.
fn checkpoint_record<M: StateMachine>(group_id: GroupId, group: &mut Group<M>) -> Vec<u8> {
    let node = &group.node;
    let meta = node.snapshot_meta();
    let hard_state = node.hard_state();
    let record = storage::encode_snapshot_record(
        group_id,
        &meta,
        hard_state,
        node.entries(meta.index + 1, node.last_index()),
    );
    group.persisted_hard_state = hard_state;
    record
}

/// Entries the proposals queued in the groups this node leads hold.
fn leaders_queued_entries<M: StateMachine>(groups: &BTreeMap<GroupId, Group<M>>) -> u64 {
    let leading = groups.values().filter(|group| group.node.role() == Role::Leader);
    leading.flat_map(|group| &group.proposals).map(|proposal| proposal.entries.len() as u64).sum()
}

/// Drops requests that waited too long (their callers gave up already).
fn expire_requests<M: StateMachine>(
    group: &mut Group<M>,
    now: Instant,
    timeout: strata_rt::Duration,
) {
    let expired = |queued_at: Instant| now.saturating_duration_since(queued_at) > timeout;
    group.proposals.retain(|proposal| !expired(proposal.queued_at));
    group.reads.retain(|read| !expired(read.queued_at));
    group.reads_in_flight.retain(|_, (started, _)| !expired(*started));
    group.reads_for_peers.retain(|_, (started, _, _)| !expired(*started));
}
