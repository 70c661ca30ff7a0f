//! Three nodes host three groups each, on the simulator's full fault model (lossy, reordering,
//! partitioned network; crashes that lose unsynced writes; torn writes; I/O errors; pauses and
//! clock drift). Every node runs clients that increment per-group counters through its local
//! host and read them through read barriers.
//!
//! Checks: every replica applies the same command at each (group, index); acknowledged
//! increments get distinct outputs; a read sees at least every increment acknowledged before it
//! started; after the faults stop every node's proposals commit again. A node whose WAL failed
//! reopens it, as a restarted process would.
//!
//! `STRATA_MULTIRAFT_SEEDS=N STRATA_MULTIRAFT_FIRST_SEED=F cargo nextest run -p strata-multiraft`
//! sweeps seeds F..F+N (default 0..300).
#![allow(clippy::unwrap_used, reason = "tests unwrap: a failure is the test failing")]

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::rc::Rc;
use strata_multiraft::{GroupId, Host, HostConfig, HostError, StateMachine};
use strata_rt::{Duration, NodeId, Runtime};
use strata_sim::{FaultConfig, NodeOptions, Sim};

const NODES: u32 = 3;
const GROUPS: [GroupId; 3] = [1, 2, 3];

#[derive(Default)]
struct Record {
    /// (group, index) → the command every replica applied there.
    applied: BTreeMap<(GroupId, u64), Vec<u8>>,
    /// Per group, the outputs of acknowledged increments.
    acknowledged: BTreeMap<GroupId, Vec<u64>>,
    violations: Vec<String>,
    reads: u64,
    /// Per node, proposals acknowledged after the faults stopped.
    final_writes: BTreeMap<u32, u64>,
}

struct Counter {
    group: GroupId,
    value: Cell<u64>,
    record: Rc<RefCell<Record>>,
}

impl StateMachine for Counter {
    type Output = u64;

    async fn apply(&self, index: u64, command: &[u8]) -> u64 {
        let mut record = self.record.borrow_mut();
        let text = String::from_utf8_lossy(command).into_owned();
        if !text.starts_with(&format!("{}:", self.group)) {
            record.violations.push(format!("group {} index {index}: applied {text}", self.group));
        }
        let previous =
            record.applied.entry((self.group, index)).or_insert_with(|| command.to_vec()).clone();
        if previous != command {
            let previous = String::from_utf8_lossy(&previous);
            let message = format!(
                "group {} index {index}: replicas applied {previous} and {text}",
                self.group
            );
            record.violations.push(message);
        }
        self.value.set(self.value.get() + 1);
        self.value.get()
    }

    fn durable_index(&self) -> u64 {
        0 // In memory: rebuilt from the log after every restart.
    }
}

fn config(node: NodeId) -> HostConfig {
    let voters = (0..NODES).map(NodeId).collect();
    let mut config = HostConfig::new(node, voters);
    config.request_timeout = Duration::from_secs(2);
    config.wal.segment_bytes = 1 << 20;
    config.wal.record_bytes_max = 256 << 10;
    config
}

/// One process: serve until the host latches (a failed sync or a corrupt log), then reopen
/// from the files, as a restarted process would.
async fn boot(rt: Runtime, record: Rc<RefCell<Record>>, faults_over: Rc<Cell<bool>>) {
    loop {
        match serve(&rt, &record, &faults_over).await {
            Ok(()) | Err(HostError::Latched { .. }) => {}
            Err(error) => panic!("node {}: open failed: {error}", rt.node_id()),
        }
        rt.sleep(Duration::from_millis(10)).await;
    }
}

async fn serve(
    rt: &Runtime,
    record: &Rc<RefCell<Record>>,
    faults_over: &Rc<Cell<bool>>,
) -> Result<(), HostError> {
    let machines = GROUPS
        .iter()
        .map(|&group| {
            let machine = Counter { group, value: Cell::new(0), record: record.clone() };
            (group, Rc::new(machine))
        })
        .collect();
    let host = Host::open(rt, config(rt.node_id()), machines).await?;
    let clients: Vec<_> = (0..2u64)
        .map(|client| {
            rt.spawn(run_client(
                rt.clone(),
                host.clone(),
                client,
                record.clone(),
                faults_over.clone(),
            ))
        })
        .collect();
    while host.failure().is_none() {
        rt.sleep(Duration::from_millis(20)).await;
    }
    for client in clients {
        client.abort();
    }
    host.close().await;
    Ok(())
}

