//! One shard's replicated state machine over its own LSM store, and [`Shared`], the per-node
//! state every shard's machine on a node feeds (pub/sub, blocked clients).
//!
//! # Invariants
//!
//! - `apply` is deterministic: its reply and its writes depend only on the store's state and the
//!   entry (including the entry's `now_ms`, never this node's clock or randomness), so every
//!   replica that applies the same log holds the same store and answers the same.
//! - Every applied index is written to the store exactly once, in increasing order (an entry
//!   that fails validation is written as an empty batch), so `applied_index` is the last index
//!   applied and `durable_index` how far the store survives a crash without the log.
//! - Applies never overlap (asserted): the host applies one entry at a time per shard.
//! - Effects on `Shared` (publishing, waking blocked clients) happen after the entry's batch is
//!   in the store, on every replica.
//!
//! # Fault model
//!
//! The store is in external-log mode: after a crash it holds what `durable_index` covers and the
//! host replays its log from `durable_index + 1`. A store failure (I/O error, corruption) latches
//! the machine: every later `apply` answers an error and [`Machine::failure`] says why; the host
//! should stop the replica.
//!
//! # Snapshots
//!
//! [`Machine::snapshot`] captures the store's state at the last applied index (an LSM snapshot,
//! then a view that pins it) and streams it in the canonical form of [`crate::snapshot`], the
//! same bytes on every replica. [`Machine::install`] builds new tables from such a stream and
//! swaps them in with one manifest replacement (`strata_lsm::Db::replace`): durable at the
//! snapshot's index once it returns, and nothing of it durable before. Everything a machine
//! knows lives in its store (the expiry index, counts, versions), so nothing else is rebuilt;
//! blocked clients on the node are woken to check again.
//!
//! # Active expiry
//!
//! Reads treat a key whose deadline has passed as absent; writes delete it on access. Keys no one
//! touches are removed by [`Machine::expired_keys`], which lists keys whose deadline passed (from
//! the expiry index, cheaply); the server proposes them in an `Entry::Expire`, which deletes each
//! key that is still expired at the entry's `now_ms`.

use crate::command::CommandSpec;
use crate::commands;
use crate::cursors::Cursors;
use crate::entry::Entry;
use crate::layout;
use crate::resp::{Protocol, Reply};
use crate::snapshot::{SnapshotStream, StreamDecoder};
use crate::store::{Context, Effect, Fail, Outcome};
use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::rc::Rc;
use strata_lsm::{Db, LsmError, Options};
use strata_rt::sync::{channel, Receiver, Sender, TrySendError};
use strata_rt::Runtime;

/// A machine cannot open or has failed.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum MachineError {
    Storage(LsmError),
    /// A snapshot stream to install could not be read or is malformed.
    Snapshot(String),
}

impl std::fmt::Display for MachineError {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MachineError::Storage(error) => write!(formatter, "storage: {error}"),
            MachineError::Snapshot(reason) => write!(formatter, "snapshot: {reason}"),
        }
    }
}

impl std::error::Error for MachineError {}

/// Channels one connection may subscribe to (patterns and channels each).
pub const SUBSCRIPTIONS_MAX: usize = 10_000;
/// Pushes waiting to be written to one subscriber; a slower subscriber is disconnected.
pub const PUSHES_PENDING_MAX: usize = 4096;
/// Clients blocked at once on one node (BLPOP...).
pub const BLOCKED_CLIENTS_MAX: usize = 10_000;
/// Times a read starts again after an install replaced the store under it (each start takes a
/// new snapshot; one more install meanwhile is already rare).
const READ_ATTEMPTS_MAX: u32 = 8;

/// A connection, as pub/sub sees it: where to send its pushes.
pub struct Subscriber {
    pub id: u64,
    pub protocol: Cell<Protocol>,
    sender: Sender<Vec<u8>>,
    /// Set when a push did not fit: the connection closes. Shared with the connection's writer
    /// (which must not hold the subscriber: its sender keeps the writer's channel open).
    pub overflowed: Rc<Cell<bool>>,
}

