//! The `jepsen` command.
//!
//! - `jepsen check FILE...` checks recorded histories for linearizability. Exit status: 0 when
//!   every history is linearizable, 1 when any is not, 2 when a file cannot be read, 3 when a
//!   check ran out of budget (and none of the above).
//! - `jepsen run` starts a real cluster on loopback, runs clients against it while injecting
//!   faults, and checks what they saw. Exit status: 0 valid, 1 anomaly, 2 unknown or aborted.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use strata_jepsen::format::{self, AnyHistory};
use strata_jepsen::harness::{run, FaultKind, RedisPersistence, RunConfig, Target, Workload};
use strata_jepsen::model::{CounterModel, KvModel, QueueModel, RegisterModel, SetModel};
use strata_jepsen::{check_report, Budget, History, Model, Verdict};

#[derive(Parser)]
#[command(name = "jepsen", about = "Linearizability checking and real-cluster fault testing")]
struct Command {
    #[command(subcommand)]
    action: Action,
}

#[derive(Subcommand)]
enum Action {
    /// Check history files (etcd .log, EDN .txt, JSON lines .jsonl): a verdict per file.
    Check(CheckArguments),
    /// Start a cluster on loopback, run clients under faults, check the history.
    Run(RunArguments),
    /// A stand-in for the `node` binary, to test the harness (not a cluster: every stub keeps
    /// its own data in memory). Takes the node's flags.
    #[command(hide = true)]
    StubNode {
        /// The node's flags.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        arguments: Vec<String>,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum TargetName {
    /// Strata `node` processes.
    Strata,
    /// One `redis-server` (a sanity check of the harness: with snapshot persistence it loses
    /// acknowledged writes on `kill -9`, and the harness must say so).
    RedisServer,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum WorkloadName {
    Register,
    Set,
    Counter,
    All,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum PersistenceName {
    /// RDB snapshot every second: a kill loses the last second's writes.
    Snapshot,
    /// AOF with appendfsync no: a process kill loses nothing (the page cache survives).
    Aof,
    /// No persistence: a kill loses everything.
    None,
}

#[derive(clap::Args)]
struct RunArguments {
    /// What to test.
    #[arg(long, value_enum, default_value = "strata")]
    target: TargetName,
    /// The `node` binary (default: `node` next to this binary, else target/release/node).
    #[arg(long)]
    node_binary: Option<PathBuf>,
    /// The `redis-server` binary, for `--target redis-server`.
    #[arg(long, default_value = "redis-server")]
    redis_server: PathBuf,
    /// How redis-server persists, for `--target redis-server`.
    #[arg(long, value_enum, default_value = "snapshot")]
    redis_persistence: PersistenceName,
    /// Nodes of the cluster (redis-server: always 1).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u8).range(1..=9))]
    nodes: u8,
    /// `--shards` passed to every node.
    #[arg(long)]
    shards: Option<u32>,
    /// Another flag for every node, repeatable: `--node-arg=--planted-bug --node-arg=stale-reads`
    /// runs a deliberately broken build, which the harness must catch.
    #[arg(long = "node-arg", allow_hyphen_values = true)]
    node_arguments: Vec<String>,
    /// Seconds of workload under faults.
    #[arg(long, default_value_t = 30)]
    time: u64,
    /// Concurrent clients (threads with one connection each).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u16).range(1..=64))]
    clients: u16,
    /// Faults, comma-separated from kill, pause, partition; `none` for none.
    #[arg(long, default_value = "kill,pause,partition")]
    faults: String,
    /// Which workload.
    #[arg(long, value_enum, default_value = "all")]
    workload: WorkloadName,
    /// Keys of each workload in use at once.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=1024))]
    keys: u16,
    /// Seed of the workload's choices and the fault schedule (default: drawn from the clock and
    /// printed). Real timing is not reproducible: the same seed gives another history.
    #[arg(long)]
    seed: Option<u64>,
    /// Output directory for the histories, logs and counterexamples
    /// (default: target/jepsen/seed-SEED).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Keep the nodes' data directories (they are printed).
    #[arg(long)]
    keep: bool,
    /// Operations per second per client (0: as fast as the target answers).
    #[arg(long, default_value_t = 50)]
    rate: u32,
    /// The most operations recorded (clients stop there).
    #[arg(long, default_value_t = 200_000)]
    operations_max: usize,
    /// Deadline of each client command, in milliseconds.
    #[arg(long, default_value_t = 5_000)]
    timeout_ms: u64,
    /// Seconds the cluster may take to become ready, at the start and after healing.
    #[arg(long, default_value_t = 60)]
    ready_timeout: u64,
    /// Mean quiet milliseconds between faults.
    #[arg(long, default_value_t = 2_000)]
    fault_quiet_ms: u64,
    /// Mean milliseconds a fault is held.
    #[arg(long, default_value_t = 3_000)]
    fault_hold_ms: u64,
    /// Seconds the linearizability check may take.
    #[arg(long, default_value_t = 300)]
    check_time: u64,
}

#[derive(clap::Args)]
struct CheckArguments {
    /// History files.
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// Where to write HTML counterexamples (default: next to each history, FILE.html).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Do not write HTML counterexamples.
    #[arg(long)]
    no_html: bool,
    /// Print only the verdict line per file, not the counterexample.
    #[arg(long, short)]
    quiet: bool,
    /// Time budget per history, in milliseconds.
    #[arg(long, default_value_t = 60_000)]
    time_ms_max: u64,
    /// Memory budget per history, in MiB.
    #[arg(long, default_value_t = 4096)]
    memory_mib_max: u64,
    /// Threads for partitions checked in parallel (0: all cores).
    #[arg(long, default_value_t = 0)]
    threads: usize,
}

fn main() -> ExitCode {
    let command = Command::parse();
    match command.action {
        Action::Check(arguments) => check_files(&arguments),
        Action::Run(arguments) => run_cluster(&arguments),
        Action::StubNode { arguments } => match strata_jepsen::harness::stub::main(&arguments) {
            Ok(()) => ExitCode::SUCCESS,
            Err(message) => {
                eprintln!("jepsen stub-node: {message}");
                ExitCode::from(2)
            }
        },
    }
}

/// The `node` binary next to this one, or in target/release.
fn default_node_binary() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let directory = exe.parent()?;
    let sibling = directory.join("node");
    if sibling.is_file() {
        return Some(sibling);
    }
    let release = directory.parent()?.join("release").join("node");
    release.is_file().then_some(release)
}

fn run_cluster(arguments: &RunArguments) -> ExitCode {
    let mut faults = Vec::new();
    for name in arguments.faults.split(',').map(str::trim) {
        if name.is_empty() || name == "none" {
            continue;
        }
        match FaultKind::parse(name) {
            Some(fault) if !faults.contains(&fault) => faults.push(fault),
            Some(_) => {}
            None => {
                eprintln!("jepsen run: unknown fault {name:?} (kill, pause, partition or none)");
                return ExitCode::from(2);
            }
        }
    }
    let (target, nodes_count) = match arguments.target {
        TargetName::Strata => {
            let Some(binary) = arguments.node_binary.clone().or_else(default_node_binary) else {
                eprintln!(
                    "jepsen run: no node binary: build it (cargo build --release --bin node) or \
                     pass --node-binary"
                );
                return ExitCode::from(2);
            };
            let target = Target::Strata {
                binary,
                shards: arguments.shards,
                node_arguments: arguments.node_arguments.clone(),
            };
            (target, usize::from(arguments.nodes))
        }
        TargetName::RedisServer => {
            if faults.contains(&FaultKind::Partition) {
                eprintln!("jepsen run: redis-server runs alone; no partition to make, ignored");
                faults.retain(|fault| *fault != FaultKind::Partition);
            }
            let persistence = match arguments.redis_persistence {
                PersistenceName::Snapshot => RedisPersistence::Snapshot,
                PersistenceName::Aof => RedisPersistence::Aof,
                PersistenceName::None => RedisPersistence::None,
            };
            (Target::RedisServer { binary: arguments.redis_server.clone(), persistence }, 1)
        }
    };
    let seed = arguments.seed.unwrap_or_else(|| {
        let now =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        (now.as_nanos() as u64) ^ u64::from(std::process::id())
    });
    let out = arguments
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from("target").join("jepsen").join(format!("seed-{seed}")));
    let work = std::env::temp_dir().join(format!("strata-jepsen-{}-{seed}", std::process::id()));
    let config = RunConfig {
        target,
        nodes_count,
        time: Duration::from_secs(arguments.time),
        clients_count: usize::from(arguments.clients),
        faults,
        workload: match arguments.workload {
            WorkloadName::Register => Workload::Register,
            WorkloadName::Set => Workload::Set,
            WorkloadName::Counter => Workload::Counter,
            WorkloadName::All => Workload::All,
        },
        keys_count: usize::from(arguments.keys),
        seed,
        out,
        work: work.clone(),
        keep: arguments.keep,
        rate_per_client: arguments.rate,
        operations_max: arguments.operations_max,
        timeout: Duration::from_millis(arguments.timeout_ms),
        ready_timeout: Duration::from_secs(arguments.ready_timeout),
        fault_quiet: Duration::from_millis(arguments.fault_quiet_ms),
        fault_hold: Duration::from_millis(arguments.fault_hold_ms),
        check_time: Duration::from_secs(arguments.check_time),
    };
    let report = run(&config);
    // The header was printed as the run began; print the rest.
    let header_lines = 2;
    for line in report.summary.lines().skip(header_lines) {
        println!("{line}");
    }
    if arguments.keep {
        println!("data directories kept in {}", work.display());
    }
    ExitCode::from(report.verdict.exit_code())
}

#[derive(Default)]
struct Tally {
    not_linearizable: usize,
    errors: usize,
    unknown: usize,
}

fn check_files(arguments: &CheckArguments) -> ExitCode {
    let budget = Budget {
        time_max: Some(Duration::from_millis(arguments.time_ms_max)),
        memory_bytes_max: Some(arguments.memory_mib_max << 20),
        steps_max: None,
        threads: arguments.threads,
    };
    if let Some(out) = &arguments.out {
        if let Err(error) = std::fs::create_dir_all(out) {
            eprintln!("jepsen: cannot create {}: {error}", out.display());
            return ExitCode::from(2);
        }
    }
    let mut tally = Tally::default();
    for path in &arguments.files {
        let history = match format::read_file(path) {
            Ok((_, history)) => history,
            Err(error) => {
                println!("{}: error: {error}", path.display());
                tally.errors += 1;
                continue;
            }
        };
        if history.is_empty() {
            println!("{}: empty history, nothing to check", path.display());
            continue;
        }
        match &history {
            AnyHistory::Register(history) => {
                check_one(path, history, &RegisterModel::default(), &budget, arguments, &mut tally)
            }
            AnyHistory::Kv(history) => {
                check_one(path, history, &KvModel, &budget, arguments, &mut tally)
            }
            AnyHistory::Set(history) => {
                check_one(path, history, &SetModel, &budget, arguments, &mut tally)
            }
            AnyHistory::Queue(history) => {
                check_one(path, history, &QueueModel, &budget, arguments, &mut tally)
            }
            AnyHistory::Counter(history) => {
                check_one(path, history, &CounterModel, &budget, arguments, &mut tally)
            }
        }
    }
    let files = arguments.files.len();
    println!(
        "{files} file(s): {} not linearizable, {} unknown, {} unreadable",
        tally.not_linearizable, tally.unknown, tally.errors
    );
    if tally.not_linearizable > 0 {
        ExitCode::from(1)
    } else if tally.errors > 0 {
        ExitCode::from(2)
    } else if tally.unknown > 0 {
        ExitCode::from(3)
    } else {
        ExitCode::SUCCESS
    }
}

fn check_one<M: Model>(
    path: &Path,
    history: &History<M::Input, M::Output>,
    model: &M,
    budget: &Budget,
    arguments: &CheckArguments,
    tally: &mut Tally,
) {
    let report = check_report(history, model, budget);
    let figures = format!(
        "{} operations, {} partition(s), {} steps, {} configurations, {:.3} ms",
        report.operations_count,
        report.partitions_count,
        report.steps_count,
        report.configurations_count,
        report.elapsed.as_secs_f64() * 1000.0
    );
    match &report.verdict {
        Verdict::Linearizable => println!("{}: linearizable ({figures})", path.display()),
        Verdict::Unknown(reason) => {
            tally.unknown += 1;
            println!("{}: unknown: {reason} ({figures})", path.display());
        }
        Verdict::NotLinearizable(counterexample) => {
            tally.not_linearizable += 1;
            println!("{}: NOT linearizable ({figures})", path.display());
            if !arguments.quiet {
                println!("{counterexample}");
            }
            if !arguments.no_html {
                let name = format!(
                    "{}.html",
                    path.file_name().map_or("history".into(), |name| name.to_string_lossy())
                );
                let target = match &arguments.out {
                    Some(out) => out.join(name),
                    None => path.with_file_name(name),
                };
                let title = path.display().to_string();
                match std::fs::write(&target, counterexample.to_html(&title)) {
                    Ok(()) => println!("  timeline: {}", target.display()),
                    Err(error) => eprintln!("  cannot write {}: {error}", target.display()),
                }
            }
        }
    }
}
