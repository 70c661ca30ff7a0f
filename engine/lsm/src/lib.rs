//! `strata-lsm`: an LSM key-value store on the runtime's disk.
//!
//! # Invariants
//!
//! - A write (a [`WriteBatch`], applied atomically) is acknowledged once its WAL record is
//!   durable; it becomes visible to reads, in WAL order, right after. Every operation's sequence
//!   number is derived from its WAL index, so replay reproduces them exactly.
//! - With `Options::external_log` the store has no WAL: the caller's log (a Raft log) holds every
//!   write, applied with `write_at` under its log index; the manifest records how far flushed
//!   tables reach (`log_index_durable`) and the caller replays its log after that on reopen.
//! - For any key, versions in a newer source (active memtable, immutable memtables newest first,
//!   level 0 newest first, then levels 1..) have higher sequence numbers than versions and range
//!   tombstones in older sources. Levels >= 1 hold disjoint, sorted tables.
//! - A table is written, synced and its name made durable before a manifest names it; a manifest
//!   replaces the previous one atomically (write temp, sync, rename, sync directory); tables and
//!   WAL segments it no longer needs are deleted only after. Files the manifest does not name are
//!   leftovers of an interrupted flush or compaction and are deleted at open.
//! - A live [`Snapshot`] sees the same versions through flushes and compactions (merges keep
//!   every version a live snapshot sees). A [`View`] also holds on to the memtables and tables
//!   it reads, so it reads the same even after a [`Db::replace`].
//! - [`Db::replace`] (external-log mode) swaps the whole store for new tables in one manifest
//!   replacement, durable at its log index; readers see the old store or the new one, and a
//!   snapshot from before it answers [`LsmError::Replaced`] instead of reading the new one.
//!   No flush or compaction runs beside it.
//! - A failed write, sync or background flush/compaction latches the store: writes return
//!   [`LsmError::Latched`] until it is reopened. Reads go on, each block verified.
//!
//! # Fault model
//!
//! Everything the store reads is checksummed: WAL records (`strata-wal`), every SSTable block and
//! footer, the manifest. Damage is reported as [`LsmError::Corruption`] (or a WAL corruption
//! error), never returned as data. Crashes lose at most unacknowledged writes.
//!
//! Byte layouts: `docs/format.md`, sections "SSTable", "LSM manifest" and "LSM WAL record".

pub mod batch;
pub mod block;
pub mod bloom;
mod cache;
pub mod compaction;
mod error;
pub mod fuzz;
pub mod manifest;
pub mod memtable;
mod merge;
mod snapshots;
pub mod table;

pub use batch::WriteBatch;
pub use error::LsmError;

use batch::Operation;
use cache::BlockCache;
use compaction::{Shape, TableSummary};
use manifest::{Manifest, TableRecord, LEVELS};
use memtable::{Kind, Memtable, RangeTombstone};
use merge::{Merger, Reading, Source, TableCursor};
use snapshots::LiveSnapshots;
use std::cell::RefCell;
use std::collections::BTreeSet;
use std::future::Future;
use std::ops::{Bound, RangeBounds};
use std::rc::{Rc, Weak};
use std::task::{Poll, Waker};
use strata_rt::Runtime;
use strata_wal::Wal;
use table::{BuildOptions, Table, TableBuilder};

/// Tuning of a store.
#[derive(Clone, Debug)]
pub struct Options {
    /// The active memtable is frozen and queued for flushing past this size.
    pub memtable_bytes_max: usize,
    /// Writes wait while this many frozen memtables await flushing.
    pub immutable_memtables_max: usize,
    /// Compaction output is split into tables of about this size.
    pub table_bytes_target: usize,
    /// A table being built is written in pieces of about this size: a table of any size is
    /// built in bounded memory, and the reactor serves requests between pieces instead of
    /// stalling while a whole table is built and then copied to the kernel in one write.
    pub table_write_bytes: usize,
    /// A compaction reads its input tables this much at a time (at least a block): one read per
    /// block cost a reactor turn each, so a merge of megabytes took a second between requests.
    pub compaction_read_bytes: usize,
    pub block_bytes: usize,
    pub bloom_bits_per_key: u32,
    /// Compress data blocks with zstd.
    pub compress: bool,
    pub level0_tables_max: usize,
    pub level1_bytes: u64,
    pub level_multiplier: u64,
    pub cache_bytes: usize,
    pub wal: strata_wal::Options,
    /// The store keeps no WAL of its own: its caller's log (a Raft log) is the durable copy of
    /// every write, applied with [`Db::write_at`] under the caller's log index. After a crash the
    /// caller replays its log from [`Db::log_index_durable`]` + 1`.
    pub external_log: bool,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            memtable_bytes_max: 32 << 20,
            immutable_memtables_max: 2,
            table_bytes_target: 8 << 20,
            table_write_bytes: 1 << 20,
            compaction_read_bytes: 256 << 10,
            block_bytes: 4096,
            bloom_bits_per_key: 10,
            compress: false,
            level0_tables_max: 4,
            level1_bytes: 64 << 20,
            level_multiplier: 10,
            cache_bytes: 64 << 20,
            wal: strata_wal::Options::default(),
            external_log: false,
        }
    }
}

/// Counters for benchmarks and tests.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub flushes: u64,
    pub compactions: u64,
    pub trivial_moves: u64,
    /// Compactions that merged level 0 into itself (see `compaction`).
    pub level0_merges: u64,
    pub table_bytes_written: u64,
    pub user_bytes_written: u64,
    pub tables_per_level: Vec<usize>,
}

/// The tables of the store at one moment. Readers hold it while a compaction replaces it.
#[derive(Default)]
struct Version {
    /// Level 0 newest first; levels >= 1 sorted by smallest key.
    levels: Vec<Vec<Rc<Table>>>,
}

struct State {
    active: Memtable,
    /// Frozen memtables, oldest first.
    immutables: Vec<Rc<Memtable>>,
    version: Rc<Version>,
    manifest: Manifest,
    /// Every WAL record up to here is applied to a memtable.
    applied_index: u64,
    snapshots: LiveSnapshots,
    failed: Option<LsmError>,
    wakers: Vec<Waker>,
    /// The maintenance task has nothing to do.
    idle: bool,
    pointers: Vec<Vec<u8>>,
    stats: Stats,
    /// Bumped by every [`Db::replace`] that finishes: snapshots of an older generation no
    /// longer read (their versions are gone).
    generation: u64,
    /// A [`Replacement`] is under way: no flush or compaction starts and writes are refused.
    replacing: bool,
    /// The maintenance task is running a flush or a compaction.
    job_running: bool,
    /// The last handle on the store was dropped: no flush or compaction runs any more.
    closed: bool,
}

struct Inner {
    rt: Runtime,
    dir: String,
    options: Options,
    /// `None` with `Options::external_log`.
    wal: Option<Wal>,
    cache: Rc<BlockCache>,
    state: RefCell<State>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        let wakers = std::mem::take(&mut self.state.get_mut().wakers);
        wakers.into_iter().for_each(Waker::wake);
    }
}

fn latched(state: &State) -> Option<LsmError> {
    state.failed.as_ref().map(|cause| LsmError::Latched { cause: Box::new(cause.clone()) })
}

impl Inner {
    fn notify(&self) {
        let wakers = std::mem::take(&mut self.state.borrow_mut().wakers);
        wakers.into_iter().for_each(Waker::wake);
    }

