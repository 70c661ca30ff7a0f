//! Disk: Strata's io_uring file path against the same access pattern done with plain blocking
//! syscalls (`pwrite`/`pread`/`fdatasync`, one thread per operation in flight): the disk's own
//! limit on this machine. Prints operations per second and the ratio Strata / raw.
//!
//! Rows: 4 KiB write + fdatasync at queue depth 1 and 16; 1 MiB sequential O_DIRECT writes at
//! queue depth 32; 4 KiB random O_DIRECT reads at queue depth 32.
//!
//! `cargo run --release -p strata-bench --bin uring_disk [-- DIRECTORY]` (default: a directory
//! under ~/.cache, which must be on a real disk: tmpfs has no fdatasync cost and no O_DIRECT).

use std::fs::OpenOptions as StdOpenOptions;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;
use strata_rt::uring::{block_on, UringOptions};
use strata_rt::{AlignedBuffer, NodeId, OpenOptions};

const KIB: usize = 1024;
/// Rounds per pattern; the median round is printed.
const ROUNDS: usize = 5;
const MIB: usize = 1024 * KIB;

#[derive(Clone, Copy)]
struct Pattern {
    name: &'static str,
    block: usize,
    depth: usize,
    operations: usize,
    /// `None` for reads; `Some(sync)` for writes, synced (fdatasync) after each when `sync`.
    write_sync: Option<bool>,
    direct: bool,
    /// Offsets drawn at random within the file instead of in sequence.
    random: bool,
    file_size: usize,
}

const PATTERNS: [Pattern; 4] = [
    Pattern {
        name: "4 KiB write+fdatasync QD1",
        block: 4 * KIB,
        depth: 1,
        operations: 1000,
        write_sync: Some(true),
        direct: false,
        random: false,
        file_size: 16 * MIB,
    },
    Pattern {
        name: "4 KiB write+fdatasync QD16",
        block: 4 * KIB,
        depth: 16,
        operations: 4000,
        write_sync: Some(true),
        direct: false,
        random: false,
        file_size: 16 * MIB,
    },
    Pattern {
        name: "1 MiB seq write O_DIRECT QD32",
        block: MIB,
        depth: 32,
        operations: 512,
        write_sync: Some(false),
        direct: true,
        random: false,
        file_size: 512 * MIB,
    },
    Pattern {
        name: "4 KiB rand read O_DIRECT QD32",
        block: 4 * KIB,
        depth: 32,
        operations: 50_000,
        write_sync: None,
        direct: true,
        random: true,
        file_size: 512 * MIB,
    },
];

/// The offset of operation `index`: sequential, or a hash of the index (the same for both sides).
fn offset(pattern: &Pattern, index: usize) -> u64 {
    let blocks = (pattern.file_size / pattern.block) as u64;
    let slot = if pattern.random {
        (index as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15).rotate_left(29) % blocks
    } else {
        index as u64 % blocks
    };
    slot * pattern.block as u64
}

/// Writes the whole file once and syncs it, so writes later overwrite allocated blocks.
fn prepare(path: &Path, size: usize) {
    let file = StdOpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .open(path)
        .expect("create bench file");
    let chunk = vec![0xa5u8; 8 * MIB];
    let mut written = 0;
    while written < size {
        let len = chunk.len().min(size - written);
        file.write_all_at(&chunk[..len], written as u64).expect("fill");
        written += len;
    }
    file.sync_all().expect("sync");
}

