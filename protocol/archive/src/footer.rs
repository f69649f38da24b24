//! A bounds check of the Parquet footer before the Parquet reader sees it.
//!
//! The footer is Thrift compact-protocol bytes, and the Parquet reader allocates a list's declared
//! element count up front (`Vec::with_capacity`): a hostile archive of 2 KB that declares a list of
//! 637 million key/value pairs made the process abort on a 30 GB allocation (found by fuzzing,
//! `fuzz/regressions/archive_read-footer-huge-allocation.bin`). An abort cannot be caught, so the
//! footer is walked here first, without allocating, field by field as the reader will decode it,
//! and refused when:
//! - it is longer than [`MAX_FOOTER_BYTES`] or than the file,
//! - a field is not one Keyfold's writer produces, or is declared with another Thrift type (the
//!   reader decodes by field id, so the walk would no longer see what the reader sees),
//! - a list declares more elements than there are bytes left (every element takes at least one
//!   byte, so an honest count never does), or a negative count,
//! - a binary field declares more bytes than are left,
//! - a schema element declares more children than the schema has elements.
//!
//! Every allocation the reader then makes for the footer is bounded by the footer's length times
//! the size of one decoded element. A dependency upgrade that makes the writer emit a new field
//! fails `archives_keyfold_writes_pass` (and the golden archive digest) until it is added here.

/// The largest footer accepted. Keyfold's footer is about 2 KB plus about 1 KB per row group of
/// 1,048,576 rows, so this allows epochs of about a billion mutations.
pub const MAX_FOOTER_BYTES: usize = 1 << 20;

const MAGIC: &[u8; 4] = b"PAR1";

/// Checks the footer of `file` (a whole Parquet file); `Err` says what is wrong.
pub fn check(file: &[u8]) -> Result<(), String> {
    let Some(tail_start) = file.len().checked_sub(8) else {
        return Err(format!("{} bytes is too short for a Parquet file", file.len()));
    };
    if file.len() < 12 || &file[..4] != MAGIC || &file[file.len() - 4..] != MAGIC {
        return Err("no Parquet magic (PAR1) at both ends; encrypted footers are not accepted".into());
    }
    let footer_len = u32::from_le_bytes(file[tail_start..tail_start + 4].try_into().expect("4 bytes")) as usize;
    if footer_len > MAX_FOOTER_BYTES {
        return Err(format!("the footer declares {footer_len} bytes, over the limit of {MAX_FOOTER_BYTES}"));
    }
    if footer_len > tail_start - 4 {
        return Err(format!("the footer declares {footer_len} bytes but the file has only {}", file.len()));
    }
    let mut walker = Walker { bytes: &file[tail_start - footer_len..tail_start], at: 0, schema_elements: 0 };
    walker.structure(Kind::FileMetaData)?;
    Ok(())
}

/// Thrift compact-protocol type ids.
mod ty {
    pub const TRUE: u8 = 1;
    pub const FALSE: u8 = 2;
    pub const BYTE: u8 = 3;
    pub const I16: u8 = 4;
    pub const I32: u8 = 5;
    pub const I64: u8 = 6;
    pub const BINARY: u8 = 8;
    pub const LIST: u8 = 9;
    pub const STRUCT: u8 = 12;
}

/// The Parquet footer structs a Keyfold archive contains (parquet.thrift).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    FileMetaData,
    SchemaElement,
    LogicalType,
    IntType,
    Empty,
    RowGroup,
    ColumnChunk,
    ColumnMetaData,
    PageEncodingStats,
    KeyValue,
    ColumnOrder,
}

