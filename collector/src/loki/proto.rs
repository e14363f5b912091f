//! Loki's protobuf push body (`logproto.PushRequest`, snappy block compressed), declared with
//! prost derive. Every string is declared `bytes`, so invalid UTF-8 in a line (or a label)
//! is replaced by U+FFFD and counted instead of failing the whole push; `parsed` (field 4,
//! labels Loki's own pipelines extracted) is read and ignored.

use prost::Message;

use super::convert::{EntryIn, StreamIn};
use super::labels::parse_labels;
use crate::logs::record::lossy_string;
use crate::IngestError;

/// `logproto.PushRequest`.
#[derive(Clone, PartialEq, Message)]
pub struct PushRequest {
    #[prost(message, repeated, tag = "1")]
    pub streams: Vec<StreamAdapter>,
}

/// `logproto.StreamAdapter`.
#[derive(Clone, PartialEq, Message)]
pub struct StreamAdapter {
    /// The label set in Prometheus syntax: `{app="x", env="prod"}`.
    #[prost(bytes = "vec", tag = "1")]
    pub labels: Vec<u8>,
    #[prost(message, repeated, tag = "2")]
    pub entries: Vec<EntryAdapter>,
    #[prost(uint64, tag = "3")]
    pub hash: u64,
}

/// `logproto.EntryAdapter`.
#[derive(Clone, PartialEq, Message)]
pub struct EntryAdapter {
    #[prost(message, optional, tag = "1")]
    pub timestamp: Option<Timestamp>,
    #[prost(bytes = "vec", tag = "2")]
    pub line: Vec<u8>,
    #[prost(message, repeated, tag = "3")]
    pub structured_metadata: Vec<LabelPairAdapter>,
    #[prost(message, repeated, tag = "4")]
    pub parsed: Vec<LabelPairAdapter>,
}

/// `logproto.LabelPairAdapter`.
#[derive(Clone, PartialEq, Message)]
pub struct LabelPairAdapter {
    #[prost(bytes = "vec", tag = "1")]
    pub name: Vec<u8>,
    #[prost(bytes = "vec", tag = "2")]
    pub value: Vec<u8>,
}

/// `google.protobuf.Timestamp`.
#[derive(Clone, Copy, PartialEq, Message)]
pub struct Timestamp {
    #[prost(int64, tag = "1")]
    pub seconds: i64,
    #[prost(int32, tag = "2")]
    pub nanos: i32,
}

impl Timestamp {
    /// Unix nanoseconds; before 1970, past 2554 or with nanos out of range is an error.
    pub fn to_unix_nanos(self) -> Result<u64, String> {
        let Timestamp { seconds, nanos } = self;
        let secs = u64::try_from(seconds).ok();
        let nanos_ok = (0..1_000_000_000).contains(&nanos);
        secs.filter(|_| nanos_ok)
            .and_then(|s| s.checked_mul(1_000_000_000))
            .and_then(|ns| ns.checked_add(nanos as u64))
            .ok_or_else(|| {
                format!(
                    "invalid timestamp {{seconds: {seconds}, nanos: {nanos}}}: expected a time \
                     after 1970 with nanos from 0 to 999999999"
                )
            })
    }
}

/// Inflates a snappy block body without ever allocating more than `limit` bytes.
pub fn unsnappy(raw: &[u8], limit: usize) -> Result<Vec<u8>, IngestError> {
    let len = snap::raw::decompress_len(raw).map_err(|e| {
        IngestError::Malformed(format!("failed to decompress the snappy push body: {e}"))
    })?;
    if len > limit {
        return Err(IngestError::BodyTooLarge { limit });
    }
    snap::raw::Decoder::new().decompress_vec(raw).map_err(|e| {
        IngestError::Malformed(format!("failed to decompress the snappy push body: {e}"))
    })
}

/// Decodes an inflated protobuf push body; `invalid_utf8` counts the strings repaired.
pub fn decode(payload: &[u8], invalid_utf8: &mut u64) -> Result<Vec<StreamIn>, IngestError> {
    let push = PushRequest::decode(payload).map_err(|e| {
        IngestError::Malformed(format!("failed to decode protobuf PushRequest: {e}"))
    })?;
    let mut n = 0u64;
    let mut s = |b: Vec<u8>| lossy_string(b, &mut n);
    let streams = push
        .streams
        .into_iter()
        .map(|stream| {
            let labels_text = s(stream.labels);
            StreamIn {
                labels: parse_labels(&labels_text),
                labels_text,
                entries: stream
                    .entries
                    .into_iter()
                    .map(|e| EntryIn {
                        timestamp: e.timestamp.map_or_else(
                            || Err("the entry has no timestamp".to_string()),
                            Timestamp::to_unix_nanos,
                        ),
                        line: s(e.line),
                        metadata: e
                            .structured_metadata
                            .into_iter()
                            .map(|p| (s(p.name), s(p.value)))
                            .collect(),
                    })
                    .collect(),
            }
        })
        .collect();
    *invalid_utf8 += n;
    Ok(streams)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_convert_or_say_why_not() {
        let t = |seconds, nanos| Timestamp { seconds, nanos }.to_unix_nanos();
        assert_eq!(t(1_700_000_000, 5), Ok(1_700_000_000_000_000_005));
        assert_eq!(t(0, 0), Ok(0));
        assert!(t(-1, 0).unwrap_err().contains("seconds: -1"));
        assert!(t(1, 1_000_000_000).is_err());
        assert!(t(1, -1).is_err());
        assert!(t(i64::MAX, 0).is_err());
    }

    #[test]
    fn a_push_request_decodes_with_invalid_utf8_repaired() {
        let push = PushRequest {
            streams: vec![StreamAdapter {
                labels: br#"{app="a", env="prod"}"#.to_vec(),
                entries: vec![
                    EntryAdapter {
                        timestamp: Some(Timestamp {
                            seconds: 1_700_000_000,
                            nanos: 1,
                        }),
                        line: b"caf\xe9 line".to_vec(),
                        structured_metadata: vec![LabelPairAdapter {
                            name: b"user".to_vec(),
                            value: b"u1".to_vec(),
                        }],
                        parsed: vec![],
                    },
                    EntryAdapter {
                        timestamp: Some(Timestamp {
                            seconds: -5,
                            nanos: 0,
                        }),
                        line: b"old".to_vec(),
                        ..Default::default()
                    },
                ],
                hash: 0,
            }],
        };
        let mut n = 0;
        let streams = decode(&push.encode_to_vec(), &mut n).unwrap();
        assert_eq!(n, 1);
        let s = &streams[0];
        assert_eq!(s.labels.as_ref().unwrap().len(), 2);
        assert_eq!(s.entries[0].timestamp, Ok(1_700_000_000_000_000_001));
        assert_eq!(s.entries[0].line, "caf\u{fffd} line");
        assert_eq!(s.entries[0].metadata, vec![("user".into(), "u1".into())]);
        assert!(s.entries[1].timestamp.is_err());
    }

    #[test]
    fn snappy_is_inflated_under_the_limit() {
        let body = vec![b'a'; 10_000];
        let compressed = snap::raw::Encoder::new().compress_vec(&body).unwrap();
        assert_eq!(unsnappy(&compressed, 10_000).unwrap(), body);
        assert!(matches!(
            unsnappy(&compressed, 9_999).unwrap_err(),
            IngestError::BodyTooLarge { limit: 9_999 }
        ));
        assert!(matches!(
            unsnappy(b"\xff\xff\xff\xff\xff\xff", 100).unwrap_err(),
            IngestError::Malformed(_)
        ));
    }
}
