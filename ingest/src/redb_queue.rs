//! The embedded durable queue on redb, with group commit.
//!
//! Appenders hand their request to one committer thread and wait. The committer takes every
//! request waiting at that moment, writes them in one transaction and makes it durable with one
//! fsync, then answers each: many concurrent appenders share one fsync, and an append is
//! acknowledged only after its commit returned.

use crate::error::QueueError;
use crate::queue::{Entry, Marker, Position, Queue, Receipt, Slot, decode_entry, encode_entry};
use keyfold_core::{HashSuite, Mutation};
use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};
use std::path::Path;
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard};
use std::thread::JoinHandle;

const QUEUE: TableDefinition<u64, &[u8]> = TableDefinition::new("queue");
/// `next_position`: written with every append, so positions are never reused, even after every
/// entry was removed.
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const KEY_NEXT: &str = "next_position";
/// Requests one commit takes at most (bounds a transaction's size).
const MAX_REQUESTS_PER_COMMIT: usize = 4096;

/// How to open a [`RedbQueue`].
#[derive(Debug, Clone, Copy)]
pub struct RedbQueueOptions {
    pub suite: HashSuite,
    /// Pending mutations beyond which appends are refused with [`QueueError::Full`].
    pub max_depth: u64,
}

type Reply<T> = SyncSender<Result<T, QueueError>>;

enum Request {
    Append(Vec<Mutation>, Reply<Vec<Receipt>>),
    Marker(Marker, Reply<Position>),
}

#[derive(Debug)]
struct State {
    next: u64,
    depth: u64,
}

/// Opens the queue's database again after a failed write (see [`Shared::fail`]).
pub type Reopen = Box<dyn Fn() -> Result<Database, QueueError> + Send + Sync>;

struct Shared {
    /// `None` after a failed write, until a reopen succeeds.
    db: RwLock<Option<Database>>,
    reopen: Option<Reopen>,
    options: RedbQueueOptions,
    state: Mutex<State>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared").field("options", &self.options).field("state", &self.state).finish_non_exhaustive()
    }
}

/// The open database, read-locked for the length of one operation.
struct OpenDb<'a>(RwLockReadGuard<'a, Option<Database>>);

impl std::ops::Deref for OpenDb<'_> {
    type Target = Database;
    fn deref(&self) -> &Database {
        self.0.as_ref().expect("OpenDb holds an open database")
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The database, reopened first if a write failed since it was last open. Never call it while
    /// holding the state lock (reopening takes it).
    fn open_db(&self) -> Result<OpenDb<'_>, QueueError> {
        {
            let guard = self.db.read().unwrap_or_else(PoisonError::into_inner);
            if guard.is_some() {
                return Ok(OpenDb(guard));
            }
        }
        self.reopen_db()?;
        let guard = self.db.read().unwrap_or_else(PoisonError::into_inner);
        if guard.is_some() { Ok(OpenDb(guard)) } else { Err(QueueError::Io("the queue's storage is not open".into())) }
    }

    /// After a failed write redb refuses every later write through the same handle (after a
    /// failed fsync the page cache cannot be trusted). Drop the handle; the next operation reopens
    /// the file. Recovery: whatever the failed commit left is found by `recover` on reopen, exactly
    /// as after a crash; none of it was acknowledged.
    fn fail(&self) {
        *self.db.write().unwrap_or_else(PoisonError::into_inner) = None;
    }

    fn reopen_db(&self) -> Result<(), QueueError> {
        let Some(reopen) = &self.reopen else {
            return Err(QueueError::Io("the queue's storage failed; restart the process to recover".into()));
        };
        let mut slot = self.db.write().unwrap_or_else(PoisonError::into_inner);
        if slot.is_some() {
            return Ok(()); // another thread reopened it meanwhile
        }
        let db = reopen()?;
        let (next, depth) = recover(&db)?;
        let mut state = self.lock();
        (state.next, state.depth) = (next, depth);
        *slot = Some(db);
        Ok(())
    }
}

