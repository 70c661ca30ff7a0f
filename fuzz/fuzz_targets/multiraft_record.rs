//! Fuzz target: `strata_multiraft::storage::fuzz_record`: a shared-WAL record (one group's hard
//! state and entries) must decode or fail cleanly, and round-trip when it decodes.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| strata_multiraft::storage::fuzz_record(data));
