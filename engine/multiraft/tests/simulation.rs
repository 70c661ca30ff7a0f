//! Nodes host three groups each, on the simulator's full fault model (lossy, reordering,
//! partitioned network; crashes that lose unsynced writes; torn writes; I/O errors; pauses and
//! clock drift). Every node runs clients that increment per-group counters through its local
//! host and read them through read barriers. Two scenarios:
//!
//! - static: three nodes, all voters of every group;
//! - leases: the static scenario with leader leases answering read barriers;
//! - membership: five nodes, three bootstrap voters; each group's leader walks the group through
//!   [`CHANGES`] over and over (add through a learner, add a voter directly, remove, replace,
//!   five voters and three) while the clients write and the faults go on.
//!
//! Checks: every replica applies the same command at each (group, index); acknowledged
//! increments get distinct outputs; a read sees at least every increment acknowledged before it
//! started; after the faults stop proposals commit again (static: from every node; membership:
//! in every group, and every group completes another membership change), and the members of each
//! group's configuration agree on it. A node whose WAL failed reopens it, as a restarted process
//! would.
//!
//! `STRATA_MULTIRAFT_SEEDS=N STRATA_MULTIRAFT_FIRST_SEED=F cargo nextest run -p strata-multiraft`
//! sweeps seeds F..F+N of every scenario (default 0..300 static, 0..100 the others).
#![allow(clippy::unwrap_used, reason = "tests unwrap: a failure is the test failing")]

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::rc::Rc;
use strata_multiraft::{GroupId, Host, HostConfig, HostError, StateMachine};
use strata_raft::{ConfChange, ConfChangeStep, Membership, Role};
use strata_rt::{Duration, NodeId, Runtime};
use strata_sim::{FaultConfig, NodeOptions, Sim};

/// Every group's bootstrap voters: nodes 0, 1 and 2.
const BOOTSTRAP_VOTERS: u32 = 3;
const GROUPS: [GroupId; 3] = [1, 2, 3];

#[derive(Clone, Copy, Debug)]
struct Scenario {
    nodes: u32,
    /// Whether group leaders walk their groups through [`CHANGES`].
    membership: bool,
    /// Whether leaders answer read barriers from their leases.
    lease_reads: bool,
    /// Whether nodes create group [`CREATED_FIRST`] at run time, later remove it and create
    /// [`CREATED_SECOND`].
    dynamic_groups: bool,
}

const STATIC: Scenario =
    Scenario { nodes: 3, membership: false, lease_reads: false, dynamic_groups: false };
const MEMBERSHIP: Scenario =
    Scenario { nodes: 5, membership: true, lease_reads: false, dynamic_groups: false };
const LEASES: Scenario =
    Scenario { nodes: 3, membership: false, lease_reads: true, dynamic_groups: false };
const DYNAMIC: Scenario =
    Scenario { nodes: 3, membership: false, lease_reads: false, dynamic_groups: true };

/// Groups the dynamic scenario creates at run time (the first one it also removes).
const CREATED_FIRST: GroupId = 4;
const CREATED_SECOND: GroupId = 5;

/// Where a node is with a group created at run time. A node that crashed while `Creating` or
/// `Removing` does not know whether its WAL recorded the step: it hosts the group on reopen if
/// the WAL says so (`HostError::UnhostedGroup`), and takes the step again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Lifecycle {
    Creating,
    Created,
    Removing,
    Removed,
}

/// The membership cycle, from the bootstrap voters {0, 1, 2} back to them.
const CHANGES: [&[ConfChangeStep]; 7] = {
    use ConfChangeStep::{AddLearner, AddVoter, Remove};
    [
        &[AddLearner(NodeId(3))],                  // {0,1,2} learner 3
        &[AddVoter(NodeId(3))],                    // {0,1,2,3}: promoted
        &[AddVoter(NodeId(4))],                    // {0,1,2,3,4}: added directly
        &[Remove(NodeId(0))],                      // {1,2,3,4}
        &[AddVoter(NodeId(0)), Remove(NodeId(1))], // {0,2,3,4}: 1 replaced by 0
        &[Remove(NodeId(4))],                      // {0,2,3}
        &[AddVoter(NodeId(1)), Remove(NodeId(3))], // {0,1,2}: 3 replaced by 1
    ]
};

