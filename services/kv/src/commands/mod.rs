//! Redis command semantics over a [`Context`]: the same code answers a read (on a snapshot) and
//! applies a write (into the entry's overlay). Replies follow Redis byte for byte where clients
//! look (error prefixes and wording, integer versus bulk, nulls).

mod hashes;
mod keys;
mod lists;
mod object;
mod sets;
mod strings;
mod zsets;
mod zsets_algebra;
mod zsets_range;

use crate::command::{self, CommandSpec};
use crate::layout::{self, Metadata};
use crate::resp::Reply;
use crate::store::{error, Context, Fail, Outcome};

/// Largest user key (the store's key limit leaves room for element sub-keys).
pub const KEY_BYTES_MAX: usize = 16 << 10;
/// Largest hash field, set member or sorted-set member.
pub const ELEMENT_BYTES_MAX: usize = 32 << 10;
/// Largest string value (the store's value limit minus the metadata header).
pub const STRING_BYTES_MAX: usize =
    strata_lsm::batch::VALUE_BYTES_MAX - layout::METADATA_HEADER_BYTES;
/// Most elements a command reads from one collection at once (HGETALL, SMEMBERS, LRANGE...).
pub const ELEMENTS_READ_MAX: usize = 1 << 20;
/// Most keys KEYS returns from one shard.
pub const KEYS_MAX: usize = 1 << 20;

const _: () = assert!(KEY_BYTES_MAX + ELEMENT_BYTES_MAX + 64 < strata_lsm::batch::KEY_BYTES_MAX);

pub const SYNTAX: &str = "ERR syntax error";
pub const NOT_INTEGER: &str = "ERR value is not an integer or out of range";
pub const NOT_FLOAT: &str = "ERR value is not a valid float";

/// Executes one command (name first; arity already checked by the server, checked again here
/// because a log entry is outside input too).
pub async fn execute(context: &mut Context<'_>, arguments: &[Vec<u8>]) -> Outcome<Reply> {
    let Some(name) = arguments.first() else { return error("ERR empty command") };
    let Some(spec) = command::lookup(name) else {
        return error(&format!("ERR unknown command '{}'", String::from_utf8_lossy(name)));
    };
    execute_command(context, spec, arguments).await
}

/// [`execute`] for a caller that looked the command up already (`spec`: that of
/// `arguments[0]`).
pub async fn execute_command(
    context: &mut Context<'_>,
    spec: &'static CommandSpec,
    arguments: &[Vec<u8>],
) -> Outcome<Reply> {
    debug_assert!(command::lookup(&arguments[0]) == Some(spec), "the spec is the command's");
    if !spec.arity_ok(arguments.len()) {
        return error(&format!("ERR wrong number of arguments for '{}' command", spec.name));
    }
    if spec.key_iter(arguments).any(|key| key.len() > KEY_BYTES_MAX) {
        return error("ERR key too long");
    }
    if spec.has(command::WRITE) && !context.is_write() {
        return error(&format!("ERR '{}' is a write command", spec.name));
    }
    let a = arguments;
    match spec.name {
        "append" | "decr" | "decrby" | "get" | "getdel" | "getex" | "getrange" | "getset"
        | "incr" | "incrby" | "incrbyfloat" | "mget" | "mset" | "msetnx" | "psetex" | "set"
        | "setex" | "setnx" | "setrange" | "strlen" => strings::run(context, spec.name, a).await,
        "copy" | "del" | "exists" | "expire" | "expireat" | "expiretime" | "keys" | "persist"
        | "pexpire" | "pexpireat" | "pexpiretime" | "pttl" | "randomkey" | "rename"
        | "renamenx" | "scan" | "touch" | "ttl" | "type" | "unlink" | "dbsize" => {
            keys::run(context, spec.name, a).await
        }
        "object" => object::run(context, a).await,
        "publish" => {
            context.effects.push(crate::store::Effect::Publish {
                channel: a[1].clone(),
                message: a[2].clone(),
            });
            // The machine replaces this with the number of local receivers.
            Ok(Reply::Integer(0))
        }
        _ => match spec.group {
            "hash" => hashes::run(context, spec.name, a).await,
            "list" => lists::run(context, spec.name, a).await,
            "set" => sets::run(context, spec.name, a).await,
            "sorted-set" => zsets::run(context, spec.name, a).await,
            _ => error(&format!("ERR '{}' is not a keyspace command", spec.name)),
        },
    }
}

/// Parses an integer as Redis's `string2ll`: optional `-`, digits, no leading zeros or spaces.
pub fn parse_integer(bytes: &[u8]) -> Option<i64> {
    let text = std::str::from_utf8(bytes).ok()?;
    let digits = text.strip_prefix('-').unwrap_or(text);
    if digits.is_empty()
        || digits.len() > 19
        || !digits.bytes().all(|byte| byte.is_ascii_digit())
        || (digits.len() > 1 && digits.starts_with('0'))
        || text == "-0"
    {
        return None;
    }
    text.parse().ok()
}

