//! Hashes: HSET HMSET HSETNX HGET HMGET HDEL HGETALL HKEYS HVALS HLEN HEXISTS HSTRLEN HINCRBY
//! HINCRBYFLOAT HRANDFIELD HSCAN. One element per field: `sub = field`, value = the field's value.

use super::{check_element, elements, error, float, format_human, integer, load_or_new};
use super::{
    parse_float, parse_integer, scan_collection, store_collection, ScanOf, STRING_BYTES_MAX,
};
use super::{random_count, random_picks, remove_elements, upper, SYNTAX};
use crate::layout::{self, TYPE_HASH};
use crate::resp::Reply;
use crate::store::{Context, Outcome};

pub async fn run(context: &mut Context<'_>, name: &str, a: &[Vec<u8>]) -> Outcome<Reply> {
    let key = &a[1];
    match name {
        "hset" | "hmset" => {
            if a.len() & 1 == 1 {
                return error(&format!("ERR wrong number of arguments for '{name}' command"));
            }
            let (mut metadata, _) = load_or_new(context, key, TYPE_HASH).await?;
            let mut added = 0;
            for pair in a[2..].chunks(2) {
                check_element(&pair[0])?;
                if pair[1].len() > STRING_BYTES_MAX {
                    return error("ERR value too large");
                }
                let sub = layout::sub_key(key, metadata.generation, &pair[0]);
                if context.get_raw(&sub).await?.is_none() {
                    added += 1;
                    metadata.count += 1;
                }
                context.put_raw(sub, pair[1].clone());
            }
            store_collection(context, key, &mut metadata);
            Ok(if name == "hset" { Reply::Integer(added) } else { Reply::ok() })
        }
        "hsetnx" => {
            check_element(&a[2])?;
            let (mut metadata, _) = load_or_new(context, key, TYPE_HASH).await?;
            let sub = layout::sub_key(key, metadata.generation, &a[2]);
            if context.get_raw(&sub).await?.is_some() {
                return Ok(Reply::Integer(0));
            }
            context.put_raw(sub, a[3].clone());
            metadata.count += 1;
            store_collection(context, key, &mut metadata);
            Ok(Reply::Integer(1))
        }
        "hget" | "hstrlen" | "hexists" => {
            let value = match context.meta_of(key, TYPE_HASH).await? {
                Some(metadata) => {
                    context.get_raw(&layout::sub_key(key, metadata.generation, &a[2])).await?
                }
                None => None,
            };
            Ok(match name {
                "hget" => Reply::optional(value),
                "hstrlen" => Reply::Integer(value.map_or(0, |value| value.len() as i64)),
                _ => Reply::Integer(i64::from(value.is_some())),
            })
        }
        "hmget" => {
            let metadata = context.meta_of(key, TYPE_HASH).await?;
            let mut values = Vec::new();
            for field in &a[2..] {
                let value = match &metadata {
                    Some(metadata) => {
                        context.get_raw(&layout::sub_key(key, metadata.generation, field)).await?
                    }
                    None => None,
                };
                values.push(Reply::optional(value));
            }
            Ok(Reply::Array(values))
        }
        "hdel" => Ok(Reply::Integer(remove_elements(context, key, TYPE_HASH, &a[2..]).await?)),
        "hlen" => Ok(Reply::Integer(
            context.meta_of(key, TYPE_HASH).await?.map_or(0, |metadata| metadata.count as i64),
        )),
        "hgetall" | "hkeys" | "hvals" => {
            let fields = match context.meta_of(key, TYPE_HASH).await? {
                Some(metadata) => elements(context, key, &metadata, b"").await?,
                None => Vec::new(),
            };
            Ok(match name {
                "hgetall" => Reply::Map(
                    fields.into_iter().map(|(f, v)| (Reply::Bulk(f), Reply::Bulk(v))).collect(),
                ),
                "hkeys" => Reply::bulks(fields.into_iter().map(|(field, _)| field)),
                _ => Reply::bulks(fields.into_iter().map(|(_, value)| value)),
            })
        }
        "hincrby" | "hincrbyfloat" => {
            check_element(&a[2])?;
            let (mut metadata, _) = load_or_new(context, key, TYPE_HASH).await?;
            let sub = layout::sub_key(key, metadata.generation, &a[2]);
            let current = context.get_raw(&sub).await?;
            if current.is_none() {
                metadata.count += 1;
            }
            let (text, reply) = if name == "hincrby" {
                let step = integer(&a[3])?;
                let value = match &current {
                    Some(bytes) => parse_integer(bytes)
                        .map_or_else(|| error("ERR hash value is not an integer"), Ok)?,
                    None => 0,
                };
                let Some(next) = value.checked_add(step) else {
                    return error("ERR increment or decrement would overflow");
                };
                (next.to_string().into_bytes(), Reply::Integer(next))
            } else {
                let step = float(&a[3])?;
                let value = match &current {
                    Some(bytes) => parse_float(bytes)
                        .map_or_else(|| error("ERR hash value is not a float"), Ok)?,
                    None => 0.0,
                };
                let next = value + step;
                if !next.is_finite() {
                    return error("ERR increment would produce NaN or Infinity");
                }
                let text = format_human(next).into_bytes();
                (text.clone(), Reply::Bulk(text))
            };
            context.put_raw(sub, text);
            store_collection(context, key, &mut metadata);
            Ok(reply)
        }
        "hrandfield" => hrandfield(context, a).await,
        "hscan" => {
            let of = ScanOf { kind: TYPE_HASH, tag: b"", value: Some(Some) };
            scan_collection(context, key, &a[2..], of).await
        }
        _ => error(&format!("ERR unhandled hash command '{name}'")),
    }
}

/// HRANDFIELD key [count [WITHVALUES]]: one random field (or nil); with a count, distinct fields
/// (a negative count: that many draws, repeats allowed), with their values if asked.
async fn hrandfield(context: &mut Context<'_>, a: &[Vec<u8>]) -> Outcome<Reply> {
    let key = &a[1];
    let Some(count) = a.get(2) else {
        let Some(metadata) = context.meta_of(key, TYPE_HASH).await? else {
            return Ok(Reply::Null);
        };
        let fields = elements(context, key, &metadata, b"").await?;
        let mut picked = random_picks(context, fields, 1);
        return Ok(Reply::optional(picked.pop().map(|(field, _)| field)));
    };
    let count = random_count(count)?;
    let values = match a.get(3) {
        Some(option) if a.len() == 4 && upper(option) == b"WITHVALUES" => true,
        Some(_) => return error(SYNTAX),
        None => false,
    };
    // Redis replies 2 items per field in RESP2 and counts them in a long.
    if values && !(-(i64::MAX / 2)..=i64::MAX / 2).contains(&count) {
        return error("ERR value is out of range");
    }
    let fields = match context.meta_of(key, TYPE_HASH).await? {
        Some(metadata) => elements(context, key, &metadata, b"").await?,
        None => Vec::new(),
    };
    let picked = random_picks(context, fields, count);
    Ok(if values {
        Reply::Pairs(picked.into_iter().map(|(f, v)| (Reply::Bulk(f), Reply::Bulk(v))).collect())
    } else {
        Reply::bulks(picked.into_iter().map(|(field, _)| field))
    })
}
