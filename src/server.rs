//! `lookout serve`: binds every port first (so `/-/healthy` answers while the WAL
//! replays), opens the metrics store on a blocking thread, then turns ready. Until then
//! ingest answers 503 with `Retry-After` and `/-/ready` 503. On SIGTERM/SIGINT: stop
//! accepting (graceful shutdown of axum and tonic), stop scraping, flush and close the
//! store, exit 0; a second signal exits at once.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::Context;
use async_trait::async_trait;
use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::from_fn_with_state;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use collector::otlp::traces::{TraceIngest, TraceLimits};
use collector::scrape::ScrapeManager;
use store::config::MetricsStoreOptions;
use store::contract::LazySeries;
use store::model::{Labels, MetricBatch, MetricMetadata, RawMetricBatch, Series};
use store::traces::{
    SpanAppendReport, SpanBatch, SpanKind, StoredSpan, TraceId, TraceQuery, TraceStore,
    TraceStoreOptions, TraceSummary, TracesAppender, TracesQuerier,
};
use store::{
    AppendReport, LabelMatcher, MetricsAppender, MetricsQuerier, MetricsStore, StoreError,
};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::auth::{self, Tokens};
use crate::config::Config;
use crate::telemetry;

/// How long servers get to finish in-flight requests after a shutdown signal.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// Seconds clients are told to wait while the store is still opening.
const STARTING_RETRY_AFTER_SECS: u32 = 5;

/// The store as the protocol handlers see it: unavailable until opened, then the store.
/// Handlers are built before the store exists so health endpoints answer during WAL replay.
#[derive(Default)]
struct LazyStore {
    cell: OnceLock<Arc<MetricsStore>>,
}

impl LazyStore {
    fn get(&self) -> Result<&Arc<MetricsStore>, StoreError> {
        self.cell.get().ok_or_else(|| {
            StoreError::Unavailable("lookout is starting: the WAL is being replayed".into())
        })
    }
}

#[async_trait]
impl MetricsAppender for LazyStore {
    async fn append(&self, batch: MetricBatch) -> store::Result<AppendReport> {
        self.get()?.append(batch).await
    }
    /// Forwarded so remote write reaches the store's allocation-light path.
    async fn append_raw(&self, batch: RawMetricBatch) -> store::Result<AppendReport> {
        self.get()?.append_raw(batch).await
    }
}

impl MetricsQuerier for LazyStore {
    fn select(
        &self,
        matchers: &[LabelMatcher],
        mint: i64,
        maxt: i64,
    ) -> store::Result<Vec<Series>> {
        self.get()?.select(matchers, mint, maxt)
    }
    /// Forwarded so queries read series lazily, a batch at a time.
    fn select_lazy(
        &self,
        matchers: &[LabelMatcher],
        mint: i64,
        maxt: i64,
    ) -> store::Result<Vec<LazySeries>> {
        self.get()?.select_lazy(matchers, mint, maxt)
    }
    fn series(
        &self,
        sets: &[Vec<LabelMatcher>],
        mint: i64,
        maxt: i64,
    ) -> store::Result<Vec<Labels>> {
        self.get()?.series(sets, mint, maxt)
    }
    fn label_names(
        &self,
        sets: &[Vec<LabelMatcher>],
        mint: i64,
        maxt: i64,
    ) -> store::Result<Vec<String>> {
        self.get()?.label_names(sets, mint, maxt)
    }
    fn label_values(
        &self,
        name: &str,
        sets: &[Vec<LabelMatcher>],
        mint: i64,
        maxt: i64,
    ) -> store::Result<Vec<String>> {
        self.get()?.label_values(name, sets, mint, maxt)
    }
    fn metadata(&self) -> store::Result<Vec<MetricMetadata>> {
        self.get()?.metadata()
    }
}

/// The trace store as handlers see it: unavailable until opened, like [`LazyStore`].
#[derive(Default)]
struct LazyTraces {
    cell: OnceLock<Arc<TraceStore>>,
}

impl LazyTraces {
    fn get(&self) -> Result<&Arc<TraceStore>, StoreError> {
        self.cell.get().ok_or_else(|| {
            StoreError::Unavailable("lookout is starting: the trace WAL is being replayed".into())
        })
    }
}

#[async_trait]
impl TracesAppender for LazyTraces {
    async fn append_spans(&self, batch: SpanBatch) -> store::Result<SpanAppendReport> {
        self.get()?.append_spans(batch).await
    }
}

