//! Checked-in segments written by `fixtures/generate.py` (an independent implementation of
//! docs/format.md) keep opening: a clean log, one with a torn tail, and one with a flipped bit in
//! an acknowledged record, which must be reported with its segment and offset.
#![allow(clippy::unwrap_used, reason = "tests unwrap: a failure is the test failing")]

use std::cell::RefCell;
use std::rc::Rc;
use strata_rt::{Duration, NodeId};
use strata_sim::{FaultConfig, NodeOptions, Sim};
use strata_wal::{Options, Wal, WalError};

type Files = [(&'static str, &'static [u8]); 2];

const V1: Files = [
    ("0000000000000001.wal", include_bytes!("fixtures/v1/0000000000000001.wal")),
    ("0000000000000002.wal", include_bytes!("fixtures/v1/0000000000000002.wal")),
];
const V1_TORN: Files = [
    ("0000000000000001.wal", include_bytes!("fixtures/v1-torn/0000000000000001.wal")),
    ("0000000000000002.wal", include_bytes!("fixtures/v1-torn/0000000000000002.wal")),
];
const V1_CORRUPT: Files = [
    ("0000000000000001.wal", include_bytes!("fixtures/v1-corrupt/0000000000000001.wal")),
    ("0000000000000002.wal", include_bytes!("fixtures/v1-corrupt/0000000000000002.wal")),
];

fn data(index: u64) -> Vec<u8> {
    format!("record {index} ").repeat(index as usize).into_bytes()
}

/// Installs `files` durably in `wal/`, opens the log, and returns what it holds.
/// The records a log holds and whether recovery cut a torn tail.
type Opened = (Vec<(u64, Vec<u8>)>, bool);

fn open(files: Files) -> Result<Opened, WalError> {
    let mut sim = Sim::new(1, FaultConfig::none());
    let node: NodeId = sim.add_node(NodeOptions::SERVER, |_| Box::pin(async {}));
    let rt = sim.runtime(node);
    let slot = Rc::new(RefCell::new(None));
    let output = slot.clone();
    let _task = rt.clone().spawn(async move {
        let disk = rt.disk();
        disk.create_dir_all("wal").await.unwrap();
        for (name, bytes) in files {
            let file = disk.create(&format!("wal/{name}")).await.unwrap();
            file.write_at(bytes.to_vec(), 0).await.0.unwrap();
            file.sync().await.unwrap();
        }
        disk.sync_dir("wal").await.unwrap();
        let result = match Wal::open(&rt, "wal", Options::default()).await {
            Ok(wal) => {
                let records = wal.read_from(1).await.unwrap();
                Ok((records, wal.recovery().torn_tail))
            }
            Err(error) => Err(error),
        };
        *output.borrow_mut() = Some(result);
    });
    assert!(sim.run_until(Duration::from_secs(10), || slot.borrow().is_some()));
    let result = slot.borrow_mut().take().unwrap();
    result
}

#[test]
fn version_1_log_opens_with_every_record() {
    let (records, torn) = open(V1).unwrap();
    assert!(!torn);
    assert_eq!(records, (1..=8).map(|index| (index, data(index))).collect::<Vec<_>>());
}

#[test]
fn version_1_log_with_a_torn_tail_loses_only_the_torn_record() {
    let (records, torn) = open(V1_TORN).unwrap();
    assert!(torn);
    assert_eq!(records, (1..=7).map(|index| (index, data(index))).collect::<Vec<_>>());
}

#[test]
fn version_1_log_with_a_flipped_bit_reports_segment_and_offset() {
    let error = open(V1_CORRUPT).unwrap_err();
    assert!(
        matches!(error, WalError::Corruption { segment: 1, offset: 128, .. }),
        "unexpected {error}"
    );
}
