//! SSTables: immutable sorted files of entries. Building is pure (bytes out); reading goes through
//! `strata_rt::File` and the block cache, and verifies every block's checksum before use.
//!
//! Layout: `[data blocks][tombstone block][index block][bloom block][meta block][footer]`. See
//! `docs/format.md`, "SSTable".

use crate::batch::Reader;
use crate::block::{self, DataBlock, DataBlockBuilder};
use crate::bloom::{self, Bloom};
use crate::cache::BlockCache;
use crate::memtable::{tombstone_sequence, Entry, Kind, RangeTombstone};
use crate::LsmError;
use std::cmp::Ordering;
use std::rc::Rc;
use strata_rt::File;

pub const MAGIC: [u8; 8] = *b"STRATSST";
pub const VERSION: u32 = 1;
pub const FOOTER_BYTES: usize = 68;

/// Where a block lives in the file (its length includes the trailer).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Handle {
    pub offset: u64,
    pub len: u32,
}

/// One index entry: the last internal key of a data block, and where the block is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IndexEntry {
    pub last_key: Vec<u8>,
    pub last_sequence: u64,
    pub handle: Handle,
}

/// What a table holds, from its meta block (also recorded in the manifest).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TableMeta {
    pub entry_count: u64,
    pub sequence_min: u64,
    pub sequence_max: u64,
    /// Smallest key of any entry or tombstone start.
    pub smallest: Vec<u8>,
    /// Largest key of any entry or tombstone end (ends are exclusive: this bound is generous).
    pub largest: Vec<u8>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Footer {
    pub compression: u32,
    pub tombstones: Handle,
    pub index: Handle,
    pub bloom: Handle,
    pub meta: Handle,
}

/// Tuning of table building.
#[derive(Clone, Debug)]
pub struct BuildOptions {
    pub block_bytes: usize,
    pub bloom_bits_per_key: u32,
    pub compress: bool,
}

/// Builds one table's bytes from entries added in internal-key order.
///
/// The bytes can be taken out as they accumulate ([`TableBuilder::take_output`]) and written
/// while the rest is built, so a table of any size is built in bounded memory; whatever was not
/// taken comes out of [`TableBuilder::finish`].
pub struct TableBuilder {
    options: BuildOptions,
    out: Vec<u8>,
    /// Bytes taken out already: `out` continues the table at this offset.
    taken: u64,
    block: DataBlockBuilder,
    /// The last entry added (its key's buffer is reused from one entry to the next).
    last_key: Vec<u8>,
    last_sequence: Option<u64>,
    index: Vec<IndexEntry>,
    hashes: Vec<u64>,
    meta: TableMeta,
}

impl TableBuilder {
    pub fn new(options: BuildOptions) -> TableBuilder {
        TableBuilder {
            options,
            out: Vec::new(),
            taken: 0,
            block: DataBlockBuilder::default(),
            last_key: Vec::new(),
            last_sequence: None,
            index: Vec::new(),
            hashes: Vec::new(),
            meta: TableMeta { sequence_min: u64::MAX, ..TableMeta::default() },
        }
    }

    pub fn add(&mut self, key: &[u8], sequence: u64, kind: Kind, value: &[u8]) {
        if let Some(last_sequence) = self.last_sequence {
            assert_eq!(
                block::compare(&self.last_key, last_sequence, key, sequence),
                Ordering::Less,
                "entries are added in internal-key order"
            );
            if self.last_key.as_slice() != key {
                self.hashes.push(bloom::hash(key));
            }
        } else {
            self.hashes.push(bloom::hash(key));
            self.meta.smallest = key.to_vec();
        }
        self.block.add(key, sequence, kind, value);
        self.last_key.clear();
        self.last_key.extend_from_slice(key);
        self.last_sequence = Some(sequence);
        self.meta.entry_count += 1;
        self.meta.sequence_min = self.meta.sequence_min.min(sequence);
        self.meta.sequence_max = self.meta.sequence_max.max(sequence);
        if self.block.size_bytes() >= self.options.block_bytes {
            self.finish_block();
        }
    }

