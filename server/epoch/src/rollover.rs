//! Key rollover on disk (SPEC section 6.6): the keys an epoch job signs with, and the files that
//! hold them in a data directory.
//!
//! - `signing.key` (0600) and `signing.pub`: the key that signs the next head;
//! - `signing.next.key` (0600): written by `keyfold rotate-key`; the next epoch's head announces it
//!   (`next-key`) under the current key, and once that head is committed it replaces `signing.key`;
//! - `signing.history.pub`: every key that signed before the current one, oldest first, one base64
//!   key per line: the last signed the announcement of the current key (so the job still verifies
//!   the latest head after the hand-over), the first signed the genesis head (where a full replay
//!   such as `keyfold fsck` starts).

use crate::error::EpochError;
use crate::keys::{load_public_key, load_signing_key};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use keyfold_core::{Head, SigningKey, VerifyingKey};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

pub const SIGNING_KEY_FILE: &str = "signing.key";
pub const PUBLIC_KEY_FILE: &str = "signing.pub";
pub const NEXT_KEY_FILE: &str = "signing.next.key";
pub const KEY_HISTORY_FILE: &str = "signing.history.pub";

fn key_error(path: &Path, message: impl Into<String>) -> EpochError {
    EpochError::Key { path: path.display().to_string(), message: message.into() }
}

/// What an epoch job signs with.
#[derive(Debug)]
pub struct JobKeys {
    /// Signs the next head.
    pub current: SigningKey,
    /// Announced by the next head, then the current key (a rotation in progress).
    pub next: Option<SigningKey>,
    /// Signed the announcement of `current` (after a rollover).
    pub previous: Option<VerifyingKey>,
    /// Where the keys live; `None` for a job whose keys exist only in memory (tests, benchmarks).
    pub files: Option<KeyFiles>,
}

impl From<SigningKey> for JobKeys {
    fn from(current: SigningKey) -> JobKeys {
        JobKeys { current, next: None, previous: None, files: None }
    }
}

impl JobKeys {
    /// Rewrites `signing.pub` from the current key if a hand-over was cut short before it.
    pub fn repair_public(&self) -> Result<(), EpochError> {
        self.files.as_ref().map_or(Ok(()), |files| files.repair_public(&self.current))
    }

    /// The keys the job may find a head of its directory signed by: the current one, and the one
    /// before it when the head announces the current one.
    pub fn signer_of(&self, head: &Head) -> [u8; 32] {
        let current = self.current.verifying_key();
        match (head.next_key, self.previous) {
            (Some(next), Some(previous)) if next == current => previous.to_bytes(),
            _ => current.to_bytes(),
        }
    }

    /// A key `rotate-key` wrote since the job started (checked once per epoch).
    pub fn refresh_next(&mut self) -> Result<(), EpochError> {
        if self.next.is_none()
            && let Some(files) = &self.files
        {
            self.next = files.next()?;
        }
        Ok(())
    }

    /// After the head that announced `announced` is committed (or found committed at start):
    /// the announced key becomes the current one. Refused when this job does not hold it.
    pub fn hand_over(&mut self, announced: &VerifyingKey) -> Result<(), EpochError> {
        if self.current.verifying_key() == *announced {
            return Ok(());
        }
        self.refresh_next()?;
        let Some(next) = self.next.as_ref().filter(|next| next.verifying_key() == *announced) else {
            return Err(EpochError::corrupt(format!(
                "the latest head announces the key {} for the next epoch, but {NEXT_KEY_FILE} does not hold it: \
                 restore that file (or the data directory) from a backup; signing with another key would fork \
                 the directory",
                B64.encode(announced.as_bytes())
            )));
        };
        if let Some(files) = &self.files {
            files.promote(&self.current.verifying_key(), next)?;
        }
        let next = self.next.take().expect("checked above");
        self.previous = Some(self.current.verifying_key());
        self.current = next;
        Ok(())
    }
}

/// The key files of a data directory.
#[derive(Debug, Clone)]
pub struct KeyFiles {
    dir: PathBuf,
}

impl KeyFiles {
    pub fn new(dir: &Path) -> KeyFiles {
        KeyFiles { dir: dir.to_path_buf() }
    }

    /// The job's keys as the files hold them.
    pub fn load(&self) -> Result<JobKeys, EpochError> {
        let current = load_signing_key(&self.dir.join(SIGNING_KEY_FILE))?;
        let previous = self.history()?.last().copied();
        Ok(JobKeys { current, next: self.next()?, previous, files: Some(self.clone()) })
    }

