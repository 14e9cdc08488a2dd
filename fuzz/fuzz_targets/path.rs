//! The path normaliser run before routing: never panics; its output starts with `/`, holds no
//! `//`, `.` or `..` segment, and normalising it again changes nothing.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Err(why) = ferrox_host::fuzzing::normalize_path(&text) {
        panic!("{why}");
    }
});