impl Subscriber {
    /// A subscriber and the receiving end its connection writes out.
    pub fn new(id: u64, protocol: Protocol) -> (Rc<Subscriber>, Receiver<Vec<u8>>) {
        let (sender, receiver) = channel(PUSHES_PENDING_MAX);
        let subscriber =
            Subscriber { id, protocol: Cell::new(protocol), sender, overflowed: Rc::default() };
        (Rc::new(subscriber), receiver)
    }

    /// Queues bytes for the connection; on overflow marks it for closing.
    pub fn push(&self, bytes: Vec<u8>) -> bool {
        match self.sender.try_send(bytes) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) => {
                self.overflowed.set(true);
                false
            }
            Err(TrySendError::Closed(_)) => false,
        }
    }

    /// Queues bytes, waiting for room (replies, which the connection itself produces).
    pub async fn send(&self, bytes: Vec<u8>) -> bool {
        self.sender.send(bytes).await.is_ok()
    }
}

type Subscribers = BTreeMap<Vec<u8>, BTreeMap<u64, Rc<Subscriber>>>;
/// Key -> clients blocked on it (waiter id -> wake-up channel).
type Blocked = BTreeMap<Vec<u8>, BTreeMap<u64, Sender<()>>>;

/// Per-node state shared by every shard's machine on the node.
#[derive(Default)]
pub struct Shared {
    channels: RefCell<Subscribers>,
    patterns: RefCell<Subscribers>,
    blocked: RefCell<Blocked>,
    blocked_count: Cell<usize>,
    next_id: Cell<u64>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Shared")
            .field("channels", &self.channels.borrow().len())
            .field("patterns", &self.patterns.borrow().len())
            .field("blocked", &self.blocked_count.get())
            .finish()
    }
}

/// A blocked client's registration: woken when a key it waits on gets elements. Unregisters
/// when dropped.
pub struct Waiter {
    shared: Rc<Shared>,
    id: u64,
    keys: Vec<Vec<u8>>,
    receiver: Receiver<()>,
}

impl Waiter {
    /// Resolves once a key gained elements since registration (at once if it already did).
    pub async fn woken(&mut self) {
        let _ = self.receiver.receive().await;
    }
}

impl Drop for Waiter {
    fn drop(&mut self) {
        let mut blocked = self.shared.blocked.borrow_mut();
        for key in &self.keys {
            if let Some(waiters) = blocked.get_mut(key) {
                waiters.remove(&self.id);
                if waiters.is_empty() {
                    blocked.remove(key);
                }
            }
        }
        self.shared.blocked_count.set(self.shared.blocked_count.get() - 1);
    }
}

impl Shared {
    pub fn new() -> Rc<Shared> {
        Rc::new(Shared::default())
    }

    /// A fresh id (connections, waiters), unique on this node.
    pub fn next_id(&self) -> u64 {
        let id = self.next_id.get() + 1;
        self.next_id.set(id);
        id
    }

    /// Registers a client blocked on `keys`; `None` when too many clients are blocked.
    pub fn block_on(self: &Rc<Self>, keys: &[Vec<u8>]) -> Option<Waiter> {
        if self.blocked_count.get() >= BLOCKED_CLIENTS_MAX {
            return None;
        }
        let id = self.next_id();
        let (sender, receiver) = channel(1);
        let mut blocked = self.blocked.borrow_mut();
        for key in keys {
            blocked.entry(key.clone()).or_default().insert(id, sender.clone());
        }
        self.blocked_count.set(self.blocked_count.get() + 1);
        Some(Waiter { shared: self.clone(), id, keys: keys.to_vec(), receiver })
    }

    pub fn blocked_clients(&self) -> usize {
        self.blocked_count.get()
    }

    /// Wakes every blocked client: the keys they wait on may have changed wholesale (a snapshot
    /// installed), and a woken client only checks again.
    fn wake_all(&self) {
        for waiters in self.blocked.borrow().values() {
            for sender in waiters.values() {
                let _ = sender.try_send(());
            }
        }
    }

