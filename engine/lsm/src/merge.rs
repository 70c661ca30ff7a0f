//! Sorted iteration: a cursor over one table's entries, and a merge of many sorted sources in
//! internal-key order (key ascending, sequence descending).
//!
//! Entries are borrowed where they lie (a table's cached block, a memtable's copy) and copied
//! only by whoever keeps them: a compaction merges megabytes per job, and an allocation per
//! entry was most of its cost.

use crate::block::{self, DataBlock, EntryRef};
use crate::memtable::Entry;
use crate::table::Table;
use crate::LsmError;
use std::cmp::Ordering;
use std::collections::VecDeque;
use std::ops::Bound;
use std::rc::Rc;

/// How a [`TableCursor`] reads its table's blocks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reading {
    /// A block at a time, through the block cache and into it: a scan, which may stop early.
    Cached,
    /// About `bytes` of blocks at a time (at least one), past the cache: a compaction, which
    /// reads every block once (see [`Table::blocks_from`]).
    Ahead { bytes: usize },
}

/// Walks one table from a start key on, loading blocks as its [`Reading`] says. Between calls it
/// rests on an entry, or has no block left.
pub struct TableCursor {
    table: Rc<Table>,
    block: Option<Rc<DataBlock>>,
    block_position: usize,
    entry_position: usize,
    reading: Reading,
    /// Blocks read ahead: those after `block_position`, in order.
    ahead: VecDeque<Rc<DataBlock>>,
}

impl TableCursor {
    pub async fn new(
        table: Rc<Table>,
        start: Bound<&[u8]>,
        reading: Reading,
    ) -> Result<TableCursor, LsmError> {
        let (block_position, seek) = match start {
            Bound::Included(key) => (table.block_for(key, u64::MAX), Some((key, u64::MAX))),
            Bound::Excluded(key) => (table.block_for(key, 0), Some((key, 0))),
            Bound::Unbounded => (0, None),
        };
        let mut cursor = TableCursor {
            table,
            block: None,
            block_position,
            entry_position: 0,
            reading,
            ahead: VecDeque::new(),
        };
        if let Some(block) = cursor.load().await? {
            if let Some((key, sequence)) = seek {
                cursor.entry_position = block.seek(key, sequence);
                if let Bound::Excluded(key) = start {
                    while cursor.entry_position < block.len()
                        && block.entry(cursor.entry_position).key == key
                    {
                        cursor.entry_position += 1;
                    }
                }
            }
            cursor.block = Some(block);
            cursor.settle().await?;
        }
        Ok(cursor)
    }

    /// The entry the cursor rests on; `None` at the end of the table.
    pub fn current(&self) -> Option<EntryRef<'_>> {
        self.block.as_ref().map(|block| block.entry(self.entry_position))
    }

    /// Moves to the next entry.
    pub async fn advance(&mut self) -> Result<(), LsmError> {
        self.entry_position += 1;
        self.settle().await
    }

    /// Loads blocks until the position is on an entry, or the table is done.
    async fn settle(&mut self) -> Result<(), LsmError> {
        while let Some(block) = &self.block {
            if self.entry_position < block.len() {
                return Ok(());
            }
            self.block_position += 1;
            self.entry_position = 0;
            self.block = self.load().await?;
        }
        Ok(())
    }

    /// Block `block_position`; `None` past the last.
    async fn load(&mut self) -> Result<Option<Rc<DataBlock>>, LsmError> {
        if self.block_position >= self.table.block_count() {
            return Ok(None);
        }
        match self.reading {
            Reading::Cached => Ok(Some(self.table.block(self.block_position).await?)),
            Reading::Ahead { bytes } => {
                if self.ahead.is_empty() {
                    self.ahead = self.table.blocks_from(self.block_position, bytes).await?.into();
                }
                Ok(self.ahead.pop_front())
            }
        }
    }
}

pub enum Source {
    /// Entries copied out of a memtable, in internal-key order, and the next one's position.
    Memory(Vec<Entry>, usize),
    Table(TableCursor),
}

impl Source {
    pub fn memory(entries: Vec<Entry>) -> Source {
        Source::Memory(entries, 0)
    }

