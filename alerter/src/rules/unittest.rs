//! `promtool test rules` unit-test files run against Lookout's evaluator (`lookout test
//! rules FILE...`), as promtool 2.42 runs them:
//!
//! * `rule_files` (relative to the test file, globs allowed), `evaluation_interval`
//!   (default 1m), `group_eval_order`, `tests` with `interval` (default: the evaluation
//!   interval), `input_series` in promqltest's expanding notation (`a+bxn`, `a-bxn`, `axn`,
//!   `_`, `_xn`, `stale`), `external_labels`, `external_url`, `alert_rule_test` and
//!   `promql_expr_test`.
//! * Every group is evaluated at `0, eval_interval, 2*eval_interval, ...` up to the last
//!   `eval_time` into an in-memory store that also receives the rules' output. Alerts are
//!   checked against the evaluation at or just before each `eval_time` (firing ones only,
//!   labels and annotations); PromQL tests query the store at their `eval_time` after all
//!   evaluations. Failures are printed in promtool's words.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::RwLock;
use serde::Deserialize;
use store::contract::{LabelMatcher, MetricsQuerier};
use store::duration::{format_duration, parse_duration};
use store::model::{stale_nan, Label, Labels, MetricBatch, MetricMetadata, Series};
use store::promql::{Engine, EngineOptions, Value};
use store::testing::MemQuerier;

use super::eval::{eval_group, AlertState, EvalContext, GroupState, Health};
use super::file::{load_rule_files, Rule, RuleGroup};
use crate::model::LabelSet;

