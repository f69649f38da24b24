//! Archive bytes are deterministic and pinned; reading is strict.

use keyfold_archive::{ArchiveError, ArchiveOutcome, ArchiveRow, archive_digest, read_archive, write_archive};
use keyfold_core::{Hash, HashSuite};

fn rows() -> Vec<ArchiveRow> {
    (0..50u64)
        .map(|i| {
            let outcome = match i % 5 {
                0 => ArchiveOutcome::Rejected,
                1 => ArchiveOutcome::Duplicate,
                _ => ArchiveOutcome::Applied,
            };
            let applied = outcome == ArchiveOutcome::Applied;
            ArchiveRow {
                position: 10 + i * 3,
                mutation_id: Hash([u8::try_from(i).unwrap(); 32]),
                key_index: Some(Hash([u8::try_from(i + 100).unwrap(); 32])),
                key: Some(format!("user{i}@example.com").into_bytes()),
                value: (i % 7 != 0).then(|| vec![u8::try_from(i).unwrap(); usize::try_from(i).unwrap()]),
                tombstone: i % 7 == 0,
                owner_signature: (i % 11 == 0).then(|| vec![1; 64]),
                expected_version: i % 4,
                new_version: applied.then_some(i % 4 + 1),
                outcome,
                reason: (outcome == ArchiveOutcome::Rejected).then(|| "version_mismatch".to_owned()),
                leaf_hash: applied.then_some(Hash([7; 32])),
            }
        })
        .collect()
}

#[test]
fn round_trip_and_identical_bytes() {
    let rows = rows();
    let bytes = write_archive(&rows).unwrap();
    assert_eq!(read_archive(&bytes).unwrap(), rows);
    assert_eq!(write_archive(&rows).unwrap(), bytes, "a re-run writes the identical file");
    let empty = write_archive(&[]).unwrap();
    assert!(read_archive(&empty).unwrap().is_empty(), "heartbeat epochs get an empty archive");
}

/// Pins the archive bytes through their digest: a change of format, writer properties or a
/// dependency that changes the bytes must update SPEC.md and this vector in the same commit.
#[test]
fn golden_archive_digest() {
    let bytes = write_archive(&rows()).unwrap();
    let digest = archive_digest(HashSuite::Sha256, &bytes).to_hex();
    let empty = archive_digest(HashSuite::Sha256, &write_archive(&[]).unwrap()).to_hex();
    let pinned = include_str!("vectors/archive_digests.txt");
    let expected = format!("rows {digest}\nempty {empty}\n");
    if std::env::var_os("KEYFOLD_BLESS").is_some() {
        std::fs::write(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/vectors/archive_digests.txt"), &expected).unwrap();
        return;
    }
    assert_eq!(pinned, expected, "archive bytes changed");
}

#[test]
fn damage_is_detected() {
    let bytes = write_archive(&rows()).unwrap();
    let digest = archive_digest(HashSuite::Blake3, &bytes);
    for at in (0..bytes.len()).step_by(97) {
        let mut bad = bytes.clone();
        bad[at] ^= 0x10;
        assert_ne!(archive_digest(HashSuite::Blake3, &bad), digest);
    }
    assert!(read_archive(&bytes[..bytes.len() - 10]).is_err(), "truncated");
    assert!(read_archive(b"not parquet at all").is_err());
}

#[test]
fn foreign_schemas_are_refused() {
    use arrow_array::{RecordBatch, UInt64Array};
    use arrow_schema::{DataType, Field, Schema};
    use std::sync::Arc;
    let schema = Arc::new(Schema::new(vec![Field::new("position", DataType::UInt64, false)]));
    let batch = RecordBatch::try_new(schema.clone(), vec![Arc::new(UInt64Array::from(vec![1u64]))]).unwrap();
    let mut out = Vec::new();
    let mut w = parquet::arrow::ArrowWriter::try_new(&mut out, schema, None).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
    // Refused at the footer (it holds statistics Keyfold never writes) before the schema check.
    assert!(matches!(read_archive(&out), Err(ArchiveError::Schema(_) | ArchiveError::Footer(_))));
}

/// Inputs the fuzzer (`fuzz/`, target `archive_read`) found to crash the Parquet reader: each must
/// be refused with an error, never a panic.
#[test]
fn malformed_archives_found_by_fuzzing_are_errors() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors/malformed");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let bytes = std::fs::read(&path).unwrap();
        let result = keyfold_archive::read_archive(&bytes);
        assert!(result.is_err(), "{} must not read as an archive", path.display());
        if path.file_name().unwrap().to_str().unwrap().contains("huge-allocation") {
            // Refused by the footer bounds check before the reader allocates what it declares.
            assert!(matches!(result, Err(keyfold_archive::ArchiveError::Footer(_))), "{result:?}");
        }
        seen += 1;
    }
    assert!(seen >= 1, "the regression inputs are there");
}
