//! Signed heads and the queue cursor in FoundationDB, committed together with a compare-and-set
//! on the last epoch inside one transaction that also checks the epoch-writer lease.

use crate::error::{abort, epoch_error};
use crate::keys::Layout;
use crate::lease::{EpochWriterLease, check};
use foundationdb::options::StreamingMode;
use foundationdb::{Database, FdbBindingError, RangeOption, RetryableTransaction};
use futures::executor::block_on;
use keyfold_core::Epoch;
use keyfold_epoch::heads::check_next;
use keyfold_epoch::{EpochError, HeadStore};
use keyfold_ingest::Position;
use std::sync::Arc;

/// The head store of one directory.
pub struct FdbHeadStore {
    db: Arc<Database>,
    layout: Layout,
    lease: Option<Arc<EpochWriterLease>>,
}

impl std::fmt::Debug for FdbHeadStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FdbHeadStore").finish_non_exhaustive()
    }
}

fn note_from(bytes: &[u8], epoch: Epoch) -> Result<String, FdbBindingError> {
    String::from_utf8(bytes.to_vec())
        .map_err(|_| abort(EpochError::corrupt(format!("the stored head of epoch {epoch} is not UTF-8"))))
}

impl FdbHeadStore {
    pub fn new(db: Arc<Database>, layout: Layout, lease: Option<Arc<EpochWriterLease>>) -> FdbHeadStore {
        FdbHeadStore { db, layout, lease }
    }

    fn run<T>(&self, f: impl AsyncFn(&RetryableTransaction) -> Result<T, FdbBindingError>) -> Result<T, EpochError> {
        block_on(self.db.run(|trx, _| {
            let f = &f;
            async move { f(&trx).await }
        }))
        .map_err(epoch_error)
    }

    /// The newest head in `trx`'s view; `snapshot` false puts the range in the read set (the
    /// compare-and-set of [`HeadStore::commit`]).
    async fn latest_in(
        &self,
        trx: &RetryableTransaction,
        snapshot: bool,
    ) -> Result<Option<(Epoch, String)>, FdbBindingError> {
        let (begin, end) = self.layout.heads_range();
        let range = RangeOption {
            limit: Some(1),
            reverse: true,
            mode: StreamingMode::Exact,
            ..RangeOption::from((begin, end))
        };
        let values = trx.get_range(&range, 1, snapshot).await?;
        let Some(kv) = values.first() else { return Ok(None) };
        let epoch = self
            .layout
            .head_epoch(kv.key())
            .ok_or_else(|| abort(EpochError::corrupt("a head key has the wrong length")))?;
        Ok(Some((epoch, note_from(kv.value(), epoch)?)))
    }
}

impl HeadStore for FdbHeadStore {
    fn latest(&self) -> Result<Option<(Epoch, String)>, EpochError> {
        self.run(async |trx| self.latest_in(trx, true).await)
    }

    fn get(&self, epoch: Epoch) -> Result<Option<String>, EpochError> {
        self.run(async |trx| match trx.get(&self.layout.head(epoch), true).await? {
            Some(v) => Ok(Some(note_from(&v, epoch)?)),
            None => Ok(None),
        })
    }

    fn cursor(&self) -> Result<Position, EpochError> {
        self.run(async |trx| match trx.get(&self.layout.heads_cursor(), true).await? {
            Some(v) => <[u8; 8]>::try_from(&v[..])
                .map(|b| Position(u64::from_be_bytes(b)))
                .map_err(|_| abort(EpochError::corrupt("the cursor is not 8 bytes"))),
            None => Ok(Position(0)),
        })
    }

    fn commit(&self, epoch: Epoch, note: &str, cursor: Position) -> Result<(), EpochError> {
        let lease = self.lease.as_deref();
        self.run(async |trx| {
            check(lease, trx).await?;
            let latest = self.latest_in(trx, false).await?;
            // The same head again is the retry of a commit whose outcome was unknown: done.
            if let Some((e, stored)) = &latest
                && *e == epoch
                && stored == note
            {
                return Ok(());
            }
            check_next(latest.map(|(e, _)| e), epoch).map_err(abort)?; // the compare-and-set
            trx.set(&self.layout.head(epoch), note.as_bytes());
            trx.set(&self.layout.heads_cursor(), &cursor.0.to_be_bytes());
            // Recovery if the process dies right after this commit: the head is published; the
            // next start removes the queue entries the cursor covers (EpochJob::open).
            Ok(())
        })
    }
}
