//! The exit codes the README documents, asserted exactly on the built binary: 1 the data is bad,
//! 2 usage or configuration, 3 unreachable or I/O (storage held by a running server included),
//! 4 refused by the server.

mod common;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use common::{start, stop};
use std::process::Command;

/// 32 bytes of base64: a pin `lookup` and `verify` accept before they contact a server.
const SOME_KEY: &str = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";

/// Runs `keyfold ARGS` and asserts its exit code and that stderr says `says`.
#[track_caller]
fn assert_exit(args: &[&str], code: i32, says: &str) {
    let out = Command::new(env!("CARGO_BIN_EXE_keyfold")).args(args).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "keyfold {args:?}: {stderr}");
    assert!(stderr.contains(says), "keyfold {args:?} must say {says:?}: {stderr}");
}

#[test]
fn usage_and_configuration_errors_exit_2() {
    // clap's own usage errors.
    assert_exit(&["lookup"], 2, "required arguments were not provided");
    assert_exit(&["no-such-command"], 2, "unrecognized subcommand");
    // Flags clap accepts but keyfold refuses, before anything is contacted or opened.
    let lookup = ["lookup", "k", "--origin", "o", "--server", "http://127.0.0.1:1", "--public-key"];
    assert_exit(&[&lookup[..], &["not base64!"]].concat(), 2, "keyfold: --public-key \"not base64!\" is neither");
    assert_exit(&["bench", "--epochs", "0"], 2, "--epochs must be at least 1");
    // A data directory that is not there, or not a directory: the user must create or name one.
    let dir = tempfile::tempdir().unwrap();
    let absent = dir.path().join("absent");
    assert_exit(&["status", "--data", absent.to_str().unwrap()], 2, "keyfold init --data");
    let file = dir.path().join("file");
    std::fs::write(&file, "not a directory").unwrap();
    assert_exit(&["status", "--data", file.to_str().unwrap()], 2, "keyfold init --data");
    // A refused init writes nothing: run again with the flag fixed, it succeeds.
    let refused = dir.path().join("refused");
    assert_exit(&["init", "--data", refused.to_str().unwrap(), "--queue-max-depth", "0"], 2, "--queue-max-depth must");
    assert!(!refused.exists(), "a refused init leaves no half-made directory");
    // A directory an earlier keyfold made (its keyfold.toml names no data format: format 1,
    // leaves without their history) is refused before any store is opened, never misread.
    let old = dir.path().join("old");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_keyfold"))
        .args(["init", "--data", old.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let config = std::fs::read_to_string(old.join("keyfold.toml")).unwrap();
    assert!(config.starts_with("format = 2\n"), "{config}");
    std::fs::write(old.join("keyfold.toml"), config.replace("format = 2\n", "")).unwrap();
    for command in ["status", "serve", "verify", "fsck"] {
        assert_exit(&[command, "--data", old.to_str().unwrap()], 2, "data format 1 (this keyfold reads format 2");
    }
}

#[test]
fn an_unreachable_server_exits_3() {
    let server = "http://127.0.0.1:1";
    assert_exit(
        &["lookup", "k", "--public-key", SOME_KEY, "--origin", "o", "--server", server],
        3,
        "Connection refused",
    );
    assert_exit(&["verify", "--server", server, "--public-key", SOME_KEY, "--origin", "o"], 3, "GET ");
}

/// One server: its refusal is 4, an answer that does not verify against the pin is 1, its data
/// directory is unavailable (3) to `status` and `fsck` while it runs, and a replay with the wrong
/// public key is 1 once it stopped.
#[test]
fn against_a_server_refused_4_bad_data_1_held_storage_3() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("kf");
    let data_arg = data.to_str().unwrap();
    let server = start(&data);
    let url = format!("http://{}", server.addr);
    let long_key = "k".repeat(5000);
    assert_exit(
        &["submit", "--server", &url, &long_key, "--delete", "--expected-version", "1"],
        4,
        "server answered 400 Bad Request (invalid_mutation)",
    );
    let other = B64.encode(keyfold_core::SigningKey::from_bytes(&[9; 32]).verifying_key().to_bytes());
    let lookup = ["lookup", "--server", &url, "alice", "--origin", "keyfold.localhost", "--public-key"];
    assert_exit(&[&lookup[..], &[&other]].concat(), 1, "REFUSED: the head does not verify");
    let pinned = data.join("signing.pub");
    assert_exit(&[&lookup[..], &[pinned.to_str().unwrap()]].concat(), 0, "");
    assert_exit(&["status", "--data", data_arg], 3, "Database already open");
    assert_exit(&["fsck", "--data", data_arg], 3, "stop it first");
    stop(server);

    std::fs::write(&pinned, format!("{other}\n")).unwrap();
    assert_exit(&["verify", "--data", data_arg], 1, "divergence: epoch 0");
}
