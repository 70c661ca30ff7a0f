//! Recovery scanning: pure functions from segment bytes to a plan (what to keep, what to cut,
//! or which corruption to report). No I/O; `lib.rs` reads the files and carries the plan out.
//!
//! The question recovery must answer is whether an invalid record is a **torn tail** (the crash
//! interrupted a batch whose sync never completed: nothing in it was acknowledged, cut it) or
//! **corruption** (an acknowledged record went bad: report it, never skip it). Two tests decide:
//!
//! 1. *Witness*: every record carries `synced_through`, the highest index durable when it was
//!    written. If any valid record anywhere after the bad one (found by scanning the rest of the
//!    segment at record alignment, and every later segment) has `synced_through >= index`, the bad
//!    record had been acknowledged: corruption.
//! 2. *Shape*: a torn write leaves whole 512-byte sectors of a record at their old content, which is
//!    zero (segments are fresh or truncated and synced before reuse). A record whose every sector
//!    part is non-zero, whose length is plausible and whose checksum fails has rotted, not torn; so
//!    has one that a single-bit repair of its length field makes valid. A valid record with the
//!    wrong index (a misdirected copy) is corruption too.
//!
//! Known gap: a final batch that was acknowledged and then lost *whole* (a misdirected write that
//! left zeros where the batch belongs) looks exactly like a torn tail until a later batch is
//! written; no single-copy log can tell them apart.

use crate::record::{self, DecodeError, RECORD_ALIGNMENT};
use crate::segment::{HeaderError, SegmentHeader, HEADER_BYTES};

/// Torn writes happen at this granularity.
pub const SECTOR_BYTES: usize = 512;

/// Where a record lives in its segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordLocation {
    pub index: u64,
    pub offset: u64,
    /// Bytes of data (the payload minus its prefix).
    pub data_len: u32,
}

/// How the run of valid records of a segment ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum End {
    /// Zeros or the end of the file: nothing more was written.
    Clean,
    /// An invalid record that has the shape of a torn write.
    Torn,
    /// An invalid record that has the shape of corruption (rot, a misdirected copy).
    Corrupt(&'static str),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScannedSegment {
    pub header: SegmentHeader,
    pub records: Vec<RecordLocation>,
    /// Offset just past the last valid record.
    pub end_offset: u64,
    pub end: End,
    /// Highest `synced_through` among valid records found past `end_offset`.
    pub witness_after_end: u64,
    /// Highest `synced_through` among all valid records of the segment.
    pub witness_all: u64,
    pub file_len: u64,
}

/// Scans one segment's bytes.
pub fn scan_segment(bytes: &[u8], payload_bytes_max: u32) -> Result<ScannedSegment, HeaderError> {
    let header = SegmentHeader::decode(bytes)?;
    let salt = header.id;
    let mut records = Vec::new();
    let mut offset = HEADER_BYTES;
    let mut expected = header.first_index;
    let mut witness_all = 0;
    let end = loop {
        match record::decode(&bytes[offset..], salt, payload_bytes_max) {
            Ok(view) if view.index == expected => {
                records.push(RecordLocation {
                    index: view.index,
                    offset: offset as u64,
                    data_len: view.data.len() as u32,
                });
                witness_all = witness_all.max(view.synced_through);
                offset += view.stride;
                expected += 1;
            }
            Ok(_) => break End::Corrupt("valid record with the wrong index"),
            Err(error) => break classify(bytes, offset, salt, expected, payload_bytes_max, error),
        }
    };
    let witness_after_end = witness_after(bytes, offset, salt, payload_bytes_max);
    Ok(ScannedSegment {
        header,
        records,
        end_offset: offset as u64,
        end,
        witness_after_end,
        witness_all: witness_all.max(witness_after_end),
        file_len: bytes.len() as u64,
    })
}