    fn wake(&self, key: &[u8]) {
        if let Some(waiters) = self.blocked.borrow().get(key) {
            for sender in waiters.values() {
                let _ = sender.try_send(());
            }
        }
    }

    fn table(&self, pattern: bool) -> &RefCell<Subscribers> {
        if pattern {
            &self.patterns
        } else {
            &self.channels
        }
    }

    /// Subscribes; false if it already was.
    pub fn subscribe(&self, pattern: bool, name: &[u8], subscriber: &Rc<Subscriber>) -> bool {
        let mut table = self.table(pattern).borrow_mut();
        table.entry(name.to_vec()).or_default().insert(subscriber.id, subscriber.clone()).is_none()
    }

    /// Unsubscribes; false if it was not.
    pub fn unsubscribe(&self, pattern: bool, name: &[u8], subscriber_id: u64) -> bool {
        let mut table = self.table(pattern).borrow_mut();
        let Some(subscribers) = table.get_mut(name) else { return false };
        let removed = subscribers.remove(&subscriber_id).is_some();
        if subscribers.is_empty() {
            table.remove(name);
        }
        removed
    }

    /// Delivers a message to this node's subscribers; returns how many received it.
    pub fn publish(&self, channel: &[u8], message: &[u8]) -> i64 {
        let mut receivers = 0;
        if let Some(subscribers) = self.channels.borrow().get(channel) {
            for subscriber in subscribers.values() {
                let push = Reply::Push(vec![
                    Reply::bulk("message"),
                    Reply::bulk(channel),
                    Reply::bulk(message),
                ]);
                let bytes = crate::resp::encode_to_vec(&push, subscriber.protocol.get());
                receivers += i64::from(subscriber.push(bytes));
            }
        }
        for (pattern, subscribers) in self.patterns.borrow().iter() {
            if !crate::glob::matches(pattern, channel) {
                continue;
            }
            for subscriber in subscribers.values() {
                let push = Reply::Push(vec![
                    Reply::bulk("pmessage"),
                    Reply::bulk(pattern.as_slice()),
                    Reply::bulk(channel),
                    Reply::bulk(message),
                ]);
                let bytes = crate::resp::encode_to_vec(&push, subscriber.protocol.get());
                receivers += i64::from(subscriber.push(bytes));
            }
        }
        receivers
    }

    /// Channels with subscribers matching `pattern` (PUBSUB CHANNELS).
    pub fn channels(&self, pattern: Option<&[u8]>) -> Vec<Vec<u8>> {
        self.channels
            .borrow()
            .keys()
            .filter(|name| pattern.is_none_or(|pattern| crate::glob::matches(pattern, name)))
            .cloned()
            .collect()
    }

    /// Performs an entry's effects; returns the receivers of the last message published.
    fn perform(&self, effects: Vec<Effect>) -> Option<i64> {
        let mut published = None;
        for effect in effects {
            match effect {
                Effect::Publish { channel, message } => {
                    published = Some(self.publish(&channel, &message));
                }
                Effect::Ready { key } => self.wake(&key),
            }
        }
        published
    }
}

/// One shard's state machine.
pub struct Machine {
    db: Db,
    shard: u32,
    shared: Rc<Shared>,
    applying: Cell<bool>,
    /// Reads served: part of a read's random seed, so that two SRANDMEMBERs in one millisecond
    /// with no write between them still draw differently.
    reads_count: Cell<u64>,
    cursors: RefCell<Cursors>,
    /// The buffers of the last applied command's arguments, for the next to decode into.
    spare_arguments: RefCell<Vec<Vec<u8>>>,
    failure: RefCell<Option<MachineError>>,
}

/// Most bytes of argument buffers a machine keeps between applies (a larger command's are
/// freed).
const SPARE_ARGUMENT_BYTES_MAX: usize = 64 << 10;

