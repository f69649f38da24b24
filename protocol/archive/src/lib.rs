//! Epoch archives: one Parquet file per epoch with every mutation the epoch consumed and its
//! outcome, in queue order (SPEC.md section 7). Monitors download them, replay them and recompute
//! every root; the archive's digest is signed in the epoch's head.
//!
//! Bytes are deterministic: every writer property is pinned here (never a library default), the
//! `created_by` string is ours, and rows come in queue order, so the same epoch always gives the
//! same file and digest.

use arrow_array::builder::{BinaryBuilder, StringBuilder, UInt64Builder};
use arrow_array::{
    Array, ArrayRef, BinaryArray, BooleanArray, FixedSizeBinaryArray, RecordBatch, StringArray, UInt64Array,
};
use arrow_buffer::{Buffer, NullBuffer};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use keyfold_core::{Hash, HashSuite};
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::arrow_writer::{ArrowColumnChunk, compute_leaves};
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::{EnabledStatistics, WriterProperties, WriterVersion};
use parquet::schema::types::ColumnPath;
use rayon::prelude::*;
use std::sync::Arc;
use thiserror::Error;

mod footer;

/// The `created_by` recorded in every archive (part of the bytes, so pinned).
pub const CREATED_BY: &str = "keyfold archive format 1";

/// What happened to an archived mutation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArchiveOutcome {
    Applied,
    Rejected,
    Duplicate,
}

impl ArchiveOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            ArchiveOutcome::Applied => "applied",
            ArchiveOutcome::Rejected => "rejected",
            ArchiveOutcome::Duplicate => "duplicate",
        }
    }

    fn parse(s: &str) -> Option<ArchiveOutcome> {
        match s {
            "applied" => Some(ArchiveOutcome::Applied),
            "rejected" => Some(ArchiveOutcome::Rejected),
            "duplicate" => Some(ArchiveOutcome::Duplicate),
            _ => None,
        }
    }
}

/// One archived mutation and its outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchiveRow {
    /// Queue position (strictly increasing within an archive).
    pub position: u64,
    pub mutation_id: Hash,
    /// The key's map index (nullable in the format for a later privacy mode).
    pub key_index: Option<Hash>,
    /// The key (nullable for a later privacy mode).
    pub key: Option<Vec<u8>>,
    /// The new value; null for a tombstone (see `tombstone`) or when withheld.
    pub value: Option<Vec<u8>>,
    pub tombstone: bool,
    pub owner_signature: Option<Vec<u8>>,
    pub expected_version: u64,
    /// The key's version after this mutation, when applied.
    pub new_version: Option<u64>,
    pub outcome: ArchiveOutcome,
    /// Why it was rejected.
    pub reason: Option<String>,
    /// The key's leaf hash after this mutation, when applied.
    pub leaf_hash: Option<Hash>,
}

#[derive(Debug, Error)]
pub enum ArchiveError {
    #[error("not a readable Parquet archive: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
    #[error("archive data: {0}")]
    Arrow(#[from] arrow_schema::ArrowError),
    #[error("the archive's schema is not Keyfold archive format 1: {0}")]
    Schema(String),
    #[error("row {row}: {message}")]
    Row { row: usize, message: String },
    /// The footer fails the bounds check made before the Parquet reader sees it (`footer`).
    #[error("the Parquet footer is not that of a Keyfold format 1 archive: {0}")]
    Footer(String),
    #[error("not a readable Parquet archive: the reader failed on malformed input ({0})")]
    Malformed(String),
}

/// The archive schema (SPEC.md section 7), column by column.
pub fn schema() -> SchemaRef {
    let hash = || DataType::FixedSizeBinary(32);
    Arc::new(Schema::new(vec![
        Field::new("position", DataType::UInt64, false),
        Field::new("mutation_id", hash(), false),
        Field::new("key_index", hash(), true),
        Field::new("key", DataType::Binary, true),
        Field::new("value", DataType::Binary, true),
        Field::new("tombstone", DataType::Boolean, false),
        Field::new("owner_signature", DataType::Binary, true),
        Field::new("expected_version", DataType::UInt64, false),
        Field::new("new_version", DataType::UInt64, true),
        Field::new("outcome", DataType::Utf8, false),
        Field::new("reason", DataType::Utf8, true),
        Field::new("leaf_hash", hash(), true),
    ]))
}

/// Every writer property, pinned: a dependency upgrade must not change archive bytes silently
/// (the golden-archive test would catch it).
/// Columns of uniformly random 32-byte hashes: ZSTD finds nothing to gain in them and costs a third
/// of the encoding time of a large archive, so they are stored uncompressed.
const UNCOMPRESSED_COLUMNS: [&str; 3] = ["mutation_id", "key_index", "leaf_hash"];

fn writer_properties() -> WriterProperties {
    let builder = UNCOMPRESSED_COLUMNS.iter().fold(WriterProperties::builder(), |b, column| {
        b.set_column_compression(ColumnPath::from(*column), Compression::UNCOMPRESSED)
    });
    builder
        .set_created_by(CREATED_BY.to_owned())
        .set_writer_version(WriterVersion::PARQUET_1_0)
        // Level 1: a fifth faster than level 3 to encode a 1M-row archive, for a file 1.3% larger
        // (most of it is random bytes either way).
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(1).expect("level 1 is valid")))
        .set_dictionary_enabled(false)
        .set_statistics_enabled(EnabledStatistics::None)
        .set_bloom_filter_enabled(false)
        .set_max_row_group_size(ROW_GROUP_ROWS)
        .set_data_page_size_limit(1 << 20)
        .set_write_batch_size(1024)
        .set_key_value_metadata(None)
        .build()
}

