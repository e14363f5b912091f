//! The UI's one data path: `GET` a Lookout JSON API and decode it.
//!
//! On the server the request goes into the API router in-process (no socket, no second auth
//! check: the page request that got here already passed it). In the browser it is a `fetch`
//! of the same URL; the browser sends the session cookie with it.

use serde::de::DeserializeOwned;

/// Handle for data requests, taken from context while a component renders and moved into the
/// resource's future (context is not reachable from inside the future).
#[derive(Clone)]
pub struct Api {
    #[cfg(feature = "ssr")]
    router: Option<axum::Router>,
}

/// The in-process API, provided as context by the server for each page render.
#[cfg(feature = "ssr")]
#[derive(Clone)]
pub struct ApiRouter(pub axum::Router);

impl Api {
    /// The data handle of the page being rendered.
    pub fn current() -> Self {
        Api {
            #[cfg(feature = "ssr")]
            router: leptos::prelude::use_context::<ApiRouter>().map(|r| r.0),
        }
    }

    /// `GET path` (with its query string) and decode the JSON answer. An error answer of the
    /// API (`{"status":"error","error":...}` or any non-2xx) becomes its message.
    pub async fn get_json<T: DeserializeOwned>(&self, path: &str) -> Result<T, String> {
        let (status, body) = self.get(path).await?;
        decode(status, &body)
    }

    /// `GET path` of an API that answers `{"status":"success","data":...}`: the `data`.
    pub async fn get_data<T: DeserializeOwned>(&self, path: &str) -> Result<T, String> {
        #[derive(serde::Deserialize)]
        struct Envelope<T> {
            data: T,
        }
        self.get_json::<Envelope<T>>(path).await.map(|e| e.data)
    }

    #[cfg(feature = "ssr")]
    async fn get(&self, path: &str) -> Result<(u16, Vec<u8>), String> {
        use tower::ServiceExt;
        let Some(router) = self.router.clone() else {
            return Err("the UI's API router is not configured".into());
        };
        let req = axum::http::Request::get(path)
            .header(axum::http::header::ACCEPT, "application/json")
            .body(axum::body::Body::empty())
            .map_err(|e| format!("bad request path {path:?}: {e}"))?;
        let resp = router
            .oneshot(req)
            .await
            .map_err(|e| format!("{path}: {e}"))?;
        let status = resp.status().as_u16();
        let body = axum::body::to_bytes(resp.into_body(), 64 << 20)
            .await
            .map_err(|e| format!("{path}: reading the answer failed: {e}"))?;
        Ok((status, body.to_vec()))
    }

    #[cfg(all(feature = "hydrate", not(feature = "ssr")))]
    async fn get(&self, path: &str) -> Result<(u16, Vec<u8>), String> {
        let path = path.to_string();
        send_wrapper::SendWrapper::new(browser_get(path)).await
    }

    #[cfg(not(any(feature = "ssr", feature = "hydrate")))]
    async fn get(&self, path: &str) -> Result<(u16, Vec<u8>), String> {
        Err(format!("{path}: the UI was built without a data path"))
    }
}

#[cfg(all(feature = "hydrate", not(feature = "ssr")))]
async fn browser_get(path: String) -> Result<(u16, Vec<u8>), String> {
    use wasm_bindgen::JsCast;
    use wasm_bindgen_futures::JsFuture;
    let window = web_sys::window().ok_or("no window")?;
    let js = |e: wasm_bindgen::JsValue| format!("{path}: {e:?}");
    let resp = JsFuture::from(window.fetch_with_str(&path))
        .await
        .map_err(js)?;
    let resp: web_sys::Response = resp.dyn_into().map_err(js)?;
    let status = resp.status();
    let buf = JsFuture::from(resp.array_buffer().map_err(js)?)
        .await
        .map_err(js)?;
    Ok((status, js_sys::Uint8Array::new(&buf).to_vec()))
}

/// An API answer: the value on 2xx, else the API's error message (or the status).
fn decode<T: DeserializeOwned>(status: u16, body: &[u8]) -> Result<T, String> {
    if (200..300).contains(&status) {
        return serde_json::from_slice(body).map_err(|e| format!("unexpected answer: {e}"));
    }
    #[derive(serde::Deserialize)]
    struct ApiError {
        error: String,
    }
    match serde_json::from_slice::<ApiError>(body) {
        Ok(e) => Err(e.error),
        Err(_) => Err(format!(
            "HTTP {status}: {}",
            String::from_utf8_lossy(&body[..body.len().min(300)])
        )),
    }
}

/// Percent-encodes a query parameter value.
pub fn enc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_errors_become_their_message() {
        let r: Result<serde_json::Value, _> = decode(
            400,
            br#"{"status":"error","errorType":"bad_data","error":"parse error at char 3"}"#,
        );
        assert_eq!(r.unwrap_err(), "parse error at char 3");
        let r: Result<serde_json::Value, _> = decode(502, b"bad gateway");
        assert_eq!(r.unwrap_err(), "HTTP 502: bad gateway");
        let r: Result<Vec<u8>, _> = decode(200, b"[1,2]");
        assert_eq!(r.unwrap(), vec![1, 2]);
    }

    #[test]
    fn query_values_are_percent_encoded() {
        assert_eq!(enc("rate(x[5m]) > 0"), "rate%28x%5B5m%5D%29%20%3E%200");
        assert_eq!(enc("服务"), "%E6%9C%8D%E5%8A%A1");
    }
}
