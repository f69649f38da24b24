//! When to cut an epoch, and its time; the scheduler loop that cuts them and the health it
//! reports (`/healthz`, the write endpoints and `/metrics` read it).

use crate::{EpochError, EpochJob, EpochReport, HeadStore};
use keyfold_ingest::Queue;
use keyfold_map::TreeStore;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

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

/// What the epoch scheduler is doing.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum SchedulerState {
    /// Epochs are cut on schedule.
    #[default]
    Running,
    /// The last `attempts` tries failed with a retryable error (a full disk, say), the first at
    /// `since_ms`; the scheduler retries with exponential backoff and becomes `Running` again on
    /// the first success.
    Retrying { since_ms: u64, attempts: u32, last_error: String },
    /// A fatal error or a panic ended the scheduler: no epoch will be cut until an operator repairs
    /// the cause and restarts the server. Mutations accepted now would stay pending forever, so
    /// the server refuses writes (reads and signed data stay available to monitors).
    Stopped { cause: String },
}

/// The scheduler's state, shared with the HTTP handlers. Every change also sets the
/// `keyfold_scheduler_up` gauge (1 unless stopped).
#[derive(Debug, Default)]
pub struct SchedulerHealth {
    state: Mutex<SchedulerState>,
}

impl SchedulerHealth {
    pub fn state(&self) -> SchedulerState {
        self.state.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Why the scheduler stopped, if it did.
    pub fn stopped_cause(&self) -> Option<String> {
        match &*self.state.lock().unwrap_or_else(PoisonError::into_inner) {
            SchedulerState::Stopped { cause } => Some(cause.clone()),
            _ => None,
        }
    }

    /// Records what the scheduler is doing (its loop is the one writer in a server). A stopped
    /// scheduler stays stopped: nothing in this process restarts it.
    pub fn set(&self, next: SchedulerState) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if !matches!(*state, SchedulerState::Stopped { .. }) {
            *state = next;
        }
        let up = if matches!(*state, SchedulerState::Stopped { .. }) { 0.0 } else { 1.0 };
        metrics::gauge!("keyfold_scheduler_up").set(up);
    }
}

/// Exponential backoff with jitter between retries of a failing epoch: the n-th delay is drawn
/// uniformly from [d/2, d], d = `initial` · 2^(n-1) capped at `max`. The jitter keeps several
/// servers over one shared store from retrying in lockstep.
#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    attempts: u32,
    /// splitmix64 state: cheap, and seeded, so a test can replay a sequence.
    rng: u64,
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration, seed: u64) -> Backoff {
        Backoff { initial, max: max.max(initial), attempts: 0, rng: seed }
    }

    /// The delay before the next retry; counts the attempt.
    pub fn next_delay(&mut self) -> Duration {
        let doublings = self.attempts.min(32);
        self.attempts = self.attempts.saturating_add(1);
        let ceiling = self.initial.saturating_mul(1u32 << doublings.min(31)).min(self.max);
        let ceiling_us = u64::try_from(ceiling.as_micros()).unwrap_or(u64::MAX);
        let half_us = ceiling_us / 2;
        Duration::from_micros(half_us + self.next_random() % (ceiling_us - half_us + 1))
    }

    /// Back to `initial` after a success.
    pub fn reset(&mut self) {
        self.attempts = 0;
    }

    fn next_random(&mut self) -> u64 {
        self.rng = self.rng.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// A seed for [`Backoff`] from the OS (the clock if it has none: jitter needs no secrecy).
pub fn backoff_seed() -> u64 {
    let mut seed = [0u8; 8];
    if getrandom::fill(&mut seed).is_err() {
        let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        return u64::from(since.subsec_nanos()) ^ since.as_secs();
    }
    u64::from_be_bytes(seed)
}

/// How the scheduler runs: the schedule, how often it looks, and the backoff between retries.
#[derive(Debug, Clone)]
pub struct SchedulerOptions {
    pub schedule: Schedule,
    pub poll: Duration,
    pub backoff: Backoff,
}

/// Why the scheduler ended before it was told to stop; `during` names the step.
#[derive(Debug, thiserror::Error)]
pub enum SchedulerError {
    #[error("{during} failed: {source}")]
    Fatal { during: &'static str, source: EpochError },
    #[error("{during} panicked: {message}")]
    Panicked { during: &'static str, message: String },
}

const READING_HEAD: &str = "reading the latest head";
const RUNNING_EPOCH: &str = "running an epoch";
const CATCHING_UP_INDEX: &str = "catching up the outcome index";

/// How one step of the loop failed.
enum Failure {
    Retryable { during: &'static str, error: EpochError },
    Ended(SchedulerError),
}

/// Runs `f`, turning an error into a [`Failure`] by its class, and a panic into one that names
/// `during` and the panic's message.
fn guarded<T>(during: &'static str, f: impl FnOnce() -> Result<T, EpochError>) -> Result<T, Failure> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(error)) if error.is_retryable() => Err(Failure::Retryable { during, error }),
        Ok(Err(source)) => Err(Failure::Ended(SchedulerError::Fatal { during, source })),
        Err(payload) => {
            let message = payload
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic without a message".to_owned());
            Err(Failure::Ended(SchedulerError::Panicked { during, message }))
        }
    }
}

/// Marks the scheduler stopped if its thread unwinds past the loop (a panic outside the guarded
/// steps), so the handlers never believe a dead scheduler is running.
struct UnwindGuard<'a>(&'a SchedulerHealth);

impl Drop for UnwindGuard<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.set(SchedulerState::Stopped { cause: "the epoch scheduler thread panicked".into() });
        }
    }
}

