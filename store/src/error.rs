//! The store's one error type. Callers (protocol handlers, query APIs) map it to HTTP/gRPC
//! status once, via [`StoreError::kind`].

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Write queues are full; the client should retry later (HTTP 429/503, gRPC
    /// RESOURCE_EXHAUSTED/UNAVAILABLE).
    #[error("store overloaded: {0}; retry later")]
    Overloaded(String),
    /// The store is shutting down or not yet ready.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// An I/O failure, with the file it concerned.
    #[error("i/o error on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Stored data failed a checksum or could not be decoded.
    #[error("corrupt data in {path}: {reason}")]
    Corrupt { path: PathBuf, reason: String },
    /// Metadata database (sled) failure.
    #[error("metadata store error: {0}")]
    Metadata(String),
    /// The request itself is invalid (bad matcher, bad time range, ...).
    #[error("{0}")]
    BadRequest(String),
    /// A query exceeded a configured limit (samples, series, time).
    #[error("{0}")]
    LimitExceeded(String),
}

/// Coarse classes of [`StoreError`], for mapping to protocol status codes in one place.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    Overloaded,
    Unavailable,
    BadRequest,
    LimitExceeded,
    Internal,
}

impl StoreError {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        StoreError::Io {
            path: path.into(),
            source,
        }
    }

    pub fn kind(&self) -> ErrorKind {
        match self {
            StoreError::Overloaded(_) => ErrorKind::Overloaded,
            StoreError::Unavailable(_) => ErrorKind::Unavailable,
            StoreError::BadRequest(_) => ErrorKind::BadRequest,
            StoreError::LimitExceeded(_) => ErrorKind::LimitExceeded,
            StoreError::Io { .. } | StoreError::Corrupt { .. } | StoreError::Metadata(_) => {
                ErrorKind::Internal
            }
        }
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// An error and its sources on one line: HTTP clients' own messages (reqwest's) rarely
/// name the cause, which sits in the source chain.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}
