//! `lookout serve`: binds every port first (so `/-/healthy` answers while the WALs
//! replay), opens the metrics store, then the trace store, then the log store on blocking
//! threads, starts the alerter over them, then turns ready. Until then ingest answers 503
//! with `Retry-After` and `/-/ready` 503. SIGHUP and `POST /-/reload` re-read the config
//! file and rule files (alerting and scrape configs; a bad file keeps the old config); one
//! asked for during start-up is remembered and applied as start-up finishes. On
//! SIGTERM/SIGINT: stop accepting (graceful shutdown of axum and tonic; live log tails
//! end), stop scraping, stop the alerter (rule evaluation, then the dispatcher, then its
//! state), flush trace and log ingest's derived series, close the trace and log stores,
//! then the metrics store they write into, exit 0; a second signal exits at once.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use alerter::dispatch::config::AlertingConfig;
use alerter::service::{Alerter, AlerterOptions, ReloadConfig};
use anyhow::Context;
use async_trait::async_trait;
use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::from_fn_with_state;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use collector::logs::{LogIngest, LogLimits, LogMetricsConfig};
use collector::otlp::traces::{TraceIngest, TraceLimits};
use collector::scrape::ScrapeManager;
use store::config::MetricsStoreOptions;
use store::contract::{LazySeries, RollupAggregate, RollupSelection};
use store::logs::{
    FieldSummary, FieldsRequest, HistogramBucket, HistogramRequest, LogAppendReport, LogBatch,
    LogRecord, LogSearch, LogStore, LogStoreOptions, LogsAppender, LogsQuerier,
};
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
use crate::config::{self, Config, Overrides};
use crate::{login, telemetry};

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
    fn select_rollup(
        &self,
        matchers: &[LabelMatcher],
        mint: i64,
        maxt: i64,
        resolution_ms: i64,
        agg: RollupAggregate,
    ) -> store::Result<Option<RollupSelection>> {
        self.get()?
            .select_rollup(matchers, mint, maxt, resolution_ms, agg)
    }
    fn archive_files(&self, mint: i64, maxt: i64) -> usize {
        self.get().map_or(0, |s| s.archive_files(mint, maxt))
    }
    fn storage_stats(&self) -> Option<store::tsdb::StoreStats> {
        self.get().ok().map(|s| s.stats())
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
    fn tiers(&self) -> Option<store::traces::TraceTiers> {
        self.get().ok()?.tiers()
    }
}

/// The log store as handlers see it: unavailable until opened, like [`LazyStore`].
#[derive(Default)]
struct LazyLogs {
    cell: OnceLock<Arc<LogStore>>,
}

impl LazyLogs {
    fn get(&self) -> Result<&Arc<LogStore>, StoreError> {
        self.cell.get().ok_or_else(|| {
            StoreError::Unavailable("lookout is starting: the log WAL is being replayed".into())
        })
    }
}

#[async_trait]
impl LogsAppender for LazyLogs {
    async fn append_logs(&self, batch: LogBatch) -> store::Result<LogAppendReport> {
        self.get()?.append_logs(batch).await
    }
    fn check_accepting(&self) -> store::Result<()> {
        self.get()?.check_accepting()
    }
}

