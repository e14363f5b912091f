//! Scrape tests: `build_batch` on parsed input (exact series, honor_labels, staleness), and a
//! real scrape of a tiny axum server on 127.0.0.1:0 through the manager.

// a failed unwrap is a failed test, which is what it should be
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use parking_lot::Mutex;
use store::model::is_stale_nan;
use store::{AppendReport, MetricBatch, MetricsAppender};

use super::*;
use crate::scrape::target::{build_batch, end_of_run_batch, targets_for, LoopState};
use crate::scrape::{ScrapeGlobal, TargetHealth};

#[derive(Default)]
struct Recorder {
    batches: Mutex<Vec<MetricBatch>>,
}

#[async_trait]
impl MetricsAppender for Recorder {
    async fn append(&self, batch: MetricBatch) -> store::Result<AppendReport> {
        let report = AppendReport {
            accepted_samples: batch.sample_count() as u64,
            ..Default::default()
        };
        self.batches.lock().push(batch);
        Ok(report)
    }
}

/// `name{labels} value` per series, sorted; stale markers print as `STALE`, and the
/// scrape duration (which varies) as `D`.
fn render(batch: &MetricBatch) -> Vec<String> {
    let mut out: Vec<String> = batch
        .series
        .iter()
        .map(|s| {
            let v = s.samples[0].value;
            let v = if is_stale_nan(v) {
                "STALE".to_string()
            } else if s.labels.metric_name() == Some("scrape_duration_seconds") {
                "D".to_string()
            } else {
                v.to_string()
            };
            format!("{} {v}", s.labels)
        })
        .collect();
    out.sort();
    out
}

fn config(yaml: &str) -> ScrapeConfig {
    serde_yaml::from_str(yaml).unwrap()
}

fn one_target(yaml: &str) -> Target {
    let (mut targets, _) = targets_for(&config(yaml), &ScrapeGlobal::default()).unwrap();
    assert_eq!(targets.len(), 1);
    targets.remove(0)
}

#[test]
fn target_labels_url_and_relabelling() {
    let t = one_target(
        r#"
job_name: node
metrics_path: /probe
params: { module: [http_2xx] }
static_configs: [ { targets: ["10.0.0.1:9100"], labels: { env: prod } } ]
relabel_configs:
  - { source_labels: [__address__], regex: '(.*):\d+', target_label: host }
  - { source_labels: [host], target_label: __param_target }
"#,
    );
    assert_eq!(
        t.url,
        "http://10.0.0.1:9100/probe?module=http_2xx&target=10.0.0.1"
    );
    assert_eq!(
        t.labels.to_string(),
        r#"{env="prod", host="10.0.0.1", instance="10.0.0.1:9100", job="node"}"#
    );
    assert_eq!(t.discovered_labels.get("__metrics_path__"), Some("/probe"));
    assert_eq!(t.discovered_labels.get("__param_module"), Some("http_2xx"));

    // a default port is added, as Prometheus does
    let t = one_target(
        "{job_name: web, scheme: https, static_configs: [ { targets: [example.org] } ]}",
    );
    assert_eq!(t.url, "https://example.org/metrics");
    assert_eq!(t.labels.get("instance"), Some("example.org:443"));

    // a keep rule can drop the target
    let (targets, dropped) = targets_for(
        &config(
            "{job_name: x, static_configs: [ { targets: ['a:1', 'b:1'] } ], relabel_configs: [ { source_labels: [__address__], regex: 'a:.*', action: keep } ]}",
        ),
        &ScrapeGlobal::default(),
    )
    .unwrap();
    assert_eq!((targets.len(), dropped), (1, 1));
}

const BODY: &str = r#"# TYPE requests_total counter
requests_total{path="/a",job="exporter",instance="i-1"} 5
gone_soon 1
skip_me 3
with_ts 7 1000
"#;

