//! `keyfold monitor`: a witness. It follows a server's checkpoints, audits every epoch from its
//! epoch proof and archive (checking signatures, chain links, archive digests, the old root,
//! outcomes and the new root; `--replay`: replays every archive into a replica of the map
//! instead), and posts a
//! cosignature (SPEC section 6.3) on the latest checkpoint once it has verified it. It never
//! cosigns a head it could not verify: on a divergence it stops with the report and a non-zero
//! exit.
//!
//! With `--state DIR` it keeps its replay state across restarts (`DIR/monitor.state`, SPEC
//! appendix B), resumes from it instead of from genesis, and checks every checkpoint the server
//! serves against the last one it verified: a fork or a rollback is written to an evidence file
//! (both signed checkpoints) and ends the monitor with exit code 1.
//!
//! `keyfold keygen` makes the witness's key pair.

use crate::client::{Published, pinned_key};
use crate::error::CliError;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use clap::Args;
use keyfold_core::{Epoch, Hash, SigningKey, cosign};
use keyfold_core::{FlatEpochProof, Head};
use keyfold_epoch::{generate_key_files, load_signing_key};
use keyfold_verify::wire::CheckpointAnswer;
use keyfold_verify::{AuditState, Auditor, HeadChain, Replayer, ReplicaState, verify_latest};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

#[derive(Debug, Args)]
pub struct MonitorArgs {
    /// The server's base URL.
    #[arg(long, env = "KEYFOLD_SERVER")]
    server: String,
    /// The directory's public key you trust (a `signing.pub` file or base64).
    #[arg(long)]
    public_key: String,
    /// The directory's origin you trust.
    #[arg(long)]
    origin: String,
    /// This witness's private key (`keyfold keygen`; mode 0600).
    #[arg(long)]
    witness_key: PathBuf,
    /// This witness's name in its cosignature lines (the server must list it with --witness).
    #[arg(long)]
    witness_name: String,
    /// How often to look for new heads.
    #[arg(long, default_value_t = 1_000)]
    poll_ms: u64,
    /// Verify up to the current head, cosign it, then exit.
    #[arg(long)]
    once: bool,
    /// A directory for the replay state (`monitor.state`, created if absent) and evidence files:
    /// the monitor resumes from it after a restart and checks the server against the checkpoint
    /// it verified last. Without it nothing is saved: every start replays from genesis and only
    /// checks the server against what it verified since.
    #[arg(long, value_name = "DIR")]
    state: Option<PathBuf>,
    /// Where to write the evidence of a fork or rollback [default: DIR/evidence-<unix time>.txt
    /// with --state, else ./evidence-<unix time>.txt]. Never overwritten.
    #[arg(long, value_name = "FILE")]
    evidence: Option<PathBuf>,
    /// Save the state after at most this many newly verified epochs (and always at exit).
    #[arg(long, default_value_t = 1_000)]
    save_every_epochs: u64,
    /// Save the state at most this many seconds after an unsaved epoch was verified (and always
    /// at exit). With --replay each save writes the whole replica (every key's value): this
    /// bounds the writes.
    #[arg(long, default_value_t = 60)]
    save_interval_s: u64,
    /// Audit epochs from this one on; the heads before it are still verified as a chain (signature,
    /// link, time, log), their transitions are not. For a directory with a retention window
    /// (SPEC section 4.3), whose earlier archives and proofs are deleted: start at or after its
    /// `oldest_epoch` (`/v1/directory`). Not with --replay, which needs every archive.
    #[arg(long, conflicts_with = "replay")]
    from: Option<u64>,
    /// Replay every archive into a replica of the whole map instead of auditing each epoch from
    /// its epoch proof (memory and state grow with the directory; needed for epochs signed
    /// before epoch proofs were written). A state directory holds one kind of state.
    #[arg(long)]
    replay: bool,
}

/// What the monitor verifies epochs with: by default an [`Auditor`], which checks each epoch
/// from its epoch proof (SPEC section 3.2) and holds only the last verified checkpoint; with
/// `--replay` a [`Replayer`], which holds a replica of the whole map.
enum Follower {
    Audit(Box<Auditor>),
    Replay(Box<Replayer>),
}

