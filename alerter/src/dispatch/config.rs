//! The `alerting:` section, in Alertmanager's config shape: `global.resolve_timeout`,
//! `language`, the `route` tree, `inhibit_rules`, `receivers`. Parsed by hand from the YAML
//! value so that every problem is collected at once, each named by its path
//! (`alerting.route.routes[1].receiver: unknown receiver "pager"`).

use std::collections::{BTreeSet, HashSet};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde_yaml::{Mapping, Value};
use store::duration::parse_duration;

use super::inhibit::InhibitRule;
use super::matchers::{is_valid_label_name, parse_matchers, MatchType, Matcher};
use super::route::{GroupBy, Route};
use crate::notify::ReceiverConfig;
use crate::template::Language;

const DEFAULT_RESOLVE_TIMEOUT: Duration = Duration::from_secs(5 * 60);
const DEFAULT_GROUP_WAIT: Duration = Duration::from_secs(30);
const DEFAULT_GROUP_INTERVAL: Duration = Duration::from_secs(5 * 60);
const DEFAULT_REPEAT_INTERVAL: Duration = Duration::from_secs(4 * 3600);

/// The validated `alerting:` section.
#[derive(Clone, Debug)]
pub struct AlertingConfig {
    /// How long an alert without `endsAt` (from `POST /api/v2/alerts`) stays firing
    /// after it was last received.
    pub resolve_timeout: Duration,
    pub language: Language,
    /// `None` when there is no `alerting:` section: alerts are kept and listed, nothing
    /// is notified.
    pub route: Option<Route>,
    pub inhibit_rules: Vec<InhibitRule>,
    pub receivers: Vec<ReceiverConfig>,
}

impl AlertingConfig {
    /// No `alerting:` section.
    pub fn none() -> Self {
        AlertingConfig {
            resolve_timeout: DEFAULT_RESOLVE_TIMEOUT,
            language: Language::default(),
            route: None,
            inhibit_rules: Vec::new(),
            receivers: Vec::new(),
        }
    }

    /// Whether notifications are configured at all.
    pub fn is_configured(&self) -> bool {
        self.route.is_some()
    }

    /// The longest `repeat_interval` of any route (the notification log keeps twice this).
    pub fn max_repeat_interval(&self) -> Duration {
        self.route
            .as_ref()
            .map(|r| {
                r.walk()
                    .iter()
                    .map(|r| r.repeat_interval)
                    .max()
                    .unwrap_or(DEFAULT_REPEAT_INTERVAL)
            })
            .unwrap_or(DEFAULT_REPEAT_INTERVAL)
    }

    /// Parses and validates the value of the `alerting:` key (null means no section).
    /// Returns every error found, each prefixed with its path.
    pub fn parse(value: &Value) -> Result<Self, Vec<String>> {
        let mut errs = Errors::default();
        if value.is_null() {
            return Ok(Self::none());
        }
        let Some(map) = value.as_mapping() else {
            return Err(vec!["alerting: must be a mapping".into()]);
        };
        let mut cfg = Self::none();
        let path = "alerting";
        check_keys(
            map,
            path,
            &["global", "language", "route", "inhibit_rules", "receivers"],
            &mut errs,
        );
        if let Some(g) = map.get("global") {
            let gp = format!("{path}.global");
            match g.as_mapping() {
                Some(gm) => {
                    check_keys(gm, &gp, &["resolve_timeout"], &mut errs);
                    if let Some(d) = duration_field(gm, "resolve_timeout", &gp, &mut errs, false) {
                        cfg.resolve_timeout = d;
                    }
                }
                None if g.is_null() => {}
                None => errs.push(&gp, "must be a mapping"),
            }
        }
        if let Some(l) = map.get("language") {
            match serde_yaml::from_value::<Language>(l.clone()) {
                Ok(lang) => cfg.language = lang,
                Err(_) => errs.push(
                    &format!("{path}.language"),
                    format!("must be zh or en, not {}", show(l)),
                ),
            }
        }

        let receivers = match map.get("receivers") {
            None => Vec::new(),
            Some(v) => parse_receivers(v, &format!("{path}.receivers"), &mut errs),
        };
        let names: HashSet<&str> = receivers.iter().map(|r| r.name.as_str()).collect();

        match map.get("route") {
            None => errs.push(
                &format!("{path}.route"),
                "missing (a root route is required)",
            ),
            Some(v) => {
                if let Some(mut route) =
                    parse_route(v, &format!("{path}.route"), None, &names, &mut errs)
                {
                    route.assign_ids(None);
                    cfg.route = Some(route);
                }
            }
        }
        if let Some(v) = map.get("inhibit_rules") {
            cfg.inhibit_rules = parse_inhibit_rules(v, &format!("{path}.inhibit_rules"), &mut errs);
        }
        cfg.receivers = receivers;
        if errs.0.is_empty() {
            Ok(cfg)
        } else {
            Err(errs.0)
        }
    }
}

