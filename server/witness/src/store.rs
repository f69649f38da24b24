//! The witness's state in one redb file (`witness.redb`): per origin, the latest checkpoint note
//! it cosigned (its own cosignature line included), and the evidence of logs contradicting it.
//!
//! Every change is one write transaction with `Durability::Immediate`: redb runs write
//! transactions one at a time, and each re-reads the stored checkpoint before it decides, so the
//! check of the old size and the update are atomic (the spec's race cannot roll a log back).
//! Nothing is cached in memory: a reopened file is the whole state.

use crate::WitnessError;
use redb::{Database, Durability, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::path::Path;

/// origin -> the latest cosigned checkpoint note (text, the log's verified signature lines, the
/// witness's cosignature line).
const CHECKPOINTS: TableDefinition<&str, &str> = TableDefinition::new("checkpoints");
/// Evidence index (0, 1, ...) -> an [`Evidence`] record as JSON.
const EVIDENCE: TableDefinition<u64, &str> = TableDefinition::new("evidence");
/// SHA-256 of (submitted checkpoint text, contradicted note) -> evidence index: a contradiction is
/// recorded once, however often it is replayed with other proofs.
const EVIDENCE_SEEN: TableDefinition<&[u8; 32], u64> = TableDefinition::new("evidence_seen");
/// Counters: [`DROPPED`].
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
/// Per origin: the C2SP verifier keys its checkpoints announced (`next-key`, SPEC section 6.6)
/// and this witness cosigned, one per line, oldest first.
const ROLLOVER_KEYS: TableDefinition<&str, &str> = TableDefinition::new("rollover_keys");
/// Contradictions not recorded because the evidence table was full.
const DROPPED: &str = "evidence_dropped";

/// Most evidence records kept. When full, the oldest are kept and new ones only counted: the
/// first sign of a fork is the one that matters, and a flood of replays must not push it out.
/// Each record is at most one request body plus one stored note (about 2 * 16 KiB).
pub const MAX_EVIDENCE_RECORDS: u64 = 1000;

/// A validly signed checkpoint that contradicts what this witness cosigned before.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Evidence {
    pub origin: String,
    /// When the witness received it, in seconds since the Unix epoch.
    pub time_secs: u64,
    /// Why it contradicts (the error the request was answered with).
    pub reason: String,
    /// The submitted checkpoint's text.
    pub checkpoint: String,
    /// The `add-checkpoint` request body, verbatim (its note carries the log's signature).
    pub request: String,
    /// The note this witness had cosigned for the origin (none if it had cosigned nothing).
    pub contradicted: Option<String>,
}

/// How many contradictions the store has seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct EvidenceCounts {
    pub recorded: u64,
    /// Contradictions seen while the evidence table was full (not recorded).
    pub dropped: u64,
}

/// What [`WitnessStore::compare_and_set`]'s decision does inside the write transaction.
#[derive(Debug)]
pub(crate) enum Decision<T> {
    /// Store the note as the origin's latest, commit, and return the value.
    /// Store the note; with a key the checkpoint announced, trust that key for the origin too.
    Store(String, T, Option<String>),
    /// Record the evidence (if new and there is room), commit, and return the error.
    Contradiction(Box<Evidence>, WitnessError),
    /// Change nothing; return the error.
    Refuse(WitnessError),
}

/// `witness.redb`.
#[derive(Debug)]
pub struct WitnessStore {
    db: Database,
    max_evidence_records: u64,
}

impl WitnessStore {
    /// Opens (or creates) the store at `path`; an existing file resumes where it stopped.
    pub fn open(path: &Path) -> Result<WitnessStore, WitnessError> {
        Self::open_with(path, MAX_EVIDENCE_RECORDS)
    }

    /// As [`WitnessStore::open`], keeping at most `max_evidence_records` evidence records.
    pub fn open_with(path: &Path, max_evidence_records: u64) -> Result<WitnessStore, WitnessError> {
        let db = Database::create(path).map_err(WitnessError::io)?;
        let mut txn = db.begin_write().map_err(WitnessError::io)?;
        txn.set_durability(Durability::Immediate).map_err(WitnessError::io)?;
        // Creates the tables so that reads find them. If the process dies right after this commit,
        // the next open finds them (empty) and does the same again: nothing else is written here.
        txn.open_table(CHECKPOINTS).map_err(WitnessError::io)?;
        txn.open_table(EVIDENCE).map_err(WitnessError::io)?;
        txn.open_table(EVIDENCE_SEEN).map_err(WitnessError::io)?;
        txn.open_table(META).map_err(WitnessError::io)?;
        txn.open_table(ROLLOVER_KEYS).map_err(WitnessError::io)?;
        txn.commit().map_err(WitnessError::io)?;
        Ok(WitnessStore { db, max_evidence_records })
    }

    /// The latest note cosigned for `origin`, if any.
    pub fn latest(&self, origin: &str) -> Result<Option<String>, WitnessError> {
        let txn = self.db.begin_read().map_err(WitnessError::io)?;
        let table = txn.open_table(CHECKPOINTS).map_err(WitnessError::io)?;
        Ok(table.get(origin).map_err(WitnessError::io)?.map(|v| v.value().to_owned()))
    }