fn hash_array(values: impl ExactSizeIterator<Item = Option<Hash>>) -> Result<ArrayRef, ArchiveError> {
    // Straight into one buffer and a validity bitmap (the builder's per-value checks cost a tenth
    // of a large archive's encoding).
    let mut bytes = Vec::with_capacity(values.len() * 32);
    let mut valid = Vec::with_capacity(values.len());
    for v in values {
        bytes.extend_from_slice(&v.unwrap_or_default().0);
        valid.push(v.is_some());
    }
    let nulls = valid.contains(&false).then(|| NullBuffer::from(valid));
    Ok(Arc::new(FixedSizeBinaryArray::try_new(32, Buffer::from_vec(bytes), nulls)?))
}

fn binary_array<'a>(values: impl Iterator<Item = Option<&'a [u8]>> + Clone) -> ArrayRef {
    let bytes = values.clone().map(|v| v.map_or(0, <[u8]>::len)).sum();
    let mut b = BinaryBuilder::with_capacity(values.size_hint().0, bytes);
    for v in values {
        b.append_option(v);
    }
    Arc::new(b.finish())
}

/// The largest row group (pinned in [`writer_properties`] as well).
const ROW_GROUP_ROWS: usize = 1 << 20;

/// Column `c` of the schema for `rows`.
fn column_array(c: usize, rows: &[ArchiveRow]) -> Result<ArrayRef, ArchiveError> {
    let u64s = |f: &dyn Fn(&ArchiveRow) -> Option<u64>| -> ArrayRef {
        let mut b = UInt64Builder::with_capacity(rows.len());
        for r in rows {
            b.append_option(f(r));
        }
        Arc::new(b.finish())
    };
    Ok(match c {
        0 => u64s(&|r| Some(r.position)),
        1 => hash_array(rows.iter().map(|r| Some(r.mutation_id)))?,
        2 => hash_array(rows.iter().map(|r| r.key_index))?,
        3 => binary_array(rows.iter().map(|r| r.key.as_deref())),
        4 => binary_array(rows.iter().map(|r| r.value.as_deref())),
        5 => Arc::new(rows.iter().map(|r| Some(r.tombstone)).collect::<BooleanArray>()),
        6 => binary_array(rows.iter().map(|r| r.owner_signature.as_deref())),
        7 => u64s(&|r| Some(r.expected_version)),
        8 => u64s(&|r| r.new_version),
        9 => {
            let mut b = StringBuilder::with_capacity(rows.len(), rows.len() * 8);
            rows.iter().for_each(|r| b.append_value(r.outcome.as_str()));
            Arc::new(b.finish())
        }
        10 => {
            let mut b = StringBuilder::new();
            rows.iter().for_each(|r| b.append_option(r.reason.as_deref()));
            Arc::new(b.finish())
        }
        11 => hash_array(rows.iter().map(|r| r.leaf_hash))?,
        _ => unreachable!("the schema has 12 columns"),
    })
}