/// The configuration after the first `done` changes of the cycle.
fn stage(done: usize) -> Membership {
    let mut membership = Membership::with_voters((0..BOOTSTRAP_VOTERS).map(NodeId));
    for steps in &CHANGES[..done] {
        let change = ConfChange { steps: steps.to_vec() };
        membership = membership.apply(&change).unwrap().leave_joint();
    }
    membership
}

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
    /// Per group, the same.
    final_writes_by_group: BTreeMap<GroupId, u64>,
    /// Per group, membership changes completed (in force), and those after the faults stopped.
    changes: BTreeMap<GroupId, u64>,
    final_changes: BTreeMap<GroupId, u64>,
    /// Set when the membership scenario stops changing configurations, to compare them.
    changes_stopped: bool,
    /// Per (node, group), what the node last reported: role, term, configuration.
    views: BTreeMap<(u32, GroupId), (Role, u64, Membership)>,
    /// Per node, its host's snapshot counters as last reported (taken, chunks sent,
    /// installed, checkpoints), summed over its restarts.
    snapshots: BTreeMap<u32, [u64; 4]>,
    /// The most WAL segments any node had at once.
    wal_segments_max: u64,
    /// Per node, read barriers its host answered from a lease (summed over restarts).
    lease_reads: BTreeMap<u32, u64>,
    /// Per (node, group created at run time), where the node is with it.
    lifecycles: BTreeMap<(u32, GroupId), Lifecycle>,
    /// Per node, when it first started (its clock), for the dynamic scenario's schedule.
    started: BTreeMap<u32, strata_rt::Instant>,
}

impl Record {
    fn snapshot_totals(&self) -> [u64; 4] {
        self.snapshots.values().fold([0; 4], |mut sum, counts| {
            sum.iter_mut().zip(counts).for_each(|(total, count)| *total += count);
            sum
        })
    }
}

/// A group's counter: how many commands it applied. Durable only through snapshots, written to
/// its own file (`counter-GROUP`: index, value, crc32c); entries after the last one are applied
/// again from the log on reopen.
struct Counter {
    rt: Runtime,
    group: GroupId,
    value: Cell<u64>,
    applied: Cell<u64>,
    durable: Rc<Cell<u64>>,
    record: Rc<RefCell<Record>>,
}

/// Bytes of a counter's snapshot stream: the index and value, then padding derived from them,
/// so that a transfer takes several frames and chunks.
const COUNTER_SNAPSHOT_BYTES: u64 = 150_000;

fn counter_stream_byte(index: u64, value: u64, position: u64) -> u8 {
    let header = [index.to_le_bytes(), value.to_le_bytes()].concat();
    match header.get(position as usize) {
        Some(&byte) => byte,
        None => (position.wrapping_mul(31) ^ value ^ index) as u8,
    }
}

struct CounterSnapshot {
    index: u64,
    value: u64,
}

impl strata_multiraft::SnapshotReader for CounterSnapshot {
    async fn read(&mut self, offset: u64, length_max: usize) -> Result<Vec<u8>, String> {
        let end = (offset + length_max as u64).min(COUNTER_SNAPSHOT_BYTES);
        Ok((offset..end).map(|at| counter_stream_byte(self.index, self.value, at)).collect())
    }
}

impl Counter {
    async fn open(
        rt: &Runtime,
        group: GroupId,
        record: &Rc<RefCell<Record>>,
    ) -> Result<Counter, HostError> {
        let (index, value) = read_counter(rt, group)
            .await
            .map_err(|cause| HostError::Latched { cause: format!("counter {group}: {cause}") })?;
        Ok(Counter {
            rt: rt.clone(),
            group,
            value: Cell::new(value),
            applied: Cell::new(index),
            durable: Rc::new(Cell::new(index)),
            record: record.clone(),
        })
    }
}

async fn read_counter(rt: &Runtime, group: GroupId) -> std::io::Result<(u64, u64)> {
    let file = match rt.disk().open(&format!("counter-{group}")).await {
        Ok(file) => file,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok((0, 0)),
        Err(error) => return Err(error),
    };
    let bytes = file.read_exact_at(20, 0).await?;
    let crc = u32::from_le_bytes(bytes[16..20].try_into().unwrap());
    assert_eq!(crc32c::crc32c(&bytes[..16]), crc, "counter {group}: a renamed file is whole");
    let index = u64::from_le_bytes(bytes[0..8].try_into().unwrap());
    Ok((index, u64::from_le_bytes(bytes[8..16].try_into().unwrap())))
}

