//! Strings: GET SET (EX PX EXAT PXAT NX XX GET KEEPTTL IFEQ) SETNX SETEX PSETEX MGET MSET MSETNX
//! GETSET GETDEL GETEX APPEND STRLEN GETRANGE SETRANGE INCR DECR INCRBY DECRBY INCRBYFLOAT.

use super::{error, float, format_human, integer, parse_float, parse_integer, upper, wrong_type};
use super::{NOT_FLOAT, NOT_INTEGER, STRING_BYTES_MAX, SYNTAX};
use crate::layout::{Metadata, TYPE_STRING};
use crate::resp::Reply;
use crate::store::{Context, Outcome};
use std::future::Future;

const TOO_BIG: &str = "ERR string exceeds maximum allowed size (proto-max-bulk-len)";

/// The live string at `key` (WRONGTYPE for another type).
fn load<'s, 'a>(
    context: &'s mut Context<'a>,
    key: &'s [u8],
) -> impl Future<Output = Outcome<Option<Metadata>>> + use<'s, 'a> {
    context.meta_of(key, TYPE_STRING)
}

/// Writes `value` at `key` (already loaded), replacing whatever was there. `deadline_ms`: the new
/// deadline (0: none); `keep`: keep the existing deadline instead.
fn store(
    context: &mut Context<'_>,
    key: &[u8],
    existing: Option<&Metadata>,
    value: Vec<u8>,
    deadline_ms: u64,
    keep: bool,
) -> Outcome<()> {
    if value.len() > STRING_BYTES_MAX {
        return error(TOO_BIG);
    }
    let mut metadata = match existing {
        // Not the old value: it is replaced (and may be large).
        Some(old) if old.kind == TYPE_STRING => old.without_value(),
        Some(old) => {
            // Another type is overwritten: its elements go.
            context.delete_key(key, old);
            context.new_meta(TYPE_STRING)
        }
        None => context.new_meta(TYPE_STRING),
    };
    metadata.value = value;
    if !keep {
        metadata.deadline_ms = deadline_ms;
    }
    if metadata.is_expired(context.now_ms) {
        // A deadline already past: the key is gone at once, as in Redis.
        if existing.is_some() {
            context.delete_key(key, &metadata);
        }
        return Ok(());
    }
    context.set_meta(key, &mut metadata);
    Ok(())
}

/// An expiry option's deadline: `EX s`, `PX ms`, `EXAT s`, `PXAT ms`.
fn deadline(now_ms: u64, option: &[u8], amount: &[u8], command: &str) -> Outcome<u64> {
    let value = integer(amount)?;
    let invalid = || error(&format!("ERR invalid expire time in '{command}' command"));
    if value <= 0 {
        return invalid();
    }
    let value = value as u64;
    let deadline = match option {
        b"EX" => value.checked_mul(1000).and_then(|ms| ms.checked_add(now_ms)),
        b"PX" => value.checked_add(now_ms),
        b"EXAT" => value.checked_mul(1000),
        _ => Some(value),
    };
    match deadline {
        Some(deadline) if deadline <= i64::MAX as u64 => Ok(deadline),
        _ => invalid(),
    }
}