    /// Runs `decide` on the stored note for `origin` and applies its [`Decision`], all in one
    /// write transaction: no other change to the store can come between the read and the write.
    pub(crate) fn compare_and_set<T>(
        &self,
        origin: &str,
        decide: impl FnOnce(Option<&str>) -> Decision<T>,
    ) -> Result<T, WitnessError> {
        let mut txn = self.db.begin_write().map_err(WitnessError::io)?;
        txn.set_durability(Durability::Immediate).map_err(WitnessError::io)?;
        let outcome = {
            let mut table = txn.open_table(CHECKPOINTS).map_err(WitnessError::io)?;
            let stored = table.get(origin).map_err(WitnessError::io)?.map(|v| v.value().to_owned());
            match decide(stored.as_deref()) {
                Decision::Store(note, value, announced) => {
                    table.insert(origin, note.as_str()).map_err(WitnessError::io)?;
                    if let Some(vkey) = announced {
                        learn_key(&txn, origin, &vkey)?;
                    }
                    Ok(value)
                }
                Decision::Contradiction(evidence, error) => {
                    record_evidence(&txn, &evidence, self.max_evidence_records)?;
                    Err(error)
                }
                // Dropping the transaction aborts it: nothing was written.
                Decision::Refuse(error) => return Err(error),
            }
        };
        // Recovery if the process dies right after this commit: the new checkpoint (or evidence)
        // is stored, but the caller may have had no answer; it resends, gets 409 with the new size
        // (or the same 409/422), and asks again from there. If it dies before: nothing changed,
        // nothing was cosigned (the cosignature is returned only after this commit).
        txn.commit().map_err(WitnessError::io)?;
        outcome
    }

    /// How many contradictions were recorded and dropped.
    /// The verifier keys `origin` announced in checkpoints this witness cosigned, oldest first.
    pub fn rollover_keys(&self, origin: &str) -> Result<Vec<String>, WitnessError> {
        let txn = self.db.begin_read().map_err(WitnessError::io)?;
        let table = txn.open_table(ROLLOVER_KEYS).map_err(WitnessError::io)?;
        let lines = table.get(origin).map_err(WitnessError::io)?.map(|v| v.value().to_owned()).unwrap_or_default();
        Ok(lines.lines().map(str::to_owned).collect())
    }

    pub fn evidence_counts(&self) -> Result<EvidenceCounts, WitnessError> {
        let txn = self.db.begin_read().map_err(WitnessError::io)?;
        let recorded = txn.open_table(EVIDENCE).map_err(WitnessError::io)?.len().map_err(WitnessError::io)?;
        let meta = txn.open_table(META).map_err(WitnessError::io)?;
        let dropped = meta.get(DROPPED).map_err(WitnessError::io)?.map_or(0, |v| v.value());
        Ok(EvidenceCounts { recorded, dropped })
    }

    /// Evidence record `index` (0 is the oldest), if there is one.
    pub fn evidence(&self, index: u64) -> Result<Option<Evidence>, WitnessError> {
        let txn = self.db.begin_read().map_err(WitnessError::io)?;
        let table = txn.open_table(EVIDENCE).map_err(WitnessError::io)?;
        let Some(json) = table.get(index).map_err(WitnessError::io)? else { return Ok(None) };
        let evidence = serde_json::from_str(json.value())
            .map_err(|e| WitnessError::Corrupt(format!("evidence record {index} is not valid JSON: {e}")))?;
        Ok(Some(evidence))
    }
}

/// Adds `evidence` in the caller's transaction unless the same contradiction is already recorded;
/// counts it as dropped when the table is full.
/// Adds `vkey` to the origin's announced keys, in the transaction that stores the announcement.
fn learn_key(txn: &redb::WriteTransaction, origin: &str, vkey: &str) -> Result<(), WitnessError> {
    let mut table = txn.open_table(ROLLOVER_KEYS).map_err(WitnessError::io)?;
    let mut lines = table.get(origin).map_err(WitnessError::io)?.map(|v| v.value().to_owned()).unwrap_or_default();
    if !lines.lines().any(|line| line == vkey) {
        lines.push_str(vkey);
        lines.push('\n');
        table.insert(origin, lines.as_str()).map_err(WitnessError::io)?;
    }
    Ok(())
}

fn record_evidence(txn: &redb::WriteTransaction, evidence: &Evidence, max_records: u64) -> Result<(), WitnessError> {
    let mut seen = txn.open_table(EVIDENCE_SEEN).map_err(WitnessError::io)?;
    let key = evidence_key(evidence);
    if seen.get(&key).map_err(WitnessError::io)?.is_some() {
        return Ok(());
    }
    let mut records = txn.open_table(EVIDENCE).map_err(WitnessError::io)?;
    let index = records.len().map_err(WitnessError::io)?;
    if index >= max_records {
        let mut meta = txn.open_table(META).map_err(WitnessError::io)?;
        let dropped = meta.get(DROPPED).map_err(WitnessError::io)?.map_or(0, |v| v.value());
        meta.insert(DROPPED, dropped.saturating_add(1)).map_err(WitnessError::io)?;
        return Ok(());
    }
    let json = serde_json::to_string(evidence).expect("evidence serialises");
    records.insert(index, json.as_str()).map_err(WitnessError::io)?;
    seen.insert(&key, index).map_err(WitnessError::io)?;
    Ok(())
}

/// Identifies a contradiction by what contradicts what, not by the proof sent with it.
fn evidence_key(evidence: &Evidence) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(evidence.checkpoint.as_bytes());
    h.update([0]);
    h.update(evidence.contradicted.as_deref().unwrap_or("").as_bytes());
    h.finalize().into()
}