    fn finish_block(&mut self) {
        if self.block.is_empty() {
            return;
        }
        let offset = self.taken + self.out.len() as u64;
        self.block.seal_into(&mut self.out, self.options.compress);
        let last_sequence = self.last_sequence.expect("a block has entries");
        self.index.push(IndexEntry {
            last_key: self.last_key.clone(),
            last_sequence,
            handle: Handle { offset, len: (self.taken + self.out.len() as u64 - offset) as u32 },
        });
    }

    /// Bytes built so far, taken or not (for splitting compaction output).
    pub fn size_bytes(&self) -> usize {
        self.taken as usize + self.out.len() + self.block.size_bytes()
    }

    /// Bytes built and not yet taken.
    pub fn output_len(&self) -> usize {
        self.out.len()
    }

    /// Takes the bytes built since the last take, which continue the table where the bytes
    /// taken before end; `spare` (cleared) holds the next ones, so a writer that hands back
    /// each buffer it wrote builds the table in the same two buffers.
    pub fn take_output(&mut self, mut spare: Vec<u8>) -> Vec<u8> {
        spare.clear();
        self.taken += self.out.len() as u64;
        std::mem::replace(&mut self.out, spare)
    }

    pub fn entry_count(&self) -> u64 {
        self.meta.entry_count
    }

    /// Finishes the table with its range tombstones; returns its bytes not taken yet (all of
    /// them if none were) and its meta.
    pub fn finish(mut self, tombstones: &[RangeTombstone]) -> (Vec<u8>, TableMeta) {
        self.finish_block();
        let mut meta = self.meta;
        if meta.entry_count == 0 {
            meta.sequence_min = u64::MAX;
        }
        if self.last_sequence.is_some() {
            meta.largest = self.last_key;
        }
        for tombstone in tombstones {
            if meta.entry_count == 0 && meta.smallest.is_empty() && meta.largest.is_empty() {
                meta.smallest = tombstone.start.clone();
                meta.largest = tombstone.end.clone();
            }
            meta.smallest = meta.smallest.clone().min(tombstone.start.clone());
            meta.largest = meta.largest.clone().max(tombstone.end.clone());
            meta.sequence_min = meta.sequence_min.min(tombstone.sequence);
            meta.sequence_max = meta.sequence_max.max(tombstone.sequence);
        }
        if meta.sequence_min == u64::MAX {
            meta.sequence_min = 0;
        }
        let mut out = self.out;
        let taken = self.taken;
        let put = |payload: &[u8], out: &mut Vec<u8>| {
            let start = out.len();
            block::seal_into(out, payload, false);
            Handle { offset: taken + start as u64, len: (out.len() - start) as u32 }
        };
        let tombstone_handle = put(&encode_tombstones(tombstones), &mut out);
        let index_handle = put(&encode_index(&self.index), &mut out);
        let bloom_handle =
            put(&Bloom::build(&self.hashes, self.options.bloom_bits_per_key).encode(), &mut out);
        let meta_handle = put(&encode_meta(&meta), &mut out);
        let footer = Footer {
            compression: u32::from(self.options.compress),
            tombstones: tombstone_handle,
            index: index_handle,
            bloom: bloom_handle,
            meta: meta_handle,
        };
        out.extend_from_slice(&encode_footer(&footer));
        (out, meta)
    }
}

pub fn encode_tombstones(tombstones: &[RangeTombstone]) -> Vec<u8> {
    let mut out = (tombstones.len() as u32).to_le_bytes().to_vec();
    for tombstone in tombstones {
        out.extend_from_slice(&(tombstone.start.len() as u32).to_le_bytes());
        out.extend_from_slice(&tombstone.start);
        out.extend_from_slice(&(tombstone.end.len() as u32).to_le_bytes());
        out.extend_from_slice(&tombstone.end);
        out.extend_from_slice(&tombstone.sequence.to_le_bytes());
    }
    out
}

