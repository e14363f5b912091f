//! Lookout's web UI: Leptos 0.8 pages rendered by the `lookout` binary, hydrated in the browser.
//!
//! The UI is a client of Lookout's own JSON APIs. Every page reads its data with
//! [`fetch::Api::get_json`]: on the server (feature `ssr`) that call goes straight into the API router
//! in-process, so the first HTML a browser gets already holds the data; in the browser (feature
//! `hydrate`) the same call is a `fetch` of the same URL, used when the time range changes or
//! auto-refresh ticks.
//!
//! * [`app`]: the shell, the router and the navigation bar; one route per page.
//! * [`pages`]: one module per page (services, service map, traces, logs, metrics explorer,
//!   alerts, dashboards).
//! * [`time`]: the time range every page shares, as it appears in the URL (`start`, `end`,
//!   `refresh`), and the range picker.
//! * [`dashboards`]: dashboards as code (YAML rows of panels), their loading and checks.
//! * [`chart`]: SVG charts drawn by the UI (time series, sparklines, bars) and their ticks.
//! * [`i18n`]: English and Chinese UI text.
//! * [`fetch`]: the one data path, server and browser.
//! * `server` (feature `ssr`): the axum router the binary mounts: pages, the wasm and CSS.
//!
//! Building the browser half: `scripts/build-ui` (wasm32 + `wasm-bindgen`); the server embeds
//! what it built (`build.rs`) and serves SSR-only pages when it was not built.

// Leptos view types nest deeply (pages with charts inside Suspend blocks).
#![recursion_limit = "256"]

pub mod app;
pub mod chart;
pub mod dashboards;
pub mod fetch;
pub mod format;
pub mod i18n;
pub mod pages;
pub mod promql;
pub mod time;

#[cfg(feature = "ssr")]
pub mod server;

#[cfg(feature = "ssr")]
pub use server::{router, UiOptions};

/// Browser entry point: attaches the reactive system to the server-rendered HTML.
#[cfg(feature = "hydrate")]
#[wasm_bindgen::prelude::wasm_bindgen]
pub fn hydrate() {
    console_error_panic_hook::set_once();
    leptos::mount::hydrate_body(app::App);
}