/// Replaces the counter's file atomically: written aside, synced, renamed, directory synced.
async fn write_counter(rt: &Runtime, group: GroupId, index: u64, value: u64) -> Result<(), String> {
    let disk = rt.disk();
    let (temporary, path) = (format!("counter-{group}.new"), format!("counter-{group}"));
    let mut bytes = [index.to_le_bytes(), value.to_le_bytes()].concat();
    bytes.extend_from_slice(&crc32c::crc32c(&bytes).to_le_bytes());
    let result = async {
        let file = disk.create(&temporary).await?;
        file.truncate(0).await?;
        file.write_at(bytes, 0).await.0?;
        file.sync().await?;
        disk.rename(&temporary, &path).await?;
        disk.sync_dir("").await
    };
    result.await.map_err(|error| format!("write counter {group}: {error}"))
}

impl StateMachine for Counter {
    type Output = u64;
    type Snapshot = CounterSnapshot;

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
        self.applied.set(index);
        self.value.get()
    }

    fn durable_index(&self) -> u64 {
        self.durable.get()
    }

    fn snapshot(
        &self,
    ) -> impl std::future::Future<Output = Result<CounterSnapshot, String>> + 'static {
        let (rt, group, durable) = (self.rt.clone(), self.group, self.durable.clone());
        let (index, value) = (self.applied.get(), self.value.get());
        async move {
            write_counter(&rt, group, index, value).await?;
            durable.set(durable.get().max(index));
            Ok(CounterSnapshot { index, value })
        }
    }

    async fn install(
        &self,
        index: u64,
        source: &mut strata_multiraft::SnapshotSource,
    ) -> Result<(), String> {
        let mut stream = Vec::new();
        while let Some(piece) = source.next().await? {
            stream.extend_from_slice(&piece);
        }
        let value =
            u64::from_le_bytes(stream.get(8..16).ok_or("short snapshot")?.try_into().unwrap());
        let expected: Vec<u8> =
            (0..COUNTER_SNAPSHOT_BYTES).map(|at| counter_stream_byte(index, value, at)).collect();
        if stream != expected {
            let message =
                format!("group {} snapshot {index}: the stream is not as sent", self.group);
            self.record.borrow_mut().violations.push(message);
        }
        write_counter(&self.rt, self.group, index, value).await?;
        self.value.set(value);
        self.applied.set(index);
        self.durable.set(index);
        Ok(())
    }
}

fn config(node: NodeId, scenario: Scenario) -> HostConfig {
    let voters = (0..BOOTSTRAP_VOTERS).map(NodeId).collect();
    let mut config = HostConfig::new(node, voters);
    config.lease_reads = scenario.lease_reads;
    config.request_timeout = Duration::from_secs(2);
    // Snapshots, log compaction and checkpoints every few seconds of the run, and snapshots
    // sent in several chunks, so that all of them happen under the faults.
    config.snapshot_entries = 40;
    config.snapshot_chunk_bytes = 50_000;
    config.wal.segment_bytes = 32 << 10;
    config.wal.record_bytes_max = 16 << 10;
    config.wal_segments_kept = 3;
    config
}

/// One process: serve until the host latches (a failed sync or a corrupt log), then reopen
/// from the files, as a restarted process would.
async fn boot(
    rt: Runtime,
    scenario: Scenario,
    record: Rc<RefCell<Record>>,
    faults_over: Rc<Cell<bool>>,
) {
    loop {
        match serve(&rt, scenario, &record, &faults_over).await {
            Ok(()) | Err(HostError::Latched { .. }) => {}
            Err(error) => panic!("node {}: open failed: {error}", rt.node_id()),
        }
        rt.sleep(Duration::from_millis(10)).await;
    }
}

