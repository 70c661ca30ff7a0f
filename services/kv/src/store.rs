//! The view a command executes against: a shard's LSM store plus, while a log entry is applied,
//! an overlay of the entry's own writes (so the commands of one transaction see each other's
//! effects) that becomes one atomic `WriteBatch` at the end.
//!
//! Invariants:
//! - A read context (`index == None`) never writes; a write context reads its overlay first.
//! - Range deletes are issued before the overlay's puts in the batch, and a range delete drops
//!   the overlay entries it covers, so the batch's order cannot resurrect deleted elements.
//! - Metadata is written only for keys whose metadata was loaded first in the same context, so
//!   the expiry index is kept exactly in step with the metadata's deadline.

use crate::cursors::Cursors;
use crate::key_map::KeyMap;
use crate::layout::{self, Metadata};
use crate::resp::Reply;
use std::cell::RefCell;
use std::future::Future;
use std::ops::Bound;
use strata_lsm::{Db, LsmError, Snapshot, WriteBatch};

/// Why a command stopped: a reply for the client, or the store failed.
#[derive(Debug)]
pub enum Fail {
    Reply(Reply),
    Storage(LsmError),
}

impl From<LsmError> for Fail {
    fn from(error: LsmError) -> Fail {
        Fail::Storage(error)
    }
}

impl From<Reply> for Fail {
    fn from(reply: Reply) -> Fail {
        Fail::Reply(reply)
    }
}

pub type Outcome<T> = Result<T, Fail>;

pub fn error<T>(text: &str) -> Outcome<T> {
    Err(Fail::Reply(Reply::error(text)))
}

pub const WRONGTYPE: &str = "WRONGTYPE Operation against a key holding the wrong kind of value";

/// Something an applied entry does outside the store, performed on `Shared` after the batch is
/// written.
#[derive(Clone, Debug, PartialEq)]
pub enum Effect {
    Publish {
        channel: Vec<u8>,
        message: Vec<u8>,
    },
    /// A list or sorted set gained elements (pushed, added, stored, copied): wake the clients
    /// blocked on its key, so they retry their pop.
    Ready {
        key: Vec<u8>,
    },
}

pub struct Context<'a> {
    db: &'a Db,
    /// The shard's collection-scan cursors, for a read (node-local: a write context, applied
    /// on every replica alike, has none).
    pub cursors: Option<&'a RefCell<Cursors>>,
    snapshot: Option<Snapshot>,
    /// Unix ms: the entry's `now_ms` when applying, the node's clock for a read.
    pub now_ms: u64,
    /// The log index being applied; `None` for a read.
    index: Option<u64>,
    generations_used: u64,
    overlay: KeyMap<Option<Vec<u8>>>,
    ranges: Vec<(Vec<u8>, Vec<u8>)>,
    /// Writes and range deletes staged so far (see [`Context::staged`]).
    writes_staged: u64,
    /// While set, what each change undoes (see [`Context::set_savepoint`]).
    savepoint: Option<Savepoint>,
    /// Every key whose metadata this context loaded: its stored deadline (0: none), `None` if
    /// absent from the store.
    loaded: KeyMap<Option<u64>>,
    /// Keys created minus keys deleted (the `!count` record follows it).
    count_delta: i64,
    /// FLUSHDB: the count restarts from zero.
    count_reset: bool,
    pub effects: Vec<Effect>,
    random_state: u64,
    /// A buffer for the metadata record key [`Context::meta`] looks up.
    record_key: Vec<u8>,
}

/// `key`'s metadata record, read into `bytes`.
fn decode_meta(key: &[u8], bytes: Vec<u8>) -> Outcome<Metadata> {
    Metadata::decode_owned(bytes).map_err(|reason| {
        Fail::Storage(LsmError::Invalid {
            reason: format!("metadata of key {:?}: {reason}", String::from_utf8_lossy(key)),
        })
    })
}

/// The state a write context returns to: scalars as they were, and a change's undo for each
/// change since (newest last).
struct Savepoint {
    undo: Vec<Undo>,
    writes_staged: u64,
    ranges: usize,
    effects: usize,
    count_delta: i64,
    count_reset: bool,
    generations_used: u64,
    random_state: u64,
}

/// What one change of a write context undoes.
enum Undo {
    /// A staged write of `key`; `previous`: the overlay's value before (`None`: none).
    Overlay { key: Vec<u8>, previous: Option<Option<Vec<u8>>> },
    /// A range delete, which also removed these staged writes.
    RangeDelete { removed: Vec<(Vec<u8>, Option<Vec<u8>>)> },
    /// `key`'s loaded metadata before (`None`: not loaded).
    Loaded { key: Vec<u8>, previous: Option<Option<u64>> },
    /// FLUSHDB forgot every loaded key.
    LoadedCleared(KeyMap<Option<u64>>),
}

