//! A directory with a retention window (`keyfold init --retain-epochs 2`), end to end: the server
//! answers 410 for lookups, archives and proofs before the window and says where it starts in
//! `/v1/directory`; `keyfold audit` starts there by default; a monitor that starts inside the
//! window (`--from`) verifies the earlier heads as a chain and audits the rest, while one that
//! asks for a deleted proof stops with the server's reason; and `keyfold fsck` is clean.

mod common;

use common::{http, json, keyfold, latest_head, ok, start_with, stop, submit_in_one_epoch, witness_key};

const WITNESS: &str = "witness.test";

#[test]
fn a_retention_window_is_served_audited_monitored_and_checked() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("kf");
    let d = data.to_str().unwrap();
    ok(&["init", "--retain-epochs", "2", "--data", d]);
    let (witness_private, spec) = witness_key(dir.path(), WITNESS);
    let server = start_with(&data, &["--witness", &spec]);
    for round in 0..5u64 {
        let value = format!("v{round}");
        submit_in_one_epoch(server.addr, &[("alice@example.com", value.as_str(), round)]);
    }
    let latest = latest_head(server.addr).0;
    // The window moves after the head is published (pruning follows publication): wait for it.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let (oldest, info) = loop {
        let info = json(&http(server.addr, "GET", "/v1/directory", "").1);
        assert_eq!(info["retain_epochs"], 2);
        let oldest = info["oldest_epoch"].as_u64().unwrap();
        if oldest == latest - 1 || std::time::Instant::now() > deadline {
            break (oldest, info);
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    assert_eq!(oldest, latest - 1, "the last 2 epochs are kept");

    let (status, body) = http(server.addr, "GET", &format!("/v1/keys/alice@example.com?epoch={}", oldest - 1), "");
    assert_eq!(status, 410, "{body}");
    assert!(body.contains("retention window"), "{body}");
    assert_eq!(http(server.addr, "GET", &format!("/v1/keys/alice@example.com?epoch={oldest}"), "").0, 200);
    for what in ["archive", "proof"] {
        let (status, body) = http(server.addr, "GET", &format!("/v1/epochs/{}/{what}", oldest - 1), "");
        assert_eq!(status, 410, "{what}: {body}");
        assert_eq!(http(server.addr, "HEAD", &format!("/v1/epochs/{oldest}/{what}"), "").0, 200, "{what}");
    }
    let history = json(&http(server.addr, "GET", "/v1/keys/alice@example.com/history", "").1);
    assert_eq!(history["versions"].as_array().unwrap().len(), 5, "history is kept whole: {history}");

    let url = format!("http://{}", server.addr);
    let vkey = info["vkey"].as_str().unwrap().to_owned();
    let trust = ["--public-key", vkey.as_str(), "--origin", "keyfold.localhost"];
    let out = ok(&[&["audit", "--server", &url][..], &trust[..]].concat());
    assert!(out.contains(&format!("audited epochs {oldest}..={latest}")), "{out}");

    let monitor = |extra: &[&str]| {
        let key = witness_private.to_str().unwrap();
        let base = ["monitor", "--once", "--server", &url, "--witness-name", WITNESS, "--witness-key", key];
        keyfold(&[&base[..], &trust[..], extra].concat())
    };
    let (code, stdout, stderr) = monitor(&[]);
    assert_ne!(code, 0, "a monitor from genesis needs deleted proofs: {stdout}");
    assert!(stderr.contains("retention window"), "{stderr}");
    let from = oldest.to_string();
    let (code, stdout, stderr) = monitor(&["--from", &from]);
    assert_eq!(code, 0, "{stdout} {stderr}");
    stop(server);

    let out = ok(&["fsck", "--data", d]);
    assert!(out.contains(&format!("the epoch proofs of epochs {oldest}..={latest} audit")), "{out}");
    let (code, _, stderr) = keyfold(&["verify", "--data", d]);
    assert_eq!(code, 1, "a replay from genesis needs the deleted archives");
    assert!(stderr.contains("keyfold audit --from"), "{stderr}");
}
