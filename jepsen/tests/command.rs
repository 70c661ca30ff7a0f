//! The `jepsen check` command: verdict lines, exit status, and the HTML timeline it writes.

use std::path::PathBuf;
use std::process::Command;

use strata_jepsen::format::jsonl;
use strata_jepsen::model::{RegisterInput, RegisterOutput};
use strata_jepsen::{History, Outcome};

fn scratch(name: &str) -> PathBuf {
    let directory =
        std::env::temp_dir().join(format!("strata-jepsen-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&directory);
    std::fs::create_dir_all(&directory).expect("create a scratch directory");
    directory
}

fn register_file(directory: &std::path::Path, name: &str, read: Option<u64>) -> PathBuf {
    let mut history: History<RegisterInput, RegisterOutput> = History::new();
    let write = history.invoke(0, RegisterInput::Write(3));
    history.complete(write, Outcome::Ok(RegisterOutput::Done));
    let get = history.invoke(1, RegisterInput::Read);
    history.complete(get, Outcome::Ok(RegisterOutput::Value(read)));
    let path = directory.join(name);
    std::fs::write(&path, jsonl::write_history(&history, "register")).expect("write a history");
    path
}

#[test]
fn check_exits_non_zero_and_writes_a_timeline_for_a_bad_history() {
    let directory = scratch("command");
    let good = register_file(&directory, "good.jsonl", Some(3));
    let bad = register_file(&directory, "bad.jsonl", Some(4));
    let out = directory.join("out");
    let output = Command::new(env!("CARGO_BIN_EXE_jepsen"))
        .arg("check")
        .arg(&good)
        .arg(&bad)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("good.jsonl: linearizable"), "{stdout}");
    assert!(stdout.contains("bad.jsonl: NOT linearizable"), "{stdout}");
    assert!(stdout.contains("needs value 4, register holds 3"), "{stdout}");
    let html = std::fs::read_to_string(out.join("bad.jsonl.html")).unwrap();
    assert!(html.contains("<svg"));

    let output =
        Command::new(env!("CARGO_BIN_EXE_jepsen")).arg("check").arg(&good).output().unwrap();
    assert_eq!(output.status.code(), Some(0));
    let _ = std::fs::remove_dir_all(&directory);
}

#[test]
fn a_cluster_that_never_becomes_ready_aborts_with_status_2() {
    let directory = scratch("never-ready");
    let started = std::time::Instant::now();
    let output = Command::new(env!("CARGO_BIN_EXE_jepsen"))
        .args(["run", "--node-binary", "/bin/false", "--time", "5", "--ready-timeout", "30"])
        .arg("--out")
        .arg(&directory)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(2), "{stdout}");
    assert!(stdout.contains("never became ready"), "{stdout}");
    assert!(stdout.contains("exited by itself") || stdout.contains("Down"), "{stdout}");
    assert!(started.elapsed() < std::time::Duration::from_secs(20), "a dead node fails fast");
    let _ = std::fs::remove_dir_all(&directory);
}

#[test]
fn an_unknown_fault_is_refused() {
    let output = Command::new(env!("CARGO_BIN_EXE_jepsen"))
        .args(["run", "--node-binary", "/bin/false", "--faults", "kill,meteor"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("unknown fault \"meteor\""));
}
