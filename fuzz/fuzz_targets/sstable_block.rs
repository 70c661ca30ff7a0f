//! Fuzz target: `strata_lsm::fuzz::sstable_block` must never panic on any input.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| strata_lsm::fuzz::sstable_block(data));
