//! Helpers shared by the harness's scenario tests: scratch directories and a `redis-server`.

#![allow(dead_code)]

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use strata_jepsen::harness::resp;

/// This package's directory, as the test runner gives it when the test runs (cargo and nextest
/// set `CARGO_MANIFEST_DIR` then too). The path compiled in is only a fallback: builds shared
/// between clones at different paths reuse a test binary compiled in another clone.
pub fn manifest_dir() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from)
}

/// The shared linearizability histories (Porcupine's test data).
pub fn testdata() -> PathBuf {
    manifest_dir().join("../../shared/testdata/linearizability")
}

/// A fresh scratch directory under the system's temporary directory.
pub fn scratch(name: &str) -> PathBuf {
    let directory =
        std::env::temp_dir().join(format!("strata-jepsen-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&directory);
    std::fs::create_dir_all(&directory).expect("create a scratch directory");
    directory
}

/// Whether `redis-server` is on the PATH; tests that need it fail with this message if not.
pub fn require_redis_server() {
    let found = Command::new("redis-server")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    assert!(found, "these tests need redis-server on the PATH (apt-get install redis-server)");
}

/// A `redis-server` without persistence on a free loopback port, killed on drop.
pub struct RedisServer {
    child: Child,
    /// Its address.
    pub address: SocketAddr,
}

impl RedisServer {
    /// Starts one in `directory` and waits until it answers PING.
    pub fn start(directory: &Path) -> RedisServer {
        require_redis_server();
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
        let port = listener.local_addr().expect("a bound address").port();
        drop(listener);
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", ""])
            .args(["--appendonly", "no", "--dir"])
            .arg(directory)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server");
        let address = SocketAddr::from(([127, 0, 0, 1], port));
        let deadline = Instant::now() + Duration::from_secs(10);
        while !resp::ping(address, Duration::from_millis(200)) {
            assert!(Instant::now() < deadline, "redis-server did not answer PING");
            std::thread::sleep(Duration::from_millis(20));
        }
        RedisServer { child, address }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `node` binary: `STRATA_NODE_BINARY`, else `node` in this test's target directory (built
/// with the workspace's tests: strata-node has integration tests), else the workspace's
/// `target/{debug,release}/node`.
pub fn node_binary() -> Option<PathBuf> {
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
    let workspace = manifest_dir().join("..").join("target");
    candidates.push(workspace.join("debug").join("node"));
    candidates.push(workspace.join("release").join("node"));
    candidates.into_iter().find(|path| path.is_file())
}
