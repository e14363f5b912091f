//! Alertmanager's v2 API JSON (camelCase, times in RFC 3339): alerts posted by an external
//! Prometheus and listed back, silences, matchers, and the alert list filter.

use std::fmt;

use regex::Regex;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
/// `2024-01-02T03:04:05.678Z`, as the v2 API writes times.
pub use store::timefmt::format_rfc3339_millis as format_rfc3339;
use store::timefmt::parse_rfc3339_millis;

use super::matchers::{is_valid_label_name, parse_matchers, MatchType, Matcher as LabelMatcher};
use crate::model::LabelSet;

/// A time in Unix milliseconds that (de)serialises as RFC 3339 (UTC, millisecond precision
/// on output; any `±hh:mm` offset and up to nine fraction digits accepted on input).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Timestamp(pub i64);

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format_rfc3339(self.0))
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        parse_rfc3339_millis(&text)
            .map(Timestamp)
            .ok_or_else(|| serde::de::Error::custom(format!("invalid RFC 3339 time {text:?}")))
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&format_rfc3339(self.0))
    }
}

/// Alertmanager's v2 matcher.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Matcher {
    pub name: String,
    pub value: String,
    pub is_regex: bool,
    #[serde(default = "default_true")]
    pub is_equal: bool,
}

fn default_true() -> bool {
    true
}

impl Matcher {
    pub fn to_label_matcher(&self) -> Result<LabelMatcher, String> {
        if !is_valid_label_name(&self.name) {
            return Err(format!("invalid label name {:?}", self.name));
        }
        LabelMatcher::new(
            MatchType::from_flags(self.is_regex, self.is_equal),
            &self.name,
            &self.value,
        )
    }

    pub fn from_label_matcher(m: &LabelMatcher) -> Self {
        Matcher {
            name: m.name.clone(),
            value: m.value.clone(),
            is_regex: m.kind.is_regex(),
            is_equal: m.kind.is_equal(),
        }
    }
}

/// One alert of `POST /api/v2/alerts`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PostableAlert {
    pub labels: LabelSet,
    #[serde(default)]
    pub annotations: LabelSet,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub starts_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ends_at: Option<Timestamp>,
    #[serde(default, rename = "generatorURL")]
    pub generator_url: String,
}