impl LogsQuerier for LazyLogs {
    fn search(&self, search: &LogSearch) -> store::Result<Vec<LogRecord>> {
        self.get()?.search(search)
    }
    fn search_with_stats(
        &self,
        search: &LogSearch,
    ) -> store::Result<(Vec<LogRecord>, store::logs::SearchStats)> {
        self.get()?.search_with_stats(search)
    }
    fn histogram(&self, request: &HistogramRequest) -> store::Result<Vec<HistogramBucket>> {
        self.get()?.histogram(request)
    }
    fn fields(&self, request: &FieldsRequest) -> store::Result<Vec<FieldSummary>> {
        self.get()?.fields(request)
    }
    fn tiers(&self) -> Option<store::logs::LogTiers> {
        self.get().ok()?.tiers()
    }
    /// Before the store opens: a closed channel. The tail handler's first search fails as
    /// unavailable then, so the client gets a 503, not an empty stream.
    fn subscribe(&self) -> tokio::sync::broadcast::Receiver<Arc<LogBatch>> {
        match self.cell.get() {
            Some(logs) => logs.subscribe(),
            None => tokio::sync::broadcast::channel(1).1,
        }
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

/// Where the running config came from, so a reload reads it again the same way.
#[derive(Clone, Debug, Default)]
pub struct ConfigSource {
    pub path: Option<PathBuf>,
    pub overrides: Overrides,
}

/// Reloads (SIGHUP and `POST /-/reload`): the config file read again and applied to what
/// can change while running, the alerter (rules, routes, receivers) and scraping. A reload
/// asked for while Lookout is still starting (the WALs replaying) is remembered and applied
/// as soon as the alerter and scraping run, so an edit signalled then is not lost.
#[derive(Default)]
struct Reload {
    source: OnceLock<ConfigSource>,
    /// `server.external_url` when the config sets none: `http://<bound HTTP address>`.
    default_external_url: OnceLock<String>,
    alerter: api::alerting::AlerterCell,
    scrape: OnceLock<Arc<ScrapeManager>>,
    /// One reload at a time; held to exit, so no reload starts once shutdown has begun.
    state: tokio::sync::Mutex<ReloadState>,
}

/// Whether start-up has finished, and whether a reload was asked for before it had.
#[derive(Debug, Default)]
struct ReloadState {
    started: bool,
    pending: bool,
}

/// Why a reload did not happen now.
#[derive(Debug)]
enum ReloadError {
    /// Lookout is still starting: the reload is remembered and applied once it is up.
    Starting,
    /// The new config was refused (every error, one per entry); the running one stays.
    Refused(Vec<String>),
}

impl Reload {
    /// Reloads now, or, while Lookout is starting, remembers to once it is up.
    async fn reload(&self) -> Result<(), ReloadError> {
        let mut state = self.state.lock().await;
        if !state.started {
            state.pending = true;
            return Err(ReloadError::Starting);
        }
        self.apply().await.map_err(ReloadError::Refused)
    }

    /// Start-up has finished (the alerter and scraping run): from now on reloads apply at
    /// once, and one asked for during start-up is applied now. Under the same lock as
    /// [`Reload::reload`], so a request cannot slip between the check and the flag.
    async fn started(&self) {
        let mut state = self.state.lock().await;
        state.started = true;
        if std::mem::take(&mut state.pending) {
            tracing::info!("applying the reload asked for during start-up");
            if let Err(errors) = self.apply().await {
                log_refused(&errors);
            }
        }
    }

    /// Reads the config again and applies it; the caller holds the lock.
    async fn apply(&self) -> Result<(), Vec<String>> {
        let (Some(source), Some(alerter)) = (self.source.get(), self.alerter.get()) else {
            return Err(vec!["lookout is not running: nothing to reload".into()]);
        };
        let loading = source.clone();
        let loaded = tokio::task::spawn_blocking(move || {
            config::load(loading.path.as_deref(), &loading.overrides)
        })
        .await
        .map_err(|e| vec![format!("reading the config failed: {e}")])?;
        let mut config =
            loaded.map_err(|e| e.render().lines().map(str::to_string).collect::<Vec<_>>())?;
        let rule_groups = std::mem::take(&mut config.rule_groups);
        let group_count = rule_groups.len();
        alerter
            .reload(ReloadConfig {
                external_url: external_url(&config, self.default_external_url.get()),
                external_labels: config.global.external_labels.clone(),
                evaluation_interval: config.global.evaluation_interval,
                rule_groups,
                alerting: alerting_config(&config),
            })
            .await?;
        if let Some(scrape) = self.scrape.get() {
            scrape.apply(config.scrape_configs.clone());
        }
        tracing::info!(
            rule_files = config.rule_file_paths.len(),
            rule_groups = group_count,
            alerting = config.alerting.is_some(),
            scrape_jobs = config.scrape_configs.len(),
            "configuration reloaded"
        );
        Ok(())
    }
}

fn log_refused(errors: &[String]) {
    for error in errors {
        tracing::error!(%error, "reload refused; keeping the running configuration");
    }
}

/// `POST /-/reload`: 200 when applied; 500 with every error, one per line, when the new
/// config is refused (the old one stays), as Prometheus answers. While Lookout is starting,
/// 503 with `Retry-After`: the reload is remembered and applied once start-up finishes.
async fn reload_handler(State(reload): State<Arc<Reload>>) -> Response {
    match reload.reload().await {
        Ok(()) => (StatusCode::OK, "").into_response(),
        Err(ReloadError::Starting) => {
            tracing::info!(
                "reload asked for during start-up; it is applied once start-up finishes"
            );
            let mut resp = (
                StatusCode::SERVICE_UNAVAILABLE,
                "lookout is starting (its WALs are being replayed): the reload will be applied once start-up finishes\n",
            )
                .into_response();
            resp.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from(STARTING_RETRY_AFTER_SECS),
            );
            resp
        }
        Err(ReloadError::Refused(errors)) => {
            tracing::warn!(
                errors = errors.len(),
                "reload refused; keeping the running configuration"
            );
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("failed to reload config:\n{}\n", errors.join("\n")),
            )
                .into_response()
        }
    }
}

/// The base URL for links in notifications: `server.external_url`, else
/// `http://<bound HTTP address>`; without trailing `/`.
fn external_url(config: &Config, default: Option<&String>) -> String {
    config
        .server
        .external_url
        .clone()
        .or_else(|| default.cloned())
        .unwrap_or_else(|| format!("http://{}", config.server.http_addr))
        .trim_end_matches('/')
        .to_string()
}