async fn serve(
    rt: &Runtime,
    scenario: Scenario,
    record: &Rc<RefCell<Record>>,
    faults_over: &Rc<Cell<bool>>,
) -> Result<(), HostError> {
    let node = rt.node_id().0;
    let mut machines = BTreeMap::new();
    let hosted = |group: &GroupId| {
        let lifecycle = record.borrow().lifecycles.get(&(node, *group)).copied();
        matches!(lifecycle, Some(Lifecycle::Creating | Lifecycle::Created))
    };
    for group in
        GROUPS.into_iter().chain([CREATED_FIRST, CREATED_SECOND].into_iter().filter(hosted))
    {
        machines.insert(group, Rc::new(Counter::open(rt, group, record).await?));
    }
    let host = loop {
        match Host::open(rt, config(rt.node_id(), scenario), machines.clone()).await {
            // A removal the crash came before: host it again, and remove it again.
            Err(HostError::UnhostedGroup { group }) if !machines.contains_key(&group) => {
                machines.insert(group, Rc::new(Counter::open(rt, group, record).await?));
            }
            opened => break opened?,
        }
    };
    let mut clients: Vec<_> = (0..2u64)
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
    if scenario.dynamic_groups {
        clients.push(rt.spawn(create_and_remove_groups(rt.clone(), host.clone(), record.clone())));
    }
    if scenario.membership {
        let (host, record, faults_over) = (host.clone(), record.clone(), faults_over.clone());
        clients.push(rt.spawn(report_views(rt.clone(), host.clone(), record.clone())));
        clients.push(rt.spawn(change_memberships(rt.clone(), host, record, faults_over)));
    }
    let reported = record.borrow().snapshots.get(&rt.node_id().0).copied().unwrap_or_default();
    let lease_reads = record.borrow().lease_reads.get(&rt.node_id().0).copied().unwrap_or(0);
    while host.failure().is_none() {
        rt.sleep(Duration::from_millis(20)).await;
        let stats = host.stats();
        let now = [
            stats.snapshots_taken,
            stats.snapshot_chunks_sent,
            stats.snapshots_installed,
            stats.checkpoints,
        ];
        let counts = std::array::from_fn(|kind| reported[kind] + now[kind]);
        let mut record = record.borrow_mut();
        record.snapshots.insert(rt.node_id().0, counts);
        record.wal_segments_max = record.wal_segments_max.max(stats.wal_segments);
        record.lease_reads.insert(rt.node_id().0, lease_reads + stats.read_barriers_by_lease);
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
        let groups = host.groups();
        let group = groups[rng.index(groups.len())];
        if rng.chance(0.3) {
            read(&host, group, &record).await;
        } else {
            let command = format!("{group}:{}:{client}:{}", rt.node_id(), rng.next_u64());
            if let Ok(output) = host.propose(group, command.as_bytes()).await {
                let mut record = record.borrow_mut();
                record.acknowledged.entry(group).or_default().push(output);
                if faults_over.get() {
                    *record.final_writes.entry(rt.node_id().0).or_default() += 1;
                    *record.final_writes_by_group.entry(group).or_default() += 1;
                }
            }
        }
        rt.sleep(Duration::from_millis(rng.range_inclusive(1, 20))).await;
    }
}

/// Creates group [`CREATED_FIRST`] 2-4 s into the run, removes it and creates
/// [`CREATED_SECOND`] 10-12 s in (virtual time), taking again a step a crash interrupted.
async fn create_and_remove_groups(rt: Runtime, host: Host<Counter>, record: Rc<RefCell<Record>>) {
    let node = rt.node_id().0;
    let mut rng = rt.rng();
    let (create_at, replace_at) =
        (rng.range_inclusive(2_000, 4_000), rng.range_inclusive(10_000, 12_000));
    let voters: Vec<NodeId> = (0..BOOTSTRAP_VOTERS).map(NodeId).collect();
    let lifecycle = |group| record.borrow().lifecycles.get(&(node, group)).copied();
    let set = |group, state| record.borrow_mut().lifecycles.insert((node, group), state);
    let started = *record.borrow_mut().started.entry(node).or_insert_with(|| rt.now());
    loop {
        rt.sleep(Duration::from_millis(100)).await;
        let now_ms = rt.now().saturating_duration_since(started).as_millis() as u64;
        let steps = [
            (CREATED_FIRST, create_at, true),
            (CREATED_SECOND, replace_at, true),
            (CREATED_FIRST, replace_at, false),
        ];
        for (group, at, create) in steps {
            if now_ms < at {
                continue;
            }
            let state = lifecycle(group);
            if create && matches!(state, None | Some(Lifecycle::Creating)) {
                set(group, Lifecycle::Creating);
                let machine = match Counter::open(&rt, group, &record).await {
                    Ok(machine) => Rc::new(machine),
                    Err(_) => continue,
                };
                match host.create_group(group, machine, voters.clone()).await {
                    // Recorded before a crash, and hosted again on reopen.
                    Ok(()) | Err(HostError::ChangeRefused { .. }) => set(group, Lifecycle::Created),
                    Err(_) => continue,
                };
            } else if !create && matches!(state, Some(Lifecycle::Created | Lifecycle::Removing)) {
                set(group, Lifecycle::Removing);
                match host.remove_group(group).await {
                    Ok(()) | Err(HostError::UnknownGroup { .. }) => set(group, Lifecycle::Removed),
                    Err(_) => continue,
                };
            }
        }
    }
}

