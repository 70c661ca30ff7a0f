//! RESP2 and RESP3: decoding client requests and encoding replies. Pure: bytes in, values out.
//!
//! Requests are multibulk arrays of bulk strings (`*2\r\n$3\r\nGET\r\n$1\r\nk\r\n`) or inline
//! commands (`GET k\r\n`, as typed into telnet or sent by redis-cli for some commands). A buffer
//! may hold several requests (pipelining) and end in the middle of one: [`decode_request`] then
//! says [`Decoded::Incomplete`] and the caller reads more. Every length is bounded; a violation
//! is a [`ProtocolError`] worded as Redis words it, after which the connection is closed.
//!
//! Replies are [`Reply`] values encoded for the connection's protocol: RESP3 has maps, sets,
//! doubles, booleans, pushes and verbatim strings; RESP2 downgrades them as Redis does (a map to
//! a flat array, a set to an array, a double to a bulk string, a boolean to an integer).

use std::borrow::Cow;

/// Largest query buffer: a request that does not fit is refused.
pub const QUERY_BYTES_MAX: usize = 64 << 20;
/// Largest inline request line.
pub const INLINE_BYTES_MAX: usize = 64 << 10;
/// Largest bulk string argument.
pub const BULK_BYTES_MAX: usize = 8 << 20;
/// Most arguments in one request.
pub const ARGUMENTS_MAX: usize = 1 << 20;
/// Deepest nesting accepted by the reply decoder (used by tests, clients and the fuzz target).
pub const REPLY_DEPTH_MAX: usize = 64;

const _: () = assert!(BULK_BYTES_MAX < QUERY_BYTES_MAX);
const _: () = assert!(INLINE_BYTES_MAX < QUERY_BYTES_MAX);

/// A reply to a client, protocol-independent.
#[derive(Clone, Debug, PartialEq)]
pub enum Reply {
    /// A status line: mostly a constant (`OK`, `QUEUED`, `PONG`), so not allocated per reply.
    Simple(Cow<'static, str>),
    /// The whole error line without the leading `-`, e.g. `ERR syntax error`.
    Error(String),
    Integer(i64),
    Bulk(Vec<u8>),
    /// The null bulk string (`$-1` in RESP2).
    Null,
    /// The null array (`*-1` in RESP2), e.g. EXEC after a failed WATCH.
    NullArray,
    Array(Vec<Reply>),
    Map(Vec<(Reply, Reply)>),
    Set(Vec<Reply>),
    Double(f64),
    Boolean(bool),
    Push(Vec<Reply>),
    Verbatim {
        format: [u8; 3],
        text: Vec<u8>,
    },
    /// Member/score pairs (ZRANGE ... WITHSCORES): a flat array in RESP2, an array of
    /// two-element arrays in RESP3, as Redis 7 replies. Never produced by the decoder.
    Pairs(Vec<(Reply, Reply)>),
}

impl Reply {
    pub fn ok() -> Reply {
        Reply::Simple("OK".into())
    }

    pub fn error(text: impl Into<String>) -> Reply {
        Reply::Error(text.into())
    }

    pub fn bulk(bytes: impl Into<Vec<u8>>) -> Reply {
        Reply::Bulk(bytes.into())
    }

    pub fn is_error(&self) -> bool {
        matches!(self, Reply::Error(_))
    }

    /// A bulk string or null.
    pub fn optional(bytes: Option<Vec<u8>>) -> Reply {
        bytes.map_or(Reply::Null, Reply::Bulk)
    }

    /// An array of bulk strings.
    pub fn bulks(items: impl IntoIterator<Item = Vec<u8>>) -> Reply {
        Reply::Array(items.into_iter().map(Reply::Bulk).collect())
    }
}

/// Protocol version of a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Protocol {
    #[default]
    Resp2,
    Resp3,
}

