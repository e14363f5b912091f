//! The dashboard schema (documented in docs/dashboards.md): a dashboard is rows of panels, each
//! panel a PromQL query (`expr`) or a log query (`logs_query`), with variables (`$service`)
//! filled from label values and chosen in the URL (`var-service=...`).
//!
//! Parsing is strict (`deny_unknown_fields`: a misspelt key is an error, not a silently empty
//! panel) and validation reports every problem of a file at once, each naming the file and
//! where in the dashboard it is. Interpolation of variables into queries lives here too, so the
//! page and the checks substitute the same way.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// One dashboard file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Dashboard {
    /// URL name (`/dashboards/<id>`); defaults to the file name without `.yaml`.
    #[serde(default)]
    pub id: String,
    pub title: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// Variables, in the order their selects appear; a variable's `query` may use the
    /// variables before it.
    #[serde(default)]
    pub variables: Vec<Variable>,
    pub rows: Vec<Row>,
}

/// A `$name` the panels' queries use, chosen in a select (`var-<name>` in the URL).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Variable {
    pub name: String,
    /// The select's caption; the name when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// `label_values(label)` or `label_values(selector, label)`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
    /// A fixed list of values instead of a query.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
    /// Offer "All", which stands for the regex `.*` (use the variable with `=~`).
    #[serde(default)]
    pub include_all: bool,
    /// The value when the URL names none; else "All" (with `include_all`) or the first value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<String>,
}

/// A row of panels side by side.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Row {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    pub panels: Vec<Panel>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PanelType {
    /// Lines over the time range.
    Timeseries,
    /// The latest value of each series, large, with a sparkline.
    Stat,
    /// An instant query at the end of the range: labels and value per series.
    Table,
    /// An instant query at the end of the range as horizontal bars.
    Bar,
    /// The newest log records matching `logs_query`.
    Logs,
}

