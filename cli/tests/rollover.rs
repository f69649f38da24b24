//! Key rollover in the middle of a served history, end to end (SPEC section 6.6): `keyfold
//! rotate-key` on a running server; the next head announces the new key under the old one, and
//! everything that follows the log carries on: a client with a remembered view, a client that
//! pinned the first key and has no view, a C2SP tlog-witness pushed to by the server, the
//! stateful monitor (resuming from a state saved before the rollover, then after it), a full
//! replay and a server restart. Real binaries, real HTTP, temporary directories.

mod common;

use common::{
    Server, field, http, keyfold, latest_head, ok, start_command, start_with, stop, trigger_epoch, wait_until,
    witness_size,
};
use keyfold_core::{parse_cosignature_vkey, parse_vkey, verify_head_note};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

const ORIGIN: &str = "example.test/rotating";
const WITNESS: &str = "witness.test/w1";
const MONITOR: &str = "monitor.test";
const TOKEN: &str = "operator-secret";

fn latest(addr: SocketAddr) -> (u64, String) {
    latest_head(addr)
}

fn run_epoch(addr: SocketAddr) -> u64 {
    trigger_epoch(addr, TOKEN)
}

/// `keyfold lookup alice` pinned to `pin`, plus `extra`.
fn lookup(addr: SocketAddr, pin: &str, extra: &[&str]) -> (i32, String, String) {
    let server = format!("http://{addr}");
    let base = ["lookup", "--server", &server, "--origin", ORIGIN, "--public-key", pin];
    keyfold(&[&base[..], extra, &["alice"]].concat())
}

/// `keyfold monitor --once --state DIR` pinned to the first key.
fn monitor(addr: SocketAddr, pin: &str, key: &Path, state: &Path) -> (i32, String, String) {
    let server = format!("http://{addr}");
    let (key, state) = (key.to_str().unwrap(), state.to_str().unwrap());
    keyfold(&[
        "monitor",
        "--once",
        "--server",
        &server,
        "--public-key",
        pin,
        "--origin",
        ORIGIN,
        "--witness-name",
        MONITOR,
        "--witness-key",
        key,
        "--state",
        state,
    ])
}

struct Setup {
    data: PathBuf,
    witness_data: PathBuf,
    witness_vkey: String,
    monitor_key: PathBuf,
    monitor_spec: String,
    first_vkey: String,
}

fn setup(tmp: &Path) -> Setup {
    let data = tmp.join("directory");
    ok(&["init", "--data", data.to_str().unwrap(), "--origin", ORIGIN, "--shards-bits", "2"]);
    let first_vkey = field(&ok(&["status", "--data", data.to_str().unwrap()]), "vkey: ").to_owned();
    let witness_data = tmp.join("witness");
    let out = ok(&["witness", "init", "--data", witness_data.to_str().unwrap(), "--name", WITNESS]);
    let witness_vkey = field(&out, "cosignature vkey: ").to_owned();
    parse_cosignature_vkey(&witness_vkey).unwrap();
    let monitor_key = tmp.join("monitor.key");
    let public = tmp.join("monitor.pub");
    let out = ok(&["keygen", "--private", monitor_key.to_str().unwrap(), "--public", public.to_str().unwrap()]);
    let monitor_spec = format!("{MONITOR}={}", out.trim().rsplit(' ').next().unwrap());
    Setup { data, witness_data, witness_vkey, monitor_key, monitor_spec, first_vkey }
}

fn start_directory(s: &Setup, witness: SocketAddr) -> Server {
    let pushed = format!("{WITNESS}={}@http://{witness}", s.witness_vkey);
    start_with(&s.data, &["--witness", &pushed, "--witness", &s.monitor_spec, "--operator-token", TOKEN])
}

/// A client with a view from before the rollover follows it; so do first contacts pinned to
/// either key, and a lookup at an epoch the first key signed.
fn clients_follow(addr: SocketAddr, first_vkey: &str, next_vkey: &str, view: &Path) {
    let (code, stdout, stderr) = lookup(addr, first_vkey, &["--state", view.to_str().unwrap()]);
    assert_eq!(code, 0, "{stdout} {stderr}");
    assert!(stdout.contains("grew from 3 to 6 heads") && stdout.contains("key rollover"), "{stdout}");
    let (code, stdout, stderr) = lookup(addr, first_vkey, &["--state", view.to_str().unwrap()]);
    assert_eq!(code, 0, "the stored view (with its rollover) reloads: {stdout} {stderr}");
    for pin in [first_vkey, next_vkey] {
        let (code, stdout, stderr) = lookup(addr, pin, &[]);
        assert_eq!(code, 0, "first contact pinned to {pin}: {stdout} {stderr}");
    }
    // A past epoch before the rollover is proven into the latest checkpoint.
    let (code, stdout, stderr) = lookup(addr, next_vkey, &["--epoch", "1"]);
    assert_eq!(code, 0, "a past epoch: {stdout} {stderr}");
}