/// What a field holds.
#[derive(Debug, Clone, Copy)]
enum Shape {
    I8,
    I16,
    I32,
    I64,
    Bool,
    Binary,
    List(&'static Shape),
    Struct(Kind),
}

impl Shape {
    /// The Thrift type id this shape is written with (a bool field is 1 or 2: its value).
    fn accepts(self, type_id: u8) -> bool {
        match self {
            Shape::I8 => type_id == ty::BYTE,
            Shape::I16 => type_id == ty::I16,
            Shape::I32 => type_id == ty::I32,
            Shape::I64 => type_id == ty::I64,
            Shape::Bool => type_id == ty::TRUE || type_id == ty::FALSE,
            Shape::Binary => type_id == ty::BINARY,
            Shape::List(_) => type_id == ty::LIST,
            Shape::Struct(_) => type_id == ty::STRUCT,
        }
    }
}

/// The fields of `kind` that Keyfold's writer produces, with their shapes. The Parquet reader
/// decodes a field by its id whatever type its header declares, so a field's declared type must
/// be the expected one, or the walk here and the reader's decoding would part ways; a field the
/// writer never produces is refused for the same reason.
fn field(kind: Kind, id: i16) -> Option<Shape> {
    use Shape::*;
    Some(match (kind, id) {
        (Kind::FileMetaData, 1) => I32,
        (Kind::FileMetaData, 2) => List(&Struct(Kind::SchemaElement)),
        (Kind::FileMetaData, 3) => I64,
        (Kind::FileMetaData, 4) => List(&Struct(Kind::RowGroup)),
        (Kind::FileMetaData, 5) => List(&Struct(Kind::KeyValue)),
        (Kind::FileMetaData, 6) => Binary,
        (Kind::FileMetaData, 7) => List(&Struct(Kind::ColumnOrder)),
        (Kind::SchemaElement, 1..=3 | 5..=9) => I32,
        (Kind::SchemaElement, 4) => Binary,
        (Kind::SchemaElement, 10) => Struct(Kind::LogicalType),
        (Kind::LogicalType, 1) => Struct(Kind::Empty), // STRING
        (Kind::LogicalType, 10) => Struct(Kind::IntType),
        (Kind::IntType, 1) => I8,
        (Kind::IntType, 2) => Bool,
        (Kind::RowGroup, 1) => List(&Struct(Kind::ColumnChunk)),
        (Kind::RowGroup, 2 | 3 | 5 | 6) => I64,
        (Kind::RowGroup, 7) => I16,
        (Kind::ColumnChunk, 2 | 4 | 6) => I64,
        (Kind::ColumnChunk, 3) => Struct(Kind::ColumnMetaData),
        (Kind::ColumnChunk, 5 | 7) => I32,
        (Kind::ColumnMetaData, 1 | 4) => I32,
        (Kind::ColumnMetaData, 2) => List(&I32),
        (Kind::ColumnMetaData, 3) => List(&Binary),
        (Kind::ColumnMetaData, 5..=7 | 9..=11) => I64,
        (Kind::ColumnMetaData, 13) => List(&Struct(Kind::PageEncodingStats)),
        (Kind::PageEncodingStats, 1..=3) => I32,
        (Kind::KeyValue, 1 | 2) => Binary,
        (Kind::ColumnOrder, 1) => Struct(Kind::Empty), // TYPE_ORDER
        _ => return None,
    })
}

struct Walker<'a> {
    bytes: &'a [u8],
    at: usize,
    /// Elements in the schema list, once read (a `num_children` cannot exceed it).
    schema_elements: usize,
}

