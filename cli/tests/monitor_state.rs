//! `keyfold monitor --state DIR` end to end, against real `keyfold serve` processes over HTTP: it
//! resumes where it stopped instead of replaying from genesis, cosigns only the latest checkpoint
//! it verified (never past epochs again), refuses a state file that was changed, and writes the
//! evidence of a fork or a rollback (both signed checkpoints) and exits 1.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
mod common;

use common::{Server, http, json, start_with, stop};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const WITNESS: &str = "witness.test";

/// A witness key pair in `dir` and its `--witness` spec for the server.
fn witness_key(dir: &Path) -> (PathBuf, String) {
    common::witness_key(dir, WITNESS)
}

/// The latest epoch the server signed.
fn latest_epoch(server: &Server) -> u64 {
    let (status, body) = http(server.addr, "GET", "/v1/checkpoint", "");
    assert_eq!(status, 200, "{body}");
    let note = json(&body)["checkpoint"].as_str().unwrap().to_owned();
    let size: u64 = note.lines().nth(1).unwrap().parse().unwrap();
    size - 1
}

/// Sets `key` to `value` (a new version) and waits until the epoch that applies it is signed.
fn set(server: &Server, key: &str, value: &str, expected_version: u64) -> u64 {
    let before = latest_epoch(server);
    let body = format!(
        r#"{{"mutations":[{{"key":"{key}","value":"{}","expected_version":{expected_version}}}]}}"#,
        B64.encode(value)
    );
    let (status, answer) = http(server.addr, "POST", "/v1/mutations", &body);
    assert_eq!(status, 202, "{answer}");
    let deadline = Instant::now() + Duration::from_secs(20);
    while latest_epoch(server) == before {
        assert!(Instant::now() < deadline, "no epoch after the mutation of {key}");
        std::thread::sleep(Duration::from_millis(20));
    }
    latest_epoch(server)
}

struct Monitor {
    key: PathBuf,
    origin: String,
    public: String,
}

impl Monitor {
    fn of(server: &Server, key: PathBuf) -> Monitor {
        let info = json(&http(server.addr, "GET", "/v1/directory", "").1);
        let origin = info["origin"].as_str().unwrap().to_owned();
        Monitor { key, origin, public: info["public_key"].as_str().unwrap().to_owned() }
    }

    /// `keyfold monitor --once` against `server` plus `extra`: (exit code, stdout, stderr).
    fn run(&self, server: &Server, extra: &[&str]) -> (i32, String, String) {
        let out = Command::new(env!("CARGO_BIN_EXE_keyfold"))
            .args(["monitor", "--once", "--server", &format!("http://{}", server.addr)])
            .args(["--public-key", &self.public, "--origin", &self.origin, "--witness-name", WITNESS])
            .arg("--witness-key")
            .arg(&self.key)
            .args(extra)
            .output()
            .unwrap();
        let text = |b: Vec<u8>| String::from_utf8(b).unwrap();
        (out.status.code().unwrap(), text(out.stdout), text(out.stderr))
    }
}

fn heads(server: &Server, epochs: std::ops::RangeInclusive<u64>) -> Vec<String> {
    epochs.map(|e| http(server.addr, "GET", &format!("/v1/heads/{e}"), "").1).collect()
}

fn cosigned(note: &str) -> bool {
    note.contains(&format!("\u{2014} {WITNESS} "))
}

/// Stopped after epoch 3 and restarted after epoch 5, the monitor resumes at 3 and verifies 4 and
/// 5 only; it cosigned only the latest checkpoint each time (3, then 5), and the cosignature of 3
/// is not rewritten with a later time.
#[test]
fn restart_resumes_from_the_state_and_cosigns_only_the_latest() {
    let dir = tempfile::tempdir().unwrap();
    let (key, spec) = witness_key(dir.path());
    let server = start_with(&dir.path().join("data"), &["--witness", &spec]);
    let monitor = Monitor::of(&server, key);
    for i in 1..=3 {
        set(&server, &format!("user-{i}"), &format!("pk-{i}"), 0);
    }
    let state = dir.path().join("state");
    let state_arg = ["--state", state.to_str().unwrap()];
    let (code, stdout, stderr) = monitor.run(&server, &state_arg);
    assert_eq!(code, 0, "{stdout} {stderr}");
    assert!(stdout.contains("verified epochs 0..=3"), "{stdout}");
    let before = heads(&server, 0..=3);
    let cosigned_before: Vec<bool> = before.iter().map(|n| cosigned(n)).collect();
    assert_eq!(cosigned_before, [false, false, false, true], "only the latest checkpoint is cosigned");

    // A cosignature made again now would carry a later time, hence other bytes.
    std::thread::sleep(Duration::from_millis(1100));
    set(&server, "user-4", "pk-4", 0);
    set(&server, "user-1", "pk-1b", 1);
    let (code, stdout, stderr) = monitor.run(&server, &state_arg);
    assert_eq!(code, 0, "{stdout} {stderr}");
    assert!(stderr.contains("resuming at epoch 3"), "{stderr}");
    assert!(stdout.contains("verified epochs 4..=5"), "{stdout}");
    assert_eq!(heads(&server, 0..=3), before, "the heads verified before the restart are not cosigned again");
    let after: Vec<bool> = heads(&server, 4..=5).iter().map(|n| cosigned(n)).collect();
    assert_eq!(after, [false, true]);
    stop(server);
}

