//! Witness cosignatures the server accepted, per epoch and witness (SPEC.md section 6.3). The
//! server verifies a line before it stores it; a later line from the same witness for the same
//! epoch replaces the earlier one only if its time is later: an older line never replaces a newer.

use crate::error::EpochError;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use keyfold_core::Epoch;
use std::collections::BTreeMap;
use std::sync::Mutex;

pub trait CosignatureStore: Send + Sync + std::fmt::Debug {
    /// Stores `line` (one verified `— name base64\n` line) as `witness`'s cosignature of `epoch`,
    /// durably, unless a line at least as new is stored (compared by their signed times, atomically).
    fn put(&self, epoch: Epoch, witness: &str, line: &str) -> Result<CosignaturePut, EpochError>;
    /// Every stored cosignature line of `epoch`, by witness name.
    fn get(&self, epoch: Epoch) -> Result<BTreeMap<String, String>, EpochError>;
}

/// What [`CosignatureStore::put`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CosignaturePut {
    /// The line is stored (there was none from this witness, or an older one).
    Stored,
    /// The stored line is kept: its time is not before the new line's. `identical`: the same line.
    Kept { stored_time_secs: u64, identical: bool },
}

/// The time (seconds) a cosignature line carries: bytes 4..12 of its base64 blob (SPEC 6.3).
/// `None` for a line that is not a cosignature line.
pub fn cosignature_time(line: &str) -> Option<u64> {
    let blob = B64.decode(line.trim_end().rsplit_once(' ')?.1).ok()?;
    Some(u64::from_be_bytes(blob.get(4..12)?.try_into().ok()?))
}

/// The put rule every store applies, given the line stored now.
pub fn decide(stored: Option<&str>, line: &str) -> CosignaturePut {
    // A stored line without a readable time cannot be newer: it is replaced.
    match stored.and_then(|s| cosignature_time(s).map(|t| (s, t))) {
        Some((s, stored_time_secs)) if cosignature_time(line).is_none_or(|t| t <= stored_time_secs) => {
            CosignaturePut::Kept { stored_time_secs, identical: s == line }
        }
        _ => CosignaturePut::Stored,
    }
}

/// In memory, for tests.
#[derive(Debug, Default)]
pub struct MemoryCosignatures {
    inner: Mutex<BTreeMap<(u64, String), String>>,
}

impl CosignatureStore for MemoryCosignatures {
    fn put(&self, epoch: Epoch, witness: &str, line: &str) -> Result<CosignaturePut, EpochError> {
        let mut inner = self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let key = (epoch.0, witness.to_owned());
        let put = decide(inner.get(&key).map(String::as_str), line);
        if put == CosignaturePut::Stored {
            inner.insert(key, line.to_owned());
        }
        Ok(put)
    }

    fn get(&self, epoch: Epoch) -> Result<BTreeMap<String, String>, EpochError> {
        let inner = self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let from = (epoch.0, String::new());
        Ok(inner
            .range(from..)
            .take_while(|((e, _), _)| *e == epoch.0)
            .map(|((_, w), l)| (w.clone(), l.clone()))
            .collect())
    }
}
