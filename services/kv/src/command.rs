//! The command table, as Redis has it: name, arity, flags, key positions. It decides how a request
//! is executed (on the connection, as a read of one shard, as a replicated write, fanned out over
//! every shard) and which shard its keys live on: `slot = crc16(hashtag(key)) % 16384` as in Redis
//! Cluster, and slots map to shards in contiguous ranges.

use crate::commands::parse_integer;
use crate::resp::Reply;

pub const SLOTS: u32 = 16384;

/// Modifies the keyspace: replicated through the log.
pub const WRITE: u16 = 1;
/// Reads the keyspace of one shard.
pub const READONLY: u16 = 1 << 1;
/// May block the connection (BLPOP...).
pub const BLOCKING: u16 = 1 << 2;
pub const PUBSUB: u16 = 1 << 3;
/// Handled by the connection itself (PING, HELLO, MULTI...).
pub const CONNECTION: u16 = 1 << 4;
pub const ADMIN: u16 = 1 << 5;
/// Runs on every shard and merges the replies (KEYS, DBSIZE, FLUSHALL...).
pub const FANOUT: u16 = 1 << 6;
/// Not allowed inside MULTI.
pub const NO_MULTI: u16 = 1 << 7;
/// Allowed before authentication.
pub const NO_AUTH: u16 = 1 << 8;
/// Allowed in subscribed RESP2 context.
pub const SUBSCRIBED_OK: u16 = 1 << 9;

/// One command of the table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CommandSpec {
    pub name: &'static str,
    /// Argument count including the name; negative: at least `-arity`.
    pub arity: i32,
    pub flags: u16,
    /// Position of the first key (0: no keys).
    pub first_key: i32,
    /// Position of the last key; negative counts from the end (-1: the last argument).
    pub last_key: i32,
    pub step: i32,
    /// Position of the argument that says how many keys follow it (`ZUNION numkeys key...`,
    /// `BLMPOP timeout numkeys key...`); 0: none. Redis calls these movable keys.
    pub key_count_position: i32,
    pub group: &'static str,
    pub summary: &'static str,
}

const fn spec(
    name: &'static str,
    arity: i32,
    flags: u16,
    keys: (i32, i32, i32),
    group: &'static str,
    summary: &'static str,
) -> CommandSpec {
    CommandSpec {
        name,
        arity,
        flags,
        first_key: keys.0,
        last_key: keys.1,
        step: keys.2,
        key_count_position: 0,
        group,
        summary,
    }
}

impl CommandSpec {
    /// This spec with keys counted by the argument at `position` (besides its fixed keys).
    const fn keys_counted_at(mut self, position: i32) -> CommandSpec {
        self.key_count_position = position;
        self
    }
}

const NONE: (i32, i32, i32) = (0, 0, 0);
const ONE: (i32, i32, i32) = (1, 1, 1);
const ALL: (i32, i32, i32) = (1, -1, 1);
const TWO: (i32, i32, i32) = (1, 2, 1);
const W: u16 = WRITE;
const R: u16 = READONLY;
const C: u16 = CONNECTION;

