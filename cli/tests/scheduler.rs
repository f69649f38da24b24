//! End to end: a fatal failure in the epoch path stops the scheduler visibly. The real `keyfold
//! serve` over a directory whose map was damaged while it was stopped: the epoch that reads the
//! damage fails, and from then on writes get 503 naming the cause, `/healthz` fails, `/metrics`
//! says `keyfold_scheduler_up 0`, and reads are still served.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use keyfold_core::HashSuite;
use std::path::Path;
mod common;

use common::{http, http_full, json, start, start_with, stop, wait_until};

/// Overwrites the 8 bytes after `index` (a leaf page entry's value offset and length) wherever
/// it occurs in the map's group files, so the entry points outside its page. Only bytes inside
/// Keyfold's own records change: redb's B-tree pages stay valid (a debug build of redb walks them
/// all at open and would panic before the server starts), so the server starts, and the damage is
/// found when an epoch reads that leaf. Returns how many places were overwritten.
fn corrupt_leaf_entries(tree: &Path, index: &[u8; 32]) -> usize {
    let mut overwritten = 0;
    for entry in std::fs::read_dir(tree).unwrap() {
        let path = entry.unwrap().path();
        if !path.file_name().unwrap().to_string_lossy().starts_with("group-") {
            continue;
        }
        let mut bytes = std::fs::read(&path).unwrap();
        let mut at = 0;
        while let Some(found) = bytes[at..].windows(32).position(|w| w == index) {
            let end = at + found + 32;
            bytes[end..end + 8].fill(0xff);
            overwritten += 1;
            at = end + 8;
        }
        std::fs::write(&path, &bytes).unwrap();
    }
    overwritten
}

fn submit(addr: std::net::SocketAddr, key: &str, value: &[u8], expected_version: u64) -> (u16, String, String) {
    let body = format!(
        r#"{{"mutations":[{{"key":"{key}","value":"{}","expected_version":{expected_version}}}]}}"#,
        B64.encode(value)
    );
    http_full(addr, "POST", "/v1/mutations", &[], &body)
}

#[test]
fn a_corrupt_map_stops_the_scheduler_and_writes_get_503_naming_the_cause() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path());
    let suite =
        HashSuite::from_name(json(&http(server.addr, "GET", "/v1/directory", "").1)["hash"].as_str().unwrap()).unwrap();
    assert_eq!(submit(server.addr, "victim", b"v1", 0).0, 202);
    wait_until("the first epoch", || {
        let answer = json(&http(server.addr, "GET", "/v1/keys/victim", "").1);
        answer["value"].is_null().then(|| answer.to_string())
    });
    stop(server);
    let index = suite.index_of(b"victim");
    assert!(corrupt_leaf_entries(&dir.path().join("tree"), &index.0) > 0, "the victim's leaf entry was found");

    let server = start_with(dir.path(), &["--operator-token", "s3cret-token"]);
    let addr = server.addr;
    // Accepted: the scheduler is still running; the epoch that applies it reads the damaged leaf.
    let (status, _, body) = submit(addr, "victim", b"v2", 1);
    assert_eq!(status, 202, "{body}");
    wait_until("/healthz failing once the scheduler stopped", || {
        let (status, body) = http(addr, "GET", "/healthz", "");
        (status != 503).then(|| format!("{status} {body}"))
    });
    let (status, head, body) = http_full(addr, "GET", "/healthz", &[], "");
    let health = json(&body);
    assert_eq!((status, health["status"].as_str()), (503, Some("stopped")), "{body}");
    assert!(health["message"].as_str().unwrap().contains("stored state is corrupt"), "names the cause: {body}");
    assert!(head.contains("retry-after: "), "{head}");

    let (status, head, body) = submit(addr, "someone-else", b"x", 0);
    assert_eq!(status, 503, "a write that would stay pending forever is refused: {body}");
    assert!(head.contains("retry-after: "), "{head}");
    let error = json(&body);
    assert_eq!(error["error"], "unavailable");
    let message = error["message"].as_str().unwrap();
    assert!(
        message.contains("epoch scheduler has stopped") && message.contains("stored state is corrupt"),
        "{message}"
    );
    let (status, _, body) = http_full(addr, "POST", "/v1/epochs", &["Authorization: Bearer s3cret-token"], "");
    assert_eq!(status, 503, "no epoch can be triggered either: {body}");

    let metrics = http(addr, "GET", "/metrics", "").1;
    assert!(metrics.lines().any(|l| l == "keyfold_scheduler_up 0"), "{metrics}");
    assert!(metrics.contains("keyfold_scheduler_failures_total{kind=\"fatal\"} 1"), "{metrics}");
    // Reads go on: the signed data stays available to monitors.
    assert_eq!(http(addr, "GET", "/v1/heads/latest", "").0, 200);
    assert_eq!(http(addr, "GET", "/v1/heads/1", "").0, 200);
    assert_eq!(http(addr, "GET", "/v1/directory", "").0, 200);
    drop(server); // killed: a server whose scheduler stopped exits non-zero on SIGTERM
}