    fn fail(&self, error: LsmError) -> LsmError {
        if matches!(error, LsmError::Latched { .. }) {
            return error;
        }
        {
            let mut state = self.state.borrow_mut();
            if state.failed.is_none() {
                state.failed = Some(error.clone());
            }
        }
        self.notify();
        LsmError::Latched { cause: Box::new(error) }
    }

    fn table_path(&self, id: u64) -> String {
        format!("{}/sst/{id:016x}.sst", self.dir)
    }

    fn build_options(&self) -> BuildOptions {
        BuildOptions {
            block_bytes: self.options.block_bytes,
            bloom_bits_per_key: self.options.bloom_bits_per_key,
            compress: self.options.compress,
        }
    }

    fn shape(&self) -> Shape {
        Shape {
            level0_tables_max: self.options.level0_tables_max,
            level1_bytes: self.options.level1_bytes,
            level_multiplier: self.options.level_multiplier,
        }
    }

    fn summaries(version: &Version) -> Vec<Vec<TableSummary>> {
        version
            .levels
            .iter()
            .map(|tables| {
                tables
                    .iter()
                    .map(|table| TableSummary {
                        id: table.id,
                        size_bytes: table.size_bytes,
                        smallest: table.meta.smallest.clone(),
                        largest: table.meta.largest.clone(),
                    })
                    .collect()
            })
            .collect()
    }

    fn plan(&self) -> Option<compaction::Plan> {
        let state = self.state.borrow();
        compaction::pick(&Self::summaries(&state.version), &self.shape(), &state.pointers)
    }
}

fn wait_for<'a, R>(
    inner: &'a Inner,
    mut check: impl FnMut(&mut State) -> Option<R> + 'a,
) -> impl Future<Output = R> + 'a {
    std::future::poll_fn(move |context| {
        let mut state = inner.state.borrow_mut();
        match check(&mut state) {
            Some(value) => Poll::Ready(value),
            None => {
                state.wakers.push(context.waker().clone());
                Poll::Pending
            }
        }
    })
}

/// A consistent read view: reads through it see the store as it was when it was taken.
pub struct Snapshot {
    inner: Weak<Inner>,
    sequence: u64,
    generation: u64,
}

impl std::fmt::Debug for Snapshot {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("Snapshot").field("sequence", &self.sequence).finish()
    }
}

impl Snapshot {
    pub fn sequence(&self) -> u64 {
        self.sequence
    }
}

impl Clone for Snapshot {
    fn clone(&self) -> Snapshot {
        if let Some(inner) = self.inner.upgrade() {
            inner.state.borrow_mut().snapshots.hold(self.sequence);
        }
        Snapshot { inner: self.inner.clone(), sequence: self.sequence, generation: self.generation }
    }
}

impl Drop for Snapshot {
    fn drop(&mut self) {
        if let Some(inner) = self.inner.upgrade() {
            inner.state.borrow_mut().snapshots.release(self.sequence);
        }
    }
}

/// The store. Clones share it.
#[derive(Clone)]
pub struct Db {
    inner: Rc<Inner>,
    _maintenance: Rc<Maintenance>,
}

/// Stops the store's flushes and compactions when the last handle on it goes, also midway
/// through one: otherwise a job would go on writing tables beside a store reopened on the same
/// directory. What it leaves is what a crash leaves (open cleans up), but for an operation the
/// kernel already runs, which may still complete. Writes still waiting for memtable room (their
/// tasks outlive the handle) fail, as nothing will flush.
struct Maintenance {
    task: strata_rt::JoinHandle<()>,
    inner: Weak<Inner>,
}

impl Drop for Maintenance {
    fn drop(&mut self) {
        self.task.abort();
        if let Some(inner) = self.inner.upgrade() {
            inner.state.borrow_mut().closed = true;
            inner.notify();
        }
    }
}

impl std::fmt::Debug for Db {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("Db").field("dir", &self.inner.dir).finish()
    }
}

async fn read_whole(rt: &Runtime, path: &str) -> Result<Option<Vec<u8>>, LsmError> {
    let file = match rt.disk().open(path).await {
        Ok(file) => file,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(LsmError::io("open", path, error)),
    };
    let len = file.len().await.map_err(|error| LsmError::io("len", path, error))?;
    if len > manifest::MANIFEST_BYTES_MAX as u64 {
        return Err(LsmError::corruption(path, 0, "file larger than any manifest"));
    }
    let bytes = file
        .read_exact_at(len as usize, 0)
        .await
        .map_err(|error| LsmError::io("read", path, error))?;
    Ok(Some(bytes))
}

/// Applies `batch` to `memtable`; `snapshots` (the live ones) keep the versions they read.
fn apply(memtable: &mut Memtable, batch: WriteBatch, wal_index: u64, snapshots: &LiveSnapshots) {
    let observed = |hidden: u64, by: u64| snapshots.any_in(hidden, by);
    for (position, operation) in batch.operations.into_iter().enumerate() {
        let sequence = batch::sequence(wal_index, position);
        match operation {
            Operation::Put { key, value } => {
                memtable.insert(key, sequence, Kind::Put, value, observed)
            }
            Operation::Delete { key } => {
                memtable.insert(key, sequence, Kind::Delete, Vec::new(), observed)
            }
            Operation::DeleteRange { start, end } => {
                memtable.insert_tombstone(RangeTombstone { start, end, sequence })
            }
        }
    }
    memtable.wal_index_max = memtable.wal_index_max.max(wal_index);
    if memtable.wal_index_min == 0 || wal_index < memtable.wal_index_min {
        memtable.wal_index_min = wal_index;
    }
}

/// Whether `memtable` may hold a version a read at `snapshot` sees.
fn visible_in(memtable: &Memtable, snapshot: u64) -> bool {
    memtable.wal_index_min != 0 && batch::sequence(memtable.wal_index_min, 0) <= snapshot
}