/// How a panel writes its values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UnitName {
    /// Plain numbers with SI suffixes (`1.2k`).
    #[default]
    None,
    /// Seconds, written as durations.
    Seconds,
    /// A 0..1 ratio, written as a percentage.
    Ratio,
    /// A rate per second (`12/s`).
    PerSecond,
    /// Bytes (`1.5 MiB`; chart axes use SI suffixes).
    Bytes,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Panel {
    pub title: String,
    #[serde(rename = "type")]
    pub kind: PanelType,
    /// PromQL (every type but `logs`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expr: Option<String>,
    /// The label whose value names each series; all labels when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub legend: Option<String>,
    #[serde(default)]
    pub unit: UnitName,
    /// Log query (type `logs`), in the logs query language.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logs_query: Option<String>,
    /// Most records a `logs` panel shows (default 50, at most 500).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<usize>,
    /// Share of the row, in twelfths; the row's panels share it equally when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub width: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// Variables every dashboard has, set from the time range: `$__interval` (the query step),
/// `$__rate_interval` (four steps, at least a minute: a safe `rate()` window) and `$__range`.
pub const BUILTIN_VARIABLES: [&str; 3] = ["__interval", "__rate_interval", "__range"];

/// What `$__rate_interval` is for a step: four steps, at least 60 s.
pub fn rate_interval(step: f64) -> f64 {
    (step * 4.0).max(60.0)
}

/// The built-in variables' values for a query `step` over a `range`, both in seconds.
pub fn builtin_values(step: f64, range: f64) -> BTreeMap<String, String> {
    let secs = |s: f64| format!("{}s", s.round().max(1.0) as u64);
    BTreeMap::from([
        ("__interval".to_string(), secs(step)),
        ("__rate_interval".to_string(), secs(rate_interval(step))),
        ("__range".to_string(), secs(range)),
    ])
}

/// The regex "All" stands for.
pub const ALL_VALUE: &str = ".*";

/// The `$name` and `${name}` references in `text`, in order.
pub fn references(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    scan(text, |name| {
        out.push(name.to_string());
        None
    });
    out
}

/// `text` with every `$name` / `${name}` that `values` has replaced by its value; others are
/// left as written.
pub fn interpolate(text: &str, values: &BTreeMap<String, String>) -> String {
    scan(text, |name| values.get(name).cloned())
}

/// Walks `text`, calling `f` for each variable reference; where `f` answers, the reference is
/// replaced. Returns the rewritten text.
fn scan(text: &str, mut f: impl FnMut(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let (name, len) = if let Some(inner) = after.strip_prefix('{') {
            match inner.find('}') {
                Some(end) if is_name(&inner[..end]) => (&inner[..end], end + 2),
                _ => ("", 0),
            }
        } else {
            let end = after
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(after.len());
            (&after[..end], end)
        };
        if name.is_empty() || !is_name(name) {
            out.push('$');
            rest = after;
            continue;
        }
        match f(name) {
            Some(v) => out.push_str(&v),
            None => out.push_str(&rest[i..i + 1 + len]),
        }
        rest = &after[len..];
    }
    out.push_str(rest);
    out
}

/// A variable name: a letter or `_`, then letters, digits, `_`.
pub fn is_name(s: &str) -> bool {
    let mut c = s.chars();
    c.next()
        .is_some_and(|ch| ch.is_ascii_alphabetic() || ch == '_')
        && c.all(|ch| ch.is_ascii_alphanumeric() || ch == '_')
}

/// `label_values(label)` or `label_values(selector, label)`: `(selector, label)`.
pub fn parse_label_values(q: &str) -> Result<(Option<String>, String), String> {
    let inner = q
        .trim()
        .strip_prefix("label_values")
        .map(str::trim_start)
        .and_then(|r| r.strip_prefix('('))
        .and_then(|r| r.trim_end().strip_suffix(')'))
        .ok_or_else(|| {
            format!("{q:?} is not label_values(label) or label_values(selector, label)")
        })?;
    // the label follows the last comma outside braces and quotes
    let (mut depth, mut quote, mut split) = (0i32, None::<char>, None);
    for (i, ch) in inner.char_indices() {
        match (quote, ch) {
            (Some(qc), c) if c == qc => quote = None,
            (Some(_), _) => {}
            (None, '"' | '\'' | '`') => quote = Some(ch),
            (None, '{' | '(' | '[') => depth += 1,
            (None, '}' | ')' | ']') => depth -= 1,
            (None, ',') if depth == 0 => split = Some(i),
            _ => {}
        }
    }
    let (selector, label) = match split {
        Some(i) => (Some(inner[..i].trim().to_string()), inner[i + 1..].trim()),
        None => (None, inner.trim()),
    };
    if !is_name(label) || (label.starts_with("__") && label != "__name__") {
        return Err(format!("{q:?}: {label:?} is not a label name"));
    }
    if selector.as_deref().is_some_and(str::is_empty) {
        return Err(format!("{q:?}: the selector before the comma is empty"));
    }
    Ok((selector, label.to_string()))
}

impl Panel {
    /// Where this panel is, for error messages: `rows[0].panels[1] ("Latency")`.
    fn place(&self, row: usize, i: usize) -> String {
        format!("rows[{row}].panels[{i}] ({:?})", self.title)
    }
}

impl Variable {
    /// The select's caption.
    pub fn caption(&self) -> &str {
        self.label.as_deref().unwrap_or(&self.name)
    }
}

/// A problem in one dashboard file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DashboardError {
    /// The file as named when loaded (a path, or `dashboards/<name>` for a built-in one).
    pub file: String,
    /// 1-based line, when the YAML parser knows it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
    pub message: String,
}

impl std::fmt::Display for DashboardError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.line {
            Some(l) => write!(f, "{}:{l}: {}", self.file, self.message),
            None => write!(f, "{}: {}", self.file, self.message),
        }
    }
}

/// `service-overview` from `dir/service-overview.yaml`.
pub fn id_from_file(file: &str) -> String {
    let name = file.rsplit(['/', '\\']).next().unwrap_or(file);
    name.strip_suffix(".yaml")
        .or_else(|| name.strip_suffix(".yml"))
        .unwrap_or(name)
        .to_string()
}

/// A dashboard id: letters, digits, `-` and `_`, so it is its own URL segment.
pub fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 100
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// Parses and validates one dashboard file (`file` names it in errors; its stem is the
/// default id). Every problem found is returned.
#[cfg(feature = "ssr")]
pub fn parse(file: &str, text: &str) -> Result<Dashboard, Vec<DashboardError>> {
    let mut d: Dashboard = serde_yaml::from_str(text).map_err(|e| {
        vec![DashboardError {
            file: file.to_string(),
            line: e.location().map(|l| l.line()),
            message: e.to_string(),
        }]
    })?;
    if d.id.is_empty() {
        d.id = id_from_file(file);
    }
    let problems = validate(&d, check_promql);
    if problems.is_empty() {
        Ok(d)
    } else {
        Err(problems
            .into_iter()
            .map(|message| DashboardError {
                file: file.to_string(),
                line: None,
                message,
            })
            .collect())
    }
}

/// PromQL syntax check with the workspace's parser (the query engine's own).
#[cfg(feature = "ssr")]
pub fn check_promql(expr: &str) -> Result<(), String> {
    promql_parser::parser::parse(expr).map(|_| ())
}

