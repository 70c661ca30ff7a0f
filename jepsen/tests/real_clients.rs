//! Real clients against the `node` binary (single node, two shards: every write goes through
//! the multi-Raft host and its WAL): redis-py over RESP2 and RESP3 (`clients/redis_py.py`:
//! pipelines, transactions with WATCH, pub/sub, blocking pops of lists and sorted sets, expiry,
//! every type) and redis-cli (`clients/redis_cli.sh`, with `-r` and `--pipe`).
//! Then `/health` and `/metrics` (the WAL synced, the shards led), and a restart: what was
//! acknowledged is still there. A kill -9 keeps the page cache, so this
//! shows recovery across a process restart, not durability on power loss: the simulation tests
//! (crashes that lose unsynced writes) cover that. Needs `python3` with `redis` and `redis-cli`;
//! `./check` installs them.
#![allow(clippy::unwrap_used, reason = "tests unwrap: a failure is the test failing")]

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};

/// Stops the node when the test ends, passing or not.
struct Node {
    child: Child,
    port: u16,
    /// Where `/health` and `/metrics` are served.
    http: SocketAddr,
    /// Kept open: the node may still write to it.
    _stdout: std::io::Lines<BufReader<std::process::ChildStdout>>,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `node` on free ports and reads its redis port from the endpoints it prints.
fn start(data_dir: &Path) -> Node {
    let binary = common::node_binary().expect("no node binary: cargo build --bin node");
    let mut child = Command::new(binary)
        .arg("--data-dir")
        .arg(data_dir)
        .args(["--redis-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0"])
        .args(["--shards", "2", "--log-level", "warn"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    // The endpoints it prints: `  redis    ADDRESS   (...)`, `  health   http://ADDRESS/health`.
    let mut endpoint = |name: &str| -> SocketAddr {
        lines
            .by_ref()
            .map_while(Result::ok)
            .find_map(|line| {
                let address = line.trim().strip_prefix(name)?.split_whitespace().next()?;
                let address = address.trim_start_matches("http://").trim_end_matches("/health");
                address.parse().ok()
            })
            .unwrap_or_else(|| panic!("the node printed no {name} endpoint"))
    };
    let port = endpoint("redis").port();
    let http = endpoint("health");
    Node { child, port, http, _stdout: lines }
}

/// The status line and body of `GET path` on the node's HTTP endpoint.
fn http_get(address: SocketAddr, path: &str) -> (String, String) {
    let mut stream = TcpStream::connect(address).unwrap();
    stream.write_all(format!("GET {path} HTTP/1.1\r\nHost: node\r\n\r\n").as_bytes()).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    (head.lines().next().unwrap_or_default().to_string(), body.to_string())
}

fn run(program: &str, script: &str, port: u16) {
    let scripts = common::manifest_dir().join("tests/clients");
    let output = Command::new(program)
        .arg(scripts.join(script))
        .arg(port.to_string())
        .output()
        .unwrap_or_else(|error| panic!("cannot run {program}: {error}"));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{script} against node failed:\n{stdout}\n{stderr}");
}

fn redis_cli(port: u16, arguments: &[&str]) -> String {
    let output = Command::new("redis-cli")
        .args(["-p", &port.to_string()])
        .args(arguments)
        .output()
        .expect("run redis-cli");
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}

#[test]
fn redis_py_resp2_and_resp3() {
    let dir = common::scratch("clients-redis-py");
    let node = start(&dir);
    run("python3", "redis_py.py", node.port);
    drop(node);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The value of the unlabelled counter `name` in a /metrics page.
fn counter(metrics: &str, name: &str) -> u64 {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|value| value.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in /metrics:\n{metrics}"))
}

#[test]
fn redis_cli_and_a_restart_keeps_acknowledged_writes() {
    let dir = common::scratch("clients-redis-cli");
    let node = start(&dir);
    run("bash", "redis_cli.sh", node.port);
    for index in 0..50 {
        assert_eq!(redis_cli(node.port, &["SET", &format!("kept:{index}"), "v"]), "OK");
    }
    assert_eq!(redis_cli(node.port, &["INCRBY", "kept:counter", "7"]), "7");
    let (status, _) = http_get(node.http, "/health");
    assert_eq!(status, "HTTP/1.1 200 OK");
    let (_, metrics) = http_get(node.http, "/metrics");
    let syncs = counter(&metrics, "strata_raft_wal_syncs_total");
    assert!(syncs > 0, "writes were acknowledged without a WAL sync");
    let waited = counter(&metrics, "strata_raft_wal_sync_microseconds_total");
    assert!(waited > 0, "syncs that took no time at all");
    assert!(metrics.contains("strata_raft_is_leader{shard=\"1\"} 1"), "{metrics}");
    drop(node); // kill -9: no graceful shutdown
    let node = start(&dir);
    for index in 0..50 {
        assert_eq!(redis_cli(node.port, &["GET", &format!("kept:{index}")]), "v");
    }
    assert_eq!(redis_cli(node.port, &["GET", "kept:counter"]), "7");
    drop(node);
    let _ = std::fs::remove_dir_all(&dir);
}