impl TracesQuerier for LazyTraces {
    fn trace(&self, id: TraceId) -> store::Result<Vec<StoredSpan>> {
        self.get()?.trace(id)
    }
    fn search(&self, query: &TraceQuery) -> store::Result<Vec<TraceSummary>> {
        self.get()?.search(query)
    }
    fn services(&self, start: u64, end: u64) -> store::Result<Vec<String>> {
        self.get()?.services(start, end)
    }
    fn operations(
        &self,
        service: &str,
        start: u64,
        end: u64,
    ) -> store::Result<Vec<(String, SpanKind)>> {
        self.get()?.operations(service, start, end)
    }
}

type Readiness = Arc<AtomicBool>;

async fn healthy() -> &'static str {
    "Lookout is Healthy.\n"
}

async fn ready(State(ready): State<Readiness>) -> Response {
    if ready.load(Ordering::Acquire) {
        (StatusCode::OK, "Lookout is Ready.\n").into_response()
    } else {
        let mut resp = (
            StatusCode::SERVICE_UNAVAILABLE,
            "Service Unavailable: the WAL is being replayed.\n",
        )
            .into_response();
        resp.headers_mut().insert(
            header::RETRY_AFTER,
            HeaderValue::from(STARTING_RETRY_AFTER_SECS),
        );
        resp
    }
}

/// Resolves once the first SIGTERM/SIGINT arrives.
async fn wait_shutdown(mut rx: watch::Receiver<bool>) {
    // an error means the sender is gone, which only happens at exit: stop as well
    let _ = rx.wait_for(|stop| *stop).await;
}

/// Listens for SIGTERM and SIGINT: the first starts a graceful shutdown, the second exits.
fn spawn_signal_handler(tx: watch::Sender<bool>) -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    tokio::spawn(async move {
        let name = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        };
        tracing::info!(
            signal = name,
            "shutting down: draining requests, then flushing the store"
        );
        let _ = tx.send(true);
        let name = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        };
        tracing::warn!(
            signal = name,
            "second signal: exiting immediately without flushing"
        );
        std::process::exit(130);
    });
    Ok(())
}

async fn bind(service: &'static str, addr: SocketAddr) -> anyhow::Result<TcpListener> {
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding the {service} listener on {addr}"))?;
    let local = listener
        .local_addr()
        .with_context(|| format!("reading the {service} listener's address"))?;
    tracing::info!(service, addr = %local, "listening");
    Ok(listener)
}

fn serve_http(
    service: &'static str,
    listener: TcpListener,
    app: Router,
    shutdown: watch::Receiver<bool>,
) -> JoinHandle<anyhow::Result<()>> {
    tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(wait_shutdown(shutdown))
            .await
            .with_context(|| format!("{service} server failed"))
    })
}

/// What the routers serve: the stores (opened later) and trace ingest.
struct Services {
    store: Arc<LazyStore>,
    traces: Arc<LazyTraces>,
    trace_ingest: Arc<TraceIngest>,
}

impl Services {
    /// Builds trace ingest (its derived-metrics flusher starts now: call inside the runtime).
    fn new(limits: TraceLimits) -> anyhow::Result<Self> {
        let store = Arc::new(LazyStore::default());
        let traces = Arc::new(LazyTraces::default());
        let trace_ingest = TraceIngest::new(
            traces.clone(),
            store.clone(),
            store.clone(),
            limits,
            collector::traces::DeriveConfig::default(),
        )
        .map_err(anyhow::Error::msg)
        .context("starting trace ingest")?;
        Ok(Services {
            store,
            traces,
            trace_ingest,
        })
    }
}

/// The HTTP port's router and the OTLP/HTTP port's router, each side behind its tokens.
fn routers(
    services: &Services,
    readiness: Readiness,
    ingest_tokens: Tokens,
    query_tokens: Tokens,
    limits: collector::IngestLimits,
    query: api::ApiOptions,
) -> (Router, Router) {
    let sink: Arc<dyn MetricsAppender> = services.store.clone();
    let querier: Arc<dyn MetricsQuerier> = services.store.clone();
    let health = Router::new()
        .route("/-/healthy", get(healthy))
        .route("/-/ready", get(ready))
        .with_state(readiness);
    let query_side = api::router(querier.clone(), query.clone())
        .merge(api::traces_router(
            services.traces.clone(),
            querier,
            None,
            query,
        ))
        .route("/metrics", get(telemetry::metrics))
        .merge(ui::router())
        .layer(from_fn_with_state(query_tokens, auth::require_token));
    let ingest_side = collector::remote_write::router(sink.clone(), limits.clone()).layer(
        from_fn_with_state(ingest_tokens.clone(), auth::require_token),
    );
    let http_app = health.merge(ingest_side).merge(query_side);
    let otlp_http_app = collector::otlp::router(sink, limits)
        .merge(collector::otlp::traces::router(
            services.trace_ingest.clone(),
        ))
        .layer(from_fn_with_state(ingest_tokens, auth::require_token));
    (http_app, otlp_http_app)
}

