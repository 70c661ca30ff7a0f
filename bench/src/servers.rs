//! Starting and stopping the server processes the Redis-protocol benchmarks drive.

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// A loopback port nothing listens on, never the same twice in one run, and below the kernel's
/// ephemeral range (Linux: 32768 and up). A port the kernel picked could be given to an
/// outgoing connection before the server that was to listen on it starts: a cluster's first
/// node connects to its peers while the others are still starting.
pub fn free_port() -> u16 {
    const FIRST: u32 = 20_000;
    const PORTS: u32 = 12_000;
    static NEXT: AtomicU32 = AtomicU32::new(0);
    // Runs at once start apart.
    let start = std::process::id() % 600 * 20;
    loop {
        let offset = NEXT.fetch_add(1, Ordering::Relaxed);
        assert!(offset < PORTS, "no free port left");
        let port = u16::try_from(FIRST + (start + offset) % PORTS).expect("below 32768");
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// Waits until something listens on `port` (`timeout` at most), or panics if `child` exits.
pub fn wait_until_listening(port: u16, child: &mut Child, timeout: Duration) {
    let started = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("the server exited early: {status}");
        }
        assert!(started.elapsed() < timeout, "nothing listens on port {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits until a write goes through (a cluster elects its leaders first).
pub fn wait_until_writable(port: u16) {
    let started = Instant::now();
    loop {
        let output = Command::new("redis-cli")
            .args(["-p", &port.to_string(), "SET", "strata-bench-ready", "1"])
            .output()
            .expect("run redis-cli (apt-get install redis-tools)");
        if String::from_utf8_lossy(&output.stdout).trim() == "OK" {
            return;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "port {port} never took a write");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A server process, stopped when dropped.
pub struct Process(pub Child);

impl Process {
    /// Stops the process gracefully (SIGTERM) and waits for it to exit on its own (a minute at
    /// most; then it is killed when dropped).
    pub fn stop(mut self) {
        let _ = Command::new("kill").args(["-TERM", &self.0.id().to_string()]).status();
        let started = Instant::now();
        while matches!(self.0.try_wait(), Ok(None)) && started.elapsed() < Duration::from_secs(60) {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if let Ok(Some(_)) = self.0.try_wait() {
            return; // Stopped already.
        }
        // SIGTERM first: the node shuts down gracefully; then make sure.
        let _ = Command::new("kill").args(["-TERM", &self.0.id().to_string()]).status();
        std::thread::sleep(Duration::from_millis(300));
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The release `node` binary: `$STRATA_NODE_BINARY`, or the one beside this benchmark.
pub fn node_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("STRATA_NODE_BINARY") {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().expect("this binary's path");
    let sibling = exe.with_file_name("node");
    assert!(
        sibling.is_file(),
        "no node binary at {}: run `cargo build --release --bin node` first",
        sibling.display()
    );
    sibling
}
