//! Loki's JSON push body:
//! `{"streams":[{"stream":{"app":"x"},"values":[["<ns>","line"],["<ns>","line",{"k":"v"}]]}]}`.
//!
//! Decoded straight into [`StreamIn`]s by typed serde (no intermediate `Value`), after invalid
//! UTF-8 was replaced (and counted). The request is refused whole (400) only when it is not
//! that shape; a timestamp that is not Unix nanoseconds rejects its entry alone. The legacy
//! `entries` form (`{"ts": RFC 3339, "line": ...}`) is refused with a message saying so.

use std::fmt;

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

use super::convert::{parse_ns, EntryIn, StreamIn};
use crate::logs::record::lossy_str;
use crate::IngestError;

#[derive(Deserialize)]
struct PushJson {
    #[serde(default)]
    streams: Vec<StreamJson>,
}

#[derive(Deserialize)]
struct StreamJson {
    #[serde(default)]
    stream: Pairs,
    #[serde(default)]
    values: Vec<EntryJson>,
    #[serde(default)]
    entries: Option<IgnoredAny>,
}

/// A JSON object of string values, in the order sent.
#[derive(Default)]
struct Pairs(Vec<(String, String)>);

impl<'de> Deserialize<'de> for Pairs {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Pairs;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object of string values")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Pairs, A::Error> {
                let mut out = Vec::with_capacity(map.size_hint().unwrap_or(4));
                while let Some((k, v)) = map.next_entry::<String, String>()? {
                    out.push((k, v));
                }
                Ok(Pairs(out))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Pairs, E> {
                Ok(Pairs::default())
            }
        }
        d.deserialize_any(V)
    }
}

/// `["<ns>", "line"]` or `["<ns>", "line", {structured metadata}]`.
struct EntryJson(EntryIn);

/// A timestamp as sent: its value in ns, or what is wrong with it.
struct Timestamp(Result<u64, String>);

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Timestamp;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a timestamp in Unix nanoseconds")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Timestamp, E> {
                Ok(Timestamp(parse_ns(s)))
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<Timestamp, E> {
                Ok(Timestamp(Ok(n)))
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<Timestamp, E> {
                Ok(Timestamp(parse_ns(&n.to_string())))
            }
            fn visit_f64<E: de::Error>(self, n: f64) -> Result<Timestamp, E> {
                Ok(Timestamp(parse_ns(&n.to_string())))
            }
            fn visit_bool<E: de::Error>(self, b: bool) -> Result<Timestamp, E> {
                Ok(Timestamp(parse_ns(&b.to_string())))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Timestamp, E> {
                Ok(Timestamp(parse_ns("null")))
            }
        }
        d.deserialize_any(V)
    }
}

impl<'de> Deserialize<'de> for EntryJson {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = EntryJson;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an entry [\"<unix ns>\", \"<line>\"] or [\"<unix ns>\", \"<line>\", {metadata}]")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<EntryJson, A::Error> {
                let Timestamp(timestamp) = seq
                    .next_element()?
                    .ok_or_else(|| de::Error::invalid_length(0, &self))?;
                let line: String = seq
                    .next_element()?
                    .ok_or_else(|| de::Error::invalid_length(1, &self))?;
                let metadata: Option<Pairs> = seq.next_element()?;
                if seq.next_element::<IgnoredAny>()?.is_some() {
                    return Err(de::Error::invalid_length(4, &self));
                }
                Ok(EntryJson(EntryIn {
                    timestamp,
                    line,
                    metadata: metadata.map(|p| p.0).unwrap_or_default(),
                }))
            }
        }
        d.deserialize_seq(V)
    }
}

