//! How the groups of one node share one WAL (pure encoding and replay).
//!
//! Each round of the host writes one WAL record per group that changed: its new hard state
//! and/or the entries to persist, all records of a round made durable by one sync. A record's
//! entries replace the group's stored log from their first index on (a leader change may cut a
//! follower's log back), so replaying records in WAL order rebuilds every group's log and hard
//! state. The WAL checksums and frames each record (`strata-wal`); a record that decodes badly
//! or does not continue its group's log is corruption, reported, never skipped.
//!
//! A *snapshot record* restarts a group's log: it carries the snapshot the log now starts after
//! (compacted, or installed from a leader), the hard state, and every entry the log holds after
//! it. Replay starts each group at its last snapshot record and ignores what came before, so the
//! WAL's prefix may be dropped once every group has one past it (a checkpoint).
//!
//! Record layout (little-endian), see docs/format.md "Multi-Raft WAL record":
//! `[group u64][flags u8][hard state, 21 bytes, if flags & 1]`
//! `[meta len u32][snapshot meta], if flags & 2` then `[first_index u64][count u32]`
//! then `count` times `[len u32][entry]` (strata-raft's entry encoding).

use std::collections::BTreeMap;
use strata_raft::{Entry, HardState, SnapshotMeta};

/// Identifies one Raft group, the same on every node.
pub type GroupId = u64;

const FLAG_HARD_STATE: u8 = 1;
const FLAG_SNAPSHOT: u8 = 2;
const FLAG_REMOVED: u8 = 4;
/// Bytes of a record before its entries.
const RECORD_HEADER_BYTES: usize = 8 + 1 + 8 + 4;

/// Encodes what one group must persist in one round.
pub fn encode_record(group: GroupId, hard_state: Option<HardState>, entries: &[Entry]) -> Vec<u8> {
    encode(group, hard_state, None, entries)
}

/// Encodes what one group must persist in one round as records of at most `bytes_max` bytes
/// each where it can (an entry larger than that gets a record of its own): the entries in
/// order, the hard state with the last. A crash may keep only some of them; what is lost was
/// not acknowledged (nothing is before the round's sync), and the hard state, last, never
/// points past the stored log.
pub fn encode_records(
    group: GroupId,
    hard_state: Option<HardState>,
    entries: &[Entry],
    bytes_max: usize,
) -> Vec<Vec<u8>> {
    let budget = bytes_max.saturating_sub(RECORD_HEADER_BYTES + 21);
    let mut records = Vec::new();
    let mut start = 0;
    let mut bytes = 0;
    for (position, entry) in entries.iter().enumerate() {
        let size = entry.size_bytes() as usize + 4;
        if position > start && bytes + size > budget {
            records.push(encode(group, None, None, &entries[start..position]));
            (start, bytes) = (position, 0);
        }
        bytes += size;
    }
    records.push(encode(group, hard_state, None, &entries[start..]));
    records
}

/// Encodes a snapshot record: the group's log restarts after `snapshot` with `entries` (which
/// follow it), under `hard_state`.
pub fn encode_snapshot_record(
    group: GroupId,
    snapshot: &SnapshotMeta,
    hard_state: HardState,
    entries: &[Entry],
) -> Vec<u8> {
    if let Some(first) = entries.first() {
        assert_eq!(first.index, snapshot.index + 1, "a snapshot record's entries follow it");
    }
    encode(group, Some(hard_state), Some(snapshot), entries)
}

/// Encodes a group's removal: replay forgets it and everything it wrote before.
pub fn encode_removal(group: GroupId) -> Vec<u8> {
    let mut out = encode(group, None, None, &[]);
    out[8] = FLAG_REMOVED;
    out
}

