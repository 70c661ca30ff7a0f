//! The state machine in simulation: replicas that apply the same log agree on every reply and
//! on every stored byte; a replica that crashes keeps what `durable_index` covers and, replaying
//! the log after it, reaches the same state as one that never crashed; time comes from entries.
#![allow(clippy::unwrap_used, reason = "tests unwrap: a failure is the test failing")]

use std::cell::RefCell;
use std::ops::Bound;
use std::rc::Rc;
use strata_kv::machine::store_options;
use strata_kv::{Entry, Machine, Reply, Shared};
use strata_lsm::Options;
use strata_rt::{Duration, NodeId, Rng, Runtime};
use strata_sim::{FaultConfig, NodeOptions, Sim};

const NODE: NodeId = NodeId(0);

fn run<T: 'static>(sim: &mut Sim, future: impl std::future::Future<Output = T> + 'static) -> T {
    let rt = sim.runtime(NODE);
    let slot: Rc<RefCell<Option<T>>> = Rc::default();
    let output = slot.clone();
    let _task = rt.spawn(async move {
        *output.borrow_mut() = Some(future.await);
    });
    assert!(sim.run_until(Duration::from_secs(36_000), || slot.borrow().is_some()));
    let value = slot.borrow_mut().take();
    value.unwrap()
}

fn small() -> Options {
    Options { memtable_bytes_max: 16 << 10, table_bytes_target: 16 << 10, ..store_options() }
}

async fn open(rt: &Runtime, dir: &str) -> Machine {
    Machine::open_with(rt, dir, 0, Shared::new(), small()).await.unwrap()
}

fn args(items: &[String]) -> Vec<Vec<u8>> {
    items.iter().map(|item| item.as_bytes().to_vec()).collect()
}

/// A random command over a few keys of every type (some fail: wrong types, bad arguments).
fn command(rng: &mut Rng) -> Vec<Vec<u8>> {
    let key = format!("k{}", rng.below(12));
    let other = format!("k{}", rng.below(12));
    let value = format!("v{}", rng.below(1000));
    let number = rng.below(20).to_string();
    let text: Vec<String> = match rng.below(36) {
        0 => vec!["SET".into(), key, value],
        1 => vec!["SET".into(), key, value, "PX".into(), (rng.below(500) + 1).to_string()],
        2 => vec!["GET".into(), key],
        3 => vec!["INCRBY".into(), key, number],
        4 => vec!["APPEND".into(), key, value],
        5 => vec!["DEL".into(), key, other],
        6 => vec!["PEXPIRE".into(), key, (rng.below(300) + 1).to_string()],
        7 => vec!["HSET".into(), key, number, value],
        8 => vec!["HDEL".into(), key, number],
        9 => vec!["HINCRBYFLOAT".into(), key, number, "1.5".into()],
        10 => vec!["LPUSH".into(), key, value],
        11 => vec!["RPUSH".into(), key, value, number],
        12 => vec!["LPOP".into(), key],
        13 => vec!["RPOP".into(), key, "2".into()],
        14 => vec!["LINSERT".into(), key, "BEFORE".into(), number, value],
        15 => vec!["LREM".into(), key, "0".into(), value],
        16 => vec!["SADD".into(), key, number, value],
        17 => vec!["SREM".into(), key, number],
        18 => vec!["SPOP".into(), key],
        19 => vec!["ZADD".into(), key, number, value],
        20 => vec!["ZINCRBY".into(), key, "2".into(), value],
        21 => vec!["ZPOPMIN".into(), key],
        22 => vec!["ZREMRANGEBYSCORE".into(), key, "0".into(), number],
        23 => vec!["RENAME".into(), key, other],
        24 => vec!["COPY".into(), key, other, "REPLACE".into()],
        25 => vec!["PERSIST".into(), key],
        26 => vec!["GETEX".into(), key, "PX".into(), "100".into()],
        27 => vec!["SINTERSTORE".into(), key.clone(), other, key],
        28 => vec!["LTRIM".into(), key, "1".into(), "-2".into()],
        29 => vec!["ZUNIONSTORE".into(), key.clone(), "2".into(), key, other],
        30 => vec!["ZRANGESTORE".into(), key, other, "(v3".into(), "+".into(), "BYLEX".into()],
        31 => vec!["ZREMRANGEBYLEX".into(), key, "-".into(), format!("[{value}")],
        32 => vec!["LMPOP".into(), "2".into(), key, other, "RIGHT".into(), "COUNT".into(), number],
        33 => vec!["ZMPOP".into(), "2".into(), key, other, "MAX".into()],
        34 => vec!["BZPOPMIN".into(), key, other, "0".into()],
        _ => vec!["BLPOP".into(), key, other, "0".into()],
    };
    args(&text)
}