pub fn integer(bytes: &[u8]) -> Outcome<i64> {
    parse_integer(bytes).map_or_else(|| error(NOT_INTEGER), Ok)
}

/// Parses a float as Redis's `string2d`/`strtold`: finite or `[+-]inf`, no NaN, no spaces.
pub fn parse_float(bytes: &[u8]) -> Option<f64> {
    let text = std::str::from_utf8(bytes).ok()?;
    if text.is_empty()
        || text.starts_with(char::is_whitespace)
        || text.ends_with(char::is_whitespace)
    {
        return None;
    }
    let lower = text.to_ascii_lowercase();
    let value = match lower.as_str() {
        "inf" | "+inf" | "infinity" | "+infinity" => f64::INFINITY,
        "-inf" | "-infinity" => f64::NEG_INFINITY,
        _ if lower.contains("inf") || lower.contains("nan") => return None,
        _ => lower.parse().ok()?,
    };
    (!value.is_nan()).then_some(value)
}

pub fn float(bytes: &[u8]) -> Outcome<f64> {
    parse_float(bytes).map_or_else(|| error(NOT_FLOAT), Ok)
}

/// Formats a float as Redis's human-readable long double output (INCRBYFLOAT, HINCRBYFLOAT):
/// no exponent, shortest digits that round-trip.
pub fn format_human(value: f64) -> String {
    if value == 0.0 {
        return "0".into();
    }
    format!("{value}")
}

pub fn upper(bytes: &[u8]) -> Vec<u8> {
    bytes.to_ascii_uppercase()
}

pub fn wrong_type<T>() -> Outcome<T> {
    error(crate::store::WRONGTYPE)
}

/// Checks the size of a collection element.
pub fn check_element(element: &[u8]) -> Outcome<()> {
    if element.len() > ELEMENT_BYTES_MAX {
        return error("ERR element too large");
    }
    Ok(())
}

/// Loads `key`'s collection of `kind`, or a new empty one (not yet written).
pub async fn load_or_new(
    context: &mut Context<'_>,
    key: &[u8],
    kind: u8,
) -> Outcome<(Metadata, bool)> {
    match context.meta_of(key, kind).await? {
        Some(metadata) => Ok((metadata, true)),
        None => Ok((context.new_meta(kind), false)),
    }
}

/// Writes a collection's metadata after its elements changed; deletes the key when empty.
/// The optional count of LPOP/RPOP/ZPOPMIN/ZPOPMAX (`arguments[2]`), refused if negative.
pub fn pop_count(arguments: &[Vec<u8>]) -> Outcome<Option<u64>> {
    if arguments.len() > 3 {
        return error(SYNTAX);
    }
    let Some(count) = arguments.get(2) else { return Ok(None) };
    let count = integer(count)?;
    if count < 0 {
        return error("ERR value is out of range, must be positive");
    }
    Ok(Some(count as u64))
}

/// Removes the `elements` (fields, members) of the hash or set at `key` that exist; how many.
pub async fn remove_elements(
    context: &mut Context<'_>,
    key: &[u8],
    type_code: u8,
    elements: &[Vec<u8>],
) -> Outcome<i64> {
    let Some(mut metadata) = context.meta_of(key, type_code).await? else { return Ok(0) };
    let mut removed = 0;
    for element in elements {
        let sub = layout::sub_key(key, metadata.generation, element);
        if context.get_raw(&sub).await?.is_some() {
            context.delete_raw(sub);
            metadata.count -= 1;
            removed += 1;
        }
    }
    if removed > 0 {
        store_collection(context, key, &mut metadata);
    }
    Ok(removed)
}

pub fn store_collection(context: &mut Context<'_>, key: &[u8], metadata: &mut Metadata) {
    if metadata.count == 0 {
        context.delete_key(key, metadata);
    } else {
        context.set_meta(key, metadata);
    }
}

/// The elements of a collection under `tag` (a sub-key prefix: sorted sets keep two kinds),
/// as `(sub-key without the tag, value)` in sub-key order.
pub async fn elements(
    context: &Context<'_>,
    key: &[u8],
    metadata: &Metadata,
    tag: &[u8],
) -> Outcome<Vec<(Vec<u8>, Vec<u8>)>> {
    let prefix = layout::sub_key(key, metadata.generation, tag);
    let records = context.scan_prefix(&prefix, ELEMENTS_READ_MAX + 1).await?;
    if records.len() > ELEMENTS_READ_MAX {
        return error("ERR collection too large for this command");
    }
    Ok(records
        .into_iter()
        .map(|(record, value)| (record[prefix.len()..].to_vec(), value))
        .collect())
}