impl Db {
    /// Opens (recovering) or creates the store in `dir`, and starts its maintenance task.
    pub async fn open(rt: &Runtime, dir: &str, options: Options) -> Result<Db, LsmError> {
        let disk = rt.disk();
        let sst_dir = format!("{dir}/sst");
        disk.create_dir_all(&sst_dir)
            .await
            .map_err(|error| LsmError::io("create dir", &sst_dir, error))?;
        let manifest_path = format!("{dir}/MANIFEST");
        let manifest = match read_whole(rt, &manifest_path).await? {
            Some(bytes) => Manifest::decode(&bytes)
                .map_err(|reason| LsmError::corruption(&manifest_path, 0, reason))?,
            None => Manifest { next_table_id: 1, wal_replay_from: 1, tables: Vec::new() },
        };
        let cache = Rc::new(BlockCache::new(options.cache_bytes));
        let mut levels: Vec<Vec<Rc<Table>>> = vec![Vec::new(); LEVELS];
        for record in &manifest.tables {
            let path = format!("{sst_dir}/{:016x}.sst", record.id);
            let file = match disk.open(&path).await {
                Ok(file) => file,
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                    return Err(LsmError::corruption(
                        &path,
                        0,
                        "table named by the manifest is missing",
                    ));
                }
                Err(error) => return Err(LsmError::io("open", &path, error)),
            };
            let table = Table::open(file, path.clone(), record.id, cache.clone()).await?;
            if table.meta != record.meta || table.size_bytes != record.size_bytes {
                return Err(LsmError::corruption(
                    &path,
                    0,
                    "table does not match its manifest record",
                ));
            }
            levels[record.level as usize].push(Rc::new(table));
        }
        levels[0].sort_by_key(|table| std::cmp::Reverse(table.id));
        for tables in &mut levels[1..] {
            tables.sort_by(|a, b| a.meta.smallest.cmp(&b.meta.smallest));
        }
        // Leftovers of an interrupted flush or compaction, and of a manifest update.
        let named: BTreeSet<String> =
            manifest.tables.iter().map(|record| format!("{:016x}.sst", record.id)).collect();
        let mut removed_any = false;
        for name in
            disk.list(&sst_dir).await.map_err(|error| LsmError::io("list", &sst_dir, error))?
        {
            if !named.contains(&name) {
                let path = format!("{sst_dir}/{name}");
                disk.remove(&path).await.map_err(|error| LsmError::io("remove", &path, error))?;
                removed_any = true;
            }
        }
        if removed_any {
            disk.sync_dir(&sst_dir)
                .await
                .map_err(|error| LsmError::io("sync dir", &sst_dir, error))?;
        }
        let temporary = format!("{dir}/MANIFEST.tmp");
        match disk.remove(&temporary).await {
            Ok(()) => {}
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => return Err(LsmError::io("remove", &temporary, error)),
        }
        let mut active = Memtable::new(rt.rng().next_u64());
        let mut immutables = Vec::new();
        let (wal, applied_index) = if options.external_log {
            (None, manifest.wal_replay_from - 1)
        } else {
            let wal = open_wal(rt, dir, &options, manifest.wal_replay_from).await?;
            for (index, record) in wal.read_from(manifest.wal_replay_from).await? {
                let batch = WriteBatch::decode(&record).map_err(|reason| {
                    LsmError::corruption(
                        &format!("{dir}/wal"),
                        index,
                        format!("record {index}: {reason}"),
                    )
                })?;
                apply(&mut active, batch, index, &LiveSnapshots::default());
                if memtable_full(&active, &options) {
                    immutables.push(Rc::new(active.take()));
                }
            }
            let applied_index = wal.last_index();
            (Some(wal), applied_index)
        };
        let inner = Rc::new(Inner {
            rt: rt.clone(),
            dir: dir.to_string(),
            options,
            wal,
            cache,
            state: RefCell::new(State {
                active,
                immutables,
                version: Rc::new(Version { levels }),
                manifest,
                applied_index,
                snapshots: LiveSnapshots::default(),
                failed: None,
                wakers: Vec::new(),
                idle: false,
                pointers: vec![Vec::new(); LEVELS],
                stats: Stats::default(),
                generation: 0,
                replacing: false,
                job_running: false,
                closed: false,
            }),
        });
        let task = rt.spawn(maintenance(Rc::downgrade(&inner)));
        let maintenance = Maintenance { task, inner: Rc::downgrade(&inner) };
        Ok(Db { inner, _maintenance: Rc::new(maintenance) })
    }

    pub async fn put(
        &self,
        key: impl Into<Vec<u8>>,
        value: impl Into<Vec<u8>>,
    ) -> Result<(), LsmError> {
        let mut batch = WriteBatch::new();
        batch.put(key, value);
        self.write(batch).await
    }

    pub async fn delete(&self, key: impl Into<Vec<u8>>) -> Result<(), LsmError> {
        let mut batch = WriteBatch::new();
        batch.delete(key);
        self.write(batch).await
    }

    /// Deletes every key in `start..end`.
    pub async fn delete_range(
        &self,
        start: impl Into<Vec<u8>>,
        end: impl Into<Vec<u8>>,
    ) -> Result<(), LsmError> {
        let mut batch = WriteBatch::new();
        batch.delete_range(start, end);
        self.write(batch).await
    }

    /// Applies `batch` atomically; resolves once it is durable and visible. The work runs as its
    /// own task, so dropping this future does not leave the store half-way.
    pub async fn write(&self, batch: WriteBatch) -> Result<(), LsmError> {
        if self.inner.wal.is_none() {
            return Err(LsmError::Invalid {
                reason: "the store has an external log: write with write_at".into(),
            });
        }
        if batch.is_empty() {
            return Ok(());
        }
        if let Some(reason) = batch.problem() {
            return Err(LsmError::Invalid { reason });
        }
        let inner = self.inner.clone();
        let handle = self.inner.rt.spawn(async move { write_task(&inner, batch).await });
        handle
            .await
            .unwrap_or_else(|| Err(LsmError::Invalid { reason: "write task stopped".into() }))
    }

    /// With `Options::external_log`: applies `batch` (possibly empty) as the effect of entry
    /// `log_index` of the caller's durable log, visible at once, durable once flushed into a
    /// table ([`Db::log_index_durable`]). Indexes must increase from one call to the next. Waits
    /// only while too many memtables await flushing.
    pub async fn write_at(&self, batch: WriteBatch, log_index: u64) -> Result<(), LsmError> {
        if self.inner.wal.is_some() {
            return Err(LsmError::Invalid {
                reason: "write_at needs Options::external_log".into(),
            });
        }
        if let Some(reason) = batch.problem() {
            return Err(LsmError::Invalid { reason });
        }
        let inner = &self.inner;
        wait_for_room(inner).await?;
        let mut state = inner.state.borrow_mut();
        if state.replacing {
            return Err(LsmError::Invalid { reason: "the store is being replaced".into() });
        }
        if log_index <= state.applied_index {
            return Err(LsmError::Invalid {
                reason: format!(
                    "log index {log_index} is not above the applied index {}",
                    state.applied_index
                ),
            });
        }
        state.stats.user_bytes_written += batch.size_bytes as u64;
        let fields = &mut *state;
        apply(&mut fields.active, batch, log_index, &fields.snapshots);
        state.applied_index = log_index;
        freeze_if_full(inner, &mut state);
        drop(state);
        inner.notify();
        Ok(())
    }

    /// With `Options::external_log`: every write at or below this log index is in a synced table
    /// that the manifest names; the caller's log may drop entries up to here.
    pub fn log_index_durable(&self) -> u64 {
        self.inner.state.borrow().manifest.wal_replay_from - 1
    }

    /// The log index of the last write applied (the WAL's, or the caller's with an external log).
    pub fn log_index_applied(&self) -> u64 {
        self.inner.state.borrow().applied_index
    }

    /// A read view of everything acknowledged so far.
    pub fn snapshot(&self) -> Snapshot {
        let mut state = self.inner.state.borrow_mut();
        let sequence = batch::sequence_through(state.applied_index);
        state.snapshots.hold(sequence);
        let generation = state.generation;
        Snapshot { inner: Rc::downgrade(&self.inner), sequence, generation }
    }

    /// The sequence to read `snapshot` at; `Replaced` if a [`Db::replace`] came after it.
    fn sequence_of(&self, snapshot: &Snapshot) -> Result<u64, LsmError> {
        if snapshot.generation != self.inner.state.borrow().generation {
            return Err(LsmError::Replaced);
        }
        Ok(snapshot.sequence)
    }

    /// A read view of what `snapshot` sees that holds on to its memtables and tables, so that
    /// it reads the same whatever the store does after (writes, flushes, compactions, a
    /// [`Db::replace`]). It keeps the tables it reads on disk (open, if deleted) until dropped.
    /// Cheapest after a [`Db::flush`]: then it pins no memtable.
    pub fn view(&self, snapshot: &Snapshot) -> Result<View, LsmError> {
        let sequence = self.sequence_of(snapshot)?;
        let mut state = self.inner.state.borrow_mut();
        if visible_in(&state.active, sequence) {
            // Freeze it, so that it can be shared: later writes go to a new one.
            let frozen = state.active.take();
            state.immutables.push(Rc::new(frozen));
            state.idle = false;
        }
        let memtables = state
            .immutables
            .iter()
            .filter(|memtable| visible_in(memtable, sequence))
            .cloned()
            .collect();
        let view = View { sequence, memtables, version: state.version.clone() };
        drop(state);
        self.inner.notify();
        Ok(view)
    }

    /// Starts replacing the whole store with the pairs a [`Replacement`] is given, as of entry
    /// `log_index` of the caller's log (`Options::external_log`). Waits for a running flush or
    /// compaction to end; none starts, and writes are refused, until the replacement finishes
    /// or is dropped. Nothing changes, on disk or for readers, before [`Replacement::finish`].
    pub async fn replace(&self, log_index: u64) -> Result<Replacement, LsmError> {
        if self.inner.wal.is_some() {
            return Err(LsmError::Invalid { reason: "replace needs Options::external_log".into() });
        }
        if log_index == 0 || log_index >= 1 << (64 - batch::SEQUENCE_POSITION_BITS) {
            return Err(LsmError::Invalid { reason: format!("log index {log_index}") });
        }
        {
            let mut state = self.inner.state.borrow_mut();
            if let Some(error) = latched(&state) {
                return Err(error);
            }
            if state.replacing {
                return Err(LsmError::Invalid { reason: "a replacement is under way".into() });
            }
            state.replacing = true;
        }
        let replacement = Replacement {
            inner: self.inner.clone(),
            log_index,
            writer: None,
            tables: Vec::new(),
            last_key: None,
            finished: false,
        };
        wait_for(&self.inner, |state| {
            if let Some(error) = latched(state) {
                return Some(Err(error));
            }
            (!state.job_running).then_some(Ok(()))
        })
        .await?;
        Ok(replacement)
    }

    fn current_sequence(&self) -> u64 {
        batch::sequence_through(self.inner.state.borrow().applied_index)
    }

    pub async fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, LsmError> {
        self.get_at(key, self.current_sequence()).await
    }

    pub async fn get_in(
        &self,
        key: &[u8],
        snapshot: &Snapshot,
    ) -> Result<Option<Vec<u8>>, LsmError> {
        // No await between the check and `get_at` taking the memtables and tables it reads.
        self.get_at(key, self.sequence_of(snapshot)?).await
    }

    async fn get_at(&self, key: &[u8], snapshot: u64) -> Result<Option<Vec<u8>>, LsmError> {
        let mut tombstone = 0;
        let version = {
            let state = self.inner.state.borrow();
            let memtables =
                std::iter::once(&state.active).chain(state.immutables.iter().rev().map(|m| &**m));
            for memtable in memtables {
                tombstone = tombstone.max(memtable.tombstone_sequence(key, snapshot));
                if let Some((sequence, kind, value)) = memtable.get(key, snapshot) {
                    return Ok((kind == Kind::Put && sequence > tombstone).then(|| value.to_vec()));
                }
            }
            state.version.clone()
        };
        for (level, tables) in version.levels.iter().enumerate() {
            let candidates: Vec<&Rc<Table>> = if level == 0 {
                tables.iter().collect()
            } else {
                let position =
                    tables.partition_point(|table| table.meta.smallest.as_slice() <= key);
                tables[..position].last().into_iter().collect()
            };
            for table in candidates {
                if !table.may_span(key) {
                    continue;
                }
                tombstone = tombstone.max(table.tombstone_sequence(key, snapshot));
                if let Some(entry) = table.get(key, snapshot).await? {
                    return Ok((entry.kind == Kind::Put && entry.sequence > tombstone)
                        .then_some(entry.value));
                }
            }
        }
        Ok(None)
    }

    /// Calls `visit` with each live key and value in the range, in key order, as of `snapshot`
    /// (now if `None`), until it returns false. A snapshot taken before a [`Db::replace`] reads
    /// nothing: `Replaced`.
    ///
    /// The memtables are copied (they change while tables are read) [`SCAN_PASS_KEYS`] keys at
    /// a time: a scan that stops early costs what it read, not the memtables' whole range. A
    /// scan of several passes holds a snapshot across them, so each reads the same versions;
    /// a [`Db::replace`] finishing meanwhile ends it with `Replaced` after part of the range.
    pub async fn scan(
        &self,
        start: Bound<&[u8]>,
        end: Bound<&[u8]>,
        snapshot: Option<&Snapshot>,
        mut visit: impl FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<(), LsmError> {
        if range_is_empty(start, end) {
            return Ok(());
        }
        // Taken only once a second pass is needed: a short scan registers nothing.
        let mut held: Option<Snapshot> = None;
        let mut from: Bound<Vec<u8>> = start.map(<[u8]>::to_vec);
        loop {
            let sequence = match snapshot.or(held.as_ref()) {
                Some(snapshot) => self.sequence_of(snapshot)?,
                None => self.current_sequence(),
            };
            // No await between the check above and taking the memtables and tables read.
            let (sources, tombstones, version, cut) = {
                let state = self.inner.state.borrow();
                let memtables =
                    std::iter::once(&state.active).chain(state.immutables.iter().map(|m| &**m));
                let pass =
                    memtable_sources(memtables, borrowed(&from), end, sequence, SCAN_PASS_KEYS);
                (pass.sources, pass.tombstones, state.version.clone(), pass.cut)
            };
            if cut.is_some() && snapshot.is_none() && held.is_none() {
                // Still no await since `sequence` was read: the snapshot is at it.
                let taken = self.snapshot();
                assert_eq!(taken.sequence, sequence, "a scan's snapshot is at its first pass");
                held = Some(taken);
            }
            // Every memtable's keys up to the cut are in this pass; what follows, in the next.
            let pass_end = cut.as_deref().map_or(end, Bound::Included);
            let going_on = merge_scan(
                sources,
                tombstones,
                &version,
                borrowed(&from),
                pass_end,
                sequence,
                &mut visit,
            )
            .await?;
            match cut {
                Some(cut) if going_on => from = Bound::Excluded(cut),
                _ => return Ok(()),
            }
        }
    }

    /// Live keys and values in `start..end` (unbounded ends with `None`).
    pub async fn range(
        &self,
        start: Bound<&[u8]>,
        end: Bound<&[u8]>,
        snapshot: Option<&Snapshot>,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>, LsmError> {
        let mut out = Vec::new();
        self.scan(start, end, snapshot, |key, value| {
            out.push((key.to_vec(), value.to_vec()));
            true
        })
        .await?;
        Ok(out)
    }

    /// Live keys and values starting with `prefix`.
    pub async fn prefix(
        &self,
        prefix: &[u8],
        snapshot: Option<&Snapshot>,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>, LsmError> {
        let end = prefix_end(prefix);
        let end_bound = end.as_deref().map_or(Bound::Unbounded, Bound::Excluded);
        self.range(Bound::Included(prefix), end_bound, snapshot).await
    }

    /// Freezes the active memtable and waits until every frozen memtable is in a table.
    pub async fn flush(&self) -> Result<(), LsmError> {
        {
            let mut state = self.inner.state.borrow_mut();
            if let Some(error) = latched(&state) {
                return Err(error);
            }
            // A memtable of empty external-log writes still moves the durable log index.
            let behind = state.active.wal_index_max >= state.manifest.wal_replay_from;
            if !state.active.is_empty() || behind {
                let frozen = state.active.take();
                state.immutables.push(Rc::new(frozen));
                state.idle = false;
            }
        }
        self.inner.notify();
        wait_for(&self.inner, |state| {
            if let Some(error) = latched(state) {
                return Some(Err(error));
            }
            state.immutables.is_empty().then_some(Ok(()))
        })
        .await
    }

    /// Waits until no flush or compaction is due.
    pub async fn wait_idle(&self) -> Result<(), LsmError> {
        self.inner.state.borrow_mut().idle = false;
        self.inner.notify();
        wait_for(&self.inner, |state| {
            if let Some(error) = latched(state) {
                return Some(Err(error));
            }
            (state.idle && state.immutables.is_empty()).then_some(Ok(()))
        })
        .await
    }

    pub fn failure(&self) -> Option<LsmError> {
        self.inner.state.borrow().failed.clone()
    }

    pub fn stats(&self) -> Stats {
        let state = self.inner.state.borrow();
        let mut stats = state.stats.clone();
        stats.tables_per_level = state.version.levels.iter().map(Vec::len).collect();
        stats
    }

    /// The WAL the store logs to (for tests and metrics); `None` with an external log.
    pub fn wal(&self) -> Option<&Wal> {
        self.inner.wal.as_ref()
    }
}

fn range_is_empty(start: Bound<&[u8]>, end: Bound<&[u8]>) -> bool {
    match (start, end) {
        (Bound::Included(start), Bound::Included(end)) => start > end,
        (Bound::Included(start) | Bound::Excluded(start), Bound::Excluded(end))
        | (Bound::Excluded(start), Bound::Included(end)) => start >= end,
        _ => false,
    }
}

fn above_end(key: &[u8], end: Bound<&[u8]>) -> bool {
    match end {
        Bound::Included(end) => key > end,
        Bound::Excluded(end) => key >= end,
        Bound::Unbounded => false,
    }
}

fn borrowed(bound: &Bound<Vec<u8>>) -> Bound<&[u8]> {
    bound.as_ref().map(Vec::as_slice)
}

/// Keys a scan copies from each memtable per pass (see [`Db::scan`]).
const SCAN_PASS_KEYS: usize = 1024;

/// What one pass of a scan reads of the memtables.
struct MemtablePass {
    /// Each memtable's versions, a sorted source.
    sources: Vec<Source>,
    /// Their range tombstones a read at the pass's snapshot sees.
    tombstones: Vec<RangeTombstone>,
    /// The lowest last key copied of a memtable with keys of the range left: above it, this
    /// pass has not every memtable's versions.
    cut: Option<Vec<u8>>,
}

/// The versions in a range of the memtables a read at `snapshot` sees, up to `keys_max` keys
/// of each; memtables holding only later writes are skipped.
fn memtable_sources<'a>(
    memtables: impl Iterator<Item = &'a Memtable>,
    start: Bound<&[u8]>,
    end: Bound<&[u8]>,
    snapshot: u64,
    keys_max: usize,
) -> MemtablePass {
    let mut pass = MemtablePass { sources: Vec::new(), tombstones: Vec::new(), cut: None };
    for memtable in memtables.filter(|memtable| visible_in(memtable, snapshot)) {
        let (entries, cut) = memtable.entries_in(start, end, keys_max);
        pass.sources.push(Source::memory(entries));
        let seen = memtable.tombstones().iter().filter(|t| t.sequence <= snapshot).cloned();
        pass.tombstones.extend(seen);
        if let Some(cut) = cut {
            if pass.cut.as_ref().is_none_or(|lowest| cut < *lowest) {
                pass.cut = Some(cut);
            }
        }
    }
    pass
}

/// Merges `sources` (memtables) with the tables of `version` overlapping the range, and calls
/// `visit` with each key's newest live version at `snapshot`, in key order, until it returns
/// false; whether it never did.
async fn merge_scan(
    mut sources: Vec<Source>,
    mut tombstones: Vec<RangeTombstone>,
    version: &Version,
    start: Bound<&[u8]>,
    end: Bound<&[u8]>,
    snapshot: u64,
    mut visit: impl FnMut(&[u8], &[u8]) -> bool,
) -> Result<bool, LsmError> {
    let in_range = |key: &[u8]| (start, end).contains(&key);
    let overlaps = |smallest: &[u8], largest: &[u8]| {
        let above = match start {
            Bound::Included(start) | Bound::Excluded(start) => largest >= start,
            Bound::Unbounded => true,
        };
        let below = match end {
            Bound::Included(end) => smallest <= end,
            Bound::Excluded(end) => smallest < end,
            Bound::Unbounded => true,
        };
        above && below
    };
    for table in version.levels.iter().flatten() {
        if overlaps(&table.meta.smallest, &table.meta.largest) {
            tombstones.extend(table.tombstones.iter().filter(|t| t.sequence <= snapshot).cloned());
            sources.push(Source::Table(
                TableCursor::new(table.clone(), start, Reading::Cached).await?,
            ));
        }
    }
    let mut merger = Merger::new(sources);
    // The last key whose version at `snapshot` was decided (a buffer kept from key to key).
    let mut done_key: Option<Vec<u8>> = None;
    while let Some((source, entry)) = merger.peek() {
        if !in_range(entry.key) {
            if !matches!(end, Bound::Unbounded) && above_end(entry.key, end) {
                break;
            }
        } else if entry.sequence <= snapshot && done_key.as_deref() != Some(entry.key) {
            let hidden =
                memtable::tombstone_sequence(&tombstones, entry.key, snapshot) > entry.sequence;
            if entry.kind == Kind::Put && !hidden && !visit(entry.key, entry.value) {
                return Ok(false);
            }
            let done = done_key.get_or_insert_with(Vec::new);
            done.clear();
            done.extend_from_slice(entry.key);
        }
        merger.advance(source).await?;
    }
    Ok(true)
}

/// A read view that holds on to what it reads (see [`Db::view`]).
pub struct View {
    sequence: u64,
    memtables: Vec<Rc<Memtable>>,
    version: Rc<Version>,
}

impl std::fmt::Debug for View {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("View")
            .field("sequence", &self.sequence)
            .field("memtables", &self.memtables.len())
            .finish()
    }
}

