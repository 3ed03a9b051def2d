//! `cargo fuzz run event`: see fuzz/README.md.
#![no_main]
#![allow(unsafe_code)] // `fuzz_target!` exports the `extern "C"` entry point libFuzzer calls.

libfuzzer_sys::fuzz_target!(|input: &[u8]| {
    if let Err(broken) = credits_fuzz::event(input) {
        panic!("{broken}");
    }
});
