//! Records the compiler version and the resolved peer crate versions for the report header.

use std::process::Command;

fn main() {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let version = Command::new(rustc)
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map_or_else(|| "unknown".into(), |s| s.trim().to_owned());
    println!("cargo:rustc-env=PEERS_RUSTC_VERSION={version}");

    let lock = std::fs::read_to_string("Cargo.lock").unwrap_or_default();
    for name in ["jmt", "akd"] {
        let found = locked_version(&lock, name).unwrap_or_else(|| "unknown".into());
        println!("cargo:rustc-env=PEERS_{}_VERSION={found}", name.to_uppercase());
    }
    println!("cargo:rerun-if-changed=Cargo.lock");
    println!("cargo:rerun-if-changed=build.rs");
}

/// The version of package `name` in a Cargo.lock (`name = "x"` followed by `version = "y"`).
fn locked_version(lock: &str, name: &str) -> Option<String> {
    let mut lines = lock.lines();
    while let Some(line) = lines.next() {
        if line.trim() == format!("name = \"{name}\"") {
            let next = lines.next()?;
            return next.trim().strip_prefix("version = \"")?.strip_suffix('"').map(str::to_owned);
        }
    }
    None
}
