//! Lookout's configuration: YAML file -> raw serde structs (unknown keys are errors) ->
//! validated [`Config`]. Precedence: built-in defaults < file < `LOOKOUT_*` environment <
//! command-line flags. Validation collects every problem before reporting, each with the
//! line it was found on where that can be known.
//!
//! Each top-level section is deserialised on its own (and each scrape job on its own), so
//! one mistake does not hide the next.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use alerter::dispatch::config::AlertingConfig;
use alerter::rules::file::RuleGroup;

use collector::logs::LogLimits;
use collector::otlp::traces::TraceLimits;
use collector::scrape::{ScrapeConfig, ScrapeGlobal};
use collector::IngestLimits;
use serde::Deserialize;
use serde_yaml::Value;
use store::config::{FsyncPolicy, Limits};
use store::duration::PromDuration;
use store::promql::EngineOptions;

/// A token or password: never printed, not even by `Debug`.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<secret>")
    }
}

// ---- raw file shapes -------------------------------------------------------------------

const TOP_LEVEL_KEYS: [&str; 9] = [
    "server",
    "storage",
    "limits",
    "query",
    "global",
    "scrape_configs",
    "rule_files",
    "alerting",
    "ui",
];

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawServer {
    http_addr: Option<String>,
    otlp_grpc_addr: Option<String>,
    otlp_http_addr: Option<String>,
    external_url: Option<String>,
    #[serde(default)]
    auth: RawAuth,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAuth {
    #[serde(default)]
    ingest_tokens: Vec<Secret>,
    #[serde(default)]
    query_tokens: Vec<Secret>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStorage {
    data_dir: Option<PathBuf>,
    #[serde(default)]
    metrics: RawMetricsTier,
    #[serde(default)]
    logs: RawLogsTier,
    #[serde(default)]
    traces: RawTracesTier,
    archive: Option<ArchiveConfig>,
    #[serde(default)]
    wal: RawWal,
    disk_alert_free_ratio: Option<f64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTier {
    warm_for: Option<PromDuration>,
    archive_for: Option<PromDuration>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLogsTier {
    warm_for: Option<PromDuration>,
    archive_for: Option<PromDuration>,
    partition_span: Option<PromDuration>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTracesTier {
    warm_for: Option<PromDuration>,
    archive_for: Option<PromDuration>,
    flush_interval: Option<PromDuration>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMetricsTier {
    warm_for: Option<PromDuration>,
    archive_for: Option<PromDuration>,
    flush_interval: Option<PromDuration>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWal {
    fsync: Option<FsyncMode>,
    fsync_interval: Option<PromDuration>,
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum FsyncMode {
    Always,
    Interval,
    Never,
}

/// Where data older than `warm_for` goes.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum ArchiveConfig {
    /// Parquet files under `path` (default `<data_dir>/archive`).
    Local { path: Option<PathBuf> },
    /// An S3-compatible object store. Credentials left out here come from the usual AWS
    /// environment variables (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`,
    /// `AWS_ENDPOINT`, ...).
    S3 {
        endpoint: Option<String>,
        bucket: String,
        #[serde(default)]
        prefix: String,
        region: Option<String>,
        access_key_id: Option<Secret>,
        secret_access_key: Option<Secret>,
    },
}

impl ArchiveConfig {
    /// Where the archive lives, with a local path resolved against the data directory.
    pub fn location(&self, data_dir: &std::path::Path) -> store::archive::ArchiveLocation {
        use store::archive::ArchiveLocation;
        match self {
            ArchiveConfig::Local { path } => {
                ArchiveLocation::Local(path.clone().unwrap_or_else(|| data_dir.join("archive")))
            }
            ArchiveConfig::S3 {
                endpoint,
                bucket,
                prefix,
                region,
                access_key_id,
                secret_access_key,
            } => ArchiveLocation::S3 {
                endpoint: endpoint.clone(),
                bucket: bucket.clone(),
                prefix: prefix.clone(),
                region: region.clone(),
                access_key_id: access_key_id.as_ref().map(|s| s.expose().to_string()),
                secret_access_key: secret_access_key.as_ref().map(|s| s.expose().to_string()),
            },
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    max_request_body_bytes: Option<usize>,
    max_labels_per_series: Option<usize>,
    max_label_name_length: Option<usize>,
    max_label_value_length: Option<usize>,
    max_sample_age: Option<PromDuration>,
    max_future: Option<PromDuration>,
    max_spans_per_request: Option<usize>,
    max_attribute_value_bytes: Option<usize>,
    #[serde(default)]
    logs: RawLogLimits,
}

/// `limits.logs:` — per-record limits of log ingest.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLogLimits {
    max_body_bytes: Option<usize>,
    max_attributes: Option<usize>,
}

/// `query:` — what Prometheus sets with `--query.timeout`, `--query.max-samples` and
/// `--query.lookback-delta`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawQuery {
    timeout: Option<PromDuration>,
    max_samples: Option<usize>,
    lookback_delta: Option<PromDuration>,
}

/// `ui:` — the web UI.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUi {
    /// `en`, `zh` or `auto` (the browser's `Accept-Language`, the default).
    language: Option<String>,
    /// A directory of dashboard YAML files (relative to the config file's directory).
    dashboards_dir: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGlobal {
    scrape_interval: Option<PromDuration>,
    scrape_timeout: Option<PromDuration>,
    evaluation_interval: Option<PromDuration>,
    #[serde(default)]
    external_labels: BTreeMap<String, String>,
}

// ---- validated config ------------------------------------------------------------------

#[derive(Clone, Debug)]
pub struct Config {
    pub server: ServerConfig,
    pub storage: StorageConfig,
    pub limits: LimitsConfig,
    /// PromQL engine limits and defaults.
    pub query: EngineOptions,
    pub global: GlobalConfig,
    pub scrape_configs: Vec<ScrapeConfig>,
    /// The files `rule_files` names now (its globs are relative to the config file's
    /// directory), each once, by its [`rule_file_key`].
    pub rule_file_paths: Vec<PathBuf>,
    /// Their groups, parsed and validated here once and handed to the alerter as they are;
    /// each group's `file` is its file's [`rule_file_key`].
    pub rule_groups: Vec<RuleGroup>,
    /// The validated `alerting:` section (Alertmanager's configuration); `None` without
    /// one: rules are evaluated and listed, nothing is notified. Its secrets are
    /// [`alerter::model::Secret`]s, so `Debug` of the config never prints them.
    pub alerting: Option<Arc<AlertingConfig>>,
    pub ui: UiConfig,
}

/// The validated `ui:` section.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct UiConfig {
    /// `None`: follow the browser.
    pub language: Option<ui::i18n::Lang>,
    /// `ui.dashboards_dir`, joined to the config file's directory: the user's dashboards,
    /// besides the built-in ones (docs/dashboards.md).
    pub dashboards_dir: Option<PathBuf>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ServerConfig {
    pub http_addr: SocketAddr,
    pub otlp_grpc_addr: SocketAddr,
    pub otlp_http_addr: SocketAddr,
    pub external_url: Option<String>,
    pub ingest_tokens: Vec<Secret>,
    pub query_tokens: Vec<Secret>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Retention {
    pub warm_for: Duration,
    pub archive_for: Duration,
}

#[derive(Clone, Debug, PartialEq)]
pub struct StorageConfig {
    pub data_dir: PathBuf,
    pub metrics: Retention,
    pub metrics_flush_interval: Duration,
    pub logs: Retention,
    /// Record time covered by one log partition (one index, and one archive file).
    pub logs_partition_span: Duration,
    pub traces: Retention,
    /// Spans in memory are written to a segment this often (segments are what moves to the
    /// archive).
    pub traces_flush_interval: Duration,
    pub archive: ArchiveConfig,
    pub fsync: FsyncPolicy,
    /// `LookoutDiskAlmostFull` fires while the data disk's free space is below this share
    /// of it (0 turns the alert off).
    pub disk_alert_free_ratio: f64,
}

#[derive(Clone, Debug, PartialEq)]
pub struct LimitsConfig {
    pub ingest: IngestLimits,
    pub store: Limits,
    pub traces: TraceLimits,
    /// Log ingest: `limits.logs`, with the request size and attribute value length shared
    /// with the other signals.
    pub logs: LogLimits,
}

#[derive(Clone, Debug, PartialEq)]
pub struct GlobalConfig {
    pub scrape_interval: Duration,
    pub scrape_timeout: Duration,
    pub evaluation_interval: Duration,
    pub external_labels: BTreeMap<String, String>,
}

impl GlobalConfig {
    pub fn scrape_global(&self) -> ScrapeGlobal {
        ScrapeGlobal {
            scrape_interval: self.scrape_interval,
            scrape_timeout: self.scrape_timeout,
            ..ScrapeGlobal::default()
        }
    }
}

/// One configuration problem.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    /// The file the problem is in when it is not the config file itself (a rule file).
    pub file: Option<PathBuf>,
    /// 1-based line in the file, when known.
    pub line: Option<usize>,
    pub message: String,
}

/// Every problem found in one config file.
#[derive(Debug, thiserror::Error)]
#[error("{}", self.render())]
pub struct ConfigErrors {
    pub file: Option<PathBuf>,
    pub errors: Vec<ConfigError>,
}

impl ConfigErrors {
    /// `FILE:LINE: message`, one per line.
    pub fn render(&self) -> String {
        let file = self
            .file
            .as_ref()
            .map_or("<defaults>".to_string(), |f| f.display().to_string());
        self.errors
            .iter()
            .map(|e| {
                let file = e
                    .file
                    .as_ref()
                    .map_or_else(|| file.clone(), |f| f.display().to_string());
                match e.line {
                    Some(line) => format!("{file}:{line}: {}", e.message),
                    None => format!("{file}: {}", e.message),
                }
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// Overrides from the environment or the command line; `None` leaves the file's value.
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    pub data_dir: Option<PathBuf>,
    pub http_addr: Option<String>,
    pub otlp_grpc_addr: Option<String>,
    pub otlp_http_addr: Option<String>,
    pub ingest_tokens: Option<Vec<Secret>>,
    pub query_tokens: Option<Vec<Secret>>,
}

impl Overrides {
    /// `LOOKOUT_*` variables, read through `get` so tests need not touch the process
    /// environment.
    pub fn from_env(get: impl Fn(&str) -> Option<String>) -> Self {
        let tokens = |name: &str| {
            get(name).map(|v| {
                v.split(',')
                    .map(str::trim)
                    .filter(|t| !t.is_empty())
                    .map(Secret::new)
                    .collect()
            })
        };
        Overrides {
            data_dir: get("LOOKOUT_DATA_DIR")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from),
            http_addr: get("LOOKOUT_HTTP_ADDR").filter(|v| !v.is_empty()),
            otlp_grpc_addr: get("LOOKOUT_OTLP_GRPC_ADDR").filter(|v| !v.is_empty()),
            otlp_http_addr: get("LOOKOUT_OTLP_HTTP_ADDR").filter(|v| !v.is_empty()),
            ingest_tokens: tokens("LOOKOUT_INGEST_TOKENS"),
            query_tokens: tokens("LOOKOUT_QUERY_TOKENS"),
        }
    }

    /// `other` wins where it sets a value.
    pub fn then(self, other: Overrides) -> Overrides {
        Overrides {
            data_dir: other.data_dir.or(self.data_dir),
            http_addr: other.http_addr.or(self.http_addr),
            otlp_grpc_addr: other.otlp_grpc_addr.or(self.otlp_grpc_addr),
            otlp_http_addr: other.otlp_http_addr.or(self.otlp_http_addr),
            ingest_tokens: other.ingest_tokens.or(self.ingest_tokens),
            query_tokens: other.query_tokens.or(self.query_tokens),
        }
    }
}

/// Reads and validates a config file (or the defaults when `path` is `None`).
pub fn load(path: Option<&Path>, overrides: &Overrides) -> Result<Config, ConfigErrors> {
    let text = match path {
        None => String::new(),
        Some(p) => std::fs::read_to_string(p).map_err(|e| ConfigErrors {
            file: Some(p.to_path_buf()),
            errors: vec![ConfigError {
                file: None,
                line: None,
                message: format!("cannot read config file: {e}"),
            }],
        })?,
    };
    let base_dir = path
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .unwrap_or_default();
    parse(&text, &base_dir, overrides).map_err(|errors| ConfigErrors {
        file: path.map(Path::to_path_buf),
        errors,
    })
}

/// Finds the first line at or after `from` (1-based) that mentions `needle` as a key or
/// value; serde_yaml keeps no positions once a document is a [`Value`], so errors found
/// while converting sections are located by what they name.
fn locate(text: &str, needle: &str, from: Option<usize>) -> Option<usize> {
    if needle.is_empty() {
        return None;
    }
    let start = from.unwrap_or(1).saturating_sub(1);
    text.lines()
        .enumerate()
        .skip(start)
        .find(|(_, l)| {
            let code = l.split(" #").next().unwrap_or("");
            code.contains(needle)
        })
        .map(|(i, _)| i + 1)
}

/// The line of a top-level key (`key:` at column 0, or `"key":` in JSON).
fn top_level_line(text: &str, key: &str) -> Option<usize> {
    text.lines()
        .position(|l| {
            let t = l.trim_start_matches(['{', ' ']);
            t.starts_with(&format!("{key}:")) || t.starts_with(&format!("\"{key}\""))
        })
        .map(|i| i + 1)
}

/// Picks what a serde message names (a backquoted field or a quoted value) to find its line.
fn message_needle(message: &str) -> Option<String> {
    if let Some(rest) = message.split_once("unknown field `").map(|(_, r)| r) {
        return rest.split('`').next().map(str::to_string);
    }
    if let Some(rest) = message.split_once("unknown variant `").map(|(_, r)| r) {
        return rest.split('`').next().map(str::to_string);
    }
    if let Some(rest) = message.split_once('"').map(|(_, r)| r) {
        return rest.split('"').next().map(str::to_string);
    }
    None
}

struct Collector<'a> {
    text: &'a str,
    errors: Vec<ConfigError>,
    /// Secret values found in the document, scrubbed from every message (serde quotes
    /// offending values, e.g. a token given where a list was expected).
    secrets: Vec<String>,
}

/// Whether a key holds secrets: tokens, passwords, signing secrets, and webhook URLs
/// (DingTalk and WeCom robots carry their key in the URL).
fn is_secret_key(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    // external_url is where users reach Lookout, not a credential
    k != "external_url"
        && (["token", "password", "secret", "url", "key"]
            .iter()
            .any(|s| k.contains(s))
            || k == "auth")
}

fn collect_secrets(value: &Value, inside_secret: bool, out: &mut Vec<String>) {
    match value {
        Value::String(s) if inside_secret && !s.is_empty() => out.push(s.clone()),
        Value::Number(n) if inside_secret => out.push(n.to_string()),
        Value::Sequence(items) => items
            .iter()
            .for_each(|v| collect_secrets(v, inside_secret, out)),
        Value::Mapping(m) => {
            for (k, v) in m {
                let secret = inside_secret || k.as_str().is_some_and(is_secret_key);
                collect_secrets(v, secret, out);
            }
        }
        Value::Tagged(t) => collect_secrets(&t.value, inside_secret, out),
        _ => {}
    }
}

impl Collector<'_> {
    fn push(&mut self, line: Option<usize>, message: impl Into<String>) {
        // one line per problem: multi-line messages (regex errors) are joined
        let mut message = message
            .into()
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join(" ");
        for secret in &self.secrets {
            message = message.replace(secret.as_str(), "<secret>");
        }
        self.errors.push(ConfigError {
            file: None,
            line,
            message,
        });
    }

    /// Deserialises one section, recording its error (located near `section_line`).
    fn section<T: Default + for<'de> Deserialize<'de>>(
        &mut self,
        name: &str,
        value: Option<&Value>,
        section_line: Option<usize>,
    ) -> T {
        match value {
            None | Some(Value::Null) => T::default(),
            Some(v) => match serde_yaml::from_value::<T>(v.clone()) {
                Ok(t) => t,
                Err(e) => {
                    let message = e.to_string();
                    let line = message_needle(&message)
                        .and_then(|n| locate(self.text, &n, section_line))
                        .or(section_line);
                    self.push(line, format!("{name}: {message}"));
                    T::default()
                }
            },
        }
    }
}

fn parse_addr(
    c: &mut Collector<'_>,
    key: &str,
    value: Option<String>,
    default: &str,
    section_line: Option<usize>,
) -> SocketAddr {
    let text = value.unwrap_or_else(|| default.to_string());
    match text.parse::<SocketAddr>() {
        Ok(a) => a,
        Err(_) => {
            let line = locate(c.text, &text, section_line).or(section_line);
            c.push(
                line,
                format!("server.{key}: {text:?} is not a valid listen address (expected IP:PORT, e.g. 127.0.0.1:9800)"),
            );
            // a placeholder so the rest still validates; the error above fails the load
            SocketAddr::from(([127, 0, 0, 1], 0))
        }
    }
}

fn parse(text: &str, base_dir: &Path, overrides: &Overrides) -> Result<Config, Vec<ConfigError>> {
    let doc: Value = if text.trim().is_empty() {
        Value::Null
    } else {
        serde_yaml::from_str(text).map_err(|e| {
            vec![ConfigError {
                file: None,
                line: e.location().map(|l| l.line()),
                message: e.to_string(),
            }]
        })?
    };
    let mut secrets = Vec::new();
    collect_secrets(&doc, false, &mut secrets);
    // longest first, so a secret containing another is scrubbed whole
    secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    let mut c = Collector {
        text,
        errors: Vec::new(),
        secrets,
    };
    let empty = serde_yaml::Mapping::new();
    let map = match &doc {
        Value::Null => &empty,
        Value::Mapping(m) => m,
        _ => {
            return Err(vec![ConfigError {
                file: None,
                line: Some(1),
                message: "the config file must be a mapping of sections (server, storage, ...)"
                    .into(),
            }])
        }
    };
    for key in map.keys() {
        let name = key.as_str().unwrap_or("");
        if !TOP_LEVEL_KEYS.contains(&name) {
            let line = top_level_line(text, name);
            c.push(
                line,
                format!(
                    "unknown top-level key {name:?}; expected one of {}",
                    TOP_LEVEL_KEYS.join(", ")
                ),
            );
        }
    }
    let line_of = |k: &str| top_level_line(text, k);

    let server: RawServer = c.section("server", map.get("server"), line_of("server"));
    let storage: RawStorage = c.section("storage", map.get("storage"), line_of("storage"));
    let limits: RawLimits = c.section("limits", map.get("limits"), line_of("limits"));
    let global: RawGlobal = c.section("global", map.get("global"), line_of("global"));
    let query: RawQuery = c.section("query", map.get("query"), line_of("query"));
    let raw_ui: RawUi = c.section("ui", map.get("ui"), line_of("ui"));
    let ui = UiConfig {
        language: match raw_ui.language.as_deref().map(str::trim) {
            None | Some("auto") => None,
            Some(l @ ("en" | "zh")) => ui::i18n::Lang::parse(l),
            Some(other) => {
                c.push(
                    locate(text, other, line_of("ui")),
                    format!("ui.language: {other:?} is not one of en, zh, auto"),
                );
                None
            }
        },
        dashboards_dir: match raw_ui.dashboards_dir.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(d) => {
                let dir = base_dir.join(d);
                if !dir.is_dir() {
                    c.push(
                        locate(text, d, line_of("ui")),
                        format!("ui.dashboards_dir: {} is not a directory", dir.display()),
                    );
                }
                Some(dir)
            }
        },
    };

    let server_line = line_of("server");
    let server = ServerConfig {
        http_addr: parse_addr(
            &mut c,
            "http_addr",
            overrides.http_addr.clone().or(server.http_addr),
            "127.0.0.1:9800",
            server_line,
        ),
        otlp_grpc_addr: parse_addr(
            &mut c,
            "otlp_grpc_addr",
            overrides.otlp_grpc_addr.clone().or(server.otlp_grpc_addr),
            "127.0.0.1:4317",
            server_line,
        ),
        otlp_http_addr: parse_addr(
            &mut c,
            "otlp_http_addr",
            overrides.otlp_http_addr.clone().or(server.otlp_http_addr),
            "127.0.0.1:4318",
            server_line,
        ),
        external_url: server.external_url,
        ingest_tokens: overrides
            .ingest_tokens
            .clone()
            .unwrap_or(server.auth.ingest_tokens),
        query_tokens: overrides
            .query_tokens
            .clone()
            .unwrap_or(server.auth.query_tokens),
    };
    if let Some(url) = &server.external_url {
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            c.push(
                locate(text, url, server_line),
                format!("server.external_url: {url:?} must start with http:// or https://"),
            );
        }
    }
    for (kind, tokens) in [
        ("ingest_tokens", &server.ingest_tokens),
        ("query_tokens", &server.query_tokens),
    ] {
        if tokens.iter().any(|t| t.expose().trim().is_empty()) {
            c.push(
                locate(text, kind, server_line),
                format!("server.auth.{kind}: tokens must not be empty"),
            );
        }
    }

    let storage_line = line_of("storage");
    let fsync = match (
        storage.wal.fsync.unwrap_or(FsyncMode::Always),
        storage.wal.fsync_interval,
    ) {
        (FsyncMode::Always, _) => FsyncPolicy::Always,
        (FsyncMode::Never, _) => FsyncPolicy::Never,
        (FsyncMode::Interval, d) => {
            let d = d.map_or(Duration::from_secs(1), Duration::from);
            if d.is_zero() {
                c.push(
                    locate(text, "fsync_interval", storage_line),
                    "storage.wal.fsync_interval must be greater than 0",
                );
            }
            FsyncPolicy::Interval(d)
        }
    };
    let tier = |t: &RawTier, warm: u64, archive: u64| Retention {
        warm_for: t
            .warm_for
            .map_or(Duration::from_secs(warm * 86_400), Duration::from),
        archive_for: t
            .archive_for
            .map_or(Duration::from_secs(archive * 86_400), Duration::from),
    };
    let metrics_tier = RawTier {
        warm_for: storage.metrics.warm_for,
        archive_for: storage.metrics.archive_for,
    };
    let traces_tier = RawTier {
        warm_for: storage.traces.warm_for,
        archive_for: storage.traces.archive_for,
    };
    let logs_tier = RawTier {
        warm_for: storage.logs.warm_for,
        archive_for: storage.logs.archive_for,
    };
    let storage = StorageConfig {
        data_dir: overrides
            .data_dir
            .clone()
            .or(storage.data_dir)
            .unwrap_or_else(|| PathBuf::from("./data")),
        metrics: tier(&metrics_tier, 15, 400),
        metrics_flush_interval: storage
            .metrics
            .flush_interval
            .map_or(Duration::from_secs(2 * 3600), Duration::from),
        logs: tier(&logs_tier, 7, 90),
        logs_partition_span: storage
            .logs
            .partition_span
            .map_or(Duration::from_secs(3600), Duration::from),
        traces: tier(&traces_tier, 7, 30),
        traces_flush_interval: storage
            .traces
            .flush_interval
            .map_or(Duration::from_secs(600), Duration::from),
        archive: storage
            .archive
            .unwrap_or(ArchiveConfig::Local { path: None }),
        fsync,
        disk_alert_free_ratio: storage.disk_alert_free_ratio.unwrap_or(0.1),
    };
    if !(0.0..=1.0).contains(&storage.disk_alert_free_ratio) {
        c.push(
            locate(text, "disk_alert_free_ratio", storage_line),
            format!(
                "storage.disk_alert_free_ratio: {} is not between 0 and 1",
                storage.disk_alert_free_ratio
            ),
        );
    }
    for (signal, r) in [
        ("metrics", &storage.metrics),
        ("logs", &storage.logs),
        ("traces", &storage.traces),
    ] {
        if r.warm_for.is_zero() {
            c.push(
                storage_line,
                format!("storage.{signal}.warm_for must be greater than 0"),
            );
        }
    }
    if storage.metrics_flush_interval < Duration::from_secs(1) {
        c.push(
            locate(text, "flush_interval", storage_line),
            "storage.metrics.flush_interval must be at least 1s",
        );
    }
    if storage.traces_flush_interval < Duration::from_secs(1) {
        c.push(
            locate(text, "flush_interval", storage_line),
            "storage.traces.flush_interval must be at least 1s",
        );
    }
    let span = storage.logs_partition_span;
    if span < Duration::from_secs(1)
        || span > Duration::from_secs(86_400)
        || span.subsec_nanos() != 0
    {
        c.push(
            locate(text, "partition_span", storage_line),
            format!(
                "storage.logs.partition_span must be whole seconds from 1s to 1d (got {}s)",
                span.as_secs_f64()
            ),
        );
    }
    if storage.data_dir.as_os_str().is_empty() {
        c.push(
            locate(text, "data_dir", storage_line),
            "storage.data_dir must not be empty",
        );
    }

    let defaults = Limits::default();
    let limits_line = line_of("limits");
    let limits = LimitsConfig {
        ingest: IngestLimits {
            max_request_body_bytes: limits
                .max_request_body_bytes
                .unwrap_or(IngestLimits::default().max_request_body_bytes),
        },
        store: Limits {
            max_labels_per_series: limits
                .max_labels_per_series
                .unwrap_or(defaults.max_labels_per_series),
            max_label_name_length: limits
                .max_label_name_length
                .unwrap_or(defaults.max_label_name_length),
            max_label_value_length: limits
                .max_label_value_length
                .unwrap_or(defaults.max_label_value_length),
            max_sample_age: limits
                .max_sample_age
                .map_or(defaults.max_sample_age, Duration::from),
            max_future: limits
                .max_future
                .map_or(defaults.max_future, Duration::from),
        },
        traces: TraceLimits {
            max_request_body_bytes: limits
                .max_request_body_bytes
                .unwrap_or(IngestLimits::default().max_request_body_bytes),
            max_spans_per_request: limits
                .max_spans_per_request
                .unwrap_or(TraceLimits::default().max_spans_per_request),
            max_attribute_value_bytes: limits
                .max_attribute_value_bytes
                .unwrap_or(TraceLimits::default().max_attribute_value_bytes),
        },
        logs: LogLimits {
            max_request_body_bytes: limits
                .max_request_body_bytes
                .unwrap_or(LogLimits::default().max_request_body_bytes),
            max_body_bytes: limits
                .logs
                .max_body_bytes
                .unwrap_or(LogLimits::default().max_body_bytes),
            max_attributes: limits
                .logs
                .max_attributes
                .unwrap_or(LogLimits::default().max_attributes),
            max_attribute_value_bytes: limits
                .max_attribute_value_bytes
                .unwrap_or(LogLimits::default().max_attribute_value_bytes),
        },
    };
    for (key, v) in [
        (
            "max_request_body_bytes",
            limits.ingest.max_request_body_bytes,
        ),
        ("max_labels_per_series", limits.store.max_labels_per_series),
        ("max_label_name_length", limits.store.max_label_name_length),
        (
            "max_label_value_length",
            limits.store.max_label_value_length,
        ),
        ("max_spans_per_request", limits.traces.max_spans_per_request),
        (
            "max_attribute_value_bytes",
            limits.traces.max_attribute_value_bytes,
        ),
        ("logs.max_body_bytes", limits.logs.max_body_bytes),
        ("logs.max_attributes", limits.logs.max_attributes),
    ] {
        if v == 0 {
            // nested keys are found by their own name, after the section's line
            let name = key.rsplit('.').next().unwrap_or(key);
            c.push(
                locate(text, name, limits_line),
                format!("limits.{key} must be greater than 0"),
            );
        }
    }

    let engine_defaults = EngineOptions::default();
    let query = EngineOptions {
        lookback_delta: query
            .lookback_delta
            .map_or(engine_defaults.lookback_delta, Duration::from),
        max_samples: query.max_samples.unwrap_or(engine_defaults.max_samples),
        timeout: query
            .timeout
            .map_or(engine_defaults.timeout, Duration::from),
    };
    let query_line = line_of("query");
    for (key, zero) in [
        ("timeout", query.timeout.is_zero()),
        ("max_samples", query.max_samples == 0),
        ("lookback_delta", query.lookback_delta.is_zero()),
    ] {
        if zero {
            c.push(
                locate(text, key, query_line),
                format!("query.{key} must be greater than 0"),
            );
        }
    }

    let global_line = line_of("global");
    let scrape_interval = global
        .scrape_interval
        .map_or(Duration::from_secs(15), Duration::from);
    let global = GlobalConfig {
        scrape_interval,
        scrape_timeout: global
            .scrape_timeout
            .map_or(Duration::from_secs(10).min(scrape_interval), Duration::from),
        evaluation_interval: global
            .evaluation_interval
            .map_or(Duration::from_secs(15), Duration::from),
        external_labels: global.external_labels,
    };
    if global.scrape_interval.is_zero() {
        c.push(
            locate(text, "scrape_interval", global_line),
            "global.scrape_interval must be greater than 0",
        );
    }
    if global.scrape_timeout > global.scrape_interval {
        c.push(
            locate(text, "scrape_timeout", global_line),
            format!(
                "global.scrape_timeout ({}) is greater than global.scrape_interval ({})",
                PromDuration(global.scrape_timeout),
                PromDuration(global.scrape_interval)
            ),
        );
    }
    for name in global.external_labels.keys() {
        if !valid_label_name(name) {
            c.push(
                locate(text, name, global_line),
                format!("global.external_labels: {name:?} is not a valid label name"),
            );
        }
    }

    let scrape_configs = scrape_configs(
        &mut c,
        map.get("scrape_configs"),
        line_of("scrape_configs"),
        &global,
    );
    let (rule_file_paths, rule_groups) = rule_files(
        &mut c,
        map.get("rule_files"),
        line_of("rule_files"),
        base_dir,
    );
    let alerting = alerting(&mut c, map.get("alerting"), line_of("alerting"));

    // report in file order; errors without a line first
    // rule files' own errors after the config file's, each file in line order
    c.errors.sort_by(|a, b| {
        (a.file.is_some(), &a.file, a.line).cmp(&(b.file.is_some(), &b.file, b.line))
    });
    if c.errors.is_empty() {
        Ok(Config {
            server,
            storage,
            limits,
            query,
            global,
            scrape_configs,
            rule_file_paths,
            rule_groups,
            alerting,
            ui,
        })
    } else {
        Err(c.errors)
    }
}

fn valid_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|ch| ch.is_ascii_alphabetic() || ch == '_')
        && chars.all(|ch| ch.is_ascii_alphanumeric() || ch == '_')
}

fn scrape_configs(
    c: &mut Collector<'_>,
    value: Option<&Value>,
    section_line: Option<usize>,
    global: &GlobalConfig,
) -> Vec<ScrapeConfig> {
    let items = match value {
        None | Some(Value::Null) => return Vec::new(),
        Some(Value::Sequence(items)) => items,
        Some(_) => {
            c.push(section_line, "scrape_configs must be a list of jobs");
            return Vec::new();
        }
    };
    let mut configs = Vec::new();
    let mut job_lines: Vec<Option<usize>> = Vec::new();
    let mut cursor = section_line;
    for (i, item) in items.iter().enumerate() {
        let job = item.get("job_name").and_then(Value::as_str).unwrap_or("");
        // each job is located from its job_name line, so errors point into the right job
        let job_line = locate(c.text, &format!("job_name: {job}"), cursor)
            .or_else(|| locate(c.text, job, cursor))
            .or(cursor);
        cursor = job_line.map(|l| l + 1).or(cursor);
        job_lines.push(job_line);
        match serde_yaml::from_value::<ScrapeConfig>(item.clone()) {
            Ok(cfg) => configs.push(cfg),
            Err(e) => {
                let message = e.to_string();
                let line = message_needle(&message)
                    .and_then(|n| locate(c.text, &n, job_line))
                    .or(job_line);
                c.push(
                    line,
                    format!("scrape_configs[{i}] (job {job:?}): {message}"),
                );
            }
        }
    }
    for message in collector::scrape::validate(&configs, &global.scrape_global()) {
        // validate names the job as `scrape_configs[i]`; point at that job's line
        let index = message
            .strip_prefix("scrape_configs[")
            .and_then(|r| r.split(']').next())
            .and_then(|i| i.parse::<usize>().ok());
        let line = index
            .and_then(|i| job_lines.get(i).copied().flatten())
            .or(section_line);
        c.push(line, message);
    }
    configs
}

/// The problems of the dashboard files in `ui.dashboards_dir`, for `lookout check-config`
/// (serving only logs them: a broken dashboard must not stop Lookout or a reload).
pub fn dashboard_errors(config: &Config) -> Vec<ConfigError> {
    let Some(dir) = &config.ui.dashboards_dir else {
        return Vec::new();
    };
    ui::dashboards::load::check_dir(dir)
        .into_iter()
        .map(|e| ConfigError {
            file: Some(PathBuf::from(e.file)),
            line: e.line,
            message: e.message,
        })
        .collect()
}

/// Expands `rule_files`, then reads and validates every file once: their paths (by
/// [`rule_file_key`]) and groups. Problems are reported in the rule file at their line,
/// under the path as written in the config (joined to its directory).
fn rule_files(
    c: &mut Collector<'_>,
    value: Option<&Value>,
    section_line: Option<usize>,
    base_dir: &Path,
) -> (Vec<PathBuf>, Vec<RuleGroup>) {
    let patterns: Vec<String> = match value {
        None | Some(Value::Null) => return (Vec::new(), Vec::new()),
        Some(v) => match serde_yaml::from_value(v.clone()) {
            Ok(p) => p,
            Err(e) => {
                c.push(
                    section_line,
                    format!("rule_files must be a list of file names or globs: {e}"),
                );
                return (Vec::new(), Vec::new());
            }
        },
    };
    // (the path as written, its key); a file named twice (`a.yaml` and `./a.yaml`) once
    let mut files: Vec<(PathBuf, PathBuf)> = Vec::new();
    for pattern in &patterns {
        let line = locate(c.text, pattern, section_line).or(section_line);
        match expand_glob(base_dir, pattern) {
            Err(e) => c.push(line, format!("rule_files: {pattern:?}: {e}")),
            Ok(found) => {
                for file in found {
                    let key = rule_file_key(&file);
                    if !files.iter().any(|(_, k)| *k == key) {
                        files.push((file, key));
                    }
                }
            }
        }
    }
    let written: Vec<PathBuf> = files.iter().map(|(w, _)| w.clone()).collect();
    // every rule file fully parsed and checked (PromQL, durations, templates), read through
    // the path as written so its errors name that path
    let groups = match alerter::rules::file::load_rule_files(&written) {
        Ok(mut groups) => {
            for group in &mut groups {
                if let Some((_, key)) = files.iter().find(|(w, _)| *w == group.file) {
                    group.file = key.clone();
                }
            }
            groups
        }
        Err(errors) => {
            for e in errors {
                let mut message = e.message;
                for secret in &c.secrets {
                    message = message.replace(secret.as_str(), "<secret>");
                }
                c.errors.push(ConfigError {
                    file: Some(e.file),
                    line: e.line,
                    message,
                });
            }
            Vec::new()
        }
    };
    (files.into_iter().map(|(_, key)| key).collect(), groups)
}

/// The one name of a rule file, whatever the config's spelling of it: the path made
/// absolute (against the working directory) and cleaned lexically (`.` dropped, `..` taking
/// the previous component away), as Go's `filepath.Abs` does for Prometheus. Rule group
/// state is kept under `file;group`, so `rules/*.yaml`, `./rules/*.yaml` and the absolute
/// path must give one key, or editing the spelling loses the `for` clocks.
///
/// Symbolic links are deliberately not resolved (no `fs::canonicalize`): a Kubernetes
/// ConfigMap volume links each file through `..data` to a timestamped directory that is
/// replaced on every update, so the resolved path would change, and the clocks be lost,
/// exactly when the rules are edited.
pub fn rule_file_key(path: &Path) -> PathBuf {
    let absolute = if path.is_absolute() {
        path.to_path_buf()
    } else {
        match std::env::current_dir() {
            Ok(cwd) => cwd.join(path),
            // no working directory (it was deleted): the path as it is is the best name left
            Err(_) => path.to_path_buf(),
        }
    };
    let mut clean = PathBuf::new();
    for component in absolute.components() {
        match component {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                // takes a name away; `..` at the root stays at the root, and in a relative
                // path (no working directory) one with no name before it is kept
                match clean.components().next_back() {
                    Some(std::path::Component::Normal(_)) => {
                        clean.pop();
                    }
                    _ if clean.has_root() => {}
                    _ => clean.push(".."),
                }
            }
            other => clean.push(other.as_os_str()),
        }
    }
    clean
}

/// Expands a rule-file pattern: `*` and `?` in the file name only, as Prometheus's common
/// use (`rules/*.yaml`). A pattern without wildcards must name an existing file; a glob
/// may match nothing.
fn expand_glob(base_dir: &Path, pattern: &str) -> Result<Vec<PathBuf>, String> {
    let path = base_dir.join(pattern);
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    if !name.contains(['*', '?']) {
        return if path.is_file() {
            Ok(vec![path])
        } else {
            Err(format!(
                "rule file {} does not exist or is not a file",
                path.display()
            ))
        };
    }
    let dir = path.parent().unwrap_or(base_dir);
    if dir.to_str().is_some_and(|d| d.contains(['*', '?'])) {
        return Err("wildcards are supported in the file name only".into());
    }
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(_) => return Ok(Vec::new()),
    };
    let mut out: Vec<PathBuf> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| wildcard_match(name, n))
        })
        .filter(|p| p.is_file())
        .collect();
    out.sort();
    Ok(out)
}

