//! The key-value service in simulation: three `strata_node::run` nodes (the code the `node`
//! binary runs, on the simulator's backend) and three client nodes that speak RESP over the
//! simulated network to random nodes, under the full fault model (lossy, reordering and
//! partitioned network; crashes that lose unsynced writes; torn writes; I/O errors; pauses; clock
//! jumps). Clients read, write and compare-and-set (`SET k v IFEQ old`) a few registers, one
//! request at a time or several pipelined; the history is checked for linearizability per key.
//! (A pipeline's operations are recorded as concurrent: the checker does not hold them to
//! request order, which `pipelined_writes_through_followers_apply_in_order` checks for writes.)
//! After the faults stop, every client must complete operations again.
//!
//! `STRATA_KV_SIM_SEEDS=N STRATA_KV_SIM_FIRST_SEED=F cargo nextest run -p strata-node --test
//! simulation` sweeps seeds F..F+N (default 0..300).
#![allow(clippy::unwrap_used, reason = "tests unwrap: a failure is the test failing")]

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::rc::Rc;
use strata_jepsen::model::{KeyedInput, KeyedModel, RegisterInput, RegisterModel, RegisterOutput};
use strata_jepsen::{check, Budget, History, Outcome, Verdict};
use strata_kv::resp::{decode_reply, encode_request, Reply};
use strata_node::config::Config;
use strata_rt::{Duration, NodeId, Runtime, Stream};
use strata_sim::{node_ip, FaultConfig, NodeOptions, Sim};

const SERVERS: u32 = 3;
const CLIENTS: u32 = 3;
const KEYS: u64 = 4;
const REDIS_PORT: u16 = 6379;
const OPERATION_TIMEOUT: Duration = Duration::from_secs(3);

type KvHistory = History<KeyedInput<RegisterInput>, RegisterOutput>;

fn config(node: u32) -> Config {
    let address = |node: u32, port: u16| SocketAddr::new(node_ip(NodeId(node)), port);
    Config {
        id: NodeId(node),
        data_dir: "unused-in-simulation".into(),
        redis_listen: address(node, REDIS_PORT),
        http_listen: address(node, 9379),
        peer_listen: Some(address(node, 7000)),
        peers: (0..SERVERS)
            .filter(|&peer| peer != node)
            .map(|peer| (NodeId(peer), address(peer, 7000)))
            .collect(),
        initial_voters: None,
        shards: 2,
        connections_max: 64,
        // Small, so that shards snapshot, compact their logs, and send and install snapshots
        // under the faults.
        snapshot_entries: 30,
        requirepass: None,
        log_level: "warn".into(),
        planted_bug: None,
    }
}

/// One process: run until storage fails, then exit: the harness restarts the node (as a
/// supervisor restarts the binary), so nothing of the failed incarnation lives on.
async fn server(rt: Runtime, exited: Rc<RefCell<BTreeSet<u32>>>) {
    let outcome = strata_node::run(rt.clone(), config(rt.node_id().0), || false, |_| {}).await;
    if let Err(reason) = outcome {
        assert!(!reason.contains("corrupt"), "node {}: {reason}", rt.node_id());
    }
    exited.borrow_mut().insert(rt.node_id().0);
    std::future::pending::<()>().await;
}

/// Runs the simulation for `duration`, restarting nodes whose process exited.
fn run_restarting(sim: &mut Sim, duration: Duration, exited: &RefCell<BTreeSet<u32>>) {
    let slice = Duration::from_millis(10);
    let mut elapsed = Duration::ZERO;
    while elapsed < duration {
        sim.run_for(slice);
        elapsed += slice;
        restart_exited(sim, exited);
    }
}

fn restart_exited(sim: &mut Sim, exited: &RefCell<BTreeSet<u32>>) {
    for node in std::mem::take(&mut *exited.borrow_mut()) {
        sim.crash(NodeId(node));
        sim.restart(NodeId(node));
    }
}

struct Connection {
    stream: Stream,
    buffered: Vec<u8>,
}

impl Connection {
    async fn open(rt: &Runtime, node: u32) -> Option<Connection> {
        let address = SocketAddr::new(node_ip(NodeId(node)), REDIS_PORT);
        let stream = rt.net().connect(address).await.ok()?;
        Some(Connection { stream, buffered: Vec::new() })
    }