pub fn decode_tombstones(payload: &[u8]) -> Result<Vec<RangeTombstone>, &'static str> {
    let mut reader = Reader { bytes: payload, at: 0 };
    let count = reader.u32()? as usize;
    let mut tombstones = Vec::with_capacity(count.min(payload.len() / 16));
    for _ in 0..count {
        let start_len = reader.u32()? as usize;
        let start = reader.bytes(start_len)?.to_vec();
        let end_len = reader.u32()? as usize;
        let end = reader.bytes(end_len)?.to_vec();
        let sequence = reader.u64()?;
        if start >= end {
            return Err("empty range tombstone");
        }
        tombstones.push(RangeTombstone { start, end, sequence });
    }
    if !reader.is_done() {
        return Err("trailing bytes in tombstone block");
    }
    Ok(tombstones)
}

pub fn encode_index(index: &[IndexEntry]) -> Vec<u8> {
    let mut out = (index.len() as u32).to_le_bytes().to_vec();
    for entry in index {
        out.extend_from_slice(&(entry.last_key.len() as u32).to_le_bytes());
        out.extend_from_slice(&entry.last_key);
        out.extend_from_slice(&entry.last_sequence.to_le_bytes());
        out.extend_from_slice(&entry.handle.offset.to_le_bytes());
        out.extend_from_slice(&entry.handle.len.to_le_bytes());
    }
    out
}

pub fn decode_index(payload: &[u8], data_end: u64) -> Result<Vec<IndexEntry>, &'static str> {
    let mut reader = Reader { bytes: payload, at: 0 };
    let count = reader.u32()? as usize;
    let mut index: Vec<IndexEntry> = Vec::with_capacity(count.min(payload.len() / 24));
    let mut expected_offset = 0;
    for _ in 0..count {
        let key_len = reader.u32()? as usize;
        let last_key = reader.bytes(key_len)?.to_vec();
        let last_sequence = reader.u64()?;
        let handle = Handle { offset: reader.u64()?, len: reader.u32()? };
        if handle.offset != expected_offset || (handle.len as usize) < block::TRAILER_BYTES {
            return Err("index handles are not contiguous");
        }
        expected_offset = handle.offset + u64::from(handle.len);
        if let Some(previous) = index.last() {
            if block::compare(&previous.last_key, previous.last_sequence, &last_key, last_sequence)
                != Ordering::Less
            {
                return Err("index entries out of order");
            }
        }
        index.push(IndexEntry { last_key, last_sequence, handle });
    }
    if !reader.is_done() || expected_offset != data_end {
        return Err("index does not cover the data region");
    }
    Ok(index)
}

pub fn encode_meta(meta: &TableMeta) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&meta.entry_count.to_le_bytes());
    out.extend_from_slice(&meta.sequence_min.to_le_bytes());
    out.extend_from_slice(&meta.sequence_max.to_le_bytes());
    out.extend_from_slice(&(meta.smallest.len() as u32).to_le_bytes());
    out.extend_from_slice(&meta.smallest);
    out.extend_from_slice(&(meta.largest.len() as u32).to_le_bytes());
    out.extend_from_slice(&meta.largest);
    out
}

pub fn decode_meta(payload: &[u8]) -> Result<TableMeta, &'static str> {
    let mut reader = Reader { bytes: payload, at: 0 };
    let entry_count = reader.u64()?;
    let sequence_min = reader.u64()?;
    let sequence_max = reader.u64()?;
    let smallest_len = reader.u32()? as usize;
    let smallest = reader.bytes(smallest_len)?.to_vec();
    let largest_len = reader.u32()? as usize;
    let largest = reader.bytes(largest_len)?.to_vec();
    if !reader.is_done() || smallest > largest || sequence_min > sequence_max {
        return Err("meta block inconsistent");
    }
    Ok(TableMeta { entry_count, sequence_min, sequence_max, smallest, largest })
}

