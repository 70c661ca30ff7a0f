//! Sorted sets: ZADD ZCARD ZSCORE ZMSCORE ZINCRBY ZREM ZRANGE (BYSCORE, BYLEX, REV, LIMIT)
//! ZRANGESTORE ZRANGEBYSCORE ZREVRANGEBYSCORE ZRANGEBYLEX ZREVRANGEBYLEX ZREVRANGE ZRANK ZREVRANK
//! ZCOUNT ZLEXCOUNT ZPOPMIN ZPOPMAX ZMPOP ZREMRANGEBYRANK ZREMRANGEBYSCORE ZREMRANGEBYLEX ZSCAN,
//! and the non-blocking halves of BZPOPMIN BZPOPMAX BZMPOP (the server waits and retries).
//! Two elements per member: `'m' member -> score (f64 bits LE)` and
//! `'o' [sortable score] member -> empty`, so members sort by (score, member) as in Redis.
//! Ranges (by rank, score or lex) are parsed and selected in `zsets_range`.

use super::zsets_range::{Range, RangeKind, RangeRequest};
use super::{check_element, elements, error, float, load_or_new, pop_count, MultiplePop};
use super::{scan_collection, store_collection, upper, zsets_algebra, ScanOf, SYNTAX};
use crate::layout::{self, Metadata, TYPE_ZSET};
use crate::resp::Reply;
use crate::store::{Context, Effect, Outcome};

const TAG_MEMBER: u8 = b'm';
const TAG_ORDER: u8 = b'o';

fn member_key(key: &[u8], metadata: &Metadata, member: &[u8]) -> Vec<u8> {
    let mut sub = vec![TAG_MEMBER];
    sub.extend_from_slice(member);
    layout::sub_key(key, metadata.generation, &sub)
}

fn order_key(key: &[u8], metadata: &Metadata, score: f64, member: &[u8]) -> Vec<u8> {
    let mut sub = vec![TAG_ORDER];
    sub.extend_from_slice(&layout::sortable_score(score));
    sub.extend_from_slice(member);
    layout::sub_key(key, metadata.generation, &sub)
}

async fn score_of(
    context: &Context<'_>,
    key: &[u8],
    metadata: &Metadata,
    member: &[u8],
) -> Outcome<Option<f64>> {
    let stored = context.get_raw(&member_key(key, metadata, member)).await?;
    Ok(stored.and_then(|bytes| <[u8; 8]>::try_from(bytes.as_slice()).ok()).map(f64::from_le_bytes))
}

/// A member record's value (a score's f64 bits) as ZSCAN replies it; `None` if it is not one.
fn stored_score_text(stored: Vec<u8>) -> Option<Vec<u8>> {
    let bits = <[u8; 8]>::try_from(stored.as_slice()).ok()?;
    Some(crate::resp::format_double(f64::from_le_bytes(bits)).into_bytes())
}

/// Sets `member`'s score (replacing its old position).
fn put(
    context: &mut Context<'_>,
    key: &[u8],
    metadata: &Metadata,
    member: &[u8],
    old: Option<f64>,
    score: f64,
) {
    if let Some(old) = old {
        context.delete_raw(order_key(key, metadata, old, member));
    }
    context.put_raw(member_key(key, metadata, member), score.to_le_bytes().to_vec());
    context.put_raw(order_key(key, metadata, score, member), Vec::new());
}

fn remove(context: &mut Context<'_>, key: &[u8], metadata: &Metadata, member: &[u8], score: f64) {
    context.delete_raw(member_key(key, metadata, member));
    context.delete_raw(order_key(key, metadata, score, member));
}

/// Every member of the sorted set described by `metadata`, with its score, by (score, member).
pub(super) async fn scored(
    context: &Context<'_>,
    key: &[u8],
    metadata: &Metadata,
) -> Outcome<Vec<(Vec<u8>, f64)>> {
    let records = elements(context, key, metadata, &[TAG_ORDER]).await?;
    Ok(records
        .into_iter()
        .filter(|(sub, _)| sub.len() >= 8)
        .map(|(sub, _)| {
            let score = layout::score_from_sortable(sub[..8].try_into().expect("8 bytes"));
            (sub[8..].to_vec(), score)
        })
        .collect())
}

