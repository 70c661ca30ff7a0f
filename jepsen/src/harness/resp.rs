//! A small blocking RESP client with timeouts, for the harness's workload clients.
//!
//! It speaks RESP2 (and parses the RESP3 types a server might answer with anyway). Every command
//! has a deadline; when it passes, or the connection fails, the connection is unusable (a late
//! reply would be taken for the next command's) and the caller must drop the client.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// The most bytes one reply may take; a longer one is a protocol error.
const REPLY_BYTES_MAX: usize = 64 << 20;
/// The most elements of one aggregate reply.
const ARRAY_ELEMENTS_MAX: usize = 1 << 20;
/// The most nesting levels of aggregate replies.
const DEPTH_MAX: usize = 8;

/// A reply from the server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    /// `+OK`.
    Simple(String),
    /// `-ERR ...`: the server refused; the text after the dash.
    Error(String),
    /// `:42`.
    Integer(i64),
    /// `$3\r\nfoo`.
    Bulk(Vec<u8>),
    /// `$-1`, `*-1` or RESP3 `_`.
    Nil,
    /// `*2 ...` (and RESP3 sets and maps, flattened).
    Array(Vec<Reply>),
}

impl Reply {
    /// The bytes of a bulk or simple string.
    pub fn bytes(&self) -> Option<&[u8]> {
        match self {
            Reply::Bulk(bytes) => Some(bytes),
            Reply::Simple(text) => Some(text.as_bytes()),
            _ => None,
        }
    }
}

/// Why a command got no reply.
#[derive(Debug)]
#[non_exhaustive]
pub enum ClientError {
    /// The connection could not be made: the command was certainly not sent.
    Connect(io::Error),
    /// The deadline passed.
    Timeout,
    /// The connection failed or closed.
    Io(io::Error),
    /// The server sent something that is not RESP.
    Protocol(String),
}

impl ClientError {
    /// A short name for summaries: `timeout`, `connection`, ...
    pub fn kind(&self) -> &'static str {
        match self {
            ClientError::Connect(_) => "connect",
            ClientError::Timeout => "timeout",
            ClientError::Io(_) => "connection",
            ClientError::Protocol(_) => "protocol",
        }
    }
}

impl std::fmt::Display for ClientError {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClientError::Connect(error) => write!(formatter, "cannot connect: {error}"),
            ClientError::Timeout => write!(formatter, "timed out"),
            ClientError::Io(error) => write!(formatter, "connection failed: {error}"),
            ClientError::Protocol(message) => write!(formatter, "protocol error: {message}"),
        }
    }
}

impl std::error::Error for ClientError {}

fn is_timeout(error: &io::Error) -> bool {
    matches!(error.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut)
}

/// One connection to a RESP server.
pub struct Client {
    stream: TcpStream,
    buffer: Vec<u8>,
    /// Bytes of `buffer` already parsed.
    position: usize,
    timeout: Duration,
}

impl Client {
    /// Connects to `address`; `timeout` bounds the connection and then every command.
    pub fn connect(address: SocketAddr, timeout: Duration) -> Result<Client, ClientError> {
        let stream = TcpStream::connect_timeout(&address, timeout).map_err(ClientError::Connect)?;
        stream.set_nodelay(true).map_err(ClientError::Connect)?;
        Ok(Client { stream, buffer: Vec::with_capacity(4096), position: 0, timeout })
    }

    /// Sends one command and waits for its reply.
    pub fn command<A: AsRef<[u8]>>(&mut self, arguments: &[A]) -> Result<Reply, ClientError> {
        let deadline = Instant::now() + self.timeout;
        let mut request = Vec::with_capacity(64);
        request.extend_from_slice(format!("*{}\r\n", arguments.len()).as_bytes());
        for argument in arguments {
            let argument = argument.as_ref();
            request.extend_from_slice(format!("${}\r\n", argument.len()).as_bytes());
            request.extend_from_slice(argument);
            request.extend_from_slice(b"\r\n");
        }
        self.stream.set_write_timeout(Some(self.timeout)).map_err(ClientError::Io)?;
        self.stream.write_all(&request).map_err(|error| {
            if is_timeout(&error) {
                ClientError::Timeout
            } else {
                ClientError::Io(error)
            }
        })?;
        self.read_reply(deadline, 0)
    }

