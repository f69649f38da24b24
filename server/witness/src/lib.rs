//! A C2SP tlog-witness (<https://c2sp.org/tlog-witness>): it follows a configured list of logs
//! and cosigns (C2SP tlog-cosignature, `cosignature/v1`) each new checkpoint of a log only if it
//! is consistent with the latest checkpoint it cosigned for that log. So a log that showed two
//! views of itself to two parties cannot get both cosigned by the same witness.
//!
//! [`Witness::add_checkpoint`] is the protocol; [`router`] serves it over HTTP (`POST
//! /add-checkpoint`) with read routes for monitors; [`WitnessStore`] is its durable state
//! (`witness.redb`). A validly signed checkpoint that contradicts what the witness cosigned is
//! refused and kept as [`Evidence`].

mod body;
mod error;
mod http;
mod store;

pub use body::MAX_PROOF_LINES;
pub use error::{RETRY_AFTER_SECS, WitnessError};
pub use http::router;
pub use store::{Evidence, EvidenceCounts, MAX_EVIDENCE_RECORDS, WitnessStore};

use body::AddCheckpoint;
use keyfold_core::{
    Checkpoint, Hash, SigningKey, VerifyingKey, check_witness_name, cosign, log, parse_vkey, split_note,
    verify_note_signature,
};
use store::Decision;

/// Largest `add-checkpoint` body accepted, in bytes: a checkpoint is at most 4 KiB
/// ([`keyfold_core::MAX_CHECKPOINT_TEXT_BYTES`]) and a proof 63 lines of 45 bytes, which leaves
/// room for a few dozen signature lines.
pub const MAX_BODY_BYTES: usize = 16 << 10;

/// A log the witness follows: its origin and one key it signs checkpoints with. A log with
/// several keys (during a rotation) is listed once per key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogKey {
    pub origin: String,
    /// The key's name in signature lines (C2SP signed-note); usually the origin.
    pub name: String,
    pub key: VerifyingKey,
}

impl LogKey {
    /// The log `origin` with the key of a C2SP verifier key (`name+hexid+base64`).
    pub fn from_vkey(origin: &str, vkey: &str) -> Result<LogKey, WitnessError> {
        let (name, key) =
            parse_vkey(vkey).map_err(|e| WitnessError::Config(format!("the key of log {origin:?}: {e}")))?;
        Ok(LogKey { origin: origin.to_owned(), name, key })
    }
}

/// Who the witness is and which logs it follows.
#[derive(Debug, Clone)]
pub struct WitnessConfig {
    /// The witness's name in its cosignature lines (a C2SP key name).
    pub name: String,
    pub signing_key: SigningKey,
    pub logs: Vec<LogKey>,
}

/// A checkpoint note whose signature by a trusted key of its log verified.
#[derive(Debug)]
struct Signed<'a> {
    checkpoint: Checkpoint,
    text: &'a str,
    /// The note's signature lines that verified against the log's keys (unknown ones dropped).
    log_signatures: String,
}

/// The witness: its configuration and its store.
#[derive(Debug)]
pub struct Witness {
    config: WitnessConfig,
    store: WitnessStore,
}

impl Witness {
    /// Checks the configuration: a valid witness name, and valid log origins.
    pub fn new(config: WitnessConfig, store: WitnessStore) -> Result<Witness, WitnessError> {
        check_witness_name(&config.name).map_err(|e| WitnessError::Config(e.to_string()))?;
        for entry in &config.logs {
            keyfold_core::check_origin(&entry.origin)
                .map_err(|e| WitnessError::Config(format!("log origin {:?}: {e}", entry.origin)))?;
        }
        Ok(Witness { config, store })
    }

    pub fn name(&self) -> &str {
        &self.config.name
    }

    pub fn store(&self) -> &WitnessStore {
        &self.store
    }

    /// The latest checkpoint note cosigned for `origin`, with this witness's cosignature line.
    pub fn latest(&self, origin: &str) -> Result<Option<String>, WitnessError> {
        self.store.latest(origin)
    }