fn encode(
    group: GroupId,
    hard_state: Option<HardState>,
    snapshot: Option<&SnapshotMeta>,
    entries: &[Entry],
) -> Vec<u8> {
    let entry_bytes: u64 = entries.iter().map(|entry| entry.size_bytes() + 4).sum();
    let mut out = Vec::with_capacity(RECORD_HEADER_BYTES + 21 + entry_bytes as usize);
    out.extend_from_slice(&group.to_le_bytes());
    let mut flags = 0;
    if hard_state.is_some() {
        flags |= FLAG_HARD_STATE;
    }
    if snapshot.is_some() {
        flags |= FLAG_SNAPSHOT;
    }
    out.push(flags);
    if let Some(hard_state) = hard_state {
        hard_state.encode(&mut out);
    }
    if let Some(snapshot) = snapshot {
        let mut meta = Vec::new();
        snapshot.encode(&mut meta);
        out.extend_from_slice(&(meta.len() as u32).to_le_bytes());
        out.extend_from_slice(&meta);
    }
    let first_index = entries.first().map_or(0, |entry| entry.index);
    out.extend_from_slice(&first_index.to_le_bytes());
    out.extend_from_slice(&(entries.len() as u32).to_le_bytes());
    let mut encoded = Vec::new();
    for (position, entry) in entries.iter().enumerate() {
        assert_eq!(
            entry.index,
            first_index + position as u64,
            "entries of a record are contiguous"
        );
        encoded.clear();
        entry.encode(&mut encoded);
        out.extend_from_slice(&(encoded.len() as u32).to_le_bytes());
        out.extend_from_slice(&encoded);
    }
    out
}

/// One decoded record.
#[derive(Debug, PartialEq, Eq)]
pub struct Record {
    pub group: GroupId,
    pub hard_state: Option<HardState>,
    /// Set on a snapshot record: the group's log restarts after it.
    pub snapshot: Option<SnapshotMeta>,
    pub entries: Vec<Entry>,
    /// A removal: nothing else is set.
    pub removed: bool,
}

pub fn decode_record(bytes: &[u8]) -> Result<Record, &'static str> {
    let mut reader = Reader { bytes };
    let group = reader.u64()?;
    let flags = reader.u8()?;
    if flags & !(FLAG_HARD_STATE | FLAG_SNAPSHOT | FLAG_REMOVED) != 0 {
        return Err("unknown record flags");
    }
    let removed = flags & FLAG_REMOVED != 0;
    if removed && flags != FLAG_REMOVED {
        return Err("a removal record with more than the removal");
    }
    if flags & FLAG_SNAPSHOT != 0 && flags & FLAG_HARD_STATE == 0 {
        return Err("a snapshot record without its hard state");
    }
    let hard_state = if flags & FLAG_HARD_STATE != 0 {
        let bytes = reader.take(strata_raft::wire::HARD_STATE_SIZE_BYTES)?;
        Some(HardState::decode(bytes).map_err(|_| "bad hard state")?)
    } else {
        None
    };
    let snapshot = if flags & FLAG_SNAPSHOT != 0 {
        let len = reader.u32()? as usize;
        Some(SnapshotMeta::decode(reader.take(len)?).map_err(|_| "bad snapshot meta")?)
    } else {
        None
    };
    let first_index = reader.u64()?;
    let count = reader.u32()? as usize;
    // Every entry takes at least its header: refuse counts the record cannot hold.
    if count > reader.bytes.len() / (4 + strata_raft::wire::ENTRY_HEADER_SIZE_BYTES) {
        return Err("entry count exceeds the record");
    }
    let mut entries = Vec::with_capacity(count);
    for position in 0..count {
        let len = reader.u32()? as usize;
        let entry = Entry::decode(reader.take(len)?).map_err(|_| "bad entry")?;
        if entry.index != first_index + position as u64 {
            return Err("entries of a record are not contiguous");
        }
        entries.push(entry);
    }
    if !reader.bytes.is_empty() {
        return Err("trailing bytes after the entries");
    }
    if let (Some(snapshot), Some(first)) = (&snapshot, entries.first()) {
        if first.index != snapshot.index + 1 {
            return Err("a snapshot record's entries do not follow it");
        }
    }
    if removed && !entries.is_empty() {
        return Err("a removal record with entries");
    }
    Ok(Record { group, hard_state, snapshot, entries, removed })
}

struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, len: usize) -> Result<&'a [u8], &'static str> {
        if self.bytes.len() < len {
            return Err("record ends early");
        }
        let (head, tail) = self.bytes.split_at(len);
        self.bytes = tail;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8, &'static str> {
        Ok(self.take(1)?[0])
    }

    fn u32(&mut self) -> Result<u32, &'static str> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().expect("4 bytes")))
    }

    fn u64(&mut self) -> Result<u64, &'static str> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().expect("8 bytes")))
    }
}

/// What one group persisted, rebuilt from the WAL.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct GroupState {
    pub hard_state: HardState,
    /// What the log starts after (index 0: no snapshot, the log starts at 1).
    pub snapshot: SnapshotMeta,
    /// The log after the snapshot, contiguous.
    pub entries: Vec<Entry>,
}

