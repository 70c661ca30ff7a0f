//! Explicit byte encodings of Raft entries, hard state and messages.
//!
//! Every integer is little-endian; every variable-length field is prefixed by its `u32` length;
//! every message opens with a one-byte tag. Decoders take untrusted bytes: on any malformed input
//! they return a [`DecodeError`], never panic, and never allocate more than the input could hold.
//!
//! Layouts (all fixed-width fields little-endian):
//!
//! - `Entry`: `term u64 | index u64 | kind u8 | data_len u32 | data`; kind 0 normal, 1 empty,
//!   2 conf change (data: a `ConfChange`), 3 conf change leave (data empty)
//! - `HardState`: `term u64 | vote_present u8 | vote u32 | commit u64`
//! - `NodeSet`: `count u32 | id u32 ...` (ids strictly increasing, count <= `MEMBERS_MAX`)
//! - `Membership`: `voters NodeSet | voters_outgoing NodeSet | learners NodeSet`
//! - `ConfChange`: `count u32 | (step u8 | id u32) ...`; step 1 add voter, 2 add learner, 3 remove
//! - `SnapshotMeta`: `index u64 | term u64 | membership Membership`
//! - `Message`: `tag u8 | from u32 | to u32 | term u64 | body`, where body is, by tag:
//!   - 1 `RequestVote`: `pre_vote u8 | leader_transfer u8 | last_log_index u64 | last_log_term u64`
//!   - 2 `RequestVoteResponse`: `pre_vote u8 | granted u8`
//!   - 3 `Append`: `prev_log_index u64 | prev_log_term u64 | commit u64 | count u32 | entries`
//!   - 4 `AppendResponse`: `rejected u8 | index u64 | hint_index u64 | hint_term u64`
//!   - 5 `Heartbeat`: `commit u64 | context u64`
//!   - 6 `HeartbeatResponse`: `context u64`
//!   - 7 `TimeoutNow`: empty
//!   - 8 `Snapshot`: `meta SnapshotMeta | offset u64 | done u8 | data_len u32 | data`
//!   - 9 `SnapshotResponse`: `index u64 | term u64 | rejected u8 | offset u64`

use crate::membership::{ConfChange, ConfChangeStep, Membership, MEMBERS_MAX};
use std::collections::BTreeSet;
use strata_rt::NodeId;

/// The largest snapshot chunk a replica sends or accepts.
pub const SNAPSHOT_CHUNK_BYTES_MAX: u64 = 8 << 20;

/// What an entry carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum EntryKind {
    /// Application data, to be applied to the state machine.
    Normal,
    /// The empty entry a new leader appends to commit entries of earlier terms (Raft §5.4.2).
    Empty,
    /// A membership change; `data` is an encoded [`ConfChange`]. Takes effect once appended.
    ConfChange,
    /// Leaves a joint configuration (appended by the leader once the joint one committed).
    ConfChangeLeave,
}

impl EntryKind {
    fn to_byte(self) -> u8 {
        match self {
            EntryKind::Normal => 0,
            EntryKind::Empty => 1,
            EntryKind::ConfChange => 2,
            EntryKind::ConfChangeLeave => 3,
        }
    }

    fn from_byte(byte: u8) -> Result<EntryKind, DecodeError> {
        match byte {
            0 => Ok(EntryKind::Normal),
            1 => Ok(EntryKind::Empty),
            2 => Ok(EntryKind::ConfChange),
            3 => Ok(EntryKind::ConfChangeLeave),
            _ => Err(DecodeError::UnknownEntryKind { kind: byte }),
        }
    }
}

/// One log entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub term: u64,
    pub index: u64,
    pub kind: EntryKind,
    pub data: Vec<u8>,
}

/// Bytes of an entry's fixed fields on the wire.
pub const ENTRY_HEADER_SIZE_BYTES: usize = 8 + 8 + 1 + 4;

