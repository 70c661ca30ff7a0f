//! The processes under test: `node` processes (or one `redis-server`) on loopback ports, each with
//! its own data directory, and the faults the harness injects into them.
//!
//! Every node is started with the same arguments every time, so a restart after `kill -9` resumes
//! from its data directory. Peer traffic goes through a [`LinkProxy`] per directed link (node `i`
//! is told that node `j` lives at the proxy `i → j`), which is how partitions cut real TCP traffic
//! without root. A node that exits without being killed by the harness is a crash: it is counted
//! and reported, and restarted when the cluster heals.

use std::ffi::OsString;
use std::fs::{File, OpenOptions};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::proxy::LinkProxy;
use super::resp;

/// The most nodes of a cluster.
pub const NODES_COUNT_MAX: usize = 9;
/// How long one readiness probe waits.
const PROBE_TIMEOUT: Duration = Duration::from_millis(500);

/// How `redis-server` persists its data (only its `kill -9` behaviour matters here).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RedisPersistence {
    /// RDB snapshots at most every second (`--save "1 1" --appendonly no`): a kill loses the
    /// writes acknowledged since the last snapshot.
    Snapshot,
    /// Append-only file, `appendfsync no`: every reply follows its `write(2)`, so a process kill
    /// loses nothing (the page cache survives it; only a machine crash would lose writes).
    Aof,
    /// Nothing on disk: a kill loses everything.
    None,
}

impl RedisPersistence {
    /// The name used on the command line.
    pub fn name(self) -> &'static str {
        match self {
            RedisPersistence::Snapshot => "snapshot",
            RedisPersistence::Aof => "aof",
            RedisPersistence::None => "none",
        }
    }
}

/// What the harness runs.
#[derive(Clone, Debug)]
pub enum Target {
    /// A cluster of Strata `node` processes.
    Strata {
        /// The `node` binary.
        binary: PathBuf,
        /// `--shards` for every node, if set.
        shards: Option<u32>,
        /// More flags for every node (such as `--planted-bug stale-reads`).
        node_arguments: Vec<String>,
    },
    /// One `redis-server` (the harness's own sanity check: it must find what Redis loses).
    RedisServer {
        /// The `redis-server` binary.
        binary: PathBuf,
        /// Its persistence settings.
        persistence: RedisPersistence,
    },
}

impl Target {
    /// Whether the target speaks Strata's `SET key value IFEQ old` (else the harness emulates it
    /// with a Lua script).
    pub fn has_ifeq(&self) -> bool {
        matches!(self, Target::Strata { .. })
    }
}

/// Where a node runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeState {
    /// Running (as far as the harness knows).
    Running,
    /// Stopped with SIGSTOP.
    Paused,
    /// Killed by the harness, or exited by itself.
    Down,
}

struct NodeProcess {
    program: PathBuf,
    arguments: Vec<OsString>,
    log_path: PathBuf,
    child: Option<Child>,
    state: NodeState,
}

/// The public face of one node.
#[derive(Clone, Debug)]
pub struct NodeAddresses {
    /// Node id on the command line (1-based).
    pub id: usize,
    /// The RESP port.
    pub redis: SocketAddr,
    /// The HTTP port (`/health`), for Strata nodes.
    pub http: Option<SocketAddr>,
    /// The real peer listener, for Strata nodes.
    pub peer: Option<SocketAddr>,
}