impl Walker<'_> {
    fn left(&self) -> usize {
        self.bytes.len() - self.at
    }

    fn byte(&mut self) -> Result<u8, String> {
        let b = *self.bytes.get(self.at).ok_or("the footer ends in the middle of a value")?;
        self.at += 1;
        Ok(b)
    }

    fn skip(&mut self, n: usize) -> Result<(), String> {
        if n > self.left() {
            return Err(format!("the footer declares {n} bytes where {} are left", self.left()));
        }
        self.at += n;
        Ok(())
    }

    fn varint(&mut self) -> Result<u64, String> {
        let mut value = 0u64;
        for shift in (0..70).step_by(7) {
            let b = self.byte()?;
            value |= u64::from(b & 0x7f) << shift.min(63);
            if b & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err("a varint in the footer is longer than 10 bytes".into())
    }

    fn zigzag(&mut self) -> Result<i64, String> {
        let v = self.varint()?;
        Ok((v >> 1) as i64 ^ -((v & 1) as i64))
    }

    /// A declared element count: Parquet reads it as an `i32` and allocates it at once, and each
    /// element takes at least a byte.
    fn count(&mut self, raw: u64) -> Result<usize, String> {
        // Parquet truncates the count to an `i32`; refusing anything outside 0..=i32::MAX keeps
        // the walk and the reader on the same count.
        let count = i32::try_from(raw)
            .ok()
            .and_then(|c| usize::try_from(c).ok())
            .ok_or_else(|| format!("the footer declares a negative or huge element count ({raw})"))?;
        if count > self.left() {
            return Err(format!("the footer declares {count} elements where only {} bytes are left", self.left()));
        }
        Ok(count)
    }

    fn structure(&mut self, kind: Kind) -> Result<(), String> {
        let mut last_id = 0i16;
        loop {
            let header = self.byte()?;
            if header == 0 {
                return Ok(());
            }
            let type_id = header & 0x0f;
            let id = match header >> 4 {
                0 => i16::try_from(self.zigzag()?).map_err(|_| "a field id in the footer is out of range")?,
                delta => last_id.checked_add(i16::from(delta)).ok_or("a field id in the footer overflows")?,
            };
            last_id = id;
            let shape = field(kind, id)
                .ok_or_else(|| format!("field {id} of {kind:?} is not part of a Keyfold archive footer"))?;
            if !shape.accepts(type_id) {
                return Err(format!("field {id} of {kind:?} has Thrift type {type_id}, not the expected {shape:?}"));
            }
            if let Shape::Bool = shape {
                continue; // a bool field's value is its type id
            }
            if (kind, id) == (Kind::SchemaElement, 5) {
                let children = self.zigzag()?;
                if children < 0 || children as u64 > self.schema_elements as u64 {
                    return Err(format!("a schema element declares {children} children"));
                }
                continue;
            }
            self.value(shape)?;
        }
    }

    fn value(&mut self, shape: Shape) -> Result<(), String> {
        match shape {
            Shape::I8 | Shape::Bool => self.skip(1),
            Shape::I16 | Shape::I32 | Shape::I64 => self.varint().map(drop),
            Shape::Binary => {
                let len = self.varint()?;
                let len = usize::try_from(len).map_err(|_| format!("binary length {len} is huge"))?;
                self.skip(len)
            }
            Shape::List(element) => {
                let header = self.byte()?;
                let raw = match header >> 4 {
                    15 => self.varint()?,
                    n => u64::from(n),
                };
                let count = self.count(raw)?;
                if count > 0 && !element.accepts(header & 0x0f) {
                    return Err(format!("a list in the footer holds Thrift type {}, not {element:?}", header & 0x0f));
                }
                if let Shape::Struct(Kind::SchemaElement) = element {
                    self.schema_elements = count;
                }
                for _ in 0..count {
                    self.value(*element)?;
                }
                Ok(())
            }
            Shape::Struct(kind) => self.structure(kind),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file_with_footer(footer: &[u8]) -> Vec<u8> {
        let mut file = MAGIC.to_vec();
        file.extend_from_slice(footer);
        file.extend_from_slice(&u32::try_from(footer.len()).unwrap().to_le_bytes());
        file.extend_from_slice(MAGIC);
        file
    }

    fn refusal(footer: &[u8]) -> String {
        check(&file_with_footer(footer)).unwrap_err()
    }

    #[test]
    fn archives_keyfold_writes_pass() {
        assert_eq!(check(&crate::write_archive(&[]).unwrap()), Ok(()));
        let row = |position| crate::ArchiveRow {
            position,
            mutation_id: keyfold_core::Hash([7; 32]),
            key_index: Some(keyfold_core::Hash([1; 32])),
            key: Some(b"alice".to_vec()),
            value: None,
            tombstone: true,
            owner_signature: None,
            expected_version: 3,
            new_version: Some(4),
            outcome: crate::ArchiveOutcome::Applied,
            reason: None,
            leaf_hash: None,
        };
        assert_eq!(check(&crate::write_archive(&[row(1), row(2)]).unwrap()), Ok(()));
    }

    #[test]
    fn an_honest_footer_passes() {
        // version i32 = 1; key_value_metadata: one pair ("a", "b").
        let footer = [0x15, 0x02, 0x49, 0x1c, 0x18, 0x01, b'a', 0x18, 0x01, b'b', 0x00, 0x00];
        assert_eq!(check(&file_with_footer(&footer)), Ok(()));
    }

    #[test]
    fn a_list_longer_than_the_footer_is_refused() {
        // key_value_metadata declaring 1,000,000 pairs in a 6-byte footer.
        let err = refusal(&[0x59, 0xfc, 0xc0, 0x84, 0x3d, 0x00]);
        assert!(err.contains("1000000 elements"), "{err}");
        assert!(refusal(&[0x59, 0xfc, 0xff, 0xff, 0xff, 0xff, 0x0f, 0x00]).contains("negative"));
    }

    #[test]
    fn a_long_binary_is_refused() {
        assert!(refusal(&[0x68, 0x7f, 0x00]).contains("127 bytes"), "created_by of 127 bytes in 3");
    }

    #[test]
    fn a_field_of_another_type_or_unknown_is_refused() {
        // row_groups (field 4) declared as binary: the reader would decode a list header there.
        assert!(refusal(&[0x48, 0x01, 0x00, 0x00]).contains("not the expected"));
        // field 8 (encryption) is never written by Keyfold.
        assert!(refusal(&[0x8c, 0x00, 0x00]).contains("not part of"));
        // a list of row groups whose elements are declared binary.
        assert!(refusal(&[0x49, 0x18, 0x00, 0x00]).contains("holds Thrift type 8"));
    }

    #[test]
    fn a_schema_element_with_more_children_than_elements_is_refused() {
        // schema: one element declaring 5 children (zigzag 10).
        let err = refusal(&[0x29, 0x1c, 0x55, 0x0a, 0x00, 0x00]);
        assert!(err.contains("5 children"), "{err}");
        assert!(refusal(&[0x29, 0x1c, 0x55, 0x01, 0x00, 0x00]).contains("-1 children"));
    }

    #[test]
    fn truncation_and_bad_lengths_are_refused() {
        assert!(refusal(&[0x15]).contains("ends"));
        let mut lying = file_with_footer(&[0x00]);
        let n = lying.len();
        lying[n - 8..n - 4].copy_from_slice(&(1u32 << 30).to_le_bytes());
        assert!(check(&lying).unwrap_err().contains("over the limit"));
        lying[n - 8..n - 4].copy_from_slice(&100u32.to_le_bytes());
        assert!(check(&lying).unwrap_err().contains("file has only"));
        assert!(check(b"PAR1").is_err());
    }
}
