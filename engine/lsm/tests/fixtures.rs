//! Checked-in stores written by `fixtures/generate.py` (an independent implementation of
//! docs/format.md) keep opening: a version-1 store with a table, range tombstones and a WAL to
//! replay; the same with a damaged data block (reads of it fail, others succeed) and with a
//! damaged manifest (open fails). Corruption is an error, never data.
#![allow(clippy::unwrap_used, reason = "tests unwrap: a failure is the test failing")]

use std::cell::RefCell;
use std::future::Future;
use std::ops::Bound;
use std::rc::Rc;
use strata_lsm::{Db, LsmError, Options};
use strata_rt::{Duration, NodeId, Runtime};
use strata_sim::{FaultConfig, NodeOptions, Sim};

type Files = [(&'static str, &'static [u8]); 3];

macro_rules! store {
    ($dir:literal) => {
        [
            ("MANIFEST", include_bytes!(concat!("fixtures/", $dir, "/MANIFEST"))),
            (
                "sst/0000000000000001.sst",
                include_bytes!(concat!("fixtures/", $dir, "/sst/0000000000000001.sst")),
            ),
            (
                "wal/0000000000000001.wal",
                include_bytes!(concat!("fixtures/", $dir, "/wal/0000000000000001.wal")),
            ),
        ]
    };
}

const V1: Files = store!("v1");
const V1_CORRUPT_SST: Files = store!("v1-corrupt-sst");
const V1_CORRUPT_MANIFEST: Files = store!("v1-corrupt-manifest");

fn with_store<T: 'static, F: Future<Output = T> + 'static>(
    files: Files,
    body: impl FnOnce(Runtime, Result<Db, LsmError>) -> F + 'static,
) -> T {
    let mut sim = Sim::new(1, FaultConfig::none());
    let node: NodeId = sim.add_node(NodeOptions::SERVER, |_| Box::pin(async {}));
    let rt = sim.runtime(node);
    let slot = Rc::new(RefCell::new(None));
    let output = slot.clone();
    let _task = rt.clone().spawn(async move {
        let disk = rt.disk();
        for dir in ["db/sst", "db/wal"] {
            disk.create_dir_all(dir).await.unwrap();
        }
        for (name, bytes) in files {
            let file = disk.create(&format!("db/{name}")).await.unwrap();
            file.write_at(bytes.to_vec(), 0).await.0.unwrap();
            file.sync().await.unwrap();
        }
        for dir in ["db", "db/sst", "db/wal"] {
            disk.sync_dir(dir).await.unwrap();
        }
        let db = Db::open(&rt, "db", Options::default()).await;
        *output.borrow_mut() = Some(body(rt, db).await);
    });
    assert!(sim.run_until(Duration::from_secs(10), || slot.borrow().is_some()));
    let value = slot.borrow_mut().take().unwrap();
    value
}

fn pairs(items: &[(&str, &str)]) -> Vec<(Vec<u8>, Vec<u8>)> {
    items.iter().map(|(k, v)| (k.as_bytes().to_vec(), v.as_bytes().to_vec())).collect()
}

#[test]
fn version_1_store_opens_and_replays_its_log() {
    let all = with_store(V1, |_, db| async move {
        let db = db.unwrap();
        assert_eq!(db.get(b"apple").await.unwrap(), Some(b"red".to_vec()));
        assert_eq!(db.get(b"banana").await.unwrap(), None, "deleted by the logged batch");
        assert_eq!(db.get(b"fig").await.unwrap(), None, "hidden by the table's range tombstone");
        assert_eq!(db.get(b"date").await.unwrap(), None, "hidden by the logged range delete");
        db.range(Bound::Unbounded, Bound::Unbounded, None).await.unwrap()
    });
    assert_eq!(all, pairs(&[("apple", "red"), ("honeydew", "sweet"), ("kiwi", "green")]));
}

#[test]
fn damaged_data_block_fails_its_reads_only() {
    let (apple, honeydew) = with_store(V1_CORRUPT_SST, |_, db| async move {
        let db = db.unwrap();
        (db.get(b"apple").await, db.get(b"honeydew").await)
    });
    assert!(apple.as_ref().is_err_and(LsmError::is_corruption), "{apple:?}");
    assert_eq!(honeydew.unwrap(), Some(b"sweet".to_vec()));
}

#[test]
fn damaged_manifest_fails_open() {
    let error = with_store(V1_CORRUPT_MANIFEST, |_, db| async move { db.err() });
    assert!(error.as_ref().is_some_and(LsmError::is_corruption), "{error:?}");
}
