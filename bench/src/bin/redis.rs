//! Redis-protocol benchmark: `redis-benchmark -q -n N -c 50` with `-P 1` and `-P 16` for SET,
//! GET, INCR, LPUSH and LPOP, run in one go against
//!
//! 1. a single-node Strata (`node`, release build: every write committed through Raft and
//!    fdatasync'ed to its WAL before the reply),
//! 2. its anchor, Debian's `redis-server` with `appendonly yes` and `appendfsync always` (also
//!    durable before the reply; no snapshots or AOF rewrites), and
//! 3. a 3-node Strata cluster on loopback (clients on the leader's node),
//!
//! printing requests/s and each Strata row's ratio to redis-server, then the servers' CPU time
//! per request: user + system, over all their processes, from `/proc`. It includes what a test
//! leaves its server to do (each test waits for the server to go idle, so a flush or a
//! compaction is counted and does not slow the next test), less what the server uses idle,
//! measured when it starts. That is the steadier measure of efficiency where neighbours make
//! rates noisy. The three servers run side by side, each test on each in turn, so that the two
//! samples of a ratio are seconds apart; each server sees the tests in the same order. Rounds
//! alternate the order of the servers, and the tables show medians with the range of each
//! ratio: this machine is shared, and one run of one side can be off by a fifth either way.
//!
//! `cargo build --release --bin node && cargo run --release -p strata-bench --bin redis [-- N
//! [ROUNDS]]` (N requests per test, default 200000; ROUNDS default 3). `STRATA_NODE_BINARY` overrides where `node` is found
//! (default: next to this binary); `STRATA_BENCH_DIR` picks the file system.

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use strata_bench::scratch_dir;
use strata_bench::servers::{
    free_port, node_binary, wait_until_listening, wait_until_writable, Process,
};

const TESTS: &str = "set,get,incr,lpush,lpop";
const CLIENTS: &str = "50";
const PIPELINES: [u32; 2] = [1, 16];

/// One test against one server.
#[derive(Clone, Copy, Default)]
struct Sample {
    requests_per_second: f64,
    /// The server's CPU time (user + system, all its processes) per request.
    cpu_micros: f64,
}

/// CPU time the processes `pids` used so far, in clock ticks (`/proc/PID/stat` utime + stime).
fn cpu_ticks(pids: &[u32]) -> u64 {
    pids.iter()
        .map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            // Fields after the command name, which may hold spaces: state is the first.
            let after_name = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
            let fields: Vec<&str> = after_name.split_whitespace().collect();
            let field = |at: usize| fields.get(at).and_then(|text| text.parse::<u64>().ok());
            field(11).unwrap_or(0) + field(12).unwrap_or(0)
        })
        .sum()
}

/// Clock ticks per second, as `/proc` counts CPU time.
fn ticks_per_second() -> f64 {
    let output = Command::new("getconf").arg("CLK_TCK").output();
    let text = output.map(|output| String::from_utf8_lossy(&output.stdout).trim().to_string());
    text.ok().and_then(|text| text.parse().ok()).unwrap_or(100.0)
}

/// One server under test: its client port and the processes whose CPU time counts.
struct Side {
    port: u16,
    pids: Vec<u32>,
    /// CPU ticks per second the side uses when idle (Raft heartbeats, expiry scans): taken off
    /// the time a test waits for the side to go idle.
    idle_ticks_per_second: f64,
    /// Stops the processes and removes their data when dropped (processes first).
    _processes: Vec<Process>,
    _dir: ScratchDir,
}

impl Side {
    /// Waits for a started side to settle (elections, preallocated log segments) and measures
    /// what it uses idle.
    fn new(port: u16, processes: Vec<Process>, dir: PathBuf) -> Side {
        let pids: Vec<u32> = processes.iter().map(|process| process.0.id()).collect();
        wait_until_idle(&pids, 0.0);
        let (before, started) = (cpu_ticks(&pids), Instant::now());
        std::thread::sleep(Duration::from_secs(2));
        let ticks = cpu_ticks(&pids).saturating_sub(before);
        let idle_ticks_per_second = ticks as f64 / started.elapsed().as_secs_f64();
        Side { port, pids, idle_ticks_per_second, _processes: processes, _dir: ScratchDir(dir) }
    }
}

