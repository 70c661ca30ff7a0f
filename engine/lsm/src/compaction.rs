//! Compaction decisions (pure): which tables to merge next, and which versions of a key survive a
//! merge given the live snapshots. `Db` performs the I/O.
//!
//! Leveled: level 0 holds flushed tables that may overlap; it is merged whole into level 1 once it
//! has `level0_tables_max` tables. Each level `n >= 1` is a sorted run of disjoint tables with a
//! byte target `level1_bytes * level_multiplier^(n-1)`; over target, one of its tables (round
//! robin by key) is merged into the overlapping tables of level `n + 1`. A table that overlaps
//! nothing below moves down without being rewritten. Every byte is thus rewritten about
//! `level_multiplier + 1` times per level: write amplification is bounded by the level count.
//!
//! Level 0 merges into itself instead (all its tables into one) while the level 1 tables it
//! overlaps hold over `LEVEL0_MERGE_RATIO` times its bytes: small flushes (a Raft snapshot every
//! so many entries flushes whatever the memtable holds) would otherwise each rewrite megabytes of
//! level 1 to merge in a few kilobytes. Level 0 goes down once it has grown enough to be worth
//! the rewrite; until then its bytes are rewritten at each of its merges, which costs less than
//! the level 1 bytes each would have rewritten.

use crate::block::EntryRef;
use crate::manifest::LEVELS;
use crate::memtable::{Kind, RangeTombstone};

/// What the planner needs to know about a table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TableSummary {
    pub id: u64,
    pub size_bytes: u64,
    pub smallest: Vec<u8>,
    pub largest: Vec<u8>,
}

impl TableSummary {
    fn overlaps(&self, smallest: &[u8], largest: &[u8]) -> bool {
        self.smallest.as_slice() <= largest && smallest <= self.largest.as_slice()
    }
}

#[derive(Clone, Copy, Debug)]
pub struct Shape {
    pub level0_tables_max: usize,
    pub level1_bytes: u64,
    pub level_multiplier: u64,
}

impl Shape {
    pub fn target_bytes(&self, level: usize) -> u64 {
        assert!(level >= 1);
        let mut target = self.level1_bytes;
        for _ in 1..level {
            target = target.saturating_mul(self.level_multiplier);
        }
        target
    }
}

/// Level 0 merges into itself while the level 1 tables it overlaps are this many times its size.
pub const LEVEL0_MERGE_RATIO: u64 = 8;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    pub level: usize,
    /// Where the output goes: `level + 1`, or level 0 itself for a merge of level 0.
    pub output: usize,
    pub upper: Vec<u64>,
    pub lower: Vec<u64>,
    /// Nothing below the output level overlaps the inputs: deletions can be dropped.
    pub bottom: bool,
    /// Key bounds of the inputs.
    pub smallest: Vec<u8>,
    pub largest: Vec<u8>,
}

impl Plan {
    pub fn output_level(&self) -> usize {
        self.output
    }

    /// One input and nothing to merge with: move it down without rewriting.
    pub fn is_trivial_move(&self) -> bool {
        self.upper.len() == 1 && self.lower.is_empty() && self.output > self.level
    }
}

/// The most urgent compaction, if any level is over its target. `levels[0]` is newest first;
/// `pointers[n]` is the largest key of the last table compacted out of level `n`.
pub fn pick(levels: &[Vec<TableSummary>], shape: &Shape, pointers: &[Vec<u8>]) -> Option<Plan> {
    assert_eq!(levels.len(), LEVELS);
    let mut best: Option<(f64, usize)> = None;
    let level0_score = levels[0].len() as f64 / shape.level0_tables_max.max(1) as f64;
    if level0_score >= 1.0 {
        best = Some((level0_score, 0));
    }
    for (level, tables) in levels.iter().enumerate().take(LEVELS - 1).skip(1) {
        let bytes: u64 = tables.iter().map(|table| table.size_bytes).sum();
        let score = bytes as f64 / shape.target_bytes(level) as f64;
        if score >= 1.0 && best.is_none_or(|(best_score, _)| score > best_score) {
            best = Some((score, level));
        }
    }
    let (_, level) = best?;
    let upper: Vec<&TableSummary> = if level == 0 {
        levels[0].iter().collect()
    } else {
        let tables = &levels[level];
        let pointer = &pointers[level];
        let next = tables.iter().find(|table| table.smallest > *pointer).unwrap_or(&tables[0]);
        vec![next]
    };
    let smallest = upper.iter().map(|table| table.smallest.clone()).min().expect("inputs");
    let largest = upper.iter().map(|table| table.largest.clone()).max().expect("inputs");
    let lower: Vec<&TableSummary> =
        levels[level + 1].iter().filter(|table| table.overlaps(&smallest, &largest)).collect();
    if level == 0 && upper.len() >= 2 {
        let bytes =
            |tables: &[&TableSummary]| -> u64 { tables.iter().map(|table| table.size_bytes).sum() };
        if bytes(&lower) > bytes(&upper).saturating_mul(LEVEL0_MERGE_RATIO) {
            let bottom = levels[1..]
                .iter()
                .all(|tables| tables.iter().all(|table| !table.overlaps(&smallest, &largest)));
            let upper = upper.iter().map(|table| table.id).collect();
            return Some(Plan {
                level,
                output: 0,
                upper,
                lower: Vec::new(),
                bottom,
                smallest,
                largest,
            });
        }
    }
    let smallest =
        lower.iter().map(|table| table.smallest.clone()).chain([smallest]).min().expect("some");
    let largest =
        lower.iter().map(|table| table.largest.clone()).chain([largest]).max().expect("some");
    let bottom = levels[level + 2..]
        .iter()
        .all(|tables| tables.iter().all(|table| !table.overlaps(&smallest, &largest)));
    Some(Plan {
        level,
        output: level + 1,
        upper: upper.iter().map(|table| table.id).collect(),
        lower: lower.iter().map(|table| table.id).collect(),
        bottom,
        smallest,
        largest,
    })
}

