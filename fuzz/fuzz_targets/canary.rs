//! A deliberately failing target: it panics on inputs starting with `FUZ`, which libFuzzer finds
//! in seconds. If this target ever "runs clean", the harness is broken, not the code.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if data.len() >= 3 && data[0] == b'F' && data[1] == b'U' && data[2] == b'Z' {
        panic!("canary: the fuzz harness can find a failing input");
    }
});
