//! Lists: LPUSH RPUSH LPUSHX RPUSHX LPOP RPOP LMPOP LLEN LRANGE LINDEX LSET LINSERT LREM LTRIM
//! LPOS LMOVE RPOPLPUSH, and the non-blocking halves of BLPOP BRPOP BLMPOP BLMOVE (the server
//! waits and retries). Element `i` (0-based) is at `sub = (head + i)` as u64 BE; pushes on the
//! left move `head` down, so both ends are O(1). LINSERT and LREM rewrite the list under a new
//! generation.

use super::{elements, error, integer, load_or_new, pop_count, resolve_range, MultiplePop};
use super::{store_collection, upper, ELEMENTS_READ_MAX, STRING_BYTES_MAX, SYNTAX};
use crate::layout::{self, Metadata, TYPE_LIST};
use crate::resp::Reply;
use crate::store::{Context, Effect, Outcome};

fn element_key(key: &[u8], metadata: &Metadata, offset: u64) -> Vec<u8> {
    layout::sub_key(key, metadata.generation, &(metadata.head + offset).to_be_bytes())
}

/// Elements `start..end` of the list.
async fn range(
    context: &Context<'_>,
    key: &[u8],
    metadata: &Metadata,
    start: u64,
    end: u64,
) -> Outcome<Vec<Vec<u8>>> {
    if end - start > ELEMENTS_READ_MAX as u64 {
        return error("ERR range too large");
    }
    let from = element_key(key, metadata, start);
    if end - start == 1 {
        // One element (a pop, LINDEX): a point read, which bloom filters keep off most tables,
        // instead of a scan that opens a cursor on every table.
        let element = context.get_raw(&from).await?;
        return Ok(vec![element.expect("a list's elements are contiguous")]);
    }
    let to = element_key(key, metadata, end);
    let records = context.scan_raw(&from, Some(&to), (end - start) as usize).await?;
    assert_eq!(records.len() as u64, end - start, "a list's elements are contiguous");
    Ok(records.into_iter().map(|(_, value)| value).collect())
}

async fn all(context: &Context<'_>, key: &[u8], metadata: &Metadata) -> Outcome<Vec<Vec<u8>>> {
    range(context, key, metadata, 0, metadata.count).await
}

/// Pushes `items` at one end; `only_existing`: LPUSHX/RPUSHX. Returns the new length.
async fn push(
    context: &mut Context<'_>,
    key: &[u8],
    left: bool,
    items: &[Vec<u8>],
    only_existing: bool,
) -> Outcome<i64> {
    for item in items {
        if item.len() > STRING_BYTES_MAX {
            return error("ERR element too large");
        }
    }
    let (mut metadata, existed) = load_or_new(context, key, TYPE_LIST).await?;
    if only_existing && !existed {
        return Ok(0);
    }
    for item in items {
        if left {
            metadata.head -= 1;
            context.put_raw(element_key(key, &metadata, 0), item.clone());
        } else {
            context.put_raw(element_key(key, &metadata, metadata.count), item.clone());
        }
        metadata.count += 1;
    }
    store_collection(context, key, &mut metadata);
    context.effects.push(Effect::Ready { key: key.to_vec() });
    Ok(metadata.count as i64)
}

/// Pops up to `count` elements from one end; `None` if the list does not exist.
async fn pop(
    context: &mut Context<'_>,
    key: &[u8],
    left: bool,
    count: u64,
) -> Outcome<Option<Vec<Vec<u8>>>> {
    let Some(mut metadata) = context.meta_of(key, TYPE_LIST).await? else { return Ok(None) };
    let take = count.min(metadata.count);
    let (start, end) = if left { (0, take) } else { (metadata.count - take, metadata.count) };
    let mut items = range(context, key, &metadata, start, end).await?;
    for offset in start..end {
        context.delete_raw(element_key(key, &metadata, offset));
    }
    if left {
        metadata.head += take;
    } else {
        items.reverse();
    }
    metadata.count -= take;
    store_collection(context, key, &mut metadata);
    Ok(Some(items))
}

/// Replaces the list's elements (under a new generation, keeping its deadline).
fn rewrite(context: &mut Context<'_>, key: &[u8], old: &Metadata, items: &[Vec<u8>]) {
    context.delete_prefix(&layout::sub_prefix(key, old.generation));
    let mut fresh = context.new_meta(TYPE_LIST);
    fresh.deadline_ms = old.deadline_ms;
    for (offset, item) in items.iter().enumerate() {
        context.put_raw(element_key(key, &fresh, offset as u64), item.clone());
    }
    fresh.count = items.len() as u64;
    store_collection(context, key, &mut fresh);
}

