//! OTLP/JSON decoding of an `ExportMetricsServiceRequest`.
//!
//! opentelemetry-proto's serde derive covers most of the OTLP JSON mapping, with two gaps
//! that lose data silently, which this module closes:
//! - enum fields are plain `i32`s, so the enum *names* that protobuf's JSON printers write by
//!   default (`"aggregationTemporality": "AGGREGATION_TEMPORALITY_CUMULATIVE"`), and that the
//!   protobuf JSON mapping requires parsers to accept, do not decode. They are rewritten to
//!   their numbers before the typed decoding; an unknown name is a 400 naming it.
//! - oneofs (`Metric.data`, the `value` of number data points and exemplars) are
//!   `#[serde(flatten)] Option<_>`, and serde turns *any* error inside a flattened `Option`
//!   into `None`: a metric whose `sum` fails to decode would vanish without a word. After the
//!   typed decoding every oneof present in the JSON is checked to have arrived; one that did
//!   not is decoded on its own for serde's message and refused with a 400, as are two members
//!   of one oneof set at once (serde would keep one and drop the other).
//!
//! The only enum in a metrics request is `AggregationTemporality` (on `sum`, `histogram` and
//! `exponentialHistogram`); `flags` is a plain integer.

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::metrics::v1::{
    exemplar, metric, number_data_point, AggregationTemporality, Exemplar, Metric, NumberDataPoint,
};
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use super::json_common::{array_mut, enum_number, parse, typed};
use crate::IngestError;

const REQUEST: &str = "ExportMetricsServiceRequest";

/// The JSON keys of the `Metric.data` oneof.
const DATA_KEYS: [&str; 5] = [
    "gauge",
    "sum",
    "histogram",
    "exponentialHistogram",
    "summary",
];
/// Data kinds that carry an `aggregationTemporality`.
const TEMPORAL_KEYS: [&str; 3] = ["sum", "histogram", "exponentialHistogram"];
/// The JSON keys of the number data point and exemplar `value` oneofs.
const VALUE_KEYS: [&str; 2] = ["asDouble", "asInt"];

/// Decodes an OTLP/JSON metrics export request; anything that would not arrive intact is a
/// [`IngestError::Malformed`] naming the problem.
pub(crate) fn decode_request(payload: &[u8]) -> Result<ExportMetricsServiceRequest, IngestError> {
    let mut value = parse(REQUEST, payload)?;
    normalise_enums(&mut value)?;
    let request = typed(REQUEST, &value)?;
    check_oneofs(&value, &request)?;
    Ok(request)
}

/// The array under `key` of a JSON object, empty when absent or not an array (the typed
/// decoding reports the latter).
fn array<'a>(v: &'a Value, key: &str) -> &'a [Value] {
    v.get(key)
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

fn metric_name(metric: &Value) -> &str {
    metric.get("name").and_then(Value::as_str).unwrap_or("")
}

/// Rewrites enum names to their numbers, in place.
fn normalise_enums(request: &mut Value) -> Result<(), IngestError> {
    for rm in array_mut(request, "resourceMetrics") {
        for sm in array_mut(rm, "scopeMetrics") {
            for metric in array_mut(sm, "metrics") {
                let name = metric_name(metric).to_string();
                for key in TEMPORAL_KEYS {
                    enum_number(
                        metric
                            .get_mut(key)
                            .and_then(|d| d.get_mut("aggregationTemporality")),
                        |s| AggregationTemporality::from_str_name(s).map(|t| t as i32),
                        |s| {
                            format!(
                                "metric {name:?}: unknown aggregationTemporality {s:?}; \
                                 expected one of AGGREGATION_TEMPORALITY_UNSPECIFIED, \
                                 AGGREGATION_TEMPORALITY_DELTA, \
                                 AGGREGATION_TEMPORALITY_CUMULATIVE or their numbers"
                            )
                        },
                    )?;
                }
            }
        }
    }
    Ok(())
}

/// The members of a oneof present (not null) in a JSON object.
fn present<'a>(obj: &'a Value, keys: &[&'static str]) -> Vec<(&'static str, &'a Value)> {
    keys.iter()
        .filter_map(|k| obj.get(*k).filter(|v| !v.is_null()).map(|v| (*k, v)))
        .collect()
}

