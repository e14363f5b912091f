//! The log sender: posts pre-encoded `ExportLogsServiceRequest`s to `POST /v1/logs` with the
//! shared OTLP/HTTP sender ([`crate::otlp_http`]), which checks every answer and retries 429,
//! 5xx and connection errors. A record counts as ingested only once its request is
//! acknowledged; a partial success counts its records as rejected (an empty one is a full
//! success) and keeps its message.

use bytes::Bytes;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceResponse;
use serde::Serialize;

use super::otlp::Request;
use crate::otlp_http::{Export, Items};

pub use crate::otlp_http::{client, send};

/// The log sender's statistics.
pub type SendStats = crate::otlp_http::SendStats<Records>;

#[derive(Clone, Debug, Default, Serialize)]
pub struct Records {
    pub records_ok: u64,
    /// Raw line bytes of the acknowledged records.
    pub raw_bytes_ok: u64,
    /// Records in rejected or failed requests, plus those a partial success refused.
    pub records_rejected: u64,
}

impl Items for Records {
    fn merge(&mut self, o: Records) {
        self.records_ok += o.records_ok;
        self.raw_bytes_ok += o.raw_bytes_ok;
        self.records_rejected += o.records_rejected;
    }

    fn rejected(&self) -> u64 {
        self.records_rejected
    }
}

impl Export for Request {
    type Items = Records;
    type Answer = ExportLogsServiceResponse;
    const USER_AGENT: &'static str = "lookout-bench/0.1 (OTLP/HTTP logs)";
    const ANSWER_NAME: &'static str = "ExportLogsServiceResponse";
    const SIGNAL: &'static str = "log";

    fn body(&self) -> &Bytes {
        &self.body
    }

    fn partial(answer: ExportLogsServiceResponse) -> Option<(u64, String)> {
        match answer.partial_success {
            // an empty partial success is a full one
            Some(p) if p.rejected_log_records == 0 && p.error_message.is_empty() => None,
            Some(p) => Some((
                u64::try_from(p.rejected_log_records).unwrap_or(0),
                p.error_message,
            )),
            None => None,
        }
    }

    fn acknowledged(&self, c: &mut Records, rejected: u64) {
        let records = u64::from(self.records);
        let ok = records.saturating_sub(rejected);
        c.records_ok += ok;
        // a partly refused request's bytes are counted in proportion
        c.raw_bytes_ok += self.raw_bytes * ok / records.max(1);
        c.records_rejected += rejected.min(records);
    }

    fn lost(&self, c: &mut Records) {
        c.records_rejected += u64::from(self.records);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsPartialSuccess;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;

    /// The shared stub server; its partial success rejects one record.
    async fn serve(accepted: Arc<AtomicU64>) -> String {
        let partial = ExportLogsServiceResponse {
            partial_success: Some(ExportLogsPartialSuccess {
                rejected_log_records: 1,
                error_message: "record 1: body over max_body_bytes".into(),
            }),
        };
        crate::otlp_http::stub_server("/v1/logs", partial, accepted).await
    }

    fn req(body: &'static [u8], records: u32) -> Request {
        Request {
            body: bytes::Bytes::from_static(body),
            records,
            raw_bytes: u64::from(records) * 100,
        }
    }

    #[tokio::test]
    async fn checks_answers_and_retries() {
        let accepted = Arc::new(AtomicU64::new(0));
        let url = serve(accepted.clone()).await;
        let requests = vec![
            req(b"a", 10),
            req(b"x", 20),
            req(b"p", 30),
            req(b"b", 40),
            req(b"c", 50),
        ];
        let c = client(2).unwrap();
        let st = send(&c, &url, Arc::new(requests), 2).await.unwrap();
        assert_eq!(st.requests_ok, 4);
        assert_eq!(st.requests_rejected, 1);
        assert_eq!(st.records_ok, 10 + 29 + 40 + 50);
        assert_eq!(st.records_rejected, 20 + 1);
        // the partial success's request counts 29 of its 30 records' bytes
        assert_eq!(st.raw_bytes_ok, (10 + 29 + 40 + 50) * 100);
        assert_eq!(st.partial_successes, 1);
        assert!(st.retries >= 1);
        assert_eq!(st.latencies_ms.len(), 4);
        assert!(!st.clean());
        assert_eq!(accepted.load(Ordering::SeqCst), 4);
    }

    #[tokio::test]
    async fn clean_run_is_clean() {
        let url = serve(Arc::new(AtomicU64::new(0))).await;
        let c = client(1).unwrap();
        let st = send(&c, &url, Arc::new(vec![req(b"a", 5), req(b"b", 6)]), 1)
            .await
            .unwrap();
        assert!(st.clean(), "{st:?}");
        assert_eq!(st.records_ok, 11);
    }

    #[test]
    fn json_keeps_the_signal_names_in_order() {
        let json = serde_json::to_string(&SendStats::default()).unwrap();
        assert_eq!(
            json,
            "{\"requests_ok\":0,\"requests_rejected\":0,\"requests_failed\":0,\"retries\":0,\
             \"records_ok\":0,\"raw_bytes_ok\":0,\"records_rejected\":0,\
             \"partial_successes\":0,\"first_error\":null,\"elapsed_secs\":0.0}"
        );
    }
}
