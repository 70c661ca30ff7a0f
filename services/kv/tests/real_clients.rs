//! Real clients against the example server (`examples/kv_server.rs`: LocalCluster on io_uring):
//! `tests/clients/redis_py.py` (redis-py, RESP2 and RESP3) and `tests/clients/redis_cli.sh`
//! (redis-cli, including `-r` and `--pipe`). Needs `python3` with the `redis` package and
//! `redis-cli` (CI: `apt-get install -y redis-tools`, `pip install redis`); fails if they are
//! missing. `cargo test` builds examples, so the server binary sits next to this test's.
#![allow(clippy::unwrap_used, reason = "tests unwrap: a failure is the test failing")]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// Kills the server when the test ends, passing or not.
struct Server {
    child: Child,
    port: u16,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn example_binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    // target/<profile>/deps/real_clients-<hash> -> target/<profile>/examples/kv_server
    let profile_dir = exe.parent().unwrap().parent().unwrap();
    let binary = profile_dir.join("examples").join("kv_server");
    assert!(
        binary.exists(),
        "{} is missing: build it with `cargo build -p strata-kv --example kv_server`",
        binary.display()
    );
    binary
}

fn start(name: &str) -> Server {
    let data_dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("real-clients-{name}"));
    let _ = std::fs::remove_dir_all(&data_dir);
    let mut child = Command::new(example_binary())
        .arg(&data_dir)
        .arg("0")
        .arg("4")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).unwrap();
    let port = line
        .strip_prefix("ready ")
        .and_then(|port| port.trim().parse().ok())
        .unwrap_or_else(|| panic!("the server printed {line:?}, not `ready <port>`"));
    Server { child, port }
}

fn clients_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests").join("clients")
}

fn run(program: &str, script: &str, port: u16) {
    let output = Command::new(program)
        .arg(clients_dir().join(script))
        .arg(port.to_string())
        .output()
        .unwrap_or_else(|error| panic!("cannot run {program}: {error}"));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{script} failed:\n{stdout}\n{stderr}");
    println!("{stdout}");
}

#[test]
fn redis_py_resp2_and_resp3() {
    let server = start("redis-py");
    run("python3", "redis_py.py", server.port);
}

#[test]
fn redis_cli() {
    let server = start("redis-cli");
    run("bash", "redis_cli.sh", server.port);
}
