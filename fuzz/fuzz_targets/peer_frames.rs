//! Fuzz target: `strata_rt::transport::fuzz_peer_frames`: the peer-message frame decoder must
//! never panic, and what it decodes must re-encode to the same bytes.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| strata_rt::transport::fuzz_peer_frames(data));
