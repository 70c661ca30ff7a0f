//! A stand-in for the `node` binary, to test the harness itself (`jepsen stub-node`).
//!
//! It takes the node's command line (`--id`, `--data-dir`, `--redis-listen`, `--http-listen`,
//! `--peer-listen`, `--peer ID=ADDR`..., `--shards`), answers `GET /health` with 200 and serves
//! the few RESP commands the workloads use from memory. It is deliberately *not* a cluster: each
//! stub keeps its own data and forgets it when killed, so a multi-node run against stubs must end
//! in an anomaly, and a single stub without faults must not. Its peers get a line every 100 ms
//! through the addresses given for them, so the link proxies carry real traffic.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// The most bytes of one request argument.
const ARGUMENT_BYTES_MAX: usize = 1 << 20;
/// The most arguments of one request.
const ARGUMENTS_COUNT_MAX: usize = 1024;

#[derive(Clone)]
enum Value {
    Text(Vec<u8>),
    Set(BTreeSet<Vec<u8>>),
}

type Store = Arc<Mutex<BTreeMap<Vec<u8>, Value>>>;

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Runs a stub node with `arguments` (the node's flags); returns only on a bad command line.
pub fn main(arguments: &[String]) -> Result<(), String> {
    let mut redis = None;
    let mut http = None;
    let mut peer_listen = None;
    let mut peers: Vec<SocketAddr> = Vec::new();
    let mut index = 0;
    while index < arguments.len() {
        let flag = arguments[index].as_str();
        let value = arguments.get(index + 1).ok_or_else(|| format!("{flag} needs a value"))?;
        let address = || value.parse::<SocketAddr>().map_err(|error| format!("{flag}: {error}"));
        match flag {
            "--redis-listen" => redis = Some(address()?),
            "--http-listen" => http = Some(address()?),
            "--peer-listen" => peer_listen = Some(address()?),
            "--peer" => {
                let (_, address) =
                    value.split_once('=').ok_or_else(|| format!("--peer {value}: not ID=ADDR"))?;
                peers.push(address.parse().map_err(|error| format!("--peer: {error}"))?);
            }
            "--id" | "--data-dir" | "--shards" => {}
            other => return Err(format!("unknown flag {other}")),
        }
        index += 2;
    }
    let redis = redis.ok_or("--redis-listen is required")?;
    let bind = |address: SocketAddr| {
        TcpListener::bind(address).map_err(|error| format!("cannot listen on {address}: {error}"))
    };
    let redis_listener = bind(redis)?;
    if let Some(http) = http {
        let listener = bind(http)?;
        std::thread::spawn(move || serve_health(&listener));
    }
    if let Some(peer_listen) = peer_listen {
        let listener = bind(peer_listen)?;
        std::thread::spawn(move || drain_peers(&listener));
    }
    for peer in peers {
        std::thread::spawn(move || greet_peer(peer));
    }
    let store: Store = Arc::default();
    for stream in redis_listener.incoming() {
        let Ok(stream) = stream else { continue };
        let store = Arc::clone(&store);
        std::thread::spawn(move || serve_resp(stream, &store));
    }
    Ok(())
}

fn serve_health(listener: &TcpListener) {
    for stream in listener.incoming() {
        let Ok(mut stream) = stream else { continue };
        let mut request = [0_u8; 1024];
        let _ = stream.read(&mut request);
        let _ = stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\nok\n");
    }
}

fn drain_peers(listener: &TcpListener) {
    for stream in listener.incoming() {
        let Ok(mut stream) = stream else { continue };
        std::thread::spawn(move || {
            let mut buffer = [0_u8; 1024];
            while matches!(stream.read(&mut buffer), Ok(count) if count > 0) {}
        });
    }
}

fn greet_peer(peer: SocketAddr) {
    loop {
        if let Ok(mut stream) = TcpStream::connect_timeout(&peer, Duration::from_secs(1)) {
            while stream.write_all(b"hello\n").is_ok() {
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Reads one request (an array of bulk strings); `None` at the end of the stream or on garbage.
fn read_request(reader: &mut impl BufRead) -> Option<Vec<Vec<u8>>> {
    let mut line = String::new();
    let header = |reader: &mut dyn BufRead, line: &mut String, kind: char| -> Option<usize> {
        line.clear();
        reader.read_line(line).ok()?;
        let count = line.trim_end().strip_prefix(kind)?.parse().ok()?;
        Some(count)
    };
    let count = header(reader, &mut line, '*')?;
    if count > ARGUMENTS_COUNT_MAX {
        return None;
    }
    let mut arguments = Vec::with_capacity(count);
    for _ in 0..count {
        let length = header(reader, &mut line, '$')?;
        if length > ARGUMENT_BYTES_MAX {
            return None;
        }
        let mut argument = vec![0_u8; length + 2];
        reader.read_exact(&mut argument).ok()?;
        argument.truncate(length);
        arguments.push(argument);
    }
    Some(arguments)
}

fn bulk(bytes: &[u8]) -> Vec<u8> {
    let mut reply = format!("${}\r\n", bytes.len()).into_bytes();
    reply.extend_from_slice(bytes);
    reply.extend_from_slice(b"\r\n");
    reply
}

fn serve_resp(stream: TcpStream, store: &Store) {
    let Ok(mut writer) = stream.try_clone() else { return };
    let mut reader = BufReader::new(stream);
    while let Some(request) = read_request(&mut reader) {
        let reply = execute(&request, store);
        if writer.write_all(&reply).is_err() {
            return;
        }
    }
}

fn execute(request: &[Vec<u8>], store: &Store) -> Vec<u8> {
    let Some((command, arguments)) = request.split_first() else {
        return b"-ERR empty request\r\n".to_vec();
    };
    let command = String::from_utf8_lossy(command).to_ascii_uppercase();
    let mut store = lock(store);
    let wrong_type = b"-WRONGTYPE wrong kind of value\r\n".to_vec();
    match (command.as_str(), arguments) {
        ("PING", []) => b"+PONG\r\n".to_vec(),
        ("GET", [key]) => match store.get(key) {
            None => b"$-1\r\n".to_vec(),
            Some(Value::Text(value)) => bulk(value),
            Some(Value::Set(_)) => wrong_type,
        },
        ("SET", [key, value, options @ ..]) => {
            let current = store.get(key).cloned();
            let allowed = match (options, &current) {
                ([], _) => true,
                ([nx], current) if nx.eq_ignore_ascii_case(b"NX") => current.is_none(),
                ([ifeq, old], Some(Value::Text(current))) if ifeq.eq_ignore_ascii_case(b"IFEQ") => {
                    current == old
                }
                ([ifeq, _], _) if ifeq.eq_ignore_ascii_case(b"IFEQ") => false,
                _ => return b"-ERR syntax error\r\n".to_vec(),
            };
            if !allowed {
                return b"$-1\r\n".to_vec();
            }
            store.insert(key.clone(), Value::Text(value.clone()));
            b"+OK\r\n".to_vec()
        }
        ("INCRBY", [key, amount]) => {
            let Some(amount) =
                std::str::from_utf8(amount).ok().and_then(|text| text.parse::<i64>().ok())
            else {
                return b"-ERR value is not an integer\r\n".to_vec();
            };
            let current = match store.get(key) {
                None => 0,
                Some(Value::Text(value)) => {
                    match std::str::from_utf8(value).ok().and_then(|text| text.parse::<i64>().ok())
                    {
                        Some(current) => current,
                        None => return b"-ERR value is not an integer\r\n".to_vec(),
                    }
                }
                Some(Value::Set(_)) => return wrong_type,
            };
            let next = current.wrapping_add(amount);
            store.insert(key.clone(), Value::Text(next.to_string().into_bytes()));
            format!(":{next}\r\n").into_bytes()
        }
        ("SADD", [key, members @ ..]) if !members.is_empty() => {
            let entry = store.entry(key.clone()).or_insert_with(|| Value::Set(BTreeSet::new()));
            let Value::Set(set) = entry else { return wrong_type };
            let added = members.iter().filter(|member| set.insert((*member).clone())).count();
            format!(":{added}\r\n").into_bytes()
        }
        ("SMEMBERS", [key]) => match store.get(key) {
            None => b"*0\r\n".to_vec(),
            Some(Value::Set(set)) => {
                let mut reply = format!("*{}\r\n", set.len()).into_bytes();
                for member in set {
                    reply.extend(bulk(member));
                }
                reply
            }
            Some(Value::Text(_)) => wrong_type,
        },
        _ => format!("-ERR unknown command or arguments '{command}'\r\n").into_bytes(),
    }
}
