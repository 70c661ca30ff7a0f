//! SSTable blocks (pure): the checksummed, optionally compressed envelope every block shares, and
//! the data block's entry layout with its offset array for binary search.
//!
//! Stored block: `[payload (maybe zstd)][uncompressed_len u32][compression u8][crc32c u32]`, the
//! checksum over everything before it. Data block payload: entries
//! `[key_len u32][value_len u32][sequence u64][kind u8][key][value]`, then one `u32` offset per
//! entry, then `[entry_count u32]`. Entries are sorted by key ascending, then sequence descending.

use crate::batch::Reader;
use crate::memtable::{Entry, Kind};
use std::cmp::{Ordering, Reverse};

pub const TRAILER_BYTES: usize = 9;
pub const COMPRESSION_NONE: u8 = 0;
pub const COMPRESSION_ZSTD: u8 = 1;
/// No block may claim to decompress to more than this.
pub const BLOCK_UNCOMPRESSED_BYTES_MAX: u32 = 64 << 20;

/// Wraps `payload` in the block envelope, compressing it if asked and if that helps.
pub fn seal(payload: &[u8], compress: bool) -> Vec<u8> {
    let mut out = Vec::new();
    seal_into(&mut out, payload, compress);
    out
}

/// Appends `payload` wrapped in the block envelope to `out` (see [`seal`]).
pub fn seal_into(out: &mut Vec<u8>, payload: &[u8], compress: bool) {
    let uncompressed_len = u32::try_from(payload.len()).expect("blocks are bounded");
    assert!(uncompressed_len <= BLOCK_UNCOMPRESSED_BYTES_MAX);
    let compressed = if compress { zstd::bulk::compress(payload, 1).ok() } else { None };
    let start = out.len();
    let compression = match compressed {
        Some(bytes) if bytes.len() + 16 < payload.len() => {
            out.extend_from_slice(&bytes);
            COMPRESSION_ZSTD
        }
        _ => {
            out.extend_from_slice(payload);
            COMPRESSION_NONE
        }
    };
    out.extend_from_slice(&uncompressed_len.to_le_bytes());
    out.push(compression);
    let crc = crc32c::crc32c(&out[start..]);
    out.extend_from_slice(&crc.to_le_bytes());
}

/// Checks and opens a block envelope; returns the payload.
pub fn unseal(stored: &[u8]) -> Result<Vec<u8>, &'static str> {
    if stored.len() < TRAILER_BYTES {
        return Err("block shorter than its trailer");
    }
    let (body, crc_bytes) = stored.split_at(stored.len() - 4);
    let crc = u32::from_le_bytes(crc_bytes.try_into().expect("4 bytes"));
    if crc32c::crc32c(body) != crc {
        return Err("block checksum mismatch");
    }
    let (payload, trailer) = body.split_at(body.len() - 5);
    let uncompressed_len = u32::from_le_bytes(trailer[..4].try_into().expect("4 bytes"));
    if uncompressed_len > BLOCK_UNCOMPRESSED_BYTES_MAX {
        return Err("block claims an impossible size");
    }
    match trailer[4] {
        COMPRESSION_NONE if payload.len() == uncompressed_len as usize => Ok(payload.to_vec()),
        COMPRESSION_ZSTD => {
            let out = zstd::bulk::decompress(payload, uncompressed_len as usize)
                .map_err(|_| "zstd block does not decompress")?;
            if out.len() != uncompressed_len as usize {
                return Err("zstd block length mismatch");
            }
            Ok(out)
        }
        COMPRESSION_NONE => Err("uncompressed block length mismatch"),
        _ => Err("unknown compression"),
    }
}

/// [`unseal`] of a block read into a buffer of its own: an uncompressed payload is returned in
/// that buffer, not copied.
pub fn unseal_owned(mut stored: Vec<u8>) -> Result<Vec<u8>, &'static str> {
    let uncompressed = stored.len() >= TRAILER_BYTES
        && stored.len() - TRAILER_BYTES <= BLOCK_UNCOMPRESSED_BYTES_MAX as usize
        && stored[stored.len() - 5] == COMPRESSION_NONE
        && stored.len() - TRAILER_BYTES
            == u32::from_le_bytes(
                stored[stored.len() - 9..stored.len() - 5].try_into().expect("4 bytes"),
            ) as usize;
    if !uncompressed {
        return unseal(&stored);
    }
    let (body, crc_bytes) = stored.split_at(stored.len() - 4);
    let crc = u32::from_le_bytes(crc_bytes.try_into().expect("4 bytes"));
    if crc32c::crc32c(body) != crc {
        return Err("block checksum mismatch");
    }
    stored.truncate(stored.len() - TRAILER_BYTES);
    Ok(stored)
}

/// Builds a data block's payload.
#[derive(Default)]
pub struct DataBlockBuilder {
    payload: Vec<u8>,
    offsets: Vec<u32>,
}

impl DataBlockBuilder {
    pub fn add(&mut self, key: &[u8], sequence: u64, kind: Kind, value: &[u8]) {
        self.offsets.push(self.payload.len() as u32);
        self.payload.extend_from_slice(&(key.len() as u32).to_le_bytes());
        self.payload.extend_from_slice(&(value.len() as u32).to_le_bytes());
        self.payload.extend_from_slice(&sequence.to_le_bytes());
        self.payload.push(kind.to_byte());
        self.payload.extend_from_slice(key);
        self.payload.extend_from_slice(value);
    }

    pub fn size_bytes(&self) -> usize {
        self.payload.len() + 4 * self.offsets.len() + 4
    }

    pub fn is_empty(&self) -> bool {
        self.offsets.is_empty()
    }

