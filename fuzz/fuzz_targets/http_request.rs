//! Fuzz target: the node's HTTP request router (`strata_node::http::fuzz_route`) must never
//! panic, and only a POST may change membership.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| strata_node::http::fuzz_route(data));