pub fn encode_footer(footer: &Footer) -> [u8; FOOTER_BYTES] {
    let mut out = [0u8; FOOTER_BYTES];
    out[0..8].copy_from_slice(&MAGIC);
    out[8..12].copy_from_slice(&VERSION.to_le_bytes());
    out[12..16].copy_from_slice(&footer.compression.to_le_bytes());
    let mut at = 16;
    for handle in [footer.tombstones, footer.index, footer.bloom, footer.meta] {
        out[at..at + 8].copy_from_slice(&handle.offset.to_le_bytes());
        out[at + 8..at + 12].copy_from_slice(&handle.len.to_le_bytes());
        at += 12;
    }
    let crc = crc32c::crc32c(&out[..64]);
    out[64..68].copy_from_slice(&crc.to_le_bytes());
    out
}

/// Decodes a footer and checks its handles against the file length.
pub fn decode_footer(bytes: &[u8], file_len: u64) -> Result<Footer, &'static str> {
    if bytes.len() != FOOTER_BYTES {
        return Err("footer has the wrong size");
    }
    if bytes[0..8] != MAGIC {
        return Err("table magic");
    }
    let crc = u32::from_le_bytes(bytes[64..68].try_into().expect("4 bytes"));
    if crc32c::crc32c(&bytes[..64]) != crc {
        return Err("footer checksum mismatch");
    }
    let version = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes"));
    if version != VERSION {
        return Err("unsupported table version");
    }
    let mut handles = [Handle::default(); 4];
    for (position, handle) in handles.iter_mut().enumerate() {
        let at = 16 + position * 12;
        handle.offset = u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"));
        handle.len = u32::from_le_bytes(bytes[at + 8..at + 12].try_into().expect("4 bytes"));
    }
    // The four trailing blocks are contiguous and end at the footer.
    let mut expected = handles[0].offset;
    for handle in &handles {
        if handle.offset != expected || (handle.len as usize) < block::TRAILER_BYTES {
            return Err("footer handles are not contiguous");
        }
        expected = handle.offset.checked_add(u64::from(handle.len)).ok_or("handle overflow")?;
    }
    if expected.checked_add(FOOTER_BYTES as u64) != Some(file_len) {
        return Err("footer handles do not end at the footer");
    }
    Ok(Footer {
        compression: u32::from_le_bytes(bytes[12..16].try_into().expect("4 bytes")),
        tombstones: handles[0],
        index: handles[1],
        bloom: handles[2],
        meta: handles[3],
    })
}

/// The parsed fixed-size parts of a table: everything but its data blocks.
#[derive(Debug)]
pub struct TableParts {
    pub footer: Footer,
    pub index: Vec<IndexEntry>,
    pub bloom: Bloom,
    pub tombstones: Vec<RangeTombstone>,
    pub meta: TableMeta,
}

/// Parses a table's trailing blocks from `tail` (the file from `tail_offset` to its end). Pure:
/// the SSTable fuzz target drives it with arbitrary bytes.
pub fn parse_parts(
    tail: &[u8],
    tail_offset: u64,
    file_len: u64,
) -> Result<TableParts, (u64, &'static str)> {
    if tail.len() < FOOTER_BYTES {
        return Err((0, "table shorter than its footer"));
    }
    let footer_at = tail.len() - FOOTER_BYTES;
    let footer = decode_footer(&tail[footer_at..], file_len)
        .map_err(|reason| (file_len - FOOTER_BYTES as u64, reason))?;
    let block_at = |handle: Handle| -> Result<Vec<u8>, (u64, &'static str)> {
        let start = handle
            .offset
            .checked_sub(tail_offset)
            .ok_or((handle.offset, "block before the tail read"))? as usize;
        let stored = tail
            .get(start..start + handle.len as usize)
            .ok_or((handle.offset, "block past the end"))?;
        block::unseal(stored).map_err(|reason| (handle.offset, reason))
    };
    let tombstones = decode_tombstones(&block_at(footer.tombstones)?)
        .map_err(|r| (footer.tombstones.offset, r))?;
    let index = decode_index(&block_at(footer.index)?, footer.tombstones.offset)
        .map_err(|r| (footer.index.offset, r))?;
    let bloom = Bloom::decode(&block_at(footer.bloom)?).map_err(|r| (footer.bloom.offset, r))?;
    let meta = decode_meta(&block_at(footer.meta)?).map_err(|r| (footer.meta.offset, r))?;
    Ok(TableParts { footer, index, bloom, tombstones, meta })
}

