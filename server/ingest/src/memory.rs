use crate::error::QueueError;
use crate::queue::{Entry, Marker, Position, Queue, Receipt, Slot, mutation_bytes, record_bytes};
use keyfold_core::{HashSuite, Mutation};
use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};

#[derive(Debug)]
struct State {
    entries: BTreeMap<u64, Entry>,
    next: u64,
    depth: u64,
    bytes: u64,
    last_marker: Option<(Position, Marker)>,
}

/// An in-memory queue for tests. Not durable.
#[derive(Debug)]
pub struct MemoryQueue {
    suite: HashSuite,
    max_depth: u64,
    max_bytes: u64,
    state: Mutex<State>,
}

impl MemoryQueue {
    /// A queue bounded by `max_depth` mutations (and no byte bound; see [`MemoryQueue::bounded`]).
    pub fn new(suite: HashSuite, max_depth: u64) -> MemoryQueue {
        MemoryQueue::bounded(suite, max_depth, u64::MAX)
    }

    /// A queue bounded by `max_depth` mutations and `max_bytes` bytes of them.
    pub fn bounded(suite: HashSuite, max_depth: u64, max_bytes: u64) -> MemoryQueue {
        let state = State { entries: BTreeMap::new(), next: 1, depth: 0, bytes: 0, last_marker: None };
        MemoryQueue { suite, max_depth, max_bytes, state: Mutex::new(state) }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Queue for MemoryQueue {
    fn suite(&self) -> HashSuite {
        self.suite
    }

    fn append(&self, mutations: Vec<Mutation>) -> Result<Vec<Receipt>, QueueError> {
        let mut s = self.lock();
        let n = mutations.len() as u64;
        let bytes: u64 = mutations.iter().map(mutation_bytes).sum();
        if s.depth + n > self.max_depth || s.bytes + bytes > self.max_bytes {
            return Err(QueueError::Full {
                depth: s.depth,
                max: self.max_depth,
                bytes: s.bytes,
                max_bytes: self.max_bytes,
            });
        }
        let mut receipts = Vec::with_capacity(mutations.len());
        for m in mutations {
            let position = Position(s.next);
            s.next += 1;
            receipts.push(Receipt { id: m.id(self.suite), slot: Slot::Position(position) });
            s.entries.insert(position.0, Entry::Mutation(m));
        }
        s.depth += n;
        s.bytes += bytes;
        Ok(receipts)
    }

    fn append_marker(&self, marker: Marker) -> Result<Position, QueueError> {
        let mut s = self.lock();
        let position = Position(s.next);
        s.next += 1;
        s.entries.insert(position.0, Entry::Marker(marker));
        s.last_marker = Some((position, marker));
        Ok(position)
    }

    fn last_marker(&self) -> Result<Option<(Position, Marker)>, QueueError> {
        Ok(self.lock().last_marker)
    }

    fn read_bounded(
        &self,
        from: Position,
        max_entries: usize,
        max_bytes: u64,
    ) -> Result<Vec<(Position, Entry)>, QueueError> {
        let s = self.lock();
        let mut out = Vec::new();
        let mut total = 0u64;
        for (p, e) in s.entries.range(from.0..).take(max_entries) {
            // The stored size, as the durable queue counts it.
            let size = record_bytes(e);
            if !out.is_empty() && total + size > max_bytes {
                break;
            }
            total += size;
            out.push((Position(*p), e.clone()));
        }
        Ok(out)
    }

    fn remove_through(&self, through: Position) -> Result<u64, QueueError> {
        let mut s = self.lock();
        let keep = s.entries.split_off(&(through.0.saturating_add(1)));
        let removed = std::mem::replace(&mut s.entries, keep);
        let (mut mutations, mut bytes) = (0u64, 0u64);
        for entry in removed.values() {
            if let Entry::Mutation(m) = entry {
                mutations += 1;
                bytes += mutation_bytes(m);
            }
        }
        s.depth -= mutations;
        s.bytes -= bytes;
        Ok(mutations)
    }

    fn depth(&self) -> u64 {
        self.lock().depth
    }

    fn pending_bytes(&self) -> u64 {
        self.lock().bytes
    }
}
