//! `keyfold heads export` (SPEC section 4.2): every head as `head-<epoch>.note`, the same bytes
//! from a server as from its stopped data directory, each one verifying on its own; a rerun
//! resumes; a different head signed by the directory's key for an exported epoch is reported as
//! evidence of a fork (exit 1), any other content in a head file is the user's to move (exit 2).

mod common;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use common::{http, start_with, stop};
use keyfold_core::{Epoch, Head, SigningKey, cosign, verify_head_note};
use std::path::Path;
use std::process::{Command, Output};

const ORIGIN: &str = "keyfold.localhost";
const WITNESS: &str = "witness.example/w1";

fn keyfold(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_keyfold")).args(args).output().unwrap()
}

#[track_caller]
fn ok(args: &[&str]) -> String {
    let out = keyfold(args);
    assert!(out.status.success(), "keyfold {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

fn head_file(out: &Path, epoch: u64) -> std::path::PathBuf {
    out.join(format!("head-{epoch:020}.note"))
}

/// Each exported file verifies under the directory's key and chains to the one before it.
fn check_chain(out: &Path, public_key: &[u8; 32], latest: u64) {
    let mut previous: Option<Head> = None;
    for e in 0..=latest {
        let note = std::fs::read_to_string(head_file(out, e)).unwrap();
        let head = verify_head_note(&note, ORIGIN, public_key).unwrap();
        assert_eq!(head.epoch, Epoch(e));
        if let Some(p) = &previous {
            assert_eq!(head.previous, p.hash(), "epoch {e} chains to epoch {}", e - 1);
        }
        assert_eq!(note.matches('\u{2014}').count(), 1, "the directory's signature line only");
        previous = Some(head);
    }
    assert!(!head_file(out, latest + 1).exists());
}

#[test]
fn export_from_a_server_and_a_directory_agree_resume_and_catch_a_fork() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("kf");
    let data_arg = data.to_str().unwrap();
    ok(&["init", "--data", data_arg, "--shards-bits", "2"]);
    ok(&["epoch", "--data", data_arg]);
    ok(&["epoch", "--data", data_arg]);
    let public_key = keyfold_epoch::load_public_key(&data.join("signing.pub")).unwrap();

    // A server whose head of epoch 2 carries a witness's cosignature: the export keeps the
    // directory's own signature line only, so both exports are the same bytes.
    let served = dir.path().join("served");
    let witness = SigningKey::from_bytes(&[7; 32]);
    let spec = format!("{WITNESS}={}", B64.encode(witness.verifying_key().to_bytes()));
    let server = start_with(&data, &["--witness", &spec]);
    let (_, head2) = http(server.addr, "GET", "/v1/heads/2", "");
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let line = cosign(&head2, WITNESS, &witness, now).unwrap();
    let (status, body) = http(server.addr, "POST", "/v1/heads/2/cosignatures", &line);
    assert!((200..300).contains(&status), "{status}: {body}");
    assert!(http(server.addr, "GET", "/v1/heads/2", "").1.ends_with(&line), "served with the cosignature");
    let url = format!("http://{}", server.addr);
    let pin = data.join("signing.pub");
    let from_server = ["heads", "export", "--server", &url, "--origin", ORIGIN, "--public-key", pin.to_str().unwrap()];
    let said = ok(&[&from_server[..], &["--out", served.to_str().unwrap()]].concat());
    assert!(said.contains("3 written, 0 already there"), "{said}");
    stop(server);

    let out = dir.path().join("heads");
    let out_arg = out.to_str().unwrap();
    assert!(ok(&["heads", "export", "--data", data_arg, "--out", out_arg]).contains("3 written, 0 already there"));
    check_chain(&out, &public_key, 2);
    for e in 0..=2 {
        assert_eq!(std::fs::read(head_file(&out, e)).unwrap(), std::fs::read(head_file(&served, e)).unwrap());
    }
    assert!(ok(&["heads", "export", "--data", data_arg, "--out", out_arg]).contains("0 written, 3 already there"));

    // A second head for epoch 1, signed with the directory's own key (a copied data directory
    // signing on its own): the export stops and names it.
    let original = std::fs::read_to_string(head_file(&out, 1)).unwrap();
    let signed = keyfold_core::verify_checkpoint_note(&original, ORIGIN, &public_key).unwrap();
    let mut forked = signed.head;
    forked.time_ms += 1;
    let key = keyfold_epoch::load_signing_key(&data.join("signing.key")).unwrap();
    std::fs::write(head_file(&out, 1), forked.sign(&key, signed.checkpoint.root)).unwrap();
    let refused = keyfold(&["heads", "export", "--data", data_arg, "--out", out_arg]);
    assert_eq!(refused.status.code(), Some(1), "{}", String::from_utf8_lossy(&refused.stderr));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("EVIDENCE"));

    // Anything else in a head file is not evidence: the user moves it away.
    std::fs::write(head_file(&out, 1), original).unwrap();
    std::fs::write(head_file(&out, 2), "not a head").unwrap();
    let refused = keyfold(&["heads", "export", "--data", data_arg, "--out", out_arg]);
    assert_eq!(refused.status.code(), Some(2), "{}", String::from_utf8_lossy(&refused.stderr));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("move it away"));
}
