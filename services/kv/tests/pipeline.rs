//! Pipelining on one connection: the server over [`LocalCluster`] in simulation, the requests sent
//! in ONE write. They run as a batch, yet effects and replies keep request order; plain writes to
//! one shard are in flight together and plain reads share one read barrier per shard (a counting
//! wrapper around the cluster checks both).
#![allow(clippy::unwrap_used, reason = "tests unwrap: a failure is the test failing")]

use std::cell::Cell;
use std::net::SocketAddr;
use std::rc::Rc;
use strata_kv::resp::{decode_reply, encode_request};
use strata_kv::server::{Cluster, ClusterError};
use strata_kv::{serve, LocalCluster, Machine, Reply, ServerConfig};
use strata_rt::{Duration, NodeId, Runtime};
use strata_sim::{node_ip, FaultConfig, NodeOptions, Sim};

const NODE: NodeId = NodeId(0);
const SHARDS: u32 = 4;

/// [`LocalCluster`], counting writes in flight and read barriers.
struct Counting {
    inner: LocalCluster,
    writes_in_flight: Cell<usize>,
    writes_in_flight_max: Cell<usize>,
    barriers: Cell<usize>,
}

impl Cluster for Counting {
    fn shard_count(&self) -> u32 {
        self.inner.shard_count()
    }

    async fn write(&self, shard: u32, entry: Vec<u8>) -> Result<Reply, ClusterError> {
        self.writes_in_flight.set(self.writes_in_flight.get() + 1);
        let in_flight = self.writes_in_flight.get().max(self.writes_in_flight_max.get());
        self.writes_in_flight_max.set(in_flight);
        let reply = self.inner.write(shard, entry).await;
        self.writes_in_flight.set(self.writes_in_flight.get() - 1);
        reply
    }

    async fn read_barrier(&self, shard: u32) -> Result<(), ClusterError> {
        self.barriers.set(self.barriers.get() + 1);
        self.inner.read_barrier(shard).await
    }

    fn machine(&self, shard: u32) -> Rc<Machine> {
        self.inner.machine(shard)
    }
}

/// Runs `body` against a fresh server on one simulated node.
fn with_server<F: std::future::Future<Output = ()> + 'static>(
    seed: u64,
    body: impl FnOnce(Runtime, SocketAddr, Rc<Counting>) -> F + 'static,
) {
    let mut sim = Sim::new(seed, FaultConfig::none());
    sim.add_node(NodeOptions::SERVER, |_| Box::pin(async {}));
    let rt = sim.runtime(NODE);
    let done = Rc::new(Cell::new(false));
    let finished = done.clone();
    let _task = rt.clone().spawn(async move {
        let inner = LocalCluster::open(&rt, "kv", SHARDS).await.unwrap();
        let cluster = Rc::new(Counting {
            inner,
            writes_in_flight: Cell::new(0),
            writes_in_flight_max: Cell::new(0),
            barriers: Cell::new(0),
        });
        let address = SocketAddr::new(node_ip(NODE), 6379);
        let listener = rt.net().listen(address).unwrap();
        let config = ServerConfig { listen: address, expire_interval_ms: 0, ..Default::default() };
        let _server = rt.spawn(serve(rt.clone(), cluster.clone(), listener, config));
        body(rt, address, cluster).await;
        finished.set(true);
    });
    assert!(sim.run_until(Duration::from_secs(600), || done.get()), "the test body finished");
}

fn request(text: &str) -> Vec<Vec<u8>> {
    text.split(' ').map(|part| part.as_bytes().to_vec()).collect()
}

/// Sends `bytes` in one write and reads `count` replies.
async fn exchange(rt: &Runtime, address: SocketAddr, bytes: Vec<u8>, count: usize) -> Vec<Reply> {
    let stream = rt.net().connect(address).await.unwrap();
    stream.write_all(bytes).await.unwrap();
    let mut replies = Vec::new();
    let mut buffered: Vec<u8> = Vec::new();
    while replies.len() < count {
        while let Some((reply, used)) = decode_reply(&buffered).unwrap() {
            buffered.drain(..used);
            replies.push(reply);
        }
        if replies.len() == count {
            break;
        }
        let (result, chunk) = stream.read(vec![0; 64 << 10]).await;
        let read = result.unwrap();
        assert!(read > 0, "the server closed after {} of {count} replies", replies.len());
        buffered.extend_from_slice(&chunk[..read]);
    }
    assert!(buffered.is_empty(), "no reply beyond the {count} expected");
    replies
}

async fn pipeline(rt: &Runtime, address: SocketAddr, requests: &[&str]) -> Vec<Reply> {
    let bytes = requests.iter().flat_map(|text| encode_request(&request(text))).collect();
    exchange(rt, address, bytes, requests.len()).await
}

fn ok() -> Reply {
    Reply::Simple("OK".into())
}

#[test]
fn writes_and_reads_of_one_key_keep_request_order() {
    with_server(1, |rt, address, _| async move {
        let requests = ["SET k 1", "INCR k", "GET k", "SET k 5", "GET k", "DEL k", "GET k"];
        let replies = pipeline(&rt, address, &requests).await;
        let expected = vec![
            ok(),
            Reply::Integer(2),
            Reply::bulk("2"),
            ok(),
            Reply::bulk("5"),
            Reply::Integer(1),
            Reply::Null,
        ];
        assert_eq!(replies, expected);
    });
}