/// Decodes a JSON push body; `invalid_utf8` counts the invalid sequences replaced.
pub fn decode(payload: &[u8], invalid_utf8: &mut u64) -> Result<Vec<StreamIn>, IngestError> {
    let text = lossy_str(payload, invalid_utf8);
    let push: PushJson = serde_json::from_str(&text).map_err(|e| {
        IngestError::Malformed(format!("failed to decode the JSON push request: {e}"))
    })?;
    let mut out = Vec::with_capacity(push.streams.len());
    for (i, stream) in push.streams.into_iter().enumerate() {
        if stream.entries.is_some() && stream.values.is_empty() {
            return Err(IngestError::Malformed(format!(
                "stream {i}: the legacy \"entries\" form is not supported; send \"values\": \
                 [[\"<unix ns>\", \"<line>\"], ...]"
            )));
        }
        let labels = stream.stream.0;
        let labels_text = labels_text(&labels);
        out.push(StreamIn {
            labels: Ok(labels),
            labels_text,
            entries: stream.values.into_iter().map(|e| e.0).collect(),
        });
    }
    Ok(out)
}

/// A label set written the way Loki prints it, for messages.
fn labels_text(labels: &[(String, String)]) -> String {
    let inner: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
    format!("{{{}}}", inner.join(", "))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn streams_values_and_metadata_decode() {
        let body = br#"{"streams":[{"stream":{"app":"a","env":"prod"},"values":[
            ["1700000000000000000","one"],
            ["1700000000000000001","two",{"trace_id":"abc","user":"u1"}],
            [1700000000000000002,"three"]]},
            {"stream":{},"values":[]}]}"#;
        let mut n = 0;
        let streams = decode(body, &mut n).unwrap();
        assert_eq!(n, 0);
        assert_eq!(streams.len(), 2);
        let s = &streams[0];
        assert_eq!(
            s.labels.as_ref().unwrap(),
            &vec![("app".into(), "a".into()), ("env".into(), "prod".into())]
        );
        assert_eq!(s.labels_text, r#"{app="a", env="prod"}"#);
        assert_eq!(s.entries.len(), 3);
        assert_eq!(s.entries[0].timestamp, Ok(1_700_000_000_000_000_000));
        assert_eq!(s.entries[1].line, "two");
        assert_eq!(s.entries[1].metadata.len(), 2);
        assert_eq!(s.entries[2].timestamp, Ok(1_700_000_000_000_000_002));
    }

    #[test]
    fn a_bad_timestamp_is_kept_for_the_converter() {
        let body =
            br#"{"streams":[{"stream":{"app":"a"},"values":[["soon","x"],[-5,"y"],[1.5,"z"]]}]}"#;
        let streams = decode(body, &mut 0).unwrap();
        for e in &streams[0].entries {
            assert!(
                e.timestamp
                    .as_ref()
                    .unwrap_err()
                    .contains("invalid timestamp"),
                "{e:?}"
            );
        }
    }

    #[test]
    fn wrong_shapes_are_malformed_naming_the_problem() {
        for (body, want) in [
            (&br#"{"streams":[{"stream":{"app":"a"},"values":[["1"]]}]}"#[..], "invalid length 1"),
            (br#"{"streams":[{"stream":{"app":"a"},"values":[["1","x",{},4]]}]}"#, "invalid length 4"),
            (br#"{"streams":[{"stream":{"app":5},"values":[]}]}"#, "invalid type: integer `5`"),
            (br#"{"streams":[{"stream":{},"values":[["1",2]]}]}"#, "invalid type: integer `2`"),
            (br#"{"streams":"#, "EOF"),
            (br#"{"streams":[{"labels":"{a=\"b\"}","entries":[{"ts":"2024-01-01T00:00:00Z","line":"x"}]}]}"#, "legacy"),
        ] {
            let err = decode(body, &mut 0).unwrap_err();
            assert!(matches!(err, IngestError::Malformed(_)));
            assert!(err.to_string().contains(want), "{err}");
        }
    }

    #[test]
    fn invalid_utf8_is_replaced_and_counted() {
        let mut body =
            br#"{"streams":[{"stream":{"app":"a"},"values":[["1","bad XX line"]]}]}"#.to_vec();
        let at = body.windows(2).position(|w| w == b"XX").unwrap();
        body[at] = 0xff;
        body[at + 1] = 0xfe;
        let mut n = 0;
        let streams = decode(&body, &mut n).unwrap();
        // two bytes that cannot start a character: two invalid sequences
        assert_eq!(n, 2);
        assert_eq!(streams[0].entries[0].line, "bad \u{fffd}\u{fffd} line");
    }
}