/// Appends the encoding of `reply` for `protocol` to `out`.
pub fn encode(reply: &Reply, protocol: Protocol, out: &mut Vec<u8>) {
    let resp3 = protocol == Protocol::Resp3;
    match reply {
        Reply::Simple(text) => line(out, b'+', text.as_bytes()),
        Reply::Error(text) => line(out, b'-', text.as_bytes()),
        Reply::Integer(value) => header(out, b':', *value),
        Reply::Bulk(bytes) => bulk(out, b'$', bytes),
        Reply::Null if resp3 => out.extend_from_slice(b"_\r\n"),
        Reply::NullArray if resp3 => out.extend_from_slice(b"_\r\n"),
        Reply::Null => out.extend_from_slice(b"$-1\r\n"),
        Reply::NullArray => out.extend_from_slice(b"*-1\r\n"),
        Reply::Array(items) => aggregate(out, b'*', items, protocol),
        Reply::Set(items) => aggregate(out, if resp3 { b'~' } else { b'*' }, items, protocol),
        Reply::Push(items) => aggregate(out, if resp3 { b'>' } else { b'*' }, items, protocol),
        Reply::Map(pairs) => {
            if resp3 {
                length_header(out, b'%', pairs.len());
            } else {
                length_header(out, b'*', pairs.len() * 2);
            }
            for (key, value) in pairs {
                encode(key, protocol, out);
                encode(value, protocol, out);
            }
        }
        Reply::Double(value) if resp3 => line(out, b',', format_double(*value).as_bytes()),
        Reply::Double(value) => bulk(out, b'$', format_double(*value).as_bytes()),
        Reply::Boolean(value) if resp3 => line(out, b'#', if *value { b"t" } else { b"f" }),
        Reply::Boolean(value) => line(out, b':', if *value { b"1" } else { b"0" }),
        Reply::Verbatim { format, text } if resp3 => {
            let mut body = format.to_vec();
            body.push(b':');
            body.extend_from_slice(text);
            bulk(out, b'=', &body);
        }
        Reply::Verbatim { text, .. } => bulk(out, b'$', text),
        Reply::Pairs(pairs) if resp3 => {
            length_header(out, b'*', pairs.len());
            for (first, second) in pairs {
                line(out, b'*', b"2");
                encode(first, protocol, out);
                encode(second, protocol, out);
            }
        }
        Reply::Pairs(pairs) => {
            length_header(out, b'*', pairs.len() * 2);
            for (first, second) in pairs {
                encode(first, protocol, out);
                encode(second, protocol, out);
            }
        }
    }
}

/// The encoding of `reply` as a fresh buffer.
pub fn encode_to_vec(reply: &Reply, protocol: Protocol) -> Vec<u8> {
    let mut out = Vec::new();
    encode(reply, protocol, &mut out);
    out
}

fn line(out: &mut Vec<u8>, kind: u8, text: &[u8]) {
    out.push(kind);
    // Simple strings and errors must not carry line breaks: replace them as Redis does.
    out.extend(text.iter().map(|&byte| if byte == b'\r' || byte == b'\n' { b' ' } else { byte }));
    out.extend_from_slice(b"\r\n");
}

/// `kind`, `value` in decimal and a line end: an integer reply, or the header of a bulk or
/// aggregate. Formatted on the stack: nearly every reply has one.
fn header(out: &mut Vec<u8>, kind: u8, value: i64) {
    let mut digits = [0u8; 20];
    let mut start = digits.len();
    let mut rest = value.unsigned_abs();
    loop {
        start -= 1;
        digits[start] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    out.push(kind);
    if value < 0 {
        out.push(b'-');
    }
    out.extend_from_slice(&digits[start..]);
    out.extend_from_slice(b"\r\n");
}

fn length_header(out: &mut Vec<u8>, kind: u8, length: usize) {
    header(out, kind, i64::try_from(length).expect("lengths fit 63 bits"));
}

fn bulk(out: &mut Vec<u8>, kind: u8, bytes: &[u8]) {
    length_header(out, kind, bytes.len());
    out.extend_from_slice(bytes);
    out.extend_from_slice(b"\r\n");
}

fn aggregate(out: &mut Vec<u8>, kind: u8, items: &[Reply], protocol: Protocol) {
    length_header(out, kind, items.len());
    for item in items {
        encode(item, protocol, out);
    }
}

/// Formats a double as Redis replies it: shortest round-trip digits, `%.17g`-style exponent for
/// very large or small magnitudes, `inf`/`-inf`/`nan`.
pub fn format_double(value: f64) -> String {
    if value.is_nan() {
        return "nan".into();
    }
    if value.is_infinite() {
        return if value > 0.0 { "inf".into() } else { "-inf".into() };
    }
    if value == 0.0 {
        return if value.is_sign_negative() { "-0".into() } else { "0".into() };
    }
    let scientific = format!("{value:e}");
    let (mantissa, exponent) = scientific.split_once('e').expect("{:e} has an exponent");
    let exponent: i32 = exponent.parse().expect("{:e} exponent is an integer");
    if (-5..17).contains(&exponent) {
        return format!("{value}");
    }
    let sign = if exponent < 0 { '-' } else { '+' };
    format!("{mantissa}e{sign}{:02}", exponent.abs())
}

/// What [`decode_request`] found at the front of the buffer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decoded {
    /// A request and the bytes it took; an empty request (blank line, `*0`) is to be skipped.
    Request(Vec<Vec<u8>>, usize),
    /// The buffer ends inside a request: read more.
    Incomplete,
}

