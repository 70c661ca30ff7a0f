//! Views and whole-store replacement (external-log mode): a snapshot keeps seeing its versions
//! through flushes and compactions; a `View` keeps reading them after a `Db::replace` too,
//! while a plain snapshot then reads nothing (`Replaced`) rather than a mix; a replacement is
//! durable at its log index once finished, and a crash before that leaves the old store whole.
#![allow(clippy::unwrap_used, reason = "tests unwrap: a failure is the test failing")]

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::ops::Bound;
use std::rc::Rc;
use strata_lsm::{Db, LsmError, Options, WriteBatch};
use strata_rt::{Duration, NodeId, Runtime};
use strata_sim::{FaultConfig, NodeOptions, Sim};

const NODE: NodeId = NodeId(0);

fn options() -> Options {
    Options {
        memtable_bytes_max: 4 << 10,
        table_bytes_target: 4 << 10,
        table_write_bytes: 1 << 10,
        // Compactions read their inputs a few blocks at a time.
        compaction_read_bytes: 2 << 10,
        block_bytes: 512,
        cache_bytes: 16 << 10,
        level0_tables_max: 2,
        level1_bytes: 16 << 10,
        level_multiplier: 2,
        external_log: true,
        ..Options::default()
    }
}

fn run<T: 'static>(sim: &mut Sim, future: impl std::future::Future<Output = T> + 'static) -> T {
    let rt = sim.runtime(NODE);
    let slot: Rc<RefCell<Option<T>>> = Rc::default();
    let output = slot.clone();
    let _task = rt.spawn(async move {
        *output.borrow_mut() = Some(future.await);
    });
    assert!(sim.run_until(Duration::from_secs(3600), || slot.borrow().is_some()));
    let value = slot.borrow_mut().take();
    value.unwrap()
}

type Model = BTreeMap<Vec<u8>, Vec<u8>>;

async fn all(db: &Db) -> Model {
    db.range(Bound::Unbounded, Bound::Unbounded, None).await.unwrap().into_iter().collect()
}

async fn all_in(view: &strata_lsm::View) -> Model {
    let mut out = Model::new();
    view.scan(Bound::Unbounded, Bound::Unbounded, |key, value| {
        out.insert(key.to_vec(), value.to_vec());
        true
    })
    .await
    .unwrap();
    out
}

fn key(number: u64) -> Vec<u8> {
    format!("key{number:05}").into_bytes()
}

/// Writes indexes `from..to`: overwrites, deletes and now and then a range delete.
async fn write_some(db: &Db, model: &mut Model, from: u64, to: u64) {
    for index in from..to {
        let mut batch = WriteBatch::new();
        let number = index * 7919 % 400;
        match index % 11 {
            0 => {
                batch.delete(key(number));
                model.remove(&key(number));
            }
            1 => {
                let end = number + 9;
                batch.delete_range(key(number), key(end));
                model.retain(|stored, _| *stored < key(number) || *stored >= key(end));
            }
            _ => {
                let value = format!("value{index}-{}", "x".repeat((index % 50) as usize));
                batch.put(key(number), value.clone());
                model.insert(key(number), value.into_bytes());
            }
        }
        db.write_at(batch, index).await.unwrap();
    }
}