/// Every command, sorted by name (COMMAND lists them in this order).
pub const COMMANDS: &[CommandSpec] = &[
    spec("append", 3, W, ONE, "string", "Appends a string to the value of a key."),
    spec("auth", -2, C | NO_AUTH, NONE, "connection", "Authenticates the connection."),
    spec(
        "blmove",
        6,
        W | BLOCKING,
        TWO,
        "list",
        "Pops an element, pushes it to another list, blocking.",
    ),
    spec(
        "blmpop",
        -5,
        W | BLOCKING,
        NONE,
        "list",
        "Pops the first elements from one of multiple lists, blocking.",
    )
    .keys_counted_at(2),
    spec(
        "blpop",
        -3,
        W | BLOCKING,
        (1, -2, 1),
        "list",
        "Removes and returns the first element, blocking.",
    ),
    spec(
        "brpop",
        -3,
        W | BLOCKING,
        (1, -2, 1),
        "list",
        "Removes and returns the last element, blocking.",
    ),
    spec(
        "bzmpop",
        -5,
        W | BLOCKING,
        NONE,
        "sorted-set",
        "Removes and returns members by score from one of multiple sorted sets, blocking.",
    )
    .keys_counted_at(2),
    spec(
        "bzpopmax",
        -3,
        W | BLOCKING,
        (1, -2, 1),
        "sorted-set",
        "Removes and returns the member with the highest score, blocking.",
    ),
    spec(
        "bzpopmin",
        -3,
        W | BLOCKING,
        (1, -2, 1),
        "sorted-set",
        "Removes and returns the member with the lowest score, blocking.",
    ),
    spec("client", -2, C, NONE, "connection", "Connection management."),
    spec("command", -1, C, NONE, "server", "Details about commands."),
    spec("config", -2, C | ADMIN, NONE, "server", "Gets or sets configuration."),
    spec("copy", -3, W, TWO, "generic", "Copies the value of a key to a new key."),
    spec("dbsize", 1, R | FANOUT, NONE, "server", "Returns the number of keys."),
    spec("decr", 2, W, ONE, "string", "Decrements the integer value of a key by one."),
    spec("decrby", 3, W, ONE, "string", "Decrements a number from the integer value of a key."),
    spec("del", -2, W, ALL, "generic", "Deletes one or more keys."),
    spec("discard", 1, C | NO_MULTI, NONE, "transactions", "Discards a transaction."),
    spec("echo", 2, C, NONE, "connection", "Returns the given string."),
    spec("exec", 1, C | NO_MULTI, NONE, "transactions", "Executes all commands in a transaction."),
    spec("exists", -2, R, ALL, "generic", "Determines whether one or more keys exist."),
    spec("expire", -3, W, ONE, "generic", "Sets the expiration time of a key in seconds."),
    spec(
        "expireat",
        -3,
        W,
        ONE,
        "generic",
        "Sets the expiration time of a key to a Unix timestamp.",
    ),
    spec(
        "expiretime",
        2,
        R,
        ONE,
        "generic",
        "Returns the expiration time of a key as a Unix timestamp.",
    ),
    spec("flushall", -1, W | FANOUT, NONE, "server", "Removes all keys from all databases."),
    spec("flushdb", -1, W | FANOUT, NONE, "server", "Remove all keys from the current database."),
    spec("function", -2, C, NONE, "scripting", "Function management (only FLUSH)."),
    spec("get", 2, R, ONE, "string", "Returns the string value of a key."),
    spec(
        "getdel",
        2,
        W,
        ONE,
        "string",
        "Returns the string value of a key after deleting the key.",
    ),
    spec(
        "getex",
        -2,
        W,
        ONE,
        "string",
        "Returns the string value of a key after setting its expiration.",
    ),
    spec("getrange", 4, R, ONE, "string", "Returns a substring of the string stored at a key."),
    spec(
        "getset",
        3,
        W,
        ONE,
        "string",
        "Returns the previous string value of a key after setting it.",
    ),
    spec("hdel", -3, W, ONE, "hash", "Deletes one or more fields and their values from a hash."),
    spec("hello", -1, C | NO_AUTH, NONE, "connection", "Handshakes with the server."),
    spec("hexists", 3, R, ONE, "hash", "Determines whether a field exists in a hash."),
    spec("hget", 3, R, ONE, "hash", "Returns the value of a field in a hash."),
    spec("hgetall", 2, R, ONE, "hash", "Returns all fields and values in a hash."),
    spec("hincrby", 4, W, ONE, "hash", "Increments the integer value of a field in a hash."),
    spec("hincrbyfloat", 4, W, ONE, "hash", "Increments the floating point value of a field."),
    spec("hkeys", 2, R, ONE, "hash", "Returns all fields in a hash."),
    spec("hlen", 2, R, ONE, "hash", "Returns the number of fields in a hash."),
    spec("hmget", -3, R, ONE, "hash", "Returns the values of all fields in a hash."),
    spec("hmset", -4, W, ONE, "hash", "Sets the values of multiple fields."),
    spec("hrandfield", -2, R, ONE, "hash", "Returns one or more random fields from a hash."),
    spec("hscan", -3, R | NO_MULTI, ONE, "hash", "Iterates over fields and values of a hash."),
    spec("hset", -4, W, ONE, "hash", "Creates or modifies the value of a field in a hash."),
    spec("hsetnx", 4, W, ONE, "hash", "Sets the value of a field only when it does not exist."),
    spec("hstrlen", 3, R, ONE, "hash", "Returns the length of the value of a field."),
    spec("hvals", 2, R, ONE, "hash", "Returns all values in a hash."),
    spec("incr", 2, W, ONE, "string", "Increments the integer value of a key by one."),
    spec("incrby", 3, W, ONE, "string", "Increments the integer value of a key by a number."),
    spec("incrbyfloat", 3, W, ONE, "string", "Increment the floating point value of a key."),
    spec("info", -1, C, NONE, "server", "Returns information and statistics about the server."),
    spec("keys", 2, R | FANOUT, NONE, "generic", "Returns all key names that match a pattern."),
    spec("lindex", 3, R, ONE, "list", "Returns an element from a list by its index."),
    spec("linsert", 5, W, ONE, "list", "Inserts an element before or after another element."),
    spec("llen", 2, R, ONE, "list", "Returns the length of a list."),
    spec("lmove", 5, W, TWO, "list", "Pops an element from a list, pushes it to another list."),
    spec("lmpop", -4, W, NONE, "list", "Pops the first elements from one of multiple lists.")
        .keys_counted_at(1),
    spec("lpop", -2, W, ONE, "list", "Returns the first elements in a list after removing it."),
    spec("lpos", -3, R, ONE, "list", "Returns the index of matching elements in a list."),
    spec("lpush", -3, W, ONE, "list", "Prepends one or more elements to a list."),
    spec("lpushx", -3, W, ONE, "list", "Prepends elements to a list only when the list exists."),
    spec("lrange", 4, R, ONE, "list", "Returns a range of elements from a list."),
    spec("lrem", 4, W, ONE, "list", "Removes elements from a list."),
    spec("lset", 4, W, ONE, "list", "Sets the value of an element in a list by its index."),
    spec("ltrim", 4, W, ONE, "list", "Removes elements from both ends a list."),
    spec("mget", -2, R, ALL, "string", "Atomically returns the string values of one or more keys."),
    spec("mset", -3, W, (1, -1, 2), "string", "Atomically creates or modifies the string values."),
    spec("msetnx", -3, W, (1, -1, 2), "string", "Sets keys only when none of the keys exist."),
    spec("multi", 1, C | NO_MULTI, NONE, "transactions", "Starts a transaction."),
    spec(
        "object",
        -2,
        R,
        (2, 2, 1),
        "generic",
        "Inspects the internal representation of a key's value.",
    ),
    spec("persist", 2, W, ONE, "generic", "Removes the expiration time of a key."),
    spec("pexpire", -3, W, ONE, "generic", "Sets the expiration time of a key in milliseconds."),
    spec("pexpireat", -3, W, ONE, "generic", "Sets the expiration time to a Unix ms timestamp."),
    spec(
        "pexpiretime",
        2,
        R,
        ONE,
        "generic",
        "Returns the expiration time as a Unix ms timestamp.",
    ),
    spec(
        "ping",
        -1,
        C | SUBSCRIBED_OK,
        NONE,
        "connection",
        "Returns the server's liveliness response.",
    ),
    spec("psetex", 4, W, ONE, "string", "Sets the value and expiration in milliseconds of a key."),
    spec(
        "psubscribe",
        -2,
        C | PUBSUB | SUBSCRIBED_OK,
        NONE,
        "pubsub",
        "Listens for messages matching patterns.",
    ),
    spec("pttl", 2, R, ONE, "generic", "Returns the expiration time in milliseconds of a key."),
    spec("publish", 3, W | PUBSUB, NONE, "pubsub", "Posts a message to a channel."),
    spec("pubsub", -2, C, NONE, "pubsub", "Inspects the state of the pub/sub subsystem."),
    spec(
        "punsubscribe",
        -1,
        C | PUBSUB | SUBSCRIBED_OK,
        NONE,
        "pubsub",
        "Stops listening to patterns.",
    ),
    spec("quit", -1, C | NO_AUTH | SUBSCRIBED_OK, NONE, "connection", "Closes the connection."),
    spec("randomkey", 1, R | FANOUT, NONE, "generic", "Returns a random key name."),
    spec("rename", 3, W, TWO, "generic", "Renames a key and overwrites the destination."),
    spec("renamenx", 3, W, TWO, "generic", "Renames a key only when the target does not exist."),
    spec("reset", 1, C | NO_AUTH | SUBSCRIBED_OK, NONE, "connection", "Resets the connection."),
    spec("rpop", -2, W, ONE, "list", "Returns and removes the last elements of a list."),
    spec("rpoplpush", 3, W, TWO, "list", "Returns the last element after removing it, pushes it."),
    spec("rpush", -3, W, ONE, "list", "Appends one or more elements to a list."),
    spec("rpushx", -3, W, ONE, "list", "Appends an element to a list only when the list exists."),
    spec("sadd", -3, W, ONE, "set", "Adds one or more members to a set."),
    spec("scan", -2, R | FANOUT, NONE, "generic", "Iterates over the key names in the database."),
    spec("scard", 2, R, ONE, "set", "Returns the number of members in a set."),
    spec("sdiff", -2, R, ALL, "set", "Returns the difference of multiple sets."),
    spec("sdiffstore", -3, W, ALL, "set", "Stores the difference of multiple sets in a key."),
    spec("select", 2, C, NONE, "connection", "Changes the selected database."),
    spec("set", -3, W, ONE, "string", "Sets the string value of a key."),
    spec("setex", 4, W, ONE, "string", "Sets the string value and expiration time of a key."),
    spec(
        "setnx",
        3,
        W,
        ONE,
        "string",
        "Set the string value of a key only when it does not exist.",
    ),
    spec("setrange", 4, W, ONE, "string", "Overwrites a part of a string value from an offset."),
    spec("sinter", -2, R, ALL, "set", "Returns the intersect of multiple sets."),
    spec(
        "sintercard",
        -3,
        R,
        NONE,
        "set",
        "Returns the number of members of the intersect of multiple sets.",
    )
    .keys_counted_at(1),
    spec("sinterstore", -3, W, ALL, "set", "Stores the intersect of multiple sets in a key."),
    spec("sismember", 3, R, ONE, "set", "Determines whether a member belongs to a set."),
    spec("smembers", 2, R, ONE, "set", "Returns all members of a set."),
    spec("smismember", -3, R, ONE, "set", "Determines whether multiple members belong to a set."),
    spec("smove", 4, W, TWO, "set", "Moves a member from one set to another."),
    spec("spop", -2, W, ONE, "set", "Returns one or more random members after removing them."),
    spec("srandmember", -2, R, ONE, "set", "Get one or multiple random members from a set."),
    spec("srem", -3, W, ONE, "set", "Removes one or more members from a set."),
    spec("sscan", -3, R | NO_MULTI, ONE, "set", "Iterates over members of a set."),
    spec("strlen", 2, R, ONE, "string", "Returns the length of a string value."),
    spec(
        "subscribe",
        -2,
        C | PUBSUB | SUBSCRIBED_OK,
        NONE,
        "pubsub",
        "Listens for messages on channels.",
    ),
    spec("sunion", -2, R, ALL, "set", "Returns the union of multiple sets."),
    spec("sunionstore", -3, W, ALL, "set", "Stores the union of multiple sets in a key."),
    spec("swapdb", 3, C, NONE, "server", "Swaps two databases (only database 0 exists)."),
    spec("time", 1, C, NONE, "server", "Returns the server time."),
    spec("touch", -2, R, ALL, "generic", "Returns the number of existing keys."),
    spec("ttl", 2, R, ONE, "generic", "Returns the expiration time in seconds of a key."),
    spec("type", 2, R, ONE, "generic", "Determines the type of value stored at a key."),
    spec("unlink", -2, W, ALL, "generic", "Asynchronously deletes one or more keys."),
    spec(
        "unsubscribe",
        -1,
        C | PUBSUB | SUBSCRIBED_OK,
        NONE,
        "pubsub",
        "Stops listening to channels.",
    ),
    spec("unwatch", 1, C, NONE, "transactions", "Forgets about watched keys of a transaction."),
    spec("wait", 3, C, NONE, "generic", "Waits until the writes before it reach replicas."),
    spec("watch", -2, C | NO_MULTI, ALL, "transactions", "Monitors changes to keys."),
    spec("zadd", -4, W, ONE, "sorted-set", "Adds members to a sorted set, or updates scores."),
    spec("zcard", 2, R, ONE, "sorted-set", "Returns the number of members in a sorted set."),
    spec("zcount", 4, R, ONE, "sorted-set", "Returns the count of members with scores in a range."),
    spec(
        "zdiff",
        -3,
        R,
        NONE,
        "sorted-set",
        "Returns the difference between multiple sorted sets.",
    )
    .keys_counted_at(1),
    spec("zdiffstore", -4, W, ONE, "sorted-set", "Stores the difference of sorted sets in a key.")
        .keys_counted_at(2),
    spec("zincrby", 4, W, ONE, "sorted-set", "Increments the score of a member in a sorted set."),
    spec("zinter", -3, R, NONE, "sorted-set", "Returns the intersect of multiple sorted sets.")
        .keys_counted_at(1),
    spec(
        "zintercard",
        -3,
        R,
        NONE,
        "sorted-set",
        "Returns the number of members of the intersect of multiple sorted sets.",
    )
    .keys_counted_at(1),
    spec("zinterstore", -4, W, ONE, "sorted-set", "Stores the intersect of sorted sets in a key.")
        .keys_counted_at(2),
    spec(
        "zlexcount",
        4,
        R,
        ONE,
        "sorted-set",
        "Returns the number of members within a lexicographical range.",
    ),
    spec(
        "zmpop",
        -4,
        W,
        NONE,
        "sorted-set",
        "Removes and returns members by score from one of multiple sorted sets.",
    )
    .keys_counted_at(1),
    spec("zmscore", -3, R, ONE, "sorted-set", "Returns the score of one or more members."),
    spec("zpopmax", -2, W, ONE, "sorted-set", "Removes and returns the highest-scoring members."),
    spec("zpopmin", -2, W, ONE, "sorted-set", "Removes and returns the lowest-scoring members."),
    spec("zrange", -4, R, ONE, "sorted-set", "Returns members in a sorted set within a range."),
    spec(
        "zrangebylex",
        -4,
        R,
        ONE,
        "sorted-set",
        "Returns members within a lexicographical range.",
    ),
    spec("zrangebyscore", -4, R, ONE, "sorted-set", "Returns members within a range of scores."),
    spec("zrangestore", -5, W, TWO, "sorted-set", "Stores a range of members in a key."),
    spec("zrank", -3, R, ONE, "sorted-set", "Returns the index of a member ordered by score."),
    spec("zrem", -3, W, ONE, "sorted-set", "Removes one or more members from a sorted set."),
    spec(
        "zremrangebylex",
        4,
        W,
        ONE,
        "sorted-set",
        "Removes members within a lexicographical range.",
    ),
    spec("zremrangebyrank", 4, W, ONE, "sorted-set", "Removes members within a range of indexes."),
    spec("zremrangebyscore", 4, W, ONE, "sorted-set", "Removes members within a range of scores."),
    spec(
        "zrevrange",
        -4,
        R,
        ONE,
        "sorted-set",
        "Returns members within a range of indexes, reversed.",
    ),
    spec(
        "zrevrangebylex",
        -4,
        R,
        ONE,
        "sorted-set",
        "Returns members within a lexicographical range, reversed.",
    ),
    spec("zrevrangebyscore", -4, R, ONE, "sorted-set", "Returns members within scores, reversed."),
    spec(
        "zrevrank",
        -3,
        R,
        ONE,
        "sorted-set",
        "Returns the index of a member, by descending score.",
    ),
    spec(
        "zscan",
        -3,
        R | NO_MULTI,
        ONE,
        "sorted-set",
        "Iterates over members and scores of a sorted set.",
    ),
    spec("zscore", 3, R, ONE, "sorted-set", "Returns the score of a member in a sorted set."),
    spec("zunion", -3, R, NONE, "sorted-set", "Returns the union of multiple sorted sets.")
        .keys_counted_at(1),
    spec(
        "zunionstore",
        -4,
        W,
        ONE,
        "sorted-set",
        "Stores the union of multiple sorted sets in a key.",
    )
    .keys_counted_at(2),
];

