//! Starting FoundationDB's client network (once per process) and opening a database.

use crate::error::FdbBackendError;
use foundationdb::api::{FdbApiBuilder, NetworkAutoStop};
use foundationdb::options::DatabaseOption;
use foundationdb::{Database, FdbError};
use std::path::Path;

/// FoundationDB's client network thread. Start it once per process, before opening a database,
/// and keep it until every [`Database`] is dropped: dropping it stops the network.
pub struct Network {
    _stop: NetworkAutoStop,
}

impl std::fmt::Debug for Network {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Network")
    }
}

impl Network {
    /// Selects the client API version this build was compiled for (feature `fdb-7_3`) and starts
    /// the network thread. Fails if the client library is older than that API version, or if the
    /// network was already started in this process (FoundationDB allows one start per process).
    #[allow(unsafe_code)]
    pub fn start() -> Result<Network, FdbError> {
        let builder = FdbApiBuilder::default().build()?;
        // SAFETY: `boot` is unsafe because the network must be stopped before the process exits
        // and started only once. The returned guard stops it when dropped; `Network` owns the
        // guard, and callers keep it alive for as long as they use any `Database` (the binary
        // holds it in `main`, the test harness in its `main`).
        let stop = unsafe { builder.boot()? };
        Ok(Network { _stop: stop })
    }
}

/// Opens the cluster named by `cluster_file`. Every transaction gets a timeout and a retry limit,
/// so an unreachable cluster turns into an error a caller can report instead of a hang.
pub fn open_database(_network: &Network, cluster_file: &Path, timeout_ms: i32) -> Result<Database, FdbBackendError> {
    let path = cluster_file.to_str().ok_or_else(|| FdbBackendError::NonUtf8Path(cluster_file.display().to_string()))?;
    let db = Database::new(Some(path))?;
    db.set_option(DatabaseOption::TransactionTimeout(timeout_ms))?;
    db.set_option(DatabaseOption::TransactionRetryLimit(100))?;
    Ok(db)
}