/// A running cluster. Dropping it kills every process (after resuming paused ones).
pub struct Cluster {
    target: Target,
    addresses: Vec<NodeAddresses>,
    processes: Mutex<Vec<NodeProcess>>,
    proxies: Vec<LinkProxy>,
    crashes: Mutex<Vec<String>>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Free loopback ports, all distinct (the listeners stay open until every port is chosen).
fn free_ports(count: usize) -> std::io::Result<Vec<u16>> {
    let mut listeners = Vec::with_capacity(count);
    for _ in 0..count {
        listeners.push(TcpListener::bind("127.0.0.1:0")?);
    }
    listeners.iter().map(|listener| Ok(listener.local_addr()?.port())).collect()
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

impl Cluster {
    /// Starts `nodes_count` nodes (one for `redis-server`) with data under `data_directory` and
    /// logs under `log_directory` (`n1.log`, ...). Does not wait for readiness.
    pub fn start(
        target: &Target,
        nodes_count: usize,
        data_directory: &Path,
        log_directory: &Path,
    ) -> std::io::Result<Cluster> {
        assert!(nodes_count >= 1, "a cluster has at least one node");
        assert!(nodes_count <= NODES_COUNT_MAX, "at most {NODES_COUNT_MAX} nodes");
        std::fs::create_dir_all(log_directory)?;
        let mut addresses = Vec::with_capacity(nodes_count);
        let mut processes = Vec::with_capacity(nodes_count);
        let mut proxies = Vec::new();
        match target {
            Target::RedisServer { binary, persistence } => {
                assert_eq!(nodes_count, 1, "redis-server runs as a single node");
                let port = free_ports(1)?[0];
                let directory = data_directory.join("n1");
                std::fs::create_dir_all(&directory)?;
                let mut arguments: Vec<OsString> = vec![
                    "--port".into(),
                    port.to_string().into(),
                    "--bind".into(),
                    "127.0.0.1".into(),
                    "--dir".into(),
                    directory.into_os_string(),
                    "--daemonize".into(),
                    "no".into(),
                ];
                let persistence: &[&str] = match persistence {
                    RedisPersistence::Snapshot => &["--appendonly", "no", "--save", "1 1"],
                    RedisPersistence::Aof => {
                        &["--appendonly", "yes", "--appendfsync", "no", "--save", ""]
                    }
                    RedisPersistence::None => &["--appendonly", "no", "--save", ""],
                };
                arguments.extend(persistence.iter().map(OsString::from));
                addresses.push(NodeAddresses {
                    id: 1,
                    redis: loopback(port),
                    http: None,
                    peer: None,
                });
                processes.push(NodeProcess {
                    program: binary.clone(),
                    arguments,
                    log_path: log_directory.join("n1.log"),
                    child: None,
                    state: NodeState::Down,
                });
            }
            Target::Strata { binary, shards, node_arguments } => {
                let ports = free_ports(nodes_count * 3)?;
                for index in 0..nodes_count {
                    addresses.push(NodeAddresses {
                        id: index + 1,
                        redis: loopback(ports[index * 3]),
                        http: Some(loopback(ports[index * 3 + 1])),
                        peer: Some(loopback(ports[index * 3 + 2])),
                    });
                }
                for source in 0..nodes_count {
                    for (target_index, target_node) in addresses.iter().enumerate() {
                        if target_index != source {
                            let peer = target_node.peer.expect("strata nodes have a peer port");
                            proxies.push(LinkProxy::start(source, target_index, peer)?);
                        }
                    }
                }
                for (index, node) in addresses.iter().enumerate() {
                    let directory = data_directory.join(format!("n{}", node.id));
                    std::fs::create_dir_all(&directory)?;
                    let mut arguments: Vec<OsString> = vec![
                        "--id".into(),
                        node.id.to_string().into(),
                        "--data-dir".into(),
                        directory.into_os_string(),
                        "--redis-listen".into(),
                        node.redis.to_string().into(),
                        "--http-listen".into(),
                        node.http.expect("strata nodes have an http port").to_string().into(),
                        "--peer-listen".into(),
                        node.peer.expect("strata nodes have a peer port").to_string().into(),
                    ];
                    for proxy in proxies.iter().filter(|proxy| proxy.source == index) {
                        arguments.push("--peer".into());
                        let peer_id = addresses[proxy.target].id;
                        arguments.push(format!("{peer_id}={}", proxy.listen_address()).into());
                    }
                    if let Some(shards) = shards {
                        arguments.push("--shards".into());
                        arguments.push(shards.to_string().into());
                    }
                    arguments.extend(node_arguments.iter().map(OsString::from));
                    processes.push(NodeProcess {
                        program: binary.clone(),
                        arguments,
                        log_path: log_directory.join(format!("n{}.log", node.id)),
                        child: None,
                        state: NodeState::Down,
                    });
                }
            }
        }
        let cluster = Cluster {
            target: target.clone(),
            addresses,
            processes: Mutex::new(processes),
            proxies,
            crashes: Mutex::new(Vec::new()),
        };
        for index in 0..nodes_count {
            cluster.spawn(index)?;
        }
        Ok(cluster)
    }

    /// The nodes' addresses, by index.
    pub fn addresses(&self) -> &[NodeAddresses] {
        &self.addresses
    }

    /// The number of nodes.
    pub fn len(&self) -> usize {
        self.addresses.len()
    }

    /// Whether the cluster has no node (never: kept for clippy's `len` rule).
    pub fn is_empty(&self) -> bool {
        self.addresses.is_empty()
    }

    /// What runs.
    pub fn target(&self) -> &Target {
        &self.target
    }

    /// The command line of node `index`, for logs and reports.
    pub fn command_line(&self, index: usize) -> String {
        let processes = lock(&self.processes);
        let process = &processes[index];
        let mut line = process.program.display().to_string();
        for argument in &process.arguments {
            line.push(' ');
            let argument = argument.to_string_lossy();
            if argument.is_empty() || argument.contains(' ') {
                line.push_str(&format!("'{argument}'"));
            } else {
                line.push_str(&argument);
            }
        }
        line
    }

    fn spawn(&self, index: usize) -> std::io::Result<()> {
        let mut processes = lock(&self.processes);
        let process = &mut processes[index];
        assert!(process.child.is_none(), "node {index} spawned twice");
        let log = OpenOptions::new().create(true).append(true).open(&process.log_path)?;
        let log_error: File = log.try_clone()?;
        let child = Command::new(&process.program)
            .args(&process.arguments)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_error)
            .spawn()
            .map_err(|error| {
                std::io::Error::new(
                    error.kind(),
                    format!("cannot start {}: {error}", process.program.display()),
                )
            })?;
        process.child = Some(child);
        process.state = NodeState::Running;
        Ok(())
    }

    /// Whether node `index` answers `PING` (and, for Strata, `GET /health` with 200).
    pub fn is_ready(&self, index: usize) -> bool {
        let node = &self.addresses[index];
        resp::ping(node.redis, PROBE_TIMEOUT)
            && node.http.is_none_or(|http| resp::http_health(http, PROBE_TIMEOUT))
    }

    /// Waits until every node is ready, or `timeout` passes, or a node exits (an error naming
    /// the nodes that are not ready, with the tail of their logs). Call it when every node was
    /// started: a node down during the wait is a node that exited by itself.
    pub fn wait_ready(&self, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        loop {
            self.reap();
            let waiting: Vec<usize> = (0..self.len())
                .filter(|&index| self.state(index) == NodeState::Running)
                .filter(|&index| !self.is_ready(index))
                .collect();
            let down: Vec<usize> =
                (0..self.len()).filter(|&index| self.state(index) == NodeState::Down).collect();
            if waiting.is_empty() && down.is_empty() {
                return Ok(());
            }
            // Every node was started before this wait: one that is down now exited by itself.
            if !down.is_empty() || Instant::now() >= deadline {
                let mut message = String::new();
                for index in waiting.iter().chain(&down) {
                    let state = self.state(*index);
                    message.push_str(&format!(
                        "node {} is not ready ({state:?}); the end of its log:\n{}\n",
                        self.addresses[*index].id,
                        self.log_tail(*index, 20)
                    ));
                }
                return Err(message);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The last `lines` lines of node `index`'s log.
    pub fn log_tail(&self, index: usize, lines: usize) -> String {
        let path = lock(&self.processes)[index].log_path.clone();
        let text = std::fs::read(&path).unwrap_or_default();
        let text = String::from_utf8_lossy(&text);
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// The node's state as the harness knows it.
    pub fn state(&self, index: usize) -> NodeState {
        lock(&self.processes)[index].state
    }

    /// Notices nodes that exited by themselves: marks them down and records a crash.
    pub fn reap(&self) {
        let mut processes = lock(&self.processes);
        for (index, process) in processes.iter_mut().enumerate() {
            let Some(child) = &mut process.child else { continue };
            if let Ok(Some(status)) = child.try_wait() {
                process.child = None;
                process.state = NodeState::Down;
                lock(&self.crashes).push(format!(
                    "node {} exited by itself ({status}); see {}",
                    self.addresses[index].id,
                    process.log_path.display()
                ));
            }
        }
    }

    /// Crashes noticed so far (nodes that exited without being killed).
    pub fn crashes(&self) -> Vec<String> {
        lock(&self.crashes).clone()
    }

    /// `kill -9` node `index` and reaps it. A paused node is killed too.
    pub fn kill(&self, index: usize) {
        let mut processes = lock(&self.processes);
        let process = &mut processes[index];
        if let Some(mut child) = process.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        process.state = NodeState::Down;
    }

    /// Starts node `index` again with the same arguments, if it is down.
    pub fn restart(&self, index: usize) -> std::io::Result<()> {
        if self.state(index) != NodeState::Down {
            return Ok(());
        }
        self.spawn(index)
    }

    fn signal(&self, index: usize, signal: &str, state: NodeState) -> std::io::Result<()> {
        let mut processes = lock(&self.processes);
        let process = &mut processes[index];
        let Some(child) = &process.child else { return Ok(()) };
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(child.id().to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()?;
        if status.success() {
            process.state = state;
            Ok(())
        } else {
            Err(std::io::Error::other(format!("kill -{signal} {} failed", child.id())))
        }
    }

    /// SIGSTOP node `index`.
    pub fn pause(&self, index: usize) -> std::io::Result<()> {
        if self.state(index) != NodeState::Running {
            return Ok(());
        }
        self.signal(index, "STOP", NodeState::Paused)
    }

    /// SIGCONT node `index`, if paused.
    pub fn resume(&self, index: usize) -> std::io::Result<()> {
        if self.state(index) != NodeState::Paused {
            return Ok(());
        }
        self.signal(index, "CONT", NodeState::Running)
    }

    /// Cuts every directed link `source → target` for which `connected(source, target)` is false
    /// and heals every other one.
    pub fn partition(&self, connected: impl Fn(usize, usize) -> bool) {
        for proxy in &self.proxies {
            if connected(proxy.source, proxy.target) {
                proxy.heal();
            } else {
                proxy.cut();
            }
        }
    }

    /// The directed links cut now, as `(source, target)` indexes.
    pub fn cut_links(&self) -> Vec<(usize, usize)> {
        self.proxies
            .iter()
            .filter(|proxy| proxy.is_cut())
            .map(|proxy| (proxy.source, proxy.target))
            .collect()
    }

    /// Ends every fault: heals all links, resumes paused nodes, restarts down ones.
    pub fn heal_all(&self) -> std::io::Result<()> {
        self.partition(|_, _| true);
        self.reap();
        for index in 0..self.len() {
            self.resume(index)?;
            self.restart(index)?;
        }
        Ok(())
    }

    /// Kills every process (resuming paused ones first, so none lingers stopped).
    pub fn shutdown(&self) {
        for index in 0..self.len() {
            let _ = self.resume(index);
            self.kill(index);
        }
        for proxy in &self.proxies {
            proxy.stop();
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.shutdown();
    }
}