    async fn call(&mut self, arguments: &[Vec<u8>]) -> Option<Reply> {
        self.stream.write_all(encode_request(arguments)).await.ok()?;
        self.next_reply().await
    }

    async fn next_reply(&mut self) -> Option<Reply> {
        loop {
            if let Ok(Some((reply, used))) = decode_reply(&self.buffered) {
                self.buffered.drain(..used);
                return Some(reply);
            }
            let (result, buffer) = self.stream.read(vec![0; 4096]).await;
            let read = result.ok().filter(|&read| read > 0)?;
            self.buffered.extend_from_slice(&buffer[..read]);
        }
    }
}

fn value_of(reply: &Reply) -> Option<Option<u64>> {
    match reply {
        Reply::Null => Some(None),
        Reply::Bulk(bytes) => std::str::from_utf8(bytes).ok()?.parse().ok().map(Some),
        _ => None,
    }
}

/// What a reply means for the history; `Info` when unknown (errors of writes, timeouts).
fn outcome(input: &RegisterInput, reply: Option<Reply>) -> Outcome<RegisterOutput> {
    let Some(reply) = reply else { return Outcome::Info };
    match (input, &reply) {
        (RegisterInput::Read, _) => match value_of(&reply) {
            Some(value) => Outcome::Ok(RegisterOutput::Value(value)),
            None => Outcome::Fail, // A read that failed changed nothing.
        },
        (RegisterInput::Write(_), Reply::Simple(text)) if text == "OK" => {
            Outcome::Ok(RegisterOutput::Done)
        }
        (RegisterInput::Cas { .. }, Reply::Simple(text)) if text == "OK" => {
            Outcome::Ok(RegisterOutput::Cas(true))
        }
        (RegisterInput::Cas { .. }, Reply::Null) => Outcome::Ok(RegisterOutput::Cas(false)),
        _ => Outcome::Info,
    }
}

fn request(key: &str, input: &RegisterInput) -> Vec<Vec<u8>> {
    let text = |parts: &[&str]| parts.iter().map(|part| part.as_bytes().to_vec()).collect();
    match input {
        RegisterInput::Read => text(&["GET", key]),
        RegisterInput::Write(value) => text(&["SET", key, &value.to_string()]),
        RegisterInput::Cas { from, to } => {
            let from = from.map_or(String::new(), |from| from.to_string());
            text(&["SET", key, &to.to_string(), "IFEQ", &from])
        }
    }
}

async fn client(
    rt: Runtime,
    history: Rc<RefCell<KvHistory>>,
    completed_after_heal: Rc<RefCell<BTreeMap<u64, u64>>>,
    healed: Rc<Cell<bool>>,
) {
    let mut rng = rt.rng();
    let process = u64::from(rt.node_id().0);
    let mut connection: Option<Connection> = None;
    let mut next_value = process << 32;
    loop {
        if connection.is_none() {
            let node = rng.index(SERVERS as usize) as u32;
            connection = Connection::open(&rt, node).await;
            if connection.is_none() {
                rt.sleep(Duration::from_millis(100)).await;
                continue;
            }
        }
        // A quarter of the turns send a pipeline of 2-4 operations: its runs of reads share a
        // snapshot, its runs of writes an entry.
        let count = if rng.index(4) == 0 { rng.range_inclusive(2, 4) } else { 1 };
        let mut operations = Vec::new();
        for _ in 0..count {
            let key = format!("k{}", rng.index(KEYS as usize));
            next_value += 1;
            let input = match rng.index(10) {
                0..=3 => RegisterInput::Read,
                4..=6 => RegisterInput::Write(next_value),
                _ => RegisterInput::Cas {
                    from: Some(next_value - 1 - rng.index(3) as u64),
                    to: next_value,
                },
            };
            operations.push((key, input));
        }
        let bytes: Vec<u8> = operations
            .iter()
            .flat_map(|(key, input)| encode_request(&request(key, input)))
            .collect();
        let ids: Vec<_> = operations
            .iter()
            .map(|(key, input)| {
                history.borrow_mut().invoke(process, KeyedInput { key: key.clone(), input: *input })
            })
            .collect();
        let mut sent = connection.as_ref().unwrap().stream.write_all(bytes).await.is_ok();
        for ((_, input), id) in operations.iter().zip(ids) {
            let reply = match sent {
                true => {
                    let reply = connection.as_mut().unwrap().next_reply();
                    rt.timeout(OPERATION_TIMEOUT, reply).await.ok().flatten()
                }
                false => None,
            };
            // Without a reply, the later replies would no longer match their requests.
            sent &= reply.is_some();
            let outcome = outcome(input, reply);
            if healed.get() && matches!(outcome, Outcome::Ok(_)) {
                *completed_after_heal.borrow_mut().entry(process).or_default() += 1;
            }
            history.borrow_mut().complete(id, outcome);
        }
        if !sent {
            connection = None;
        }
        rt.sleep(Duration::from_millis(rng.range_inclusive(1, 30))).await;
    }
}

