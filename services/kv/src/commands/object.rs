//! OBJECT ENCODING REFCOUNT IDLETIME FREQ HELP. Strata stores every value the same way (records
//! of the LSM store), so ENCODING answers what Redis 7.2 would report with its default settings,
//! for clients and tools that look: small collections of short elements are listpacks (sets of
//! integers intsets), larger ones hash tables, skiplists and quicklists; strings are `int`,
//! `embstr` (up to 44 bytes) or `raw`.

use super::sets::set_members;
use super::zsets::scored;
use super::{elements, error, parse_integer, upper};
use crate::layout::{Metadata, TYPE_HASH, TYPE_LIST, TYPE_SET, TYPE_STRING};
use crate::resp::Reply;
use crate::store::{Context, Outcome};

const HELP: &[&str] = &[
    "OBJECT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "ENCODING <key>",
    "    Return the kind of internal representation used in order to store the value",
    "    associated with a <key>.",
    "FREQ <key>",
    "    Return the access frequency index of the <key>. The returned integer is",
    "    proportional to the logarithm of the recent access frequency of the key.",
    "IDLETIME <key>",
    "    Return the idle time of the <key>, that is the approximated number of",
    "    seconds elapsed since the last access to the key.",
    "REFCOUNT <key>",
    "    Return the number of references of the value associated with the specified",
    "    <key>.",
    "HELP",
    "    Prints this help.",
];

/// Redis's defaults: `*-max-listpack-entries`, `*-max-listpack-value`, `set-max-intset-entries`
/// and the 8 KiB of `list-max-listpack-size -2`.
const LISTPACK_VALUE_BYTES_MAX: usize = 64;
const HASH_LISTPACK_ENTRIES_MAX: u64 = 512;
const SET_LISTPACK_ENTRIES_MAX: u64 = 128;
const SET_INTSET_ENTRIES_MAX: u64 = 512;
const ZSET_LISTPACK_ENTRIES_MAX: u64 = 128;
const LIST_LISTPACK_BYTES_MAX: usize = 8 << 10;
/// Longest string Redis embeds in its object header.
const EMBSTR_BYTES_MAX: usize = 44;
/// Redis shares the objects of the integers below this, with a refcount of `i32::MAX`.
const SHARED_INTEGERS: i64 = 10_000;

pub async fn run(context: &mut Context<'_>, a: &[Vec<u8>]) -> Outcome<Reply> {
    let subcommand = upper(&a[1]);
    let arity = match subcommand.as_slice() {
        b"HELP" => 2,
        b"ENCODING" | b"REFCOUNT" | b"IDLETIME" | b"FREQ" => 3,
        _ => {
            let name = String::from_utf8_lossy(&a[1]);
            return error(&format!("ERR unknown subcommand '{name}'. Try OBJECT HELP."));
        }
    };
    if a.len() != arity {
        let name = String::from_utf8_lossy(&a[1]).to_lowercase();
        return error(&format!("ERR wrong number of arguments for 'object|{name}' command"));
    }
    if subcommand == b"HELP" {
        return Ok(Reply::Array(HELP.iter().map(|line| Reply::Simple((*line).into())).collect()));
    }
    let Some(metadata) = context.meta(&a[2]).await? else { return Ok(Reply::Null) };
    match subcommand.as_slice() {
        b"ENCODING" => Ok(Reply::bulk(encoding(context, &a[2], &metadata).await?)),
        b"REFCOUNT" => Ok(Reply::Integer(refcount(&metadata))),
        // Access times are not kept: a read would have to write. Every key looks just used.
        b"IDLETIME" => Ok(Reply::Integer(0)),
        // CONFIG GET maxmemory-policy says noeviction, under which Redis keeps no frequency.
        _ => error(
            "ERR An LFU maxmemory policy is not selected, access frequency not tracked. Please \
             note that when switching between policies at runtime LRU and LFU data will take \
             some time to adjust.",
        ),
    }
}

fn refcount(metadata: &Metadata) -> i64 {
    let shared = metadata.kind == TYPE_STRING
        && parse_integer(&metadata.value)
            .is_some_and(|value| (0..SHARED_INTEGERS).contains(&value));
    if shared {
        i64::from(i32::MAX)
    } else {
        1
    }
}

async fn encoding(context: &Context<'_>, key: &[u8], metadata: &Metadata) -> Outcome<&'static str> {
    let short = |bytes: &[u8]| bytes.len() <= LISTPACK_VALUE_BYTES_MAX;
    let count = metadata.count;
    Ok(match metadata.kind {
        TYPE_STRING if parse_integer(&metadata.value).is_some() => "int",
        TYPE_STRING if metadata.value.len() <= EMBSTR_BYTES_MAX => "embstr",
        TYPE_STRING => "raw",
        TYPE_LIST => {
            // Each element costs at least 2 bytes in a listpack (header and back-length).
            if count > (LIST_LISTPACK_BYTES_MAX / 2) as u64 {
                return Ok("quicklist");
            }
            let items = elements(context, key, metadata, b"").await?;
            let bytes: usize = items.iter().map(|(_, item)| listpack_entry_bytes(item)).sum();
            if bytes + 7 <= LIST_LISTPACK_BYTES_MAX {
                "listpack"
            } else {
                "quicklist"
            }
        }
        TYPE_SET => {
            if count > SET_INTSET_ENTRIES_MAX.max(SET_LISTPACK_ENTRIES_MAX) {
                return Ok("hashtable");
            }
            let members = set_members(context, key, metadata).await?;
            if members.iter().all(|member| parse_integer(member).is_some()) {
                "intset"
            } else if count <= SET_LISTPACK_ENTRIES_MAX && members.iter().all(|m| short(m)) {
                "listpack"
            } else {
                "hashtable"
            }
        }
        TYPE_HASH => {
            if count > HASH_LISTPACK_ENTRIES_MAX {
                return Ok("hashtable");
            }
            let fields = elements(context, key, metadata, b"").await?;
            if fields.iter().all(|(field, value)| short(field) && short(value)) {
                "listpack"
            } else {
                "hashtable"
            }
        }
        _ => {
            if count > ZSET_LISTPACK_ENTRIES_MAX {
                return Ok("skiplist");
            }
            let members = scored(context, key, metadata).await?;
            if members.iter().all(|(member, _)| short(member)) {
                "listpack"
            } else {
                "skiplist"
            }
        }
    })
}

/// About what an element takes in a listpack: its bytes, a 1-byte header and back-length up to
/// 63 bytes, a little more for longer ones.
fn listpack_entry_bytes(item: &[u8]) -> usize {
    if item.len() < 64 {
        item.len() + 2
    } else {
        item.len() + 4
    }
}
