//! Reason codes are archived and signed: each is fixed, ASCII snake_case, unique, and listed in SPEC.

use keyfold_core::Version;
use keyfold_verify::RejectReason;

#[test]
fn every_reason_has_a_fixed_code_listed_in_spec() {
    let spec = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/SPEC.md")).expect("SPEC.md");
    let reasons = [
        RejectReason::VersionMismatch { expected: Version(1), current: Version(2) },
        RejectReason::NothingToDelete { current: Version(0) },
    ];
    let codes: Vec<&str> = reasons.iter().map(RejectReason::code).collect();
    assert_eq!(codes, ["version_mismatch", "nothing_to_delete"], "codes never change meaning or spelling");
    assert_eq!(codes, RejectReason::CODES.map(|(code, _)| code), "CODES lists every code, in order");
    for code in codes {
        assert!(code.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'), "{code} is snake_case ASCII");
        assert!(spec.contains(&format!("`{code}`")), "SPEC.md does not list the reason code {code}");
    }
}
