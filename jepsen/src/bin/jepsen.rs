//! The `jepsen` command: `jepsen check FILE...` checks recorded histories for linearizability.
//!
//! Exit status: 0 when every history is linearizable, 1 when any is not, 2 when a file cannot be
//! read, 3 when a check ran out of budget (and none of the above).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use strata_jepsen::format::{self, AnyHistory};
use strata_jepsen::model::{CounterModel, KvModel, QueueModel, RegisterModel, SetModel};
use strata_jepsen::{check_report, Budget, History, Model, Verdict};

#[derive(Parser)]
#[command(name = "jepsen", about = "Linearizability checking of client histories")]
struct Command {
    #[command(subcommand)]
    action: Action,
}

#[derive(Subcommand)]
enum Action {
    /// Check history files (etcd .log, EDN .txt, JSON lines .jsonl): a verdict per file.
    Check(CheckArguments),
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
    }
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
