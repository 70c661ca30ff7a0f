//! How the groups of one node share one WAL (pure encoding and replay).
//!
//! Each round of the host writes one WAL record per group that changed: its new hard state
//! and/or the entries to persist, all records of a round made durable by one sync. A record's
//! entries replace the group's stored log from their first index on (a leader change may cut a
//! follower's log back), so replaying records in WAL order rebuilds every group's log and hard
//! state. The WAL checksums and frames each record (`strata-wal`); a record that decodes badly
//! or does not continue its group's log is corruption, reported, never skipped.
//!
//! Record layout (little-endian), see docs/format.md "Multi-Raft WAL record":
//! `[group u64][flags u8][hard state, 21 bytes, if flags & 1][first_index u64][count u32]`
//! then `count` times `[len u32][entry]` (strata-raft's entry encoding).

use std::collections::BTreeMap;
use strata_raft::{Entry, HardState};

/// Identifies one Raft group, the same on every node.
pub type GroupId = u64;

const FLAG_HARD_STATE: u8 = 1;
/// Bytes of a record before its entries.
const RECORD_HEADER_BYTES: usize = 8 + 1 + 8 + 4;

/// Encodes what one group must persist in one round.
pub fn encode_record(group: GroupId, hard_state: Option<HardState>, entries: &[Entry]) -> Vec<u8> {
    let entry_bytes: u64 = entries.iter().map(|entry| entry.size_bytes() + 4).sum();
    let mut out = Vec::with_capacity(RECORD_HEADER_BYTES + 21 + entry_bytes as usize);
    out.extend_from_slice(&group.to_le_bytes());
    out.push(if hard_state.is_some() { FLAG_HARD_STATE } else { 0 });
    if let Some(hard_state) = hard_state {
        hard_state.encode(&mut out);
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
    pub entries: Vec<Entry>,
}

pub fn decode_record(bytes: &[u8]) -> Result<Record, &'static str> {
    let mut reader = Reader { bytes };
    let group = reader.u64()?;
    let flags = reader.u8()?;
    if flags & !FLAG_HARD_STATE != 0 {
        return Err("unknown record flags");
    }
    let hard_state = if flags & FLAG_HARD_STATE != 0 {
        let bytes = reader.take(strata_raft::wire::HARD_STATE_SIZE_BYTES)?;
        Some(HardState::decode(bytes).map_err(|_| "bad hard state")?)
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
    Ok(Record { group, hard_state, entries })
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
    /// The log from index 1, contiguous.
    pub entries: Vec<Entry>,
}

/// Replays records in WAL order into every group's state.
pub fn replay<'a>(
    records: impl IntoIterator<Item = (u64, &'a [u8])>,
) -> Result<BTreeMap<GroupId, GroupState>, String> {
    let mut groups: BTreeMap<GroupId, GroupState> = BTreeMap::new();
    for (wal_index, bytes) in records {
        let record =
            decode_record(bytes).map_err(|reason| format!("WAL record {wal_index}: {reason}"))?;
        let state = groups.entry(record.group).or_default();
        if let Some(first) = record.entries.first() {
            let kept = first.index - 1;
            if kept > state.entries.len() as u64 {
                return Err(format!(
                    "WAL record {wal_index}: group {} entries start at {} past its log's end {}",
                    record.group,
                    first.index,
                    state.entries.len()
                ));
            }
            state.entries.truncate(kept as usize);
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
        let encoded = encode_record(record.group, record.hard_state, &record.entries);
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
        assert_eq!(record, Record { group: 9, hard_state: Some(hard_state), entries });
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
    fn replay_refuses_a_gap() {
        let gap = encode_record(1, None, &[entry(4, 1)]);
        let error = replay([(1, gap.as_slice())]).expect_err("a gap is corruption");
        assert!(error.contains("past its log's end"), "{error}");
    }
}