/// A malformed or oversized request; the text is the error reply (without `-`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProtocolError(pub String);

impl std::fmt::Display for ProtocolError {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(&self.0)
    }
}

impl std::error::Error for ProtocolError {}

fn protocol_error(what: &str) -> ProtocolError {
    ProtocolError(format!("ERR Protocol error: {what}"))
}

/// Decodes the first request in `buffer`.
pub fn decode_request(buffer: &[u8]) -> Result<Decoded, ProtocolError> {
    decode_request_reusing(buffer, Vec::new())
}

/// [`decode_request`], with a multibulk request's arguments decoded into the buffers of
/// `spare` (a request done with): a connection's pipelined requests then allocate next to
/// nothing.
pub fn decode_request_reusing(
    buffer: &[u8],
    spare: Vec<Vec<u8>>,
) -> Result<Decoded, ProtocolError> {
    match buffer.first() {
        None => Ok(Decoded::Incomplete),
        Some(b'*') => decode_multibulk(buffer, spare),
        Some(_) => decode_inline(buffer),
    }
}

/// The heap bytes a request's argument buffers hold (what keeping them for reuse costs).
pub fn buffers_bytes(arguments: &Vec<Vec<u8>>) -> usize {
    let outer = arguments.capacity() * std::mem::size_of::<Vec<u8>>();
    outer + arguments.iter().map(Vec::capacity).sum::<usize>()
}

/// Sets `arguments[at]` (at most one past the end) to `bytes`, in the buffer already there.
pub fn set_argument(arguments: &mut Vec<Vec<u8>>, at: usize, bytes: &[u8]) {
    match arguments.get_mut(at) {
        Some(argument) => {
            argument.clear();
            argument.extend_from_slice(bytes);
        }
        None => arguments.push(bytes.to_vec()),
    }
}

/// Position of the `\r\n` ending the line that starts at `start`, if the buffer holds it.
fn line_end(buffer: &[u8], start: usize) -> Option<usize> {
    let rest = buffer.get(start..)?;
    let newline = rest.iter().position(|&byte| byte == b'\n')?;
    (newline > 0 && rest[newline - 1] == b'\r').then_some(start + newline - 1)
}

/// A decimal length as Redis accepts it (optional `-`, digits only).
fn parse_length(text: &[u8]) -> Option<i64> {
    let (negative, digits) = match text.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, text),
    };
    if digits.is_empty() || digits.len() > 18 {
        return None;
    }
    let mut value = 0i64;
    for &digit in digits {
        if !digit.is_ascii_digit() {
            return None;
        }
        value = value * 10 + i64::from(digit - b'0');
    }
    Some(if negative { -value } else { value })
}