/// The versions of one key (newest first, all sequences) that a merge keeps, as positions in
/// `versions` (sequence, kind), into `kept`. `covering` holds the sequences of the input range
/// tombstones covering the key; `snapshots` the live snapshot sequences. A version survives if it
/// is the newest, or if some snapshot sees it (a snapshot at or above it and below whatever hides
/// it: a newer version or a covering tombstone). At the bottom, trailing deletes hide nothing and
/// go.
pub fn retain(
    versions: &[(u64, Kind)],
    covering: &[u64],
    snapshots: &[u64],
    bottom: bool,
    kept: &mut Vec<usize>,
) {
    kept.clear();
    let mut hidden_by: Option<u64> = None;
    for (position, &(sequence, _)) in versions.iter().enumerate() {
        let tombstone = covering.iter().copied().filter(|&covering| covering > sequence).min();
        let hide = match (hidden_by, tombstone) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let visible = match hide {
            None => true,
            Some(hide) => snapshots.iter().any(|&snapshot| sequence <= snapshot && snapshot < hide),
        };
        hidden_by = Some(sequence);
        if visible {
            kept.push(position);
        }
    }
    if bottom {
        while kept.last().is_some_and(|&position| versions[position].1 == Kind::Delete) {
            kept.pop();
        }
    }
}

/// The versions of one key met in a merge, copied out of their sources (which move on) into
/// buffers kept from one key to the next.
#[derive(Default)]
pub struct KeyVersions {
    pub key: Vec<u8>,
    versions: Vec<(u64, Kind)>,
    /// Where each version's value lies in `values`.
    spans: Vec<(usize, usize)>,
    values: Vec<u8>,
}

impl KeyVersions {
    pub fn is_empty(&self) -> bool {
        self.versions.is_empty()
    }

    /// Whether `entry` is another version of the key held (or nothing is held yet).
    pub fn takes(&self, entry: &EntryRef<'_>) -> bool {
        self.is_empty() || self.key == entry.key
    }

    pub fn push(&mut self, entry: EntryRef<'_>) {
        if self.is_empty() {
            self.key.clear();
            self.key.extend_from_slice(entry.key);
        }
        let start = self.values.len();
        self.values.extend_from_slice(entry.value);
        self.versions.push((entry.sequence, entry.kind));
        self.spans.push((start, self.values.len()));
    }

    /// (sequence, kind) of each version, newest first.
    pub fn versions(&self) -> &[(u64, Kind)] {
        &self.versions
    }

    pub fn version(&self, position: usize) -> (u64, Kind, &[u8]) {
        let (sequence, kind) = self.versions[position];
        let (start, end) = self.spans[position];
        (sequence, kind, &self.values[start..end])
    }

    pub fn clear(&mut self) {
        self.versions.clear();
        self.spans.clear();
        self.values.clear();
    }
}

/// Whether a range tombstone must still be written by a merge.
pub fn keep_tombstone(tombstone: &RangeTombstone, snapshots: &[u64], bottom: bool) -> bool {
    !bottom || snapshots.iter().any(|&snapshot| snapshot < tombstone.sequence)
}

