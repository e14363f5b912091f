//! Prometheus's JSON shapes, written by hand because Prometheus's number formatting
//! (timestamps as `seconds.millis`, values as strings in Go's float format) cannot be
//! expressed with serde's number types.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use store::model::{Labels, Sample};
use store::promql::{QueryStats, Value};

/// A JSON string literal (quoted and escaped).
pub fn json_string(s: &str) -> String {
    // serializing a &str cannot fail
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}

/// Go's `strconv.FormatFloat(f, 'f' or 'e', -1, 64)` as Prometheus's `jsonutil.MarshalFloat`
/// uses it: plain notation, except exponent notation below 1e-6 and from 1e21 on.
pub fn format_float(f: f64) -> String {
    let mut out = String::new();
    write_float(&mut out, f);
    out
}

/// [`format_float`] appended to `out` without an allocation of its own (the hot path of
/// query answers: one call per point).
pub fn write_float(out: &mut String, f: f64) {
    use std::fmt::Write;
    if f.is_nan() {
        out.push_str("NaN");
        return;
    }
    if f.is_infinite() {
        out.push_str(if f > 0.0 { "+Inf" } else { "-Inf" });
        return;
    }
    let abs = f.abs();
    if abs != 0.0 && !(1e-6..1e21).contains(&abs) {
        // Rust gives the same shortest digits but writes the exponent as `e21`/`e-7`;
        // Go writes a sign and at least two digits
        let s = format!("{f:e}");
        match s.split_once('e') {
            Some((mantissa, exp)) => {
                let (sign, digits) = match exp.strip_prefix('-') {
                    Some(d) => ('-', d),
                    None => ('+', exp),
                };
                let _ = write!(out, "{mantissa}e{sign}{digits:0>2}");
            }
            None => out.push_str(&s),
        }
        return;
    }
    // Rust's Display is the shortest round-trip form without an exponent, as Go's 'f', -1
    let _ = write!(out, "{f}");
}

/// Prometheus's timestamp encoding: Unix seconds, with a three-digit millisecond fraction
/// only when it is non-zero (`1435781451.781`, `1435781451`).
pub fn format_timestamp(ms: i64) -> String {
    let mut out = String::new();
    write_timestamp(&mut out, ms);
    out
}

/// [`format_timestamp`] appended to `out`.
pub fn write_timestamp(out: &mut String, ms: i64) {
    use std::fmt::Write;
    let sign = if ms < 0 { "-" } else { "" };
    let abs = ms.unsigned_abs();
    let (secs, frac) = (abs / 1000, abs % 1000);
    let _ = if frac == 0 {
        write!(out, "{sign}{secs}")
    } else {
        write!(out, "{sign}{secs}.{frac:03}")
    };
}

fn push_point(out: &mut String, ts: i64, value: f64) {
    out.push('[');
    write_timestamp(out, ts);
    out.push_str(",\"");
    write_float(out, value);
    out.push_str("\"]");
}

/// A label set as a JSON object.
pub fn labels_json(out: &mut String, labels: &Labels) {
    out.push('{');
    for (i, l) in labels.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&json_string(&l.name));
        out.push(':');
        out.push_str(&json_string(&l.value));
    }
    out.push('}');
}

fn samples_json(out: &mut String, samples: &[Sample]) {
    out.push('[');
    for (i, s) in samples.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_point(out, s.timestamp_ms, s.value);
    }
    out.push(']');
}

/// `{"resultType":...,"result":...}` for a query result.
pub fn query_data(value: &Value) -> String {
    let mut out = String::with_capacity(256);
    out.push_str("{\"resultType\":\"");
    out.push_str(value.type_name());
    out.push_str("\",\"result\":");
    match value {
        Value::Scalar(s) => push_point(&mut out, s.timestamp_ms, s.value),
        Value::String(s) => {
            out.push('[');
            out.push_str(&format_timestamp(s.timestamp_ms));
            out.push(',');
            out.push_str(&json_string(&s.value));
            out.push(']');
        }
        Value::Vector(v) => {
            out.push('[');
            for (i, s) in v.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str("{\"metric\":");
                labels_json(&mut out, &s.labels);
                out.push_str(",\"value\":");
                push_point(&mut out, s.timestamp_ms, s.value);
                out.push('}');
            }
            out.push(']');
        }
        Value::Matrix(m) => {
            out.push('[');
            for (i, s) in m.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str("{\"metric\":");
                labels_json(&mut out, &s.labels);
                out.push_str(",\"values\":");
                samples_json(&mut out, &s.samples);
                out.push('}');
            }
            out.push(']');
        }
    }
    out.push('}');
    out
}

