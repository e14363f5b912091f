//! The harness's one error type: every variant names what failed and with what input, so a
//! broken run says which server, file or URL was at fault.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("i/o error on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid benchmark parameter {name}={value}: {reason}")]
    BadParam {
        name: &'static str,
        value: String,
        reason: String,
    },
    #[error("stream file {path} is corrupt: {reason}")]
    CorruptStream { path: PathBuf, reason: String },
    #[error("could not decode a remote-write request: {0}")]
    Decode(String),
    #[error("starting {server} ({command}): {source}")]
    Spawn {
        server: String,
        command: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{server} did not become ready at {url} within {secs}s: {last}")]
    NotReady {
        server: String,
        url: String,
        secs: u64,
        last: String,
    },
    #[error("{server} exited early with {status}; see its log {log}")]
    Exited {
        server: String,
        status: String,
        log: PathBuf,
    },
    #[error("reading /proc for pid {pid} ({what}): {reason}")]
    Proc {
        pid: u32,
        what: &'static str,
        reason: String,
    },
    #[error("http request to {url} failed: {reason}")]
    Http { url: String, reason: String },
    #[error("{server}: {reason}")]
    Server { server: String, reason: String },
    #[error("encoding results as JSON: {0}")]
    Json(#[from] serde_json::Error),
}

impl BenchError {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        BenchError::Io {
            path: path.into(),
            source,
        }
    }
}

pub type Result<T, E = BenchError> = std::result::Result<T, E>;