/// A scratch directory removed when dropped.
struct ScratchDir(PathBuf);

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs one test against `side` and waits until the side is idle again, counting the CPU time
/// of the work the test left behind (a flush, a compaction) as the test's, less what the side
/// uses idle meanwhile, and keeping that work off the next side's test. A run that failed gives
/// no sample.
fn benchmark(side: &Side, test: &str, requests: u64, pipeline: u32) -> Sample {
    let tick_micros = 1e6 / ticks_per_second();
    let ticks_before = cpu_ticks(&side.pids);
    let output = Command::new("redis-benchmark")
        .args(["-p", &side.port.to_string(), "-c", CLIENTS, "-t", test, "--csv"])
        .args(["-n", &requests.to_string(), "-P", &pipeline.to_string()])
        .output()
        .expect("run redis-benchmark (apt-get install redis-tools)");
    let waited = wait_until_idle(&side.pids, side.idle_ticks_per_second);
    let ticks = cpu_ticks(&side.pids).saturating_sub(ticks_before) as f64;
    let ticks = (ticks - side.idle_ticks_per_second * waited.as_secs_f64()).max(0.0);
    let text = String::from_utf8_lossy(&output.stdout);
    let rate = text
        .lines()
        .filter_map(|line| line.split(',').nth(1)?.trim_matches('"').parse::<f64>().ok())
        .next_back();
    match rate {
        Some(requests_per_second) if output.status.success() => {
            Sample { requests_per_second, cpu_micros: ticks * tick_micros / requests as f64 }
        }
        _ => {
            eprintln!("redis-benchmark -t {test} -P {pipeline} on port {} failed", side.port);
            Sample::default()
        }
    }
}

/// Waits until `pids` use no more CPU than idle (`idle_ticks_per_second`) for a quarter of a
/// second, at most 20 s; returns how long it waited.
fn wait_until_idle(pids: &[u32], idle_ticks_per_second: f64) -> Duration {
    let window = Duration::from_millis(250);
    let allowed = (idle_ticks_per_second * window.as_secs_f64()).ceil() as u64;
    let started = Instant::now();
    let mut last = cpu_ticks(pids);
    while started.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(window);
        let now = cpu_ticks(pids);
        if now.saturating_sub(last) <= allowed {
            return started.elapsed();
        }
        last = now;
    }
    eprintln!("processes {pids:?} still busy after 20 s");
    started.elapsed()
}

fn start_node(binary: &Path, dir: &Path, id: u32, ports: &[(u16, u16, u16)]) -> Process {
    let (redis, http, peer) = ports[id as usize];
    let mut command = Command::new(binary);
    command
        .args(["--id", &id.to_string(), "--log-level", "warn"])
        .arg("--data-dir")
        .arg(dir.join(format!("node-{id}")))
        .args(["--redis-listen", &format!("127.0.0.1:{redis}")])
        .args(["--http-listen", &format!("127.0.0.1:{http}")]);
    if ports.len() > 1 {
        command.args(["--peer-listen", &format!("127.0.0.1:{peer}")]);
        for (other, &(_, _, other_peer)) in ports.iter().enumerate() {
            if other as u32 != id {
                command.args(["--peer", &format!("{other}=127.0.0.1:{other_peer}")]);
            }
        }
    }
    let mut child = command.stdout(Stdio::null()).spawn().expect("start node");
    wait_until_listening(redis, &mut child, Duration::from_secs(30));
    Process(child)
}