impl Follower {
    /// The last verified head, its checkpoint, log and signer.
    fn chain(&self) -> &HeadChain {
        match self {
            Follower::Audit(a) => a.chain(),
            Follower::Replay(r) => r.chain(),
        }
    }

    fn head(&self) -> &Head {
        self.chain().head()
    }

    /// The state file's bytes (SPEC appendix B).
    fn state_bytes(&self) -> Result<Vec<u8>, CliError> {
        match self {
            Follower::Audit(a) => Ok(a.snapshot().encode()),
            Follower::Replay(r) => {
                let state = r.snapshot().map_err(|e| CliError::store_in("reading the replica to save it", e))?;
                Ok(state.encode())
            }
        }
    }
}

#[derive(Debug, Args)]
pub struct KeygenArgs {
    /// Where to write the private key (created with mode 0600; must not exist).
    #[arg(long)]
    private: PathBuf,
    /// Where to write the public key (base64).
    #[arg(long)]
    public: PathBuf,
}

/// A key file that cannot be written (it exists, say: keys are never overwritten) is the user's
/// to fix (2).
pub fn keygen(args: &KeygenArgs) -> Result<(), CliError> {
    let public = generate_key_files(&args.private, &args.public).map_err(CliError::usage)?;
    println!("public key (base64): {}", B64.encode(public.as_bytes()));
    Ok(())
}

/// What one monitor run works with.
struct Witness<'a> {
    args: &'a MonitorArgs,
    server: Published,
    public: [u8; 32],
    key: SigningKey,
    /// Set on SIGINT or SIGTERM: the monitor saves its state and exits 0 between two epochs.
    stop: Arc<AtomicBool>,
}

/// A head that does not replay, or a checkpoint that conflicts with a verified one, is exit 1
/// (nothing more is cosigned); a server that cannot be reached is 3, one that refuses a request
/// (a cosignature by a witness it does not list, say) 4. The state is saved at exit whatever
/// the outcome: every epoch in it was verified.
pub fn monitor(args: &MonitorArgs) -> Result<(), CliError> {
    crate::serve::init_logging(crate::serve::LogFormat::Text)?;
    let public = pinned_key(&args.public_key)?;
    let key = load_signing_key(&args.witness_key).map_err(CliError::usage)?;
    keyfold_core::check_witness_name(&args.witness_name)
        .map_err(|e| CliError::usage(format!("--witness-name: {e}")))?;
    let witness = Witness { args, server: Published::new(&args.server)?, public, key, stop: stop_on_signal() };
    let store = args.state.as_deref().map(StateDir::open).transpose()?;
    let (mut follower, resumed) = witness.start(store.as_ref())?;
    let first = if resumed { follower.head().epoch.next() } else { Epoch(0) };
    let mut saver = Saver::new(store.as_ref(), args, resumed.then(|| follower.head().epoch));
    let result = witness.follow(&mut follower, &mut saver);
    // Every epoch the follower holds was verified, whatever stopped it (a replica that a failed
    // replay left half-advanced refuses to be saved: `Replayer::snapshot`).
    let saved = saver.save(&follower);
    let cosigned = match (result, saved) {
        (Ok(cosigned), saved) => saved.map(|()| cosigned)?,
        (Err(e), Err(not_saved)) => {
            tracing::warn!("the replay state was not saved: {not_saved}");
            return Err(e);
        }
        (Err(e), Ok(())) => return Err(e),
    };
    let last = follower.head().epoch;
    let verified = if last < first { format!("no epoch after {last}") } else { format!("epochs {first}..={last}") };
    println!("verified {verified} of {} and cosigned {cosigned} heads as {}", args.origin, args.witness_name);
    Ok(())
}

