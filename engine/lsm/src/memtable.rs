//! The memtable: recent writes in memory, multi-versioned by sequence number, with range
//! tombstones kept beside the point entries. Lost on crash; the WAL replays it.

use crate::block::EntryRef;
use foldhash::fast::FixedState;
use indexmap::IndexMap;
use std::collections::BTreeMap;
use std::ops::Bound;
use std::rc::Rc;

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

/// What the memtable counts for one version besides its value.
const VERSION_OVERHEAD_BYTES: usize = 48;
/// What the memtable counts for one key besides its bytes: its shared allocation and its places
/// in both indexes.
const KEY_OVERHEAD_BYTES: usize = 64;

pub struct Memtable {
    /// Each key's versions, in the order the keys came, found by hash: a point read or write
    /// costs a hash and one comparison. A tree search compared the key with a dozen or more
    /// others, byte by byte through the prefix they share (a collection's elements share its
    /// key and generation): two thirds of the memtable's cost of an LPOP. Clients choose the
    /// keys, so the hash is seeded with a secret (see [`Memtable::new`]): keys made to collide
    /// would turn each lookup into a scan.
    versions: IndexMap<Rc<[u8]>, Versions, FixedState>,
    hash_seed: u64,
    /// Each key's position in `versions`, in key order: what flushes and scans walk.
    order: BTreeMap<Rc<[u8]>, u32>,
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
    /// An empty memtable whose point index hashes with `hash_seed` (from the runtime's
    /// generator: secret in production, replayed in simulation).
    pub fn new(hash_seed: u64) -> Memtable {
        Memtable {
            versions: IndexMap::with_hasher(FixedState::with_seed(hash_seed)),
            hash_seed,
            order: BTreeMap::new(),
            tombstones: Vec::new(),
            size_bytes: 0,
            written_bytes: 0,
            wal_index_max: 0,
            wal_index_min: 0,
        }
    }

    /// Takes what this memtable holds, leaving it empty (with the same seed).
    pub fn take(&mut self) -> Memtable {
        std::mem::replace(self, Memtable::new(self.hash_seed))
    }

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
        let Some(versions) = self.versions.get_mut(key.as_slice()) else {
            self.size_bytes += key.len() + KEY_OVERHEAD_BYTES;
            let position =
                u32::try_from(self.versions.len()).expect("a memtable holds < 2^32 keys");
            let key: Rc<[u8]> = key.into();
            self.versions.insert(key.clone(), Versions { newest: version, older: Vec::new() });
            self.order.insert(key, position);
            return;
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
        self.versions.is_empty() && self.tombstones.is_empty()
    }

    /// The newest version of `key` at or below `snapshot`.
    pub fn get(&self, key: &[u8], snapshot: u64) -> Option<(u64, Kind, &[u8])> {
        let versions = self.versions.get(key)?;
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
        let mut keys = self.order.range::<[u8], _>((start, end)).map(|keyed| self.keyed(keyed));
        let entries: Vec<Entry> = keys.by_ref().take(keys_max).flat_map(entries_of).collect();
        let cut = keys.next().is_some().then(|| entries.last().expect("keys_max > 0").key.clone());
        (entries, cut)
    }

    /// Every entry in internal-key order, borrowed: what a flush writes.
    pub fn entry_refs(&self) -> impl Iterator<Item = EntryRef<'_>> + '_ {
        self.order.iter().flat_map(|keyed| {
            let (key, versions) = self.keyed(keyed);
            versions.iter().map(move |version| EntryRef {
                key,
                sequence: version.sequence,
                kind: version.kind,
                value: &version.value,
            })
        })
    }

    /// A key of `order` with its versions.
    fn keyed<'a>(&'a self, (key, &position): (&'a Rc<[u8]>, &u32)) -> (&'a [u8], &'a Versions) {
        let (_, versions) = self.versions.get_index(position as usize).expect("ordered keys exist");
        (key, versions)
    }
}