fn decode_multibulk(buffer: &[u8], mut arguments: Vec<Vec<u8>>) -> Result<Decoded, ProtocolError> {
    let Some(end) = line_end(buffer, 1) else {
        if buffer.len() > INLINE_BYTES_MAX {
            return Err(protocol_error("too big mbulk count string"));
        }
        return Ok(Decoded::Incomplete);
    };
    let count = match parse_length(&buffer[1..end]) {
        Some(count) if count <= ARGUMENTS_MAX as i64 => count,
        _ => return Err(protocol_error("invalid multibulk length")),
    };
    let mut position = end + 2;
    if count <= 0 {
        return Ok(Decoded::Request(Vec::new(), position));
    }
    let count = count as usize;
    arguments.truncate(count);
    arguments.reserve(count.min(1024).saturating_sub(arguments.len()));
    for at in 0..count {
        let Some(&kind) = buffer.get(position) else { return Ok(Decoded::Incomplete) };
        if kind != b'$' {
            let got = char::from(kind).escape_default().to_string();
            return Err(protocol_error(&format!("expected '$', got '{got}'")));
        }
        let Some(end) = line_end(buffer, position + 1) else {
            if buffer.len() - position > INLINE_BYTES_MAX {
                return Err(protocol_error("too big bulk count string"));
            }
            return Ok(Decoded::Incomplete);
        };
        let len = match parse_length(&buffer[position + 1..end]) {
            Some(len) if (0..=BULK_BYTES_MAX as i64).contains(&len) => len as usize,
            _ => return Err(protocol_error("invalid bulk length")),
        };
        let start = end + 2;
        if buffer.len() < start + len + 2 {
            return Ok(Decoded::Incomplete);
        }
        if &buffer[start + len..start + len + 2] != b"\r\n" {
            return Err(protocol_error("invalid bulk length"));
        }
        set_argument(&mut arguments, at, &buffer[start..start + len]);
        position = start + len + 2;
    }
    Ok(Decoded::Request(arguments, position))
}

fn decode_inline(buffer: &[u8]) -> Result<Decoded, ProtocolError> {
    let Some(newline) = buffer.iter().position(|&byte| byte == b'\n') else {
        if buffer.len() > INLINE_BYTES_MAX {
            return Err(protocol_error("too big inline request"));
        }
        return Ok(Decoded::Incomplete);
    };
    if newline > INLINE_BYTES_MAX {
        return Err(protocol_error("too big inline request"));
    }
    let mut text = &buffer[..newline];
    if let Some(stripped) = text.strip_suffix(b"\r") {
        text = stripped;
    }
    let arguments =
        split_inline(text).ok_or_else(|| protocol_error("unbalanced quotes in request"))?;
    Ok(Decoded::Request(arguments, newline + 1))
}

/// Splits an inline command line like `sdssplitargs`: spaces separate, double quotes allow
/// `\n`/`\xHH`-style escapes, single quotes are literal except `\'`.
pub fn split_inline(text: &[u8]) -> Option<Vec<Vec<u8>>> {
    let mut arguments = Vec::new();
    let mut position = 0;
    loop {
        while position < text.len() && text[position].is_ascii_whitespace() {
            position += 1;
        }
        if position >= text.len() {
            return Some(arguments);
        }
        let (argument, next) = split_one(text, position)?;
        arguments.push(argument);
        position = next;
        if arguments.len() > ARGUMENTS_MAX {
            return None;
        }
    }
}

fn split_one(text: &[u8], mut position: usize) -> Option<(Vec<u8>, usize)> {
    let mut current = Vec::new();
    let mut quote: Option<u8> = None;
    while position < text.len() {
        let byte = text[position];
        match quote {
            None if byte.is_ascii_whitespace() => break,
            None if byte == b'"' || byte == b'\'' => quote = Some(byte),
            None => current.push(byte),
            Some(open) if byte == open => {
                // The closing quote must be followed by a space or the end.
                if text.get(position + 1).is_some_and(|next| !next.is_ascii_whitespace()) {
                    return None;
                }
                return Some((current, position + 1));
            }
            Some(b'"') if byte == b'\\' && position + 1 < text.len() => {
                position += 1;
                let escaped = text[position];
                let hex = |at: usize| text.get(at).and_then(|&d| char::from(d).to_digit(16));
                if escaped == b'x' {
                    if let (Some(high), Some(low)) = (hex(position + 1), hex(position + 2)) {
                        current.push((high * 16 + low) as u8);
                        position += 3;
                        continue;
                    }
                }
                current.push(match escaped {
                    b'n' => b'\n',
                    b'r' => b'\r',
                    b't' => b'\t',
                    b'b' => 8,
                    b'a' => 7,
                    other => other,
                });
            }
            Some(b'\'') if byte == b'\\' && text.get(position + 1) == Some(&b'\'') => {
                position += 1;
                current.push(b'\'');
            }
            Some(_) => current.push(byte),
        }
        position += 1;
    }
    if quote.is_some() {
        return None;
    }
    Some((current, position))
}

