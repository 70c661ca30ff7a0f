//! One harness run: start the cluster, run clients and the nemesis, heal, read everything back,
//! check, and write the history, the fault log and any counterexample to the output directory.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::cluster::{Cluster, Target};
use super::nemesis::{self, FaultKind, NemesisConfig, NemesisLog};
use super::resp::Client;
use super::workload::{self, ClientConfig, Dialect, Histories, Shared, Workload, FINAL_PROCESS};
use crate::checker::{check_report, Budget, Verdict};
use crate::format::jsonl;
use crate::history::{History, Outcome};
use crate::model::keyed::split_by_key;
use crate::model::{CounterInput, KeyedInput, KeyedModel, RegisterInput, RegisterModel, SetInput};

/// A run's settings.
#[derive(Clone, Debug)]
pub struct RunConfig {
    /// What runs.
    pub target: Target,
    /// Nodes (1 for `redis-server`).
    pub nodes_count: usize,
    /// How long clients run.
    pub time: Duration,
    /// Client threads.
    pub clients_count: usize,
    /// Faults the nemesis draws from.
    pub faults: Vec<FaultKind>,
    /// The workloads.
    pub workload: Workload,
    /// Keys of each workload in use at once.
    pub keys_count: usize,
    /// Seeds the clients' choices and the fault schedule.
    pub seed: u64,
    /// Where the history, logs and counterexamples go.
    pub out: PathBuf,
    /// Where the data directories go (a fresh temporary directory, removed unless `keep`).
    pub work: PathBuf,
    /// Keep the data directories.
    pub keep: bool,
    /// Operations per second per client (0: as fast as the target answers).
    pub rate_per_client: u32,
    /// The most operations recorded.
    pub operations_max: usize,
    /// Deadline of each client command.
    pub timeout: Duration,
    /// How long the cluster may take to become ready, at the start and after healing.
    pub ready_timeout: Duration,
    /// Mean quiet time between faults.
    pub fault_quiet: Duration,
    /// Mean time a fault is held.
    pub fault_hold: Duration,
    /// Time budget of the linearizability check.
    pub check_time: Duration,
}

/// The verdict of a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunVerdict {
    /// No anomaly found.
    Valid,
    /// An anomaly (or a crashed node) was found.
    Anomaly,
    /// The run could not decide: the cluster never became ready, final reads failed, or the
    /// checker ran out of budget.
    Unknown,
}

impl RunVerdict {
    /// The process exit status: 0, 1 or 2.
    pub fn exit_code(self) -> u8 {
        match self {
            RunVerdict::Valid => 0,
            RunVerdict::Anomaly => 1,
            RunVerdict::Unknown => 2,
        }
    }
}

