//! The one error type of the `keyfold` binary. Each variant is a class of failure with its own
//! exit code, so a script can tell bad data (1) from a mistake to fix (2), a failure worth retrying
//! (3) and a server's refusal (4); each carries the message a person acts on.

use keyfold_epoch::EpochError;
use keyfold_ingest::QueueError;
use keyfold_map::TreeError;
use std::fmt::Display;

/// The exit codes, for `keyfold --help` (the README has the same table).
pub const EXIT_CODES: &str = "\
Exit codes:
  0  success
  1  verification failed: a proof, signature, replay, fsck or monitor check found bad data
  2  usage or configuration error: bad arguments, config file, key file or data directory
  3  unreachable or I/O failure: server, HTTP transport, local files or stores (retrying may help)
  4  refused by the server: an HTTP error answer (its code and message are printed)";

/// Why a `keyfold` command failed.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The data is bad (exit 1): a proof, signature, replay, fsck or monitor check failed, a
    /// server's success answer is not what it must be, or a store reports inconsistent data.
    #[error("{0}")]
    Verification(String),
    /// The user must fix the command (exit 2): bad arguments, a bad config file, a missing or
    /// unusable key file, a data directory that is absent or not one.
    #[error("{0}")]
    Usage(String),
    /// The work could not be done now (exit 3): server unreachable, HTTP transport failure, local
    /// file or store I/O failure, storage unavailable (held by a running server, say). Retrying may
    /// help.
    #[error("{0}")]
    Unavailable(String),
    /// The server answered with an HTTP error status (exit 4): its JSON error code and message,
    /// or its raw answer when it sent no JSON error.
    #[error("{request}: server answered {status}{}: {message}", code_in_parens(.code.as_deref()))]
    Refused { request: String, status: reqwest::StatusCode, code: Option<String>, message: String },
}

fn code_in_parens(code: Option<&str>) -> String {
    code.map(|c| format!(" ({c})")).unwrap_or_default()
}

impl CliError {
    /// The process's exit code for this error (see [`EXIT_CODES`]).
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Verification(_) => 1,
            CliError::Usage(_) => 2,
            CliError::Unavailable(_) => 3,
            CliError::Refused { .. } => 4,
        }
    }

    pub fn verification(message: impl Display) -> CliError {
        CliError::Verification(message.to_string())
    }

    pub fn usage(message: impl Display) -> CliError {
        CliError::Usage(message.to_string())
    }

    pub fn unavailable(message: impl Display) -> CliError {
        CliError::Unavailable(message.to_string())
    }

    /// A store's or the epoch job's failure: one that retrying may cure (I/O, a lock held by a
    /// running server, a lapsed lease) is unavailable storage (3); any other means the stored
    /// data is inconsistent (1).
    pub fn store(e: impl StoreFailure) -> CliError {
        CliError::classed(e.retryable(), e.to_string())
    }

    /// [`CliError::store`], its message prefixed with `context`.
    pub fn store_in(context: impl Display, e: impl StoreFailure) -> CliError {
        CliError::classed(e.retryable(), format!("{context}: {e}"))
    }

    fn classed(retryable: bool, message: String) -> CliError {
        if retryable { CliError::Unavailable(message) } else { CliError::Verification(message) }
    }

    /// A local file or directory that cannot be read or written, `message` naming it: absent, or a
    /// path through something that is not a directory, is the user's to fix (2); any other I/O
    /// failure is 3.
    pub fn file(message: impl Display, e: &std::io::Error) -> CliError {
        use std::io::ErrorKind::{NotADirectory, NotFound};
        match e.kind() {
            NotFound | NotADirectory => CliError::usage(message),
            _ => CliError::unavailable(message),
        }
    }

    /// An HTTP request that got no answer: a URL that cannot be a request is the user's to fix
    /// (2); a connection refused, a timeout or a cut answer is 3. The message names the cause
    /// (`Connection refused`, say), which reqwest keeps in its error's sources.
    pub fn transport(request: impl Display, e: &reqwest::Error) -> CliError {
        let mut message = format!("{request}: {e}");
        let mut source = std::error::Error::source(e);
        while let Some(cause) = source {
            message.push_str(&format!(": {cause}"));
            source = cause.source();
        }
        if e.is_builder() { CliError::Usage(message) } else { CliError::Unavailable(message) }
    }

    /// The server's error answer to `request`: its JSON error body (`error`, `message`), or the raw
    /// text when it is not one.
    pub fn refused(request: impl Display, status: reqwest::StatusCode, body: &str) -> CliError {
        let (code, message) = match serde_json::from_str::<keyfold_verify::wire::ErrorBody>(body) {
            Ok(e) => (Some(e.error), e.message),
            Err(_) => (None, body.trim().to_owned()),
        };
        CliError::Refused { request: request.to_string(), status, code, message }
    }
}

/// A storage error that says whether retrying may cure it.
pub trait StoreFailure: Display {
    fn retryable(&self) -> bool;
}

impl StoreFailure for EpochError {
    fn retryable(&self) -> bool {
        self.is_retryable()
    }
}

impl StoreFailure for QueueError {
    fn retryable(&self) -> bool {
        self.is_retryable()
    }
}

impl StoreFailure for TreeError {
    fn retryable(&self) -> bool {
        self.is_retryable()
    }
}

/// A replay that found the published history inconsistent.
impl From<keyfold_verify::Divergence> for CliError {
    fn from(d: keyfold_verify::Divergence) -> CliError {
        CliError::Verification(format!("divergence: {d}"))
    }
}

/// A lookup answer that does not verify against the pinned key, origin and witnesses.
impl From<keyfold_verify::LookupError> for CliError {
    fn from(e: keyfold_verify::LookupError) -> CliError {
        CliError::Verification(format!("REFUSED: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_class_has_its_exit_code_and_refusals_name_the_server_error() {
        assert_eq!(CliError::verification("x").exit_code(), 1);
        assert_eq!(CliError::usage("x").exit_code(), 2);
        assert_eq!(CliError::unavailable("x").exit_code(), 3);
        let status = reqwest::StatusCode::BAD_REQUEST;
        let refused = CliError::refused("POST u", status, r#"{"error":"invalid_mutation","message":"too long"}"#);
        assert_eq!(refused.exit_code(), 4);
        assert_eq!(refused.to_string(), "POST u: server answered 400 Bad Request (invalid_mutation): too long");
        let raw = CliError::refused("GET u", reqwest::StatusCode::BAD_GATEWAY, " upstream down\n");
        assert_eq!(raw.to_string(), "GET u: server answered 502 Bad Gateway: upstream down");
        let missing = std::io::Error::from(std::io::ErrorKind::NotFound);
        assert_eq!(CliError::file("m", &missing).exit_code(), 2);
        assert_eq!(CliError::file("m", &std::io::Error::other("disk")).exit_code(), 3);
    }
}