/// The spec of `name` (any case). Every request looks its name up several times (to plan it,
/// then to run it on each replica), so this is a hash probe, not a search.
pub fn lookup(name: &[u8]) -> Option<&'static CommandSpec> {
    if name.len() > NAME_BYTES_MAX {
        return None;
    }
    let mut slot = name_hash(name) & (NAME_INDEX_SLOTS - 1);
    loop {
        let position = NAME_INDEX[slot];
        if position == NAME_INDEX_EMPTY {
            return None;
        }
        let spec = &COMMANDS[usize::from(position)];
        if spec.name.as_bytes().eq_ignore_ascii_case(name) {
            return Some(spec);
        }
        slot = (slot + 1) & (NAME_INDEX_SLOTS - 1);
    }
}

/// Longer than any command's name.
const NAME_BYTES_MAX: usize = 32;
/// Slots of the open-addressing name index: a power of two, over twice the commands.
const NAME_INDEX_SLOTS: usize = 1024;
const NAME_INDEX_EMPTY: u16 = u16::MAX;
static NAME_INDEX: [u16; NAME_INDEX_SLOTS] = name_index();

/// FNV-1a of the name in lower case.
const fn name_hash(name: &[u8]) -> usize {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut at = 0;
    while at < name.len() {
        hash = (hash ^ name[at].to_ascii_lowercase() as u64).wrapping_mul(0x0100_0000_01b3);
        at += 1;
    }
    hash as usize
}