/// What a run found.
#[derive(Debug)]
pub struct RunReport {
    /// The verdict.
    pub verdict: RunVerdict,
    /// The printed summary (also in `out/summary.txt`).
    pub summary: String,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Runs the harness once. Errors are reported in the summary with [`RunVerdict::Unknown`].
pub fn run(config: &RunConfig) -> RunReport {
    let mut summary = String::new();
    let verdict = match run_inner(config, &mut summary) {
        Ok(verdict) => verdict,
        Err(message) => {
            let _ = writeln!(summary, "aborted: {message}");
            let _ = writeln!(summary, "verdict: UNKNOWN (aborted)");
            RunVerdict::Unknown
        }
    };
    let _ = std::fs::write(config.out.join("summary.txt"), &summary);
    if !config.keep {
        let _ = std::fs::remove_dir_all(&config.work);
    }
    RunReport { verdict, summary }
}

fn io_error(what: &str, path: &Path, error: std::io::Error) -> String {
    format!("{what} {}: {error}", path.display())
}

fn run_inner(config: &RunConfig, summary: &mut String) -> Result<RunVerdict, String> {
    assert!(config.clients_count >= 1, "at least one client");
    assert!(config.clients_count <= workload::CLIENTS_COUNT_MAX, "too many clients");
    // A previous run with the same output directory leaves nothing behind to confuse this one.
    for stale in ["register", "set", "counter", "nodes"] {
        let _ = std::fs::remove_dir_all(config.out.join(stale));
    }
    for stale in ["counterexample.txt", "counterexample.html", "anomalies.txt", "nemesis.log"] {
        let _ = std::fs::remove_file(config.out.join(stale));
    }
    let target_name = match &config.target {
        Target::Strata { binary, .. } => format!("strata ({})", binary.display()),
        Target::RedisServer { binary, persistence } => {
            format!("redis-server ({}, persistence {})", binary.display(), persistence.name())
        }
    };
    let faults: Vec<&str> = config.faults.iter().map(|fault| fault.name()).collect();
    let _ = writeln!(
        summary,
        "jepsen run: target {target_name}, {} node(s), {} client(s), {:?} workload, {} key(s), \
         {} s, faults [{}], seed {}",
        config.nodes_count,
        config.clients_count,
        config.workload,
        config.keys_count,
        config.time.as_secs(),
        faults.join(","),
        config.seed
    );
    let _ = writeln!(
        summary,
        "  (the seed fixes the workload's choices and the fault schedule; real timing is not \
         reproducible, so a rerun is a different history)"
    );
    print!("{summary}");
    std::fs::create_dir_all(&config.out)
        .map_err(|error| io_error("cannot create", &config.out, error))?;

    let cluster = Cluster::start(
        &config.target,
        config.nodes_count,
        &config.work.join("data"),
        &config.out.join("nodes"),
    )
    .map_err(|error| format!("cannot start the cluster: {error}"))?;
    let mut commands = String::new();
    for index in 0..cluster.len() {
        let _ = writeln!(commands, "{}", cluster.command_line(index));
    }
    let _ = std::fs::write(config.out.join("nodes").join("commands.txt"), &commands);
    cluster
        .wait_ready(config.ready_timeout)
        .map_err(|error| format!("the cluster never became ready:\n{error}"))?;
    accepts_writes(&cluster, config)?;
    println!("cluster ready; running clients for {} s", config.time.as_secs());

    let started = Instant::now();
    let deadline = started + config.time;
    let shared = Shared::new(config.keys_count, config.operations_max);
    let nemesis_log = Mutex::new(NemesisLog::default());
    let nodes: Vec<SocketAddr> = cluster.addresses().iter().map(|node| node.redis).collect();
    let dialect = if config.target.has_ifeq() { Dialect::Ifeq } else { Dialect::Lua };
    let interval = if config.rate_per_client == 0 {
        Duration::ZERO
    } else {
        Duration::from_micros(1_000_000 / u64::from(config.rate_per_client))
    };
    let nemesis_config = NemesisConfig {
        faults: config.faults.clone(),
        seed: config.seed,
        quiet: config.fault_quiet,
        hold: config.fault_hold,
        deadline,
    };
    let nemesis_stop = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|scope| {
        let mut clients = Vec::with_capacity(config.clients_count);
        for index in 0..config.clients_count {
            let client_config = ClientConfig {
                index,
                clients_count: config.clients_count,
                nodes: nodes.clone(),
                seed: config.seed,
                workload: config.workload,
                dialect,
                timeout: config.timeout,
                interval,
                deadline,
            };
            let shared = &shared;
            clients.push(
                std::thread::Builder::new()
                    .name(format!("client-{index}"))
                    .spawn_scoped(scope, move || workload::run_client(&client_config, shared))
                    .expect("spawn a client thread"),
            );
        }
        let nemesis = std::thread::Builder::new()
            .name("nemesis".to_string())
            .spawn_scoped(scope, || {
                nemesis::run(&nemesis_config, &cluster, &nemesis_stop, &nemesis_log)
            })
            .expect("spawn the nemesis thread");
        for client in clients {
            let _ = client.join();
        }
        nemesis_stop.store(true, Ordering::Relaxed);
        let _ = nemesis.join();
    });
    shared.stop.store(true, Ordering::Relaxed);
    let run_seconds = started.elapsed().as_secs_f64();

