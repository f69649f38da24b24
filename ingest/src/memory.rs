use crate::error::QueueError;
use crate::queue::{Entry, Marker, Position, Queue, Receipt, Slot};
use keyfold_core::{HashSuite, Mutation};
use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};

#[derive(Debug)]
struct State {
    entries: BTreeMap<u64, Entry>,
    next: u64,
    depth: u64,
}

/// An in-memory queue for tests. Not durable.
#[derive(Debug)]
pub struct MemoryQueue {
    suite: HashSuite,
    max_depth: u64,
    state: Mutex<State>,
}

impl MemoryQueue {
    pub fn new(suite: HashSuite, max_depth: u64) -> MemoryQueue {
        MemoryQueue { suite, max_depth, state: Mutex::new(State { entries: BTreeMap::new(), next: 1, depth: 0 }) }
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
        if s.depth + n > self.max_depth {
            return Err(QueueError::Full { depth: s.depth, max: self.max_depth });
        }
        let mut receipts = Vec::with_capacity(mutations.len());
        for m in mutations {
            let position = Position(s.next);
            s.next += 1;
            receipts.push(Receipt { id: m.id(self.suite), slot: Slot::Position(position) });
            s.entries.insert(position.0, Entry::Mutation(m));
        }
        s.depth += n;
        Ok(receipts)
    }

    fn append_marker(&self, marker: Marker) -> Result<Position, QueueError> {
        let mut s = self.lock();
        let position = Position(s.next);
        s.next += 1;
        s.entries.insert(position.0, Entry::Marker(marker));
        Ok(position)
    }

    fn read(&self, from: Position, max_entries: usize) -> Result<Vec<(Position, Entry)>, QueueError> {
        let s = self.lock();
        Ok(s.entries.range(from.0..).take(max_entries).map(|(p, e)| (Position(*p), e.clone())).collect())
    }

    fn remove_through(&self, through: Position) -> Result<u64, QueueError> {
        let mut s = self.lock();
        let keep = s.entries.split_off(&(through.0.saturating_add(1)));
        let removed = std::mem::replace(&mut s.entries, keep);
        let mutations = removed.values().filter(|e| matches!(e, Entry::Mutation(_))).count() as u64;
        s.depth -= mutations;
        Ok(mutations)
    }

    fn depth(&self) -> u64 {
        self.lock().depth
    }
}