impl Witness<'_> {
    /// The follower to start from: the saved state when there is one (checked, never trusted:
    /// [`Auditor::resume`], [`Replayer::resume`]), else the server's genesis head.
    fn start(&self, store: Option<&StateDir>) -> Result<(Follower, bool), CliError> {
        let saved = match store {
            Some(store) => store.load()?.map(|bytes| (store, bytes)),
            None => None,
        };
        if let Some((store, bytes)) = saved {
            let refused = |e: keyfold_verify::ResumeError| {
                let path = store.file().display().to_string();
                CliError::verification(format!(
                    "{path}: {e}; not resuming from it (move it away to verify from genesis)"
                ))
            };
            let (origin, public) = (&self.args.origin, &self.public);
            let follower = if self.args.replay {
                let state = ReplicaState::decode(&bytes).map_err(refused)?;
                let shard_bits = self.server.shard_bits()?;
                Follower::Replay(Box::new(Replayer::resume(state, origin, public, shard_bits).map_err(refused)?))
            } else {
                let state = AuditState::decode(&bytes).map_err(refused)?;
                Follower::Audit(Box::new(Auditor::resume(state, origin, public).map_err(refused)?))
            };
            tracing::info!(state = %store.file().display(), "resuming at epoch {}", follower.head().epoch);
            return Ok((follower, true));
        }
        let genesis = self.server.text("/v1/heads/0")?;
        let refused = |d| CliError::verification(format!("divergence, nothing cosigned: {d}"));
        let follower = if self.args.replay {
            let shard_bits = self.server.shard_bits()?;
            let replayer = Replayer::from_genesis(&genesis, &self.args.origin, &self.public, shard_bits);
            Follower::Replay(Box::new(replayer.map_err(refused)?))
        } else {
            Follower::Audit(Box::new(
                Auditor::from_genesis(&genesis, &self.args.origin, &self.public).map_err(refused)?,
            ))
        };
        Ok((follower, false))
    }

    /// Checks the latest checkpoint against the last verified one, replays up to it, and cosigns
    /// a checkpoint it verified in this run once the server still serves it as the latest (a
    /// cosignature says: this was the latest when I signed). Past epochs are never cosigned.
    /// Returns how many checkpoints it cosigned.
    fn follow(&self, follower: &mut Follower, saver: &mut Saver<'_>) -> Result<u64, CliError> {
        let mut cosigned = 0;
        let mut uncosigned = false; // the follower's head was verified in this run, not cosigned yet
        loop {
            let latest = self.check_latest(follower)?;
            if latest.size == follower.chain().log().size() {
                if uncosigned {
                    self.cosign(follower)?;
                    (cosigned, uncosigned) = (cosigned + 1, false);
                }
                saver.due(follower)?;
                if self.args.once || !self.pause() {
                    return Ok(cosigned);
                }
                continue;
            }
            while follower.chain().log().size() < latest.size {
                self.replay_next(follower)?;
                saver.due(follower)?;
                if self.stop.load(Ordering::SeqCst) {
                    return Ok(cosigned);
                }
            }
            // The head replayed at the checked size must be the checked checkpoint itself.
            if follower.chain().log().root() != latest.root {
                let what = format!("same size {}, different roots", latest.size);
                return Err(self.evidence(follower.chain().checkpoint_note(), &latest, &what));
            }
            uncosigned = true;
        }
    }

    /// Sleeps `--poll-ms`, waking early on a stop signal; false when the monitor is to stop.
    fn pause(&self) -> bool {
        let until = Instant::now() + Duration::from_millis(self.args.poll_ms);
        while Instant::now() < until {
            if self.stop.load(Ordering::SeqCst) {
                return false;
            }
            std::thread::sleep(Duration::from_millis(50).min(until.saturating_duration_since(Instant::now())));
        }
        !self.stop.load(Ordering::SeqCst)
    }

    /// Verifies the epoch after the follower's head: audits it from its epoch proof, or replays
    /// its archive.
    fn replay_next(&self, follower: &mut Follower) -> Result<(), CliError> {
        let epoch = follower.head().epoch.next();
        let note = self.server.text(&format!("/v1/heads/{}", epoch.0))?;
        if let Follower::Audit(auditor) = follower
            && epoch.0 < self.args.from.unwrap_or(0)
        {
            let head = auditor.skip(&note).map_err(|d| {
                CliError::verification(format!("divergence at epoch {epoch}, not cosigned; stopping: {d}"))
            })?;
            tracing::info!(epoch = head.epoch.0, "head verified (before --from: not audited)");
            return Ok(());
        }
        let archive = self.server.bytes(&format!("/v1/epochs/{}/archive", epoch.0))?;
        let verified = match follower {
            Follower::Replay(replayer) => replayer.replay(&note, archive),
            Follower::Audit(auditor) => {
                let bytes = self.server.bytes(&format!("/v1/epochs/{}/proof", epoch.0))?;
                FlatEpochProof::decode(&bytes)
                    .map_err(|e| auditor.undecodable(e))
                    .and_then(|proof| auditor.audit(&note, archive, &proof))
                    .map(|(head, _)| head)
            }
        };
        let head = verified
            .map_err(|d| CliError::verification(format!("divergence at epoch {epoch}, not cosigned; stopping: {d}")))?;
        tracing::info!(epoch = head.epoch.0, mutations = head.counts.mutations, "verified");
        Ok(())
    }

    /// Posts a cosignature of the follower's checkpoint, with the current time.
    fn cosign(&self, follower: &Follower) -> Result<(), CliError> {
        let epoch = follower.head().epoch;
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
        let line = cosign(follower.chain().checkpoint_note(), &self.args.witness_name, &self.key, now)
            .map_err(|e| CliError::verification(format!("epoch {epoch}: cannot cosign the head: {e}")))?;
        let url = format!("{}/v1/heads/{}/cosignatures", self.server.base, epoch.0);
        let request = format!("POST {url}");
        let response =
            self.server.client.post(&url).body(line).send().map_err(|e| CliError::transport(&request, &e))?;
        let status = response.status();
        if !status.is_success() {
            return Err(CliError::refused(request, status, &response.text().unwrap_or_default()));
        }
        tracing::info!(epoch = epoch.0, "cosigned the latest checkpoint");
        Ok(())
    }
}

