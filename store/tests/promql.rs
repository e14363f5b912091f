//! Golden tests for the PromQL engine: every `tests/promql/*.test` file is a script in the
//! spirit of Prometheus's promqltest.
//!
//! ```text
//! # comment
//! load 1m                                   # interval between loaded samples
//!   up{job="a"} 0+1x10                      # 0,1,..,10 at 0,1m,..,10m
//!   up{job="b"} 1 _ stale 4 1x2             # _ = no sample, stale = staleness marker
//!
//! eval instant at 5m up                     # instant query; expected vector follows
//!   up{job="a"} 5
//! eval instant at 5m 42                     # a scalar result is a bare value
//!   42
//! eval instant at 5m up[2m]                 # a matrix result lists value@time
//!   up{job="a"} 4@4m 5@5m
//! eval range from 0 to 4m step 1m up        # range query; expected points per step
//!   up{job="a"} 0 1 2 3 4
//! eval instant at 5m nothing                # no lines: expects an empty result
//! eval_fail instant at 5m sum(up)           # expects an error...
//!   error is not supported yet              # ...whose message contains this (optional)
//! pending eval instant at 5m up             # Prometheus's answer, which Lookout does not
//!   up{job="a"} 5                           # give yet: must fail (a strict xfail)
//! ```
//!
//! Times are Prometheus durations from the epoch (`5m`, `1h30m`) or `0`.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use promql_parser::parser::Expr;
use store::model::{stale_nan, Label, Labels, Sample};
use store::promql::{Engine, EngineOptions, Value};
use store::testing::MemQuerier;

fn parse_time(text: &str) -> Result<i64, String> {
    store::duration::parse_duration(text).map(|d| d.as_millis() as i64)
}

/// Parses a series description (`name{a="b"}`) using the PromQL parser itself.
fn parse_labels(text: &str) -> Result<Labels, String> {
    if text == "{}" {
        return Ok(Labels::default());
    }
    match promql_parser::parser::parse(text)? {
        Expr::VectorSelector(vs) => {
            let mut labels: Vec<Label> = vs
                .matchers
                .matchers
                .iter()
                .map(|m| Label::new(m.name.clone(), m.value.clone()))
                .collect();
            if let Some(name) = vs.name {
                labels.push(Label::new("__name__", name));
            }
            Ok(Labels::new(labels))
        }
        other => Err(format!("not a series description: {other}")),
    }
}

fn parse_value(text: &str) -> Result<f64, String> {
    match text {
        "stale" => Ok(stale_nan()),
        "NaN" => Ok(f64::NAN),
        "Inf" | "+Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        _ => text.parse().map_err(|e| format!("bad value {text:?}: {e}")),
    }
}

/// Expands promqltest's value sequence notation: `a+bxn`, `a-bxn`, `axn`, `_`, `_xn`,
/// `stale`, plain numbers. `None` means "no sample at this position".
fn expand_values(tokens: &[&str]) -> Result<Vec<Option<f64>>, String> {
    let mut out = Vec::new();
    for tok in tokens {
        if let Some((head, count)) = tok.rsplit_once('x') {
            let n: usize = count
                .parse()
                .map_err(|e| format!("bad repeat in {tok:?}: {e}"))?;
            if head == "_" {
                out.extend(std::iter::repeat_n(None, n + 1));
                continue;
            }
            let split = head[1..].find(['+', '-']).map(|i| i + 1);
            let (start, delta) = match split {
                Some(i) => {
                    let d: f64 = head[i + 1..]
                        .parse()
                        .map_err(|e| format!("bad delta in {tok:?}: {e}"))?;
                    (
                        parse_value(&head[..i])?,
                        if &head[i..i + 1] == "-" { -d } else { d },
                    )
                }
                None => (parse_value(head)?, 0.0),
            };
            for i in 0..=n {
                out.push(Some(start + delta * i as f64));
            }
        } else if *tok == "_" {
            out.push(None);
        } else {
            out.push(Some(parse_value(tok)?));
        }
    }
    Ok(out)
}