/// An open table.
pub struct Table {
    pub id: u64,
    pub path: String,
    pub size_bytes: u64,
    file: File,
    index: Vec<IndexEntry>,
    bloom: Bloom,
    pub tombstones: Vec<RangeTombstone>,
    pub meta: TableMeta,
    cache: Rc<BlockCache>,
}

impl std::fmt::Debug for Table {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("Table").field("id", &self.id).field("meta", &self.meta).finish()
    }
}

impl Table {
    /// Opens a table file: reads and verifies its footer, index, bloom filter, tombstones, meta.
    pub async fn open(
        file: File,
        path: String,
        id: u64,
        cache: Rc<BlockCache>,
    ) -> Result<Table, LsmError> {
        let size_bytes = file.len().await.map_err(|error| LsmError::io("len", &path, error))?;
        if size_bytes < FOOTER_BYTES as u64 {
            return Err(LsmError::corruption(&path, 0, "table shorter than its footer"));
        }
        let footer_bytes = file
            .read_exact_at(FOOTER_BYTES, size_bytes - FOOTER_BYTES as u64)
            .await
            .map_err(|error| LsmError::io("read footer", &path, error))?;
        let footer = decode_footer(&footer_bytes, size_bytes).map_err(|reason| {
            LsmError::corruption(&path, size_bytes - FOOTER_BYTES as u64, reason)
        })?;
        let tail_offset = footer.tombstones.offset;
        let tail = file
            .read_exact_at((size_bytes - tail_offset) as usize, tail_offset)
            .await
            .map_err(|error| LsmError::io("read table tail", &path, error))?;
        let parts = parse_parts(&tail, tail_offset, size_bytes)
            .map_err(|(offset, reason)| LsmError::corruption(&path, offset, reason))?;
        Ok(Table {
            id,
            path,
            size_bytes,
            file,
            index: parts.index,
            bloom: parts.bloom,
            tombstones: parts.tombstones,
            meta: parts.meta,
            cache,
        })
    }

    pub fn block_count(&self) -> usize {
        self.index.len()
    }

    /// Loads data block `position` through the cache, and keeps it there.
    pub async fn block(&self, position: usize) -> Result<Rc<DataBlock>, LsmError> {
        let handle = self.index[position].handle;
        if let Some(block) = self.cache.get(self.id, handle.offset) {
            return Ok(block);
        }
        let stored = self
            .file
            .read_exact_at(handle.len as usize, handle.offset)
            .await
            .map_err(|error| LsmError::io("read block", &self.path, error))?;
        let block = Rc::new(self.checked_block(position, block::unseal_owned(stored))?);
        self.cache.insert(self.id, handle.offset, block.clone());
        Ok(block)
    }

    /// Loads data blocks from `first` on, as many as `bytes_max` holds (at least one), in one
    /// read, each checked as [`Table::block`] checks it, none cached: a compaction reads every
    /// block in order, and a read per block took one reactor turn each, so a merge of megabytes
    /// went on for a second between requests, into whatever ran next.
    pub async fn blocks_from(
        &self,
        first: usize,
        bytes_max: usize,
    ) -> Result<Vec<Rc<DataBlock>>, LsmError> {
        let start = self.index[first].handle.offset;
        let end_of = |position: usize| {
            let handle = self.index[position].handle;
            handle.offset + u64::from(handle.len)
        };
        let mut last = first;
        while last + 1 < self.index.len() && end_of(last + 1) - start <= bytes_max as u64 {
            last += 1;
        }
        let span = self
            .file
            .read_exact_at((end_of(last) - start) as usize, start)
            .await
            .map_err(|error| LsmError::io("read blocks", &self.path, error))?;
        (first..=last)
            .map(|position| {
                let handle = self.index[position].handle;
                let at = (handle.offset - start) as usize;
                let stored = &span[at..at + handle.len as usize];
                Ok(Rc::new(self.checked_block(position, block::unseal(stored))?))
            })
            .collect()
    }

