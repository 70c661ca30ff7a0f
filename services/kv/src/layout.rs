//! How one shard's keyspace is laid out in its LSM store (Kvrocks-style). Pure encodings.
//!
//! Records (integers in keys big-endian so they sort; in values little-endian):
//!
//! ```text
//! 'm' [position u64 BE] [user key]                      -> metadata (below)
//! 's' [key_len u32 BE] [user key] [generation u64 BE] sub -> collection element
//! 'e' [deadline_ms u64 BE] [user key]                    -> empty: expiry index
//! '!' "deleted"                                          -> u64 LE: version of the last deletion
//! '!' "count"                                            -> u64 LE: keys in the shard
//! ```
//!
//! Metadata value: `[format u8 = 1][type u8][deadline_ms u64][version u64][generation u64]
//! [count u64][head u64]` then, for a string, its bytes. `deadline_ms` 0 means no expiry.
//!
//! - `position` is a 54-bit hash of the key plus one: metadata sorts by it, so a SCAN cursor is a
//!   position (stateless, and a key present for the whole iteration is returned exactly once).
//! - A collection's elements live under its `generation`, fresh each time the key is created, so
//!   deleting or overwriting a collection is O(1): a range delete of the old generation's prefix.
//! - Sub-keys: hash `field`; set `member`; list `[index u64 BE]` (elements at `head..head+count`);
//!   sorted set `'m' member -> score f64 bits LE` and `'o' [sortable score u64 BE] member`.
//! - `version` is `2 * index` of the entry that last wrote the key; the deletion record holds
//!   `2 * index + 1` of the last deletion or expiry. WATCH compares them (see `machine`).
//! - Invariant: a key has an expiry index record iff its metadata has a non-zero deadline equal
//!   to the record's.

pub const TYPE_STRING: u8 = 1;
pub const TYPE_LIST: u8 = 2;
pub const TYPE_SET: u8 = 3;
pub const TYPE_ZSET: u8 = 4;
pub const TYPE_HASH: u8 = 5;

const METADATA_FORMAT: u8 = 1;
pub const METADATA_HEADER_BYTES: usize = 42;
/// Bits of a SCAN position; the rest of a cursor holds the shard.
pub const POSITION_BITS: u32 = 54;
/// The first list index: lists grow both ways from the middle of the index space.
pub const LIST_HEAD_START: u64 = 1 << 62;

pub const PREFIX_METADATA: u8 = b'm';
pub const PREFIX_SUB: u8 = b's';
pub const PREFIX_EXPIRY: u8 = b'e';
pub const DELETED_KEY: &[u8] = b"!deleted";
pub const COUNT_KEY: &[u8] = b"!count";

/// FNV-1a, 64 bits: part of the on-disk format, never to change.
pub fn fnv64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |hash, &byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// The SCAN position of a key: in `1..2^54`.
pub fn position(key: &[u8]) -> u64 {
    (fnv64(key) >> (64 - POSITION_BITS)).max(1)
}

pub fn metadata_key(key: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(9 + key.len());
    metadata_key_into(key, &mut out);
    out
}

/// [`metadata_key`] into `out` (cleared first): a buffer reused by every read of a context.
pub fn metadata_key_into(key: &[u8], out: &mut Vec<u8>) {
    out.clear();
    // Room for all of it at once: a fresh buffer would otherwise grow three times.
    out.reserve(9 + key.len());
    out.push(PREFIX_METADATA);
    out.extend_from_slice(&position(key).to_be_bytes());
    out.extend_from_slice(key);
}

/// The first metadata record key at or after `position`.
pub fn metadata_key_at(position: u64) -> Vec<u8> {
    let mut out = vec![PREFIX_METADATA];
    out.extend_from_slice(&position.to_be_bytes());
    out
}

/// The user key and position of a metadata record key.
pub fn parse_metadata_key(record: &[u8]) -> Option<(u64, &[u8])> {
    if record.len() < 9 || record[0] != PREFIX_METADATA {
        return None;
    }
    let position = u64::from_be_bytes(record[1..9].try_into().ok()?);
    Some((position, &record[9..]))
}

/// The prefix of every element of a collection generation.
pub fn sub_prefix(key: &[u8], generation: u64) -> Vec<u8> {
    sub_key(key, generation, &[])
}

pub fn sub_key(key: &[u8], generation: u64, sub: &[u8]) -> Vec<u8> {
    // Sized for the whole key at once: growing it for `sub` cost a reallocation per element.
    let mut out = Vec::with_capacity(13 + key.len() + sub.len());
    out.push(PREFIX_SUB);
    out.extend_from_slice(&(key.len() as u32).to_be_bytes());
    out.extend_from_slice(key);
    out.extend_from_slice(&generation.to_be_bytes());
    out.extend_from_slice(sub);
    out
}

pub fn expiry_key(deadline_ms: u64, key: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(9 + key.len());
    out.push(PREFIX_EXPIRY);
    out.extend_from_slice(&deadline_ms.to_be_bytes());
    out.extend_from_slice(key);
    out
}

pub fn parse_expiry_key(record: &[u8]) -> Option<(u64, &[u8])> {
    if record.len() < 9 || record[0] != PREFIX_EXPIRY {
        return None;
    }
    Some((u64::from_be_bytes(record[1..9].try_into().ok()?), &record[9..]))
}

/// A score as 8 bytes whose byte order is the numeric order (NaN never stored).
pub fn sortable_score(score: f64) -> [u8; 8] {
    let bits = score.to_bits();
    let flipped = if bits >> 63 == 1 { !bits } else { bits | (1 << 63) };
    flipped.to_be_bytes()
}

