//! End-to-end tests of the routes over an in-memory querier, through the real router; and the
//! in-process calls every route test module makes ([`send`], [`send_get`], [`respond`]).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use store::model::{MetricMetadata, MetricType, Sample};
use store::testing::MemQuerier;
use store::Labels;
use tower::ServiceExt;

use crate::{router, ApiOptions};

fn app() -> axum::Router {
    let mut series = BTreeMap::new();
    series.insert(
        Labels::from_pairs([("__name__", "up"), ("job", "api")]),
        vec![
            Sample::new(0, 1.0),
            Sample::new(60_000, 0.0),
            Sample::new(120_000, 1.0),
        ],
    );
    series.insert(
        Labels::from_pairs([("__name__", "up"), ("job", "web")]),
        vec![Sample::new(60_000, 1e21)],
    );
    series.insert(
        Labels::from_pairs([("__name__", "temp"), ("room", "a")]),
        vec![Sample::new(0, 21.5)],
    );
    let metadata = vec![MetricMetadata {
        metric_family: "up".into(),
        metric_type: MetricType::Gauge,
        help: "Target up.".into(),
        unit: String::new(),
    }];
    router(
        Arc::new(MemQuerier { series, metadata }),
        ApiOptions::default(),
    )
}

/// Sends `req` through `app` in-process (the router itself never fails).
pub(crate) async fn respond(app: axum::Router, req: Request<Body>) -> Response<Body> {
    match app.oneshot(req).await {
        Ok(r) => r,
        Err(e) => match e {},
    }
}

/// Sends `req` through `app`; returns the status and the body as text.
pub(crate) async fn send(app: axum::Router, req: Request<Body>) -> (StatusCode, String) {
    let resp = respond(app, req).await;
    let status = resp.status();
    let body = resp
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// `GET uri`.
pub(crate) fn get_request(uri: &str) -> Request<Body> {
    Request::get(uri)
        .body(Body::empty())
        .expect("static request")
}

/// Sends `GET uri` through `app`; returns the status and the body as text.
pub(crate) async fn send_get(app: axum::Router, uri: &str) -> (StatusCode, String) {
    send(app, get_request(uri)).await
}

async fn get(uri: &str) -> (StatusCode, String) {
    send_get(app(), uri).await
}

async fn post(uri: &str, form: &str) -> (StatusCode, String) {
    let req = Request::post(uri)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Body::from(form.to_string()))
        .expect("static request");
    send(app(), req).await
}

#[tokio::test]
async fn instant_query_returns_a_vector() {
    let (status, body) = get("/api/v1/query?query=up&time=120").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body,
        r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{"__name__":"up","job":"api"},"value":[120,"1"]},{"metric":{"__name__":"up","job":"web"},"value":[120,"1e+21"]}]}}"#
    );
}

#[tokio::test]
async fn range_query_over_post_form() {
    let (status, body) = post(
        "/api/v1/query_range",
        "query=up%7Bjob%3D%22api%22%7D&start=0&end=120&step=60",
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body,
        r#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{"__name__":"up","job":"api"},"values":[[0,"1"],[60,"0"],[120,"1"]]}]}}"#
    );
}

#[tokio::test]
async fn range_vector_and_rfc3339_time() {
    let (status, body) =
        get("/api/v1/query?query=up%7Bjob%3D%22api%22%7D%5B1m%5D&time=1970-01-01T00:02:00Z").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // [1m1s, 2m] would hold only the 2m sample; Prometheus 2.x's window includes its left
    // edge, so the sample at exactly 1m is in too
    assert!(body.contains(r#""values":[[60,"0"],[120,"1"]]"#), "{body}");
}

#[tokio::test]
async fn bad_parameters_use_prometheus_wording() {
    let (status, body) = get("/api/v1/query_range?query=up&start=x&end=1&step=1").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        body,
        r#"{"status":"error","errorType":"bad_data","error":"invalid parameter \"start\": cannot parse \"x\" to a valid timestamp"}"#
    );
    let (status, body) = get("/api/v1/query_range?query=up&start=10&end=1&step=1").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        body.contains("end timestamp must not be before start time"),
        "{body}"
    );
    // a span that overflows i64 milliseconds is too many points, not a wrapped negative one
    let (status, body) =
        get("/api/v1/query_range?query=1&start=-9100000000000000&end=9100000000000000&step=1")
            .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body.contains("exceeded maximum resolution"), "{body}");
    let (_, body) = get("/api/v1/query_range?query=up&start=0&end=100000&step=1").await;
    assert!(
        body.contains("exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX)"),
        "{body}"
    );
    let (status, body) = get("/api/v1/query_range?query=up&start=0&end=10&step=0").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        body.contains("zero or negative query resolution step widths"),
        "{body}"
    );
    let (status, body) = get("/api/v1/query?query=up%7B").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        body.contains(r#""errorType":"bad_data","error":"invalid parameter \"query\": "#),
        "{body}"
    );
}

