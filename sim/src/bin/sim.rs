//! `sim`: runs the seeded chaos scenario of a simulated cluster.
//!
//! `sim --seed N` runs one seed and prints the seed, the faults drawn, what fired, the outcome and
//! the trace hash. Without `--seed` it runs seed after seed until a check fails (printing the
//! command that replays it), `--count` runs are done, or it is interrupted.

use clap::Parser;
use std::process::ExitCode;
use std::time::Instant;
use strata_sim::scenario::register::{self, Event, Operation, Outcome};
use strata_sim::Stats;

#[derive(Parser, Debug)]
#[command(about = "Deterministic simulation of a Strata cluster under injected faults")]
struct Arguments {
    /// Run this one seed (replays a run exactly).
    #[arg(long)]
    seed: Option<u64>,
    /// Without --seed: stop after this many seeds (default: run until a failure or Ctrl-C).
    #[arg(long)]
    count: Option<u64>,
    /// Without --seed: the first seed to run (default: drawn from the OS).
    #[arg(long)]
    first_seed: Option<u64>,
    /// Replicas in the cluster.
    #[arg(long, default_value_t = 5)]
    replicas: u32,
    /// Client nodes driving the workload.
    #[arg(long, default_value_t = 3)]
    clients: u32,
    /// Seconds of virtual time under faults.
    #[arg(long, default_value_t = 10)]
    fault_seconds: u64,
    /// Run without any fault (to measure the simulator's raw speed).
    #[arg(long)]
    no_faults: bool,
    /// Print one line per seed instead of the full report.
    #[arg(long)]
    quiet: bool,
    /// Plant a deliberate bug in the replicas, to see the checks catch it:
    /// ack-before-durable, trust-cache-after-failed-sync or skip-repair.
    #[arg(long)]
    bug: Option<String>,
    /// With --seed: write the client history as JSON lines here (for `jepsen check`).
    #[arg(long)]
    history_out: Option<std::path::PathBuf>,
}

fn fired(stats: &Stats) -> String {
    let counts = [
        ("dropped", stats.messages_dropped),
        ("duplicated", stats.messages_duplicated),
        ("reordered", stats.messages_reordered),
        ("blocked", stats.messages_blocked),
        ("clogged", stats.messages_clogged),
        ("partitions", stats.partitions),
        ("one-way", stats.one_way_partitions),
        ("isolations", stats.isolations),
        ("clogs", stats.clogs),
        ("crashes", stats.crashes),
        ("restarts", stats.restarts),
        ("pauses", stats.pauses),
        ("clock-jumps", stats.clock_jumps),
        ("lost-writes", stats.lost_writes),
        ("torn", stats.torn_writes),
        ("misdirected", stats.misdirected_writes),
        ("latent", stats.latent_sector_errors),
        ("latent-reads", stats.latent_read_failures),
        ("bit-flips", stats.bit_flips),
        ("eio-read", stats.read_errors),
        ("eio-write", stats.write_errors),
        ("eio-sync", stats.sync_errors),
        ("enospc", stats.no_space_errors),
        ("slow-io", stats.slow_operations),
        ("buggify", stats.buggify_fired),
    ];
    let fired: Vec<String> = counts
        .iter()
        .filter(|(_, count)| *count > 0)
        .map(|(name, count)| format!("{name} {count}"))
        .collect();
    if fired.is_empty() {
        "none".to_string()
    } else {
        fired.join(", ")
    }
}

fn summary(history: &[Event]) -> String {
    let (mut reads, mut writes, mut unknown) = (0, 0, 0);
    for event in history {
        match event {
            Event::Complete { outcome: Outcome::Unknown, .. } => unknown += 1,
            Event::Invoke { operation: Operation::Read, .. } => reads += 1,
            Event::Invoke { operation: Operation::Write(_), .. } => writes += 1,
            Event::Complete { .. } => {}
        }
    }
    format!("{reads} reads, {writes} writes, {unknown} with unknown outcome")
}