pub fn score_from_sortable(bytes: [u8; 8]) -> f64 {
    let flipped = u64::from_be_bytes(bytes);
    let bits = if flipped >> 63 == 1 { flipped & !(1 << 63) } else { !flipped };
    f64::from_bits(bits)
}

/// One key's metadata record.
#[derive(Clone, Debug, PartialEq)]
pub struct Metadata {
    pub kind: u8,
    /// Unix ms after which the key is gone; 0: no expiry.
    pub deadline_ms: u64,
    pub version: u64,
    pub generation: u64,
    /// Elements of a collection.
    pub count: u64,
    /// Index of a list's first element.
    pub head: u64,
    /// A string's value.
    pub value: Vec<u8>,
}

impl Metadata {
    /// A copy with an empty value, for a write that replaces the value.
    pub fn without_value(&self) -> Metadata {
        Metadata { value: Vec::new(), ..*self }
    }

    pub fn new(kind: u8, version: u64, generation: u64) -> Metadata {
        Metadata {
            kind,
            deadline_ms: 0,
            version,
            generation,
            count: 0,
            head: LIST_HEAD_START,
            value: Vec::new(),
        }
    }

    pub fn is_expired(&self, now_ms: u64) -> bool {
        self.deadline_ms != 0 && self.deadline_ms <= now_ms
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(METADATA_HEADER_BYTES + self.value.len());
        out.push(METADATA_FORMAT);
        out.push(self.kind);
        for field in [self.deadline_ms, self.version, self.generation, self.count, self.head] {
            out.extend_from_slice(&field.to_le_bytes());
        }
        out.extend_from_slice(&self.value);
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<Metadata, String> {
        let mut metadata = Metadata::decode_header(bytes)?;
        metadata.value = bytes[METADATA_HEADER_BYTES..].to_vec();
        Ok(metadata)
    }

    /// [`Metadata::decode`] of a record read into its own buffer, which becomes the value
    /// (moved down over the header, not copied into a new one: a GET's whole value).
    pub fn decode_owned(mut bytes: Vec<u8>) -> Result<Metadata, String> {
        let mut metadata = Metadata::decode_header(&bytes)?;
        bytes.drain(..METADATA_HEADER_BYTES);
        metadata.value = bytes;
        Ok(metadata)
    }

    /// The fixed fields, with an empty value.
    fn decode_header(bytes: &[u8]) -> Result<Metadata, String> {
        if bytes.len() < METADATA_HEADER_BYTES {
            return Err(format!("metadata of {} bytes", bytes.len()));
        }
        if bytes[0] != METADATA_FORMAT {
            return Err(format!("metadata format {}", bytes[0]));
        }
        let kind = bytes[1];
        if !(TYPE_STRING..=TYPE_HASH).contains(&kind) {
            return Err(format!("metadata type {kind}"));
        }
        let field = |at: usize| {
            u64::from_le_bytes(bytes[2 + at * 8..10 + at * 8].try_into().expect("8 bytes"))
        };
        Ok(Metadata {
            kind,
            deadline_ms: field(0),
            version: field(1),
            generation: field(2),
            count: field(3),
            head: field(4),
            value: Vec::new(),
        })
    }
}

pub fn type_name(kind: u8) -> &'static str {
    match kind {
        TYPE_STRING => "string",
        TYPE_LIST => "list",
        TYPE_SET => "set",
        TYPE_ZSET => "zset",
        TYPE_HASH => "hash",
        _ => "none",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_round_trips() {
        let mut metadata = Metadata::new(TYPE_STRING, 8, 9);
        metadata.deadline_ms = 1234;
        metadata.value = b"hello".to_vec();
        let bytes = metadata.encode();
        assert_eq!(bytes.len(), METADATA_HEADER_BYTES + 5);
        assert_eq!(Metadata::decode(&bytes).unwrap(), metadata);
        assert_eq!(Metadata::decode_owned(bytes.clone()).unwrap(), metadata);
        assert!(Metadata::decode_owned(bytes[..10].to_vec()).is_err());
        assert!(Metadata::decode(&bytes[..10]).is_err());
        let mut wrong = bytes.clone();
        wrong[1] = 0;
        assert!(Metadata::decode(&wrong).is_err());
    }

    #[test]
    fn scores_sort_as_bytes() {
        let scores = [f64::NEG_INFINITY, -1e300, -2.5, -0.0, 0.0, 1e-300, 3.0, f64::INFINITY];
        for pair in scores.windows(2) {
            assert!(sortable_score(pair[0]) <= sortable_score(pair[1]), "{pair:?}");
        }
        for score in scores {
            assert_eq!(score_from_sortable(sortable_score(score)).to_bits(), score.to_bits());
        }
    }

    #[test]
    fn positions_and_keys_parse_back() {
        let key = b"user:1";
        let record = metadata_key(key);
        let (position, parsed) = parse_metadata_key(&record).unwrap();
        assert_eq!(parsed, key);
        assert!((1..1 << POSITION_BITS).contains(&position));
        assert!(metadata_key_at(position) <= record);
        let expiry = expiry_key(99, key);
        assert_eq!(parse_expiry_key(&expiry), Some((99, &key[..])));
        assert!(sub_key(b"a", 1, b"x").starts_with(&sub_prefix(b"a", 1)));
        // A key that is a prefix of another must not share its element prefix.
        assert!(!sub_prefix(b"ab", 1).starts_with(&sub_prefix(b"a", 1)));
    }
}
