//! Where a check of published data fails: the epoch, the archive row, what was expected and what
//! was found.

use keyfold_core::Epoch;

/// The first place a replay disagrees with what the directory published.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Divergence {
    pub epoch: Epoch,
    /// The archive row, when the divergence is in one.
    pub row: Option<usize>,
    pub what: String,
    pub expected: String,
    pub found: String,
}

impl std::fmt::Display for Divergence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "epoch {}", self.epoch)?;
        if let Some(row) = self.row {
            write!(f, ", archive row {row}")?;
        }
        write!(f, ": {} (expected {}, found {})", self.what, self.expected, self.found)
    }
}

impl std::error::Error for Divergence {}

pub(crate) fn diverge(
    epoch: Epoch,
    row: Option<usize>,
    what: &str,
    expected: impl ToString,
    found: impl ToString,
) -> Divergence {
    Divergence { epoch, row, what: what.to_owned(), expected: expected.to_string(), found: found.to_string() }
}
