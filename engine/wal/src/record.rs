//! Record encoding and decoding: pure functions over byte slices, no I/O (sans-IO).
//!
//! A record is `[len u32][crc32c u32][payload]`, little-endian, where `payload` is
//! `[index u64][synced_through u64][data]` and `len` counts the payload. The checksum covers the
//! segment's salt (its id), `len` and the payload, so a record copied from another segment, or one
//! whose length field rotted, fails it. Records start at 8-byte aligned offsets; the gap after a
//! record is zero padding and is not checksummed. `synced_through` is the highest index that was
//! durable when the record was written: recovery uses it as a witness that an earlier record was
//! acknowledged (see `recovery`).

/// Bytes of `[len][crc]`.
pub const RECORD_HEADER_BYTES: usize = 8;
/// Bytes of `[index][synced_through]` at the front of every payload.
pub const PAYLOAD_PREFIX_BYTES: usize = 16;
/// Records start at multiples of this.
pub const RECORD_ALIGNMENT: usize = 8;

/// One decoded record, borrowing its data from the buffer it was decoded from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordView<'a> {
    pub index: u64,
    pub synced_through: u64,
    pub data: &'a [u8],
    /// Bytes the record occupies including padding: the next record starts this far on.
    pub stride: usize,
}

/// Why bytes did not decode as a record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// Fewer bytes than a header, or a zero length: nothing was written here.
    Empty,
    /// The length is impossible (below the payload prefix or above the maximum).
    BadLength,
    /// The record would run past the end of the buffer.
    Truncated,
    /// The checksum does not match.
    BadChecksum,
}

/// Bytes a record with `data_len` bytes of data occupies, padding included.
pub fn encoded_len(data_len: usize) -> usize {
    (RECORD_HEADER_BYTES + PAYLOAD_PREFIX_BYTES + data_len).next_multiple_of(RECORD_ALIGNMENT)
}

fn checksum(salt: u64, len: u32, payload: &[u8]) -> u32 {
    let mut head = [0u8; 12];
    head[..8].copy_from_slice(&salt.to_le_bytes());
    head[8..].copy_from_slice(&len.to_le_bytes());
    crc32c::crc32c_append(crc32c::crc32c(&head), payload)
}

/// Appends one encoded record (with padding) to `out`.
pub fn encode(out: &mut Vec<u8>, salt: u64, index: u64, synced_through: u64, data: &[u8]) {
    assert!(out.len().is_multiple_of(RECORD_ALIGNMENT), "records start aligned");
    let payload_len = PAYLOAD_PREFIX_BYTES + data.len();
    let len = u32::try_from(payload_len).expect("record size is bounded by Options");
    let start = out.len();
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&index.to_le_bytes());
    out.extend_from_slice(&synced_through.to_le_bytes());
    out.extend_from_slice(data);
    let crc = checksum(salt, len, &out[start + RECORD_HEADER_BYTES..]);
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
    out.resize(start + encoded_len(data.len()), 0);
}

fn read_u32(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"))
}

fn read_u64(bytes: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"))
}

/// Decodes the record at the front of `bytes`. `payload_bytes_max` bounds the length field.
pub fn decode(
    bytes: &[u8],
    salt: u64,
    payload_bytes_max: u32,
) -> Result<RecordView<'_>, DecodeError> {
    if bytes.len() < RECORD_HEADER_BYTES {
        return Err(DecodeError::Empty);
    }
    let len = read_u32(bytes, 0);
    if len == 0 {
        return Err(DecodeError::Empty);
    }
    decode_with_len(bytes, salt, len, payload_bytes_max)
}

/// Decodes assuming the length field holds `len` (recovery tries single-bit repairs of it).
pub fn decode_with_len(
    bytes: &[u8],
    salt: u64,
    len: u32,
    payload_bytes_max: u32,
) -> Result<RecordView<'_>, DecodeError> {
    if (len as usize) < PAYLOAD_PREFIX_BYTES || len > payload_bytes_max {
        return Err(DecodeError::BadLength);
    }
    let end = RECORD_HEADER_BYTES + len as usize;
    if bytes.len() < end {
        return Err(DecodeError::Truncated);
    }
    let crc = read_u32(bytes, 4);
    let payload = &bytes[RECORD_HEADER_BYTES..end];
    if checksum(salt, len, payload) != crc {
        return Err(DecodeError::BadChecksum);
    }
    Ok(RecordView {
        index: read_u64(payload, 0),
        synced_through: read_u64(payload, 8),
        data: &payload[PAYLOAD_PREFIX_BYTES..],
        stride: end.next_multiple_of(RECORD_ALIGNMENT),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_alignment() {
        let mut out = Vec::new();
        encode(&mut out, 7, 42, 41, b"hello");
        assert_eq!(out.len(), encoded_len(5));
        assert_eq!(out.len() % RECORD_ALIGNMENT, 0);
        let view = decode(&out, 7, 1 << 20).unwrap();
        assert_eq!((view.index, view.synced_through, view.data), (42, 41, &b"hello"[..]));
        assert_eq!(view.stride, out.len());
    }

    #[test]
    fn every_single_bit_flip_is_detected() {
        let mut out = Vec::new();
        encode(&mut out, 3, 1, 0, b"some data here");
        let payload_end = RECORD_HEADER_BYTES + PAYLOAD_PREFIX_BYTES + 14;
        for bit in 0..payload_end * 8 {
            let mut copy = out.clone();
            copy[bit / 8] ^= 1 << (bit % 8);
            assert!(decode(&copy, 3, 1 << 20).is_err(), "flip of bit {bit} went unnoticed");
        }
    }

    #[test]
    fn another_segments_salt_fails() {
        let mut out = Vec::new();
        encode(&mut out, 3, 1, 0, b"x");
        assert_eq!(decode(&out, 4, 1 << 20), Err(DecodeError::BadChecksum));
    }
}