/// A log of `count` entries whose clock advances 0..50 ms per entry.
fn log(seed: u64, count: usize) -> Vec<Vec<u8>> {
    let mut rng = Rng::with_seed(seed);
    let mut now_ms = 1_700_000_000_000u64;
    let mut entries = Vec::new();
    for _ in 0..count {
        now_ms += rng.below(50);
        let entry = match rng.below(40) {
            0 => Entry::Flush { now_ms },
            1..=4 => Entry::Transaction {
                now_ms,
                watched: vec![(format!("k{}", rng.below(12)).into_bytes(), rng.below(3))],
                commands: (0..rng.below(4) + 1).map(|_| command(&mut rng)).collect(),
            },
            5..=7 => Entry::Expire {
                now_ms,
                keys: (0..3).map(|_| format!("k{}", rng.below(12)).into_bytes()).collect(),
            },
            _ => Entry::Command { now_ms, arguments: command(&mut rng) },
        };
        entries.push(entry.encode());
    }
    entries
}

async fn dump(machine: &Machine) -> Vec<(Vec<u8>, Vec<u8>)> {
    machine.db().range(Bound::Unbounded, Bound::Unbounded, None).await.unwrap()
}

#[test]
fn replicas_applying_one_log_agree_on_replies_and_bytes() {
    let mut sim = Sim::new(1, FaultConfig::none());
    sim.add_node(NodeOptions::SERVER, |_| Box::pin(async {}));
    let rt = sim.runtime(NODE);
    run(&mut sim, async move {
        let entries = log(42, 3000);
        let (first, second) = (open(&rt, "a").await, open(&rt, "b").await);
        let mut errors = 0;
        for (position, entry) in entries.iter().enumerate() {
            let index = position as u64 + 1;
            let reply = first.apply(index, entry).await;
            assert_eq!(reply, second.apply(index, entry).await, "entry {index}");
            errors += usize::from(reply.is_error());
        }
        assert!(errors > 0 && errors < entries.len() / 2, "{errors} errors: a varied workload");
        assert_eq!(dump(&first).await, dump(&second).await);
        assert_eq!(first.applied_index(), entries.len() as u64);
        assert!(first.failure().is_none());
    });
}

#[test]
fn a_crashed_replica_replays_from_its_durable_index() {
    let mut sim = Sim::new(2, FaultConfig::none());
    sim.add_node(NodeOptions::SERVER, |_| Box::pin(async {}));
    let entries = Rc::new(log(7, 3000));
    let rt = sim.runtime(NODE);
    let log_entries = entries.clone();
    let durable = run(&mut sim, async move {
        let machine = open(&rt, "crashing").await;
        for (position, entry) in log_entries.iter().enumerate() {
            machine.apply(position as u64 + 1, entry).await;
        }
        machine.db().wait_idle().await.unwrap();
        machine.durable_index()
    });
    assert!(durable > 0 && durable < entries.len() as u64, "durable index {durable}");
    sim.crash(NODE);
    sim.restart(NODE);
    let rt = sim.runtime(NODE);
    run(&mut sim, async move {
        let machine = open(&rt, "crashing").await;
        assert_eq!(machine.durable_index(), durable);
        assert_eq!(machine.applied_index(), durable);
        for (position, entry) in entries.iter().enumerate().skip(durable as usize) {
            machine.apply(position as u64 + 1, entry).await;
        }
        let reference = open(&rt, "reference").await;
        for (position, entry) in entries.iter().enumerate() {
            reference.apply(position as u64 + 1, entry).await;
        }
        assert_eq!(dump(&machine).await, dump(&reference).await);
    });
}

