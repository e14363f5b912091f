//! What a span says about the call it records: whether it failed, and, for a client span, what
//! it called when no instrumented server answers (a database, a queue, an external host).
//!
//! **Errors** follow the OpenTelemetry semantic conventions, so an instrumentation that leaves
//! the status unset is still judged the way the conventions would have set it:
//! - status `ERROR` is an error, status `OK` is final and never an error (the API spec: OK
//!   overrides what instrumentation would decide);
//! - status `UNSET` on a **server** span: an error when the HTTP response status
//!   (`http.response.status_code`, or the older `http.status_code`) is 5xx, or the gRPC status
//!   (`rpc.grpc.status_code`) is one the gRPC conventions make a server error: UNKNOWN (2),
//!   DEADLINE_EXCEEDED (4), UNIMPLEMENTED (12), INTERNAL (13), UNAVAILABLE (14) or DATA_LOSS
//!   (15). A 4xx is the client's fault and not the server's error;
//! - status `UNSET` on a **client** span: an error for any HTTP status >= 400 and any non-zero
//!   gRPC status (the HTTP and gRPC conventions for client spans);
//! - other kinds: only status `ERROR`.
//!
//! Status attributes are read as integers, or as strings holding an integer (some older
//! instrumentations write them so).

use std::borrow::Cow;

use store::traces::model::attr;
use store::traces::{AttrValue, Attributes, Span, SpanKind, StatusCode};

/// gRPC codes the conventions make a server-side error.
const GRPC_SERVER_ERRORS: [i64; 6] = [2, 4, 12, 13, 14, 15];

/// Whether the span records a failed call (see the module docs).
pub fn is_error(span: &Span) -> bool {
    match span.status_code {
        StatusCode::Error => true,
        StatusCode::Ok => false,
        StatusCode::Unset => match span.kind {
            SpanKind::Server => {
                http_status(&span.attributes).is_some_and(|s| s >= 500)
                    || grpc_status(&span.attributes)
                        .is_some_and(|c| GRPC_SERVER_ERRORS.contains(&c))
            }
            SpanKind::Client => {
                http_status(&span.attributes).is_some_and(|s| s >= 400)
                    || grpc_status(&span.attributes).is_some_and(|c| c != 0)
            }
            _ => false,
        },
    }
}

/// The status the span metrics label a span with: `ERROR` when [`is_error`], else the span's
/// own (`UNSET` or `OK`).
pub fn effective_status(span: &Span) -> StatusCode {
    if is_error(span) {
        StatusCode::Error
    } else {
        span.status_code
    }
}

fn int_attr(attrs: &Attributes, key: &str) -> Option<i64> {
    match attr(attrs, key)? {
        AttrValue::Int(i) => Some(*i),
        AttrValue::Str(s) => s.trim().parse().ok(),
        // whole numbers only: 500.0 is 500, 500.5 is no status
        AttrValue::Double(d) if d.fract() == 0.0 && d.is_finite() => Some(*d as i64),
        _ => None,
    }
}

fn http_status(attrs: &Attributes) -> Option<i64> {
    int_attr(attrs, "http.response.status_code").or_else(|| int_attr(attrs, "http.status_code"))
}

fn grpc_status(attrs: &Attributes) -> Option<i64> {
    int_attr(attrs, "rpc.grpc.status_code")
}

/// A non-empty attribute value as text (borrowed when it is a string).
fn text_attr<'a>(attrs: &'a Attributes, key: &str) -> Option<Cow<'a, str>> {
    let text = match attr(attrs, key)? {
        AttrValue::Str(s) => Cow::Borrowed(s.as_str()),
        other => Cow::Owned(other.to_text()),
    };
    (!text.is_empty()).then_some(text)
}

/// Attributes marking a span as a database call (current and older conventions).
const DATABASE_ATTRS: [&str; 4] = ["db.system.name", "db.system", "db.namespace", "db.name"];

/// Where a database client span's node name comes from, in order.
const DATABASE_NODE_ATTRS: [&str; 8] = [
    "peer.service",
    "db.system.name",
    "db.system",
    "server.address",
    "net.peer.name",
    "network.peer.address",
    "db.namespace",
    "db.name",
];

/// Where a client span's virtual node name comes from, in order, when no server span answers.
const PEER_NODE_ATTRS: [&str; 5] = [
    "peer.service",
    "db.system.name",
    "db.system",
    "server.address",
    "net.peer.name",
];

/// For a client span to a database: the node it calls, named from `peer.service`, then
/// `db.system.name` / `db.system` (`postgresql`, `redis`), then the server address (and, for
/// spans that have nothing else, the database name). `None` when the span is no database call.
pub fn database_node(attrs: &Attributes) -> Option<Cow<'_, str>> {
    if !DATABASE_ATTRS.iter().any(|k| text_attr(attrs, k).is_some()) {
        return None;
    }
    DATABASE_NODE_ATTRS.iter().find_map(|k| text_attr(attrs, k))
}

