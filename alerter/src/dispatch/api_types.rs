//! Alertmanager's v2 API JSON (camelCase, times in RFC 3339): alerts posted by an external
//! Prometheus and listed back, silences, matchers, and the alert list filter.

use std::fmt;

use regex::Regex;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::matchers::{is_valid_label_name, parse_matchers, MatchType, Matcher as LabelMatcher};
use crate::model::LabelSet;

/// A time in Unix milliseconds that (de)serialises as RFC 3339 (UTC, millisecond precision
/// on output; any offset and fraction accepted on input).
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
        parse_rfc3339(&text)
            .map(Timestamp)
            .ok_or_else(|| serde::de::Error::custom(format!("invalid RFC 3339 time {text:?}")))
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&format_rfc3339(self.0))
    }
}

fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// `2024-01-02T03:04:05.678Z`.
pub fn format_rfc3339(ms: i64) -> String {
    let days = ms.div_euclid(86_400_000);
    let rem = ms.rem_euclid(86_400_000);
    let (y, m, d) = civil_from_days(days);
    let (h, mi, s, frac) = (
        rem / 3_600_000,
        rem / 60_000 % 60,
        rem / 1000 % 60,
        rem % 1000,
    );
    format!("{y:04}-{m:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{frac:03}Z")
}

/// Parses RFC 3339 (`Z` or `±hh:mm`, optional fraction); `None` when malformed.
pub fn parse_rfc3339(text: &str) -> Option<i64> {
    let b = text.as_bytes();
    if b.len() < 20 {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let s = text.get(r)?;
        if !s.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        s.parse().ok()
    };
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    if b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    let (h, mi, s) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || s > 60 {
        return None;
    }
    let mut i = 19;
    let mut frac_ms = 0i64;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == start {
            return None;
        }
        let digits = &text[start..i];
        let first3: String = digits.chars().chain("000".chars()).take(3).collect();
        frac_ms = first3.parse().ok()?;
    }
    let offset_min = match b.get(i) {
        Some(b'Z' | b'z') if i + 1 == b.len() => 0,
        Some(sign @ (b'+' | b'-')) if i + 6 == b.len() && b[i + 3] == b':' => {
            let oh = num(i + 1..i + 3)?;
            let om = num(i + 4..i + 6)?;
            let off = oh * 60 + om;
            if *sign == b'-' {
                -off
            } else {
                off
            }
        }
        _ => return None,
    };
    let days = days_from_civil(y, mo, d);
    let secs = days * 86_400 + h * 3600 + mi * 60 + s - offset_min * 60;
    Some(secs * 1000 + frac_ms)
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
    fn rfc3339_round_trips_and_accepts_offsets() {
        let ms = parse_rfc3339("2024-02-29T23:59:58.5Z").unwrap();
        assert_eq!(format_rfc3339(ms), "2024-02-29T23:59:58.500Z");
        assert_eq!(parse_rfc3339("1970-01-01T08:00:00+08:00"), Some(0));
        assert_eq!(parse_rfc3339("1970-01-01T00:00:01.123456789Z"), Some(1123));
        assert_eq!(format_rfc3339(-1), "1969-12-31T23:59:59.999Z");
        assert!(parse_rfc3339("2024-13-01T00:00:00Z").is_none());
        assert!(parse_rfc3339("2024-01-01 00:00").is_none());
        assert!(parse_rfc3339("2024-01-01T00:00:00").is_none());
        for junk in [
            "2024-01-01T00:00:00.é",
            "２０２４-01-01T00:00:00Z",
            "2024-01-01T00:00:00+08",
            "2024-01-01T00:00:00.Z",
            "2024-01-01T00:00:00+0é:00",
        ] {
            assert!(parse_rfc3339(junk).is_none(), "{junk}");
        }
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