/// Every member with its score, by (score, member).
async fn ordered(
    context: &mut Context<'_>,
    key: &[u8],
) -> Outcome<(Option<Metadata>, Vec<(Vec<u8>, f64)>)> {
    let Some(metadata) = context.meta_of(key, TYPE_ZSET).await? else {
        return Ok((None, Vec::new()));
    };
    let members = scored(context, key, &metadata).await?;
    Ok((Some(metadata), members))
}

/// Removes up to `count` of the lowest-scoring (`highest`: highest-scoring) members, in the
/// order popped; `None` if the key is absent (a sorted set is never stored empty).
async fn pop(
    context: &mut Context<'_>,
    key: &[u8],
    highest: bool,
    count: usize,
) -> Outcome<Option<Vec<(Vec<u8>, f64)>>> {
    let (metadata, mut members) = ordered(context, key).await?;
    let Some(mut metadata) = metadata else { return Ok(None) };
    if highest {
        members.reverse();
    }
    members.truncate(count);
    if members.is_empty() {
        return Ok(Some(members));
    }
    for (member, score) in &members {
        remove(context, key, &metadata, member, *score);
    }
    metadata.count -= members.len() as u64;
    store_collection(context, key, &mut metadata);
    Ok(Some(members))
}

/// Replaces whatever is at `key` with a sorted set of `members` (distinct), or deletes it when
/// there are none (ZRANGESTORE, ZUNIONSTORE...).
pub(super) async fn store_zset(
    context: &mut Context<'_>,
    key: &[u8],
    members: &[(Vec<u8>, f64)],
) -> Outcome<()> {
    if let Some(old) = context.meta(key).await? {
        context.delete_key(key, &old);
    }
    if members.is_empty() {
        return Ok(());
    }
    let mut metadata = context.new_meta(TYPE_ZSET);
    for (member, score) in members {
        put(context, key, &metadata, member, None, *score);
    }
    metadata.count = members.len() as u64;
    store_collection(context, key, &mut metadata);
    context.effects.push(Effect::Ready { key: key.to_vec() });
    Ok(())
}

pub(super) fn with_scores(items: Vec<(Vec<u8>, f64)>, scores: bool) -> Reply {
    if scores {
        Reply::Pairs(items.into_iter().map(|(m, s)| (Reply::Bulk(m), Reply::Double(s))).collect())
    } else {
        Reply::bulks(items.into_iter().map(|(member, _)| member))
    }
}