/// The outcome of one test file: passed, and what promtool would print for it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TestFileReport {
    pub passed: bool,
    pub output: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TestFile {
    #[serde(default)]
    rule_files: Vec<String>,
    #[serde(default)]
    evaluation_interval: Option<String>,
    #[serde(default)]
    group_eval_order: Vec<String>,
    #[serde(default)]
    tests: Vec<TestGroup>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TestGroup {
    #[serde(default)]
    interval: Option<String>,
    #[serde(default)]
    input_series: Vec<InputSeries>,
    #[serde(default)]
    alert_rule_test: Vec<AlertTestCase>,
    #[serde(default)]
    promql_expr_test: Vec<PromqlTestCase>,
    #[serde(default)]
    external_labels: LabelSet,
    #[serde(default)]
    external_url: String,
    #[serde(default)]
    name: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InputSeries {
    series: String,
    #[serde(default)]
    values: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AlertTestCase {
    eval_time: String,
    alertname: String,
    #[serde(default)]
    exp_alerts: Vec<ExpAlert>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExpAlert {
    #[serde(default)]
    exp_labels: LabelSet,
    #[serde(default)]
    exp_annotations: LabelSet,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PromqlTestCase {
    expr: String,
    eval_time: String,
    #[serde(default)]
    exp_samples: Vec<ExpSample>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExpSample {
    labels: String,
    value: f64,
}

/// Runs one test file and reports as promtool prints it.
pub fn run_test_file(path: &Path) -> TestFileReport {
    let mut output = format!("Unit Testing:  {}\n", path.display());
    let mut warnings = Vec::new();
    let errors = run(path, &mut warnings);
    for w in warnings {
        output.push_str(&format!("  WARNING: {w}\n"));
    }
    let passed = errors.is_empty();
    if passed {
        output.push_str("  SUCCESS\n");
    } else {
        output.push_str("  FAILED:\n");
        for e in errors {
            output.push_str(&e);
            output.push_str("\n\n");
        }
    }
    output.push('\n');
    TestFileReport { passed, output }
}

fn run(path: &Path, warnings: &mut Vec<String>) -> Vec<String> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => return vec![format!("  {}: {e}", path.display())],
    };
    let file: TestFile = match serde_yaml::from_str(&text) {
        Ok(f) => f,
        Err(e) => return vec![format!("  {}: {e}", path.display())],
    };
    let eval_interval = match file.evaluation_interval.as_deref() {
        None => Duration::from_secs(60),
        Some(s) => match parse_duration(s) {
            Ok(d) if !d.is_zero() => d,
            Ok(_) => Duration::from_secs(60),
            Err(e) => return vec![format!("  evaluation_interval: {e}")],
        },
    };
    let mut order = BTreeMap::new();
    for (i, g) in file.group_eval_order.iter().enumerate() {
        if order.insert(g.clone(), i).is_some() {
            return vec![format!("group name repeated in evaluation order: {g}")];
        }
    }
    let dir = path.parent().unwrap_or(Path::new("."));
    let rule_files = match resolve_rule_files(dir, &file.rule_files, warnings) {
        Ok(f) => f,
        Err(e) => return vec![e],
    };
    let groups = match load_rule_files(&rule_files) {
        Ok(g) => g,
        Err(errs) => return errs.iter().map(|e| e.to_string()).collect(),
    };
    // promtool orders the groups named in group_eval_order first, in that order
    let mut groups: Vec<RuleGroup> = groups;
    if !order.is_empty() {
        for name in order.keys() {
            if !groups.iter().any(|g| &g.name == name) {
                return vec![format!("  group {name:?} in group_eval_order not found")];
            }
        }
        groups.sort_by_key(|g| order.get(&g.name).copied().unwrap_or(0));
    }
    let mut errors = Vec::new();
    for tg in &file.tests {
        errors.extend(run_group_test(tg, &groups, eval_interval));
    }
    errors
}

/// `rule_files` entries relative to the test file's directory; `*` and `?` in the last
/// path component are expanded (sorted), as Go's `filepath.Glob` would. An entry that
/// matches nothing is a warning, as in promtool.
fn resolve_rule_files(
    dir: &Path,
    entries: &[String],
    warnings: &mut Vec<String>,
) -> Result<Vec<PathBuf>, String> {
    let mut out = Vec::new();
    for e in entries {
        let p = Path::new(e);
        let full = if p.is_absolute() {
            p.to_path_buf()
        } else {
            dir.join(p)
        };
        let name = full
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if !name.contains(['*', '?']) {
            if full.exists() {
                out.push(full);
            } else {
                warnings.push(format!("no file match pattern {e}"));
            }
            continue;
        }
        let parent = full.parent().unwrap_or(Path::new("."));
        let mut found: Vec<PathBuf> = std::fs::read_dir(parent)
            .map_err(|err| format!("  {}: {err}", parent.display()))?
            .filter_map(Result::ok)
            .filter(|d| wildcard(&name, &d.file_name().to_string_lossy()))
            .map(|d| d.path())
            .collect();
        found.sort();
        if found.is_empty() {
            warnings.push(format!("no file match pattern {e}"));
        }
        out.extend(found);
    }
    Ok(out)
}

fn wildcard(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    fn go(p: &[char], n: &[char]) -> bool {
        match p.first() {
            None => n.is_empty(),
            Some('*') => (0..=n.len()).any(|i| go(&p[1..], &n[i..])),
            Some('?') => !n.is_empty() && go(&p[1..], &n[1..]),
            Some(c) => n.first() == Some(c) && go(&p[1..], &n[1..]),
        }
    }
    go(&p, &n)
}

/// The store of one test: input series plus everything the rules wrote.
#[derive(Default)]
pub(crate) struct SharedStore(RwLock<MemQuerier>);

impl SharedStore {
    pub(crate) fn append(&self, batch: MetricBatch) {
        let mut q = self.0.write();
        for s in batch.series {
            let samples = q.series.entry(s.labels).or_default();
            for sample in s.samples {
                match samples.last_mut() {
                    Some(last) if last.timestamp_ms == sample.timestamp_ms => *last = sample,
                    Some(last) if last.timestamp_ms > sample.timestamp_ms => {
                        let at = samples.partition_point(|x| x.timestamp_ms < sample.timestamp_ms);
                        if samples
                            .get(at)
                            .is_some_and(|x| x.timestamp_ms == sample.timestamp_ms)
                        {
                            samples[at] = sample;
                        } else {
                            samples.insert(at, sample);
                        }
                    }
                    _ => samples.push(sample),
                }
            }
        }
    }
}

impl MetricsQuerier for SharedStore {
    fn select(
        &self,
        matchers: &[LabelMatcher],
        mint: i64,
        maxt: i64,
    ) -> store::Result<Vec<Series>> {
        self.0.read().select(matchers, mint, maxt)
    }

    fn series(&self, sets: &[Vec<LabelMatcher>], a: i64, b: i64) -> store::Result<Vec<Labels>> {
        self.0.read().series(sets, a, b)
    }

    fn label_names(
        &self,
        sets: &[Vec<LabelMatcher>],
        a: i64,
        b: i64,
    ) -> store::Result<Vec<String>> {
        self.0.read().label_names(sets, a, b)
    }

    fn label_values(
        &self,
        name: &str,
        sets: &[Vec<LabelMatcher>],
        a: i64,
        b: i64,
    ) -> store::Result<Vec<String>> {
        self.0.read().label_values(name, sets, a, b)
    }

    fn metadata(&self) -> store::Result<Vec<MetricMetadata>> {
        self.0.read().metadata()
    }
}

type Pairs = Vec<(String, String)>;
type LabelsAndAnnotations = Vec<(Pairs, Pairs)>;

fn run_group_test(tg: &TestGroup, groups: &[RuleGroup], eval_interval: Duration) -> Vec<String> {
    let interval = match tg.interval.as_deref() {
        None => eval_interval,
        Some(s) => match parse_duration(s) {
            Ok(d) if !d.is_zero() => d,
            Ok(_) => eval_interval,
            Err(e) => return vec![format!("    interval: {e}")],
        },
    };
    let store = Arc::new(SharedStore::default());
    for s in &tg.input_series {
        let labels = match parse_series_labels(&s.series) {
            Ok(l) => l,
            Err(e) => return vec![format!("    series {:?}: {e}", s.series)],
        };
        let values = match expand_series_values(&s.values) {
            Ok(v) => v,
            Err(e) => return vec![format!("    series {:?}: {e}", s.series)],
        };
        let step = ms(interval);
        let samples = values
            .iter()
            .enumerate()
            .filter_map(|(i, v)| v.map(|v| store::model::Sample::new(i as i64 * step, v)))
            .collect();
        store.append(MetricBatch {
            series: vec![Series { labels, samples }],
            metadata: Vec::new(),
        });
    }
    let engine = Engine::new(store.clone(), EngineOptions::default());
    let parse_time = |t: &str| parse_duration(t).map(ms);

    // alert checks by eval time
    let mut alert_tests: BTreeMap<i64, Vec<&AlertTestCase>> = BTreeMap::new();
    for a in &tg.alert_rule_test {
        match parse_time(&a.eval_time) {
            Ok(t) => alert_tests.entry(t).or_default().push(a),
            Err(e) => return vec![format!("    eval_time: {e}")],
        }
    }
    let mut expr_times = Vec::new();
    for p in &tg.promql_expr_test {
        match parse_time(&p.eval_time) {
            Ok(t) => expr_times.push(t),
            Err(e) => return vec![format!("    eval_time: {e}")],
        }
    }
    let max_t = alert_tests
        .keys()
        .chain(expr_times.iter())
        .copied()
        .max()
        .unwrap_or(0);
    let step = ms(eval_interval).max(1);
    let mut states: Vec<GroupState> = groups.iter().map(GroupState::new).collect();
    let alert_times: Vec<i64> = alert_tests.keys().copied().collect();
    let mut curr = 0;
    let mut errs = Vec::new();
    let test_name = if tg.name.is_empty() {
        String::new()
    } else {
        format!("    name: {},\n", tg.name)
    };
    let mut ts = 0i64;
    while ts <= max_t {
        let mut eval_errs = Vec::new();
        for (g, st) in groups.iter().zip(states.iter_mut()) {
            let ctx = EvalContext {
                engine: &engine,
                logs: None,
                traces: None,
                external_labels: &tg.external_labels,
                external_url: &tg.external_url,
                interval: g.interval.unwrap_or(interval),
            };
            let mut write = |b: MetricBatch| -> Result<(), String> {
                store.append(b);
                Ok(())
            };
            eval_group(g, st, &ctx, ts, &mut write);
            for (rule, rs) in g.rules.iter().zip(&st.rules) {
                if rs.health.health == Health::Err {
                    eval_errs.push(format!(
                        "    rule: {}, time: {}, err: {}",
                        rule.name(),
                        go_duration(ts),
                        rs.health.last_error.as_deref().unwrap_or("")
                    ));
                }
            }
        }
        if !eval_errs.is_empty() {
            errs.extend(eval_errs);
            return errs;
        }
        while curr < alert_times.len() && ts <= alert_times[curr] && alert_times[curr] < ts + step {
            let t = alert_times[curr];
            let cases = &alert_tests[&t];
            let mut got: BTreeMap<&str, LabelsAndAnnotations> = BTreeMap::new();
            for (g, st) in groups.iter().zip(&states) {
                for (rule, rs) in g.rules.iter().zip(&st.rules) {
                    let Rule::Alerting(ar) = rule else { continue };
                    if !cases.iter().any(|c| c.alertname == ar.name) {
                        continue;
                    }
                    let entry = got.entry(ar.name.as_str()).or_default();
                    for a in rs.active.values() {
                        if a.state == AlertState::Firing {
                            entry.push((pairs(&a.labels), pairs(&a.annotations)));
                        }
                    }
                }
            }
            for case in cases {
                let mut got_alerts = got
                    .get(case.alertname.as_str())
                    .cloned()
                    .unwrap_or_default();
                let mut exp_alerts: LabelsAndAnnotations = case
                    .exp_alerts
                    .iter()
                    .map(|a| {
                        let mut l = a.exp_labels.clone();
                        l.insert("alertname".into(), case.alertname.clone());
                        (pairs(&l), pairs(&a.exp_annotations))
                    })
                    .collect();
                got_alerts.sort();
                exp_alerts.sort();
                if got_alerts != exp_alerts {
                    errs.push(format!(
                        "{test_name}    alertname: {}, time: {}, \n        exp:{}, \n        got:{}",
                        case.alertname,
                        prom_duration(t),
                        indent_lines(&la_string(&exp_alerts), "            "),
                        indent_lines(&la_string(&got_alerts), "            "),
                    ));
                }
            }
            curr += 1;
        }
        ts += step;
    }
    'cases: for (case, &t) in tg.promql_expr_test.iter().zip(&expr_times) {
        let got = match engine.instant(&case.expr, t) {
            Ok(Value::Vector(v)) => v
                .into_iter()
                .map(|s| (s.labels, s.value))
                .collect::<Vec<_>>(),
            Ok(Value::Scalar(s)) => vec![(Labels::default(), s.value)],
            Ok(_) => {
                errs.push(format!(
                    "    expr: {:?}, time: {}, err: rule result is not a vector or scalar",
                    case.expr,
                    prom_duration(t)
                ));
                continue;
            }
            Err(e) => {
                errs.push(format!(
                    "    expr: {:?}, time: {}, err: {e}",
                    case.expr,
                    prom_duration(t)
                ));
                continue;
            }
        };
        let mut exp = Vec::new();
        for s in &case.exp_samples {
            match parse_series_labels(&s.labels) {
                Ok(l) => exp.push((l, s.value)),
                Err(e) => {
                    errs.push(format!(
                        "    expr: {:?}, time: {}, err: labels {:?}: {e}",
                        case.expr,
                        prom_duration(t),
                        s.labels
                    ));
                    continue 'cases;
                }
            }
        }
        let mut got = got;
        exp.sort_by(|a, b| a.0.cmp(&b.0));
        got.sort_by(|a, b| a.0.cmp(&b.0));
        // exact comparison, as promtool 2.42's reflect.DeepEqual (NaN never equals)
        let same =
            exp.len() == got.len() && exp.iter().zip(&got).all(|(a, b)| a.0 == b.0 && a.1 == b.1);
        if !same {
            errs.push(format!(
                "    expr: {:?}, time: {},\n        exp: {}\n        got: {}",
                case.expr,
                prom_duration(t),
                samples_string(&exp),
                samples_string(&got)
            ));
        }
    }
    errs
}

fn pairs(l: &LabelSet) -> Vec<(String, String)> {
    l.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

/// Prometheus's `labels.Labels.String()`: `{a="b", c="d"}`.
fn labels_string(pairs: &[(String, String)]) -> String {
    let items: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
    format!("{{{}}}", items.join(", "))
}

fn la_string(la: &LabelsAndAnnotations) -> String {
    if la.is_empty() {
        return "[]".into();
    }
    let one = |(l, a): &(Pairs, Pairs)| {
        format!(
            "Labels:{}\nAnnotations:{}",
            labels_string(l),
            labels_string(a)
        )
    };
    let mut s = format!("[\n0:{}", indent_lines(&format!("\n{}", one(&la[0])), "  "));
    for (i, x) in la.iter().enumerate().skip(1) {
        let _ = write!(s, ",\n{i}:{}", indent_lines(&format!("\n{}", one(x)), "  "));
    }
    s.push_str("\n]");
    s
}

fn indent_lines(lines: &str, indent: &str) -> String {
    let parts: Vec<&str> = lines.split('\n').collect();
    let mut out = String::new();
    for (i, l) in parts.iter().enumerate() {
        if i > 0 {
            out.push_str(indent);
        }
        out.push_str(l);
        if i != parts.len() - 1 {
            out.push('\n');
        }
    }
    out
}

fn samples_string(samples: &[(Labels, f64)]) -> String {
    if samples.is_empty() {
        return "nil".into();
    }
    samples
        .iter()
        .map(|(l, v)| {
            let pairs: Vec<(String, String)> = l
                .iter()
                .map(|x| (x.name.clone(), x.value.clone()))
                .collect();
            format!("{} {}", labels_string(&pairs), go_float_big_e(*v))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Go's `strconv.FormatFloat(v, 'E', -1, 64)`.
fn go_float_big_e(v: f64) -> String {
    if v.is_nan() {
        return "NaN".into();
    }
    if v.is_infinite() {
        return if v > 0.0 { "+Inf" } else { "-Inf" }.into();
    }
    let s = format!("{v:E}");
    let (mant, exp) = s.split_once('E').unwrap_or((&s, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    format!("{mant}E{}{:02}", if exp < 0 { '-' } else { '+' }, exp.abs())
}

/// Go's `time.Duration.String()` of a millisecond offset (`1m0s`, `0s`, `1.5s`).
fn go_duration(ms_total: i64) -> String {
    if ms_total == 0 {
        return "0s".into();
    }
    let neg = ms_total < 0;
    let ms_abs = ms_total.unsigned_abs();
    let mut out = String::new();
    if neg {
        out.push('-');
    }
    if ms_abs < 1000 {
        let _ = write!(out, "{ms_abs}ms");
        return out;
    }
    let h = ms_abs / 3_600_000;
    let m = (ms_abs / 60_000) % 60;
    let s = (ms_abs / 1000) % 60;
    let frac = ms_abs % 1000;
    if h > 0 {
        let _ = write!(out, "{h}h");
    }
    if h > 0 || m > 0 {
        let _ = write!(out, "{m}m");
    }
    if frac == 0 {
        let _ = write!(out, "{s}s");
    } else {
        let f = format!("{frac:03}");
        let _ = write!(out, "{s}.{}s", f.trim_end_matches('0'));
    }
    out
}

/// Prometheus's `model.Duration.String()` (`5m`, `1h30m`, `0s`).
fn prom_duration(ms_total: i64) -> String {
    format_duration(Duration::from_millis(ms_total.max(0) as u64))
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Parses a series description: `name`, `name{a="b", ...}` or `{__name__="x", ...}`, with
/// `"`, `'` or backquoted values.
pub fn parse_series_labels(text: &str) -> Result<Labels, String> {
    let t = text.trim();
    let (name, rest) = match t.find('{') {
        Some(i) => (t[..i].trim(), &t[i..]),
        None => (t, ""),
    };
    let mut labels = Vec::new();
    if !name.is_empty() {
        if !super::file::is_valid_metric_name(name) {
            return Err(format!("invalid metric name {name:?}"));
        }
        labels.push(Label::new("__name__", name));
    }
    if !rest.is_empty() {
        let inner = rest
            .strip_prefix('{')
            .and_then(|r| r.trim_end().strip_suffix('}'))
            .ok_or("unclosed or unexpected braces")?;
        let chars: Vec<char> = inner.chars().collect();
        let mut i = 0;
        let skip_ws = |i: &mut usize| {
            while *i < chars.len() && chars[*i].is_whitespace() {
                *i += 1;
            }
        };
        loop {
            skip_ws(&mut i);
            if i >= chars.len() {
                break;
            }
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            let lname: String = chars[start..i].iter().collect();
            if !super::file::is_valid_label_name(&lname) {
                return Err(format!("invalid label name {lname:?}"));
            }
            skip_ws(&mut i);
            if chars.get(i) != Some(&'=') {
                return Err(format!("expected = after label {lname}"));
            }
            i += 1;
            skip_ws(&mut i);
            let quote = *chars.get(i).ok_or("missing label value")?;
            if !matches!(quote, '"' | '\'' | '`') {
                return Err(format!("label {lname}: value must be quoted"));
            }
            i += 1;
            let mut value = String::new();
            loop {
                let c = *chars.get(i).ok_or("unterminated quoted string")?;
                i += 1;
                if c == quote {
                    break;
                }
                if c == '\\' && quote != '`' {
                    let e = *chars.get(i).ok_or("unterminated quoted string")?;
                    i += 1;
                    value.push(match e {
                        'n' => '\n',
                        't' => '\t',
                        'r' => '\r',
                        other => other,
                    });
                } else {
                    value.push(c);
                }
            }
            labels.push(Label::new(lname, value));
            skip_ws(&mut i);
            match chars.get(i) {
                Some(',') => i += 1,
                None => break,
                Some(c) => return Err(format!("unexpected {c:?} in label list")),
            }
        }
    }
    if t.is_empty() {
        return Err("empty series description".into());
    }
    Ok(Labels::new(labels))
}

/// Expands promqltest's value notation; `None` is "no sample at this step".
pub fn expand_series_values(text: &str) -> Result<Vec<Option<f64>>, String> {
    let mut out = Vec::new();
    for tok in text.split_whitespace() {
        if tok == "_" {
            out.push(None);
            continue;
        }
        if tok == "stale" {
            out.push(Some(stale_nan()));
            continue;
        }
        if let Some((head, count)) = tok.rsplit_once('x') {
            let n: usize = count
                .parse()
                .map_err(|_| format!("bad repeat count in {tok:?}"))?;
            if head == "_" {
                // `_xn`: n missing samples
                out.extend(std::iter::repeat_n(None, n));
                continue;
            }
            // `a+bxn` / `a-bxn` / `axn`: n+1 values
            let split = head
                .char_indices()
                .skip(1)
                .find(|&(i, c)| {
                    (c == '+' || c == '-') && !matches!(head.as_bytes()[i - 1], b'e' | b'E')
                })
                .map(|(i, _)| i);
            let (start, delta) = match split {
                Some(i) => {
                    let d = parse_value(&head[i + 1..])?;
                    let d = if &head[i..i + 1] == "-" { -d } else { d };
                    (parse_value(&head[..i])?, d)
                }
                None => (parse_value(head)?, 0.0),
            };
            let mut v = start;
            for _ in 0..=n {
                out.push(Some(v));
                v += delta;
            }
            continue;
        }
        out.push(Some(parse_value(tok)?));
    }
    Ok(out)
}

fn parse_value(text: &str) -> Result<f64, String> {
    match text {
        "NaN" => Ok(f64::NAN),
        "Inf" | "+Inf" | "inf" | "+inf" => Ok(f64::INFINITY),
        "-Inf" | "-inf" => Ok(f64::NEG_INFINITY),
        _ => text
            .parse()
            .map_err(|_| format!("bad number {text:?} in series values")),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn testdata(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../testdata/rules")
            .join(name)
    }

    #[test]
    fn promtool_files_in_testdata_pass() {
        for name in ["app.test.yaml", "capacity.test.yaml"] {
            let report = run_test_file(&testdata(name));
            assert!(report.passed, "{}", report.output);
            assert!(
                report.output.ends_with("  SUCCESS\n\n"),
                "{}",
                report.output
            );
        }
    }

    #[test]
    fn failures_are_reported_in_promtools_words() {
        // each `X.test.out` is what promtool 2.42 printed for `X.test.yaml`
        for name in ["failing", "templates", "states"] {
            let report = run_test_file(&testdata(&format!("{name}.test.yaml")));
            assert!(!report.passed);
            let expected = std::fs::read_to_string(testdata(&format!("{name}.test.out"))).unwrap();
            // the first line names the file as it was given
            let body = |s: &str| s.split_once('\n').map(|(_, b)| b.to_string()).unwrap();
            let (got, want) = (body(&report.output), body(&expected));
            for (g, w) in got.lines().zip(want.lines()) {
                assert_eq!(g, w, "{name}");
            }
            assert_eq!(got, want, "{name}");
        }
    }

    #[test]
    fn rule_file_errors_and_missing_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::copy(testdata("bad/expr.yaml"), dir.path().join("bad.yaml")).unwrap();
        let t = dir.path().join("t.yaml");
        std::fs::write(
            &t,
            "rule_files: [bad.yaml, missing.yaml, 'none-*.yaml']\ntests:\n  - input_series: []\n",
        )
        .unwrap();
        let r = run_test_file(&t);
        assert!(!r.passed);
        assert!(
            r.output
                .contains("  WARNING: no file match pattern missing.yaml\n"),
            "{}",
            r.output
        );
        assert!(
            r.output
                .contains("  WARNING: no file match pattern none-*.yaml\n"),
            "{}",
            r.output
        );
        assert!(
            r.output.contains(
                "bad.yaml:7: group \"g\", rule 2, \"BrokenExpr\": could not parse expression"
            ),
            "{}",
            r.output
        );
        // a test file that is not YAML of the right shape
        std::fs::write(&t, "tests:\n  - nope: 1\n").unwrap();
        let r = run_test_file(&t);
        assert!(
            !r.passed && r.output.contains("unknown field `nope`"),
            "{}",
            r.output
        );
    }

    #[test]
    fn series_notation_expands_as_promqltest() {
        let v = expand_series_values("1+2x3 _ stale 5 -1-1x1 _x2 7x1").unwrap();
        assert_eq!(v[..5], [Some(1.0), Some(3.0), Some(5.0), Some(7.0), None]);
        assert!(store::model::is_stale_nan(v[5].unwrap()));
        assert_eq!(
            v[6..],
            [
                Some(5.0),
                Some(-1.0),
                Some(-2.0),
                None,
                None,
                Some(7.0),
                Some(7.0)
            ]
        );
        assert_eq!(
            expand_series_values("1e3+1e2x1").unwrap(),
            [Some(1000.0), Some(1100.0)]
        );
        assert!(expand_series_values("1+x").is_err());
        assert!(expand_series_values("abc").is_err());
    }

    #[test]
    fn series_descriptions_parse() {
        let l = parse_series_labels(r#"up{job="a", instance='b:1', x=`c\d`}"#).unwrap();
        assert_eq!(l.get("__name__"), Some("up"));
        assert_eq!(l.get("instance"), Some("b:1"));
        assert_eq!(l.get("x"), Some(r"c\d"));
        assert_eq!(
            parse_series_labels(r#"{a="\"q\""}"#).unwrap().get("a"),
            Some("\"q\"")
        );
        assert!(parse_series_labels("{}").unwrap().is_empty());
        for bad in ["", "up{job=a}", "up{job=\"a\"", "1up", "up{1a=\"x\"}"] {
            assert!(parse_series_labels(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn go_formats() {
        assert_eq!(go_float_big_e(0.5), "5E-01");
        assert_eq!(go_float_big_e(123.0), "1.23E+02");
        assert_eq!(go_duration(60_000), "1m0s");
        assert_eq!(go_duration(90_500), "1m30.5s");
        assert_eq!(go_duration(0), "0s");
        assert_eq!(prom_duration(300_000), "5m");
        assert!(wildcard("*.rules.yaml", "app.rules.yaml"));
        assert!(!wildcard("*.rules.yaml", "app.test.yaml"));
    }
}
