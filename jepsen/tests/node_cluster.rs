//! A short `jepsen run` against a real 3-node Strata cluster: 20 s of the register, set and
//! counter workloads under kill -9, SIGSTOP and partitions. Must find no anomaly.
//!
//! It needs the `node` binary: `STRATA_NODE_BINARY`, else `node` in this test's target directory
//! (`cargo build --bin node`), else `target/{debug,release}/node` of the workspace.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

fn node_binary() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("STRATA_NODE_BINARY") {
        return Some(PathBuf::from(path));
    }
    let mut candidates = Vec::new();
    // This test runs from target/<profile>/deps/.
    if let Some(profile) = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().and_then(Path::parent).map(Path::to_path_buf))
    {
        candidates.push(profile.join("node"));
        if let Some(target) = profile.parent() {
            candidates.push(target.join("debug").join("node"));
            candidates.push(target.join("release").join("node"));
        }
    }
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join("target");
    candidates.push(workspace.join("debug").join("node"));
    candidates.push(workspace.join("release").join("node"));
    candidates.into_iter().find(|path| path.is_file())
}

#[test]
fn a_short_run_under_every_fault_finds_no_anomaly() {
    let binary = node_binary()
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
