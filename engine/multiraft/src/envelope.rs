//! What one node sends another in one round: every item for that peer, of every group, in one
//! peer message (so a round costs one frame per peer, whatever the number of groups).
//!
//! Layout (little-endian), see docs/format.md "Multi-Raft envelope":
//! `[count u32]` then per item `[group u64][kind u8][len u32][payload]`. Kinds: 1 a Raft message
//! (strata-raft wire encoding), 2 a proposal forwarded to the leader (the entry data), 3 a
//! ReadIndex request from a follower (`[context u64]`), 4 its answer (`[context u64][index u64]`),
//! 5 proposals forwarded together, to append in order (`[count u32]`, then per entry
//! `[len u32][data]`), 6 a leader telling a node it is not in the group's committed
//! configuration (`[configuration index u64]`).

use crate::storage::GroupId;
use strata_raft::Message;

/// Items in one envelope, bounded so a decoder never allocates for a lie.
pub const ENVELOPE_ITEMS_MAX: usize = 1 << 16;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Item {
    Raft(Message),
    /// A proposal a follower received, for the leader to append.
    Forward(Vec<u8>),
    /// Proposals a follower received together (one client's pipeline), for the leader to append
    /// in this order: one item, so that nothing on the way reorders them.
    ForwardMany(Vec<Vec<u8>>),
    ReadIndexRequest {
        context: u64,
    },
    ReadIndexResponse {
        context: u64,
        index: u64,
    },
    /// From a leader to a node that its committed configuration (made by the entry at
    /// `configuration_index`) leaves out.
    NotMember {
        configuration_index: u64,
    },
}

const KIND_RAFT: u8 = 1;
const KIND_FORWARD: u8 = 2;
const KIND_READ_INDEX_REQUEST: u8 = 3;
const KIND_READ_INDEX_RESPONSE: u8 = 4;
const KIND_FORWARD_MANY: u8 = 5;
const KIND_NOT_MEMBER: u8 = 6;

pub fn encode(items: &[(GroupId, Item)]) -> Vec<u8> {
    assert!(items.len() <= ENVELOPE_ITEMS_MAX, "envelope holds at most {ENVELOPE_ITEMS_MAX}");
    let mut out = Vec::new();
    out.extend_from_slice(&(items.len() as u32).to_le_bytes());
    let mut payload = Vec::new();
    for (group, item) in items {
        payload.clear();
        let kind = match item {
            Item::Raft(message) => {
                message.encode(&mut payload);
                KIND_RAFT
            }
            Item::Forward(data) => {
                payload.extend_from_slice(data);
                KIND_FORWARD
            }
            Item::ForwardMany(entries) => {
                payload.extend_from_slice(&(entries.len() as u32).to_le_bytes());
                for data in entries {
                    payload.extend_from_slice(&(data.len() as u32).to_le_bytes());
                    payload.extend_from_slice(data);
                }
                KIND_FORWARD_MANY
            }
            Item::ReadIndexRequest { context } => {
                payload.extend_from_slice(&context.to_le_bytes());
                KIND_READ_INDEX_REQUEST
            }
            Item::ReadIndexResponse { context, index } => {
                payload.extend_from_slice(&context.to_le_bytes());
                payload.extend_from_slice(&index.to_le_bytes());
                KIND_READ_INDEX_RESPONSE
            }
            Item::NotMember { configuration_index } => {
                payload.extend_from_slice(&configuration_index.to_le_bytes());
                KIND_NOT_MEMBER
            }
        };
        out.extend_from_slice(&group.to_le_bytes());
        out.push(kind);
        out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        out.extend_from_slice(&payload);
    }
    out
}

/// Why a peer's envelope was refused (the peer is faulty or hostile; the node goes on).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecodeError(pub &'static str);

impl std::fmt::Display for DecodeError {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(formatter, "bad envelope: {}", self.0)
    }
}

