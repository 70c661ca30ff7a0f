//! The real-cluster fault harness (`jepsen run`): processes, faults and clients on loopback.
//!
//! - [`cluster`]: starts `node` processes (or one `redis-server`) with their own data
//!   directories, and kills, restarts, pauses, resumes and partitions them.
//! - [`proxy`]: a TCP proxy per directed peer link, so the harness partitions a cluster without
//!   root (no iptables): node `i` reaches node `j` only through the proxy `i → j`.
//! - [`resp`]: a small blocking RESP client with deadlines, for the workload clients.
//! - [`workload`]: the register, set and counter workloads, their clients and their checks.
//! - [`nemesis`]: the seeded fault schedule.
//! - [`run`](mod@run): one run from start to verdict.
//! - [`stub`]: a stand-in for the `node` binary (`jepsen stub-node`), to test the harness itself.
//!
//! Unlike the rest of the crate this module touches the outside world: threads, sockets,
//! processes and real clocks. Its runs are not reproducible; the seed fixes only the choices.
//!
//! # A run
//!
//! 1. Start the nodes on free loopback ports, each with its own data directory in a fresh
//!    temporary directory (removed afterwards unless `--keep`), wait until each answers `PING`
//!    and `GET /health`, then until a write through each succeeds.
//! 2. For `--time` seconds: `--clients` threads, one connection each (client `i` starts on node
//!    `i % nodes`, moves on when it cannot connect, reconnects after an error), run the workload
//!    and record every operation; the nemesis thread injects faults.
//! 3. Heal everything (links, paused and killed nodes), wait for readiness again, read every key
//!    back (retrying until `--ready-timeout`).
//! 4. Check: registers per key for linearizability, sets and counters by their bounds
//!    ([`workload::check_sets`], [`workload::check_counters`]); a node that exited by itself is
//!    an anomaly too. Exit 0 valid, 1 anomaly, 2 unknown (never ready, a key never read back,
//!    the checker out of budget) or aborted.
//!
//! # Output directory (`--out`, default `target/jepsen/seed-SEED`)
//!
//! | path | what |
//! |---|---|
//! | `summary.txt` | what the run printed: operations by kind and outcome, faults, verdict |
//! | `nemesis.log` | the fault timeline, seconds since the clients started |
//! | `register/KEY.jsonl`, `set/KEY.jsonl`, `counter/KEY.jsonl` | the history of each key in the JSON-lines format of `docs/history-format.md`; `jepsen check register/r3.jsonl` rechecks one |
//! | `counterexample.txt`, `counterexample.html` | the first non-linearizable register key, as text and as a timeline |
//! | `anomalies.txt` | every anomaly found |
//! | `nodes/commands.txt`, `nodes/nN.log` | each node's command line, and its output over all its restarts |

pub mod cluster;
pub mod nemesis;
pub mod proxy;
pub mod resp;
pub mod run;
pub mod stub;
pub mod workload;

pub use cluster::{Cluster, RedisPersistence, Target};
pub use nemesis::FaultKind;
pub use run::{run, RunConfig, RunReport, RunVerdict};
pub use workload::Workload;