/// Runs epochs until `stop` is set: polls every `options.poll`, and runs an epoch when the
/// schedule says it is due, when `trigger` was set (the operator's "epoch now"; it is cleared
/// when taken), or to retry one that failed. A retryable error anywhere in the loop is retried
/// after the next [`Backoff`] delay (one WARN per retry). A fatal error or a panic, in an epoch or
/// in reading the latest head, ends the loop: `health` becomes `Stopped` with the cause, which is
/// logged once and returned. Runs on the calling thread: give it its own thread, never a tokio
/// worker.
pub fn run_scheduler<Q, S, H>(
    job: &EpochJob<Q, S, H>,
    options: &SchedulerOptions,
    clock: &dyn Fn() -> u64,
    trigger: &AtomicBool,
    stop: &AtomicBool,
    health: &SchedulerHealth,
) -> Result<u64, SchedulerError>
where
    Q: Queue,
    S: TreeStore,
    H: HeadStore,
{
    let _guard = UnwindGuard(health);
    health.set(SchedulerState::Running);
    for kind in ["retryable", "fatal", "panic"] {
        // Registered at 0, so a dashboard sees the series before the first failure.
        metrics::counter!("keyfold_scheduler_failures_total", "kind" => kind).increment(0);
    }
    let mut backoff = options.backoff.clone();
    let mut epochs = 0u64;
    // (first failure's time, attempts) while retrying; an epoch that failed runs again when due or not.
    let mut failing: Option<(u64, u32)> = None;
    let mut run_again = false;
    while !stop.load(Ordering::Acquire) {
        let now = clock();
        match step(job, options.schedule, now, trigger, run_again) {
            Ok(None) => {}
            Ok(Some(report)) => {
                epochs += 1;
                log_report(&report);
                if let Some((_, attempts)) = failing.take() {
                    tracing::info!(attempts, "epochs succeed again after retryable failures");
                }
                // A capped cut left mutations waiting: the next epoch runs at the next poll, not
                // after the interval (a backlog drains as fast as epochs run).
                run_again = report.capped;
                backoff.reset();
                health.set(SchedulerState::Running);
            }
            Err(Failure::Retryable { during, error }) => {
                metrics::counter!("keyfold_scheduler_failures_total", "kind" => "retryable").increment(1);
                let (since_ms, attempts) = failing.map_or((now, 1), |(since, n)| (since, n.saturating_add(1)));
                failing = Some((since_ms, attempts));
                run_again |= during == RUNNING_EPOCH;
                let delay = backoff.next_delay();
                let last_error = format!("{during} failed: {error}");
                tracing::warn!(error = %last_error, attempts, retry_in_ms = delay.as_millis(), "epoch scheduler: retryable failure; retrying after a backoff");
                health.set(SchedulerState::Retrying { since_ms, attempts, last_error });
                sleep_unless_stopped(delay, options.poll, stop);
                continue;
            }
            Err(Failure::Ended(e)) => {
                let kind = if matches!(e, SchedulerError::Panicked { .. }) { "panic" } else { "fatal" };
                metrics::counter!("keyfold_scheduler_failures_total", "kind" => kind).increment(1);
                health.set(SchedulerState::Stopped { cause: e.to_string() });
                tracing::error!(cause = %e, kind, "the epoch scheduler stopped: no epoch will be cut and writes are \
                    refused until the cause is repaired and the server restarted");
                return Err(e);
            }
        }
        std::thread::sleep(options.poll);
    }
    Ok(epochs)
}

