//! Loki push over HTTP: JSON, snappy protobuf, gzip, the status codes, and what is stored.

use axum::http::StatusCode;
use prost::Message;

use super::proto::{EntryAdapter, LabelPairAdapter, PushRequest, StreamAdapter, Timestamp};
use super::*;
use crate::logs::test_support::{setup, setup_with, wait_metric, Mode, Setup};
use crate::logs::LogLimits;
use crate::otlp::test_support::{gzip, post};

const JSON: &str = r#"{"streams":[
  {"stream":{"app":"checkout","env":"prod"},"values":[
    ["1700000000000000000","level=error msg=\"payment failed\" order=17"],
    ["1700000000000000001","GET /health 200",{"trace_id":"5b8efff798038103d269b633813fc60c"}]]},
  {"stream":{"job":"varlogs","level":"warn"},"values":[
    ["1700000000000000002","disk almost full"]]}]}"#;

async fn push_raw(
    s: &Setup,
    content_type: Option<&str>,
    encoding: Option<&str>,
    body: Vec<u8>,
) -> (StatusCode, axum::http::HeaderMap, String) {
    let app = router(s.ingest.clone());
    let (status, headers, bytes) = post(app, PUSH_PATH, content_type, encoding, body).await;
    let text = String::from_utf8_lossy(&bytes).into_owned();
    (status, headers, text)
}

fn snappy(data: &[u8]) -> Vec<u8> {
    snap::raw::Encoder::new().compress_vec(data).unwrap()
}

fn proto_push(labels: &str, lines: &[&[u8]]) -> PushRequest {
    PushRequest {
        streams: vec![StreamAdapter {
            labels: labels.as_bytes().to_vec(),
            entries: lines
                .iter()
                .enumerate()
                .map(|(i, line)| EntryAdapter {
                    timestamp: Some(Timestamp {
                        seconds: 1_700_000_000,
                        nanos: i as i32,
                    }),
                    line: line.to_vec(),
                    structured_metadata: vec![LabelPairAdapter {
                        name: b"pod".to_vec(),
                        value: b"p-1".to_vec(),
                    }],
                    parsed: vec![],
                })
                .collect(),
            hash: 0,
        }],
    }
}

#[tokio::test]
async fn json_push_is_stored_with_service_severity_and_ids() {
    let s = setup(Mode::Accept);
    let (status, _, body) =
        push_raw(&s, Some("application/json"), None, JSON.as_bytes().to_vec()).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    assert!(body.is_empty());
    let records = s.logs.records();
    assert_eq!(records.len(), 3);
    assert_eq!(records[0].service, "checkout");
    assert_eq!(records[0].severity_number, 17);
    assert_eq!(records[0].time_unix_nano, 1_700_000_000_000_000_000);
    assert_eq!(records[1].severity_number, 0);
    assert_eq!(
        records[1].trace_id.map(|t| t.to_string()).as_deref(),
        Some("5b8efff798038103d269b633813fc60c")
    );
    assert_eq!(records[2].service, "varlogs");
    assert_eq!(
        (
            records[2].severity_number,
            records[2].severity_text.as_str()
        ),
        (13, "warn")
    );
    assert_eq!(
        records[2].resource,
        vec![
            ("job".to_string(), "varlogs".to_string()),
            ("level".to_string(), "warn".to_string())
        ]
    );
    wait_metric(
        &s.metrics,
        "lookout_log_records_total{service=\"checkout\", severity=\"error\"}",
        1.0,
    )
    .await;
    wait_metric(
        &s.metrics,
        "lookout_log_records_total{service=\"varlogs\", severity=\"warn\"}",
        1.0,
    )
    .await;
}

#[tokio::test]
async fn every_encoding_decodes_alike() {
    let s = setup(Mode::Accept);
    let pb = proto_push(r#"{app="pb", env="prod"}"#, &[b"[ERROR] one", b"two"]).encode_to_vec();
    let cases: Vec<(Option<&str>, Option<&str>, Vec<u8>)> = vec![
        (
            Some("application/json"),
            Some("gzip"),
            gzip(JSON.as_bytes()),
        ),
        (Some("application/x-protobuf"), None, snappy(&pb)),
        (None, None, snappy(&pb)),
        (Some("application/x-protobuf"), Some("snappy"), snappy(&pb)),
        (
            Some("application/x-protobuf; charset=utf-8"),
            Some("gzip"),
            gzip(&snappy(&pb)),
        ),
    ];
    let mut want = 0;
    for (ct, enc, body) in cases {
        let (status, _, text) = push_raw(&s, ct, enc, body).await;
        assert_eq!(status, StatusCode::NO_CONTENT, "{ct:?} {enc:?}: {text}");
        want += if ct == Some("application/json") { 3 } else { 2 };
        assert_eq!(s.logs.records().len(), want, "{ct:?} {enc:?}");
    }
    let pb_record = &s.logs.records()[3];
    assert_eq!(pb_record.service, "pb");
    assert_eq!(pb_record.severity_number, 17);
    assert_eq!(pb_record.time_unix_nano, 1_700_000_000_000_000_000);
    assert_eq!(
        pb_record.attributes,
        vec![("pod".to_string(), "p-1".to_string())]
    );
}

#[tokio::test]
async fn a_line_over_the_limit_is_400_naming_it_and_the_rest_is_stored() {
    let s = setup_with(
        Mode::Accept,
        LogLimits {
            max_body_bytes: 20,
            ..Default::default()
        },
    );
    let long = "x".repeat(21);
    let body = format!(
        r#"{{"streams":[{{"stream":{{"app":"a"}},"values":[["1700000000000000000","{long}"],
        ["1700000000000000001","short line"],["not-a-time","bad ts"]]}}]}}"#
    );
    let (status, _, text) = push_raw(&s, Some("application/json"), None, body.into_bytes()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        text.starts_with("2 log records rejected; first: ") && text.contains("max_body_bytes=20"),
        "{text}"
    );
    assert_eq!(s.logs.bodies(), vec!["short line"]);

    // protobuf too, with bad labels rejecting their stream only
    let mut pb = proto_push(r#"{app="b"}"#, &[b"fine", long.as_bytes()]);
    pb.streams
        .push(proto_push("{app=b}", &[b"unlabelled"]).streams.remove(0));
    let (status, _, text) = push_raw(&s, None, None, snappy(&pb.encode_to_vec())).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(text.contains("max_body_bytes=20"), "{text}");
    assert_eq!(s.logs.bodies(), vec!["short line", "fine"]);
    let (status, _, text) = push_raw(
        &s,
        None,
        None,
        snappy(&proto_push("{app=b}", &[b"x"]).encode_to_vec()),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        text.contains("stream \"{app=b}\": invalid labels: expected a quoted label value"),
        "{text}"
    );
}