    fn current(&self) -> Option<EntryRef<'_>> {
        match self {
            Source::Memory(entries, position) => entries.get(*position).map(|entry| EntryRef {
                key: &entry.key,
                sequence: entry.sequence,
                kind: entry.kind,
                value: &entry.value,
            }),
            Source::Table(cursor) => cursor.current(),
        }
    }

    async fn advance(&mut self) -> Result<(), LsmError> {
        match self {
            Source::Memory(_, position) => {
                *position += 1;
                Ok(())
            }
            Source::Table(cursor) => cursor.advance().await,
        }
    }
}

/// Merges sources in internal-key order. Sources must not hold the same (key, sequence) twice.
///
/// The sources that are not done are kept sorted by their current entry. Merged inputs come in
/// runs (a stretch of one table holding keys no other input has), so after an advance the
/// source usually stays first: one comparison per entry, where scanning every source for the
/// smallest cost one entry decode and comparison per source (most of a compaction's CPU).
pub struct Merger {
    sources: Vec<Source>,
    /// Positions in `sources` of those not done, smallest current entry first.
    order: Vec<usize>,
}

impl Merger {
    pub fn new(sources: Vec<Source>) -> Merger {
        let mut order: Vec<usize> =
            (0..sources.len()).filter(|&position| sources[position].current().is_some()).collect();
        order.sort_by(|&a, &b| Merger::compare(&sources, a, b));
        Merger { sources, order }
    }

    fn compare(sources: &[Source], a: usize, b: usize) -> Ordering {
        let (a, b) = (sources[a].current(), sources[b].current());
        let (a, b) = (a.expect("ordered sources are not done"), b.expect("likewise"));
        block::compare(a.key, a.sequence, b.key, b.sequence)
    }

    /// The smallest entry of all sources, and which source holds it; `None` once all are done.
    pub fn peek(&self) -> Option<(usize, EntryRef<'_>)> {
        let &position = self.order.first()?;
        Some((position, self.sources[position].current().expect("ordered sources are not done")))
    }

    /// Moves source `position` (the one [`Merger::peek`] named) past its entry.
    pub async fn advance(&mut self, position: usize) -> Result<(), LsmError> {
        assert_eq!(self.order.first(), Some(&position), "only the smallest source advances");
        self.sources[position].advance().await?;
        if self.sources[position].current().is_none() {
            self.order.remove(0);
            return Ok(());
        }
        // Its entry only grew: it moves back past the sources now smaller.
        let mut at = 0;
        while at + 1 < self.order.len()
            && Merger::compare(&self.sources, self.order[at + 1], position) == Ordering::Less
        {
            self.order[at] = self.order[at + 1];
            at += 1;
        }
        self.order[at] = position;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memtable::Kind;
    use proptest::prelude::*;
    use std::future::Future;
    use std::task::{Context, Poll, Waker};

    /// Runs a future that never waits (memory sources only).
    fn ready<T>(future: impl Future<Output = T>) -> T {
        let mut future = std::pin::pin!(future);
        match future.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
            Poll::Ready(value) => value,
            Poll::Pending => panic!("memory sources do not wait"),
        }
    }

    fn entry(key: u8, sequence: u64) -> Entry {
        Entry { key: vec![key], sequence, kind: Kind::Put, value: vec![key; 3] }
    }

    /// Every entry a cursor walks from `start`, as (key, sequence).
    async fn walk(table: &Rc<Table>, start: Bound<&[u8]>, reading: Reading) -> Vec<(Vec<u8>, u64)> {
        let mut cursor = TableCursor::new(table.clone(), start, reading).await.expect("opens");
        let mut walked = Vec::new();
        while let Some(entry) = cursor.current() {
            walked.push((entry.key.to_vec(), entry.sequence));
            cursor.advance().await.expect("reads");
        }
        walked
    }

