//! The ranges of the sorted-set commands (pure): by rank (`start stop`, negative from the end),
//! by score (`(1.5`, `1.5`, `-inf`, `+inf`) and lexicographical (`[a`, `(a`, `-`, `+`), and the
//! options of the ZRANGE family (BYSCORE BYLEX REV LIMIT WITHSCORES), parsed with Redis's error
//! replies in Redis's order. Lexicographical ranges compare members as bytes and assume equal
//! scores, as Redis documents; with mixed scores they select the members inside the range in
//! (score, member) order.

use super::{error, integer, parse_float, resolve_range, upper, SYNTAX};
use crate::store::Outcome;

/// A score bound: `(1.5` exclusive, `1.5` inclusive, `-inf`, `+inf`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ScoreBound {
    pub value: f64,
    pub exclusive: bool,
}

fn score_bound(argument: &[u8]) -> Option<ScoreBound> {
    let (text, exclusive) = match argument.strip_prefix(b"(") {
        Some(rest) => (rest, true),
        None => (argument, false),
    };
    parse_float(text).map(|value| ScoreBound { value, exclusive })
}

/// A lexicographical bound: `[a` inclusive, `(a` exclusive, `-` below and `+` above every member.
#[derive(Clone, Debug, PartialEq)]
pub enum LexBound {
    Lowest,
    Highest,
    Inclusive(Vec<u8>),
    Exclusive(Vec<u8>),
}

fn lex_bound(argument: &[u8]) -> Option<LexBound> {
    match argument.split_first() {
        Some((b'-', [])) => Some(LexBound::Lowest),
        Some((b'+', [])) => Some(LexBound::Highest),
        Some((b'[', rest)) => Some(LexBound::Inclusive(rest.to_vec())),
        Some((b'(', rest)) => Some(LexBound::Exclusive(rest.to_vec())),
        _ => None,
    }
}

/// Which members a range selects.
#[derive(Clone, Debug, PartialEq)]
pub enum Range {
    /// `start` and `stop` indexes, negative from the end.
    Rank(i64, i64),
    Score(ScoreBound, ScoreBound),
    Lex(LexBound, LexBound),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RangeKind {
    Rank,
    Score,
    Lex,
}

impl Range {
    /// Parses `min` and `max` as Redis does for the kind, with its error replies.
    pub fn parse(kind: RangeKind, min: &[u8], max: &[u8]) -> Outcome<Range> {
        match kind {
            RangeKind::Rank => Ok(Range::Rank(integer(min)?, integer(max)?)),
            RangeKind::Score => match (score_bound(min), score_bound(max)) {
                (Some(min), Some(max)) => Ok(Range::Score(min, max)),
                _ => error("ERR min or max is not a float"),
            },
            RangeKind::Lex => match (lex_bound(min), lex_bound(max)) {
                (Some(min), Some(max)) => Ok(Range::Lex(min, max)),
                _ => error("ERR min or max not valid string range item"),
            },
        }
    }

    /// Whether a score or lex range holds the member (a rank range selects by position).
    pub fn contains(&self, member: &[u8], score: f64) -> bool {
        match self {
            Range::Rank(..) => true,
            Range::Score(min, max) => {
                let above = if min.exclusive { score > min.value } else { score >= min.value };
                let below = if max.exclusive { score < max.value } else { score <= max.value };
                above && below
            }
            Range::Lex(min, max) => {
                let above = match min {
                    LexBound::Lowest => true,
                    LexBound::Highest => false,
                    LexBound::Inclusive(bound) => member >= bound.as_slice(),
                    LexBound::Exclusive(bound) => member > bound.as_slice(),
                };
                let below = match max {
                    LexBound::Lowest => false,
                    LexBound::Highest => true,
                    LexBound::Inclusive(bound) => member <= bound.as_slice(),
                    LexBound::Exclusive(bound) => member < bound.as_slice(),
                };
                above && below
            }
        }
    }