pub fn decode(bytes: &[u8]) -> Result<Vec<(GroupId, Item)>, DecodeError> {
    let mut rest = bytes;
    let count = u32::from_le_bytes(take(&mut rest, 4)?.try_into().expect("4 bytes")) as usize;
    if count > ENVELOPE_ITEMS_MAX || count > rest.len() / 13 {
        return Err(DecodeError("item count exceeds the envelope"));
    }
    let mut items = Vec::with_capacity(count);
    for _ in 0..count {
        let group = u64::from_le_bytes(take(&mut rest, 8)?.try_into().expect("8 bytes"));
        let kind = take(&mut rest, 1)?[0];
        let len = u32::from_le_bytes(take(&mut rest, 4)?.try_into().expect("4 bytes")) as usize;
        let payload = take(&mut rest, len)?;
        let item = match kind {
            KIND_RAFT => {
                Item::Raft(Message::decode(payload).map_err(|_| DecodeError("bad Raft message"))?)
            }
            KIND_FORWARD => Item::Forward(payload.to_vec()),
            KIND_FORWARD_MANY => Item::ForwardMany(decode_entries(payload)?),
            KIND_READ_INDEX_REQUEST => {
                let context = fixed_u64s::<1>(payload)?[0];
                Item::ReadIndexRequest { context }
            }
            KIND_READ_INDEX_RESPONSE => {
                let [context, index] = fixed_u64s::<2>(payload)?;
                Item::ReadIndexResponse { context, index }
            }
            KIND_NOT_MEMBER => {
                let configuration_index = fixed_u64s::<1>(payload)?[0];
                Item::NotMember { configuration_index }
            }
            _ => return Err(DecodeError("unknown item kind")),
        };
        items.push((group, item));
    }
    if !rest.is_empty() {
        return Err(DecodeError("trailing bytes"));
    }
    Ok(items)
}

/// The entries of a `ForwardMany` item: `[count u32]` then per entry `[len u32][data]`.
fn decode_entries(payload: &[u8]) -> Result<Vec<Vec<u8>>, DecodeError> {
    let mut rest = payload;
    let count = u32::from_le_bytes(take(&mut rest, 4)?.try_into().expect("4 bytes")) as usize;
    if count > rest.len() / 4 {
        return Err(DecodeError("entry count exceeds the item"));
    }
    let mut entries = Vec::with_capacity(count);
    for _ in 0..count {
        let len = u32::from_le_bytes(take(&mut rest, 4)?.try_into().expect("4 bytes")) as usize;
        entries.push(take(&mut rest, len)?.to_vec());
    }
    if !rest.is_empty() {
        return Err(DecodeError("trailing bytes in forwarded entries"));
    }
    Ok(entries)
}

fn take<'a>(rest: &mut &'a [u8], len: usize) -> Result<&'a [u8], DecodeError> {
    if rest.len() < len {
        return Err(DecodeError("envelope ends early"));
    }
    let (head, tail) = rest.split_at(len);
    *rest = tail;
    Ok(head)
}

fn fixed_u64s<const N: usize>(payload: &[u8]) -> Result<[u64; N], DecodeError> {
    if payload.len() != N * 8 {
        return Err(DecodeError("wrong payload size"));
    }
    let mut values = [0u64; N];
    for (value, chunk) in values.iter_mut().zip(payload.chunks_exact(8)) {
        *value = u64::from_le_bytes(chunk.try_into().expect("8 bytes"));
    }
    Ok(values)
}

/// Fuzz body: any bytes decode to items that re-encode to the same bytes, or to an error.
pub fn fuzz_envelope(data: &[u8]) {
    if let Ok(items) = decode(data) {
        let encoded = encode(&items);
        assert_eq!(decode(&encoded).as_ref(), Ok(&items));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use strata_raft::MessageBody;
    use strata_rt::NodeId;

    #[test]
    fn envelopes_round_trip() {
        let heartbeat = Message {
            from: NodeId(1),
            to: NodeId(2),
            term: 4,
            body: MessageBody::Heartbeat { commit: 9, context: 3 },
        };
        let items = vec![
            (1, Item::Raft(heartbeat)),
            (2, Item::Forward(b"set".to_vec())),
            (2, Item::ForwardMany(vec![b"first".to_vec(), Vec::new(), b"third".to_vec()])),
            (2, Item::ReadIndexRequest { context: 5 }),
            (3, Item::ReadIndexResponse { context: 5, index: 77 }),
            (3, Item::NotMember { configuration_index: 12 }),
        ];
        let bytes = encode(&items);
        assert_eq!(decode(&bytes), Ok(items));
        assert!(decode(&bytes[..bytes.len() - 1]).is_err());
        assert_eq!(
            decode(&[255, 255, 255, 255]),
            Err(DecodeError("item count exceeds the envelope"))
        );
        // A forwarded batch that claims more entries than its bytes hold.
        let mut lie = encode(&[(2, Item::ForwardMany(vec![b"x".to_vec()]))]);
        lie[17] = 200;
        assert_eq!(decode(&lie), Err(DecodeError("entry count exceeds the item")));
    }
}
