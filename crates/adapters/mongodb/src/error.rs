//! Which driver errors are worth a retry. The runners pause and retry on `Unavailable`, so only
//! conditions that go away on their own belong there: the server unreachable, being elected,
//! shutting down or too slow. Everything else (a bad document, a bug) is `Fatal`.

use enrollstream_ports::StoreError;
use mongodb::error::{Error, ErrorKind, WriteFailure};

/// MongoDB's duplicate key error, the signal of every fence in this adapter. Recognised by code,
/// never by message text (servers word it differently).
pub(crate) const DUPLICATE_KEY: i32 = 11000;

/// Server codes that mean "not now": network, elections, shutdown, time limits, write concern.
const TRANSIENT_CODES: &[i32] = &[
    6,     // HostUnreachable
    7,     // HostNotFound
    50,    // MaxTimeMSExpired
    64,    // WriteConcernFailed
    89,    // NetworkTimeout
    91,    // ShutdownInProgress
    134,   // ReadConcernMajorityNotAvailableYet
    189,   // PrimarySteppedDown
    262,   // ExceededTimeLimit
    9001,  // SocketException
    10107, // NotWritablePrimary
    11600, // InterruptedAtShutdown
    11602, // InterruptedDueToReplStateChange
    13435, // NotPrimaryNoSecondaryOk
    13436, // NotPrimaryOrSecondary
];

pub(crate) fn is_transient_code(code: i32) -> bool {
    TRANSIENT_CODES.contains(&code)
}

pub(crate) fn classify(error: Error) -> StoreError {
    let transient = error.contains_label("RetryableWriteError")
        || error.contains_label("TransientTransactionError")
        || match error.kind.as_ref() {
            ErrorKind::Io(_)
            | ErrorKind::ServerSelection { .. }
            | ErrorKind::ConnectionPoolCleared { .. }
            | ErrorKind::DnsResolve { .. }
            | ErrorKind::Shutdown => true,
            ErrorKind::Command(c) => is_transient_code(c.code),
            ErrorKind::Write(WriteFailure::WriteConcernError(_)) => true,
            ErrorKind::Write(WriteFailure::WriteError(w)) => is_transient_code(w.code),
            ErrorKind::InsertMany(e) => e.write_concern_error.is_some(),
            _ => false,
        };
    if transient {
        StoreError::Unavailable(error.to_string())
    } else {
        StoreError::Fatal(error.to_string())
    }
}

/// True when a single-document write failed on a unique index.
pub(crate) fn is_duplicate_key(error: &Error) -> bool {
    matches!(error.kind.as_ref(), ErrorKind::Write(WriteFailure::WriteError(w)) if w.code == DUPLICATE_KEY)
}

/// The positions refused by a unique index in an unordered `insert_many`, or the error when
/// anything else went wrong.
pub(crate) fn duplicate_positions(error: Error) -> Result<Vec<usize>, StoreError> {
    if let ErrorKind::InsertMany(e) = error.kind.as_ref() {
        if e.write_concern_error.is_none() {
            let errors = e.write_errors.as_deref().unwrap_or_default();
            if errors.iter().all(|w| w.code == DUPLICATE_KEY) {
                return Ok(errors.iter().map(|w| w.index).collect());
            }
        }
    }
    Err(classify(error))
}

pub(crate) fn corrupt(what: &str, detail: impl std::fmt::Display) -> StoreError {
    StoreError::Fatal(format!("corrupt {what} in MongoDB: {detail}"))
}
