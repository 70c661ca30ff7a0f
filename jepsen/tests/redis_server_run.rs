//! `jepsen run --target redis-server`: proof that the harness bites, and that it does not cry
//! wolf. With RDB snapshots every second, `kill -9` loses the writes acknowledged since the last
//! snapshot, and the run must say ANOMALY. With an append-only file (`appendfsync no`) a process
//! kill loses nothing (every reply follows its `write(2)`, and the page cache outlives the
//! process), and the run must say VALID.

mod common;

use std::process::Command;

fn jepsen_run(name: &str, seed: u64, persistence: &str) -> (Option<i32>, String) {
    common::require_redis_server();
    let out = common::scratch(&format!("{name}-{seed}"));
    let output = Command::new(env!("CARGO_BIN_EXE_jepsen"))
        .args(["run", "--target", "redis-server", "--faults", "kill", "--time", "8"])
        .args(["--fault-quiet-ms", "1500", "--fault-hold-ms", "300", "--clients", "4"])
        .args(["--rate", "100", "--redis-persistence", persistence])
        .args(["--seed", &seed.to_string()])
        .arg("--out")
        .arg(&out)
        .output()
        .expect("run the jepsen binary");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    let text = format!("{stdout}\n{stderr}");
    if output.status.code() != Some(2) {
        let _ = std::fs::remove_dir_all(&out);
    }
    (output.status.code(), text)
}

#[test]
fn kills_of_a_snapshotting_redis_lose_acknowledged_writes() {
    let mut outputs = String::new();
    for seed in 1..=3 {
        let (code, text) = jepsen_run("snapshot", seed, "snapshot");
        if code == Some(1) {
            assert!(text.contains("verdict: ANOMALY"), "{text}");
            assert!(text.contains("faults injected: kill"), "{text}");
            assert!(text.contains("acknowledged"), "{text}");
            return;
        }
        assert_eq!(code, Some(0), "a run is valid (lucky) or finds an anomaly:\n{text}");
        outputs.push_str(&text);
    }
    panic!("three runs with kills never lost an acknowledged write:\n{outputs}");
}

#[test]
fn kills_of_an_append_only_redis_lose_nothing() {
    let (code, text) = jepsen_run("aof", 11, "aof");
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("verdict: VALID"), "{text}");
    assert!(text.contains("faults injected: kill"), "{text}");
}