/// On every group this node leads, makes the next change of the cycle (until told to stop).
async fn change_memberships(
    rt: Runtime,
    host: Host<Counter>,
    record: Rc<RefCell<Record>>,
    faults_over: Rc<Cell<bool>>,
) {
    let mut rng = rt.rng();
    while !record.borrow().changes_stopped {
        rt.sleep(Duration::from_millis(rng.range_inclusive(50, 150))).await;
        for group in GROUPS {
            let membership = host.membership(group).unwrap();
            if host.status(group).unwrap().role != Role::Leader || membership.is_joint() {
                continue;
            }
            let Some(done) = (0..CHANGES.len()).find(|&done| stage(done) == membership) else {
                let message =
                    format!("group {group}: configuration {membership:?} is off the cycle");
                record.borrow_mut().violations.push(message);
                continue;
            };
            let change = ConfChange { steps: CHANGES[done].to_vec() };
            // Another leader may have gone on with the cycle by the time this one returns.
            let Ok(now) = host.change_membership(group, change).await else { continue };
            let mut record = record.borrow_mut();
            if !(0..CHANGES.len()).any(|done| stage(done) == now) {
                record.violations.push(format!("group {group}: changed to {now:?}, off the cycle"));
            }
            *record.changes.entry(group).or_default() += 1;
            if faults_over.get() {
                *record.final_changes.entry(group).or_default() += 1;
            }
        }
    }
}

/// Reports what this node knows of every group, every 50 ms.
async fn report_views(rt: Runtime, host: Host<Counter>, record: Rc<RefCell<Record>>) {
    loop {
        for group in GROUPS {
            let status = host.status(group).unwrap();
            let view = (status.role, status.term, host.membership(group).unwrap());
            record.borrow_mut().views.insert((rt.node_id().0, group), view);
        }
        rt.sleep(Duration::from_millis(50)).await;
    }
}

