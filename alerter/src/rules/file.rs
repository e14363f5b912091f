//! Prometheus rule files (plus Lookout's `logs_expr` log rules): parsing and validation.
//!
//! A file is read as a YAML tree and walked by hand rather than through serde structs, so
//! that every problem in every group and rule is collected (not only the first) and each is
//! reported with the line it is on. Lines are found by searching the text for the group or
//! rule name and then the key, as `lookout check-config` locates config errors. Messages
//! follow Prometheus's `rulefmt` (`group "g", rule 2, "Name": ...`) so that SREs recognise
//! them.

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_yaml::{Mapping, Value};

use crate::model::LabelSet;

/// One rule group of a file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RuleGroup {
    pub name: String,
    /// The file the group was read from.
    pub file: PathBuf,
    /// The group's own `interval`; `None` means the global evaluation interval.
    pub interval: Option<Duration>,
    /// Most alerts (alerting rules) or series (recording rules) a rule may produce; 0 = no
    /// limit.
    pub limit: usize,
    pub rules: Vec<Rule>,
}

impl RuleGroup {
    /// Prometheus's group key, `file;name` (the `rule_group` label of rule metrics).
    pub fn key(&self) -> String {
        format!("{};{}", self.file.display(), self.name)
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Rule {
    Alerting(AlertingRule),
    Recording(RecordingRule),
}

impl Rule {
    /// The alert name or the recorded metric name.
    pub fn name(&self) -> &str {
        match self {
            Rule::Alerting(r) => &r.name,
            Rule::Recording(r) => &r.name,
        }
    }

    pub fn labels(&self) -> &LabelSet {
        match self {
            Rule::Alerting(r) => &r.labels,
            Rule::Recording(r) => &r.labels,
        }
    }

    /// What identifies a rule across reloads (Prometheus's `nameAndLabels`): its kind, name
    /// and labels. A rule whose expression changed keeps its alerts, as in Prometheus.
    pub fn identity(&self) -> String {
        let kind = match self {
            Rule::Alerting(_) => "alert",
            Rule::Recording(_) => "record",
        };
        let labels: Vec<String> = self
            .labels()
            .iter()
            .map(|(k, v)| format!("{k}={v:?}"))
            .collect();
        format!("{kind}:{}{{{}}}", self.name(), labels.join(","))
    }

    /// The query text shown for the rule: PromQL, or the log query.
    pub fn query(&self) -> &str {
        match self {
            Rule::Alerting(r) => match &r.condition {
                AlertCondition::PromQl(e) => e,
                AlertCondition::Logs(l) => &l.query,
            },
            Rule::Recording(r) => &r.expr,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AlertingRule {
    pub name: String,
    pub condition: AlertCondition,
    /// How long the condition must hold before the alert fires (`for`).
    pub for_: Duration,
    pub keep_firing_for: Duration,
    /// Values may be templates.
    pub labels: LabelSet,
    /// Values are templates.
    pub annotations: LabelSet,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum AlertCondition {
    /// A PromQL expression: every series it returns is an alert.
    PromQl(String),
    /// A log count over a window above a threshold.
    Logs(LogsCondition),
}

/// `logs_expr: { query, window, threshold }`: true while the number of records matching
/// `query` in `[t - window, t]` is above `threshold`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LogsCondition {
    pub query: String,
    pub window: Duration,
    pub threshold: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RecordingRule {
    /// The metric name the results are recorded under.
    pub name: String,
    pub expr: String,
    pub labels: LabelSet,
}

/// A problem in a rule file, with the line it is on when known.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuleFileError {
    pub file: PathBuf,
    pub line: Option<usize>,
    pub message: String,
}

impl fmt::Display for RuleFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{}: {}", self.file.display(), line, self.message),
            None => write!(f, "{}: {}", self.file.display(), self.message),
        }
    }
}

/// Reads and validates every file, in order; all errors of all files, or all groups.
pub fn load_rule_files(paths: &[PathBuf]) -> Result<Vec<RuleGroup>, Vec<RuleFileError>> {
    let mut groups = Vec::new();
    let mut errors = Vec::new();
    for path in paths {
        match std::fs::read_to_string(path) {
            Ok(text) => match parse_rule_file(path, &text) {
                Ok(g) => groups.extend(g),
                Err(e) => errors.extend(e),
            },
            Err(e) => errors.push(RuleFileError {
                file: path.clone(),
                line: None,
                message: format!("cannot read rule file: {e}"),
            }),
        }
    }
    if errors.is_empty() {
        Ok(groups)
    } else {
        Err(errors)
    }
}

/// Parses one rule file's text (`path` names it in errors and in the groups).
pub fn parse_rule_file(path: &Path, text: &str) -> Result<Vec<RuleGroup>, Vec<RuleFileError>> {
    let mut p = FileParser {
        path,
        text,
        errors: Vec::new(),
    };
    let groups = p.file();
    if p.errors.is_empty() {
        Ok(groups)
    } else {
        Err(p.errors)
    }
}

/// Prometheus's label name syntax.
pub fn is_valid_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Prometheus's metric name syntax.
pub fn is_valid_metric_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

const GROUP_KEYS: &[&str] = &["name", "interval", "limit", "rules"];
const RULE_KEYS: &[&str] = &[
    "alert",
    "record",
    "expr",
    "logs_expr",
    "for",
    "keep_firing_for",
    "labels",
    "annotations",
];
const LOGS_KEYS: &[&str] = &["query", "window", "threshold"];

struct FileParser<'a> {
    path: &'a Path,
    text: &'a str,
    errors: Vec<RuleFileError>,
}

/// Where a rule is: the group's and the rule's position, for messages and line search.
struct RuleCtx<'a> {
    group: &'a str,
    index: usize,
    name: String,
    line: Option<usize>,
}

