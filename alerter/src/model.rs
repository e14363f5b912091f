//! The alert model every part of the alerter shares: rules produce [`Alert`]s, the
//! dispatcher groups them into [`Notification`]s, notifiers turn those into messages.
//! Times are Unix milliseconds throughout.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// Label or annotation names to values, sorted by name (as Alertmanager's `LabelSet`).
pub type LabelSet = BTreeMap<String, String>;

/// A token, webhook key or password from the config: never printed, not even by `Debug`.
#[derive(Clone, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<secret>")
    }
}

/// What an alert points at, so a message can link straight to the evidence: the query and
/// its value for a PromQL rule, the log query for a log rule, example failing traces.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Evidence {
    /// The rule's PromQL expression (alerting rules with `expr`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expr: Option<String>,
    /// The rule's log query (rules with `logs_expr`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logs_query: Option<String>,
    /// The value that made the condition true at the last evaluation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
    /// Ids (32 hex digits) of a few failing traces of the alert's service in its window.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub trace_ids: Vec<String>,
}

/// One alert as Alertmanager holds it. Firing while `ends_at_ms` is `None` or in the
/// future; resolved once `ends_at_ms` has passed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    pub labels: LabelSet,
    #[serde(default)]
    pub annotations: LabelSet,
    pub starts_at_ms: i64,
    #[serde(default)]
    pub ends_at_ms: Option<i64>,
    /// When this alert was last received or re-evaluated.
    pub updated_at_ms: i64,
    /// Link to where the alert came from (Prometheus's `generatorURL`).
    #[serde(default)]
    pub generator_url: String,
    #[serde(default)]
    pub evidence: Evidence,
}

impl Alert {
    /// Alertmanager's identity of an alert: a hash of its labels, 16 hex digits.
    pub fn fingerprint(&self) -> Fingerprint {
        Fingerprint::of(&self.labels)
    }

    /// Resolved at `now_ms`: its end time has passed.
    pub fn is_resolved_at(&self, now_ms: i64) -> bool {
        self.ends_at_ms.is_some_and(|end| end <= now_ms)
    }

    /// The `alertname` label, or "" when it has none.
    pub fn name(&self) -> &str {
        self.labels.get("alertname").map_or("", String::as_str)
    }
}

/// A label set's stable 64-bit FNV-1a hash (names and values separated by 0xff, as
/// Prometheus's `model.LabelSet.Fingerprint` separates them), shown as 16 hex digits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Fingerprint(pub u64);

impl Fingerprint {
    pub fn of(labels: &LabelSet) -> Self {
        const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
        const PRIME: u64 = 0x0000_0100_0000_01b3;
        let mut h = OFFSET;
        let mut feed = |bytes: &[u8]| {
            for b in bytes {
                h ^= u64::from(*b);
                h = h.wrapping_mul(PRIME);
            }
        };
        for (name, value) in labels {
            feed(name.as_bytes());
            feed(&[0xff]);
            feed(value.as_bytes());
            feed(&[0xff]);
        }
        Fingerprint(h)
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// What the dispatcher hands a receiver: one aggregation group's alerts (firing and
/// resolved) at the moment the group is flushed.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Notification {
    /// The receiver's name from the config.
    pub receiver: String,
    /// Identifies the aggregation group (route path + group labels), as Alertmanager's
    /// `groupKey`.
    pub group_key: String,
    /// The values of the route's `group_by` labels.
    pub group_labels: LabelSet,
    /// Firing first, then resolved; each sorted by `starts_at_ms` then labels.
    pub alerts: Vec<Alert>,
    /// Base URL of the Lookout UI for links (`server.external_url`), without trailing `/`.
    pub external_url: String,
    /// When the group was flushed.
    pub now_ms: i64,
}

impl Notification {
    /// Firing when any alert is still firing at `now_ms`, as Alertmanager's `status`.
    pub fn is_firing(&self) -> bool {
        self.alerts.iter().any(|a| !a.is_resolved_at(self.now_ms))
    }

    pub fn firing(&self) -> impl Iterator<Item = &Alert> {
        self.alerts
            .iter()
            .filter(|a| !a.is_resolved_at(self.now_ms))
    }

    pub fn resolved(&self) -> impl Iterator<Item = &Alert> {
        self.alerts.iter().filter(|a| a.is_resolved_at(self.now_ms))
    }

    /// Labels every alert shares (Alertmanager's `commonLabels`).
    pub fn common_labels(&self) -> LabelSet {
        common(self.alerts.iter().map(|a| &a.labels))
    }

    /// Annotations every alert shares (Alertmanager's `commonAnnotations`).
    pub fn common_annotations(&self) -> LabelSet {
        common(self.alerts.iter().map(|a| &a.annotations))
    }
}

fn common<'a>(mut sets: impl Iterator<Item = &'a LabelSet>) -> LabelSet {
    let Some(first) = sets.next() else {
        return LabelSet::new();
    };
    let mut out = first.clone();
    for set in sets {
        out.retain(|k, v| set.get(k) == Some(v));
    }
    out
}

/// Where evaluated alerts go (the dispatcher). Never blocks the caller: rule evaluation
/// must not wait on the network.
pub trait AlertSink: Send + Sync {
    fn put(&self, alerts: Vec<Alert>);
}

/// A label set from `(name, value)` pairs: the one test helper every module of the crate
/// builds its labels with.
#[cfg(test)]
pub(crate) fn label_set(pairs: &[(&str, &str)]) -> LabelSet {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_depends_on_every_label_and_the_split_between_name_and_value() {
        let a = Fingerprint::of(&label_set(&[("a", "bc")]));
        let b = Fingerprint::of(&label_set(&[("ab", "c")]));
        assert_ne!(a, b);
        assert_eq!(a, Fingerprint::of(&label_set(&[("a", "bc")])));
        assert_eq!(a.to_string().len(), 16);
    }

    #[test]
    fn secrets_do_not_print() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?}"), "<secret>");
    }

    #[test]
    fn notification_splits_firing_and_resolved_and_finds_common_labels() {
        let alert = |name: &str, end: Option<i64>| Alert {
            labels: label_set(&[("alertname", name), ("team", "db")]),
            annotations: LabelSet::new(),
            starts_at_ms: 0,
            ends_at_ms: end,
            updated_at_ms: 0,
            generator_url: String::new(),
            evidence: Evidence::default(),
        };
        let n = Notification {
            receiver: "r".into(),
            group_key: "{}:{}".into(),
            group_labels: LabelSet::new(),
            alerts: vec![alert("A", None), alert("B", Some(5))],
            external_url: String::new(),
            now_ms: 10,
        };
        assert!(n.is_firing());
        assert_eq!(n.firing().count(), 1);
        assert_eq!(n.resolved().count(), 1);
        assert_eq!(n.common_labels(), label_set(&[("team", "db")]));
    }
}