fn run(seed: u64) -> u64 {
    let mut draw = strata_rt::Rng::with_seed(seed ^ 0x6b76_5f73);
    let mut sim = Sim::new(seed, FaultConfig::swarm(&mut draw));
    let exited: Rc<RefCell<BTreeSet<u32>>> = Rc::default();
    for _ in 0..SERVERS {
        let exited = exited.clone();
        sim.add_node(NodeOptions::SERVER, move |rt| Box::pin(server(rt, exited.clone())));
    }
    let history: Rc<RefCell<KvHistory>> = Rc::default();
    let completed_after_heal: Rc<RefCell<BTreeMap<u64, u64>>> = Rc::default();
    let healed = Rc::new(Cell::new(false));
    for _ in 0..CLIENTS {
        let (history, completed, healed) =
            (history.clone(), completed_after_heal.clone(), healed.clone());
        sim.add_node(NodeOptions::CLIENT, move |rt| {
            Box::pin(client(rt, history.clone(), completed.clone(), healed.clone()))
        });
    }
    let fault_duration = Duration::from_secs(15);
    sim.start_faults(fault_duration);
    run_restarting(&mut sim, fault_duration + Duration::from_secs(1), &exited);
    sim.heal();
    healed.set(true);
    let mut live = false;
    for _ in 0..200 {
        // Every client (each on its own node's connection) completes operations again.
        live = sim.run_until(Duration::from_millis(100), || {
            let completed = completed_after_heal.borrow();
            completed.len() == CLIENTS as usize && completed.values().all(|&count| count >= 5)
        });
        restart_exited(&mut sim, &exited);
        if live {
            break;
        }
    }
    let history = history.borrow();
    let describe = || format!("seed {seed}: faults {}\n{:?}", sim.config().describe(), sim.stats());
    assert!(
        live,
        "{}: liveness: operations completed after healing, per client: {:?}",
        describe(),
        completed_after_heal.borrow()
    );
    let ok = history.operations().iter().filter(|operation| operation.output().is_some()).count();
    eprintln!(
        "seed {seed}: {} operations, {ok} ok, trace {:016x}",
        history.len(),
        sim.trace_hash()
    );
    let budget = Budget { steps_max: Some(50_000_000), threads: 1, ..Budget::default() };
    match check(&*history, &KeyedModel { inner: RegisterModel::default() }, &budget) {
        Verdict::Linearizable => {}
        verdict => panic!("{}: {} operations: {verdict:?}", describe(), history.len()),
    }
    sim.trace_hash()
}

#[test]
fn registers_stay_linearizable_under_faults() {
    let variable = |name: &str| std::env::var(name).ok().and_then(|value| value.parse().ok());
    let seeds: u64 = variable("STRATA_KV_SIM_SEEDS").unwrap_or(300);
    let first: u64 = variable("STRATA_KV_SIM_FIRST_SEED").unwrap_or(0);
    for seed in first..first + seeds {
        run(seed);
    }
}

/// The network delivered a follower's forwarded proposal twice and the leader appended both:
/// one acknowledged SET took effect twice, the second time after later writes (a stale value
/// came back). Leaders now drop forwards whose proposal id they have seen.
#[test]
fn seed_1110_a_duplicated_forward_is_appended_once() {
    run(1110);
}

#[test]
fn a_seed_replays_exactly() {
    assert_eq!(run(7), run(7));
}

