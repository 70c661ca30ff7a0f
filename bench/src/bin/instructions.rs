//! User-space instructions per request of a single-node Strata and of redis-server, counted by
//! callgrind while `redis-benchmark -P 16` drives each: SET, GET, INCR, LPUSH and LPOP.
//!
//! Rates on this shared machine move by a fifth from one run to the next; instruction counts
//! move by well under 1%, so this is the benchmark to judge a change to the request path by.
//! It counts neither the kernel's work (network, file system, the syncs) nor stalls, so it
//! complements `--bin redis` and does not replace it.
//!
//! Each test runs in a server process of its own under `valgrind --tool=callgrind`, after its
//! setup (GET reads a key SET before it, LPOP pops what LPUSH pushed); the same server with
//! the setup only is the baseline subtracted. What a server does while idle (timers, cron) in
//! the longer run is counted as the requests' (well under 1% here). Anchor: Debian's
//! redis-server with `appendonly yes` and `appendfsync always`.
//!
//! `cargo build --release --bin node && cargo run --release -p strata-bench --bin instructions
//! [-- N]` (N requests per test, default 100000; needs `valgrind`, `redis-server` and
//! `redis-tools`). `STRATA_NODE_BINARY` overrides where `node` is found.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;
use strata_bench::scratch_dir;
use strata_bench::servers::{
    free_port, node_binary, wait_until_listening, wait_until_writable, Process,
};

const CLIENTS: &str = "50";
const PIPELINE: &str = "16";

/// A test and what runs before it: (test, setup test, setup requests; 0 = the test's own N).
const TESTS: [(&str, Option<(&str, u64)>); 5] = [
    ("set", None),
    ("get", Some(("set", 1000))),
    ("incr", None),
    ("lpush", None),
    ("lpop", Some(("lpush", 0))),
];

#[derive(Clone, Copy)]
enum Server {
    Redis,
    Strata,
}

fn run_benchmark(port: u16, test: &str, requests: u64) {
    let status = Command::new("redis-benchmark")
        .args(["-p", &port.to_string(), "-c", CLIENTS, "-P", PIPELINE, "-q", "-t", test])
        .args(["-n", &requests.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("run redis-benchmark (apt-get install redis-tools)");
    assert!(status.success(), "redis-benchmark {test} failed");
}

/// Starts `server` under callgrind, its profile written into `dir`.
fn start(server: Server, dir: &Path, node: &Path) -> (Process, u16) {
    let port = free_port();
    let mut command = Command::new("valgrind");
    command
        .args(["--tool=callgrind", "--quiet"])
        .arg(format!("--callgrind-out-file={}/callgrind.%p", dir.display()));
    match server {
        Server::Redis => {
            command
                .arg("redis-server")
                .args(["--port", &port.to_string(), "--save", ""])
                .args(["--appendonly", "yes", "--appendfsync", "always"])
                // No AOF rewrite: its forked child would be profiled apart.
                .args(["--auto-aof-rewrite-percentage", "0"])
                .arg("--dir")
                .arg(dir);
        }
        Server::Strata => {
            command
                .arg(node)
                .args(["--log-level", "warn", "--data-dir"])
                .arg(dir.join("node"))
                .args(["--redis-listen", &format!("127.0.0.1:{port}")])
                .args(["--http-listen", &format!("127.0.0.1:{}", free_port())]);
        }
    }
    let mut child =
        command.stdout(Stdio::null()).spawn().expect("start valgrind (apt-get install valgrind)");
    wait_until_listening(port, &mut child, Duration::from_secs(120));
    (Process(child), port)
}

/// The instructions the profiles in `dir` counted (their `totals:` or `summary:` lines; a
/// forked child, if any, writes a profile of its own).
fn counted(dir: &Path) -> u64 {
    let entries = std::fs::read_dir(dir).expect("the profile directory");
    let profiles: Vec<PathBuf> = entries
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .filter(|path| {
            path.file_name().is_some_and(|name| name.to_string_lossy().starts_with("callgrind."))
        })
        .collect();
    assert!(!profiles.is_empty(), "no profile in {}", dir.display());
    profiles.iter().map(|profile| profile_total(profile)).sum()
}

fn profile_total(profile: &Path) -> u64 {
    let text = std::fs::read_to_string(profile).expect("read the profile");
    let line = text
        .lines()
        .find(|line| line.starts_with("totals:") || line.starts_with("summary:"))
        .expect("a totals line");
    line.split_whitespace().nth(1).and_then(|count| count.parse().ok()).expect("a count")
}

/// Instructions `server` spent on its setup and, if `with_test`, then `requests` of `test`.
fn instructions(server: Server, node: &Path, test: usize, requests: u64, with_test: bool) -> u64 {
    let (name, setup) = TESTS[test];
    let dir = scratch_dir(&format!("instructions-{name}-{with_test}"));
    let (process, port) = start(server, &dir, node);
    if let Server::Strata = server {
        wait_until_writable(port);
    }
    if let Some((setup_test, setup_requests)) = setup {
        let count = if setup_requests == 0 { requests } else { setup_requests };
        run_benchmark(port, setup_test, count);
    }
    if with_test {
        run_benchmark(port, name, requests);
    }
    process.stop();
    let total = counted(&dir);
    let _ = std::fs::remove_dir_all(&dir);
    total
}

fn per_request(server: Server, node: &Path, test: usize, requests: u64) -> f64 {
    let with = instructions(server, node, test, requests, true);
    let without = instructions(server, node, test, requests, false);
    with.saturating_sub(without) as f64 / requests as f64
}

fn main() {
    let requests: u64 =
        std::env::args().nth(1).and_then(|text| text.parse().ok()).unwrap_or(100_000);
    let node = node_binary();
    println!(
        "User-space instructions per request (callgrind; redis-benchmark -n {requests} -c {CLIENTS} -P {PIPELINE});"
    );
    println!("anchor: redis-server with appendonly yes, appendfsync always. Kernel work is not counted.\n");
    println!("{:<8} {:>14} {:>12} {:>8}", "test", "redis-server", "strata 1", "ratio");
    for (test, (name, _)) in TESTS.iter().enumerate() {
        let anchor = per_request(Server::Redis, &node, test, requests);
        let strata = per_request(Server::Strata, &node, test, requests);
        println!(
            "{:<8} {anchor:>14.0} {strata:>12.0} {:>8.2}",
            name.to_uppercase(),
            anchor / strata
        );
    }
    println!("\nratio: redis-server's instructions over Strata's (above 1: Strata runs fewer)");
}