impl View {
    /// Calls `visit` with each live key and value in the range, in key order, until it returns
    /// false.
    pub async fn scan(
        &self,
        start: Bound<&[u8]>,
        end: Bound<&[u8]>,
        visit: impl FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<(), LsmError> {
        if range_is_empty(start, end) {
            return Ok(());
        }
        // A view's memtables do not change: one pass reads them all.
        let memtables = self.memtables.iter().map(|memtable| &**memtable);
        let pass = memtable_sources(memtables, start, end, self.sequence, usize::MAX);
        let sequence = self.sequence;
        merge_scan(pass.sources, pass.tombstones, &self.version, start, end, sequence, visit)
            .await
            .map(drop)
    }
}

/// The smallest key above every key starting with `prefix`, if there is one.
pub fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

/// Waits until a write may go into the memtable: fewer frozen memtables than allowed. A store
/// closed meanwhile (its last handle dropped) flushes no more, so its waiting writes fail.
async fn wait_for_room(inner: &Inner) -> Result<(), LsmError> {
    wait_for(inner, |state| {
        if let Some(error) = latched(state) {
            return Some(Err(error));
        }
        if state.immutables.len() < inner.options.immutable_memtables_max {
            return Some(Ok(()));
        }
        state.closed.then(|| Err(LsmError::Invalid { reason: "the store was closed".into() }))
    })
    .await
}

async fn write_task(inner: &Rc<Inner>, batch: WriteBatch) -> Result<(), LsmError> {
    let size = batch.size_bytes;
    wait_for_room(inner).await?;
    let wal = inner.wal.as_ref().expect("write checked the store has its own WAL");
    let index = match wal.append(batch.encode()).await {
        Ok(index) => index,
        Err(error) => return Err(inner.fail(error.into())),
    };
    // Apply in WAL order, so that a snapshot never sees a later write without an earlier one.
    wait_for(inner, |state| {
        if state.applied_index + 1 == index {
            return Some(Ok(()));
        }
        latched(state).map(Err)
    })
    .await?;
    {
        let mut state = inner.state.borrow_mut();
        let fields = &mut *state;
        apply(&mut fields.active, batch, index, &fields.snapshots);
        state.applied_index = index;
        state.stats.user_bytes_written += size as u64;
        freeze_if_full(inner, &mut state);
    }
    inner.notify();
    Ok(())
}

/// Writes that overwrite keep a memtable small, but the log behind it grows: past
/// [`LOG_PER_MEMTABLE_ROOM`] times the memtable's room of writes, it is flushed anyway, so
/// the log can be cut and a restart replays a bounded tail.
fn memtable_full(memtable: &Memtable, options: &Options) -> bool {
    memtable.size_bytes() >= options.memtable_bytes_max
        || memtable.written_bytes() >= LOG_PER_MEMTABLE_ROOM * options.memtable_bytes_max
}

/// See [`memtable_full`].
const LOG_PER_MEMTABLE_ROOM: usize = 4;

fn freeze_if_full(inner: &Inner, state: &mut State) {
    // buggify: freeze small memtables now and then, to flush and compact far more often.
    let early =
        strata_rt::buggify!() && state.immutables.len() + 1 < inner.options.immutable_memtables_max;
    if early || memtable_full(&state.active, &inner.options) {
        let frozen = state.active.take();
        state.immutables.push(Rc::new(frozen));
        state.idle = false;
    }
}

async fn open_wal(
    rt: &Runtime,
    dir: &str,
    options: &Options,
    replay_from: u64,
) -> Result<Wal, LsmError> {
    let mut wal_options = options.wal.clone();
    wal_options.first_index = replay_from;
    let wal = Wal::open(rt, &format!("{dir}/wal"), wal_options).await?;
    let gap = wal.first_index() > replay_from && wal.last_index() >= wal.first_index();
    if wal.last_index() + 1 < replay_from || gap {
        return Err(LsmError::corruption(
            &format!("{dir}/wal"),
            0,
            "the log ends before the manifest's replay point",
        ));
    }
    Ok(wal)
}

/// Flushes and compacts, one job at a time, until the store is dropped or fails.
async fn maintenance(weak: Weak<Inner>) {
    loop {
        let ready = std::future::poll_fn(|context| {
            let Some(inner) = weak.upgrade() else { return Poll::Ready(false) };
            let mut state = inner.state.borrow_mut();
            if state.failed.is_some() {
                return Poll::Ready(false);
            }
            if state.replacing || (state.idle && state.immutables.is_empty()) {
                state.wakers.push(context.waker().clone());
                return Poll::Pending;
            }
            state.job_running = true;
            Poll::Ready(true)
        })
        .await;
        if !ready {
            return;
        }
        let Some(inner) = weak.upgrade() else { return };
        let running = JobRunning(&inner);
        let has_immutable = !inner.state.borrow().immutables.is_empty();
        let result = if has_immutable {
            flush_one(&inner).await.map(|()| true)
        } else {
            match inner.plan() {
                Some(plan) => compact(&inner, plan).await.map(|()| true),
                None => Ok(false),
            }
        };
        drop(running);
        match result {
            Ok(true) => inner.notify(),
            Ok(false) => {
                inner.state.borrow_mut().idle = true;
                inner.notify();
            }
            Err(error) => {
                inner.fail(error);
                return;
            }
        }
    }
}

/// Marks the maintenance task's job as over when dropped (also if the store goes away midway).
struct JobRunning<'a>(&'a Inner);

