//! The key owner's self-monitor, end to end: `keyfold watch` against a real server. A version
//! that the directory sets and overwrites within one epoch (so that a lookup sees the owner's
//! value again) is reported, with the served history as evidence; `keyfold lookup --history`
//! lists every version, verified. Real binaries, real HTTP, temporary directories.

mod common;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use common::{keyfold, ok, start, stop, submit_in_one_epoch};
use std::net::SocketAddr;

const ORIGIN: &str = "example.test/watched";

/// alice's `mutations` (value, expected version), in one epoch.
fn submit_together(addr: SocketAddr, mutations: &[(&str, u64)]) {
    let listed: Vec<(&str, &str, u64)> =
        mutations.iter().map(|&(value, expected)| ("alice", value, expected)).collect();
    submit_in_one_epoch(addr, &listed);
}

#[test]
fn the_owner_sees_a_version_set_and_overwritten_within_one_epoch() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    ok(&["init", "--data", data.to_str().unwrap(), "--origin", ORIGIN]);
    let pin = data.join("signing.pub");
    let server = start(&data);
    let url = format!("http://{}", server.addr);
    let (expect, state) = (dir.path().join("expected.txt"), dir.path().join("watch.json"));
    let evidence = dir.path().join("evidence.json");
    std::fs::write(&expect, "# what I published\npk-A\n").unwrap();
    let trust = ["--server", &url, "--origin", ORIGIN, "--public-key", pin.to_str().unwrap()];
    let watch = || {
        let files = ["--expect", expect.to_str().unwrap(), "--state", state.to_str().unwrap()];
        keyfold(&[&["watch"], &trust[..], &files, &["--evidence", evidence.to_str().unwrap(), "alice"]].concat())
    };

    submit_together(server.addr, &[("pk-A", 0)]);
    let (code, stdout, stderr) = watch();
    assert_eq!(code, 0, "{stdout} {stderr}");
    assert!(stdout.contains("ok: key \"alice\" versions 1..=1 are all expected"), "{stdout}");

    // The directory sets its own key and puts the owner's back, in one epoch.
    submit_together(server.addr, &[("evil", 1), ("pk-A", 2)]);
    let lookup = ok(&[&["lookup"], &trust[..], &["alice"]].concat());
    assert!(lookup.contains("value    \"pk-A\" (version 3)"), "a lookup sees the owner's value: {lookup}");

    let (code, stdout, stderr) = watch();
    assert_eq!(code, 1, "the watch reports it: {stdout} {stderr}");
    assert!(stdout.contains("UNEXPECTED: version 2 (epoch 2): \"evil\""), "{stdout}");
    assert!(!stdout.contains("version 3"), "the owner's value is expected: {stdout}");
    let report: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&evidence).unwrap()).unwrap();
    assert_eq!(report["unexpected"][0]["value"], B64.encode("evil"), "{report}");
    assert!(report["pages"][0]["lookup"]["proof"].is_string(), "the proof is in the evidence: {report}");

    // Reported once: the next check starts after it, with one request and nothing new.
    let (code, stdout, stderr) = watch();
    assert_eq!(code, 0, "{stdout} {stderr}");
    assert!(stdout.contains("ok: no new version of key \"alice\" since version 3"), "{stdout}");

    let history = ok(&[&["lookup"], &trust[..], &["--history", "alice"]].concat());
    for line in ["version       1  epoch        1  \"pk-A\"", "version       2  epoch        2  \"evil\""] {
        assert!(history.contains(line), "{line:?} in {history}");
    }
    assert!(history.contains("verified: these 3 version(s) are the key's complete history"), "{history}");
    // Only what changed after epoch 1, verified from alice's signed leaf at epoch 1.
    let since = ok(&[&["lookup"], &trust[..], &["--history", "--since", "1", "alice"]].concat());
    assert!(!since.contains("epoch        1  \"pk-A\""), "{since}");
    assert!(since.contains("version       2  epoch        2  \"evil\""), "{since}");
    assert!(
        since.contains(
            "these 2 version(s) are every version of the key applied after epoch 1: they chain from its \
             signed leaf at epoch 1 (version 1)"
        ),
        "{since}"
    );

    // A state for another key is refused, not overwritten.
    let other = keyfold(
        &[&["watch"], &trust[..], &["--expect", expect.to_str().unwrap(), "--state", state.to_str().unwrap(), "bob"]]
            .concat(),
    );
    assert_eq!(other.0, 1, "{other:?}");
    assert!(other.2.contains("is not a watch state of \"bob\""), "{other:?}");
    stop(server);
}