/// Sends pipelines of APPENDs to its own key through node `client % SERVERS` (so some go through
/// followers, which forward them); returns when `stop` is set.
async fn appending_client(rt: Runtime, stop: Rc<Cell<bool>>, acknowledged: Rc<Cell<u64>>) {
    let client = rt.node_id().0;
    let mut connection: Option<Connection> = None;
    let mut pipeline = 0u64;
    while !stop.get() {
        if connection.is_none() {
            connection = Connection::open(&rt, client % SERVERS).await;
            if connection.is_none() {
                rt.sleep(Duration::from_millis(100)).await;
                continue;
            }
        }
        pipeline += 1;
        let requests: Vec<Vec<Vec<u8>>> = (0..PIPELINE_APPENDS)
            .map(|position| {
                let token = format!("{pipeline}.{position},");
                vec![b"APPEND".to_vec(), format!("log{client}").into_bytes(), token.into_bytes()]
            })
            .collect();
        let stream = &connection.as_mut().unwrap().stream;
        let bytes: Vec<u8> = requests.iter().flat_map(|request| encode_request(request)).collect();
        let sent = stream.write_all(bytes).await.is_ok();
        let mut answered = 0;
        while sent && answered < PIPELINE_APPENDS {
            let reply = connection.as_mut().unwrap().next_reply();
            match rt.timeout(OPERATION_TIMEOUT, reply).await.ok().flatten() {
                Some(Reply::Integer(_)) => answered += 1,
                _ => break,
            }
        }
        acknowledged.set(acknowledged.get() + answered);
        if answered < PIPELINE_APPENDS {
            connection = None;
        }
    }
}

const PIPELINE_APPENDS: u64 = 16;

/// The tokens `pipeline.position,` of an appended log, in order.
fn tokens(log: &[u8]) -> Vec<(u64, u64)> {
    let text = std::str::from_utf8(log).unwrap();
    let parse = |token: &str| {
        let (pipeline, position) = token.split_once('.').unwrap();
        (pipeline.parse().unwrap(), position.parse().unwrap())
    };
    text.split_terminator(',').map(parse).collect()
}

/// A client's pipelined writes apply in the order it sent them, also through a follower that
/// forwards them over a network that delays, reorders and duplicates messages.
#[test]
fn pipelined_writes_through_followers_apply_in_order() {
    for seed in 0..3 {
        let mut faults = FaultConfig::none();
        faults.network.latency_max_us = 3000;
        faults.network.reorder_probability = 0.3;
        faults.network.duplicate_probability = 0.1;
        let mut sim = Sim::new(seed, faults);
        let exited: Rc<RefCell<BTreeSet<u32>>> = Rc::default();
        for _ in 0..SERVERS {
            let exited = exited.clone();
            sim.add_node(NodeOptions::SERVER, move |rt| Box::pin(server(rt, exited.clone())));
        }
        let stop = Rc::new(Cell::new(false));
        let acknowledged = Rc::new(Cell::new(0));
        for _ in 0..SERVERS {
            let (stop, acknowledged) = (stop.clone(), acknowledged.clone());
            sim.add_node(NodeOptions::CLIENT, move |rt| {
                Box::pin(appending_client(rt, stop.clone(), acknowledged.clone()))
            });
        }
        run_restarting(&mut sim, Duration::from_secs(5), &exited);
        stop.set(true);
        sim.run_for(Duration::from_secs(4));
        assert!(acknowledged.get() > 300, "seed {seed}: {} appends", acknowledged.get());
        let logs: Rc<RefCell<Vec<Vec<u8>>>> = Rc::default();
        let reader = logs.clone();
        let rt = sim.runtime(NodeId(SERVERS));
        let _read = rt.clone().spawn(async move {
            let mut connection = Connection::open(&rt, 0).await.unwrap();
            for client in SERVERS..2 * SERVERS {
                let get = [b"GET".to_vec(), format!("log{client}").into_bytes()];
                let Some(Reply::Bulk(log)) = connection.call(&get).await else { panic!() };
                reader.borrow_mut().push(log);
            }
        });
        assert!(sim.run_until(Duration::from_secs(10), || logs.borrow().len() == 3));
        for log in logs.borrow().iter() {
            let tokens = tokens(log);
            for pair in tokens.windows(2) {
                let [(pipeline, position), (next_pipeline, next_position)] = [pair[0], pair[1]];
                assert!(
                    next_pipeline != pipeline || next_position > position,
                    "seed {seed}: pipeline {pipeline}: {position} then {next_position}"
                );
            }
        }
    }
}