#[tokio::test]
async fn invalid_utf8_is_replaced_in_json_and_protobuf() {
    let s = setup(Mode::Accept);
    let mut json = JSON
        .replace("disk almost full", "disk QQ full")
        .into_bytes();
    let at = json.windows(2).position(|w| w == b"QQ").unwrap();
    json[at] = 0xff;
    let (status, _, _) = push_raw(&s, Some("application/json"), None, json).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let pb = proto_push(r#"{app="pb"}"#, &[b"caf\xe9"]).encode_to_vec();
    let (status, _, _) = push_raw(&s, None, None, snappy(&pb)).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let bodies = s.logs.bodies();
    assert_eq!(bodies[2], "disk \u{fffd}Q full");
    assert_eq!(bodies[3], "caf\u{fffd}");
}

#[tokio::test]
async fn bad_requests_are_4xx_with_a_message() {
    let s = setup_with(
        Mode::Accept,
        LogLimits {
            max_request_body_bytes: 1000,
            ..Default::default()
        },
    );
    type Case<'a> = (
        Option<&'a str>,
        Option<&'a str>,
        Vec<u8>,
        StatusCode,
        &'a str,
    );
    let cases: Vec<Case> = vec![
        (
            Some("application/json"),
            None,
            b"{\"streams\":[{".to_vec(),
            StatusCode::BAD_REQUEST,
            "failed to decode the JSON push request",
        ),
        (
            None,
            None,
            b"\xff\xff\xff\xff\xff".to_vec(),
            StatusCode::BAD_REQUEST,
            "snappy",
        ),
        (
            None,
            None,
            snappy(b"\xff\xff\xff"),
            StatusCode::BAD_REQUEST,
            "failed to decode protobuf PushRequest",
        ),
        (
            Some("application/json"),
            Some("gzip"),
            b"not gzip".to_vec(),
            StatusCode::BAD_REQUEST,
            "gzip",
        ),
        (
            Some("application/json"),
            Some("br"),
            JSON.as_bytes().to_vec(),
            StatusCode::BAD_REQUEST,
            "unsupported Content-Encoding \"br\"",
        ),
        (
            Some("text/plain"),
            None,
            JSON.as_bytes().to_vec(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "application/json or application/x-protobuf",
        ),
        (
            Some("application/json"),
            None,
            vec![b' '; 1001],
            StatusCode::PAYLOAD_TOO_LARGE,
            "max_request_body_bytes=1000",
        ),
        (
            None,
            None,
            snappy(&vec![0u8; 5000]),
            StatusCode::PAYLOAD_TOO_LARGE,
            "max_request_body_bytes=1000",
        ),
    ];
    for (ct, enc, body, want, text) in cases {
        let (status, _, message) = push_raw(&s, ct, enc, body).await;
        assert_eq!(status, want, "{ct:?} {enc:?}: {message}");
        assert!(message.contains(text), "{ct:?} {enc:?}: {message}");
    }
    assert!(s.logs.records().is_empty());
}

#[tokio::test]
async fn an_overloaded_or_unavailable_store_is_429_or_503_with_retry_after() {
    for (mode, want) in [
        (Mode::Overloaded, StatusCode::TOO_MANY_REQUESTS),
        (Mode::Unavailable, StatusCode::SERVICE_UNAVAILABLE),
    ] {
        let s = setup(mode);
        let (status, headers, _) =
            push_raw(&s, Some("application/json"), None, JSON.as_bytes().to_vec()).await;
        assert_eq!(status, want);
        assert_eq!(headers[header::RETRY_AFTER], "5");
    }
    // the store refusing every entry is the client's problem, as Loki answers it
    let s = setup(Mode::RejectAll);
    let (status, _, text) =
        push_raw(&s, Some("application/json"), None, JSON.as_bytes().to_vec()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(text.contains("record too old"), "{text}");
}
