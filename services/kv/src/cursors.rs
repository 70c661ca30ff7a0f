//! Where HSCAN, SSCAN and ZSCAN go on. A collection's elements sort by their bytes in the store,
//! so the place to resume is the next element itself, and clients expect a cursor that is an
//! integer. Each shard's machine keeps a bounded table from cursor numbers to resume points, as
//! Kvrocks and Pika do; a cursor is a number drawn once per table plus a counter.
//!
//! A cursor lives until it is used, [`CURSORS_MAX`] newer ones or [`CURSOR_BYTES_MAX`] bytes of
//! newer resume points push it out, or the node restarts; it is known only on the node that gave
//! it. An unknown cursor is an error, never a wrong place to resume. Transactions, applied on
//! every replica, cannot reach one node's table: collection scans are refused inside MULTI.

use std::collections::BTreeMap;

/// Cursors one shard remembers at most.
pub const CURSORS_MAX: usize = 16_384;
/// Bytes of keys and resume points one shard remembers at most (besides the newest cursor's).
pub const CURSOR_BYTES_MAX: usize = 32 << 20;

/// One iteration's place: the next element of `key` to return.
struct Resume {
    key: Vec<u8>,
    element: Vec<u8>,
}

impl Resume {
    fn bytes(&self) -> usize {
        self.key.len() + self.element.len()
    }
}

pub struct Cursors {
    /// By cursor number, which grows: the first is the oldest.
    entries: BTreeMap<u64, Resume>,
    bytes: usize,
    next: u64,
}

impl Cursors {
    /// A table whose cursors start at a number drawn from `seed`: after a restart, a client's
    /// old cursor is unknown rather than someone else's.
    pub fn new(seed: u64) -> Cursors {
        // Above 2^40, so never 0 (the end of an iteration); below 2^62 after 2^40 more, so it
        // stays positive for clients that read cursors as signed 64-bit integers.
        let next = (1 << 40) + seed % ((1 << 62) - (1 << 41));
        Cursors { entries: BTreeMap::new(), bytes: 0, next }
    }

    /// A new cursor that resumes the iteration over `key` at `element`.
    pub fn remember(&mut self, key: &[u8], element: Vec<u8>) -> u64 {
        let cursor = self.next;
        self.next += 1;
        let resume = Resume { key: key.to_vec(), element };
        self.bytes += resume.bytes();
        self.entries.insert(cursor, resume);
        while self.entries.len() > CURSORS_MAX
            || (self.bytes > CURSOR_BYTES_MAX && self.entries.len() > 1)
        {
            let (_, oldest) = self.entries.pop_first().expect("more than one entry");
            self.bytes -= oldest.bytes();
        }
        cursor
    }

    /// Where `cursor` resumes an iteration over `key`; `None` if this table has no such cursor
    /// for that key (never given, used already, pushed out, or given before a restart).
    pub fn resume(&self, cursor: u64, key: &[u8]) -> Option<&[u8]> {
        let resume = self.entries.get(&cursor)?;
        (resume.key == key).then_some(resume.element.as_slice())
    }

    /// Forgets `cursor` once a call used it: that call hands out the next one, so the table
    /// holds one cursor per iteration under way, and a slow iteration is not pushed out by
    /// quick ones.
    pub fn forget(&mut self, cursor: u64) {
        if let Some(resume) = self.entries.remove(&cursor) {
            self.bytes -= resume.bytes();
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_resumes_its_key_only() {
        let mut cursors = Cursors::new(7);
        let first = cursors.remember(b"h", b"f".to_vec());
        let second = cursors.remember(b"h", b"g".to_vec());
        assert_ne!(first, second);
        assert!(first != 0 && first < 1 << 62);
        assert_eq!(cursors.resume(first, b"other"), None);
        assert_eq!(cursors.resume(first + 100, b"h"), None);
        assert_eq!(cursors.resume(first, b"h"), Some(&b"f"[..]));
        cursors.forget(first);
        assert_eq!(cursors.resume(first, b"h"), None, "a cursor is used once");
        assert_eq!(cursors.resume(second, b"h"), Some(&b"g"[..]));
        cursors.forget(second);
        assert!(cursors.is_empty());
    }

    #[test]
    fn the_oldest_cursors_go_first() {
        let mut cursors = Cursors::new(u64::MAX);
        let oldest = cursors.remember(b"h", b"a".to_vec());
        let kept = (0..CURSORS_MAX).map(|_| cursors.remember(b"h", b"b".to_vec())).last();
        assert_eq!(cursors.len(), CURSORS_MAX);
        assert_eq!(cursors.resume(oldest, b"h"), None);
        assert!(cursors.resume(kept.unwrap(), b"h").is_some());
        assert!(kept.unwrap() < 1 << 62);
    }

    #[test]
    fn resume_points_are_bounded_in_bytes() {
        let mut cursors = Cursors::new(1);
        let quarter = vec![0; CURSOR_BYTES_MAX / 4];
        let all: Vec<u64> = (0..4).map(|_| cursors.remember(b"h", quarter.clone())).collect();
        assert_eq!(cursors.len(), 3, "four quarters and their keys are over");
        assert_eq!(cursors.resume(all[0], b"h"), None, "the oldest went");
        let huge = cursors.remember(b"h", vec![0; CURSOR_BYTES_MAX + 1]);
        assert_eq!(cursors.len(), 1, "one larger than the bound stays alone");
        assert!(cursors.resume(huge, b"h").is_some());
    }
}
