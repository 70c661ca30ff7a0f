//! The state machine in simulation: replicas that apply the same log agree on every reply and
//! on every stored byte; a replica that crashes keeps what `durable_index` covers and, replaying
//! the log after it, reaches the same state as one that never crashed; time comes from entries.
#![allow(clippy::unwrap_used, reason = "tests unwrap: a failure is the test failing")]

use std::cell::RefCell;
use std::ops::Bound;
use std::rc::Rc;
use strata_kv::machine::store_options;
use strata_kv::snapshot::SnapshotStream;
use strata_kv::{Entry, Machine, MachineError, Reply, Shared, SnapshotPieces};
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

/// What a client can read of key `key`: its type, value and time to live.
async fn visible(machine: &Machine, key: &str, now_ms: u64) -> Vec<Reply> {
    let mut replies = Vec::new();
    for read in [
        &["TYPE", key][..],
        &["GET", key],
        &["LRANGE", key, "0", "-1"],
        &["SMEMBERS", key],
        &["ZRANGE", key, "0", "-1", "WITHSCORES"],
        &["HGETALL", key],
        &["PTTL", key],
    ] {
        let arguments: Vec<Vec<u8>> = read.iter().map(|item| item.as_bytes().to_vec()).collect();
        replies.push(machine.read(&arguments, now_ms).await);
    }
    replies
}

/// A pipeline's run of writes goes as one transaction entry without watched keys: each command
/// in it replies as it would in an entry of its own, and leaves the same state behind, failing
/// ones included (a failed command changes nothing).
#[test]
fn commands_in_one_entry_act_as_one_entry_each() {
    let mut sim = Sim::new(5, FaultConfig::none());
    sim.add_node(NodeOptions::SERVER, |_| Box::pin(async {}));
    let rt = sim.runtime(NODE);
    run(&mut sim, async move {
        let (alone, together) = (open(&rt, "alone").await, open(&rt, "together").await);
        let mut rng = Rng::with_seed(9);
        let (mut alone_index, mut together_index) = (0, 0);
        let mut now_ms = 1_700_000_000_000u64;
        let mut errors = 0;
        for _ in 0..400 {
            now_ms += rng.below(40);
            // SPOP draws from a generator seeded by the entry's index, which differs here.
            // SMOVE from an expired set to a key of another type fails after staging the
            // set's removal: the run then starts over, rolling back each failed command.
            let commands: Vec<Vec<Vec<u8>>> = (0..rng.below(6) + 1)
                .map(|_| match rng.below(8) {
                    0 => {
                        let (source, target) = (rng.below(12), rng.below(12));
                        let text = format!("SMOVE k{source} k{target} {}", rng.below(20));
                        text.split(' ').map(|item| item.as_bytes().to_vec()).collect()
                    }
                    _ => command(&mut rng),
                })
                .filter(|arguments| arguments[0] != b"SPOP")
                .collect();
            let mut replies = Vec::new();
            for arguments in &commands {
                alone_index += 1;
                let entry = Entry::Command { now_ms, arguments: arguments.clone() };
                replies.push(alone.apply(alone_index, &entry.encode()).await);
            }
            errors += replies.iter().filter(|reply| reply.is_error()).count();
            together_index += 1;
            let entry = Entry::Transaction { now_ms, watched: Vec::new(), commands };
            let together_reply = together.apply(together_index, &entry.encode()).await;
            assert_eq!(together_reply, Reply::Array(replies), "entry {together_index}");
        }
        assert!(errors > 20, "{errors} failed commands: failures are part of the test");
        for number in 0..12 {
            let key = format!("k{number}");
            assert_eq!(visible(&alone, &key, now_ms).await, visible(&together, &key, now_ms).await);
        }
        let dbsize = [b"DBSIZE".to_vec()];
        assert_eq!(alone.read(&dbsize, now_ms).await, together.read(&dbsize, now_ms).await);
    });
}

