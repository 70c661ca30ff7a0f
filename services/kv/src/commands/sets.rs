//! Sets: SADD SREM SMEMBERS SISMEMBER SMISMEMBER SCARD SPOP SRANDMEMBER SMOVE SINTER SUNION SDIFF
//! (and their STORE forms) SINTERCARD SSCAN. One element per member: `sub = member`, empty value.

use super::store_collection;
use super::{check_element, elements, error, integer, load_or_new, scan_collection, ScanOf};
use super::{parse_integer, random_count, random_picks, remove_elements, upper};
use crate::layout::{self, Metadata, TYPE_SET};
use crate::resp::Reply;
use crate::store::{Context, Outcome};
use std::collections::BTreeSet;

/// The members of the set described by `metadata`, in order.
pub(super) async fn set_members(
    context: &Context<'_>,
    key: &[u8],
    metadata: &Metadata,
) -> Outcome<Vec<Vec<u8>>> {
    let records = elements(context, key, metadata, b"").await?;
    Ok(records.into_iter().map(|(member, _)| member).collect())
}

/// The members of the set at `key` (empty if absent; WRONGTYPE for another type).
async fn members(context: &mut Context<'_>, key: &[u8]) -> Outcome<BTreeSet<Vec<u8>>> {
    match context.meta_of(key, TYPE_SET).await? {
        Some(metadata) => Ok(set_members(context, key, &metadata).await?.into_iter().collect()),
        None => Ok(BTreeSet::new()),
    }
}

/// Replaces whatever is at `key` with a set of `members` (SINTERSTORE...).
async fn store_set(
    context: &mut Context<'_>,
    key: &[u8],
    members: &BTreeSet<Vec<u8>>,
) -> Outcome<()> {
    if let Some(old) = context.meta(key).await? {
        context.delete_key(key, &old);
    }
    let mut metadata = context.new_meta(TYPE_SET);
    for member in members {
        context.put_raw(layout::sub_key(key, metadata.generation, member), Vec::new());
    }
    metadata.count = members.len() as u64;
    store_collection(context, key, &mut metadata);
    Ok(())
}

