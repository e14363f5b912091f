//! Pure logic of the query benchmark: percentiles of the timings, and the check that Lookout
//! and Prometheus gave the same answer (so a fast wrong answer is never reported as a win).

use std::collections::BTreeMap;

use serde::Serialize;

/// Nearest-rank percentile (`q` in 0..=1) of `values`: the smallest value with at least
/// `q * n` values at or below it. With 20 runs, p99 is the slowest run and p50 the 10th.
pub fn percentile(values: &[f64], q: f64) -> Option<f64> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() || !(0.0..=1.0).contains(&q) {
        return None;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
    Some(v[rank - 1])
}

/// Relative tolerance for values; an absolute floor covers sums that cancel to about zero.
pub const REL_TOLERANCE: f64 = 1e-6;
const ABS_FLOOR: f64 = 1e-12;

/// Whether two sample values agree: both NaN, the same infinity, or within
/// [`REL_TOLERANCE`] of the larger magnitude.
pub fn values_agree(a: f64, b: f64) -> bool {
    if a.is_nan() || b.is_nan() {
        return a.is_nan() && b.is_nan();
    }
    if a.is_infinite() || b.is_infinite() {
        return a == b;
    }
    (a - b).abs() <= REL_TOLERANCE * a.abs().max(b.abs()) + ABS_FLOOR
}

/// A range-query answer: series (sorted labels) to their points.
pub type Matrix = BTreeMap<Vec<(String, String)>, Vec<(f64, f64)>>;

/// Parses a `/api/v1/query_range` JSON body into a [`Matrix`].
pub fn parse_matrix(body: &[u8]) -> Result<Matrix, String> {
    let v: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| format!("response is not JSON: {e}"))?;
    if v["status"] != "success" {
        return Err(format!(
            "status {}: {} {}",
            v["status"], v["errorType"], v["error"]
        ));
    }
    if v["data"]["resultType"] != "matrix" {
        return Err(format!(
            "resultType {} (expected matrix)",
            v["data"]["resultType"]
        ));
    }
    let result = v["data"]["result"]
        .as_array()
        .ok_or("data.result is not an array")?;
    let mut out = Matrix::new();
    for s in result {
        let labels: Vec<(String, String)> = s["metric"]
            .as_object()
            .ok_or("a series has no metric object")?
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
            .collect();
        let mut points = Vec::new();
        for p in s["values"].as_array().ok_or("a series has no values")? {
            let t = p[0].as_f64().ok_or("a point has no numeric timestamp")?;
            let raw = p[1].as_str().ok_or("a point value is not a string")?;
            let val = match raw {
                "NaN" => f64::NAN,
                "+Inf" => f64::INFINITY,
                "-Inf" => f64::NEG_INFINITY,
                x => x
                    .parse()
                    .map_err(|e| format!("point value {x:?} is not a number: {e}"))?,
            };
            points.push((t, val));
        }
        let labels_text = format!("{labels:?}");
        if out.insert(labels, points).is_some() {
            return Err(format!("series {labels_text} appears twice"));
        }
    }
    Ok(out)
}

#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct Agreement {
    pub lookout_series: usize,
    pub prometheus_series: usize,
    pub points: usize,
    /// Series only one side returned, plus points that differ.
    pub mismatches: usize,
    /// Largest relative difference among agreeing finite values.
    pub max_rel_diff: f64,
    /// The first few differences, for the report.
    pub examples: Vec<String>,
}

impl Agreement {
    pub fn ok(&self) -> bool {
        self.mismatches == 0
    }
}

fn show(labels: &[(String, String)]) -> String {
    let inner: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
    format!("{{{}}}", inner.join(","))
}