/// The server's latest checkpoint, signed by the pinned key and consistent with the last one
/// this monitor verified.
struct Latest {
    note: String,
    size: u64,
    root: Hash,
    request: String,
    consistency: Vec<Hash>,
}

impl Witness<'_> {
    /// Fetches the latest checkpoint with a consistency proof from the verified size and checks
    /// it: a rollback (smaller size), another root at the same size or a proof that fails is a
    /// conflict between two signed checkpoints: the evidence is written and the monitor stops.
    fn check_latest(&self, follower: &Follower) -> Result<Latest, CliError> {
        let (size, root) = (follower.chain().log().size(), follower.chain().log().root());
        let path = format!("/v1/checkpoint?from={size}");
        let request = format!("GET {}{path}", self.server.base);
        let body = self.server.text(&path)?;
        let answer: CheckpointAnswer = serde_json::from_str(&body)
            .map_err(|e| CliError::verification(format!("{request}: not a checkpoint answer: {e}")))?;
        let rollovers = keyfold_verify::decode_rollovers(&answer.rollovers)
            .map_err(|e| CliError::verification(format!("{request}: {e}")))?;
        let key = follower.chain().next_signer();
        let (signed, _, _) = verify_latest(&self.args.origin, &key, size, &answer.checkpoint, &rollovers)
            .map_err(|e| CliError::verification(format!("{request}: the checkpoint does not verify: {e}")))?;
        let proof = answer.consistency.unwrap_or_default();
        let consistency = proof.iter().map(|h| decode_hash(h, &request)).collect::<Result<Vec<_>, _>>()?;
        let (new_size, new_root) = (signed.checkpoint.size, signed.checkpoint.root);
        let latest = Latest { note: answer.checkpoint, size: new_size, root: new_root, request, consistency };
        let conflict = if new_size < size {
            Some(format!("rollback: size {new_size} is smaller than the verified size {size}"))
        } else if new_size == size {
            (new_root != root).then(|| format!("same size {size}, different roots"))
        } else {
            keyfold_core::log::verify_consistency(size, new_size, &root, &new_root, &latest.consistency)
                .err()
                .map(|e| format!("the consistency proof from size {size} to size {new_size} does not verify: {e}"))
        };
        match conflict {
            Some(what) => Err(self.evidence(follower.chain().checkpoint_note(), &latest, &what)),
            None => Ok(latest),
        }
    }

    /// Writes the evidence file (both signed checkpoints verbatim, what conflicts, the proof) and
    /// returns the error that stops the monitor (exit 1), naming the file.
    fn evidence(&self, verified: &str, latest: &Latest, what: &str) -> CliError {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
        let text = evidence_text(&EvidenceOf { origin: &self.args.origin, now, verified, latest, what });
        let conflict = format!("{what}: the server's checkpoint conflicts with the one this monitor verified");
        match self.write_evidence(now, text.as_bytes()) {
            Ok(path) => CliError::verification(format!(
                "{conflict}; evidence written to {}: nothing more is cosigned",
                path.display()
            )),
            Err((path, e)) => CliError::verification(format!(
                "{conflict}, but the evidence could not be written to {}: {e}; the two checkpoints follow\n{text}",
                path.display()
            )),
        }
    }

    /// Writes a new evidence file: `--evidence`, else `evidence-<now>.txt` in the state
    /// directory (or the current one), `-1`, `-2`, ... added when that name is taken.
    fn write_evidence(&self, now: u64, bytes: &[u8]) -> Result<PathBuf, (PathBuf, std::io::Error)> {
        if let Some(path) = &self.args.evidence {
            return write_new_file(path, bytes).map(|()| path.clone()).map_err(|e| (path.clone(), e));
        }
        let dir = self.args.state.clone().unwrap_or_else(|| PathBuf::from("."));
        let mut n = 0;
        loop {
            let suffix = if n == 0 { String::new() } else { format!("-{n}") };
            let path = dir.join(format!("evidence-{now}{suffix}.txt"));
            match write_new_file(&path, bytes) {
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && n < 1000 => n += 1,
                result => return result.map(|()| path.clone()).map_err(|e| (path, e)),
            }
        }
    }
}

