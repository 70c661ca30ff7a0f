//! LSM benchmark: the same workload on Strata's LSM, fjall and redb, in one run, printing ratios.
//!
//! 1,000,000 random puts (16-byte keys, 100-byte random values, a durable commit every 1,000
//! puts), then 1,000,000 random gets of the inserted keys, then a full scan.
//!
//! `cargo run --release -p strata-bench --bin lsm [-- PUTS]` (default 1000000). Strata runs on
//! the io_uring backend; set `STRATA_BENCH_DIR` to pick the file system.

use redb::ReadableTable;
use std::ops::Bound;
use std::path::Path;
use std::time::Instant;
use strata_bench::{consume, scratch_dir, uring_options, DataRng};
use strata_lsm::{Db, Options, WriteBatch};
use strata_rt::uring::block_on;
use strata_rt::Runtime;

const KEY_BYTES: usize = 16;
const VALUE_BYTES: usize = 100;
const COMMIT_EVERY: usize = 1000;
/// Every engine's cache for this run, the same for all three.
const CACHE_BYTES: usize = 256 << 20;

struct Workload {
    keys: Vec<[u8; KEY_BYTES]>,
    values: Vec<[u8; VALUE_BYTES]>,
    /// The order of the gets: a random permutation of the inserted keys.
    gets: Vec<usize>,
}

impl Workload {
    fn new(puts: usize) -> Workload {
        let mut rng = DataRng(42);
        let mut keys = Vec::with_capacity(puts);
        let mut values = Vec::with_capacity(puts);
        for _ in 0..puts {
            let mut key = [0u8; KEY_BYTES];
            rng.fill(&mut key);
            keys.push(key);
            let mut value = [0u8; VALUE_BYTES];
            rng.fill(&mut value);
            values.push(value);
        }
        let mut gets: Vec<usize> = (0..puts).collect();
        for last in (1..gets.len()).rev() {
            let pick = (rng.next_u64() % (last as u64 + 1)) as usize;
            gets.swap(last, pick);
        }
        Workload { keys, values, gets }
    }
}

#[derive(Clone, Copy)]
struct Timings {
    puts: f64,
    gets: f64,
    scan: f64,
    scanned: usize,
}

fn strata(dir: &Path, workload: &'static Workload) -> Timings {
    block_on(&uring_options(dir), |rt: Runtime| async move {
        let options = Options { cache_bytes: CACHE_BYTES, ..Options::default() };
        let db = Db::open(&rt, "db", options).await.expect("open");
        let started = Instant::now();
        for chunk in (0..workload.keys.len()).collect::<Vec<_>>().chunks(COMMIT_EVERY) {
            let mut batch = WriteBatch::new();
            for &i in chunk {
                batch.put(workload.keys[i].to_vec(), workload.values[i].to_vec());
            }
            db.write(batch).await.expect("write");
        }
        let puts = started.elapsed().as_secs_f64();
        // Let the background compactions of the puts finish before timing reads (they share this
        // one thread; fjall's run on its own threads).
        let settling = Instant::now();
        db.wait_idle().await.expect("compactions");
        eprintln!(
            "strata: compactions settled {:.2} s after the last put",
            settling.elapsed().as_secs_f64()
        );
        let started = Instant::now();
        for &i in &workload.gets {
            let value = db.get(&workload.keys[i]).await.expect("get").expect("present");
            assert_eq!(value.len(), VALUE_BYTES);
        }
        let gets = started.elapsed().as_secs_f64();
        let started = Instant::now();
        let mut scanned = 0;
        db.scan(Bound::Unbounded, Bound::Unbounded, None, |key, value| {
            consume((key.len(), value.len()));
            scanned += 1;
            true
        })
        .await
        .expect("scan");
        let scan = started.elapsed().as_secs_f64();
        eprintln!("strata: {:?}", db.stats());
        Timings { puts, gets, scan, scanned }
    })
    .expect("io_uring backend")
}