impl Drop for JobRunning<'_> {
    fn drop(&mut self) {
        self.0.state.borrow_mut().job_running = false;
    }
}

/// Replaces a whole store (see [`Db::replace`]): new tables are built from the pairs added, in
/// strictly increasing key order, then [`Replacement::finish`] swaps them in atomically. Dropped
/// unfinished, it changes nothing (the tables it wrote are deleted at the next open).
pub struct Replacement {
    inner: Rc<Inner>,
    log_index: u64,
    writer: Option<TableWriter>,
    tables: Vec<Rc<Table>>,
    last_key: Option<Vec<u8>>,
    finished: bool,
}

impl std::fmt::Debug for Replacement {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Replacement")
            .field("log_index", &self.log_index)
            .field("tables", &self.tables.len())
            .finish()
    }
}

impl Drop for Replacement {
    fn drop(&mut self) {
        if !self.finished {
            self.inner.state.borrow_mut().replacing = false;
            self.inner.notify();
        }
    }
}

impl Replacement {
    /// Adds the next pair: keys strictly increase, within the store's bounds.
    pub async fn add(&mut self, key: &[u8], value: &[u8]) -> Result<(), LsmError> {
        if key.is_empty() || key.len() > batch::KEY_BYTES_MAX {
            return Err(LsmError::Invalid {
                reason: format!(
                    "key of {} bytes (1..={} allowed)",
                    key.len(),
                    batch::KEY_BYTES_MAX
                ),
            });
        }
        if value.len() > batch::VALUE_BYTES_MAX {
            return Err(LsmError::Invalid {
                reason: format!(
                    "value of {} bytes exceeds {}",
                    value.len(),
                    batch::VALUE_BYTES_MAX
                ),
            });
        }
        if self.last_key.as_deref().is_some_and(|last| last >= key) {
            return Err(LsmError::Invalid { reason: "keys out of order".into() });
        }
        if let Some(error) = latched(&self.inner.state.borrow()) {
            return Err(error);
        }
        let full = self
            .writer
            .as_ref()
            .is_some_and(|writer| writer.size_bytes() >= self.inner.options.table_bytes_target);
        if full {
            self.write_table().await?;
        }
        let writer = self.writer.get_or_insert_with(|| TableWriter::new(&self.inner));
        let sequence = batch::sequence(self.log_index, 0);
        writer.add(key, sequence, Kind::Put, value).await.map_err(|e| self.inner.fail(e))?;
        self.last_key = Some(key.to_vec());
        Ok(())
    }

