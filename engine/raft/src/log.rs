//! The in-memory Raft log of one replica.
//!
//! Invariants (asserted): entries before `offset + 1` were compacted into a snapshot that ends at
//! `offset` (term `offset_term`); entry `i` sits at position `i - offset - 1` and indexes are
//! contiguous; terms never decrease along the log; `offset <= applied <= commit <= last_index`;
//! an entry at or below `commit` is never truncated; `offset <= persisted <= last_index`.
//!
//! Entries above `persisted` have been handed to the application by `Ready` (or are about to
//! be) but are not yet known durable. Compaction only drops applied entries.

use crate::wire::Entry;

#[derive(Debug)]
pub(crate) struct RaftLog {
    /// The last index covered by the snapshot (0: none), and its term.
    offset: u64,
    offset_term: u64,
    entries: Vec<Entry>,
    pub(crate) commit: u64,
    pub(crate) applied: u64,
    /// Entries up to here are durable on this replica.
    pub(crate) persisted: u64,
}

impl RaftLog {
    /// A log rebuilt from durable entries (all persisted) that follow a snapshot ending at
    /// `offset` with `offset_term` (0 and 0 without a snapshot). The snapshot is committed and
    /// applied, whatever `commit` and `applied` say.
    pub(crate) fn restore(
        offset: u64,
        offset_term: u64,
        entries: Vec<Entry>,
        commit: u64,
        applied: u64,
    ) -> RaftLog {
        let mut previous_term = offset_term;
        for (position, entry) in entries.iter().enumerate() {
            assert_eq!(
                entry.index,
                offset + position as u64 + 1,
                "restored log is not contiguous from {}",
                offset + 1
            );
            assert!(entry.term >= previous_term, "restored log terms decrease");
            previous_term = entry.term;
        }
        let last = offset + entries.len() as u64;
        let (commit, applied) = (commit.max(offset), applied.max(offset));
        assert!(commit <= last, "restored commit {commit} beyond last index {last}");
        assert!(applied <= commit, "restored applied {applied} beyond commit {commit}");
        RaftLog { offset, offset_term, entries, commit, applied, persisted: last }
    }

    /// The last index the snapshot covers (0: no snapshot).
    pub(crate) fn offset(&self) -> u64 {
        self.offset
    }

    pub(crate) fn offset_term(&self) -> u64 {
        self.offset_term
    }

    pub(crate) fn first_index(&self) -> u64 {
        self.offset + 1
    }

    pub(crate) fn last_index(&self) -> u64 {
        self.offset + self.entries.len() as u64
    }

    pub(crate) fn last_term(&self) -> u64 {
        self.entries.last().map_or(self.offset_term, |entry| entry.term)
    }

    /// The term of entry `index`; the snapshot's for its last index (0 for index 0); `None`
    /// beyond the end or for compacted entries.
    pub(crate) fn term(&self, index: u64) -> Option<u64> {
        if index < self.offset {
            return None;
        }
        if index == self.offset {
            return Some(self.offset_term);
        }
        self.entries.get((index - self.offset - 1) as usize).map(|entry| entry.term)
    }

    pub(crate) fn matches(&self, index: u64, term: u64) -> bool {
        self.term(index) == Some(term)
    }

    /// Entries `low..=high`, clipped to the log's end; `low` must not be compacted.
    pub(crate) fn slice(&self, low: u64, high: u64) -> &[Entry] {
        assert!(low > self.offset, "entry {low} is compacted (snapshot ends at {})", self.offset);
        let high = high.min(self.last_index());
        if low > high {
            return &[];
        }
        &self.entries[(low - self.offset - 1) as usize..(high - self.offset) as usize]
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
    /// Below the snapshot the term is unknown: the compacted index is returned with term 0.
    pub(crate) fn find_conflict_by_term(&self, index: u64, term: u64) -> (u64, u64) {
        let mut index = index.min(self.last_index());
        loop {
            match self.term(index) {
                Some(at) if at <= term => return (index, at),
                Some(_) => index -= 1,
                None => return (index, 0),
            }
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
                    self.entries.truncate((entry.index - self.offset - 1) as usize);
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

    /// Drops the entries up to `index`, which the application snapshotted (so applied).
    pub(crate) fn compact(&mut self, index: u64) {
        assert!(index <= self.applied, "compaction at {index} beyond applied {}", self.applied);
        if index <= self.offset {
            return;
        }
        self.offset_term = self.term(index).expect("an applied entry is held");
        self.entries.drain(..(index - self.offset) as usize);
        self.offset = index;
    }

    /// Restarts the log after a snapshot the application installed, ending at `index` with
    /// `term`. Entries after it are kept if the log holds that very entry (they then follow the
    /// committed prefix); otherwise they conflict with it, cannot be committed, and all go.
    /// Returns whether entries were kept.
    pub(crate) fn install(&mut self, index: u64, term: u64) -> bool {
        assert!(index > self.applied, "installed snapshot {index} is not ahead of applied");
        let keep = self.matches(index, term);
        if keep {
            self.entries.drain(..(index - self.offset) as usize);
            self.persisted = self.persisted.max(index);
        } else {
            assert!(index > self.commit, "a snapshot conflicts with committed entry {index}");
            self.entries.clear();
            self.persisted = index;
        }
        self.offset = index;
        self.offset_term = term;
        self.commit = self.commit.max(index);
        self.applied = index;
        keep
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
