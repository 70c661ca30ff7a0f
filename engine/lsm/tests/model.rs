//! Model-based tests of the LSM store on the simulated disk: puts, deletes, range deletes, batches,
//! point reads, range and prefix scans, snapshots, flushes, compactions and crash-restarts, under
//! torn writes, lost unsynced writes, EIO and bit rot, compared with a `BTreeMap` after every step.
//!
//! Invariants: every acknowledged write survives; nothing appears that was never written; a
//! snapshot keeps seeing what it saw; damage is an error, never wrong data; a latched store stays
//! latched. The seed sweep runs `STRATA_LSM_SEEDS` seeds (default 300); a long run:
//! `STRATA_LSM_SEEDS=5000 cargo nextest run -p strata-lsm --release seed_sweep`.
#![allow(clippy::unwrap_used, reason = "tests unwrap: a failure is the test failing")]

use proptest::prelude::*;
use proptest::strategy::ValueTree;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::future::Future;
use std::ops::Bound;
use std::rc::Rc;
use strata_lsm::{Db, LsmError, Options, Snapshot, WriteBatch};
use strata_rt::{Duration, NodeId, Rng, Runtime};
use strata_sim::{CrashLoss, FaultConfig, NodeOptions, Sim};

const NODE: NodeId = NodeId(0);
const DIR: &str = "db";

type Map = BTreeMap<Vec<u8>, Vec<u8>>;

fn run_on<T: 'static, F>(sim: &mut Sim, body: impl FnOnce(Runtime) -> F) -> T
where
    F: Future<Output = T> + 'static,
{
    let rt = sim.runtime(NODE);
    let slot: Rc<RefCell<Option<T>>> = Rc::default();
    let output = slot.clone();
    let future = body(rt.clone());
    let _task = rt.spawn(async move {
        *output.borrow_mut() = Some(future.await);
    });
    let finished = sim.run_until(Duration::from_secs(3600), || slot.borrow().is_some());
    assert!(finished, "task did not finish");
    let value = slot.borrow_mut().take().expect("finished");
    value
}

#[derive(Clone, Debug)]
enum Op {
    Put(u16, usize),
    Delete(u16),
    DeleteRange(u16, u16),
    /// Several puts and deletes in one atomic batch.
    Batch(Vec<(u16, Option<usize>)>),
    /// Concurrent single puts (group commit).
    Concurrent(Vec<u16>),
    Get(u16),
    Scan(u16, u16),
    Prefix(u16),
    TakeSnapshot,
    ReadSnapshot(usize),
    DropSnapshot(usize),
    Flush,
    Compact,
    Crash,
    Rot,
}

fn key(id: u16) -> Vec<u8> {
    format!("k{:03}", id % 300).into_bytes()
}

fn op_strategy(rot: bool) -> BoxedStrategy<Op> {
    let base = base_strategy();
    if rot {
        prop_oneof![30 => base, 1 => Just(Op::Rot)].boxed()
    } else {
        base.boxed()
    }
}

fn base_strategy() -> impl Strategy<Value = Op> {
    let key = 0u16..300;
    prop_oneof![
        20 => (key.clone(), 0usize..300).prop_map(|(k, len)| Op::Put(k, len)),
        4 => key.clone().prop_map(Op::Delete),
        2 => (key.clone(), 1u16..40).prop_map(|(k, span)| Op::DeleteRange(k, k + span)),
        4 => prop::collection::vec((key.clone(), prop::option::of(0usize..200)), 1..20).prop_map(Op::Batch),
        3 => prop::collection::vec(key.clone(), 1..10).prop_map(Op::Concurrent),
        5 => key.clone().prop_map(Op::Get),
        3 => (key.clone(), 1u16..100).prop_map(|(k, span)| Op::Scan(k, k + span)),
        1 => (0u16..30).prop_map(Op::Prefix),
        2 => Just(Op::TakeSnapshot),
        2 => (0usize..4).prop_map(Op::ReadSnapshot),
        1 => (0usize..4).prop_map(Op::DropSnapshot),
        2 => Just(Op::Flush),
        1 => Just(Op::Compact),
        2 => Just(Op::Crash),
    ]
}