pub async fn run(context: &mut Context<'_>, name: &str, a: &[Vec<u8>]) -> Outcome<Reply> {
    match name {
        "get" => Ok(Reply::optional(load(context, &a[1]).await?.map(|m| m.value))),
        "mget" => {
            let mut values = Vec::with_capacity(a.len() - 1);
            for key in &a[1..] {
                let value = match context.meta(key).await? {
                    Some(metadata) if metadata.kind == TYPE_STRING => Reply::Bulk(metadata.value),
                    _ => Reply::Null,
                };
                values.push(value);
            }
            Ok(Reply::Array(values))
        }
        "set" => set(context, a).await,
        "setnx" => {
            let existing = context.meta(&a[1]).await?;
            if existing.is_some() {
                return Ok(Reply::Integer(0));
            }
            store(context, &a[1], None, a[2].clone(), 0, false)?;
            Ok(Reply::Integer(1))
        }
        "setex" | "psetex" => {
            let option: &[u8] = if name == "setex" { b"EX" } else { b"PX" };
            let deadline_ms = deadline(context.now_ms, option, &a[2], name)?;
            let existing = context.meta(&a[1]).await?;
            store(context, &a[1], existing.as_ref(), a[3].clone(), deadline_ms, false)?;
            Ok(Reply::ok())
        }
        "mset" | "msetnx" => {
            if a.len() & 1 == 0 {
                return error(&format!("ERR wrong number of arguments for '{name}' command"));
            }
            let mut existing = Vec::new();
            for pair in a[1..].chunks(2) {
                existing.push(context.meta(&pair[0]).await?);
            }
            if name == "msetnx" && existing.iter().any(Option::is_some) {
                return Ok(Reply::Integer(0));
            }
            for pair in a[1..].chunks(2) {
                // Reload: an earlier pair may have written the same key.
                let current = context.meta(&pair[0]).await?;
                store(context, &pair[0], current.as_ref(), pair[1].clone(), 0, false)?;
            }
            Ok(if name == "mset" { Reply::ok() } else { Reply::Integer(1) })
        }
        "getset" => {
            let old = load(context, &a[1]).await?;
            store(context, &a[1], old.as_ref(), a[2].clone(), 0, false)?;
            Ok(Reply::optional(old.map(|m| m.value)))
        }
        "getdel" => {
            let old = load(context, &a[1]).await?;
            if let Some(metadata) = &old {
                context.delete_key(&a[1], metadata);
            }
            Ok(Reply::optional(old.map(|m| m.value)))
        }
        "getex" => getex(context, a).await,
        "append" => {
            let mut old = load(context, &a[1]).await?;
            let mut value = old.as_mut().map(|m| std::mem::take(&mut m.value)).unwrap_or_default();
            if value.len() + a[2].len() > STRING_BYTES_MAX {
                return error(TOO_BIG);
            }
            value.extend_from_slice(&a[2]);
            let len = value.len();
            store(context, &a[1], old.as_ref(), value, 0, true)?;
            Ok(Reply::Integer(len as i64))
        }
        "strlen" => {
            Ok(Reply::Integer(load(context, &a[1]).await?.map_or(0, |m| m.value.len() as i64)))
        }
        "getrange" => {
            let (start, end) = (integer(&a[2])?, integer(&a[3])?);
            let value = load(context, &a[1]).await?.map(|m| m.value).unwrap_or_default();
            Ok(Reply::Bulk(substring(&value, start, end).to_vec()))
        }
        "setrange" => {
            let offset = integer(&a[2])?;
            if offset < 0 {
                return error("ERR offset is out of range");
            }
            let offset = offset as usize;
            let mut old = load(context, &a[1]).await?;
            let patch = &a[3];
            let mut value = old.as_mut().map(|m| std::mem::take(&mut m.value)).unwrap_or_default();
            if patch.is_empty() {
                return Ok(Reply::Integer(value.len() as i64));
            }
            if offset.saturating_add(patch.len()) > STRING_BYTES_MAX {
                return error("ERR string exceeds maximum allowed size (proto-max-bulk-len)");
            }
            if value.len() < offset + patch.len() {
                value.resize(offset + patch.len(), 0);
            }
            value[offset..offset + patch.len()].copy_from_slice(patch);
            let len = value.len();
            store(context, &a[1], old.as_ref(), value, 0, true)?;
            Ok(Reply::Integer(len as i64))
        }
        "incr" | "decr" | "incrby" | "decrby" => {
            let step = match name {
                "incr" => 1,
                "decr" => -1,
                "incrby" => integer(&a[2])?,
                _ => integer(&a[2])?.checked_neg().map_or_else(|| error(NOT_INTEGER), Ok)?,
            };
            let old = load(context, &a[1]).await?;
            let current = match &old {
                Some(metadata) => {
                    parse_integer(&metadata.value).map_or_else(|| error(NOT_INTEGER), Ok)?
                }
                None => 0,
            };
            let Some(next) = current.checked_add(step) else {
                return error("ERR increment or decrement would overflow");
            };
            store(context, &a[1], old.as_ref(), next.to_string().into_bytes(), 0, true)?;
            Ok(Reply::Integer(next))
        }
        "incrbyfloat" => {
            let step = float(&a[2])?;
            let old = load(context, &a[1]).await?;
            let current = match &old {
                Some(metadata) => {
                    parse_float(&metadata.value).map_or_else(|| error(NOT_FLOAT), Ok)?
                }
                None => 0.0,
            };
            let next = current + step;
            if !next.is_finite() {
                return error("ERR increment would produce NaN or Infinity");
            }
            let text = format_human(next).into_bytes();
            store(context, &a[1], old.as_ref(), text.clone(), 0, true)?;
            Ok(Reply::Bulk(text))
        }
        _ => error(&format!("ERR unhandled string command '{name}'")),
    }
}