/// Encodes `rows` (in queue order) as an archive file.
///
/// Row groups of [`ROW_GROUP_ROWS`] rows, as `ArrowWriter` cuts them; within a row group the 12
/// columns are built and encoded in parallel (each column chunk's bytes depend only on its
/// column), then appended in schema order, so the bytes are the same as a sequential
/// `ArrowWriter` writes, whatever the thread count (pinned by the golden archive digests).
pub fn write_archive(rows: &[ArchiveRow]) -> Result<Vec<u8>, ArchiveError> {
    assert!(rows.windows(2).all(|w| w[0].position < w[1].position), "archive rows must be in queue order");
    let schema = schema();
    let writer = ArrowWriter::try_new(Vec::new(), Arc::clone(&schema), Some(writer_properties()))?;
    let (mut writer, factory) = writer.into_serialized_writer()?;
    for (group, rows) in rows.chunks(ROW_GROUP_ROWS).enumerate() {
        let columns = factory.create_column_writers(group)?;
        assert_eq!(columns.len(), schema.fields().len(), "one leaf column per field");
        let chunks = columns
            .into_par_iter()
            .enumerate()
            .map(|(c, mut column)| {
                let array = column_array(c, rows)?;
                for leaf in compute_leaves(schema.field(c), &array)? {
                    column.write(&leaf)?;
                }
                Ok(column.close()?)
            })
            .collect::<Result<Vec<ArrowColumnChunk>, ArchiveError>>()?;
        let mut row_group = writer.next_row_group()?;
        for chunk in chunks {
            chunk.append_to_row_group(&mut row_group)?;
        }
        row_group.close()?;
    }
    Ok(writer.into_inner()?) // writes the footer
}

/// The digest signed in the head: `suite.archive_digest(file bytes)`.
pub fn archive_digest(suite: HashSuite, bytes: &[u8]) -> Hash {
    suite.archive_digest(bytes)
}

fn column<'a, T: 'static>(batch: &'a RecordBatch, name: &str) -> Result<&'a T, ArchiveError> {
    batch
        .column_by_name(name)
        .and_then(|c| c.as_any().downcast_ref::<T>())
        .ok_or_else(|| ArchiveError::Schema(format!("column {name} is missing or has the wrong type")))
}

fn hash_at(a: &FixedSizeBinaryArray, i: usize) -> Option<Hash> {
    a.is_valid(i).then(|| Hash(a.value(i).try_into().expect("fixed size 32")))
}

/// Rows decoded per record batch when reading.
const READ_BATCH_ROWS: usize = 8 * 1024;

/// The typed columns of one record batch.
struct Columns<'a> {
    position: &'a UInt64Array,
    id: &'a FixedSizeBinaryArray,
    index: &'a FixedSizeBinaryArray,
    key: &'a BinaryArray,
    value: &'a BinaryArray,
    tombstone: &'a BooleanArray,
    signature: &'a BinaryArray,
    expected: &'a UInt64Array,
    new_version: &'a UInt64Array,
    outcome: &'a StringArray,
    reason: &'a StringArray,
    leaf: &'a FixedSizeBinaryArray,
}