/// Every problem of a parsed dashboard. `promql` checks an expression's syntax after the
/// variables are substituted with sample values.
pub fn validate(d: &Dashboard, promql: impl Fn(&str) -> Result<(), String>) -> Vec<String> {
    let mut p = Vec::new();
    if !valid_id(&d.id) {
        p.push(format!(
            "id {:?}: use letters, digits, '-' and '_' (it is the dashboard's URL)",
            d.id
        ));
    }
    if d.title.trim().is_empty() {
        p.push("title is empty".into());
    }
    // sample values for checking syntax: a name inside label matchers, a duration in ranges
    let mut sample: BTreeMap<String, String> = builtin_values(60.0, 3600.0);
    let mut known: Vec<&str> = BUILTIN_VARIABLES.to_vec();
    for (i, v) in d.variables.iter().enumerate() {
        let at = format!("variables[{i}] ({:?})", v.name);
        if !is_name(&v.name) || v.name.starts_with("__") {
            p.push(format!(
                "{at}: name must be letters, digits and '_', not starting with a digit or '__'"
            ));
        } else if known.contains(&v.name.as_str()) {
            p.push(format!("{at}: a variable {:?} is defined twice", v.name));
        }
        match (&v.query, v.values.is_empty()) {
            (Some(_), false) => p.push(format!("{at}: give either query or values, not both")),
            (None, true) => p.push(format!(
                "{at}: needs query (label_values(...)) or values (a list)"
            )),
            (Some(q), true) => {
                for r in references(q) {
                    if !known.contains(&r.as_str()) {
                        p.push(format!(
                            "{at}: query uses ${r}, which is not a variable defined before it"
                        ));
                    }
                }
                match parse_label_values(q) {
                    Err(e) => p.push(format!("{at}: {e}")),
                    Ok((Some(sel), _)) => {
                        if let Err(e) = promql(&interpolate(&sel, &sample)) {
                            p.push(format!("{at}: selector {sel:?} does not parse: {e}"));
                        }
                    }
                    Ok((None, _)) => {}
                }
            }
            (None, false) => {
                if let Some(def) = &v.default {
                    if !(v.values.contains(def) || v.include_all && def == ALL_VALUE) {
                        p.push(format!(
                            "{at}: default {def:?} is not one of its values {:?}",
                            v.values
                        ));
                    }
                }
            }
        }
        known.push(&v.name);
        sample.insert(v.name.clone(), "sample".into());
    }
    if d.rows.is_empty() {
        p.push("rows: a dashboard needs at least one row of panels".into());
    }
    for (r, row) in d.rows.iter().enumerate() {
        if row.panels.is_empty() {
            p.push(format!("rows[{r}]: a row needs at least one panel"));
        }
        let total: u32 = row
            .panels
            .iter()
            .filter_map(|x| x.width)
            .map(u32::from)
            .sum();
        if total > 12 {
            p.push(format!(
                "rows[{r}]: the panels' widths add up to {total}, more than 12"
            ));
        }
        for (i, panel) in row.panels.iter().enumerate() {
            let at = panel.place(r, i);
            if panel.title.trim().is_empty() {
                p.push(format!("{at}: title is empty"));
            }
            if let Some(w) = panel.width {
                if !(1..=12).contains(&w) {
                    p.push(format!(
                        "{at}: width {w} is not 1 to 12 (twelfths of the row)"
                    ));
                }
            }
            let check_refs = |text: &str, p: &mut Vec<String>, what: &str| {
                for name in references(text) {
                    if !known.contains(&name.as_str()) {
                        p.push(format!(
                            "{at}: {what} uses ${name}, which is not a variable of this dashboard"
                        ));
                    }
                }
            };
            match panel.kind {
                PanelType::Logs => {
                    if panel.expr.is_some() || panel.legend.is_some() {
                        p.push(format!(
                            "{at}: a logs panel takes logs_query, not expr or legend"
                        ));
                    }
                    match &panel.logs_query {
                        None => p.push(format!("{at}: a logs panel needs logs_query")),
                        Some(q) => check_refs(q, &mut p, "logs_query"),
                    }
                    if let Some(l) = panel.limit {
                        if !(1..=500).contains(&l) {
                            p.push(format!("{at}: limit {l} is not 1 to 500"));
                        }
                    }
                }
                kind => {
                    if panel.logs_query.is_some() || panel.limit.is_some() {
                        p.push(format!(
                            "{at}: logs_query and limit are for logs panels; a {} panel takes expr",
                            kind_name(kind)
                        ));
                    }
                    match &panel.expr {
                        None => p.push(format!(
                            "{at}: a {} panel needs expr (PromQL)",
                            kind_name(kind)
                        )),
                        Some(e) if e.trim().is_empty() => p.push(format!("{at}: expr is empty")),
                        Some(e) => {
                            check_refs(e, &mut p, "expr");
                            if let Err(err) = promql(&interpolate(e, &sample)) {
                                p.push(format!("{at}: expr does not parse: {err}"));
                            }
                        }
                    }
                    if let Some(l) = &panel.legend {
                        if !is_name(l) {
                            p.push(format!("{at}: legend {l:?} is not a label name"));
                        }
                    }
                }
            }
        }
    }
    p
}

