//! Conversion tests: every id case, service names, limits, normalisation.

use opentelemetry_proto::tonic::common::v1::{ArrayValue, InstrumentationScope, KeyValueList};
use opentelemetry_proto::tonic::trace::v1::span::{Link, SpanKind as OtlpKind};
use opentelemetry_proto::tonic::trace::v1::status::StatusCode as OtlpStatus;

use super::*;
use crate::traces::test_support::{
    kv, kv_int, kv_str, otlp_span, request, with_attrs, with_status, MS, T0,
};

fn convert(req: ExportTraceServiceRequest) -> ConvertedSpans {
    convert_request(req, &TraceLimits::default()).unwrap()
}

fn spans(c: &ConvertedSpans) -> Vec<&Span> {
    c.batch
        .resource_spans
        .iter()
        .flat_map(|r| r.spans.iter())
        .collect()
}

fn reasons(c: &ConvertedSpans) -> Vec<(&'static str, u64)> {
    c.rejected_by_reason
        .iter()
        .map(|(r, n)| (r.as_str(), *n))
        .collect()
}

#[test]
fn a_span_converts_whole() {
    let mut span = with_status(
        with_attrs(
            otlp_span(7, 3, 2, "GET /cart", OtlpKind::Server, 250),
            vec![
                kv_int("http.response.status_code", 200),
                kv_str("http.route", "/cart"),
            ],
        ),
        OtlpStatus::Ok,
    );
    span.trace_state = "k=v".into();
    span.events.push(otlp::span::Event {
        time_unix_nano: T0 + MS,
        name: "cache miss".into(),
        attributes: vec![kv_str("key", "c1")],
        dropped_attributes_count: 0,
    });
    span.links.push(Link {
        trace_id: vec![9; 16],
        span_id: vec![9; 8],
        trace_state: String::new(),
        attributes: vec![],
        dropped_attributes_count: 0,
        flags: 0,
    });
    span.dropped_attributes_count = 2;
    let mut req = request("checkout", vec![span]);
    req.resource_spans[0].scope_spans[0].scope = Some(InstrumentationScope {
        name: "flask".into(),
        version: "3.0".into(),
        ..Default::default()
    });
    let c = convert(req);
    assert_eq!((c.received_spans, c.rejected_spans), (1, 0));
    let rs = &c.batch.resource_spans[0];
    assert_eq!(rs.resource.service_name, "checkout");
    let s = &rs.spans[0];
    assert_eq!(s.trace_id, TraceId([7; 16]));
    assert_eq!(s.span_id, SpanId([3; 8]));
    assert_eq!(s.parent_span_id, Some(SpanId([2; 8])));
    assert_eq!(s.name, "GET /cart");
    assert_eq!(s.kind, SpanKind::Server);
    assert_eq!(s.status_code, StatusCode::Ok);
    assert_eq!(s.duration_nanos(), 250 * MS);
    assert_eq!(s.trace_state, "k=v");
    assert_eq!(
        s.attributes,
        vec![
            ("http.response.status_code".to_string(), AttrValue::Int(200)),
            ("http.route".to_string(), AttrValue::Str("/cart".into())),
        ]
    );
    assert_eq!(s.events[0].name, "cache miss");
    assert_eq!(s.links[0].trace_id, TraceId([9; 16]));
    assert_eq!(
        (s.scope_name.as_str(), s.scope_version.as_str()),
        ("flask", "3.0")
    );
    assert_eq!(s.dropped_attributes_count, 2);
}

#[test]
fn trace_ids_of_the_wrong_length_or_all_zero_are_rejected() {
    let mut short = otlp_span(1, 1, 0, "short", OtlpKind::Server, 1);
    short.trace_id = vec![1; 8];
    let mut zero = otlp_span(1, 2, 0, "zero", OtlpKind::Server, 1);
    zero.trace_id = vec![0; 16];
    let mut empty = otlp_span(1, 3, 0, "empty", OtlpKind::Server, 1);
    empty.trace_id = Vec::new();
    let good = otlp_span(1, 4, 0, "good", OtlpKind::Server, 1);
    let c = convert(request("svc", vec![short, zero, empty, good]));
    assert_eq!(c.rejected_spans, 3);
    assert_eq!(reasons(&c), vec![("invalid_trace_id", 3)]);
    assert_eq!(spans(&c).len(), 1);
    assert_eq!(
        c.first_rejection.as_deref(),
        Some("span \"short\" of service \"svc\": trace id must be 16 bytes, got 8")
    );
}

