//! Shared by the end-to-end tests: the real `keyfold serve` on an ephemeral port, and a minimal
//! HTTP/1.1 client (one request per connection).
#![allow(dead_code)] // each test binary uses its own subset

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Server {
    pub child: Child,
    pub addr: SocketAddr,
}

/// A test that fails mid-way must not leave its server running.
impl Drop for Server {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

pub fn start(data: &std::path::Path) -> Server {
    start_with(data, &[])
}

/// Starts `keyfold serve --data DATA` (epochs after 100 ms of waiting mutations) plus `extra`, and
/// waits for the address it prints.
pub fn start_with(data: &std::path::Path, extra: &[&str]) -> Server {
    let child = spawn_serve(data, extra, Stdio::inherit());
    attach(child)
}

fn spawn_serve(data: &std::path::Path, extra: &[&str], stderr: Stdio) -> Child {
    Command::new(env!("CARGO_BIN_EXE_keyfold"))
        .args(["serve", "--data"])
        .arg(data)
        .args(["--listen", "127.0.0.1:0", "--epoch-interval-min-ms", "100", "--epoch-interval-max-ms", "600000"])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .expect("start keyfold serve")
}

/// Starts `keyfold ARGS` (a long-running command that prints `... on http://ADDR`, such as
/// `witness serve`) and waits for the address it prints.
pub fn start_command(args: &[&str]) -> Server {
    let child = Command::new(env!("CARGO_BIN_EXE_keyfold"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start keyfold");
    attach(child)
}

/// Waits for the address a started server prints, then keeps draining its stdout.
fn attach(mut child: Child) -> Server {
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let addr = loop {
        let line = lines.next().expect("server printed its address").unwrap();
        if let Some(url) = line.split("http://").nth(1) {
            break url.trim().parse().unwrap();
        }
    };
    std::thread::spawn(move || lines.for_each(drop));
    Server { child, addr }
}

/// SIGTERM, then waits for a clean exit.
pub fn stop(mut server: Server) {
    let status = Command::new("kill").args(["-TERM", &server.child.id().to_string()]).status().unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(exit) = server.child.try_wait().unwrap() {
            assert!(exit.success(), "graceful shutdown exits 0, got {exit}");
            return;
        }
        assert!(Instant::now() < deadline, "server did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// One request; `Err` when the connection fails or the response is cut (a killed server).
pub fn try_http(addr: SocketAddr, method: &str, path: &str, body: &str) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(20)))?;
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes())?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let cut = || std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "incomplete response");
    let status = response.get(9..12).and_then(|s| s.parse().ok()).ok_or_else(cut)?;
    let (_, body) = response.split_once("\r\n\r\n").ok_or_else(cut)?;
    Ok((status, body.to_owned()))
}

pub fn http(addr: SocketAddr, method: &str, path: &str, body: &str) -> (u16, String) {
    try_http(addr, method, path, body).unwrap_or_else(|e| panic!("{method} {path}: {e}"))
}

pub fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// One request with extra header lines (`"Name: value"`); returns the status, the response head
/// (lower-cased, for header checks) and the body.
pub fn http_full(addr: SocketAddr, method: &str, path: &str, headers: &[&str], body: &str) -> (u16, String, String) {
    let mut stream = TcpStream::connect(addr).unwrap_or_else(|e| panic!("{method} {path}: {e}"));
    stream.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let extra: String = headers.iter().map(|h| format!("{h}\r\n")).collect();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\nContent-Type: application/json\r\n{extra}Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap_or_else(|e| panic!("{method} {path}: {e}"));
    let status = response.get(9..12).and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("no status: {response}"));
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or_else(|| panic!("cut: {response}"));
    (status, head.to_ascii_lowercase(), body.to_owned())
}

/// Starts `keyfold serve` as [`start_with`] does, with its stderr (the log) collected in the
/// returned buffer instead of inherited.
pub fn start_logged(data: &std::path::Path, extra: &[&str]) -> (Server, std::sync::Arc<std::sync::Mutex<String>>) {
    let mut child = spawn_serve(data, extra, Stdio::piped());
    let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let stderr = BufReader::new(child.stderr.take().unwrap());
    let sink = std::sync::Arc::clone(&log);
    std::thread::spawn(move || {
        for line in stderr.lines().map_while(Result::ok) {
            eprintln!("{line}");
            let mut log = sink.lock().unwrap();
            log.push_str(&line);
            log.push('\n');
        }
    });
    (attach(child), log)
}

