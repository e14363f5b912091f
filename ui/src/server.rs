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
    // Any other page load renders the app, whose router shows the "Page not found" page with
    // status 404; other methods and the machine paths (APIs, Loki push, health) keep an empty 404.
    let not_found = leptos_axum::render_app_to_stream_with_context(context.clone(), {
        let o = leptos_options.clone();
        move || shell(o.clone())
    });
    let fallback = move |req: axum::extract::Request| {
        let not_found = not_found.clone();
        async move {
            let path = req.uri().path();
            let machine_path = ["/api/", "/loki/", "/-/", "/v1/"]
                .iter()
                .any(|p| path.starts_with(p));
            if req.method() == axum::http::Method::GET && !machine_path {
                not_found(req).await
            } else {
                StatusCode::NOT_FOUND.into_response()
            }
        }
    };
    Router::new()
        .leptos_routes_with_context(&leptos_options, routes, context, move || {
            shell(shell_options.clone())
        })
        .fallback(fallback)
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

/// The browser half: revalidated by ETag on every load (it changes with the binary), the wasm
/// sent gzipped to browsers that accept it.
async fn pkg_file(
    axum::extract::Path(file): axum::extract::Path<String>,
    headers: axum::http::HeaderMap,
) -> Response {
    if !assets::HYDRATE {
        return (StatusCode::NOT_FOUND, "this build serves no UI scripts").into_response();
    }
    let (content_type, plain, gzipped) = match file.as_str() {
        "lookout_ui.js" => ("text/javascript; charset=utf-8", assets::JS, &[][..]),
        "lookout_ui_bg.wasm" => ("application/wasm", assets::WASM, assets::WASM_GZ),
        _ => return (StatusCode::NOT_FOUND, "no such UI file").into_response(),
    };
    let header_has = |name: header::HeaderName, needle: &str| {
        headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| v.contains(needle))
    };
    let etag = HeaderValue::from_static(assets::ETAG);
    if header_has(header::IF_NONE_MATCH, assets::ETAG) {
        let mut resp = StatusCode::NOT_MODIFIED.into_response();
        resp.headers_mut().insert(header::ETAG, etag);
        return resp;
    }
    let gzip = !gzipped.is_empty() && header_has(header::ACCEPT_ENCODING, "gzip");
    let mut resp = asset(content_type, if gzip { gzipped } else { plain });
    let h = resp.headers_mut();
    h.insert(header::ETAG, etag);
    h.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    if gzip {
        h.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    resp
}

fn asset(content_type: &'static str, body: &'static [u8]) -> Response {
    let mut resp = Response::new(Body::from(body));
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    // revalidate every load: the files change with the binary, and they are small next to it
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    resp
}