#[test]
fn views_and_snapshots_through_compactions_and_a_replacement() {
    let mut sim = Sim::new(21, FaultConfig::none());
    sim.add_node(NodeOptions::SERVER, |_| Box::pin(async {}));
    let rt = sim.runtime(NODE);
    run(&mut sim, async move {
        let db = Db::open(&rt, "db", options()).await.unwrap();
        let mut model = Model::new();
        write_some(&db, &mut model, 1, 2000).await;
        let snapshot = db.snapshot();
        let seen = model.clone();
        // Taken before anything is flushed: it pins the memtables.
        let early_view = db.view(&snapshot).unwrap();
        write_some(&db, &mut model, 2000, 5000).await;
        db.flush().await.unwrap();
        db.wait_idle().await.unwrap();
        assert!(db.stats().compactions > 0, "the test compacts");
        assert_ne!(all(&db).await, seen, "later writes changed the store");
        let through_snapshot: Model = db
            .range(Bound::Unbounded, Bound::Unbounded, Some(&snapshot))
            .await
            .unwrap()
            .into_iter()
            .collect();
        assert_eq!(through_snapshot, seen, "compactions keep what a live snapshot sees");
        let view = db.view(&snapshot).unwrap();
        assert_eq!(all_in(&view).await, seen);
        assert_eq!(all_in(&early_view).await, seen);
        // A page read: keys after one, the view's order.
        let mut page = Vec::new();
        let after = seen.keys().nth(10).unwrap().clone();
        view.scan(Bound::Excluded(&after), Bound::Unbounded, |key, _| {
            page.push(key.to_vec());
            page.len() < 5
        })
        .await
        .unwrap();
        assert_eq!(page, seen.keys().skip(11).take(5).cloned().collect::<Vec<_>>());

        // Replace the store with other pairs.
        let now_view = db.view(&db.snapshot()).unwrap();
        let replacement_pairs: Model = (0..700u64)
            .map(|number| (format!("new{number:05}").into_bytes(), vec![b'v'; 40]))
            .collect();
        let mut replacement = db.replace(6000).await.unwrap();
        for (key, value) in &replacement_pairs {
            replacement.add(key, value).await.unwrap();
        }
        assert!(matches!(
            replacement.add(b"new00001", b"late").await,
            Err(LsmError::Invalid { .. })
        ));
        assert!(matches!(
            db.write_at(WriteBatch::new(), 5000).await,
            Err(LsmError::Invalid { .. })
        ));
        assert_eq!(all(&db).await, model, "nothing changes before the replacement finishes");
        replacement.finish().await.unwrap();
        assert_eq!(db.log_index_durable(), 6000);
        assert_eq!(db.log_index_applied(), 6000);
        assert_eq!(all(&db).await, replacement_pairs);
        assert_eq!(all_in(&view).await, seen, "a view reads on after a replacement");
        assert_eq!(all_in(&now_view).await, model);
        let stale = db.range(Bound::Unbounded, Bound::Unbounded, Some(&snapshot)).await;
        assert_eq!(stale, Err(LsmError::Replaced));
        assert_eq!(db.get_in(b"new00001", &snapshot).await, Err(LsmError::Replaced));
        // Writes go on after the snapshot's index.
        let mut batch = WriteBatch::new();
        batch.put(b"new00001".to_vec(), b"later".to_vec()).delete(b"new00002".to_vec());
        db.write_at(batch, 6001).await.unwrap();
        db.flush().await.unwrap();
        db.wait_idle().await.unwrap();
        assert_eq!(db.get(b"new00001").await.unwrap(), Some(b"later".to_vec()));
        assert_eq!(db.get(b"new00002").await.unwrap(), None);
        assert_eq!(db.log_index_durable(), 6001);
    });
}

#[test]
fn a_crash_before_a_replacement_finishes_leaves_the_old_store() {
    let mut sim = Sim::new(22, FaultConfig::none());
    sim.add_node(NodeOptions::SERVER, |_| Box::pin(async {}));
    let rt = sim.runtime(NODE);
    let old = run(&mut sim, async move {
        let db = Db::open(&rt, "db", options()).await.unwrap();
        let mut model = Model::new();
        write_some(&db, &mut model, 1, 1000).await;
        db.flush().await.unwrap();
        assert_eq!(db.log_index_durable(), 999);
        model
    });
    let pairs: Rc<Model> = Rc::new(
        (0..2000u64).map(|number| (format!("k{number:06}").into_bytes(), vec![7; 30])).collect(),
    );
    // Half the pairs added (several tables written), then the node crashes.
    let rt = sim.runtime(NODE);
    let halfway = Rc::new(Cell::new(false));
    let (flag, half) = (halfway.clone(), pairs.clone());
    let _task = rt.clone().spawn(async move {
        let db = Db::open(&rt, "db", options()).await.unwrap();
        let mut replacement = db.replace(5000).await.unwrap();
        for (key, value) in half.iter().take(1000) {
            replacement.add(key, value).await.unwrap();
        }
        flag.set(true);
        std::future::pending::<()>().await;
        drop((db, replacement));
    });
    assert!(sim.run_until(Duration::from_secs(3600), || halfway.get()));
    sim.crash(NODE);
    sim.restart(NODE);
    let rt = sim.runtime(NODE);
    let reopen = |rt: Runtime| async move { Db::open(&rt, "db", options()).await.unwrap() };
    let full = pairs.clone();
    run(&mut sim, async move {
        let db = reopen(rt.clone()).await;
        assert_eq!(db.log_index_durable(), 999, "the old store, whole");
        assert_eq!(all(&db).await, old);
        let mut replacement = db.replace(5000).await.unwrap();
        for (key, value) in full.iter() {
            replacement.add(key, value).await.unwrap();
        }
        replacement.finish().await.unwrap();
        assert_eq!(db.log_index_durable(), 5000);
    });
    sim.crash(NODE);
    sim.restart(NODE);
    let rt = sim.runtime(NODE);
    run(&mut sim, async move {
        let db = reopen(rt.clone()).await;
        assert_eq!(db.log_index_durable(), 5000);
        assert_eq!(all(&db).await, *pairs);
        let names = rt.disk().list("db/sst").await.unwrap();
        assert_eq!(names.len(), db.stats().tables_per_level.iter().sum::<usize>(), "no leftovers");
    });
}
