//! Fuzz target: `strata_wal::fuzz::record_decoding` must never panic on any input.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| strata_wal::fuzz::record_decoding(data));