impl Entry {
    /// The encoded size of this entry, used for batching and flow control.
    pub fn size_bytes(&self) -> u64 {
        (ENTRY_HEADER_SIZE_BYTES + self.data.len()) as u64
    }

    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.term.to_le_bytes());
        out.extend_from_slice(&self.index.to_le_bytes());
        out.push(self.kind.to_byte());
        put_bytes(out, &self.data);
    }

    /// Decodes one entry that fills `bytes` exactly.
    pub fn decode(bytes: &[u8]) -> Result<Entry, DecodeError> {
        let mut reader = Reader::new(bytes);
        let entry = reader.entry()?;
        reader.finish()?;
        Ok(entry)
    }
}

/// The state a node must persist before it sends the messages of the same `Ready`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HardState {
    pub term: u64,
    pub vote: Option<NodeId>,
    pub commit: u64,
}

pub const HARD_STATE_SIZE_BYTES: usize = 8 + 1 + 4 + 8;

impl HardState {
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.term.to_le_bytes());
        match self.vote {
            Some(vote) => {
                out.push(1);
                out.extend_from_slice(&vote.0.to_le_bytes());
            }
            None => {
                out.push(0);
                out.extend_from_slice(&0u32.to_le_bytes());
            }
        }
        out.extend_from_slice(&self.commit.to_le_bytes());
    }

    pub fn decode(bytes: &[u8]) -> Result<HardState, DecodeError> {
        let mut reader = Reader::new(bytes);
        let term = reader.u64()?;
        let vote_present = reader.bool()?;
        let vote = reader.u32()?;
        let commit = reader.u64()?;
        reader.finish()?;
        Ok(HardState { term, vote: vote_present.then_some(NodeId(vote)), commit })
    }
}

/// Where a snapshot ends: the last entry it covers and the membership there.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SnapshotMeta {
    pub index: u64,
    pub term: u64,
    pub membership: Membership,
}

fn put_node_set(out: &mut Vec<u8>, set: &BTreeSet<NodeId>) {
    let count = u32::try_from(set.len()).expect("a membership holds < 2^32 nodes");
    out.extend_from_slice(&count.to_le_bytes());
    for id in set {
        out.extend_from_slice(&id.0.to_le_bytes());
    }
}

impl Membership {
    pub fn encode(&self, out: &mut Vec<u8>) {
        put_node_set(out, &self.voters);
        put_node_set(out, &self.voters_outgoing);
        put_node_set(out, &self.learners);
    }

    pub fn decode(bytes: &[u8]) -> Result<Membership, DecodeError> {
        let mut reader = Reader::new(bytes);
        let membership = reader.membership()?;
        reader.finish()?;
        Ok(membership)
    }
}

impl SnapshotMeta {
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.index.to_le_bytes());
        out.extend_from_slice(&self.term.to_le_bytes());
        self.membership.encode(out);
    }

    pub fn decode(bytes: &[u8]) -> Result<SnapshotMeta, DecodeError> {
        let mut reader = Reader::new(bytes);
        let meta = reader.snapshot_meta()?;
        reader.finish()?;
        Ok(meta)
    }
}

impl ConfChange {
    pub fn encode(&self, out: &mut Vec<u8>) {
        let count = u32::try_from(self.steps.len()).expect("a change holds < 2^32 steps");
        out.extend_from_slice(&count.to_le_bytes());
        for step in &self.steps {
            let (byte, id) = match *step {
                ConfChangeStep::AddVoter(id) => (1u8, id),
                ConfChangeStep::AddLearner(id) => (2, id),
                ConfChangeStep::Remove(id) => (3, id),
            };
            out.push(byte);
            out.extend_from_slice(&id.0.to_le_bytes());
        }
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode(&mut out);
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<ConfChange, DecodeError> {
        let mut reader = Reader::new(bytes);
        let change = reader.conf_change()?;
        reader.finish()?;
        Ok(change)
    }
}

/// A message between two replicas of one group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    pub from: NodeId,
    pub to: NodeId,
    pub term: u64,
    pub body: MessageBody,
}