impl RuleCtx<'_> {
    fn prefix(&self) -> String {
        format!(
            "group {:?}, rule {}, {:?}",
            self.group,
            self.index + 1,
            self.name
        )
    }
}

impl FileParser<'_> {
    fn error(&mut self, line: Option<usize>, message: impl Into<String>) {
        self.errors.push(RuleFileError {
            file: self.path.to_path_buf(),
            line,
            message: message.into(),
        });
    }

    /// The first line at or after `from` (1-based) whose code (before a ` #` comment)
    /// contains `needle`.
    fn locate(&self, needle: &str, from: Option<usize>) -> Option<usize> {
        if needle.is_empty() {
            return None;
        }
        let start = from.unwrap_or(1).saturating_sub(1);
        self.text
            .lines()
            .enumerate()
            .skip(start)
            .find(|(_, l)| {
                !l.trim_start().starts_with('#')
                    && l.split(" #").next().unwrap_or("").contains(needle)
            })
            .map(|(i, _)| i + 1)
    }

    /// The first line at or after `from` that starts a list item (`- `).
    fn next_list_item(&self, from: Option<usize>) -> Option<usize> {
        let start = from.unwrap_or(1).saturating_sub(1);
        self.text
            .lines()
            .enumerate()
            .skip(start)
            .find(|(_, l)| l.trim_start().starts_with("- "))
            .map(|(i, _)| i + 1)
    }

    /// The line of `key:` at or after `from`, falling back to `from`.
    fn key_line(&self, key: &str, from: Option<usize>) -> Option<usize> {
        self.locate(&format!("{key}:"), from).or(from)
    }

    fn file(&mut self) -> Vec<RuleGroup> {
        if self.text.trim().is_empty() {
            return Vec::new();
        }
        let doc: Value = match serde_yaml::from_str(self.text) {
            Ok(v) => v,
            Err(e) => {
                let line = e.location().map(|l| l.line());
                self.error(line, format!("YAML: {e}"));
                return Vec::new();
            }
        };
        let root = match doc {
            Value::Null => return Vec::new(),
            Value::Mapping(m) => m,
            _ => {
                self.error(
                    Some(1),
                    "a rule file must be a mapping with a `groups` list",
                );
                return Vec::new();
            }
        };
        for (k, _) in &root {
            let key = key_str(k);
            if key != "groups" {
                let line = self.key_line(&key, None);
                self.error(
                    line,
                    format!("field {key} not found in type rulefmt.RuleGroups"),
                );
            }
        }
        let groups = match root.get("groups") {
            None | Some(Value::Null) => return Vec::new(),
            Some(Value::Sequence(s)) => s.clone(),
            Some(_) => {
                let line = self.key_line("groups", None);
                self.error(line, "groups: must be a list of rule groups");
                return Vec::new();
            }
        };
        let mut out = Vec::new();
        let mut seen = BTreeSet::new();
        let mut cursor = None;
        for (gi, g) in groups.iter().enumerate() {
            if let Some(group) = self.group(gi, g, &mut seen, &mut cursor) {
                out.push(group);
            }
        }
        out
    }

    fn group(
        &mut self,
        gi: usize,
        g: &Value,
        seen: &mut BTreeSet<String>,
        cursor: &mut Option<usize>,
    ) -> Option<RuleGroup> {
        let Value::Mapping(m) = g else {
            self.error(*cursor, format!("groups[{gi}]: must be a mapping"));
            return None;
        };
        let name = match m.get("name") {
            Some(Value::String(s)) => s.clone(),
            Some(v) if scalar_text(v).is_some() => scalar_text(v).unwrap_or_default(),
            _ => String::new(),
        };
        let line = if name.is_empty() {
            self.locate("name:", cursor.map(|c| c + 1)).or(*cursor)
        } else {
            self.locate(&name, cursor.map(|c| c + 1))
                .or_else(|| self.locate(&name, None))
        };
        if line.is_some() {
            *cursor = line;
        }
        let mut ok = true;
        if name.is_empty() {
            self.error(line, "Groupname must not be empty");
            ok = false;
        } else if !seen.insert(name.clone()) {
            self.error(
                line,
                format!("groupname: \"{name}\" is repeated in the same file"),
            );
            ok = false;
        }
        for (k, _) in m {
            let key = key_str(k);
            if !GROUP_KEYS.contains(&key.as_str()) {
                let l = self.key_line(&key, line);
                self.error(
                    l,
                    format!("group {name:?}: field {key} not found in type rulefmt.RuleGroup"),
                );
                ok = false;
            }
        }
        // `interval: 0s` means the default, as in Prometheus
        let interval = match m.get("interval") {
            None | Some(Value::Null) => None,
            Some(v) => match self.duration(v) {
                Ok(d) if d.is_zero() => None,
                Ok(d) => Some(d),
                Err(e) => {
                    let l = self.key_line("interval", line);
                    self.error(l, format!("group {name:?}: interval: {e}"));
                    ok = false;
                    None
                }
            },
        };
        let limit = match m.get("limit") {
            None | Some(Value::Null) => 0,
            // Prometheus takes any integer; zero or less is no limit
            Some(Value::Number(n)) if n.as_i64().is_some() => {
                n.as_i64().unwrap_or(0).max(0) as usize
            }
            Some(v) => {
                let l = self.key_line("limit", line);
                self.error(
                    l,
                    format!(
                        "group {name:?}: limit: must be an integer, got {}",
                        scalar_text(v).unwrap_or_else(|| "a non-scalar".into())
                    ),
                );
                ok = false;
                0
            }
        };
        let rules_v = match m.get("rules") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Sequence(s)) => s.clone(),
            Some(_) => {
                let l = self.key_line("rules", line);
                self.error(l, format!("group {name:?}: rules: must be a list"));
                return None;
            }
        };
        let mut rules = Vec::new();
        let mut rule_cursor = line;
        for (ri, r) in rules_v.iter().enumerate() {
            match self.rule(&name, ri, r, &mut rule_cursor) {
                Some(rule) => rules.push(rule),
                None => ok = false,
            }
        }
        if let Some(c) = rule_cursor {
            *cursor = Some(c.max(cursor.unwrap_or(0)));
        }
        ok.then(|| RuleGroup {
            name,
            file: self.path.to_path_buf(),
            interval,
            limit,
            rules,
        })
    }

    fn duration(&self, v: &Value) -> Result<Duration, String> {
        match v {
            Value::String(s) => store::duration::parse_duration(s),
            Value::Number(n) if n.as_u64() == Some(0) => Ok(Duration::ZERO),
            other => Err(format!(
                "not a valid duration string: {:?}",
                scalar_text(other).unwrap_or_default()
            )),
        }
    }

    fn rule(
        &mut self,
        group: &str,
        ri: usize,
        r: &Value,
        cursor: &mut Option<usize>,
    ) -> Option<Rule> {
        let Value::Mapping(m) = r else {
            self.error(
                *cursor,
                format!("group {group:?}, rule {}: must be a mapping", ri + 1),
            );
            return None;
        };
        let alert = m.get("alert").and_then(scalar_text);
        let record = m.get("record").and_then(scalar_text);
        let name = alert.clone().or(record.clone()).unwrap_or_default();
        let key = if alert.is_some() { "alert" } else { "record" };
        let next_item = self.next_list_item(cursor.map(|c| c + 1));
        let line = if name.is_empty() {
            next_item.or(*cursor)
        } else {
            self.locate(&format!("{key}: {name}"), cursor.map(|c| c + 1))
                .or_else(|| self.locate(&name, cursor.map(|c| c + 1)))
                .or(next_item)
                .or(*cursor)
        };
        if line.is_some() {
            *cursor = line;
        }
        let ctx = RuleCtx {
            group,
            index: ri,
            name,
            line,
        };
        let before = self.errors.len();
        let err = |p: &mut Self, key: Option<&str>, msg: String| {
            let l = key.map_or(ctx.line, |k| p.key_line(k, ctx.line));
            p.error(l, format!("{}: {msg}", ctx.prefix()));
        };
        for (k, _) in m {
            let key = key_str(k);
            if !RULE_KEYS.contains(&key.as_str()) {
                err(
                    self,
                    Some(&key),
                    format!("field {key} not found in type rulefmt.RuleNode"),
                );
            }
        }
        match (&alert, &record) {
            (Some(_), Some(_)) => err(
                self,
                None,
                "only one of 'record' and 'alert' must be set".into(),
            ),
            (None, None) => err(self, None, "one of 'record' or 'alert' must be set".into()),
            _ => {}
        }
        let expr = m.get("expr").filter(|v| !v.is_null());
        let logs = m.get("logs_expr").filter(|v| !v.is_null());
        let mut condition = None;
        match (expr, logs) {
            (Some(_), Some(_)) => err(
                self,
                Some("logs_expr"),
                "only one of 'expr' and 'logs_expr' must be set".into(),
            ),
            (None, None) => err(self, None, "field 'expr' must be set in rule".into()),
            (Some(e), None) => match scalar_text(e) {
                Some(text) if !text.trim().is_empty() => match store::promql::parse(&text) {
                    Ok(_) => condition = Some(AlertCondition::PromQl(text)),
                    Err(e) => err(
                        self,
                        Some("expr"),
                        format!("could not parse expression: {e}"),
                    ),
                },
                _ => err(
                    self,
                    Some("expr"),
                    "field 'expr' must be set in rule".into(),
                ),
            },
            (None, Some(l)) => {
                if record.is_some() {
                    err(
                        self,
                        Some("logs_expr"),
                        "invalid field 'logs_expr' in recording rule".into(),
                    );
                } else {
                    match self.logs_condition(l) {
                        Ok(c) => condition = Some(AlertCondition::Logs(c)),
                        Err(msgs) => {
                            for msg in msgs {
                                err(self, Some("logs_expr"), msg);
                            }
                        }
                    }
                }
            }
        }
        let duration_of = |p: &mut Self, key: &str| -> Duration {
            match m.get(key) {
                None | Some(Value::Null) => Duration::ZERO,
                Some(v) => match p.duration(v) {
                    Ok(d) => d,
                    Err(e) => {
                        err(p, Some(key), format!("{key}: {e}"));
                        Duration::ZERO
                    }
                },
            }
        };
        let for_ = duration_of(self, "for");
        let keep_firing_for = duration_of(self, "keep_firing_for");
        let labels = self.string_map(m, "labels", &ctx);
        let annotations = self.string_map(m, "annotations", &ctx);
        let err = |p: &mut Self, key: Option<&str>, msg: String| {
            let l = key.map_or(ctx.line, |k| p.key_line(k, ctx.line));
            p.error(l, format!("{}: {msg}", ctx.prefix()));
        };
        if let Some(rec) = &record {
            if !annotations.is_empty() {
                err(
                    self,
                    Some("annotations"),
                    "invalid field 'annotations' in recording rule".into(),
                );
            }
            if !for_.is_zero() {
                err(
                    self,
                    Some("for"),
                    "invalid field 'for' in recording rule".into(),
                );
            }
            if !keep_firing_for.is_zero() {
                err(
                    self,
                    Some("keep_firing_for"),
                    "invalid field 'keep_firing_for' in recording rule".into(),
                );
            }
            if !is_valid_metric_name(rec) {
                err(
                    self,
                    Some("record"),
                    format!("invalid recording rule name: {rec}"),
                );
            }
        }
        for name in labels.keys() {
            if !is_valid_label_name(name) || name == "__name__" {
                err(self, Some(name), format!("invalid label name: {name}"));
            }
        }
        for name in annotations.keys() {
            if !is_valid_label_name(name) {
                err(self, Some(name), format!("invalid annotation name: {name}"));
            }
        }
        if alert.is_some() {
            // templates are checked at load time, as Prometheus's `testTemplateParsing`
            for (kind, set) in [("label", &labels), ("annotation", &annotations)] {
                for (k, v) in set {
                    if let Err(e) = super::template::check(v) {
                        err(self, Some(k), format!("{kind} {k:?}: template: {e}"));
                    }
                }
            }
        }
        if self.errors.len() > before {
            return None;
        }
        match (alert, record, condition) {
            (Some(name), None, Some(condition)) => Some(Rule::Alerting(AlertingRule {
                name,
                condition,
                for_,
                keep_firing_for,
                labels,
                annotations,
            })),
            (None, Some(name), Some(AlertCondition::PromQl(expr))) => {
                Some(Rule::Recording(RecordingRule { name, expr, labels }))
            }
            _ => None,
        }
    }

    fn logs_condition(&self, v: &Value) -> Result<LogsCondition, Vec<String>> {
        let Value::Mapping(m) = v else {
            return Err(vec![
                "logs_expr: must be a mapping with query, window and threshold".into(),
            ]);
        };
        let mut errs = Vec::new();
        for (k, _) in m {
            let key = key_str(k);
            if !LOGS_KEYS.contains(&key.as_str()) {
                errs.push(format!("logs_expr: unknown field {key}"));
            }
        }
        let query = match m.get("query") {
            None | Some(Value::Null) => {
                errs.push("logs_expr: field 'query' must be set".into());
                String::new()
            }
            Some(q) => {
                let text = scalar_text(q).unwrap_or_default();
                if let Err(e) = store::logs::LogQuery::parse(&text) {
                    errs.push(format!("logs_expr: could not parse query: {e}"));
                }
                text
            }
        };
        let window = match m.get("window") {
            None | Some(Value::Null) => {
                errs.push("logs_expr: field 'window' must be set".into());
                Duration::ZERO
            }
            Some(w) => match self.duration(w) {
                Ok(d) if d.is_zero() => {
                    errs.push("logs_expr: window must be greater than 0".into());
                    d
                }
                Ok(d) => d,
                Err(e) => {
                    errs.push(format!("logs_expr: window: {e}"));
                    Duration::ZERO
                }
            },
        };
        let threshold = match m.get("threshold") {
            None | Some(Value::Null) => 0.0,
            Some(Value::Number(n)) => match n.as_f64() {
                Some(t) if t >= 0.0 && t.is_finite() => t,
                _ => {
                    errs.push(format!(
                        "logs_expr: threshold must be a number >= 0, got {n}"
                    ));
                    0.0
                }
            },
            Some(other) => {
                errs.push(format!(
                    "logs_expr: threshold must be a number >= 0, got {}",
                    scalar_text(other).unwrap_or_else(|| "a non-scalar".into())
                ));
                0.0
            }
        };
        if errs.is_empty() {
            Ok(LogsCondition {
                query,
                window,
                threshold,
            })
        } else {
            Err(errs)
        }
    }

    /// `labels` / `annotations`: a mapping of names to scalar values (numbers and booleans
    /// are taken as their text, as YAML into Go strings does).
    fn string_map(&mut self, m: &Mapping, key: &str, ctx: &RuleCtx<'_>) -> LabelSet {
        let mut out = LabelSet::new();
        match m.get(key) {
            None | Some(Value::Null) => {}
            Some(Value::Mapping(map)) => {
                for (k, v) in map {
                    let name = key_str(k);
                    match v {
                        Value::Null => {
                            out.insert(name, String::new());
                        }
                        v => match scalar_text(v) {
                            Some(text) => {
                                out.insert(name, text);
                            }
                            None => {
                                let l = self.key_line(&name, ctx.line);
                                self.error(
                                    l,
                                    format!("{}: {key}.{name}: must be a string", ctx.prefix()),
                                );
                            }
                        },
                    }
                }
            }
            Some(_) => {
                let l = self.key_line(key, ctx.line);
                self.error(
                    l,
                    format!(
                        "{}: {key}: must be a mapping of names to values",
                        ctx.prefix()
                    ),
                );
            }
        }
        out
    }
}

