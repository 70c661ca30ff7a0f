//! The real-cluster fault harness (`jepsen run`): processes, faults and clients on loopback.
//!
//! - [`cluster`]: starts `node` processes (or one `redis-server`) with their own data
//!   directories, and kills, restarts, pauses, resumes and partitions them.
//! - [`proxy`]: a TCP proxy per directed peer link, so the harness partitions a cluster without
//!   root (no iptables): node `i` reaches node `j` only through the proxy `i → j`.
//! - [`resp`]: a small blocking RESP client with deadlines, for the workload clients.
//! - [`workload`]: the register, set and counter workloads, their clients and their checks.
//! - [`nemesis`]: the seeded fault schedule.
//! - [`run`]: one run from start to verdict.
//! - [`stub`]: a stand-in for the `node` binary (`jepsen stub-node`), to test the harness itself.
//!
//! Unlike the rest of the crate this module touches the outside world: threads, sockets,
//! processes and real clocks. Its runs are not reproducible; the seed fixes only the choices.

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
