//! End to end: `keyfold witness init` and `keyfold witness serve` (a C2SP tlog-witness), and
//! `keyfold serve --witness NAME=KEY@URL`, which pushes each new checkpoint to the witness and
//! serves the cosignature it gets back. Real binaries, real HTTP, temporary directories.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use keyfold_core::{Checkpoint, Witness, parse_cosignature_vkey, parse_vkey, split_note, verify_cosignature};
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
mod common;

use common::{Server, http, http_full, start_command, start_logged, stop, wait_until};

const NAME: &str = "witness.test/w1";
const ORIGIN: &str = "example.test/directory";
const TOKEN: &str = "operator-secret";

fn keyfold(args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_keyfold")).args(args).output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The text after `prefix` on the line of `stdout` that starts with it.
fn field<'a>(stdout: &'a str, prefix: &str) -> &'a str {
    stdout.lines().find_map(|l| l.strip_prefix(prefix)).unwrap_or_else(|| panic!("no {prefix:?} line in {stdout}"))
}

/// A witness's data directory as `keyfold witness init` made it.
struct WitnessDir {
    data: PathBuf,
    /// Its cosigner verifier key (C2SP, type 0x04).
    vkey: String,
    /// Its public key, base64.
    public_b64: String,
    witness: Witness,
}

fn witness_init(data: &Path) -> WitnessDir {
    let (code, stdout, stderr) = keyfold(&["witness", "init", "--data", data.to_str().unwrap(), "--name", NAME]);
    assert_eq!(code, Some(0), "{stdout} {stderr}");
    let vkey = field(&stdout, "cosignature vkey: ").to_owned();
    let public_b64 = field(&stdout, "public key: ").to_owned();
    let (name, key) = parse_cosignature_vkey(&vkey).unwrap();
    assert_eq!((name.as_str(), B64.encode(key.as_bytes())), (NAME, public_b64.clone()), "{stdout}");
    let witness = Witness { name, public_key: key.to_bytes() };
    WitnessDir { data: data.to_owned(), vkey, public_b64, witness }
}

/// A directory initialised with [`ORIGIN`]: its verifier key as `keyfold status` prints it, and
/// its public key.
fn directory_init(data: &Path) -> (String, [u8; 32]) {
    let data = data.to_str().unwrap();
    let (code, stdout, stderr) = keyfold(&["init", "--data", data, "--origin", ORIGIN, "--shards-bits", "2"]);
    assert_eq!(code, Some(0), "{stdout} {stderr}");
    let (code, stdout, stderr) = keyfold(&["status", "--data", data]);
    assert_eq!(code, Some(0), "{stdout} {stderr}");
    let vkey = field(&stdout, "vkey: ").to_owned();
    let (name, key) = parse_vkey(&vkey).unwrap();
    assert_eq!(name, ORIGIN);
    (vkey, key.to_bytes())
}

fn start_witness(data: &Path, listen: &str, log_vkey: &str) -> Server {
    let log = format!("{ORIGIN}={log_vkey}");
    let data = data.to_str().unwrap();
    start_command(&["witness", "serve", "--data", data, "--listen", listen, "--name", NAME, "--log", &log])
}

fn start_directory(data: &Path, witness_spec: &str) -> (Server, Arc<Mutex<String>>) {
    start_logged(data, &["--witness", witness_spec, "--operator-token", TOKEN])
}

/// The epoch of the directory's latest head and the note as served (with its cosignatures).
fn latest(addr: SocketAddr, public: &[u8; 32]) -> (u64, String) {
    let (status, note) = http(addr, "GET", "/v1/heads/latest", "");
    assert_eq!(status, 200, "{note}");
    (keyfold_core::verify_head_note(&note, ORIGIN, public).unwrap().epoch.0, note)
}

/// Runs one epoch with the operator trigger and waits for its head.
fn run_epoch(addr: SocketAddr, public: &[u8; 32]) -> u64 {
    let before = latest(addr, public).0;
    let (status, _, body) = http_full(addr, "POST", "/v1/epochs", &[&format!("Authorization: Bearer {TOKEN}")], "");
    assert!(status < 300, "{status} {body}");
    wait_until("the triggered epoch", || {
        let epoch = latest(addr, public).0;
        (epoch <= before).then(|| format!("epoch {epoch}"))
    });
    before + 1
}

/// The size of the latest checkpoint of [`ORIGIN`] the witness cosigned, and its note.
fn witness_checkpoint(addr: SocketAddr) -> Option<(u64, String)> {
    let (status, note) = http(addr, "GET", &format!("/checkpoint/{ORIGIN}"), "");
    if status == 404 {
        return None;
    }
    assert_eq!(status, 200, "{note}");
    let (text, _) = split_note(&note).unwrap();
    Some((Checkpoint::parse(text).unwrap().size, note))
}