impl PostableAlert {
    /// Alertmanager's `Alert.Validate` (after the API filled in a missing start time).
    pub fn validate(&self) -> Result<(), String> {
        if self.labels.is_empty() {
            return Err("at least one label pair required".into());
        }
        for name in self.labels.keys() {
            if !is_valid_label_name(name) {
                return Err(format!("invalid label set: invalid name {name:?}"));
            }
        }
        for name in self.annotations.keys() {
            if !is_valid_label_name(name) {
                return Err(format!("invalid annotations: invalid name {name:?}"));
            }
        }
        if let (Some(s), Some(e)) = (self.starts_at, self.ends_at) {
            if e < s {
                return Err("start time must be before end time".into());
            }
        }
        Ok(())
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Receiver {
    pub name: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertState {
    Unprocessed,
    Active,
    Suppressed,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AlertStatus {
    pub state: AlertState,
    pub silenced_by: Vec<String>,
    pub inhibited_by: Vec<String>,
}

/// One alert of `GET /api/v2/alerts`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GettableAlert {
    pub labels: LabelSet,
    pub annotations: LabelSet,
    pub starts_at: Timestamp,
    pub ends_at: Timestamp,
    pub updated_at: Timestamp,
    #[serde(rename = "generatorURL")]
    pub generator_url: String,
    pub fingerprint: String,
    pub receivers: Vec<Receiver>,
    pub status: AlertStatus,
}

/// One aggregation group of `GET /api/v2/alerts/groups`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AlertGroup {
    pub labels: LabelSet,
    pub receiver: Receiver,
    pub alerts: Vec<GettableAlert>,
}

/// The body of `POST /api/v2/silences`: a new silence, or with `id` an update.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PostableSilence {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub matchers: Vec<Matcher>,
    pub starts_at: Timestamp,
    pub ends_at: Timestamp,
    #[serde(default)]
    pub created_by: String,
    #[serde(default)]
    pub comment: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SilenceState {
    Active,
    Pending,
    Expired,
}

impl SilenceState {
    pub fn as_str(self) -> &'static str {
        match self {
            SilenceState::Active => "active",
            SilenceState::Pending => "pending",
            SilenceState::Expired => "expired",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SilenceStatus {
    pub state: SilenceState,
}

/// One silence of `GET /api/v2/silences` and `GET /api/v2/silence/{id}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GettableSilence {
    pub id: String,
    pub status: SilenceStatus,
    pub updated_at: Timestamp,
    pub matchers: Vec<Matcher>,
    pub starts_at: Timestamp,
    pub ends_at: Timestamp,
    pub created_by: String,
    pub comment: String,
}

/// The query of `GET /api/v2/alerts`, with Alertmanager's defaults (everything shown).
#[derive(Clone, Debug)]
pub struct AlertFilter {
    /// `filter[]`: label matchers every shown alert matches.
    pub matchers: Vec<LabelMatcher>,
    pub silenced: bool,
    pub inhibited: bool,
    pub active: bool,
    pub unprocessed: bool,
    /// `receiver`: a regex (anchored) one of the alert's receivers must match.
    pub receiver: Option<Regex>,
}

impl Default for AlertFilter {
    fn default() -> Self {
        AlertFilter {
            matchers: Vec::new(),
            silenced: true,
            inhibited: true,
            active: true,
            unprocessed: true,
            receiver: None,
        }
    }
}

impl AlertFilter {
    /// Builds a filter from the query's `filter[]` values and `receiver` regex; the
    /// boolean flags are set by the caller.
    pub fn parse(filters: &[String], receiver: Option<&str>) -> Result<Self, String> {
        let mut f = AlertFilter {
            matchers: parse_filter(filters)?,
            ..AlertFilter::default()
        };
        if let Some(r) = receiver.filter(|r| !r.is_empty()) {
            f.receiver = Some(
                Regex::new(&format!("^(?:{r})$"))
                    .map_err(|e| format!("failed to parse receiver param: {e}"))?,
            );
        }
        Ok(f)
    }
}

/// `filter[]` query values (each a matcher or a `{...}` list) as matchers.
pub fn parse_filter(filters: &[String]) -> Result<Vec<LabelMatcher>, String> {
    let mut out = Vec::new();
    for f in filters {
        out.extend(parse_matchers(f).map_err(|e| format!("bad filter {f:?}: {e}"))?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamp_json_is_rfc3339() {
        let t: Timestamp = serde_json::from_str("\"2024-02-29T23:59:58.5+00:00\"").unwrap();
        assert_eq!(
            serde_json::to_string(&t).unwrap(),
            "\"2024-02-29T23:59:58.500Z\""
        );
        assert_eq!(t.to_string(), "2024-02-29T23:59:58.500Z");
        assert!(serde_json::from_str::<Timestamp>("\"yesterday\"").is_err());
    }

    #[test]
    fn postable_alert_json_and_validation() {
        let a: PostableAlert = serde_json::from_str(
            r#"{"labels":{"alertname":"X"},"startsAt":"2024-01-01T00:00:00Z","generatorURL":"http://p"}"#,
        )
        .unwrap();
        assert_eq!(a.generator_url, "http://p");
        assert!(a.validate().is_ok());
        let mut bad = a.clone();
        bad.labels.clear();
        assert!(bad.validate().unwrap_err().contains("at least one label"));
        let mut bad = a.clone();
        bad.labels.insert("1x".into(), "v".into());
        assert!(bad.validate().unwrap_err().contains("invalid name"));
        let mut bad = a;
        bad.ends_at = Some(Timestamp(bad.starts_at.unwrap().0 - 1));
        assert!(bad.validate().unwrap_err().contains("before end"));
    }

    #[test]
    fn matcher_defaults_is_equal_and_filter_parses() {
        let m: Matcher =
            serde_json::from_str(r#"{"name":"a","value":"b","isRegex":false}"#).unwrap();
        assert!(m.is_equal);
        let f = AlertFilter::parse(
            &[r#"team=~"db.*""#.into(), "{a=b,c!=d}".into()],
            Some("on.*"),
        )
        .unwrap();
        assert_eq!(f.matchers.len(), 3);
        assert!(f.receiver.unwrap().is_match("oncall"));
        assert!(AlertFilter::parse(&["=x".into()], None).is_err());
    }
}