/// Each command's position in [`COMMANDS`], at the slot of its name's hash or the next free.
const fn name_index() -> [u16; NAME_INDEX_SLOTS] {
    assert!(COMMANDS.len() * 2 < NAME_INDEX_SLOTS);
    let mut index = [NAME_INDEX_EMPTY; NAME_INDEX_SLOTS];
    let mut position = 0;
    while position < COMMANDS.len() {
        let mut slot = name_hash(COMMANDS[position].name.as_bytes()) & (NAME_INDEX_SLOTS - 1);
        while index[slot] != NAME_INDEX_EMPTY {
            slot = (slot + 1) & (NAME_INDEX_SLOTS - 1);
        }
        index[slot] = position as u16;
        position += 1;
    }
    index
}

/// The keys of a request in argument order: those at fixed positions, then those counted (see
/// [`CommandSpec::key_iter`]). Planning and executing each walk a request's keys: one
/// comparison per key, not an iterator chain.
pub struct Keys<'a> {
    arguments: &'a [Vec<u8>],
    /// The next fixed position and the last one; none left once `next` passes `last`.
    next: usize,
    last: usize,
    step: usize,
    counted: std::slice::Iter<'a, Vec<u8>>,
}

impl<'a> Iterator for Keys<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        if self.next <= self.last {
            let key = &self.arguments[self.next];
            self.next += self.step;
            return Some(key);
        }
        self.counted.next().map(Vec::as_slice)
    }
}