/// Waits up to 20 s for `ready`, polling every 50 ms; `what` names it in the failure.
pub fn wait_until(what: &str, mut ready: impl FnMut() -> Option<String>) {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut last = String::new();
    while Instant::now() < deadline {
        match ready() {
            None => return,
            Some(seen) => last = seen,
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("{what} did not happen within 20 s; last seen: {last}");
}

/// `keyfold ARGS` to completion: (exit code, stdout, stderr).
pub fn keyfold(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_keyfold")).args(args).output().unwrap();
    let text = |b: Vec<u8>| String::from_utf8(b).unwrap();
    (out.status.code().unwrap_or(-1), text(out.stdout), text(out.stderr))
}

/// `keyfold ARGS`, which must succeed; its stdout.
#[track_caller]
pub fn ok(args: &[&str]) -> String {
    let (code, stdout, stderr) = keyfold(args);
    assert_eq!(code, 0, "keyfold {args:?}: {stdout} {stderr}");
    stdout
}

/// The text after `prefix` on the line of `stdout` that starts with it.
pub fn field<'a>(stdout: &'a str, prefix: &str) -> &'a str {
    stdout.lines().find_map(|l| l.strip_prefix(prefix)).unwrap_or_else(|| panic!("no {prefix:?} line in {stdout}"))
}

/// The latest signed head's epoch and note as served.
pub fn latest_head(addr: SocketAddr) -> (u64, String) {
    let (status, note) = http(addr, "GET", "/v1/heads/latest", "");
    assert_eq!(status, 200, "{note}");
    let (text, _) = keyfold_core::split_note(&note).unwrap();
    (keyfold_core::Checkpoint::parse(text).unwrap().size - 1, note)
}

/// Appends `mutations` (key, value, expected version) in one request, so one epoch applies them
/// all, and waits for that epoch.
pub fn submit_in_one_epoch(addr: SocketAddr, mutations: &[(&str, &str, u64)]) {
    use base64::Engine;
    let before = latest_head(addr).0;
    let listed: Vec<String> = mutations
        .iter()
        .map(|(key, value, expected)| {
            let value = base64::engine::general_purpose::STANDARD.encode(value);
            format!(r#"{{"key":"{key}","value":"{value}","expected_version":{expected}}}"#)
        })
        .collect();
    let (status, answer) = http(addr, "POST", "/v1/mutations", &format!(r#"{{"mutations":[{}]}}"#, listed.join(",")));
    assert_eq!(status, 202, "{answer}");
    wait_until("the epoch of the mutations", || (latest_head(addr).0 <= before).then(|| "not yet".to_owned()));
}

/// Runs one epoch with the operator trigger (`token`) and waits for its head; its epoch.
pub fn trigger_epoch(addr: SocketAddr, token: &str) -> u64 {
    let before = latest_head(addr).0;
    let (status, _, body) = http_full(addr, "POST", "/v1/epochs", &[&format!("Authorization: Bearer {token}")], "");
    assert!(status < 300, "{status} {body}");
    wait_until("the triggered epoch", || (latest_head(addr).0 <= before).then(|| "not yet".to_owned()));
    before + 1
}

/// The size of the latest checkpoint of `origin` the witness at `addr` has cosigned.
pub fn witness_size(addr: SocketAddr, origin: &str) -> Option<u64> {
    let (status, note) = http(addr, "GET", &format!("/checkpoint/{origin}"), "");
    (status == 200).then(|| keyfold_core::Checkpoint::parse(keyfold_core::split_note(&note).unwrap().0).unwrap().size)
}

/// A witness key pair (`keyfold keygen`) in `dir` and its `--witness NAME=KEY` spec for a server.
pub fn witness_key(dir: &std::path::Path, name: &str) -> (std::path::PathBuf, String) {
    let private = dir.join("witness.key");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_keyfold"))
        .args(["keygen", "--private"])
        .arg(&private)
        .arg("--public")
        .arg(dir.join("witness.pub"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let public = String::from_utf8(out.stdout).unwrap().trim().rsplit(' ').next().unwrap().to_owned();
    (private, format!("{name}={public}"))
}