    /// The finished payload; the builder is empty again.
    pub fn finish(&mut self) -> Vec<u8> {
        self.close_payload();
        self.offsets.clear();
        std::mem::take(&mut self.payload)
    }

    /// Appends the finished block, sealed, to `out`; the builder is empty again and keeps its
    /// buffers (a table's blocks are built one after another in the same memory).
    pub fn seal_into(&mut self, out: &mut Vec<u8>, compress: bool) {
        self.close_payload();
        seal_into(out, &self.payload, compress);
        self.payload.clear();
        self.offsets.clear();
    }

    /// Appends the offset array and the entry count.
    fn close_payload(&mut self) {
        for offset in &self.offsets {
            self.payload.extend_from_slice(&offset.to_le_bytes());
        }
        self.payload.extend_from_slice(&(self.offsets.len() as u32).to_le_bytes());
    }
}

/// One entry of a parsed block, borrowing from it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EntryRef<'a> {
    pub key: &'a [u8],
    pub sequence: u64,
    pub kind: Kind,
    pub value: &'a [u8],
}

impl EntryRef<'_> {
    pub fn to_entry(self) -> Entry {
        Entry {
            key: self.key.to_vec(),
            sequence: self.sequence,
            kind: self.kind,
            value: self.value.to_vec(),
        }
    }
}

/// A validated data block: every offset points at a well-formed entry, in sorted order.
#[derive(Debug)]
pub struct DataBlock {
    payload: Vec<u8>,
    offsets: Vec<u32>,
}

fn read_entry(payload: &[u8], offset: usize) -> Result<EntryRef<'_>, &'static str> {
    let mut reader = Reader { bytes: payload, at: offset };
    let key_len = reader.u32()? as usize;
    let value_len = reader.u32()? as usize;
    let sequence = reader.u64()?;
    let kind = Kind::from_byte(reader.u8()?).ok_or("unknown entry kind")?;
    let key = reader.bytes(key_len)?;
    let value = reader.bytes(value_len)?;
    Ok(EntryRef { key, sequence, kind, value })
}

/// Internal-key order: key ascending, then sequence descending.
pub fn compare(key_a: &[u8], sequence_a: u64, key_b: &[u8], sequence_b: u64) -> Ordering {
    (key_a, Reverse(sequence_a)).cmp(&(key_b, Reverse(sequence_b)))
}

impl DataBlock {
    pub fn parse(payload: Vec<u8>) -> Result<DataBlock, &'static str> {
        if payload.len() < 4 {
            return Err("data block too short");
        }
        let count_at = payload.len() - 4;
        let count = u32::from_le_bytes(payload[count_at..].try_into().expect("4 bytes")) as usize;
        let offsets_at = count
            .checked_mul(4)
            .and_then(|bytes| count_at.checked_sub(bytes))
            .ok_or("entry count exceeds the block")?;
        let offsets: Vec<u32> = payload[offsets_at..count_at]
            .chunks_exact(4)
            .map(|chunk| u32::from_le_bytes(chunk.try_into().expect("4 bytes")))
            .collect();
        let entries_region = &payload[..offsets_at];
        let mut previous: Option<EntryRef> = None;
        for &offset in &offsets {
            let entry = read_entry(entries_region, offset as usize)?;
            if let Some(previous) = previous {
                if compare(previous.key, previous.sequence, entry.key, entry.sequence)
                    != Ordering::Less
                {
                    return Err("data block entries out of order");
                }
            }
            previous = Some(entry);
        }
        Ok(DataBlock { payload, offsets })
    }

    pub fn len(&self) -> usize {
        self.offsets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.offsets.is_empty()
    }

    pub fn entry(&self, position: usize) -> EntryRef<'_> {
        read_entry(&self.payload, self.offsets[position] as usize).expect("validated by parse")
    }

    /// Position of the first entry at or after (`key`, `sequence`) in internal-key order.
    pub fn seek(&self, key: &[u8], sequence: u64) -> usize {
        let (mut low, mut high) = (0, self.offsets.len());
        while low < high {
            let middle = (low + high) / 2;
            let entry = self.entry(middle);
            if compare(entry.key, entry.sequence, key, sequence) == Ordering::Less {
                low = middle + 1;
            } else {
                high = middle;
            }
        }
        low
    }

    pub fn size_bytes(&self) -> usize {
        self.payload.len() + self.offsets.len() * 4
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_round_trip_with_and_without_compression() {
        for compress in [false, true] {
            let mut builder = DataBlockBuilder::default();
            for i in 0u32..100 {
                builder.add(format!("key{i:04}").as_bytes(), 7, Kind::Put, &[b'v'; 40]);
            }
            let mut again = DataBlockBuilder::default();
            for i in 0u32..100 {
                again.add(format!("key{i:04}").as_bytes(), 7, Kind::Put, &[b'v'; 40]);
            }
            let stored = seal(&builder.finish(), compress);
            let mut appended = b"before".to_vec();
            again.seal_into(&mut appended, compress);
            assert_eq!(&appended[6..], stored, "sealed in place, the same bytes");
            assert!(again.is_empty() && again.size_bytes() == 4, "the builder starts over");
            assert_eq!(unseal_owned(stored.clone()), unseal(&stored));
            let block = DataBlock::parse(unseal(&stored).unwrap()).unwrap();
            assert_eq!(block.len(), 100);
            assert_eq!(block.entry(block.seek(b"key0042", u64::MAX)).key, b"key0042");
            let mut damaged = stored.clone();
            damaged[10] ^= 1;
            assert!(unseal(&damaged).is_err());
            assert!(unseal_owned(damaged).is_err());
        }
    }
}