    // Heal and let the cluster recover, then read every key back.
    cluster.heal_all().map_err(|error| format!("cannot heal the cluster: {error}"))?;
    let ready = cluster.wait_ready(config.ready_timeout);
    let mut unknown_reasons: Vec<String> = Vec::new();
    if let Err(error) = &ready {
        unknown_reasons.push(format!("the cluster did not recover after healing:\n{error}"));
    }
    let missing = final_reads(&shared, &nodes, config);
    if missing > 0 {
        unknown_reasons.push(format!("{missing} key(s) could not be read back after healing"));
    }
    cluster.reap();
    let crashes = cluster.crashes();
    cluster.shutdown();
    let nemesis_log = nemesis_log.into_inner().unwrap_or_else(|poisoned| poisoned.into_inner());
    let _ = std::fs::write(config.out.join("nemesis.log"), nemesis_log.lines.join("\n") + "\n");
    let histories = shared.histories.into_inner().unwrap_or_else(|poisoned| poisoned.into_inner());

    // Summaries of what happened.
    let _ = writeln!(summary, "ran {run_seconds:.1} s; {} operation(s) recorded", histories.len());
    tally(summary, &histories);
    let fault_counts: Vec<String> =
        nemesis_log.counts.iter().map(|(kind, count)| format!("{kind} {count}")).collect();
    let _ = writeln!(
        summary,
        "faults injected: {} (timeline: {})",
        if fault_counts.is_empty() { "none".to_string() } else { fault_counts.join(", ") },
        config.out.join("nemesis.log").display()
    );
    for error in &nemesis_log.errors {
        let _ = writeln!(summary, "  nemesis error: {error}");
    }

    // Histories, one file per key, each checkable with `jepsen check`.
    write_per_key(&config.out.join("register"), &histories.register, "register")?;
    write_per_key(&config.out.join("set"), &histories.set, "set")?;
    write_per_key(&config.out.join("counter"), &histories.counter, "counter")?;

    // Checks.
    let mut anomalies: Vec<String> = Vec::new();
    for crash in &crashes {
        anomalies.push(format!("crash: {crash}"));
    }
    let budget = Budget {
        time_max: Some(config.check_time),
        memory_bytes_max: Some(4 << 30),
        steps_max: None,
        threads: 0,
    };
    let report =
        check_report(&histories.register, &KeyedModel { inner: RegisterModel::default() }, &budget);
    let _ = writeln!(
        summary,
        "register check: {} operation(s) over {} key(s), {:.1} s",
        report.operations_count,
        report.partitions_count,
        report.elapsed.as_secs_f64()
    );
    match &report.verdict {
        Verdict::Linearizable => {}
        Verdict::Unknown(reason) => unknown_reasons.push(format!("register check: {reason}")),
        Verdict::NotLinearizable(counterexample) => {
            let text_path = config.out.join("counterexample.txt");
            let html_path = config.out.join("counterexample.html");
            let _ = std::fs::write(&text_path, counterexample.to_string());
            let title = format!("jepsen run seed {}", config.seed);
            let _ = std::fs::write(&html_path, counterexample.to_html(&title));
            anomalies.push(format!(
                "register key {}: not linearizable; counterexample {} (timeline {})",
                counterexample.partition.as_deref().unwrap_or("?"),
                text_path.display(),
                html_path.display()
            ));
            let _ = writeln!(summary, "{counterexample}");
        }
    }
    anomalies.extend(workload::check_sets(&histories.set));
    anomalies.extend(workload::check_counters(&histories.counter));

