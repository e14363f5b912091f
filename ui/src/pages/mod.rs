//! One module per page. Each page reads the time range from the URL ([`crate::time`]), fetches
//! through [`crate::fetch::Api`] in a resource keyed by the URL and the refresh tick, and
//! renders inside a `Transition`, so a refresh swaps data without blanking the page.

pub mod alerts;
pub mod dashboards;
pub mod explore;
pub mod logs;
pub mod map;
pub mod map_layout;
pub mod service;
pub mod services;
pub mod trace;
pub mod traces;
pub mod waterfall;

use leptos::prelude::*;

use crate::i18n::tr;

#[component]
pub fn NotFound() -> impl IntoView {
    #[cfg(feature = "ssr")]
    if let Some(r) = use_context::<leptos_axum::ResponseOptions>() {
        r.set_status(axum::http::StatusCode::NOT_FOUND);
    }
    view! {
        <section class="panel">
            <h1>{tr("Page not found", "页面不存在")}</h1>
            <p><a href="/">{tr("Back to services", "返回服务列表")}</a></p>
        </section>
    }
}

/// An error box for a failed data request.
#[component]
pub fn ErrorBox(message: String) -> impl IntoView {
    view! { <div class="error" role="alert">{message}</div> }
}

/// A grey note for an empty result.
#[component]
pub fn Empty(text: &'static str) -> impl IntoView {
    view! { <div class="empty">{text}</div> }
}
