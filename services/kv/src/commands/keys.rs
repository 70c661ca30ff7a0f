//! Keys: DEL UNLINK EXISTS TOUCH TYPE EXPIRE PEXPIRE EXPIREAT PEXPIREAT (NX XX GT LT) TTL PTTL
//! EXPIRETIME PEXPIRETIME PERSIST RENAME RENAMENX COPY, and the shard-local halves of KEYS, SCAN,
//! RANDOMKEY and DBSIZE (the server fans them out and merges).

use super::{error, integer, upper, KEYS_MAX, NOT_INTEGER, SYNTAX};
use crate::glob;
use crate::layout::{self, Metadata, TYPE_LIST, TYPE_STRING, TYPE_ZSET};
use crate::resp::Reply;
use crate::store::{Context, Effect, Outcome};

/// Most keys one SCAN call examines in a shard.
pub const SCAN_COUNT_MAX: usize = 100_000;
/// Elements copied by one RENAME/COPY of a collection.
pub const COPY_ELEMENTS_MAX: usize = 1 << 20;

pub async fn run(context: &mut Context<'_>, name: &str, a: &[Vec<u8>]) -> Outcome<Reply> {
    match name {
        "del" | "unlink" => {
            let mut deleted = 0;
            for key in &a[1..] {
                if let Some(metadata) = context.meta(key).await? {
                    context.delete_key(key, &metadata);
                    deleted += 1;
                }
            }
            Ok(Reply::Integer(deleted))
        }
        "exists" | "touch" => {
            let mut found = 0;
            for key in &a[1..] {
                found += i64::from(context.meta(key).await?.is_some());
            }
            Ok(Reply::Integer(found))
        }
        "type" => {
            let kind = context.meta(&a[1]).await?.map_or(0, |m| m.kind);
            Ok(Reply::Simple(layout::type_name(kind).into()))
        }
        "expire" | "pexpire" | "expireat" | "pexpireat" => expire(context, name, a).await,
        "ttl" | "pttl" | "expiretime" | "pexpiretime" => {
            let Some(metadata) = context.meta(&a[1]).await? else { return Ok(Reply::Integer(-2)) };
            if metadata.deadline_ms == 0 {
                return Ok(Reply::Integer(-1));
            }
            let remaining = metadata.deadline_ms.saturating_sub(context.now_ms);
            let value = match name {
                "ttl" => (remaining + 500) / 1000,
                "pttl" => remaining,
                "expiretime" => (metadata.deadline_ms + 500) / 1000,
                _ => metadata.deadline_ms,
            };
            Ok(Reply::Integer(value.min(i64::MAX as u64) as i64))
        }
        "persist" => {
            let Some(mut metadata) = context.meta(&a[1]).await? else {
                return Ok(Reply::Integer(0));
            };
            if metadata.deadline_ms == 0 {
                return Ok(Reply::Integer(0));
            }
            metadata.deadline_ms = 0;
            context.set_meta(&a[1], &mut metadata);
            Ok(Reply::Integer(1))
        }
        "rename" | "renamenx" => {
            let (source, target) = (&a[1], &a[2]);
            let Some(metadata) = context.meta(source).await? else {
                return error("ERR no such key");
            };
            let existing = context.meta(target).await?;
            if source == target {
                return Ok(if name == "rename" { Reply::ok() } else { Reply::Integer(0) });
            }
            if name == "renamenx" && existing.is_some() {
                return Ok(Reply::Integer(0));
            }
            copy_value(context, source, &metadata, target, existing.as_ref(), true).await?;
            context.delete_key(source, &metadata);
            Ok(if name == "rename" { Reply::ok() } else { Reply::Integer(1) })
        }
        "copy" => {
            let (source, target) = (&a[1], &a[2]);
            let mut replace = false;
            let mut position = 3;
            while position < a.len() {
                match upper(&a[position]).as_slice() {
                    b"REPLACE" => replace = true,
                    b"DB" if position + 1 < a.len() => {
                        if integer(&a[position + 1])? != 0 {
                            return error("ERR DB index is out of range");
                        }
                        position += 1;
                    }
                    _ => return error(SYNTAX),
                }
                position += 1;
            }
            if source == target {
                return error("ERR source and destination objects are the same");
            }
            let Some(metadata) = context.meta(source).await? else {
                return Ok(Reply::Integer(0));
            };
            let existing = context.meta(target).await?;
            if existing.is_some() && !replace {
                return Ok(Reply::Integer(0));
            }
            copy_value(context, source, &metadata, target, existing.as_ref(), true).await?;
            Ok(Reply::Integer(1))
        }
        "keys" => {
            let pattern = &a[1];
            let records = context.scan_prefix(&[layout::PREFIX_METADATA], KEYS_MAX + 1).await?;
            if records.len() > KEYS_MAX {
                return error("ERR too many keys: use SCAN");
            }
            let mut keys = Vec::new();
            for (record, value) in records {
                let Some((_, key)) = layout::parse_metadata_key(&record) else { continue };
                if glob::matches(pattern, key) && is_live(&value, context.now_ms) {
                    keys.push(key.to_vec());
                }
            }
            Ok(Reply::bulks(keys))
        }
        "scan" => scan(context, a).await,
        "randomkey" => {
            let start = context.random() % (1 << layout::POSITION_BITS);
            for (from, to) in [(start, None), (0, Some(start))] {
                let begin = layout::metadata_key_at(from);
                let end = to.map(layout::metadata_key_at).unwrap_or_else(|| vec![b'n']);
                let mut cursor = begin;
                loop {
                    let records = context.scan_raw(&cursor, Some(&end), 64).await?;
                    for (record, value) in &records {
                        if is_live(value, context.now_ms) {
                            if let Some((_, key)) = layout::parse_metadata_key(record) {
                                return Ok(Reply::bulk(key));
                            }
                        }
                    }
                    let Some((last, _)) = records.last() else { break };
                    cursor = last.clone();
                    cursor.push(0);
                    if records.len() < 64 {
                        break;
                    }
                }
            }
            Ok(Reply::Null)
        }
        "dbsize" => Ok(Reply::Integer(context.key_count().await? as i64)),
        _ => error(&format!("ERR unhandled key command '{name}'")),
    }
}

