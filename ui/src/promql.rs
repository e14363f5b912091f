//! PromQL answers as the pages use them: `query_range` matrices turned into chart
//! [`Series`], and instant vectors as rows.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::chart::Series;
use crate::fetch::{enc, Api};

/// One series of a `query_range` answer: labels and `[time, "value"]` pairs.
#[derive(Clone, Debug, Deserialize, serde::Serialize, PartialEq)]
pub struct MatrixEntry {
    pub metric: BTreeMap<String, String>,
    #[serde(default)]
    pub values: Vec<(f64, String)>,
}

/// One entry of an instant-query vector.
#[derive(Clone, Debug, Deserialize, serde::Serialize, PartialEq)]
pub struct VectorEntry {
    pub metric: BTreeMap<String, String>,
    pub value: (f64, String),
}

#[derive(Deserialize)]
#[serde(tag = "resultType", content = "result", rename_all = "lowercase")]
pub enum QueryResult {
    Matrix(Vec<MatrixEntry>),
    Vector(Vec<VectorEntry>),
    Scalar((f64, String)),
    String((f64, String)),
}

/// A number as Prometheus writes it (`"1.5"`, `"NaN"`, `"+Inf"`).
pub fn parse_value(s: &str) -> f64 {
    match s {
        "+Inf" | "Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        _ => s.parse().unwrap_or(f64::NAN),
    }
}

/// `{a="x", b="y"}` (without `__name__`, which leads instead: `name{...}`).
pub fn series_name(metric: &BTreeMap<String, String>) -> String {
    let name = metric.get("__name__").cloned().unwrap_or_default();
    let labels: Vec<String> = metric
        .iter()
        .filter(|(k, _)| *k != "__name__")
        .map(|(k, v)| format!("{k}=\"{v}\""))
        .collect();
    if labels.is_empty() {
        name
    } else {
        format!("{name}{{{}}}", labels.join(", "))
    }
}

/// A matrix as chart series, named by `legend` (a label's value) or all their labels.
pub fn to_series(matrix: Vec<MatrixEntry>, legend: Option<&str>) -> Vec<Series> {
    matrix
        .into_iter()
        .map(|m| Series {
            name: legend
                .and_then(|l| m.metric.get(l).cloned())
                .unwrap_or_else(|| series_name(&m.metric)),
            points: m.values.iter().map(|(t, v)| (*t, parse_value(v))).collect(),
        })
        .collect()
}

/// `query_range` of `expr` over `start..end` every `step` seconds.
pub async fn range_query(
    api: &Api,
    expr: &str,
    start: f64,
    end: f64,
    step: f64,
) -> Result<Vec<MatrixEntry>, String> {
    let path = format!(
        "/api/v1/query_range?query={}&start={start:.3}&end={end:.3}&step={step}",
        enc(expr)
    );
    match api.get_data::<QueryResult>(&path).await? {
        QueryResult::Matrix(m) => Ok(m),
        _ => Err("query_range answered something other than a matrix".into()),
    }
}

/// Instant query of `expr` at `time`.
pub async fn instant_query(api: &Api, expr: &str, time: f64) -> Result<QueryResult, String> {
    let path = format!("/api/v1/query?query={}&time={time:.3}", enc(expr));
    api.get_data::<QueryResult>(&path).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matrices_become_series() {
        let r: QueryResult = serde_json::from_str(
            r#"{"resultType":"matrix","result":[{"metric":{"__name__":"up","job":"a"},"values":[[1,"1"],[2,"NaN"]]}]}"#,
        )
        .unwrap();
        let QueryResult::Matrix(m) = r else {
            panic!("not a matrix")
        };
        let s = to_series(m.clone(), None);
        assert_eq!(s[0].name, "up{job=\"a\"}");
        assert_eq!(s[0].points[0], (1.0, 1.0));
        assert!(s[0].points[1].1.is_nan());
        assert_eq!(to_series(m, Some("job"))[0].name, "a");
        assert_eq!(parse_value("+Inf"), f64::INFINITY);
    }
}