impl CommandSpec {
    pub fn has(&self, flag: u16) -> bool {
        self.flags & flag != 0
    }

    /// Whether `count` arguments (name included) satisfy the arity.
    pub fn arity_ok(&self, count: usize) -> bool {
        if self.arity >= 0 {
            count == self.arity as usize
        } else {
            count >= self.arity.unsigned_abs() as usize
        }
    }

    /// The first and last fixed key position in a request of `count` arguments (the last
    /// below the first: none).
    fn key_span(&self, count: usize) -> (usize, usize) {
        let first = self.first_key.max(1) as usize;
        let last = if self.first_key <= 0 || count <= first {
            0 // Below `first`: none.
        } else if self.last_key < 0 {
            (count as i64 + i64::from(self.last_key)).max(0) as usize
        } else {
            (self.last_key as usize).min(count - 1)
        };
        (first, last)
    }

    fn key_step(&self) -> usize {
        self.step.max(1) as usize
    }

    /// The keys of `arguments` (a request of this command).
    pub fn keys<'a>(&self, arguments: &'a [Vec<u8>]) -> Vec<&'a [u8]> {
        self.key_iter(arguments).collect()
    }

    /// [`CommandSpec::keys`] without collecting them: planning a request looks at each once.
    /// PUBLISH's channel counts as its key (it places the message on a shard).
    pub fn key_iter<'a>(&self, arguments: &'a [Vec<u8>]) -> Keys<'a> {
        let (next, last) = if self.name == "publish" {
            (1, if arguments.len() > 1 { 1 } else { 0 })
        } else {
            self.key_span(arguments.len())
        };
        let counted = self.counted_keys(arguments).iter();
        Keys { arguments, next, last, step: self.key_step(), counted }
    }

    /// The keys after the key count argument, if any. None when the count is not a positive
    /// integer the arguments can hold: the command then answers its own error (as Redis finds
    /// no keys in such a request either).
    fn counted_keys<'a>(&self, arguments: &'a [Vec<u8>]) -> &'a [Vec<u8>] {
        if self.key_count_position <= 0 {
            return &[];
        }
        let position = self.key_count_position as usize;
        let count = arguments.get(position).and_then(|count| parse_integer(count));
        let first = position + 1;
        match count.and_then(|count| usize::try_from(count).ok()) {
            Some(count) if count >= 1 && count <= arguments.len() - first => {
                &arguments[first..first + count]
            }
            _ => &[],
        }
    }

    fn flag_names(&self) -> Vec<Reply> {
        let names = [
            (WRITE, "write"),
            (READONLY, "readonly"),
            (BLOCKING, "blocking"),
            (PUBSUB, "pubsub"),
            (ADMIN, "admin"),
            (NO_MULTI, "no_multi"),
            (NO_AUTH, "no_auth"),
            (CONNECTION, "fast"),
        ];
        let mut flags: Vec<Reply> = names
            .iter()
            .filter(|(flag, _)| self.has(*flag))
            .map(|(_, name)| Reply::Simple((*name).into()))
            .collect();
        if self.key_count_position > 0 {
            flags.push(Reply::Simple("movablekeys".into()));
        }
        flags
    }

    /// The COMMAND INFO entry.
    pub fn info_reply(&self) -> Reply {
        Reply::Array(vec![
            Reply::bulk(self.name),
            Reply::Integer(self.arity.into()),
            Reply::Set(self.flag_names()),
            Reply::Integer(self.first_key.into()),
            Reply::Integer(self.last_key.into()),
            Reply::Integer(self.step.into()),
            Reply::Set(vec![Reply::Simple(format!("@{}", self.group).into())]),
            Reply::Set(Vec::new()),
            Reply::Array(Vec::new()),
            Reply::Array(Vec::new()),
        ])
    }

    /// The COMMAND DOCS entry (name, then the documentation map).
    pub fn docs_reply(&self) -> (Reply, Reply) {
        let docs = Reply::Map(vec![
            (Reply::bulk("summary"), Reply::bulk(self.summary)),
            (Reply::bulk("since"), Reply::bulk("1.0.0")),
            (Reply::bulk("group"), Reply::bulk(self.group)),
        ]);
        (Reply::bulk(self.name), docs)
    }
}