/// Splits `series values...` where the series part may contain spaces inside braces.
fn split_series_line(line: &str) -> (&str, Vec<&str>) {
    let end = match line.find('}') {
        Some(i) => i + 1,
        None => line.find(char::is_whitespace).unwrap_or(line.len()),
    };
    (line[..end].trim(), line[end..].split_whitespace().collect())
}

fn same(a: f64, b: f64) -> bool {
    (a.is_nan() && b.is_nan()) || a == b || ((a - b).abs() <= 1e-9 * a.abs().max(b.abs()))
}

struct Cmd {
    line: usize,
    header: String,
    body: Vec<(usize, String)>,
}

fn commands(text: &str) -> Vec<Cmd> {
    let mut out: Vec<Cmd> = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.split(" #").next().unwrap_or("");
        if line.trim().is_empty() || line.trim_start().starts_with('#') {
            continue;
        }
        if line.starts_with(char::is_whitespace) {
            if let Some(cmd) = out.last_mut() {
                cmd.body.push((i + 1, line.trim().to_string()));
            }
        } else {
            out.push(Cmd {
                line: i + 1,
                header: line.trim().to_string(),
                body: Vec::new(),
            });
        }
    }
    out
}

fn run_file(path: &Path) -> Vec<String> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => return vec![format!("{}: cannot read: {e}", path.display())],
    };
    let mut querier = MemQuerier::default();
    let mut failures = Vec::new();
    let mut engine: Option<Engine> = None;
    for mut cmd in commands(&text) {
        let at = format!("{}:{}", path.display(), cmd.line);
        // a known divergence from Prometheus: it has to keep failing until it is fixed,
        // then the `pending` goes (as the e2e compliance file's `status: pending`)
        let pending = match cmd.header.strip_prefix("pending ") {
            Some(rest) => {
                cmd.header = rest.trim_start().to_string();
                true
            }
            None => false,
        };
        match (pending, run_cmd(&cmd, &mut querier, &mut engine)) {
            (false, Err(e)) => failures.push(format!("{at}: `{}`: {e}", cmd.header)),
            (true, Ok(())) => failures.push(format!(
                "{at}: `{}`: passes now: remove `pending`",
                cmd.header
            )),
            _ => {}
        }
    }
    failures
}

fn run_cmd(cmd: &Cmd, querier: &mut MemQuerier, engine: &mut Option<Engine>) -> Result<(), String> {
    let words: Vec<&str> = cmd.header.split_whitespace().collect();
    match words.as_slice() {
        ["load", interval] => {
            let step = parse_time(interval)?;
            for (_, line) in &cmd.body {
                let (series, tokens) = split_series_line(line);
                let labels = parse_labels(series)?;
                let values = expand_values(&tokens)?;
                let samples = querier.series.entry(labels).or_default();
                for (i, v) in values.into_iter().enumerate() {
                    if let Some(v) = v {
                        samples.push(Sample::new(i as i64 * step, v));
                    }
                }
                samples.sort_by_key(|s| s.timestamp_ms);
            }
            // a load after an eval must be visible: rebuild the engine over the new data
            *engine = None;
            Ok(())
        }
        [kind @ ("eval" | "eval_fail"), "instant", "at", time, expr @ ..] => {
            let e = engine_for(querier, engine);
            let result = e.instant(&expr.join(" "), parse_time(time)?);
            check(kind == &"eval_fail", result, &cmd.body, None)
        }
        [kind @ ("eval" | "eval_fail"), "range", "from", start, "to", end, "step", step, expr @ ..] =>
        {
            let e = engine_for(querier, engine);
            let (start, end, step) = (parse_time(start)?, parse_time(end)?, parse_time(step)?);
            let result = e.range(&expr.join(" "), start, end, step);
            check(kind == &"eval_fail", result, &cmd.body, Some((start, step)))
        }
        _ => Err("unknown command".into()),
    }
}

fn engine_for<'a>(querier: &mut MemQuerier, engine: &'a mut Option<Engine>) -> &'a Engine {
    engine.get_or_insert_with(|| Engine::new(Arc::new(querier.clone()), EngineOptions::default()))
}

