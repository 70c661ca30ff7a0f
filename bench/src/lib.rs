//! Shared helpers for the benchmarks in `src/bin/`.

pub mod servers;

use std::fs;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::Instant;
use strata_rt::uring::UringOptions;
use strata_rt::NodeId;

/// Options for running Strata on the io_uring backend with its data in `dir`.
pub fn uring_options(dir: &Path) -> UringOptions {
    UringOptions { node_id: NodeId(0), data_dir: dir.to_path_buf(), peers: None }
}

/// A fresh directory for one benchmark run: `$STRATA_BENCH_DIR` or the system temp dir, plus
/// `name` and the process id. Removed and recreated.
pub fn scratch_dir(name: &str) -> PathBuf {
    let base = std::env::var_os("STRATA_BENCH_DIR").map_or_else(std::env::temp_dir, PathBuf::from);
    let dir = base.join(format!("strata-bench-{name}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).expect("create the benchmark directory");
    dir
}

/// A small splitmix64 generator for benchmark data (not the runtime's: the anchors use it too).
pub struct DataRng(pub u64);

impl DataRng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    pub fn fill(&mut self, bytes: &mut [u8]) {
        for chunk in bytes.chunks_mut(8) {
            let word = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&word[..chunk.len()]);
        }
    }
}

/// Keeps a value alive (and its computation) past the optimiser.
pub fn consume<T>(value: T) -> T {
    std::hint::black_box(value)
}

/// The disk's raw rate, the anchor of the durability benchmarks: append `size` bytes to a file,
/// then fdatasync, in a loop for `seconds`; returns syncs per second.
pub fn raw_syncs_per_second(dir: &std::path::Path, size: usize, seconds: f64) -> f64 {
    let path = dir.join(format!("raw-{size}"));
    let file = fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(&path)
        .expect("open raw file");
    let buffer = vec![0x5a; size];
    let started = Instant::now();
    let mut count = 0u64;
    while started.elapsed().as_secs_f64() < seconds {
        file.write_all_at(&buffer, count * size as u64).expect("raw write");
        file.sync_data().expect("raw fdatasync");
        count += 1;
    }
    let rate = count as f64 / started.elapsed().as_secs_f64();
    let _ = fs::remove_file(&path);
    rate
}
