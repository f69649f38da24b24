//! Checking a key's history (SPEC section 1.3): a list of versions, each with the epoch that
//! applied it and its value or tombstone, is the key's complete history exactly when its
//! commitments, chained from where the client starts, end at the commitment the key's signed leaf
//! binds. A missing, added, changed or reordered version breaks the chain. No I/O.

use crate::lookup::{LookupError, Pinned, Verified, verify_lookup_in_view};
use crate::view::View;
use crate::wire::{HistoryResponse, KeyVersionResponse};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use keyfold_core::{Epoch, Hash, HashSuite, LeafValue, Version};
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// One version of a key's history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryVersion {
    pub version: Version,
    /// The epoch that applied it.
    pub epoch: Epoch,
    /// Its value; `None`: deleted at this version.
    pub value: Option<Vec<u8>>,
}

/// Where a history check starts, and where a verified history ends: a key's version, the epoch
/// that applied it, whether it holds a value, and its commitment. A client that verified a key's
/// history up to some version keeps this and later checks only the versions after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryPoint {
    pub version: u64,
    pub epoch: u64,
    pub has_value: bool,
    /// Base64 of the commitment `C_version` (32 zero bytes at version 0).
    #[serde(with = "hash_base64")]
    pub commitment: Hash,
}

impl HistoryPoint {
    /// Before a key's first version.
    pub const START: HistoryPoint = HistoryPoint { version: 0, epoch: 0, has_value: false, commitment: Hash([0; 32]) };
}

/// A history checked against a verified lookup of the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedHistory {
    /// The lookup the versions chain to (its head, leaf and witnesses).
    pub lookup: Verified,
    /// Where the versions start: the point the client gave, or the key at the epoch they are
    /// listed after.
    pub start: HistoryPoint,
    /// The versions after the starting point, oldest first.
    pub versions: Vec<HistoryVersion>,
    /// Where the history ends: the key's current version.
    pub end: HistoryPoint,
}

/// Why a history was refused. Every variant means: this list is not the key's history.
#[derive(Debug, Error)]
pub enum HistoryError {
    #[error(transparent)]
    Lookup(#[from] LookupError),
    #[error("the answer is not the last page of the history (it has no lookup to chain to)")]
    NotLastPage,
    #[error("a value is not base64")]
    ValueNotBase64,
    #[error("version {found} follows version {previous}: versions are numbered without gaps")]
    Gap { previous: u64, found: u64 },
    #[error("version {version} is from epoch {epoch}, before the epoch {previous} of the version before it")]
    EpochOrder { version: u64, epoch: u64, previous: u64 },
    #[error("version {version} is from epoch {epoch}, after the epoch {head} of the signed head")]
    EpochAfterHead { version: u64, epoch: u64, head: u64 },
    #[error("version {version} deletes a key that had no value")]
    DeleteWithoutValue { version: u64 },
    #[error("version {version} is listed as deleted but has a value, or the reverse")]
    DeletedFlag { version: u64 },
    #[error(
        "the versions do not chain to the signed leaf (version {leaf_version}): a version is missing, added, \
         changed or reordered"
    )]
    Chain { leaf_version: u64 },
    #[error("the key has no leaf at the signed head but {0} version(s) are listed")]
    Absent(usize),
    #[error("the answer lists versions after epoch {epoch} but not the key's lookup at that epoch (`start`)")]
    MissingStart { epoch: u64 },
    #[error("the starting lookup is for epoch {found}, not the epoch {expected} the versions are listed after")]
    StartEpoch { expected: u64, found: u64 },
    #[error("the starting lookup at epoch {epoch}: {error}")]
    Start { epoch: u64, error: LookupError },
    #[error("version {version} is from epoch {epoch}, not after the epoch {after} the versions are listed after")]
    NotAfter { version: u64, epoch: u64, after: u64 },
}