fn is_live(metadata: &[u8], now_ms: u64) -> bool {
    Metadata::decode(metadata).is_ok_and(|metadata| !metadata.is_expired(now_ms))
}

async fn expire(context: &mut Context<'_>, name: &str, a: &[Vec<u8>]) -> Outcome<Reply> {
    let amount = integer(&a[2])?;
    let (mut nx, mut xx, mut gt, mut lt) = (false, false, false, false);
    for option in &a[3..] {
        match upper(option).as_slice() {
            b"NX" => nx = true,
            b"XX" => xx = true,
            b"GT" => gt = true,
            b"LT" => lt = true,
            other => {
                return error(&format!("ERR Unsupported option {}", String::from_utf8_lossy(other)))
            }
        }
    }
    if nx && (xx || gt || lt) {
        return error("ERR NX and XX, GT or LT options at the same time are not compatible");
    }
    if gt && lt {
        return error("ERR GT and LT options at the same time are not compatible");
    }
    let invalid = || error(&format!("ERR invalid expire time in '{name}' command"));
    let base: i128 = if name.ends_with("at") { 0 } else { i128::from(context.now_ms) };
    let scale: i128 = if name.starts_with('p') { 1 } else { 1000 };
    let deadline = base + i128::from(amount) * scale;
    if deadline > i128::from(i64::MAX) || deadline < -i128::from(i64::MAX) {
        return invalid();
    }
    let Some(mut metadata) = context.meta(&a[1]).await? else { return Ok(Reply::Integer(0)) };
    let current = metadata.deadline_ms;
    // No expiry counts as an infinite deadline.
    let allowed = if nx {
        current == 0
    } else if xx && current == 0 {
        false
    } else if gt {
        current != 0 && deadline > i128::from(current)
    } else if lt {
        current == 0 || deadline < i128::from(current)
    } else {
        true
    };
    if !allowed {
        return Ok(Reply::Integer(0));
    }
    if deadline <= i128::from(context.now_ms) {
        context.delete_key(&a[1], &metadata);
        return Ok(Reply::Integer(1));
    }
    metadata.deadline_ms = deadline as u64;
    context.set_meta(&a[1], &mut metadata);
    Ok(Reply::Integer(1))
}