#[test]
fn a_thousand_pipelined_incrs_answer_one_to_a_thousand_in_order() {
    with_server(2, |rt, address, cluster| async move {
        let requests = vec!["INCR counter"; 1000];
        let replies = pipeline(&rt, address, &requests).await;
        let expected: Vec<Reply> = (1..=1000).map(Reply::Integer).collect();
        assert_eq!(replies, expected);
        // 64 commands an entry at most: 16 entries, all proposed before any was awaited.
        let in_flight = cluster.writes_in_flight_max.get();
        assert_eq!(
            in_flight, 16,
            "entries in flight at most: not proposed together, or not 64 each"
        );
        let replies = pipeline(&rt, address, &["GET counter"]).await;
        assert_eq!(replies, vec![Reply::bulk("1000")]);
    });
}

/// Writes whose effect grows with the data they read (COPY) go in entries of their own; the
/// writes around them share entries, and every reply stays in its place.
#[test]
fn a_copy_in_a_pipeline_of_writes_goes_alone() {
    with_server(4, |rt, address, cluster| async move {
        // One shard's keys (a hash tag), so the writes make one run.
        let requests =
            ["SET {t}a 1", "SET {t}b 2", "COPY {t}a {t}c", "INCR {t}c", "SET {t}d 4", "GET {t}c"];
        let replies = pipeline(&rt, address, &requests).await;
        let expected =
            vec![ok(), ok(), Reply::Integer(1), Reply::Integer(2), ok(), Reply::bulk("2")];
        assert_eq!(replies, expected);
        // [SET SET] [COPY] [INCR SET], proposed together: the GET waits for all three.
        assert_eq!(cluster.writes_in_flight_max.get(), 3, "entries in flight at most");
    });
}

#[test]
fn pipelined_reads_share_a_barrier_per_shard() {
    with_server(3, |rt, address, cluster| async move {
        let sets: Vec<String> = (0..200).map(|key| format!("SET key{key} {key}")).collect();
        let sets: Vec<&str> = sets.iter().map(String::as_str).collect();
        assert!(pipeline(&rt, address, &sets).await.iter().all(|reply| *reply == ok()));
        let before = cluster.barriers.get();
        let gets: Vec<String> = (0..200).map(|key| format!("GET key{key}")).collect();
        let gets: Vec<&str> = gets.iter().map(String::as_str).collect();
        let replies = pipeline(&rt, address, &gets).await;
        let expected: Vec<Reply> = (0..200).map(|key| Reply::bulk(key.to_string())).collect();
        assert_eq!(replies, expected);
        let barriers = cluster.barriers.get() - before;
        assert!(barriers <= SHARDS as usize, "{barriers} barriers for 200 reads in one batch");
    });
}

/// Commands that run alone (MULTI/EXEC, connection commands, fan-out over shards, errors) in the
/// middle of plain ones, over keys of several shards.
#[test]
fn commands_that_run_alone_keep_their_place() {
    with_server(4, |rt, address, _| async move {
        let requests = [
            "SET {a}x 1",
            "SET {b}y 2",
            "INCR {a}x",
            "MULTI",
            "INCR {a}x",
            "GET {a}x",
            "EXEC",
            "MGET {a}x {b}y",
            "PING",
            "INCRBY {b}y notanumber",
            "INCR {b}y",
            "NOSUCHCOMMAND",
            "GET {b}y",
            "DEL {a}x {b}y",
            "EXISTS {a}x {b}y",
            "GET {a}x",
        ];
        let replies = pipeline(&rt, address, &requests).await;
        let expected = vec![
            ok(),
            ok(),
            Reply::Integer(2),
            ok(),
            Reply::Simple("QUEUED".into()),
            Reply::Simple("QUEUED".into()),
            Reply::Array(vec![Reply::Integer(3), Reply::bulk("3")]),
            Reply::Array(vec![Reply::bulk("3"), Reply::bulk("2")]),
            Reply::Simple("PONG".into()),
            Reply::error("ERR value is not an integer or out of range"),
            Reply::Integer(3),
            Reply::Null, // Replaced below: the unknown command's error text.
            Reply::bulk("3"),
            Reply::Integer(2),
            Reply::Integer(0),
            Reply::Null,
        ];
        assert_eq!(replies.len(), expected.len());
        for (position, (reply, expected)) in replies.iter().zip(&expected).enumerate() {
            if position == 11 {
                assert!(reply.is_error(), "{reply:?}");
            } else {
                assert_eq!(reply, expected, "reply {position} ({})", requests[position]);
            }
        }
    });
}

/// Requests before a protocol error run and are answered; then the error, then the close.
#[test]
fn a_protocol_error_ends_the_batch_after_the_requests_before_it() {
    with_server(5, |rt, address, _| async move {
        let mut bytes: Vec<u8> = ["SET k 1", "INCR k", "GET k"]
            .iter()
            .flat_map(|text| encode_request(&request(text)))
            .collect();
        bytes.extend_from_slice(b"*1\r\n$x\r\n");
        let replies = exchange(&rt, address, bytes, 4).await;
        assert_eq!(replies[..3], [ok(), Reply::Integer(2), Reply::bulk("2")]);
        assert!(replies[3].is_error(), "{:?}", replies[3]);
    });
}

/// The replies of many pipelined requests arrive complete even when they exceed one flush.
#[test]
fn large_replies_of_a_batch_arrive_whole_and_in_order() {
    with_server(6, |rt, address, _| async move {
        let value = "v".repeat(8 << 10);
        let set = format!("SET big {value}");
        assert_eq!(pipeline(&rt, address, &[&set]).await, vec![ok()]);
        let requests = vec!["GET big"; 300];
        let replies = pipeline(&rt, address, &requests).await;
        assert!(replies.iter().all(|reply| *reply == Reply::bulk(value.as_str())));
    });
}
