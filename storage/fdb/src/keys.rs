//! The key layout: every key starts with the deployment's prefix, then a one-byte area, then
//! big-endian fixed-width fields, so byte order is the order the code reads in. Documented in
//! ARCHITECTURE.md, "FoundationDB backend".

use keyfold_core::Epoch;

/// Where one directory's data lives in the cluster: all its keys start with `prefix`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    prefix: Vec<u8>,
}

// Areas: one byte after the prefix.
const QUEUE_STAGED: u8 = b's';
const QUEUE_LOG: u8 = b'l';
const QUEUE_META: u8 = b'q';
const QUEUE_GUARD: u8 = b'g';
const TREE_META: u8 = b't';
const TREE_ROOTS: u8 = b'r';
const TREE_TOP: u8 = b'u';
const TREE_NODES: u8 = b'n';
const TREE_LEAVES: u8 = b'v';
const HEADS: u8 = b'h';
const HEADS_META: u8 = b'c';
const LEASE: u8 = b'L';

impl Layout {
    /// `prefix` separates directories sharing a cluster (e.g. `b"keyfold/prod/"`); it must not be
    /// a prefix of another directory's.
    pub fn new(prefix: impl Into<Vec<u8>>) -> Layout {
        Layout { prefix: prefix.into() }
    }

    pub fn prefix(&self) -> &[u8] {
        &self.prefix
    }

    fn key(&self, area: u8, rest: &[u8]) -> Vec<u8> {
        let mut k = Vec::with_capacity(self.prefix.len() + 1 + rest.len());
        k.extend_from_slice(&self.prefix);
        k.push(area);
        k.extend_from_slice(rest);
        k
    }

    /// `[start, end)` of everything in `area` from `from` on.
    fn area_from(&self, area: u8, from: &[u8]) -> (Vec<u8>, Vec<u8>) {
        (self.key(area, from), self.key(area + 1, &[]))
    }

    /// Everything this layout holds: `[prefix, prefix + 0xff...)`, for tests that start empty.
    pub fn everything(&self) -> (Vec<u8>, Vec<u8>) {
        let mut end = self.prefix.clone();
        end.push(0xff);
        (self.prefix.clone(), end)
    }

    // --- queue ---

    /// A staged entry's key with a 10-byte placeholder for the commit versionstamp, then the
    /// 2-byte index in its batch, then the 4-byte little-endian offset of the placeholder that
    /// `SET_VERSIONSTAMPED_KEY` consumes (and strips).
    pub(crate) fn staged_template(&self, index_in_batch: u16) -> Vec<u8> {
        let mut k = self.key(QUEUE_STAGED, &[0u8; 10]);
        k.extend_from_slice(&index_in_batch.to_be_bytes());
        let offset = u32::try_from(self.prefix.len() + 1).expect("prefix shorter than 4 GiB");
        k.extend_from_slice(&offset.to_le_bytes());
        k
    }

    pub(crate) fn staged_len(&self) -> usize {
        self.prefix.len() + 1 + 12
    }

    /// Staged keys below this one committed at or before read version `read_version`: the cut.
    pub(crate) fn staged_cut(&self, read_version: u64) -> Vec<u8> {
        let mut k = self.key(QUEUE_STAGED, &(read_version + 1).to_be_bytes());
        k.extend_from_slice(&[0, 0]);
        k
    }

    pub(crate) fn staged_start(&self) -> Vec<u8> {
        self.key(QUEUE_STAGED, &[])
    }

    /// The 12-byte slot (versionstamp || index) of a staged key.
    pub(crate) fn staged_slot(&self, key: &[u8]) -> Option<[u8; 12]> {
        key.strip_prefix(self.key(QUEUE_STAGED, &[]).as_slice())?.try_into().ok()
    }

    /// A log entry: value `slot (12) || queue record`, the slot being the versionstamp it was
    /// staged under (zeros for a marker).
    pub(crate) fn log(&self, position: u64) -> Vec<u8> {
        self.key(QUEUE_LOG, &position.to_be_bytes())
    }

    pub(crate) fn log_position(&self, key: &[u8]) -> Option<u64> {
        let rest: [u8; 8] = key.strip_prefix(self.key(QUEUE_LOG, &[]).as_slice())?.try_into().ok()?;
        Some(u64::from_be_bytes(rest))
    }

    /// The next log position (u64 BE; absent = 1).
    pub(crate) fn queue_next(&self) -> Vec<u8> {
        self.key(QUEUE_META, b"next")
    }

    /// Mutations staged or logged and not yet removed (i64 LE, maintained with atomic adds).
    pub(crate) fn queue_depth(&self) -> Vec<u8> {
        self.key(QUEUE_META, b"depth")
    }

    /// Bytes of the mutations staged or logged and not yet removed (i64 LE, atomic adds).
    pub(crate) fn queue_bytes(&self) -> Vec<u8> {
        self.key(QUEUE_META, b"bytes")
    }

