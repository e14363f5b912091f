//! Optional bearer-token auth. Ingest and query endpoints have separate token lists; an
//! empty list turns auth off for that side. Tokens are compared in constant time and never
//! logged.
//!
//! Browsers cannot send a bearer header on a page load, so the query side also takes the token
//! from the UI's session cookie ([`SESSION_COOKIE`], set by the sign-in page in `login.rs`), and
//! a page request without a token is sent to that page instead of getting a JSON 401.

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

    /// Whether the request carries an accepted token: as a bearer header, or in the UI's
    /// session cookie.
    fn allows_headers(&self, headers: &HeaderMap) -> bool {
        if !self.enabled() {
            return true;
        }
        let bearer = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        if self.allows(bearer) {
            return true;
        }
        session_token(headers).is_some_and(|t| self.allows(Some(&format!("Bearer {t}"))))
    }
}

/// The cookie the UI's sign-in page sets; its value is the query token, percent-encoded.
pub const SESSION_COOKIE: &str = "lookout_token";

/// The token in the session cookie, if the request has one.
fn session_token(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| {
            let (name, value) = pair.trim().split_once('=')?;
            (name == SESSION_COOKIE).then(|| percent_decode(value))
        })
        .filter(|t| !t.is_empty())
}

/// Decodes `%XX` escapes (invalid ones are kept as they are).
pub fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A browser loading a page (not a script calling an API): it is sent to the sign-in page.
fn is_page_load(req: &Request) -> bool {
    req.method() == axum::http::Method::GET
        && !req.uri().path().starts_with("/api/")
        && req
            .headers()
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|a| a.contains("text/html"))
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
    } else if is_page_load(&req) {
        let next = req
            .uri()
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_string();
        crate::login::redirect_to_sign_in(&next)
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
    fn the_session_cookie_carries_the_token() {
        let t = Tokens::new(vec![Secret::new("s3 cret;x")]);
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("theme=dark; lookout_token=s3%20cret%3Bx"),
        );
        assert!(t.allows_headers(&h));
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("lookout_token=wrong"),
        );
        assert!(!t.allows_headers(&h));
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("other_token=s3%20cret%3Bx"),
        );
        assert!(!t.allows_headers(&h));
        assert_eq!(percent_decode("a%2Fb%zz%"), "a/b%zz%");
    }

    #[test]
    fn constant_time_compare() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
        assert!(constant_time_eq(b"", b""));
    }
}
