//! Log entries: what the server replicates through a shard's Raft log and every replica's
//! [`crate::machine::Machine::apply`] executes. Pure encode/decode; decoding outside bytes returns
//! an [`EntryError`], never panics.
//!
//! Layout (integers little-endian):
//!
//! ```text
//! [format u8 = 1][kind u8][now_ms u64] body
//! kind 1 Command:     [command]
//! kind 2 Transaction: [watch_count u32] watch_count x ([key bytes][version u64])
//!                     [command_count u32] command_count x [command]
//! kind 3 Expire:      [key_count u32] key_count x [key bytes]
//! kind 4 Flush:       (empty)
//! command = [argument_count u32] argument_count x [bytes]
//! bytes   = [len u32][len bytes]
//! ```
//!
//! `now_ms` is the unix time in milliseconds of the node that received the request. Apply uses it,
//! never its own clock, for everything time-dependent (is a key expired; relative TTLs such as
//! `SET k v EX 10` become the absolute deadline `now_ms + 10000`), so every replica computes the
//! same state and the same reply.

/// The format byte of entries this build writes.
pub const ENTRY_FORMAT: u8 = 1;
/// Most commands in one transaction entry.
pub const TRANSACTION_COMMANDS_MAX: usize = 10_000;
/// Most watched keys in one transaction entry.
pub const WATCHED_KEYS_MAX: usize = 10_000;
/// Most keys in one expire entry.
pub const EXPIRE_KEYS_MAX: usize = 1_000;

const KIND_COMMAND: u8 = 1;
const KIND_TRANSACTION: u8 = 2;
const KIND_EXPIRE: u8 = 3;
const KIND_FLUSH: u8 = 4;

/// One replicated operation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Entry {
    /// One write command (its arguments, name first).
    Command { now_ms: u64, arguments: Vec<Vec<u8>> },
    /// MULTI/EXEC: aborts (null reply) if a watched key's version changed, else runs every
    /// command atomically and replies with the array of their replies; each command as if
    /// alone (one that fails leaves nothing behind). Without watched keys it also carries a
    /// pipeline's run of writes, whose replies the server hands out one by one.
    Transaction { now_ms: u64, watched: Vec<(Vec<u8>, u64)>, commands: Vec<Vec<Vec<u8>>> },
    /// Deletes each key that is expired at `now_ms` (active expiry).
    Expire { now_ms: u64, keys: Vec<Vec<u8>> },
    /// Deletes every key of the shard (FLUSHDB/FLUSHALL).
    Flush { now_ms: u64 },
}

/// Bytes that are not an entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EntryError(pub String);

impl std::fmt::Display for EntryError {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(formatter, "bad log entry: {}", self.0)
    }
}

impl std::error::Error for EntryError {}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    let len = u32::try_from(bytes.len()).expect("arguments are bounded far below 4 GiB");
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(bytes);
}

fn put_count(out: &mut Vec<u8>, count: usize) {
    let count = u32::try_from(count).expect("counts are bounded far below 4 Gi");
    out.extend_from_slice(&count.to_le_bytes());
}

fn put_command(out: &mut Vec<u8>, arguments: &[Vec<u8>]) {
    put_count(out, arguments.len());
    for argument in arguments {
        put_bytes(out, argument);
    }
}

/// Bytes a command's arguments take in an entry.
pub fn command_len(arguments: &[Vec<u8>]) -> usize {
    4 + arguments.iter().map(|argument| 4 + argument.len()).sum::<usize>()
}

/// The encoding of `Entry::Command { now_ms, arguments }`, from borrowed arguments.
pub fn encode_command(now_ms: u64, arguments: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_BYTES + command_len(arguments));
    put_header(&mut out, KIND_COMMAND, now_ms);
    put_command(&mut out, arguments);
    out
}

/// The encoding of `Entry::Transaction { now_ms, watched: [], commands }`, from borrowed
/// arguments: a pipeline's run of writes, which commits as one entry.
pub fn encode_commands(now_ms: u64, commands: &[&[Vec<u8>]]) -> Vec<u8> {
    let bytes: usize = commands.iter().map(|arguments| command_len(arguments)).sum();
    let mut out = Vec::with_capacity(HEADER_BYTES + 8 + bytes);
    put_header(&mut out, KIND_TRANSACTION, now_ms);
    put_count(&mut out, 0);
    put_count(&mut out, commands.len());
    for arguments in commands {
        put_command(&mut out, arguments);
    }
    out
}

