//! A shard's snapshot as a byte stream: every live record of its store, in key order.
//!
//! Layout (see docs/format.md, "Key-value shard snapshot stream"), integers little-endian:
//!
//! ```text
//! [magic "STRATKVS"][version u32 = 1]
//! [key_len u32 >= 1][key][value_len u32][value]   one per record, keys strictly increasing
//! [0 u32][records u64]                            the end: no key is empty
//! ```
//!
//! # Invariants
//!
//! - The stream is a function of the store's live records only (not of how they sit in memtables
//!   and tables), so replicas that applied the same log produce the same bytes: a follower may
//!   go on with another leader's transfer of the same snapshot.
//! - [`SnapshotStream`] reads through an LSM [`View`], which later applies, flushes, compactions
//!   and installs do not change. It holds one page of records at a time (at most
//!   [`PAGE_BYTES_MAX`] plus one record) beyond what a read asks for.
//! - [`StreamDecoder`] never panics and never buffers more than one record (bounded by the
//!   store's key and value limits) beyond the piece it was given; a damaged, truncated or
//!   extended stream is an error, never installed in part (the install swaps the store at the
//!   end only).

use std::ops::Bound;
use strata_lsm::batch::{KEY_BYTES_MAX, VALUE_BYTES_MAX};
use strata_lsm::{LsmError, View};

pub const MAGIC: [u8; 8] = *b"STRATKVS";
pub const VERSION: u32 = 1;
const HEADER_BYTES: usize = 12;
/// A page is cut after this many records or bytes (whichever first).
pub const PAGE_RECORDS_MAX: usize = 256;
pub const PAGE_BYTES_MAX: usize = 64 << 10;

/// One record of a stream: a store key and its value.
pub type Record = (Vec<u8>, Vec<u8>);

fn header() -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_BYTES);
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out
}

fn encode_record(key: &[u8], value: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(&(key.len() as u32).to_le_bytes());
    out.extend_from_slice(key);
    out.extend_from_slice(&(value.len() as u32).to_le_bytes());
    out.extend_from_slice(value);
}

fn encode_end(records: u64, out: &mut Vec<u8>) {
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&records.to_le_bytes());
}

/// The whole stream of `records` (sorted, distinct keys), for tests and the fuzz body.
pub fn encode(records: &[Record]) -> Vec<u8> {
    let mut out = header();
    for (key, value) in records {
        encode_record(key, value, &mut out);
    }
    encode_end(records.len() as u64, &mut out);
    out
}

/// Reads a snapshot's stream at any offset, paging through its view.
pub struct SnapshotStream {
    view: View,
    /// The stream's bytes from `buffer_start` on, as far as encoded.
    buffer: Vec<u8>,
    buffer_start: u64,
    /// The last key encoded: the next page starts after it.
    last_key: Option<Vec<u8>>,
    records: u64,
    /// The end is encoded.
    ended: bool,
}

impl std::fmt::Debug for SnapshotStream {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("SnapshotStream")
            .field("buffer_start", &self.buffer_start)
            .field("records", &self.records)
            .field("ended", &self.ended)
            .finish()
    }
}

impl SnapshotStream {
    pub fn new(view: View) -> SnapshotStream {
        SnapshotStream {
            view,
            buffer: header(),
            buffer_start: 0,
            last_key: None,
            records: 0,
            ended: false,
        }
    }

    /// Up to `length_max` bytes from `offset`: fewer only at the end (none at or past it). A
    /// read before what this stream still holds starts the scan over.
    pub async fn read(&mut self, offset: u64, length_max: usize) -> Result<Vec<u8>, LsmError> {
        if offset < self.buffer_start {
            // A transfer resumed further back: scan again from the start.
            self.buffer = header();
            self.buffer_start = 0;
            self.last_key = None;
            self.records = 0;
            self.ended = false;
        }
        let wanted_end = offset.saturating_add(length_max as u64);
        loop {
            if offset > self.buffer_start {
                let dropped = (offset - self.buffer_start).min(self.buffer.len() as u64);
                self.buffer.drain(..dropped as usize);
                self.buffer_start += dropped;
            }
            if self.ended || self.buffer_start + self.buffer.len() as u64 >= wanted_end {
                break;
            }
            self.fill().await?;
        }
        if self.buffer_start < offset {
            return Ok(Vec::new()); // Past the end.
        }
        let taken = self.buffer.len().min(length_max);
        Ok(self.buffer[..taken].to_vec())
    }

    /// Encodes the next page of records, and the end after the last.
    async fn fill(&mut self) -> Result<(), LsmError> {
        let start = self.last_key.as_deref().map_or(Bound::Unbounded, Bound::Excluded);
        let mut page = Vec::new();
        let mut count = 0;
        let mut last = None;
        let mut cut = false;
        self.view
            .scan(start, Bound::Unbounded, |key, value| {
                encode_record(key, value, &mut page);
                count += 1;
                last = Some(key.to_vec());
                cut = count >= PAGE_RECORDS_MAX || page.len() >= PAGE_BYTES_MAX;
                !cut
            })
            .await?;
        self.records += count as u64;
        if let Some(last) = last {
            self.last_key = Some(last);
        }
        self.buffer.extend_from_slice(&page);
        if !cut {
            encode_end(self.records, &mut self.buffer);
            self.ended = true;
        }
        Ok(())
    }
}

