//! Fuzz target: `strata_multiraft::snapshot::fuzz_stream`: bytes a leader sent as a snapshot
//! (framed, checksummed, with a footer) are refused cleanly or frame back to exactly themselves.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| strata_multiraft::snapshot::fuzz_stream(data));