/// Encodes a request as a multibulk array (what clients send).
pub fn encode_request(arguments: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    length_header(&mut out, b'*', arguments.len());
    for argument in arguments {
        bulk(&mut out, b'$', argument);
    }
    out
}

/// Decodes one reply (RESP2 or RESP3) from the front of `buffer`: `Ok(None)` if incomplete.
/// For tests, clients and the fuzz target; the server never parses replies.
pub fn decode_reply(buffer: &[u8]) -> Result<Option<(Reply, usize)>, ProtocolError> {
    decode_reply_at(buffer, 0, 0)
}

type ReplyStep = Result<Option<(Reply, usize)>, ProtocolError>;

fn decode_reply_at(buffer: &[u8], start: usize, depth: usize) -> ReplyStep {
    if depth > REPLY_DEPTH_MAX {
        return Err(protocol_error("reply nested too deep"));
    }
    let Some(&kind) = buffer.get(start) else { return Ok(None) };
    let Some(end) = line_end(buffer, start + 1) else { return Ok(None) };
    let text = &buffer[start + 1..end];
    let next = end + 2;
    let utf8 = || String::from_utf8(text.to_vec()).map_err(|_| protocol_error("invalid utf-8"));
    let length = || parse_length(text).ok_or_else(|| protocol_error("invalid length"));
    let reply = match kind {
        b'+' => Reply::Simple(utf8()?.into()),
        b'-' => Reply::Error(utf8()?),
        b':' => Reply::Integer(utf8()?.parse().map_err(|_| protocol_error("invalid integer"))?),
        b'_' => Reply::Null,
        b'#' => match text {
            b"t" => Reply::Boolean(true),
            b"f" => Reply::Boolean(false),
            _ => return Err(protocol_error("invalid boolean")),
        },
        b',' => Reply::Double(parse_double(text).ok_or_else(|| protocol_error("invalid double"))?),
        b'$' | b'=' => return decode_bulk(buffer, kind, length()?, next),
        b'*' | b'~' | b'>' | b'%' => return decode_aggregate(buffer, kind, length()?, next, depth),
        other => return Err(protocol_error(&format!("unknown reply type '{}'", other as char))),
    };
    Ok(Some((reply, next)))
}

fn decode_bulk(buffer: &[u8], kind: u8, len: i64, start: usize) -> ReplyStep {
    if len == -1 && kind == b'$' {
        return Ok(Some((Reply::Null, start)));
    }
    if !(0..=BULK_BYTES_MAX as i64).contains(&len) {
        return Err(protocol_error("invalid bulk length"));
    }
    let len = len as usize;
    if buffer.len() < start + len + 2 {
        return Ok(None);
    }
    if &buffer[start + len..start + len + 2] != b"\r\n" {
        return Err(protocol_error("bulk not terminated"));
    }
    let body = buffer[start..start + len].to_vec();
    let reply = if kind == b'=' {
        if body.len() < 4 || body[3] != b':' {
            return Err(protocol_error("invalid verbatim string"));
        }
        Reply::Verbatim { format: [body[0], body[1], body[2]], text: body[4..].to_vec() }
    } else {
        Reply::Bulk(body)
    };
    Ok(Some((reply, start + len + 2)))
}

