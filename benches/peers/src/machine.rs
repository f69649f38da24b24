//! What the numbers were measured on.

/// One line: CPUs, model, the SIMD/SHA flags that matter to hashing, memory.
pub fn describe() -> String {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let field = |name: &str| {
        cpuinfo
            .lines()
            .find(|l| l.split(':').next().is_some_and(|k| k.trim() == name))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_owned())
    };
    let model = field("model name").unwrap_or_else(|| "unknown CPU".into());
    let flags = field("flags").unwrap_or_default();
    let has = |flag: &str| if flags.split_whitespace().any(|f| f == flag) { "yes" } else { "no" };
    let memory = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| m.lines().find(|l| l.starts_with("MemTotal:")).map(str::to_owned))
        .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or_else(|| "unknown".into(), |kib| format!("{:.1} GiB", kib as f64 / (1024.0 * 1024.0)));
    format!(
        "machine: {cpus} CPUs (nproc), {model}; avx2 {}, avx512f {}, sha_ni {}; memory {memory}",
        has("avx2"),
        has("avx512f"),
        has("sha_ni")
    )
}

/// A memory figure of this process from /proc/self/status (Linux), in MiB.
fn status_mib(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    Some(line.split_whitespace().nth(1)?.parse::<u64>().ok()? / 1024)
}

/// Peak resident memory of this process so far.
pub fn peak_rss_mib() -> Option<u64> {
    status_mib("VmHWM:")
}

/// Resident memory of this process now.
pub fn rss_mib() -> Option<u64> {
    status_mib("VmRSS:")
}