    async fn write_table(&mut self) -> Result<(), LsmError> {
        let Some(writer) = self.writer.take() else { return Ok(()) };
        let table = writer.finish(&[]).await.map_err(|e| self.inner.fail(e))?;
        self.tables.push(table);
        Ok(())
    }

    /// Makes the pairs added the whole store, durably, as of the log index given: once this
    /// returns `Ok`, `log_index_durable()` and `log_index_applied()` are that index. The new
    /// tables are synced, then a manifest naming only them replaces the old one atomically (a
    /// crash before leaves the old store, whole); then memtables and tables of the old store are
    /// dropped, and the old tables deleted. Reads see the old store or the new one, never a mix;
    /// a snapshot taken before reads nothing after (`Replaced`), a [`View`] keeps reading.
    pub async fn finish(mut self) -> Result<(), LsmError> {
        self.write_table().await?;
        let inner = self.inner.clone();
        if !self.tables.is_empty() {
            sync_sst_dir(&inner).await.map_err(|error| inner.fail(error))?;
        }
        let bottom = LEVELS - 1;
        let mut manifest = inner.state.borrow().manifest.clone();
        let old: Vec<u64> = manifest.tables.iter().map(|record| record.id).collect();
        manifest.tables = self.tables.iter().map(|table| record_of(table, bottom)).collect();
        manifest.wal_replay_from = self.log_index + 1;
        write_manifest(&inner, &manifest).await.map_err(|error| inner.fail(error))?;
        {
            let mut state = inner.state.borrow_mut();
            let mut levels: Vec<Vec<Rc<Table>>> = vec![Vec::new(); LEVELS];
            levels[bottom] = std::mem::take(&mut self.tables);
            // `next_table_id` may have grown while the manifest was written: keep the larger.
            manifest.next_table_id = manifest.next_table_id.max(state.manifest.next_table_id);
            state.manifest = manifest;
            state.version = Rc::new(Version { levels });
            drop(state.active.take());
            state.immutables.clear();
            state.applied_index = self.log_index;
            state.generation += 1;
            state.pointers = vec![Vec::new(); LEVELS];
            state.replacing = false;
            state.idle = false;
        }
        self.finished = true;
        inner.notify();
        // The manifest no longer names the old tables; views may still read them (open). Open
        // deletes them if this fails.
        for id in old {
            let _ = inner.rt.disk().remove(&inner.table_path(id)).await;
        }
        Ok(())
    }
}

