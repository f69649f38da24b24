//! `keyfold audit` end to end: a served directory writes an epoch proof beside every archive;
//! the audit checks every epoch from its proof (over HTTP and from the data directory, from any
//! `--from`), and a changed proof on disk is caught, naming the epoch, with exit 1.

mod common;

use common::{http, keyfold, latest_head, ok, start, stop, submit_in_one_epoch};
use std::net::SocketAddr;

/// Submits `count` keys `prefix{i}` as new and waits for the epoch that applies them.
fn submit(addr: SocketAddr, prefix: &str, count: usize) {
    let keys: Vec<(String, String)> = (0..count).map(|i| (format!("{prefix}{i}"), format!("v{i}"))).collect();
    let mutations: Vec<(&str, &str, u64)> = keys.iter().map(|(k, v)| (k.as_str(), v.as_str(), 0)).collect();
    submit_in_one_epoch(addr, &mutations);
}

#[test]
fn every_epoch_audits_from_its_proof_and_a_changed_proof_is_caught() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("kf");
    let server = start(&data);
    for round in 0..3 {
        submit(server.addr, &format!("r{round}-"), 50);
    }
    let (status, proof) = http(server.addr, "GET", "/v1/epochs/1/proof", "");
    assert_eq!((status, proof.is_empty()), (200, false));
    assert_eq!(http(server.addr, "GET", "/v1/epochs/0/proof", "").0, 404, "the genesis epoch has none");
    let latest = latest_head(server.addr).0;
    let d = data.to_str().unwrap();
    let info = common::json(&http(server.addr, "GET", "/v1/directory", "").1);
    let vkey = info["vkey"].as_str().unwrap().to_owned();
    let url = format!("http://{}", server.addr);
    let out = ok(&["audit", "--server", &url, "--public-key", &vkey, "--origin", "keyfold.localhost"]);
    assert!(out.contains(&format!("audited epochs 1..={latest}")) && out.contains("150 mutations"), "{out}");
    let out = ok(&["audit", "--server", &url, "--public-key", &vkey, "--origin", "keyfold.localhost", "--from", "2"]);
    assert!(out.contains(&format!("audited epochs 2..={latest}")), "{out}");
    stop(server);

    ok(&["audit", "--data", d]);
    let path = data.join("archives").join(format!("epoch-{:020}.proof", 2));
    let mut bytes = std::fs::read(&path).unwrap();
    let at = bytes.len() - 40;
    bytes[at] ^= 1;
    std::fs::write(&path, bytes).unwrap();
    let (code, stdout, stderr) = keyfold(&["audit", "--data", d]);
    assert_eq!(code, 1, "{stdout} {stderr}");
    assert!(stderr.contains("epoch 2"), "{stderr}");
}