/// `*` (any run) and `?` (one character) over whole names. Greedy with one backtrack
/// point, so it stays linear-ish in the name's length whatever the pattern (a naive
/// recursive matcher is exponential on patterns such as `*a*a*a*b`).
fn wildcard_match(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    let (mut pi, mut ni) = (0, 0);
    // the last `*` seen and the name position it is currently taken to end at
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        match p.get(pi) {
            Some('*') => {
                star = Some((pi, ni));
                pi += 1;
            }
            Some('?') => {
                pi += 1;
                ni += 1;
            }
            Some(ch) if *ch == n[ni] => {
                pi += 1;
                ni += 1;
            }
            _ => match star {
                Some((sp, sn)) => {
                    pi = sp + 1;
                    ni = sn + 1;
                    star = Some((sp, sn + 1));
                }
                None => return false,
            },
        }
    }
    p[pi..].iter().all(|ch| *ch == '*')
}

/// The `alerting:` section, validated by the alerter (every problem at once, each naming
/// its path such as `alerting.route.routes[1].receiver`); each problem is located in the
/// file by walking that path.
fn alerting(
    c: &mut Collector<'_>,
    value: Option<&Value>,
    section_line: Option<usize>,
) -> Option<Arc<AlertingConfig>> {
    match value {
        None | Some(Value::Null) => None,
        Some(v @ Value::Mapping(_)) => match AlertingConfig::parse(v) {
            Ok(config) => Some(Arc::new(config)),
            Err(errors) => {
                for message in errors {
                    let line = locate_path(c.text, &message, section_line).or(section_line);
                    c.push(line, message);
                }
                None
            }
        },
        Some(_) => {
            c.push(
                section_line,
                "alerting must be a mapping (Alertmanager's configuration)",
            );
            None
        }
    }
}

