//! Signed head notes from arbitrary text: parsing and verification never panic; a body that
//! parses prints back to the same text; nothing verifies under a key that signed nothing.
#![no_main]

use keyfold_core::{Head, split_note, verify_head_note};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(head) = Head::parse_body(text) {
        assert_eq!(head.body(), text, "a parsed head body prints back to its text");
    }
    let _ = split_note(text);
    assert!(verify_head_note(text, "fuzz.example", &[7; 32]).is_err(), "no note verifies under an unused key");
});