async fn run_client(
    rt: Runtime,
    host: Host<Counter>,
    client: u64,
    record: Rc<RefCell<Record>>,
    faults_over: Rc<Cell<bool>>,
) {
    let mut rng = rt.rng();
    loop {
        let group = GROUPS[rng.index(GROUPS.len())];
        if rng.chance(0.3) {
            read(&host, group, &record).await;
        } else {
            let command = format!("{group}:{}:{client}:{}", rt.node_id(), rng.next_u64());
            if let Ok(output) = host.propose(group, command.as_bytes()).await {
                let mut record = record.borrow_mut();
                record.acknowledged.entry(group).or_default().push(output);
                if faults_over.get() {
                    *record.final_writes.entry(rt.node_id().0).or_default() += 1;
                }
            }
        }
        rt.sleep(Duration::from_millis(rng.range_inclusive(1, 20))).await;
    }
}

async fn read(host: &Host<Counter>, group: GroupId, record: &RefCell<Record>) {
    let floor = record
        .borrow()
        .acknowledged
        .get(&group)
        .map_or(0, |outputs| outputs.iter().copied().max().unwrap_or(0));
    if host.read_barrier(group).await.is_err() {
        return;
    }
    let value = host.machine(group).unwrap().value.get();
    let mut record = record.borrow_mut();
    record.reads += 1;
    if value < floor {
        let message = format!("group {group}: read {value} after an increment returned {floor}");
        record.violations.push(message);
    }
}

fn run(seed: u64) -> (u64, Rc<RefCell<Record>>) {
    let mut draw = strata_rt::Rng::with_seed(seed ^ 0x0303_a1f7);
    let mut sim = Sim::new(seed, FaultConfig::swarm(&mut draw));
    let record: Rc<RefCell<Record>> = Rc::default();
    let faults_over = Rc::new(Cell::new(false));
    for _ in 0..NODES {
        let (record, faults_over) = (record.clone(), faults_over.clone());
        sim.add_node(NodeOptions::SERVER, move |rt| {
            Box::pin(boot(rt, record.clone(), faults_over.clone()))
        });
    }
    let fault_duration = Duration::from_secs(20);
    sim.start_faults(fault_duration);
    sim.run_for(fault_duration + Duration::from_secs(1));
    sim.heal();
    faults_over.set(true);
    let live = sim.run_until(Duration::from_secs(20), || {
        let record = record.borrow();
        (0..NODES).all(|node| record.final_writes.get(&node).copied().unwrap_or(0) >= 3)
    });
    let record_check = record.borrow();
    if !record_check.violations.is_empty() {
        eprintln!("seed {seed}: faults {}\n{:?}", sim.config().describe(), sim.stats());
    }
    assert!(record_check.violations.is_empty(), "seed {seed}: {:?}", record_check.violations);
    assert!(
        live,
        "seed {seed}: liveness: {:?} writes per node after healing",
        record_check.final_writes
    );
    for (group, outputs) in &record_check.acknowledged {
        let mut sorted = outputs.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), outputs.len(), "seed {seed}: group {group}: an output twice");
    }
    eprintln!(
        "seed {seed}: {} acknowledged, {} reads, trace {:016x}, {:?}",
        record_check.acknowledged.values().map(Vec::len).sum::<usize>(),
        record_check.reads,
        sim.trace_hash(),
        sim.stats()
    );
    drop(record_check);
    (sim.trace_hash(), record)
}

#[test]
fn groups_stay_consistent_and_live_under_faults() {
    let variable = |name: &str| std::env::var(name).ok().and_then(|value| value.parse().ok());
    let seeds: u64 = variable("STRATA_MULTIRAFT_SEEDS").unwrap_or(300);
    let first: u64 = variable("STRATA_MULTIRAFT_FIRST_SEED").unwrap_or(0);
    let mut acknowledged = 0;
    for seed in first..first + seeds {
        let (_, record) = run(seed);
        let record = record.borrow();
        acknowledged += record.acknowledged.values().map(Vec::len).sum::<usize>();
        assert!(record.reads > 0, "seed {seed}: no read completed");
    }
    assert!(acknowledged > 100 * seeds as usize, "only {acknowledged} writes acknowledged");
}

/// A sync failed, the host latched and reopened the WAL in the same process: the page cache
/// still showed records the failed sync had forgotten, later records claimed them durable, and a
/// crash left a hole that recovery reported as corruption. The WAL now rewrites and syncs, at
/// open, every record no later record proves durable.
#[test]
fn seed_14_reopen_after_a_failed_sync_makes_the_tail_durable() {
    run(14);
}

/// A sync of the directory failed while the WAL created its first segment; the host reopened
/// in the same process, found the segment in the page cache, acknowledged records in it, and a
/// crash took the segment's name (and those records) away: replicas diverged. The WAL now syncs
/// its directory and rewrites unwitnessed segment headers at every open.
#[test]
fn seed_134_reopen_makes_a_segment_name_durable() {
    run(134);
}

#[test]
fn a_seed_replays_exactly() {
    assert_eq!(run(42).0, run(42).0);
}