#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum MessageBody {
    /// A (pre-)candidate asks for a vote. For a pre-vote, `term` is the term it would campaign in.
    RequestVote {
        pre_vote: bool,
        leader_transfer: bool,
        last_log_index: u64,
        last_log_term: u64,
    },
    RequestVoteResponse {
        pre_vote: bool,
        granted: bool,
    },
    /// Entries following `prev_log_index`; an empty list probes.
    Append {
        prev_log_index: u64,
        prev_log_term: u64,
        commit: u64,
        entries: Vec<Entry>,
    },
    /// On success `index` is the last index known to match the leader's log. On rejection `index`
    /// is the rejected `prev_log_index` and `hint_index`/`hint_term` name the largest index at
    /// which the follower's term is at most the leader's `prev_log_term` (fast log backtracking).
    AppendResponse {
        rejected: bool,
        index: u64,
        hint_index: u64,
        hint_term: u64,
    },
    /// Keeps followers' election timers reset; `context` confirms ReadIndex rounds.
    Heartbeat {
        commit: u64,
        context: u64,
    },
    HeartbeatResponse {
        context: u64,
    },
    /// Leader transfer: the target campaigns at once.
    TimeoutNow,
    /// One chunk of the leader's snapshot `meta`: bytes `offset..offset + data.len()`; `done`
    /// marks the last. Chunks of one transfer are accepted in order only.
    Snapshot {
        meta: SnapshotMeta,
        offset: u64,
        done: bool,
        data: Vec<u8>,
    },
    /// The follower holds the first `offset` bytes of snapshot (`index`, `term`) of this
    /// transfer. `rejected`: a chunk did not continue the transfer; resend from `offset`.
    /// (A finished install is answered by an `AppendResponse` instead.)
    SnapshotResponse {
        index: u64,
        term: u64,
        rejected: bool,
        offset: u64,
    },
}

impl Message {
    pub fn encode(&self, out: &mut Vec<u8>) {
        let tag = match &self.body {
            MessageBody::RequestVote { .. } => 1,
            MessageBody::RequestVoteResponse { .. } => 2,
            MessageBody::Append { .. } => 3,
            MessageBody::AppendResponse { .. } => 4,
            MessageBody::Heartbeat { .. } => 5,
            MessageBody::HeartbeatResponse { .. } => 6,
            MessageBody::TimeoutNow => 7,
            MessageBody::Snapshot { .. } => 8,
            MessageBody::SnapshotResponse { .. } => 9,
        };
        out.push(tag);
        out.extend_from_slice(&self.from.0.to_le_bytes());
        out.extend_from_slice(&self.to.0.to_le_bytes());
        out.extend_from_slice(&self.term.to_le_bytes());
        match &self.body {
            MessageBody::RequestVote {
                pre_vote,
                leader_transfer,
                last_log_index,
                last_log_term,
            } => {
                out.push(u8::from(*pre_vote));
                out.push(u8::from(*leader_transfer));
                out.extend_from_slice(&last_log_index.to_le_bytes());
                out.extend_from_slice(&last_log_term.to_le_bytes());
            }
            MessageBody::RequestVoteResponse { pre_vote, granted } => {
                out.push(u8::from(*pre_vote));
                out.push(u8::from(*granted));
            }
            MessageBody::Append { prev_log_index, prev_log_term, commit, entries } => {
                out.extend_from_slice(&prev_log_index.to_le_bytes());
                out.extend_from_slice(&prev_log_term.to_le_bytes());
                out.extend_from_slice(&commit.to_le_bytes());
                let count = u32::try_from(entries.len()).expect("an append holds < 2^32 entries");
                out.extend_from_slice(&count.to_le_bytes());
                for entry in entries {
                    entry.encode(out);
                }
            }
            MessageBody::AppendResponse { rejected, index, hint_index, hint_term } => {
                out.push(u8::from(*rejected));
                out.extend_from_slice(&index.to_le_bytes());
                out.extend_from_slice(&hint_index.to_le_bytes());
                out.extend_from_slice(&hint_term.to_le_bytes());
            }
            MessageBody::Heartbeat { commit, context } => {
                out.extend_from_slice(&commit.to_le_bytes());
                out.extend_from_slice(&context.to_le_bytes());
            }
            MessageBody::HeartbeatResponse { context } => {
                out.extend_from_slice(&context.to_le_bytes());
            }
            MessageBody::TimeoutNow => {}
            MessageBody::Snapshot { meta, offset, done, data } => {
                meta.encode(out);
                out.extend_from_slice(&offset.to_le_bytes());
                out.push(u8::from(*done));
                put_bytes(out, data);
            }
            MessageBody::SnapshotResponse { index, term, rejected, offset } => {
                out.extend_from_slice(&index.to_le_bytes());
                out.extend_from_slice(&term.to_le_bytes());
                out.push(u8::from(*rejected));
                out.extend_from_slice(&offset.to_le_bytes());
            }
        }
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode(&mut out);
        out
    }