/// Checks that `versions`, after `start`, are exactly the history that `leaf` (the key's leaf at a
/// head of epoch `head_epoch`; `None`: absent) commits to. Returns where the history ends.
pub fn check_history(
    suite: HashSuite,
    start: &HistoryPoint,
    versions: &[HistoryVersion],
    leaf: Option<&LeafValue>,
    head_epoch: Epoch,
) -> Result<HistoryPoint, HistoryError> {
    let mut at = *start;
    for v in versions {
        let (version, epoch) = (v.version.0, v.epoch.0);
        if Some(version) != at.version.checked_add(1) {
            return Err(HistoryError::Gap { previous: at.version, found: version });
        }
        if epoch < at.epoch.max(1) {
            return Err(HistoryError::EpochOrder { version, epoch, previous: at.epoch });
        }
        if epoch > head_epoch.0 {
            return Err(HistoryError::EpochAfterHead { version, epoch, head: head_epoch.0 });
        }
        if v.value.is_none() && !at.has_value {
            return Err(HistoryError::DeleteWithoutValue { version });
        }
        let this = LeafValue::new(v.version, v.epoch, at.commitment, v.value.clone());
        let commitment = suite.value_commitment(&this);
        at = HistoryPoint { version, epoch, has_value: v.value.is_some(), commitment };
    }
    match leaf {
        None if at.version == 0 => Ok(at),
        None => Err(HistoryError::Absent(versions.len())),
        Some(leaf) if leaf.version.0 == at.version && suite.value_commitment(leaf) == at.commitment => Ok(at),
        Some(leaf) => Err(HistoryError::Chain { leaf_version: leaf.version.0 }),
    }
}

/// The versions an answer lists, decoded.
pub fn decode_versions(listed: &[KeyVersionResponse]) -> Result<Vec<HistoryVersion>, HistoryError> {
    listed
        .iter()
        .map(|v| {
            let value =
                v.value.as_deref().map(|b| B64.decode(b)).transpose().map_err(|_| HistoryError::ValueNotBase64)?;
            if v.deleted != value.is_none() {
                return Err(HistoryError::DeletedFlag { version: v.version });
            }
            Ok(HistoryVersion { version: Version(v.version), epoch: Epoch(v.epoch), value })
        })
        .collect()
}

/// Checks the last page of `GET /v1/keys/{key}/history?after_version=<start.version>` for `key`:
/// its lookup as [`verify_lookup_in_view`] does (signature, witnesses, consistency with `view`),
/// then `earlier` (versions from previous pages, if any) and its versions as the key's history
/// after `start`. Returns the verified history and the new view.
pub fn verify_history(
    key: &[u8],
    start: &HistoryPoint,
    earlier: Vec<HistoryVersion>,
    answer: &HistoryResponse,
    pinned: &Pinned,
    view: Option<&View>,
) -> Result<(VerifiedHistory, View), HistoryError> {
    let (verified, next, versions) = last_page(key, earlier, answer, pinned, view)?;
    let head = &verified.head;
    let end = check_history(head.suite, start, &versions, verified.leaf.as_ref(), head.epoch)?;
    Ok((VerifiedHistory { lookup: verified, start: *start, versions, end }, next))
}

/// Checks the last page of `GET /v1/keys/{key}/history?after=<epoch>` for `key`: its lookup as
/// [`verify_history`] does, then its `start`, the key's lookup at `epoch` proven into the same
/// latest checkpoint (a different root for that size is a fork), whose leaf is where `earlier`
/// and the page's versions must begin. Accepted, they are the key's complete history after
/// `epoch`: every version applied by a later epoch, none left out. An `epoch` at or after the
/// lookup's needs no `start` and lists nothing.
pub fn verify_history_since(
    key: &[u8],
    epoch: Epoch,
    earlier: Vec<HistoryVersion>,
    answer: &HistoryResponse,
    pinned: &Pinned,
    view: Option<&View>,
) -> Result<(VerifiedHistory, View), HistoryError> {
    let (verified, next, versions) = last_page(key, earlier, answer, pinned, view)?;
    let suite = verified.head.suite;
    let start = if epoch >= verified.head.epoch {
        point_of(suite, verified.leaf.as_ref())
    } else {
        let start = answer.start.as_ref().ok_or(HistoryError::MissingStart { epoch: epoch.0 })?;
        let (at, _) = verify_lookup_in_view(key, start, pinned, Some(&next))
            .map_err(|error| HistoryError::Start { epoch: epoch.0, error })?;
        if at.head.epoch != epoch {
            return Err(HistoryError::StartEpoch { expected: epoch.0, found: at.head.epoch.0 });
        }
        point_of(suite, at.leaf.as_ref())
    };
    if let Some(v) = versions.iter().find(|v| v.epoch <= epoch) {
        return Err(HistoryError::NotAfter { version: v.version.0, epoch: v.epoch.0, after: epoch.0 });
    }
    let end = check_history(suite, &start, &versions, verified.leaf.as_ref(), verified.head.epoch)?;
    Ok((VerifiedHistory { lookup: verified, start, versions, end }, next))
}