/// The members of each group's newest configuration (as its leader of the highest term knows
/// it) all know that configuration.
fn check_members_agree(record: &Record) -> Result<(), String> {
    for group in GROUPS {
        let views: Vec<_> = record.views.iter().filter(|((_, g), _)| *g == group).collect();
        let Some((_, (_, _, newest))) = views
            .iter()
            .filter(|(_, (role, _, _))| *role == Role::Leader)
            .max_by_key(|(_, (_, term, _))| *term)
        else {
            return Err(format!("group {group}: no leader reported"));
        };
        for ((node, _), (_, _, membership)) in &views {
            if newest.contains(NodeId(*node)) && membership != newest {
                return Err(format!(
                    "group {group}: node {node} knows {membership:?}, the leader {newest:?}"
                ));
            }
        }
    }
    Ok(())
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

fn at_least<K: Ord>(counts: &BTreeMap<K, u64>, key: K, floor: u64) -> bool {
    counts.get(&key).copied().unwrap_or(0) >= floor
}

fn run(seed: u64, scenario: Scenario) -> (u64, Rc<RefCell<Record>>) {
    let mut draw = strata_rt::Rng::with_seed(seed ^ 0x0303_a1f7);
    let mut sim = Sim::new(seed, FaultConfig::swarm(&mut draw));
    let record: Rc<RefCell<Record>> = Rc::default();
    let faults_over = Rc::new(Cell::new(false));
    for _ in 0..scenario.nodes {
        let (record, faults_over) = (record.clone(), faults_over.clone());
        sim.add_node(NodeOptions::SERVER, move |rt| {
            Box::pin(boot(rt, scenario, record.clone(), faults_over.clone()))
        });
    }
    let fault_duration = Duration::from_secs(20);
    sim.start_faults(fault_duration);
    sim.run_for(fault_duration + Duration::from_secs(1));
    sim.heal();
    faults_over.set(true);
    let live = sim.run_until(Duration::from_secs(20), || {
        let record = record.borrow();
        if scenario.membership {
            GROUPS.iter().all(|&group| {
                at_least(&record.final_writes_by_group, group, 3)
                    && at_least(&record.final_changes, group, 1)
            })
        } else if scenario.dynamic_groups {
            let stepped = (0..scenario.nodes).all(|node| {
                record.lifecycles.get(&(node, CREATED_FIRST)) == Some(&Lifecycle::Removed)
                    && record.lifecycles.get(&(node, CREATED_SECOND)) == Some(&Lifecycle::Created)
            });
            stepped
                && at_least(&record.final_writes_by_group, CREATED_SECOND, 3)
                && (0..scenario.nodes).all(|node| at_least(&record.final_writes, node, 3))
        } else {
            (0..scenario.nodes).all(|node| at_least(&record.final_writes, node, 3))
        }
    });
    if scenario.membership && live {
        // Let changes under way finish and every member catch up (no fault holds one back any
        // more), then compare what they report.
        record.borrow_mut().changes_stopped = true;
        sim.run_for(Duration::from_secs(3));
        let agreement = check_members_agree(&record.borrow());
        if let Err(disagreement) = agreement {
            record.borrow_mut().violations.push(disagreement);
        }
    }
    let record_check = record.borrow();
    if !record_check.violations.is_empty() {
        eprintln!("seed {seed}: faults {}\n{:?}", sim.config().describe(), sim.stats());
    }
    assert!(record_check.violations.is_empty(), "seed {seed}: {:?}", record_check.violations);
    assert!(
        live,
        "seed {seed}: liveness: writes after healing per node {:?}, per group {:?}; changes {:?}",
        record_check.final_writes, record_check.final_writes_by_group, record_check.final_changes
    );
    for (group, outputs) in &record_check.acknowledged {
        let mut sorted = outputs.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), outputs.len(), "seed {seed}: group {group}: an output twice");
    }
    eprintln!(
        "seed {seed}: {} acknowledged, {} reads, {:?} membership changes, snapshots (taken, \
         chunks sent, installed, checkpoints) {:?}, trace {:016x}, {:?}",
        record_check.acknowledged.values().map(Vec::len).sum::<usize>(),
        record_check.reads,
        record_check.changes,
        record_check.snapshot_totals(),
        sim.trace_hash(),
        sim.stats()
    );
    drop(record_check);
    (sim.trace_hash(), record)
}

/// Seeds `F..F+N` from the environment, `default_count` of them from 0 if unset.
fn seeds(default_count: u64) -> std::ops::Range<u64> {
    let variable = |name: &str| std::env::var(name).ok().and_then(|value| value.parse().ok());
    let count: u64 = variable("STRATA_MULTIRAFT_SEEDS").unwrap_or(default_count);
    let first: u64 = variable("STRATA_MULTIRAFT_FIRST_SEED").unwrap_or(0);
    first..first + count
}

#[test]
fn groups_stay_consistent_and_live_under_faults() {
    let seeds = seeds(300);
    let mut acknowledged = 0;
    let mut snapshots = [0; 4];
    for seed in seeds.clone() {
        let (_, record) = run(seed, STATIC);
        let record = record.borrow();
        acknowledged += record.acknowledged.values().map(Vec::len).sum::<usize>();
        assert!(record.reads > 0, "seed {seed}: no read completed");
        let totals = record.snapshot_totals();
        snapshots.iter_mut().zip(totals).for_each(|(sum, count)| *sum += count);
    }
    let count = seeds.count() as u64;
    assert!(acknowledged as u64 > 100 * count, "only {acknowledged} writes acknowledged");
    // Snapshots are taken, sent, installed, and checkpoints written, under the faults.
    let [taken, chunks, installed, checkpoints] = snapshots;
    assert!(taken > 10 * count && checkpoints > count, "{snapshots:?}");
    assert!(chunks > 0 && installed > 0, "no snapshot was installed: {snapshots:?}");
}