    /// Decodes one message that fills `bytes` exactly.
    pub fn decode(bytes: &[u8]) -> Result<Message, DecodeError> {
        let mut reader = Reader::new(bytes);
        let tag = reader.u8()?;
        let from = NodeId(reader.u32()?);
        let to = NodeId(reader.u32()?);
        let term = reader.u64()?;
        let body = match tag {
            1 => MessageBody::RequestVote {
                pre_vote: reader.bool()?,
                leader_transfer: reader.bool()?,
                last_log_index: reader.u64()?,
                last_log_term: reader.u64()?,
            },
            2 => MessageBody::RequestVoteResponse {
                pre_vote: reader.bool()?,
                granted: reader.bool()?,
            },
            3 => {
                let prev_log_index = reader.u64()?;
                let prev_log_term = reader.u64()?;
                let commit = reader.u64()?;
                let count = reader.u32()? as usize;
                // Each entry takes at least its header, so a count the input cannot hold is
                // rejected before anything is allocated for it.
                if count > reader.remaining() / ENTRY_HEADER_SIZE_BYTES {
                    return Err(DecodeError::CountTooLarge {
                        count: count as u64,
                        remaining_bytes: reader.remaining() as u64,
                    });
                }
                let mut entries = Vec::with_capacity(count);
                for _ in 0..count {
                    entries.push(reader.entry()?);
                }
                MessageBody::Append { prev_log_index, prev_log_term, commit, entries }
            }
            4 => MessageBody::AppendResponse {
                rejected: reader.bool()?,
                index: reader.u64()?,
                hint_index: reader.u64()?,
                hint_term: reader.u64()?,
            },
            5 => MessageBody::Heartbeat { commit: reader.u64()?, context: reader.u64()? },
            6 => MessageBody::HeartbeatResponse { context: reader.u64()? },
            7 => MessageBody::TimeoutNow,
            8 => {
                let meta = reader.snapshot_meta()?;
                let offset = reader.u64()?;
                let done = reader.bool()?;
                let len = reader.u32()?;
                if u64::from(len) > SNAPSHOT_CHUNK_BYTES_MAX {
                    return Err(DecodeError::ChunkTooLarge { size_bytes: u64::from(len) });
                }
                let data = reader.take(len as usize)?.to_vec();
                MessageBody::Snapshot { meta, offset, done, data }
            }
            9 => MessageBody::SnapshotResponse {
                index: reader.u64()?,
                term: reader.u64()?,
                rejected: reader.bool()?,
                offset: reader.u64()?,
            },
            _ => return Err(DecodeError::UnknownMessageTag { tag }),
        };
        reader.finish()?;
        Ok(Message { from, to, term, body })
    }
}

/// Why bytes did not decode.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DecodeError {
    /// The input ended `needed` bytes into a field with only `remaining` left.
    Truncated {
        offset: u64,
        needed: u64,
        remaining: u64,
    },
    UnknownMessageTag {
        tag: u8,
    },
    UnknownEntryKind {
        kind: u8,
    },
    /// A boolean byte other than 0 or 1.
    InvalidBool {
        offset: u64,
        byte: u8,
    },
    /// An entry count larger than the remaining input could possibly hold.
    CountTooLarge {
        count: u64,
        remaining_bytes: u64,
    },
    /// Bytes left over after a complete value.
    TrailingBytes {
        count: u64,
    },
    UnknownConfChangeStep {
        step: u8,
    },
    /// A node set that is not strictly increasing, or a membership breaking its invariants.
    InvalidMembership {
        reason: &'static str,
    },
    /// A snapshot chunk above `SNAPSHOT_CHUNK_BYTES_MAX`.
    ChunkTooLarge {
        size_bytes: u64,
    },
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DecodeError::Truncated { offset, needed, remaining } => write!(
                formatter,
                "truncated at byte {offset}: needed {needed} bytes, {remaining} remain"
            ),
            DecodeError::UnknownMessageTag { tag } => {
                write!(formatter, "unknown message tag {tag}")
            }
            DecodeError::UnknownEntryKind { kind } => {
                write!(formatter, "unknown entry kind {kind}")
            }
            DecodeError::InvalidBool { offset, byte } => {
                write!(formatter, "invalid boolean {byte} at byte {offset}")
            }
            DecodeError::CountTooLarge { count, remaining_bytes } => write!(
                formatter,
                "entry count {count} cannot fit in the remaining {remaining_bytes} bytes"
            ),
            DecodeError::TrailingBytes { count } => write!(formatter, "{count} trailing bytes"),
            DecodeError::UnknownConfChangeStep { step } => {
                write!(formatter, "unknown conf change step {step}")
            }
            DecodeError::InvalidMembership { reason } => {
                write!(formatter, "invalid membership: {reason}")
            }
            DecodeError::ChunkTooLarge { size_bytes } => {
                write!(formatter, "snapshot chunk of {size_bytes} bytes is too large")
            }
        }
    }
}