fn options(compress: bool) -> Options {
    let mut options = Options {
        memtable_bytes_max: 6 << 10,
        immutable_memtables_max: 2,
        table_bytes_target: 4 << 10,
        // Tables are written in several pieces each.
        table_write_bytes: 1 << 10,
        // Compactions read their inputs a few blocks at a time.
        compaction_read_bytes: 2 << 10,
        block_bytes: 512,
        bloom_bits_per_key: 10,
        compress,
        level0_tables_max: 2,
        level1_bytes: 12 << 10,
        level_multiplier: 3,
        cache_bytes: 8 << 10,
        ..Options::default()
    };
    options.wal.segment_bytes = 16 << 10;
    options.wal.record_bytes_max = 12 << 10;
    options
}

/// A write whose outcome is unknown (it failed): after a restart it may or may not be there.
#[derive(Clone, Debug)]
enum Uncertain {
    Put(Vec<u8>, Vec<u8>),
    Delete(Vec<u8>),
    DeleteRange(Vec<u8>, Vec<u8>),
}

struct Harness {
    sim: Sim,
    db: Option<Db>,
    compress: bool,
    model: Map,
    uncertain: Vec<Uncertain>,
    snapshots: Vec<(Snapshot, Map)>,
    next_value: u64,
    /// Corruption was reported: the scenario ends (it was detected, which is what we check).
    stopped: bool,
}

fn is_transient(error: &LsmError) -> bool {
    matches!(error, LsmError::Io { .. })
        || matches!(error, LsmError::Wal(strata_wal::WalError::Io { .. }))
}

impl Harness {
    fn new(seed: u64, config: FaultConfig, corruptible: bool, compress: bool) -> Harness {
        let mut sim = Sim::new(seed, config);
        sim.add_node(NodeOptions { crashable: true, corruptible }, |_| Box::pin(async {}));
        sim.set_faults_active(true);
        let mut harness = Harness {
            sim,
            db: None,
            compress,
            model: Map::new(),
            uncertain: Vec::new(),
            snapshots: Vec::new(),
            next_value: 1,
            stopped: false,
        };
        harness.open();
        harness
    }

    fn db(&self) -> Db {
        self.db.clone().expect("open")
    }

    fn corruption(&mut self, error: &LsmError) {
        assert!(error.is_corruption(), "not corruption: {error}");
        assert!(self.sim.stats().bit_flips > 0, "corruption reported without any rot: {error}");
        self.stopped = true;
    }

    fn open(&mut self) {
        let compress = self.compress;
        for attempt in 0.. {
            let result = run_on(&mut self.sim, move |rt| async move {
                Db::open(&rt, DIR, options(compress)).await
            });
            match result {
                Ok(db) => {
                    self.db = Some(db);
                    break;
                }
                Err(error) if error.is_corruption() => return self.corruption(&error),
                Err(error) if attempt < 30 => {
                    assert!(
                        is_transient(&error) || matches!(error, LsmError::Wal(_)),
                        "open failed: {error}"
                    );
                    self.sim.crash(NODE);
                    self.sim.restart(NODE);
                }
                Err(error) if self.sim.stats().latent_sector_errors > 0 => {
                    // A sector that keeps failing: the damage is reported, not papered over.
                    assert!(is_transient(&error) || matches!(error, LsmError::Wal(_)), "{error}");
                    self.stopped = true;
                    return;
                }
                Err(error) => panic!("open keeps failing: {error}"),
            }
        }
        // Compare everything with the model; resolve writes of unknown outcome.
        let Some(actual) = self.full_scan(None) else { return };
        let uncertain = std::mem::take(&mut self.uncertain);
        let keys: std::collections::BTreeSet<Vec<u8>> =
            self.model.keys().chain(actual.keys()).cloned().collect();
        for key in keys {
            let expected = self.model.get(&key);
            let found = actual.get(&key);
            if expected == found {
                continue;
            }
            let explained = uncertain.iter().any(|write| match write {
                Uncertain::Put(k, v) => *k == key && found == Some(v),
                Uncertain::Delete(k) => *k == key && found.is_none(),
                Uncertain::DeleteRange(start, end) => {
                    *start <= key && key < *end && found.is_none()
                }
            });
            assert!(explained, "key {key:?}: model {expected:?}, store {found:?} after restart");
        }
        self.model = actual;
    }

