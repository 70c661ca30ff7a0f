//! Sorted iteration: a cursor over one table's entries, and a merge of many sorted sources in
//! internal-key order (key ascending, sequence descending).

use crate::block::{self, DataBlock};
use crate::memtable::Entry;
use crate::table::Table;
use crate::LsmError;
use std::cmp::Ordering;
use std::ops::Bound;
use std::rc::Rc;

/// Walks one table from a start key on, loading a block at a time.
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
        }
        Ok(cursor)
    }

    /// The next entry, or `None` at the end of the table.
    pub async fn next(&mut self) -> Result<Option<Entry>, LsmError> {
        loop {
            let Some(block) = &self.block else { return Ok(None) };
            if self.entry_position < block.len() {
                let entry = block.entry(self.entry_position).to_entry();
                self.entry_position += 1;
                return Ok(Some(entry));
            }
            self.block_position += 1;
            self.entry_position = 0;
            self.block = None;
            if self.block_position < self.table.block_count() {
                self.block = Some(self.table.block(self.block_position, self.fill_cache).await?);
            }
        }
    }
}

pub enum Source {
    Memory(std::vec::IntoIter<Entry>),
    Table(TableCursor),
}

impl Source {
    async fn next(&mut self) -> Result<Option<Entry>, LsmError> {
        match self {
            Source::Memory(entries) => Ok(entries.next()),
            Source::Table(cursor) => cursor.next().await,
        }
    }
}

/// Merges sources in internal-key order. Sources must not hold the same (key, sequence) twice.
pub struct Merger {
    sources: Vec<Source>,
    heads: Vec<Option<Entry>>,
}

impl Merger {
    pub async fn new(mut sources: Vec<Source>) -> Result<Merger, LsmError> {
        let mut heads = Vec::with_capacity(sources.len());
        for source in &mut sources {
            heads.push(source.next().await?);
        }
        Ok(Merger { sources, heads })
    }

    pub async fn next(&mut self) -> Result<Option<Entry>, LsmError> {
        let mut best: Option<usize> = None;
        for (position, head) in self.heads.iter().enumerate() {
            let Some(entry) = head else { continue };
            let better = match best {
                None => true,
                Some(current) => {
                    let current = self.heads[current].as_ref().expect("best has a head");
                    block::compare(&entry.key, entry.sequence, &current.key, current.sequence)
                        == Ordering::Less
                }
            };
            if better {
                best = Some(position);
            }
        }
        let Some(position) = best else { return Ok(None) };
        let next = self.sources[position].next().await?;
        Ok(std::mem::replace(&mut self.heads[position], next))
    }
}