    /// A cursor reading ahead, whatever the span, walks what one reading a block at a time does.
    #[test]
    fn reading_ahead_walks_the_same_entries() {
        use crate::cache::BlockCache;
        use crate::table::{BuildOptions, TableBuilder};
        use strata_sim::{FaultConfig, NodeOptions, Sim};
        let mut sim = Sim::new(3, FaultConfig::none());
        let node = sim.add_node(NodeOptions::SERVER, |_| Box::pin(async {}));
        let rt = sim.runtime(node);
        let checked = Rc::new(std::cell::Cell::new(false));
        let done = checked.clone();
        let _task = rt.clone().spawn(async move {
            let options = BuildOptions { block_bytes: 256, bloom_bits_per_key: 10, compress: true };
            let mut builder = TableBuilder::new(options);
            for number in 0u32..3000 {
                let value = format!("value-{number}").repeat((number % 9) as usize);
                builder.add(format!("key{number:05}").as_bytes(), 7, Kind::Put, value.as_bytes());
            }
            let (bytes, _) = builder.finish(&[]);
            // A byte two fifths in: inside a data block (the index and filter come last).
            let damaged_at = bytes.len() * 2 / 5;
            let damaged_byte = !bytes[damaged_at];
            let file = rt.disk().create("table").await.expect("creates");
            file.write_at(bytes, 0).await.0.expect("writes");
            let cache = Rc::new(BlockCache::new(1 << 20));
            let table = Rc::new(Table::open(file, "table".into(), 1, cache).await.expect("opens"));
            assert!(table.block_count() > 100, "many blocks to read ahead over");
            for start in [Bound::Unbounded, Bound::Included(&b"key01234"[..])] {
                let expected = walk(&table, start, Reading::Cached).await;
                for bytes in [0, 300, 2000, 1 << 20] {
                    let ahead = walk(&table, start, Reading::Ahead { bytes }).await;
                    assert_eq!(ahead, expected, "reading {bytes} bytes ahead from {start:?}");
                }
            }
            // A damaged block in the middle of a span fails the walk, as it does read alone.
            let file = rt.disk().open("table").await.expect("opens");
            file.write_at(vec![damaged_byte], damaged_at as u64).await.0.expect("writes");
            let cache = Rc::new(BlockCache::new(1 << 20));
            let damaged =
                Rc::new(Table::open(file, "table".into(), 2, cache).await.expect("opens"));
            for reading in [Reading::Cached, Reading::Ahead { bytes: 1 << 20 }] {
                let walked = async {
                    let mut cursor =
                        TableCursor::new(damaged.clone(), Bound::Unbounded, reading).await?;
                    while cursor.current().is_some() {
                        cursor.advance().await?;
                    }
                    Ok::<(), LsmError>(())
                };
                let error = walked.await.expect_err("the damage is found");
                assert!(error.to_string().contains("checksum"), "{reading:?}: {error}");
            }
            done.set(true);
        });
        assert!(sim.run_until(std::time::Duration::from_secs(60), || checked.get()));
    }

    proptest! {
        /// Whatever the sources hold, the merge yields their union in internal-key order.
        #[test]
        fn a_merge_yields_every_entry_in_internal_key_order(
            spread in proptest::collection::vec((0u8..20, 0usize..6), 0..200),
        ) {
            // Distinct (key, sequence) pairs, dealt to six sources and sorted within each.
            let mut sources: Vec<Vec<Entry>> = (0..6).map(|_| Vec::new()).collect();
            for (sequence, &(key, source)) in spread.iter().enumerate() {
                sources[source].push(entry(key, sequence as u64));
            }
            let mut expected: Vec<(Vec<u8>, u64)> = Vec::new();
            for entries in &mut sources {
                entries.sort_by(|a, b| block::compare(&a.key, a.sequence, &b.key, b.sequence));
                expected.extend(entries.iter().map(|entry| (entry.key.clone(), entry.sequence)));
            }
            expected.sort_by(|a, b| block::compare(&a.0, a.1, &b.0, b.1));
            let mut merger = Merger::new(sources.into_iter().map(Source::memory).collect());
            let mut merged = Vec::new();
            while let Some((position, entry)) = merger.peek() {
                merged.push((entry.key.to_vec(), entry.sequence));
                ready(merger.advance(position)).expect("memory sources do not fail");
            }
            prop_assert_eq!(merged, expected);
        }
    }
}