impl std::error::Error for DecodeError {}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    let len = u32::try_from(bytes.len()).expect("an entry's data is < 4 GiB");
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(bytes);
}

struct Reader<'a> {
    bytes: &'a [u8],
    offset: usize,
}

impl<'a> Reader<'a> {
    fn new(bytes: &'a [u8]) -> Reader<'a> {
        Reader { bytes, offset: 0 }
    }

    fn remaining(&self) -> usize {
        self.bytes.len() - self.offset
    }

    fn take(&mut self, count: usize) -> Result<&'a [u8], DecodeError> {
        if self.remaining() < count {
            return Err(DecodeError::Truncated {
                offset: self.offset as u64,
                needed: count as u64,
                remaining: self.remaining() as u64,
            });
        }
        let slice = &self.bytes[self.offset..self.offset + count];
        self.offset += count;
        Ok(slice)
    }

    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }

    fn bool(&mut self) -> Result<bool, DecodeError> {
        let offset = self.offset as u64;
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            byte => Err(DecodeError::InvalidBool { offset, byte }),
        }
    }

    fn u32(&mut self) -> Result<u32, DecodeError> {
        let bytes = self.take(4)?;
        Ok(u32::from_le_bytes(bytes.try_into().expect("take returned 4 bytes")))
    }

    fn u64(&mut self) -> Result<u64, DecodeError> {
        let bytes = self.take(8)?;
        Ok(u64::from_le_bytes(bytes.try_into().expect("take returned 8 bytes")))
    }

    fn entry(&mut self) -> Result<Entry, DecodeError> {
        let term = self.u64()?;
        let index = self.u64()?;
        let kind = EntryKind::from_byte(self.u8()?)?;
        let len = self.u32()? as usize;
        let data = self.take(len)?.to_vec();
        Ok(Entry { term, index, kind, data })
    }

    fn node_set(&mut self) -> Result<BTreeSet<NodeId>, DecodeError> {
        let count = self.u32()? as usize;
        if count > MEMBERS_MAX {
            return Err(DecodeError::InvalidMembership { reason: "too many nodes" });
        }
        let mut set = BTreeSet::new();
        let mut previous: Option<u32> = None;
        for _ in 0..count {
            let id = self.u32()?;
            if previous.is_some_and(|previous| previous >= id) {
                return Err(DecodeError::InvalidMembership { reason: "ids not increasing" });
            }
            previous = Some(id);
            set.insert(NodeId(id));
        }
        Ok(set)
    }

    fn membership(&mut self) -> Result<Membership, DecodeError> {
        let membership = Membership {
            voters: self.node_set()?,
            voters_outgoing: self.node_set()?,
            learners: self.node_set()?,
        };
        membership.validate().map_err(|reason| DecodeError::InvalidMembership { reason })?;
        Ok(membership)
    }

    fn snapshot_meta(&mut self) -> Result<SnapshotMeta, DecodeError> {
        Ok(SnapshotMeta { index: self.u64()?, term: self.u64()?, membership: self.membership()? })
    }

    fn conf_change(&mut self) -> Result<ConfChange, DecodeError> {
        let count = self.u32()? as usize;
        if count > MEMBERS_MAX {
            return Err(DecodeError::CountTooLarge {
                count: count as u64,
                remaining_bytes: self.remaining() as u64,
            });
        }
        let mut steps = Vec::with_capacity(count.min(self.remaining() / 5));
        for _ in 0..count {
            let step = self.u8()?;
            let id = NodeId(self.u32()?);
            steps.push(match step {
                1 => ConfChangeStep::AddVoter(id),
                2 => ConfChangeStep::AddLearner(id),
                3 => ConfChangeStep::Remove(id),
                _ => return Err(DecodeError::UnknownConfChangeStep { step }),
            });
        }
        Ok(ConfChange { steps })
    }

    fn finish(&self) -> Result<(), DecodeError> {
        match self.remaining() {
            0 => Ok(()),
            count => Err(DecodeError::TrailingBytes { count: count as u64 }),
        }
    }
}

