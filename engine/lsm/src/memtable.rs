//! The memtable: recent writes in memory, multi-versioned by sequence number, with range
//! tombstones kept beside the point entries. Lost on crash; the WAL replays it.

use crate::block::EntryRef;
use std::collections::{btree_map, BTreeMap};
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

/// One version of a key in the memtable.
struct Version {
    sequence: u64,
    kind: Kind,
    value: Vec<u8>,
}

/// The versions of one key: the newest, and older ones some snapshot may still read.
struct Versions {
    newest: Version,
    /// Oldest first.
    older: Vec<Version>,
}

impl Versions {
    /// Newest first.
    fn iter(&self) -> impl Iterator<Item = &Version> {
        std::iter::once(&self.newest).chain(self.older.iter().rev())
    }
}

/// What the memtable counts for one version besides its value (and its key, once per key).
const VERSION_OVERHEAD_BYTES: usize = 48;

#[derive(Default)]
pub struct Memtable {
    entries: BTreeMap<Vec<u8>, Versions>,
    tombstones: Vec<RangeTombstone>,
    size_bytes: usize,
    /// Of every write applied, dropped versions too: what the log holds for this memtable.
    written_bytes: usize,
    /// Highest WAL index applied here (0: none).
    pub wal_index_max: u64,
    /// Lowest WAL index applied here (0: none): a snapshot below it sees nothing here.
    pub wal_index_min: u64,
}

impl Memtable {
    /// Adds a version of `key` newer than any it has. The version it hides is dropped unless
    /// `observed(hidden, sequence)`: some live snapshot reads at a sequence in
    /// `hidden..sequence`. So a key written over and over takes the room of one version, not
    /// of every write since the last flush (a compaction would drop them anyway).
    pub fn insert(
        &mut self,
        key: Vec<u8>,
        sequence: u64,
        kind: Kind,
        value: Vec<u8>,
        observed: impl Fn(u64, u64) -> bool,
    ) {
        self.size_bytes += value.len() + VERSION_OVERHEAD_BYTES;
        self.written_bytes += key.len() + value.len() + VERSION_OVERHEAD_BYTES;
        let version = Version { sequence, kind, value };
        // One search whether the key is new or not (a get_mut then insert searched twice).
        let key_len = key.len();
        let versions = match self.entries.entry(key) {
            btree_map::Entry::Vacant(vacant) => {
                self.size_bytes += key_len;
                vacant.insert(Versions { newest: version, older: Vec::new() });
                return;
            }
            btree_map::Entry::Occupied(occupied) => occupied.into_mut(),
        };
        let hidden = versions.newest.sequence;
        assert!(sequence > hidden, "memtable version {sequence} of a key after {hidden}");
        let hidden = std::mem::replace(&mut versions.newest, version);
        if observed(hidden.sequence, sequence) {
            versions.older.push(hidden);
        } else {
            self.size_bytes -= hidden.value.len() + VERSION_OVERHEAD_BYTES;
        }
    }

    pub fn insert_tombstone(&mut self, tombstone: RangeTombstone) {
        let size = tombstone.start.len() + tombstone.end.len() + VERSION_OVERHEAD_BYTES;
        self.size_bytes += size;
        self.written_bytes += size;
        self.tombstones.push(tombstone);
    }

    pub fn size_bytes(&self) -> usize {
        self.size_bytes
    }

    /// The bytes of every write applied here, including versions dropped since: a memtable
    /// that stays small under overwrites still holds back the log behind it from truncation.
    pub fn written_bytes(&self) -> usize {
        self.written_bytes
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty() && self.tombstones.is_empty()
    }

    /// The newest version of `key` at or below `snapshot`.
    pub fn get(&self, key: &[u8], snapshot: u64) -> Option<(u64, Kind, &[u8])> {
        let versions = self.entries.get(key)?;
        let version = versions.iter().find(|version| version.sequence <= snapshot)?;
        Some((version.sequence, version.kind, version.value.as_slice()))
    }

    pub fn tombstone_sequence(&self, key: &[u8], snapshot: u64) -> u64 {
        tombstone_sequence(&self.tombstones, key, snapshot)
    }

