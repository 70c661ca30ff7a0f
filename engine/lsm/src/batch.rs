//! Write batches and their encoding as WAL records (pure).
//!
//! A WAL record holds one batch: `[count u32]` then per operation `[kind u8][key_len u32][key]
//! [value_len u32][value]`; for a range delete the value is the exclusive end key. Sequence
//! numbers are not stored: an operation's sequence number is `(wal_index << 20) | position`,
//! so the log's order is the store's order.

/// Operations per batch are bounded so that positions fit the low bits of a sequence number.
pub const BATCH_OPERATIONS_MAX: usize = 1 << SEQUENCE_POSITION_BITS;
pub const SEQUENCE_POSITION_BITS: u32 = 20;
/// Largest key accepted.
pub const KEY_BYTES_MAX: usize = 64 << 10;
/// Largest value accepted.
pub const VALUE_BYTES_MAX: usize = 8 << 20;

/// The sequence number of operation `position` of the batch logged at `wal_index`.
pub fn sequence(wal_index: u64, position: usize) -> u64 {
    assert!(position < BATCH_OPERATIONS_MAX);
    assert!(wal_index < 1 << (64 - SEQUENCE_POSITION_BITS), "wal index overflows sequence space");
    (wal_index << SEQUENCE_POSITION_BITS) | position as u64
}

/// The highest sequence number of anything logged at or before `wal_index`.
pub fn sequence_through(wal_index: u64) -> u64 {
    sequence(wal_index, BATCH_OPERATIONS_MAX - 1)
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Operation {
    Put {
        key: Vec<u8>,
        value: Vec<u8>,
    },
    Delete {
        key: Vec<u8>,
    },
    /// Deletes every key in `start..end`.
    DeleteRange {
        start: Vec<u8>,
        end: Vec<u8>,
    },
}

const KIND_PUT: u8 = 1;
const KIND_DELETE: u8 = 2;
const KIND_DELETE_RANGE: u8 = 3;

/// Operations applied atomically, in order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WriteBatch {
    pub(crate) operations: Vec<Operation>,
    pub(crate) size_bytes: usize,
}

impl WriteBatch {
    pub fn new() -> WriteBatch {
        WriteBatch::default()
    }

    /// An empty batch with room for `operations` operations.
    pub fn with_capacity(operations: usize) -> WriteBatch {
        WriteBatch { operations: Vec::with_capacity(operations), size_bytes: 0 }
    }

    pub fn put(&mut self, key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) -> &mut Self {
        let (key, value) = (key.into(), value.into());
        self.size_bytes += key.len() + value.len() + 9;
        self.operations.push(Operation::Put { key, value });
        self
    }

    pub fn delete(&mut self, key: impl Into<Vec<u8>>) -> &mut Self {
        let key = key.into();
        self.size_bytes += key.len() + 9;
        self.operations.push(Operation::Delete { key });
        self
    }

    pub fn delete_range(
        &mut self,
        start: impl Into<Vec<u8>>,
        end: impl Into<Vec<u8>>,
    ) -> &mut Self {
        let (start, end) = (start.into(), end.into());
        self.size_bytes += start.len() + end.len() + 9;
        self.operations.push(Operation::DeleteRange { start, end });
        self
    }

    pub fn len(&self) -> usize {
        self.operations.len()
    }

    pub fn is_empty(&self) -> bool {
        self.operations.is_empty()
    }