/// One look at the schedule: the epoch it ran, if it was due (or asked for, or to be retried).
fn step<Q, S, H>(
    job: &EpochJob<Q, S, H>,
    schedule: Schedule,
    now: u64,
    trigger: &AtomicBool,
    run_again: bool,
) -> Result<Option<EpochReport>, Failure>
where
    Q: Queue,
    S: TreeStore,
    H: HeadStore,
{
    let (last, pending) = guarded(READING_HEAD, || Ok((job.latest_head()?.time_ms, job.queue().depth())))?;
    let asked = trigger.swap(false, Ordering::AcqRel);
    if !(asked || run_again || schedule.due(now, last, pending)) {
        // Between epochs: an index that fell behind (its writes failed) catches up as soon as
        // they succeed again, not only when the next epoch runs.
        guarded(CATCHING_UP_INDEX, || if job.index_lag()?.is_some() { job.catch_up_index_now() } else { Ok(()) })?;
        return Ok(None);
    }
    guarded(RUNNING_EPOCH, || job.run_epoch(now)).map(Some)
}

/// Sleeps `delay`, waking every `poll` to end early once `stop` is set (a shutdown does not wait
/// out a 30 s backoff).
fn sleep_unless_stopped(delay: Duration, poll: Duration, stop: &AtomicBool) {
    let until = std::time::Instant::now() + delay;
    while !stop.load(Ordering::Acquire) {
        let left = until.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return;
        }
        std::thread::sleep(left.min(poll.max(Duration::from_millis(1))));
    }
}