/// The line an alerter error points at. The error starts with its path
/// (`alerting.receivers[0].dingtalk_configs[1].url: ...`): each key is looked for after
/// the previous one's line, an index steps over that many list items, and a value the
/// message quotes is looked for last.
fn locate_path(text: &str, message: &str, section_line: Option<usize>) -> Option<usize> {
    let (path, rest) = message.split_once(": ").unwrap_or((message, ""));
    let lines: Vec<&str> = text.lines().collect();
    let mut cursor = section_line?;
    for segment in path.split('.').skip(1) {
        let (key, indices) = match segment.split_once('[') {
            Some((k, i)) => (k, i),
            None => (segment, ""),
        };
        if key.is_empty() || key.contains(' ') {
            break;
        }
        match locate(text, &format!("{key}:"), Some(cursor)) {
            Some(l) => cursor = l,
            None => break,
        }
        for index in indices
            .split('[')
            .filter_map(|i| i.trim_end_matches(']').parse::<usize>().ok())
        {
            cursor = nth_list_item(&lines, cursor, index).unwrap_or(cursor);
        }
    }
    if let Some(quoted) = message_needle(rest) {
        if let Some(l) = locate(text, &quoted, Some(cursor)) {
            // only when it is close by: the quoted text may be a value not in the file
            if l - cursor < 50 {
                return Some(l);
            }
        }
    }
    Some(cursor)
}

