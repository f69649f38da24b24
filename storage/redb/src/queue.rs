//! The embedded durable queue on redb, with group commit.
//!
//! Appenders hand their request to one committer thread and wait. The committer takes every
//! request waiting at that moment, writes them in one transaction and makes it durable with one
//! fsync, then answers each: many concurrent appenders share one fsync, and an append is
//! acknowledged only after its commit returned.

use crate::queue_io;
use crate::reopen::{Opener, ReopeningDb, file_opener};
use keyfold_core::{HashSuite, Mutation, StorageError};
use keyfold_ingest::{
    Entry, Marker, Position, Queue, QueueError, Receipt, Slot, decode_entry, decode_last_marker, encode_last_marker,
    encode_marker, encode_mutation, mutation_bytes, record_mutation_bytes, upgrade_legacy_record,
};
use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};
use std::path::Path;
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;

const QUEUE: TableDefinition<u64, &[u8]> = TableDefinition::new("queue");
/// `next_position`: written with every append, so positions are never reused, even after every
/// entry was removed. `format`: [`FORMAT`] once every record is in the current format.
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const KEY_NEXT: &str = "next_position";
const KEY_FORMAT: &str = "format";
/// Records carry their mutation id and markers their `through` (SPEC.md "Queue records").
const FORMAT: u64 = 2;
/// `last`: the last marker appended, `position (8) || marker record`, written with it.
const MARKERS: TableDefinition<&str, &[u8]> = TableDefinition::new("markers");
const KEY_LAST_MARKER: &str = "last";
/// Requests one commit takes at most (bounds a transaction's size).
const MAX_REQUESTS_PER_COMMIT: usize = 4096;
/// redb's page cache for the queue (its default is 1 GiB). The queue is written once and read
/// once, in order, by the epoch's cut: a cache would only hold pages an epoch already read, in
/// the process's memory on top of the epoch's own.
const CACHE_BYTES: usize = 16 << 20;
/// Legacy records rewritten per step of the upgrade (bounds its memory).
const UPGRADE_CHUNK: usize = 4096;

/// Default bound on pending mutations.
pub const DEFAULT_MAX_DEPTH: u64 = 1_000_000;
/// Default bound on the bytes of pending mutations: 1 GiB. At the largest mutation the default
/// limits accept (~66 KiB) the depth bound alone would let ~66 GB wait; 1 GiB on disk is cheap,
/// and epochs (64 MiB by default) drain it in sixteen.
pub const DEFAULT_MAX_BYTES: u64 = 1 << 30;

/// How to open a [`RedbQueue`].
#[derive(Debug, Clone, Copy)]
pub struct RedbQueueOptions {
    pub suite: HashSuite,
    /// Pending mutations beyond which appends are refused with [`QueueError::Full`].
    pub max_depth: u64,
    /// Bytes of pending mutations ([`mutation_bytes`]) beyond which appends are refused with
    /// [`QueueError::Full`].
    pub max_bytes: u64,
}

impl RedbQueueOptions {
    /// The default bounds ([`DEFAULT_MAX_DEPTH`], [`DEFAULT_MAX_BYTES`]).
    pub fn new(suite: HashSuite) -> RedbQueueOptions {
        RedbQueueOptions { suite, max_depth: DEFAULT_MAX_DEPTH, max_bytes: DEFAULT_MAX_BYTES }
    }
}

type Reply<T> = SyncSender<Result<T, QueueError>>;

/// A batch encoded by its appender (ids hashed off the committer thread): receipts without
/// their slots yet, records, and the batch's mutation bytes.
struct Batch {
    ids: Vec<keyfold_core::MutationId>,
    records: Vec<Vec<u8>>,
    bytes: u64,
}

enum Request {
    Append(Batch, Reply<Vec<Receipt>>),
    Marker(Marker, Reply<Position>),
}

#[derive(Debug)]
struct State {
    next: u64,
    depth: u64,
    bytes: u64,
}

