//! A short `jepsen run` against a real 3-node Strata cluster: 20 s of the register, set and
//! counter workloads under kill -9, SIGSTOP and partitions. Must find no anomaly.
//!
//! It needs the `node` binary: `STRATA_NODE_BINARY`, else `node` in this test's target directory
//! (`cargo build --bin node`), else `target/{debug,release}/node` of the workspace.

mod common;

use std::process::Command;

#[test]
fn a_short_run_under_every_fault_finds_no_anomaly() {
    let binary = common::node_binary()
        .expect("no node binary: set STRATA_NODE_BINARY or build it (cargo build --bin node)");
    let out = common::scratch("node-cluster");
    let output = Command::new(env!("CARGO_BIN_EXE_jepsen"))
        .args(["run", "--target", "strata", "--nodes", "3", "--time", "20"])
        .args(["--faults", "kill,pause,partition", "--workload", "all", "--seed", "1"])
        .arg("--node-binary")
        .arg(&binary)
        .arg("--out")
        .arg(&out)
        .output()
        .expect("run the jepsen binary");
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(output.status.code(), Some(0), "output in {}:\n{text}", out.display());
    assert!(text.contains("verdict: VALID"), "{text}");
    let _ = std::fs::remove_dir_all(&out);
}
