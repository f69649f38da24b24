//! Where signed heads and the queue cursor live. The head of epoch E and the cursor (the last
//! queue position epoch E consumed) are committed together, with a compare-and-set on the epoch,
//! so there is never a second head for one epoch.

use crate::error::EpochError;
use keyfold_core::Epoch;
use keyfold_ingest::Position;

use std::collections::BTreeMap;
use std::sync::Mutex;

pub trait HeadStore: Send + Sync {
    /// The newest committed head: its epoch and signed note.
    fn latest(&self) -> Result<Option<(Epoch, String)>, EpochError>;
    fn get(&self, epoch: Epoch) -> Result<Option<String>, EpochError>;
    /// The last queue position consumed by a committed epoch (0 before the first).
    fn cursor(&self) -> Result<Position, EpochError>;
    /// Stores the head of `epoch` and the cursor atomically. `epoch` must be the latest + 1
    /// (or 0 in an empty store); anything else is refused, never overwritten.
    fn commit(&self, epoch: Epoch, note: &str, cursor: Position) -> Result<(), EpochError>;
}

/// The compare-and-set rule every head store applies: the next head is for the latest epoch + 1.
pub fn check_next(latest: Option<Epoch>, epoch: Epoch) -> Result<(), EpochError> {
    let expected = latest.map_or(Epoch(0), Epoch::next);
    if epoch != expected {
        return Err(EpochError::OutOfOrder { store: "head store", expected, got: epoch });
    }
    Ok(())
}

/// Heads in memory, for tests.
#[derive(Debug, Default)]
pub struct MemoryHeadStore {
    inner: Mutex<(BTreeMap<u64, String>, Position)>,
}

impl MemoryHeadStore {
    fn lock(&self) -> std::sync::MutexGuard<'_, (BTreeMap<u64, String>, Position)> {
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl HeadStore for MemoryHeadStore {
    fn latest(&self) -> Result<Option<(Epoch, String)>, EpochError> {
        Ok(self.lock().0.last_key_value().map(|(e, n)| (Epoch(*e), n.clone())))
    }

    fn get(&self, epoch: Epoch) -> Result<Option<String>, EpochError> {
        Ok(self.lock().0.get(&epoch.0).cloned())
    }

    fn cursor(&self) -> Result<Position, EpochError> {
        Ok(self.lock().1)
    }

    fn commit(&self, epoch: Epoch, note: &str, cursor: Position) -> Result<(), EpochError> {
        let mut inner = self.lock();
        check_next(inner.0.last_key_value().map(|(e, _)| Epoch(*e)), epoch)?;
        inner.0.insert(epoch.0, note.to_owned());
        inner.1 = cursor;
        Ok(())
    }
}