/// Redis's GETRANGE: inclusive `start..=end`, negative from the end, clamped.
fn substring(value: &[u8], start: i64, end: i64) -> &[u8] {
    let len = value.len() as i64;
    if len == 0 || (start < 0 && end < 0 && start > end) {
        return &[];
    }
    let start = if start < 0 { (len + start).max(0) } else { start };
    let end = if end < 0 { (len + end).max(0) } else { end.min(len - 1) };
    if start > end || start >= len {
        return &[];
    }
    &value[start as usize..=end as usize]
}

async fn set(context: &mut Context<'_>, a: &[Vec<u8>]) -> Outcome<Reply> {
    let (key, value) = (&a[1], &a[2]);
    let mut condition: Option<Vec<u8>> = None;
    let mut compare: Option<&Vec<u8>> = None;
    let mut get = false;
    let mut expiry: Option<u64> = None;
    let mut keep = false;
    let mut position = 3;
    while position < a.len() {
        let option = upper(&a[position]);
        match option.as_slice() {
            b"NX" | b"XX" if condition.is_none() => condition = Some(option),
            b"IFEQ" if condition.is_none() && position + 1 < a.len() => {
                condition = Some(option);
                compare = Some(&a[position + 1]);
                position += 1;
            }
            b"GET" => get = true,
            b"KEEPTTL" if expiry.is_none() => keep = true,
            b"EX" | b"PX" | b"EXAT" | b"PXAT"
                if expiry.is_none() && !keep && position + 1 < a.len() =>
            {
                expiry = Some(deadline(context.now_ms, &option, &a[position + 1], "set")?);
                position += 1;
            }
            _ => return error(SYNTAX),
        }
        position += 1;
    }
    let existing = context.meta(key).await?;
    if get && existing.as_ref().is_some_and(|m| m.kind != TYPE_STRING) {
        return wrong_type();
    }
    let old_value =
        existing.as_ref().filter(|m| get && m.kind == TYPE_STRING).map(|m| m.value.clone());
    let allowed = match condition.as_deref() {
        Some(b"NX") => existing.is_none(),
        Some(b"XX") => existing.is_some(),
        Some(_) => match &existing {
            Some(metadata) if metadata.kind != TYPE_STRING => return wrong_type(),
            Some(metadata) => Some(&metadata.value) == compare,
            None => false,
        },
        None => true,
    };
    if allowed {
        store(context, key, existing.as_ref(), value.clone(), expiry.unwrap_or(0), keep)?;
    }
    Ok(match (get, allowed) {
        (true, _) => Reply::optional(old_value),
        (false, true) => Reply::ok(),
        (false, false) => Reply::Null,
    })
}

async fn getex(context: &mut Context<'_>, a: &[Vec<u8>]) -> Outcome<Reply> {
    let mut change: Option<u64> = None;
    let mut position = 2;
    while position < a.len() {
        let option = upper(&a[position]);
        match option.as_slice() {
            b"PERSIST" if change.is_none() => change = Some(0),
            b"EX" | b"PX" | b"EXAT" | b"PXAT" if change.is_none() && position + 1 < a.len() => {
                change = Some(deadline(context.now_ms, &option, &a[position + 1], "getex")?);
                position += 1;
            }
            _ => return error(SYNTAX),
        }
        position += 1;
    }
    let Some(metadata) = load(context, &a[1]).await? else { return Ok(Reply::Null) };
    if let Some(deadline_ms) = change {
        if context.is_write() {
            let value = metadata.value.clone();
            store(context, &a[1], Some(&metadata), value, deadline_ms, false)?;
        }
    }
    Ok(Reply::Bulk(metadata.value))
}

#[cfg(test)]
mod tests {
    use super::substring;

    #[test]
    fn getrange_as_redis() {
        let value = b"This is a string";
        assert_eq!(substring(value, 0, 3), b"This");
        assert_eq!(substring(value, -3, -1), b"ing");
        assert_eq!(substring(value, 0, -1), value);
        assert_eq!(substring(value, 10, 100), b"string");
        assert_eq!(substring(value, 5, 3), b"");
        assert_eq!(substring(b"", 0, -1), b"");
    }
}