    /// Handles an `add-checkpoint` request body (C2SP tlog-witness) at `now_secs` (seconds since
    /// the Unix epoch, the cosignature's time). Returns the cosignature line(s), each ending in
    /// `\n`, once the checkpoint is durably stored as the origin's latest.
    pub fn add_checkpoint(&self, body: &[u8], now_secs: u64) -> Result<String, WitnessError> {
        if body.len() > MAX_BODY_BYTES {
            return Err(WitnessError::TooLarge { max_bytes: MAX_BODY_BYTES });
        }
        let request = body::parse(body)?;
        let signed = self.verify(request.note)?;
        let size = signed.checkpoint.size;
        if request.old_size > size {
            return Err(WitnessError::OldSizeTooLarge { old_size: request.old_size, size });
        }
        // `parse` checked that the body is UTF-8.
        let body = std::str::from_utf8(body).expect("parsed as UTF-8");
        self.store
            .compare_and_set(&signed.checkpoint.origin, |stored| self.decide(stored, &request, &signed, body, now_secs))
    }

    /// The note's checkpoint, if a trusted key of its origin signed it (404 for an unknown
    /// origin, 403 when no signature verifies; signatures by unknown keys are ignored).
    fn verify<'a>(&self, note: &'a str) -> Result<Signed<'a>, WitnessError> {
        let malformed = |e: keyfold_core::HeadError| WitnessError::Malformed(e.to_string());
        let (text, _) = split_note(note).map_err(malformed)?;
        let checkpoint = Checkpoint::parse(text).map_err(malformed)?;
        let mut keys: Vec<LogKey> =
            self.config.logs.iter().filter(|k| k.origin == checkpoint.origin).cloned().collect();
        if keys.is_empty() {
            return Err(WitnessError::UnknownLog { origin: checkpoint.origin });
        }
        // Keys the log handed over to in checkpoints this witness cosigned (SPEC section 6.6).
        for vkey in self.store.rollover_keys(&checkpoint.origin)? {
            keys.push(LogKey::from_vkey(&checkpoint.origin, &vkey).map_err(|e| WitnessError::Corrupt(e.to_string()))?);
        }
        // `split_note` found "\n\n" right after the text: the signature lines follow it.
        let mut log_signatures = String::new();
        for line in note[text.len() + 1..].split_inclusive('\n') {
            // Each line on its own, so that a bad line cannot hide a good one with the same key id.
            let single = format!("{text}\n{line}");
            if keys.iter().any(|k| verify_note_signature(&single, &k.name, k.key.as_bytes()).is_ok()) {
                log_signatures.push_str(line);
            }
        }
        if log_signatures.is_empty() {
            return Err(WitnessError::Unsigned { origin: checkpoint.origin });
        }
        Ok(Signed { checkpoint, text, log_signatures })
    }

    /// Inside the store's write transaction: compares the request with the stored checkpoint and
    /// decides to cosign, to refuse, or to refuse and keep evidence.
    fn decide(
        &self,
        stored: Option<&str>,
        request: &AddCheckpoint<'_>,
        signed: &Signed<'_>,
        body: &str,
        now_secs: u64,
    ) -> Decision<String> {
        let latest = match stored.map(stored_checkpoint).transpose() {
            Ok(latest) => latest,
            Err(e) => return Decision::Refuse(e),
        };
        // Never cosigned: the empty tree, whose root is fixed (so a size-0 checkpoint is checked too).
        let (latest_size, latest_root) = latest.as_ref().map_or((0, log::empty_root()), |c| (c.size, c.root));
        let origin = signed.checkpoint.origin.clone();
        if request.old_size != latest_size {
            return Decision::Refuse(WitnessError::SizeConflict { origin, old_size: request.old_size, latest_size });
        }
        if let Err(error) = check_consistency(request, &signed.checkpoint, latest_root) {
            if !contradicts(&error, request.old_size, signed.checkpoint.size) {
                return Decision::Refuse(error);
            }
            let evidence = Evidence {
                origin,
                time_secs: now_secs,
                reason: error.to_string(),
                checkpoint: signed.text.to_owned(),
                request: body.to_owned(),
                contradicted: stored.map(str::to_owned),
            };
            return Decision::Contradiction(Box::new(evidence), error);
        }
        let note = format!("{}\n{}", signed.text, signed.log_signatures);
        let announced = match announced_key(&signed.checkpoint) {
            Ok(announced) => announced,
            Err(e) => return Decision::Refuse(e),
        };
        match cosign(&note, &self.config.name, &self.config.signing_key, now_secs) {
            Ok(line) => Decision::Store(format!("{note}{line}"), line, announced),
            Err(e) => Decision::Refuse(WitnessError::Config(format!("cannot cosign: {e}"))),
        }
    }
}

