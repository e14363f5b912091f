//! Optional bearer-token auth. Ingest and query endpoints have separate token lists; an
//! empty list turns auth off for that side. Tokens are compared in constant time and never
//! logged.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::config::Secret;

/// The accepted tokens of one side (ingest or query).
#[derive(Clone, Debug, Default)]
pub struct Tokens(Arc<Vec<Secret>>);

impl Tokens {
    pub fn new(tokens: Vec<Secret>) -> Self {
        Tokens(Arc::new(tokens))
    }

    pub fn enabled(&self) -> bool {
        !self.0.is_empty()
    }

    /// Whether an `Authorization` header value carries one of the tokens.
    pub fn allows(&self, authorization: Option<&str>) -> bool {
        if !self.enabled() {
            return true;
        }
        let Some(given) = authorization.and_then(bearer_token) else {
            return false;
        };
        // check every token so the time taken does not reveal which one matched
        self.0.iter().fold(false, |found, t| {
            constant_time_eq(t.expose().as_bytes(), given.as_bytes()) | found
        })
    }

    fn allows_headers(&self, headers: &HeaderMap) -> bool {
        self.allows(
            headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok()),
        )
    }
}

/// The token of a `Bearer <token>` header value (scheme case-insensitive, as RFC 7235).
fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// Compares without an early exit on the first differing byte; only the length leaks.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = a.len() ^ b.len();
    for i in 0..a.len().max(b.len()) {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0);
        diff |= usize::from(x ^ y);
    }
    diff == 0
}

fn unauthorized() -> Response {
    let body = r#"{"status":"error","errorType":"unauthorized","error":"missing or invalid bearer token"}"#;
    let mut resp = (StatusCode::UNAUTHORIZED, body).into_response();
    let headers = resp.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    resp
}

/// axum middleware: 401 unless the request carries an accepted token.
pub async fn require_token(State(tokens): State<Tokens>, req: Request, next: Next) -> Response {
    if tokens.allows_headers(req.headers()) {
        next.run(req).await
    } else {
        tracing::debug!(path = %req.uri().path(), "request refused: missing or invalid bearer token");
        unauthorized()
    }
}

/// tonic interceptor: UNAUTHENTICATED unless the call carries an accepted token.
pub fn grpc_interceptor(
    tokens: Tokens,
) -> impl FnMut(tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> + Clone {
    move |req: tonic::Request<()>| {
        let value = req
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok());
        if tokens.allows(value) {
            Ok(req)
        } else {
            Err(tonic::Status::unauthenticated(
                "missing or invalid bearer token",
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_list_means_auth_off() {
        assert!(Tokens::default().allows(None));
    }

    #[test]
    fn bearer_tokens_are_checked() {
        let t = Tokens::new(vec![Secret::new("s3cret"), Secret::new("other")]);
        assert!(t.allows(Some("Bearer s3cret")));
        assert!(t.allows(Some("bearer other")));
        assert!(!t.allows(Some("Bearer s3cre")));
        assert!(!t.allows(Some("Basic s3cret")));
        assert!(!t.allows(Some("Bearer ")));
        assert!(!t.allows(None));
    }

    #[test]
    fn constant_time_compare() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
        assert!(constant_time_eq(b"", b""));
    }
}
