//! The in-memory Raft log of one replica.
//!
//! Invariants (asserted): entry `i` sits at position `i - 1` and indexes are contiguous from 1;
//! terms never decrease along the log; `applied <= commit <= last_index`; an entry at or below
//! `commit` is never truncated; `persisted <= last_index`.
//!
//! The log holds every entry (no compaction yet). Entries above `persisted` have been handed to
//! the application by `Ready` (or are about to be) but are not yet known durable.

use crate::wire::Entry;

#[derive(Debug)]
pub(crate) struct RaftLog {
    entries: Vec<Entry>,
    pub(crate) commit: u64,
    pub(crate) applied: u64,
    /// Entries up to here are durable on this replica.
    pub(crate) persisted: u64,
}

impl RaftLog {
    /// A log rebuilt from durable entries (all persisted).
    pub(crate) fn restore(entries: Vec<Entry>, commit: u64, applied: u64) -> RaftLog {
        for (position, entry) in entries.iter().enumerate() {
            assert_eq!(entry.index, position as u64 + 1, "restored log is not contiguous from 1");
            if position > 0 {
                assert!(entry.term >= entries[position - 1].term, "restored log terms decrease");
            }
        }
        let last = entries.len() as u64;
        assert!(commit <= last, "restored commit {commit} beyond last index {last}");
        assert!(applied <= commit, "restored applied {applied} beyond commit {commit}");
        RaftLog { entries, commit, applied, persisted: last }
    }

    pub(crate) fn last_index(&self) -> u64 {
        self.entries.len() as u64
    }

    pub(crate) fn last_term(&self) -> u64 {
        self.entries.last().map_or(0, |entry| entry.term)
    }

    /// The term of entry `index`; 0 for index 0; `None` beyond the end.
    pub(crate) fn term(&self, index: u64) -> Option<u64> {
        if index == 0 {
            return Some(0);
        }
        self.entries.get(index as usize - 1).map(|entry| entry.term)
    }

    pub(crate) fn matches(&self, index: u64, term: u64) -> bool {
        self.term(index) == Some(term)
    }

    /// Entries `low..=high`, clipped to the log.
    pub(crate) fn slice(&self, low: u64, high: u64) -> &[Entry] {
        assert!(low >= 1, "entries start at index 1");
        let high = high.min(self.last_index());
        if low > high {
            return &[];
        }
        &self.entries[low as usize - 1..high as usize]
    }

    /// Entries from `low`, at most `count_max` and at most `bytes_max` bytes (but at least one).
    pub(crate) fn batch(&self, low: u64, count_max: u64, bytes_max: u64) -> Vec<Entry> {
        let mut batch = Vec::new();
        let mut bytes = 0;
        for entry in self.slice(low, self.last_index()) {
            if batch.len() as u64 >= count_max {
                break;
            }
            if !batch.is_empty() && bytes + entry.size_bytes() > bytes_max {
                break;
            }
            bytes += entry.size_bytes();
            batch.push(entry.clone());
        }
        batch
    }

    /// Appends an entry the leader created.
    pub(crate) fn push(&mut self, entry: Entry) {
        assert_eq!(entry.index, self.last_index() + 1, "appended entry is not next in the log");
        assert!(entry.term >= self.last_term(), "appended entry's term is below the last term");
        self.entries.push(entry);
    }

    /// The largest index at or below `index` whose term is at most `term`: where a follower and a
    /// leader can resume matching (etcd's findConflictByTerm).
    pub(crate) fn find_conflict_by_term(&self, index: u64, term: u64) -> (u64, u64) {
        let mut index = index.min(self.last_index());
        loop {
            let at = self.term(index).expect("index is within the log");
            if at <= term {
                return (index, at);
            }
            index -= 1;
        }
    }

    /// Follower side of an append whose `prev_log_index`/term already match: skips entries the
    /// log already holds, truncates at the first conflict and appends the rest. Returns the index
    /// of the last entry known to match the leader, and the first index written (if any was).
    pub(crate) fn append_matching(
        &mut self,
        prev_log_index: u64,
        entries: &[Entry],
    ) -> (u64, Option<u64>) {
        let mut first_written = None;
        for (offset, entry) in entries.iter().enumerate() {
            assert_eq!(entry.index, prev_log_index + 1 + offset as u64, "append not contiguous");
            match self.term(entry.index) {
                Some(term) if term == entry.term => continue,
                Some(_) => {
                    assert!(
                        entry.index > self.commit,
                        "conflict at index {} at or below commit {}",
                        entry.index,
                        self.commit
                    );
                    self.entries.truncate(entry.index as usize - 1);
                    self.persisted = self.persisted.min(entry.index - 1);
                    first_written = Some(entry.index);
                    for entry in &entries[offset..] {
                        self.push(entry.clone());
                    }
                    break;
                }
                None => {
                    first_written = Some(entry.index);
                    for entry in &entries[offset..] {
                        self.push(entry.clone());
                    }
                    break;
                }
            }
        }
        (prev_log_index + entries.len() as u64, first_written)
    }

    pub(crate) fn commit_to(&mut self, index: u64) {
        if index <= self.commit {
            return;
        }
        assert!(
            index <= self.last_index(),
            "commit {index} beyond last index {}",
            self.last_index()
        );
        self.commit = index;
    }

    /// The highest index that may be applied: committed and durable here.
    pub(crate) fn applicable(&self) -> u64 {
        self.commit.min(self.persisted)
    }

    /// Marks entries up to `index` durable if the entry there still has `term` (a truncation
    /// after the `Ready` was taken leaves the new entries unpersisted).
    pub(crate) fn persisted_to(&mut self, index: u64, term: u64) {
        if index > self.persisted && self.matches(index, term) {
            self.persisted = index;
        }
    }

    pub(crate) fn applied_to(&mut self, index: u64) {
        assert!(index <= self.applicable(), "applied {index} beyond applicable");
        self.applied = self.applied.max(index);
    }

    /// `true` if a candidate's log is at least as up to date as this one (Raft §5.4.1).
    pub(crate) fn is_up_to_date(&self, last_index: u64, last_term: u64) -> bool {
        last_term > self.last_term()
            || (last_term == self.last_term() && last_index >= self.last_index())
    }
}