impl<'a> Columns<'a> {
    fn of(batch: &'a RecordBatch) -> Result<Columns<'a>, ArchiveError> {
        Ok(Columns {
            position: column(batch, "position")?,
            id: column(batch, "mutation_id")?,
            index: column(batch, "key_index")?,
            key: column(batch, "key")?,
            value: column(batch, "value")?,
            tombstone: column(batch, "tombstone")?,
            signature: column(batch, "owner_signature")?,
            expected: column(batch, "expected_version")?,
            new_version: column(batch, "new_version")?,
            outcome: column(batch, "outcome")?,
            reason: column(batch, "reason")?,
            leaf: column(batch, "leaf_hash")?,
        })
    }

    /// Row `i` of the batch, which is row `row` of the archive (for errors).
    fn row(&self, i: usize, row: usize) -> Result<ArchiveRow, ArchiveError> {
        let bad = |message: &str| ArchiveError::Row { row, message: message.to_owned() };
        let opt_bytes = |a: &BinaryArray| a.is_valid(i).then(|| a.value(i).to_vec());
        Ok(ArchiveRow {
            position: self.position.value(i),
            mutation_id: hash_at(self.id, i).ok_or_else(|| bad("mutation_id is null"))?,
            key_index: hash_at(self.index, i),
            key: opt_bytes(self.key),
            value: opt_bytes(self.value),
            tombstone: self.tombstone.value(i),
            owner_signature: opt_bytes(self.signature),
            expected_version: self.expected.value(i),
            new_version: self.new_version.is_valid(i).then(|| self.new_version.value(i)),
            outcome: ArchiveOutcome::parse(self.outcome.value(i)).ok_or_else(|| bad("unknown outcome"))?,
            reason: self.reason.is_valid(i).then(|| self.reason.value(i).to_owned()),
            leaf_hash: hash_at(self.leaf, i),
        })
    }
}

/// Decodes an archive; the schema must be exactly format 1 and rows in strictly increasing
/// position order. Archives come from outside (a monitor downloads them), so malformed bytes are
/// an error, never a panic: the Parquet reader panics on some (found by fuzzing: negative column
/// offsets in the footer), and such a panic is turned into [`ArchiveError::Malformed`]. A panic
/// cannot guard against an allocation the size of whatever the footer declares (that aborts), so
/// the footer's declared lengths are bounded before the reader sees it (`footer::check`).
///
/// Copies `bytes` once; [`read_archive_bytes`] reads shared bytes in place.
pub fn read_archive(bytes: &[u8]) -> Result<Vec<ArchiveRow>, ArchiveError> {
    read_archive_bytes(bytes::Bytes::copy_from_slice(bytes))
}

/// [`read_archive`] of bytes the caller already holds as [`bytes::Bytes`] (what an object store
/// hands back): the reader slices them, nothing is copied.
pub fn read_archive_bytes(bytes: bytes::Bytes) -> Result<Vec<ArchiveRow>, ArchiveError> {
    std::panic::catch_unwind(|| read_archive_unguarded(bytes)).unwrap_or_else(|panic| Err(malformed(panic.as_ref())))
}

/// The error for a panic of the Parquet reader, with its message.
fn malformed(panic: &(dyn std::any::Any + Send)) -> ArchiveError {
    let message = panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".into());
    ArchiveError::Malformed(message)
}

/// Rows are preallocated from the row count the footer declares, but never more than one per
/// this many bytes of file: a hostile footer cannot make the reader reserve more than the file
/// justifies (a real row takes over 100 bytes; more rows than the hint just grow the vector).
const PREALLOCATE_BYTES_PER_ROW: usize = 16;

/// Record batches decoded ahead of the one being converted.
const DECODED_AHEAD: usize = 2;

fn read_archive_unguarded(bytes: bytes::Bytes) -> Result<Vec<ArchiveRow>, ArchiveError> {
    let (mut rows, reserve) = (Vec::new(), std::cell::Cell::new(0));
    let on_size = |declared: usize, size: usize| reserve.set(declared.min(size / PREALLOCATE_BYTES_PER_ROW));
    read_batches_unguarded(bytes, on_size, |_, batch| {
        rows.reserve(reserve.take());
        rows.extend(batch);
        Ok::<(), ArchiveError>(())
    })?;
    Ok(rows)
}

/// [`read_archive_bytes`] a record batch at a time: `on_batch` gets the archive's row number of
/// each batch's first row and its rows, in order, and may stop the read with an error. Memory is
/// a few batches, whatever the archive's size: what an auditor of a large epoch reads with. The
/// same checks as [`read_archive_bytes`] (positions strictly increase across batches too).
pub fn read_archive_batches<E: From<ArchiveError>>(
    bytes: bytes::Bytes,
    mut on_batch: impl FnMut(usize, Vec<ArchiveRow>) -> Result<(), E>,
) -> Result<(), E> {
    let read = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        read_batches_unguarded(bytes, |_, _| {}, &mut on_batch)
    }));
    read.unwrap_or_else(|panic| Err(E::from(malformed(panic.as_ref()))))
}