/// Decodes a stream fed in pieces of any size into its records.
#[derive(Debug, Default)]
pub struct StreamDecoder {
    pending: Vec<u8>,
    header_seen: bool,
    ended: bool,
    records: u64,
    last_key: Option<Vec<u8>>,
}

fn u32_at(bytes: &[u8], at: usize) -> Option<usize> {
    let field = bytes.get(at..at + 4)?;
    Some(u32::from_le_bytes(field.try_into().expect("4 bytes")) as usize)
}

impl StreamDecoder {
    /// Appends the next piece of the stream.
    pub fn push(&mut self, piece: &[u8]) {
        self.pending.extend_from_slice(piece);
    }

    /// The next whole record, `None` if more bytes are needed (or the end was read).
    pub fn next_record(&mut self) -> Result<Option<Record>, &'static str> {
        if !self.header_seen {
            if self.pending.len() < HEADER_BYTES {
                return Ok(None);
            }
            if self.pending[..8] != MAGIC {
                return Err("not a key-value snapshot stream (magic)");
            }
            if u32_at(&self.pending, 8) != Some(VERSION as usize) {
                return Err("unsupported key-value snapshot stream version");
            }
            self.pending.drain(..HEADER_BYTES);
            self.header_seen = true;
        }
        if self.ended {
            return if self.pending.is_empty() { Ok(None) } else { Err("bytes after the end") };
        }
        let Some(key_len) = u32_at(&self.pending, 0) else { return Ok(None) };
        if key_len == 0 {
            let Some(count) = self.pending.get(4..12) else { return Ok(None) };
            if u64::from_le_bytes(count.try_into().expect("8 bytes")) != self.records {
                return Err("the record count at the end does not match");
            }
            self.pending.drain(..12);
            self.ended = true;
            return if self.pending.is_empty() { Ok(None) } else { Err("bytes after the end") };
        }
        if key_len > KEY_BYTES_MAX {
            return Err("a key longer than the store allows");
        }
        let Some(value_len) = u32_at(&self.pending, 4 + key_len) else { return Ok(None) };
        if value_len > VALUE_BYTES_MAX {
            return Err("a value longer than the store allows");
        }
        let record_len = 8 + key_len + value_len;
        if self.pending.len() < record_len {
            return Ok(None);
        }
        let key = self.pending[4..4 + key_len].to_vec();
        if self.last_key.as_ref().is_some_and(|last| *last >= key) {
            return Err("keys out of order");
        }
        let value = self.pending[8 + key_len..record_len].to_vec();
        self.pending.drain(..record_len);
        self.records += 1;
        self.last_key = Some(key.clone());
        Ok(Some((key, value)))
    }

    /// Checks that the whole stream was given: `Ok` once its end was read and nothing follows.
    pub fn finish(&self) -> Result<u64, &'static str> {
        if !self.ended {
            return Err("the stream ends early");
        }
        if !self.pending.is_empty() {
            return Err("bytes after the end");
        }
        Ok(self.records)
    }
}

/// Decodes a whole stream given at once (tests and the fuzz body).
pub fn decode(bytes: &[u8]) -> Result<Vec<Record>, &'static str> {
    let mut decoder = StreamDecoder::default();
    decoder.push(bytes);
    let mut records = Vec::new();
    while let Some(record) = decoder.next_record()? {
        records.push(record);
    }
    decoder.finish()?;
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_in_pieces_and_damage() {
        let records: Vec<(Vec<u8>, Vec<u8>)> = (0..50u32)
            .map(|n| (format!("k{n:03}").into_bytes(), vec![n as u8; n as usize * 3]))
            .collect();
        let bytes = encode(&records);
        assert_eq!(decode(&bytes), Ok(records.clone()));
        for piece_len in [1, 2, 7, 64, bytes.len()] {
            let mut decoder = StreamDecoder::default();
            let mut decoded = Vec::new();
            for piece in bytes.chunks(piece_len) {
                decoder.push(piece);
                while let Some(record) = decoder.next_record().unwrap() {
                    decoded.push(record);
                }
            }
            assert_eq!(decoder.finish(), Ok(50));
            assert_eq!(decoded, records);
        }
        for cut in 0..bytes.len() {
            assert!(decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(decode(&longer).is_err());
        let swapped = encode(&[records[1].clone(), records[0].clone()]);
        assert_eq!(decode(&swapped), Err("keys out of order"));
        assert_eq!(decode(&encode(&[])), Ok(Vec::new()));
    }
}