fn raw(path: &Path, pattern: Pattern) -> f64 {
    let mut options = StdOpenOptions::new();
    options.read(true).write(true);
    if pattern.direct {
        options.custom_flags(libc::O_DIRECT);
    }
    let file = options.open(path).expect("open");
    let next = AtomicU64::new(0);
    let started = Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..pattern.depth {
            scope.spawn(|| {
                let mut buffer = AlignedBuffer::zeroed(pattern.block.max(4096));
                loop {
                    let index = next.fetch_add(1, Ordering::Relaxed) as usize;
                    if index >= pattern.operations {
                        return;
                    }
                    let at = offset(&pattern, index);
                    match pattern.write_sync {
                        Some(sync) => {
                            file.write_all_at(&buffer[..pattern.block], at).expect("pwrite");
                            if sync {
                                file.sync_data().expect("fdatasync");
                            }
                        }
                        None => {
                            file.read_exact_at(&mut buffer[..pattern.block], at).expect("pread")
                        }
                    }
                }
            });
        }
    });
    pattern.operations as f64 / started.elapsed().as_secs_f64()
}

async fn strata_worker(
    file: strata_rt::File,
    pattern: Pattern,
    next: std::rc::Rc<std::cell::Cell<usize>>,
) {
    let mut buffer = AlignedBuffer::zeroed(pattern.block);
    loop {
        let index = next.get();
        if index >= pattern.operations {
            return;
        }
        next.set(index + 1);
        let at = offset(&pattern, index);
        match pattern.write_sync {
            Some(sync) => {
                let (written, returned) = file.write_aligned_at(buffer, at).await;
                written.expect("write");
                buffer = returned;
                if sync {
                    file.sync_data().await.expect("fdatasync");
                }
            }
            None => {
                let (read, returned) = file.read_aligned_at(buffer, at).await;
                assert_eq!(read.expect("read"), pattern.block);
                buffer = returned;
            }
        }
    }
}

fn strata(dir: &Path, name: &str, pattern: Pattern) -> f64 {
    let options = UringOptions { node_id: NodeId(0), data_dir: dir.to_path_buf(), peers: None };
    let name = name.to_string();
    block_on(&options, |rt| async move {
        let open = OpenOptions { direct: pattern.direct, ..OpenOptions::default() };
        let file = rt.disk().open_with(&name, open).await.expect("open");
        let next = std::rc::Rc::new(std::cell::Cell::new(0));
        let started = Instant::now();
        let mut workers = Vec::new();
        for _ in 0..pattern.depth {
            workers.push(rt.spawn(strata_worker(file.clone(), pattern, next.clone())));
        }
        for worker in workers {
            worker.await.expect("worker finished");
        }
        pattern.operations as f64 / started.elapsed().as_secs_f64()
    })
    .expect("io_uring")
}

fn main() {
    let dir: PathBuf = std::env::args().nth(1).map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(std::env::var("HOME").unwrap_or_else(|_| "/tmp".into()))
            .join(".cache/strata-bench-disk")
    });
    std::fs::create_dir_all(&dir).expect("bench directory");
    println!("disk patterns in {}: Strata on io_uring vs blocking syscalls (one thread per op in flight)", dir.display());
    println!("{:<32} {:>14} {:>14} {:>12}", "pattern", "strata op/s", "raw op/s", "strata/raw");
    for pattern in PATTERNS {
        let name = format!("bench-{}", pattern.block);
        let path = dir.join(&name);
        prepare(&path, pattern.file_size);
        // Alternate which side goes first, and report the median of the rounds' ratios: the
        // disk of a shared machine drifts, but it drifts for both sides of one round alike.
        let mut rounds = Vec::new();
        for round in 0..ROUNDS {
            let (strata_rate, raw_rate) = if round % 2 == 0 {
                let strata_rate = strata(&dir, &name, pattern);
                (strata_rate, raw(&path, pattern))
            } else {
                let raw_rate = raw(&path, pattern);
                (strata(&dir, &name, pattern), raw_rate)
            };
            rounds.push((strata_rate / raw_rate, strata_rate, raw_rate));
        }
        rounds.sort_by(|a, b| a.0.total_cmp(&b.0));
        let (ratio, strata_rate, raw_rate) = rounds[rounds.len() / 2];
        println!("{:<32} {:>14.0} {:>14.0} {:>11.2}x", pattern.name, strata_rate, raw_rate, ratio);
        std::fs::remove_file(&path).expect("remove bench file");
    }
}
