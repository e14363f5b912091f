//! The UI's side of the HTTP port: every page route (rendered by Leptos with its data), the
//! embedded browser half (`/ui/pkg/*`), the stylesheet and icon. The binary mounts
//! [`router`] behind the query tokens.

use axum::body::Body;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use leptos::prelude::*;
use leptos_axum::{generate_route_list, LeptosRoutes};

use crate::app::{shell, App, UiSettings};
use crate::fetch::ApiRouter;
use crate::i18n::Lang;

mod assets {
    include!(concat!(env!("OUT_DIR"), "/ui_assets.rs"));
}

/// The wasm-bindgen output name; the hydration script asks for `<name>.js` and `<name>_bg.wasm`.
const OUTPUT_NAME: &str = "lookout_ui";
const PKG_DIR: &str = "ui/pkg";
/// base.css then each page's rules.
const CSS: &str = concat!(
    include_str!("../style/base.css"),
    include_str!("../style/pages/service.css"),
    include_str!("../style/pages/map.css"),
    include_str!("../style/pages/traces.css"),
    include_str!("../style/pages/logs.css"),
    include_str!("../style/pages/explore.css"),
    include_str!("../style/pages/alerts.css"),
    include_str!("../style/pages/dashboards.css"),
);
const FAVICON: &str = include_str!("../style/favicon.svg");

/// What the binary configures of the UI.
#[derive(Clone, Debug, Default)]
pub struct UiOptions {
    /// `ui.language`; `None` follows the browser's `Accept-Language`.
    pub language: Option<Lang>,
    /// `ui.dashboards_dir`: the user's dashboard files, besides the built-in ones.
    pub dashboards_dir: Option<std::path::PathBuf>,
}

/// Whether this build embeds the browser half.
pub fn hydrates() -> bool {
    assets::HYDRATE
}

/// The UI routes. `api` is the query API router the pages read from in-process.
pub fn router(api: Router, opts: UiOptions) -> Router {
    let leptos_options = LeptosOptions::builder()
        .output_name(OUTPUT_NAME)
        .site_pkg_dir(PKG_DIR)
        .build();
    let settings = UiSettings {
        language: opts.language,
        hydrate: assets::HYDRATE,
    };
    let routes = generate_route_list(App);
    // the dashboards API, for browsers and for the pages rendering in-process
    let dashboards = crate::dashboards::load::routes(crate::dashboards::load::Dashboards::start(
        opts.dashboards_dir,
    ));
    let api = api.merge(dashboards.clone());
    let context = move || {
        provide_context(ApiRouter(api.clone()));
        provide_context(settings.clone());
    };
    let shell_options = leptos_options.clone();
    Router::new()
        .leptos_routes_with_context(&leptos_options, routes, context, move || {
            shell(shell_options.clone())
        })
        .route(
            "/ui/lookout.css",
            get(|| async { asset("text/css; charset=utf-8", CSS.as_bytes()) }),
        )
        .route(
            "/ui/favicon.svg",
            get(|| async { asset("image/svg+xml", FAVICON.as_bytes()) }),
        )
        .route("/ui/pkg/{file}", get(pkg_file))
        .with_state(leptos_options)
        .merge(dashboards)
}

async fn pkg_file(axum::extract::Path(file): axum::extract::Path<String>) -> Response {
    match file.as_str() {
        "lookout_ui.js" if assets::HYDRATE => asset("text/javascript; charset=utf-8", assets::JS),
        "lookout_ui_bg.wasm" if assets::HYDRATE => asset("application/wasm", assets::WASM),
        _ => (StatusCode::NOT_FOUND, "no such UI file").into_response(),
    }
}

fn asset(content_type: &'static str, body: &'static [u8]) -> Response {
    let mut resp = Response::new(Body::from(body));
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    // revalidate every load: the files change with the binary, and they are small next to it
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    resp
}