/// The durable embedded queue.
#[derive(Debug)]
pub struct RedbQueue {
    shared: Arc<Shared>,
    sender: Option<SyncSender<Request>>,
    committer: Option<JoinHandle<()>>,
}

impl RedbQueue {
    /// Opens (or creates) the queue file at `path`, recovering the next position and the depth
    /// from what is durably there.
    /// After a failed write (an I/O error, a full disk) the queue refuses appends until it has
    /// reopened the file, which it tries again at each later operation.
    pub fn open(path: &Path, options: RedbQueueOptions) -> Result<RedbQueue, QueueError> {
        let path = path.to_path_buf();
        let reopen: Reopen = Box::new(move || Database::create(&path).map_err(QueueError::io));
        RedbQueue::on_database(reopen()?, options, Some(reopen))
    }

    /// The queue over an already opened database (a custom storage backend: the fault injection
    /// of [`crate::faults`]); `reopen` opens it again after a failed write (without one, the
    /// queue stays failed until the process restarts).
    pub fn on_database(
        db: Database,
        options: RedbQueueOptions,
        reopen: Option<Reopen>,
    ) -> Result<RedbQueue, QueueError> {
        let (next, depth) = recover(&db)?;
        let state = Mutex::new(State { next, depth });
        let shared = Arc::new(Shared { db: RwLock::new(Some(db)), reopen, options, state });
        let (sender, receiver) = mpsc::sync_channel(MAX_REQUESTS_PER_COMMIT);
        let worker = Arc::clone(&shared);
        let committer = std::thread::Builder::new()
            .name("keyfold-queue-commit".into())
            .spawn(move || commit_loop(&worker, &receiver))
            .map_err(|e| QueueError::Io(Box::new(e)))?;
        Ok(RedbQueue { shared, sender: Some(sender), committer: Some(committer) })
    }

    fn call<T>(&self, make: impl FnOnce(Reply<T>) -> Request) -> Result<T, QueueError> {
        let (reply, answer) = mpsc::sync_channel(1);
        let sender = self.sender.as_ref().ok_or(QueueError::Closed)?;
        sender.send(make(reply)).map_err(|_| QueueError::Closed)?;
        answer.recv().map_err(|_| QueueError::Closed)?
    }
}

impl Drop for RedbQueue {
    fn drop(&mut self) {
        drop(self.sender.take()); // the committer finishes the requests it holds, then exits
        if let Some(handle) = self.committer.take() {
            let _ = handle.join();
        }
    }
}

/// Next position = the stored next position (and at least last key + 1); depth = mutation entries
/// present.
fn recover(db: &Database) -> Result<(u64, u64), QueueError> {
    let txn = db.begin_write().map_err(QueueError::io)?;
    drop(txn.open_table(QUEUE).map_err(QueueError::io)?);
    drop(txn.open_table(META).map_err(QueueError::io)?);
    txn.commit().map_err(QueueError::io)?;
    let read = db.begin_read().map_err(QueueError::io)?;
    let table = read.open_table(QUEUE).map_err(QueueError::io)?;
    let stored_next =
        read.open_table(META).map_err(QueueError::io)?.get(KEY_NEXT).map_err(QueueError::io)?.map_or(1, |v| v.value());
    let next = match table.last().map_err(QueueError::io)? {
        Some((key, _)) => stored_next.max(key.value() + 1),
        None => stored_next,
    };
    let mut depth = 0;
    for entry in table.iter().map_err(QueueError::io)? {
        let (_, value) = entry.map_err(QueueError::io)?;
        if value.value().first() == Some(&0) {
            depth += 1;
        }
    }
    Ok((next, depth))
}

fn commit_loop(shared: &Shared, receiver: &Receiver<Request>) {
    while let Ok(first) = receiver.recv() {
        let mut group = vec![first];
        while group.len() < MAX_REQUESTS_PER_COMMIT {
            match receiver.try_recv() {
                Ok(request) => group.push(request),
                Err(_) => break,
            }
        }
        commit_group(shared, group);
    }
}