    /// The members of the range, from `members` in (score, member) order, reversed first if
    /// asked; then LIMIT's offset and count (a negative offset selects nothing, a negative count
    /// everything after the offset).
    pub fn select(
        &self,
        mut members: Vec<(Vec<u8>, f64)>,
        reverse: bool,
        limit: Option<(i64, i64)>,
    ) -> Vec<(Vec<u8>, f64)> {
        if reverse {
            members.reverse();
        }
        if let Range::Rank(start, stop) = self {
            return match resolve_range(*start, *stop, members.len() as u64) {
                Some((start, end)) => members.drain(start as usize..end as usize).collect(),
                None => Vec::new(),
            };
        }
        let matching = members.into_iter().filter(|(member, score)| self.contains(member, *score));
        match limit {
            Some((offset, _)) if offset < 0 => Vec::new(),
            Some((offset, count)) => {
                let count = usize::try_from(count).unwrap_or(usize::MAX);
                matching.skip(offset as usize).take(count).collect()
            }
            None => matching.collect(),
        }
    }
}

/// A ZRANGE-family request: its range and options.
pub struct RangeRequest {
    pub range: Range,
    pub reverse: bool,
    pub scores: bool,
    pub limit: Option<(i64, i64)>,
}

impl RangeRequest {
    /// Parses `min max [options]` (`arguments` start at min) of command `name`, which fixes what
    /// ZRANGE and ZRANGESTORE leave to BYSCORE, BYLEX and REV. Errors come in Redis's order:
    /// options, their conflicts, then the bounds.
    pub fn parse(name: &str, arguments: &[Vec<u8>]) -> Outcome<RangeRequest> {
        let open = matches!(name, "zrange" | "zrangestore");
        let mut kind = match name {
            _ if open => None,
            _ if name.ends_with("byscore") => Some(RangeKind::Score),
            _ if name.ends_with("bylex") => Some(RangeKind::Lex),
            _ => Some(RangeKind::Rank),
        };
        let mut reverse = (!open).then(|| name.starts_with("zrev"));
        let (mut scores, mut limit) = (false, None);
        let mut position = 2;
        while position < arguments.len() {
            let remaining = arguments.len() - position - 1;
            match upper(&arguments[position]).as_slice() {
                b"WITHSCORES" if name != "zrangestore" => scores = true,
                b"LIMIT" if remaining >= 2 => {
                    let (offset, count) = (&arguments[position + 1], &arguments[position + 2]);
                    limit = Some((integer(offset)?, integer(count)?));
                    position += 2;
                }
                b"REV" if reverse.is_none() => reverse = Some(true),
                b"BYSCORE" if kind.is_none() => kind = Some(RangeKind::Score),
                b"BYLEX" if kind.is_none() => kind = Some(RangeKind::Lex),
                _ => return error(SYNTAX),
            }
            position += 1;
        }
        let kind = kind.unwrap_or(RangeKind::Rank);
        let reverse = reverse.unwrap_or(false);
        if limit.is_some() && kind == RangeKind::Rank {
            return error(
                "ERR syntax error, LIMIT is only supported in combination with either BYSCORE or \
                 BYLEX",
            );
        }
        if scores && kind == RangeKind::Lex {
            return error("ERR syntax error, WITHSCORES not supported in combination with BYLEX");
        }
        // Reversed score and lex ranges are written max first.
        let (min, max) = match kind {
            RangeKind::Rank => (&arguments[0], &arguments[1]),
            _ if reverse => (&arguments[1], &arguments[0]),
            _ => (&arguments[0], &arguments[1]),
        };
        Ok(RangeRequest { range: Range::parse(kind, min, max)?, reverse, scores, limit })
    }

    pub fn select(&self, members: Vec<(Vec<u8>, f64)>) -> Vec<(Vec<u8>, f64)> {
        self.range.select(members, self.reverse, self.limit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn members(names: &str) -> Vec<(Vec<u8>, f64)> {
        names.split(' ').map(|name| (name.as_bytes().to_vec(), 0.0)).collect()
    }

    fn names(selected: Vec<(Vec<u8>, f64)>) -> String {
        let names: Vec<String> =
            selected.iter().map(|(name, _)| String::from_utf8_lossy(name).into_owned()).collect();
        names.join(" ")
    }

    fn arguments(text: &str) -> Vec<Vec<u8>> {
        text.split(' ').map(|part| part.as_bytes().to_vec()).collect()
    }

    #[test]
    fn lex_bounds_parse_as_redis() {
        assert_eq!(lex_bound(b"-"), Some(LexBound::Lowest));
        assert_eq!(lex_bound(b"+"), Some(LexBound::Highest));
        assert_eq!(lex_bound(b"[a"), Some(LexBound::Inclusive(b"a".to_vec())));
        assert_eq!(lex_bound(b"("), Some(LexBound::Exclusive(Vec::new())));
        for bad in [&b""[..], b"a", b"--", b"+inf", b"-a"] {
            assert_eq!(lex_bound(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn lex_ranges_select_by_bytes() {
        let all = members("A a aa ab b");
        let select = |min: &[u8], max: &[u8]| {
            let range = Range::parse(RangeKind::Lex, min, max).unwrap();
            names(range.select(all.clone(), false, None))
        };
        assert_eq!(select(b"-", b"+"), "A a aa ab b");
        assert_eq!(select(b"[a", b"(b"), "a aa ab");
        assert_eq!(select(b"(a", b"[ab"), "aa ab");
        assert_eq!(select(b"+", b"-"), "");
        assert_eq!(select(b"[b", b"[a"), "");
        assert_eq!(select(b"(a", b"(a"), "");
        assert_eq!(select(b"-", b"-"), "");
    }

    #[test]
    fn requests_take_their_commands_options() {
        let parse = |name: &str, text: &str| RangeRequest::parse(name, &arguments(text));
        let request = parse("zrange", "[c [a BYLEX REV LIMIT 1 1").unwrap();
        assert_eq!(names(request.select(members("a b c"))), "b");
        let request = parse("zrevrangebylex", "+ - LIMIT 0 2").unwrap();
        assert_eq!(names(request.select(members("a b c"))), "c b");
        let request = parse("zrangebyscore", "(0 +inf WITHSCORES").unwrap();
        assert!(request.scores && request.select(members("a b")).is_empty());
        for (name, text) in [
            ("zrangebylex", "- + REV"),
            ("zrangebyscore", "0 1 BYLEX"),
            ("zrangestore", "0 1 WITHSCORES"),
            ("zrange", "0 1 REV REV"),
            ("zrange", "0 1 LIMIT 1"),
        ] {
            assert!(parse(name, text).is_err(), "{name} {text}");
        }
    }
}