#[tokio::test]
async fn functions_newer_than_2_42_are_parse_errors() {
    let (status, body) = get("/api/v1/query?query=histogram_avg(up)&time=60").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body.contains(r#""errorType":"bad_data""#), "{body}");
    assert!(
        body.contains(r#"unknown function with name \"histogram_avg\""#),
        "{body}"
    );
    // 2.42's own native-histogram functions find nothing among float series
    let (status, body) = get("/api/v1/query?query=histogram_sum(up)&time=60").await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains(r#""result":[]"#), "{body}");
}

#[tokio::test]
async fn series_requires_match() {
    let (status, body) = get("/api/v1/series").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body.contains("no match[] parameter provided"), "{body}");
    let (status, body) = get("/api/v1/series?match[]=up%7Bjob%3D~%22a.*%22%7D").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body,
        r#"{"status":"success","data":[{"__name__":"up","job":"api"}]}"#
    );
}

#[tokio::test]
async fn labels_and_values() {
    let (_, body) = get("/api/v1/labels").await;
    assert_eq!(
        body,
        r#"{"status":"success","data":["__name__","job","room"]}"#
    );
    let (_, body) = post("/api/v1/labels", "match[]=temp").await;
    assert_eq!(body, r#"{"status":"success","data":["__name__","room"]}"#);
    let (_, body) = get("/api/v1/label/job/values?match[]=up&limit=1").await;
    assert_eq!(
        body,
        r#"{"status":"success","data":["api"],"warnings":["results truncated due to limit"]}"#
    );
    let (status, body) = get("/api/v1/label/1bad/values").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body.contains(r#"invalid label name: \"1bad\""#), "{body}");
}

#[tokio::test]
async fn metadata_and_buildinfo() {
    let (_, body) = get("/api/v1/metadata").await;
    assert_eq!(
        body,
        r#"{"status":"success","data":{"up":[{"type":"gauge","help":"Target up.","unit":""}]}}"#
    );
    let (status, body) = get("/api/v1/status/buildinfo").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        body.contains(&format!(r#""version":"{}""#, env!("CARGO_PKG_VERSION"))),
        "{body}"
    );
}

#[tokio::test]
async fn format_query_pretty_prints_or_names_the_parse_error() {
    let (status, body) =
        get("/api/v1/format_query?query=sum%28rate%28up%5B5m%5D%29%29by%28job%29").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body,
        r#"{"status":"success","data":"sum by (job) (rate(up[5m]))"}"#
    );
    let (status, body) = post("/api/v1/format_query", "query=up%7B").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body.contains(r#""errorType":"bad_data""#), "{body}");
}

#[tokio::test]
async fn stats_only_when_asked() {
    let (_, plain) = get("/api/v1/query?query=up&time=120").await;
    assert!(!plain.contains("stats"), "{plain}");
    let (status, body) = get("/api/v1/query?query=up&time=120&stats=all").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    let stats = &v["data"]["stats"];
    // `up` at 120 reads the api series' 3 samples and the web series' 1
    assert_eq!(stats["samples"]["totalQueryableSamples"], 4, "{body}");
    assert!(stats["samples"]["peakSamples"].as_u64() > Some(0), "{body}");
    // an in-memory querier has no archive tier
    assert_eq!(stats["archive"]["filesRead"], 0, "{body}");
    assert_eq!(stats["archive"]["resolution"], "raw", "{body}");
    let (status, body) = get("/api/v1/status/tsdb").await;
    assert_eq!(
        status,
        StatusCode::SERVICE_UNAVAILABLE,
        "not a store: {body}"
    );
    for key in [
        "evalTotalTime",
        "resultSortTime",
        "queryPreparationTime",
        "innerEvalTime",
        "execQueueTime",
        "execTotalTime",
    ] {
        assert!(stats["timings"][key].as_f64().is_some(), "{key}: {body}");
    }
    assert_eq!(v["data"]["resultType"], "vector");
}
