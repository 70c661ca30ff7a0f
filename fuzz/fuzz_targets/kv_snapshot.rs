//! Fuzz target: the key-value snapshot stream decoder (`strata_kv::fuzz::snapshot_stream`) must
//! never panic, agree with itself whole and in pieces, and re-encode what it decodes exactly.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| strata_kv::fuzz::snapshot_stream(data));
