//! When to cut an epoch, and its time.

/// Cut an epoch when `interval_min_ms` has passed since the last one and mutations are pending,
/// or when `interval_max_ms` has passed (a heartbeat epoch, signed even when empty).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schedule {
    pub interval_min_ms: u64,
    pub interval_max_ms: u64,
}

impl Schedule {
    pub fn due(&self, now_ms: u64, last_epoch_time_ms: u64, pending: u64) -> bool {
        let elapsed = now_ms.saturating_sub(last_epoch_time_ms);
        (pending > 0 && elapsed >= self.interval_min_ms) || elapsed >= self.interval_max_ms
    }
}

/// The time of a new epoch: the wall clock, but strictly after the previous epoch's time, so
/// epoch times increase even if the clock goes backwards.
pub fn epoch_time_ms(now_ms: u64, previous_ms: u64) -> u64 {
    now_ms.max(previous_ms.saturating_add(1))
}

/// Runs epochs on `schedule` until `stop` is set: polls every `poll`, and runs an epoch when the
/// schedule says it is due or when `trigger` was set (the operator's "epoch now"; it is cleared
/// when taken). A retryable error is retried at the next poll; any other error stops the loop and
/// is returned. Runs on the calling thread: give it its own thread, never a tokio worker.
pub fn run_scheduler<Q, S, H>(
    job: &crate::EpochJob<Q, S, H>,
    schedule: Schedule,
    poll: std::time::Duration,
    clock: &dyn Fn() -> u64,
    trigger: &std::sync::atomic::AtomicBool,
    stop: &std::sync::atomic::AtomicBool,
) -> Result<u64, crate::EpochError>
where
    Q: keyfold_ingest::Queue,
    S: keyfold_shards::TreeStore,
    H: crate::HeadStore,
{
    use std::sync::atomic::Ordering;
    let mut epochs = 0u64;
    while !stop.load(Ordering::Acquire) {
        let now = clock();
        let last = job.latest_head()?.time_ms;
        let asked = trigger.swap(false, Ordering::AcqRel);
        if asked || schedule.due(now, last, job.queue().depth()) {
            match job.run_epoch(now) {
                Ok(report) => {
                    epochs += 1;
                    let (c, t) = (&report.head.counts, &report.timings);
                    tracing::info!(
                        epoch = report.head.epoch.0,
                        mutations = c.mutations,
                        applied = c.applied,
                        rejected = c.rejected,
                        duplicates = c.duplicates,
                        cut_ms = t.cut.as_secs_f64() * 1e3,
                        apply_ms = t.apply.as_secs_f64() * 1e3,
                        tree_ms = t.tree.as_secs_f64() * 1e3,
                        archive_ms = t.archive.as_secs_f64() * 1e3,
                        sign_ms = t.sign.as_secs_f64() * 1e3,
                        commit_ms = t.commit.as_secs_f64() * 1e3,
                        "epoch signed"
                    );
                }
                Err(e) if e.is_retryable() => tracing::warn!(error = %e, "epoch failed; retrying at the next poll"),
                Err(e) => {
                    tracing::error!(error = %e, "epoch failed; the scheduler stops");
                    return Err(e);
                }
            }
        }
        std::thread::sleep(poll);
    }
    Ok(epochs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn due_rules() {
        let s = Schedule { interval_min_ms: 1_000, interval_max_ms: 60_000 };
        assert!(!s.due(1_500, 1_000, 5), "min interval not yet passed");
        assert!(s.due(2_000, 1_000, 5));
        assert!(!s.due(30_000, 1_000, 0), "nothing pending, max not reached");
        assert!(s.due(61_000, 1_000, 0), "heartbeat");
        assert!(!s.due(500, 1_000, 5), "clock behind the last epoch");
        assert_eq!(epoch_time_ms(5, 10), 11);
        assert_eq!(epoch_time_ms(20, 10), 20);
    }
}