#[derive(Default)]
struct Errors(Vec<String>);

impl Errors {
    fn push(&mut self, path: &str, msg: impl std::fmt::Display) {
        self.0.push(format!("{path}: {msg}"));
    }
}

fn show(v: &Value) -> String {
    match v {
        Value::String(s) => format!("{s:?}"),
        other => serde_yaml::to_string(other)
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|_| "?".into()),
    }
}

/// A YAML scalar as the string Go's YAML decoder would make of it (`500` -> "500").
fn scalar_string(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn check_keys(map: &Mapping, path: &str, known: &[&str], errs: &mut Errors) {
    for k in map.keys() {
        match k.as_str() {
            Some(name) if known.contains(&name) => {}
            Some(name) => errs.push(&format!("{path}.{name}"), "unknown field"),
            None => errs.push(path, format!("key {} is not a string", show(k))),
        }
    }
}

fn duration_field(
    map: &Mapping,
    key: &str,
    path: &str,
    errs: &mut Errors,
    nonzero: bool,
) -> Option<Duration> {
    let v = map.get(key)?;
    let p = format!("{path}.{key}");
    let Some(s) = scalar_string(v) else {
        errs.push(&p, format!("not a duration: {}", show(v)));
        return None;
    };
    match parse_duration(&s) {
        Ok(d) if nonzero && d.is_zero() => {
            errs.push(&p, "cannot be zero");
            None
        }
        Ok(d) => Some(d),
        Err(e) => {
            errs.push(&p, e);
            None
        }
    }
}

/// The items of a list that may be left out (null: none); anything but a list is an error.
fn list_items<'a>(v: &'a Value, path: &str, errs: &mut Errors) -> &'a [Value] {
    match v.as_sequence() {
        Some(seq) => seq,
        None => {
            if !v.is_null() {
                errs.push(path, "must be a list");
            }
            &[]
        }
    }
}

/// `v` as a mapping, or an error at `path`.
fn mapping<'a>(v: &'a Value, path: &str, errs: &mut Errors) -> Option<&'a Mapping> {
    let map = v.as_mapping();
    if map.is_none() {
        errs.push(path, "must be a mapping");
    }
    map
}

/// `parse` of each mapping in the list `v` (with its path `path[i]`, its keys checked
/// against `known`); items that are not mappings, and those `parse` gives up on, are left
/// out. Errors come in list order.
fn list_of_mappings<T>(
    v: &Value,
    path: &str,
    known: &[&str],
    errs: &mut Errors,
    mut parse: impl FnMut(&Mapping, &str, &mut Errors) -> Option<T>,
) -> Vec<T> {
    let mut out = Vec::new();
    for (i, item) in list_items(v, path, errs).iter().enumerate() {
        let p = format!("{path}[{i}]");
        if let Some(map) = mapping(item, &p, errs) {
            check_keys(map, &p, known, errs);
            out.extend(parse(map, &p, errs));
        }
    }
    out
}

fn string_list(v: &Value, path: &str, errs: &mut Errors) -> Vec<String> {
    let Some(seq) = v.as_sequence() else {
        errs.push(path, "must be a list of strings");
        return Vec::new();
    };
    let mut out = Vec::new();
    for (i, item) in seq.iter().enumerate() {
        match item.as_str() {
            Some(s) => out.push(s.to_string()),
            None => errs.push(
                &format!("{path}[{i}]"),
                format!("not a string: {}", show(item)),
            ),
        }
    }
    out
}

/// `matchers: [ 'a="b"', ... ]` (each entry may itself hold a `{...}` list).
fn matchers_field(v: &Value, path: &str, errs: &mut Errors) -> Vec<Matcher> {
    let mut out = Vec::new();
    for (i, s) in string_list(v, path, errs).iter().enumerate() {
        match parse_matchers(s) {
            Ok(ms) => out.extend(ms),
            Err(e) => errs.push(&format!("{path}[{i}]"), e),
        }
    }
    out
}

