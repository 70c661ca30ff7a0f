//! Membership change on real `node` processes: a cluster started with voters 1, 2 and 3 takes
//! node 4 in (as a learner, then a voter) through `POST /members/...`, serves it data, then
//! removes node 2, which learns it (its `/health` says so); with 2 and 3 both killed afterwards,
//! the shard still takes writes, which it could not if 2 were still a voter (2 of {1, 2, 3, 4}
//! is no majority). Needs `redis-cli`.
#![allow(clippy::unwrap_used, reason = "tests unwrap: a failure is the test failing")]

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const NODES: usize = 4;

/// Kills the node when the test ends, passing or not.
struct Node {
    child: Child,
    redis: SocketAddr,
    http: SocketAddr,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `count` free loopback addresses, all distinct: each listener stays open until every address
/// is chosen (one dropped at once may be handed out again by the next bind, and two nodes of
/// this test then collide on it).
fn free_addresses(count: usize) -> Vec<SocketAddr> {
    let listeners: Vec<TcpListener> =
        (0..count).map(|_| TcpListener::bind("127.0.0.1:0").unwrap()).collect();
    listeners.iter().map(|listener| listener.local_addr().unwrap()).collect()
}

/// Node `id` (1-based) of `NODES`, every other one its peer, nodes 1-3 the initial voters.
fn start(id: usize, directory: &Path, addresses: &[[SocketAddr; 3]]) -> Node {
    let [redis, http, peer] = addresses[id - 1];
    let mut command = Command::new(common::node_binary().expect("cargo build --bin node"));
    command
        .args(["--id", &id.to_string(), "--initial-voters", "1,2,3", "--log-level", "warn"])
        .arg("--data-dir")
        .arg(directory.join(format!("n{id}")))
        .args(["--redis-listen", &redis.to_string(), "--http-listen", &http.to_string()])
        .args(["--peer-listen", &peer.to_string()]);
    for (other, [_, _, peer]) in addresses.iter().enumerate() {
        if other + 1 != id {
            command.arg("--peer").arg(format!("{}={peer}", other + 1));
        }
    }
    let child = command.stdout(Stdio::null()).spawn().unwrap();
    Node { child, redis, http }
}

/// The status code and body of `METHOD path`.
fn http(address: SocketAddr, method: &str, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(address).unwrap();
    let request = format!("{method} {path} HTTP/1.1\r\nHost: node\r\nContent-Length: 0\r\n\r\n");
    stream.write_all(request.as_bytes()).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response.split(' ').nth(1).and_then(|code| code.parse().ok()).unwrap_or(0);
    let body = response.split_once("\r\n\r\n").map_or("", |(_, body)| body);
    (status, body.to_string())
}

fn redis_cli(node: &Node, arguments: &[&str]) -> String {
    let output = Command::new("redis-cli")
        .args(["-p", &node.redis.port().to_string()])
        .args(arguments)
        .output()
        .expect("run redis-cli (apt-get install redis-tools)");
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}

fn node(nodes: &[Option<Node>], id: usize) -> &Node {
    nodes[id - 1].as_ref().unwrap()
}

/// Retries `attempt` for up to 30 s until it says yes.
fn eventually(what: &str, mut attempt: impl FnMut() -> bool) {
    let started = Instant::now();
    while !attempt() {
        assert!(started.elapsed() < Duration::from_secs(30), "never: {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The shard's leader as `/members` on `node` shows it (`shard 0: leader 2, voters ...`).
fn leader(node: &Node) -> Option<usize> {
    let (_, body) = http(node.http, "GET", "/members");
    body.split("leader ").nth(1)?.split(',').next()?.parse().ok()
}

#[test]
fn a_node_joins_and_another_leaves_through_raft() {
    let directory = common::scratch("membership");
    let addresses: Vec<[SocketAddr; 3]> =
        free_addresses(3 * NODES).chunks(3).map(|chunk| [chunk[0], chunk[1], chunk[2]]).collect();
    let mut nodes: Vec<Option<Node>> =
        (1..=NODES).map(|id| Some(start(id, &directory, &addresses))).collect();
    // A node that is no voter yet may still be opening its storage when the voters have
    // elected a leader (seen on a loaded machine): every node listens before it is asked.
    eventually("every node listens", || {
        nodes.iter().flatten().all(|node| TcpStream::connect(node.http).is_ok())
    });
    eventually("the first three elect a leader and take a write", || {
        redis_cli(node(&nodes, 1), &["SET", "before", "1"]) == "OK"
    });
    let (_, members) = http(node(&nodes, 4).http, "GET", "/members");
    assert!(members.contains("leader none known"), "4 is no member yet: {members}");

    let leader_id = leader(node(&nodes, 1)).unwrap();
    let leader_http = node(&nodes, leader_id).http;
    let (status, body) = http(leader_http, "POST", "/members/add-learner/4");
    assert_eq!((status, body.as_str()), (200, "shard 0: voters 1,2,3 learners 4\n"));
    let (status, body) = http(leader_http, "POST", "/members/add-voter/4");
    assert_eq!((status, body.as_str()), (200, "shard 0: voters 1,2,3,4\n"));
    eventually("4 serves what was written before it joined", || {
        redis_cli(node(&nodes, 4), &["GET", "before"]) == "1"
    });
    assert_eq!(redis_cli(node(&nodes, 4), &["SET", "joined", "4"]), "OK");

    // Remove a node other than the leader and 4, then stop it and one more of the old voters.
    let removed = (1..=3).find(|&id| id != leader_id).unwrap();
    let (status, body) = http(leader_http, "POST", &format!("/members/remove/{removed}"));
    assert_eq!(status, 200, "{body}");
    assert!(!body.contains(&removed.to_string()), "{removed} is gone: {body}");
    let (status, again) = http(leader_http, "POST", &format!("/members/remove/{removed}"));
    assert_eq!(status, 200, "asking again is answered at once: {again}");
    eventually("the removed node learns it and says so on /health", || {
        let (status, health) = http(node(&nodes, removed).http, "GET", "/health");
        status == 503 && health.contains("removed from shards [0]")
    });
    let also_stopped = (1..=3).find(|&id| id != leader_id && id != removed).unwrap();
    let (status, refused) = http(node(&nodes, also_stopped).http, "POST", "/members/remove/4");
    assert_eq!(status, 409, "only the leader changes membership: {refused}");
    assert!(refused.contains(&format!("node {leader_id} leads it")), "{refused}");
    nodes[removed - 1] = None;
    nodes[also_stopped - 1] = None;
    // Voters now: the leader and 4, and also_stopped (down): 2 of 3 still make a majority.
    eventually("writes go on with two of the three voters", || {
        redis_cli(node(&nodes, leader_id), &["SET", "after", "2"]) == "OK"
    });
    for id in [leader_id, 4] {
        for (key, value) in [("before", "1"), ("joined", "4"), ("after", "2")] {
            assert_eq!(redis_cli(node(&nodes, id), &["GET", key]), value, "node {id} {key}");
        }
    }
    drop(nodes);
    let _ = std::fs::remove_dir_all(&directory);
}