/// A JSON array of strings.
pub fn string_array(items: &[String]) -> String {
    let mut out = String::from("[");
    for (i, s) in items.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&json_string(s));
    }
    out.push(']');
    out
}

/// A JSON array of label objects.
pub fn labels_array(items: &[Labels]) -> String {
    let mut out = String::from("[");
    for (i, l) in items.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        labels_json(&mut out, l);
    }
    out.push(']');
    out
}

/// `{"status":"success","data":<data>[,"warnings":[...]]}`.
/// Appends Prometheus's `stats` object to a `query_data` object (`?stats=` given).
pub fn with_stats(mut data: String, stats: &QueryStats) -> String {
    let secs = |d: std::time::Duration| format_float(d.as_secs_f64());
    let eval = stats.eval_time + stats.sort_time;
    let total = stats.prepare_time + eval;
    if data.ends_with('}') {
        data.pop();
        data.push_str(&format!(
            ",\"stats\":{{\"timings\":{{\"evalTotalTime\":{},\"resultSortTime\":{},\"queryPreparationTime\":{},\"innerEvalTime\":{},\"execQueueTime\":0,\"execTotalTime\":{}}},\"samples\":{{\"totalQueryableSamples\":{},\"peakSamples\":{}}}}}}}",
            secs(eval),
            secs(stats.sort_time),
            secs(stats.prepare_time),
            secs(stats.eval_time),
            secs(total),
            stats.total_samples,
            stats.peak_samples,
        ));
    }
    data
}

pub fn success(data: &str, warnings: &[String]) -> Response {
    let mut body = String::with_capacity(data.len() + 64);
    body.push_str("{\"status\":\"success\",\"data\":");
    body.push_str(data);
    if !warnings.is_empty() {
        body.push_str(",\"warnings\":");
        body.push_str(&string_array(warnings));
    }
    body.push('}');
    let mut resp = (StatusCode::OK, body).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;
    use store::promql::{InstantSample, Scalar};

    #[test]
    fn floats_match_go() {
        assert_eq!(format_float(1.0), "1");
        assert_eq!(format_float(0.1), "0.1");
        assert_eq!(format_float(-0.0), "-0");
        assert_eq!(format_float(1e20), "100000000000000000000");
        assert_eq!(format_float(1e21), "1e+21");
        assert_eq!(format_float(1.5e300), "1.5e+300");
        assert_eq!(format_float(1e-6), "0.000001");
        assert_eq!(format_float(1.5e-7), "1.5e-07");
        assert_eq!(format_float(123456.789), "123456.789");
        assert_eq!(format_float(f64::NAN), "NaN");
        assert_eq!(format_float(f64::INFINITY), "+Inf");
        assert_eq!(format_float(f64::NEG_INFINITY), "-Inf");
    }

    #[test]
    fn timestamps_match_prometheus() {
        assert_eq!(format_timestamp(1_435_781_451_781), "1435781451.781");
        assert_eq!(format_timestamp(1_435_781_451_000), "1435781451");
        assert_eq!(format_timestamp(1_005), "1.005");
        assert_eq!(format_timestamp(-1_500), "-1.500");
    }

    #[test]
    fn vector_and_scalar_shapes() {
        let v = Value::Vector(vec![InstantSample {
            labels: Labels::from_pairs([("__name__", "up"), ("job", "a\"b")]),
            timestamp_ms: 1_500,
            value: 1.0,
        }]);
        assert_eq!(
            query_data(&v),
            r#"{"resultType":"vector","result":[{"metric":{"__name__":"up","job":"a\"b"},"value":[1.500,"1"]}]}"#
        );
        let s = Value::Scalar(Scalar {
            timestamp_ms: 2_000,
            value: f64::NAN,
        });
        assert_eq!(
            query_data(&s),
            r#"{"resultType":"scalar","result":[2,"NaN"]}"#
        );
    }
}