/// Following (no `--once`), the monitor cosigns each new latest checkpoint; on SIGTERM it saves
/// its state and exits 0 (the saved interval, 60 s by default, has not passed), so the next start
/// resumes at the last epoch it verified and finds nothing more to do.
#[test]
fn following_then_sigterm_saves_the_state_at_exit() {
    let dir = tempfile::tempdir().unwrap();
    let (key, spec) = witness_key(dir.path());
    let server = start_with(&dir.path().join("data"), &["--witness", &spec]);
    let monitor = Monitor::of(&server, key);
    set(&server, "erin", "pk-erin", 0);
    let state = dir.path().join("state");
    let mut child = Command::new(env!("CARGO_BIN_EXE_keyfold"))
        .args(["monitor", "--poll-ms", "50", "--server", &format!("http://{}", server.addr)])
        .args(["--public-key", &monitor.public, "--origin", &monitor.origin, "--witness-name", WITNESS])
        .arg("--witness-key")
        .arg(&monitor.key)
        .arg("--state")
        .arg(&state)
        .spawn()
        .unwrap();
    let waiting = |epoch: u64| {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !cosigned(&heads(&server, epoch..=epoch)[0]) {
            assert!(Instant::now() < deadline, "epoch {epoch} was not cosigned");
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    waiting(1);
    assert_eq!(set(&server, "erin", "pk-erin-2", 1), 2);
    waiting(2);
    assert!(!state.join("monitor.state").exists(), "not saved yet: the interval has not passed");
    let status = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(status.success());
    assert!(child.wait().unwrap().success(), "SIGTERM: saved, exit 0");
    let (code, stdout, stderr) = monitor.run(&server, &["--state", state.to_str().unwrap()]);
    assert_eq!(code, 0, "{stdout} {stderr}");
    assert!(stderr.contains("resuming at epoch 2") && stdout.contains("verified no epoch after 2"), "{stdout}");
    stop(server);
}

/// A state file whose saved value was changed does not resume: the rebuilt map root is not the
/// signed one. Nothing is cosigned, and the exit code is 1.
#[test]
fn a_changed_state_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (key, spec) = witness_key(dir.path());
    let server = start_with(&dir.path().join("data"), &["--witness", &spec]);
    let monitor = Monitor::of(&server, key);
    set(&server, "carol", "pk-carol-original", 0);
    // A replay state (`--replay`) holds every key: a changed value is found at resume.
    let state = dir.path().join("state");
    let state_arg = ["--state", state.to_str().unwrap(), "--replay"];
    let (code, stdout, stderr) = monitor.run(&server, &state_arg);
    assert_eq!(code, 0, "{stdout} {stderr}");
    let audit_state = dir.path().join("audit-state");
    let audit_arg = ["--state", audit_state.to_str().unwrap()];
    let (code, stdout, stderr) = monitor.run(&server, &audit_arg);
    assert_eq!(code, 0, "{stdout} {stderr}");

    let file = state.join("monitor.state");
    let mut bytes = std::fs::read(&file).unwrap();
    let at = bytes.windows(17).position(|w| w == b"pk-carol-original").expect("the value is in the state");
    bytes[at + 3] = b'C';
    std::fs::write(&file, bytes).unwrap();
    set(&server, "dave", "pk-dave", 0);
    let (code, stdout, stderr) = monitor.run(&server, &state_arg);
    assert_eq!(code, 1, "{stdout} {stderr}");
    // Refused when it is read, not resumed from and then blamed on the server as a divergence.
    assert!(!stderr.contains("resuming at epoch"), "{stderr}");
    assert!(stderr.contains("monitor.state: the saved keys give the map root"), "{stderr}");
    assert!(stderr.contains("not resuming from it"), "{stderr}");

    // An audit state (the default) holds the checkpoint and the log's right edge only: a changed
    // peak is found at resume, and the kinds of state are not mixed up.
    let file = audit_state.join("monitor.state");
    let mut bytes = std::fs::read(&file).unwrap();
    assert!(bytes.starts_with(b"keyfold audit state v1\n") && !bytes.windows(5).any(|w| w == b"pk-ca"));
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&file, bytes).unwrap();
    let (code, stdout, stderr) = monitor.run(&server, &audit_arg);
    assert_eq!(code, 1, "{stdout} {stderr}");
    assert!(stderr.contains("the saved log of heads has size") && stderr.contains("not resuming"), "{stderr}");
    let (code, _, stderr) = monitor.run(&server, &["--state", state.to_str().unwrap()]);
    assert_eq!(code, 1, "a replay state is not an audit state: {stderr}");
    assert!(stderr.contains("use --replay"), "{stderr}");
    assert!(!cosigned(&heads(&server, 2..=2)[0]), "nothing is cosigned from a refused state");
    stop(server);
}

