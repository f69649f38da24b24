//! I/O faults under the durable queue (an error at the k-th write or fsync, a full disk): an
//! append that hits one is refused with an I/O error and acknowledges nothing; once the fault
//! clears the queue reopens its file and accepts appends again, in the same process; every append
//! acknowledged before, during or after the fault is there, and after a restart too.

use keyfold_core::{HashSuite, Mutation, MutationId, StorageError, Version};
use keyfold_ingest::{Entry, Position, Queue, QueueError};
use keyfold_redb::RedbQueueOptions;
use keyfold_redb::faults::{FaultPlan, open_faulty_queue};
use std::collections::HashSet;

const OPTIONS: RedbQueueOptions =
    RedbQueueOptions { suite: HashSuite::Blake3, max_depth: 1_000_000, max_bytes: 1 << 30 };

fn batch(b: u64) -> Vec<Mutation> {
    (0..20)
        .map(|i| Mutation {
            key: format!("user{b}-{i}@example.com").into_bytes(),
            value: Some(vec![1; 32]),
            expected_version: Version(0),
            owner_signature: None,
        })
        .collect()
}

#[derive(Debug, Clone, Copy)]
enum Fault {
    Write(u64),
    Sync(u64),
    DiskFull,
}

#[test]
fn faults_acknowledge_nothing_unpersisted_and_restart_loses_nothing() {
    for fault in [Fault::Write(1), Fault::Write(2), Fault::Sync(1), Fault::Sync(2), Fault::DiskFull] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("queue.redb");
        let plan = FaultPlan::new();
        let mut acked: Vec<MutationId> = Vec::new();
        let (mut refused, mut refused_after_clear) = (0, 0);
        {
            let queue = open_faulty_queue(&path, OPTIONS, &plan).unwrap();
            acked.extend(queue.append(batch(0)).unwrap().into_iter().map(|r| r.id));
            match fault {
                Fault::Write(k) => plan.fail_write_in(k),
                Fault::Sync(k) => plan.fail_sync_in(k),
                Fault::DiskFull => plan.set_disk_full(true),
            }
            for b in 1..=6 {
                if b == 4 {
                    plan.clear(); // the fault clears while the process still runs
                }
                match queue.append(batch(b)) {
                    Ok(receipts) => acked.extend(receipts.into_iter().map(|r| r.id)),
                    Err(e) => {
                        assert!(
                            matches!(e, QueueError::Storage(StorageError::Io(_))),
                            "{fault:?}: an I/O fault is an I/O error: {e}"
                        );
                        refused += 1;
                        refused_after_clear += u32::from(b >= 4);
                    }
                }
            }
        }
        assert!(plan.injected() > 0 && refused > 0, "{fault:?}: the fault was hit ({} injected)", plan.injected());
        assert_eq!(refused_after_clear, 0, "{fault:?}: once the fault cleared, the queue recovered in place");
        // Restart over the same file: everything acknowledged is there, and appends work again.
        let queue = open_faulty_queue(&path, OPTIONS, &FaultPlan::new()).unwrap();
        let present: HashSet<MutationId> = queue
            .read(Position(0), 10_000)
            .unwrap()
            .into_iter()
            .filter_map(|(_, entry)| match entry {
                Entry::Mutation(m) => Some(m.id(HashSuite::Blake3)),
                Entry::Marker(_) => None,
            })
            .collect();
        let lost = acked.iter().filter(|id| !present.contains(id)).count();
        assert_eq!(lost, 0, "{fault:?}: acknowledged mutations lost after restart");
        assert!(present.len() >= acked.len());
        queue.append(batch(99)).unwrap();
        println!(
            "{fault:?}: {} acknowledged, {refused} appends refused, {} on disk after restart, lost 0",
            acked.len(),
            present.len()
        );
    }
}
