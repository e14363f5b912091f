//! The PromQL engine's error type. Each variant maps to one Prometheus `errorType` through
//! [`PromqlError::kind`], so the HTTP layer maps errors to statuses in exactly one place.

use crate::error::{ErrorKind, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum PromqlError {
    /// The query text did not parse; the message is promql-parser's.
    #[error("{0}")]
    Parse(String),
    /// The query parsed but cannot be evaluated in this context (e.g. a range vector as the
    /// result of a range query).
    #[error("{0}")]
    BadQuery(String),
    /// Evaluation failed on the data (many-to-many matching, duplicate label sets, a bad
    /// label_replace regex): Prometheus's `execution` class, HTTP 422.
    #[error("{0}")]
    Execution(String),
    /// A PromQL construct the engine does not evaluate yet.
    #[error("{0} is not supported yet")]
    Unsupported(String),
    /// More samples than `max_samples` would be held in memory at once.
    #[error("query processing would load too many samples into memory in {0}")]
    TooManySamples(&'static str),
    /// The query ran past its timeout.
    #[error("query timed out in {0}")]
    Timeout(&'static str),
    /// The underlying store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Prometheus's error classes, as the `errorType` field of API errors names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PromqlErrorKind {
    /// `bad_data`: the request is wrong.
    BadData,
    /// `execution`: evaluation failed.
    Execution,
    /// `timeout`.
    Timeout,
    /// `unavailable`: the store cannot answer now.
    Unavailable,
    /// `internal`.
    Internal,
}

impl PromqlError {
    pub fn kind(&self) -> PromqlErrorKind {
        match self {
            PromqlError::Parse(_) | PromqlError::BadQuery(_) => PromqlErrorKind::BadData,
            PromqlError::Execution(_)
            | PromqlError::Unsupported(_)
            | PromqlError::TooManySamples(_) => PromqlErrorKind::Execution,
            PromqlError::Timeout(_) => PromqlErrorKind::Timeout,
            PromqlError::Store(e) => match e.kind() {
                ErrorKind::BadRequest => PromqlErrorKind::BadData,
                ErrorKind::LimitExceeded => PromqlErrorKind::Execution,
                ErrorKind::Overloaded | ErrorKind::Unavailable => PromqlErrorKind::Unavailable,
                ErrorKind::Internal => PromqlErrorKind::Internal,
            },
        }
    }
}