struct Shared {
    /// Dropped after a failed write and reopened (with `recover`) by the next operation.
    db: ReopeningDb,
    options: RedbQueueOptions,
    state: Mutex<State>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared").field("options", &self.options).field("state", &self.state).finish_non_exhaustive()
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The database, reopened first if a write failed since it was last open; on reopen the
    /// next position, depth and bytes are recounted from what is durably there (`recover`).
    /// Never call it while holding the state lock (reopening takes it).
    fn open_db(&self) -> Result<Arc<Database>, QueueError> {
        self.db.get_or_reopen(queue_io, |db| {
            let recovered = recover(db, self.options.suite)?;
            *self.lock() = recovered;
            Ok(())
        })
    }

    /// After a failed write redb refuses every later write through the same handle (after a
    /// failed fsync the page cache cannot be trusted). Drop the handle; the next operation reopens
    /// the file. Recovery: whatever the failed commit left is found by `recover` on reopen, exactly
    /// as after a crash; none of it was acknowledged.
    fn fail(&self) {
        self.db.failed();
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
        RedbQueue::open_with(path, options, file_opener(CACHE_BYTES))
    }

    /// As [`RedbQueue::open`], opening (and reopening) the file with `opener` (tests inject
    /// faults with it: [`crate::faults`]).
    pub fn open_with(path: &Path, options: RedbQueueOptions, opener: Opener) -> Result<RedbQueue, QueueError> {
        let db = ReopeningDb::open(path, opener).map_err(queue_io)?;
        let state = Mutex::new(recover(&*db.get().map_err(queue_io)?, options.suite)?);
        let shared = Arc::new(Shared { db, options, state });
        let (sender, receiver) = mpsc::sync_channel(MAX_REQUESTS_PER_COMMIT);
        let worker = Arc::clone(&shared);
        let committer = std::thread::Builder::new()
            .name("keyfold-queue-commit".into())
            .spawn(move || commit_loop(&worker, &receiver))
            .map_err(QueueError::io)?;
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

/// Next position = the stored next position (and at least last key + 1); depth and bytes = the
/// mutation entries present. A file of the format before ids were stored is upgraded first.
fn recover(db: &Database, suite: HashSuite) -> Result<State, QueueError> {
    let txn = db.begin_write().map_err(queue_io)?;
    {
        let mut queue = txn.open_table(QUEUE).map_err(queue_io)?;
        let mut meta = txn.open_table(META).map_err(queue_io)?;
        let mut markers = txn.open_table(MARKERS).map_err(queue_io)?;
        if meta.get(KEY_FORMAT).map_err(queue_io)?.map(|v| v.value()) != Some(FORMAT) {
            upgrade(&mut queue, &mut markers, suite)?;
            meta.insert(KEY_FORMAT, FORMAT).map_err(queue_io)?;
        }
    }
    // Recovery if the process dies right after this commit: the file is in the current format;
    // before it: the upgrade is redone from the untouched legacy records.
    txn.commit().map_err(queue_io)?;
    let read = db.begin_read().map_err(queue_io)?;
    let table = read.open_table(QUEUE).map_err(queue_io)?;
    let stored_next =
        read.open_table(META).map_err(queue_io)?.get(KEY_NEXT).map_err(queue_io)?.map_or(1, |v| v.value());
    let next = match table.last().map_err(queue_io)? {
        Some((key, _)) => stored_next.max(key.value() + 1),
        None => stored_next,
    };
    let (mut depth, mut bytes) = (0, 0);
    for entry in table.iter().map_err(queue_io)? {
        let (_, value) = entry.map_err(queue_io)?;
        if let Some(n) = record_mutation_bytes(value.value()) {
            depth += 1;
            bytes += n;
        }
    }
    Ok(State { next, depth, bytes })
}

/// Rewrites the records of the format before ids and `through` were stored, in bounded chunks,
/// and records the last marker found as the last marker.
fn upgrade(
    queue: &mut redb::Table<u64, &[u8]>,
    markers: &mut redb::Table<&str, &[u8]>,
    suite: HashSuite,
) -> Result<(), QueueError> {
    let mut from = 0u64;
    loop {
        let mut rewrites = Vec::new();
        let mut last = None;
        for item in queue.range(from..).map_err(queue_io)?.take(UPGRADE_CHUNK) {
            let (key, value) = item.map_err(queue_io)?;
            last = Some(key.value());
            if let Some(record) = upgrade_legacy_record(suite, Position(key.value()), value.value()) {
                rewrites.push((key.value(), record));
            }
        }
        let Some(last) = last else { return Ok(()) };
        for (position, record) in rewrites {
            if let Ok(Entry::Marker(_)) = decode_entry(suite, Position(position), &record) {
                markers
                    .insert(KEY_LAST_MARKER, encode_last_marker(Position(position), &record).as_slice())
                    .map_err(queue_io)?;
            }
            queue.insert(position, record.as_slice()).map_err(queue_io)?;
        }
        from = last + 1;
    }
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

/// Answers every request of `group` with the same I/O failure.
fn fail_all(group: Vec<Request>, message: &str) {
    for request in group {
        let err = || QueueError::from(StorageError::io(message.to_owned()));
        match request {
            Request::Append(_, reply) => drop(reply.send(Err(err()))),
            Request::Marker(_, reply) => drop(reply.send(Err(err()))),
        }
    }
}

/// The answer to an accepted request, sent once its commit returned.
enum Answer {
    Append(Reply<Vec<Receipt>>, Vec<Receipt>),
    Marker(Reply<Position>, Position),
}

impl Answer {
    fn send(self, result: Result<(), &str>) {
        let err = |message: &str| QueueError::from(StorageError::io(message.to_owned()));
        match self {
            Answer::Append(reply, receipts) => drop(reply.send(result.map(|()| receipts).map_err(err))),
            Answer::Marker(reply, position) => drop(reply.send(result.map(|()| position).map_err(err))),
        }
    }
}

/// What one commit writes: records by position, the next position, the last marker if one was
/// appended, and what to answer each accepted request.
#[derive(Default)]
struct Planned {
    records: Vec<(u64, Vec<u8>)>,
    last_marker: Option<(u64, Vec<u8>)>,
    answers: Vec<Answer>,
}

/// Numbers the group's entries from `state`, refusing (and answering at once) each batch that
/// would take the queue over a bound; refused batches take no positions.
fn plan(options: &RedbQueueOptions, state: &mut State, group: Vec<Request>) -> Planned {
    let mut planned = Planned::default();
    for request in group {
        match request {
            Request::Append(batch, reply) => {
                let n = batch.ids.len() as u64;
                if state.depth + n > options.max_depth || state.bytes + batch.bytes > options.max_bytes {
                    let full = QueueError::Full {
                        depth: state.depth,
                        max: options.max_depth,
                        bytes: state.bytes,
                        max_bytes: options.max_bytes,
                    };
                    let _ = reply.send(Err(full));
                    continue;
                }
                let mut receipts = Vec::with_capacity(batch.ids.len());
                for (id, record) in batch.ids.iter().zip(batch.records) {
                    receipts.push(Receipt { id: *id, slot: Slot::Position(Position(state.next)) });
                    planned.records.push((state.next, record));
                    state.next += 1;
                }
                state.depth += n;
                state.bytes += batch.bytes;
                planned.answers.push(Answer::Append(reply, receipts));
            }
            Request::Marker(marker, reply) => {
                let record = encode_marker(&marker);
                planned.last_marker = Some((state.next, record.clone()));
                planned.records.push((state.next, record));
                planned.answers.push(Answer::Marker(reply, Position(state.next)));
                state.next += 1;
            }
        }
    }
    planned
}

/// One transaction for a group of requests. Requests refused for depth or bytes are answered at
/// once and take no positions.
fn commit_group(shared: &Shared, group: Vec<Request>) {
    let db = match shared.open_db() {
        Ok(db) => db,
        Err(e) => return fail_all(group, &e.to_string()),
    };
    let mut state = shared.lock();
    let mut next = State { next: state.next, depth: state.depth, bytes: state.bytes };
    let planned = plan(&shared.options, &mut next, group);
    if planned.records.is_empty() {
        return;
    }
    let written = write_records(&db, &planned.records, next.next, planned.last_marker.as_ref());
    drop(db);
    match written {
        // Recovery if the process dies right after this commit: the records are durable; on open,
        // `recover` finds them (next position, depth and bytes), and the epoch job reads them.
        // Whether or not the replies below were delivered, nothing acknowledged is lost; an
        // unacknowledged client that retries gets a second entry with the same mutation id,
        // applied once.
        Ok(()) => {
            *state = next;
            drop(state);
            for answer in planned.answers {
                answer.send(Ok(()));
            }
        }
        // Recovery if it fails: nothing is acknowledged. What the failed commit left may or may
        // not be durable: the handle is dropped and the next operation reopens the file, where
        // `recover` finds the next position, the depth and the bytes from what is really there.
        Err(e) => {
            drop(state);
            shared.fail();
            let message = e.to_string();
            for answer in planned.answers {
                answer.send(Err(&message));
            }
        }
    }
}

fn write_records(
    db: &Database,
    records: &[(u64, Vec<u8>)],
    next: u64,
    last_marker: Option<&(u64, Vec<u8>)>,
) -> Result<(), QueueError> {
    let mut txn = db.begin_write().map_err(queue_io)?;
    txn.set_durability(Durability::Immediate).map_err(queue_io)?;
    {
        let mut table = txn.open_table(QUEUE).map_err(queue_io)?;
        for (position, bytes) in records {
            table.insert(*position, bytes.as_slice()).map_err(queue_io)?;
        }
        txn.open_table(META).map_err(queue_io)?.insert(KEY_NEXT, next).map_err(queue_io)?;
        if let Some((position, record)) = last_marker {
            let value = encode_last_marker(Position(*position), record);
            txn.open_table(MARKERS).map_err(queue_io)?.insert(KEY_LAST_MARKER, value.as_slice()).map_err(queue_io)?;
        }
    }
    txn.commit().map_err(queue_io)
}

/// Removes every entry at positions `<= through`; returns how many were mutations, and their bytes.
fn remove_records(db: &Database, through: Position) -> Result<(u64, u64), QueueError> {
    let mut txn = db.begin_write().map_err(queue_io)?;
    txn.set_durability(Durability::Immediate).map_err(queue_io)?;
    let (mut removed, mut bytes) = (0u64, 0u64);
    {
        let mut table = txn.open_table(QUEUE).map_err(queue_io)?;
        table
            .retain_in(..=through.0, |_, value| {
                if let Some(n) = record_mutation_bytes(value) {
                    removed += 1;
                    bytes += n;
                }
                false
            })
            .map_err(queue_io)?;
    }
    txn.commit().map_err(queue_io)?;
    Ok((removed, bytes))
}

impl Queue for RedbQueue {
    fn suite(&self) -> HashSuite {
        self.shared.options.suite
    }

    fn append(&self, mutations: Vec<Mutation>) -> Result<Vec<Receipt>, QueueError> {
        if mutations.is_empty() {
            return Ok(Vec::new());
        }
        // Hashed and encoded here, on the appender's thread: the committer only writes.
        let suite = self.shared.options.suite;
        let mut buffer = Vec::new();
        let ids: Vec<_> = mutations.iter().map(|m| m.id_with(suite, &mut buffer)).collect();
        let records = ids.iter().zip(&mutations).map(|(id, m)| encode_mutation(id, m)).collect();
        let bytes = mutations.iter().map(mutation_bytes).sum();
        self.call(|reply| Request::Append(Batch { ids, records, bytes }, reply))
    }

    fn append_marker(&self, marker: Marker) -> Result<Position, QueueError> {
        self.call(|reply| Request::Marker(marker, reply))
    }

    fn last_marker(&self) -> Result<Option<(Position, Marker)>, QueueError> {
        let db = self.shared.open_db()?;
        let txn = db.begin_read().map_err(queue_io)?;
        let table = txn.open_table(MARKERS).map_err(queue_io)?;
        let Some(value) = table.get(KEY_LAST_MARKER).map_err(queue_io)? else { return Ok(None) };
        decode_last_marker(self.shared.options.suite, value.value()).map(Some)
    }

    fn read_bounded(
        &self,
        from: Position,
        max_entries: usize,
        max_bytes: u64,
    ) -> Result<Vec<(Position, Entry)>, QueueError> {
        let suite = self.shared.options.suite;
        let db = self.shared.open_db()?;
        let txn = db.begin_read().map_err(queue_io)?;
        let table = txn.open_table(QUEUE).map_err(queue_io)?;
        let mut out = Vec::new();
        let mut total = 0u64;
        for item in table.range(from.0..).map_err(queue_io)?.take(max_entries) {
            let (key, value) = item.map_err(queue_io)?;
            let size = value.value().len() as u64;
            if !out.is_empty() && total + size > max_bytes {
                break;
            }
            total += size;
            out.push((Position(key.value()), decode_entry(suite, Position(key.value()), value.value())?));
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
            Ok((removed, bytes)) => {
                let mut state = self.shared.lock();
                state.depth -= removed;
                state.bytes -= bytes;
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

    fn pending_bytes(&self) -> u64 {
        self.shared.lock().bytes
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
        let options = RedbQueueOptions { max_depth: 100, ..RedbQueueOptions::new(HashSuite::Blake3) };
        let m = |i: u8| Mutation {
            key: vec![i],
            value: Some(vec![i]),
            expected_version: Version(0),
            owner_signature: None,
        };
        {
            let q = RedbQueue::open(&path, options).unwrap();
            q.append(vec![m(1), m(2), m(3)]).unwrap();
            q.append_marker(Marker { epoch: keyfold_core::Epoch(1), time_ms: 5, through: Position(3) }).unwrap();
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

    /// A file written before ids and `through` were stored opens upgraded: its mutations read
    /// back (with their ids), its marker cut everything before it and is the last marker.
    #[test]
    fn a_legacy_file_is_upgraded_on_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("queue.redb");
        let m = |i: u8| Mutation {
            key: vec![i],
            value: Some(vec![i; 3]),
            expected_version: Version(0),
            owner_signature: None,
        };
        {
            let db = Database::create(&path).unwrap();
            let txn = db.begin_write().unwrap();
            {
                let mut queue = txn.open_table(QUEUE).unwrap();
                for (position, i) in [(4u64, 1u8), (5, 2), (7, 3)] {
                    let mut legacy = vec![0u8];
                    legacy.extend_from_slice(&m(i).encode());
                    queue.insert(position, legacy.as_slice()).unwrap();
                }
                let mut marker = vec![1u8];
                marker.extend_from_slice(&3u64.to_be_bytes());
                marker.extend_from_slice(&77u64.to_be_bytes());
                queue.insert(6, marker.as_slice()).unwrap();
                txn.open_table(META).unwrap().insert(KEY_NEXT, 8).unwrap();
            }
            txn.commit().unwrap();
        }
        let q = RedbQueue::open(&path, RedbQueueOptions::new(HashSuite::Blake3)).unwrap();
        let marker = Marker { epoch: keyfold_core::Epoch(3), time_ms: 77, through: Position(5) };
        assert_eq!(q.last_marker().unwrap(), Some((Position(6), marker)));
        let entries: Vec<(Position, Entry)> = q.read(Position(0), 10).unwrap();
        let expected = vec![
            (Position(4), Entry::Mutation(m(1))),
            (Position(5), Entry::Mutation(m(2))),
            (Position(6), Entry::Marker(marker)),
            (Position(7), Entry::Mutation(m(3))),
        ];
        assert_eq!(entries, expected);
        assert_eq!((q.depth(), q.pending_bytes()), (3, 3 * mutation_bytes(&m(1))));
        assert_eq!(q.append(vec![m(4)]).unwrap()[0].slot, Slot::Position(Position(8)));
    }
}