#[test]
fn span_ids_of_the_wrong_length_or_all_zero_are_rejected() {
    let mut long = otlp_span(1, 1, 0, "long", OtlpKind::Client, 1);
    long.span_id = vec![1; 16];
    let mut zero = otlp_span(1, 2, 0, "zero", OtlpKind::Client, 1);
    zero.span_id = vec![0; 8];
    let c = convert(request("svc", vec![zero, long]));
    assert_eq!(reasons(&c), vec![("invalid_span_id", 2)]);
    assert!(spans(&c).is_empty());
    assert!(c.batch.resource_spans.is_empty());
    assert_eq!(
        c.first_rejection.as_deref(),
        Some("span \"zero\" of service \"svc\": span id must not be all zeros")
    );
}

#[test]
fn parent_ids_empty_or_zero_are_roots_and_other_lengths_rejected() {
    let root = otlp_span(1, 1, 0, "root", OtlpKind::Server, 1);
    let mut zeros = otlp_span(1, 2, 0, "zeros", OtlpKind::Server, 1);
    zeros.parent_span_id = vec![0; 8];
    let child = otlp_span(1, 3, 1, "child", OtlpKind::Internal, 1);
    let mut bad = otlp_span(1, 4, 0, "bad", OtlpKind::Internal, 1);
    bad.parent_span_id = vec![5; 4];
    let c = convert(request("svc", vec![root, zeros, child, bad]));
    let got = spans(&c);
    assert_eq!(got.len(), 3);
    assert_eq!(got[0].parent_span_id, None);
    assert_eq!(got[1].parent_span_id, None);
    assert_eq!(got[2].parent_span_id, Some(SpanId([1; 8])));
    assert_eq!(reasons(&c), vec![("invalid_parent_span_id", 1)]);
    assert!(c
        .first_rejection
        .unwrap()
        .contains("parent span id must be empty or 8 bytes, got 4"));
}

#[test]
fn a_span_without_start_time_is_rejected() {
    let mut s = otlp_span(1, 1, 0, "nostart", OtlpKind::Server, 1);
    s.start_time_unix_nano = 0;
    let c = convert(request("svc", vec![s]));
    assert_eq!(reasons(&c), vec![("missing_start_time", 1)]);
}

#[test]
fn end_before_start_is_normalised_and_the_original_end_kept() {
    let mut s = otlp_span(1, 1, 0, "backwards", OtlpKind::Server, 1);
    s.end_time_unix_nano = T0 - 5 * MS;
    let mut unset = otlp_span(1, 2, 0, "unfinished", OtlpKind::Server, 1);
    unset.end_time_unix_nano = 0;
    let c = convert(request("svc", vec![s, unset]));
    assert_eq!(c.rejected_spans, 0);
    assert_eq!(c.end_before_start, 2);
    let got = spans(&c);
    assert_eq!(got[0].end_unix_nano, T0);
    assert_eq!(got[0].duration_nanos(), 0);
    assert_eq!(
        got[0].attributes.last(),
        Some(&(
            ORIGINAL_END_ATTR.to_string(),
            AttrValue::Int((T0 - 5 * MS) as i64)
        ))
    );
    assert_eq!(
        got[1].attributes.last(),
        Some(&(ORIGINAL_END_ATTR.to_string(), AttrValue::Int(0)))
    );
}

