//! `strata-kv`: the key-value service (Redis protocol and semantics over a replicated state
//! machine stored in the LSM store).
//!
//! - [`resp`]: RESP2/RESP3 request decoding and reply encoding (pure).
//! - [`command`]: the command table (arity, flags, key positions) and key-to-shard mapping.
//! - [`entry`]: the log entries the server replicates and the machine applies.
//! - [`layout`]: how a shard's keyspace is stored in its LSM store.
//! - [`machine`]: one shard's deterministic state machine, and the per-node [`machine::Shared`].
//! - [`snapshot`]: a shard's snapshot as a byte stream (read through an LSM view, decoded in
//!   pieces).
//! - [`server`]: the RESP server over a [`server::Cluster`]; [`local::LocalCluster`] for tests.

pub mod command;
mod commands;
pub mod cursors;
pub mod entry;
pub mod fuzz;
pub mod glob;
mod key_map;
pub mod layout;
pub mod local;
pub mod machine;
pub mod resp;
pub mod server;
pub mod snapshot;
mod store;

pub use commands::{parse_float, parse_integer};
pub use entry::{Entry, EntryError};
pub use local::LocalCluster;
pub use machine::{Machine, MachineError, Shared, SnapshotPieces};
pub use resp::{Protocol, Reply};
pub use server::{serve, shard_of, Cluster, ClusterError, ServerConfig};
