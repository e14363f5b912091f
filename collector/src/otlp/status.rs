//! Error answers shared by OTLP/gRPC and OTLP/HTTP: the gRPC code for each [`IngestError`]
//! class and the tiny `google.rpc` messages (`Status`, `RetryInfo`) that opentelemetry-proto
//! does not ship. Retryable errors carry a `RetryInfo` detail because OpenTelemetry SDKs only
//! retry `RESOURCE_EXHAUSTED` when the server says how long to wait.

use bytes::Bytes;
use prost::Message;

use crate::error::{ErrorClass, RETRY_AFTER_SECS};
use crate::IngestError;

/// `google.rpc.Status`.
#[derive(Clone, PartialEq, Message, serde::Serialize)]
pub struct RpcStatus {
    #[prost(int32, tag = "1")]
    pub code: i32,
    #[prost(string, tag = "2")]
    pub message: String,
    /// Serialised only in protobuf: JSON clients read `code` and `message`.
    #[prost(message, repeated, tag = "3")]
    #[serde(skip)]
    pub details: Vec<ProtoAny>,
}

/// `google.protobuf.Any`.
#[derive(Clone, PartialEq, Message)]
pub struct ProtoAny {
    #[prost(string, tag = "1")]
    pub type_url: String,
    #[prost(bytes = "vec", tag = "2")]
    pub value: Vec<u8>,
}

/// `google.rpc.RetryInfo`.
#[derive(Clone, PartialEq, Message)]
pub struct RetryInfo {
    #[prost(message, optional, tag = "1")]
    pub retry_delay: Option<ProtoDuration>,
}

/// `google.protobuf.Duration`.
#[derive(Clone, PartialEq, Message)]
pub struct ProtoDuration {
    #[prost(int64, tag = "1")]
    pub seconds: i64,
    #[prost(int32, tag = "2")]
    pub nanos: i32,
}

const RETRY_INFO_TYPE_URL: &str = "type.googleapis.com/google.rpc.RetryInfo";

/// The gRPC code for an ingest error, mapped once from [`IngestError::class`].
pub fn grpc_code(err: &IngestError) -> tonic::Code {
    match err.class() {
        ErrorClass::BadRequest | ErrorClass::UnsupportedMediaType => tonic::Code::InvalidArgument,
        ErrorClass::PayloadTooLarge => tonic::Code::InvalidArgument,
        ErrorClass::Overloaded => tonic::Code::ResourceExhausted,
        ErrorClass::Unavailable => tonic::Code::Unavailable,
        ErrorClass::Internal => tonic::Code::Internal,
    }
}

/// The client-facing message; retryable errors name the wait.
pub fn error_message(err: &IngestError) -> String {
    if err.retryable() {
        format!("{err} (retry after {RETRY_AFTER_SECS}s)")
    } else {
        err.to_string()
    }
}

/// A `google.rpc.Status` for `err`, with a `RetryInfo` detail when the client should retry.
pub fn rpc_status(err: &IngestError) -> RpcStatus {
    let mut details = Vec::new();
    if err.retryable() {
        let info = RetryInfo {
            retry_delay: Some(ProtoDuration {
                seconds: RETRY_AFTER_SECS as i64,
                nanos: 0,
            }),
        };
        details.push(ProtoAny {
            type_url: RETRY_INFO_TYPE_URL.to_string(),
            value: info.encode_to_vec(),
        });
    }
    RpcStatus {
        code: grpc_code(err) as i32,
        message: error_message(err),
        details,
    }
}

/// The same error as a `tonic::Status`, details included in the binary trailer.
pub fn tonic_status(err: &IngestError) -> tonic::Status {
    let status = rpc_status(err);
    if status.details.is_empty() {
        tonic::Status::new(grpc_code(err), status.message)
    } else {
        let details = Bytes::from(status.encode_to_vec());
        tonic::Status::with_details(grpc_code(err), status.message, details)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use store::StoreError;

    #[test]
    fn overloaded_maps_to_resource_exhausted_with_retry_info() {
        let err = IngestError::Store(StoreError::Overloaded("wal queue full".into()));
        let st = tonic_status(&err);
        assert_eq!(st.code(), tonic::Code::ResourceExhausted);
        assert!(st.message().contains("retry after 5s"), "{}", st.message());
        let decoded = RpcStatus::decode(st.details()).unwrap();
        assert_eq!(decoded.details.len(), 1);
        assert_eq!(decoded.details[0].type_url, RETRY_INFO_TYPE_URL);
        let info = RetryInfo::decode(decoded.details[0].value.as_slice()).unwrap();
        assert_eq!(
            info.retry_delay,
            Some(ProtoDuration {
                seconds: 5,
                nanos: 0
            })
        );
    }

    #[test]
    fn malformed_maps_to_invalid_argument_without_details() {
        let err = IngestError::Malformed("bad protobuf".into());
        let st = tonic_status(&err);
        assert_eq!(st.code(), tonic::Code::InvalidArgument);
        assert_eq!(st.message(), "bad protobuf");
        assert!(st.details().is_empty());
    }

    #[test]
    fn unavailable_maps_to_unavailable() {
        let err = IngestError::Store(StoreError::Unavailable("shutting down".into()));
        assert_eq!(grpc_code(&err), tonic::Code::Unavailable);
        assert_eq!(
            serde_json::to_string(&rpc_status(&err)).unwrap(),
            r#"{"code":14,"message":"store unavailable: shutting down (retry after 5s)"}"#
        );
    }
}