impl std::fmt::Debug for Machine {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Machine")
            .field("shard", &self.shard)
            .field("applied", &self.applied_index())
            .finish()
    }
}

/// The LSM tuning of a shard's store.
pub fn store_options() -> Options {
    Options { external_log: true, memtable_bytes_max: 8 << 20, ..Options::default() }
}

impl Machine {
    /// Opens (recovering) the shard's store in `dir` (relative to the node's data directory).
    pub async fn open(
        rt: &Runtime,
        dir: &str,
        shard: u32,
        shared: Rc<Shared>,
    ) -> Result<Machine, MachineError> {
        Machine::open_with(rt, dir, shard, shared, store_options()).await
    }

    /// [`Machine::open`] with explicit store options (tests use tiny memtables).
    pub async fn open_with(
        rt: &Runtime,
        dir: &str,
        shard: u32,
        shared: Rc<Shared>,
        options: Options,
    ) -> Result<Machine, MachineError> {
        assert!(options.external_log, "the Raft log is the durable copy of a machine's writes");
        let db = Db::open(rt, dir, options).await.map_err(MachineError::Storage)?;
        Ok(Machine {
            db,
            shard,
            shared,
            applying: Cell::new(false),
            reads_count: Cell::new(0),
            cursors: RefCell::new(Cursors::new(rt.rng().next_u64())),
            spare_arguments: RefCell::default(),
            failure: RefCell::new(None),
        })
    }

    pub fn shard(&self) -> u32 {
        self.shard
    }

    pub fn shared(&self) -> &Rc<Shared> {
        &self.shared
    }

    /// The store, for tests and metrics.
    pub fn db(&self) -> &Db {
        &self.db
    }

    /// Why the machine stopped applying, if it did.
    pub fn failure(&self) -> Option<MachineError> {
        self.failure.borrow().clone()
    }

    /// Every entry at or below this index is in the store's synced tables: replay after it.
    pub fn durable_index(&self) -> u64 {
        self.db.log_index_durable()
    }

    pub fn applied_index(&self) -> u64 {
        self.db.log_index_applied()
    }

    /// Applies one committed log entry (bytes from [`Entry::encode`]); `index` strictly
    /// increases. Every replica gets the same reply.
    pub async fn apply(&self, index: u64, entry: &[u8]) -> Reply {
        assert!(!self.applying.replace(true), "applies of one machine never overlap");
        let reply = self.apply_inner(index, entry).await;
        self.applying.set(false);
        reply
    }

    async fn apply_inner(&self, index: u64, bytes: &[u8]) -> Reply {
        assert!(
            index > self.applied_index(),
            "log index {index} applied after {}",
            self.applied_index()
        );
        if let Some(failure) = self.failure() {
            return Reply::error(format!("ERR shard {} failed: {failure}", self.shard));
        }
        let spare = std::mem::take(&mut *self.spare_arguments.borrow_mut());
        let entry = match Entry::decode_reusing(bytes, spare) {
            Ok(entry) => entry,
            Err(error) => {
                return match self.write(strata_lsm::WriteBatch::new(), index).await {
                    Ok(()) => Reply::error(format!("ERR {error}")),
                    Err(reply) => reply,
                };
            }
        };
        let mut context = Context::for_apply(&self.db, entry.now_ms(), index);
        let lone_publish = matches!(&entry, Entry::Command { arguments, .. }
            if arguments[0].eq_ignore_ascii_case(b"publish"));
        let lone_command = matches!(entry, Entry::Command { .. });
        let outcome = match entry {
            Entry::Command { arguments, .. } => {
                let outcome = commands::execute(&mut context, &arguments).await;
                self.keep_spare(arguments);
                outcome
            }
            Entry::Transaction { watched, commands, .. } => {
                transaction(&mut context, &watched, &commands).await
            }
            Entry::Expire { keys, .. } => expire(&mut context, &keys).await,
            Entry::Flush { .. } => flush(&mut context).await,
        };
        let reply = match outcome {
            Ok(reply) => reply,
            Err(Fail::Reply(reply)) if lone_command => {
                // A failed command changes nothing, even if it wrote part of its effect.
                return match self.write(strata_lsm::WriteBatch::new(), index).await {
                    Ok(()) => reply,
                    Err(failure) => failure,
                };
            }
            Err(Fail::Reply(reply)) => reply,
            Err(Fail::Storage(error)) => return self.latch(error),
        };
        let (batch, effects) = match context.finish().await {
            Ok(done) => done,
            Err(Fail::Storage(error)) => return self.latch(error),
            Err(Fail::Reply(reply)) => return reply,
        };
        if let Err(reply) = self.write(batch, index).await {
            return reply;
        }
        match self.shared.perform(effects) {
            Some(receivers) if lone_publish => Reply::Integer(receivers),
            _ => reply,
        }
    }