fn side(argument: &[u8]) -> Outcome<bool> {
    match upper(argument).as_slice() {
        b"LEFT" => Ok(true),
        b"RIGHT" => Ok(false),
        _ => error(SYNTAX),
    }
}

/// LMOVE: pops from `source`, pushes to `target`; `None` if the source is empty.
async fn move_element(
    context: &mut Context<'_>,
    source: &[u8],
    target: &[u8],
    from_left: bool,
    to_left: bool,
) -> Outcome<Option<Vec<u8>>> {
    if context.meta_of(source, TYPE_LIST).await?.is_none() {
        return Ok(None);
    }
    context.meta_of(target, TYPE_LIST).await?;
    let Some(mut items) = pop(context, source, from_left, 1).await? else { return Ok(None) };
    let Some(item) = items.pop() else { return Ok(None) };
    push(context, target, to_left, std::slice::from_ref(&item), false).await?;
    Ok(Some(item))
}

pub async fn run(context: &mut Context<'_>, name: &str, a: &[Vec<u8>]) -> Outcome<Reply> {
    let key = &a[1];
    match name {
        "lpush" | "rpush" | "lpushx" | "rpushx" => {
            let left = name.starts_with('l');
            Ok(Reply::Integer(push(context, key, left, &a[2..], name.ends_with('x')).await?))
        }
        "lpop" | "rpop" => {
            let count = pop_count(a)?;
            let popped = pop(context, key, name == "lpop", count.unwrap_or(1)).await?;
            Ok(match (popped, count) {
                (None, Some(_)) => Reply::NullArray,
                (None, None) => Reply::Null,
                (Some(items), Some(_)) => Reply::bulks(items),
                (Some(mut items), None) => Reply::optional(items.pop()),
            })
        }
        "blpop" | "brpop" => {
            let keys = &a[1..a.len() - 1];
            for key in keys {
                if let Some(mut items) = pop(context, key, name == "blpop", 1).await? {
                    if let Some(item) = items.pop() {
                        return Ok(Reply::Array(vec![Reply::Bulk(key.clone()), Reply::Bulk(item)]));
                    }
                }
            }
            Ok(Reply::NullArray)
        }
        "lmpop" | "blmpop" => {
            // BLMPOP's timeout comes first: the server waits, this is one try.
            let position = if name == "lmpop" { 1 } else { 2 };
            let request = MultiplePop::parse(a, position, [b"LEFT", b"RIGHT"])?;
            for key in request.keys {
                if let Some(items) = pop(context, key, request.first_end, request.count).await? {
                    return Ok(Reply::Array(vec![Reply::Bulk(key.clone()), Reply::bulks(items)]));
                }
            }
            Ok(Reply::NullArray)
        }
        "lmove" | "blmove" | "rpoplpush" => {
            let (from_left, to_left) =
                if name == "rpoplpush" { (false, true) } else { (side(&a[3])?, side(&a[4])?) };
            Ok(Reply::optional(move_element(context, &a[1], &a[2], from_left, to_left).await?))
        }
        "llen" => Ok(Reply::Integer(
            context.meta_of(key, TYPE_LIST).await?.map_or(0, |metadata| metadata.count as i64),
        )),
        "lrange" => {
            let (start, stop) = (integer(&a[2])?, integer(&a[3])?);
            let Some(metadata) = context.meta_of(key, TYPE_LIST).await? else {
                return Ok(Reply::Array(Vec::new()));
            };
            match resolve_range(start, stop, metadata.count) {
                Some((start, end)) => {
                    Ok(Reply::bulks(range(context, key, &metadata, start, end).await?))
                }
                None => Ok(Reply::Array(Vec::new())),
            }
        }
        "lindex" => {
            let index = integer(&a[2])?;
            let Some(metadata) = context.meta_of(key, TYPE_LIST).await? else {
                return Ok(Reply::Null);
            };
            let offset = if index < 0 { metadata.count as i64 + index } else { index };
            if offset < 0 || offset >= metadata.count as i64 {
                return Ok(Reply::Null);
            }
            Ok(Reply::optional(context.get_raw(&element_key(key, &metadata, offset as u64)).await?))
        }
        "lset" => {
            let index = integer(&a[2])?;
            let Some(mut metadata) = context.meta_of(key, TYPE_LIST).await? else {
                return error("ERR no such key");
            };
            let offset = if index < 0 { metadata.count as i64 + index } else { index };
            if offset < 0 || offset >= metadata.count as i64 {
                return error("ERR index out of range");
            }
            if a[3].len() > STRING_BYTES_MAX {
                return error("ERR element too large");
            }
            context.put_raw(element_key(key, &metadata, offset as u64), a[3].clone());
            store_collection(context, key, &mut metadata);
            Ok(Reply::ok())
        }
        "linsert" => {
            let before = match upper(&a[2]).as_slice() {
                b"BEFORE" => true,
                b"AFTER" => false,
                _ => return error(SYNTAX),
            };
            let Some(metadata) = context.meta_of(key, TYPE_LIST).await? else {
                return Ok(Reply::Integer(0));
            };
            let mut items = all(context, key, &metadata).await?;
            let Some(position) = items.iter().position(|item| *item == a[3]) else {
                return Ok(Reply::Integer(-1));
            };
            items.insert(if before { position } else { position + 1 }, a[4].clone());
            rewrite(context, key, &metadata, &items);
            Ok(Reply::Integer(items.len() as i64))
        }
        "lrem" => {
            let count = integer(&a[2])?;
            let Some(metadata) = context.meta_of(key, TYPE_LIST).await? else {
                return Ok(Reply::Integer(0));
            };
            let items = all(context, key, &metadata).await?;
            let limit = if count == 0 { usize::MAX } else { count.unsigned_abs() as usize };
            let mut keep = vec![true; items.len()];
            let mut removed = 0;
            let order: Box<dyn Iterator<Item = usize>> =
                if count < 0 { Box::new((0..items.len()).rev()) } else { Box::new(0..items.len()) };
            for position in order {
                if removed == limit {
                    break;
                }
                if items[position] == a[3] {
                    keep[position] = false;
                    removed += 1;
                }
            }
            if removed > 0 {
                let kept: Vec<Vec<u8>> = items
                    .into_iter()
                    .zip(keep)
                    .filter_map(|(item, keep)| keep.then_some(item))
                    .collect();
                rewrite(context, key, &metadata, &kept);
            }
            Ok(Reply::Integer(removed as i64))
        }
        "ltrim" => {
            let (start, stop) = (integer(&a[2])?, integer(&a[3])?);
            let Some(mut metadata) = context.meta_of(key, TYPE_LIST).await? else {
                return Ok(Reply::ok());
            };
            let (keep_start, keep_end) =
                resolve_range(start, stop, metadata.count).unwrap_or((0, 0));
            for offset in (0..keep_start).chain(keep_end..metadata.count) {
                context.delete_raw(element_key(key, &metadata, offset));
            }
            metadata.head += keep_start;
            metadata.count = keep_end - keep_start;
            store_collection(context, key, &mut metadata);
            Ok(Reply::ok())
        }
        "lpos" => lpos(context, a).await,
        _ => error(&format!("ERR unhandled list command '{name}'")),
    }
}