fn fjall_run(dir: &Path, workload: &Workload) -> Timings {
    let keyspace =
        fjall::Config::new(dir).cache_size(CACHE_BYTES as u64).open().expect("fjall open");
    let partition = keyspace
        .open_partition("bench", fjall::PartitionCreateOptions::default())
        .expect("partition");
    let started = Instant::now();
    for chunk in (0..workload.keys.len()).collect::<Vec<_>>().chunks(COMMIT_EVERY) {
        for &i in chunk {
            partition.insert(workload.keys[i], workload.values[i]).expect("insert");
        }
        keyspace.persist(fjall::PersistMode::SyncAll).expect("persist");
    }
    let puts = started.elapsed().as_secs_f64();
    let started = Instant::now();
    for &i in &workload.gets {
        let value = partition.get(workload.keys[i]).expect("get").expect("present");
        assert_eq!(value.len(), VALUE_BYTES);
    }
    let gets = started.elapsed().as_secs_f64();
    let started = Instant::now();
    let mut scanned = 0;
    for item in partition.iter() {
        let (key, value) = item.expect("scan");
        consume((key.len(), value.len()));
        scanned += 1;
    }
    let scan = started.elapsed().as_secs_f64();
    Timings { puts, gets, scan, scanned }
}

const TABLE: redb::TableDefinition<&[u8], &[u8]> = redb::TableDefinition::new("bench");

fn redb_run(dir: &Path, workload: &Workload) -> Timings {
    std::fs::create_dir_all(dir).expect("redb dir");
    let db = redb::Builder::new()
        .set_cache_size(CACHE_BYTES)
        .create(dir.join("bench.redb"))
        .expect("redb create");
    let started = Instant::now();
    for chunk in (0..workload.keys.len()).collect::<Vec<_>>().chunks(COMMIT_EVERY) {
        let txn = db.begin_write().expect("begin");
        {
            let mut table = txn.open_table(TABLE).expect("table");
            for &i in chunk {
                table.insert(&workload.keys[i][..], &workload.values[i][..]).expect("insert");
            }
        }
        txn.commit().expect("commit");
    }
    let puts = started.elapsed().as_secs_f64();
    let txn = db.begin_read().expect("read");
    let table = txn.open_table(TABLE).expect("table");
    let started = Instant::now();
    for &i in &workload.gets {
        let value = table.get(&workload.keys[i][..]).expect("get").expect("present");
        assert_eq!(value.value().len(), VALUE_BYTES);
    }
    let gets = started.elapsed().as_secs_f64();
    let started = Instant::now();
    let mut scanned = 0;
    for item in table.iter().expect("iter") {
        let (key, value) = item.expect("scan");
        consume((key.value().len(), value.value().len()));
        scanned += 1;
    }
    let scan = started.elapsed().as_secs_f64();
    Timings { puts, gets, scan, scanned }
}

fn main() {
    let puts: usize =
        std::env::args().nth(1).and_then(|text| text.parse().ok()).unwrap_or(1_000_000);
    let dir = scratch_dir("lsm");
    println!(
        "LSM: {puts} random puts ({KEY_BYTES} B keys, {VALUE_BYTES} B values, durable commit every {COMMIT_EVERY}), {puts} random gets, full scan ({})",
        dir.display()
    );
    println!("strata: io_uring backend; cache {} MiB for each engine", CACHE_BYTES >> 20);
    let workload: &'static Workload = Box::leak(Box::new(Workload::new(puts)));
    let strata = strata(&dir.join("strata"), workload);
    if std::env::var("LSM_BENCH_STRATA_ONLY").is_ok() {
        println!(
            "strata puts/s {:.0} gets/s {:.0}",
            puts as f64 / strata.puts,
            puts as f64 / strata.gets
        );
        return;
    }
    let fjall = fjall_run(&dir.join("fjall"), workload);
    let redb = redb_run(&dir.join("redb"), workload);
    let distinct = {
        let mut keys = workload.keys.clone();
        keys.sort_unstable();
        keys.dedup();
        keys.len()
    };
    for (name, timings) in [("strata", strata), ("fjall", fjall), ("redb", redb)] {
        assert_eq!(timings.scanned, distinct, "{name} scanned every key once");
    }
    println!("{:<8} {:>14} {:>14} {:>14}", "engine", "puts/s", "gets/s", "scan keys/s");
    let rate = |count: usize, seconds: f64| count as f64 / seconds;
    for (name, timings) in [("strata", strata), ("fjall", fjall), ("redb", redb)] {
        println!(
            "{name:<8} {:>14.0} {:>14.0} {:>14.0}",
            rate(puts, timings.puts),
            rate(puts, timings.gets),
            rate(timings.scanned, timings.scan)
        );
    }
    for (name, anchor) in [("fjall", fjall), ("redb", redb)] {
        println!(
            "strata / {name:<6} puts {:>6.2}x   gets {:>6.2}x   scan {:>6.2}x",
            anchor.puts / strata.puts,
            anchor.gets / strata.gets,
            anchor.scan / strata.scan
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