struct EvidenceOf<'a> {
    origin: &'a str,
    now: u64,
    verified: &'a str,
    latest: &'a Latest,
    what: &'a str,
}

/// The evidence file (SPEC appendix B): a header, then each signed note verbatim after a line
/// giving its length in bytes, so a reader cuts them exactly; then the consistency proof served.
fn evidence_text(e: &EvidenceOf<'_>) -> String {
    let mut text = format!(
        "keyfold monitor evidence v1\nconflict: {}\norigin: {}\ndetected: {} (unix seconds)\n\n",
        e.what, e.origin, e.now
    );
    text.push_str(&format!("verified checkpoint ({} bytes), verified by this monitor:\n", e.verified.len()));
    text.push_str(e.verified);
    let latest = e.latest;
    text.push_str(&format!("\nserved checkpoint ({} bytes), answer to {}:\n", latest.note.len(), latest.request));
    text.push_str(&latest.note);
    text.push_str(&format!("\nconsistency proof served ({} hashes, base64):\n", latest.consistency.len()));
    for hash in &latest.consistency {
        text.push_str(&B64.encode(hash.0));
        text.push('\n');
    }
    text
}

fn decode_hash(text: &str, request: &str) -> Result<Hash, CliError> {
    let bytes = B64.decode(text).ok().and_then(|b| <[u8; 32]>::try_from(b).ok());
    bytes.map(Hash).ok_or_else(|| CliError::verification(format!("{request}: a proof hash is not 32 bytes of base64")))
}

