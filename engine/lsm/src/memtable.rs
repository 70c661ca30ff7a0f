//! The memtable: recent writes in memory, multi-versioned by sequence number, with range
//! tombstones kept beside the point entries. Lost on crash; the WAL replays it.

use std::cmp::Reverse;
use std::collections::BTreeMap;
use std::ops::Bound;

/// What a point entry says about its key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    Put,
    Delete,
}

impl Kind {
    pub fn to_byte(self) -> u8 {
        match self {
            Kind::Put => 1,
            Kind::Delete => 2,
        }
    }

    pub fn from_byte(byte: u8) -> Option<Kind> {
        match byte {
            1 => Some(Kind::Put),
            2 => Some(Kind::Delete),
            _ => None,
        }
    }
}

/// One version of one key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub key: Vec<u8>,
    pub sequence: u64,
    pub kind: Kind,
    pub value: Vec<u8>,
}

/// Deletes every version with a lower sequence number of every key in `start..end`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct RangeTombstone {
    pub start: Vec<u8>,
    pub end: Vec<u8>,
    pub sequence: u64,
}

impl RangeTombstone {
    pub fn covers(&self, key: &[u8]) -> bool {
        self.start.as_slice() <= key && key < self.end.as_slice()
    }
}

/// Highest sequence, at or below `snapshot`, of the tombstones covering `key`; 0 if none.
pub fn tombstone_sequence(tombstones: &[RangeTombstone], key: &[u8], snapshot: u64) -> u64 {
    tombstones
        .iter()
        .filter(|tombstone| tombstone.sequence <= snapshot && tombstone.covers(key))
        .map(|tombstone| tombstone.sequence)
        .max()
        .unwrap_or(0)
}

/// (key, sequence newest first): the memtable's internal key order.
type InternalKey = (Vec<u8>, Reverse<u64>);

#[derive(Default)]
pub struct Memtable {
    entries: BTreeMap<InternalKey, (Kind, Vec<u8>)>,
    tombstones: Vec<RangeTombstone>,
    size_bytes: usize,
    /// Highest WAL index applied here (0: none).
    pub wal_index_max: u64,
    /// Lowest WAL index applied here (0: none): a snapshot below it sees nothing here.
    pub wal_index_min: u64,
}

impl Memtable {
    pub fn insert(&mut self, key: Vec<u8>, sequence: u64, kind: Kind, value: Vec<u8>) {
        self.size_bytes += key.len() + value.len() + 48;
        self.entries.insert((key, Reverse(sequence)), (kind, value));
    }

    pub fn insert_tombstone(&mut self, tombstone: RangeTombstone) {
        self.size_bytes += tombstone.start.len() + tombstone.end.len() + 48;
        self.tombstones.push(tombstone);
    }

    pub fn size_bytes(&self) -> usize {
        self.size_bytes
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty() && self.tombstones.is_empty()
    }

    /// The newest version of `key` at or below `snapshot`.
    pub fn get(&self, key: &[u8], snapshot: u64) -> Option<(u64, Kind, &[u8])> {
        let from = (key.to_vec(), Reverse(snapshot));
        let ((found, Reverse(sequence)), (kind, value)) = self.entries.range(from..).next()?;
        (found.as_slice() == key).then_some((*sequence, *kind, value.as_slice()))
    }

    pub fn tombstone_sequence(&self, key: &[u8], snapshot: u64) -> u64 {
        tombstone_sequence(&self.tombstones, key, snapshot)
    }

    pub fn tombstones(&self) -> &[RangeTombstone] {
        &self.tombstones
    }

    /// Every version in `range` (all sequences), in (key, newest first) order.
    pub fn entries_in(&self, start: Bound<&[u8]>, end: Bound<&[u8]>) -> Vec<Entry> {
        let lower = match start {
            Bound::Included(key) => Bound::Included((key.to_vec(), Reverse(u64::MAX))),
            Bound::Excluded(key) => Bound::Excluded((key.to_vec(), Reverse(0))),
            Bound::Unbounded => Bound::Unbounded,
        };
        let upper = match end {
            Bound::Included(key) => Bound::Included((key.to_vec(), Reverse(0))),
            Bound::Excluded(key) => Bound::Excluded((key.to_vec(), Reverse(u64::MAX))),
            Bound::Unbounded => Bound::Unbounded,
        };
        self.entries
            .range((lower, upper))
            .map(|((key, Reverse(sequence)), (kind, value))| Entry {
                key: key.clone(),
                sequence: *sequence,
                kind: *kind,
                value: value.clone(),
            })
            .collect()
    }

    /// Every entry, for a flush.
    pub fn all_entries(&self) -> impl Iterator<Item = Entry> + '_ {
        self.entries.iter().map(|((key, Reverse(sequence)), (kind, value))| Entry {
            key: key.clone(),
            sequence: *sequence,
            kind: *kind,
            value: value.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newest_version_at_a_snapshot() {
        let mut memtable = Memtable::default();
        memtable.insert(b"k".to_vec(), 5, Kind::Put, b"old".to_vec());
        memtable.insert(b"k".to_vec(), 9, Kind::Delete, Vec::new());
        memtable.insert(b"l".to_vec(), 1, Kind::Put, b"x".to_vec());
        assert_eq!(memtable.get(b"k", 4), None);
        assert_eq!(memtable.get(b"k", 5), Some((5, Kind::Put, &b"old"[..])));
        assert_eq!(memtable.get(b"k", 100), Some((9, Kind::Delete, &b""[..])));
        assert_eq!(memtable.get(b"j", 100), None);
        let all = memtable.entries_in(Bound::Included(b"k"), Bound::Excluded(b"l"));
        assert_eq!(all.len(), 2);
    }
}
