//! Tests of the OTLP -> Prometheus mapping: each rule with the exact series it must produce.

use std::time::Duration;

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{
    any_value, AnyValue, ArrayValue, InstrumentationScope, KeyValue,
};
use opentelemetry_proto::tonic::metrics::v1::{
    metric::Data, number_data_point, summary_data_point::ValueAtQuantile, AggregationTemporality,
    ExponentialHistogram, ExponentialHistogramDataPoint, Gauge, Histogram, HistogramDataPoint,
    Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum, Summary, SummaryDataPoint,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use store::model::is_stale_nan;
use store::{MetricMetadata, MetricType};

use super::*;

const T1: u64 = 1_700_000_000_000_000_000;
const T1_MS: i64 = 1_700_000_000_000;

fn kv(k: &str, v: &str) -> KeyValue {
    KeyValue {
        key: k.to_string(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(v.to_string())),
        }),
        ..Default::default()
    }
}

fn kv_any(k: &str, v: any_value::Value) -> KeyValue {
    KeyValue {
        key: k.to_string(),
        value: Some(AnyValue { value: Some(v) }),
        ..Default::default()
    }
}

fn request(resource: Vec<KeyValue>, metrics: Vec<Metric>) -> ExportMetricsServiceRequest {
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(Resource {
                attributes: resource,
                ..Default::default()
            }),
            scope_metrics: vec![ScopeMetrics {
                scope: Some(InstrumentationScope {
                    name: "lib".to_string(),
                    version: "1.0".to_string(),
                    ..Default::default()
                }),
                metrics,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

fn svc() -> Vec<KeyValue> {
    vec![kv("service.name", "api")]
}

fn point(attrs: Vec<KeyValue>, time: u64, v: f64) -> NumberDataPoint {
    NumberDataPoint {
        attributes: attrs,
        start_time_unix_nano: 0,
        time_unix_nano: time,
        value: Some(number_data_point::Value::AsDouble(v)),
        ..Default::default()
    }
}

fn metric(name: &str, unit: &str, data: Data) -> Metric {
    Metric {
        name: name.to_string(),
        description: format!("{name} help"),
        unit: unit.to_string(),
        data: Some(data),
        ..Default::default()
    }
}

fn gauge(name: &str, unit: &str, points: Vec<NumberDataPoint>) -> Metric {
    metric(
        name,
        unit,
        Data::Gauge(Gauge {
            data_points: points,
        }),
    )
}

fn sum(
    name: &str,
    unit: &str,
    temporality: AggregationTemporality,
    monotonic: bool,
    points: Vec<NumberDataPoint>,
) -> Metric {
    metric(
        name,
        unit,
        Data::Sum(Sum {
            data_points: points,
            aggregation_temporality: temporality as i32,
            is_monotonic: monotonic,
        }),
    )
}

/// Series as `name{labels} value@ts`, sorted, for exact comparison.
fn rendered(c: &Converted) -> Vec<String> {
    let mut v: Vec<String> = c
        .batch
        .series
        .iter()
        .flat_map(|s| {
            s.samples.iter().map(move |x| {
                let value = if is_stale_nan(x.value) {
                    "stale".to_string()
                } else {
                    x.value.to_string()
                };
                format!("{} {}@{}", s.labels, value, x.timestamp_ms)
            })
        })
        .collect();
    v.sort();
    v
}

fn run(req: &ExportMetricsServiceRequest) -> Converted {
    convert(req, &DeltaAccumulator::default())
}

const SCOPE: &str = "otel_scope_name=\"lib\", otel_scope_version=\"1.0\"";

#[test]
fn gauge_maps_to_gauge_with_job_scope_and_unit() {
    let req = request(
        svc(),
        vec![gauge(
            "cpu.utilization",
            "1",
            vec![point(vec![kv("cpu", "0")], T1, 0.25)],
        )],
    );
    let c = run(&req);
    assert_eq!(c.rejected_points, 0);
    assert_eq!(
        rendered(&c),
        vec![format!(
            "cpu_utilization_ratio{{cpu=\"0\", job=\"api\", {SCOPE}}} 0.25@{T1_MS}"
        )]
    );
    assert_eq!(
        c.batch.metadata,
        vec![MetricMetadata {
            metric_family: "cpu_utilization_ratio".to_string(),
            metric_type: MetricType::Gauge,
            help: "cpu.utilization help".to_string(),
            unit: "ratio".to_string(),
        }]
    );
}

#[test]
fn monotonic_cumulative_sum_becomes_total_counter() {
    let mut p = point(vec![kv("http.method", "GET")], T1, 0.0);
    p.value = Some(number_data_point::Value::AsInt(42));
    let req = request(
        svc(),
        vec![sum(
            "http.requests",
            "{request}",
            AggregationTemporality::Cumulative,
            true,
            vec![p],
        )],
    );
    let c = run(&req);
    assert_eq!(
        rendered(&c),
        vec![format!(
            "http_requests_total{{http_method=\"GET\", job=\"api\", {SCOPE}}} 42@{T1_MS}"
        )]
    );
    assert_eq!(c.batch.metadata[0].metric_type, MetricType::Counter);
    assert_eq!(c.batch.metadata[0].metric_family, "http_requests_total");
    assert_eq!(c.batch.metadata[0].unit, "");
}

#[test]
fn counter_with_unit_puts_unit_before_total_and_never_doubles() {
    let req = request(
        svc(),
        vec![
            sum(
                "io.time",
                "s",
                AggregationTemporality::Cumulative,
                true,
                vec![point(vec![], T1, 1.5)],
            ),
            sum(
                "sent_bytes_total",
                "By",
                AggregationTemporality::Cumulative,
                true,
                vec![point(vec![], T1, 7.0)],
            ),
        ],
    );
    let c = run(&req);
    assert_eq!(
        rendered(&c),
        vec![
            format!("io_time_seconds_total{{job=\"api\", {SCOPE}}} 1.5@{T1_MS}"),
            format!("sent_bytes_total{{job=\"api\", {SCOPE}}} 7@{T1_MS}"),
        ]
    );
}

#[test]
fn non_monotonic_sum_becomes_gauge_without_total() {
    let req = request(
        svc(),
        vec![sum(
            "queue.size",
            "{item}",
            AggregationTemporality::Cumulative,
            false,
            vec![point(vec![], T1, -3.0)],
        )],
    );
    let c = run(&req);
    assert_eq!(
        rendered(&c),
        vec![format!("queue_size{{job=\"api\", {SCOPE}}} -3@{T1_MS}")]
    );
    assert_eq!(c.batch.metadata[0].metric_type, MetricType::Gauge);
}

fn hist_point(
    attrs: Vec<KeyValue>,
    start: u64,
    time: u64,
    bounds: Vec<f64>,
    counts: Vec<u64>,
    sum: f64,
) -> HistogramDataPoint {
    HistogramDataPoint {
        attributes: attrs,
        start_time_unix_nano: start,
        time_unix_nano: time,
        count: counts.iter().sum(),
        sum: Some(sum),
        bucket_counts: counts,
        explicit_bounds: bounds,
        ..Default::default()
    }
}

fn histogram(
    name: &str,
    unit: &str,
    temporality: AggregationTemporality,
    points: Vec<HistogramDataPoint>,
) -> Metric {
    metric(
        name,
        unit,
        Data::Histogram(Histogram {
            data_points: points,
            aggregation_temporality: temporality as i32,
        }),
    )
}

#[test]
fn histogram_maps_to_cumulative_buckets_sum_and_count() {
    let req = request(
        svc(),
        vec![histogram(
            "http.server.duration",
            "s",
            AggregationTemporality::Cumulative,
            vec![hist_point(
                vec![kv("route", "/a")],
                1,
                T1,
                vec![0.1, 0.5],
                vec![2, 3, 1],
                1.75,
            )],
        )],
    );
    let c = run(&req);
    let base = format!("job=\"api\", {SCOPE}, route=\"/a\"");
    assert_eq!(
        rendered(&c),
        vec![
            format!("http_server_duration_seconds_bucket{{job=\"api\", le=\"+Inf\", {SCOPE}, route=\"/a\"}} 6@{T1_MS}"),
            format!("http_server_duration_seconds_bucket{{job=\"api\", le=\"0.1\", {SCOPE}, route=\"/a\"}} 2@{T1_MS}"),
            format!("http_server_duration_seconds_bucket{{job=\"api\", le=\"0.5\", {SCOPE}, route=\"/a\"}} 5@{T1_MS}"),
            format!("http_server_duration_seconds_count{{{base}}} 6@{T1_MS}"),
            format!("http_server_duration_seconds_sum{{{base}}} 1.75@{T1_MS}"),
        ]
    );
    assert_eq!(
        c.batch.metadata[0].metric_family,
        "http_server_duration_seconds"
    );
    assert_eq!(c.batch.metadata[0].metric_type, MetricType::Histogram);
    assert_eq!(c.batch.metadata[0].unit, "seconds");
}

#[test]
fn histogram_without_buckets_has_only_inf_bucket() {
    let mut p = hist_point(vec![], 1, T1, vec![], vec![], 3.0);
    p.count = 4;
    let req = request(
        svc(),
        vec![histogram(
            "h",
            "",
            AggregationTemporality::Cumulative,
            vec![p],
        )],
    );
    let c = run(&req);
    assert_eq!(
        rendered(&c),
        vec![
            format!("h_bucket{{job=\"api\", le=\"+Inf\", {SCOPE}}} 4@{T1_MS}"),
            format!("h_count{{job=\"api\", {SCOPE}}} 4@{T1_MS}"),
            format!("h_sum{{job=\"api\", {SCOPE}}} 3@{T1_MS}"),
        ]
    );
}

#[test]
fn malformed_histogram_is_rejected_with_reason() {
    let req = request(
        svc(),
        vec![histogram(
            "h",
            "",
            AggregationTemporality::Cumulative,
            vec![
                hist_point(vec![], 1, T1, vec![1.0, 2.0], vec![1, 1], 1.0),
                hist_point(vec![], 1, T1, vec![2.0, 1.0], vec![1, 1, 1], 1.0),
            ],
        )],
    );
    let c = run(&req);
    assert!(c.batch.series.is_empty());
    assert_eq!(c.rejected_points, 2);
    assert_eq!(c.rejected_by_reason.get("invalid_histogram"), Some(&2));
    assert_eq!(
        c.first_rejection.as_deref(),
        Some("a data point of histogram \"h\" has 2 bucket counts for 2 explicit bounds (expected bounds + 1)")
    );
}

#[test]
fn summary_maps_to_quantiles_sum_and_count() {
    let p = SummaryDataPoint {
        time_unix_nano: T1,
        count: 10,
        sum: 2.5,
        quantile_values: vec![
            ValueAtQuantile {
                quantile: 0.5,
                value: 0.2,
            },
            ValueAtQuantile {
                quantile: 0.99,
                value: 0.9,
            },
        ],
        ..Default::default()
    };
    let req = request(
        svc(),
        vec![metric(
            "rpc.latency",
            "ms",
            Data::Summary(Summary {
                data_points: vec![p],
            }),
        )],
    );
    let c = run(&req);
    assert_eq!(
        rendered(&c),
        vec![
            format!("rpc_latency_milliseconds_count{{job=\"api\", {SCOPE}}} 10@{T1_MS}"),
            format!("rpc_latency_milliseconds_sum{{job=\"api\", {SCOPE}}} 2.5@{T1_MS}"),
            format!(
                "rpc_latency_milliseconds{{job=\"api\", {SCOPE}, quantile=\"0.5\"}} 0.2@{T1_MS}"
            ),
            format!(
                "rpc_latency_milliseconds{{job=\"api\", {SCOPE}, quantile=\"0.99\"}} 0.9@{T1_MS}"
            ),
        ]
    );
    assert_eq!(c.batch.metadata[0].metric_type, MetricType::Summary);
}

#[test]
fn job_instance_and_target_info_come_from_the_resource() {
    let resource = vec![
        kv("service.name", "checkout"),
        kv("service.namespace", "shop"),
        kv("service.instance.id", "pod-1"),
        kv("host.name", "node-a"),
        kv_any("process.pid", any_value::Value::IntValue(42)),
    ];
    let req = request(resource, vec![gauge("g", "", vec![point(vec![], T1, 1.0)])]);
    let c = run(&req);
    assert_eq!(
        rendered(&c),
        vec![
            format!("g{{instance=\"pod-1\", job=\"shop/checkout\", {SCOPE}}} 1@{T1_MS}"),
            format!("target_info{{host_name=\"node-a\", instance=\"pod-1\", job=\"shop/checkout\", process_pid=\"42\"}} 1@{T1_MS}"),
        ]
    );
    assert!(c
        .batch
        .metadata
        .iter()
        .any(|m| m.metric_family == "target_info" && m.metric_type == MetricType::Gauge));
}

#[test]
fn missing_service_name_is_unknown_service_and_no_target_info_without_extras() {
    let req = request(vec![], vec![gauge("g", "", vec![point(vec![], T1, 1.0)])]);
    let c = run(&req);
    assert_eq!(
        rendered(&c),
        vec![format!("g{{job=\"unknown_service\", {SCOPE}}} 1@{T1_MS}")]
    );
}

#[test]
fn target_info_uses_newest_point_time() {
    let req = request(
        vec![kv("service.name", "a"), kv("region", "eu")],
        vec![gauge(
            "g",
            "",
            vec![
                point(vec![kv("k", "1")], T1, 1.0),
                point(vec![kv("k", "2")], T1 + 5_000_000_000, 2.0),
            ],
        )],
    );
    let c = run(&req);
    let ti: Vec<_> = c
        .batch
        .series
        .iter()
        .filter(|s| s.labels.metric_name() == Some("target_info"))
        .collect();
    assert_eq!(ti.len(), 1);
    assert_eq!(ti[0].samples, vec![Sample::new(T1_MS + 5_000, 1.0)]);
}

#[test]
fn attribute_keys_are_sanitised_and_collisions_joined_in_key_order() {
    let attrs = vec![
        kv("http.status", "200"),
        kv("a.b", "dot"),
        kv("a-b", "dash"),
        kv("a_b", "underscore"),
        kv("1st", "x"),
        kv_any("flag", any_value::Value::BoolValue(true)),
        kv_any(
            "list",
            any_value::Value::ArrayValue(ArrayValue {
                values: vec![
                    AnyValue {
                        value: Some(any_value::Value::StringValue("x".to_string())),
                    },
                    AnyValue {
                        value: Some(any_value::Value::IntValue(2)),
                    },
                ],
            }),
        ),
        kv_any("raw", any_value::Value::BytesValue(b"hi!?".to_vec())),
    ];
    let req = request(svc(), vec![gauge("g", "", vec![point(attrs, T1, 1.0)])]);
    let c = run(&req);
    assert_eq!(
        rendered(&c),
        vec![format!(
            "g{{a_b=\"dash;dot;underscore\", flag=\"true\", http_status=\"200\", job=\"api\", key_1st=\"x\", list=\"[\\\"x\\\",2]\", {SCOPE}, raw=\"aGkhPw==\"}} 1@{T1_MS}"
        )]
    );
}

#[test]
fn resource_identity_wins_over_same_named_point_attribute() {
    let req = request(
        svc(),
        vec![gauge(
            "g",
            "",
            vec![point(vec![kv("job", "spoofed")], T1, 1.0)],
        )],
    );
    let c = run(&req);
    assert_eq!(
        rendered(&c),
        vec![format!("g{{job=\"api\", {SCOPE}}} 1@{T1_MS}")]
    );
}

#[test]
fn no_recorded_value_becomes_stale_marker_on_every_series() {
    let mut g = point(vec![], T1, 0.0);
    g.value = None;
    g.flags = 1;
    let mut h = hist_point(vec![], 1, T1, vec![1.0], vec![0, 0], 0.0);
    h.flags = 1;
    h.sum = None;
    let req = request(
        svc(),
        vec![
            gauge("g", "", vec![g]),
            histogram("h", "", AggregationTemporality::Cumulative, vec![h]),
        ],
    );
    let c = run(&req);
    assert_eq!(c.rejected_points, 0);
    assert_eq!(
        rendered(&c),
        vec![
            format!("g{{job=\"api\", {SCOPE}}} stale@{T1_MS}"),
            format!("h_bucket{{job=\"api\", le=\"+Inf\", {SCOPE}}} stale@{T1_MS}"),
            format!("h_bucket{{job=\"api\", le=\"1\", {SCOPE}}} stale@{T1_MS}"),
            format!("h_count{{job=\"api\", {SCOPE}}} stale@{T1_MS}"),
            format!("h_sum{{job=\"api\", {SCOPE}}} stale@{T1_MS}"),
        ]
    );
}

#[test]
fn delta_monotonic_sum_is_accumulated_across_requests() {
    let acc = DeltaAccumulator::default();
    let mk = |start: u64, time: u64, v: f64| {
        let mut p = point(vec![], time, v);
        p.start_time_unix_nano = start;
        request(
            svc(),
            vec![sum(
                "jobs.done",
                "",
                AggregationTemporality::Delta,
                true,
                vec![p],
            )],
        )
    };
    let c1 = convert(&mk(T1 - 10_000_000_000, T1, 3.0), &acc);
    let c2 = convert(&mk(T1, T1 + 10_000_000_000, 4.0), &acc);
    assert_eq!(
        rendered(&c1),
        vec![format!("jobs_done_total{{job=\"api\", {SCOPE}}} 3@{T1_MS}")]
    );
    assert_eq!(
        rendered(&c2),
        vec![format!(
            "jobs_done_total{{job=\"api\", {SCOPE}}} 7@{}",
            T1_MS + 10_000
        )]
    );
    // a re-sent point is refused, never double-counted
    let c3 = convert(&mk(T1, T1 + 10_000_000_000, 4.0), &acc);
    assert!(c3.batch.series.is_empty());
    assert_eq!(c3.rejected_by_reason.get("delta_out_of_order"), Some(&1));
}

#[test]
fn delta_histogram_is_accumulated() {
    let acc = DeltaAccumulator::default();
    let mk = |start: u64, time: u64, counts: Vec<u64>, s: f64| {
        request(
            svc(),
            vec![histogram(
                "h",
                "",
                AggregationTemporality::Delta,
                vec![hist_point(vec![], start, time, vec![1.0], counts, s)],
            )],
        )
    };
    convert(&mk(T1 - 1, T1, vec![1, 0], 0.5), &acc);
    let c = convert(&mk(T1, T1 + 1_000_000, vec![2, 1], 3.0), &acc);
    let ts = T1_MS + 1;
    assert_eq!(
        rendered(&c),
        vec![
            format!("h_bucket{{job=\"api\", le=\"+Inf\", {SCOPE}}} 4@{ts}"),
            format!("h_bucket{{job=\"api\", le=\"1\", {SCOPE}}} 3@{ts}"),
            format!("h_count{{job=\"api\", {SCOPE}}} 4@{ts}"),
            format!("h_sum{{job=\"api\", {SCOPE}}} 3.5@{ts}"),
        ]
    );
}

#[test]
fn full_delta_accumulator_rejects_with_cumulative_hint() {
    let acc = DeltaAccumulator::new(0, Duration::from_secs(60));
    let req = request(
        svc(),
        vec![sum(
            "d",
            "",
            AggregationTemporality::Delta,
            true,
            vec![point(vec![], T1, 1.0)],
        )],
    );
    let c = convert(&req, &acc);
    assert_eq!(c.rejected_points, 1);
    assert!(c
        .first_rejection
        .as_deref()
        .is_some_and(|m| m.contains("configure the exporter for cumulative temporality")));
}

#[test]
fn non_monotonic_delta_sum_and_unspecified_temporality_are_rejected() {
    let req = request(
        svc(),
        vec![
            sum(
                "updown",
                "",
                AggregationTemporality::Delta,
                false,
                vec![point(vec![], T1, 1.0)],
            ),
            sum(
                "weird",
                "",
                AggregationTemporality::Unspecified,
                true,
                vec![point(vec![], T1, 1.0)],
            ),
        ],
    );
    let c = run(&req);
    assert!(c.batch.series.is_empty());
    assert_eq!(
        c.rejected_by_reason.get("unsupported_temporality"),
        Some(&2)
    );
    assert!(c
        .first_rejection
        .as_deref()
        .is_some_and(|m| m.contains("\"updown\"") && m.contains("cumulative temporality")));
}

#[test]
fn exponential_histograms_are_rejected_with_a_clear_message() {
    let e = ExponentialHistogram {
        data_points: vec![
            ExponentialHistogramDataPoint {
                time_unix_nano: T1,
                ..Default::default()
            };
            3
        ],
        aggregation_temporality: AggregationTemporality::Cumulative as i32,
    };
    let req = request(
        svc(),
        vec![metric("latency", "s", Data::ExponentialHistogram(e))],
    );
    let c = run(&req);
    assert!(c.batch.series.is_empty());
    assert_eq!(c.rejected_points, 3);
    assert_eq!(
        c.rejected_by_reason
            .get("unsupported_exponential_histogram"),
        Some(&3)
    );
    assert!(c
        .first_rejection
        .as_deref()
        .is_some_and(|m| m.contains("not supported yet")));
}

#[test]
fn points_without_time_or_value_and_nameless_metrics_are_rejected() {
    let mut no_value = point(vec![], T1, 0.0);
    no_value.value = None;
    let req = request(
        svc(),
        vec![
            gauge("g", "", vec![point(vec![], 0, 1.0), no_value]),
            gauge("", "", vec![point(vec![], T1, 1.0)]),
        ],
    );
    let c = run(&req);
    assert!(c.batch.series.is_empty());
    assert_eq!(c.rejected_points, 3);
    assert_eq!(c.rejected_by_reason.get("missing_timestamp"), Some(&1));
    assert_eq!(c.rejected_by_reason.get("missing_value"), Some(&1));
    assert_eq!(c.rejected_by_reason.get("missing_metric_name"), Some(&1));
}

#[test]
fn metadata_is_reported_once_per_family() {
    let req = request(
        svc(),
        vec![
            gauge("g", "", vec![point(vec![], T1, 1.0)]),
            gauge("g", "", vec![point(vec![kv("a", "b")], T1, 2.0)]),
        ],
    );
    let c = run(&req);
    assert_eq!(c.batch.metadata.len(), 1);
    assert_eq!(c.batch.series.len(), 2);
}

#[test]
fn float_label_values_use_prometheus_notation() {
    assert_eq!(format_float(f64::INFINITY), "+Inf");
    assert_eq!(format_float(0.005), "0.005");
    assert_eq!(format_float(1.0), "1");
    assert_eq!(format_float(1e-7), "0.0000001");
}

#[test]
fn base64_pads_correctly() {
    assert_eq!(base64(b""), "");
    assert_eq!(base64(b"f"), "Zg==");
    assert_eq!(base64(b"fo"), "Zm8=");
    assert_eq!(base64(b"foo"), "Zm9v");
    assert_eq!(base64(b"foob"), "Zm9vYg==");
}