pub async fn run(context: &mut Context<'_>, name: &str, a: &[Vec<u8>]) -> Outcome<Reply> {
    let key = &a[1];
    match name {
        "sadd" => {
            let (mut metadata, _) = load_or_new(context, key, TYPE_SET).await?;
            let mut added = 0;
            for member in &a[2..] {
                check_element(member)?;
                let sub = layout::sub_key(key, metadata.generation, member);
                if context.get_raw(&sub).await?.is_none() {
                    context.put_raw(sub, Vec::new());
                    metadata.count += 1;
                    added += 1;
                }
            }
            if added > 0 {
                store_collection(context, key, &mut metadata);
            }
            Ok(Reply::Integer(added))
        }
        "srem" => Ok(Reply::Integer(remove_elements(context, key, TYPE_SET, &a[2..]).await?)),
        "smembers" => {
            Ok(Reply::Set(members(context, key).await?.into_iter().map(Reply::Bulk).collect()))
        }
        "sismember" | "smismember" => {
            let metadata = context.meta_of(key, TYPE_SET).await?;
            let mut found = Vec::new();
            for member in &a[2..] {
                let present = match &metadata {
                    Some(metadata) => context
                        .get_raw(&layout::sub_key(key, metadata.generation, member))
                        .await?
                        .is_some(),
                    None => false,
                };
                found.push(Reply::Integer(i64::from(present)));
            }
            Ok(if name == "sismember" { found.remove(0) } else { Reply::Array(found) })
        }
        "scard" => Ok(Reply::Integer(
            context.meta_of(key, TYPE_SET).await?.map_or(0, |metadata| metadata.count as i64),
        )),
        "spop" | "srandmember" => {
            if a.len() > 3 {
                return error(super::SYNTAX);
            }
            let count = match a.get(2) {
                Some(count) if name == "spop" => {
                    let count = integer(count)?;
                    if count < 0 {
                        return error("ERR value is out of range, must be positive");
                    }
                    Some(count)
                }
                Some(count) => Some(random_count(count)?),
                None => None,
            };
            let Some(mut metadata) = context.meta_of(key, TYPE_SET).await? else {
                return Ok(match count {
                    None => Reply::Null,
                    Some(_) if name == "spop" => Reply::Set(Vec::new()),
                    Some(_) => Reply::Array(Vec::new()),
                });
            };
            let all = set_members(context, key, &metadata).await?;
            let mut chosen = random_picks(context, all, count.unwrap_or(1));
            if name == "spop" {
                for member in &chosen {
                    context.delete_raw(layout::sub_key(key, metadata.generation, member));
                }
                metadata.count -= chosen.len() as u64;
                if !chosen.is_empty() {
                    store_collection(context, key, &mut metadata);
                }
            }
            Ok(match count {
                None => Reply::optional(chosen.pop()),
                Some(_) if name == "spop" => {
                    Reply::Set(chosen.into_iter().map(Reply::Bulk).collect())
                }
                Some(_) => Reply::bulks(chosen),
            })
        }
        "smove" => {
            let (source, target, member) = (&a[1], &a[2], &a[3]);
            let Some(mut from) = context.meta_of(source, TYPE_SET).await? else {
                // The target's type is still checked.
                context.meta_of(target, TYPE_SET).await?;
                return Ok(Reply::Integer(0));
            };
            context.meta_of(target, TYPE_SET).await?;
            let sub = layout::sub_key(source, from.generation, member);
            if context.get_raw(&sub).await?.is_none() {
                return Ok(Reply::Integer(0));
            }
            if source == target {
                return Ok(Reply::Integer(1));
            }
            context.delete_raw(sub);
            from.count -= 1;
            store_collection(context, source, &mut from);
            let (mut to, _) = load_or_new(context, target, TYPE_SET).await?;
            let target_sub = layout::sub_key(target, to.generation, member);
            if context.get_raw(&target_sub).await?.is_none() {
                context.put_raw(target_sub, Vec::new());
                to.count += 1;
                store_collection(context, target, &mut to);
            }
            Ok(Reply::Integer(1))
        }
        "sinter" | "sunion" | "sdiff" | "sinterstore" | "sunionstore" | "sdiffstore" => {
            let store = name.ends_with("store");
            let sources = if store { &a[2..] } else { &a[1..] };
            let mut result: Option<BTreeSet<Vec<u8>>> = None;
            for (position, source) in sources.iter().enumerate() {
                let set = members(context, source).await?;
                result = Some(match result {
                    None => set,
                    Some(current) => match &name[..2] {
                        "si" => current.intersection(&set).cloned().collect(),
                        "su" => current.union(&set).cloned().collect(),
                        _ => current.difference(&set).cloned().collect(),
                    },
                });
                // Redis stops reading at the first empty set of an intersection.
                if name.starts_with("sinter") && result.as_ref().is_some_and(BTreeSet::is_empty) {
                    for later in &sources[position + 1..] {
                        context.meta_of(later, TYPE_SET).await?;
                    }
                    break;
                }
            }
            let result = result.unwrap_or_default();
            if store {
                let count = result.len() as i64;
                store_set(context, &a[1], &result).await?;
                Ok(Reply::Integer(count))
            } else {
                Ok(Reply::Set(result.into_iter().map(Reply::Bulk).collect()))
            }
        }
        "sintercard" => sintercard(context, a).await,
        "sscan" => {
            let of = ScanOf { kind: TYPE_SET, tag: b"", value: None };
            scan_collection(context, key, &a[2..], of).await
        }
        _ => error(&format!("ERR unhandled set command '{name}'")),
    }
}

/// SINTERCARD numkeys key... [LIMIT limit]: the size of the intersection, counted up to the
/// limit (0: no limit).
async fn sintercard(context: &mut Context<'_>, a: &[Vec<u8>]) -> Outcome<Reply> {
    let count = parse_integer(&a[1]).filter(|&count| count >= 1);
    let Some(count) = count.and_then(|count| usize::try_from(count).ok()) else {
        return error("ERR numkeys should be greater than 0");
    };
    if count > a.len() - 2 {
        return error("ERR Number of keys can't be greater than number of args");
    }
    let mut limit = 0;
    let mut options = a[2 + count..].iter();
    while let Some(option) = options.next() {
        let value = options.next();
        match (upper(option).as_slice(), value) {
            (b"LIMIT", Some(value)) => {
                let parsed = parse_integer(value).and_then(|limit| u64::try_from(limit).ok());
                let Some(parsed) = parsed else { return error("ERR LIMIT can't be negative") };
                limit = parsed;
            }
            _ => return error(super::SYNTAX),
        }
    }
    // Every key's type is checked, even after an empty set, as Redis does.
    let mut sets = Vec::with_capacity(count);
    for key in &a[2..2 + count] {
        sets.push(members(context, key).await?);
    }
    sets.sort_by_key(BTreeSet::len);
    let (smallest, others) = sets.split_first().expect("at least one key");
    let mut found = 0;
    for member in smallest {
        if others.iter().all(|set| set.contains(member)) {
            found += 1;
            if found == limit {
                break;
            }
        }
    }
    Ok(Reply::Integer(found as i64))
}