impl GroupState {
    pub fn last_index(&self) -> u64 {
        self.snapshot.index + self.entries.len() as u64
    }
}

/// Replays records in WAL order into every group's state. Each group starts at its last
/// snapshot or removal record (what came before is superseded, and may be a dropped prefix's
/// leftovers); a group without one must start at index 1. A group whose last record is a
/// removal is absent.
pub fn replay<'a>(
    records: impl IntoIterator<Item = (u64, &'a [u8])>,
) -> Result<BTreeMap<GroupId, GroupState>, String> {
    let mut decoded = Vec::new();
    let mut restarts: BTreeMap<GroupId, usize> = BTreeMap::new();
    for (wal_index, bytes) in records {
        let record =
            decode_record(bytes).map_err(|reason| format!("WAL record {wal_index}: {reason}"))?;
        if record.snapshot.is_some() || record.removed {
            restarts.insert(record.group, decoded.len());
        }
        decoded.push((wal_index, record));
    }
    let mut groups: BTreeMap<GroupId, GroupState> = BTreeMap::new();
    for (position, (wal_index, record)) in decoded.into_iter().enumerate() {
        if restarts.get(&record.group).is_some_and(|&restart| position < restart) {
            continue;
        }
        let group = record.group;
        if record.removed {
            groups.remove(&group);
            continue;
        }
        let state = groups.entry(group).or_default();
        if let Some(snapshot) = record.snapshot {
            state.snapshot = snapshot;
            state.entries.clear();
        }
        if let Some(first) = record.entries.first() {
            let end = state.last_index();
            if first.index <= state.snapshot.index || first.index > end + 1 {
                return Err(format!(
                    "WAL record {wal_index}: group {group} entries start at {} outside its log \
                     {}..={end}",
                    first.index,
                    state.snapshot.index + 1,
                ));
            }
            state.entries.truncate((first.index - 1 - state.snapshot.index) as usize);
            state.entries.extend(record.entries);
        }
        if let Some(hard_state) = record.hard_state {
            state.hard_state = hard_state;
        }
    }
    Ok(groups)
}

