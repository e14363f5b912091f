//! Prometheus's JSON shapes, written by hand because Prometheus's number formatting
//! (timestamps as `seconds.millis`, values as strings in Go's float format) cannot be
//! expressed with serde's number types.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use rayon::prelude::*;
use store::model::{Labels, Sample, Series};
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
///
/// Go finds the shortest round-trip digits with Ryū, rounding a tie to even, and so does
/// the `ryu` crate (Rust's `Display` rounds such a tie up: `233115890514796.125` is
/// `…796.12` in Prometheus and in `ryu`, `…796.13` in `Display`). Only the layout differs:
/// `ryu` writes `1.0`, `1e16` and `1e-7` where Go writes `1`, `10000000000000000` and
/// `1e-07`, so the digits are re-laid out here.
pub fn write_float(out: &mut String, f: f64) {
    if f.is_nan() {
        out.push_str("NaN");
        return;
    }
    if f.is_infinite() {
        out.push_str(if f > 0.0 { "+Inf" } else { "-Inf" });
        return;
    }
    let mut buf = ryu::Buffer::new();
    let shortest = buf.format_finite(f);
    let Some((mantissa, exp)) = shortest.split_once('e') else {
        out.push_str(shortest.strip_suffix(".0").unwrap_or(shortest));
        return;
    };
    let exp: i32 = exp.parse().unwrap_or(0);
    let (negative, mantissa) = match mantissa.strip_prefix('-') {
        Some(m) => (true, m),
        None => (false, mantissa),
    };
    if negative {
        out.push('-');
    }
    let abs = f.abs();
    if !(1e-6..1e21).contains(&abs) {
        // Go's exponent form: a sign and at least two digits
        out.push_str(mantissa);
        out.push_str(if exp < 0 { "e-" } else { "e+" });
        if exp.abs() < 10 {
            out.push('0');
        }
        out.push_str(itoa::Buffer::new().format(exp.abs()));
        return;
    }
    // plain notation: the digits with the decimal point moved by `exp`
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    let point = 1 + exp; // digits before the decimal point
    if point <= 0 {
        out.push_str("0.");
        out.extend(std::iter::repeat_n('0', point.unsigned_abs() as usize));
        out.push_str(&digits);
    } else if point as usize >= digits.len() {
        out.push_str(&digits);
        out.extend(std::iter::repeat_n('0', point as usize - digits.len()));
    } else {
        let (int, frac) = digits.split_at(point as usize);
        out.push_str(int);
        out.push('.');
        out.push_str(frac);
    }
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
    if ms < 0 {
        out.push('-');
    }
    let abs = ms.unsigned_abs();
    let (secs, frac) = (abs / 1000, abs % 1000);
    out.push_str(itoa::Buffer::new().format(secs));
    if frac != 0 {
        // three digits, leading zeros kept: 5 ms is `.005`
        out.push('.');
        let digits = [frac / 100, frac / 10 % 10, frac % 10];
        out.extend(digits.iter().map(|&d| char::from(b'0' + d as u8)));
    }
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

/// `{"metric":{...},"values":[[t,"v"],...]}`: one series of a matrix.
fn matrix_series_json(out: &mut String, s: &Series) {
    out.push_str("{\"metric\":");
    labels_json(out, &s.labels);
    out.push_str(",\"values\":");
    samples_json(out, &s.samples);
    out.push('}');
}

/// Points from which a matrix is written on all cores, a series per task: below it the
/// fan-out costs more than it saves.
const PARALLEL_MATRIX_POINTS: usize = 4096;
/// Bytes a point takes in the answer, to size the buffers once (`[1795237200,"123.45"],`
/// with a full-precision float is about 30).
const POINT_BYTES: usize = 32;

fn matrix_json(out: &mut String, m: &[Series]) {
    let points: usize = m.iter().map(|s| s.samples.len()).sum();
    out.reserve(points * POINT_BYTES + m.len() * 128);
    out.push('[');
    if points >= PARALLEL_MATRIX_POINTS && m.len() > 1 {
        let parts: Vec<String> = m
            .par_iter()
            .map(|s| {
                let mut part = String::with_capacity(s.samples.len() * POINT_BYTES + 128);
                matrix_series_json(&mut part, s);
                part
            })
            .collect();
        for (i, part) in parts.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(part);
        }
    } else {
        for (i, s) in m.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            matrix_series_json(out, s);
        }
    }
    out.push(']');
}

