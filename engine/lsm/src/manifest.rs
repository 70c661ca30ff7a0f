//! The manifest: which tables make up the store, at which level, and where WAL replay starts.
//! Encoding is pure; `Db` replaces the file atomically (write `MANIFEST.tmp`, sync, rename over
//! `MANIFEST`, sync the directory), so a crash leaves the old manifest or the new one, whole.
//!
//! Layout: `[magic "STRATMAN"][version u32][body_len u32][body_crc32c u32][body]`; see
//! `docs/format.md`, "LSM manifest".

use crate::batch::Reader;
use crate::table::TableMeta;

pub const MAGIC: [u8; 8] = *b"STRATMAN";
pub const VERSION: u32 = 1;
pub const HEADER_BYTES: usize = 20;
/// A manifest larger than this is refused as corrupt.
pub const MANIFEST_BYTES_MAX: usize = 256 << 20;
/// Levels 0 (overlapping tables, newest first) to `LEVELS - 1`.
pub const LEVELS: usize = 7;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TableRecord {
    pub id: u64,
    pub level: u32,
    pub size_bytes: u64,
    pub meta: TableMeta,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Manifest {
    pub next_table_id: u64,
    /// WAL records from this index on are not in any table and are replayed at open.
    pub wal_replay_from: u64,
    pub tables: Vec<TableRecord>,
}

impl Manifest {
    pub fn encode(&self) -> Vec<u8> {
        let mut body = Vec::new();
        body.extend_from_slice(&self.next_table_id.to_le_bytes());
        body.extend_from_slice(&self.wal_replay_from.to_le_bytes());
        body.extend_from_slice(&(self.tables.len() as u32).to_le_bytes());
        for table in &self.tables {
            body.extend_from_slice(&table.id.to_le_bytes());
            body.extend_from_slice(&table.level.to_le_bytes());
            body.extend_from_slice(&table.size_bytes.to_le_bytes());
            body.extend_from_slice(&crate::table::encode_meta(&table.meta));
        }
        let mut out = Vec::with_capacity(HEADER_BYTES + body.len());
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&VERSION.to_le_bytes());
        out.extend_from_slice(&(body.len() as u32).to_le_bytes());
        out.extend_from_slice(&crc32c::crc32c(&body).to_le_bytes());
        out.extend_from_slice(&body);
        out
    }

    /// Decodes and validates a manifest. Never panics, whatever the bytes.
    pub fn decode(bytes: &[u8]) -> Result<Manifest, &'static str> {
        if bytes.len() < HEADER_BYTES {
            return Err("manifest shorter than its header");
        }
        if bytes[..8] != MAGIC {
            return Err("manifest magic");
        }
        let version = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes"));
        if version != VERSION {
            return Err("unsupported manifest version");
        }
        let body_len = u32::from_le_bytes(bytes[12..16].try_into().expect("4 bytes")) as usize;
        if body_len > MANIFEST_BYTES_MAX || bytes.len() != HEADER_BYTES + body_len {
            return Err("manifest length mismatch");
        }
        let crc = u32::from_le_bytes(bytes[16..20].try_into().expect("4 bytes"));
        let body = &bytes[HEADER_BYTES..];
        if crc32c::crc32c(body) != crc {
            return Err("manifest checksum mismatch");
        }
        let mut reader = Reader { bytes: body, at: 0 };
        let next_table_id = reader.u64()?;
        let wal_replay_from = reader.u64()?;
        let count = reader.u32()? as usize;
        let mut tables = Vec::with_capacity(count.min(body.len() / 40));
        for _ in 0..count {
            let id = reader.u64()?;
            let level = reader.u32()?;
            let size_bytes = reader.u64()?;
            let entry_count = reader.u64()?;
            let sequence_min = reader.u64()?;
            let sequence_max = reader.u64()?;
            let smallest_len = reader.u32()? as usize;
            let smallest = reader.bytes(smallest_len)?.to_vec();
            let largest_len = reader.u32()? as usize;
            let largest = reader.bytes(largest_len)?.to_vec();
            if level as usize >= LEVELS || id >= next_table_id || smallest > largest {
                return Err("manifest table record out of range");
            }
            let meta = TableMeta { entry_count, sequence_min, sequence_max, smallest, largest };
            tables.push(TableRecord { id, level, size_bytes, meta });
        }
        if !reader.is_done() {
            return Err("trailing bytes in manifest");
        }
        let mut ids: Vec<u64> = tables.iter().map(|table| table.id).collect();
        ids.sort_unstable();
        if ids.windows(2).any(|pair| pair[0] == pair[1]) {
            return Err("manifest lists a table twice");
        }
        if wal_replay_from == 0 {
            return Err("manifest replay index is zero");
        }
        Ok(Manifest { next_table_id, wal_replay_from, tables })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_round_trip_and_damage() {
        let manifest = Manifest {
            next_table_id: 5,
            wal_replay_from: 17,
            tables: vec![TableRecord {
                id: 3,
                level: 1,
                size_bytes: 4096,
                meta: TableMeta {
                    entry_count: 10,
                    sequence_min: 1,
                    sequence_max: 9,
                    smallest: b"a".to_vec(),
                    largest: b"z".to_vec(),
                },
            }],
        };
        let bytes = manifest.encode();
        assert_eq!(Manifest::decode(&bytes), Ok(manifest));
        for position in 0..bytes.len() {
            let mut damaged = bytes.clone();
            damaged[position] ^= 0x40;
            assert!(Manifest::decode(&damaged).is_err(), "flip at {position}");
        }
    }
}