/// What HSCAN, SSCAN and ZSCAN read of a collection, and how an element's reply looks.
pub struct ScanOf {
    pub kind: u8,
    /// The sub-key tag of the elements iterated (sorted sets keep two kinds).
    pub tag: &'static [u8],
    /// Replies each element's value after it, made from the stored value (HSCAN, ZSCAN).
    pub value: Option<ValueReply>,
}

/// The reply for an element's stored value; `None` if it is not a value the collection writes.
pub type ValueReply = fn(Vec<u8>) -> Option<Vec<u8>>;

/// Elements one HSCAN, SSCAN or ZSCAN reads at most, whatever its COUNT.
const SCAN_COUNT_MAX: usize = 1 << 16;

/// HSCAN/SSCAN/ZSCAN `key cursor [MATCH p] [COUNT n] [NOVALUES]`, in element order. Reads only
/// the COUNT elements from where the cursor resumes (see `cursors`), so iterating a collection
/// costs its size once, however large. An element present for the whole iteration is returned
/// exactly once; MATCH filters what was read, so a reply may hold fewer than COUNT (or none)
/// before the end, as in Redis.
pub async fn scan_collection(
    context: &mut Context<'_>,
    key: &[u8],
    options: &[Vec<u8>],
    of: ScanOf,
) -> Outcome<Reply> {
    let Some(cursor) = std::str::from_utf8(&options[0]).ok().and_then(|t| t.parse::<u64>().ok())
    else {
        return error("ERR invalid cursor");
    };
    let mut pattern: Option<&[u8]> = None;
    let mut count = 10usize;
    let mut value_of = of.value;
    let mut position = 1;
    while position < options.len() {
        match upper(&options[position]).as_slice() {
            b"MATCH" if position + 1 < options.len() => {
                pattern = Some(&options[position + 1]);
                position += 1;
            }
            b"COUNT" if position + 1 < options.len() => {
                let parsed = integer(&options[position + 1])?;
                if parsed < 1 {
                    return error(SYNTAX);
                }
                count = usize::try_from(parsed).unwrap_or(usize::MAX).min(SCAN_COUNT_MAX);
                position += 1;
            }
            b"NOVALUES" if of.kind == layout::TYPE_HASH => value_of = None,
            _ => return error(SYNTAX),
        }
        position += 1;
    }
    let done = || Ok(Reply::Array(vec![Reply::bulk("0"), Reply::Array(Vec::new())]));
    let Some(cursors) = context.cursors else {
        return error("ERR collection scans are not allowed inside a transaction");
    };
    let Some(metadata) = context.meta_of(key, of.kind).await? else { return done() };
    let prefix = layout::sub_key(key, metadata.generation, of.tag);
    let mut start = prefix.clone();
    if cursor != 0 {
        let cursors = cursors.borrow();
        let Some(element) = cursors.resume(cursor, key) else {
            return error("ERR invalid cursor (expired, from before a restart, or another node's)");
        };
        start.extend_from_slice(element);
    }
    let end = strata_lsm::prefix_end(&prefix);
    let mut records = context.scan_raw(&start, end.as_deref(), count + 1).await?;
    // Used once the read went through: a read retried (the store replaced under it) resumes.
    let mut cursors = cursors.borrow_mut();
    cursors.forget(cursor);
    let mut next = 0;
    if records.len() > count {
        let (resume, _) = records.pop().expect("one past the count");
        next = cursors.remember(key, resume[prefix.len()..].to_vec());
    }
    drop(cursors);
    let mut out = Vec::new();
    for (record, value) in records {
        let element = record[prefix.len()..].to_vec();
        if pattern.is_some_and(|pattern| !crate::glob::matches(pattern, &element)) {
            continue;
        }
        let value = match value_of.map(|value_of| value_of(value)) {
            None => None,
            Some(Some(value)) => Some(value),
            Some(None) => {
                let (element, key) =
                    (String::from_utf8_lossy(&element), String::from_utf8_lossy(key));
                let reason = format!("element {element:?} of key {key:?}: a malformed value");
                return Err(Fail::Storage(strata_lsm::LsmError::Invalid { reason }));
            }
        };
        out.push(Reply::Bulk(element));
        out.extend(value.map(Reply::Bulk));
    }
    Ok(Reply::Array(vec![Reply::bulk(next.to_string()), Reply::Array(out)]))
}