/// A command that fails after staging part of its effect (SMOVE finds its source expired, which
/// stages its removal, then its destination of another type) leaves nothing behind in an entry
/// of several commands, as it does alone: the expired key is still counted by DBSIZE.
#[test]
fn a_command_failing_midway_in_an_entry_of_several_leaves_nothing() {
    let mut sim = Sim::new(6, FaultConfig::none());
    sim.add_node(NodeOptions::SERVER, |_| Box::pin(async {}));
    let rt = sim.runtime(NODE);
    run(&mut sim, async move {
        let machine = open(&rt, "m").await;
        machine.apply(1, &command_entry(1_000, &["SADD", "source", "m"])).await;
        machine.apply(2, &command_entry(1_000, &["PEXPIRE", "source", "10"])).await;
        machine.apply(3, &command_entry(1_000, &["SET", "destination", "x"])).await;
        let commands = [&["SMOVE", "source", "destination", "m"][..], &["SET", "other", "y"]];
        let commands: Vec<Vec<Vec<u8>>> = commands
            .iter()
            .map(|items| items.iter().map(|item| item.as_bytes().to_vec()).collect())
            .collect();
        let entry = Entry::Transaction { now_ms: 2_000, watched: Vec::new(), commands };
        let Reply::Array(replies) = machine.apply(4, &entry.encode()).await else {
            panic!("an array of replies")
        };
        assert!(replies[0].is_error(), "{:?}", replies[0]);
        assert_eq!(replies[1], Reply::Simple("OK".into()));
        let dbsize = machine.read(&[b"DBSIZE".to_vec()], 2_000).await;
        assert_eq!(dbsize, Reply::Integer(3), "the expired source is still there, uncounted out");
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

/// A log over many keys of every type, some with TTLs, then random commands (no FLUSHDB).
fn wide_log(seed: u64, count: usize) -> Vec<Vec<u8>> {
    let mut rng = Rng::with_seed(seed);
    let mut now_ms = 1_700_000_000_000u64;
    let mut entries = Vec::new();
    for position in 0..count {
        now_ms += rng.below(5);
        let key = format!("wide{}", rng.below(1500));
        let value = "v".repeat(rng.below(60) as usize + 1);
        let member = rng.below(30).to_string();
        let text: Vec<String> = match position % 7 {
            0 => {
                vec!["SET".into(), key, value, "PX".into(), (rng.below(1_000_000) + 1).to_string()]
            }
            1 => vec!["SET".into(), key, value],
            2 => vec!["HSET".into(), key, member, value],
            3 => vec!["RPUSH".into(), key, value, member],
            4 => vec!["SADD".into(), key, member, value],
            5 => vec!["ZADD".into(), key, member, value],
            _ => {
                let arguments = command(&mut rng);
                entries.push(Entry::Command { now_ms, arguments }.encode());
                continue;
            }
        };
        entries.push(Entry::Command { now_ms, arguments: args(&text) }.encode());
    }
    entries
}

/// Applies entries `from..=to` of `entries` (1-based indexes).
async fn apply_range(machine: &Machine, entries: &[Vec<u8>], from: u64, to: u64) -> Vec<Reply> {
    let mut replies = Vec::new();
    for index in from..=to {
        replies.push(machine.apply(index, &entries[index as usize - 1]).await);
    }
    replies
}

/// The whole stream, read in one go.
async fn read_all(stream: &mut SnapshotStream) -> Vec<u8> {
    stream.read(0, usize::MAX).await.unwrap()
}

/// Feeds an install from a snapshot stream the way a follower sees it: pieces of random sizes,
/// read from the stream in random-sized reads, some of which go back to an earlier offset
/// (a transfer resumed). With `stop_after`, it stops answering after that many pieces.
struct Transfer {
    stream: SnapshotStream,
    offset: u64,
    rng: Rng,
    pieces: usize,
    stop_after: Option<usize>,
    stopped: Rc<std::cell::Cell<bool>>,
}

impl SnapshotPieces for Transfer {
    async fn next(&mut self) -> Result<Option<Vec<u8>>, String> {
        if self.stop_after == Some(self.pieces) {
            self.stopped.set(true);
            std::future::pending::<()>().await;
        }
        self.pieces += 1;
        if self.rng.below(4) == 0 && self.offset > 0 {
            // Resume from further back, and check the bytes read again are the same.
            let back = self.rng.below(self.offset + 1);
            let length = (self.offset - back) as usize;
            let again = self.stream.read(back, length).await.map_err(|error| error.to_string())?;
            assert_eq!(again.len(), length, "bytes read before are read again");
        }
        let length = self.rng.below(3000) as usize + 1;
        let piece =
            self.stream.read(self.offset, length).await.map_err(|error| error.to_string())?;
        self.offset += piece.len() as u64;
        Ok((!piece.is_empty()).then_some(piece))
    }
}

fn transfer(stream: SnapshotStream, seed: u64) -> Transfer {
    Transfer {
        stream,
        offset: 0,
        rng: Rng::with_seed(seed),
        pieces: 0,
        stop_after: None,
        stopped: Rc::default(),
    }
}

#[test]
fn a_snapshot_installed_on_another_replica_gives_the_same_state() {
    let mut sim = Sim::new(4, FaultConfig::none());
    sim.add_node(NodeOptions::SERVER, |_| Box::pin(async {}));
    let rt = sim.runtime(NODE);
    run(&mut sim, async move {
        let entries = wide_log(11, 4000);
        let source = open(&rt, "source").await;
        apply_range(&source, &entries, 1, 2500).await;
        let taking = source.snapshot();
        // Applied after the snapshot was taken (and before its future ran): not in it.
        apply_range(&source, &entries, 2501, 3000).await;
        let mut stream = taking.await.unwrap();
        assert!(source.durable_index() >= 2500);
        apply_range(&source, &entries, 3001, 3200).await;
        source.db().flush().await.unwrap();
        source.db().wait_idle().await.unwrap();

        // A replica at 2500 with other store tuning (other flushes, other tables) streams the
        // same bytes.
        let other = Machine::open(&rt, "other", 0, Shared::new()).await.unwrap();
        apply_range(&other, &entries, 1, 2500).await;
        let bytes = read_all(&mut stream).await;
        let mut other_stream = other.snapshot().await.unwrap();
        assert_eq!(read_all(&mut other_stream).await, bytes, "the same bytes on every replica");
        assert!(bytes.len() > 20_000, "a stream of many pages: {} bytes", bytes.len());
        let records = strata_kv::snapshot::decode(&bytes).unwrap();
        assert_eq!(records, dump(&other).await, "every live record, in key order");
        // Read in small pieces, forward then from an earlier offset: the same bytes.
        let mut pieces = Vec::new();
        let mut offset = 0;
        loop {
            let piece = stream.read(offset, 777).await.unwrap();
            if piece.is_empty() {
                break;
            }
            offset += piece.len() as u64;
            pieces.extend_from_slice(&piece);
        }
        assert_eq!(pieces, bytes);
        assert_eq!(stream.read(100, 50).await.unwrap(), bytes[100..150].to_vec());
        assert!(stream.read(bytes.len() as u64 + 5, 10).await.unwrap().is_empty());

        // Install into a replica that holds something else (applied another log).
        let target = open(&rt, "target").await;
        apply_range(&target, &log(99, 300), 1, 300).await;
        let mut pieces = transfer(stream, 5);
        target.install(2500, &mut pieces).await.unwrap();
        assert_eq!(target.durable_index(), 2500);
        assert_eq!(target.applied_index(), 2500);
        assert!(dump(&target).await == dump(&other).await, "the same records");
        // Types and TTLs read the same.
        for key in 0..1500 {
            for command in ["TYPE", "PTTL"] {
                let arguments =
                    vec![command.as_bytes().to_vec(), format!("wide{key}").into_bytes()];
                let now_ms = 1_700_000_050_000;
                assert_eq!(
                    target.read(&arguments, now_ms).await,
                    other.read(&arguments, now_ms).await
                );
            }
        }
        // And the log goes on from there alike.
        let replies = apply_range(&target, &entries, 2501, 3200).await;
        assert_eq!(replies, apply_range(&other, &entries, 2501, 3200).await);
        assert!(dump(&target).await == dump(&source).await, "the same records");
    });
}

#[test]
fn an_install_interrupted_by_a_crash_is_not_durable_and_goes_again() {
    let mut sim = Sim::new(5, FaultConfig::none());
    sim.add_node(NodeOptions::SERVER, |_| Box::pin(async {}));
    let entries = Rc::new(wide_log(12, 2000));
    let rt = sim.runtime(NODE);
    let log_entries = entries.clone();
    let (expected, old_durable) = run(&mut sim, async move {
        let source = open(&rt, "source").await;
        apply_range(&source, &log_entries, 1, 2000).await;
        source.db().flush().await.unwrap();
        let target = open(&rt, "target").await;
        apply_range(&target, &log_entries, 1, 400).await;
        target.db().flush().await.unwrap();
        (dump(&source).await, target.durable_index())
    });
    assert_eq!(old_durable, 400);
    let expected = Rc::new(expected);
    let expected_again = expected.clone();
    let rt = sim.runtime(NODE);
    let stopped = Rc::new(std::cell::Cell::new(false));
    let flag = stopped.clone();
    let _task = rt.clone().spawn(async move {
        let source = open(&rt, "source").await;
        let target = open(&rt, "target").await;
        let mut pieces = transfer(source.snapshot().await.unwrap(), 6);
        pieces.stop_after = Some(20);
        pieces.stopped = flag;
        let _ = target.install(2000, &mut pieces).await;
        unreachable!("the transfer never ends");
    });
    assert!(sim.run_until(Duration::from_secs(3600), || stopped.get()));
    sim.crash(NODE);
    sim.restart(NODE);
    let rt = sim.runtime(NODE);
    run(&mut sim, async move {
        let source = open(&rt, "source").await;
        let target = open(&rt, "target").await;
        assert_eq!(target.durable_index(), 400, "a half install is not durable");
        let mut pieces = transfer(source.snapshot().await.unwrap(), 7);
        target.install(2000, &mut pieces).await.unwrap();
        assert_eq!(target.durable_index(), 2000);
        assert!(dump(&target).await == *expected, "the source's state");
    });
    sim.crash(NODE);
    sim.restart(NODE);
    let rt = sim.runtime(NODE);
    run(&mut sim, async move {
        let target = open(&rt, "target").await;
        assert_eq!(target.durable_index(), 2000);
        assert!(dump(&target).await == *expected_again, "the source's state, durable");
    });
}

#[test]
fn a_bad_stream_is_refused_and_changes_nothing() {
    let mut sim = Sim::new(6, FaultConfig::none());
    sim.add_node(NodeOptions::SERVER, |_| Box::pin(async {}));
    let rt = sim.runtime(NODE);
    run(&mut sim, async move {
        let entries = log(13, 500);
        let machine = open(&rt, "m").await;
        apply_range(&machine, &entries, 1, 500).await;
        let before = dump(&machine).await;
        struct Bytes(Option<Vec<u8>>);
        impl SnapshotPieces for Bytes {
            async fn next(&mut self) -> Result<Option<Vec<u8>>, String> {
                Ok(self.0.take())
            }
        }
        let mut good = strata_kv::snapshot::encode(&[(b"a".to_vec(), b"1".to_vec())]);
        good.truncate(good.len() - 1);
        let refused = machine.install(900, &mut Bytes(Some(good))).await;
        assert!(matches!(refused, Err(MachineError::Snapshot(_))), "{refused:?}");
        assert_eq!(dump(&machine).await, before);
        assert_eq!(machine.applied_index(), 500);
        // The machine goes on applying.
        machine.apply(501, &command_entry(1, &["SET", "x", "y"])).await;
        assert_eq!(machine.applied_index(), 501);
    });
}

#[test]
fn blocked_clients_are_woken_by_an_install() {
    let mut sim = Sim::new(7, FaultConfig::none());
    sim.add_node(NodeOptions::SERVER, |_| Box::pin(async {}));
    let rt = sim.runtime(NODE);
    run(&mut sim, async move {
        let shared = Shared::new();
        let machine = Machine::open_with(&rt, "m", 0, shared.clone(), small()).await.unwrap();
        let mut waiter = shared.block_on(&[b"list".to_vec()]).unwrap();
        struct End(bool);
        impl SnapshotPieces for End {
            async fn next(&mut self) -> Result<Option<Vec<u8>>, String> {
                let first = !std::mem::replace(&mut self.0, true);
                Ok(first.then(|| strata_kv::snapshot::encode(&[])))
            }
        }
        machine.install(10, &mut End(false)).await.unwrap();
        waiter.woken().await;
        assert_eq!(machine.durable_index(), 10);
    });
}

/// Passes the pieces of a transfer on, and runs `at_end` when the stream ends (the install
/// then writes its tables and swaps the store).
struct AtEnd {
    transfer: Transfer,
    at_end: Option<Box<dyn FnOnce()>>,
}

impl SnapshotPieces for AtEnd {
    async fn next(&mut self) -> Result<Option<Vec<u8>>, String> {
        let piece = self.transfer.next().await?;
        if piece.is_none() {
            if let Some(at_end) = self.at_end.take() {
                at_end();
            }
        }
        Ok(piece)
    }
}

/// How many values of an MGET reply are set, without printing them all on a mismatch.
fn values(reply: &Reply) -> Result<usize, String> {
    match reply {
        Reply::Array(items) => Ok(items.iter().filter(|item| **item != Reply::Null).count()),
        Reply::Error(error) => Err(error.clone()),
        _ => Err("not an array".into()),
    }
}

#[test]
fn a_read_across_an_install_answers_from_the_installed_store() {
    const OLD_KEYS: u64 = 3000;
    const NEW_KEYS: u64 = 300;
    let mut sim = Sim::new(8, FaultConfig::none());
    sim.add_node(NodeOptions::SERVER, |_| Box::pin(async {}));
    let rt = sim.runtime(NODE);
    run(&mut sim, async move {
        let now_ms = 1_700_000_000_000u64;
        let set = |position: u64| {
            let text = ["SET".into(), format!("k{position}"), "v".repeat(40)];
            Entry::Command { now_ms, arguments: args(&text) }.encode()
        };
        let entries: Vec<Vec<u8>> = (1..=OLD_KEYS).map(set).collect();
        let source = open(&rt, "source").await;
        apply_range(&source, &entries, 1, NEW_KEYS).await;
        let stream = source.snapshot().await.unwrap();
        // The target holds more keys, in tables and with no block cache, so that reading them
        // one by one takes longer than the install takes to write the new store.
        let uncached = Options { cache_bytes: 0, ..small() };
        let target = Machine::open_with(&rt, "target", 0, Shared::new(), uncached).await;
        let target = Rc::new(target.unwrap());
        apply_range(&target, &entries, 1, OLD_KEYS).await;
        target.db().flush().await.unwrap();
        target.db().wait_idle().await.unwrap();
        // The read starts when the stream ended, and reads the old tables while the install
        // writes the new ones and swaps the store.
        let read: Rc<RefCell<Option<strata_rt::JoinHandle<Reply>>>> = Rc::default();
        let mget: Vec<Vec<u8>> = std::iter::once(b"MGET".to_vec())
            .chain((1..=OLD_KEYS).map(|position| format!("k{position}").into_bytes()))
            .collect();
        let (reader, spawner, slot) = (target.clone(), rt.clone(), read.clone());
        let at_end = Box::new(move || {
            let handle = spawner.spawn(async move { reader.read(&mget, now_ms).await });
            *slot.borrow_mut() = Some(handle);
        });
        let mut pieces = AtEnd { transfer: transfer(stream, 3), at_end: Some(at_end) };
        target.install(OLD_KEYS + 1, &mut pieces).await.unwrap();
        let handle = read.borrow_mut().take().expect("the stream ended");
        // All from the old store or all from the new one.
        let answered = values(&handle.await.unwrap());
        let expected = [Ok(OLD_KEYS as usize), Ok(NEW_KEYS as usize)];
        assert!(expected.contains(&answered), "answered {answered:?}");
        let dbsize = vec![b"DBSIZE".to_vec()];
        assert_eq!(target.read(&dbsize, now_ms).await, Reply::Integer(NEW_KEYS as i64));
    });
}

/// Reads of one run share a snapshot; after an install replaced the store, the next read of
/// the run answers from the new store (a fresh snapshot), not with an error or the old state.
#[test]
fn reads_sharing_a_snapshot_move_to_an_installed_store() {
    let mut sim = Sim::new(9, FaultConfig::none());
    sim.add_node(NodeOptions::SERVER, |_| Box::pin(async {}));
    let rt = sim.runtime(NODE);
    run(&mut sim, async move {
        let now_ms = 1_700_000_000_000u64;
        let source = open(&rt, "source").await;
        source.apply(1, &command_entry(now_ms, &["SET", "k", "new"])).await;
        let stream = source.snapshot().await.unwrap();
        let target = open(&rt, "target").await;
        target.apply(1, &command_entry(now_ms, &["SET", "k", "old"])).await;
        target.apply(2, &command_entry(now_ms, &["SET", "gone", "old"])).await;
        let read = async |reader: &mut strata_kv::machine::Reader<'_>, items: &[&str]| {
            let arguments: Vec<Vec<u8>> =
                items.iter().map(|item| item.as_bytes().to_vec()).collect();
            let spec = strata_kv::command::lookup(&arguments[0]).unwrap();
            reader.read(spec, &arguments).await
        };
        let mut reader = target.reader(now_ms);
        assert_eq!(read(&mut reader, &["GET", "k"]).await, Reply::bulk("old"));
        target.install(3, &mut transfer(stream, 4)).await.unwrap();
        assert_eq!(read(&mut reader, &["GET", "k"]).await, Reply::bulk("new"));
        assert_eq!(read(&mut reader, &["DBSIZE"]).await, Reply::Integer(1));
        // A run's reads see the one snapshot: a write between them is not seen.
        target.apply(4, &command_entry(now_ms, &["SET", "k", "newer"])).await;
        assert_eq!(read(&mut reader, &["GET", "k"]).await, Reply::bulk("new"));
        assert_eq!(read(&mut target.reader(now_ms), &["GET", "k"]).await, Reply::bulk("newer"));
    });
}