    fn keep_spare(&self, arguments: Vec<Vec<u8>>) {
        if crate::resp::buffers_bytes(&arguments) <= SPARE_ARGUMENT_BYTES_MAX {
            *self.spare_arguments.borrow_mut() = arguments;
        }
    }

    /// Writes the batch of entry `index`; a batch the store refuses (too large) is replaced by an
    /// empty one (the same on every replica: the check is pure), so the index still advances.
    async fn write(&self, batch: strata_lsm::WriteBatch, index: u64) -> Result<(), Reply> {
        match self.db.write_at(batch, index).await {
            Ok(()) => Ok(()),
            Err(LsmError::Invalid { reason }) => {
                match self.db.write_at(strata_lsm::WriteBatch::new(), index).await {
                    Ok(()) => {
                        Err(Reply::error(format!("ERR write refused by the store: {reason}")))
                    }
                    Err(error) => Err(self.latch(error)),
                }
            }
            Err(error) => Err(self.latch(error)),
        }
    }

    fn latch(&self, error: LsmError) -> Reply {
        let reply = Reply::error(format!("ERR shard {} storage failed: {error}", self.shard));
        self.failure.borrow_mut().get_or_insert(MachineError::Storage(error));
        reply
    }

    /// Evaluates a read-only command locally (the caller did a read barrier). `now_ms`: this
    /// node's unix ms. Besides the read commands of the table, answers the shard-local halves of
    /// fanned-out commands: `KEYS pattern`, `DBSIZE`, `RANDOMKEY`, and
    /// `SCAN position [MATCH p] [COUNT n] [TYPE t]` (replies `[next position or 0, keys]`).
    pub async fn read(&self, arguments: &[Vec<u8>], now_ms: u64) -> Reply {
        let Some(spec) = arguments.first().and_then(|name| crate::command::lookup(name)) else {
            return Reply::error("ERR unknown command");
        };
        self.reader(now_ms).read(spec, arguments).await
    }