/// Appends `{"resultType":...,"result":...}` for a query result to `out`, with
/// Prometheus's `stats` object when `stats` is given (`?stats=` asked for).
pub fn write_query_data(out: &mut String, value: &Value, stats: Option<&QueryStats>) {
    out.push_str("{\"resultType\":\"");
    out.push_str(value.type_name());
    out.push_str("\",\"result\":");
    match value {
        Value::Scalar(s) => push_point(out, s.timestamp_ms, s.value),
        Value::String(s) => {
            out.push('[');
            write_timestamp(out, s.timestamp_ms);
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
                labels_json(out, &s.labels);
                out.push_str(",\"value\":");
                push_point(out, s.timestamp_ms, s.value);
                out.push('}');
            }
            out.push(']');
        }
        Value::Matrix(m) => matrix_json(out, m),
    }
    if let Some(stats) = stats {
        write_stats(out, stats);
    }
    out.push('}');
}

/// `{"resultType":...,"result":...}` for a query result.
pub fn query_data(value: &Value) -> String {
    let mut out = String::with_capacity(256);
    write_query_data(&mut out, value, None);
    out
}

/// `,"stats":{...}`: Prometheus's per-query timings and sample counts.
fn write_stats(out: &mut String, stats: &QueryStats) {
    let secs = |d: std::time::Duration| format_float(d.as_secs_f64());
    let eval = stats.eval_time + stats.sort_time;
    let total = stats.prepare_time + eval;
    out.push_str(&format!(
        ",\"stats\":{{\"timings\":{{\"evalTotalTime\":{},\"resultSortTime\":{},\"queryPreparationTime\":{},\"innerEvalTime\":{},\"execQueueTime\":0,\"execTotalTime\":{}}},\"samples\":{{\"totalQueryableSamples\":{},\"peakSamples\":{}}},\"archive\":{{\"filesRead\":{},\"resolution\":\"{}\"}}}}",
        secs(eval),
        secs(stats.sort_time),
        secs(stats.prepare_time),
        secs(stats.eval_time),
        secs(total),
        stats.total_samples,
        stats.peak_samples,
        stats.archive_files,
        stats
            .rollup_resolution_ms
            .map_or_else(|| "raw".to_string(), store::archive::rollup::resolution_name),
    ));
}