fn decode_aggregate(buffer: &[u8], kind: u8, len: i64, start: usize, depth: usize) -> ReplyStep {
    if len == -1 && kind == b'*' {
        return Ok(Some((Reply::NullArray, start)));
    }
    if !(0..=ARGUMENTS_MAX as i64).contains(&len) {
        return Err(protocol_error("invalid aggregate length"));
    }
    let items_count = if kind == b'%' { len as usize * 2 } else { len as usize };
    let mut items = Vec::with_capacity(items_count.min(1024));
    let mut position = start;
    for _ in 0..items_count {
        let Some((item, next)) = decode_reply_at(buffer, position, depth + 1)? else {
            return Ok(None);
        };
        items.push(item);
        position = next;
    }
    let reply = match kind {
        b'*' => Reply::Array(items),
        b'~' => Reply::Set(items),
        b'>' => Reply::Push(items),
        _ => {
            let mut pairs = Vec::with_capacity(items.len() / 2);
            let mut iterator = items.into_iter();
            while let (Some(key), Some(value)) = (iterator.next(), iterator.next()) {
                pairs.push((key, value));
            }
            Reply::Map(pairs)
        }
    };
    Ok(Some((reply, position)))
}

fn parse_double(text: &[u8]) -> Option<f64> {
    match text {
        b"inf" | b"+inf" => Some(f64::INFINITY),
        b"-inf" => Some(f64::NEG_INFINITY),
        b"nan" => Some(f64::NAN),
        _ => std::str::from_utf8(text).ok()?.parse().ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(bytes: &[u8]) -> Result<Decoded, ProtocolError> {
        decode_request(bytes)
    }

    fn arguments(items: &[&str]) -> Vec<Vec<u8>> {
        items.iter().map(|item| item.as_bytes().to_vec()).collect()
    }

    #[test]
    fn multibulk_and_pipelining() {
        let bytes = b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n*1\r\n$4\r\nPING\r\n";
        let Decoded::Request(first, used) = request(bytes).unwrap() else { panic!() };
        assert_eq!(first, arguments(&["GET", "k"]));
        let Decoded::Request(second, used_2) = request(&bytes[used..]).unwrap() else { panic!() };
        assert_eq!(second, arguments(&["PING"]));
        assert_eq!(used + used_2, bytes.len());
        for cut in 0..used {
            assert_eq!(request(&bytes[..cut]).unwrap(), Decoded::Incomplete, "cut {cut}");
        }
    }

    #[test]
    fn inline_with_quotes() {
        let Decoded::Request(args, used) = request(b"SET k \"a b\\x41\" 'c\\'d'\r\n").unwrap()
        else {
            panic!()
        };
        assert_eq!(args, arguments(&["SET", "k", "a bA", "c'd"]));
        assert_eq!(used, 24);
        assert_eq!(request(b"\r\n").unwrap(), Decoded::Request(vec![], 2));
        assert_eq!(
            request(b"SET \"k\r\n").unwrap_err().0,
            "ERR Protocol error: unbalanced quotes in request"
        );
    }

    #[test]
    fn errors_as_redis_words_them() {
        assert_eq!(
            request(b"*2\r\n+x\r\n").unwrap_err().0,
            "ERR Protocol error: expected '$', got '+'"
        );
        assert_eq!(
            request(b"*x\r\n").unwrap_err().0,
            "ERR Protocol error: invalid multibulk length"
        );
        assert_eq!(
            request(b"*1\r\n$-5\r\n").unwrap_err().0,
            "ERR Protocol error: invalid bulk length"
        );
        let huge = vec![b'a'; INLINE_BYTES_MAX + 1];
        assert_eq!(request(&huge).unwrap_err().0, "ERR Protocol error: too big inline request");
        let too_many = format!("*{}\r\n", ARGUMENTS_MAX + 1);
        assert!(request(too_many.as_bytes()).is_err());
    }

    #[test]
    fn encodings() {
        let map = Reply::Map(vec![(Reply::bulk("a"), Reply::Integer(1))]);
        assert_eq!(encode_to_vec(&map, Protocol::Resp3), b"%1\r\n$1\r\na\r\n:1\r\n");
        assert_eq!(encode_to_vec(&map, Protocol::Resp2), b"*2\r\n$1\r\na\r\n:1\r\n");
        assert_eq!(encode_to_vec(&Reply::Null, Protocol::Resp2), b"$-1\r\n");
        assert_eq!(encode_to_vec(&Reply::NullArray, Protocol::Resp2), b"*-1\r\n");
        assert_eq!(encode_to_vec(&Reply::Null, Protocol::Resp3), b"_\r\n");
        assert_eq!(encode_to_vec(&Reply::Double(1.5), Protocol::Resp3), b",1.5\r\n");
        assert_eq!(encode_to_vec(&Reply::Double(1.5), Protocol::Resp2), b"$3\r\n1.5\r\n");
        assert_eq!(encode_to_vec(&Reply::Boolean(true), Protocol::Resp2), b":1\r\n");
        let pairs = Reply::Pairs(vec![(Reply::bulk("m"), Reply::Double(2.0))]);
        assert_eq!(encode_to_vec(&pairs, Protocol::Resp2), b"*2\r\n$1\r\nm\r\n$1\r\n2\r\n");
        assert_eq!(encode_to_vec(&pairs, Protocol::Resp3), b"*1\r\n*2\r\n$1\r\nm\r\n,2\r\n");
        let verbatim = Reply::Verbatim { format: *b"txt", text: b"hi".to_vec() };
        assert_eq!(encode_to_vec(&verbatim, Protocol::Resp3), b"=6\r\ntxt:hi\r\n");
    }

    #[test]
    fn doubles_format_like_redis() {
        assert_eq!(format_double(3.0), "3");
        assert_eq!(format_double(10.6), "10.6");
        assert_eq!(format_double(-0.5), "-0.5");
        assert_eq!(format_double(1e20), "1e+20");
        assert_eq!(format_double(1.5e-7), "1.5e-07");
        assert_eq!(format_double(f64::INFINITY), "inf");
    }

    #[test]
    fn replies_round_trip() {
        let reply = Reply::Array(vec![
            Reply::Simple("OK".into()),
            Reply::Error("ERR x".into()),
            Reply::Integer(-3),
            Reply::bulk("bin\r\n"),
            Reply::Null,
            Reply::Set(vec![Reply::Boolean(false)]),
            Reply::Push(vec![Reply::Double(2.25)]),
            Reply::Map(vec![(Reply::bulk("k"), Reply::NullArray)]),
        ]);
        let bytes = encode_to_vec(&reply, Protocol::Resp3);
        let (decoded, used) = decode_reply(&bytes).unwrap().unwrap();
        assert_eq!(used, bytes.len());
        // RESP3 has one null: the null array comes back as the null.
        let expected = encode_to_vec(&decoded, Protocol::Resp3);
        assert_eq!(expected, bytes);
        for (value, text) in
            [(i64::MIN, "-9223372036854775808"), (0, "0"), (i64::MAX, "9223372036854775807")]
        {
            let bytes = encode_to_vec(&Reply::Integer(value), Protocol::Resp2);
            assert_eq!(bytes, format!(":{text}\r\n").into_bytes());
        }
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn decoders_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = decode_request(&bytes);
            let _ = decode_reply(&bytes);
        }

        #[test]
        fn requests_round_trip(
            arguments in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..40), 1..8),
            spare in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..40), 0..10),
            cut in any::<usize>(),
        ) {
            let bytes = encode_request(&arguments);
            prop_assert_eq!(
                decode_request(&bytes).unwrap(),
                Decoded::Request(arguments.clone(), bytes.len())
            );
            // Whatever buffers a request done with leaves, the same request decodes.
            prop_assert_eq!(
                decode_request_reusing(&bytes, spare).unwrap(),
                Decoded::Request(arguments.clone(), bytes.len())
            );
            let cut = cut % bytes.len();
            prop_assert_eq!(decode_request(&bytes[..cut]).unwrap(), Decoded::Incomplete);
        }

        #[test]
        fn integers_encode_as_decimal(value in any::<i64>()) {
            let bytes = encode_to_vec(&Reply::Integer(value), Protocol::Resp2);
            prop_assert_eq!(bytes, format!(":{value}\r\n").into_bytes());
        }

        #[test]
        fn bulk_replies_round_trip(items in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..40), 0..8)) {
            let reply = Reply::bulks(items);
            for protocol in [Protocol::Resp2, Protocol::Resp3] {
                let bytes = encode_to_vec(&reply, protocol);
                prop_assert_eq!(decode_reply(&bytes).unwrap(), Some((reply.clone(), bytes.len())));
            }
        }
    }
}
