//! The UI's sign-in page, for when query auth is on: `GET /login` asks for a query token,
//! `POST /login` checks it and keeps it in an HttpOnly, SameSite=Strict session cookie (which
//! [`crate::auth`] accepts like a bearer header), `GET /logout` forgets it. The page is plain
//! HTML outside the token check, so it works before anything else is allowed.

use axum::extract::{Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Form, Router};
use serde::Deserialize;

use crate::auth::{Tokens, SESSION_COOKIE};

/// `/login` and `/logout`, outside the token check.
pub fn router(tokens: Tokens) -> Router {
    Router::new()
        .route("/login", get(page).post(sign_in))
        .route("/logout", get(sign_out))
        .with_state(tokens)
}

/// 303 to the sign-in page, coming back to `next` afterwards.
pub fn redirect_to_sign_in(next: &str) -> Response {
    see_other(&format!("/login?next={}", encode(next)))
}

#[derive(Deserialize)]
struct NextParam {
    next: Option<String>,
}

#[derive(Deserialize)]
struct SignInForm {
    token: String,
    next: Option<String>,
}

async fn page(State(tokens): State<Tokens>, Query(q): Query<NextParam>) -> Response {
    let next = safe_next(q.next.as_deref());
    if !tokens.enabled() {
        return see_other(&next);
    }
    form(StatusCode::OK, &next, None)
}

async fn sign_in(State(tokens): State<Tokens>, Form(f): Form<SignInForm>) -> Response {
    let next = safe_next(f.next.as_deref());
    let token = f.token.trim();
    if !tokens.allows(Some(&format!("Bearer {token}"))) {
        tracing::info!("ui sign-in refused: invalid token");
        return form(
            StatusCode::UNAUTHORIZED,
            &next,
            Some("That token is not accepted. / 令牌无效。"),
        );
    }
    let mut resp = see_other(&next);
    let cookie = format!(
        "{SESSION_COOKIE}={}; Path=/; HttpOnly; SameSite=Strict",
        encode(token)
    );
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        resp.headers_mut().insert(header::SET_COOKIE, v);
    }
    resp
}

async fn sign_out() -> Response {
    let mut resp = see_other("/login");
    resp.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static("lookout_token=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"),
    );
    resp
}

/// Where to go after signing in: a path on this server only (no `//host` or `scheme:`), so the
/// page cannot be used to send people elsewhere.
fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n) if n.starts_with('/') && !n.starts_with("//") && !n.contains('\\') => n.to_string(),
        _ => "/".to_string(),
    }
}

fn see_other(location: &str) -> Response {
    let mut resp = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(location) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    resp
}

fn form(status: StatusCode, next: &str, error: Option<&str>) -> Response {
    (status, Html(form_html(next, error))).into_response()
}

fn form_html(next: &str, error: Option<&str>) -> String {
    let error = error
        .map(|e| format!("<p class=\"err\">{}</p>", escape(e)))
        .unwrap_or_default();
    format!(
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>Lookout: sign in</title>\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><style>\
         body{{font:14px system-ui,sans-serif;background:#f4f5f7;display:flex;justify-content:center;padding-top:12vh}}\
         form{{background:#fff;border:1px solid #e3e5e8;border-radius:6px;padding:24px;width:340px}}\
         h1{{font-size:18px;margin:0 0 12px}}input{{width:100%;box-sizing:border-box;padding:7px;margin:6px 0 12px;\
         border:1px solid #ccd0d5;border-radius:4px}}button{{background:#3274d9;color:#fff;border:0;border-radius:4px;\
         padding:7px 16px;cursor:pointer}}.err{{color:#c4162a}}</style></head><body>\
         <form method=\"post\" action=\"/login\"><h1>Lookout</h1>{error}\
         <label for=\"token\">Query token / 查询令牌</label>\
         <input id=\"token\" name=\"token\" type=\"password\" autocomplete=\"current-password\" autofocus required>\
         <input type=\"hidden\" name=\"next\" value=\"{}\">\
         <button type=\"submit\">Sign in / 登录</button></form></body></html>",
        escape(next)
    )
}

/// Percent-encodes everything but unreserved characters.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_local_paths_are_followed_after_sign_in() {
        assert_eq!(safe_next(Some("/traces?service=a")), "/traces?service=a");
        assert_eq!(safe_next(Some("//evil.example/")), "/");
        assert_eq!(safe_next(Some("https://evil.example/")), "/");
        assert_eq!(safe_next(Some("/\\evil.example")), "/");
        assert_eq!(safe_next(None), "/");
    }

    #[test]
    fn the_next_path_is_escaped_in_the_form() {
        let html = form_html("/x\"><script>", Some("bad <b>"));
        assert!(html.contains("value=\"/x&quot;&gt;&lt;script&gt;\""));
        assert!(html.contains("bad &lt;b&gt;"));
        assert!(!html.contains("<script>"));
    }
}