    /// Everything visible, or `None` if the scan hit detected corruption.
    fn full_scan(&mut self, snapshot: Option<usize>) -> Option<Map> {
        for _ in 0..30 {
            let db = self.db();
            let snapshot = snapshot.map(|index| self.snapshots[index].0.clone());
            let result = run_on(&mut self.sim, move |_| async move {
                db.range(Bound::Unbounded, Bound::Unbounded, snapshot.as_ref()).await
            });
            match result {
                Ok(pairs) => return Some(pairs.into_iter().collect()),
                Err(error) if error.is_corruption() => {
                    self.corruption(&error);
                    return None;
                }
                Err(error) => assert!(is_transient(&error), "scan failed: {error}"),
            }
        }
        assert!(self.sim.stats().latent_sector_errors > 0, "scans keep failing");
        self.stopped = true;
        None
    }

    fn value(&mut self, len: usize) -> Vec<u8> {
        let tag = self.next_value;
        self.next_value += 1;
        let mut value = format!("v{tag}:").into_bytes();
        value.resize(value.len() + len, b'a' + (tag % 26) as u8);
        value
    }

    fn write(&mut self, batch: WriteBatch, effects: Vec<Uncertain>) {
        let db = self.db();
        let result = run_on(&mut self.sim, move |_| async move { db.write(batch).await });
        match result {
            Ok(()) => self.apply(&effects),
            Err(error) => {
                self.uncertain.extend(effects);
                self.after_failure(error);
            }
        }
    }

    fn apply(&mut self, effects: &[Uncertain]) {
        for effect in effects {
            match effect {
                Uncertain::Put(key, value) => {
                    self.model.insert(key.clone(), value.clone());
                }
                Uncertain::Delete(key) => {
                    self.model.remove(key);
                }
                Uncertain::DeleteRange(start, end) => {
                    let doomed: Vec<Vec<u8>> = self
                        .model
                        .range(start.clone()..end.clone())
                        .map(|(k, _)| k.clone())
                        .collect();
                    for key in doomed {
                        self.model.remove(&key);
                    }
                }
            }
        }
    }

    /// The store failed a write or a background job: it must stay latched; then restart.
    fn after_failure(&mut self, error: LsmError) {
        if error.is_corruption() {
            return self.corruption(&error);
        }
        assert!(matches!(error, LsmError::Latched { .. }), "unexpected error: {error}");
        let db = self.db();
        let again =
            run_on(
                &mut self.sim,
                move |_| async move { db.put(b"z".to_vec(), b"z".to_vec()).await },
            );
        assert!(matches!(again, Err(LsmError::Latched { .. })), "a latched store stays latched");
        self.crash_and_reopen();
    }

    fn crash_and_reopen(&mut self) {
        self.snapshots.clear();
        self.db = None;
        self.sim.crash(NODE);
        self.sim.restart(NODE);
        self.open();
    }

    fn read_check(&mut self, result: Result<Map, LsmError>, expected: Map, what: &str) {
        match result {
            Ok(found) => assert_eq!(found, expected, "{what}"),
            Err(error) if error.is_corruption() => self.corruption(&error),
            Err(error) => assert!(is_transient(&error), "{what} failed: {error}"),
        }
    }