/// The `http://HOST:PORT` of a bound listener; a wildcard address becomes `localhost`.
fn url_of(addr: SocketAddr) -> String {
    if addr.ip().is_unspecified() {
        format!("http://localhost:{}", addr.port())
    } else {
        format!("http://{addr}")
    }
}

fn alerting_config(config: &Config) -> Arc<AlertingConfig> {
    config
        .alerting
        .clone()
        .unwrap_or_else(|| Arc::new(AlertingConfig::none()))
}

/// The alerter's options from the config: its state in `data_dir`, links to `external_url`.
fn alerter_options(config: &Config, data_dir: PathBuf, external_url: String) -> AlerterOptions {
    AlerterOptions {
        data_dir,
        external_url,
        external_labels: config.global.external_labels.clone(),
        evaluation_interval: config.global.evaluation_interval,
        alerting: alerting_config(config),
        engine: config.query.clone(),
    }
}

/// Reloads on every SIGHUP, as Prometheus does.
fn spawn_reload_on_hangup(reload: Arc<Reload>) -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut hup = signal(SignalKind::hangup()).context("installing the SIGHUP handler")?;
    tokio::spawn(async move {
        while hup.recv().await.is_some() {
            tracing::info!(signal = "SIGHUP", "reloading the configuration");
            match reload.reload().await {
                Ok(()) => {}
                Err(ReloadError::Starting) => tracing::info!(
                    signal = "SIGHUP",
                    "lookout is starting: the reload is applied once start-up finishes"
                ),
                Err(ReloadError::Refused(errors)) => log_refused(&errors),
            }
        }
    });
    Ok(())
}

/// What the routers serve: the stores (opened later), trace ingest and log ingest, the
/// alerter (started once the stores are open) and reloads.
struct Services {
    store: Arc<LazyStore>,
    traces: Arc<LazyTraces>,
    logs: Arc<LazyLogs>,
    trace_ingest: Arc<TraceIngest>,
    log_ingest: Arc<LogIngest>,
    reload: Arc<Reload>,
}

impl Services {
    /// Builds trace and log ingest (their derived-metrics flushers start now: call inside
    /// the runtime).
    fn new(trace_limits: TraceLimits, log_limits: LogLimits) -> anyhow::Result<Self> {
        let store = Arc::new(LazyStore::default());
        let traces = Arc::new(LazyTraces::default());
        let logs = Arc::new(LazyLogs::default());
        let trace_ingest = TraceIngest::new(
            traces.clone(),
            store.clone(),
            store.clone(),
            trace_limits,
            collector::traces::DeriveConfig::default(),
        )
        .map_err(anyhow::Error::msg)
        .context("starting trace ingest")?;
        let log_ingest = LogIngest::new(
            logs.clone(),
            store.clone(),
            store.clone(),
            log_limits,
            LogMetricsConfig::default(),
        )
        .map_err(anyhow::Error::msg)
        .context("starting log ingest")?;
        Ok(Services {
            store,
            traces,
            logs,
            trace_ingest,
            log_ingest,
            reload: Arc::new(Reload::default()),
        })
    }
}

/// How the query side answers: the API's engine options and the UI's.
#[derive(Clone, Debug, Default)]
struct QueryOptions {
    api: api::ApiOptions,
    ui: ui::UiOptions,
}

/// The HTTP port's router and the OTLP/HTTP port's router, each side behind its tokens.
/// Live log tails end when `shutdown` turns `true`.
fn routers(
    services: &Services,
    readiness: Readiness,
    ingest_tokens: Tokens,
    query_tokens: Tokens,
    limits: collector::IngestLimits,
    query: QueryOptions,
    shutdown: watch::Receiver<bool>,
) -> (Router, Router) {
    let QueryOptions {
        api: query,
        ui: ui_options,
    } = query;
    let query_tokens_for_login = query_tokens.clone();
    let sink: Arc<dyn MetricsAppender> = services.store.clone();
    let querier: Arc<dyn MetricsQuerier> = services.store.clone();
    let health = Router::new()
        .route("/-/healthy", get(healthy))
        .route("/-/ready", get(ready))
        .with_state(readiness);
    let api_side = api::router(querier.clone(), query.clone())
        .merge(api::traces_router(
            services.traces.clone(),
            querier,
            Some(services.logs.clone()),
            query,
        ))
        .merge(api::logs_router(services.logs.clone(), shutdown))
        .merge(api::alerting_router_lazy(services.reload.alerter.clone()))
        .merge(
            Router::new()
                .route("/-/reload", post(reload_handler).put(reload_handler))
                .with_state(services.reload.clone()),
        )
        .route("/metrics", get(telemetry::metrics));
    // the UI's pages read the same APIs in-process while they render
    let query_side = api_side
        .clone()
        .merge(ui::router(api_side, ui_options))
        .layer(from_fn_with_state(query_tokens, auth::require_token));
    let ingest_side = collector::remote_write::router(sink.clone(), limits.clone())
        .merge(collector::loki::router(services.log_ingest.clone()))
        .layer(from_fn_with_state(
            ingest_tokens.clone(),
            auth::require_token,
        ));
    let http_app = health
        .merge(login::router(query_tokens_for_login))
        .merge(ingest_side)
        .merge(query_side);
    let otlp_http_app = collector::otlp::router(sink, limits)
        .merge(collector::otlp::traces::router(
            services.trace_ingest.clone(),
        ))
        .merge(collector::otlp::logs::router(services.log_ingest.clone()))
        .layer(from_fn_with_state(ingest_tokens, auth::require_token));
    (http_app, otlp_http_app)
}