/// Creates `path` (never replacing a file) with `bytes`, durably. If the monitor dies while
/// writing, the file may be partial; the state still holds the verified checkpoint, so the next
/// start finds the conflict again and writes a whole file under a new name.
fn write_new_file(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut file = std::fs::OpenOptions::new().write(true).create_new(true).open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

/// The state directory: one file, `monitor.state`, replaced atomically at each save.
struct StateDir {
    dir: PathBuf,
}

const STATE_FILE: &str = "monitor.state";
const STATE_TEMP: &str = "monitor.state.tmp";

impl StateDir {
    fn open(dir: &Path) -> Result<StateDir, CliError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| CliError::file(format!("--state {}: cannot create it: {e}", dir.display()), &e))?;
        Ok(StateDir { dir: dir.to_owned() })
    }

    fn file(&self) -> PathBuf {
        self.dir.join(STATE_FILE)
    }

    /// The saved bytes; `None` before the first save.
    fn load(&self) -> Result<Option<Vec<u8>>, CliError> {
        match std::fs::read(self.file()) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(CliError::file(format!("{}: {e}", self.file().display()), &e)),
        }
    }

    /// Replaces the state with `bytes` so that a crash at any point leaves either the old state
    /// or the new one, whole.
    fn save(&self, bytes: &[u8]) -> Result<(), CliError> {
        let temp = self.dir.join(STATE_TEMP);
        let failed = |what: &str, e: std::io::Error| {
            CliError::file(format!("saving the monitor state in {}: {what}: {e}", self.dir.display()), &e)
        };
        // Dying before the rename leaves `monitor.state` as it was (the last save) and a partial
        // temp file, which nothing reads and the next save truncates.
        let mut file = std::fs::File::create(&temp).map_err(|e| failed("create", e))?;
        file.write_all(bytes).map_err(|e| failed("write", e))?;
        file.sync_all().map_err(|e| failed("fsync", e))?;
        // The new bytes are durable before the rename, so after it a crash (even a power loss
        // before the directory's fsync) leaves the old state or the new one, never a mixture.
        std::fs::rename(&temp, self.file()).map_err(|e| failed("rename", e))?;
        // Makes the rename durable: from here a restart resumes from the new state.
        std::fs::File::open(&self.dir).and_then(|d| d.sync_all()).map_err(|e| failed("fsync the directory", e))
    }
}

/// When to save: the whole replica is written each time, so not after every epoch but after
/// `--save-every-epochs` new epochs or `--save-interval-s` seconds, and at exit. A crash loses
/// at most that much verification, which the restart redoes.
struct Saver<'a> {
    store: Option<&'a StateDir>,
    saved: Option<Epoch>,
    since: Instant,
    every_epochs: u64,
    interval: Duration,
}

impl<'a> Saver<'a> {
    /// `resumed`: the epoch of the state resumed from, already saved.
    fn new(store: Option<&'a StateDir>, args: &MonitorArgs, resumed: Option<Epoch>) -> Saver<'a> {
        Saver {
            store,
            saved: resumed,
            since: Instant::now(),
            every_epochs: args.save_every_epochs.max(1),
            interval: Duration::from_secs(args.save_interval_s),
        }
    }

    /// Saves if enough epochs or time went by since the last save.
    fn due(&mut self, follower: &Follower) -> Result<(), CliError> {
        let epoch = follower.head().epoch;
        let unsaved = self.saved.map_or(epoch.0 + 1, |saved| epoch.0 - saved.0);
        if unsaved >= self.every_epochs || (unsaved > 0 && self.since.elapsed() >= self.interval) {
            self.save(follower)?;
        }
        Ok(())
    }

    /// Saves the follower's state unless it is the one saved last.
    fn save(&mut self, follower: &Follower) -> Result<(), CliError> {
        let Some(store) = self.store else { return Ok(()) };
        let epoch = follower.head().epoch;
        if self.saved == Some(epoch) {
            return Ok(());
        }
        store.save(&follower.state_bytes()?)?;
        (self.saved, self.since) = (Some(epoch), Instant::now());
        tracing::info!(epoch = epoch.0, state = %store.file().display(), "saved the replay state");
        Ok(())
    }
}

/// A flag set on SIGINT or SIGTERM, so that the monitor saves its state before it exits. A
/// signal that comes before the handler is installed ends the process as before: the state of
/// the last save is still whole.
fn stop_on_signal() -> Arc<AtomicBool> {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&stop);
    std::thread::spawn(move || {
        let Ok(runtime) = tokio::runtime::Builder::new_current_thread().enable_all().build() else { return };
        runtime.block_on(async {
            let term = async {
                match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                    Ok(mut signal) => {
                        signal.recv().await;
                    }
                    Err(_) => std::future::pending().await,
                }
            };
            tokio::select! { _ = tokio::signal::ctrl_c() => {}, () = term => {} }
        });
        flag.store(true, Ordering::SeqCst);
    });
    stop
}