/// Copies of one data directory served side by side diverge. A monitor that verified A's
/// checkpoint finds B's conflicting one (same size, another root), then one that no consistency
/// proof connects (B grew), then C's smaller one (a rollback): each time it writes both signed
/// checkpoints to an evidence file and exits 1.
#[test]
fn a_fork_or_a_rollback_is_written_as_evidence() {
    let dir = tempfile::tempdir().unwrap();
    let (key, spec) = witness_key(dir.path());
    let data = |name: &str| dir.path().join(name);
    let a = start_with(&data("a"), &["--witness", &spec]);
    set(&a, "alice", "pk-alice", 0);
    stop(a);
    for copy in ["b", "c"] {
        assert!(Command::new("cp").arg("-a").arg(data("a")).arg(data(copy)).status().unwrap().success());
    }
    let serve = |name: &str| start_with(&data(name), &["--witness", &spec]);
    let (a, b, c) = (serve("a"), serve("b"), serve("c"));
    let monitor = Monitor::of(&a, key);
    assert_eq!((set(&a, "bob", "pk-bob-a", 0), set(&b, "bob", "pk-bob-b", 0)), (2, 2));
    let state = dir.path().join("state");
    let state_arg = ["--state", state.to_str().unwrap()];
    // As the monitor fetches it, before its own cosignature is added.
    let a_note = http(a.addr, "GET", "/v1/heads/2", "").1;
    let (code, stdout, stderr) = monitor.run(&a, &state_arg);
    assert_eq!(code, 0, "{stdout} {stderr}");

    let evidence = |code: i32, stderr: &str, what: &str, other: &Server| {
        assert_eq!(code, 1, "{stderr}");
        let path = stderr.split("evidence written to ").nth(1).expect(stderr).split_whitespace().next().unwrap();
        let text = std::fs::read_to_string(path.trim_end_matches(':')).unwrap();
        assert!(text.contains(what), "{text}");
        assert!(text.contains(&a_note), "the verified checkpoint is in the evidence: {text}");
        let served = json(&http(other.addr, "GET", "/v1/checkpoint", "").1)["checkpoint"].as_str().unwrap().to_owned();
        assert!(text.contains(&served), "the conflicting checkpoint is in the evidence: {text}");
    };
    let (code, _, stderr) = monitor.run(&b, &state_arg);
    evidence(code, &stderr, "same size 3, different roots", &b);
    set(&b, "carol", "pk-carol", 0);
    let chosen = dir.path().join("fork.txt");
    let (code, _, stderr) = monitor.run(&b, &[&state_arg[..], &["--evidence", chosen.to_str().unwrap()]].concat());
    evidence(code, &stderr, "consistency proof from size 3 to size 4 does not verify", &b);
    assert!(stderr.contains(chosen.to_str().unwrap()), "{stderr}");
    let (code, _, stderr) = monitor.run(&c, &state_arg);
    evidence(code, &stderr, "rollback: size 2 is smaller than the verified size 3", &c);
    for server in [a, b, c] {
        stop(server);
    }
}