fn command_entry(now_ms: u64, items: &[&str]) -> Vec<u8> {
    let arguments = items.iter().map(|item| item.as_bytes().to_vec()).collect();
    Entry::Command { now_ms, arguments }.encode()
}

#[test]
fn expiry_follows_the_entries_clock_not_the_replicas() {
    let mut sim = Sim::new(3, FaultConfig::none());
    sim.add_node(NodeOptions::SERVER, |_| Box::pin(async {}));
    let rt = sim.runtime(NODE);
    run(&mut sim, async move {
        let machine = open(&rt, "m").await;
        let get = |now_ms| command_entry(now_ms, &["GETEX", "k"]);
        assert_eq!(
            machine.apply(1, &command_entry(1000, &["SET", "k", "v", "PX", "100"])).await,
            Reply::ok()
        );
        assert_eq!(machine.apply(2, &get(1099)).await, Reply::bulk("v"));
        assert_eq!(machine.apply(3, &get(1100)).await, Reply::Null);
        // A relative TTL is relative to the entry's now_ms.
        machine.apply(4, &command_entry(5000, &["SET", "k", "v", "EX", "10"])).await;
        let get_ttl = [b"PTTL".to_vec(), b"k".to_vec()];
        assert_eq!(machine.read(&get_ttl, 6000).await, Reply::Integer(9000));
        assert_eq!(machine.read(&get_ttl, 15_000).await, Reply::Integer(-2));
        // Active expiry lists the key once its deadline passed, and removes it.
        assert!(machine.expired_keys(14_999, 10).await.is_empty());
        assert_eq!(machine.expired_keys(15_000, 10).await, vec![b"k".to_vec()]);
        let expire = Entry::Expire { now_ms: 15_000, keys: vec![b"k".to_vec()] }.encode();
        assert_eq!(machine.apply(5, &expire).await, Reply::Integer(1));
        assert!(machine.expired_keys(20_000, 10).await.is_empty());
        assert_eq!(machine.read(&[b"DBSIZE".to_vec()], 20_000).await, Reply::Integer(0));
    });
}

#[test]
fn watch_versions_abort_transactions_on_every_replica_alike() {
    let mut sim = Sim::new(4, FaultConfig::none());
    sim.add_node(NodeOptions::SERVER, |_| Box::pin(async {}));
    let rt = sim.runtime(NODE);
    run(&mut sim, async move {
        let machine = open(&rt, "m").await;
        machine.apply(1, &command_entry(1, &["SET", "k", "1"])).await;
        let version = machine.watch_version(b"k", 1).await.unwrap();
        let transaction = |now_ms| {
            Entry::Transaction {
                now_ms,
                watched: vec![(b"k".to_vec(), version)],
                commands: vec![vec![b"INCR".to_vec(), b"k".to_vec()]],
            }
            .encode()
        };
        assert_eq!(machine.apply(2, &transaction(2)).await, Reply::Array(vec![Reply::Integer(2)]));
        // The transaction itself changed the key: the same watch now fails.
        assert_eq!(machine.apply(3, &transaction(3)).await, Reply::NullArray);
        // An absent key watched, then created and deleted, aborts too.
        let absent = machine.watch_version(b"gone", 3).await.unwrap();
        machine.apply(4, &command_entry(4, &["SET", "gone", "x"])).await;
        machine.apply(5, &command_entry(5, &["DEL", "gone"])).await;
        let entry = Entry::Transaction {
            now_ms: 6,
            watched: vec![(b"gone".to_vec(), absent)],
            commands: vec![vec![b"SET".to_vec(), b"gone".to_vec(), b"y".to_vec()]],
        };
        assert_eq!(machine.apply(6, &entry.encode()).await, Reply::NullArray);
        // A bad entry is an error reply, and the index still advances.
        assert!(machine.apply(7, b"\x09garbage").await.is_error());
        assert_eq!(machine.applied_index(), 7);
    });
}