    fn read_reply(&mut self, deadline: Instant, depth: usize) -> Result<Reply, ClientError> {
        if depth > DEPTH_MAX {
            return Err(ClientError::Protocol("replies nested too deep".to_string()));
        }
        let line = self.read_line(deadline)?;
        let (&kind, rest) =
            line.split_first().ok_or_else(|| ClientError::Protocol("empty line".to_string()))?;
        let text = String::from_utf8_lossy(rest).into_owned();
        match kind {
            b'+' => Ok(Reply::Simple(text)),
            b'-' | b'!' => Ok(Reply::Error(text)),
            b':' => Ok(Reply::Integer(parse_integer(&text)?)),
            b'_' => Ok(Reply::Nil),
            b'#' => Ok(Reply::Integer(i64::from(text == "t"))),
            b',' | b'(' => Ok(Reply::Simple(text)),
            b'$' | b'=' => {
                let length = parse_integer(&text)?;
                if length < 0 {
                    return Ok(Reply::Nil);
                }
                let length = usize::try_from(length).unwrap_or(usize::MAX);
                if length > REPLY_BYTES_MAX {
                    return Err(ClientError::Protocol(format!("bulk of {length} bytes")));
                }
                let bytes = self.read_exact(length + 2, deadline)?;
                if !bytes.ends_with(b"\r\n") {
                    return Err(ClientError::Protocol("bulk without CRLF".to_string()));
                }
                Ok(Reply::Bulk(bytes[..length].to_vec()))
            }
            b'*' | b'~' | b'%' | b'>' => {
                let count = parse_integer(&text)?;
                if count < 0 {
                    return Ok(Reply::Nil);
                }
                let count = usize::try_from(count).unwrap_or(usize::MAX);
                let elements = if kind == b'%' { count.saturating_mul(2) } else { count };
                if elements > ARRAY_ELEMENTS_MAX {
                    return Err(ClientError::Protocol(format!("array of {elements} elements")));
                }
                let mut items = Vec::with_capacity(elements);
                for _ in 0..elements {
                    items.push(self.read_reply(deadline, depth + 1)?);
                }
                Ok(Reply::Array(items))
            }
            other => Err(ClientError::Protocol(format!("unknown reply type {:?}", other as char))),
        }
    }

    /// The next line without its CRLF.
    fn read_line(&mut self, deadline: Instant) -> Result<Vec<u8>, ClientError> {
        loop {
            let unread = &self.buffer[self.position..];
            if let Some(end) = unread.windows(2).position(|pair| pair == b"\r\n") {
                let line = unread[..end].to_vec();
                self.position += end + 2;
                return Ok(line);
            }
            if unread.len() > REPLY_BYTES_MAX {
                return Err(ClientError::Protocol("line too long".to_string()));
            }
            self.fill(deadline)?;
        }
    }

    fn read_exact(&mut self, length: usize, deadline: Instant) -> Result<Vec<u8>, ClientError> {
        while self.buffer.len() - self.position < length {
            self.fill(deadline)?;
        }
        let bytes = self.buffer[self.position..self.position + length].to_vec();
        self.position += length;
        Ok(bytes)
    }

    /// Reads more bytes, waiting at most until `deadline`.
    fn fill(&mut self, deadline: Instant) -> Result<(), ClientError> {
        if self.position > 0 {
            self.buffer.drain(..self.position);
            self.position = 0;
        }
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            return Err(ClientError::Timeout);
        }
        self.stream.set_read_timeout(Some(remaining)).map_err(ClientError::Io)?;
        let mut chunk = [0_u8; 16 * 1024];
        match self.stream.read(&mut chunk) {
            Ok(0) => Err(ClientError::Io(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the server closed the connection",
            ))),
            Ok(count) => {
                self.buffer.extend_from_slice(&chunk[..count]);
                Ok(())
            }
            Err(error) if is_timeout(&error) => Err(ClientError::Timeout),
            Err(error) if error.kind() == io::ErrorKind::Interrupted => Ok(()),
            Err(error) => Err(ClientError::Io(error)),
        }
    }
}