#[test]
fn scrape_batch_honor_labels_false_renames_conflicts() {
    let t = one_target(
        r#"
job_name: app
static_configs: [ { targets: ["h:1"], labels: { env: test } } ]
metric_relabel_configs: [ { source_labels: [__name__], regex: skip_me, action: drop } ]
"#,
    );
    let mut state = LoopState::default();
    let (batch, counts) = build_batch(
        &t,
        Ok(parse::parse(BODY).unwrap()),
        5000,
        Duration::from_millis(3),
        &mut state,
    );
    assert_eq!(
        render(&batch),
        vec![
            r#"gone_soon{env="test", instance="h:1", job="app"} 1"#,
            r#"requests_total{env="test", exported_instance="i-1", exported_job="exporter", instance="h:1", job="app", path="/a"} 5"#,
            r#"scrape_duration_seconds{env="test", instance="h:1", job="app"} D"#,
            r#"scrape_samples_post_metric_relabeling{env="test", instance="h:1", job="app"} 3"#,
            r#"scrape_samples_scraped{env="test", instance="h:1", job="app"} 4"#,
            r#"scrape_series_added{env="test", instance="h:1", job="app"} 2"#,
            r#"up{env="test", instance="h:1", job="app"} 1"#,
            r#"with_ts{env="test", instance="h:1", job="app"} 7"#,
        ]
    );
    assert_eq!(counts.post_relabel, 3);
    // honor_timestamps defaults to true: the exposed timestamp is kept, others get the scrape's
    for s in &batch.series {
        let want = if s.labels.metric_name() == Some("with_ts") {
            1000
        } else {
            5000
        };
        assert_eq!(s.samples[0].timestamp_ms, want, "{}", s.labels);
    }
    assert_eq!(batch.metadata.len(), 1);
    assert_eq!(batch.metadata[0].metric_type, store::MetricType::Counter);
}

#[test]
fn scrape_batch_honor_labels_true_keeps_scraped_values() {
    let t = one_target(
        "{job_name: app, honor_labels: true, honor_timestamps: false, static_configs: [ { targets: ['h:1'] } ]}",
    );
    let mut state = LoopState::default();
    let (batch, _) = build_batch(
        &t,
        Ok(parse::parse(BODY).unwrap()),
        5000,
        Duration::ZERO,
        &mut state,
    );
    let rendered = render(&batch);
    assert!(
        rendered.contains(
            &r#"requests_total{instance="i-1", job="exporter", path="/a"} 5"#.to_string()
        ),
        "{rendered:#?}"
    );
    let with_ts = batch
        .series
        .iter()
        .find(|s| s.labels.metric_name() == Some("with_ts"))
        .unwrap();
    assert_eq!(
        with_ts.samples[0].timestamp_ms, 5000,
        "honor_timestamps: false uses the scrape time"
    );
}