/// The gRPC routes: the OTLP metrics service behind the ingest tokens.
fn grpc_routes(
    services: &Services,
    limits: collector::IngestLimits,
    ingest_tokens: Tokens,
) -> tonic::service::Routes {
    use tonic::service::interceptor::InterceptedService;
    let sink: Arc<dyn MetricsAppender> = services.store.clone();
    tonic::service::Routes::new(InterceptedService::new(
        collector::otlp::metrics_service(sink, limits),
        auth::grpc_interceptor(ingest_tokens.clone()),
    ))
    .add_service(InterceptedService::new(
        collector::otlp::traces::grpc_service(services.trace_ingest.clone()),
        auth::grpc_interceptor(ingest_tokens),
    ))
}

/// Runs `lookout serve` until a shutdown signal; returns once the store is closed.
pub async fn run(config: Config) -> anyhow::Result<()> {
    telemetry::init();
    if !config.rule_files.is_empty() || config.alerting {
        tracing::warn!(
            rule_files = config.rule_files.len(),
            alerting = config.alerting,
            "rule_files and alerting are accepted but not evaluated yet: no rules run and no notifications are sent"
        );
    }
    let (stop_tx, stop_rx) = watch::channel(false);
    spawn_signal_handler(stop_tx.clone())?;

    let services = Services::new(config.limits.traces.clone())?;
    let lazy = services.store.clone();
    let readiness: Readiness = Arc::new(AtomicBool::new(false));
    let ingest_tokens = Tokens::new(config.server.ingest_tokens.clone());
    let query_tokens = Tokens::new(config.server.query_tokens.clone());
    let limits = config.limits.ingest.clone();

    let (http_app, otlp_http_app) = routers(
        &services,
        readiness.clone(),
        ingest_tokens.clone(),
        query_tokens,
        limits.clone(),
        api::ApiOptions {
            engine: config.query.clone(),
        },
    );

    let http_listener = bind("http", config.server.http_addr).await?;
    let otlp_http_listener = bind("otlp-http", config.server.otlp_http_addr).await?;
    let grpc_listener = bind("otlp-grpc", config.server.otlp_grpc_addr).await?;

    let mut servers = vec![
        serve_http("http", http_listener, http_app, stop_rx.clone()),
        serve_http(
            "otlp-http",
            otlp_http_listener,
            otlp_http_app,
            stop_rx.clone(),
        ),
    ];
    let grpc = grpc_routes(&services, limits, ingest_tokens);
    let grpc_stop = stop_rx.clone();
    servers.push(tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_routes(grpc)
            .serve_with_incoming_shutdown(
                tonic::transport::server::TcpIncoming::from(grpc_listener),
                wait_shutdown(grpc_stop),
            )
            .await
            .context("otlp-grpc server failed")
    }));

    let metrics_dir: PathBuf = config.storage.data_dir.join("metrics");
    let options = MetricsStoreOptions {
        dir: metrics_dir.clone(),
        fsync: config.storage.fsync,
        limits: config.limits.store.clone(),
        flush_interval: config.storage.metrics_flush_interval,
        retention: config.storage.metrics.warm_for,
    };
    tracing::info!(dir = %metrics_dir.display(), "opening the metrics store and replaying its wal");
    let started = std::time::Instant::now();
    let opened = tokio::task::spawn_blocking(move || MetricsStore::open(options)).await;
    let store = match opened {
        Ok(Ok(store)) => store,
        Ok(Err(e)) => {
            let _ = stop_tx.send(true);
            return Err(e).with_context(|| {
                format!("opening the metrics store in {}", metrics_dir.display())
            });
        }
        Err(e) => {
            let _ = stop_tx.send(true);
            return Err(anyhow::anyhow!("the store opening task failed: {e}"));
        }
    };
    if lazy.cell.set(store.clone()).is_err() {
        anyhow::bail!("the metrics store was opened twice");
    }
    let background = store.spawn_background();

    let traces_dir: PathBuf = config.storage.data_dir.join("traces");
    let trace_options = TraceStoreOptions {
        fsync: config.storage.fsync,
        retention: config.storage.traces.warm_for,
        ..TraceStoreOptions::new(&traces_dir)
    };
    tracing::info!(dir = %traces_dir.display(), "opening the trace store and replaying its wal");
    let opened = tokio::task::spawn_blocking(move || TraceStore::open(trace_options)).await;
    let traces = match opened {
        Ok(Ok(traces)) => traces,
        Ok(Err(e)) => {
            let _ = stop_tx.send(true);
            let _ = store.close().await;
            return Err(e)
                .with_context(|| format!("opening the trace store in {}", traces_dir.display()));
        }
        Err(e) => {
            let _ = stop_tx.send(true);
            let _ = store.close().await;
            return Err(anyhow::anyhow!("the trace store opening task failed: {e}"));
        }
    };
    if services.traces.cell.set(traces.clone()).is_err() {
        anyhow::bail!("the trace store was opened twice");
    }
    let traces_background = traces.spawn_background();
    let scrape = ScrapeManager::new(
        store.clone() as Arc<dyn MetricsAppender>,
        config.global.scrape_global(),
    );
    scrape.apply(config.scrape_configs.clone());
    readiness.store(true, Ordering::Release);
    telemetry::READY.set(1);
    tracing::info!(
        replay_ms = started.elapsed().as_millis() as u64,
        series = store.stats().series,
        scrape_jobs = config.scrape_configs.len(),
        "ready"
    );

    // run until a signal, or until a server fails
    let mut failure: Option<anyhow::Error> = None;
    let mut stop_wait = stop_rx.clone();
    let mut all = futures::future::select_all(servers);
    let (first, rest) = tokio::select! {
        _ = stop_wait.wait_for(|s| *s) => (None, all.into_inner()),
        done = &mut all => (Some(done.0), done.2),
    };
    if let Some(result) = first {
        let _ = stop_tx.send(true);
        match result {
            Ok(Ok(())) => {}
            Ok(Err(e)) => failure = Some(e),
            Err(e) => failure = Some(anyhow::anyhow!("server task failed: {e}")),
        }
    }
    readiness.store(false, Ordering::Release);
    telemetry::READY.set(0);
    for server in rest {
        match tokio::time::timeout(DRAIN_TIMEOUT, server).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => {
                tracing::error!(error = %format!("{e:#}"), "server stopped with an error")
            }
            Ok(Err(e)) => tracing::error!(error = %e, "server task failed"),
            Err(_) => tracing::warn!(
                timeout_s = DRAIN_TIMEOUT.as_secs(),
                "a server did not drain in time"
            ),
        }
    }
    scrape.shutdown().await;
    // the last derived samples go to the metrics store, so it closes after trace ingest
    services.trace_ingest.shutdown().await;
    let traces_closed = traces.close().await;
    let _ = traces_background.await;
    if let Err(e) = traces_closed {
        tracing::error!(error = %e, "closing the trace store");
    }
    let closed = store.close().await;
    let _ = background.await;
    match (closed, failure) {
        (Ok(()), None) => {
            tracing::info!("store flushed and closed; bye");
            Ok(())
        }
        (Err(e), _) => Err(e).context("closing the metrics store"),
        (Ok(()), Some(e)) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    const OTLP_GAUGE_JSON: &str = r#"{"resourceMetrics":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"svc"}}]},"scopeMetrics":[{"metrics":[{"name":"temp","gauge":{"dataPoints":[{"asDouble":1.5,"timeUnixNano":"1700000000000000000"}]}}]}]}]}"#;

    fn apps(ingest: &[&str], query: &[&str]) -> (Router, Router, Readiness) {
        let readiness: Readiness = Arc::new(AtomicBool::new(false));
        let tokens =
            |t: &[&str]| Tokens::new(t.iter().map(|s| crate::config::Secret::new(*s)).collect());
        let services = Services::new(TraceLimits::default()).expect("trace ingest starts");
        let (http, otlp) = routers(
            &services,
            readiness.clone(),
            tokens(ingest),
            tokens(query),
            collector::IngestLimits::default(),
            api::ApiOptions::default(),
        );
        (http, otlp, readiness)
    }

    async fn send(app: Router, req: Request<Body>) -> Response {
        match app.oneshot(req).await {
            Ok(r) => r,
            Err(e) => match e {},
        }
    }

    fn get_req(path: &str) -> Request<Body> {
        Request::get(path)
            .body(Body::empty())
            .unwrap_or_else(|e| panic!("{e}"))
    }

    #[tokio::test]
    async fn before_the_store_opens_health_is_up_ready_and_ingest_are_503() {
        let (http, otlp, readiness) = apps(&[], &[]);
        assert_eq!(
            send(http.clone(), get_req("/-/healthy")).await.status(),
            StatusCode::OK
        );
        let resp = send(http.clone(), get_req("/-/ready")).await;
        assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(resp.headers().contains_key(header::RETRY_AFTER));

        let req = Request::post("/v1/metrics")
            .header("content-type", "application/json")
            .body(Body::from(OTLP_GAUGE_JSON))
            .unwrap_or_else(|e| panic!("{e}"));
        let resp = send(otlp, req).await;
        assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(
            resp.headers().contains_key(header::RETRY_AFTER),
            "{:?}",
            resp.headers()
        );

        let resp = send(http.clone(), get_req("/api/v1/query?query=up")).await;
        assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);

        readiness.store(true, Ordering::Release);
        assert_eq!(
            send(http, get_req("/-/ready")).await.status(),
            StatusCode::OK
        );
    }

    #[tokio::test]
    async fn tokens_guard_each_side_and_health_stays_open() {
        let (http, otlp, _) = apps(&["ingest-t"], &["query-t"]);
        assert_eq!(
            send(http.clone(), get_req("/-/healthy")).await.status(),
            StatusCode::OK
        );
        assert_eq!(
            send(http.clone(), get_req("/-/ready")).await.status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(
            send(http.clone(), get_req("/metrics")).await.status(),
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            send(http.clone(), get_req("/")).await.status(),
            StatusCode::UNAUTHORIZED
        );
        let with = |path: &str, token: &str| {
            Request::get(path)
                .header("authorization", format!("Bearer {token}"))
                .body(Body::empty())
                .unwrap_or_else(|e| panic!("{e}"))
        };
        assert_eq!(
            send(http.clone(), with("/metrics", "query-t"))
                .await
                .status(),
            StatusCode::OK
        );
        // an ingest token does not open the query side, nor the reverse
        assert_eq!(
            send(http.clone(), with("/metrics", "ingest-t"))
                .await
                .status(),
            StatusCode::UNAUTHORIZED
        );
        let write = Request::post("/api/v1/write")
            .header("authorization", "Bearer query-t")
            .body(Body::empty())
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(send(http, write).await.status(), StatusCode::UNAUTHORIZED);
        let otlp_req = Request::post("/v1/metrics")
            .header("content-type", "application/json")
            .body(Body::from(OTLP_GAUGE_JSON))
            .unwrap_or_else(|e| panic!("{e}"));
        let resp = send(otlp, otlp_req).await;
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
        let body = axum::body::to_bytes(resp.into_body(), 1 << 16)
            .await
            .unwrap_or_default();
        assert!(String::from_utf8_lossy(&body).contains("\"errorType\":\"unauthorized\""));
    }

    #[tokio::test]
    async fn grpc_checks_the_ingest_token() {
        use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_client::MetricsServiceClient;
        use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;

        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
        let services = Services::new(TraceLimits::default()).expect("trace ingest starts");
        let routes = grpc_routes(
            &services,
            collector::IngestLimits::default(),
            Tokens::new(vec![crate::config::Secret::new("grpc-t")]),
        );
        let server = tokio::spawn(
            tonic::transport::Server::builder()
                .add_routes(routes)
                .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
        );
        let mut client = MetricsServiceClient::connect(format!("http://{addr}"))
            .await
            .unwrap_or_else(|e| panic!("connecting: {e}"));
        let request = ExportMetricsServiceRequest::default();
        let status = client.export(request.clone()).await.err().map(|s| s.code());
        assert_eq!(status, Some(tonic::Code::Unauthenticated));

        let mut req = tonic::Request::new(request);
        req.metadata_mut().insert(
            "authorization",
            "Bearer grpc-t".parse().unwrap_or_else(|e| panic!("{e}")),
        );
        // an empty export stores nothing, so it succeeds even before the store opens
        let result = client.export(req).await;
        assert!(result.is_ok(), "{result:?}");
        server.abort();
    }

    #[tokio::test]
    async fn lazy_store_reports_unavailable_until_set() {
        let lazy = LazyStore::default();
        let err = lazy.append(MetricBatch::default()).await.err();
        assert!(matches!(err, Some(StoreError::Unavailable(_))), "{err:?}");
        assert!(matches!(
            lazy.label_names(&[], 0, 1),
            Err(StoreError::Unavailable(_))
        ));
    }
}
