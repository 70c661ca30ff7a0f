//! Fuzz target bodies, shared by `fuzz/` (cargo-fuzz) and the stable smoke tests that feed them
//! random bytes. Each must never panic and checks the decoder against a reference.

use crate::record::{self, RECORD_HEADER_BYTES};
use crate::recovery::{self, SegmentInput};
use crate::segment::SegmentHeader;

const PAYLOAD_BYTES_MAX: u32 = 1 << 16;

/// Record decoding: whatever decodes re-encodes to the same bytes.
pub fn record_decoding(data: &[u8]) {
    let salt = 7;
    if let Ok(view) = record::decode(data, salt, PAYLOAD_BYTES_MAX) {
        let mut again = Vec::new();
        record::encode(&mut again, salt, view.index, view.synced_through, view.data);
        let len = RECORD_HEADER_BYTES + record::PAYLOAD_PREFIX_BYTES + view.data.len();
        assert_eq!(&again[..len], &data[..len], "decode and encode disagree");
        assert!(view.stride >= len && view.stride % record::RECORD_ALIGNMENT == 0);
    }
}

/// Recovery scanning of a segment holding arbitrary bytes after a valid header: never panics,
/// and every record it keeps decodes, in index order, within the segment.
pub fn segment_recovery(data: &[u8]) {
    let mut segment = SegmentHeader { id: 3, first_index: 10 }.encode().to_vec();
    segment.extend_from_slice(data);
    for bytes in [&segment[..], data] {
        let input = SegmentInput { id: 3, scan: recovery::scan_segment(bytes, PAYLOAD_BYTES_MAX) };
        if let Ok(plan) = recovery::plan(&[input]) {
            for kept in &plan.kept {
                for (position, location) in kept.records.iter().enumerate() {
                    assert_eq!(location.index, kept.first_index + position as u64);
                    let view =
                        record::decode(&bytes[location.offset as usize..], 3, PAYLOAD_BYTES_MAX)
                            .expect("a kept record decodes");
                    assert_eq!(view.index, location.index);
                }
                assert!(kept.end_offset as usize <= bytes.len());
            }
        }
    }
}