/// Highest `synced_through` of valid records at aligned offsets from `from` on.
fn witness_after(bytes: &[u8], from: usize, salt: u64, payload_bytes_max: u32) -> u64 {
    let mut witness = 0;
    let mut offset = from;
    while offset + record::RECORD_HEADER_BYTES <= bytes.len() {
        match record::decode(&bytes[offset..], salt, payload_bytes_max) {
            Ok(view) => {
                witness = witness.max(view.synced_through);
                offset += view.stride;
            }
            Err(_) => offset += RECORD_ALIGNMENT,
        }
    }
    witness
}

/// Decides whether the invalid record at `offset` looks torn or corrupt.
fn classify(
    bytes: &[u8],
    offset: usize,
    salt: u64,
    expected: u64,
    payload_bytes_max: u32,
    error: DecodeError,
) -> End {
    let rest = &bytes[offset..];
    if rest.len() < record::RECORD_HEADER_BYTES {
        return if rest.iter().all(|&b| b == 0) { End::Clean } else { End::Torn };
    }
    // A single rotted bit in the length field: one repair makes the record valid.
    let len = u32::from_le_bytes(rest[0..4].try_into().expect("4 bytes"));
    for bit in 0..32 {
        let repaired = len ^ (1 << bit);
        if let Ok(view) = record::decode_with_len(rest, salt, repaired, payload_bytes_max) {
            if view.index == expected {
                return End::Corrupt("record length field damaged");
            }
        }
    }
    match error {
        DecodeError::Empty => {
            if rest.len() >= 24 && rest[..24].iter().any(|&b| b != 0) {
                // A zero length but a header behind it: a torn first sector cannot do that
                // (the sector is wholly old or new), so treat it as torn only if zeros follow.
                End::Torn
            } else {
                End::Clean
            }
        }
        DecodeError::BadLength | DecodeError::Truncated => End::Torn,
        DecodeError::BadChecksum => {
            let record_end = offset + record::RECORD_HEADER_BYTES + len as usize;
            let mut sector_start = offset - offset % SECTOR_BYTES;
            while sector_start < record_end {
                let from = sector_start.max(offset);
                let to = (sector_start + SECTOR_BYTES).min(record_end);
                if bytes[from..to].iter().all(|&b| b == 0) {
                    return End::Torn;
                }
                sector_start += SECTOR_BYTES;
            }
            End::Corrupt("checksum mismatch in a fully written record")
        }
    }
}

/// Detected damage to acknowledged data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Corruption {
    pub segment: u64,
    pub offset: u64,
    pub reason: &'static str,
}

/// One segment's input to [`plan`]: its id from the file name and its scan.
#[derive(Clone, Debug)]
pub struct SegmentInput {
    pub id: u64,
    pub scan: Result<ScannedSegment, HeaderError>,
}

/// A segment recovery keeps.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeptSegment {
    pub id: u64,
    pub first_index: u64,
    pub records: Vec<RecordLocation>,
    /// Where the next record goes; the file is cut here if it is longer.
    pub end_offset: u64,
    pub file_len: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    pub kept: Vec<KeptSegment>,
    /// Segments holding nothing acknowledged, to delete.
    pub removed: Vec<u64>,
    /// Whether the tail was torn (records cut), for reporting.
    pub torn_tail: bool,
}