fn run_one(seed: u64, options: &register::Options, arguments: &Arguments, verbose: bool) -> bool {
    let started = Instant::now();
    let report = register::run(seed, options);
    let elapsed = started.elapsed().as_secs_f64();
    let steps = report.stats.events + report.stats.polls;
    let rate = steps as f64 / elapsed.max(1e-9);
    let verdict = match &report.verdict {
        Ok(()) => "ok".to_string(),
        Err(reason) => format!("FAILED: {reason}"),
    };
    if verbose {
        println!("seed {seed}");
        println!("faults drawn:\n  {}", report.config.describe().replace('\n', "\n  "));
        println!("faults fired: {}", fired(&report.stats));
        println!("workload: {}", summary(&report.history));
        println!("outcome: {verdict}");
        println!(
            "speed: {} events + {} polls in {:.3} s wall for {:.1} s virtual: {:.0} steps/s",
            report.stats.events,
            report.stats.polls,
            elapsed,
            report.virtual_time.as_secs_f64(),
            rate
        );
        println!("trace {:016x}", report.trace_hash);
    } else {
        println!("seed {seed} trace {:016x} {verdict} ({:.0} steps/s)", report.trace_hash, rate);
    }
    if let Some(path) = &arguments.history_out {
        match register::to_checker_history(&report.history, false) {
            Ok(history) => {
                let text = strata_jepsen::format::jsonl::write_history(&history, "register");
                if let Err(error) = std::fs::write(path, text) {
                    eprintln!("cannot write {}: {error}", path.display());
                }
            }
            Err(error) => eprintln!("history not convertible: {error}"),
        }
    }
    if report.verdict.is_err() {
        let mut replay = format!("cargo run --release --bin sim -- --seed {seed}");
        if arguments.replicas != 5 || arguments.clients != 3 || arguments.fault_seconds != 10 {
            replay += &format!(
                " --replicas {} --clients {} --fault-seconds {}",
                arguments.replicas, arguments.clients, arguments.fault_seconds
            );
        }
        if arguments.no_faults {
            replay += " --no-faults";
        }
        if let Some(bug) = &arguments.bug {
            replay += &format!(" --bug {bug}");
        }
        println!("replay: {replay}");
    }
    report.verdict.is_ok()
}

fn main() -> ExitCode {
    let arguments = Arguments::parse();
    let bug = match arguments.bug.as_deref() {
        None => None,
        Some("ack-before-durable") => Some(register::Bug::AckBeforeDurable),
        Some("trust-cache-after-failed-sync") => Some(register::Bug::TrustCacheAfterFailedSync),
        Some("skip-repair") => Some(register::Bug::SkipRepair),
        Some(other) => {
            eprintln!("unknown bug {other:?}: ack-before-durable, trust-cache-after-failed-sync, skip-repair");
            return ExitCode::FAILURE;
        }
    };
    let options = register::Options {
        replicas: arguments.replicas.max(1),
        clients: arguments.clients.max(1),
        fault_duration: std::time::Duration::from_secs(arguments.fault_seconds),
        faults: !arguments.no_faults,
        bug,
        check_linearizability: true,
    };
    if let Some(seed) = arguments.seed {
        return if run_one(seed, &options, &arguments, !arguments.quiet) {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        };
    }
    let first = arguments.first_seed.unwrap_or_else(|| {
        let mut bytes = [0u8; 8];
        if let Ok(mut random) = std::fs::File::open("/dev/urandom") {
            let _ = std::io::Read::read_exact(&mut random, &mut bytes);
        }
        u64::from_le_bytes(bytes) >> 16
    });
    let mut seed = first;
    let mut runs = 0u64;
    loop {
        if arguments.count.is_some_and(|count| runs >= count) {
            println!("{runs} seeds from {first} passed");
            return ExitCode::SUCCESS;
        }
        if !run_one(seed, &options, &arguments, false) {
            return ExitCode::FAILURE;
        }
        runs += 1;
        seed = seed.wrapping_add(1);
    }
}
