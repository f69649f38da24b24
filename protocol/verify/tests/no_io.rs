//! The protocol wing links no I/O: what a client, monitor or auditor (or a WASM build) links has
//! no storage engine, async runtime, HTTP stack or object store among its dependencies.

use std::process::Command;

const PROTOCOL: [&str; 4] = ["keyfold-core", "keyfold-archive", "keyfold-map", "keyfold-verify"];
const FORBIDDEN: [&str; 8] = ["redb", "tokio", "hyper", "axum", "reqwest", "object_store", "foundationdb", "mio"];

/// The names of every normal (non-dev, non-build) dependency of `package`, transitively.
fn dependencies(package: &str) -> Vec<String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let output = Command::new(cargo)
        .args(["tree", "--offline", "-p", package, "-e", "normal", "--prefix", "none", "--format", "{p}"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run cargo tree");
    assert!(output.status.success(), "cargo tree -p {package}: {}", String::from_utf8_lossy(&output.stderr));
    let text = String::from_utf8(output.stdout).expect("UTF-8");
    text.lines().filter_map(|l| l.split_whitespace().next()).map(str::to_owned).collect()
}

#[test]
fn protocol_crates_link_no_io() {
    for package in PROTOCOL {
        let deps = dependencies(package);
        assert!(deps.iter().any(|d| d == "keyfold-core"), "{package}: cargo tree listed {deps:?}");
        let found: Vec<&String> = deps.iter().filter(|d| FORBIDDEN.contains(&d.as_str())).collect();
        assert!(found.is_empty(), "{package} links {found:?}; the protocol wing must not do I/O");
    }
}