/// Builds one table and writes it as it grows (`Options::table_write_bytes` at a time, see
/// [`TableBuilder::take_output`]). The file is created, and its id taken, with the first bytes
/// written; [`TableWriter::finish`] syncs it. The caller syncs the directory. A writer dropped
/// unfinished leaves a file no manifest names, which the next open deletes.
struct TableWriter {
    inner: Rc<Inner>,
    builder: TableBuilder,
    file: Option<(u64, String, strata_rt::File)>,
    written: u64,
    /// The buffer of the last piece written, for the next.
    spare: Vec<u8>,
}

impl TableWriter {
    fn new(inner: &Rc<Inner>) -> TableWriter {
        TableWriter {
            builder: TableBuilder::new(inner.build_options()),
            inner: inner.clone(),
            file: None,
            written: 0,
            spare: Vec::new(),
        }
    }

    async fn add(
        &mut self,
        key: &[u8],
        sequence: u64,
        kind: Kind,
        value: &[u8],
    ) -> Result<(), LsmError> {
        self.builder.add(key, sequence, kind, value);
        let output = self.builder.output_len();
        if output > 0 && output >= self.inner.options.table_write_bytes {
            let piece = self.builder.take_output(std::mem::take(&mut self.spare));
            self.write(piece).await?;
        }
        Ok(())
    }

    fn size_bytes(&self) -> usize {
        self.builder.size_bytes()
    }

    fn entry_count(&self) -> u64 {
        self.builder.entry_count()
    }

    async fn write(&mut self, piece: Vec<u8>) -> Result<(), LsmError> {
        if self.file.is_none() {
            let id = {
                let mut state = self.inner.state.borrow_mut();
                state.manifest.next_table_id += 1;
                state.manifest.next_table_id - 1
            };
            let path = self.inner.table_path(id);
            let file = self
                .inner
                .rt
                .disk()
                .create_new(&path)
                .await
                .map_err(|error| LsmError::io("create", &path, error))?;
            self.file = Some((id, path, file));
        }
        let (_, path, file) = self.file.as_ref().expect("created above");
        let (result, piece) = file.write_at(piece, self.written).await;
        result.map_err(|error| LsmError::io("write", path, error))?;
        self.written += piece.len() as u64;
        self.spare = piece;
        Ok(())
    }

    /// Finishes the table with its range tombstones: writes the rest, syncs, and opens it.
    async fn finish(mut self, tombstones: &[RangeTombstone]) -> Result<Rc<Table>, LsmError> {
        let fresh = TableBuilder::new(self.inner.build_options());
        let builder = std::mem::replace(&mut self.builder, fresh);
        let (rest, _) = builder.finish(tombstones);
        self.write(rest).await?;
        let (id, path, file) = self.file.take().expect("finish writes");
        file.sync().await.map_err(|error| LsmError::io("sync", &path, error))?;
        self.inner.state.borrow_mut().stats.table_bytes_written += self.written;
        Ok(Rc::new(Table::open(file, path, id, self.inner.cache.clone()).await?))
    }
}

async fn sync_sst_dir(inner: &Inner) -> Result<(), LsmError> {
    let dir = format!("{}/sst", inner.dir);
    inner.rt.disk().sync_dir(&dir).await.map_err(|error| LsmError::io("sync dir", &dir, error))
}

/// Replaces the manifest atomically: write temp, sync, rename, sync the directory.
async fn write_manifest(inner: &Inner, manifest: &Manifest) -> Result<(), LsmError> {
    if strata_rt::buggify!() {
        // Widen the window in which writes, reads and snapshots race a version change.
        strata_rt::sync::yield_now().await;
    }
    let disk = inner.rt.disk();
    let temporary = format!("{}/MANIFEST.tmp", inner.dir);
    let path = format!("{}/MANIFEST", inner.dir);
    match disk.remove(&temporary).await {
        Ok(()) => {}
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        Err(error) => return Err(LsmError::io("remove", &temporary, error)),
    }
    let file = disk
        .create_new(&temporary)
        .await
        .map_err(|error| LsmError::io("create", &temporary, error))?;
    let (result, _) = file.write_at(manifest.encode(), 0).await;
    result.map_err(|error| LsmError::io("write", &temporary, error))?;
    file.sync().await.map_err(|error| LsmError::io("sync", &temporary, error))?;
    disk.rename(&temporary, &path)
        .await
        .map_err(|error| LsmError::io("rename", &temporary, error))?;
    disk.sync_dir(&inner.dir).await.map_err(|error| LsmError::io("sync dir", &inner.dir, error))
}

/// Finishes one compaction output with the fragments of `tombstones` inside its key range
/// (`lower..upper`, unbounded where `None`); `None` if it would hold nothing.
async fn finish_output(
    writer: TableWriter,
    tombstones: &[RangeTombstone],
    (lower, upper): (Option<&[u8]>, Option<&[u8]>),
) -> Result<Option<Rc<Table>>, LsmError> {
    let fragments: Vec<RangeTombstone> = tombstones
        .iter()
        .filter_map(|tombstone| compaction::clip(tombstone, lower, upper))
        .collect();
    if writer.entry_count() == 0 && fragments.is_empty() {
        return Ok(None);
    }
    Ok(Some(writer.finish(&fragments).await?))
}