async fn lpos(context: &mut Context<'_>, a: &[Vec<u8>]) -> Outcome<Reply> {
    let (mut rank, mut count, mut maxlen) = (1i64, None, 0i64);
    let mut position = 3;
    while position < a.len() {
        let Some(value) = a.get(position + 1) else { return error(SYNTAX) };
        match upper(&a[position]).as_slice() {
            b"RANK" => {
                rank = integer(value)?;
                if rank == 0 || rank == i64::MIN {
                    return error(
                        "ERR RANK can't be zero: use 1 to start from the first match, 2 from the \
                         second ... or use negative to start from the end of the list",
                    );
                }
            }
            b"COUNT" => {
                let parsed = integer(value)?;
                if parsed < 0 {
                    return error("ERR COUNT can't be negative");
                }
                count = Some(parsed);
            }
            b"MAXLEN" => {
                maxlen = integer(value)?;
                if maxlen < 0 {
                    return error("ERR MAXLEN can't be negative");
                }
            }
            _ => return error(SYNTAX),
        }
        position += 2;
    }
    let items = match context.meta_of(&a[1], TYPE_LIST).await? {
        Some(metadata) => elements(context, &a[1], &metadata, b"").await?,
        None => Vec::new(),
    };
    let len = items.len();
    let indexes: Box<dyn Iterator<Item = usize>> =
        if rank > 0 { Box::new(0..len) } else { Box::new((0..len).rev()) };
    let mut skip = rank.unsigned_abs() - 1;
    let wanted = match count {
        Some(0) => usize::MAX,
        Some(count) => count as usize,
        None => 1,
    };
    let mut found = Vec::new();
    for (scanned, index) in indexes.enumerate() {
        if maxlen > 0 && scanned as i64 >= maxlen {
            break;
        }
        if items[index].1 == a[2] {
            if skip > 0 {
                skip -= 1;
                continue;
            }
            found.push(Reply::Integer(index as i64));
            if found.len() >= wanted {
                break;
            }
        }
    }
    Ok(match count {
        Some(_) => Reply::Array(found),
        None => found.pop().unwrap_or(Reply::Null),
    })
}