/// Legacy `match: {name: value}` / `match_re: {name: regex}`.
fn legacy_matchers(v: &Value, path: &str, kind: MatchType, errs: &mut Errors) -> Vec<Matcher> {
    let Some(m) = v.as_mapping() else {
        errs.push(path, "must be a mapping of label names to values");
        return Vec::new();
    };
    let mut out = Vec::new();
    for (k, val) in m {
        let (Some(name), Some(value)) = (k.as_str(), scalar_string(val)) else {
            errs.push(path, format!("{}: {} is not a string", show(k), show(val)));
            continue;
        };
        if !is_valid_label_name(name) {
            errs.push(path, format!("invalid label name {name:?}"));
            continue;
        }
        match Matcher::new(kind, name, &value) {
            Ok(m) => out.push(m),
            Err(e) => errs.push(&format!("{path}.{name}"), e),
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

fn parse_route(
    v: &Value,
    path: &str,
    parent: Option<&Route>,
    receivers: &HashSet<&str>,
    errs: &mut Errors,
) -> Option<Route> {
    let map = mapping(v, path, errs)?;
    check_keys(
        map,
        path,
        &[
            "receiver",
            "group_by",
            "group_wait",
            "group_interval",
            "repeat_interval",
            "matchers",
            "match",
            "match_re",
            "continue",
            "routes",
        ],
        errs,
    );
    let receiver = match map.get("receiver") {
        Some(Value::String(s)) if !s.is_empty() => {
            if !receivers.contains(s.as_str()) {
                errs.push(
                    &format!("{path}.receiver"),
                    format!("unknown receiver {s:?}"),
                );
            }
            s.clone()
        }
        Some(other) if !other.is_null() => {
            errs.push(
                &format!("{path}.receiver"),
                format!("not a receiver name: {}", show(other)),
            );
            String::new()
        }
        _ => match parent {
            Some(p) => p.receiver.clone(),
            None => {
                errs.push(
                    &format!("{path}.receiver"),
                    "missing (the root route needs a receiver)",
                );
                String::new()
            }
        },
    };
    let group_by = match map.get("group_by") {
        None => parent.map_or(GroupBy::Labels(Vec::new()), |p| p.group_by.clone()),
        Some(v) => {
            let gp = format!("{path}.group_by");
            let names = string_list(v, &gp, errs);
            if names.iter().any(|n| n == "...") {
                if names.len() > 1 {
                    errs.push(
                        &gp,
                        "cannot have wildcard group_by ('...') and other labels at the same time",
                    );
                }
                GroupBy::All
            } else {
                let mut seen = BTreeSet::new();
                for (i, n) in names.iter().enumerate() {
                    if !is_valid_label_name(n) {
                        errs.push(&format!("{gp}[{i}]"), format!("invalid label name {n:?}"));
                    } else if !seen.insert(n.as_str()) {
                        errs.push(&format!("{gp}[{i}]"), format!("duplicated label {n:?}"));
                    }
                }
                GroupBy::Labels(names)
            }
        }
    };
    let inherit = |own: Option<Duration>, from: fn(&Route) -> Duration, default: Duration| {
        own.or(parent.map(from)).unwrap_or(default)
    };
    let group_wait = inherit(
        duration_field(map, "group_wait", path, errs, false),
        |p| p.group_wait,
        DEFAULT_GROUP_WAIT,
    );
    let group_interval = inherit(
        duration_field(map, "group_interval", path, errs, true),
        |p| p.group_interval,
        DEFAULT_GROUP_INTERVAL,
    );
    let repeat_interval = inherit(
        duration_field(map, "repeat_interval", path, errs, true),
        |p| p.repeat_interval,
        DEFAULT_REPEAT_INTERVAL,
    );
    let mut matchers = Vec::new();
    if let Some(v) = map.get("match") {
        matchers.extend(legacy_matchers(
            v,
            &format!("{path}.match"),
            MatchType::Equal,
            errs,
        ));
    }
    if let Some(v) = map.get("match_re") {
        matchers.extend(legacy_matchers(
            v,
            &format!("{path}.match_re"),
            MatchType::Regexp,
            errs,
        ));
    }
    if let Some(v) = map.get("matchers") {
        matchers.extend(matchers_field(v, &format!("{path}.matchers"), errs));
    }
    let continue_matching = match map.get("continue") {
        None => false,
        Some(Value::Bool(b)) => *b,
        Some(other) => {
            errs.push(
                &format!("{path}.continue"),
                format!("must be true or false, not {}", show(other)),
            );
            false
        }
    };
    if parent.is_none() {
        if !matchers.is_empty() {
            errs.push(path, "the root route must not have any matchers");
        }
        if continue_matching {
            errs.push(
                &format!("{path}.continue"),
                "cannot be set on the root route",
            );
        }
    }
    let mut route = Route {
        receiver,
        group_by,
        group_wait,
        group_interval,
        repeat_interval,
        matchers,
        continue_matching,
        routes: Vec::new(),
        id: String::new(),
    };
    if let Some(v) = map.get("routes") {
        let rp = format!("{path}.routes");
        match v.as_sequence() {
            Some(seq) => {
                let mut children = Vec::new();
                for (i, child) in seq.iter().enumerate() {
                    if let Some(c) =
                        parse_route(child, &format!("{rp}[{i}]"), Some(&route), receivers, errs)
                    {
                        children.push(c);
                    }
                }
                route.routes = children;
            }
            None if v.is_null() => {}
            None => errs.push(&rp, "must be a list of routes"),
        }
    }
    Some(route)
}

fn parse_inhibit_rules(v: &Value, path: &str, errs: &mut Errors) -> Vec<InhibitRule> {
    let known = [
        "source_matchers",
        "target_matchers",
        "source_match",
        "source_match_re",
        "target_match",
        "target_match_re",
        "equal",
    ];
    list_of_mappings(v, path, &known, errs, |map, p, errs| {
        Some(parse_inhibit_rule(map, p, errs))
    })
}

fn parse_inhibit_rule(map: &Mapping, p: &str, errs: &mut Errors) -> InhibitRule {
    let mut source = Vec::new();
    let mut target = Vec::new();
    for (key, is_source, kind) in [
        ("source_match", true, MatchType::Equal),
        ("source_match_re", true, MatchType::Regexp),
        ("target_match", false, MatchType::Equal),
        ("target_match_re", false, MatchType::Regexp),
    ] {
        if let Some(v) = map.get(key) {
            let ms = legacy_matchers(v, &format!("{p}.{key}"), kind, errs);
            if is_source {
                source.extend(ms);
            } else {
                target.extend(ms);
            }
        }
    }
    if let Some(v) = map.get("source_matchers") {
        source.extend(matchers_field(v, &format!("{p}.source_matchers"), errs));
    }
    if let Some(v) = map.get("target_matchers") {
        target.extend(matchers_field(v, &format!("{p}.target_matchers"), errs));
    }
    let mut equal = Vec::new();
    if let Some(v) = map.get("equal") {
        let ep = format!("{p}.equal");
        for (j, n) in string_list(v, &ep, errs).into_iter().enumerate() {
            if is_valid_label_name(&n) {
                equal.push(n);
            } else {
                errs.push(&format!("{ep}[{j}]"), format!("invalid label name {n:?}"));
            }
        }
    }
    InhibitRule {
        source,
        target,
        equal,
    }
}

fn deserialize_entry<T: DeserializeOwned>(v: &Value, path: &str, errs: &mut Errors) -> Option<T> {
    match serde_yaml::from_value::<T>(v.clone()) {
        Ok(t) => Some(t),
        Err(e) => {
            // serde_yaml names the field; it never echoes a value, so secrets stay out.
            errs.push(path, e);
            None
        }
    }
}

fn entries<T: DeserializeOwned>(map: &Mapping, key: &str, path: &str, errs: &mut Errors) -> Vec<T> {
    let Some(v) = map.get(key) else {
        return Vec::new();
    };
    let p = format!("{path}.{key}");
    list_items(v, &p, errs)
        .iter()
        .enumerate()
        .filter_map(|(i, item)| deserialize_entry(item, &format!("{p}[{i}]"), errs))
        .collect()
}

fn parse_receivers(v: &Value, path: &str, errs: &mut Errors) -> Vec<ReceiverConfig> {
    let known = [
        "name",
        "dingtalk_configs",
        "wecom_configs",
        "email_configs",
        "webhook_configs",
    ];
    let mut seen = HashSet::new();
    list_of_mappings(v, path, &known, errs, |map, p, errs| {
        let name = match map.get("name") {
            Some(Value::String(s)) if !s.is_empty() => s.clone(),
            _ => {
                errs.push(
                    &format!("{p}.name"),
                    "missing (every receiver needs a name)",
                );
                return None;
            }
        };
        if !seen.insert(name.clone()) {
            errs.push(
                &format!("{p}.name"),
                format!("receiver name {name:?} is not unique"),
            );
        }
        let receiver = ReceiverConfig {
            name,
            dingtalk_configs: entries(map, "dingtalk_configs", p, errs),
            wecom_configs: entries(map, "wecom_configs", p, errs),
            email_configs: entries(map, "email_configs", p, errs),
            webhook_configs: entries(map, "webhook_configs", p, errs),
        };
        validate_receiver(&receiver, p, errs);
        Some(receiver)
    })
}

/// Every plug-in's own checks (URLs, mentions, rate limits, template sources, ...).
fn validate_receiver(r: &ReceiverConfig, path: &str, errs: &mut Errors) {
    for (i, c) in r.dingtalk_configs.iter().enumerate() {
        errs.0
            .extend(c.validate(&format!("{path}.dingtalk_configs[{i}]")));
    }
    for (i, c) in r.wecom_configs.iter().enumerate() {
        errs.0
            .extend(c.validate(&format!("{path}.wecom_configs[{i}]")));
    }
    for (i, c) in r.email_configs.iter().enumerate() {
        errs.0
            .extend(c.validate(&format!("{path}.email_configs[{i}]")));
    }
    for (i, c) in r.webhook_configs.iter().enumerate() {
        errs.0
            .extend(c.validate(&format!("{path}.webhook_configs[{i}]")));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> Result<AlertingConfig, Vec<String>> {
        AlertingConfig::parse(&serde_yaml::from_str::<Value>(yaml).unwrap())
    }

    #[test]
    fn a_full_config_parses_with_defaults_and_inheritance() {
        let cfg = parse(
            r#"
global: { resolve_timeout: 2m }
language: zh
route:
  receiver: oncall
  group_by: [alertname, service]
  group_wait: 10s
  repeat_interval: 1h
  routes:
    - matchers: [ 'severity="critical"', '{team=~"db|infra", env!=dev}' ]
      receiver: pager
      continue: true
      routes:
        - match: { service: pay }
          group_by: ['...']
          group_interval: 1m
    - match_re: { team: "web.*" }
inhibit_rules:
  - source_matchers: [ 'severity="critical"' ]
    target_matchers: [ 'severity="warning"' ]
    equal: [ service ]
  - source_match: { a: b }
    target_match_re: { c: "d|e" }
receivers:
  - name: oncall
    webhook_configs: [ { url: "http://127.0.0.1:9/hook" } ]
  - name: pager
    dingtalk_configs: [ { url: "https://oapi.dingtalk.com/robot/send?access_token=T", secret: SECabc } ]
"#,
        )
        .unwrap();
        assert_eq!(cfg.resolve_timeout, Duration::from_secs(120));
        assert_eq!(cfg.language, Language::Zh);
        let root = cfg.route.as_ref().unwrap();
        assert_eq!(root.group_interval, DEFAULT_GROUP_INTERVAL);
        let pager = &root.routes[0];
        assert_eq!(pager.matchers.len(), 3);
        assert!(pager.continue_matching);
        assert_eq!(pager.group_wait, Duration::from_secs(10));
        assert_eq!(pager.repeat_interval, Duration::from_secs(3600));
        assert_eq!(pager.group_by, root.group_by);
        let pay = &pager.routes[0];
        assert_eq!(pay.receiver, "pager");
        assert_eq!(pay.group_by, GroupBy::All);
        assert_eq!(pay.group_interval, Duration::from_secs(60));
        assert_eq!(root.routes[1].receiver, "oncall");
        assert_eq!(root.routes[1].matchers[0].kind, MatchType::Regexp);
        assert_eq!(cfg.inhibit_rules.len(), 2);
        assert_eq!(cfg.inhibit_rules[1].target[0].kind, MatchType::Regexp);
        assert_eq!(cfg.max_repeat_interval(), Duration::from_secs(3600));
        assert!(parse("null").unwrap().route.is_none());
        let numeric = parse(
            "route: { receiver: r, group_wait: 0, routes: [ { match: { code: 500, ok: true } } ] }\nreceivers: [ { name: r } ]",
        )
        .unwrap();
        let root = numeric.route.unwrap();
        assert_eq!(root.group_wait, Duration::ZERO);
        let values: Vec<&str> = root.routes[0]
            .matchers
            .iter()
            .map(|m| m.value.as_str())
            .collect();
        assert_eq!(values, ["500", "true"]);
        assert!(!AlertingConfig::none().is_configured());
    }

    #[test]
    fn every_error_is_reported_at_once_by_path() {
        let errs = parse(
            r#"
global: { resolve_timeout: 5 minutes, smtp_from: x }
language: fr
templates: [ a.tmpl ]
route:
  group_by: [ '...', alertname ]
  group_wait: soon
  group_interval: 0s
  matchers: [ 'a="b"' ]
  continue: true
  routes:
    - receiver: pager
      matchers: [ 'severity=="x"', '1bad=x' ]
      match_re: { team: "(" }
      group_by: [ 'bad-name', a, a ]
      routes:
        - { receiver: 7, continue: maybe, mute_time_intervals: [x] }
    - "not a route"
inhibit_rules:
  - source_matchers: [ 'severity=' ]
    target_matchers: [ 'team=~"["' ]
    equal: [ "no-dash" ]
    extra: 1
receivers:
  - name: oncall
    dingtalk_configs: [ { url: "ftp://x", urll: y } ]
    wecom_configs: [ { url: "not a url" } ]
    email_configs: [ { to: "", from: "", smarthost: "nohost" } ]
    webhook_configs: [ { url: "" } ]
    slack_configs: []
  - name: oncall
  - dingtalk_configs: []
"#,
        )
        .unwrap_err();
        let expect = [
            "alerting.global.smtp_from: unknown field",
            "alerting.global.resolve_timeout: not a valid duration",
            "alerting.language: must be zh or en",
            "alerting.templates: unknown field",
            "alerting.route.receiver: missing",
            "alerting.route.group_by: cannot have wildcard",
            "alerting.route.group_wait: not a valid duration",
            "alerting.route.group_interval: cannot be zero",
            "alerting.route: the root route must not have any matchers",
            "alerting.route.continue: cannot be set on the root route",
            "alerting.route.routes[0].receiver: unknown receiver \"pager\"",
            "alerting.route.routes[0].matchers[0]:",
            "alerting.route.routes[0].matchers[1]: bad matcher format",
            "alerting.route.routes[0].match_re.team: invalid regular expression",
            "alerting.route.routes[0].group_by[0]: invalid label name",
            "alerting.route.routes[0].group_by[2]: duplicated label",
            "alerting.route.routes[0].routes[0].receiver: not a receiver name",
            "alerting.route.routes[0].routes[0].continue: must be true or false",
            "alerting.route.routes[0].routes[0].mute_time_intervals: unknown field",
            "alerting.route.routes[1]: must be a mapping",
            "alerting.inhibit_rules[0].extra: unknown field",
            "alerting.inhibit_rules[0].target_matchers[0]: invalid regular expression",
            "alerting.inhibit_rules[0].equal[0]: invalid label name",
            "alerting.receivers[0].slack_configs: unknown field",
            "alerting.receivers[0].dingtalk_configs[0]: unknown field `urll`",
            "alerting.receivers[0].wecom_configs[0].url: must be an http(s) URL",
            "alerting.receivers[0].email_configs[0].to:",
            "alerting.receivers[0].email_configs[0].from: missing sender",
            "alerting.receivers[0].email_configs[0].smarthost:",
            "alerting.receivers[0].webhook_configs[0].url: must be an http(s) URL",
            "alerting.receivers[1].name: receiver name \"oncall\" is not unique",
            "alerting.receivers[2].name: missing",
        ];
        for e in expect {
            assert!(
                errs.iter().any(|x| x.starts_with(e)),
                "missing {e:?} in {errs:#?}"
            );
        }
        // `severity=` is a valid matcher (empty value), as in Alertmanager.
        assert!(
            !errs.iter().any(|x| x.contains("source_matchers")),
            "{errs:#?}"
        );
        assert!(parse("receivers: []").unwrap_err()[0].starts_with("alerting.route: missing"));
        assert_eq!(parse("[1]").unwrap_err(), ["alerting: must be a mapping"]);
    }

    #[test]
    fn config_errors_never_show_secrets() {
        let errs = parse(
            r#"
route: { receiver: r }
receivers:
  - name: r
    dingtalk_configs: [ { url: "htp://oapi/robot/send?access_token=TOPSECRET", secret: "" } ]
    webhook_configs: [ { url: 12 } ]
"#,
        )
        .unwrap_err();
        assert!(!errs.is_empty());
        assert!(errs.iter().all(|e| !e.contains("TOPSECRET")), "{errs:#?}");
    }
}
