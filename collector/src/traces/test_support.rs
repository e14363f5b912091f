//! Test doubles for trace ingest and the derived metrics: an in-memory trace store, an
//! in-memory metrics store that is appender and querier at once (so a "restart" reads back
//! what was written), failure modes, a gate to hold appends, and span builders.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource as OtlpResource;
use opentelemetry_proto::tonic::trace::v1 as otlp;
use parking_lot::Mutex;
use store::testing::MemQuerier;
use store::traces::{SpanAppendReport, SpanBatch, TracesAppender};
use store::{
    AppendReport, LabelMatcher, Labels, MetricBatch, MetricMetadata, MetricsAppender,
    MetricsQuerier, Sample, Series, StoreError,
};
use tokio::sync::Semaphore;

/// What a test store (traces, metrics, logs) does with an append.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Mode {
    Accept = 0,
    Overloaded = 1,
    Unavailable = 2,
    /// Accepts, but reports one item rejected (the log store: the first, not stored; the
    /// metrics store accepts all).
    RejectOne = 3,
    /// Stores nothing and reports every item rejected (the metrics store accepts all).
    RejectAll = 4,
}

impl Mode {
    /// The error an append answers with, `None` when it goes ahead.
    pub fn error(self, what: &str) -> Option<StoreError> {
        match self {
            Mode::Overloaded => Some(StoreError::Overloaded(format!("{what} queue full"))),
            Mode::Unavailable => Some(StoreError::Unavailable("shutting down".into())),
            _ => None,
        }
    }
}

/// A store's [`Mode`], which a test may change while the store is in use.
pub struct ModeCell(AtomicU8);

impl ModeCell {
    pub fn new(mode: Mode) -> Self {
        ModeCell(AtomicU8::new(mode as u8))
    }

    pub fn get(&self) -> Mode {
        match self.0.load(Ordering::SeqCst) {
            1 => Mode::Overloaded,
            2 => Mode::Unavailable,
            3 => Mode::RejectOne,
            4 => Mode::RejectAll,
            _ => Mode::Accept,
        }
    }

    pub fn set(&self, mode: Mode) {
        self.0.store(mode as u8, Ordering::SeqCst);
    }
}

/// A shared log of what happened, in order, across both stores.
pub type Events = Arc<Mutex<Vec<String>>>;

/// An in-memory trace store.
pub struct MemTraces {
    mode: ModeCell,
    pub batches: Mutex<Vec<SpanBatch>>,
    pub events: Events,
}

impl MemTraces {
    pub fn new(mode: Mode, events: Events) -> Arc<Self> {
        Arc::new(MemTraces {
            mode: ModeCell::new(mode),
            batches: Mutex::new(Vec::new()),
            events,
        })
    }

    pub fn span_count(&self) -> usize {
        self.batches.lock().iter().map(SpanBatch::span_count).sum()
    }
}

#[async_trait]
impl TracesAppender for MemTraces {
    async fn append_spans(&self, batch: SpanBatch) -> store::Result<SpanAppendReport> {
        let mode = self.mode.get();
        if let Some(e) = mode.error("wal") {
            return Err(e);
        }
        let n = batch.span_count() as u64;
        self.events.lock().push(format!("spans {n}"));
        if mode == Mode::RejectAll {
            return Ok(SpanAppendReport {
                rejected_spans: n,
                first_rejection: (n > 0).then(|| "span too old".into()),
                ..Default::default()
            });
        }
        self.batches.lock().push(batch);
        let mut report = SpanAppendReport {
            accepted_spans: n,
            ..Default::default()
        };
        if mode == Mode::RejectOne && n > 0 {
            report.accepted_spans -= 1;
            report.rejected_spans = 1;
            report.first_rejection = Some("span too old".into());
        }
        Ok(report)
    }
}

/// An in-memory metrics store: appender and querier over the same series.
pub struct MemMetrics {
    mode: ModeCell,
    pub series: Mutex<BTreeMap<Labels, Vec<Sample>>>,
    pub metadata: Mutex<Vec<MetricMetadata>>,
    pub appends: Mutex<Vec<MetricBatch>>,
    /// When set, each append takes a permit first (tests release them one by one).
    pub gate: Option<Arc<Semaphore>>,
    pub events: Events,
}

impl MemMetrics {
    pub fn new(events: Events) -> Arc<Self> {
        Self::build(events, None)
    }

    pub fn gated(events: Events, gate: Arc<Semaphore>) -> Arc<Self> {
        Self::build(events, Some(gate))
    }

    fn build(events: Events, gate: Option<Arc<Semaphore>>) -> Arc<Self> {
        Arc::new(MemMetrics {
            mode: ModeCell::new(Mode::Accept),
            series: Mutex::new(BTreeMap::new()),
            metadata: Mutex::new(Vec::new()),
            appends: Mutex::new(Vec::new()),
            gate,
            events,
        })
    }

    pub fn set_mode(&self, mode: Mode) {
        self.mode.set(mode);
    }

    /// The last stored value of the series rendered as `labels` (Prometheus notation).
    pub fn last(&self, rendered: &str) -> Option<f64> {
        self.series
            .lock()
            .iter()
            .find(|(l, _)| l.to_string() == rendered)
            .and_then(|(_, s)| s.last().map(|x| x.value))
    }

    /// Every stored series as `name{labels} last-value`, sorted.
    pub fn rendered(&self) -> Vec<String> {
        self.series
            .lock()
            .iter()
            .filter_map(|(l, s)| s.last().map(|x| format!("{l} {}", x.value)))
            .collect()
    }

    fn querier(&self) -> MemQuerier {
        MemQuerier {
            series: self.series.lock().clone(),
            metadata: self.metadata.lock().clone(),
        }
    }
}