fn read_batches_unguarded<E: From<ArchiveError>>(
    bytes: bytes::Bytes,
    on_size: impl FnOnce(usize, usize),
    mut on_batch: impl FnMut(usize, Vec<ArchiveRow>) -> Result<(), E>,
) -> Result<(), E> {
    // The reader would allocate whatever the footer declares: check it first (see `footer`).
    footer::check(&bytes).map_err(ArchiveError::Footer)?;
    let size = bytes.len();
    let builder = ParquetRecordBatchReaderBuilder::try_new(bytes).map_err(ArchiveError::from)?;
    if builder.schema().fields() != schema().fields() {
        return Err(ArchiveError::Schema(format!("found {:?}", builder.schema().fields())).into());
    }
    on_size(usize::try_from(builder.metadata().file_metadata().num_rows()).unwrap_or(0), size);
    let reader = builder.with_batch_size(READ_BATCH_ROWS).build().map_err(ArchiveError::from)?;
    // Decoding is sequential, converting rows is parallel: the next batches decode on a thread of
    // their own while the pool converts this one. A panic of the reader on that thread comes
    // back as a batch that failed.
    let (decoded, batches) = std::sync::mpsc::sync_channel::<Result<RecordBatch, ArchiveError>>(DECODED_AHEAD);
    std::thread::scope(|scope| {
        scope.spawn(move || {
            let read = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                for batch in reader {
                    if decoded.send(batch.map_err(ArchiveError::from)).is_err() {
                        return; // the converter stopped at an error
                    }
                }
            }));
            if let Err(panic) = read {
                let _ = decoded.send(Err(malformed(panic.as_ref())));
            }
        });
        let (mut first, mut last_position) = (0, None);
        for batch in batches {
            let batch = batch?;
            let columns = Columns::of(&batch)?;
            // Rows convert independently, in parallel; the first error in row order is reported.
            let converted: Vec<Result<ArchiveRow, ArchiveError>> =
                (0..batch.num_rows()).into_par_iter().with_min_len(1024).map(|i| columns.row(i, first + i)).collect();
            let rows = converted.into_iter().collect::<Result<Vec<_>, _>>()?;
            let positions = last_position.into_iter().chain(rows.iter().map(|r| r.position));
            if let Some(w) = positions.clone().zip(positions.skip(1)).position(|(a, b)| a >= b) {
                let row = first + w + usize::from(last_position.is_none());
                return Err(ArchiveError::Row { row, message: "positions are not strictly increasing".into() }.into());
            }
            last_position = rows.last().map(|r| r.position).or(last_position);
            let count = rows.len();
            on_batch(first, rows)?;
            first += count;
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The plain `ArrowWriter` path: one record batch, encoded column after column.
    fn write_sequential(rows: &[ArchiveRow]) -> Vec<u8> {
        let columns = (0..12).map(|c| column_array(c, rows).unwrap()).collect();
        let batch = RecordBatch::try_new(schema(), columns).unwrap();
        let mut out = Vec::new();
        let mut writer = ArrowWriter::try_new(&mut out, schema(), Some(writer_properties())).unwrap();
        writer.write(&batch).unwrap();
        writer.close().unwrap();
        out
    }

    fn rows(n: usize) -> Vec<ArchiveRow> {
        (0..n)
            .map(|i| {
                let b = u8::try_from(i % 251).unwrap();
                ArchiveRow {
                    position: i as u64 * 3 + 1,
                    mutation_id: Hash([b; 32]),
                    key_index: Some(Hash([b ^ 0x5a; 32])),
                    key: Some(format!("user{i}@example.com").into_bytes()),
                    value: (i % 7 != 0).then(|| vec![b; i % 40]),
                    tombstone: i % 7 == 0,
                    owner_signature: (i % 5 == 0).then(|| vec![b; 64]),
                    expected_version: (i % 3) as u64,
                    new_version: (i % 4 != 0).then_some((i % 3) as u64 + 1),
                    outcome: match i % 4 {
                        0 => ArchiveOutcome::Rejected,
                        1 | 2 => ArchiveOutcome::Applied,
                        _ => ArchiveOutcome::Duplicate,
                    },
                    reason: (i % 4 == 0).then(|| "version_mismatch".to_owned()),
                    leaf_hash: (i % 4 != 0).then_some(Hash([b.wrapping_add(1); 32])),
                }
            })
            .collect()
    }

    /// Parallel column encoding writes the bytes the sequential writer writes, across a row
    /// group boundary and whatever the thread count.
    #[test]
    fn parallel_encoding_writes_the_sequential_bytes() {
        for n in [0, 1, 50, ROW_GROUP_ROWS + 3] {
            let rows = rows(n);
            let expected = write_sequential(&rows);
            for threads in [1, 3] {
                let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
                let bytes = pool.install(|| write_archive(&rows)).unwrap();
                assert!(bytes == expected, "{n} rows, {threads} threads: the bytes differ");
            }
            if n > ROW_GROUP_ROWS {
                assert_eq!(read_archive(&expected).unwrap(), rows, "two row groups read back");
            }
        }
    }
}