fn kind_name(k: PanelType) -> &'static str {
    match k {
        PanelType::Timeseries => "timeseries",
        PanelType::Stat => "stat",
        PanelType::Table => "table",
        PanelType::Bar => "bar",
        PanelType::Logs => "logs",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn variables_are_substituted_in_both_spellings() {
        let v = vars(&[("service", "checkout"), ("s", "x")]);
        assert_eq!(
            interpolate(r#"up{service="$service",a="${s}b",c="$nope"} $ $1"#, &v),
            r#"up{service="checkout",a="xb",c="$nope"} $ $1"#
        );
        assert_eq!(
            references("rate(x{a=\"$a\"}[${__rate_interval}])"),
            ["a", "__rate_interval"]
        );
        assert_eq!(builtin_values(15.0, 3600.0)["__rate_interval"], "60s");
        assert_eq!(builtin_values(30.0, 3600.0)["__rate_interval"], "120s");
    }

    #[test]
    fn label_values_forms() {
        assert_eq!(
            parse_label_values("label_values(service)").unwrap(),
            (None, "service".to_string())
        );
        assert_eq!(
            parse_label_values(r#"label_values(up{job="a,b"}, instance)"#).unwrap(),
            (Some(r#"up{job="a,b"}"#.to_string()), "instance".to_string())
        );
        assert!(parse_label_values("values(x)").is_err());
        assert!(parse_label_values("label_values(up, 1x)").is_err());
        assert!(parse_label_values("label_values(, x)").is_err());
    }

    fn panel(kind: PanelType) -> Panel {
        Panel {
            title: "p".into(),
            kind,
            expr: None,
            legend: None,
            unit: UnitName::None,
            logs_query: None,
            limit: None,
            width: None,
            description: None,
        }
    }

    #[test]
    fn every_problem_is_reported() {
        let mut bad_expr = panel(PanelType::Timeseries);
        bad_expr.expr = Some("rate(x{a=\"$missing\"}[5m]".into());
        let mut logs = panel(PanelType::Logs);
        logs.expr = Some("up".into());
        let d = Dashboard {
            id: "bad id".into(),
            title: "".into(),
            description: String::new(),
            tags: vec![],
            variables: vec![Variable {
                name: "9x".into(),
                label: None,
                query: None,
                values: vec![],
                include_all: false,
                default: None,
            }],
            rows: vec![Row {
                title: None,
                panels: vec![bad_expr, logs, panel(PanelType::Stat)],
            }],
        };
        let p = validate(&d, |e| {
            if e.matches('(').count() == e.matches(')').count() {
                Ok(())
            } else {
                Err("unclosed".into())
            }
        });
        let all = p.join("\n");
        for want in [
            "id \"bad id\"",
            "title is empty",
            "variables[0] (\"9x\"): name must be",
            "needs query",
            "expr uses $missing",
            "expr does not parse: unclosed",
            "a logs panel takes logs_query",
            "a logs panel needs logs_query",
            "rows[0].panels[2] (\"p\"): a stat panel needs expr",
        ] {
            assert!(all.contains(want), "{want:?} missing in:\n{all}");
        }
    }

    #[cfg(feature = "ssr")]
    #[test]
    fn yaml_errors_name_the_file_and_line() {
        let e = parse(
            "d/x.yaml",
            "title: X\nrows:\n  - panels:\n      - titel: a\n",
        )
        .unwrap_err();
        assert_eq!(e[0].file, "d/x.yaml");
        assert!(e[0].message.contains("unknown field `titel`"), "{e:?}");
        assert_eq!(e[0].line, Some(4));
        let d = parse(
            "d/ok.yml",
            "title: OK\nrows:\n  - panels:\n      - {title: Up, type: stat, expr: up}\n",
        )
        .unwrap();
        assert_eq!(d.id, "ok");
        let e = parse(
            "d/x.yaml",
            "title: X\nrows:\n  - panels:\n      - {title: a, type: timeseries, expr: 'rate(up[5m]'}\n",
        )
        .unwrap_err();
        assert!(e[0].message.contains("expr does not parse"), "{e:?}");
    }
}