#[test]
fn missing_service_name_is_unknown_service_and_the_resource_is_kept() {
    let mut req = request("x", vec![otlp_span(1, 1, 0, "op", OtlpKind::Server, 1)]);
    let resource = req.resource_spans[0].resource.as_mut().unwrap();
    resource.attributes = vec![kv_str("host.name", "h1")];
    let mut empty = request("", vec![otlp_span(1, 2, 0, "op", OtlpKind::Server, 1)]);
    let mut none = request("x", vec![otlp_span(1, 3, 0, "op", OtlpKind::Server, 1)]);
    none.resource_spans[0].resource = None;
    let mut numeric = request("x", vec![otlp_span(1, 4, 0, "op", OtlpKind::Server, 1)]);
    numeric.resource_spans[0]
        .resource
        .as_mut()
        .unwrap()
        .attributes = vec![kv_int("service.name", 42)];
    req.resource_spans.append(&mut empty.resource_spans);
    req.resource_spans.append(&mut none.resource_spans);
    req.resource_spans.append(&mut numeric.resource_spans);
    let c = convert(req);
    let names: Vec<&str> = c
        .batch
        .resource_spans
        .iter()
        .map(|r| r.resource.service_name.as_str())
        .collect();
    assert_eq!(
        names,
        vec![
            "unknown_service",
            "unknown_service",
            "unknown_service",
            "42"
        ]
    );
    assert_eq!(
        c.batch.resource_spans[0].resource.attributes,
        vec![("host.name".to_string(), AttrValue::Str("h1".into()))]
    );
}

#[test]
fn too_many_spans_refuse_the_request_naming_the_limit() {
    let limits = TraceLimits {
        max_spans_per_request: 2,
        ..Default::default()
    };
    let req = request(
        "svc",
        (1..=3)
            .map(|i| otlp_span(1, i, 0, "op", OtlpKind::Server, 1))
            .collect(),
    );
    let err = convert_request(req, &limits).unwrap_err();
    assert!(matches!(err, IngestError::Rejected(_)));
    assert_eq!(err.status(), axum::http::StatusCode::BAD_REQUEST);
    assert_eq!(
        err.to_string(),
        "the request has 3 spans, more than the limit max_spans_per_request=2"
    );
    let ok = request(
        "svc",
        (1..=2)
            .map(|i| otlp_span(1, i, 0, "op", OtlpKind::Server, 1))
            .collect(),
    );
    assert_eq!(spans(&convert_request(ok, &limits).unwrap()).len(), 2);
}

#[test]
fn long_attribute_values_are_truncated_on_a_character_boundary() {
    let limits = TraceLimits {
        max_attribute_value_bytes: 5,
        ..Default::default()
    };
    // "héllo" is 6 bytes: cutting at 5 would split nothing, "ééé" (6 bytes) cuts to 4
    let s = with_attrs(
        otlp_span(1, 1, 0, "op", OtlpKind::Client, 1),
        vec![
            kv_str("short", "abc"),
            kv_str("accents", "ééé"),
            kv("bytes", any_value::Value::BytesValue(vec![1; 9])),
            kv(
                "list",
                any_value::Value::ArrayValue(ArrayValue {
                    values: vec![AnyValue {
                        value: Some(any_value::Value::StringValue("0123456789".into())),
                    }],
                }),
            ),
            kv(
                "map",
                any_value::Value::KvlistValue(KeyValueList {
                    values: vec![kv_str("inner", "abcdefgh")],
                }),
            ),
        ],
    );
    let mut req = request("svc", vec![s]);
    req.resource_spans[0]
        .resource
        .as_mut()
        .unwrap()
        .attributes
        .push(kv_str("host.name", "a-very-long-host"));
    let c = convert_request(req, &limits).unwrap();
    assert_eq!(c.truncated_values, 5);
    assert_eq!(c.rejected_spans, 0);
    let got = spans(&c)[0];
    let a = |k: &str| attr(&got.attributes, k).cloned();
    assert_eq!(a("short"), Some(AttrValue::Str("abc".into())));
    assert_eq!(a("accents"), Some(AttrValue::Str("éé".into())));
    assert_eq!(a("bytes"), Some(AttrValue::Bytes(vec![1; 5])));
    assert_eq!(
        a("list"),
        Some(AttrValue::Array(vec![AttrValue::Str("01234".into())]))
    );
    assert_eq!(
        a("map"),
        Some(AttrValue::KvList(vec![(
            "inner".into(),
            AttrValue::Str("abcde".into())
        )]))
    );
    assert_eq!(
        attr(&c.batch.resource_spans[0].resource.attributes, "host.name"),
        Some(&AttrValue::Str("a-ver".into()))
    );
}