    /// Checks the bounds; `None` when the batch is acceptable.
    pub(crate) fn problem(&self) -> Option<String> {
        if self.operations.len() > BATCH_OPERATIONS_MAX {
            return Some(format!(
                "batch of {} operations exceeds {BATCH_OPERATIONS_MAX}",
                self.len()
            ));
        }
        for operation in &self.operations {
            let (key, value) = match operation {
                Operation::Put { key, value } => (key, value.len()),
                Operation::Delete { key } => (key, 0),
                Operation::DeleteRange { start, end } => {
                    if start >= end {
                        return Some("empty or inverted delete range".into());
                    }
                    (start, end.len())
                }
            };
            if key.is_empty() || key.len() > KEY_BYTES_MAX {
                return Some(format!("key of {} bytes (1..={KEY_BYTES_MAX} allowed)", key.len()));
            }
            if value > VALUE_BYTES_MAX {
                return Some(format!("value of {value} bytes exceeds {VALUE_BYTES_MAX}"));
            }
        }
        None
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(4 + self.size_bytes);
        out.extend_from_slice(&(self.operations.len() as u32).to_le_bytes());
        for operation in &self.operations {
            let (kind, key, value): (u8, &[u8], &[u8]) = match operation {
                Operation::Put { key, value } => (KIND_PUT, key, value),
                Operation::Delete { key } => (KIND_DELETE, key, &[]),
                Operation::DeleteRange { start, end } => (KIND_DELETE_RANGE, start, end),
            };
            out.push(kind);
            out.extend_from_slice(&(key.len() as u32).to_le_bytes());
            out.extend_from_slice(key);
            out.extend_from_slice(&(value.len() as u32).to_le_bytes());
            out.extend_from_slice(value);
        }
        out
    }

    /// Decodes a WAL record; `Err` names what is wrong. Never panics.
    pub fn decode(bytes: &[u8]) -> Result<WriteBatch, &'static str> {
        let mut reader = Reader { bytes, at: 0 };
        let count = reader.u32()? as usize;
        if count > BATCH_OPERATIONS_MAX {
            return Err("operation count over the maximum");
        }
        let mut batch = WriteBatch::new();
        for _ in 0..count {
            let kind = reader.u8()?;
            let key_len = reader.u32()? as usize;
            let key = reader.bytes(key_len)?.to_vec();
            let value_len = reader.u32()? as usize;
            let value = reader.bytes(value_len)?.to_vec();
            match kind {
                KIND_PUT => batch.put(key, value),
                KIND_DELETE if value.is_empty() => batch.delete(key),
                KIND_DELETE_RANGE => batch.delete_range(key, value),
                _ => return Err("unknown operation kind"),
            };
        }
        if reader.at != bytes.len() {
            return Err("trailing bytes after the batch");
        }
        if batch.problem().is_some() {
            return Err("operation out of bounds");
        }
        Ok(batch)
    }
}

/// A bounds-checked little-endian reader over a byte slice.
pub(crate) struct Reader<'a> {
    pub bytes: &'a [u8],
    pub at: usize,
}

impl<'a> Reader<'a> {
    pub fn bytes(&mut self, len: usize) -> Result<&'a [u8], &'static str> {
        let end = self.at.checked_add(len).ok_or("length overflow")?;
        let slice = self.bytes.get(self.at..end).ok_or("truncated")?;
        self.at = end;
        Ok(slice)
    }

    pub fn u8(&mut self) -> Result<u8, &'static str> {
        Ok(self.bytes(1)?[0])
    }

    pub fn u32(&mut self) -> Result<u32, &'static str> {
        Ok(u32::from_le_bytes(self.bytes(4)?.try_into().expect("4 bytes")))
    }

    pub fn u64(&mut self) -> Result<u64, &'static str> {
        Ok(u64::from_le_bytes(self.bytes(8)?.try_into().expect("8 bytes")))
    }

    pub fn is_done(&self) -> bool {
        self.at == self.bytes.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_round_trip() {
        let mut batch = WriteBatch::new();
        batch
            .put(b"a".to_vec(), b"1".to_vec())
            .delete(b"b".to_vec())
            .delete_range(b"c".to_vec(), b"d".to_vec());
        assert_eq!(WriteBatch::decode(&batch.encode()), Ok(batch.clone()));
        let encoded = batch.encode();
        for cut in 0..encoded.len() {
            assert!(WriteBatch::decode(&encoded[..cut]).is_err());
        }
    }

    #[test]
    fn sequences_order_by_index_then_position() {
        assert!(sequence(1, 5) < sequence(2, 0));
        assert!(sequence_through(1) < sequence(2, 0));
    }
}