/// The versions of one key as entries, newest first.
fn entries_of<'a>((key, versions): (&'a [u8], &'a Versions)) -> impl Iterator<Item = Entry> + 'a {
    versions.iter().map(|version| Entry {
        key: key.to_vec(),
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
        let mut memtable = Memtable::new(7);
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
        let mut memtable = Memtable::new(7);
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
        let key_bytes = 1 + KEY_OVERHEAD_BYTES;
        assert_eq!(memtable.size_bytes(), 2 * one_version - key_bytes, "the key counts once");
    }

    type ModelVersion = (u64, Kind, Vec<u8>);

    proptest::proptest! {
        /// Point reads, ordered walks and ranges answer as a sorted map of every version does,
        /// for keys that share long prefixes (as a collection's elements do).
        #[test]
        fn a_memtable_answers_as_a_sorted_map_of_versions(
            writes in proptest::collection::vec((0u8..24, proptest::bool::ANY), 1..300),
            reads in proptest::collection::vec((0u8..26, 0u64..320), 1..40),
            bounds in proptest::collection::vec((0u8..26, 0u8..26, 1usize..8), 1..10),
        ) {
            let key = |suffix: u8| [&b"s\0\0\0\x06mylist\0\0\0\0\0\0\0\x01"[..], &[suffix % 5, suffix]].concat();
            let mut memtable = Memtable::new(7);
            // Each key's versions, newest first.
            let mut model: BTreeMap<Vec<u8>, Vec<ModelVersion>> = BTreeMap::new();
            for (at, &(suffix, delete)) in writes.iter().enumerate() {
                let sequence = at as u64 + 1;
                let kind = if delete { Kind::Delete } else { Kind::Put };
                let value = if delete { Vec::new() } else { sequence.to_le_bytes().to_vec() };
                memtable.insert(key(suffix), sequence, kind, value.clone(), |_, _| true);
                model.entry(key(suffix)).or_default().insert(0, (sequence, kind, value));
            }
            for &(suffix, snapshot) in &reads {
                let expected = model.get(&key(suffix)).and_then(|versions| {
                    versions.iter().find(|(sequence, _, _)| *sequence <= snapshot)
                });
                let expected = expected.map(|(sequence, kind, value)| (*sequence, *kind, value.as_slice()));
                proptest::prop_assert_eq!(memtable.get(&key(suffix), snapshot), expected);
            }
            let all: Vec<Entry> = model
                .iter()
                .flat_map(|(key, versions)| versions.iter().map(|(sequence, kind, value)| Entry {
                    key: key.clone(),
                    sequence: *sequence,
                    kind: *kind,
                    value: value.clone(),
                }))
                .collect();
            let walked: Vec<Entry> = memtable
                .entry_refs()
                .map(|entry| Entry {
                    key: entry.key.to_vec(),
                    sequence: entry.sequence,
                    kind: entry.kind,
                    value: entry.value.to_vec(),
                })
                .collect();
            proptest::prop_assert_eq!(&walked, &all);
            for &(low, high, keys_max) in &bounds {
                // As the tree behind it, a memtable takes ranges whose start is not past the end.
                let (low, high) = (key(low).min(key(high)), key(low).max(key(high)));
                let range = (Bound::Included(low.as_slice()), Bound::Excluded(high.as_slice()));
                let (entries, cut) = memtable.entries_in(range.0, range.1, keys_max);
                let keys: Vec<&Vec<u8>> =
                    model.keys().filter(|key| **key >= low && **key < high).collect();
                let expected: Vec<&Entry> = all
                    .iter()
                    .filter(|entry| keys.iter().take(keys_max).any(|key| **key == entry.key))
                    .collect();
                proptest::prop_assert_eq!(entries.iter().collect::<Vec<_>>(), expected);
                let expected_cut = (keys.len() > keys_max).then(|| keys[keys_max - 1].clone());
                proptest::prop_assert_eq!(cut, expected_cut);
            }
        }
    }
}