#[async_trait]
impl MetricsAppender for MemMetrics {
    async fn append(&self, batch: MetricBatch) -> store::Result<AppendReport> {
        if let Some(gate) = &self.gate {
            gate.acquire()
                .await
                .map_err(|_| StoreError::Unavailable("gate closed".into()))?
                .forget();
        }
        if let Some(e) = self.mode.get().error("wal") {
            self.events.lock().push("metrics refused".to_string());
            return Err(e);
        }
        let mut report = AppendReport::default();
        {
            let mut all = self.series.lock();
            for s in &batch.series {
                let stored = all.entry(s.labels.clone()).or_default();
                for x in &s.samples {
                    if stored
                        .last()
                        .is_some_and(|l| l.timestamp_ms >= x.timestamp_ms)
                    {
                        report.reject(store::RejectReason::OutOfOrder, 1, || {
                            format!("out of order sample for {}", s.labels)
                        });
                    } else {
                        stored.push(*x);
                        report.accepted_samples += 1;
                    }
                }
            }
        }
        self.metadata.lock().extend(batch.metadata.iter().cloned());
        self.events
            .lock()
            .push(format!("metrics {}", batch.sample_count()));
        self.appends.lock().push(batch);
        Ok(report)
    }
}

impl MetricsQuerier for MemMetrics {
    fn select(
        &self,
        matchers: &[LabelMatcher],
        mint: i64,
        maxt: i64,
    ) -> store::Result<Vec<Series>> {
        self.querier().select(matchers, mint, maxt)
    }

    fn series(
        &self,
        sets: &[Vec<LabelMatcher>],
        mint: i64,
        maxt: i64,
    ) -> store::Result<Vec<Labels>> {
        self.querier().series(sets, mint, maxt)
    }

    fn label_names(
        &self,
        sets: &[Vec<LabelMatcher>],
        mint: i64,
        maxt: i64,
    ) -> store::Result<Vec<String>> {
        self.querier().label_names(sets, mint, maxt)
    }

    fn label_values(
        &self,
        name: &str,
        sets: &[Vec<LabelMatcher>],
        mint: i64,
        maxt: i64,
    ) -> store::Result<Vec<String>> {
        self.querier().label_values(name, sets, mint, maxt)
    }

    fn metadata(&self) -> store::Result<Vec<MetricMetadata>> {
        Ok(self.metadata.lock().clone())
    }
}

/// A querier that is never ready (the store is still replaying its WAL).
pub struct NotReady;

impl MetricsQuerier for NotReady {
    fn select(&self, _: &[LabelMatcher], _: i64, _: i64) -> store::Result<Vec<Series>> {
        Err(StoreError::Unavailable("lookout is starting".into()))
    }
    fn series(&self, _: &[Vec<LabelMatcher>], _: i64, _: i64) -> store::Result<Vec<Labels>> {
        Err(StoreError::Unavailable("lookout is starting".into()))
    }
    fn label_names(&self, _: &[Vec<LabelMatcher>], _: i64, _: i64) -> store::Result<Vec<String>> {
        Err(StoreError::Unavailable("lookout is starting".into()))
    }
    fn label_values(
        &self,
        _: &str,
        _: &[Vec<LabelMatcher>],
        _: i64,
        _: i64,
    ) -> store::Result<Vec<String>> {
        Err(StoreError::Unavailable("lookout is starting".into()))
    }
    fn metadata(&self) -> store::Result<Vec<MetricMetadata>> {
        Ok(Vec::new())
    }
}

pub const T0: u64 = 1_700_000_000_000_000_000;
pub const MS: u64 = 1_000_000;

pub fn kv(key: &str, value: any_value::Value) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

pub fn kv_str(key: &str, value: &str) -> KeyValue {
    kv(key, any_value::Value::StringValue(value.to_string()))
}

pub fn kv_int(key: &str, value: i64) -> KeyValue {
    kv(key, any_value::Value::IntValue(value))
}

/// An OTLP span: trace `trace`, id `id`, parent `parent` (0: root), `ms` long from [`T0`].
pub fn otlp_span(
    trace: u8,
    id: u8,
    parent: u8,
    name: &str,
    kind: otlp::span::SpanKind,
    ms: u64,
) -> otlp::Span {
    otlp::Span {
        trace_id: vec![trace; 16],
        span_id: vec![id; 8],
        parent_span_id: if parent == 0 {
            Vec::new()
        } else {
            vec![parent; 8]
        },
        name: name.to_string(),
        kind: kind as i32,
        start_time_unix_nano: T0,
        end_time_unix_nano: T0 + ms * MS,
        ..Default::default()
    }
}

/// A request with `spans` from service `service`.
pub fn request(service: &str, spans: Vec<otlp::Span>) -> ExportTraceServiceRequest {
    requests(&[(service, spans)])
}

/// A request with one resource per `(service, spans)`.
pub fn requests(groups: &[(&str, Vec<otlp::Span>)]) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: groups
            .iter()
            .map(|(service, spans)| otlp::ResourceSpans {
                resource: Some(OtlpResource {
                    attributes: vec![kv_str("service.name", service)],
                    ..Default::default()
                }),
                scope_spans: vec![otlp::ScopeSpans {
                    scope: None,
                    spans: spans.clone(),
                    schema_url: String::new(),
                }],
                schema_url: String::new(),
            })
            .collect(),
    }
}

/// Sets a span's status code.
pub fn with_status(mut span: otlp::Span, code: otlp::status::StatusCode) -> otlp::Span {
    span.status = Some(otlp::Status {
        code: code as i32,
        message: String::new(),
    });
    span
}

/// Adds attributes to a span.
pub fn with_attrs(mut span: otlp::Span, attrs: Vec<KeyValue>) -> otlp::Span {
    span.attributes.extend(attrs);
    span
}