/// One transaction for a group of requests. Requests refused for depth are answered at once and
/// take no positions.
fn commit_group(shared: &Shared, group: Vec<Request>) {
    let suite = shared.options.suite;
    let db = match shared.open_db() {
        Ok(db) => db,
        Err(e) => {
            let message = e.to_string();
            for request in group {
                let err = || QueueError::Io(message.clone().into());
                match request {
                    Request::Append(_, reply) => drop(reply.send(Err(err()))),
                    Request::Marker(_, reply) => drop(reply.send(Err(err()))),
                }
            }
            return;
        }
    };
    let mut state = shared.lock();
    let (mut next, mut depth) = (state.next, state.depth);
    let mut records: Vec<(u64, Vec<u8>)> = Vec::new();
    let mut answers: Vec<(Request, Option<Vec<Receipt>>, Option<Position>)> = Vec::new();
    for request in group {
        match &request {
            Request::Append(mutations, reply) => {
                let n = mutations.len() as u64;
                if depth + n > shared.options.max_depth {
                    let _ = reply.send(Err(QueueError::Full { depth, max: shared.options.max_depth }));
                    continue;
                }
                let mut receipts = Vec::with_capacity(mutations.len());
                for m in mutations {
                    receipts.push(Receipt { id: m.id(suite), slot: Slot::Position(Position(next)) });
                    records.push((next, encode_entry(&Entry::Mutation(m.clone()))));
                    next += 1;
                }
                depth += n;
                answers.push((request, Some(receipts), None));
            }
            Request::Marker(marker, _) => {
                records.push((next, encode_entry(&Entry::Marker(*marker))));
                answers.push((request, None, Some(Position(next))));
                next += 1;
            }
        }
    }
    if records.is_empty() {
        return;
    }
    let written = write_records(&db, &records, next);
    drop(db);
    match written {
        // Recovery if the process dies right after this commit: the records are durable; on open,
        // `recover` finds them (next position and depth), and the epoch job reads them. Whether or
        // not the replies below were delivered, nothing acknowledged is lost; an unacknowledged
        // client that retries gets a second entry with the same mutation id, applied once.
        Ok(()) => {
            state.next = next;
            state.depth = depth;
            drop(state);
            for (request, receipts, position) in answers {
                match request {
                    Request::Append(_, reply) => drop(reply.send(Ok(receipts.expect("receipts")))),
                    Request::Marker(_, reply) => drop(reply.send(Ok(position.expect("position")))),
                }
            }
        }
        // Recovery if it fails: nothing is acknowledged. What the failed commit left may or may
        // not be durable: the handle is dropped and the next operation reopens the file, where
        // `recover` finds the next position and the depth from what is really there.
        Err(e) => {
            drop(state);
            shared.fail();
            let message = e.to_string();
            for (request, _, _) in answers {
                let err = || QueueError::Io(message.clone().into());
                match request {
                    Request::Append(_, reply) => drop(reply.send(Err(err()))),
                    Request::Marker(_, reply) => drop(reply.send(Err(err()))),
                }
            }
        }
    }
}

fn write_records(db: &Database, records: &[(u64, Vec<u8>)], next: u64) -> Result<(), QueueError> {
    let mut txn = db.begin_write().map_err(QueueError::io)?;
    txn.set_durability(Durability::Immediate).map_err(QueueError::io)?;
    {
        let mut table = txn.open_table(QUEUE).map_err(QueueError::io)?;
        for (position, bytes) in records {
            table.insert(*position, bytes.as_slice()).map_err(QueueError::io)?;
        }
        txn.open_table(META).map_err(QueueError::io)?.insert(KEY_NEXT, next).map_err(QueueError::io)?;
    }
    txn.commit().map_err(QueueError::io)
}

