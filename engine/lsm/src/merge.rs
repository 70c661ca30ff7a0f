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
use std::ops::Bound;
use std::rc::Rc;

/// Walks one table from a start key on, loading a block at a time. Between calls it rests on an
/// entry, or has no block left.
pub struct TableCursor {
    table: Rc<Table>,
    block: Option<Rc<DataBlock>>,
    block_position: usize,
    entry_position: usize,
    fill_cache: bool,
}

impl TableCursor {
    pub async fn new(
        table: Rc<Table>,
        start: Bound<&[u8]>,
        fill_cache: bool,
    ) -> Result<TableCursor, LsmError> {
        let (block_position, seek) = match start {
            Bound::Included(key) => (table.block_for(key, u64::MAX), Some((key, u64::MAX))),
            Bound::Excluded(key) => (table.block_for(key, 0), Some((key, 0))),
            Bound::Unbounded => (0, None),
        };
        let mut cursor =
            TableCursor { table, block: None, block_position, entry_position: 0, fill_cache };
        if cursor.block_position < cursor.table.block_count() {
            let block = cursor.table.block(cursor.block_position, fill_cache).await?;
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
            self.block = None;
            if self.block_position < self.table.block_count() {
                self.block = Some(self.table.block(self.block_position, self.fill_cache).await?);
            }
        }
        Ok(())
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
pub struct Merger {
    sources: Vec<Source>,
}

impl Merger {
    pub fn new(sources: Vec<Source>) -> Merger {
        Merger { sources }
    }

    /// The smallest entry of all sources, and which source holds it; `None` once all are done.
    pub fn peek(&self) -> Option<(usize, EntryRef<'_>)> {
        let mut best: Option<(usize, EntryRef<'_>)> = None;
        for (position, source) in self.sources.iter().enumerate() {
            let Some(entry) = source.current() else { continue };
            let better = best.is_none_or(|(_, current)| {
                block::compare(entry.key, entry.sequence, current.key, current.sequence)
                    == Ordering::Less
            });
            if better {
                best = Some((position, entry));
            }
        }
        best
    }

    /// Moves source `position` (the one [`Merger::peek`] named) past its entry.
    pub async fn advance(&mut self, position: usize) -> Result<(), LsmError> {
        self.sources[position].advance().await
    }
}