pub async fn run(context: &mut Context<'_>, name: &str, a: &[Vec<u8>]) -> Outcome<Reply> {
    let key = &a[1];
    match name {
        "zadd" => zadd(context, a).await,
        "zincrby" => {
            let step = float(&a[2])?;
            check_element(&a[3])?;
            let (mut metadata, _) = load_or_new(context, key, TYPE_ZSET).await?;
            let old = score_of(context, key, &metadata, &a[3]).await?;
            let score = old.unwrap_or(0.0) + step;
            if score.is_nan() {
                return error("ERR resulting score is not a number (NaN)");
            }
            if old.is_none() {
                metadata.count += 1;
                context.effects.push(Effect::Ready { key: key.to_vec() });
            }
            put(context, key, &metadata, &a[3], old, score);
            store_collection(context, key, &mut metadata);
            Ok(Reply::Double(score))
        }
        "zcard" => Ok(Reply::Integer(
            context.meta_of(key, TYPE_ZSET).await?.map_or(0, |metadata| metadata.count as i64),
        )),
        "zscore" | "zmscore" => {
            let metadata = context.meta_of(key, TYPE_ZSET).await?;
            let mut scores = Vec::new();
            for member in &a[2..] {
                let score = match &metadata {
                    Some(metadata) => score_of(context, key, metadata, member).await?,
                    None => None,
                };
                scores.push(score.map_or(Reply::Null, Reply::Double));
            }
            Ok(if name == "zscore" { scores.remove(0) } else { Reply::Array(scores) })
        }
        "zrem" => {
            let Some(mut metadata) = context.meta_of(key, TYPE_ZSET).await? else {
                return Ok(Reply::Integer(0));
            };
            let mut removed = 0;
            for member in &a[2..] {
                if let Some(score) = score_of(context, key, &metadata, member).await? {
                    remove(context, key, &metadata, member, score);
                    metadata.count -= 1;
                    removed += 1;
                }
            }
            if removed > 0 {
                store_collection(context, key, &mut metadata);
            }
            Ok(Reply::Integer(removed))
        }
        "zrank" | "zrevrank" => {
            let with_score = match a.get(3) {
                Some(option) if upper(option) == b"WITHSCORE" && a.len() == 4 => true,
                Some(_) => return error(SYNTAX),
                None => false,
            };
            let (_, mut members) = ordered(context, key).await?;
            if name == "zrevrank" {
                members.reverse();
            }
            let Some(rank) = members.iter().position(|(member, _)| *member == a[2]) else {
                return Ok(if with_score { Reply::NullArray } else { Reply::Null });
            };
            Ok(if with_score {
                Reply::Array(vec![Reply::Integer(rank as i64), Reply::Double(members[rank].1)])
            } else {
                Reply::Integer(rank as i64)
            })
        }
        "zcount" | "zlexcount" => {
            let kind = if name == "zcount" { RangeKind::Score } else { RangeKind::Lex };
            let range = Range::parse(kind, &a[2], &a[3])?;
            let (_, members) = ordered(context, key).await?;
            let count = members.iter().filter(|(member, s)| range.contains(member, *s)).count();
            Ok(Reply::Integer(count as i64))
        }
        "zrange" | "zrevrange" | "zrangebyscore" | "zrevrangebyscore" | "zrangebylex"
        | "zrevrangebylex" => {
            let request = RangeRequest::parse(name, &a[2..])?;
            let (_, members) = ordered(context, key).await?;
            Ok(with_scores(request.select(members), request.scores))
        }
        "zunion" | "zinter" | "zdiff" | "zunionstore" | "zinterstore" | "zdiffstore"
        | "zintercard" => zsets_algebra::run(context, name, a).await,
        "zrangestore" => {
            let request = RangeRequest::parse(name, &a[3..])?;
            let (_, members) = ordered(context, &a[2]).await?;
            let selected = request.select(members);
            store_zset(context, &a[1], &selected).await?;
            Ok(Reply::Integer(selected.len() as i64))
        }
        "zpopmin" | "zpopmax" => {
            let count = pop_count(a)?.map_or(1, |count| count as usize);
            let members = pop(context, key, name == "zpopmax", count).await?.unwrap_or_default();
            if a.len() == 2 {
                // Without a count: a flat [member, score] in both protocols.
                let mut flat = Vec::new();
                for (member, score) in members {
                    flat.push(Reply::Bulk(member));
                    flat.push(Reply::Double(score));
                }
                return Ok(Reply::Array(flat));
            }
            Ok(with_scores(members, true))
        }
        "bzpopmin" | "bzpopmax" => {
            // The timeout comes last: the server waits, this is one try.
            for key in &a[1..a.len() - 1] {
                let popped = pop(context, key, name == "bzpopmax", 1).await?;
                if let Some((member, score)) = popped.and_then(|popped| popped.into_iter().next()) {
                    let reply =
                        vec![Reply::Bulk(key.clone()), Reply::Bulk(member), Reply::Double(score)];
                    return Ok(Reply::Array(reply));
                }
            }
            Ok(Reply::NullArray)
        }
        "zmpop" | "bzmpop" => {
            // BZMPOP's timeout comes first: the server waits, this is one try.
            let position = if name == "zmpop" { 1 } else { 2 };
            let request = MultiplePop::parse(a, position, [b"MIN", b"MAX"])?;
            let count = usize::try_from(request.count).unwrap_or(usize::MAX);
            for key in request.keys {
                if let Some(popped) = pop(context, key, !request.first_end, count).await? {
                    // [key, [[member, score]...]]: nested in RESP2 too, unlike ZPOPMIN's.
                    let pairs = popped
                        .into_iter()
                        .map(|(member, score)| {
                            Reply::Array(vec![Reply::Bulk(member), Reply::Double(score)])
                        })
                        .collect();
                    return Ok(Reply::Array(vec![Reply::Bulk(key.clone()), Reply::Array(pairs)]));
                }
            }
            Ok(Reply::NullArray)
        }
        "zremrangebyrank" | "zremrangebyscore" | "zremrangebylex" => {
            let kind = match name {
                "zremrangebyrank" => RangeKind::Rank,
                "zremrangebyscore" => RangeKind::Score,
                _ => RangeKind::Lex,
            };
            let range = Range::parse(kind, &a[2], &a[3])?;
            let (metadata, members) = ordered(context, key).await?;
            let selected = range.select(members, false, None);
            let Some(mut metadata) = metadata else { return Ok(Reply::Integer(0)) };
            for (member, score) in &selected {
                remove(context, key, &metadata, member, *score);
            }
            metadata.count -= selected.len() as u64;
            if !selected.is_empty() {
                store_collection(context, key, &mut metadata);
            }
            Ok(Reply::Integer(selected.len() as i64))
        }
        "zscan" => {
            let of = ScanOf { kind: TYPE_ZSET, tag: &[TAG_MEMBER], value: Some(stored_score_text) };
            scan_collection(context, key, &a[2..], of).await
        }
        _ => error(&format!("ERR unhandled sorted set command '{name}'")),
    }
}