/// Waits until the directory's latest head is `epoch`'s and carries the witness's cosignature,
/// verified, and the witness has cosigned the checkpoint of that size (epoch + 1).
fn wait_cosigned(server: SocketAddr, witness: SocketAddr, w: &WitnessDir, public: &[u8; 32], epoch: u64) {
    wait_until(&format!("the witness's cosignature on epoch {epoch}"), || {
        let (latest_epoch, note) = latest(server, public);
        if latest_epoch != epoch {
            return Some(format!("latest epoch {latest_epoch}"));
        }
        if let Err(e) = verify_cosignature(&note, &w.witness) {
            return Some(format!("{e}: {note}"));
        }
        let size = witness_checkpoint(witness).map(|(size, _)| size);
        (size != Some(epoch + 1)).then(|| format!("the witness has cosigned size {size:?}"))
    });
}

/// `keyfold_witness_push_failures_total` for [`NAME`] in a `/metrics` text.
fn push_failures(server: SocketAddr) -> u64 {
    let metrics = http(server, "GET", "/metrics", "").1;
    let series = format!("keyfold_witness_push_failures_total{{witness=\"{NAME}\"}} ");
    let value = metrics.lines().find_map(|l| l.strip_prefix(&series));
    value.unwrap_or_else(|| panic!("no {series:?} in {metrics}")).parse().unwrap()
}

/// `witness init` makes a private key and prints both forms of its public key; `serve --witness
/// NAME=VKEY@URL` pushes the genesis checkpoint at start and each new one after an epoch; the
/// cosignature the witness returns is served on the head, counted in /metrics, and accepted by a
/// client that pins the directory and the witness by their vkeys.
#[test]
fn pushed_checkpoints_are_cosigned_and_served() {
    let tmp = tempfile::tempdir().unwrap();
    let w = witness_init(&tmp.path().join("witness"));
    let key_file = w.data.join("witness.key");
    assert_eq!(std::fs::metadata(&key_file).unwrap().permissions().mode() & 0o777, 0o600);
    let (code, _, stderr) = keyfold(&["witness", "init", "--data", w.data.to_str().unwrap(), "--name", NAME]);
    assert_eq!(code, Some(2), "a second init never overwrites the key: {stderr}");
    assert!(stderr.contains("witness.key"), "{stderr}");
    let data = tmp.path().join("directory");
    let (vkey, public) = directory_init(&data);

    let witness = start_witness(&w.data, "127.0.0.1:0", &vkey);
    let (server, _log) = start_directory(&data, &format!("{NAME}={}@http://{}", w.vkey, witness.addr));
    // At start the server pushes its latest checkpoint: the genesis head's (size 1).
    wait_cosigned(server.addr, witness.addr, &w, &public, 0);
    run_epoch(server.addr, &public);
    let epoch = run_epoch(server.addr, &public);
    wait_cosigned(server.addr, witness.addr, &w, &public, epoch);
    let (_, by_epoch) = http(server.addr, "GET", &format!("/v1/heads/{epoch}"), "");
    verify_cosignature(&by_epoch, &w.witness).expect("served by epoch too");

    let metrics = http(server.addr, "GET", "/metrics", "").1;
    for help in ["# HELP keyfold_witness_push_failures_total ", "# HELP keyfold_witness_cosigned_size "] {
        assert!(metrics.contains(help), "{help:?} in {metrics}");
    }
    let gauge = format!("keyfold_witness_cosigned_size{{witness=\"{NAME}\"}} {}", epoch + 1);
    assert!(metrics.lines().any(|l| l == gauge), "{gauge:?} in {metrics}");
    assert_eq!(push_failures(server.addr), 0);

    // A client pins the directory and the witness by their C2SP vkeys.
    let url = format!("http://{}", server.addr);
    let witness_pin = format!("{NAME}={}", w.vkey);
    let (code, stdout, stderr) = keyfold(&[
        "lookup",
        "--server",
        &url,
        "nobody@example.com",
        "--public-key",
        &vkey,
        "--origin",
        ORIGIN,
        "--witness",
        &witness_pin,
        "--witnesses-required",
        "1",
    ]);
    assert_eq!(code, Some(0), "{stdout} {stderr}");
    assert!(stdout.contains(&format!("cosigned by 1 of the 1 required witnesses: {NAME}")), "{stdout}");
    stop(server);
    stop(witness);
}