    /// The keys that signed before the current one, oldest first (empty before any rollover).
    pub fn history(&self) -> Result<Vec<VerifyingKey>, EpochError> {
        let path = self.dir.join(KEY_HISTORY_FILE);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(key_error(&path, format!("cannot read: {e}"))),
        };
        text.lines()
            .map(|line| {
                let bytes: [u8; 32] = B64
                    .decode(line)
                    .ok()
                    .and_then(|b| b.try_into().ok())
                    .ok_or_else(|| key_error(&path, "a line is not a base64 ed25519 public key"))?;
                VerifyingKey::from_bytes(&bytes).map_err(|_| key_error(&path, "not a valid ed25519 public key"))
            })
            .collect()
    }

    /// The key that signed the genesis head: where a replay of the whole history starts.
    pub fn genesis_public(&self) -> Result<[u8; 32], EpochError> {
        match self.history()?.first() {
            Some(first) => Ok(first.to_bytes()),
            None => load_public_key(&self.dir.join(PUBLIC_KEY_FILE)),
        }
    }

    fn next(&self) -> Result<Option<SigningKey>, EpochError> {
        let path = self.dir.join(NEXT_KEY_FILE);
        if !path.exists() {
            return Ok(None);
        }
        load_signing_key(&path).map(Some)
    }

    /// `keyfold rotate-key`: a new key in `signing.next.key`, for the next epoch to announce.
    /// Refused while another rotation is pending. Staged and renamed: the job never reads half a
    /// key. Recovery if the process dies right after the rename: the rotation is pending; before
    /// it: nothing happened (a staging file may be left and is overwritten next time).
    pub fn stage_next(&self) -> Result<VerifyingKey, EpochError> {
        let path = self.dir.join(NEXT_KEY_FILE);
        if path.exists() {
            return Err(key_error(&path, "a key rotation is already pending: the next epoch announces this key"));
        }
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(|e| key_error(&path, format!("no OS randomness: {e}")))?;
        let key = SigningKey::from_bytes(&seed);
        self.write_atomic(NEXT_KEY_FILE, &B64.encode(seed), 0o600)?;
        Ok(key.verifying_key())
    }

    /// The hand-over, after the announcing head is committed: the old public key appended to the
    /// history, the next key renamed over the current one, the public key file rewritten. Each
    /// step is atomic. Recovery if the process dies after any step: the next start finds the
    /// latest head announcing a key that `signing.key` is not yet (then `signing.next.key` still
    /// holds it and every step runs again; the history does not list the old key twice) or
    /// already is (then the history ends with the old key and `signing.pub` is rewritten from
    /// `signing.key`).
    fn promote(&self, old: &VerifyingKey, next: &SigningKey) -> Result<(), EpochError> {
        let mut history = self.history()?;
        if history.last() != Some(old) {
            history.push(*old);
        }
        let lines: Vec<String> = history.iter().map(|key| B64.encode(key.as_bytes())).collect();
        self.write_atomic(KEY_HISTORY_FILE, &lines.join("\n"), 0o644)?;
        let (staged, current) = (self.dir.join(NEXT_KEY_FILE), self.dir.join(SIGNING_KEY_FILE));
        std::fs::rename(&staged, &current).map_err(|e| key_error(&current, format!("cannot replace: {e}")))?;
        self.sync_dir()?;
        self.write_atomic(PUBLIC_KEY_FILE, &B64.encode(next.verifying_key().as_bytes()), 0o644)
    }

    /// `signing.pub` as `signing.key` says (after a hand-over cut short before its last step).
    fn repair_public(&self, current: &SigningKey) -> Result<(), EpochError> {
        let path = self.dir.join(PUBLIC_KEY_FILE);
        if load_public_key(&path).ok() == Some(current.verifying_key().to_bytes()) {
            return Ok(());
        }
        self.write_atomic(PUBLIC_KEY_FILE, &B64.encode(current.verifying_key().as_bytes()), 0o644)
    }

    fn write_atomic(&self, name: &str, base64: &str, mode: u32) -> Result<(), EpochError> {
        let (path, staging) = (self.dir.join(name), self.dir.join(format!(".{name}.tmp")));
        let fail = |e: std::io::Error| key_error(&path, format!("cannot write: {e}"));
        let _ = std::fs::remove_file(&staging);
        let mut file =
            std::fs::OpenOptions::new().write(true).create_new(true).mode(mode).open(&staging).map_err(fail)?;
        file.write_all(format!("{base64}\n").as_bytes()).and_then(|()| file.sync_all()).map_err(fail)?;
        std::fs::rename(&staging, &path).map_err(fail)?;
        self.sync_dir()
    }

    fn sync_dir(&self) -> Result<(), EpochError> {
        std::fs::File::open(&self.dir)
            .and_then(|dir| dir.sync_all())
            .map_err(|e| key_error(&self.dir, format!("cannot sync the directory: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::generate_key_files;

    #[test]
    fn a_rotation_stages_hands_over_and_survives_a_cut_hand_over() {
        let dir = tempfile::tempdir().unwrap();
        let files = KeyFiles::new(dir.path());
        let first = generate_key_files(&dir.path().join(SIGNING_KEY_FILE), &dir.path().join(PUBLIC_KEY_FILE)).unwrap();
        let next = files.stage_next().unwrap();
        assert!(files.stage_next().is_err(), "one rotation at a time");
        let mut keys = files.load().unwrap();
        assert_eq!(keys.next.as_ref().map(SigningKey::verifying_key), Some(next));
        let other = SigningKey::from_bytes(&[3; 32]).verifying_key();
        assert!(keys.hand_over(&other).unwrap_err().to_string().contains(NEXT_KEY_FILE));
        keys.hand_over(&next).unwrap();
        assert_eq!((keys.current.verifying_key(), keys.previous), (next, Some(first)));
        let reloaded = files.load().unwrap();
        assert_eq!(files.history().unwrap(), vec![first]);
        assert_eq!(files.genesis_public().unwrap(), first.to_bytes());
        assert_eq!(
            (reloaded.current.verifying_key(), reloaded.previous, reloaded.next.is_none()),
            (next, Some(first), true)
        );
        assert_eq!(load_public_key(&dir.path().join(PUBLIC_KEY_FILE)).unwrap(), next.to_bytes());
        // A hand-over cut before its last step: the public key file is repaired from the key.
        std::fs::write(dir.path().join(PUBLIC_KEY_FILE), format!("{}\n", B64.encode(first.as_bytes()))).unwrap();
        reloaded.repair_public().unwrap();
        assert_eq!(load_public_key(&dir.path().join(PUBLIC_KEY_FILE)).unwrap(), next.to_bytes());
    }
}