#[test]
fn a_rollover_mid_history_is_followed_by_clients_the_witness_and_the_monitor() {
    let tmp = tempfile::tempdir().unwrap();
    let s = setup(tmp.path());
    let (first_name, first_key) = parse_vkey(&s.first_vkey).unwrap();
    assert_eq!(first_name, ORIGIN);
    let log = format!("{ORIGIN}={}", s.first_vkey);
    let w = s.witness_data.to_str().unwrap();
    let witness =
        start_command(&["witness", "serve", "--data", w, "--listen", "127.0.0.1:0", "--name", WITNESS, "--log", &log]);
    let server = start_directory(&s, witness.addr);
    run_epoch(server.addr);
    run_epoch(server.addr);
    let (view, monitor_state) = (tmp.path().join("view"), tmp.path().join("monitor"));
    ok(&[
        "lookup",
        "--server",
        &format!("http://{}", server.addr),
        "--origin",
        ORIGIN,
        "--public-key",
        &s.first_vkey,
        "--state",
        view.to_str().unwrap(),
        "alice",
    ]);
    let (code, stdout, stderr) = monitor(server.addr, &s.first_vkey, &s.monitor_key, &monitor_state);
    assert_eq!(code, 0, "{stdout} {stderr}");

    // The operator rotates the key while the server runs: epoch 3 announces it, 4 and 5 use it.
    let rotated = ok(&["rotate-key", "--data", s.data.to_str().unwrap()]);
    let next_vkey = field(&rotated, "next vkey: ").to_owned();
    let (_, next_key) = parse_vkey(&next_vkey).unwrap();
    let (code, _, stderr) = keyfold(&["rotate-key", "--data", s.data.to_str().unwrap()]);
    assert_eq!(code, 2, "one rotation at a time: {stderr}");
    let announced = run_epoch(server.addr);
    let (_, note) = latest(server.addr);
    let head = verify_head_note(&note, ORIGIN, first_key.as_bytes()).expect("the old key signs the announcement");
    assert_eq!(head.next_key, Some(next_key));
    assert!(note.contains(&format!("\nnext-key {next_vkey}\n")), "{note}");
    run_epoch(server.addr);
    let last = run_epoch(server.addr);
    let (_, note) = latest(server.addr);
    assert!(verify_head_note(&note, ORIGIN, first_key.as_bytes()).is_err());
    verify_head_note(&note, ORIGIN, next_key.as_bytes()).expect("the new key signs after the announcement");
    let info = common::json(&http(server.addr, "GET", "/v1/directory", "").1);
    assert_eq!(info["vkey"].as_str(), Some(next_vkey.as_str()));

    // The witness learned the new key from the announcement it cosigned, and cosigns on.
    wait_until("the witness cosigns after the rollover", || {
        let size = witness_size(witness.addr, ORIGIN);
        (size != Some(last + 1)).then(|| format!("the witness has cosigned {size:?}"))
    });

    clients_follow(server.addr, &s.first_vkey, &next_vkey, &view);

    // The monitor resumes from its pre-rollover state, follows the key, and resumes again.
    let (code, stdout, stderr) = monitor(server.addr, &s.first_vkey, &s.monitor_key, &monitor_state);
    assert_eq!(code, 0, "{stdout} {stderr}");
    run_epoch(server.addr);
    let (code, stdout, stderr) = monitor(server.addr, &s.first_vkey, &s.monitor_key, &monitor_state);
    assert_eq!(code, 0, "resumed after the rollover: {stdout} {stderr}");

    // A full replay pinned to the first key, and a restarted server, carry on.
    let url = format!("http://{}", server.addr);
    ok(&["verify", "--server", &url, "--public-key", &s.first_vkey, "--origin", ORIGIN]);
    stop(server);
    ok(&["verify", "--data", s.data.to_str().unwrap()]);
    ok(&["fsck", "--data", s.data.to_str().unwrap()]);
    let status = ok(&["status", "--data", s.data.to_str().unwrap()]);
    assert_eq!(field(&status, "vkey: "), next_vkey);
    let server = start_directory(&s, witness.addr);
    let epoch = run_epoch(server.addr);
    assert!(epoch > announced + 2);
    verify_head_note(&latest(server.addr).1, ORIGIN, next_key.as_bytes()).unwrap();
    stop(server);
    stop(witness);
}