    /// Reads that share one snapshot of this shard, taken at the first of them (see [`Reader`]):
    /// those of a pipelined run, each command looked up once.
    pub fn reader(&self, now_ms: u64) -> Reader<'_> {
        Reader { machine: self, now_ms, context: None }
    }

    /// A read context on a snapshot of the state now.
    fn read_context(&self, now_ms: u64) -> Context<'_> {
        self.reads_count.set(self.reads_count.get() + 1);
        let seed = now_ms
            ^ u64::from(self.shard) << 48
            ^ self.applied_index()
            ^ self.reads_count.get().rotate_left(32);
        Context::for_read(&self.db, &self.cursors, now_ms, seed)
    }

    /// The WATCH version of `key` now (see `layout`): compared again when EXEC applies.
    pub async fn watch_version(&self, key: &[u8], now_ms: u64) -> Result<u64, Reply> {
        self.reader(now_ms).watch_version(key).await
    }

    /// Takes a snapshot of the state as of the last entry applied, captured now; the future makes
    /// that state durable (`durable_index()` reaches at least its index) and resolves to a
    /// stream of it that later applies, flushes, compactions and installs do not change. It
    /// holds the store, not the machine.
    pub fn snapshot(
        &self,
    ) -> impl std::future::Future<Output = Result<SnapshotStream, MachineError>> + 'static {
        let db = self.db.clone();
        let snapshot = db.snapshot();
        async move {
            db.flush().await.map_err(MachineError::Storage)?;
            let view = db.view(&snapshot).map_err(MachineError::Storage)?;
            Ok(SnapshotStream::new(view))
        }
    }

    /// Replaces the whole state with the snapshot of entry `index` that `source` streams (as a
    /// [`SnapshotStream`] produced it), durably: once this returns `Ok`, `durable_index()` and
    /// `applied_index()` are `index`. The store changes in one step at the end (a crash or an
    /// error before leaves the old state, durable below `index`); reads running across it
    /// start again on the new store rather than answer a mix. Never beside an apply
    /// (asserted). Blocked clients are woken to check again.
    pub async fn install(
        &self,
        index: u64,
        source: &mut impl SnapshotPieces,
    ) -> Result<(), MachineError> {
        assert!(!self.applying.replace(true), "an install never overlaps an apply");
        let _applying = Applying(&self.applying);
        let storage = MachineError::Storage;
        let malformed = |reason: &str| MachineError::Snapshot(reason.to_owned());
        let mut replacement = self.db.replace(index).await.map_err(storage)?;
        let mut decoder = StreamDecoder::default();
        loop {
            while let Some((key, value)) = decoder.next_record().map_err(malformed)? {
                replacement.add(&key, &value).await.map_err(storage)?;
            }
            match source.next().await.map_err(MachineError::Snapshot)? {
                Some(piece) => decoder.push(&piece),
                None => break,
            }
        }
        decoder.finish().map_err(malformed)?;
        replacement.finish().await.map_err(storage)?;
        self.shared.wake_all();
        Ok(())
    }

    /// Up to `limit` keys whose deadline is at or before `now_ms` (for an `Entry::Expire`).
    pub async fn expired_keys(&self, now_ms: u64, limit: usize) -> Vec<Vec<u8>> {
        let context = Context::for_read(&self.db, &self.cursors, now_ms, 0);
        let start = layout::expiry_key(0, b"");
        let end = layout::expiry_key(now_ms.saturating_add(1), b"");
        let Ok(records) = context.scan_raw(&start, Some(&end), limit).await else {
            return Vec::new();
        };
        records
            .iter()
            .filter_map(|(record, _)| layout::parse_expiry_key(record))
            .map(|(_, key)| key.to_vec())
            .collect()
    }
}

/// Where an install reads a snapshot stream from: its bytes, in pieces of any size.
pub trait SnapshotPieces {
    /// The next piece; `None` at the end (once the source checked the whole stream).
    fn next(&mut self) -> impl std::future::Future<Output = Result<Option<Vec<u8>>, String>>;
}

/// Clears the machine's `applying` flag when dropped.
struct Applying<'a>(&'a Cell<bool>);

impl Drop for Applying<'_> {
    fn drop(&mut self) {
        self.0.set(false);
    }
}

/// Read-only commands on one shard that share a snapshot and a read context: those of one
/// pipelined run, after its read barrier. Each is linearized at the snapshot, taken after the
/// barrier and so inside every one of their requests' spans. (If an install replaces the
/// store, the read running then and those after it take a newer snapshot: still inside their
/// spans.) A snapshot and context per read cost a small read (a GET from the memtable) a tenth
/// of its work.
pub struct Reader<'a> {
    machine: &'a Machine,
    /// Unix ms, the node's clock: one instant for all of the reads.
    now_ms: u64,
    /// Taken at the first read; dropped for a new one when an install replaced the store.
    context: Option<Context<'a>>,
}

