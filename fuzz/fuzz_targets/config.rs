//! `ferrox validate`'s document checks (YAML parse, overrides, validation) on arbitrary bytes:
//! issues, never a panic; a document that passes round-trips. Building the snapshot (plugins
//! compiled, filters' `init`) is left out: it is Wasm compilation, not parsing.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Err(why) = ferrox_host::fuzzing::config(text) {
        panic!("{why}");
    }
});