fn key_str(k: &Value) -> String {
    scalar_text(k).unwrap_or_else(|| format!("{k:?}"))
}

/// The text of a scalar YAML value.
fn scalar_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Tagged(t) => scalar_text(&t.value),
        _ => None,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn testdata() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/rules")
    }

    fn files_in(dir: &str, suffix: &str) -> Vec<PathBuf> {
        let mut paths: Vec<PathBuf> = std::fs::read_dir(testdata().join(dir))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.to_string_lossy().ends_with(suffix))
            .collect();
        paths.sort();
        paths
    }

    #[test]
    fn bad_files_report_every_expected_error_with_its_line() {
        let bad = files_in("bad", ".yaml");
        assert!(bad.len() >= 9);
        for p in bad {
            let text = std::fs::read_to_string(&p).unwrap();
            let mut expected: Vec<String> = text
                .lines()
                .filter_map(|l| l.strip_prefix("# expect: "))
                .map(str::to_string)
                .collect();
            assert!(
                !expected.is_empty(),
                "{} has no `# expect:` lines",
                p.display()
            );
            let mut got: Vec<String> = parse_rule_file(&p, &text)
                .unwrap_err()
                .iter()
                .map(|e| format!("{}: {}", e.line.unwrap_or(0), e.message))
                .collect();
            expected.sort();
            got.sort();
            assert_eq!(got, expected, "{}", p.display());
        }
    }

    #[test]
    fn good_files_load() {
        let mut paths = files_in("good", ".yaml");
        paths.extend(files_in(".", ".rules.yaml"));
        assert!(paths.len() >= 3);
        let groups = load_rule_files(&paths).unwrap();
        let app = groups
            .iter()
            .find(|g| g.name == "app" && g.rules.len() == 3)
            .unwrap();
        assert_eq!(app.interval, Some(Duration::from_secs(15)));
        assert!(app.key().ends_with("logs.rules.yaml;app"));
        let Rule::Alerting(logs) = &app.rules[2] else {
            panic!("{:?}", app.rules[2])
        };
        assert_eq!(
            logs.condition,
            AlertCondition::Logs(LogsCondition {
                query: "service:payments AND severity>=error".into(),
                window: Duration::from_secs(300),
                threshold: 10.0,
            })
        );
        let Rule::Alerting(high) = &app.rules[0] else {
            panic!()
        };
        assert_eq!(high.for_, Duration::from_secs(60));
        assert_eq!(high.labels["severity"], "critical");
        let Rule::Recording(rec) = &app.rules[1] else {
            panic!()
        };
        assert_eq!(rec.name, "job:up:sum");
        let capacity = groups.iter().find(|g| g.name == "alerts").unwrap();
        assert_eq!(capacity.limit, 10);
        assert_eq!(capacity.interval, Some(Duration::from_secs(30)));
        // identities tell rules apart by kind, name and labels only
        assert_ne!(app.rules[0].identity(), app.rules[2].identity());
    }

    #[test]
    fn load_collects_errors_of_every_file() {
        let paths = vec![
            testdata().join("bad/expr.yaml"),
            testdata().join("no-such-file.yaml"),
            testdata().join("bad/labels.yaml"),
            testdata().join("app.rules.yaml"),
        ];
        let errs = load_rule_files(&paths).unwrap_err();
        assert_eq!(errs.len(), 2 + 1 + 3, "{errs:?}");
        assert!(errs[2]
            .to_string()
            .contains("no-such-file.yaml: cannot read rule file"));
        assert!(errs[0]
            .to_string()
            .contains("bad/expr.yaml:7: group \"g\", rule 2"));
    }

    #[test]
    fn empty_files_and_empty_groups_are_fine() {
        assert_eq!(parse_rule_file(Path::new("e"), "").unwrap(), vec![]);
        assert_eq!(
            parse_rule_file(Path::new("e"), "groups:\n").unwrap(),
            vec![]
        );
        assert!(is_valid_metric_name("job:up:sum"));
        assert!(!is_valid_label_name("job:up"));
    }
}