const fn crc16_table() -> [u16; 256] {
    let mut table = [0u16; 256];
    let mut byte = 0;
    while byte < 256 {
        let mut crc = (byte as u16) << 8;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 0x8000 != 0 { (crc << 1) ^ 0x1021 } else { crc << 1 };
            bit += 1;
        }
        table[byte] = crc;
        byte += 1;
    }
    table
}

static CRC16_TABLE: [u16; 256] = crc16_table();

/// CRC16-CCITT (XMODEM), as Redis Cluster uses for slots.
pub fn crc16(bytes: &[u8]) -> u16 {
    bytes
        .iter()
        .fold(0u16, |crc, &byte| (crc << 8) ^ CRC16_TABLE[usize::from(((crc >> 8) as u8) ^ byte)])
}

/// The part of a key that is hashed: the content of the first non-empty `{...}`, else the key.
pub fn hashtag(key: &[u8]) -> &[u8] {
    if let Some(open) = key.iter().position(|&byte| byte == b'{') {
        if let Some(length) = key[open + 1..].iter().position(|&byte| byte == b'}') {
            if length > 0 {
                return &key[open + 1..open + 1 + length];
            }
        }
    }
    key
}

pub fn slot(key: &[u8]) -> u32 {
    u32::from(crc16(hashtag(key))) % SLOTS
}

