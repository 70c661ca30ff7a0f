//! Fuzz target: `strata_multiraft::envelope::fuzz_envelope`: a peer's envelope (many groups'
//! Raft messages, forwarded proposals and reads) must decode or fail cleanly, and round-trip.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| strata_multiraft::envelope::fuzz_envelope(data));