fn parse_integer(text: &str) -> Result<i64, ClientError> {
    text.parse().map_err(|_| ClientError::Protocol(format!("not an integer: {text:?}")))
}

/// Whether `address` answers `PING` with `PONG` within `timeout`.
pub fn ping(address: SocketAddr, timeout: Duration) -> bool {
    let Ok(mut client) = Client::connect(address, timeout) else { return false };
    matches!(client.command(&["PING"]), Ok(Reply::Simple(text)) if text == "PONG")
}

/// Whether `GET /health` on the HTTP server at `address` answers 200 within `timeout`.
pub fn http_health(address: SocketAddr, timeout: Duration) -> bool {
    let Ok(mut stream) = TcpStream::connect_timeout(&address, timeout) else { return false };
    let request = format!("GET /health HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n");
    if stream.set_read_timeout(Some(timeout)).is_err()
        || stream.set_write_timeout(Some(timeout)).is_err()
        || stream.write_all(request.as_bytes()).is_err()
    {
        return false;
    }
    let mut head = [0_u8; 12];
    if stream.read_exact(&mut head).is_err() {
        return false;
    }
    head.starts_with(b"HTTP/1.") && &head[8..12] == b" 200"
}

#[cfg(test)]
mod tests {
    use std::net::TcpListener;

    use super::*;

    /// A server that answers each request with the next canned reply.
    fn serve(replies: &'static [&'static [u8]]) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let mut request = [0_u8; 1024];
            for reply in replies {
                if stream.read(&mut request).unwrap_or(0) == 0 {
                    return;
                }
                // Split each reply in two writes, to exercise partial reads.
                let (first, second) = reply.split_at(reply.len() / 2);
                stream.write_all(first).unwrap();
                std::thread::sleep(Duration::from_millis(2));
                stream.write_all(second).unwrap();
            }
            std::thread::sleep(Duration::from_millis(500));
        });
        address
    }

    #[test]
    fn replies_of_every_type_parse() {
        let address = serve(&[
            b"+OK\r\n",
            b"-TRYAGAIN no leader\r\n",
            b":42\r\n",
            b"$5\r\nhello\r\n",
            b"$-1\r\n",
            b"*2\r\n$1\r\na\r\n:7\r\n",
            b"~1\r\n$1\r\nb\r\n",
            b"_\r\n",
        ]);
        let mut client = Client::connect(address, Duration::from_secs(5)).unwrap();
        let mut next = || client.command(&["PING"]).unwrap();
        assert_eq!(next(), Reply::Simple("OK".into()));
        assert_eq!(next(), Reply::Error("TRYAGAIN no leader".into()));
        assert_eq!(next(), Reply::Integer(42));
        assert_eq!(next(), Reply::Bulk(b"hello".to_vec()));
        assert_eq!(next(), Reply::Nil);
        assert_eq!(next(), Reply::Array(vec![Reply::Bulk(b"a".to_vec()), Reply::Integer(7)]));
        assert_eq!(next(), Reply::Array(vec![Reply::Bulk(b"b".to_vec())]));
        assert_eq!(next(), Reply::Nil);
    }

    #[test]
    fn a_silent_server_times_out() {
        let address = serve(&[]);
        let mut client = Client::connect(address, Duration::from_millis(100)).unwrap();
        // The server reads the request and never answers.
        let started = Instant::now();
        let error = client.command(&["GET", "k"]).unwrap_err();
        assert!(matches!(error, ClientError::Timeout), "{error}");
        assert!(started.elapsed() < Duration::from_secs(2));
    }

    #[test]
    fn a_refused_connection_is_a_connect_error() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        drop(listener);
        let error = Client::connect(address, Duration::from_secs(1)).err().unwrap();
        assert!(matches!(error, ClientError::Connect(_)), "{error}");
    }
}