/// The line of the `index`-th item of the block list that starts after line `key_line`
/// (1-based): items are the lines starting with `- ` at the first item's indentation. A
/// flow list (`[ ... ]`) on the key's line stays on that line.
fn nth_list_item(lines: &[&str], key_line: usize, index: usize) -> Option<usize> {
    let key_text = lines.get(key_line - 1)?;
    if key_text.contains('[') {
        return None;
    }
    let key_indent = key_text.len() - key_text.trim_start().len();
    let mut item_indent = None;
    let mut seen = 0;
    for (i, l) in lines.iter().enumerate().skip(key_line) {
        let trimmed = l.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let indent = l.len() - trimmed.len();
        if indent < key_indent || (indent == key_indent && !trimmed.starts_with('-')) {
            return None;
        }
        if trimmed.starts_with('-') {
            match item_indent {
                None => item_indent = Some(indent),
                Some(first) if indent < first => return None,
                Some(first) if indent > first => continue,
                Some(_) => seen += 1,
            }
            if seen == index {
                return Some(i + 1);
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_ok(text: &str) -> Config {
        match parse(text, Path::new("."), &Overrides::default()) {
            Ok(c) => c,
            Err(e) => panic!("config should be valid: {e:?}"),
        }
    }

    fn parse_err(text: &str) -> Vec<ConfigError> {
        match parse(text, Path::new("."), &Overrides::default()) {
            Ok(_) => panic!("config should be invalid:\n{text}"),
            Err(e) => e,
        }
    }

    #[test]
    fn empty_file_gives_defaults() {
        let c = parse_ok("");
        assert_eq!(c.server.http_addr.to_string(), "127.0.0.1:9800");
        assert_eq!(c.server.otlp_grpc_addr.to_string(), "127.0.0.1:4317");
        assert_eq!(c.server.otlp_http_addr.to_string(), "127.0.0.1:4318");
        assert_eq!(c.storage.data_dir, PathBuf::from("./data"));
        assert_eq!(c.storage.fsync, FsyncPolicy::Always);
        assert_eq!(c.global.scrape_interval, Duration::from_secs(15));
        assert!(c.server.query_tokens.is_empty());
    }

    #[test]
    fn every_error_is_reported_with_its_line() {
        let errors = parse_err(
            "server:\n  htp_addr: 1.2.3.4:5\nglobal:\n  scrape_interval: 5x\nbogus: 1\nstorage:\n  wal: { fsync: sometimes }\n",
        );
        let lines: Vec<Option<usize>> = errors.iter().map(|e| e.line).collect();
        assert_eq!(errors.len(), 4, "{errors:?}");
        assert!(
            errors
                .iter()
                .any(|e| e.message.contains("htp_addr") && e.line == Some(2)),
            "{errors:?}"
        );
        assert!(
            errors
                .iter()
                .any(|e| e.message.contains("5x") && e.line == Some(4)),
            "{errors:?}"
        );
        assert!(
            errors
                .iter()
                .any(|e| e.message.contains("bogus") && e.line == Some(5)),
            "{lines:?}"
        );
        assert!(
            errors
                .iter()
                .any(|e| e.message.contains("sometimes") && e.line == Some(7)),
            "{errors:?}"
        );
    }

    #[test]
    fn syntax_errors_carry_a_line() {
        let errors = parse_err("server:\n  http_addr: [\n");
        assert_eq!(errors.len(), 1);
        assert!(errors[0].line.is_some());
    }

    #[test]
    fn bad_address_is_named() {
        let errors = parse_err("server:\n  http_addr: nowhere\n");
        assert_eq!(errors[0].line, Some(2));
        assert!(errors[0]
            .message
            .contains("\"nowhere\" is not a valid listen address"));
    }

    #[test]
    fn precedence_defaults_file_env_flags() {
        let text = "server:\n  http_addr: 127.0.0.1:1111\n  otlp_http_addr: 127.0.0.1:2222\n";
        let env = Overrides::from_env(|k| match k {
            "LOOKOUT_HTTP_ADDR" => Some("127.0.0.1:3333".into()),
            "LOOKOUT_OTLP_GRPC_ADDR" => Some("127.0.0.1:4444".into()),
            "LOOKOUT_QUERY_TOKENS" => Some("a, b,".into()),
            _ => None,
        });
        let flags = Overrides {
            otlp_grpc_addr: Some("127.0.0.1:5555".into()),
            ..Overrides::default()
        };
        let c = match parse(text, Path::new("."), &env.then(flags)) {
            Ok(c) => c,
            Err(e) => panic!("{e:?}"),
        };
        assert_eq!(c.server.http_addr.port(), 3333);
        assert_eq!(c.server.otlp_http_addr.port(), 2222);
        assert_eq!(c.server.otlp_grpc_addr.port(), 5555);
        assert_eq!(
            c.server.query_tokens,
            vec![Secret::new("a"), Secret::new("b")]
        );
    }

    #[test]
    fn query_limits() {
        let c = parse_ok("");
        assert_eq!(c.query.max_samples, 50_000_000);
        assert_eq!(c.query.timeout, Duration::from_secs(120));
        assert_eq!(c.query.lookback_delta, Duration::from_secs(300));
        let c = parse_ok("query:\n  timeout: 30s\n  max_samples: 1000\n  lookback_delta: 1m\n");
        assert_eq!(c.query.max_samples, 1000);
        assert_eq!(c.query.timeout, Duration::from_secs(30));
        assert_eq!(c.query.lookback_delta, Duration::from_secs(60));
        let errs = parse_err("query:\n  timeout: 0s\n  max_samples: 0\n");
        let msgs: Vec<(Option<usize>, &str)> =
            errs.iter().map(|e| (e.line, e.message.as_str())).collect();
        assert_eq!(
            msgs,
            vec![
                (Some(2), "query.timeout must be greater than 0"),
                (Some(3), "query.max_samples must be greater than 0"),
            ]
        );
    }

    #[test]
    fn log_limits_and_retention() {
        let c = parse_ok("");
        assert_eq!(c.limits.logs, LogLimits::default());
        assert_eq!(c.limits.logs.max_body_bytes, 256 * 1024);
        assert_eq!(c.limits.logs.max_attributes, 128);
        assert_eq!(c.storage.logs.warm_for, Duration::from_secs(7 * 86_400));
        let c = parse_ok(
            "storage:\n  logs: { warm_for: 2d }\nlimits:\n  max_request_body_bytes: 1000000\n  max_attribute_value_bytes: 512\n  logs:\n    max_body_bytes: 4096\n    max_attributes: 16\n",
        );
        assert_eq!(c.storage.logs.warm_for, Duration::from_secs(2 * 86_400));
        assert_eq!(
            c.limits.logs,
            LogLimits {
                max_request_body_bytes: 1_000_000,
                max_body_bytes: 4096,
                max_attributes: 16,
                max_attribute_value_bytes: 512,
            }
        );
        // the shared limits stay shared
        assert_eq!(c.limits.traces.max_attribute_value_bytes, 512);
        let errs = parse_err(
            "limits:\n  logs:\n    max_body_bytes: 0\n    max_attributes: 0\nstorage:\n  logs: { warm_for: 0s }\n",
        );
        let msgs: Vec<(Option<usize>, &str)> =
            errs.iter().map(|e| (e.line, e.message.as_str())).collect();
        assert_eq!(
            msgs,
            vec![
                (Some(3), "limits.logs.max_body_bytes must be greater than 0"),
                (Some(4), "limits.logs.max_attributes must be greater than 0"),
                (Some(5), "storage.logs.warm_for must be greater than 0"),
            ]
        );
        let errs = parse_err("limits:\n  logs:\n    max_lines: 5\n");
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert_eq!(errs[0].line, Some(3));
        assert!(
            errs[0].message.contains("unknown field `max_lines`"),
            "{errs:?}"
        );
        let errs = parse_err("limits:\n  logs:\n    max_body_bytes: lots\n");
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(errs[0].message.starts_with("limits: "), "{errs:?}");
    }

    #[test]
    fn secrets_never_print() {
        let c = parse_ok("server:\n  auth:\n    ingest_tokens: [hunter2-ingest]\n    query_tokens: [hunter2-query]\n");
        let debug = format!("{c:?}");
        assert!(!debug.contains("hunter2"), "{debug}");
        assert!(debug.contains("<secret>"));
    }

    #[test]
    fn secrets_never_appear_in_errors() {
        let errors = parse_err(
            "server:\n  auth:\n    ingest_tokens: hunter2-ingest\nalerting:\n  receivers:\n    - name: x\n      email_configs: [{auth_password: hunter2-pw}]\n  bogus: 1\n",
        );
        let all = format!("{errors:?}");
        assert!(!all.contains("hunter2"), "{all}");
        assert!(all.contains("<secret>"), "{all}");
    }

    #[test]
    fn alerting_secrets_never_appear_in_debug() {
        let c = parse_ok(
            "alerting:\n  route: { receiver: x }\n  receivers:\n    - name: x\n      email_configs: [{to: a@example.com, from: l@example.com, smarthost: \"127.0.0.1:25\", auth_username: u, auth_password: hunter2-pw}]\n      dingtalk_configs: [{url: \"http://127.0.0.1:1/robot/send?access_token=hunter2-tok\", secret: SEChunter2}]\n      wecom_configs: [{url: \"http://127.0.0.1:1/cgi-bin/webhook/send?key=hunter2-key\"}]\n      webhook_configs: [{url: \"http://127.0.0.1:1/hook/hunter2-hook\"}]\n",
        );
        assert!(c.alerting.is_some());
        let debug = format!("{c:?}");
        assert!(!debug.contains("hunter2"), "{debug}");
    }

    #[test]
    fn alerter_errors_are_located_by_their_path() {
        let text = "server: {}\nalerting:\n  route:\n    receiver: oncall\n    routes:\n      - receiver: oncall\n        matchers: ['a=\"b\"']\n      - receiver: pager\n  receivers:\n    - name: oncall\n      webhook_configs: [ { url: \"http://h/x\" } ]\n    - name: other\n      dingtalk_configs:\n        - url: \"http://h/a\"\n        - url: \"ftp://h/b\"\n";
        let at = |m: &str| locate_path(text, m, Some(2));
        assert_eq!(
            at("alerting.route.routes[1].receiver: unknown receiver \"pager\""),
            Some(8)
        );
        assert_eq!(at("alerting.route.routes[0].matchers[0]: bad"), Some(7));
        assert_eq!(
            at("alerting.receivers[1].dingtalk_configs[1].url: must be an http(s) URL"),
            Some(15)
        );
        assert_eq!(
            at("alerting.receivers[0].webhook_configs[0].url: must be an http(s) URL"),
            Some(11)
        );
        assert_eq!(at("alerting.route: receiver is required"), Some(3));
        assert_eq!(at("alerting: something"), Some(2));
    }

    #[test]
    fn alerting_section_is_validated_by_the_alerter() {
        let errs = parse_err(
            "alerting:\n  route:\n    receiver: oncall\n    routes:\n      - receiver: pager\n  receivers:\n    - name: oncall\n      webhook_configs: [ { url: \"http://127.0.0.1:1/x\" } ]\n",
        );
        assert!(
            errs.iter()
                .any(|e| e.line == Some(5) && e.message.contains("pager")),
            "{errs:?}"
        );
        let c = parse_ok(
            "alerting:\n  route: { receiver: oncall, group_wait: 1s }\n  receivers:\n    - name: oncall\n      webhook_configs: [ { url: \"http://127.0.0.1:1/x\" } ]\n",
        );
        assert!(c.alerting.is_some());
        assert!(parse_ok("").alerting.is_none());
    }

    #[test]
    fn rule_file_errors_name_the_rule_file_and_line() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(
            dir.path().join("good.yaml"),
            "groups:\n  - name: g\n    rules:\n      - record: a:b\n        expr: sum(up)\n",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(
            dir.path().join("bad.yaml"),
            "groups:\n  - name: g\n    rules:\n      - alert: A\n        expr: sum(up\n",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let ok = parse(
            "rule_files: [good.yaml]\n",
            dir.path(),
            &Overrides::default(),
        )
        .unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(ok.rule_file_paths, vec![dir.path().join("good.yaml")]);
        // parsed here, once: the alerter is handed these groups
        assert_eq!(ok.rule_groups.len(), 1);
        assert_eq!(ok.rule_groups[0].file, dir.path().join("good.yaml"));
        // errors name the file as the config spells it, not its key
        let errs = match parse(
            "rule_files: ['./bad.yaml']\n",
            dir.path(),
            &Overrides::default(),
        ) {
            Ok(_) => panic!("bad.yaml should fail"),
            Err(e) => e,
        };
        assert_eq!(
            errs.iter().map(|e| e.file.clone()).collect::<Vec<_>>(),
            [Some(dir.path().join("./bad.yaml"))],
            "{errs:?}"
        );
        let errs = match parse(
            "rule_files: ['*.yaml']\n",
            dir.path(),
            &Overrides::default(),
        ) {
            Ok(_) => panic!("bad.yaml should fail"),
            Err(e) => e,
        };
        assert!(
            errs.iter().any(
                |e| e.file.as_deref() == Some(dir.path().join("bad.yaml").as_path())
                    && e.line.is_some()
            ),
            "{errs:?}"
        );
        let rendered = ConfigErrors {
            file: Some(PathBuf::from("lookout.yaml")),
            errors: errs,
        }
        .render();
        assert!(
            rendered.contains(&format!("{}:", dir.path().join("bad.yaml").display())),
            "{rendered}"
        );
    }

    fn write(path: &Path, text: &str) {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).unwrap_or_else(|e| panic!("{e}"));
        }
        std::fs::write(path, text).unwrap_or_else(|e| panic!("{e}"));
    }

    fn parse_in(text: &str, base_dir: &Path) -> Config {
        parse(text, base_dir, &Overrides::default()).unwrap_or_else(|e| panic!("{text}: {e:?}"))
    }

    const ONE_GROUP: &str =
        "groups:\n  - name: g\n    rules:\n      - alert: A\n        expr: up == 0\n        for: 5m\n";

    #[test]
    fn rule_file_keys_are_absolute_and_clean() {
        let key = |p: &str| rule_file_key(Path::new(p));
        assert_eq!(
            key("/etc/lookout/./rules/../rules/a.yaml"),
            PathBuf::from("/etc/lookout/rules/a.yaml")
        );
        assert_eq!(key("/../a.yaml"), PathBuf::from("/a.yaml"));
        assert_eq!(
            key("/etc//lookout/a.yaml"),
            PathBuf::from("/etc/lookout/a.yaml")
        );
        let cwd = std::env::current_dir().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(key("./rules/a.yaml"), cwd.join("rules/a.yaml"));
        assert_eq!(
            key("../x/a.yaml"),
            cwd.parent().unwrap_or(&cwd).join("x/a.yaml")
        );
    }

    /// Rule group state is kept under `file;group`: however the config spells the file, and
    /// wherever the config file is read from, a group has one key.
    #[test]
    fn a_rule_file_has_one_key_whatever_its_spelling() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        write(&dir.path().join("rules/a.yaml"), ONE_GROUP);
        let expected = format!("{};g", dir.path().join("rules/a.yaml").display());
        let abs = dir.path().join("rules/a.yaml").display().to_string();
        // the config file's directory as a path relative to the working directory, as when
        // Lookout is started with `--config conf/lookout.yaml`
        let cwd = std::env::current_dir().unwrap_or_else(|e| panic!("{e}"));
        let up = "../".repeat(cwd.components().count().saturating_sub(1));
        let relative_dir = PathBuf::from(format!(
            "{up}{}",
            dir.path().display().to_string().trim_start_matches('/')
        ));
        assert!(
            relative_dir.is_relative() && relative_dir.is_dir(),
            "{relative_dir:?}"
        );
        for (patterns, base_dir) in [
            ("['rules/*.yaml']", dir.path().to_path_buf()),
            ("['./rules/*.yaml']", dir.path().to_path_buf()),
            ("['rules/a.yaml']", dir.path().join("rules/..")),
            (&format!("['{abs}']") as &str, PathBuf::from("/")),
            ("['rules/../rules/a.y?ml']", dir.path().to_path_buf()),
            ("['./rules/a.yaml']", relative_dir.clone()),
        ] {
            let c = parse_in(&format!("rule_files: {patterns}\n"), &base_dir);
            let keys: Vec<String> = c.rule_groups.iter().map(RuleGroup::key).collect();
            assert_eq!(
                keys,
                std::slice::from_ref(&expected),
                "{patterns} in {base_dir:?}"
            );
            assert_eq!(c.rule_file_paths, [dir.path().join("rules/a.yaml")]);
        }
        // two spellings of one file in one config: the file (and its group) once
        let c = parse_in(
            &format!("rule_files: ['rules/a.yaml', './rules/*.yaml', '{abs}']\n"),
            dir.path(),
        );
        assert_eq!(c.rule_file_paths.len(), 1, "{:?}", c.rule_file_paths);
        assert_eq!(c.rule_groups.len(), 1);
    }

    /// A Kubernetes ConfigMap volume links each file through `..data` to a timestamped
    /// directory swapped on every update: the key follows the path, not the link's target,
    /// or every edit of the rules would lose their `for` clocks.
    #[test]
    fn a_rule_file_key_survives_a_configmap_update() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let d = dir.path();
        write(&d.join("..2024_01_01_v1/alerts.yaml"), ONE_GROUP);
        std::os::unix::fs::symlink("..2024_01_01_v1", d.join("..data"))
            .unwrap_or_else(|e| panic!("{e}"));
        std::os::unix::fs::symlink("..data/alerts.yaml", d.join("alerts.yaml"))
            .unwrap_or_else(|e| panic!("{e}"));
        let before = parse_in("rule_files: ['*.yaml']\n", d);
        assert_eq!(before.rule_file_paths, [d.join("alerts.yaml")]);

        write(
            &d.join("..2024_01_02_v2/alerts.yaml"),
            &ONE_GROUP.replace("for: 5m", "for: 10m"),
        );
        std::os::unix::fs::symlink("..2024_01_02_v2", d.join("..data_tmp"))
            .unwrap_or_else(|e| panic!("{e}"));
        std::fs::rename(d.join("..data_tmp"), d.join("..data")).unwrap_or_else(|e| panic!("{e}"));
        let after = parse_in("rule_files: ['*.yaml']\n", d);
        assert_ne!(
            after.rule_groups, before.rule_groups,
            "the new content is read"
        );
        assert_eq!(
            after
                .rule_groups
                .iter()
                .map(RuleGroup::key)
                .collect::<Vec<_>>(),
            before
                .rule_groups
                .iter()
                .map(RuleGroup::key)
                .collect::<Vec<_>>()
        );
    }

    #[test]
    fn disk_alert_ratio_defaults_to_a_tenth_and_is_checked() {
        assert_eq!(parse_ok("").storage.disk_alert_free_ratio, 0.1);
        let c = parse_ok("storage:\n  disk_alert_free_ratio: 0\n");
        assert_eq!(c.storage.disk_alert_free_ratio, 0.0);
        let errors = parse_err("storage:\n  disk_alert_free_ratio: 1.5\n");
        assert!(
            errors[0]
                .message
                .contains("disk_alert_free_ratio: 1.5 is not between 0 and 1"),
            "{errors:?}"
        );
        assert_eq!(errors[0].line, Some(2));
    }

    #[test]
    fn log_partition_span_and_trace_flush_interval_default_and_are_checked() {
        let c = parse_ok("");
        assert_eq!(c.storage.logs_partition_span, Duration::from_secs(3600));
        assert_eq!(c.storage.traces_flush_interval, Duration::from_secs(600));
        let c = parse_ok(
            "storage:\n  logs: { partition_span: 5m }\n  traces: { flush_interval: 30s }\n",
        );
        assert_eq!(c.storage.logs_partition_span, Duration::from_secs(300));
        assert_eq!(c.storage.traces_flush_interval, Duration::from_secs(30));
        let errors = parse_err(
            "storage:\n  logs: { partition_span: 1500ms }\n  traces: { flush_interval: 0s }\n",
        );
        let text = format!("{errors:?}");
        assert!(
            text.contains(
                "storage.logs.partition_span must be whole seconds from 1s to 1d (got 1.5s)"
            ),
            "{text}"
        );
        assert!(
            text.contains("storage.traces.flush_interval must be at least 1s"),
            "{text}"
        );
    }

    #[test]
    fn archive_variants() {
        let c = parse_ok("storage:\n  archive: { type: s3, bucket: b, region: eu-west-1 }\n");
        assert!(matches!(c.storage.archive, ArchiveConfig::S3 { ref bucket, .. } if bucket == "b"));
        let errors = parse_err("storage:\n  archive: { type: ftp }\n");
        assert!(errors[0].message.contains("ftp"), "{errors:?}");
        let c = parse_ok(
            "storage:\n  archive: { type: s3, bucket: b, endpoint: 'http://minio:9000', access_key_id: AK, secret_access_key: SK }\n",
        );
        assert!(
            !format!("{c:?}").contains("SK"),
            "the secret key is never printed"
        );
        match c.storage.archive.location(Path::new("/data")) {
            store::archive::ArchiveLocation::S3 {
                access_key_id,
                secret_access_key,
                endpoint,
                ..
            } => {
                assert_eq!(access_key_id.as_deref(), Some("AK"));
                assert_eq!(secret_access_key.as_deref(), Some("SK"));
                assert_eq!(endpoint.as_deref(), Some("http://minio:9000"));
            }
            other => panic!("{other:?}"),
        }
        let local = parse_ok("storage:\n  data_dir: /d\n").storage;
        assert_eq!(
            local.archive.location(&local.data_dir),
            store::archive::ArchiveLocation::Local(PathBuf::from("/d/archive"))
        );
    }

    #[test]
    fn wildcards() {
        assert!(wildcard_match("*.yaml", "a.yaml"));
        assert!(wildcard_match("r?.yml", "r1.yml"));
        assert!(!wildcard_match("*.yaml", "a.yml"));
    }

    #[test]
    fn wildcards_match_whole_names_and_stay_fast_on_many_stars() {
        assert!(wildcard_match("*.yaml", "a.yaml"));
        assert!(wildcard_match("rules-?.y*l", "rules-1.yaml"));
        assert!(wildcard_match("*", ""));
        assert!(!wildcard_match("*.yaml", "a.yml"));
        assert!(!wildcard_match("a?", "a"));
        assert!(wildcard_match("*a*b", "xxaxxaxb"));
        let long = "a".repeat(200);
        assert!(!wildcard_match("*a*a*a*a*a*a*a*a*a*a*b", &long));
    }
}
