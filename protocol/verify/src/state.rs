//! A monitor's saved replay state (docs/SPEC.md appendix B): the last verified checkpoint, the log
//! of heads' right edge and every key's leaf, as bytes. No I/O: the caller stores the bytes.
//! Nothing read back is trusted: [`crate::Replayer::resume`] checks the checkpoint's signature, the
//! log root against it and the rebuilt map root against its head.

use keyfold_core::{Epoch, Frontier, Hash, HeadError, Index, LeafValue, Version};
use thiserror::Error;

/// The first bytes of a state file: its format and version.
pub const STATE_MAGIC: &[u8] = b"keyfold monitor state v3\n";
/// The first bytes of state files of earlier formats: v1 (no key rollovers) and v2 (leaves without
/// their version history). Their leaves cannot give a format 1 map root with version history
/// (SPEC section 1.3): such a state is refused, and the monitor replays from genesis.
const STATE_MAGIC_EARLIER: [&[u8]; 2] = [b"keyfold monitor state v1\n", b"keyfold monitor state v2\n"];

/// What a monitor needs to resume where it stopped (see [`crate::Replayer::snapshot`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaState {
    /// The signed checkpoint of the last verified epoch, as it was served (with any cosignatures).
    pub checkpoint: String,
    /// The signed checkpoints that announced key rollovers (SPEC section 6.6) up to that epoch,
    /// ascending: how the pinned key leads to the one that signed `checkpoint`.
    pub rollovers: Vec<String>,
    /// The log of heads through that epoch.
    pub log: Frontier,
    /// Every key's leaf at that epoch, ascending by index, one per index.
    pub leaves: Vec<(Index, LeafValue)>,
}

/// Why a saved state cannot be resumed from. Every variant means: replay from genesis (or from
/// another state), never from this one.
#[derive(Debug, Error)]
pub enum ResumeError {
    #[error("not a keyfold monitor state (format v3): {0}")]
    Format(String),
    #[error("the saved checkpoint does not verify with the pinned key and origin: {0}")]
    Checkpoint(#[from] HeadError),
    #[error(
        "the saved log of heads has size {found_size} and root {} but the saved checkpoint signs size {size} \
         and root {}",
        .found_root.to_hex(),
        .root.to_hex()
    )]
    LogRoot { size: u64, root: Hash, found_size: u64, found_root: Hash },
    #[error(
        "the saved keys give the map root {} but the saved head of epoch {epoch} signs {}: the state was \
         changed after it was written",
        .found.to_hex(),
        .expected.to_hex()
    )]
    MapRoot { epoch: u64, expected: Hash, found: Hash },
    #[error("the replica cannot be rebuilt: {0}")]
    Replica(String),
}

impl ReplicaState {
    /// The state file's bytes (docs/SPEC.md appendix B).
    pub fn encode(&self) -> Vec<u8> {
        let values: usize = self.leaves.iter().map(|(_, leaf)| leaf.value.as_ref().map_or(0, Vec::len) + 85).sum();
        let mut out = Vec::with_capacity(STATE_MAGIC.len() + self.checkpoint.len() + 64 * 33 + values);
        out.extend_from_slice(STATE_MAGIC);
        put_head_part(&mut out, &self.checkpoint, &self.rollovers, &self.log);
        out.extend_from_slice(&(self.leaves.len() as u64).to_be_bytes());
        for (index, leaf) in &self.leaves {
            out.extend_from_slice(&index.0);
            out.extend_from_slice(&leaf.version.0.to_be_bytes());
            out.extend_from_slice(&leaf.epoch.0.to_be_bytes());
            out.extend_from_slice(&leaf.previous.0);
            match &leaf.value {
                None => out.push(0),
                Some(value) => {
                    out.push(1);
                    let len = u32::try_from(value.len()).expect("a value is far below 4 GiB");
                    out.extend_from_slice(&len.to_be_bytes());
                    out.extend_from_slice(value);
                }
            }
        }
        out
    }

    /// Reads [`ReplicaState::encode`]'s bytes. Checks the layout only (lengths, tags, ascending
    /// indexes, no trailing bytes); whether the content is true is [`crate::Replayer::resume`]'s
    /// check. Allocates no more than the input's size, whatever counts it claims.
    pub fn decode(bytes: &[u8]) -> Result<ReplicaState, ResumeError> {
        let mut r = Reader { bytes, at: 0 };
        let magic = r.take(STATE_MAGIC.len())?;
        if STATE_MAGIC_EARLIER.contains(&magic) {
            return Err(ResumeError::Format(
                "it was written by an earlier keyfold, before leaves committed to their version history; replay \
                 from genesis (remove the state directory)"
                    .into(),
            ));
        }
        if magic != STATE_MAGIC {
            return Err(ResumeError::Format("it does not start with the state magic".into()));
        }
        let (checkpoint, rollovers, log) = r.head_part()?;
        let count = r.u64()?;
        let mut leaves: Vec<(Index, LeafValue)> = Vec::new();
        for _ in 0..count {
            let leaf = r.leaf()?;
            if leaves.last().is_some_and(|(last, _)| *last >= leaf.0) {
                return Err(ResumeError::Format(format!("key index {} is out of order", leaf.0.to_hex())));
            }
            leaves.push(leaf);
        }
        if r.at != bytes.len() {
            return Err(ResumeError::Format(format!("{} bytes after the last key", bytes.len() - r.at)));
        }
        Ok(ReplicaState { checkpoint, rollovers, log, leaves })
    }
}