    /// The last marker: position (8) || marker record (SPEC.md "Queue records"), so a retried
    /// marker append finds its first try and an interrupted epoch its cut.
    pub(crate) fn queue_last_marker(&self) -> Vec<u8> {
        self.key(QUEUE_META, b"last-marker")
    }

    /// A mutation's versionstamp by mutation id, so an append whose commit outcome is unknown can
    /// tell whether it landed. Kept until the entry is removed after its epoch committed
    /// (compare-and-cleared against the slot stored in front of its log value).
    pub(crate) fn queue_guard(&self, id: &[u8; 32]) -> Vec<u8> {
        self.key(QUEUE_GUARD, id)
    }

    /// The value template for a guard: placeholder, index in batch, placeholder offset (0).
    pub(crate) fn guard_template(index_in_batch: u16) -> Vec<u8> {
        let mut v = vec![0u8; 10];
        v.extend_from_slice(&index_in_batch.to_be_bytes());
        v.extend_from_slice(&0u32.to_le_bytes());
        v
    }

    // --- tree ---

    pub(crate) fn tree_config(&self) -> Vec<u8> {
        self.key(TREE_META, b"config")
    }

    pub(crate) fn tree_latest(&self) -> Vec<u8> {
        self.key(TREE_META, b"latest")
    }

    pub(crate) fn tree_root(&self, epoch: Epoch) -> Vec<u8> {
        self.key(TREE_ROOTS, &epoch.0.to_be_bytes())
    }

    /// An interior node above the shards; `node_key` starts with the epoch that wrote it.
    pub(crate) fn tree_top(&self, node_key: &[u8]) -> Vec<u8> {
        self.key(TREE_TOP, node_key)
    }

    /// A page of a shard's interior nodes; `page_key` is `epoch || shard || first position`.
    pub(crate) fn tree_node_page(&self, page_key: &[u8]) -> Vec<u8> {
        self.key(TREE_NODES, page_key)
    }

    /// A page of a shard's leaf values; `page_key` as for node pages.
    pub(crate) fn tree_leaf_page(&self, page_key: &[u8]) -> Vec<u8> {
        self.key(TREE_LEAVES, page_key)
    }

    /// The records epochs `>= epoch` wrote, per area: what an interrupted attempt left behind.
    pub(crate) fn tree_records_from(&self, epoch: Epoch) -> [(Vec<u8>, Vec<u8>); 3] {
        let e = epoch.0.to_be_bytes();
        [self.area_from(TREE_TOP, &e), self.area_from(TREE_NODES, &e), self.area_from(TREE_LEAVES, &e)]
    }

    // --- heads ---

    pub(crate) fn head(&self, epoch: Epoch) -> Vec<u8> {
        self.key(HEADS, &epoch.0.to_be_bytes())
    }

    pub(crate) fn heads_range(&self) -> (Vec<u8>, Vec<u8>) {
        self.area_from(HEADS, &[])
    }

    pub(crate) fn head_epoch(&self, key: &[u8]) -> Option<Epoch> {
        let rest: [u8; 8] = key.strip_prefix(self.key(HEADS, &[]).as_slice())?.try_into().ok()?;
        Some(Epoch(u64::from_be_bytes(rest)))
    }

    pub(crate) fn heads_cursor(&self) -> Vec<u8> {
        self.key(HEADS_META, b"cursor")
    }

    // --- lease ---

    pub(crate) fn lease_subspace(&self) -> Vec<u8> {
        self.key(LEASE, &[])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn areas_do_not_overlap_and_cuts_order_like_versionstamps() {
        let l = Layout::new(b"kf/".to_vec());
        let keys =
            [l.log(1), l.queue_next(), l.tree_latest(), l.tree_root(Epoch(1)), l.head(Epoch(1)), l.heads_cursor()];
        for (i, a) in keys.iter().enumerate() {
            for b in &keys[i + 1..] {
                assert_ne!(a, b);
            }
        }
        // A staged key committed at version 41 sorts below the cut at read version 41, one
        // committed at 42 above it.
        let staged = |version: u64, batch: u16| {
            let mut k = l.staged_start();
            k.extend_from_slice(&version.to_be_bytes());
            k.extend_from_slice(&batch.to_be_bytes());
            k.extend_from_slice(&[0, 0]);
            k
        };
        assert!(staged(41, 65535) < l.staged_cut(41));
        assert!(staged(42, 0) >= l.staged_cut(41));
        assert_eq!(l.staged_slot(&staged(7, 1)).map(|s| s[7]), Some(7));
        assert_eq!(l.log_position(&l.log(99)), Some(99));
        assert_eq!(l.head_epoch(&l.head(Epoch(5))), Some(Epoch(5)));
        let template = l.staged_template(3);
        let offset = u32::from_le_bytes(template[template.len() - 4..].try_into().unwrap()) as usize;
        assert_eq!(offset, 4, "the placeholder follows the prefix and the area byte");
        assert_eq!(template.len() - 4, l.staged_len());
    }
}