/// Picks `count` random items as SRANDMEMBER and HRANDFIELD do: for a positive count distinct
/// items (all of them, in random order, when there are fewer), for a negative one `-count` draws
/// that may repeat (at most `ELEMENTS_READ_MAX`). The randomness is the context's: seeded by the
/// log index when applying (SPOP), so every replica picks alike.
pub fn random_picks<T: Clone>(context: &mut Context<'_>, mut items: Vec<T>, count: i64) -> Vec<T> {
    if items.is_empty() {
        return Vec::new();
    }
    if count < 0 {
        let draws = count.unsigned_abs().min(ELEMENTS_READ_MAX as u64);
        let len = items.len() as u64;
        return (0..draws).map(|_| items[(context.random() % len) as usize].clone()).collect();
    }
    let take = usize::try_from(count).unwrap_or(usize::MAX).min(items.len());
    let mut chosen = Vec::with_capacity(take);
    for _ in 0..take {
        let pick = (context.random() % items.len() as u64) as usize;
        chosen.push(items.swap_remove(pick));
    }
    chosen
}

/// The count of SRANDMEMBER and HRANDFIELD: any integer but `i64::MIN`, whose draws could not be
/// counted, with Redis's words.
pub fn random_count(argument: &[u8]) -> Outcome<i64> {
    match integer(argument)? {
        i64::MIN => error(
            "ERR value is out of range, value must between -9223372036854775807 and \
             9223372036854775807",
        ),
        count => Ok(count),
    }
}

/// What LMPOP and ZMPOP (and the non-blocking halves of BLMPOP and BZMPOP) pop.
pub struct MultiplePop<'a> {
    pub keys: &'a [Vec<u8>],
    /// Whether the first of the two ends was named (LEFT, MIN).
    pub first_end: bool,
    pub count: u64,
}

impl MultiplePop<'_> {
    /// Parses `numkeys key... end [COUNT count]` from the key count at `position`; `ends` are
    /// the two words naming an end. Errors as Redis words them.
    pub fn parse<'a>(
        a: &'a [Vec<u8>],
        position: usize,
        ends: [&[u8]; 2],
    ) -> Outcome<MultiplePop<'a>> {
        let keys_given = a.len() - position - 1;
        let count = parse_integer(&a[position]).filter(|&count| count >= 1);
        let Some(count) = count.and_then(|count| usize::try_from(count).ok()) else {
            return error("ERR numkeys should be greater than 0");
        };
        if count >= keys_given {
            return error(SYNTAX);
        }
        let end_at = position + 1 + count;
        let first_end = match upper(&a[end_at]) {
            end if end == ends[0] => true,
            end if end == ends[1] => false,
            _ => return error(SYNTAX),
        };
        let mut pop = MultiplePop { keys: &a[position + 1..end_at], first_end, count: 1 };
        match &a[end_at + 1..] {
            [] => {}
            [option, value] if upper(option) == b"COUNT" => {
                let Some(count) = parse_integer(value).filter(|&count| count >= 1) else {
                    return error("ERR count should be greater than 0");
                };
                pop.count = count as u64;
            }
            _ => return error(SYNTAX),
        }
        Ok(pop)
    }
}

/// Resolves Redis's `start`/`stop` range over `len` elements (negative from the end) into
/// `start..end`, or `None` when empty.
pub fn resolve_range(start: i64, stop: i64, len: u64) -> Option<(u64, u64)> {
    let len = len as i64;
    let start = if start < 0 { (len + start).max(0) } else { start };
    let stop = if stop < 0 { len + stop } else { stop.min(len - 1) };
    if start > stop || start >= len {
        return None;
    }
    Some((start as u64, stop as u64 + 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_parse_as_redis() {
        assert_eq!(parse_integer(b"42"), Some(42));
        assert_eq!(parse_integer(b"-7"), Some(-7));
        assert_eq!(parse_integer(b"0"), Some(0));
        for bad in [&b"007"[..], b"+1", b" 1", b"1 ", b"", b"-", b"-0", b"99999999999999999999"] {
            assert_eq!(parse_integer(bad), None, "{bad:?}");
        }
        assert_eq!(parse_integer(b"-9223372036854775808"), Some(i64::MIN));
        assert_eq!(parse_float(b"1.5"), Some(1.5));
        assert_eq!(parse_float(b"-inf"), Some(f64::NEG_INFINITY));
        assert_eq!(parse_float(b"5e3"), Some(5000.0));
        assert_eq!(parse_float(b"nan"), None);
        assert_eq!(parse_float(b" 1"), None);
        assert_eq!(format_human(10.6), "10.6");
        assert_eq!(format_human(5200.0), "5200");
        assert_eq!(format_human(1e20), "100000000000000000000");
    }

    #[test]
    fn ranges_resolve_as_redis() {
        assert_eq!(resolve_range(0, -1, 3), Some((0, 3)));
        assert_eq!(resolve_range(-2, -1, 3), Some((1, 3)));
        assert_eq!(resolve_range(5, 10, 3), None);
        assert_eq!(resolve_range(-100, 100, 3), Some((0, 3)));
        assert_eq!(resolve_range(2, 1, 3), None);
        assert_eq!(resolve_range(0, -1, 0), None);
    }
}