/// Fuzz body: any bytes decode to a record that re-encodes to them, or to an error.
pub fn fuzz_record(data: &[u8]) {
    if let Ok(record) = decode_record(data) {
        let encoded = if record.removed {
            encode_removal(record.group)
        } else {
            encode(record.group, record.hard_state, record.snapshot.as_ref(), &record.entries)
        };
        assert_eq!(decode_record(&encoded).as_ref(), Ok(&record));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use strata_raft::EntryKind;
    use strata_rt::NodeId;

    fn entry(index: u64, term: u64) -> Entry {
        Entry { term, index, kind: EntryKind::Normal, data: vec![index as u8; 3] }
    }

    #[test]
    fn records_round_trip() {
        let hard_state = HardState { term: 3, vote: Some(NodeId(2)), commit: 7 };
        let entries = vec![entry(5, 3), entry(6, 3)];
        let bytes = encode_record(9, Some(hard_state), &entries);
        let record = decode_record(&bytes).expect("decodes");
        let expected = Record {
            group: 9,
            hard_state: Some(hard_state),
            snapshot: None,
            entries,
            removed: false,
        };
        assert_eq!(record, expected);
        assert_eq!(decode_record(&bytes[..bytes.len() - 1]), Err("record ends early"));
    }

    #[test]
    fn replay_truncates_conflicting_suffixes_per_group() {
        let one = encode_record(1, None, &[entry(1, 1), entry(2, 1), entry(3, 1)]);
        let other = encode_record(2, None, &[entry(1, 1)]);
        let hard_state = HardState { term: 2, vote: None, commit: 2 };
        let cut = encode_record(1, Some(hard_state), &[entry(3, 2)]);
        let records = [(1, one.as_slice()), (2, other.as_slice()), (3, cut.as_slice())];
        let groups = replay(records).expect("replays");
        assert_eq!(groups[&1].entries, vec![entry(1, 1), entry(2, 1), entry(3, 2)]);
        assert_eq!(groups[&1].hard_state, hard_state);
        assert_eq!(groups[&2].entries, vec![entry(1, 1)]);
    }

    #[test]
    fn a_long_round_is_split_into_records_with_the_hard_state_last() {
        let entries: Vec<Entry> = (1..=10).map(|index| entry(index, 1)).collect();
        let hard_state = HardState { term: 1, vote: None, commit: 10 };
        let one = encode_record(1, None, &entries[..1]).len();
        let records = encode_records(1, Some(hard_state), &entries, 3 * one);
        assert!(records.len() > 3, "{} records", records.len());
        assert!(records.iter().all(|record| record.len() <= 3 * one));
        let decoded: Vec<Record> = records.iter().map(|r| decode_record(r).unwrap()).collect();
        assert!(decoded[..decoded.len() - 1].iter().all(|record| record.hard_state.is_none()));
        assert_eq!(decoded.last().unwrap().hard_state, Some(hard_state));
        let indexed: Vec<(u64, &[u8])> =
            records.iter().enumerate().map(|(at, r)| (at as u64, r.as_slice())).collect();
        assert_eq!(replay(indexed).unwrap()[&1].entries, entries);
    }

    #[test]
    fn replay_refuses_a_gap() {
        let gap = encode_record(1, None, &[entry(4, 1)]);
        let error = replay([(1, gap.as_slice())]).expect_err("a gap is corruption");
        assert!(error.contains("outside its log"), "{error}");
    }

    fn meta(index: u64, term: u64) -> SnapshotMeta {
        let membership = strata_raft::Membership::with_voters([NodeId(0), NodeId(1)]);
        SnapshotMeta { index, term, membership }
    }

    #[test]
    fn snapshot_records_round_trip() {
        let hard_state = HardState { term: 4, vote: None, commit: 11 };
        let bytes = encode_snapshot_record(3, &meta(10, 4), hard_state, &[entry(11, 4)]);
        let record = decode_record(&bytes).expect("decodes");
        assert_eq!(record.snapshot, Some(meta(10, 4)));
        assert_eq!(record.entries, vec![entry(11, 4)]);
    }

    #[test]
    fn replay_starts_each_group_at_its_last_snapshot_record() {
        // Leftovers of a dropped prefix: group 1's entries 5.. without what came before.
        let leftover = encode_record(1, None, &[entry(5, 1)]);
        let other = encode_record(2, None, &[entry(1, 1)]);
        let hard_state = HardState { term: 2, vote: None, commit: 8 };
        let snapshot = encode_snapshot_record(1, &meta(7, 2), hard_state, &[entry(8, 2)]);
        let after = encode_record(1, None, &[entry(9, 2), entry(10, 2)]);
        let cut = encode_record(1, None, &[entry(10, 3)]);
        let records = [
            (4, leftover.as_slice()),
            (5, other.as_slice()),
            (6, snapshot.as_slice()),
            (7, after.as_slice()),
            (8, cut.as_slice()),
        ];
        let groups = replay(records).expect("replays");
        assert_eq!(groups[&1].snapshot, meta(7, 2));
        assert_eq!(groups[&1].entries, vec![entry(8, 2), entry(9, 2), entry(10, 3)]);
        assert_eq!(groups[&1].hard_state, hard_state);
        assert_eq!(groups[&1].last_index(), 10);
        assert_eq!(groups[&2].entries, vec![entry(1, 1)]);
    }

    #[test]
    fn a_removed_group_is_forgotten_until_created_again() {
        let old = encode_record(5, None, &[entry(1, 1), entry(2, 1)]);
        let removal = encode_removal(5);
        assert!(decode_record(&removal).unwrap().removed);
        let gone = replay([(1, old.as_slice()), (2, removal.as_slice())]).unwrap();
        assert!(!gone.contains_key(&5));
        let hard_state = HardState::default();
        let created = encode_snapshot_record(5, &meta(0, 0), hard_state, &[]);
        let again = encode_record(5, None, &[entry(1, 2)]);
        let records = [(1, old.as_slice()), (2, removal.as_slice()), (3, &created), (4, &again)];
        let back = replay(records).unwrap();
        assert_eq!(back[&5].entries, vec![entry(1, 2)]);
        assert_eq!(back[&5].snapshot.membership, meta(0, 0).membership);
    }

    #[test]
    fn replay_refuses_entries_at_or_below_the_snapshot() {
        let hard_state = HardState { term: 2, vote: None, commit: 7 };
        let snapshot = encode_snapshot_record(1, &meta(7, 2), hard_state, &[]);
        let stale = encode_record(1, None, &[entry(7, 2)]);
        let error = replay([(1, snapshot.as_slice()), (2, stale.as_slice())])
            .expect_err("an entry the snapshot covers is corruption");
        assert!(error.contains("outside its log"), "{error}");
    }
}