impl<'a> Context<'a> {
    pub fn for_read(
        db: &'a Db,
        cursors: &'a RefCell<Cursors>,
        now_ms: u64,
        seed: u64,
    ) -> Context<'a> {
        let snapshot = Some(db.snapshot());
        Context::new(db, Some(cursors), snapshot, now_ms, None, seed)
    }

    pub fn for_apply(db: &'a Db, now_ms: u64, index: u64) -> Context<'a> {
        Context::new(db, None, None, now_ms, Some(index), index)
    }

    fn new(
        db: &'a Db,
        cursors: Option<&'a RefCell<Cursors>>,
        snapshot: Option<Snapshot>,
        now_ms: u64,
        index: Option<u64>,
        seed: u64,
    ) -> Context<'a> {
        Context {
            db,
            cursors,
            snapshot,
            now_ms,
            index,
            generations_used: 0,
            overlay: KeyMap::default(),
            ranges: Vec::new(),
            writes_staged: 0,
            savepoint: None,
            loaded: KeyMap::default(),
            count_delta: 0,
            count_reset: false,
            effects: Vec::new(),
            random_state: seed ^ 0x9e37_79b9_7f4a_7c15,
            record_key: Vec::new(),
        }
    }

    pub fn is_write(&self) -> bool {
        self.index.is_some()
    }

    /// How much this context has staged: its writes, range deletes and effects. A command that
    /// fails without changing it left nothing behind.
    pub fn staged(&self) -> (u64, usize) {
        (self.writes_staged, self.effects.len())
    }

    /// Drops everything staged: the write context is as new, for the same entry.
    pub fn restart(&mut self) {
        *self = Context::for_apply(self.db, self.now_ms, self.index());
    }

    /// From here on, notes what each change undoes, so [`Context::rollback_to_savepoint`] can
    /// return here (as RocksDB's write batches do); replaces the savepoint set before.
    pub fn set_savepoint(&mut self) {
        // The undo list keeps its room from one savepoint to the next.
        let mut undo = self.savepoint.take().map(|old| old.undo).unwrap_or_default();
        undo.clear();
        self.savepoint = Some(Savepoint {
            undo,
            writes_staged: self.writes_staged,
            ranges: self.ranges.len(),
            effects: self.effects.len(),
            count_delta: self.count_delta,
            count_reset: self.count_reset,
            generations_used: self.generations_used,
            random_state: self.random_state,
        });
    }

    /// Undoes every change since the savepoint, which stays set.
    pub fn rollback_to_savepoint(&mut self) {
        let mut savepoint = self.savepoint.take().expect("a savepoint is set");
        while let Some(undo) = savepoint.undo.pop() {
            match undo {
                Undo::Overlay { key, previous: Some(value) } => self.overlay.insert(key, value),
                Undo::Overlay { key, previous: None } => self.overlay.remove(&key),
                Undo::RangeDelete { removed } => {
                    for (key, value) in removed {
                        self.overlay.insert(key, value);
                    }
                }
                Undo::Loaded { key, previous: Some(value) } => self.loaded.insert(key, value),
                Undo::Loaded { key, previous: None } => self.loaded.remove(&key),
                Undo::LoadedCleared(loaded) => self.loaded = loaded,
            }
        }
        self.writes_staged = savepoint.writes_staged;
        self.ranges.truncate(savepoint.ranges);
        self.effects.truncate(savepoint.effects);
        self.count_delta = savepoint.count_delta;
        self.count_reset = savepoint.count_reset;
        self.generations_used = savepoint.generations_used;
        self.random_state = savepoint.random_state;
        self.savepoint = Some(savepoint);
    }

    fn index(&self) -> u64 {
        self.index.expect("only a write context modifies the store")
    }

    /// A deterministic pseudo-random number (seeded by the log index when applying).
    pub fn random(&mut self) -> u64 {
        // splitmix64
        self.random_state = self.random_state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.random_state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn in_deleted_range(&self, key: &[u8]) -> bool {
        self.ranges.iter().any(|(start, end)| key >= start.as_slice() && key < end.as_slice())
    }

    pub async fn get_raw(&self, key: &[u8]) -> Outcome<Option<Vec<u8>>> {
        if let Some(value) = self.overlay.get(key) {
            return Ok(value.clone());
        }
        if self.in_deleted_range(key) {
            return Ok(None);
        }
        let value = match &self.snapshot {
            Some(snapshot) => self.db.get_in(key, snapshot).await?,
            None => self.db.get(key).await?,
        };
        Ok(value)
    }

    pub fn put_raw(&mut self, key: Vec<u8>, value: Vec<u8>) {
        self.stage(key, Some(value));
    }

    pub fn delete_raw(&mut self, key: Vec<u8>) {
        self.stage(key, None);
    }

    fn stage(&mut self, key: Vec<u8>, value: Option<Vec<u8>>) {
        assert!(self.is_write(), "a read context does not write");
        self.writes_staged += 1;
        if let Some(savepoint) = &mut self.savepoint {
            let previous = self.overlay.get(&key).cloned();
            savepoint.undo.push(Undo::Overlay { key: key.clone(), previous });
        }
        self.overlay.insert(key, value);
    }

    /// Deletes every record starting with `prefix`.
    pub fn delete_prefix(&mut self, prefix: &[u8]) {
        assert!(self.is_write(), "a read context does not write");
        self.writes_staged += 1;
        let end = strata_lsm::prefix_end(prefix).expect("record prefixes never end in 0xff only");
        if let Some(savepoint) = &mut self.savepoint {
            let removed = self.overlay.range(prefix, Bound::Excluded(&end));
            let removed = removed.map(|(key, value)| (key.clone(), value.clone())).collect();
            savepoint.undo.push(Undo::RangeDelete { removed });
        }
        self.overlay.remove_range(prefix, &end);
        self.ranges.push((prefix.to_vec(), end));
    }

    /// Up to `limit` live records in `start..end` (end `None`: to the end), in key order.
    pub async fn scan_raw(
        &self,
        start: &[u8],
        end: Option<&[u8]>,
        limit: usize,
    ) -> Outcome<Vec<(Vec<u8>, Vec<u8>)>> {
        let end_bound = end.map_or(Bound::Unbounded, Bound::Excluded);
        let mut stored = Vec::new();
        if limit > 0 {
            self.db
                .scan(Bound::Included(start), end_bound, self.snapshot.as_ref(), |key, value| {
                    if !self.overlay.contains_key(key) && !self.in_deleted_range(key) {
                        stored.push((key.to_vec(), value.to_vec()));
                    }
                    stored.len() < limit
                })
                .await?;
        }
        let exhausted = stored.len() < limit;
        let last = (!exhausted).then(|| stored.last().expect("limit > 0 records").0.clone());
        let overlay_end = last.as_deref().map_or(end_bound, Bound::Included);
        let mut merged = stored;
        for (key, value) in self.overlay.range(start, overlay_end) {
            if let Some(value) = value {
                merged.push((key.clone(), value.clone()));
            }
        }
        merged.sort_by(|a, b| a.0.cmp(&b.0));
        merged.truncate(limit);
        Ok(merged)
    }

    /// Every live record starting with `prefix`, bounded by `limit`.
    pub async fn scan_prefix(
        &self,
        prefix: &[u8],
        limit: usize,
    ) -> Outcome<Vec<(Vec<u8>, Vec<u8>)>> {
        let end = strata_lsm::prefix_end(prefix);
        self.scan_raw(prefix, end.as_deref(), limit).await
    }

    /// The live metadata of `key`. In a write context an expired key is deleted on the spot
    /// (with the entry's `now_ms`, so on every replica alike).
    pub fn meta<'s>(
        &'s mut self,
        key: &'s [u8],
    ) -> impl Future<Output = Outcome<Option<Metadata>>> + use<'s, 'a> {
        self.live_meta(key, None)
    }

    /// The live metadata of `key` if it has type `kind`; WRONGTYPE if it has another.
    pub fn meta_of<'s>(
        &'s mut self,
        key: &'s [u8],
        kind: u8,
    ) -> impl Future<Output = Outcome<Option<Metadata>>> + use<'s, 'a> {
        self.live_meta(key, Some(kind))
    }

    /// [`Context::meta`], and [`Context::meta_of`] when `kind` is given: one future for both,
    /// not one wrapping another (each layer of a future costs a small read's work).
    async fn live_meta(&mut self, key: &[u8], kind: Option<u8>) -> Outcome<Option<Metadata>> {
        // The record key is built in a buffer the context keeps: one allocation for all the
        // reads of a run, not one per read.
        let mut record = std::mem::take(&mut self.record_key);
        layout::metadata_key_into(key, &mut record);
        let stored = self.get_raw(&record).await;
        self.record_key = record;
        let Some(bytes) = stored? else {
            if self.is_write() && !self.loaded.contains_key(key) {
                self.journal_loaded(key);
                self.loaded.insert(key.to_vec(), None);
            }
            return Ok(None);
        };
        let metadata = decode_meta(key, bytes)?;
        if self.is_write() {
            self.note_loaded(key, &metadata);
        }
        if metadata.is_expired(self.now_ms) {
            if self.is_write() {
                self.delete_key(key, &metadata);
            }
            return Ok(None);
        }
        match kind {
            Some(kind) if metadata.kind != kind => error(WRONGTYPE),
            _ => Ok(Some(metadata)),
        }
    }

    /// Records that `metadata` is `key`'s stored metadata (before writing or deleting it).
    pub fn note_loaded(&mut self, key: &[u8], metadata: &Metadata) {
        self.journal_loaded(key);
        self.loaded.insert(key.to_vec(), Some(metadata.deadline_ms));
    }

    /// Notes what `key`'s loaded metadata is before a change, if a savepoint is set.
    fn journal_loaded(&mut self, key: &[u8]) {
        if let Some(savepoint) = &mut self.savepoint {
            let previous = self.loaded.get(key).copied();
            savepoint.undo.push(Undo::Loaded { key: key.to_vec(), previous });
        }
    }

    /// The metadata record as stored, expired or not.
    pub async fn stored_meta(&self, key: &[u8]) -> Outcome<Option<Metadata>> {
        match self.get_raw(&layout::metadata_key(key)).await? {
            Some(bytes) => decode_meta(key, bytes).map(Some),
            None => Ok(None),
        }
    }

    /// A new collection's metadata under a fresh generation.
    pub fn new_meta(&mut self, kind: u8) -> Metadata {
        let index = self.index();
        self.generations_used += 1;
        assert!(self.generations_used < 1 << 20, "generations of one entry fit 20 bits");
        let generation = (index << 20) | self.generations_used;
        Metadata::new(kind, 2 * index, generation)
    }

    /// Writes `key`'s metadata (loaded before in this context), stamping its version.
    pub fn set_meta(&mut self, key: &[u8], metadata: &mut Metadata) {
        self.journal_loaded(key);
        let loaded = self
            .loaded
            .get_mut(key)
            .expect("metadata is loaded before it is written (keeps the expiry index exact)");
        let stored = loaded.replace(metadata.deadline_ms);
        if stored.is_none() {
            self.count_delta += 1;
        }
        let old_deadline = stored.unwrap_or(0);
        metadata.version = 2 * self.index();
        if old_deadline != metadata.deadline_ms {
            if old_deadline != 0 {
                self.delete_raw(layout::expiry_key(old_deadline, key));
            }
            if metadata.deadline_ms != 0 {
                self.put_raw(layout::expiry_key(metadata.deadline_ms, key), Vec::new());
            }
        }
        self.put_raw(layout::metadata_key(key), metadata.encode());
    }

    /// Deletes `key` (metadata loaded before in this context), its elements and expiry record.
    pub fn delete_key(&mut self, key: &[u8], metadata: &Metadata) {
        self.journal_loaded(key);
        let loaded = self.loaded.get_mut(key).expect("metadata is loaded before a delete");
        let Some(old_deadline) = loaded.take() else { return };
        self.count_delta -= 1;
        if old_deadline != 0 {
            self.delete_raw(layout::expiry_key(old_deadline, key));
        }
        if metadata.kind != layout::TYPE_STRING {
            self.delete_prefix(&layout::sub_prefix(key, metadata.generation));
        }
        self.delete_raw(layout::metadata_key(key));
        self.mark_deleted();
    }

    fn mark_deleted(&mut self) {
        let deleted = 2 * self.index() + 1;
        self.put_raw(layout::DELETED_KEY.to_vec(), deleted.to_le_bytes().to_vec());
    }

    /// Deletes every key of the shard: O(1), three range deletes.
    pub fn flush(&mut self) {
        for prefix in [layout::PREFIX_METADATA, layout::PREFIX_SUB, layout::PREFIX_EXPIRY] {
            self.delete_prefix(&[prefix]);
        }
        let loaded = std::mem::take(&mut self.loaded);
        if let Some(savepoint) = &mut self.savepoint {
            savepoint.undo.push(Undo::LoadedCleared(loaded));
        }
        self.count_delta = 0;
        self.count_reset = true;
        self.mark_deleted();
    }

    /// Keys in the shard (expired ones not yet removed included, as Redis's DBSIZE counts).
    pub async fn key_count(&self) -> Outcome<u64> {
        let stored = self.get_raw(layout::COUNT_KEY).await?;
        Ok(stored
            .and_then(|bytes| <[u8; 8]>::try_from(bytes.as_slice()).ok())
            .map_or(0, u64::from_le_bytes))
    }

    /// The WATCH version of `key`: its metadata's while it lives, else the last deletion's.
    /// Never modifies anything (an expired key counts as deleted without being removed).
    pub async fn watch_version(&self, key: &[u8]) -> Outcome<u64> {
        if let Some(metadata) = self.stored_meta(key).await? {
            if !metadata.is_expired(self.now_ms) {
                return Ok(metadata.version);
            }
        }
        let deleted = self.get_raw(layout::DELETED_KEY).await?;
        Ok(deleted
            .and_then(|bytes| <[u8; 8]>::try_from(bytes.as_slice()).ok())
            .map_or(1, u64::from_le_bytes))
    }

    /// The batch of this context's writes (range deletes first) and its effects.
    pub async fn finish(mut self) -> Outcome<(WriteBatch, Vec<Effect>)> {
        if self.count_delta != 0 || self.count_reset {
            let before = if self.count_reset { 0 } else { self.key_count().await? };
            let after = before.checked_add_signed(self.count_delta).expect("key count never < 0");
            self.put_raw(layout::COUNT_KEY.to_vec(), after.to_le_bytes().to_vec());
        }
        Ok(self.into_batch())
    }

    fn into_batch(self) -> (WriteBatch, Vec<Effect>) {
        let mut batch = WriteBatch::with_capacity(self.ranges.len() + self.overlay.len());
        for (start, end) in self.ranges {
            batch.delete_range(start, end);
        }
        for (key, value) in self.overlay {
            match value {
                Some(value) => batch.put(key, value),
                None => batch.delete(key),
            };
        }
        (batch, self.effects)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;
    use std::rc::Rc;
    use strata_sim::{FaultConfig, NodeOptions, Sim};

    /// The changes made before a savepoint.
    async fn stage(context: &mut Context<'_>) {
        context.put_raw(b"sa".to_vec(), b"1".to_vec());
        context.delete_raw(b"sb".to_vec());
        assert_eq!(context.meta(b"key").await.expect("reads"), None, "loads an absent key");
    }

    /// Every kind of change a command makes, after the savepoint. FLUSHDB forgets what was
    /// loaded before it, which `end` needs again.
    async fn change_everything(context: &mut Context<'_>) {
        context.put_raw(b"sa".to_vec(), b"2".to_vec());
        context.put_raw(b"sc".to_vec(), b"3".to_vec());
        context.delete_prefix(b"sa");
        assert_eq!(context.meta(b"other").await.expect("reads"), None);
        let mut metadata = context.new_meta(layout::TYPE_HASH);
        context.set_meta(b"other", &mut metadata);
        context.delete_key(b"other", &metadata);
        context.effects.push(Effect::Ready { key: b"other".to_vec() });
        context.random();
        context.flush();
    }

    /// What a context ends as after the same last changes (both contexts compared get them).
    async fn end(mut context: Context<'_>) -> (WriteBatch, Vec<Effect>, u64, u64) {
        let mut metadata = context.new_meta(layout::TYPE_STRING);
        context.set_meta(b"key", &mut metadata);
        let random = context.random();
        let (batch, effects) = context.finish().await.expect("finishes");
        (batch, effects, random, metadata.generation)
    }

    /// Rolling back to a savepoint leaves a context as if nothing had happened since: the same
    /// batch (staged writes, range deletes, the key count), effects, draws and generations.
    #[test]
    fn a_rollback_undoes_every_change_since_the_savepoint() {
        let mut sim = Sim::new(4, FaultConfig::none());
        let node = sim.add_node(NodeOptions::SERVER, |_| Box::pin(async {}));
        let rt = sim.runtime(node);
        let checked = Rc::new(Cell::new(false));
        let done = checked.clone();
        let _task = rt.clone().spawn(async move {
            let options = crate::machine::store_options();
            let db = Db::open(&rt, "db", options).await.expect("opens");
            let mut untouched = Context::for_apply(&db, 1_000, 1);
            stage(&mut untouched).await;
            let mut rolled_back = Context::for_apply(&db, 1_000, 1);
            stage(&mut rolled_back).await;
            rolled_back.set_savepoint();
            change_everything(&mut rolled_back).await;
            rolled_back.rollback_to_savepoint();
            assert_eq!(rolled_back.staged(), untouched.staged());
            assert_eq!(end(rolled_back).await, end(untouched).await);
            done.set(true);
        });
        assert!(sim.run_until(std::time::Duration::from_secs(60), || checked.get()));
    }
}
