//! The epoch-writer lease: one process at a time cuts epochs, commits the tree and signs heads.
//!
//! Built on the foundationdb crate's leader-election recipe (`recipes::leader_election`): a
//! leader key with a lease that the holder refreshes every heartbeat. The lease is used as a
//! fencing token by *reading the leader key inside every write transaction of the epoch writer*
//! ([`EpochWriterLease::check`]): if another process takes over between the check and the commit,
//! the leader key changes, the transaction conflicts, and its retry sees it no longer leads and
//! aborts with "fenced". A deposed writer therefore cannot land a marker, a tree commit or a head.

use crate::error::{FdbBackendError, LeaseLost, abort};
use crate::keys::Layout;
use foundationdb::recipes::leader_election::{ElectionConfig, ElectionResult, LeaderElection};
use foundationdb::tuple::Subspace;
use foundationdb::{Database, FdbBindingError, Transaction};
use futures::executor::block_on;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How the lease behaves; the recipe's defaults are a 10 s lease refreshed every 3 s.
#[derive(Debug, Clone)]
pub struct LeaseOptions {
    /// Unique per process (e.g. `host:pid:start time`): the name the leader key records.
    pub process_id: String,
    /// Higher wins when preemption is allowed (rolling upgrades move the writer deliberately).
    pub priority: i32,
    pub lease_duration: Duration,
    pub heartbeat_interval: Duration,
    /// How long [`EpochWriterLease::acquire`] waits for the lease before giving up.
    pub acquire_timeout: Duration,
}

impl LeaseOptions {
    pub fn new(process_id: String) -> LeaseOptions {
        let defaults = ElectionConfig::default();
        LeaseOptions {
            process_id,
            priority: 0,
            lease_duration: defaults.lease_duration,
            heartbeat_interval: defaults.heartbeat_interval,
            acquire_timeout: Duration::from_secs(60),
        }
    }
}

/// A held (or once-held) epoch-writer lease.
pub struct EpochWriterLease {
    election: LeaderElection,
    options: LeaseOptions,
}

impl std::fmt::Debug for EpochWriterLease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EpochWriterLease").field("process_id", &self.options.process_id).finish()
    }
}

/// Wall-clock time as the recipe wants it. Leases tolerate the skew the recipe was simulated
/// with (about 2 s); keep writers' clocks NTP-synchronised.
fn now() -> Duration {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default()
}

impl EpochWriterLease {
    /// Joins the election of the directory at `layout` and waits until this process leads (or the
    /// timeout passes, reporting who holds the lease).
    pub fn acquire(db: &Database, layout: &Layout, options: LeaseOptions) -> Result<EpochWriterLease, FdbBackendError> {
        let election = LeaderElection::new(Subspace::from_bytes(layout.lease_subspace()));
        let config = ElectionConfig {
            lease_duration: options.lease_duration,
            heartbeat_interval: options.heartbeat_interval,
            ..ElectionConfig::default()
        };
        let lease = EpochWriterLease { election, options };
        block_on(db.run(|trx, _| {
            let (lease, config) = (&lease, config.clone());
            async move {
                // Idempotent: a second writer re-initialising writes the same config.
                lease.election.initialize_with_config(&trx, config).await?;
                lease
                    .election
                    .register_candidate(&trx, &lease.options.process_id, lease.options.priority, now())
                    .await?;
                Ok(())
            }
        }))?;
        let started = Instant::now();
        loop {
            match lease.cycle(db)? {
                ElectionResult::Leader(_) => return Ok(lease),
                ElectionResult::Follower(holder) => {
                    if started.elapsed() >= lease.options.acquire_timeout {
                        let holder = holder.map_or("no leader yet".to_owned(), |s| format!("held by {}", s.leader_id));
                        let waited_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
                        return Err(FdbBackendError::LeaseTimeout { waited_ms, holder });
                    }
                    std::thread::sleep(lease.options.heartbeat_interval);
                }
            }
        }
    }

    fn cycle(&self, db: &Database) -> Result<ElectionResult, FdbBindingError> {
        block_on(db.run(|trx, _| async move {
            let (id, priority) = (&self.options.process_id, self.options.priority);
            Ok(self.election.run_election_cycle(&trx, id, priority, now()).await?)
        }))
    }

    /// Refreshes the lease; call every `heartbeat_interval` (a thread of the epoch writer does).
    /// `Ok(false)`: this process lost the lease and must stop writing until it leads again.
    pub fn heartbeat(&self, db: &Database) -> Result<bool, FdbBackendError> {
        Ok(matches!(self.cycle(db)?, ElectionResult::Leader(_)))
    }

    pub fn heartbeat_interval(&self) -> Duration {
        self.options.heartbeat_interval
    }

    /// Fails the transaction `trx` unless this process leads. Reading the leader key puts it in
    /// the transaction's read set, so a change of leader before the commit makes it conflict.
    pub(crate) async fn check(&self, trx: &Transaction) -> Result<(), FdbBindingError> {
        let leads = self.election.is_leader(&trx, &self.options.process_id, now()).await?;
        if leads {
            Ok(())
        } else {
            Err(abort(LeaseLost(format!("process {} is not the leader", self.options.process_id))))
        }
    }

    /// Gives the lease up (graceful shutdown), so another writer takes over without waiting for
    /// it to expire.
    pub fn resign(&self, db: &Database) -> Result<(), FdbBackendError> {
        block_on(db.run(|trx, _| async move {
            self.election.resign_leadership(&trx, &self.options.process_id).await?;
            self.election.unregister_candidate(&trx, &self.options.process_id).await?;
            Ok(())
        }))?;
        Ok(())
    }
}

/// Runs `lease.check` when there is a lease (the FoundationDB deployment always has one; tests of
/// a single writer may run without).
pub(crate) async fn check(lease: Option<&EpochWriterLease>, trx: &Transaction) -> Result<(), FdbBindingError> {
    match lease {
        Some(lease) => lease.check(trx).await,
        None => Ok(()),
    }
}