fn record_of(table: &Table, level: usize) -> TableRecord {
    TableRecord {
        id: table.id,
        level: level as u32,
        size_bytes: table.size_bytes,
        meta: table.meta.clone(),
    }
}

async fn flush_one(inner: &Rc<Inner>) -> Result<(), LsmError> {
    let memtable = inner.state.borrow().immutables[0].clone();
    let replay_from = memtable.wal_index_max + 1;
    let table = if memtable.is_empty() {
        None
    } else {
        let mut writer = TableWriter::new(inner);
        for entry in memtable.entry_refs() {
            writer.add(entry.key, entry.sequence, entry.kind, entry.value).await?;
        }
        let table = writer.finish(memtable.tombstones()).await?;
        sync_sst_dir(inner).await?;
        Some(table)
    };
    let mut manifest = inner.state.borrow().manifest.clone();
    if let Some(table) = &table {
        manifest.tables.push(record_of(table, 0));
    }
    manifest.wal_replay_from = manifest.wal_replay_from.max(replay_from);
    write_manifest(inner, &manifest).await?;
    {
        let mut state = inner.state.borrow_mut();
        let mut levels = state.version.levels.clone();
        if let Some(table) = table {
            levels[0].insert(0, table);
        }
        state.version = Rc::new(Version { levels });
        state.manifest = manifest;
        state.immutables.remove(0);
        state.stats.flushes += 1;
        state.idle = false;
    }
    inner.notify();
    if let Some(wal) = inner.wal.as_ref().filter(|_| memtable.wal_index_max > 0) {
        wal.truncate_prefix(replay_from).await?;
    }
    Ok(())
}

async fn compact(inner: &Rc<Inner>, plan: compaction::Plan) -> Result<(), LsmError> {
    let (version, snapshots) = {
        let state = inner.state.borrow();
        (state.version.clone(), state.snapshots.sequences())
    };
    let find = |level: usize, id: u64| -> Rc<Table> {
        version.levels[level]
            .iter()
            .find(|table| table.id == id)
            .expect("planned tables exist")
            .clone()
    };
    let upper: Vec<Rc<Table>> = plan.upper.iter().map(|&id| find(plan.level, id)).collect();
    let lower: Vec<Rc<Table>> =
        plan.lower.iter().map(|&id| find(plan.output_level(), id)).collect();
    let output_level = plan.output_level();
    let mut outputs: Vec<Rc<Table>> = Vec::new();
    if plan.is_trivial_move() {
        outputs.push(upper[0].clone());
    } else {
        let mut sources = Vec::new();
        let mut tombstones: Vec<RangeTombstone> = Vec::new();
        for table in upper.iter().chain(&lower) {
            tombstones.extend(table.tombstones.iter().cloned());
            sources.push(Source::Table(
                TableCursor::new(
                    table.clone(),
                    Bound::Unbounded,
                    Reading::Ahead { bytes: inner.options.compaction_read_bytes },
                )
                .await?,
            ));
        }
        tombstones.sort();
        tombstones.dedup();
        let kept_tombstones: Vec<RangeTombstone> = tombstones
            .iter()
            .filter(|tombstone| compaction::keep_tombstone(tombstone, &snapshots, plan.bottom))
            .cloned()
            .collect();
        let mut merger = Merger::new(sources);
        let mut writer: Option<TableWriter> = None;
        // The first key of the table being written; `None` for the first table.
        let mut lower_bound: Option<Vec<u8>> = None;
        let mut group = compaction::KeyVersions::default();
        let mut kept: Vec<usize> = Vec::new();
        loop {
            let taken = match merger.peek() {
                Some((source, entry)) if group.takes(&entry) => {
                    group.push(entry);
                    Some(source)
                }
                Some(_) => None,
                None if group.is_empty() => break,
                None => None,
            };
            if let Some(source) = taken {
                merger.advance(source).await?;
                continue;
            }
            // `group` holds every version of its key: write those that survive.
            let covering: Vec<u64> =
                tombstones.iter().filter(|t| t.covers(&group.key)).map(|t| t.sequence).collect();
            compaction::retain(group.versions(), &covering, &snapshots, plan.bottom, &mut kept);
            if !kept.is_empty() {
                // A merge of level 0 into itself writes one table: several would count
                // toward the level's table limit again.
                let full = output_level > 0
                    && writer.as_ref().is_some_and(|writer| {
                        writer.size_bytes() >= inner.options.table_bytes_target
                    });
                if full {
                    let done = writer.take().expect("full writer exists");
                    let bounds = (lower_bound.as_deref(), Some(group.key.as_slice()));
                    outputs.extend(finish_output(done, &kept_tombstones, bounds).await?);
                    lower_bound = Some(group.key.clone());
                }
                let writer = writer.get_or_insert_with(|| TableWriter::new(inner));
                for &position in &kept {
                    let (sequence, kind, value) = group.version(position);
                    writer.add(&group.key, sequence, kind, value).await?;
                }
            }
            group.clear();
        }
        let last = match writer.take() {
            Some(writer) => Some(writer),
            None if !kept_tombstones.is_empty() => Some(TableWriter::new(inner)),
            None => None,
        };
        if let Some(writer) = last {
            let bounds = (lower_bound.as_deref(), None);
            outputs.extend(finish_output(writer, &kept_tombstones, bounds).await?);
        }
        if !outputs.is_empty() {
            sync_sst_dir(inner).await?;
        }
    }
    let removed: BTreeSet<u64> = plan.upper.iter().chain(&plan.lower).copied().collect();
    let mut manifest = inner.state.borrow().manifest.clone();
    manifest.tables.retain(|record| !removed.contains(&record.id));
    for table in &outputs {
        manifest.tables.push(record_of(table, output_level));
    }
    write_manifest(inner, &manifest).await?;
    {
        let mut state = inner.state.borrow_mut();
        let mut levels = state.version.levels.clone();
        for tables in &mut levels {
            tables.retain(|table| !removed.contains(&table.id));
        }
        if output_level == 0 {
            // Its inputs were all of level 0, and no flush runs beside a compaction (one
            // maintenance task does both): it is level 0 now, which its id, above its inputs',
            // keeps at open.
            assert!(levels[0].is_empty(), "a level 0 merge takes all of level 0");
            levels[0].extend(outputs.iter().cloned());
        } else {
            levels[output_level].extend(outputs.iter().cloned());
            levels[output_level].sort_by(|a, b| a.meta.smallest.cmp(&b.meta.smallest));
            #[cfg(debug_assertions)]
            for pair in levels[output_level].windows(2) {
                assert!(pair[0].meta.largest <= pair[1].meta.smallest, "levels >= 1 stay disjoint");
            }
        }
        state.version = Rc::new(Version { levels });
        state.manifest = manifest;
        state.pointers[plan.level] = plan.largest.clone();
        state.stats.compactions += 1;
        if output_level == 0 {
            state.stats.level0_merges += 1;
        }
        if plan.is_trivial_move() {
            state.stats.trivial_moves += 1;
        }
    }
    if !plan.is_trivial_move() {
        // The manifest no longer names the inputs: delete them (open cleans up if this fails).
        for id in removed {
            let path = inner.table_path(id);
            inner
                .rt
                .disk()
                .remove(&path)
                .await
                .map_err(|error| LsmError::io("remove", &path, error))?;
        }
    }
    Ok(())
}
