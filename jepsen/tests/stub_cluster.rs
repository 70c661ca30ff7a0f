//! `jepsen run --target strata` against stand-in nodes (`jepsen stub-node`), which exercises the
//! multi-node path (link proxies, kill and restart, SIGSTOP, partitions, final reads) without the
//! real `node` binary. Stubs are not a cluster (each keeps its own data, in memory), so three of
//! them under faults must be found out, and one alone without faults must be valid.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

/// A script that runs `jepsen stub-node` with the node's flags (`exec` keeps the pid, so kill
/// and SIGSTOP reach the stub).
fn stub_script(directory: &Path) -> PathBuf {
    let path = directory.join("node");
    let script = format!("#!/bin/sh\nexec '{}' stub-node \"$@\"\n", env!("CARGO_BIN_EXE_jepsen"));
    std::fs::write(&path, script).expect("write the stub script");
    let status =
        Command::new("chmod").arg("+x").arg(&path).status().expect("make the script executable");
    assert!(status.success());
    path
}

fn run(name: &str, arguments: &[&str]) -> (Option<i32>, String, PathBuf) {
    let directory = common::scratch(name);
    let node = stub_script(&directory);
    let output = Command::new(env!("CARGO_BIN_EXE_jepsen"))
        .args(["run", "--target", "strata", "--seed", "5", "--clients", "4"])
        .args(arguments)
        .arg("--node-binary")
        .arg(&node)
        .arg("--out")
        .arg(directory.join("out"))
        .output()
        .expect("run the jepsen binary");
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.code(), text, directory)
}

#[test]
fn three_stubs_under_every_fault_are_found_out() {
    let (code, text, directory) =
        run("stub-three", &["--nodes", "3", "--time", "8", "--faults", "kill,pause,partition"]);
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("verdict: ANOMALY"), "{text}");
    assert!(text.contains("faults injected: "), "{text}");
    let nemesis = std::fs::read_to_string(directory.join("out").join("nemesis.log")).unwrap();
    assert!(!nemesis.is_empty(), "the nemesis acted");
    let commands =
        std::fs::read_to_string(directory.join("out").join("nodes").join("commands.txt")).unwrap();
    assert_eq!(commands.lines().count(), 3);
    assert_eq!(commands.matches("--peer ").count(), 6, "one proxy per directed link: {commands}");
    let _ = std::fs::remove_dir_all(&directory);
}

#[test]
fn one_stub_without_faults_is_valid() {
    let (code, text, directory) =
        run("stub-one", &["--nodes", "1", "--time", "4", "--faults", "none"]);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("verdict: VALID"), "{text}");
    assert!(text.contains("faults injected: none"), "{text}");
    let registers = std::fs::read_dir(directory.join("out").join("register")).unwrap().count();
    assert!(registers > 0, "one history file per register key");
    let _ = std::fs::remove_dir_all(&directory);
}