/// The part of `tombstone` inside `[lower, upper)` (`None` bounds are open).
pub fn clip(
    tombstone: &RangeTombstone,
    lower: Option<&[u8]>,
    upper: Option<&[u8]>,
) -> Option<RangeTombstone> {
    let start = match lower {
        Some(lower) if lower > tombstone.start.as_slice() => lower.to_vec(),
        _ => tombstone.start.clone(),
    };
    let end = match upper {
        Some(upper) if upper < tombstone.end.as_slice() => upper.to_vec(),
        _ => tombstone.end.clone(),
    };
    (start < end).then_some(RangeTombstone { start, end, sequence: tombstone.sequence })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The sequences `retain` keeps.
    fn kept(
        versions: &[(u64, Kind)],
        covering: &[u64],
        snapshots: &[u64],
        bottom: bool,
    ) -> Vec<u64> {
        let mut kept = Vec::new();
        retain(versions, covering, snapshots, bottom, &mut kept);
        kept.iter().map(|&position| versions[position].0).collect()
    }

    #[test]
    fn snapshots_keep_the_versions_they_see() {
        let versions = [(30, Kind::Put), (20, Kind::Put), (10, Kind::Put)];
        assert_eq!(kept(&versions, &[], &[], false), vec![30]);
        assert_eq!(kept(&versions, &[], &[25], false), vec![30, 20]);
        assert_eq!(kept(&versions, &[15], &[12], false), vec![30, 10]);
    }

    #[test]
    fn bottom_drops_trailing_deletes() {
        let versions = [(30, Kind::Delete), (20, Kind::Put)];
        assert!(kept(&versions, &[], &[], true).is_empty());
        assert_eq!(kept(&versions, &[], &[25], true).len(), 2);
    }

    #[test]
    fn key_versions_copy_what_they_hold() {
        let mut group = KeyVersions::default();
        let entry = |key, sequence, value| EntryRef { key, sequence, kind: Kind::Put, value };
        group.push(entry(b"k", 9, b"nine"));
        assert!(group.takes(&entry(b"k", 5, b"")) && !group.takes(&entry(b"l", 5, b"")));
        group.push(entry(b"k", 5, b"five"));
        assert_eq!((group.version(1), group.versions().len()), ((5, Kind::Put, &b"five"[..]), 2));
        group.clear();
        assert!(group.is_empty() && group.takes(&entry(b"l", 1, b"")));
        group.push(entry(b"l", 1, b"one"));
        assert_eq!(
            (group.key.as_slice(), group.version(0)),
            (&b"l"[..], (1, Kind::Put, &b"one"[..]))
        );
    }

    #[test]
    fn pick_merges_a_full_level_zero() {
        let table = |id, smallest: &[u8], largest: &[u8]| TableSummary {
            id,
            size_bytes: 10,
            smallest: smallest.to_vec(),
            largest: largest.to_vec(),
        };
        let mut levels = vec![Vec::new(); LEVELS];
        levels[0] = vec![table(4, b"a", b"c"), table(3, b"b", b"d")];
        levels[1] = vec![table(1, b"a", b"b"), table(2, b"x", b"z")];
        let shape = Shape { level0_tables_max: 2, level1_bytes: 1000, level_multiplier: 10 };
        let plan = pick(&levels, &shape, &vec![Vec::new(); LEVELS]).unwrap();
        assert_eq!((plan.level, plan.upper.clone(), plan.lower.clone()), (0, vec![4, 3], vec![1]));
        assert_eq!(plan.output_level(), 1);
        assert!(plan.bottom);
    }

    #[test]
    fn small_flushes_over_a_large_level_one_merge_within_level_zero() {
        let table = |id, size_bytes, smallest: &[u8], largest: &[u8]| TableSummary {
            id,
            size_bytes,
            smallest: smallest.to_vec(),
            largest: largest.to_vec(),
        };
        let shape = Shape { level0_tables_max: 2, level1_bytes: 1 << 30, level_multiplier: 10 };
        let pointers = vec![Vec::new(); LEVELS];
        let mut levels = vec![Vec::new(); LEVELS];
        levels[0] = vec![table(5, 300, b"m1", b"m1"), table(4, 300, b"m1", b"m2")];
        levels[1] = vec![table(1, 8 << 20, b"a", b"z"), table(2, 8 << 20, b"zz", b"zzz")];
        let plan = pick(&levels, &shape, &pointers).unwrap();
        assert_eq!((plan.level, plan.output_level()), (0, 0));
        assert_eq!((plan.upper.clone(), plan.lower.clone()), (vec![5, 4], vec![]));
        assert!(!plan.is_trivial_move());
        assert!(!plan.bottom, "level 1 holds older versions of these keys");
        // Once level 0 holds an eighth of what it overlaps, it goes down.
        levels[0] = vec![table(7, 1 << 20, b"m1", b"m1"), table(6, 1 << 20, b"m1", b"m2")];
        let plan = pick(&levels, &shape, &pointers).unwrap();
        assert_eq!((plan.output_level(), plan.lower.clone()), (1, vec![1]));
        // A lone table is never merged with itself.
        let lone = Shape { level0_tables_max: 1, ..shape };
        levels[0] = vec![table(8, 300, b"m1", b"m1")];
        let plan = pick(&levels, &lone, &pointers).unwrap();
        assert_eq!((plan.output_level(), plan.lower.clone()), (1, vec![1]));
    }
}