fn put_header(out: &mut Vec<u8>, kind: u8, now_ms: u64) {
    out.push(ENTRY_FORMAT);
    out.push(kind);
    out.extend_from_slice(&now_ms.to_le_bytes());
}

/// Format, kind and `now_ms`.
const HEADER_BYTES: usize = 2 + 8;

impl Entry {
    pub fn now_ms(&self) -> u64 {
        match self {
            Entry::Command { now_ms, .. }
            | Entry::Transaction { now_ms, .. }
            | Entry::Expire { now_ms, .. }
            | Entry::Flush { now_ms } => *now_ms,
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        let (kind, capacity) = match self {
            Entry::Command { now_ms, arguments } => return encode_command(*now_ms, arguments),
            Entry::Transaction { .. } => (KIND_TRANSACTION, HEADER_BYTES + 64),
            Entry::Expire { .. } => (KIND_EXPIRE, HEADER_BYTES + 64),
            Entry::Flush { .. } => (KIND_FLUSH, HEADER_BYTES),
        };
        let mut out = Vec::with_capacity(capacity);
        put_header(&mut out, kind, self.now_ms());
        match self {
            Entry::Command { .. } | Entry::Flush { .. } => {}
            Entry::Transaction { watched, commands, .. } => {
                put_count(&mut out, watched.len());
                for (key, version) in watched {
                    put_bytes(&mut out, key);
                    out.extend_from_slice(&version.to_le_bytes());
                }
                put_count(&mut out, commands.len());
                for command in commands {
                    put_command(&mut out, command);
                }
            }
            Entry::Expire { keys, .. } => {
                put_count(&mut out, keys.len());
                for key in keys {
                    put_bytes(&mut out, key);
                }
            }
        }
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<Entry, EntryError> {
        Entry::decode_reusing(bytes, Vec::new())
    }

    /// [`Entry::decode`], with `spare`'s buffers reused for a lone command's arguments (the
    /// usual entry): a replica applies one entry after another, and the buffers of one
    /// command's arguments serve the next one's.
    pub fn decode_reusing(bytes: &[u8], spare: Vec<Vec<u8>>) -> Result<Entry, EntryError> {
        let mut reader = Reader { bytes, position: 0 };
        let format = reader.u8()?;
        if format != ENTRY_FORMAT {
            return Err(EntryError(format!("unknown format {format}")));
        }
        let kind = reader.u8()?;
        let now_ms = reader.u64()?;
        let entry = match kind {
            KIND_COMMAND => Entry::Command { now_ms, arguments: reader.command_into(spare)? },
            KIND_TRANSACTION => {
                let count = reader.count(WATCHED_KEYS_MAX, "watched keys")?;
                let mut watched = Vec::with_capacity(count);
                for _ in 0..count {
                    let key = reader.bytes()?;
                    watched.push((key, reader.u64()?));
                }
                let count = reader.count(TRANSACTION_COMMANDS_MAX, "commands")?;
                let mut commands = Vec::with_capacity(count);
                for _ in 0..count {
                    commands.push(reader.command_into(Vec::new())?);
                }
                Entry::Transaction { now_ms, watched, commands }
            }
            KIND_EXPIRE => {
                let count = reader.count(EXPIRE_KEYS_MAX, "keys")?;
                let mut keys = Vec::with_capacity(count);
                for _ in 0..count {
                    keys.push(reader.bytes()?);
                }
                Entry::Expire { now_ms, keys }
            }
            KIND_FLUSH => Entry::Flush { now_ms },
            other => return Err(EntryError(format!("unknown kind {other}"))),
        };
        if reader.position != bytes.len() {
            return Err(EntryError(format!("{} trailing bytes", bytes.len() - reader.position)));
        }
        Ok(entry)
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    position: usize,
}

impl Reader<'_> {
    fn take(&mut self, len: usize) -> Result<&[u8], EntryError> {
        let end = self
            .position
            .checked_add(len)
            .filter(|&end| end <= self.bytes.len())
            .ok_or_else(|| EntryError(format!("truncated at byte {}", self.position)))?;
        let slice = &self.bytes[self.position..end];
        self.position = end;
        Ok(slice)
    }

    fn u8(&mut self) -> Result<u8, EntryError> {
        Ok(self.take(1)?[0])
    }

    fn u32(&mut self) -> Result<u32, EntryError> {
        let bytes = self.take(4)?;
        Ok(u32::from_le_bytes(bytes.try_into().expect("took 4 bytes")))
    }

    fn u64(&mut self) -> Result<u64, EntryError> {
        let bytes = self.take(8)?;
        Ok(u64::from_le_bytes(bytes.try_into().expect("took 8 bytes")))
    }

    fn count(&mut self, max: usize, what: &str) -> Result<usize, EntryError> {
        let count = self.u32()? as usize;
        if count > max {
            return Err(EntryError(format!("{count} {what} exceed {max}")));
        }
        Ok(count)
    }

    fn slice(&mut self) -> Result<&[u8], EntryError> {
        let len = self.u32()? as usize;
        self.take(len)
    }

    fn bytes(&mut self) -> Result<Vec<u8>, EntryError> {
        Ok(self.slice()?.to_vec())
    }

    /// A command's arguments, in `arguments` (its buffers reused, its length set).
    fn command_into(&mut self, mut arguments: Vec<Vec<u8>>) -> Result<Vec<Vec<u8>>, EntryError> {
        let count = self.count(crate::resp::ARGUMENTS_MAX, "arguments")?;
        if count == 0 {
            return Err(EntryError("command without a name".into()));
        }
        // Each argument takes at least its 4-byte length: refuse counts the bytes cannot hold
        // before reserving room for them.
        if count > (self.bytes.len() - self.position) / 4 {
            return Err(EntryError(format!("truncated: {count} arguments announced")));
        }
        arguments.truncate(count);
        arguments.reserve(count - arguments.len());
        for at in 0..count {
            crate::resp::set_argument(&mut arguments, at, self.slice()?);
        }
        Ok(arguments)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn command(items: &[&str]) -> Vec<Vec<u8>> {
        items.iter().map(|item| item.as_bytes().to_vec()).collect()
    }

    #[test]
    fn a_pipelines_commands_encode_as_a_transaction_without_watched_keys() {
        let commands = [command(&["SET", "k", "v"]), command(&["INCR", "n"]), command(&[""])];
        let borrowed: Vec<&[Vec<u8>]> = commands.iter().map(Vec::as_slice).collect();
        let bytes = encode_commands(9, &borrowed);
        let entry =
            Entry::Transaction { now_ms: 9, watched: Vec::new(), commands: commands.to_vec() };
        assert_eq!(bytes, entry.encode());
        assert_eq!(bytes.len(), bytes.capacity(), "sized exactly");
    }

    #[test]
    fn entries_round_trip() {
        let entries = [
            Entry::Command { now_ms: 17, arguments: command(&["SET", "k", "v", "EX", "10"]) },
            Entry::Transaction {
                now_ms: u64::MAX,
                watched: vec![(b"w".to_vec(), 42)],
                commands: vec![command(&["INCR", "a"]), command(&["GET", "a"])],
            },
            Entry::Expire { now_ms: 5, keys: vec![b"a".to_vec(), Vec::new()] },
            Entry::Flush { now_ms: 0 },
        ];
        for entry in entries {
            let bytes = entry.encode();
            assert_eq!(bytes[0], ENTRY_FORMAT);
            if matches!(entry, Entry::Command { .. }) {
                assert_eq!(bytes.len(), bytes.capacity(), "sized exactly for a command");
            }
            assert_eq!(Entry::decode(&bytes).unwrap(), entry);
            let spare = command(&["a long first argument", "", "x", "y", "z", "more", "still"]);
            assert_eq!(Entry::decode_reusing(&bytes, spare.clone()).unwrap(), entry);
            assert_eq!(Entry::decode_reusing(&bytes, spare[..1].to_vec()).unwrap(), entry);
            for cut in 0..bytes.len() {
                assert!(Entry::decode(&bytes[..cut]).is_err(), "prefix of {cut} bytes decoded");
            }
            let mut longer = bytes.clone();
            longer.push(0);
            assert!(Entry::decode(&longer).is_err());
        }
    }

    #[test]
    fn bad_entries_are_errors() {
        assert!(Entry::decode(&[]).is_err());
        assert_eq!(Entry::decode(&[2, 1]).unwrap_err().0, "unknown format 2");
        let mut bytes = Entry::Flush { now_ms: 1 }.encode();
        bytes[1] = 9;
        assert_eq!(Entry::decode(&bytes).unwrap_err().0, "unknown kind 9");
        let mut huge = Entry::Command { now_ms: 1, arguments: command(&["PING"]) }.encode();
        huge[10..14].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(Entry::decode(&huge).is_err());
        let empty = Entry::Command { now_ms: 1, arguments: Vec::new() }.encode();
        assert!(Entry::decode(&empty).is_err());
    }
}