/// A last page's lookup verified in `view` (with the new view), and the versions listed:
/// `earlier` (from previous pages), then the page's.
fn last_page(
    key: &[u8],
    earlier: Vec<HistoryVersion>,
    answer: &HistoryResponse,
    pinned: &Pinned,
    view: Option<&View>,
) -> Result<(Verified, View, Vec<HistoryVersion>), HistoryError> {
    let lookup = answer.lookup.as_ref().ok_or(HistoryError::NotLastPage)?;
    let (verified, next) = verify_lookup_in_view(key, lookup, pinned, view)?;
    let mut versions = earlier;
    versions.extend(decode_versions(&answer.versions)?);
    Ok((verified, next, versions))
}

/// Where a history stands at `leaf` (none: before the key's first version).
fn point_of(suite: HashSuite, leaf: Option<&LeafValue>) -> HistoryPoint {
    leaf.map_or(HistoryPoint::START, |leaf| HistoryPoint {
        version: leaf.version.0,
        epoch: leaf.epoch.0,
        has_value: leaf.value.is_some(),
        commitment: suite.value_commitment(leaf),
    })
}

mod hash_base64 {
    use super::{B64, Engine, Hash};
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(hash: &Hash, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&B64.encode(hash.0))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Hash, D::Error> {
        let text = String::deserialize(d)?;
        let bytes = B64.decode(text).map_err(serde::de::Error::custom)?;
        Ok(Hash(bytes.try_into().map_err(|_| serde::de::Error::custom("a hash is 32 bytes"))?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// alice's five versions across three epochs (two in epoch 2, a delete and a re-creation in
    /// epoch 3), as in the golden vectors, and her leaf after epoch 3.
    fn alice(suite: HashSuite) -> (Vec<HistoryVersion>, LeafValue) {
        let listed: [(u64, Option<&[u8]>); 5] =
            [(1, Some(b"pk1")), (2, Some(b"pk2")), (2, Some(b"pk3")), (3, None), (3, Some(b"pk5"))];
        let versions: Vec<HistoryVersion> = (1..)
            .zip(listed)
            .map(|(v, (e, value))| HistoryVersion {
                version: Version(v),
                epoch: Epoch(e),
                value: value.map(<[u8]>::to_vec),
            })
            .collect();
        let mut previous = Hash::default();
        let mut leaf = None;
        for v in &versions {
            let this = LeafValue::new(v.version, v.epoch, previous, v.value.clone());
            previous = suite.value_commitment(&this);
            leaf = Some(this);
        }
        (versions, leaf.expect("five versions"))
    }

    #[test]
    fn the_complete_history_is_accepted_from_the_start_and_from_any_point() {
        for suite in [HashSuite::Blake3, HashSuite::Sha256] {
            let (versions, leaf) = alice(suite);
            let end = check_history(suite, &HistoryPoint::START, &versions, Some(&leaf), Epoch(3)).unwrap();
            assert_eq!((end.version, end.epoch, end.has_value), (5, 3, true));
            // From any point a client verified before, the rest of the list reaches the same leaf.
            for split in 0..=versions.len() {
                let mut point = HistoryPoint::START;
                for v in &versions[..split] {
                    let this = LeafValue::new(v.version, v.epoch, point.commitment, v.value.clone());
                    point = check_history(suite, &point, std::slice::from_ref(v), Some(&this), Epoch(3)).unwrap();
                }
                assert_eq!(check_history(suite, &point, &versions[split..], Some(&leaf), Epoch(3)).unwrap(), end);
                if split > 0 {
                    let stale = HistoryPoint { commitment: Hash([9; 32]), ..point };
                    let refused = check_history(suite, &stale, &versions[split..], Some(&leaf), Epoch(3));
                    assert!(matches!(refused, Err(HistoryError::Chain { .. })), "a rewritten prefix, split {split}");
                }
            }
        }
    }

    #[test]
    fn a_missing_added_changed_or_reordered_version_is_refused() {
        let suite = HashSuite::Blake3;
        let (versions, leaf) = alice(suite);
        let check =
            |listed: &[HistoryVersion]| check_history(suite, &HistoryPoint::START, listed, Some(&leaf), Epoch(3));
        let mut missing = versions.clone();
        missing.remove(2);
        assert!(matches!(check(&missing), Err(HistoryError::Gap { previous: 2, found: 4 })));
        let mut renumbered = missing.clone();
        for (v, at) in (1..).zip(renumbered.iter_mut()) {
            at.version = Version(v);
        }
        assert!(matches!(check(&renumbered), Err(HistoryError::Chain { leaf_version: 5 })), "missing, renumbered");
        let mut added = versions.clone();
        added.insert(3, HistoryVersion { version: Version(4), epoch: Epoch(2), value: Some(b"evil".to_vec()) });
        assert!(matches!(check(&added), Err(HistoryError::Gap { .. })));
        let mut reordered = versions.clone();
        reordered.swap(1, 2);
        assert!(matches!(check(&reordered), Err(HistoryError::Gap { previous: 1, found: 3 })));
        let mut swapped_values = versions.clone();
        let (a, b) = (swapped_values[1].value.clone(), swapped_values[2].value.clone());
        (swapped_values[1].value, swapped_values[2].value) = (b, a);
        assert!(matches!(check(&swapped_values), Err(HistoryError::Chain { .. })), "reordered values");
        let mut changed = versions.clone();
        changed[0].value = Some(b"evil".to_vec());
        assert!(matches!(check(&changed), Err(HistoryError::Chain { .. })));
        let mut other_epoch = versions.clone();
        other_epoch[1].epoch = Epoch(1);
        assert!(matches!(check(&other_epoch), Err(HistoryError::Chain { .. })));
        assert!(matches!(check(&versions[..4]), Err(HistoryError::Chain { .. })), "the last version left out");
        let absent = check_history(suite, &HistoryPoint::START, &versions, None, Epoch(3));
        assert!(matches!(absent, Err(HistoryError::Absent(5))));
    }

    #[test]
    fn versions_out_of_epoch_order_or_deleting_nothing_are_refused() {
        let suite = HashSuite::Sha256;
        let (versions, leaf) = alice(suite);
        let late = check_history(suite, &HistoryPoint::START, &versions, Some(&leaf), Epoch(2));
        assert!(matches!(late, Err(HistoryError::EpochAfterHead { version: 4, epoch: 3, head: 2 })));
        let mut backwards = versions.clone();
        backwards[2].epoch = Epoch(1);
        let refused = check_history(suite, &HistoryPoint::START, &backwards, Some(&leaf), Epoch(3));
        assert!(matches!(refused, Err(HistoryError::EpochOrder { version: 3, epoch: 1, previous: 2 })));
        let delete_first = [HistoryVersion { version: Version(1), epoch: Epoch(1), value: None }];
        let refused = check_history(suite, &HistoryPoint::START, &delete_first, None, Epoch(3));
        assert!(matches!(refused, Err(HistoryError::DeleteWithoutValue { version: 1 })));
    }
}