/// The part a replay state and an audit state share: the checkpoint, the rollovers that lead to
/// its signer, and the log of heads' right edge (SPEC appendix B).
pub(crate) fn put_head_part(out: &mut Vec<u8>, checkpoint: &str, rollovers: &[String], log: &Frontier) {
    put_note(out, checkpoint);
    let count = u32::try_from(rollovers.len()).expect("fewer than 2^32 key rollovers");
    out.extend_from_slice(&count.to_be_bytes());
    for note in rollovers {
        put_note(out, note);
    }
    out.extend_from_slice(&log.size().to_be_bytes());
    for peak in log.peaks() {
        out.extend_from_slice(&peak.0);
    }
}

/// Reads [`put_head_part`]'s bytes at the start of `bytes`; also returns how many it used.
pub(crate) fn read_head_part(bytes: &[u8]) -> Result<(String, Vec<String>, Frontier, usize), ResumeError> {
    let mut r = Reader { bytes, at: 0 };
    let (checkpoint, rollovers, log) = r.head_part()?;
    Ok((checkpoint, rollovers, log, r.at))
}

/// A signed note: its length (u32, big-endian) and its bytes.
fn put_note(out: &mut Vec<u8>, note: &str) {
    let len = u32::try_from(note.len()).expect("a checkpoint note is at most a few KiB");
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(note.as_bytes());
}

/// A cursor over the state's bytes; every read past the end is a format error.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn head_part(&mut self) -> Result<(String, Vec<String>, Frontier), ResumeError> {
        let checkpoint = self.note()?;
        let mut rollovers = Vec::new();
        // At least 4 bytes per note: a count beyond the input's size fails at its first read.
        for _ in 0..self.u32()? {
            rollovers.push(self.note()?);
        }
        let size = self.u64()?;
        let peaks = (0..size.count_ones()).map(|_| self.hash()).collect::<Result<Vec<_>, _>>()?;
        let log = Frontier::from_peaks(size, peaks).expect("one peak read per set bit");
        Ok((checkpoint, rollovers, log))
    }

    fn note(&mut self) -> Result<String, ResumeError> {
        let len = self.u32()? as usize;
        String::from_utf8(self.take(len)?.to_vec()).map_err(|_| ResumeError::Format("a checkpoint is not UTF-8".into()))
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], ResumeError> {
        let end = self.at.checked_add(n).filter(|&end| end <= self.bytes.len());
        let end = end.ok_or_else(|| ResumeError::Format(format!("truncated at byte {}", self.at)))?;
        let taken = &self.bytes[self.at..end];
        self.at = end;
        Ok(taken)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], ResumeError> {
        Ok(self.take(N)?.try_into().expect("took N bytes"))
    }

    fn u32(&mut self) -> Result<u32, ResumeError> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    fn u64(&mut self) -> Result<u64, ResumeError> {
        Ok(u64::from_be_bytes(self.array()?))
    }

    fn hash(&mut self) -> Result<Hash, ResumeError> {
        Ok(Hash(self.array()?))
    }

    fn leaf(&mut self) -> Result<(Index, LeafValue), ResumeError> {
        let index = Index(self.array()?);
        let version = Version(self.u64()?);
        let epoch = Epoch(self.u64()?);
        let previous = self.hash()?;
        let value = match self.array::<1>()?[0] {
            0 => None,
            1 => {
                let len = self.u32()? as usize;
                Some(self.take(len)?.to_vec())
            }
            tag => return Err(ResumeError::Format(format!("value tag {tag} (0 or 1)"))),
        };
        Ok((index, LeafValue::new(version, epoch, previous, value)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> ReplicaState {
        let mut log = Frontier::new();
        for i in 0u8..5 {
            log.push(keyfold_core::log::leaf_hash(&[i]));
        }
        let leaves = vec![
            (Index([1; 32]), LeafValue::present(Version(2), b"pk".to_vec())),
            (Index([7; 32]), LeafValue::tombstone(Version(3))),
        ];
        let rollovers = vec!["rollover\n\n\u{2014} sig\n".into()];
        ReplicaState { checkpoint: "note\n\n\u{2014} sig\n".into(), rollovers, log, leaves }
    }

    #[test]
    fn state_bytes_round_trip_and_any_cut_is_refused() {
        let state = sample();
        let bytes = state.encode();
        assert_eq!(ReplicaState::decode(&bytes).unwrap(), state);
        for cut in 0..bytes.len() {
            assert!(ReplicaState::decode(&bytes[..cut]).is_err(), "a file cut at {cut} bytes");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(matches!(ReplicaState::decode(&longer), Err(ResumeError::Format(m)) if m.contains("after the last")));
    }

    #[test]
    fn states_of_earlier_formats_are_refused_with_a_way_out() {
        let bytes = sample().encode();
        for magic in STATE_MAGIC_EARLIER {
            let earlier = [magic, &bytes[STATE_MAGIC.len()..]].concat();
            let e = ReplicaState::decode(&earlier).unwrap_err();
            assert!(e.to_string().contains("replay from genesis"), "{e}");
        }
    }

    #[test]
    fn keys_out_of_order_and_bad_tags_are_refused() {
        let mut state = sample();
        state.leaves.reverse();
        let err = ReplicaState::decode(&state.encode()).unwrap_err();
        assert!(err.to_string().contains("out of order"), "{err}");
        let mut bytes = sample().encode();
        let tag_at = bytes.len() - 1 - 81 - 4 - 2; // the first leaf's tag (the last leaf is 81 bytes)
        assert_eq!(bytes[tag_at], 1);
        bytes[tag_at] = 9;
        let err = ReplicaState::decode(&bytes).unwrap_err();
        assert!(err.to_string().contains("value tag 9"), "{err}");
    }
}
