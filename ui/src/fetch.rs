//! The UI's one data path: `GET` a Lookout JSON API and decode it (and, for the few pages
//! that change state, such as silences, `POST` JSON and `DELETE`).
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

    /// `POST path` with `body` as JSON and decode the JSON answer (errors as [`Api::get_json`]).
    pub async fn post_json<B: serde::Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, String> {
        let body =
            serde_json::to_string(body).map_err(|e| format!("{path}: encoding the body: {e}"))?;
        let (status, answer) = self.request("POST", path, Some(body)).await?;
        decode(status, &answer)
    }

    /// `DELETE path`; any 2xx is success, whatever the body (Alertmanager answers an empty one).
    pub async fn delete(&self, path: &str) -> Result<(), String> {
        let (status, answer) = self.request("DELETE", path, None).await?;
        if (200..300).contains(&status) {
            return Ok(());
        }
        decode::<serde_json::Value>(status, &answer).map(|_| ())
    }

    async fn get(&self, path: &str) -> Result<(u16, Vec<u8>), String> {
        self.request("GET", path, None).await
    }

    #[cfg(feature = "ssr")]
    async fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<String>,
    ) -> Result<(u16, Vec<u8>), String> {
        use tower::ServiceExt;
        let Some(router) = self.router.clone() else {
            return Err("the UI's API router is not configured".into());
        };
        let mut req = axum::http::Request::builder()
            .method(method)
            .uri(path)
            .header(axum::http::header::ACCEPT, "application/json");
        if body.is_some() {
            req = req.header(axum::http::header::CONTENT_TYPE, "application/json");
        }
        let req = req
            .body(body.map_or_else(axum::body::Body::empty, axum::body::Body::from))
            .map_err(|e| format!("bad request {method} {path:?}: {e}"))?;
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
    async fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<String>,
    ) -> Result<(u16, Vec<u8>), String> {
        send_wrapper::SendWrapper::new(browser_request(method.to_string(), path.to_string(), body))
            .await
    }

    #[cfg(not(any(feature = "ssr", feature = "hydrate")))]
    async fn request(
        &self,
        method: &str,
        path: &str,
        _body: Option<String>,
    ) -> Result<(u16, Vec<u8>), String> {
        Err(format!(
            "{method} {path}: the UI was built without a data path"
        ))
    }
}

#[cfg(all(feature = "hydrate", not(feature = "ssr")))]
async fn browser_request(
    method: String,
    path: String,
    body: Option<String>,
) -> Result<(u16, Vec<u8>), String> {
    use wasm_bindgen::JsCast;
    use wasm_bindgen_futures::JsFuture;
    let window = web_sys::window().ok_or("no window")?;
    let js = |e: wasm_bindgen::JsValue| format!("{method} {path}: {e:?}");
    let init = web_sys::RequestInit::new();
    init.set_method(&method);
    let headers = web_sys::Headers::new().map_err(js)?;
    headers.set("Accept", "application/json").map_err(js)?;
    if let Some(body) = &body {
        headers
            .set("Content-Type", "application/json")
            .map_err(js)?;
        init.set_body(&wasm_bindgen::JsValue::from_str(body));
    }
    init.set_headers(&headers);
    let resp = JsFuture::from(window.fetch_with_str_and_init(&path, &init))
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
