//! Fuzz target: `strata_raft::wire::fuzz_decode`: Raft messages, entries and hard states from
//! peer or disk bytes must decode or fail cleanly, and round-trip when they decode.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| strata_raft::wire::fuzz_decode(data));