impl<'a> Reader<'a> {
    /// Evaluates one read-only command (`spec`: that of `arguments[0]`).
    pub async fn read(&mut self, spec: &'static CommandSpec, arguments: &[Vec<u8>]) -> Reply {
        if spec.has(crate::command::WRITE) {
            return Reply::error(format!("ERR '{}' is not a read-only command", spec.name));
        }
        let mut attempts = 0;
        let outcome = loop {
            let outcome = commands::execute_command(self.context(), spec, arguments).await;
            if !self.again(&outcome, &mut attempts) {
                break outcome;
            }
        };
        outcome.unwrap_or_else(failed_read_reply)
    }

    /// The WATCH version of `key` (see [`Machine::watch_version`]).
    pub async fn watch_version(&mut self, key: &[u8]) -> Result<u64, Reply> {
        let mut attempts = 0;
        loop {
            let outcome = self.context().watch_version(key).await;
            if !self.again(&outcome, &mut attempts) {
                return outcome.map_err(failed_read_reply);
            }
        }
    }

    fn context(&mut self) -> &mut Context<'a> {
        let (machine, now_ms) = (self.machine, self.now_ms);
        self.context.get_or_insert_with(|| machine.read_context(now_ms))
    }

    /// Whether a read runs again: when an install replaced the store under its snapshot, at
    /// most [`READ_ATTEMPTS_MAX`] times, on a new snapshot (of a store at least as recent as
    /// the read barrier asked for).
    fn again<T>(&mut self, outcome: &Outcome<T>, attempts: &mut u32) -> bool {
        let replaced = matches!(outcome, Err(Fail::Storage(LsmError::Replaced)));
        if !replaced || *attempts == READ_ATTEMPTS_MAX {
            return false;
        }
        *attempts += 1;
        self.context = None;
        true
    }
}

/// What a client is told of a read that failed.
fn failed_read_reply(fail: Fail) -> Reply {
    match fail {
        Fail::Reply(reply) => reply,
        Fail::Storage(error) => Reply::error(format!("ERR storage: {error}")),
    }
}

/// Runs `queued` in order, each as if alone: a command that fails leaves nothing behind, as a
/// lone command's failure does (see [`Machine::apply`]). First with nothing noted to undo, as
/// failing commands nearly always fail before they stage anything; if one staged part of its
/// effect, the run starts over with a savepoint before each command, rolled back to when it
/// fails (so a run costs at most twice its commands). A MULTI/EXEC and a pipeline's run of
/// writes both come here.
async fn transaction(
    context: &mut Context<'_>,
    watched: &[(Vec<u8>, u64)],
    queued: &[Vec<Vec<u8>>],
) -> Result<Reply, Fail> {
    for (key, version) in watched {
        if context.watch_version(key).await? != *version {
            return Ok(Reply::NullArray);
        }
    }
    let mut careful = false;
    'run: loop {
        let mut replies = Vec::with_capacity(queued.len());
        for arguments in queued {
            if careful {
                context.set_savepoint();
            }
            let before = context.staged();
            match commands::execute(context, arguments).await {
                Ok(reply) => replies.push(reply),
                Err(Fail::Reply(reply)) if context.staged() == before => replies.push(reply),
                Err(Fail::Reply(reply)) if careful => {
                    context.rollback_to_savepoint();
                    replies.push(reply);
                }
                Err(Fail::Reply(_)) => {
                    context.restart();
                    careful = true;
                    continue 'run;
                }
                Err(Fail::Storage(error)) => return Err(Fail::Storage(error)),
            }
        }
        return Ok(Reply::Array(replies));
    }
}

async fn expire(context: &mut Context<'_>, keys: &[Vec<u8>]) -> Result<Reply, Fail> {
    let mut removed = 0;
    for key in keys {
        // Loading an expired key in a write context deletes it.
        if context.stored_meta(key).await?.is_some() && context.meta(key).await?.is_none() {
            removed += 1;
        }
    }
    Ok(Reply::Integer(removed))
}

async fn flush(context: &mut Context<'_>) -> Result<Reply, Fail> {
    context.flush();
    Ok(Reply::ok())
}