fn attr<'a>(attrs: &'a Attributes, key: &str) -> Option<&'a AttrValue> {
    store::traces::model::attr(attrs, key)
}

#[test]
fn truncate_never_splits_a_character() {
    for (text, max, want) in [
        ("abc", 3, "abc"),
        ("abcd", 3, "abc"),
        ("aé", 2, "a"),
        ("日本", 4, "日"),
        ("日本", 2, ""),
        ("", 0, ""),
    ] {
        let mut s = text.to_string();
        truncate_utf8(&mut s, max);
        assert_eq!(s, want, "{text} {max}");
    }
}

#[test]
fn duplicate_keys_keep_the_last_value_at_the_first_position() {
    let mut attrs = vec![kv_str("a", "1"), kv_str("b", "2"), kv_str("a", "3")];
    // and past the scan threshold, through the map
    for i in 0..40 {
        attrs.push(kv_int(&format!("k{i}"), i));
    }
    attrs.push(kv_int("k3", 99));
    attrs.push(kv_str("b", "last"));
    let s = with_attrs(otlp_span(1, 1, 0, "op", OtlpKind::Server, 1), attrs);
    let c = convert(request("svc", vec![s]));
    let got = &spans(&c)[0].attributes;
    assert_eq!(got.len(), 42);
    assert_eq!(got[0], ("a".to_string(), AttrValue::Str("3".into())));
    assert_eq!(got[1], ("b".to_string(), AttrValue::Str("last".into())));
    assert_eq!(got[5], ("k3".to_string(), AttrValue::Int(99)));
}

#[test]
fn links_with_bad_ids_are_dropped_and_counted() {
    let mut s = otlp_span(1, 1, 0, "op", OtlpKind::Server, 1);
    s.dropped_links_count = 1;
    for (trace, span) in [
        (vec![2; 16], vec![2; 8]),
        (vec![0; 16], vec![2; 8]),
        (vec![2; 16], vec![]),
    ] {
        s.links.push(Link {
            trace_id: trace,
            span_id: span,
            ..Default::default()
        });
    }
    let c = convert(request("svc", vec![s]));
    let got = spans(&c)[0];
    assert_eq!(got.links.len(), 1);
    assert_eq!(got.dropped_links_count, 3);
    assert_eq!(c.rejected_spans, 0);
}

#[test]
fn unknown_kinds_and_codes_are_unspecified_and_unset() {
    let mut s = otlp_span(1, 1, 0, "op", OtlpKind::Server, 1);
    s.kind = 42;
    s.status = Some(otlp::Status {
        code: 9,
        message: "odd".into(),
    });
    let c = convert(request("svc", vec![s]));
    let got = spans(&c)[0];
    assert_eq!(got.kind, SpanKind::Unspecified);
    assert_eq!(got.status_code, StatusCode::Unset);
    assert_eq!(got.status_message, "odd");
}

#[test]
fn empty_values_and_string_indexes_are_empty_strings() {
    let mut s = otlp_span(1, 1, 0, "op", OtlpKind::Server, 1);
    s.attributes.push(KeyValue {
        key: "none".into(),
        value: None,
        ..Default::default()
    });
    s.attributes
        .push(kv("idx", any_value::Value::StringValueStrindex(3)));
    let c = convert(request("svc", vec![s]));
    let got = &spans(&c)[0].attributes;
    assert_eq!(got[0].1, AttrValue::Str(String::new()));
    assert_eq!(got[1].1, AttrValue::Str(String::new()));
}

#[test]
fn long_names_are_shortened_in_rejection_messages() {
    let name = "x".repeat(1000);
    let mut s = otlp_span(1, 1, 0, &name, OtlpKind::Server, 1);
    s.trace_id = vec![];
    let c = convert(request("svc", vec![s]));
    let msg = c.first_rejection.unwrap();
    assert!(msg.len() < 300, "{}", msg.len());
    assert!(
        msg.starts_with(&format!("span \"{}\"... of service", "x".repeat(128))),
        "{msg}"
    );
}
