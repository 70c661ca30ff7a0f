//! Benchmark of the linearizability checker (`strata-jepsen`): the shared test data (Porcupine's
//! histories) and generated key-value histories, with time and peak memory per row.
//!
//! `cargo run --release -p strata-bench --bin checker [-- --quick] [-- --only TEXT]`
//!
//! Peak memory is the process's resident high-water mark (`VmHWM`), reset before each row through
//! `/proc/self/clear_refs`, so each row shows its own peak (its input history included). Targets
//! (issue 6): the whole etcd set in under 0.1 s; 100k operations over 10 keys in under 1 s and
//! 500 MB. Porcupine's per-file CPU times on this kind of machine are in the test data's README.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use strata_jepsen::format::{self, AnyHistory};
use strata_jepsen::generate::{kv_history, Workload};
use strata_jepsen::model::{KvModel, RegisterModel};
use strata_jepsen::{check_report, Budget, Report, Verdict};

fn main() {
    let arguments: Vec<String> = std::env::args().collect();
    let quick = arguments.iter().any(|argument| argument == "--quick");
    // `--only TEXT`: run only the rows whose name contains TEXT.
    let only = arguments
        .iter()
        .position(|argument| argument == "--only")
        .and_then(|position| arguments.get(position + 1))
        .cloned()
        .unwrap_or_default();
    let testdata =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/testdata/linearizability");
    let budget = Budget {
        time_max: Some(Duration::from_secs(60)),
        memory_bytes_max: Some(4 << 30),
        ..Budget::default()
    };
    println!(
        "{:<58} {:>9} {:>8} {:>10} {:>16} {:>10} {:>10} {:>8} {:>9}",
        "history",
        "histories",
        "ops",
        "partitions",
        "verdicts",
        "steps",
        "time ms",
        "cpu ms",
        "peak MiB"
    );

    let mut etcd_files: Vec<PathBuf> = std::fs::read_dir(testdata.join("jepsen"))
        .map(|entries| entries.filter_map(|entry| entry.ok().map(|entry| entry.path())).collect())
        .unwrap_or_default();
    etcd_files.sort();
    if etcd_files.is_empty() {
        eprintln!("no test data at {}: skipping the etcd and c50 rows", testdata.display());
    }
    let etcd_name = "etcd set (Porcupine: ~0.6 s in all)";
    if !etcd_files.is_empty() && etcd_name.contains(only.as_str()) {
        let histories: Vec<_> = etcd_files
            .iter()
            .filter_map(|path| match read(path) {
                AnyHistory::Register(history) if !history.is_empty() => Some(history),
                _ => None,
            })
            .collect();
        reset_peak();
        let mut row = Row::new(etcd_name);
        let (mut linearizable, mut not) = (0, 0);
        let started = Instant::now();
        for history in &histories {
            let report = check_report(history, &RegisterModel::default(), &budget);
            row.add(&report);
            match report.verdict {
                Verdict::Linearizable => linearizable += 1,
                Verdict::NotLinearizable(_) => not += 1,
                Verdict::Unknown(_) => {}
            }
        }
        row.elapsed = started.elapsed();
        row.verdicts = format!("{linearizable} lin, {not} not");
        row.print();
    }
    for (file, porcupine) in [("c50-ok", "214 ms"), ("c50-bad", "5.8 ms")] {
        let name = format!("kv {file} (Porcupine {porcupine})");
        if etcd_files.is_empty() || !name.contains(only.as_str()) {
            continue;
        }
        let AnyHistory::Kv(history) = read(&testdata.join(format!("kv/{file}.txt"))) else {
            panic!("{file} is a key-value history");
        };
        reset_peak();
        let mut row = Row::new(&name);
        let report = check_report(&history, &KvModel, &budget);
        row.add(&report);
        row.elapsed = report.elapsed;
        row.verdicts = verdict_name(&report.verdict);
        row.print();
    }

    let sizes: &[usize] = if quick { &[10_000] } else { &[10_000, 100_000] };
    for &operations in sizes {
        // Unknown outcomes: about ten per history (each may take effect at any later time).
        let unknown_rate = (10_000_000 / operations) as u32;
        for (keys, unknown_per_million) in [(10, 0), (100, 0), (1000, 0), (10, unknown_rate)] {
            let unknown = if unknown_per_million > 0 {
                format!(", {}% unknown", f64::from(unknown_per_million) / 10_000.0)
            } else {
                String::new()
            };
            let name = format!(
                "generated kv {}k ops, {keys} keys{unknown}, 50 clients",
                operations / 1000
            );
            if !name.contains(only.as_str()) {
                continue;
            }
            let workload = Workload { seed: 42, operations, clients: 50, unknown_per_million };
            let history = kv_history(&workload, keys);
            reset_peak();
            let mut row = Row::new(&name);
            let report = check_report(&history, &KvModel, &budget);
            row.add(&report);
            row.elapsed = report.elapsed;
            row.verdicts = verdict_name(&report.verdict);
            row.print();
        }
    }
    println!("threads: {}", std::thread::available_parallelism().map_or(1, |count| count.get()));
}

struct Row {
    name: String,
    histories: usize,
    operations: usize,
    partitions: usize,
    steps: u64,
    verdicts: String,
    elapsed: Duration,
    cpu_ms_start: u64,
}

impl Row {
    fn new(name: &str) -> Self {
        Row {
            name: name.to_string(),
            histories: 0,
            operations: 0,
            partitions: 0,
            steps: 0,
            verdicts: String::new(),
            elapsed: Duration::ZERO,
            cpu_ms_start: cpu_ms(),
        }
    }

    fn add(&mut self, report: &Report) {
        self.histories += 1;
        self.operations += report.operations_count;
        self.partitions += report.partitions_count;
        self.steps += report.steps_count;
    }

    fn print(&self) {
        println!(
            "{:<58} {:>9} {:>8} {:>10} {:>16} {:>10} {:>10.3} {:>8} {:>9.1}",
            self.name,
            self.histories,
            self.operations,
            self.partitions,
            self.verdicts,
            self.steps,
            self.elapsed.as_secs_f64() * 1000.0,
            cpu_ms() - self.cpu_ms_start,
            peak_mib()
        );
    }
}

fn read(path: &Path) -> AnyHistory {
    match format::read_file(path) {
        Ok((_, history)) => history,
        Err(error) => panic!("{}: {error}", path.display()),
    }
}

fn verdict_name(verdict: &Verdict) -> String {
    match verdict {
        Verdict::Linearizable => "linearizable".to_string(),
        Verdict::NotLinearizable(_) => "NOT linearizable".to_string(),
        Verdict::Unknown(reason) => format!("unknown: {reason}"),
    }
}

/// CPU time of the process so far (user + system, every thread), in milliseconds, from
/// /proc/self/stat (10 ms resolution).
fn cpu_ms() -> u64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which is in parentheses), from 0: state, ..., utime at 11,
    // stime at 12, in clock ticks (100 per second on Linux).
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let field = |index: usize| fields.get(index).and_then(|field| field.parse::<u64>().ok());
    let ticks = field(11).unwrap_or(0) + field(12).unwrap_or(0);
    ticks * 10
}

/// Resets the resident high-water mark (Linux: writing 5 to clear_refs).
fn reset_peak() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// The resident high-water mark in MiB (`VmHWM` of /proc/self/status), 0 if unknown.
fn peak_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kib| kib / 1024.0)
}