/// A witness restarted on its data directory still has what it cosigned, and the server's next
/// push goes on from there; a restarted server believes the witness has nothing, is told the
/// real size (409), and resends with a proof from it, without counting a failure.
#[test]
fn witness_and_directory_restarts_resume_from_the_cosigned_size() {
    let tmp = tempfile::tempdir().unwrap();
    let w = witness_init(&tmp.path().join("witness"));
    let data = tmp.path().join("directory");
    let (vkey, public) = directory_init(&data);
    let witness = start_witness(&w.data, "127.0.0.1:0", &vkey);
    let witness_listen = witness.addr.to_string();
    // The plain base64 key form of --witness.
    let spec = format!("{NAME}={}@http://{witness_listen}", w.public_b64);
    let (server, log) = start_directory(&data, &spec);
    wait_cosigned(server.addr, witness.addr, &w, &public, 0);
    let epoch = run_epoch(server.addr, &public);
    wait_cosigned(server.addr, witness.addr, &w, &public, epoch);

    stop(witness);
    let witness = start_witness(&w.data, &witness_listen, &vkey);
    let (size, note) = witness_checkpoint(witness.addr).expect("the witness's state survived its restart");
    assert_eq!(size, epoch + 1);
    verify_cosignature(&note, &w.witness).expect("the stored checkpoint carries the witness's cosignature");
    let epoch = run_epoch(server.addr, &public);
    wait_cosigned(server.addr, witness.addr, &w, &public, epoch);
    let resent = "resending with a proof from it";
    assert!(!log.lock().unwrap().contains(resent), "the server knew the witness's size");
    stop(server);

    let (server, log) = start_directory(&data, &spec);
    let told = format!("cosigned_size={}", epoch + 1);
    wait_until("the restarted server learns the witness's size", || {
        let log = log.lock().unwrap();
        let learned = log.lines().any(|l| l.contains(resent) && l.contains(&told));
        (!learned).then(|| log.clone())
    });
    let epoch = run_epoch(server.addr, &public);
    wait_cosigned(server.addr, witness.addr, &w, &public, epoch);
    assert_eq!(push_failures(server.addr), 0, "a 409 answered by resending is no failure");
    stop(server);
    stop(witness);
}

/// Epochs go on while the witness is down; each failed push is logged with the witness's name
/// and counted; once the witness is up, the newest checkpoint is pushed again and cosigned,
/// without waiting for another epoch.
#[test]
fn a_down_witness_never_stops_epochs_and_gets_the_newest_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    let w = witness_init(&tmp.path().join("witness"));
    let data = tmp.path().join("directory");
    let (vkey, public) = directory_init(&data);
    // A free port nothing listens on yet: the witness's address, down.
    let witness_addr = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let (server, log) = start_directory(&data, &format!("{NAME}={}@http://{witness_addr}", w.vkey));
    run_epoch(server.addr, &public);
    let epoch = run_epoch(server.addr, &public);
    wait_until("a failed push is counted", || {
        let failures = push_failures(server.addr);
        (failures == 0).then(|| format!("{failures} failures"))
    });
    let logged = log.lock().unwrap().lines().any(|l| l.contains("push") && l.contains(NAME) && l.contains("failed"));
    assert!(logged, "the failure is logged with the witness's name: {}", log.lock().unwrap());
    let (_, note) = latest(server.addr, &public);
    assert!(verify_cosignature(&note, &w.witness).is_err(), "no cosignature yet: {note}");

    let witness = start_witness(&w.data, &witness_addr.to_string(), &vkey);
    wait_cosigned(server.addr, witness.addr, &w, &public, epoch);
    stop(server);
    stop(witness);
}

/// Witness keys and specs are checked before anything is served: each mistake is exit 2 with a
/// message naming it.
#[test]
fn witness_keys_and_specs_are_checked() {
    let tmp = tempfile::tempdir().unwrap();
    let w = witness_init(&tmp.path().join("witness"));
    let data = tmp.path().join("directory");
    let (vkey, _) = directory_init(&data);
    let data = data.to_str().unwrap();
    let signer = vkey.clone(); // a type 0x01 key where a cosigner's is expected
    for (spec, message) in [
        (format!("other.name={}", w.vkey), "other.name"),
        (format!("{NAME}={signer}"), "0x04"),
        (format!("{NAME}={}@ftp://127.0.0.1:1", w.vkey), "http"),
        (format!("{NAME}=not-a-key"), NAME),
    ] {
        let (code, _, stderr) = keyfold(&["serve", "--data", data, "--listen", "127.0.0.1:0", "--witness", &spec]);
        assert_eq!(code, Some(2), "{spec}: {stderr}");
        assert!(stderr.contains(message), "{spec}: {message:?} in {stderr}");
    }
    let witness_data = w.data.to_str().unwrap();
    let wrong_log = format!("{ORIGIN}={}", w.vkey);
    let (code, _, stderr) = keyfold(&["witness", "serve", "--data", witness_data, "--name", NAME, "--log", &wrong_log]);
    assert_eq!(code, Some(2), "a cosigner key is not a log's key: {stderr}");
    let empty = tmp.path().join("empty");
    let log = format!("{ORIGIN}={vkey}");
    let (code, _, stderr) =
        keyfold(&["witness", "serve", "--data", empty.to_str().unwrap(), "--name", NAME, "--log", &log]);
    assert_eq!(code, Some(2), "no key: run witness init first: {stderr}");
    assert!(stderr.contains("witness init"), "{stderr}");
}
