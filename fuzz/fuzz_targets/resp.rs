//! Fuzz target: the RESP request and reply decoders and the KV log entry decoder
//! (`strata_kv::fuzz::resp`) must never panic, and what they decode must re-encode to itself.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| strata_kv::fuzz::resp(data));