    let verdict = if !anomalies.is_empty() {
        let _ = std::fs::write(config.out.join("anomalies.txt"), anomalies.join("\n") + "\n");
        let _ = writeln!(summary, "anomalies: {}", anomalies.len());
        for anomaly in anomalies.iter().take(20) {
            let _ = writeln!(summary, "  {anomaly}");
        }
        if anomalies.len() > 20 {
            let _ =
                writeln!(summary, "  ... all in {}", config.out.join("anomalies.txt").display());
        }
        let _ = writeln!(summary, "verdict: ANOMALY");
        RunVerdict::Anomaly
    } else if !unknown_reasons.is_empty() {
        for reason in &unknown_reasons {
            let _ = writeln!(summary, "  {reason}");
        }
        let _ = writeln!(summary, "verdict: UNKNOWN");
        RunVerdict::Unknown
    } else {
        let _ = writeln!(summary, "verdict: VALID (no anomaly found)");
        RunVerdict::Valid
    };
    let _ = writeln!(summary, "output: {}", config.out.display());
    Ok(verdict)
}

/// Waits until a write through each node succeeds (a cluster may answer PING before it has
/// leaders), so the run does not begin with a burst of unknown outcomes.
fn accepts_writes(cluster: &Cluster, config: &RunConfig) -> Result<(), String> {
    let deadline = Instant::now() + config.ready_timeout;
    for node in cluster.addresses() {
        loop {
            let last_error = match Client::connect(node.redis, config.timeout) {
                Ok(mut client) => match client.command(&["SET", "jepsen:probe", "1"]) {
                    Ok(reply) if matches!(&reply, super::resp::Reply::Simple(text) if text == "OK") =>
                    {
                        break;
                    }
                    Ok(reply) => format!("{reply:?}"),
                    Err(error) => error.to_string(),
                },
                Err(error) => error.to_string(),
            };
            if Instant::now() >= deadline {
                return Err(format!(
                    "node {} never accepted a write (last: {last_error})",
                    node.id
                ));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    Ok(())
}

/// Operations by workload, kind and outcome.
fn tally(summary: &mut String, histories: &Histories) {
    fn count<I, O>(
        history: &History<KeyedInput<I>, O>,
        name: impl Fn(&I) -> &'static str,
    ) -> BTreeMap<&'static str, [u64; 3]> {
        let mut counts: BTreeMap<&'static str, [u64; 3]> = BTreeMap::new();
        for operation in history.operations() {
            let slot = match operation.outcome {
                Some(Outcome::Ok(_)) => 0,
                Some(Outcome::Fail) => 1,
                Some(Outcome::Info) | None => 2,
            };
            counts.entry(name(&operation.input.input)).or_default()[slot] += 1;
        }
        counts
    }
    let mut lines = Vec::new();
    for (workload, counts) in [
        (
            "register",
            count(&histories.register, |input| match input {
                RegisterInput::Read => "read",
                RegisterInput::Write(_) => "write",
                RegisterInput::Cas { .. } => "cas",
            }),
        ),
        (
            "set",
            count(&histories.set, |input| match input {
                SetInput::Add(_) => "add",
                SetInput::Remove(_) => "remove",
                SetInput::Read => "read",
            }),
        ),
        (
            "counter",
            count(&histories.counter, |input| match input {
                CounterInput::Add(_) => "add",
                CounterInput::Read => "read",
            }),
        ),
    ] {
        for (kind, [ok, fail, info]) in counts {
            lines.push(format!(
                "  {workload:<8} {kind:<6} ok {ok:>7}  fail {fail:>6}  info {info:>6}"
            ));
        }
    }
    let _ = writeln!(summary, "operations (ok: took effect; fail: did not; info: unknown):");
    for line in lines {
        let _ = writeln!(summary, "{line}");
    }
}

fn write_per_key<I, O>(
    directory: &Path,
    history: &History<KeyedInput<I>, O>,
    model: &str,
) -> Result<(), String>
where
    I: Clone + serde::Serialize,
    O: Clone + serde::Serialize,
{
    if history.is_empty() {
        return Ok(());
    }
    std::fs::create_dir_all(directory)
        .map_err(|error| io_error("cannot create", directory, error))?;
    for (key, part) in split_by_key(history) {
        let path = directory.join(format!("{key}.jsonl"));
        std::fs::write(&path, jsonl::write_history(&part, model))
            .map_err(|error| io_error("cannot write", &path, error))?;
    }
    Ok(())
}

/// Reads every key of every workload once after healing, retrying until `ready_timeout`; each
/// attempt is recorded (a failed read is dropped by the checks). Returns the keys never read.
fn final_reads(shared: &Shared, nodes: &[SocketAddr], config: &RunConfig) -> usize {
    let deadline = Instant::now() + config.ready_timeout;
    let (register_keys, set_keys, counter_keys) = shared.keys();
    let mut connection: Option<Client> = None;
    let mut node = 0;
    let mut missing = 0;
    let mut process = FINAL_PROCESS;
    // Each read: returns whether it succeeded, and whether the connection broke.
    let mut read_key = |read: &mut dyn FnMut(&mut Client) -> (bool, bool)| -> bool {
        while Instant::now() < deadline {
            let client = match &mut connection {
                Some(client) => client,
                None => match Client::connect(nodes[node], config.timeout) {
                    Ok(client) => connection.insert(client),
                    Err(_) => {
                        node = (node + 1) % nodes.len();
                        std::thread::sleep(Duration::from_millis(100));
                        continue;
                    }
                },
            };
            let (done, broken) = read(client);
            if broken {
                connection = None;
                node = (node + 1) % nodes.len();
            }
            if done {
                return true;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        false
    };
    let used = |keys: &[String], history_keys: &std::collections::BTreeSet<String>| {
        keys.iter().filter(|key| history_keys.contains(*key)).cloned().collect::<Vec<_>>()
    };
    let (register_used, set_used, counter_used) = {
        let histories = lock(&shared.histories);
        let register: std::collections::BTreeSet<String> =
            histories.register.operations().iter().map(|op| op.input.key.clone()).collect();
        let set: std::collections::BTreeSet<String> =
            histories.set.operations().iter().map(|op| op.input.key.clone()).collect();
        let counter: std::collections::BTreeSet<String> =
            histories.counter.operations().iter().map(|op| op.input.key.clone()).collect();
        (used(&register_keys, &register), used(&set_keys, &set), used(&counter_keys, &counter))
    };
    for key in &register_used {
        let ok = read_key(&mut |client| {
            let input = KeyedInput { key: key.clone(), input: RegisterInput::Read };
            let id = lock(&shared.histories).register.invoke(process, input);
            let (outcome, broken) = workload::register_read(client, key);
            let done = matches!(outcome, Outcome::Ok(_));
            lock(&shared.histories).register.complete(id, outcome);
            (done, broken)
        });
        missing += usize::from(!ok);
        process += 1;
    }
    for key in &set_used {
        let ok = read_key(&mut |client| {
            let input = KeyedInput { key: key.clone(), input: SetInput::Read };
            let id = lock(&shared.histories).set.invoke(process, input);
            let (outcome, broken) = workload::set_operation(client, key, SetInput::Read);
            let done = matches!(outcome, Outcome::Ok(_));
            lock(&shared.histories).set.complete(id, outcome);
            (done, broken)
        });
        missing += usize::from(!ok);
        process += 1;
    }
    for key in &counter_used {
        let ok = read_key(&mut |client| {
            let input = KeyedInput { key: key.clone(), input: CounterInput::Read };
            let id = lock(&shared.histories).counter.invoke(process, input);
            let (outcome, broken) = workload::counter_operation(client, key, CounterInput::Read);
            let done = matches!(outcome, Outcome::Ok(_));
            lock(&shared.histories).counter.complete(id, outcome);
            (done, broken)
        });
        missing += usize::from(!ok);
        process += 1;
    }
    missing
}