/// A key rollover (SPEC section 6.6): the verifier key in the checkpoint's `next-key <vkey>`
/// extension line, which must be an ed25519 key named after the origin. Signed by a key the
/// witness trusts for the log, it hands the log over to that key.
fn announced_key(checkpoint: &Checkpoint) -> Result<Option<String>, WitnessError> {
    let Some(vkey) = checkpoint.extension.lines().find_map(|line| line.strip_prefix("next-key ")) else {
        return Ok(None);
    };
    let (name, _) = parse_vkey(vkey).map_err(|e| WitnessError::Malformed(format!("next-key: {e}")))?;
    if name != checkpoint.origin {
        return Err(WitnessError::Malformed(format!(
            "next-key names {name:?}, not the origin {:?}",
            checkpoint.origin
        )));
    }
    Ok(Some(vkey.to_owned()))
}

/// A stored note's checkpoint (the store holds only notes this witness verified and cosigned).
fn stored_checkpoint(note: &str) -> Result<Checkpoint, WitnessError> {
    let corrupt = |e: keyfold_core::HeadError| WitnessError::Corrupt(format!("a stored checkpoint: {e}"));
    let (text, _) = split_note(note).map_err(corrupt)?;
    Checkpoint::parse(text).map_err(corrupt)
}

/// The spec's checks of the checkpoint against the latest cosigned tree (`latest_root` of size
/// `request.old_size`): equal sizes need equal roots (409) and an empty proof; from size 0 the
/// proof must be empty (there is nothing to prove); otherwise the RFC 6962 proof must verify (422).
fn check_consistency(
    request: &AddCheckpoint<'_>,
    checkpoint: &Checkpoint,
    latest_root: Hash,
) -> Result<(), WitnessError> {
    let (old_size, size, proof) = (request.old_size, checkpoint.size, &request.proof);
    let bad_proof = |reason: String| WitnessError::BadProof { old_size, size, reason };
    if old_size == size {
        if checkpoint.root != latest_root {
            return Err(WitnessError::RootConflict { origin: checkpoint.origin.clone(), size });
        }
        if !proof.is_empty() {
            return Err(bad_proof(format!("between equal sizes the proof is empty, not {} lines", proof.len())));
        }
        return Ok(());
    }
    if old_size == 0 {
        if !proof.is_empty() {
            return Err(bad_proof(format!("from size 0 the proof must be empty, not {} lines", proof.len())));
        }
        return Ok(());
    }
    log::verify_consistency(old_size, size, &latest_root, &checkpoint.root, proof).map_err(|e| bad_proof(e.to_string()))
}

/// Whether a refusal shows the log contradicting what was cosigned (so worth keeping as
/// evidence): a second root at the cosigned size, or a failed proof from the cosigned tree. A
/// non-empty proof where none is needed is only a malformed request.
fn contradicts(error: &WitnessError, old_size: u64, size: u64) -> bool {
    match error {
        WitnessError::RootConflict { .. } => true,
        WitnessError::BadProof { .. } => old_size > 0 && old_size < size,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(name: &str, origin: &str) -> WitnessConfig {
        let key = SigningKey::from_bytes(&[1; 32]).verifying_key();
        let logs = vec![LogKey { origin: origin.into(), name: origin.into(), key }];
        WitnessConfig { name: name.into(), signing_key: SigningKey::from_bytes(&[2; 32]), logs }
    }

    #[test]
    fn log_keys_come_from_vkeys_and_the_configuration_is_checked() {
        let key = SigningKey::from_bytes(&[1; 32]).verifying_key();
        let vkey = keyfold_core::vkey("example.com/log", &key);
        let log = LogKey::from_vkey("example.com/log", &vkey).unwrap();
        assert_eq!((log.name.as_str(), log.key), ("example.com/log", key));
        let wrong_id = vkey.replacen("example.com/log", "example.org/log", 1);
        assert!(matches!(LogKey::from_vkey("example.com/log", &wrong_id), Err(WitnessError::Config(_))));

        let dir = tempfile::tempdir().unwrap();
        let open = || WitnessStore::open(&dir.path().join("witness.redb")).unwrap();
        assert!(Witness::new(config("witness.example/w1", "example.com/log"), open()).is_ok());
        for (name, origin) in [("two words", "example.com/log"), ("witness.example/w1", "has space")] {
            let err = Witness::new(config(name, origin), open()).unwrap_err();
            assert!(matches!(err, WitnessError::Config(_)), "{name:?} {origin:?}: {err}");
        }
    }
}