/// A whole successful query answer: `{"status":"success","data":{...}}`, written into one
/// buffer (an answer can be megabytes; it is neither copied nor grown piecemeal).
pub fn query_success(value: &Value, stats: Option<&QueryStats>) -> Response {
    let mut body = String::from(SUCCESS_PREFIX);
    write_query_data(&mut body, value, stats);
    body.push('}');
    json_response(body)
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

const SUCCESS_PREFIX: &str = "{\"status\":\"success\",\"data\":";

fn json_response(body: String) -> Response {
    let mut resp = (StatusCode::OK, body).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

/// `{"status":"success","data":<data>[,"warnings":[...]]}`.
pub fn success(data: &str, warnings: &[String]) -> Response {
    let mut body = String::with_capacity(data.len() + 64);
    body.push_str(SUCCESS_PREFIX);
    body.push_str(data);
    if !warnings.is_empty() {
        body.push_str(",\"warnings\":");
        body.push_str(&string_array(warnings));
    }
    body.push('}');
    json_response(body)
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
    fn floats_are_go_shortest_round_trip_digits() {
        // written by Prometheus 2.42 for these scalars (`/api/v1/query?query=<literal>`):
        // a tie rounds to even, unlike Rust's `Display`
        let tie = f64::from_bits(0x42ea_8090_bb0f_6d84); // exactly 233115890514796.125
        assert_eq!("233115890514796.125".parse::<f64>(), Ok(tie));
        assert_eq!(format_float(tie), "233115890514796.12");
        assert_eq!(format_float(2192957440.0000005), "2192957440.0000005");
        assert_eq!(format_float(1e15), "1000000000000000");
        assert_eq!(format_float(1e16), "10000000000000000");
        assert_eq!(format_float(-2.5e-6), "-0.0000025");
        assert_eq!(format_float(-1.5e-7), "-1.5e-07");
        assert_eq!(format_float(1.2345e123), "1.2345e+123");
        assert_eq!(format_float(5e-324), "5e-324");
        // any value: the same number of digits as `Display` (both shortest), the same
        // notation, and parsed back, the same bits
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let digit_count = |s: &str| {
            let m = s.split('e').next().unwrap_or(s);
            m.trim_start_matches(['-', '0', '.'])
                .chars()
                .filter(char::is_ascii_digit)
                .count()
        };
        for i in 0..300_000u64 {
            let f = match i % 4 {
                0 => f64::from_bits(next()),
                1 => (next() % 1_000_000_000) as f64 / 1000.0,
                2 => (next() % 10_000) as f64 / 3.0,
                _ => 1.0 / ((next() % 100_000) as f64 + 1.0),
            };
            if !f.is_finite() {
                continue;
            }
            let ours = format_float(f);
            assert_eq!(
                ours.parse::<f64>().ok().map(f64::to_bits),
                Some(f.to_bits()),
                "{ours}"
            );
            let abs = f.abs();
            let display = if abs != 0.0 && !(1e-6..1e21).contains(&abs) {
                format!("{f:e}")
            } else {
                format!("{f}")
            };
            let plain_ours = !ours.contains('e');
            assert_eq!(plain_ours, !display.contains('e'), "{ours} vs {display}");
            // trailing zeros of a plain integer are not digits of the mantissa
            let trim = |s: &str| -> String {
                if s.contains('.') || s.contains('e') {
                    s.to_string()
                } else {
                    s.trim_end_matches('0').to_string()
                }
            };
            assert_eq!(
                digit_count(&trim(&ours)),
                digit_count(&trim(&display)),
                "{ours} vs {display}"
            );
        }
    }

    #[test]
    fn timestamps_match_prometheus() {
        assert_eq!(format_timestamp(1_435_781_451_781), "1435781451.781");
        assert_eq!(format_timestamp(1_435_781_451_000), "1435781451");
        assert_eq!(format_timestamp(1_005), "1.005");
        assert_eq!(format_timestamp(-1_500), "-1.500");
        assert_eq!(format_timestamp(1_050), "1.050");
        assert_eq!(format_timestamp(0), "0");
        assert_eq!(format_timestamp(-999), "-0.999");
    }

    #[test]
    fn a_large_matrix_is_written_in_series_order_with_every_point() {
        let series: Vec<Series> = (0..7)
            .map(|i| Series {
                labels: Labels::from_pairs([("job", format!("j{i}").as_str())]),
                samples: (0..1000)
                    .map(|t| Sample::new(t * 15_000, (i * 1000 + t) as f64 / 3.0))
                    .collect(),
            })
            .collect();
        let points: usize = series.iter().map(|s| s.samples.len()).sum();
        assert!(
            points >= PARALLEL_MATRIX_POINTS,
            "covers the parallel writer"
        );
        let json: serde_json::Value =
            serde_json::from_str(&query_data(&Value::Matrix(series.clone()))).unwrap();
        let result = json["result"].as_array().unwrap();
        assert_eq!(result.len(), series.len());
        for (got, want) in result.iter().zip(&series) {
            assert_eq!(got["metric"]["job"], want.labels.get("job").unwrap());
            let values = got["values"].as_array().unwrap();
            assert_eq!(values.len(), want.samples.len());
            for (v, s) in values.iter().zip(&want.samples) {
                assert_eq!(v[0].as_f64().unwrap(), s.timestamp_ms as f64 / 1000.0);
                assert_eq!(v[1].as_str().unwrap(), format_float(s.value));
            }
        }
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