/// The shard of a slot: slots are split into `shard_count` contiguous ranges.
pub fn shard_of_slot(slot: u32, shard_count: u32) -> u32 {
    assert!(shard_count > 0, "a cluster has at least one shard");
    assert!(slot < SLOTS, "slot {slot} out of range");
    (u64::from(slot) * u64::from(shard_count) / u64::from(SLOTS)) as u32
}

pub fn shard_of_key(key: &[u8], shard_count: u32) -> u32 {
    if shard_count == 1 {
        return 0; // Not worth a CRC of the key.
    }
    shard_of_slot(slot(key), shard_count)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_sorted_and_consistent() {
        for pair in COMMANDS.windows(2) {
            assert!(pair[0].name < pair[1].name, "{} before {}", pair[0].name, pair[1].name);
        }
        for spec in COMMANDS {
            assert!(spec.arity != 0, "{}", spec.name);
            assert!(lookup(spec.name.to_uppercase().as_bytes()) == Some(spec));
            assert!(lookup(spec.name.as_bytes()) == Some(spec));
        }
        for unknown in ["", "gett", "se", "nosuchcommand", "ＧＥＴ", "get\0"] {
            assert!(lookup(unknown.as_bytes()).is_none(), "{unknown:?}");
        }
    }

    #[test]
    fn slots_match_redis_cluster() {
        assert_eq!(crc16(b"123456789"), 0x31c3);
        assert_eq!(slot(b"foo"), 12182);
        assert_eq!(slot(b"{user1000}.following"), slot(b"{user1000}.followers"));
        assert_eq!(slot(b"foo{}{bar}"), slot(b"foo{}{bar}"));
        assert_eq!(hashtag(b"foo{}{bar}"), b"foo{}{bar}");
        assert_eq!(hashtag(b"foo{{bar}}zap"), b"{bar");
        assert_eq!(shard_of_slot(0, 3), 0);
        assert_eq!(shard_of_slot(SLOTS - 1, 3), 2);
    }

    fn keys(text: &str) -> Vec<Vec<u8>> {
        let request = arguments(text);
        let spec = lookup(&request[0]).unwrap();
        spec.keys(&request).iter().map(|key| key.to_vec()).collect()
    }

    #[test]
    fn keys_at_fixed_positions() {
        assert_eq!(keys("MSET a 1 b 2"), arguments("a b"));
        assert_eq!(keys("BLPOP a b 0"), arguments("a b"));
        assert_eq!(keys("GET a"), arguments("a"));
        assert_eq!(keys("PUBLISH channel message"), arguments("channel"));
        assert!(keys("PING").is_empty());
        assert!(lookup(b"nosuch").is_none());
    }

    fn arguments(text: &str) -> Vec<Vec<u8>> {
        text.split(' ').map(|part| part.as_bytes().to_vec()).collect()
    }

    #[test]
    fn counted_keys_follow_their_count() {
        assert_eq!(keys("ZRANGESTORE out in 0 -1"), arguments("out in"));
        assert_eq!(keys("ZUNIONSTORE out 2 a b WEIGHTS 1 2"), arguments("out a b"));
        assert_eq!(keys("ZINTER 1 a b"), arguments("a"));
        assert_eq!(keys("ZDIFF 3 a b c"), arguments("a b c"));
        assert_eq!(keys("LMPOP 2 a b LEFT COUNT 2"), arguments("a b"));
        assert_eq!(keys("BLMPOP 0.5 1 a RIGHT"), arguments("a"));
        assert_eq!(keys("BZMPOP 0 2 a b MIN"), arguments("a b"));
        assert_eq!(keys("BZPOPMIN a b 0"), arguments("a b"));
        assert_eq!(keys("OBJECT ENCODING k"), arguments("k"));
        assert!(keys("OBJECT HELP").is_empty());
        // A count the arguments cannot hold, or not a positive integer: no counted keys.
        assert_eq!(keys("ZUNIONSTORE out 3 a b"), arguments("out"));
        for bad in ["ZINTERCARD 0 a", "ZINTERCARD -1 a", "ZINTERCARD x a", "ZINTERCARD 01 a"] {
            assert!(keys(bad).is_empty(), "{bad}");
        }
        let info = lookup(b"zunion").unwrap().info_reply();
        let Reply::Array(fields) = info else { panic!("COMMAND INFO is an array") };
        assert_eq!(
            fields[2],
            Reply::Set(vec![Reply::Simple("readonly".into()), Reply::Simple("movablekeys".into())])
        );
    }
}