fn check(
    expect_fail: bool,
    result: Result<Value, store::promql::PromqlError>,
    body: &[(usize, String)],
    range: Option<(i64, i64)>,
) -> Result<(), String> {
    let value = match (expect_fail, result) {
        (true, Err(e)) => {
            if let Some((_, want)) = body.iter().find(|(_, l)| l.starts_with("error ")) {
                let want = want.trim_start_matches("error ").trim();
                if !e.to_string().contains(want) {
                    return Err(format!(
                        "error {:?} does not contain {want:?}",
                        e.to_string()
                    ));
                }
            }
            return Ok(());
        }
        (true, Ok(v)) => return Err(format!("expected an error, got {v:?}")),
        (false, Err(e)) => return Err(format!("unexpected error: {e}")),
        (false, Ok(v)) => v,
    };
    match value {
        Value::Scalar(s) => {
            let [(_, want)] = body else {
                return Err(format!("got scalar {}, expected {body:?}", s.value));
            };
            let want = parse_value(want)?;
            if !same(s.value, want) {
                return Err(format!("scalar: got {}, want {want}", s.value));
            }
            Ok(())
        }
        Value::String(s) => {
            let [(_, want)] = body else {
                return Err(format!("got string {:?}", s.value));
            };
            if want.trim_matches('"') != s.value {
                return Err(format!("string: got {:?}, want {want}", s.value));
            }
            Ok(())
        }
        Value::Vector(v) => {
            let got: BTreeMap<Labels, f64> = v.into_iter().map(|s| (s.labels, s.value)).collect();
            let mut want = BTreeMap::new();
            for (line_no, line) in body {
                let (series, tokens) = split_series_line(line);
                let [value] = tokens.as_slice() else {
                    return Err(format!("line {line_no}: one value expected"));
                };
                want.insert(parse_labels(series)?, parse_value(value)?);
            }
            if got.len() != want.len()
                || !got
                    .iter()
                    .zip(want.iter())
                    .all(|((gl, gv), (wl, wv))| gl == wl && same(*gv, *wv))
            {
                return Err(format!("vector mismatch:\n  got  {got:?}\n  want {want:?}"));
            }
            Ok(())
        }
        Value::Matrix(m) => {
            let got: BTreeMap<Labels, Vec<(i64, f64)>> = m
                .into_iter()
                .map(|s| {
                    (
                        s.labels,
                        s.samples
                            .iter()
                            .map(|p| (p.timestamp_ms, p.value))
                            .collect(),
                    )
                })
                .collect();
            let mut want: BTreeMap<Labels, Vec<(i64, f64)>> = BTreeMap::new();
            for (_, line) in body {
                let (series, tokens) = split_series_line(line);
                let mut points = Vec::new();
                if let Some((start, step)) = range {
                    for (i, v) in expand_values(&tokens)?.into_iter().enumerate() {
                        if let Some(v) = v {
                            points.push((start + i as i64 * step, v));
                        }
                    }
                } else {
                    for tok in tokens {
                        let (v, t) = tok
                            .split_once('@')
                            .ok_or_else(|| format!("expected value@time, got {tok:?}"))?;
                        points.push((parse_time(t)?, parse_value(v)?));
                    }
                }
                want.insert(parse_labels(series)?, points);
            }
            let equal = got.len() == want.len()
                && got.iter().zip(want.iter()).all(|((gl, gp), (wl, wp))| {
                    gl == wl
                        && gp.len() == wp.len()
                        && gp.iter().zip(wp).all(|(a, b)| a.0 == b.0 && same(a.1, b.1))
                });
            if !equal {
                return Err(format!("matrix mismatch:\n  got  {got:?}\n  want {want:?}"));
            }
            Ok(())
        }
    }
}

#[test]
fn promql_golden_files() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/promql");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "test"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no .test files in {}", dir.display());
    let failures: Vec<String> = files.iter().flat_map(|f| run_file(f)).collect();
    assert!(
        failures.is_empty(),
        "{} failing case(s):\n{}",
        failures.len(),
        failures.join("\n")
    );
}