/// Compares Lookout's answer `l` with Prometheus's `p`: the same series, and per series the
/// same timestamps with values that [agree](values_agree).
pub fn compare(l: &Matrix, p: &Matrix) -> Agreement {
    let mut a = Agreement {
        lookout_series: l.len(),
        prometheus_series: p.len(),
        ..Default::default()
    };
    let note = |a: &mut Agreement, msg: String| {
        a.mismatches += 1;
        if a.examples.len() < 5 {
            a.examples.push(msg);
        }
    };
    for (labels, lp) in l {
        let Some(pp) = p.get(labels) else {
            note(&mut a, format!("only Lookout returned {}", show(labels)));
            continue;
        };
        let (mut i, mut j) = (0, 0);
        while i < lp.len() || j < pp.len() {
            match (lp.get(i), pp.get(j)) {
                (Some(x), Some(y)) if x.0 == y.0 => {
                    a.points += 1;
                    if values_agree(x.1, y.1) {
                        if x.1.is_finite() && y.1.is_finite() && x.1 != y.1 {
                            let rel = (x.1 - y.1).abs() / x.1.abs().max(y.1.abs());
                            a.max_rel_diff = a.max_rel_diff.max(rel);
                        }
                    } else {
                        note(
                            &mut a,
                            format!(
                                "{} at {}: Lookout {} vs Prometheus {}",
                                show(labels),
                                x.0,
                                x.1,
                                y.1
                            ),
                        );
                    }
                    i += 1;
                    j += 1;
                }
                (Some(x), y) if y.is_none_or(|y| x.0 < y.0) => {
                    note(
                        &mut a,
                        format!("{} at {}: only Lookout has a point", show(labels), x.0),
                    );
                    i += 1;
                }
                (_, Some(y)) => {
                    note(
                        &mut a,
                        format!("{} at {}: only Prometheus has a point", show(labels), y.0),
                    );
                    j += 1;
                }
                (None, None) => break,
                // unreachable by the guards above; stop rather than loop
                (Some(_), _) => break,
            }
        }
    }
    for labels in p.keys().filter(|k| !l.contains_key(*k)) {
        note(&mut a, format!("only Prometheus returned {}", show(labels)));
    }
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<f64> = (1..=20).map(|i| i as f64).collect();
        assert_eq!(percentile(&v, 0.5), Some(10.0));
        assert_eq!(percentile(&v, 0.99), Some(20.0));
        assert_eq!(percentile(&v, 0.95), Some(19.0));
        assert_eq!(percentile(&v, 0.0), Some(1.0));
        assert_eq!(percentile(&[3.0, 1.0, 2.0], 0.5), Some(2.0));
        assert_eq!(percentile(&[5.0], 0.99), Some(5.0));
        assert_eq!(percentile(&[], 0.5), None);
        assert_eq!(percentile(&[f64::NAN, 2.0], 0.5), Some(2.0));
        assert_eq!(percentile(&[1.0], 1.5), None);
    }

    #[test]
    fn values_agree_within_tolerance() {
        assert!(values_agree(1.0, 1.0 + 5e-7));
        assert!(!values_agree(1.0, 1.0 + 2e-6));
        assert!(values_agree(1e9, 1e9 + 500.0));
        assert!(values_agree(0.0, 1e-13));
        assert!(!values_agree(0.0, 1e-9));
        assert!(values_agree(f64::NAN, f64::NAN));
        assert!(!values_agree(f64::NAN, 0.0));
        assert!(values_agree(f64::INFINITY, f64::INFINITY));
        assert!(!values_agree(f64::INFINITY, f64::NEG_INFINITY));
        assert!(!values_agree(f64::INFINITY, 1e308));
    }

    fn body(series: &[(&str, &[(f64, &str)])]) -> Vec<u8> {
        let result: Vec<serde_json::Value> = series
            .iter()
            .map(|(job, pts)| {
                serde_json::json!({
                    "metric": {"job": job},
                    "values": pts.iter().map(|(t, v)| serde_json::json!([t, v])).collect::<Vec<_>>(),
                })
            })
            .collect();
        serde_json::to_vec(&serde_json::json!({
            "status": "success",
            "data": {"resultType": "matrix", "result": result}
        }))
        .unwrap()
    }

    #[test]
    fn equal_answers_agree_regardless_of_series_order() {
        let l = parse_matrix(&body(&[
            ("a", &[(1.0, "1"), (2.0, "NaN")]),
            ("b", &[(1.0, "+Inf")]),
        ]))
        .unwrap();
        let p = parse_matrix(&body(&[
            ("b", &[(1.0, "+Inf")]),
            ("a", &[(1.0, "1.0000001"), (2.0, "NaN")]),
        ]))
        .unwrap();
        let a = compare(&l, &p);
        assert!(a.ok(), "{a:?}");
        assert_eq!((a.lookout_series, a.prometheus_series, a.points), (2, 2, 3));
        assert!(a.max_rel_diff > 0.0 && a.max_rel_diff < 1e-6);
    }

    #[test]
    fn differences_are_counted_and_described() {
        let l = parse_matrix(&body(&[
            ("a", &[(1.0, "1"), (2.0, "2"), (4.0, "4")]),
            ("only-l", &[(1.0, "1")]),
        ]))
        .unwrap();
        let p = parse_matrix(&body(&[
            ("a", &[(1.0, "1.5"), (3.0, "3"), (4.0, "4")]),
            ("only-p", &[(1.0, "1")]),
        ]))
        .unwrap();
        let a = compare(&l, &p);
        // value at 1, Lookout-only point at 2, Prometheus-only point at 3, two series
        assert_eq!(a.mismatches, 5, "{a:?}");
        assert!(!a.ok());
        assert!(a
            .examples
            .iter()
            .any(|e| e.contains("Lookout 1 vs Prometheus 1.5")));
        assert!(a
            .examples
            .iter()
            .any(|e| e.contains("only Lookout has a point")));
        assert!(a
            .examples
            .iter()
            .any(|e| e.contains("only Prometheus returned")));
    }

    #[test]
    fn errors_and_wrong_shapes_are_reported() {
        let err = br#"{"status":"error","errorType":"execution","error":"too many samples"}"#;
        assert!(parse_matrix(err).unwrap_err().contains("too many samples"));
        let vector = br#"{"status":"success","data":{"resultType":"vector","result":[]}}"#;
        assert!(parse_matrix(vector).unwrap_err().contains("vector"));
        assert!(parse_matrix(b"<html>").unwrap_err().contains("not JSON"));
        let bad = body(&[("a", &[(1.0, "one")])]);
        assert!(parse_matrix(&bad).unwrap_err().contains("\"one\""));
    }
}
