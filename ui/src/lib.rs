//! Lookout's web UI (Leptos), served on the HTTP port.
//!
//! Not built yet: the pages arrive with the UI issue. Until then [`router`] serves a plain
//! landing page that links to the APIs, so the HTTP port's root answers something useful.

use axum::response::Html;
use axum::routing::get;
use axum::Router;

/// Routes owned by the UI.
pub fn router() -> Router {
    Router::new().route("/", get(landing))
}

async fn landing() -> Html<&'static str> {
    Html(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>Lookout</title></head><body>\
         <h1>Lookout</h1><p>The web UI is not built yet. APIs: \
         <a href=\"/api/v1/labels\">/api/v1/labels</a>, \
         <a href=\"/metrics\">/metrics</a>, <a href=\"/-/ready\">/-/ready</a>.</p></body></html>",
    )
}
