//! The fork test, end to end: a served data directory is copied, both copies are served with the
//! same key and made to diverge. A client with `--state` that talks to both reports the fork with
//! both signed checkpoints as evidence; the C2SP witness both copies push to cosigns the first one
//! and answers the second with 409, keeping it as evidence; the monitor that verified the first
//! exits 1 with an evidence file holding both. Real binaries, real HTTP, temporary directories.

mod common;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use common::{
    Server, field, http, json, keyfold, latest_head, ok, start_command, start_with, stop, trigger_epoch, wait_until,
    witness_size,
};
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;

const ORIGIN: &str = "example.test/forked";
const WITNESS: &str = "witness.test/w1";
const MONITOR: &str = "monitor.test";
const TOKEN: &str = "operator-secret";

/// Submits `alice = value` (as a new key) and waits for the epoch that applies it.
fn submit_and_wait(addr: SocketAddr, value: &str) -> u64 {
    let before = latest_head(addr).0;
    let body = format!(r#"{{"mutations":[{{"key":"alice","value":"{}","expected_version":0}}]}}"#, B64.encode(value));
    let (status, answer) = http(addr, "POST", "/v1/mutations", &body);
    assert_eq!(status, 202, "{answer}");
    wait_until("the epoch of the mutation", || (latest_head(addr).0 <= before).then(|| "not yet".to_owned()));
    before + 1
}

struct Parties {
    pin: String,
    witness_vkey: String,
    monitor_key: String,
    monitor_spec: String,
}

impl Parties {
    fn serve(&self, data: &Path, witness: SocketAddr) -> Server {
        let pushed = format!("{WITNESS}={}@http://{witness}", self.witness_vkey);
        start_with(data, &["--witness", &pushed, "--witness", &self.monitor_spec, "--operator-token", TOKEN])
    }

    fn lookup(&self, server: &Server, state: &Path, evidence: &Path) -> (i32, String, String) {
        let url = format!("http://{}", server.addr);
        let (state, evidence) = (state.to_str().unwrap(), evidence.to_str().unwrap());
        let args = ["lookup", "--server", &url, "--origin", ORIGIN, "--public-key", &self.pin, "--state", state];
        keyfold(&[&args[..], &["--evidence", evidence, "alice"]].concat())
    }

    fn monitor(&self, server: &Server, state: &Path, evidence: &Path) -> (i32, String, String) {
        let url = format!("http://{}", server.addr);
        let (state, evidence) = (state.to_str().unwrap(), evidence.to_str().unwrap());
        keyfold(&[
            "monitor",
            "--once",
            "--server",
            &url,
            "--public-key",
            &self.pin,
            "--origin",
            ORIGIN,
            "--witness-name",
            MONITOR,
            "--witness-key",
            &self.monitor_key,
            "--state",
            state,
            "--evidence",
            evidence,
        ])
    }
}

fn parties(tmp: &Path, data: &Path) -> Parties {
    ok(&["init", "--data", data.to_str().unwrap(), "--origin", ORIGIN, "--shards-bits", "2"]);
    let pin = field(&ok(&["status", "--data", data.to_str().unwrap()]), "vkey: ").to_owned();
    let out = ok(&["witness", "init", "--data", tmp.join("witness").to_str().unwrap(), "--name", WITNESS]);
    let witness_vkey = field(&out, "cosignature vkey: ").to_owned();
    let (private, public) = (tmp.join("monitor.key"), tmp.join("monitor.pub"));
    let out = ok(&["keygen", "--private", private.to_str().unwrap(), "--public", public.to_str().unwrap()]);
    let monitor_spec = format!("{MONITOR}={}", out.trim().rsplit(' ').next().unwrap());
    Parties { pin, witness_vkey, monitor_key: private.to_str().unwrap().to_owned(), monitor_spec }
}

/// The checkpoint `server` serves now, without cosignature lines beyond its own signature.
fn served_text(server: &Server) -> String {
    let note = json(&http(server.addr, "GET", "/v1/checkpoint", "").1)["checkpoint"].as_str().unwrap().to_owned();
    keyfold_core::split_note(&note).unwrap().0.to_owned()
}

#[test]
fn a_copied_directory_that_diverges_is_caught_by_the_client_the_witness_and_the_monitor() {
    let tmp = tempfile::tempdir().unwrap();
    let (a_dir, b_dir) = (tmp.path().join("a"), tmp.path().join("b"));
    let p = parties(tmp.path(), &a_dir);
    let log = format!("{ORIGIN}={}", p.pin);
    let w = tmp.path().join("witness");
    let witness = start_command(&[
        "witness",
        "serve",
        "--data",
        w.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
        "--name",
        WITNESS,
        "--log",
        &log,
    ]);
    let a = p.serve(&a_dir, witness.addr);
    trigger_epoch(a.addr, TOKEN);
    wait_until("the witness cosigns size 2", || (witness_size(witness.addr, ORIGIN) != Some(2)).then(String::new));
    stop(a);
    // The copy, with its key, signs its own history from here.
    assert!(Command::new("cp").arg("-a").arg(&a_dir).arg(&b_dir).status().unwrap().success());

    let a = p.serve(&a_dir, witness.addr);
    assert_eq!(submit_and_wait(a.addr, "pk-alice-a"), 2);
    wait_until("the witness cosigns A's size 3", || (witness_size(witness.addr, ORIGIN) != Some(3)).then(String::new));
    let (state, monitor_state) = (tmp.path().join("view"), tmp.path().join("monitor"));
    let (client_evidence, monitor_evidence) = (tmp.path().join("client-evidence"), tmp.path().join("monitor-evidence"));
    let (code, stdout, stderr) = p.lookup(&a, &state, &client_evidence);
    assert_eq!(code, 0, "{stdout} {stderr}");
    let (code, stdout, stderr) = p.monitor(&a, &monitor_state, &monitor_evidence);
    assert_eq!(code, 0, "{stdout} {stderr}");
    let a_text = served_text(&a);

    let b = p.serve(&b_dir, witness.addr);
    assert_eq!(submit_and_wait(b.addr, "pk-alice-b"), 2);
    let b_text = served_text(&b);
    assert_ne!(a_text, b_text, "the copies diverged at size 3");

    // The witness refuses B's checkpoint of the size it cosigned for A and keeps it as evidence.
    wait_until("the witness's evidence of B's checkpoint", || {
        let counts = json(&http(witness.addr, "GET", "/evidence", "").1);
        (counts["recorded"].as_u64() != Some(1)).then(|| counts.to_string())
    });
    let record = http(witness.addr, "GET", "/evidence/0", "").1;
    let b_checkpoint = json(&record)["checkpoint"].as_str().unwrap().to_owned();
    assert_eq!(b_checkpoint, b_text, "the refused checkpoint is B's: {record}");
    assert_eq!(witness_size(witness.addr, ORIGIN), Some(3), "A's checkpoint stays the cosigned one");

    // The client that verified A's checkpoint reports B's as a fork, both checkpoints as evidence.
    let (code, stdout, stderr) = p.lookup(&b, &state, &client_evidence);
    assert_eq!(code, 1, "{stdout} {stderr}");
    assert!(stderr.contains("FORK"), "{stderr}");
    let text = std::fs::read_to_string(&client_evidence).unwrap();
    assert!(text.contains(&a_text) && text.contains(&b_text), "{text}");

    // The monitor that verified A's checkpoint exits 1 with both in its evidence file.
    let (code, stdout, stderr) = p.monitor(&b, &monitor_state, &monitor_evidence);
    assert_eq!(code, 1, "{stdout} {stderr}");
    let text = std::fs::read_to_string(&monitor_evidence).unwrap();
    assert!(text.contains(&a_text) && text.contains(&b_text), "{text}");
    for server in [a, b, witness] {
        stop(server);
    }
}
