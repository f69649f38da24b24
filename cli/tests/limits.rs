//! End to end: the real `keyfold serve` under hostile clients, with small configured budgets so
//! each test is quick. Custom methods do not grow `/metrics`; a request body that does not fit
//! the body budget, and a connection over the connection cap, get 503 + Retry-After at once;
//! a client that never reads its responses is disconnected; the operator token is checked and
//! failures logged; and the process's memory stays under a bound derived from its budgets.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};
mod common;

use common::{Server, http, http_full, start_logged, start_with, wait_until};

fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    stream
}

/// Whatever the server sends within `wait` (until it closes, or stops sending for `wait`).
fn answer_within(stream: &mut TcpStream, wait: Duration) -> String {
    stream.set_read_timeout(Some(wait)).unwrap();
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n) = stream.read(&mut buf) {
        if n == 0 {
            break;
        }
        answer.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&answer).into_owned()
}

/// A submission head declaring `length` body bytes.
fn post_head(length: usize) -> String {
    format!(
        "POST /v1/mutations HTTP/1.1\r\nHost: t\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {length}\r\n\r\n"
    )
}

/// A refusal as the budgets answer it: 503, Retry-After, the API's JSON error.
fn assert_refused(answer: &str, what: &str) {
    assert!(answer.starts_with("HTTP/1.1 503"), "{what}: {answer:?}");
    assert!(answer.to_ascii_lowercase().contains("\r\nretry-after: "), "{what}: {answer}");
    assert!(answer.contains(r#""error":"unavailable""#), "{what}: {answer}");
}

/// A method token of `len` bytes, distinct for each `n`.
fn custom_method(n: usize, len: usize) -> String {
    let mut method = format!("X{n}Y");
    method.extend(std::iter::repeat_n('M', len.saturating_sub(method.len())));
    method
}

fn send_custom_methods(addr: SocketAddr, count: usize, len: usize) {
    for n in 0..count {
        let mut stream = connect(addr);
        let request = format!("{} /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", custom_method(n, len));
        stream.write_all(request.as_bytes()).unwrap();
        let answer = answer_within(&mut stream, Duration::from_secs(10));
        assert!(answer.starts_with("HTTP/1.1 4"), "a custom method is the client's fault: {answer:.100}");
    }
}

#[test]
fn custom_methods_do_not_grow_the_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_with(dir.path(), &[]);
    send_custom_methods(server.addr, 200, 2_000);
    let metrics = http(server.addr, "GET", "/metrics", "").1;
    assert!(!metrics.contains("X1Y"), "a client's method became a label: {:.300}", metrics);
    assert!(metrics.contains(r#"method="other""#), "counted as `other`");
    assert!(metrics.len() < 64 << 10, "/metrics grew to {} bytes", metrics.len());
}

#[test]
fn a_body_over_the_budget_is_refused_at_once_and_the_budget_comes_back() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_with(dir.path(), &["--max-inflight-body-bytes", "1000000", "--request-timeout-ms", "20000"]);
    let addr = server.addr;
    // Two bodies of 400 kB, most of each sent and held: 800 kB of the 1 MB budget.
    let holders: Vec<TcpStream> = (0..2)
        .map(|_| {
            let mut stream = connect(addr);
            stream.write_all(post_head(400_000).as_bytes()).unwrap();
            stream.write_all(&vec![b' '; 390_000]).unwrap();
            stream
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300)); // both heads are read and their bodies reserved
    let started = Instant::now();
    let mut third = connect(addr);
    third.write_all(post_head(400_000).as_bytes()).unwrap();
    let answer = answer_within(&mut third, Duration::from_secs(3));
    assert_refused(&answer, "a declared body that does not fit");
    assert!(started.elapsed() < Duration::from_secs(3), "refused before its body was sent");

    // A chunked body counts as it arrives: 300 kB do not fit the 200 kB left.
    let mut chunked = connect(addr);
    let head = "POST /v1/mutations HTTP/1.1\r\nHost: t\r\nConnection: close\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n";
    chunked.write_all(head.as_bytes()).unwrap();
    for _ in 0..30 {
        if chunked.write_all(format!("2710\r\n{}\r\n", " ".repeat(10_000)).as_bytes()).is_err() {
            break; // answered and closed
        }
    }
    let _ = chunked.write_all(b"0\r\n\r\n");
    assert_refused(&answer_within(&mut chunked, Duration::from_secs(5)), "a chunked body over the budget");

    // Closing the holders ends their requests and returns their bytes.
    drop(holders);
    let body = format!(r#"{{"mutations":[{{"key":"k","value":null,"expected_version":0}}]}}{}"#, " ".repeat(400_000));
    wait_until("the budget to come back", || {
        let (status, _, answer) = http_full(addr, "POST", "/v1/mutations", &[], &body);
        (status != 202).then(|| format!("{status} {answer}"))
    });
}

#[test]
fn connections_over_the_cap_are_refused_and_service_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_with(dir.path(), &["--max-connections", "8", "--header-timeout-ms", "30000"]);
    let addr = server.addr;
    let idle: Vec<TcpStream> = (0..8).map(|_| connect(addr)).collect();
    std::thread::sleep(Duration::from_millis(300)); // all eight accepted
    let mut extra = connect(addr);
    let started = Instant::now();
    assert_refused(&answer_within(&mut extra, Duration::from_secs(3)), "the ninth connection");
    assert!(started.elapsed() < Duration::from_secs(3));
    drop(idle);
    wait_until("service to resume once the idle connections closed", || {
        common::try_http(addr, "GET", "/healthz", "")
            .ok()
            .filter(|(status, _)| *status == 200)
            .map_or_else(|| Some("not yet".into()), |_| None)
    });
}

#[test]
fn a_client_that_never_reads_is_disconnected() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_with(dir.path(), &["--write-timeout-ms", "500"]);
    let addr = server.addr;
    let one = http(addr, "GET", "/openapi.json", "").1.len();
    // 3,000 pipelined requests, about 90 MB of responses: far more than the sockets buffer.
    const REQUESTS: usize = 3_000;
    let stalled = connect(addr);
    let mut writer = stalled.try_clone().unwrap();
    let sender = std::thread::spawn(move || {
        let request = b"GET /openapi.json HTTP/1.1\r\nHost: t\r\n\r\n";
        for _ in 0..REQUESTS {
            if writer.write_all(request).is_err() {
                return;
            }
        }
    });
    std::thread::sleep(Duration::from_secs(2)); // 4 write timeouts, reading nothing
    let started = Instant::now();
    assert_eq!(http(addr, "GET", "/healthz", "").0, 200);
    assert!(started.elapsed() < Duration::from_secs(2), "the server stays responsive");
    // Now read: what the socket buffers held, then the end of a connection the server closed.
    let mut stalled = stalled;
    stalled.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut received = 0usize;
    let mut buf = vec![0u8; 1 << 16];
    let ended = loop {
        match stalled.read(&mut buf) {
            Ok(0) => break true,
            Ok(n) => received += n,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break true,
            Err(_) => break false, // the read timed out: the connection is still open
        }
        assert!(received < REQUESTS * one / 2, "the server kept writing to a client that stopped reading");
    };
    assert!(ended, "the connection was ended by the server ({received} bytes came)");
    let _ = sender.join();
}

#[test]
fn an_empty_operator_token_is_refused_and_wrong_tokens_are_logged() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_keyfold"))
        .args(["serve", "--listen", "127.0.0.1:0", "--operator-token", "", "--data"])
        .arg(dir.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let exit = loop {
        if let Some(exit) = child.try_wait().unwrap() {
            break exit;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("serve started with an empty operator token");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    child.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
    assert!(!exit.success(), "{stderr}");
    assert!(stderr.contains("--operator-token") && stderr.contains("is empty"), "{stderr}");

    let (server, log): (Server, _) = start_logged(dir.path(), &["--operator-token", "the-right-token"]);
    let bearer = |token: &str| format!("Authorization: Bearer {token}");
    let (status, _, body) = http_full(server.addr, "POST", "/v1/epochs", &[&bearer("a-wrong-guess")], "");
    assert_eq!(status, 401, "{body}");
    let (status, _, body) = http_full(server.addr, "POST", "/v1/epochs", &[&bearer("the-right-token")], "");
    assert_eq!(status, 202, "{body}");
    wait_until("the refusal in the log", || {
        let log = log.lock().unwrap();
        (!log.contains("operator request refused")).then(|| log.clone())
    });
    let log = log.lock().unwrap();
    assert!(!log.contains("a-wrong-guess") && !log.contains("the-right-token"), "no token is logged: {log}");
}

/// VmHWM (peak resident set) and VmRSS of a process, in KiB.
fn memory_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| {
        let line = status.lines().find(|l| l.starts_with(name)).unwrap_or_else(|| panic!("{name} in {status}"));
        line.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap()
    };
    (field("VmHWM:"), field("VmRSS:"))
}

/// Many connections holding large partial bodies, and many custom-method requests: every
/// refusal is 503 + Retry-After, and the peak RSS stays under the bound stated below.
#[test]
fn memory_stays_bounded_under_hostile_load() {
    const BUDGET_BYTES: usize = 16 << 20;
    const MAX_CONNECTIONS: usize = 64;
    const CLIENTS: usize = 100;
    const DECLARED_BYTES: usize = 2 << 20;
    let dir = tempfile::tempdir().unwrap();
    let (budget, connections) = (BUDGET_BYTES.to_string(), MAX_CONNECTIONS.to_string());
    let server = start_with(
        dir.path(),
        &["--max-inflight-body-bytes", &budget, "--max-connections", &connections, "--request-timeout-ms", "20000"],
    );
    let addr = server.addr;
    send_custom_methods(addr, 20, 1_000); // warm: the runtime's threads and buffers exist
    let (_, baseline_kib) = memory_kib(server.child.id());

    // Each client declares 2 MiB; it sends the body (all but 1 kB, then holds) only if the
    // server did not answer its head at once.
    let clients: Vec<(TcpStream, String)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..CLIENTS)
            .map(|_| {
                s.spawn(move || {
                    let mut stream = connect(addr);
                    let _ = stream.write_all(post_head(DECLARED_BYTES).as_bytes());
                    let answer = answer_within(&mut stream, Duration::from_millis(1500));
                    if answer.is_empty() {
                        let _ = stream.write_all(&vec![b' '; DECLARED_BYTES - 1000]);
                    }
                    (stream, answer)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let admitted = clients.iter().filter(|(_, answer)| answer.is_empty()).count();
    for (_, answer) in clients.iter().filter(|(_, answer)| !answer.is_empty()) {
        assert_refused(answer, "a client beyond the budgets");
    }
    send_custom_methods(addr, 300, 8_000);
    std::thread::sleep(Duration::from_millis(300)); // the held bodies are read in
    let (peak_kib, _) = memory_kib(server.child.id());
    // The bound: the idle server, plus twice the body budget (a buffered body is copied once
    // into one buffer when complete), plus each connection's buffers (its first head, at most
    // 64 KiB; hyper's read buffer, at most 72 KiB; 32 KiB for writes and the task), plus 32 MiB
    // for the allocator's slack and blocking threads.
    let per_connection_kib = (64 + 72 + 32) as u64;
    let bound_kib =
        baseline_kib + 2 * (BUDGET_BYTES as u64 >> 10) + MAX_CONNECTIONS as u64 * per_connection_kib + (32 << 10);
    eprintln!("rss: baseline {baseline_kib} KiB, peak {peak_kib} KiB, bound {bound_kib} KiB, {admitted} bodies held");
    assert!(peak_kib <= bound_kib, "peak RSS {peak_kib} KiB over the bound {bound_kib} KiB (baseline {baseline_kib})");
    assert!(admitted <= BUDGET_BYTES / DECLARED_BYTES, "{admitted} bodies held at once");
    let metrics = http(addr, "GET", "/metrics", "").1;
    assert!(metrics.len() < 64 << 10, "/metrics grew to {} bytes", metrics.len());
    drop(clients);
}
