//! Segment files: naming and the fixed header at the front of each. Pure, no I/O.
//!
//! A segment is `{dir}/{id:016x}.wal`. Its first [`HEADER_BYTES`] bytes are the header below;
//! records follow from offset [`HEADER_BYTES`]. A segment is created and allocated whole (or taken
//! from the spare below), given its header and synced, and its name made durable with `sync_dir`,
//! before any record in it is acknowledged.
//!
//! The next segment is usually made ready before it is needed, as [`SPARE_FILE_NAME`] in the same
//! directory: allocated and synced, renamed to its segment name when the active one fills. A spare
//! is never read as a segment; one left by a crash is deleted at open.

/// `STRATWAL`.
pub const MAGIC: [u8; 8] = *b"STRATWAL";
pub const VERSION: u32 = 1;
/// Header length; also where the first record starts (a multiple of the record alignment).
pub const HEADER_BYTES: usize = 40;

const _: () = assert!(HEADER_BYTES.is_multiple_of(crate::record::RECORD_ALIGNMENT));

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegmentHeader {
    /// Increases by one per new segment; also the salt of its records' checksums.
    pub id: u64,
    /// Index of the first record the segment holds (or will hold).
    pub first_index: u64,
}

/// Why a header did not decode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeaderError {
    /// Too short or all zero: the header never reached the media.
    Missing,
    BadMagic,
    UnsupportedVersion(u32),
    BadChecksum,
}

/// The segment being made ready ahead of need (not a segment name: it does not parse as one).
pub const SPARE_FILE_NAME: &str = "spare-segment";

pub fn file_name(id: u64) -> String {
    format!("{id:016x}.wal")
}

/// The id in a segment file name, or `None` for a name that is not a segment's.
pub fn parse_file_name(name: &str) -> Option<u64> {
    let hex = name.strip_suffix(".wal")?;
    if hex.len() != 16 {
        return None;
    }
    u64::from_str_radix(hex, 16).ok()
}

impl SegmentHeader {
    pub fn encode(&self) -> [u8; HEADER_BYTES] {
        let mut out = [0u8; HEADER_BYTES];
        out[0..8].copy_from_slice(&MAGIC);
        out[8..12].copy_from_slice(&VERSION.to_le_bytes());
        // 12..16 reserved, zero.
        out[16..24].copy_from_slice(&self.id.to_le_bytes());
        out[24..32].copy_from_slice(&self.first_index.to_le_bytes());
        let crc = crc32c::crc32c(&out[0..32]);
        out[32..36].copy_from_slice(&crc.to_le_bytes());
        // 36..40 reserved, zero.
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<SegmentHeader, HeaderError> {
        if bytes.len() < HEADER_BYTES || bytes[..HEADER_BYTES].iter().all(|&b| b == 0) {
            return Err(HeaderError::Missing);
        }
        if bytes[0..8] != MAGIC {
            return Err(HeaderError::BadMagic);
        }
        let crc = u32::from_le_bytes(bytes[32..36].try_into().expect("4 bytes"));
        if crc32c::crc32c(&bytes[0..32]) != crc {
            return Err(HeaderError::BadChecksum);
        }
        let version = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes"));
        if version != VERSION {
            return Err(HeaderError::UnsupportedVersion(version));
        }
        Ok(SegmentHeader {
            id: u64::from_le_bytes(bytes[16..24].try_into().expect("8 bytes")),
            first_index: u64::from_le_bytes(bytes[24..32].try_into().expect("8 bytes")),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trip_and_names() {
        let header = SegmentHeader { id: 9, first_index: 1234 };
        assert_eq!(SegmentHeader::decode(&header.encode()), Ok(header));
        assert_eq!(SegmentHeader::decode(&[0; HEADER_BYTES]), Err(HeaderError::Missing));
        let mut bad = header.encode();
        bad[20] ^= 1;
        assert_eq!(SegmentHeader::decode(&bad), Err(HeaderError::BadChecksum));
        assert_eq!(parse_file_name(&file_name(0xabc)), Some(0xabc));
        assert_eq!(parse_file_name("foo.wal"), None);
    }
}
