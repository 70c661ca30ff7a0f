//! Sorted-set algebra: ZUNION ZINTER ZDIFF, their STORE forms, and ZINTERCARD. As in Redis, a
//! source may be a sorted set or a set (whose members score 1), and an absent key is empty.
//! Unions and intersections visit the sources from the smallest to the largest, as Redis does,
//! so that sums of scores add up in the same order.

use super::sets::set_members;
use super::zsets::{scored, store_zset, with_scores};
use super::{error, integer, parse_float, parse_integer, upper, wrong_type, SYNTAX};
use crate::layout::{TYPE_SET, TYPE_ZSET};
use crate::resp::Reply;
use crate::store::{Context, Outcome};
use std::collections::BTreeMap;

/// How the scores of a member found in several sources combine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Aggregate {
    Sum,
    Min,
    Max,
}

impl Aggregate {
    fn combine(self, total: f64, score: f64) -> f64 {
        match self {
            // inf + -inf is NaN, which a score cannot be: Redis makes it 0.
            Aggregate::Sum => zero_if_nan(total + score),
            Aggregate::Min => total.min(score),
            Aggregate::Max => total.max(score),
        }
    }
}

fn zero_if_nan(score: f64) -> f64 {
    if score.is_nan() {
        0.0
    } else {
        score
    }
}

/// A source's members with their scores, its weight applied.
struct Source {
    members: Vec<(Vec<u8>, f64)>,
    weight: f64,
}

impl Source {
    fn weighted(&self, score: f64) -> f64 {
        zero_if_nan(self.weight * score)
    }
}

/// The options after the keys.
struct Options {
    weights: Vec<f64>,
    aggregate: Aggregate,
    scores: bool,
    /// ZINTERCARD: stop counting there (0: no limit).
    limit: u64,
}

impl Options {
    /// Parses what follows `count` keys for command `name`; each command takes only its own.
    fn parse(name: &str, arguments: &[Vec<u8>], count: usize) -> Outcome<Options> {
        let combines = matches!(name, "zunion" | "zunionstore" | "zinter" | "zinterstore");
        let replies_members = matches!(name, "zunion" | "zinter" | "zdiff");
        let mut options = Options {
            weights: vec![1.0; count],
            aggregate: Aggregate::Sum,
            scores: false,
            limit: 0,
        };
        let mut position = 0;
        while position < arguments.len() {
            let remaining = arguments.len() - position - 1;
            match upper(&arguments[position]).as_slice() {
                b"WEIGHTS" if combines && remaining >= count => {
                    for (weight, text) in options.weights.iter_mut().zip(&arguments[position + 1..])
                    {
                        let Some(parsed) = parse_float(text) else {
                            return error("ERR weight value is not a float");
                        };
                        *weight = parsed;
                    }
                    position += count;
                }
                b"AGGREGATE" if combines && remaining >= 1 => {
                    options.aggregate = match upper(&arguments[position + 1]).as_slice() {
                        b"SUM" => Aggregate::Sum,
                        b"MIN" => Aggregate::Min,
                        b"MAX" => Aggregate::Max,
                        _ => return error(SYNTAX),
                    };
                    position += 1;
                }
                b"WITHSCORES" if replies_members => options.scores = true,
                b"LIMIT" if name == "zintercard" && remaining >= 1 => {
                    let limit = parse_integer(&arguments[position + 1]);
                    let Some(limit) = limit.and_then(|limit| u64::try_from(limit).ok()) else {
                        return error("ERR LIMIT can't be negative");
                    };
                    options.limit = limit;
                    position += 1;
                }
                _ => return error(SYNTAX),
            }
            position += 1;
        }
        Ok(options)
    }
}

/// The members and scores of `key`, a sorted set or a set; WRONGTYPE for anything else.
async fn load(context: &mut Context<'_>, key: &[u8]) -> Outcome<Vec<(Vec<u8>, f64)>> {
    match context.meta(key).await? {
        None => Ok(Vec::new()),
        Some(metadata) if metadata.kind == TYPE_ZSET => scored(context, key, &metadata).await,
        Some(metadata) if metadata.kind == TYPE_SET => {
            let members = set_members(context, key, &metadata).await?;
            Ok(members.into_iter().map(|member| (member, 1.0)).collect())
        }
        Some(_) => wrong_type(),
    }
}

