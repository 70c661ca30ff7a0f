//! Without faults: enough writes to flush, compact through several levels and trivially move
//! tables, with overwrites, deletes, range deletes and a held snapshot; then a crash. Every read
//! matches the model before and after.
#![allow(clippy::unwrap_used, reason = "tests unwrap: a failure is the test failing")]

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::ops::Bound;
use std::rc::Rc;
use strata_lsm::{Db, Options, WriteBatch};
use strata_rt::{Duration, NodeId, Rng};
use strata_sim::{FaultConfig, NodeOptions, Sim};

const NODE: NodeId = NodeId(0);

fn options() -> Options {
    let mut options = Options {
        memtable_bytes_max: 8 << 10,
        table_bytes_target: 4 << 10,
        table_write_bytes: 1 << 10,
        // Compactions read their inputs a few blocks at a time.
        compaction_read_bytes: 2 << 10,
        block_bytes: 512,
        level0_tables_max: 2,
        level1_bytes: 16 << 10,
        level_multiplier: 3,
        cache_bytes: 16 << 10,
        compress: true,
        ..Options::default()
    };
    options.wal.segment_bytes = 32 << 10;
    options.wal.record_bytes_max = 16 << 10;
    options
}

fn run<T: 'static>(sim: &mut Sim, future: impl std::future::Future<Output = T> + 'static) -> T {
    let rt = sim.runtime(NODE);
    let slot: Rc<RefCell<Option<T>>> = Rc::default();
    let output = slot.clone();
    let _task = rt.spawn(async move {
        *output.borrow_mut() = Some(future.await);
    });
    assert!(sim.run_until(Duration::from_secs(3600), || slot.borrow().is_some()));
    let value = slot.borrow_mut().take().unwrap();
    value
}

#[test]
fn data_survives_flushes_compactions_and_a_crash() {
    let mut sim = Sim::new(11, FaultConfig::none());
    sim.add_node(NodeOptions::SERVER, |_| Box::pin(async {}));
    let rt = sim.runtime(NODE);
    let db = run(&mut sim, {
        let rt = rt.clone();
        async move { Db::open(&rt, "db", options()).await.unwrap() }
    });
    let mut model: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
    let mut rng = Rng::with_seed(5);
    let mut snapshot = None;
    for round in 0..60u32 {
        let mut batch = WriteBatch::new();
        for _ in 0..40 {
            let key = format!("key{:04}", rng.below(2000)).into_bytes();
            if rng.chance(0.1) {
                batch.delete(key.clone());
                model.remove(&key);
            } else {
                let value = format!("value-{round}-{}", rng.next_u32()).repeat(3).into_bytes();
                batch.put(key.clone(), value.clone());
                model.insert(key, value);
            }
        }
        if round % 10 == 5 {
            let start = format!("key{:04}", rng.below(1900)).into_bytes();
            let mut end = start.clone();
            end[5] += 1;
            batch.delete_range(start.clone(), end.clone());
            let doomed: Vec<_> = model.range(start..end).map(|(k, _)| k.clone()).collect();
            for key in doomed {
                model.remove(&key);
            }
        }
        let writer = db.clone();
        run(&mut sim, async move { writer.write(batch).await.unwrap() });
        if round == 20 {
            snapshot = Some((db.snapshot(), model.clone()));
        }
    }
    let idle = db.clone();
    run(&mut sim, async move { idle.wait_idle().await.unwrap() });
    let stats = db.stats();
    assert!(stats.flushes > 5, "{stats:?}");
    assert!(stats.compactions > 3, "{stats:?}");
    assert!(
        stats.tables_per_level[2..].iter().sum::<usize>() > 0,
        "data reached level 2: {stats:?}"
    );
    let check = |sim: &mut Sim, db: &Db, model: &BTreeMap<Vec<u8>, Vec<u8>>| {
        let reader = db.clone();
        let all = run(sim, async move {
            reader.range(Bound::Unbounded, Bound::Unbounded, None).await.unwrap()
        });
        assert_eq!(all.into_iter().collect::<BTreeMap<_, _>>(), *model);
        for (key, value) in model.iter().step_by(7) {
            let reader = db.clone();
            let key = key.clone();
            let found = run(sim, async move { reader.get(&key).await.unwrap() });
            assert_eq!(found.as_ref(), Some(value));
        }
        let reader = db.clone();
        let absent = run(sim, async move { reader.get(b"key9999").await.unwrap() });
        assert_eq!(absent, None);
    };
    check(&mut sim, &db, &model);
    let (snapshot, old) = snapshot.unwrap();
    let reader = db.clone();
    let view = snapshot.clone();
    let seen = run(&mut sim, async move {
        reader.range(Bound::Unbounded, Bound::Unbounded, Some(&view)).await.unwrap()
    });
    assert_eq!(
        seen.into_iter().collect::<BTreeMap<_, _>>(),
        old,
        "the snapshot survived compactions"
    );
    let reader = db.clone();
    let prefix = run(&mut sim, async move { reader.prefix(b"key01", None).await.unwrap() });
    let expected: Vec<_> = model
        .iter()
        .filter(|(k, _)| k.starts_with(b"key01"))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    assert_eq!(prefix, expected);
    drop(snapshot);
    drop(db);
    sim.crash(NODE);
    sim.restart(NODE);
    let rt = sim.runtime(NODE);
    let db = run(&mut sim, async move { Db::open(&rt, "db", options()).await.unwrap() });
    check(&mut sim, &db, &model);
}

