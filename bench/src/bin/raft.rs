//! Raft benchmark: one group replicated by 3 nodes (3 threads, each its own io_uring reactor and
//! data directory), peer messages over TCP on loopback, every entry durable (the shared WAL's
//! fdatasync) on a majority before it is acknowledged. Proposers on the leader's node propose
//! 64-byte commands; reported per concurrency (1, 64, 256): committed writes/s, p50/p99 latency,
//! and the entries each WAL sync carried on the leader. The anchor, measured in the same run on
//! the same file system: the disk's raw rate of one 64-byte write + fdatasync.
//!
//! `cargo run --release -p strata-bench --bin raft [-- SECONDS_PER_CASE]` (default 3). Set
//! `STRATA_BENCH_DIR` to pick the file system.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::future::Future;
use std::net::{SocketAddr, TcpListener};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use strata_bench::{raw_syncs_per_second, scratch_dir};
use strata_multiraft::{Host, HostConfig, NoSnapshot, SnapshotSource, StateMachine};
use strata_rt::transport::PeerConfig;
use strata_rt::uring::{block_on, UringOptions};
use strata_rt::{Duration, NodeId, Runtime};

const NODES: u32 = 3;
const GROUP: u64 = 1;
const COMMAND_BYTES: usize = 64;
const CONCURRENCY: [usize; 3] = [1, 64, 256];

/// Counts applied commands; in memory (the log is the durable copy).
struct Counter(Cell<u64>);

impl StateMachine for Counter {
    type Output = u64;
    type Snapshot = NoSnapshot;

    async fn apply(&self, _index: u64, _command: &[u8]) -> u64 {
        self.0.set(self.0.get() + 1);
        self.0.get()
    }

    fn durable_index(&self) -> u64 {
        0
    }

    fn snapshot(&self) -> impl Future<Output = Result<NoSnapshot, String>> + 'static {
        std::future::ready(Err("in memory".to_owned()))
    }

    async fn install(&self, _index: u64, _source: &mut SnapshotSource) -> Result<(), String> {
        Err("in memory".to_owned())
    }
}

struct Row {
    proposers: usize,
    writes_per_second: f64,
    p50_micros: u64,
    p99_micros: u64,
    entries_per_sync: f64,
}

fn free_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    listener.local_addr().expect("its address")
}

/// Proposes from `proposers` tasks for `seconds`; returns the row.
async fn measure(rt: &Runtime, host: &Host<Counter>, proposers: usize, seconds: f64) -> Row {
    let latencies: Rc<RefCell<Vec<u64>>> = Rc::default();
    let stop = Rc::new(Cell::new(false));
    let before = host.stats();
    let started = Instant::now();
    let tasks: Vec<_> = (0..proposers)
        .map(|_| {
            let (host, latencies, stop) = (host.clone(), latencies.clone(), stop.clone());
            rt.spawn(async move {
                let command = [7u8; COMMAND_BYTES];
                while !stop.get() {
                    let begun = Instant::now();
                    if host.propose(GROUP, &command).await.is_ok() {
                        latencies.borrow_mut().push(begun.elapsed().as_micros() as u64);
                    }
                }
            })
        })
        .collect();
    rt.sleep(Duration::from_secs_f64(seconds)).await;
    stop.set(true);
    let elapsed = started.elapsed().as_secs_f64();
    for task in tasks {
        task.await;
    }
    let after = host.stats();
    let mut latencies = latencies.take();
    latencies.sort_unstable();
    let percentile = |p: f64| {
        latencies
            .get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0)
    };
    let syncs = (after.wal_syncs - before.wal_syncs).max(1);
    Row {
        proposers,
        writes_per_second: latencies.len() as f64 / elapsed,
        p50_micros: percentile(0.50),
        p99_micros: percentile(0.99),
        entries_per_sync: (after.entries_persisted - before.entries_persisted) as f64
            / syncs as f64,
    }
}

async fn node(rt: Runtime, seconds: f64, done: Arc<AtomicBool>, rows: Arc<Mutex<Vec<Row>>>) {
    let voters = (0..NODES).map(NodeId).collect();
    let machines = BTreeMap::from([(GROUP, Rc::new(Counter(Cell::new(0))))]);
    let mut config = HostConfig::new(rt.node_id(), voters);
    config.snapshot_entries = 0; // The counter is in memory: it cannot snapshot.
    let host = Host::open(&rt, config, machines).await.expect("open the host");
    // Node 0 campaigns first in practice, but any node may lead: the leader measures.
    let leader = loop {
        rt.sleep(Duration::from_millis(20)).await;
        if let Some(leader) = host.status(GROUP).and_then(|status| status.leader) {
            break leader;
        }
    };
    if leader == rt.node_id() {
        // Warm up: the first entries of a term, connections, page cache.
        measure(&rt, &host, 16, 0.5).await;
        for proposers in CONCURRENCY {
            let row = measure(&rt, &host, proposers, seconds).await;
            rows.lock().expect("rows").push(row);
        }
        done.store(true, Ordering::SeqCst);
    }
    while !done.load(Ordering::SeqCst) {
        rt.sleep(Duration::from_millis(20)).await;
    }
    // Let the followers see the end before the leader goes away.
    rt.sleep(Duration::from_millis(100)).await;
    host.close().await;
}

fn main() {
    let seconds: f64 = std::env::args().nth(1).and_then(|text| text.parse().ok()).unwrap_or(3.0);
    let dir = scratch_dir("raft");
    let raw = raw_syncs_per_second(&dir, COMMAND_BYTES, seconds.min(2.0));
    let addresses: Vec<SocketAddr> = (0..NODES).map(|_| free_port()).collect();
    let done = Arc::new(AtomicBool::new(false));
    let rows: Arc<Mutex<Vec<Row>>> = Arc::default();
    std::thread::scope(|scope| {
        for id in 0..NODES {
            let options = UringOptions {
                node_id: NodeId(id),
                data_dir: dir.join(format!("node-{id}")),
                peers: Some(PeerConfig {
                    node: NodeId(id),
                    listen: addresses[id as usize],
                    peers: (0..NODES)
                        .filter(|&peer| peer != id)
                        .map(|peer| (NodeId(peer), addresses[peer as usize]))
                        .collect(),
                }),
            };
            let (done, rows) = (done.clone(), rows.clone());
            scope.spawn(move || {
                block_on(&options, |rt| node(rt, seconds, done, rows)).expect("node runtime");
            });
        }
    });
    println!("Raft: 3 nodes on loopback (io_uring, TCP, one fdatasync per WAL round), {COMMAND_BYTES}-byte commands, {seconds} s per case");
    println!(
        "anchor: raw {COMMAND_BYTES}-byte write + fdatasync on the same file system: {raw:.0}/s"
    );
    println!(
        "{:>10} {:>14} {:>10} {:>10} {:>16} {:>18}",
        "proposers", "committed/s", "p50 us", "p99 us", "entries/sync", "ratio to raw sync"
    );
    for row in rows.lock().expect("rows").iter() {
        println!(
            "{:>10} {:>14.0} {:>10} {:>10} {:>16.1} {:>18.2}",
            row.proposers,
            row.writes_per_second,
            row.p50_micros,
            row.p99_micros,
            row.entries_per_sync,
            row.writes_per_second / raw
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