/// Writes a copy of `source`'s value (metadata and elements) at `target`, replacing `existing`.
async fn copy_value(
    context: &mut Context<'_>,
    source: &[u8],
    metadata: &Metadata,
    target: &[u8],
    existing: Option<&Metadata>,
    keep_deadline: bool,
) -> Outcome<()> {
    if let Some(existing) = existing {
        context.delete_key(target, existing);
    }
    let mut copy = if metadata.kind == TYPE_STRING {
        let mut copy = context.new_meta(TYPE_STRING);
        copy.value = metadata.value.clone();
        copy
    } else {
        let mut copy = context.new_meta(metadata.kind);
        let prefix = layout::sub_prefix(source, metadata.generation);
        let elements = context.scan_prefix(&prefix, COPY_ELEMENTS_MAX + 1).await?;
        if elements.len() > COPY_ELEMENTS_MAX {
            return error("ERR collection too large to copy");
        }
        for (record, value) in elements {
            let sub = &record[prefix.len()..];
            context.put_raw(layout::sub_key(target, copy.generation, sub), value);
        }
        copy.count = metadata.count;
        copy.head = metadata.head;
        copy
    };
    if keep_deadline {
        copy.deadline_ms = metadata.deadline_ms;
    }
    context.set_meta(target, &mut copy);
    if matches!(metadata.kind, TYPE_LIST | TYPE_ZSET) {
        // A client may be blocked on the target, waiting for elements.
        context.effects.push(Effect::Ready { key: target.to_vec() });
    }
    Ok(())
}

/// `SCAN position [MATCH pattern] [COUNT count] [TYPE type]` over this shard: replies
/// `[next position (0: done), keys]`.
async fn scan(context: &mut Context<'_>, a: &[Vec<u8>]) -> Outcome<Reply> {
    let Some(position) = std::str::from_utf8(&a[1]).ok().and_then(|text| text.parse::<u64>().ok())
    else {
        return error("ERR invalid cursor");
    };
    let mut pattern: Option<&[u8]> = None;
    let mut count = 10usize;
    let mut kind: Option<Vec<u8>> = None;
    let mut index = 2;
    while index < a.len() {
        let option = upper(&a[index]);
        let Some(value) = a.get(index + 1) else { return error(SYNTAX) };
        match option.as_slice() {
            b"MATCH" => pattern = Some(value),
            b"COUNT" => {
                let parsed = integer(value)?;
                if parsed < 1 {
                    return error(SYNTAX);
                }
                count = (parsed as usize).min(SCAN_COUNT_MAX);
            }
            b"TYPE" => kind = Some(value.to_ascii_lowercase()),
            _ => return error(SYNTAX),
        }
        index += 2;
    }
    if position >= 1 << layout::POSITION_BITS {
        return error(NOT_INTEGER);
    }
    let start = layout::metadata_key_at(position);
    let end = [b'n'];
    let mut records = context.scan_raw(&start, Some(&end), count).await?;
    let mut next = 0;
    if records.len() == count {
        // Finish the last position so that its keys are not split between calls.
        let last_position = records
            .last()
            .and_then(|(record, _)| layout::parse_metadata_key(record))
            .map_or(0, |(position, _)| position);
        let mut tail_start = records.last().expect("count >= 1 records").0.clone();
        tail_start.push(0);
        let after = layout::metadata_key_at(last_position + 1);
        records.extend(context.scan_raw(&tail_start, Some(&after), SCAN_COUNT_MAX).await?);
        let more = context.scan_raw(&after, Some(&end), 1).await?;
        if let Some((record, _)) = more.first() {
            next = layout::parse_metadata_key(record).map_or(0, |(position, _)| position);
        }
    }
    let mut keys = Vec::new();
    for (record, value) in records {
        let Some((_, key)) = layout::parse_metadata_key(&record) else { continue };
        let Ok(metadata) = Metadata::decode(&value) else { continue };
        if metadata.is_expired(context.now_ms) {
            continue;
        }
        if pattern.is_some_and(|pattern| !glob::matches(pattern, key)) {
            continue;
        }
        if kind.as_deref().is_some_and(|kind| kind != layout::type_name(metadata.kind).as_bytes()) {
            continue;
        }
        keys.push(Reply::bulk(key));
    }
    Ok(Reply::Array(vec![Reply::bulk(next.to_string()), Reply::Array(keys)]))
}