    fn step(&mut self, op: &Op) {
        if self.stopped {
            return;
        }
        if let Some(error) = self.db.as_ref().and_then(Db::failure) {
            // A background job failed since the last step.
            return self.after_failure(LsmError::Latched { cause: Box::new(error) });
        }
        match op {
            Op::Put(id, len) => {
                let value = self.value(*len);
                let mut batch = WriteBatch::new();
                batch.put(key(*id), value.clone());
                self.write(batch, vec![Uncertain::Put(key(*id), value)]);
            }
            Op::Delete(id) => {
                let mut batch = WriteBatch::new();
                batch.delete(key(*id));
                self.write(batch, vec![Uncertain::Delete(key(*id))]);
            }
            Op::DeleteRange(start, end) => {
                let (start, end) = (key(*start), key(*end));
                if start >= end {
                    return;
                }
                let mut batch = WriteBatch::new();
                batch.delete_range(start.clone(), end.clone());
                self.write(batch, vec![Uncertain::DeleteRange(start, end)]);
            }
            Op::Batch(items) => {
                let mut batch = WriteBatch::new();
                let mut effects = Vec::new();
                for (id, len) in items {
                    match len {
                        Some(len) => {
                            let value = self.value(*len);
                            batch.put(key(*id), value.clone());
                            effects.push(Uncertain::Put(key(*id), value));
                        }
                        None => {
                            batch.delete(key(*id));
                            effects.push(Uncertain::Delete(key(*id)));
                        }
                    }
                }
                self.write(batch, effects);
            }
            Op::Concurrent(ids) => {
                let db = self.db();
                let writes: Vec<(Vec<u8>, Vec<u8>)> =
                    ids.iter().map(|id| (key(*id), self.value(20))).collect();
                let jobs = writes.clone();
                let results = run_on(&mut self.sim, move |rt| async move {
                    let handles: Vec<_> = jobs
                        .into_iter()
                        .map(|(k, v)| {
                            let db = db.clone();
                            rt.spawn(async move { db.put(k, v).await })
                        })
                        .collect();
                    let mut results = Vec::new();
                    for handle in handles {
                        results.push(handle.await.expect("finished"));
                    }
                    results
                });
                // Concurrent writes to one key land in an order the model cannot know: when all
                // succeed, read back which one won among the candidates.
                let mut failure = None;
                for ((k, v), result) in writes.iter().zip(results) {
                    match result {
                        Ok(()) => {}
                        Err(error) => failure = Some(error),
                    }
                    self.uncertain.push(Uncertain::Put(k.clone(), v.clone()));
                }
                match failure {
                    Some(error) => self.after_failure(error),
                    None => {
                        let candidates = std::mem::take(&mut self.uncertain);
                        for (k, _) in &writes {
                            let db = self.db();
                            let key_copy = k.clone();
                            let found =
                                run_on(
                                    &mut self.sim,
                                    move |_| async move { db.get(&key_copy).await },
                                );
                            match found {
                                Ok(Some(value)) => {
                                    assert!(
                                        candidates.iter().any(|c| matches!(c, Uncertain::Put(ck, cv) if ck == k && *cv == value)),
                                        "concurrent put of {k:?} read back {value:?}"
                                    );
                                    self.model.insert(k.clone(), value);
                                }
                                Ok(None) => {
                                    panic!("acknowledged concurrent put of {k:?} is missing")
                                }
                                Err(error) if error.is_corruption() => {
                                    return self.corruption(&error)
                                }
                                Err(error) => {
                                    assert!(is_transient(&error), "get failed: {error}");
                                    // Unknown which won; keep them all as candidates.
                                    self.uncertain = candidates;
                                    return self.crash_and_reopen();
                                }
                            }
                        }
                    }
                }
            }
            Op::Get(id) => {
                let db = self.db();
                let k = key(*id);
                let lookup = k.clone();
                let result = run_on(&mut self.sim, move |_| async move { db.get(&lookup).await });
                let expected: Map =
                    self.model.get(&k).map(|v| (k.clone(), v.clone())).into_iter().collect();
                let result =
                    result.map(|found| found.map(|v| (k.clone(), v)).into_iter().collect());
                self.read_check(result, expected, "get");
            }
            Op::Scan(start, end) => {
                let (start, end) = (key(*start), key(*end));
                if start >= end {
                    return;
                }
                let db = self.db();
                let (s, e) = (start.clone(), end.clone());
                let result = run_on(&mut self.sim, move |_| async move {
                    db.range(Bound::Included(&s), Bound::Excluded(&e), None).await
                });
                let expected: Map =
                    self.model.range(start..end).map(|(k, v)| (k.clone(), v.clone())).collect();
                self.read_check(result.map(|pairs| pairs.into_iter().collect()), expected, "scan");
            }
            Op::Prefix(id) => {
                let prefix = format!("k{:02}", id % 30).into_bytes();
                let db = self.db();
                let p = prefix.clone();
                let result =
                    run_on(&mut self.sim, move |_| async move { db.prefix(&p, None).await });
                let expected: Map = self
                    .model
                    .iter()
                    .filter(|(k, _)| k.starts_with(&prefix))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                self.read_check(
                    result.map(|pairs| pairs.into_iter().collect()),
                    expected,
                    "prefix",
                );
            }
            Op::TakeSnapshot => {
                if self.snapshots.len() < 4 {
                    let snapshot = self.db().snapshot();
                    self.snapshots.push((snapshot, self.model.clone()));
                }
            }
            Op::ReadSnapshot(index) => {
                if let Some((_, expected)) = self.snapshots.get(*index % 4) {
                    let expected = expected.clone();
                    let index = *index % 4;
                    if let Some(found) = self.full_scan(Some(index)) {
                        assert_eq!(found, expected, "snapshot {index} changed");
                    }
                }
            }
            Op::DropSnapshot(index) => {
                if *index < self.snapshots.len() {
                    self.snapshots.remove(*index);
                }
            }
            Op::Flush | Op::Compact => {
                let db = self.db();
                let compact = matches!(op, Op::Compact);
                let result = run_on(&mut self.sim, move |_| async move {
                    db.flush().await?;
                    if compact {
                        db.wait_idle().await?;
                    }
                    Ok::<(), LsmError>(())
                });
                if let Err(error) = result {
                    self.after_failure(error);
                }
            }
            Op::Crash => self.crash_and_reopen(),
            Op::Rot => {
                if self.sim.rot_bit(NODE).is_some() {
                    self.crash_and_reopen();
                }
            }
        }
    }
}

