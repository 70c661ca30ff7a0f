//! The external-log mode: the store keeps no WAL, its caller's log is the durable copy. Writes
//! applied with `write_at` survive a crash only once flushed; `log_index_durable` says which, so
//! the caller can replay the rest of its log, and it never claims more than survived.
#![allow(clippy::unwrap_used, reason = "tests unwrap: a failure is the test failing")]

use std::cell::RefCell;
use std::rc::Rc;
use strata_lsm::{Db, LsmError, Options, WriteBatch};
use strata_rt::{Duration, NodeId, Runtime};
use strata_sim::{FaultConfig, NodeOptions, Sim};

const NODE: NodeId = NodeId(0);

fn options() -> Options {
    Options {
        memtable_bytes_max: 4 << 10,
        table_bytes_target: 4 << 10,
        block_bytes: 512,
        cache_bytes: 16 << 10,
        external_log: true,
        ..Options::default()
    }
}

/// A simulation of one node, fault-free, and that node's runtime.
fn one_node(seed: u64) -> (Sim, Runtime) {
    let mut sim = Sim::new(seed, FaultConfig::none());
    sim.add_node(NodeOptions::SERVER, |_| Box::pin(async {}));
    let rt = sim.runtime(NODE);
    (sim, rt)
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

fn put(index: u64) -> WriteBatch {
    put_key(&format!("key{:06}", index % 500), &format!("value{index}"))
}

#[test]
fn replaying_from_the_durable_index_restores_every_write() {
    let (mut sim, rt) = one_node(7);
    let durable = run(&mut sim, async move {
        let db = Db::open(&rt, "db", options()).await.unwrap();
        assert_eq!(db.log_index_durable(), 0);
        for index in 1..=1500 {
            db.write_at(put(index), index).await.unwrap();
        }
        assert_eq!(db.log_index_applied(), 1500);
        db.wait_idle().await.unwrap();
        db.log_index_durable()
    });
    assert!(durable > 0 && durable < 1500, "some but not all writes flushed: {durable}");
    sim.crash(NODE);
    sim.restart(NODE);
    let rt = sim.runtime(NODE);
    run(&mut sim, async move {
        let db = Db::open(&rt, "db", options()).await.unwrap();
        assert_eq!(db.log_index_durable(), durable, "the durable index survives the crash");
        assert_eq!(db.log_index_applied(), durable);
        // The caller replays its log past the durable index.
        for index in durable + 1..=1500 {
            db.write_at(put(index), index).await.unwrap();
        }
        for index in 1001..=1500 {
            let key = format!("key{:06}", index % 500);
            let expected = format!("value{index}").into_bytes();
            assert_eq!(db.get(key.as_bytes()).await.unwrap(), Some(expected));
        }
    });
}

#[test]
fn flushing_empty_writes_moves_the_durable_index() {
    let (mut sim, rt) = one_node(8);
    run(&mut sim, async move {
        let db = Db::open(&rt, "db", options()).await.unwrap();
        db.write_at(put(1), 1).await.unwrap();
        db.write_at(WriteBatch::new(), 2).await.unwrap();
        db.flush().await.unwrap();
        assert_eq!(db.log_index_durable(), 2);
        db.write_at(WriteBatch::new(), 3).await.unwrap();
        db.flush().await.unwrap();
        assert_eq!(db.log_index_durable(), 3);
    });
}

#[test]
fn indexes_must_increase_and_plain_writes_are_refused() {
    let (mut sim, rt) = one_node(9);
    run(&mut sim, async move {
        let db = Db::open(&rt, "db", options()).await.unwrap();
        db.write_at(put(5), 5).await.unwrap();
        let again = db.write_at(put(5), 5).await;
        assert!(matches!(again, Err(LsmError::Invalid { .. })), "{again:?}");
        let plain = db.write(put(6)).await;
        assert!(matches!(plain, Err(LsmError::Invalid { .. })), "{plain:?}");
        assert!(db.wal().is_none());
    });
}

fn put_key(key: &str, value: &str) -> WriteBatch {
    let mut batch = WriteBatch::new();
    batch.put(key, value);
    batch
}

/// Overwrites replace a key's version in the memtable unless a live snapshot reads it: the
/// snapshot keeps seeing its value while later writes go on, and a read now sees the newest.
#[test]
fn a_snapshot_keeps_the_version_it_reads_through_overwrites() {
    let (mut sim, rt) = one_node(12);
    run(&mut sim, async move {
        let db = Db::open(&rt, "db", options()).await.unwrap();
        db.write_at(put_key("k", "one"), 1).await.unwrap();
        let first = db.snapshot();
        db.write_at(put_key("k", "two"), 2).await.unwrap();
        db.write_at(put_key("k", "three"), 3).await.unwrap();
        let third = db.snapshot();
        db.write_at(put_key("k", "four"), 4).await.unwrap();
        assert_eq!(db.get_in(b"k", &first).await.unwrap(), Some(b"one".to_vec()));
        assert_eq!(db.get_in(b"k", &third).await.unwrap(), Some(b"three".to_vec()));
        assert_eq!(db.get(b"k").await.unwrap(), Some(b"four".to_vec()));
        drop(first);
        db.write_at(put_key("k", "five"), 5).await.unwrap();
        assert_eq!(db.get_in(b"k", &third).await.unwrap(), Some(b"three".to_vec()));
    });
}

/// A key written over and over keeps the memtable small, yet the log behind it grows: the
/// memtable is flushed anyway, so the caller's log can be cut (here, the durable index moves).
#[test]
fn overwriting_one_key_still_lets_the_log_be_cut() {
    let (mut sim, rt) = one_node(10);
    let durable = run(&mut sim, async move {
        let db = Db::open(&rt, "db", options()).await.unwrap();
        let value = "v".repeat(100);
        for index in 1..=1000 {
            db.write_at(put_key("hot", &value), index).await.unwrap();
        }
        db.wait_idle().await.unwrap();
        db.log_index_durable()
    });
    assert!(durable > 500, "the memtable of one key was flushed: durable through {durable}");
}

/// A scan copies the memtables a thousand keys at a time: over many passes it still returns
/// every key once, in order, with the values as of its start, while writes overwrite and delete
/// keys between its passes (a task writing beside it, and tables it awaits).
#[test]
fn a_scan_in_passes_reads_one_moment() {
    let (mut sim, rt) = one_node(11);
    run(&mut sim, async move {
        // Memtables of about 1,600 keys: the scan meets more keys in the active one than a
        // pass copies, and memtables frozen and flushed under it.
        let options =
            Options { memtable_bytes_max: 128 << 10, immutable_memtables_max: 8, ..options() };
        let db = Rc::new(Db::open(&rt, "db", options).await.unwrap());
        let key = |number: u64| format!("key{number:05}");
        let mut index = 0;
        // Half the keys in tables, the other half (interleaved) in the memtable.
        for round in 0..2 {
            for number in (round..6000).step_by(2) {
                index += 1;
                db.write_at(put_key(&key(number), &format!("old{number}")), index).await.unwrap();
            }
            if round == 0 {
                db.flush().await.unwrap();
            }
        }
        // Gone before the scan: a range delete across the first pass's end (keys 1,024+).
        let mut batch = WriteBatch::new();
        batch.delete_range(key(2000), key(2100));
        index += 1;
        db.write_at(batch, index).await.unwrap();
        let deleted = |number: u64| (2000..2100).contains(&number);
        let writer_db = db.clone();
        let writer = rt.spawn(async move {
            // From the far end: keys ahead of the scan change before their pass is copied.
            for number in (0..6000).rev() {
                let mut batch = WriteBatch::new();
                if number % 3 == 0 {
                    batch.delete(key(number));
                } else {
                    batch.put(key(number), "new");
                }
                writer_db.write_at(batch, index + 6000 - number).await.unwrap();
                if number % 100 == 0 {
                    strata_rt::sync::yield_now().await;
                }
            }
        });
        let mut seen = Vec::new();
        let mut applied_midway = 0;
        let far = key(4000).into_bytes();
        db.scan(std::ops::Bound::Unbounded, std::ops::Bound::Unbounded, None, |key, value| {
            if key == far.as_slice() {
                applied_midway = db.log_index_applied();
            }
            seen.push((key.to_vec(), value.to_vec()));
            true
        })
        .await
        .unwrap();
        assert!(applied_midway > index + 500, "writes ran ahead of the scan: {applied_midway}");
        writer.await;
        let expected: Vec<(Vec<u8>, Vec<u8>)> = (0..6000)
            .filter(|&number| !deleted(number))
            .map(|number| (key(number).into_bytes(), format!("old{number}").into_bytes()))
            .collect();
        assert!(seen == expected, "{} keys seen, as of the scan's start", seen.len());
        let mut first = Vec::new();
        db.scan(std::ops::Bound::Unbounded, std::ops::Bound::Unbounded, None, |key, _| {
            first.push(key.to_vec());
            first.len() < 3
        })
        .await
        .unwrap();
        assert_eq!(first, [key(1).into_bytes(), key(2).into_bytes(), key(4).into_bytes()]);
    });
}