/// A store dropped while it flushes or compacts stops there: a store reopened on the same
/// directory at once is the only one writing tables and manifests (before, the old job went on
/// and took table ids the new store also took).
#[test]
fn a_store_dropped_midway_through_its_work_stops_it() {
    let mut sim = Sim::new(12, FaultConfig::none());
    sim.add_node(NodeOptions::SERVER, |_| Box::pin(async {}));
    let rt = sim.runtime(NODE);
    run(&mut sim, async move {
        let mut model: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
        let mut rng = Rng::with_seed(9);
        for round in 0..12u32 {
            let db = Db::open(&rt, "db", options()).await.unwrap();
            let all = db.range(Bound::Unbounded, Bound::Unbounded, None).await.unwrap();
            assert_eq!(all.into_iter().collect::<BTreeMap<_, _>>(), model, "round {round}");
            // Enough to freeze several memtables: the store is busy when it is dropped.
            for _ in 0..12 {
                let mut batch = WriteBatch::new();
                for _ in 0..40 {
                    let key = format!("key{:04}", rng.below(3000)).into_bytes();
                    let value = format!("value-{round}-{}", rng.next_u32()).repeat(4);
                    batch.put(key.clone(), value.clone().into_bytes());
                    model.insert(key, value.into_bytes());
                }
                db.write(batch).await.unwrap();
            }
            assert!(db.failure().is_none(), "round {round}: {:?}", db.failure());
        }
        let db = Db::open(&rt, "db", options()).await.unwrap();
        db.wait_idle().await.unwrap();
        let all = db.range(Bound::Unbounded, Bound::Unbounded, None).await.unwrap();
        assert_eq!(all.into_iter().collect::<BTreeMap<_, _>>(), model);
        let names = rt.disk().list("db/sst").await.unwrap();
        assert_eq!(names.len(), db.stats().tables_per_level.iter().sum::<usize>(), "no leftovers");
    });
}

/// Small flushes over a large level 1 (a Raft snapshot flushes whatever the memtable holds)
/// merge within level 0 instead of each rewriting the level 1 tables they overlap; reads, and
/// a reopen after a crash, still see the newest version of every key.
#[test]
fn small_flushes_merge_within_level_zero() {
    let mut sim = Sim::new(13, FaultConfig::none());
    sim.add_node(NodeOptions::SERVER, |_| Box::pin(async {}));
    let rt = sim.runtime(NODE);
    let options = || Options { level1_bytes: 1 << 20, ..options() };
    let model = run(&mut sim, async move {
        let db = Db::open(&rt, "db", options()).await.unwrap();
        let mut model: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
        for batch_number in 0..20u32 {
            let mut batch = WriteBatch::new();
            for number in 0..100u32 {
                let key = format!("key{:05}", batch_number * 100 + number).into_bytes();
                batch.put(key.clone(), vec![b'v'; 100]);
                model.insert(key, vec![b'v'; 100]);
            }
            db.write(batch).await.unwrap();
        }
        db.flush().await.unwrap();
        db.wait_idle().await.unwrap();
        let before = db.stats();
        assert!(before.tables_per_level[1] > 2, "a large level 1: {before:?}");
        for round in 0..9u32 {
            let key = format!("key{:05}", 1000 + round % 3).into_bytes();
            let value = format!("round {round}").into_bytes();
            db.put(key.clone(), value.clone()).await.unwrap();
            model.insert(key, value);
            db.flush().await.unwrap();
            db.wait_idle().await.unwrap();
        }
        let after = db.stats();
        assert!(after.level0_merges >= 3, "{after:?}");
        let rewritten = after.table_bytes_written - before.table_bytes_written;
        assert!(rewritten < 64 << 10, "level 1 was not rewritten: {rewritten} bytes written");
        let all = db.range(Bound::Unbounded, Bound::Unbounded, None).await.unwrap();
        assert_eq!(all.into_iter().collect::<BTreeMap<_, _>>(), model);
        // A flush on top of the merged table: the newer version wins, also after a reopen.
        db.put(b"key01001".to_vec(), b"newest".to_vec()).await.unwrap();
        model.insert(b"key01001".to_vec(), b"newest".to_vec());
        db.flush().await.unwrap();
        model
    });
    sim.crash(NODE);
    sim.restart(NODE);
    let rt = sim.runtime(NODE);
    run(&mut sim, async move {
        let db = Db::open(&rt, "db", options()).await.unwrap();
        assert_eq!(db.get(b"key01001").await.unwrap(), Some(b"newest".to_vec()));
        let all = db.range(Bound::Unbounded, Bound::Unbounded, None).await.unwrap();
        assert_eq!(all.into_iter().collect::<BTreeMap<_, _>>(), model);
    });
}
