//! Workloads the simulator runs against node software, with the checks that judge a run.

pub mod raft;
pub mod register;