/// The gRPC routes: the OTLP metrics, trace and logs services behind the ingest tokens.
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
        auth::grpc_interceptor(ingest_tokens.clone()),
    ))
    .add_service(InterceptedService::new(
        collector::otlp::logs::grpc_service(services.log_ingest.clone()),
        auth::grpc_interceptor(ingest_tokens),
    ))
}

/// Runs `lookout serve` until a shutdown signal; returns once the store is closed.
/// `source` is where `config` came from, read again on reloads.
pub async fn run(config: Config, source: ConfigSource) -> anyhow::Result<()> {
    telemetry::init();
    let (stop_tx, stop_rx) = watch::channel(false);
    spawn_signal_handler(stop_tx.clone())?;

    let services = Services::new(config.limits.traces.clone(), config.limits.logs.clone())?;
    let _ = services.reload.source.set(source);
    spawn_reload_on_hangup(services.reload.clone())?;
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
        QueryOptions {
            api: api::ApiOptions {
                engine: config.query.clone(),
            },
            ui: ui::UiOptions {
                language: config.ui.language,
                dashboards_dir: config.ui.dashboards_dir.clone(),
            },
        },
        stop_rx.clone(),
    );

    let http_listener = bind("http", config.server.http_addr).await?;
    if let Ok(addr) = http_listener.local_addr() {
        let _ = services.reload.default_external_url.set(url_of(addr));
    }
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
    // the archive (cold tier) opens with the store: the store finishes moves a crash
    // interrupted, which needs the archive's manifest
    let location = config.storage.archive.location(&config.storage.data_dir);
    let keep_archived_for = config.storage.metrics.archive_for;
    let options = MetricsStoreOptions {
        dir: metrics_dir.clone(),
        fsync: config.storage.fsync,
        limits: config.limits.store.clone(),
        flush_interval: config.storage.metrics_flush_interval,
        retention: config.storage.metrics.warm_for,
        archive: None,
    };
    tracing::info!(dir = %metrics_dir.display(), archive = %location, "opening the metrics store and replaying its wal");
    let started = std::time::Instant::now();
    let opened = tokio::task::spawn_blocking(move || {
        let archive = store::archive::Archive::open(&location)?;
        let store = MetricsStore::open(MetricsStoreOptions {
            archive: Some(store::config::ArchiveTier {
                archive: Arc::clone(&archive),
                keep_for: keep_archived_for,
            }),
            ..options
        })?;
        Ok::<_, store::error::StoreError>((store, archive))
    })
    .await;
    let (store, archive) = match opened {
        Ok(Ok(opened)) => opened,
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
        flush_interval: config.storage.traces_flush_interval,
        archive: Some(store::config::ArchiveTier {
            archive: Arc::clone(&archive),
            keep_for: config.storage.traces.archive_for,
        }),
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

    let logs_dir: PathBuf = config.storage.data_dir.join("logs");
    let log_options = LogStoreOptions {
        fsync: config.storage.fsync,
        retention: config.storage.logs.warm_for,
        partition_span: config.storage.logs_partition_span,
        archive: Some(store::config::ArchiveTier {
            archive: Arc::clone(&archive),
            keep_for: config.storage.logs.archive_for,
        }),
        ..LogStoreOptions::new(&logs_dir)
    };
    tracing::info!(dir = %logs_dir.display(), "opening the log store and replaying its wal");
    let opened = tokio::task::spawn_blocking(move || LogStore::open(log_options)).await;
    let logs = match opened {
        Ok(Ok(logs)) => logs,
        Ok(Err(e)) => {
            let _ = stop_tx.send(true);
            let _ = traces.close().await;
            let _ = store.close().await;
            return Err(e)
                .with_context(|| format!("opening the log store in {}", logs_dir.display()));
        }
        Err(e) => {
            let _ = stop_tx.send(true);
            let _ = traces.close().await;
            let _ = store.close().await;
            return Err(anyhow::anyhow!("the log store opening task failed: {e}"));
        }
    };
    if services.logs.cell.set(logs.clone()).is_err() {
        anyhow::bail!("the log store was opened twice");
    }
    let logs_background = logs.spawn_background();

    let alerter_dir = config.storage.data_dir.join("alerter");
    let started_alerter = Alerter::start(
        alerter_options(
            &config,
            alerter_dir.clone(),
            external_url(&config, services.reload.default_external_url.get()),
        ),
        config.rule_groups.clone(),
        services.store.clone(),
        services.store.clone(),
        services.logs.clone(),
        services.traces.clone(),
    )
    .await;
    let alerter = match started_alerter {
        Ok(a) => a,
        Err(e) => {
            let _ = stop_tx.send(true);
            services.trace_ingest.shutdown().await;
            services.log_ingest.shutdown().await;
            let _ = logs.close().await;
            let _ = traces.close().await;
            let _ = store.close().await;
            return Err(e).with_context(|| {
                format!("starting the alerter (state in {})", alerter_dir.display())
            });
        }
    };
    if services.reload.alerter.set(alerter.clone()).is_err() {
        anyhow::bail!("the alerter was started twice");
    }
    let disk_watch = (config.storage.disk_alert_free_ratio > 0.0).then(|| {
        crate::diskwatch::spawn(
            config.storage.data_dir.clone(),
            config.storage.disk_alert_free_ratio,
            alerter.clone(),
            stop_rx.clone(),
        )
    });

    let scrape = Arc::new(ScrapeManager::new(
        store.clone() as Arc<dyn MetricsAppender>,
        config.global.scrape_global(),
    ));
    scrape.apply(config.scrape_configs.clone());
    let _ = services.reload.scrape.set(scrape.clone());
    // a reload asked for during the replay is applied before Lookout reports ready
    services.reload.started().await;
    readiness.store(true, Ordering::Release);
    telemetry::READY.set(1);
    tracing::info!(
        replay_ms = started.elapsed().as_millis() as u64,
        series = store.stats().series,
        log_records_replayed = logs.replayed_records(),
        scrape_jobs = config.scrape_configs.len(),
        rule_groups = alerter.rules().len(),
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
    // no reload (SIGHUP, or a /-/reload that outlived the drain) may restart scraping or
    // rule evaluation from here on: the reload lock is held until the process exits
    let _no_more_reloads = services.reload.state.lock().await;
    scrape.shutdown().await;
    // the disk watch posts to the alerter: stopped first (stop_tx is set by now)
    if let Some(task) = disk_watch {
        let _ = task.await;
    }
    // rule evaluation writes into the metrics store: stopped before it closes
    alerter.shutdown().await;
    // the last derived samples go to the metrics store, so it closes after trace and log
    // ingest
    services.trace_ingest.shutdown().await;
    services.log_ingest.shutdown().await;
    let logs_closed = logs.close().await;
    let _ = logs_background.await;
    if let Err(e) = logs_closed {
        tracing::error!(error = %e, "closing the log store");
    }
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
        let services = Services::new(TraceLimits::default(), LogLimits::default())
            .expect("trace and log ingest start");
        let (http, otlp) = routers(
            &services,
            readiness.clone(),
            tokens(ingest),
            tokens(query),
            collector::IngestLimits::default(),
            QueryOptions::default(),
            watch::channel(false).1,
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

    /// `req` with `Authorization: Bearer <token>`.
    fn with_token(req: Request<Body>, token: &str) -> Request<Body> {
        let (mut parts, body) = req.into_parts();
        parts.headers.insert(
            "authorization",
            format!("Bearer {token}")
                .parse()
                .unwrap_or_else(|e| panic!("{e}")),
        );
        Request::from_parts(parts, body)
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
        assert_eq!(
            send(http.clone(), with_token(get_req("/metrics"), "query-t"))
                .await
                .status(),
            StatusCode::OK
        );
        // an ingest token does not open the query side, nor the reverse
        assert_eq!(
            send(http.clone(), with_token(get_req("/metrics"), "ingest-t"))
                .await
                .status(),
            StatusCode::UNAUTHORIZED
        );
        let write = Request::post("/api/v1/write")
            .body(Body::empty())
            .unwrap_or_else(|e| panic!("{e}"));
        let write = with_token(write, "query-t");
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
        let services = Services::new(TraceLimits::default(), LogLimits::default())
            .expect("trace and log ingest start");
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

        // the logs service is mounted behind the same tokens
        use opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;
        use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
        let mut logs = LogsServiceClient::connect(format!("http://{addr}"))
            .await
            .unwrap_or_else(|e| panic!("connecting: {e}"));
        let status = logs
            .export(ExportLogsServiceRequest::default())
            .await
            .err()
            .map(|s| s.code());
        assert_eq!(status, Some(tonic::Code::Unauthenticated));
        let mut req = tonic::Request::new(ExportLogsServiceRequest::default());
        req.metadata_mut().insert(
            "authorization",
            "Bearer grpc-t".parse().unwrap_or_else(|e| panic!("{e}")),
        );
        // past auth: the log store is still opening
        let status = logs.export(req).await.err().map(|s| s.code());
        assert_eq!(status, Some(tonic::Code::Unavailable));
        server.abort();
    }

    #[tokio::test]
    async fn logs_are_unavailable_until_their_store_opens_and_guarded_by_tokens() {
        let (http, otlp, _) = apps(&[], &[]);
        for path in [
            "/api/v1/logs/query",
            "/api/v1/logs/histogram",
            "/api/v1/logs/fields",
            "/api/v1/logs/tail",
        ] {
            let resp = send(http.clone(), get_req(path)).await;
            assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE, "{path}");
        }
        let push = || {
            Request::post("/loki/api/v1/push")
                .header("content-type", "application/json")
                .body(Body::from(r#"{"streams":[]}"#))
                .unwrap_or_else(|e| panic!("{e}"))
        };
        let resp = send(http.clone(), push()).await;
        assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
        let otlp_logs = Request::post("/v1/logs")
            .header("content-type", "application/json")
            .body(Body::from(r#"{"resourceLogs":[]}"#))
            .unwrap_or_else(|e| panic!("{e}"));
        let resp = send(otlp, otlp_logs).await;
        assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);

        let (http, otlp, _) = apps(&["ingest-t"], &["query-t"]);
        assert_eq!(
            send(http.clone(), get_req("/api/v1/logs/query"))
                .await
                .status(),
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            send(http.clone(), push()).await.status(),
            StatusCode::UNAUTHORIZED
        );
        // the right token gets past auth to the (still opening) store
        assert_eq!(
            send(
                http.clone(),
                with_token(get_req("/api/v1/logs/query"), "query-t")
            )
            .await
            .status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(
            send(http.clone(), with_token(push(), "query-t"))
                .await
                .status(),
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            send(http, with_token(push(), "ingest-t")).await.status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
        let otlp_logs = Request::post("/v1/logs")
            .header("content-type", "application/json")
            .body(Body::from(r#"{"resourceLogs":[]}"#))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            send(otlp, otlp_logs).await.status(),
            StatusCode::UNAUTHORIZED
        );
    }

    /// Loki push in, the query API out, through the routers over real stores.
    #[tokio::test]
    async fn a_pushed_line_is_found_through_the_logs_api() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let readiness: Readiness = Arc::new(AtomicBool::new(false));
        let services = Services::new(TraceLimits::default(), LogLimits::default())
            .expect("trace and log ingest start");
        let (http, _) = routers(
            &services,
            readiness,
            Tokens::new(Vec::new()),
            Tokens::new(Vec::new()),
            collector::IngestLimits::default(),
            QueryOptions::default(),
            watch::channel(false).1,
        );
        let metrics_dir = dir.path().join("metrics");
        let logs_dir = dir.path().join("logs");
        let (metrics, logs) = tokio::task::spawn_blocking(move || {
            (
                MetricsStore::open(MetricsStoreOptions::new(metrics_dir)),
                LogStore::open(LogStoreOptions::new(logs_dir)),
            )
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
        let metrics = metrics.unwrap_or_else(|e| panic!("metrics store: {e}"));
        let logs = logs.unwrap_or_else(|e| panic!("log store: {e}"));
        assert!(services.store.cell.set(metrics.clone()).is_ok());
        assert!(services.logs.cell.set(logs.clone()).is_ok());
        let background = logs.spawn_background();

        let now_ns = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        let trace = "0af7651916cd43dd8448eb211c80319c";
        let push = format!(
            r#"{{"streams":[{{"stream":{{"service_name":"checkout","level":"error"}},"values":[["{now_ns}","payment failed for order 42 trace_id={trace}",{{"trace_id":"{trace}"}}]]}}]}}"#
        );
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let req = Request::post("/loki/api/v1/push")
                .header("content-type", "application/json")
                .body(Body::from(push.clone()))
                .unwrap_or_else(|e| panic!("{e}"));
            let resp = send(http.clone(), req).await;
            // log ingest refuses pushes until its counters are restored from the metrics store
            if resp.status() == StatusCode::NO_CONTENT {
                break;
            }
            assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
            assert!(std::time::Instant::now() < deadline, "push never accepted");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // searchable within the store's commit interval
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let body = loop {
            let resp = send(
                http.clone(),
                get_req("/api/v1/logs/query?query=service:checkout%20AND%20payment"),
            )
            .await;
            assert_eq!(resp.status(), StatusCode::OK);
            let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
                .await
                .unwrap_or_default();
            let body = String::from_utf8_lossy(&bytes).into_owned();
            if body.contains("payment failed") {
                break body;
            }
            assert!(std::time::Instant::now() < deadline, "not found: {body}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert!(body.contains(r#""severity":"error""#), "{body}");
        assert!(body.contains(r#""service":"checkout""#), "{body}");
        services.log_ingest.shutdown().await;
        logs.close().await.unwrap_or_else(|e| panic!("{e}"));
        let _ = background.await;
        metrics.close().await.unwrap_or_else(|e| panic!("{e}"));
    }

    #[tokio::test]
    async fn reload_and_the_alerting_api_are_behind_the_query_tokens() {
        let (http, _, _) = apps(&[], &["query-t"]);
        let reload = || {
            Request::post("/-/reload")
                .body(Body::empty())
                .unwrap_or_else(|e| panic!("{e}"))
        };
        assert_eq!(
            send(http.clone(), reload()).await.status(),
            StatusCode::UNAUTHORIZED
        );
        // still starting: 503, the reload to be applied once start-up finishes
        let resp = send(http.clone(), with_token(reload(), "query-t")).await;
        assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(resp.headers().contains_key(header::RETRY_AFTER));
        let body = axum::body::to_bytes(resp.into_body(), 1 << 16)
            .await
            .unwrap_or_default();
        assert!(
            String::from_utf8_lossy(&body).contains("applied once start-up finishes"),
            "{body:?}"
        );
        assert_eq!(
            send(http.clone(), get_req("/api/v1/rules")).await.status(),
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            send(http, with_token(get_req("/api/v1/rules"), "query-t"))
                .await
                .status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
    }

    /// A config whose `rule_files` names `rules.yaml`, a metrics store, and [`Services`]
    /// whose reloads read that config: what `run` has while the WALs replay.
    struct ReloadFixture {
        dir: tempfile::TempDir,
        config_path: PathBuf,
        services: Services,
        store: Arc<MetricsStore>,
    }

    impl ReloadFixture {
        async fn new() -> Self {
            let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
            let config_path = dir.path().join("lookout.yaml");
            let fixture = ReloadFixture {
                config_path: config_path.clone(),
                services: Services::new(TraceLimits::default(), LogLimits::default())
                    .expect("trace and log ingest start"),
                store: {
                    let metrics_dir = dir.path().join("data/metrics");
                    tokio::task::spawn_blocking(move || {
                        MetricsStore::open(MetricsStoreOptions::new(metrics_dir))
                    })
                    .await
                    .unwrap_or_else(|e| panic!("{e}"))
                    .unwrap_or_else(|e| panic!("{e}"))
                },
                dir,
            };
            fixture.write_rules(&["a"]);
            fixture.write_config("rules.yaml");
            assert!(fixture
                .services
                .store
                .cell
                .set(fixture.store.clone())
                .is_ok());
            assert!(fixture
                .services
                .reload
                .source
                .set(ConfigSource {
                    path: Some(config_path),
                    overrides: Overrides::default(),
                })
                .is_ok());
            fixture
        }

        /// `rules.yaml` with one recording-rule group per name.
        fn write_rules(&self, names: &[&str]) {
            let mut text = String::from("groups:\n");
            for n in names {
                text.push_str(&format!(
                    "  - name: {n}\n    interval: 1h\n    rules:\n      - record: {n}:one\n        expr: vector(1)\n"
                ));
            }
            std::fs::write(self.dir.path().join("rules.yaml"), text)
                .unwrap_or_else(|e| panic!("{e}"));
        }

        /// The config, naming the rule file as `rule_file`.
        fn write_config(&self, rule_file: &str) {
            std::fs::write(
                &self.config_path,
                format!(
                    "storage: {{ data_dir: {} }}\nrule_files: ['{rule_file}']\n",
                    self.dir.path().join("data").display()
                ),
            )
            .unwrap_or_else(|e| panic!("{e}"));
        }

        /// Starts the alerter on the config as it is now, as `run` does once the stores
        /// are open, and hands it to reloads (start-up is not declared finished).
        async fn start_alerter(&self) -> Arc<Alerter> {
            self.start_alerter_with(&self.load_config()).await
        }

        fn load_config(&self) -> Config {
            crate::config::load(Some(&self.config_path), &Overrides::default())
                .unwrap_or_else(|e| panic!("{e}"))
        }

        /// [`ReloadFixture::start_alerter`] on a config loaded earlier.
        async fn start_alerter_with(&self, config: &Config) -> Arc<Alerter> {
            let config = config.clone();
            let alerter = Alerter::start(
                alerter_options(
                    &config,
                    self.dir.path().join("data/alerter"),
                    external_url(&config, None),
                ),
                config.rule_groups.clone(),
                self.services.store.clone(),
                self.services.store.clone(),
                self.services.logs.clone(),
                self.services.traces.clone(),
            )
            .await
            .unwrap_or_else(|e| panic!("{e}"));
            assert!(self.services.reload.alerter.set(alerter.clone()).is_ok());
            alerter
        }

        async fn close(self, alerter: Arc<Alerter>) {
            alerter.shutdown().await;
            self.store.close().await.unwrap_or_else(|e| panic!("{e}"));
        }
    }

    /// The names and files of the running rule groups.
    fn running_groups(alerter: &Alerter) -> Vec<(String, PathBuf)> {
        alerter
            .rules()
            .groups()
            .into_iter()
            .map(|g| (g.name, g.file))
            .collect()
    }

    fn group_names(alerter: &Alerter) -> Vec<String> {
        running_groups(alerter).into_iter().map(|g| g.0).collect()
    }

    /// A reload applies new rule files; a broken one is refused with its error and the
    /// running rules stay.
    #[tokio::test]
    async fn reload_applies_rules_and_refuses_a_broken_file() {
        let f = ReloadFixture::new().await;
        let alerter = f.start_alerter().await;
        f.services.reload.started().await;
        assert_eq!(group_names(&alerter), ["a"]);

        f.write_rules(&["a", "b"]);
        f.services
            .reload
            .reload()
            .await
            .unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(group_names(&alerter), ["a", "b"]);

        std::fs::write(
            f.dir.path().join("rules.yaml"),
            "groups:\n  - name: c\n    rules:\n      - record: c:one\n        expr: sum(\n",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let errors = match f.services.reload.reload().await {
            Ok(()) => panic!("a broken rule file was applied"),
            Err(ReloadError::Starting) => panic!("start-up has finished"),
            Err(ReloadError::Refused(e)) => e,
        };
        assert!(
            errors.iter().any(|e| e.contains("rules.yaml:")),
            "{errors:?}"
        );
        assert_eq!(group_names(&alerter), ["a", "b"], "the running rules stay");
        f.close(alerter).await;
    }

    /// A SIGHUP or `POST /-/reload` while the WALs replay is not dropped: it is applied
    /// as soon as the alerter runs, with the config as it is then.
    #[tokio::test]
    async fn a_reload_asked_for_during_start_up_is_applied_once_it_finishes() {
        let f = ReloadFixture::new().await;
        // the stores are still opening: nothing to reload into yet
        assert!(matches!(
            f.services.reload.reload().await,
            Err(ReloadError::Starting)
        ));
        // the edit the reload was asked for; the alerter starts on the config `run` loaded
        // before it
        let alerter = {
            let alerter = f.start_alerter().await;
            f.write_rules(&["a", "b"]);
            alerter
        };
        assert_eq!(group_names(&alerter), ["a"]);
        f.services.reload.started().await;
        assert_eq!(
            group_names(&alerter),
            ["a", "b"],
            "the pending reload applied"
        );

        // applied once: later edits wait for the next reload, which applies at once
        f.write_rules(&["a", "b", "c"]);
        f.services.reload.started().await;
        assert_eq!(group_names(&alerter), ["a", "b"]);
        f.services
            .reload
            .reload()
            .await
            .unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(group_names(&alerter), ["a", "b", "c"]);
        f.close(alerter).await;
    }

    /// Rule files are read and validated once, by the config loading, and the alerter runs
    /// exactly the groups it validated: it reads no file itself, at start or on reload.
    #[tokio::test]
    async fn the_alerter_runs_the_groups_the_config_validated() {
        let f = ReloadFixture::new().await;
        let config = f.load_config();
        // the file breaks after it was validated: the alerter starts on what was validated
        std::fs::write(f.dir.path().join("rules.yaml"), "groups: [ {")
            .unwrap_or_else(|e| panic!("{e}"));
        let alerter = f.start_alerter_with(&config).await;
        assert_eq!(group_names(&alerter), ["a"]);
        // reload: the groups handed over are applied, their file is not read again
        let gone = f.dir.path().join("gone.yaml");
        let groups = alerter::rules::file::parse_rule_file(
            &gone,
            "groups:\n  - name: x\n    rules:\n      - record: x:one\n        expr: vector(1)\n",
        )
        .unwrap_or_else(|e| panic!("{e:?}"));
        alerter
            .reload(ReloadConfig {
                external_url: external_url(&config, None),
                external_labels: config.global.external_labels.clone(),
                evaluation_interval: config.global.evaluation_interval,
                rule_groups: groups,
                alerting: alerting_config(&config),
            })
            .await
            .unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(running_groups(&alerter), [("x".to_string(), gone)]);
        f.close(alerter).await;
    }

    /// The rule file's spelling in the config does not change its groups' identity, so a
    /// reload that respells it keeps their state (`for` clocks), and the file is parsed by
    /// the config loading alone.
    #[tokio::test]
    async fn respelling_a_rule_file_keeps_its_groups() {
        let f = ReloadFixture::new().await;
        let alerter = f.start_alerter().await;
        f.services.reload.started().await;
        let before = running_groups(&alerter);
        // tempdir() is absolute and clean: the key is the file's path in it
        let dir = f.dir.path().to_path_buf();
        assert_eq!(before, [("a".to_string(), dir.join("rules.yaml"))]);
        for spelling in [
            "./rules.yaml".to_string(),
            "sub/../rules.yaml".to_string(),
            dir.join("rules.yaml").display().to_string(),
        ] {
            std::fs::create_dir_all(f.dir.path().join("sub")).unwrap_or_else(|e| panic!("{e}"));
            f.write_config(&spelling);
            f.services
                .reload
                .reload()
                .await
                .unwrap_or_else(|e| panic!("{spelling}: {e:?}"));
            assert_eq!(running_groups(&alerter), before, "{spelling}");
        }
        f.close(alerter).await;
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
