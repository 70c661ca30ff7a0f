//! WAL benchmark: durable appends per second with group commit (1, 16 and 256 concurrent writers;
//! 100-byte and 4 KiB records) against the disk's own raw rate of one write + fdatasync, measured
//! in the same run on the same file system.
//!
//! `cargo run --release -p strata-bench --bin wal [-- SECONDS_PER_CASE]` (default 2). The WAL runs
//! on the io_uring backend; set `STRATA_BENCH_DIR` to pick the file system.

use std::cell::Cell;
use std::rc::Rc;
use strata_bench::{raw_syncs_per_second, scratch_dir, uring_options};
use strata_rt::uring::block_on;
use strata_rt::Runtime;
use strata_wal::{Options, Wal};

fn wal_appends_per_second(dir: &std::path::Path, writers: usize, size: usize, seconds: f64) -> f64 {
    let case_dir = dir.join(format!("wal-{writers}-{size}"));
    let result = block_on(&uring_options(&case_dir), |rt: Runtime| async move {
        let wal = Wal::open(&rt, "wal", Options::default()).await.expect("open wal");
        let deadline = rt.now() + strata_rt::Duration::from_secs_f64(seconds);
        let appended = Rc::new(Cell::new(0u64));
        let started = rt.now();
        let handles: Vec<_> = (0..writers)
            .map(|writer| {
                let (wal, rt, appended) = (wal.clone(), rt.clone(), appended.clone());
                rt.clone().spawn(async move {
                    let record = vec![writer as u8; size];
                    while rt.now() < deadline {
                        wal.append(record.clone()).await.expect("append");
                        appended.set(appended.get() + 1);
                    }
                })
            })
            .collect();
        for handle in handles {
            handle.await;
        }
        let elapsed = (rt.now() - started).as_secs_f64();
        appended.get() as f64 / elapsed
    })
    .expect("io_uring backend");
    let _ = std::fs::remove_dir_all(&case_dir);
    result
}

fn main() {
    let seconds: f64 = std::env::args().nth(1).and_then(|text| text.parse().ok()).unwrap_or(2.0);
    let dir = scratch_dir("wal");
    println!(
        "WAL durable appends/s vs the disk's raw write+fdatasync rate ({seconds} s per case, {})",
        dir.display()
    );
    println!("backend: io_uring (one fdatasync per group commit)");
    println!(
        "{:>8} {:>8} {:>14} {:>14} {:>10}",
        "writers", "record", "raw syncs/s", "appends/s", "ratio"
    );
    for size in [100usize, 4096] {
        let raw = raw_syncs_per_second(&dir, size, seconds);
        for writers in [1usize, 16, 256] {
            let rate = wal_appends_per_second(&dir, writers, size, seconds);
            println!("{writers:>8} {size:>8} {raw:>14.0} {rate:>14.0} {:>9.2}x", rate / raw);
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}
