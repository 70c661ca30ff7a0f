//! `strata-kv`: the key-value service (Redis protocol and semantics over a replicated state
//! machine stored in the LSM store).

pub mod command;
pub mod resp;