#[test]
fn disappearing_series_and_failed_scrapes_get_stale_markers() {
    let t = one_target("{job_name: app, static_configs: [ { targets: ['h:1'] } ]}");
    let mut state = LoopState::default();
    build_batch(
        &t,
        Ok(parse::parse("a 1\nb 2\n").unwrap()),
        1000,
        Duration::ZERO,
        &mut state,
    );

    let (batch, counts) = build_batch(
        &t,
        Ok(parse::parse("a 1\nc 3\n").unwrap()),
        2000,
        Duration::ZERO,
        &mut state,
    );
    let r = render(&batch);
    assert!(
        r.contains(&r#"b{instance="h:1", job="app"} STALE"#.to_string()),
        "{r:#?}"
    );
    assert!(
        !r.iter()
            .any(|l| l.starts_with("a{") && l.ends_with("STALE")),
        "{r:#?}"
    );
    assert_eq!(counts.added, 1);

    let (batch, _) = build_batch(
        &t,
        Err("connection refused".into()),
        3000,
        Duration::ZERO,
        &mut state,
    );
    assert_eq!(
        render(&batch),
        vec![
            r#"a{instance="h:1", job="app"} STALE"#,
            r#"c{instance="h:1", job="app"} STALE"#,
            r#"scrape_duration_seconds{instance="h:1", job="app"} D"#,
            r#"scrape_samples_post_metric_relabeling{instance="h:1", job="app"} 0"#,
            r#"scrape_samples_scraped{instance="h:1", job="app"} 0"#,
            r#"scrape_series_added{instance="h:1", job="app"} 0"#,
            r#"up{instance="h:1", job="app"} 0"#,
        ]
    );
    assert!(batch
        .series
        .iter()
        .all(|s| s.samples[0].timestamp_ms == 3000));

    build_batch(
        &t,
        Ok(parse::parse("a 1\n").unwrap()),
        4000,
        Duration::ZERO,
        &mut state,
    );
    let end = end_of_run_batch(&t, &mut state, 3500);
    assert!(
        end.series.iter().all(|s| s.samples[0].timestamp_ms == 4001),
        "markers follow the last sample"
    );
    let r = render(&end);
    assert_eq!(r.len(), 6, "{r:#?}");
    assert!(
        r.iter().all(|l| l.ends_with("STALE") || l.ends_with(" D")),
        "{r:#?}"
    );
    assert!(r.contains(&r#"up{instance="h:1", job="app"} STALE"#.to_string()));
}

#[test]
fn duplicate_series_keep_the_first() {
    let t = one_target("{job_name: app, static_configs: [ { targets: ['h:1'] } ]}");
    let mut state = LoopState::default();
    let (batch, counts) = build_batch(
        &t,
        Ok(parse::parse("a 1\na 2\n").unwrap()),
        1000,
        Duration::ZERO,
        &mut state,
    );
    assert_eq!(counts.duplicates, 1);
    let a: Vec<f64> = batch
        .series
        .iter()
        .filter(|s| s.labels.metric_name() == Some("a"))
        .map(|s| s.samples[0].value)
        .collect();
    assert_eq!(a, vec![1.0]);
}

/// Polls the recorder until a batch satisfying `pred` arrives after `from`; returns its index.
async fn wait_for(rec: &Recorder, from: usize, pred: impl Fn(&MetricBatch) -> bool) -> usize {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        {
            let batches = rec.batches.lock();
            if let Some(i) = (from..batches.len()).find(|&i| pred(&batches[i])) {
                return i;
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for a batch"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn has_series(b: &MetricBatch, name: &str) -> bool {
    b.series
        .iter()
        .any(|s| s.labels.metric_name() == Some(name))
}

#[tokio::test]
async fn scrapes_a_real_endpoint_and_marks_removed_targets_stale() {
    let body = Arc::new(Mutex::new(BODY.to_string()));
    let seen_headers = Arc::new(Mutex::new(Vec::<(String, String)>::new()));
    let app = {
        let body = Arc::clone(&body);
        let seen = Arc::clone(&seen_headers);
        axum::Router::new().route(
            "/metrics",
            axum::routing::get(move |headers: axum::http::HeaderMap| {
                let text = body.lock().clone();
                for name in ["accept", "x-prometheus-scrape-timeout-seconds"] {
                    if let Some(v) = headers.get(name) {
                        seen.lock()
                            .push((name.to_string(), v.to_str().unwrap_or("").to_string()));
                    }
                }
                async move { text }
            }),
        )
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let server = tokio::spawn(async move { axum::serve(listener, app).await });

    let rec = Arc::new(Recorder::default());
    let manager = ScrapeManager::new(rec.clone(), ScrapeGlobal::default());
    let cfg = config(&format!(
        r#"
job_name: app
scrape_interval: 200ms
static_configs: [ {{ targets: ["{addr}"], labels: {{ env: test }} }} ]
metric_relabel_configs: [ {{ source_labels: [__name__], regex: skip_me, action: drop }} ]
"#
    ));
    manager.apply(vec![cfg.clone()]);

    let first = wait_for(&rec, 0, |b| has_series(b, "up")).await;
    let batch = rec.batches.lock()[first].clone();
    let inst = format!("instance=\"{addr}\"");
    assert_eq!(
        render(&batch),
        vec![
            format!(r#"gone_soon{{env="test", {inst}, job="app"}} 1"#),
            format!(
                r#"requests_total{{env="test", exported_instance="i-1", exported_job="exporter", {inst}, job="app", path="/a"}} 5"#
            ),
            format!(r#"scrape_duration_seconds{{env="test", {inst}, job="app"}} D"#),
            format!(r#"scrape_samples_post_metric_relabeling{{env="test", {inst}, job="app"}} 3"#),
            format!(r#"scrape_samples_scraped{{env="test", {inst}, job="app"}} 4"#),
            format!(r#"scrape_series_added{{env="test", {inst}, job="app"}} 2"#),
            format!(r#"up{{env="test", {inst}, job="app"}} 1"#),
            format!(r#"with_ts{{env="test", {inst}, job="app"}} 7"#),
        ]
    );
    {
        let headers = seen_headers.lock();
        assert!(headers.contains(&(
            "accept".into(),
            "text/plain;version=0.0.4;q=1,*/*;q=0.1".into()
        )));
        assert!(headers.contains(&("x-prometheus-scrape-timeout-seconds".into(), "0.2".into())));
    }
    let status = manager.targets();
    assert_eq!(status.len(), 1);
    assert_eq!(status[0].scrape_url, format!("http://{addr}/metrics"));
    assert_eq!(status[0].health, TargetHealth::Up);
    assert_eq!(status[0].last_error, None);
    assert!(status[0].last_scrape.is_some());

    // a series disappears: it gets a stale marker in the next scrape
    *body.lock() = BODY.replace("gone_soon 1\n", "");
    let next = wait_for(&rec, first + 1, |b| {
        b.series.iter().any(|s| {
            s.labels.metric_name() == Some("gone_soon") && is_stale_nan(s.samples[0].value)
        })
    })
    .await;
    let r = render(&rec.batches.lock()[next]);
    assert!(
        r.contains(&format!(
            r#"gone_soon{{env="test", {inst}, job="app"}} STALE"#
        )),
        "{r:#?}"
    );

    // re-applying the same config keeps the loop (no markers)
    manager.apply(vec![cfg]);
    assert_eq!(manager.targets().len(), 1);

    // the target is removed: everything it wrote, `up` included, goes stale
    let before = rec.batches.lock().len();
    manager.apply(vec![]);
    assert!(manager.targets().is_empty());
    let end = wait_for(&rec, before, |b| {
        b.series
            .iter()
            .any(|s| s.labels.metric_name() == Some("up") && is_stale_nan(s.samples[0].value))
    })
    .await;
    let r = render(&rec.batches.lock()[end]);
    assert_eq!(
        r,
        vec![
            format!(
                r#"requests_total{{env="test", exported_instance="i-1", exported_job="exporter", {inst}, job="app", path="/a"}} STALE"#
            ),
            format!(r#"scrape_duration_seconds{{env="test", {inst}, job="app"}} STALE"#),
            format!(
                r#"scrape_samples_post_metric_relabeling{{env="test", {inst}, job="app"}} STALE"#
            ),
            format!(r#"scrape_samples_scraped{{env="test", {inst}, job="app"}} STALE"#),
            format!(r#"scrape_series_added{{env="test", {inst}, job="app"}} STALE"#),
            format!(r#"up{{env="test", {inst}, job="app"}} STALE"#),
        ]
    );
    manager.shutdown().await;
    server.abort();
}

#[tokio::test]
async fn unreachable_target_is_down_with_the_error() {
    // bind then drop a listener so the port is (almost certainly) closed
    let addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().to_string()
    };
    let rec = Arc::new(Recorder::default());
    let manager = ScrapeManager::new(rec.clone(), ScrapeGlobal::default());
    manager.apply(vec![config(&format!(
        "{{job_name: dead, scrape_interval: 100ms, static_configs: [ {{ targets: ['{addr}'] }} ]}}"
    ))]);
    let i = wait_for(&rec, 0, |b| has_series(b, "up")).await;
    let up = rec.batches.lock()[i]
        .series
        .iter()
        .find(|s| s.labels.metric_name() == Some("up"))
        .map(|s| s.samples[0].value);
    assert_eq!(up, Some(0.0));
    let status = manager.targets();
    assert_eq!(status[0].health, TargetHealth::Down);
    assert!(
        status[0]
            .last_error
            .as_deref()
            .unwrap_or("")
            .contains("error sending request"),
        "{status:?}"
    );
    manager.shutdown().await;
}

#[tokio::test]
async fn changed_settings_restart_the_loop_and_keep_series_continuous() {
    let app = axum::Router::new().route("/metrics", axum::routing::get(|| async { "a 1\nb 2\n" }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let server = tokio::spawn(async move { axum::serve(listener, app).await });

    let rec = Arc::new(Recorder::default());
    let manager = ScrapeManager::new(rec.clone(), ScrapeGlobal::default());
    let base = format!(
        "job_name: app\nscrape_interval: 200ms\nstatic_configs: [ {{ targets: ['{addr}'] }} ]\n"
    );
    manager.apply(vec![config(&base)]);
    let first = wait_for(&rec, 0, |b| has_series(b, "up")).await;

    // now drop `b` by metric relabelling: the new loop inherits the old one's series, so `b`
    // goes stale in its first scrape and `up` never does
    manager.apply(vec![config(&format!(
        "{base}metric_relabel_configs: [ {{ source_labels: [__name__], regex: b, action: drop }} ]\n"
    ))]);
    let next = wait_for(&rec, first + 1, |b| has_series(b, "up")).await;
    let batches = rec.batches.lock().clone();
    let r = render(&batches[next]);
    assert!(
        r.contains(&format!(r#"b{{instance="{addr}", job="app"}} STALE"#)),
        "{r:#?}"
    );
    let up_stale = batches[first..]
        .iter()
        .flat_map(|b| b.series.iter())
        .any(|s| s.labels.metric_name() == Some("up") && is_stale_nan(s.samples[0].value));
    assert!(
        !up_stale,
        "a restart for new settings must not mark the target stale"
    );
    assert_eq!(manager.targets().len(), 1);
    manager.shutdown().await;
    server.abort();
}