/// For a client or producer span whose server half never arrives: the uninstrumented peer it
/// called, named from `peer.service`, `db.system.name` / `db.system`, `server.address` or the
/// older `net.peer.name`. `None` when the span names no peer.
pub fn peer_node(attrs: &Attributes) -> Option<Cow<'_, str>> {
    PEER_NODE_ATTRS.iter().find_map(|k| text_attr(attrs, k))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn span(kind: SpanKind, status: StatusCode, attrs: &[(&str, AttrValue)]) -> Span {
        Span {
            kind,
            status_code: status,
            attributes: attrs
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn status_error_is_an_error_and_ok_is_final() {
        for kind in [SpanKind::Server, SpanKind::Client, SpanKind::Internal] {
            assert!(is_error(&span(kind, StatusCode::Error, &[])));
            assert!(!is_error(&span(kind, StatusCode::Unset, &[])));
            let http500 = [("http.response.status_code", AttrValue::Int(500))];
            assert!(!is_error(&span(kind, StatusCode::Ok, &http500)), "{kind:?}");
        }
    }

    #[test]
    fn http_5xx_fails_servers_and_4xx_only_clients() {
        for (key, value) in [
            ("http.response.status_code", AttrValue::Int(503)),
            ("http.status_code", AttrValue::Int(500)),
            ("http.status_code", AttrValue::Str("502".into())),
            ("http.response.status_code", AttrValue::Double(500.0)),
        ] {
            let attrs = [(key, value.clone())];
            assert!(
                is_error(&span(SpanKind::Server, StatusCode::Unset, &attrs)),
                "{value:?}"
            );
            assert!(
                is_error(&span(SpanKind::Client, StatusCode::Unset, &attrs)),
                "{value:?}"
            );
            assert!(!is_error(&span(
                SpanKind::Internal,
                StatusCode::Unset,
                &attrs
            )));
        }
        let not_found = [("http.response.status_code", AttrValue::Int(404))];
        assert!(!is_error(&span(
            SpanKind::Server,
            StatusCode::Unset,
            &not_found
        )));
        assert!(is_error(&span(
            SpanKind::Client,
            StatusCode::Unset,
            &not_found
        )));
        let ok = [("http.response.status_code", AttrValue::Int(200))];
        assert!(!is_error(&span(SpanKind::Server, StatusCode::Unset, &ok)));
        assert!(!is_error(&span(SpanKind::Client, StatusCode::Unset, &ok)));
        // the current attribute wins over the old one
        let both = [
            ("http.response.status_code", AttrValue::Int(200)),
            ("http.status_code", AttrValue::Int(500)),
        ];
        assert!(!is_error(&span(SpanKind::Server, StatusCode::Unset, &both)));
        let junk = [("http.status_code", AttrValue::Str("teapot".into()))];
        assert!(!is_error(&span(SpanKind::Server, StatusCode::Unset, &junk)));
    }

    #[test]
    fn grpc_codes_per_the_conventions() {
        let server_errors = [2, 4, 12, 13, 14, 15];
        for code in 0..=16i64 {
            let attrs = [("rpc.grpc.status_code", AttrValue::Int(code))];
            assert_eq!(
                is_error(&span(SpanKind::Server, StatusCode::Unset, &attrs)),
                server_errors.contains(&code),
                "server, code {code}"
            );
            assert_eq!(
                is_error(&span(SpanKind::Client, StatusCode::Unset, &attrs)),
                code != 0,
                "client, code {code}"
            );
        }
    }

    #[test]
    fn effective_status_marks_derived_errors() {
        let attrs = [("http.response.status_code", AttrValue::Int(500))];
        assert_eq!(
            effective_status(&span(SpanKind::Server, StatusCode::Unset, &attrs)),
            StatusCode::Error
        );
        assert_eq!(
            effective_status(&span(SpanKind::Server, StatusCode::Ok, &attrs)),
            StatusCode::Ok
        );
        assert_eq!(
            effective_status(&span(SpanKind::Server, StatusCode::Unset, &[])),
            StatusCode::Unset
        );
    }

    #[test]
    fn database_and_peer_nodes() {
        let s = |v: &str| AttrValue::Str(v.to_string());
        let attrs: Attributes = vec![
            ("db.system".into(), s("postgresql")),
            ("server.address".into(), s("db-1")),
        ];
        assert_eq!(database_node(&attrs).as_deref(), Some("postgresql"));
        assert_eq!(peer_node(&attrs).as_deref(), Some("postgresql"));
        let attrs: Attributes = vec![
            ("db.system.name".into(), s("redis")),
            ("peer.service".into(), s("sessions")),
        ];
        assert_eq!(database_node(&attrs).as_deref(), Some("sessions"));
        let attrs: Attributes = vec![("db.name".into(), s("orders"))];
        assert_eq!(database_node(&attrs).as_deref(), Some("orders"));
        let attrs: Attributes = vec![("server.address".into(), s("api.stripe.com"))];
        assert_eq!(database_node(&attrs), None);
        assert_eq!(peer_node(&attrs).as_deref(), Some("api.stripe.com"));
        let attrs: Attributes = vec![("net.peer.name".into(), s("legacy"))];
        assert_eq!(peer_node(&attrs).as_deref(), Some("legacy"));
        let attrs: Attributes = vec![("peer.service".into(), s(""))];
        assert_eq!(peer_node(&attrs), None);
    }
}