    /// Data block `position` from its unsealed bytes, checked against the index.
    fn checked_block(
        &self,
        position: usize,
        unsealed: Result<Vec<u8>, &'static str>,
    ) -> Result<DataBlock, LsmError> {
        let offset = self.index[position].handle.offset;
        let corrupt = |reason| LsmError::corruption(&self.path, offset, reason);
        let block = DataBlock::parse(unsealed.map_err(corrupt)?).map_err(corrupt)?;
        let last =
            block.entry(block.len().checked_sub(1).ok_or_else(|| corrupt("empty data block"))?);
        let expected = &self.index[position];
        if last.key != expected.last_key.as_slice() || last.sequence != expected.last_sequence {
            return Err(corrupt("data block does not end where the index says"));
        }
        Ok(block)
    }

    /// The first block that may hold internal keys at or after (`key`, `sequence`).
    pub fn block_for(&self, key: &[u8], sequence: u64) -> usize {
        self.index.partition_point(|entry| {
            block::compare(&entry.last_key, entry.last_sequence, key, sequence) == Ordering::Less
        })
    }

    /// Whether `key` falls inside the table's key bounds.
    pub fn may_span(&self, key: &[u8]) -> bool {
        self.meta.smallest.as_slice() <= key && key <= self.meta.largest.as_slice()
    }

    pub fn tombstone_sequence(&self, key: &[u8], snapshot: u64) -> u64 {
        tombstone_sequence(&self.tombstones, key, snapshot)
    }

    /// The newest version of `key` at or below `snapshot`.
    pub async fn get(&self, key: &[u8], snapshot: u64) -> Result<Option<Entry>, LsmError> {
        if !self.may_span(key) || !self.bloom.may_contain(bloom::hash(key)) {
            return Ok(None);
        }
        let position = self.block_for(key, snapshot);
        if position >= self.index.len() {
            return Ok(None);
        }
        let block = self.block(position).await?;
        let at = block.seek(key, snapshot);
        if at >= block.len() {
            return Ok(None);
        }
        let entry = block.entry(at);
        Ok((entry.key == key).then(|| entry.to_entry()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build(take_every: Option<usize>) -> Vec<u8> {
        let options = BuildOptions { block_bytes: 256, bloom_bits_per_key: 10, compress: true };
        let mut builder = TableBuilder::new(options);
        let mut bytes = Vec::new();
        let mut spare = Vec::new();
        for number in 0u32..2000 {
            let key = format!("key{:05}", number / 2);
            let value = format!("value-{number}").repeat((number % 7) as usize);
            builder.add(
                key.as_bytes(),
                u64::from(10_000 - number % 2),
                Kind::Put,
                value.as_bytes(),
            );
            if take_every.is_some_and(|every| (number as usize).is_multiple_of(every)) {
                let piece = builder.take_output(std::mem::take(&mut spare));
                bytes.extend_from_slice(&piece);
                spare = piece;
            }
        }
        let tombstone =
            RangeTombstone { start: b"key1".to_vec(), end: b"key2".to_vec(), sequence: 5 };
        let (rest, _) = builder.finish(&[tombstone]);
        bytes.extend_from_slice(&rest);
        bytes
    }

    #[test]
    fn a_table_taken_in_pieces_is_the_table_built_whole() {
        let whole = build(None);
        for every in [1, 7, 100, 1999] {
            assert_eq!(build(Some(every)), whole, "taken every {every} entries");
        }
    }
}
