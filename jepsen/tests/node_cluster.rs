//! Short `jepsen run`s against a real 3-node Strata cluster. A correct build must show no
//! anomaly in 20 s of the register, set and counter workloads under kill -9, SIGSTOP and
//! partitions; a build with a planted bug (reads that skip the read barrier) must be caught, or
//! the first verdict would prove nothing.
//!
//! They need the `node` binary: `STRATA_NODE_BINARY`, else `node` in this test's target directory
//! (`cargo build --bin node`), else `target/{debug,release}/node` of the workspace.

mod common;

use std::process::Command;

/// Runs `jepsen run` on 3 nodes with seed 1; returns its exit code and output. The output
/// directory is removed if the run ended with `expected_code`, kept as evidence otherwise.
fn jepsen_run(
    name: &str,
    seconds: u64,
    faults: &str,
    extra: &[&str],
    expected_code: i32,
) -> (Option<i32>, String) {
    let binary = common::node_binary()
        .expect("no node binary: set STRATA_NODE_BINARY or build it (cargo build --bin node)");
    let out = common::scratch(name);
    let output = Command::new(env!("CARGO_BIN_EXE_jepsen"))
        .args(["run", "--target", "strata", "--nodes", "3", "--time", &seconds.to_string()])
        .args(["--faults", faults, "--seed", "1"])
        .args(extra)
        .arg("--node-binary")
        .arg(&binary)
        .arg("--out")
        .arg(&out)
        .output()
        .expect("run the jepsen binary");
    let text = format!(
        "output in {}:\n{}\n{}",
        out.display(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    if output.status.code() == Some(expected_code) {
        let _ = std::fs::remove_dir_all(&out);
    }
    (output.status.code(), text)
}

#[test]
fn a_short_run_under_every_fault_finds_no_anomaly() {
    let (code, text) =
        jepsen_run("node-cluster", 20, "kill,pause,partition", &["--workload", "all"], 0);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("verdict: VALID"), "{text}");
}

#[test]
fn a_build_serving_stale_reads_is_caught() {
    // Partitions cut a node off from the majority; with the bug its clients keep reading the
    // values it had while the majority moves on. A short client timeout lets a client whose
    // write hangs on the cut-off node go on to read there (seeds 1-3 all found the bug in 12 s).
    let planted = [
        "--node-arg=--planted-bug",
        "--node-arg=stale-reads",
        "--workload=register",
        "--clients=6",
        "--timeout-ms=500",
        "--rate=200",
    ];
    let (code, text) = jepsen_run("node-cluster-planted", 12, "partition", &planted, 1);
    assert_eq!(code, Some(1), "the planted bug went unnoticed:\n{text}");
    assert!(text.contains("verdict: ANOMALY"), "{text}");
}