    pub fn tombstones(&self) -> &[RangeTombstone] {
        &self.tombstones
    }

    /// Every version kept (see [`Memtable::insert`]) of the first `keys_max` keys in the range,
    /// in (key, newest first) order, and the last key copied if keys of the range are left.
    pub fn entries_in(
        &self,
        start: Bound<&[u8]>,
        end: Bound<&[u8]>,
        keys_max: usize,
    ) -> (Vec<Entry>, Option<Vec<u8>>) {
        assert!(keys_max > 0, "a memtable range of no keys copies nothing");
        let mut keys = self.entries.range::<[u8], _>((start, end));
        let entries: Vec<Entry> = keys.by_ref().take(keys_max).flat_map(entries_of).collect();
        let cut = keys.next().is_some().then(|| entries.last().expect("keys_max > 0").key.clone());
        (entries, cut)
    }

    /// Every entry in internal-key order, borrowed: what a flush writes.
    pub fn entry_refs(&self) -> impl Iterator<Item = EntryRef<'_>> + '_ {
        self.entries.iter().flat_map(|(key, versions)| {
            versions.iter().map(move |version| EntryRef {
                key,
                sequence: version.sequence,
                kind: version.kind,
                value: &version.value,
            })
        })
    }
}

/// The versions of one key as entries, newest first.
fn entries_of<'a>(
    (key, versions): (&'a Vec<u8>, &'a Versions),
) -> impl Iterator<Item = Entry> + 'a {
    versions.iter().map(|version| Entry {
        key: key.clone(),
        sequence: version.sequence,
        kind: version.kind,
        value: version.value.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newest_version_at_a_snapshot() {
        let mut memtable = Memtable::default();
        let observed = |_, _| true;
        memtable.insert(b"k".to_vec(), 5, Kind::Put, b"old".to_vec(), observed);
        memtable.insert(b"k".to_vec(), 9, Kind::Delete, Vec::new(), observed);
        memtable.insert(b"l".to_vec(), 1, Kind::Put, b"x".to_vec(), observed);
        assert_eq!(memtable.get(b"k", 4), None);
        assert_eq!(memtable.get(b"k", 5), Some((5, Kind::Put, &b"old"[..])));
        assert_eq!(memtable.get(b"k", 100), Some((9, Kind::Delete, &b""[..])));
        assert_eq!(memtable.get(b"j", 100), None);
        let (all, cut) = memtable.entries_in(Bound::Included(b"k"), Bound::Excluded(b"l"), 10);
        assert_eq!((all.len(), cut), (2, None));
        let (first, cut) = memtable.entries_in(Bound::Unbounded, Bound::Unbounded, 1);
        assert_eq!((first.len(), cut), (2, Some(b"k".to_vec())), "both versions of one key");
    }

    #[test]
    fn a_version_no_snapshot_reads_is_dropped_when_hidden() {
        let mut memtable = Memtable::default();
        // A snapshot at 6 reads version 5 (hidden by 9), none reads 9 (hidden by 12).
        let observed = |hidden: u64, by: u64| (hidden..by).contains(&6);
        memtable.insert(b"k".to_vec(), 5, Kind::Put, b"five".to_vec(), observed);
        let one_version = memtable.size_bytes();
        memtable.insert(b"k".to_vec(), 9, Kind::Put, b"nine".to_vec(), observed);
        memtable.insert(b"k".to_vec(), 12, Kind::Put, b"12__".to_vec(), observed);
        assert_eq!(memtable.get(b"k", 6), Some((5, Kind::Put, &b"five"[..])));
        assert_eq!(memtable.get(b"k", 11), Some((5, Kind::Put, &b"five"[..])), "9 is gone");
        assert_eq!(memtable.get(b"k", 12), Some((12, Kind::Put, &b"12__"[..])));
        let sequences: Vec<u64> = memtable.entry_refs().map(|entry| entry.sequence).collect();
        assert_eq!(sequences, [12, 5]);
        assert_eq!(memtable.size_bytes(), 2 * one_version - 1, "the key counts once");
    }
}
