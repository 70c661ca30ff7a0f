//! The real-cluster fault harness: processes, faults and clients on loopback.
//!
//! - [`proxy`]: a TCP proxy per directed peer link, so the harness partitions a cluster without
//!   root (no iptables): node `i` reaches node `j` only through the proxy `i → j`.
//! - [`resp`]: a small blocking RESP client with deadlines, for the workload clients.

pub mod proxy;
pub mod resp;
