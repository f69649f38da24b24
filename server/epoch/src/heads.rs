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
        return Err(EpochError::Corrupt(format!(
            "refusing to store a head for epoch {epoch}: the next head must be for epoch {expected}"
        )));
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

/// The head store conformance suite: the same cases against every [`HeadStore`].
pub mod conformance {
    use super::HeadStore;
    use crate::error::EpochError;
    use keyfold_core::Epoch;
    use keyfold_ingest::Position;

    /// A conformance case, run against the empty store its argument makes.
    pub type Case<H> = (&'static str, fn(fn() -> H));

    /// Every case, for harnesses that cannot use `#[test]`.
    pub fn cases<H: HeadStore>() -> Vec<Case<H>> {
        vec![("heads_conformance_compare_and_set", compare_and_set::<H>)]
    }

    /// Heads chain one epoch at a time; a second head for an epoch, a gap, or a head before the
    /// genesis is refused and changes nothing; the cursor moves with the head.
    pub fn compare_and_set<H: HeadStore>(make: fn() -> H) {
        let h = make();
        assert_eq!(h.latest().unwrap(), None);
        assert_eq!(h.cursor().unwrap(), Position(0));
        assert!(matches!(h.commit(Epoch(1), "one", Position(3)), Err(EpochError::Corrupt(_))), "gap before genesis");
        h.commit(Epoch(0), "genesis", Position(0)).unwrap();
        h.commit(Epoch(1), "one", Position(7)).unwrap();
        let again = h.commit(Epoch(1), "other", Position(9));
        assert!(matches!(again, Err(EpochError::Corrupt(_))), "never a second head for epoch 1");
        assert!(matches!(h.commit(Epoch(3), "three", Position(9)), Err(EpochError::Corrupt(_))), "gap");
        assert_eq!(h.latest().unwrap(), Some((Epoch(1), "one".to_owned())));
        assert_eq!(h.get(Epoch(0)).unwrap().as_deref(), Some("genesis"));
        assert_eq!(h.get(Epoch(1)).unwrap().as_deref(), Some("one"));
        assert_eq!(h.get(Epoch(2)).unwrap(), None);
        assert_eq!(h.cursor().unwrap(), Position(7), "a refused commit leaves the cursor");
    }

    /// Instantiates every case as a `#[test]` for the store made by `$make` (`fn() -> H`).
    /// Keep in step with [`cases`].
    #[macro_export]
    macro_rules! heads_conformance_tests {
        ($make:expr) => {
            #[test]
            fn heads_conformance_compare_and_set() {
                $crate::heads::conformance::compare_and_set($make);
            }
        };
    }
}

#[cfg(test)]
mod tests {
    mod memory {
        crate::heads_conformance_tests!(crate::MemoryHeadStore::default);
    }
}