/// The redis port of the node that leads shard 0, from its /metrics.
fn leader_port(ports: &[(u16, u16, u16)]) -> u16 {
    let started = Instant::now();
    loop {
        for &(redis, http, _) in ports {
            let Ok(mut stream) = TcpStream::connect(SocketAddr::from(([127, 0, 0, 1], http)))
            else {
                continue;
            };
            use std::io::{Read, Write};
            let _ = stream.write_all(b"GET /metrics HTTP/1.1\r\n\r\n");
            let mut page = String::new();
            let _ = stream.read_to_string(&mut page);
            if page.contains("strata_raft_is_leader{shard=\"0\"} 1") {
                return redis;
            }
        }
        assert!(started.elapsed() < Duration::from_secs(30), "no leader elected");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn strata(binary: &Path, nodes: u32) -> Side {
    let dir = scratch_dir(&format!("redis-strata-{nodes}"));
    let ports: Vec<(u16, u16, u16)> =
        (0..nodes).map(|_| (free_port(), free_port(), free_port())).collect();
    let processes: Vec<Process> =
        (0..nodes).map(|id| start_node(binary, &dir, id, &ports)).collect();
    let port = leader_port(&ports);
    wait_until_writable(port);
    Side::new(port, processes, dir)
}

fn redis_server() -> Side {
    let dir = scratch_dir("redis-server");
    let port = free_port();
    let mut child = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--appendonly", "yes", "--appendfsync", "always"])
        // No snapshots, and no AOF rewrites: a rewrite's work runs in a forked child, which the
        // CPU count does not see (so redis-server does less here than it would).
        .args(["--save", "", "--auto-aof-rewrite-percentage", "0"])
        .arg("--dir")
        .arg(&dir)
        .stdout(Stdio::null())
        .spawn()
        .expect("start redis-server (apt-get install redis-server)");
    wait_until_listening(port, &mut child, Duration::from_secs(30));
    let process = Process(child);
    wait_until_writable(port);
    Side::new(port, vec![process], dir)
}

/// One round's samples per pipeline depth and test: redis-server, 1-node Strata, 3-node Strata.
struct Round {
    anchor: Samples,
    single: Samples,
    cluster: Samples,
}

/// Samples per pipeline depth and test name (upper case).
type Samples = BTreeMap<(u32, String), Sample>;

/// Starts the three sides together and runs each test on each in turn, so that the samples a
/// ratio compares are taken seconds apart, not minutes (a shared machine drifts). Each side
/// still sees the tests in the same order; the order of the sides alternates between rounds.
fn round(binary: &Path, requests: u64, index: usize) -> Round {
    let sides = [redis_server(), strata(binary, 1), strata(binary, 3)];
    let mut order = [0, 1, 2];
    if index % 2 == 1 {
        order.reverse();
    }
    let mut samples: [Samples; 3] = Default::default();
    for pipeline in PIPELINES {
        for test in TESTS.split(',') {
            for side in order {
                let sample = benchmark(&sides[side], test, requests, pipeline);
                samples[side].insert((pipeline, test.to_uppercase()), sample);
            }
        }
    }
    let [anchor, single, cluster] = samples;
    Round { anchor, single, cluster }
}

fn sample(samples: &Samples, pipeline: u32, test: &str) -> Sample {
    samples.get(&(pipeline, test.to_string())).copied().unwrap_or_default()
}

/// The median of `values` and their range.
fn median_and_range(mut values: Vec<f64>) -> (f64, f64, f64) {
    values.sort_by(f64::total_cmp);
    (values[values.len() / 2], values[0], values[values.len() - 1])
}

/// One table: `value` of each side per test, and each Strata side's `ratio` (anchor's value,
/// Strata's value) to redis-server, larger meaning better for Strata.
fn print_table(
    results: &[Round],
    headers: [&str; 3],
    precision: usize,
    value: fn(Sample) -> f64,
    ratio: fn(f64, f64) -> f64,
) {
    println!(
        "{:<8} {:>3} {:>14} {:>12} {:>19} {:>12} {:>19}",
        "test", "-P", headers[0], headers[1], "ratio [range]", headers[2], "ratio [range]"
    );
    type Column = fn(&Round) -> &Samples;
    for pipeline in PIPELINES {
        for test in TESTS.split(',').map(str::to_uppercase) {
            let column = |side: Column| {
                let values =
                    results.iter().map(|round| value(sample(side(round), pipeline, &test)));
                median_and_range(values.collect())
            };
            let ratios = |side: Column| {
                let values = results.iter().map(|round| {
                    let anchor = value(sample(&round.anchor, pipeline, &test));
                    let strata = value(sample(side(round), pipeline, &test));
                    if anchor > 0.0 && strata > 0.0 {
                        ratio(anchor, strata)
                    } else {
                        0.0
                    }
                });
                let (median, low, high) = median_and_range(values.collect());
                format!("{median:.2} [{low:.2}-{high:.2}]")
            };
            let (anchor, _, _) = column(|round| &round.anchor);
            let (single, _, _) = column(|round| &round.single);
            let (cluster, _, _) = column(|round| &round.cluster);
            println!(
                "{test:<8} {pipeline:>3} {anchor:>14.precision$} {single:>12.precision$} {:>19} \
                 {cluster:>12.precision$} {:>19}",
                ratios(|round| &round.single),
                ratios(|round| &round.cluster),
            );
        }
    }
}

fn main() {
    let mut arguments = std::env::args().skip(1);
    let requests: u64 = arguments.next().and_then(|text| text.parse().ok()).unwrap_or(200_000);
    let rounds: usize = arguments.next().and_then(|text| text.parse().ok()).unwrap_or(3).max(1);
    let binary = node_binary();
    let version = Command::new("redis-server").arg("--version").output().map(|output| {
        String::from_utf8_lossy(&output.stdout).split_whitespace().nth(2).unwrap_or("?").to_string()
    });
    let results: Vec<Round> = (0..rounds).map(|index| round(&binary, requests, index)).collect();
    println!(
        "redis-benchmark -q -n {requests} -c {CLIENTS}; anchor: redis-server {} with appendonly yes, appendfsync always",
        version.unwrap_or_default()
    );
    println!(
        "{rounds} rounds in alternating order; values and ratios are medians over the rounds, \
         [the range of the ratio] beside them\n"
    );
    println!("Requests per second (ratio: Strata's over redis-server's)");
    let headers = ["redis-server/s", "strata 1/s", "strata 3/s"];
    print_table(
        &results,
        headers,
        0,
        |sample| sample.requests_per_second,
        |anchor, strata| strata / anchor,
    );
    println!("\nServer CPU time per request, microseconds (ratio: redis-server's over Strata's)");
    let headers = ["redis-server", "strata 1", "strata 3"];
    print_table(&results, headers, 2, |sample| sample.cpu_micros, |anchor, strata| anchor / strata);
}
