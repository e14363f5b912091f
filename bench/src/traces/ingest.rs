//! The trace sender: posts pre-encoded `ExportTraceServiceRequest`s to `POST /v1/traces` with
//! the shared OTLP/HTTP sender ([`crate::otlp_http`]), which checks every answer and retries
//! 429, 5xx and connection errors. A partial success counts its spans as rejected and keeps
//! its message.

use bytes::Bytes;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse;
use serde::Serialize;

use super::generate::Request;
use crate::otlp_http::{Export, Items};

pub use crate::otlp_http::{client, send};

/// The trace sender's statistics.
pub type SendStats = crate::otlp_http::SendStats<Spans>;

#[derive(Clone, Debug, Default, Serialize)]
pub struct Spans {
    pub spans_ok: u64,
    /// Spans in rejected or failed requests, plus those a partial success refused.
    pub spans_rejected: u64,
}

impl Items for Spans {
    fn merge(&mut self, o: Spans) {
        self.spans_ok += o.spans_ok;
        self.spans_rejected += o.spans_rejected;
    }

    fn rejected(&self) -> u64 {
        self.spans_rejected
    }
}

impl Export for Request {
    type Items = Spans;
    type Answer = ExportTraceServiceResponse;
    const USER_AGENT: &'static str = "lookout-bench/0.1 (OTLP/HTTP traces)";
    const ANSWER_NAME: &'static str = "ExportTraceServiceResponse";
    const SIGNAL: &'static str = "trace";

    fn body(&self) -> &Bytes {
        &self.body
    }

    fn partial(answer: ExportTraceServiceResponse) -> Option<(u64, String)> {
        answer.partial_success.map(|p| {
            (
                u64::try_from(p.rejected_spans).unwrap_or(0),
                p.error_message,
            )
        })
    }

    fn acknowledged(&self, c: &mut Spans, rejected: u64) {
        let spans = u64::from(self.spans);
        c.spans_ok += spans.saturating_sub(rejected);
        c.spans_rejected += rejected.min(spans);
    }

    fn lost(&self, c: &mut Spans) {
        c.spans_rejected += u64::from(self.spans);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTracePartialSuccess;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;

    /// The shared stub server; its partial success rejects one span.
    async fn serve(accepted: Arc<AtomicU64>) -> String {
        let partial = ExportTraceServiceResponse {
            partial_success: Some(ExportTracePartialSuccess {
                rejected_spans: 1,
                error_message: "span 1 has an invalid trace id".into(),
            }),
        };
        crate::otlp_http::stub_server("/v1/traces", partial, accepted).await
    }

    fn req(body: &'static [u8], spans: u32) -> Request {
        Request {
            body: bytes::Bytes::from_static(body),
            spans,
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
        assert_eq!(st.spans_ok, 10 + 29 + 40 + 50);
        assert_eq!(st.spans_rejected, 20 + 1);
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
        assert_eq!(st.spans_ok, 11);
    }
}