fn log_report(report: &EpochReport) {
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
    if let Some(pruned) = &report.pruned {
        tracing::info!(
            oldest_kept = pruned.oldest.0,
            shards_rebased = pruned.shards_rebased,
            shards_pending = pruned.shards_pending,
            bytes_deleted = pruned.bytes_deleted,
            bytes_written = pruned.bytes_written,
            prune_ms = t.prune.as_secs_f64() * 1e3,
            "retention window applied"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{MemoryArchives, MemoryHeadStore};
    use keyfold_core::{Epoch, HashSuite, SigningKey};
    use keyfold_ingest::{MemoryQueue, Position};
    use keyfold_map::{Map, MemoryStore, TreeConfig};
    use std::sync::Arc;
    use std::sync::atomic::AtomicU32;

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

    #[test]
    fn backoff_doubles_to_its_cap_with_jitter_and_resets() {
        let (initial, max) = (Duration::from_millis(50), Duration::from_secs(30));
        let mut backoff = Backoff::new(initial, max, 7);
        for n in 0..40u32 {
            let ceiling = initial.saturating_mul(1 << n.min(20)).min(max);
            let delay = backoff.next_delay();
            assert!(
                delay >= ceiling / 2 && delay <= ceiling,
                "attempt {n}: {delay:?} outside [{:?}, {ceiling:?}]",
                ceiling / 2
            );
        }
        backoff.reset();
        let delay = backoff.next_delay();
        assert!(delay >= initial / 2 && delay <= initial, "after a reset: {delay:?}");
        let draws = |seed| {
            let mut b = Backoff::new(initial, max, seed);
            (0..8).map(|_| b.next_delay()).collect::<Vec<_>>()
        };
        assert_eq!(draws(1), draws(1), "a seed replays its sequence");
        assert_ne!(draws(1), draws(2), "the delays are jittered");
    }

    /// What [`FaultyHeads`] does: the test's way to break the epoch path on demand.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Fault {
        None,
        PanicOnLatest,
        PanicOnCommit,
        CorruptOnCommit,
        /// This many commits fail with an I/O error (retryable), then they succeed.
        IoOnCommit(u32),
    }

    /// A head store in memory whose reads or commits panic or fail on demand.
    #[derive(Debug)]
    struct FaultyHeads {
        inner: MemoryHeadStore,
        fault: Mutex<Fault>,
        commits: AtomicU32,
    }

    impl FaultyHeads {
        fn fault(&self) -> std::sync::MutexGuard<'_, Fault> {
            self.fault.lock().unwrap_or_else(PoisonError::into_inner)
        }
    }

    impl HeadStore for FaultyHeads {
        fn latest(&self) -> Result<Option<(Epoch, String)>, EpochError> {
            if *self.fault() == Fault::PanicOnLatest {
                panic!("injected: range end index 9000 out of range for slice of length 4096");
            }
            self.inner.latest()
        }

        fn get(&self, epoch: Epoch) -> Result<Option<String>, EpochError> {
            self.inner.get(epoch)
        }

        fn cursor(&self) -> Result<Position, EpochError> {
            self.inner.cursor()
        }

        fn commit(&self, epoch: Epoch, note: &str, cursor: Position) -> Result<(), EpochError> {
            self.commits.fetch_add(1, Ordering::SeqCst);
            let mut fault = self.fault();
            match *fault {
                Fault::PanicOnCommit => {
                    drop(fault);
                    panic!("injected: the head store's page is torn")
                }
                Fault::CorruptOnCommit => Err(EpochError::corrupt("injected: the head store is inconsistent")),
                Fault::IoOnCommit(n) if n > 0 => {
                    *fault = Fault::IoOnCommit(n - 1);
                    Err(EpochError::io(std::io::Error::other("injected: no space left on device")))
                }
                _ => self.inner.commit(epoch, note, cursor),
            }
        }
    }

    type TestJob = EpochJob<MemoryQueue, MemoryStore, FaultyHeads>;

    /// A job at genesis (time 1000) whose heads fail with `fault` from now on.
    fn job(fault: Fault) -> TestJob {
        let config = TreeConfig::new(HashSuite::Blake3, 4).unwrap();
        let heads =
            FaultyHeads { inner: MemoryHeadStore::default(), fault: Mutex::new(Fault::None), commits: 0.into() };
        let archives = Arc::new(MemoryArchives::default());
        let key = SigningKey::from_bytes(&[5; 32]);
        let job = EpochJob::open(
            MemoryQueue::new(config.suite, 100),
            Map::new(MemoryStore::new(config)),
            heads,
            archives,
            key,
            "sched.test/keyfold",
            1_000,
        )
        .unwrap();
        *job.heads().fault() = fault;
        job.heads().commits.store(0, Ordering::SeqCst); // the genesis head's commit is not counted
        job
    }

    fn options() -> SchedulerOptions {
        SchedulerOptions {
            // Never due on its own: only the trigger and retries run epochs.
            schedule: Schedule { interval_min_ms: u64::MAX, interval_max_ms: u64::MAX },
            poll: Duration::from_millis(1),
            backoff: Backoff::new(Duration::from_millis(1), Duration::from_millis(4), 3),
        }
    }

    /// Runs the scheduler with the trigger set until it returns, or `done` holds, or 2,000 polls;
    /// returns its result and every state it showed (seen at each poll).
    fn run(job: &TestJob, done: &dyn Fn(&TestJob) -> bool) -> (Result<u64, SchedulerError>, Vec<SchedulerState>) {
        let (trigger, stop, health) = (AtomicBool::new(true), AtomicBool::new(false), SchedulerHealth::default());
        let seen = Mutex::new(Vec::new());
        let polls = AtomicU32::new(0);
        let clock = || {
            seen.lock().unwrap().push(health.state());
            if polls.fetch_add(1, Ordering::SeqCst) >= 2_000 || done(job) {
                stop.store(true, Ordering::Release);
            }
            2_000
        };
        let result = run_scheduler(job, &options(), &clock, &trigger, &stop, &health);
        let mut seen = seen.into_inner().unwrap();
        seen.push(health.state());
        (result, seen)
    }

    fn stopped_cause(seen: &[SchedulerState]) -> &str {
        match seen.last() {
            Some(SchedulerState::Stopped { cause }) => cause,
            other => panic!("the scheduler must say it stopped, not {other:?}"),
        }
    }

    #[test]
    fn a_panic_in_an_epoch_stops_the_scheduler_and_names_the_cause() {
        let job = job(Fault::PanicOnCommit);
        let (result, seen) = run(&job, &|_| false);
        match result {
            Err(SchedulerError::Panicked { during, message }) => {
                assert_eq!(during, RUNNING_EPOCH);
                assert!(message.contains("the head store's page is torn"), "{message}");
            }
            other => panic!("expected the panic to end the scheduler, got {other:?}"),
        }
        let cause = stopped_cause(&seen);
        assert!(cause.contains("running an epoch panicked") && cause.contains("page is torn"), "{cause}");
        assert_eq!(job.heads().commits.load(Ordering::SeqCst), 1, "a panic is not retried");
    }

    #[test]
    fn a_panic_reading_the_head_stops_the_scheduler() {
        let job = job(Fault::PanicOnLatest);
        let (result, seen) = run(&job, &|_| false);
        assert!(matches!(result, Err(SchedulerError::Panicked { during: READING_HEAD, .. })), "{result:?}");
        assert!(stopped_cause(&seen).contains("reading the latest head panicked: injected: range end index"));
    }

    #[test]
    fn a_fatal_error_stops_the_scheduler_without_retrying() {
        let job = job(Fault::CorruptOnCommit);
        let (result, seen) = run(&job, &|_| false);
        assert!(
            matches!(
                result,
                Err(SchedulerError::Fatal { source: EpochError::Storage(keyfold_core::StorageError::Corrupt(_)), .. })
            ),
            "{result:?}"
        );
        assert!(stopped_cause(&seen).contains("the head store is inconsistent"));
        assert_eq!(job.heads().commits.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn retryable_errors_are_retried_until_the_epoch_succeeds() {
        let job = job(Fault::IoOnCommit(3));
        let signed = |job: &TestJob| job.heads().inner.latest().unwrap().is_some_and(|(e, _)| e == Epoch(1));
        let (result, seen) = run(&job, &signed);
        assert_eq!(result.unwrap(), 1, "the triggered epoch is retried (not lost with the trigger) and signed");
        assert_eq!(job.heads().commits.load(Ordering::SeqCst), 4, "three failures, then the commit");
        let retrying: Vec<u32> = seen
            .iter()
            .filter_map(|s| match s {
                SchedulerState::Retrying { attempts, last_error, .. } => {
                    assert!(last_error.contains("no space left on device"), "{last_error}");
                    Some(*attempts)
                }
                _ => None,
            })
            .collect();
        assert_eq!(retrying, [1, 2, 3], "each retry is seen, counted");
        assert_eq!(seen.last(), Some(&SchedulerState::Running), "a success ends the retrying");
    }
}