/// Checkpoints keep every node's WAL within a few segments of `wal_segments_kept`, however
/// long the run: the log does not grow without bound.
#[test]
fn checkpoints_bound_the_wal() {
    for seed in seeds(20) {
        let (_, record) = run(seed, STATIC);
        let most = record.borrow().wal_segments_max;
        let kept = config(NodeId(0), STATIC).wal_segments_kept as u64;
        assert!(most <= kept + 2, "seed {seed}: {most} WAL segments at once");
    }
}

#[test]
fn groups_created_and_removed_at_run_time_stay_consistent_and_live() {
    let seeds = seeds(100);
    let mut created_writes = 0;
    for seed in seeds.clone() {
        let (_, record) = run(seed, DYNAMIC);
        let record = record.borrow();
        assert!(record.reads > 0, "seed {seed}: no read completed");
        created_writes += record.acknowledged.get(&CREATED_FIRST).map_or(0, Vec::len);
    }
    // The first created group took writes before it was removed.
    assert!(created_writes as u64 > 10 * seeds.count() as u64, "{created_writes} writes");
}

#[test]
fn lease_reads_stay_linearizable_under_faults() {
    let seeds = seeds(100);
    let mut by_lease = 0;
    for seed in seeds.clone() {
        let (_, record) = run(seed, LEASES);
        assert!(record.borrow().reads > 0, "seed {seed}: no read completed");
        by_lease += record.borrow().lease_reads.values().sum::<u64>();
    }
    // Leases answer reads (the scenario would pass without them, but would prove nothing).
    assert!(by_lease > 10 * seeds.count() as u64, "only {by_lease} reads answered by lease");
}

#[test]
fn membership_changes_under_load_and_faults_stay_consistent_and_live() {
    let seeds = seeds(100);
    let mut changes = 0;
    for seed in seeds.clone() {
        let (_, record) = run(seed, MEMBERSHIP);
        let record = record.borrow();
        changes += record.changes.values().sum::<u64>();
        assert!(record.reads > 0, "seed {seed}: no read completed");
    }
    // Each group goes round the cycle about once per seed even under faults.
    assert!(changes > 10 * seeds.count() as u64, "only {changes} membership changes");
}

/// A sync failed, the host latched and reopened the WAL in the same process: the page cache
/// still showed records the failed sync had forgotten, later records claimed them durable, and a
/// crash left a hole that recovery reported as corruption. The WAL now rewrites and syncs, at
/// open, every record no later record proves durable.
/// A follower installed a snapshot while its machine was still making an earlier snapshot
/// durable: both wrote the counter's file through the same temporary name, and one renamed the
/// other's truncated file into place. The node could never open again (seed 1791 of the static
/// scenario, after 1,490 passing seeds). Installs now wait for the snapshot under way.
#[test]
fn seed_1791_an_install_waits_for_the_snapshot_being_made_durable() {
    run(1791, STATIC);
}

#[test]
fn seed_14_reopen_after_a_failed_sync_makes_the_tail_durable() {
    run(14, STATIC);
}

/// A sync of the directory failed while the WAL created its first segment; the host reopened
/// in the same process, found the segment in the page cache, acknowledged records in it, and a
/// crash took the segment's name (and those records) away: replicas diverged. The WAL now syncs
/// its directory and rewrites unwitnessed segment headers at every open.
#[test]
fn seed_134_reopen_makes_a_segment_name_durable() {
    run(134, STATIC);
}

/// With ticks counted per wake-up of the tick task, a leader held up for longer than its lease
/// still counted the lease as valid when it ran again, and answered a read barrier from it
/// after another leader had taken writes: a stale read. The host now makes up missed ticks from
/// the clock before it serves anything.
#[test]
fn seed_119_a_held_up_leader_makes_up_its_ticks_before_a_lease_read() {
    run(119, LEASES);
}

#[test]
fn a_seed_replays_exactly() {
    assert_eq!(run(42, STATIC).0, run(42, STATIC).0);
    assert_eq!(run(42, MEMBERSHIP).0, run(42, MEMBERSHIP).0);
    assert_eq!(run(42, LEASES).0, run(42, LEASES).0);
}