/// Fuzz body: any bytes decode to a message, entry or hard state or to a `DecodeError`, never a
/// panic; whatever decodes re-encodes to something that decodes to the same value.
pub fn fuzz_decode(data: &[u8]) {
    if let Ok(message) = Message::decode(data) {
        assert_eq!(
            Message::decode(&message.to_bytes()).as_ref(),
            Ok(&message),
            "message round trip"
        );
    }
    if let Ok(entry) = Entry::decode(data) {
        let mut bytes = Vec::new();
        entry.encode(&mut bytes);
        assert_eq!(Entry::decode(&bytes).as_ref(), Ok(&entry), "entry round trip");
    }
    if let Ok(state) = HardState::decode(data) {
        let mut bytes = Vec::new();
        state.encode(&mut bytes);
        assert_eq!(HardState::decode(&bytes), Ok(state), "hard state round trip");
    }
    if let Ok(change) = ConfChange::decode(data) {
        assert_eq!(ConfChange::decode(&change.to_bytes()), Ok(change.clone()), "change round trip");
    }
    if let Ok(meta) = SnapshotMeta::decode(data) {
        let mut bytes = Vec::new();
        meta.encode(&mut bytes);
        assert_eq!(bytes.as_slice(), data, "snapshot meta encodings are canonical");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples() -> Vec<Message> {
        let entry = |index| Entry { term: 3, index, kind: EntryKind::Normal, data: vec![7; 5] };
        let body = vec![
            MessageBody::RequestVote {
                pre_vote: true,
                leader_transfer: false,
                last_log_index: 9,
                last_log_term: 2,
            },
            MessageBody::RequestVoteResponse { pre_vote: false, granted: true },
            MessageBody::Append {
                prev_log_index: 4,
                prev_log_term: 2,
                commit: 3,
                entries: vec![entry(5), entry(6)],
            },
            MessageBody::Append { prev_log_index: 4, prev_log_term: 2, commit: 3, entries: vec![] },
            MessageBody::AppendResponse { rejected: true, index: 4, hint_index: 3, hint_term: 1 },
            MessageBody::Heartbeat { commit: 8, context: 2 },
            MessageBody::HeartbeatResponse { context: 2 },
            MessageBody::TimeoutNow,
            MessageBody::Snapshot {
                meta: SnapshotMeta {
                    index: 9,
                    term: 2,
                    membership: Membership {
                        voters: [NodeId(1), NodeId(2)].into_iter().collect(),
                        voters_outgoing: [NodeId(1), NodeId(3)].into_iter().collect(),
                        learners: [NodeId(4)].into_iter().collect(),
                    },
                },
                offset: 64,
                done: true,
                data: vec![1, 2, 3],
            },
            MessageBody::SnapshotResponse { index: 9, term: 2, rejected: true, offset: 64 },
        ];
        body.into_iter()
            .map(|body| Message { from: NodeId(1), to: NodeId(2), term: 3, body })
            .collect()
    }

    #[test]
    fn messages_round_trip() {
        for message in samples() {
            let bytes = message.to_bytes();
            assert_eq!(Message::decode(&bytes), Ok(message));
        }
    }

    #[test]
    fn every_truncation_and_extension_is_an_error() {
        for message in samples() {
            let bytes = message.to_bytes();
            for len in 0..bytes.len() {
                assert!(Message::decode(&bytes[..len]).is_err(), "{message:?} cut at {len}");
            }
            let mut longer = bytes.clone();
            longer.push(0);
            assert_eq!(Message::decode(&longer), Err(DecodeError::TrailingBytes { count: 1 }));
        }
    }

    #[test]
    fn corrupt_bytes_never_panic() {
        let mut rng = strata_rt::Rng::with_seed(5);
        for message in samples() {
            let bytes = message.to_bytes();
            for _ in 0..2000 {
                let mut corrupt = bytes.clone();
                let flips = 1 + rng.index(4);
                for _ in 0..flips {
                    let at = rng.index(corrupt.len());
                    corrupt[at] = rng.next_u32() as u8;
                }
                fuzz_decode(&corrupt);
            }
        }
    }

    #[test]
    fn huge_entry_count_is_rejected_before_allocating() {
        let message = Message {
            from: NodeId(1),
            to: NodeId(2),
            term: 1,
            body: MessageBody::Append {
                prev_log_index: 0,
                prev_log_term: 0,
                commit: 0,
                entries: vec![],
            },
        };
        let mut bytes = message.to_bytes();
        let len = bytes.len();
        bytes[len - 4..].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(Message::decode(&bytes), Err(DecodeError::CountTooLarge { .. })));
    }

    #[test]
    fn hard_state_and_entry_round_trip() {
        for hard_state in [
            HardState { term: 4, vote: Some(NodeId(3)), commit: 9 },
            HardState { term: 0, vote: None, commit: 0 },
        ] {
            let mut bytes = Vec::new();
            hard_state.encode(&mut bytes);
            assert_eq!(bytes.len(), HARD_STATE_SIZE_BYTES);
            assert_eq!(HardState::decode(&bytes), Ok(hard_state));
        }
        let entry = Entry { term: 2, index: 7, kind: EntryKind::Empty, data: vec![] };
        let mut bytes = Vec::new();
        entry.encode(&mut bytes);
        assert_eq!(bytes.len() as u64, entry.size_bytes());
        assert_eq!(Entry::decode(&bytes), Ok(entry));
        assert!(matches!(Entry::decode(&[0; 3]), Err(DecodeError::Truncated { .. })));
    }

    #[test]
    fn conf_changes_round_trip_and_reject_bad_steps() {
        let change = ConfChange {
            steps: vec![
                ConfChangeStep::AddVoter(NodeId(4)),
                ConfChangeStep::AddLearner(NodeId(5)),
                ConfChangeStep::Remove(NodeId(1)),
            ],
        };
        let bytes = change.to_bytes();
        assert_eq!(bytes.len(), 4 + 3 * 5);
        assert_eq!(ConfChange::decode(&bytes), Ok(change));
        let mut bad = bytes.clone();
        bad[4] = 9;
        assert_eq!(ConfChange::decode(&bad), Err(DecodeError::UnknownConfChangeStep { step: 9 }));
        let mut huge = bytes;
        huge[..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(ConfChange::decode(&huge), Err(DecodeError::CountTooLarge { .. })));
    }

    #[test]
    fn memberships_must_be_canonical_and_valid() {
        let membership = Membership::with_voters([NodeId(1), NodeId(2)]);
        let mut bytes = Vec::new();
        membership.encode(&mut bytes);
        assert_eq!(Membership::decode(&bytes), Ok(membership));
        // Voters 2 then 1: not increasing.
        let mut unsorted = Vec::new();
        for word in [2u32, 2, 1, 0, 0] {
            unsorted.extend_from_slice(&word.to_le_bytes());
        }
        assert!(matches!(
            Membership::decode(&unsorted),
            Err(DecodeError::InvalidMembership { .. })
        ));
        // No voters.
        let mut empty = Vec::new();
        for word in [0u32, 0, 0] {
            empty.extend_from_slice(&word.to_le_bytes());
        }
        assert!(matches!(Membership::decode(&empty), Err(DecodeError::InvalidMembership { .. })));
        // A learner that votes.
        let mut both = Vec::new();
        for word in [1u32, 7, 0, 1, 7] {
            both.extend_from_slice(&word.to_le_bytes());
        }
        assert!(matches!(Membership::decode(&both), Err(DecodeError::InvalidMembership { .. })));
    }
}