fn faulty_config(rng: &mut Rng) -> FaultConfig {
    let mut config = FaultConfig::none();
    let modes = [CrashLoss::All, CrashLoss::Prefix, CrashLoss::RandomSubset, CrashLoss::Nothing];
    config.disk.crash_loss = modes.iter().copied().filter(|_| rng.chance(0.6)).collect();
    if config.disk.crash_loss.is_empty() {
        config.disk.crash_loss = vec![CrashLoss::RandomSubset];
    }
    config.disk.torn_write_probability = rng.unit_f64();
    config.disk.write_error_probability = if rng.chance(0.4) { rng.unit_f64() * 0.01 } else { 0.0 };
    config.disk.sync_error_probability = if rng.chance(0.4) { rng.unit_f64() * 0.01 } else { 0.0 };
    config.disk.read_error_probability = if rng.chance(0.3) { rng.unit_f64() * 0.005 } else { 0.0 };
    // Only corruptible nodes get latent sector errors (the simulator's rule).
    config.disk.latent_sector_error_probability =
        if rng.chance(0.3) { rng.unit_f64() * 0.003 } else { 0.0 };
    config.buggify = rng.chance(0.5);
    config
}

fn run(seed: u64, ops: &[Op], corruptible: bool) {
    let mut rng = Rng::with_seed(seed);
    let config = faulty_config(&mut rng);
    let mut harness = Harness::new(seed, config, corruptible, rng.chance(0.5));
    for op in ops {
        harness.step(op);
    }
    if std::env::var("STRATA_LSM_TRACE").is_ok() {
        let stats = harness.db.as_ref().map(Db::stats);
        eprintln!(
            "seed {seed}: stopped {} keys {} sim {:?} db {stats:?}",
            harness.stopped,
            harness.model.len(),
            harness.sim.stats()
        );
    }
    if !harness.stopped {
        harness.crash_and_reopen();
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn store_matches_model_under_crashes_and_faults(
        seed in any::<u64>(),
        ops in prop::collection::vec(op_strategy(false), 1..120),
    ) {
        run(seed, &ops, false);
    }

    #[test]
    fn store_detects_bit_rot_or_returns_right_data(
        seed in any::<u64>(),
        ops in prop::collection::vec(op_strategy(true), 1..120),
    ) {
        run(seed, &ops, true);
    }
}

#[test]
fn seed_sweep() {
    let seeds: u64 =
        std::env::var("STRATA_LSM_SEEDS").ok().and_then(|s| s.parse().ok()).unwrap_or(300);
    let only: Option<u64> = std::env::var("STRATA_LSM_SEED").ok().and_then(|s| s.parse().ok());
    for seed in only.map_or(0..seeds, |seed| seed..seed + 1) {
        eprintln!("seed {seed} (replay: STRATA_LSM_SEED={seed} cargo nextest run -p strata-lsm seed_sweep)");
        let mut runner = proptest::test_runner::TestRunner::new_with_rng(
            ProptestConfig::default(),
            proptest::test_runner::TestRng::from_seed(
                proptest::test_runner::RngAlgorithm::ChaCha,
                &[seed as u8; 32].map(|byte| byte ^ (seed >> 8) as u8),
            ),
        );
        let corruptible = seed % 3 == 0;
        let ops = prop::collection::vec(op_strategy(corruptible), 20..150)
            .new_tree(&mut runner)
            .unwrap()
            .current();
        if only.is_some() {
            eprintln!("{ops:?}");
        }
        run(seed, &ops, corruptible);
    }
}