/// Decides what survives. `segments` must be sorted by id.
pub fn plan(segments: &[SegmentInput]) -> Result<Plan, Corruption> {
    let witness_of = |input: &SegmentInput| input.scan.as_ref().map_or(0, |scan| scan.witness_all);
    // witness_later[k]: highest synced_through in segments after k.
    let mut witness_later = vec![0u64; segments.len()];
    for k in (0..segments.len().saturating_sub(1)).rev() {
        witness_later[k] = witness_later[k + 1].max(witness_of(&segments[k + 1]));
    }
    let mut result = Plan::default();
    let mut next_index: Option<u64> = None;
    for (k, input) in segments.iter().enumerate() {
        let last = k + 1 == segments.len();
        let scan = match &input.scan {
            Ok(scan) => scan,
            Err(HeaderError::Missing) if last => {
                // Created, but its header never reached the media: nothing in it was acknowledged.
                result.removed.push(input.id);
                continue;
            }
            Err(error) => {
                return Err(Corruption {
                    segment: input.id,
                    offset: 0,
                    reason: match error {
                        HeaderError::Missing => "segment header missing before later segments",
                        HeaderError::BadMagic => "segment header magic",
                        HeaderError::UnsupportedVersion(_) => "unsupported segment version",
                        HeaderError::BadChecksum => "segment header checksum",
                    },
                });
            }
        };
        if scan.header.id != input.id {
            return Err(Corruption { segment: input.id, offset: 0, reason: "segment id mismatch" });
        }
        if let Some(expected) = next_index {
            if scan.header.first_index != expected {
                return Err(Corruption {
                    segment: input.id,
                    offset: 0,
                    reason: "segment does not continue the previous one",
                });
            }
        }
        let next = scan.header.first_index + scan.records.len() as u64;
        let continues = segments.get(k + 1).is_some_and(|following| {
            following.scan.as_ref().is_ok_and(|s| s.header.first_index == next)
        });
        // Later segments witness this one only if the log does not simply go on in them.
        let clean_roll = continues && scan.end == End::Clean;
        let witness_beyond = if clean_roll { 0 } else { witness_later[k] };
        let witness = scan.witness_after_end.max(witness_beyond);
        let corrupt = |reason| Corruption { segment: input.id, offset: scan.end_offset, reason };
        if witness >= next {
            return Err(corrupt("a later record proves this record was acknowledged"));
        }
        if let End::Corrupt(reason) = scan.end {
            return Err(corrupt(reason));
        }
        result.kept.push(KeptSegment {
            id: input.id,
            first_index: scan.header.first_index,
            records: scan.records.clone(),
            end_offset: scan.end_offset,
            file_len: scan.file_len,
        });
        next_index = Some(next);
        if scan.end == End::Torn {
            result.torn_tail = true;
        }
        if !last && (scan.end == End::Torn || !continues) {
            // The log ends here; later segments hold nothing acknowledged (no witness says so),
            // but a damaged header is damage, not a crash (headers are synced before use).
            for following in &segments[k + 1..] {
                if let Err(error) = &following.scan {
                    if *error != HeaderError::Missing {
                        return Err(Corruption {
                            segment: following.id,
                            offset: 0,
                            reason: "segment header damaged",
                        });
                    }
                }
            }
            result.torn_tail = true;
            result.removed.extend(segments[k + 1..].iter().map(|input| input.id));
            return Ok(result);
        }
    }
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::encode;

    const MAX: u32 = 1 << 20;

    fn segment(id: u64, first: u64, records: &[(u64, &[u8])]) -> Vec<u8> {
        let mut bytes = SegmentHeader { id, first_index: first }.encode().to_vec();
        for (index, (synced, data)) in (first..).zip(records) {
            encode(&mut bytes, id, index, *synced, data);
        }
        bytes
    }

    fn input(id: u64, bytes: &[u8]) -> SegmentInput {
        SegmentInput { id, scan: scan_segment(bytes, MAX) }
    }

    #[test]
    fn clean_log_keeps_everything() {
        let bytes = segment(1, 1, &[(0, b"a"), (1, b"b"), (2, b"c")]);
        let plan = plan(&[input(1, &bytes)]).unwrap();
        assert_eq!(plan.kept[0].records.len(), 3);
        assert!(!plan.torn_tail);
    }

    #[test]
    fn torn_tail_is_cut() {
        let mut bytes = segment(1, 1, &[(0, b"a"), (1, &[5; 2000])]);
        let second = plan(&[input(1, &bytes)]).unwrap().kept[0].records[1].offset as usize;
        // Lose the second sector of the second record.
        let sector = (second / SECTOR_BYTES + 1) * SECTOR_BYTES;
        bytes[sector..sector + SECTOR_BYTES].fill(0);
        let plan = plan(&[input(1, &bytes)]).unwrap();
        assert_eq!(plan.kept[0].records.len(), 1);
        assert!(plan.torn_tail);
    }

    #[test]
    fn rot_in_the_middle_is_corruption_with_its_location() {
        let mut bytes = segment(1, 1, &[(0, b"aaaa"), (1, b"bbbb"), (2, b"cccc")]);
        let second = scan_segment(&bytes, MAX).unwrap().records[1].offset as usize;
        bytes[second + 26] ^= 4;
        let error = plan(&[input(1, &bytes)]).unwrap_err();
        assert_eq!((error.segment, error.offset), (1, second as u64));
    }

    #[test]
    fn rot_in_the_last_record_is_corruption_too() {
        for position in [0, 3, 4, 9, 17, 25, 27] {
            let mut bytes = segment(1, 1, &[(0, b"aaaa"), (1, b"bbbb")]);
            let last = scan_segment(&bytes, MAX).unwrap().records[1].offset as usize;
            bytes[last + position] ^= 0x10;
            assert!(plan(&[input(1, &bytes)]).is_err(), "flip at +{position} missed");
        }
    }

    #[test]
    fn unwitnessed_later_segment_after_a_tear_is_dropped() {
        let first = segment(1, 1, &[(0, b"a"), (1, b"b")]);
        let mut torn = first.clone();
        torn.truncate(torn.len() - 8); // The last record is cut short.
        let later = segment(2, 3, &[(1, b"c")]);
        let plan = plan(&[input(1, &torn), input(2, &later)]).unwrap();
        assert_eq!(plan.kept.len(), 1);
        assert_eq!(plan.removed, vec![2]);
    }

    /// Regression (seed sweep): records of segment 2 carry `synced_through` values that cover
    /// segment 1's last index, which once read as "segment 1 lost an acknowledged record" after a
    /// clean roll. Later segments now witness a segment only where the log does not go on.
    #[test]
    fn clean_roll_into_the_next_segment_is_not_corruption() {
        let first = segment(1, 1, &[(0, b"a"), (1, b"b")]);
        let second = segment(2, 3, &[(2, b"c"), (3, b"d"), (4, b"e")]);
        let plan = plan(&[input(1, &first), input(2, &second)]).unwrap();
        assert_eq!(plan.kept.len(), 2);
        assert!(!plan.torn_tail);
    }

    /// Regression (seed sweep, bit rot): a rotted header in the newest segment made the previous
    /// segment look like the end of the log, so the damaged segment, acknowledged records and
    /// all, was deleted as a torn tail. Only an all-zero header may be discarded.
    #[test]
    fn damaged_header_of_a_later_segment_is_corruption_not_a_tear() {
        let first = segment(1, 1, &[(0, b"a"), (1, b"b")]);
        let mut second = segment(2, 3, &[(2, b"c"), (3, b"d")]);
        second[15] ^= 1;
        let error = plan(&[input(1, &first), input(2, &second)]).unwrap_err();
        assert_eq!((error.segment, error.offset), (2, 0));
        let missing = vec![0u8; HEADER_BYTES];
        let plan = plan(&[input(1, &first), input(2, &missing)]).unwrap();
        assert_eq!(plan.removed, vec![2]);
    }

    #[test]
    fn witnessed_gap_is_corruption() {
        let mut bytes = segment(1, 1, &[(0, b"a"), (1, b"b"), (2, b"c")]);
        let second = scan_segment(&bytes, MAX).unwrap().records[1].offset as usize;
        bytes[second..second + 32].fill(0);
        assert!(plan(&[input(1, &bytes)]).is_err());
    }
}