async fn zadd(context: &mut Context<'_>, a: &[Vec<u8>]) -> Outcome<Reply> {
    let key = &a[1];
    let (mut nx, mut xx, mut gt, mut lt, mut ch, mut incr) =
        (false, false, false, false, false, false);
    let mut position = 2;
    while position < a.len() {
        match upper(&a[position]).as_slice() {
            b"NX" => nx = true,
            b"XX" => xx = true,
            b"GT" => gt = true,
            b"LT" => lt = true,
            b"CH" => ch = true,
            b"INCR" => incr = true,
            _ => break,
        }
        position += 1;
    }
    let pairs = &a[position..];
    if pairs.is_empty() || pairs.len() & 1 == 1 {
        return error(SYNTAX);
    }
    if nx && xx {
        return error("ERR XX and NX options at the same time are not compatible");
    }
    if (gt && lt) || (nx && (gt || lt)) {
        return error("ERR GT, LT, and/or NX options at the same time are not compatible");
    }
    if incr && pairs.len() > 2 {
        return error("ERR INCR option supports a single increment-element pair");
    }
    let mut parsed = Vec::new();
    for pair in pairs.chunks(2) {
        parsed.push((float(&pair[0])?, &pair[1]));
        check_element(&pair[1])?;
    }
    let (mut metadata, _) = load_or_new(context, key, TYPE_ZSET).await?;
    let (mut added, mut changed) = (0, 0);
    let mut incr_result = None;
    for (score, member) in parsed {
        let old = score_of(context, key, &metadata, member).await?;
        let new = if incr { old.unwrap_or(0.0) + score } else { score };
        if new.is_nan() {
            return error("ERR resulting score is not a number (NaN)");
        }
        let allowed = match old {
            None => !xx,
            Some(old) => !nx && (!gt || new > old) && (!lt || new < old),
        };
        if !allowed {
            continue;
        }
        incr_result = Some(new);
        match old {
            None => {
                added += 1;
                metadata.count += 1;
                put(context, key, &metadata, member, None, new);
            }
            Some(old) if old != new => {
                changed += 1;
                put(context, key, &metadata, member, Some(old), new);
            }
            Some(_) => {}
        }
    }
    if added + changed > 0 {
        store_collection(context, key, &mut metadata);
    }
    if added > 0 {
        context.effects.push(Effect::Ready { key: key.to_vec() });
    }
    if incr {
        return Ok(incr_result.map_or(Reply::Null, Reply::Double));
    }
    Ok(Reply::Integer(if ch { added + changed } else { added }))
}