/// Sorts by (score, member), the order of a sorted set.
fn ordered(mut members: Vec<(Vec<u8>, f64)>) -> Vec<(Vec<u8>, f64)> {
    members.sort_by(|a, b| a.1.total_cmp(&b.1).then_with(|| a.0.cmp(&b.0)));
    members
}

fn smallest_first(sources: &mut [Source]) {
    sources.sort_by_key(|source| source.members.len());
}

fn union(mut sources: Vec<Source>, aggregate: Aggregate) -> Vec<(Vec<u8>, f64)> {
    smallest_first(&mut sources);
    let mut totals: BTreeMap<Vec<u8>, f64> = BTreeMap::new();
    for source in &sources {
        for (member, score) in &source.members {
            let score = source.weighted(*score);
            totals
                .entry(member.clone())
                .and_modify(|total| *total = aggregate.combine(*total, score))
                .or_insert(score);
        }
    }
    ordered(totals.into_iter().collect())
}

/// The members in every source; stops after `limit` of them (0: no limit).
fn intersection(mut sources: Vec<Source>, aggregate: Aggregate, limit: u64) -> Vec<(Vec<u8>, f64)> {
    smallest_first(&mut sources);
    let Some((smallest, others)) = sources.split_first() else { return Vec::new() };
    let lookups: Vec<BTreeMap<&[u8], f64>> = others
        .iter()
        .map(|source| source.members.iter().map(|(m, score)| (m.as_slice(), *score)).collect())
        .collect();
    let mut found = Vec::new();
    'members: for (member, score) in &smallest.members {
        let mut total = smallest.weighted(*score);
        for (source, lookup) in others.iter().zip(&lookups) {
            let Some(score) = lookup.get(member.as_slice()) else { continue 'members };
            total = aggregate.combine(total, source.weighted(*score));
        }
        found.push((member.clone(), total));
        if found.len() as u64 == limit {
            break;
        }
    }
    ordered(found)
}

/// The members of the first source in none of the others, with the first source's scores.
fn difference(mut sources: Vec<Source>) -> Vec<(Vec<u8>, f64)> {
    let first = sources.remove(0);
    let others: Vec<BTreeMap<&[u8], f64>> = sources
        .iter()
        .map(|source| source.members.iter().map(|(m, score)| (m.as_slice(), *score)).collect())
        .collect();
    let kept = first
        .members
        .into_iter()
        .filter(|(member, _)| others.iter().all(|other| !other.contains_key(member.as_slice())));
    ordered(kept.collect())
}

/// The number of keys at `position`, checked against the arguments after it.
fn key_count(name: &str, arguments: &[Vec<u8>], position: usize) -> Outcome<usize> {
    let count = integer(&arguments[position])?;
    if count < 1 {
        return error(&format!("ERR at least 1 input key is needed for '{name}' command"));
    }
    match usize::try_from(count) {
        Ok(count) if count < arguments.len() - position => Ok(count),
        _ => error(SYNTAX),
    }
}

pub async fn run(context: &mut Context<'_>, name: &str, a: &[Vec<u8>]) -> Outcome<Reply> {
    let store = name.ends_with("store");
    let position = if store { 2 } else { 1 };
    let count = key_count(name, a, position)?;
    let keys = &a[position + 1..position + 1 + count];
    // Redis checks every source's type before the options.
    let mut loaded = Vec::with_capacity(count);
    for key in keys {
        loaded.push(load(context, key).await?);
    }
    let options = Options::parse(name, &a[position + 1 + count..], count)?;
    let sources: Vec<Source> = loaded
        .into_iter()
        .zip(&options.weights)
        .map(|(members, &weight)| Source { members, weight })
        .collect();
    let result = match name {
        "zunion" | "zunionstore" => union(sources, options.aggregate),
        "zinter" | "zinterstore" | "zintercard" => {
            intersection(sources, options.aggregate, options.limit)
        }
        _ => difference(sources),
    };
    if name == "zintercard" {
        return Ok(Reply::Integer(result.len() as i64));
    }
    if store {
        store_zset(context, &a[1], &result).await?;
        return Ok(Reply::Integer(result.len() as i64));
    }
    Ok(with_scores(result, options.scores))
}