/// Removes every entry at positions `<= through`; returns how many were mutations.
fn remove_records(db: &Database, through: Position) -> Result<u64, QueueError> {
    let mut txn = db.begin_write().map_err(QueueError::io)?;
    txn.set_durability(Durability::Immediate).map_err(QueueError::io)?;
    let mut removed = 0u64;
    {
        let mut table = txn.open_table(QUEUE).map_err(QueueError::io)?;
        table
            .retain_in(..=through.0, |_, value| {
                if value.first() == Some(&0) {
                    removed += 1;
                }
                false
            })
            .map_err(QueueError::io)?;
    }
    txn.commit().map_err(QueueError::io)?;
    Ok(removed)
}

impl Queue for RedbQueue {
    fn suite(&self) -> HashSuite {
        self.shared.options.suite
    }

    fn append(&self, mutations: Vec<Mutation>) -> Result<Vec<Receipt>, QueueError> {
        if mutations.is_empty() {
            return Ok(Vec::new());
        }
        self.call(|reply| Request::Append(mutations, reply))
    }

    fn append_marker(&self, marker: Marker) -> Result<Position, QueueError> {
        self.call(|reply| Request::Marker(marker, reply))
    }

    fn read(&self, from: Position, max_entries: usize) -> Result<Vec<(Position, Entry)>, QueueError> {
        let db = self.shared.open_db()?;
        let txn = db.begin_read().map_err(QueueError::io)?;
        let table = txn.open_table(QUEUE).map_err(QueueError::io)?;
        let mut out = Vec::new();
        for item in table.range(from.0..).map_err(QueueError::io)?.take(max_entries) {
            let (key, value) = item.map_err(QueueError::io)?;
            let entry = decode_entry(value.value())
                .map_err(|e| QueueError::Corrupt(format!("entry at position {}: {e}", key.value())))?;
            out.push((Position(key.value()), entry));
        }
        Ok(out)
    }

    // Recovery if the process dies right after this commit: the removed entries belonged to a
    // committed epoch; if it dies before, they are still there and the epoch job skips what its
    // committed cursor says it consumed.
    fn remove_through(&self, through: Position) -> Result<u64, QueueError> {
        let db = self.shared.open_db()?;
        let removed = remove_records(&db, through);
        drop(db);
        match removed {
            Ok(removed) => {
                let mut state = self.shared.lock();
                state.depth -= removed;
                Ok(removed)
            }
            Err(e) => {
                self.shared.fail(); // reopened (and the depth recounted) by the next operation
                Err(e)
            }
        }
    }

    fn depth(&self) -> u64 {
        self.shared.lock().depth
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use keyfold_core::Version;

    #[test]
    fn reopen_recovers_positions_and_depth() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("queue.redb");
        let options = RedbQueueOptions { suite: HashSuite::Blake3, max_depth: 100 };
        let m = |i: u8| Mutation {
            key: vec![i],
            value: Some(vec![i]),
            expected_version: Version(0),
            owner_signature: None,
        };
        {
            let q = RedbQueue::open(&path, options).unwrap();
            q.append(vec![m(1), m(2), m(3)]).unwrap();
            q.append_marker(Marker { epoch: keyfold_core::Epoch(1), time_ms: 5 }).unwrap();
            q.append(vec![m(4)]).unwrap();
            assert_eq!(q.remove_through(Position(2)).unwrap(), 2);
        }
        let q = RedbQueue::open(&path, options).unwrap();
        assert_eq!(q.depth(), 2);
        let receipts = q.append(vec![m(5)]).unwrap();
        assert_eq!(receipts[0].slot, Slot::Position(Position(6)), "positions continue after a restart");
        let entries = q.read(Position(0), 100).unwrap();
        let positions: Vec<u64> = entries.iter().map(|(p, _)| p.0).collect();
        assert_eq!(positions, vec![3, 4, 5, 6]);
        // Remove everything: a reopened queue still never reuses a position.
        q.remove_through(Position(6)).unwrap();
        drop(q);
        let q = RedbQueue::open(&path, options).unwrap();
        assert_eq!(q.depth(), 0);
        assert_eq!(q.append(vec![m(6)]).unwrap()[0].slot, Slot::Position(Position(7)), "positions are never reused");
    }
}
