//! `keyfold lookup --state FILE`: a client that remembers the last checkpoint it verified catches
//! a rollback and a fork between two lookups (a copied data directory signing on its own), writes
//! both signed checkpoints as evidence and exits 1; `--max-age` refuses a frozen directory.

mod common;

use common::{start, stop};
use keyfold_core::verify_checkpoint_note;
use std::path::Path;
use std::process::{Command, Output};

const ORIGIN: &str = "keyfold.localhost";

fn keyfold(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_keyfold")).args(args).output().unwrap()
}

#[track_caller]
fn ok(args: &[&str]) -> String {
    let out = keyfold(args);
    assert!(out.status.success(), "keyfold {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// `keyfold lookup alice` against the server at `addr`, keeping the view in `state`.
fn lookup(addr: std::net::SocketAddr, pin: &str, state: &Path, extra: &[&str]) -> Output {
    let server = format!("http://{addr}");
    let base = ["lookup", "--server", &server, "--origin", ORIGIN, "--public-key", pin];
    keyfold(&[&base[..], &["--state", state.to_str().unwrap()], extra, &["alice"]].concat())
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &to.join(entry.file_name()));
        } else {
            std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
        }
    }
}

fn size_of(note: &str, pin: &Path) -> u64 {
    let key = keyfold_epoch::load_public_key(pin).unwrap();
    verify_checkpoint_note(note, ORIGIN, &key).unwrap().checkpoint.size
}

#[test]
fn a_remembered_view_catches_a_fork_a_rollback_and_a_freeze() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    ok(&["init", "--data", a.to_str().unwrap(), "--shards-bits", "2"]);
    ok(&["epoch", "--data", a.to_str().unwrap()]);
    // A copy of the directory, with its key, signs its own history from here.
    copy_dir(&a, &b);
    ok(&["epoch", "--data", a.to_str().unwrap()]);
    ok(&["epoch", "--data", b.to_str().unwrap()]);
    ok(&["epoch", "--data", b.to_str().unwrap()]);
    let pin = a.join("signing.pub");
    // The C2SP verifier key `keyfold status` prints pins the same key as the file.
    let status = ok(&["status", "--data", a.to_str().unwrap()]);
    let vkey = status.lines().find_map(|l| l.strip_prefix("vkey: ")).unwrap().to_owned();
    assert!(vkey.starts_with(&format!("{ORIGIN}+")), "{vkey}");
    let pin_file = pin.to_str().unwrap();
    let (state_a, state_b) = (dir.path().join("view-a.note"), dir.path().join("view-b.note"));

    // First contact and a repeat: the view is stored and stays consistent.
    let server = start(&a);
    let said = String::from_utf8(lookup(server.addr, pin_file, &state_a, &[]).stdout).unwrap();
    assert!(said.contains("keep a view with --state") || said.contains("log of 3 heads"), "{said}");
    let out = lookup(server.addr, pin_file, &state_a, &["--max-age", "3600"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("is the one you held"));
    assert_eq!(size_of(&std::fs::read_to_string(&state_a).unwrap(), &pin), 3);
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let frozen = lookup(server.addr, pin_file, &state_a, &["--max-age", "0"]);
    assert_eq!(frozen.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&frozen.stderr).contains("FREEZE"), "{}", String::from_utf8_lossy(&frozen.stderr));
    stop(server);

    // The copy answers with a log of 4 heads that does not extend the 3 the client saw: a fork.
    let server = start(&b);
    let evidence = dir.path().join("fork.txt");
    let forked = lookup(server.addr, pin_file, &state_a, &["--evidence", evidence.to_str().unwrap()]);
    assert_eq!(forked.status.code(), Some(1), "{}", String::from_utf8_lossy(&forked.stdout));
    let said = String::from_utf8_lossy(&forked.stderr);
    assert!(said.contains("FORK") && said.contains("fork.txt"), "{said}");
    let text = std::fs::read_to_string(&evidence).unwrap();
    let notes: Vec<&str> = text.split("\n# ").collect();
    assert_eq!(notes.len(), 3, "{text}");
    assert!(text.contains(&std::fs::read_to_string(&state_a).unwrap()), "the held checkpoint is in the evidence");
    assert_eq!(size_of(&std::fs::read_to_string(&state_a).unwrap(), &pin), 3, "a refused view is not stored");
    // A client that saw the copy's 4 heads first...
    assert!(lookup(server.addr, &vkey, &state_b, &[]).status.success());
    stop(server);

    // ...and then meets the original's 3: a rollback, with both checkpoints written beside the state.
    let server = start(&a);
    let rolled = lookup(server.addr, &vkey, &state_b, &[]);
    assert_eq!(rolled.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&rolled.stderr).contains("ROLLBACK"),
        "{}",
        String::from_utf8_lossy(&rolled.stderr)
    );
    let written: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with("view-b.note.evidence-"))
        .collect();
    assert_eq!(written.len(), 1, "{written:?}");
    stop(server);
}