/// Why a oneof present in `obj` did not decode: serde's error for it decoded on its own.
fn oneof_error<T: DeserializeOwned>(
    what: &str,
    obj: &Value,
    keys: &[&'static str],
    decoded: bool,
) -> Result<(), IngestError> {
    let members = present(obj, keys);
    if members.len() > 1 {
        let names: Vec<&str> = members.iter().map(|(k, _)| *k).collect();
        return Err(IngestError::Malformed(format!(
            "{what}: more than one of {} is set",
            names.join(", ")
        )));
    }
    let Some((key, v)) = members.first() else {
        return Ok(());
    };
    if decoded {
        return Ok(());
    }
    let mut single = Map::new();
    single.insert((*key).to_string(), (*v).clone());
    let reason = match serde_json::from_value::<T>(Value::Object(single)) {
        Err(e) => e.to_string(),
        Ok(_) => "it did not decode".to_string(),
    };
    Err(IngestError::Malformed(format!(
        "{what}: invalid {key}: {reason}"
    )))
}

/// Checks that every oneof set in the JSON survived the typed decoding.
fn check_oneofs(json: &Value, request: &ExportMetricsServiceRequest) -> Result<(), IngestError> {
    let rms = array(json, "resourceMetrics");
    for (rm_json, rm) in rms.iter().zip(&request.resource_metrics) {
        let sms = array(rm_json, "scopeMetrics");
        for (sm_json, sm) in sms.iter().zip(&rm.scope_metrics) {
            let metrics = array(sm_json, "metrics");
            for (m_json, m) in metrics.iter().zip(&sm.metrics) {
                check_metric(m_json, m)?;
            }
        }
    }
    Ok(())
}

fn check_metric(json: &Value, metric: &Metric) -> Result<(), IngestError> {
    let what = format!("metric {:?}", metric.name);
    oneof_error::<metric::Data>(&what, json, &DATA_KEYS, metric.data.is_some())?;
    let Some(data) = &metric.data else {
        return Ok(());
    };
    let mut exemplars: Vec<(&Value, &[Exemplar])> = Vec::new();
    let (key, points) = match data {
        metric::Data::Gauge(g) => ("gauge", &g.data_points),
        metric::Data::Sum(s) => ("sum", &s.data_points),
        metric::Data::Histogram(h) => {
            for (p_json, p) in array(&json["histogram"], "dataPoints")
                .iter()
                .zip(&h.data_points)
            {
                exemplars.push((p_json, &p.exemplars));
            }
            return check_exemplars(&what, &exemplars);
        }
        metric::Data::ExponentialHistogram(e) => {
            for (p_json, p) in array(&json["exponentialHistogram"], "dataPoints")
                .iter()
                .zip(&e.data_points)
            {
                exemplars.push((p_json, &p.exemplars));
            }
            return check_exemplars(&what, &exemplars);
        }
        metric::Data::Summary(_) => return Ok(()),
    };
    check_number_points(&what, array(&json[key], "dataPoints"), points)
}

fn check_number_points(
    what: &str,
    json: &[Value],
    points: &[NumberDataPoint],
) -> Result<(), IngestError> {
    let mut exemplars = Vec::with_capacity(json.len());
    for (p_json, p) in json.iter().zip(points) {
        oneof_error::<number_data_point::Value>(
            &format!("{what} data point"),
            p_json,
            &VALUE_KEYS,
            p.value.is_some(),
        )?;
        exemplars.push((p_json, p.exemplars.as_slice()));
    }
    check_exemplars(what, &exemplars)
}

fn check_exemplars(what: &str, points: &[(&Value, &[Exemplar])]) -> Result<(), IngestError> {
    for (p_json, exemplars) in points {
        for (e_json, e) in array(p_json, "exemplars").iter().zip(*exemplars) {
            oneof_error::<exemplar::Value>(
                &format!("{what} exemplar"),
                e_json,
                &VALUE_KEYS,
                e.value.is_some(),
            )?;
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn sum_json(temporality: &str) -> String {
        format!(
            r#"{{"resourceMetrics":[{{"scopeMetrics":[{{"metrics":[{{"name":"m",
            "sum":{{"aggregationTemporality":{temporality},"isMonotonic":true,
            "dataPoints":[{{"timeUnixNano":"1","asInt":"3"}}]}}}}]}}]}}]}}"#
        )
    }

    fn temporality(req: &ExportMetricsServiceRequest) -> i32 {
        match &req.resource_metrics[0].scope_metrics[0].metrics[0].data {
            Some(metric::Data::Sum(s)) => s.aggregation_temporality,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn enum_names_and_numbers_decode_alike() {
        for (t, want) in [
            ("\"AGGREGATION_TEMPORALITY_CUMULATIVE\"", 2),
            ("\"AGGREGATION_TEMPORALITY_DELTA\"", 1),
            ("\"AGGREGATION_TEMPORALITY_UNSPECIFIED\"", 0),
            ("2", 2),
        ] {
            let req = decode_request(sum_json(t).as_bytes()).unwrap();
            assert_eq!(temporality(&req), want, "{t}");
        }
    }

    #[test]
    fn unknown_enum_name_is_malformed_naming_it() {
        let err = decode_request(sum_json("\"CUMULATIVE\"").as_bytes()).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, IngestError::Malformed(_)), "{msg}");
        assert!(
            msg.contains("\"CUMULATIVE\"") && msg.contains("\"m\""),
            "{msg}"
        );
    }

    #[test]
    fn a_oneof_that_fails_to_decode_is_not_dropped() {
        let body = sum_json("2").replace("\"isMonotonic\":true", "\"isMonotonic\":\"yes\"");
        let msg = decode_request(body.as_bytes()).unwrap_err().to_string();
        assert!(msg.contains("invalid sum"), "{msg}");

        let body = sum_json("2").replace("\"asInt\":\"3\"", "\"asInt\":\"three\"");
        let msg = decode_request(body.as_bytes()).unwrap_err().to_string();
        assert!(msg.contains("data point: invalid asInt"), "{msg}");

        let body = sum_json("2").replace(
            "\"asInt\":\"3\"",
            "\"asInt\":\"3\",\"exemplars\":[{\"asDouble\":\"x\"}]",
        );
        let msg = decode_request(body.as_bytes()).unwrap_err().to_string();
        assert!(msg.contains("exemplar: invalid asDouble"), "{msg}");
    }

    #[test]
    fn two_members_of_a_oneof_are_refused() {
        let body = sum_json("2").replace("\"name\":\"m\",", "\"name\":\"m\",\"gauge\":{},");
        let msg = decode_request(body.as_bytes()).unwrap_err().to_string();
        assert!(msg.contains("more than one of gauge, sum"), "{msg}");
    }

    #[test]
    fn null_and_absent_oneofs_are_empty() {
        let body = r#"{"resourceMetrics":[{"scopeMetrics":[{"metrics":[{"name":"a"},
            {"name":"b","gauge":null},{"name":"c","gauge":{"dataPoints":[{"asInt":null}]}}]}]}]}"#;
        let req = decode_request(body.as_bytes()).unwrap();
        assert_eq!(req.resource_metrics[0].scope_metrics[0].metrics.len(), 3);
    }
}
