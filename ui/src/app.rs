//! The shell (the HTML document around every page), the router and the navigation bar.

use leptos::prelude::*;
use leptos_meta::{provide_meta_context, MetaTags, Title};
use leptos_router::components::{Route, Router, Routes, A};
use leptos_router::hooks::{use_location, use_query_map};
use leptos_router::{path, SsrMode};

use crate::i18n::{tr, Lang};
use crate::pages;
use crate::time::{provide_refresh, range_link, TimePicker};

/// What the server tells the shell about this deployment.
#[derive(Clone, Debug, Default)]
pub struct UiSettings {
    /// `ui.language` from the config; `None` follows the browser.
    pub language: Option<Lang>,
    /// Whether the browser half (wasm) was built into this binary.
    pub hydrate: bool,
}

/// The whole HTML document of a server-rendered page.
pub fn shell(options: LeptosOptions) -> impl IntoView {
    let settings = use_context::<UiSettings>().unwrap_or_default();
    let lang = server_lang(&settings);
    provide_context(lang);
    view! {
        <!DOCTYPE html>
        <html lang=lang.code()>
            <head>
                <meta charset="utf-8"/>
                <meta name="viewport" content="width=device-width, initial-scale=1"/>
                <link rel="stylesheet" href="/ui/lookout.css"/>
                <link rel="icon" href="/ui/favicon.svg" type="image/svg+xml"/>
                {settings.hydrate.then(|| view! { <HydrationScripts options/> })}
                <MetaTags/>
            </head>
            <body>
                <App/>
            </body>
        </html>
    }
}

/// The page language on the server: the config's, else the request's `Accept-Language`.
fn server_lang(settings: &UiSettings) -> Lang {
    if let Some(l) = settings.language {
        return l;
    }
    #[cfg(feature = "ssr")]
    {
        use_context::<axum::http::request::Parts>()
            .and_then(|p| {
                p.headers
                    .get(axum::http::header::ACCEPT_LANGUAGE)
                    .and_then(|v| v.to_str().ok())
                    .map(Lang::from_accept_language)
            })
            .unwrap_or_default()
    }
    #[cfg(not(feature = "ssr"))]
    {
        Lang::En
    }
}

/// The page language in the browser: what the server wrote into `<html lang>`.
fn page_lang() -> Lang {
    #[cfg(all(feature = "hydrate", not(feature = "ssr")))]
    {
        web_sys::window()
            .and_then(|w| w.document())
            .and_then(|d| d.document_element())
            .and_then(|e| e.get_attribute("lang"))
            .and_then(|l| Lang::parse(&l))
            .unwrap_or_default()
    }
    #[cfg(not(all(feature = "hydrate", not(feature = "ssr"))))]
    {
        use_context::<Lang>().unwrap_or_default()
    }
}

/// The application: navigation and one route per page. Every page route renders on the
/// server with its data (`SsrMode::Async`), so the first HTML is complete without wasm.
#[component]
pub fn App() -> impl IntoView {
    provide_meta_context();
    provide_context(page_lang());
    mark_hydrated();
    view! {
        <Title text="Lookout"/>
        <Router>
            <Frame>
                <Routes fallback=|| view! { <pages::NotFound/> }>
                    <Route path=path!("/") view=pages::services::ServicesPage ssr=SsrMode::Async/>
                    <Route path=path!("/services") view=pages::services::ServicesPage ssr=SsrMode::Async/>
                    <Route path=path!("/services/:service") view=pages::service::ServicePage ssr=SsrMode::Async/>
                    <Route path=path!("/map") view=pages::map::MapPage ssr=SsrMode::Async/>
                    <Route path=path!("/alerts") view=pages::alerts::AlertsPage ssr=SsrMode::Async/>
                    <Route path=path!("/traces") view=pages::traces::TracesPage ssr=SsrMode::Async/>
                    <Route path=path!("/traces/:trace_id") view=pages::trace::TracePage ssr=SsrMode::Async/>
                    <Route path=path!("/explore") view=pages::explore::ExplorePage ssr=SsrMode::Async/>
                    <Route path=path!("/dashboards") view=pages::dashboards::DashboardsPage ssr=SsrMode::Async/>
                    <Route path=path!("/dashboards/:id") view=pages::dashboards::DashboardPage ssr=SsrMode::Async/>
                    <Route path=path!("/logs") view=pages::logs::LogsPage ssr=SsrMode::Async/>
                </Routes>
            </Frame>
        </Router>
    }
}

/// Marks the page interactive once the wasm has hydrated it: `<body data-hydrated="1">`.
/// Browser tests and the UI benchmark wait for it (an Effect runs only in the browser, after
/// the first hydration pass).
fn mark_hydrated() {
    Effect::new(|_| {
        #[cfg(all(feature = "hydrate", not(feature = "ssr")))]
        if let Some(body) = web_sys::window()
            .and_then(|w| w.document())
            .and_then(|d| d.query_selector("body").ok().flatten())
        {
            // a failed attribute write only delays tests that wait for it; nothing to do here
            let _ = body.set_attribute("data-hydrated", "1");
        }
    });
}

/// Navigation bar, time picker and the page under them.
#[component]
fn Frame(children: Children) -> impl IntoView {
    provide_refresh();
    view! {
        <header class="topbar">
            <a class="brand" href="/">"Lookout"</a>
            <nav class="nav">
                <NavLink href="/services" en="Services" zh="服务"/>
                <NavLink href="/map" en="Service map" zh="服务拓扑"/>
                <NavLink href="/traces" en="Traces" zh="链路"/>
                <NavLink href="/logs" en="Logs" zh="日志"/>
                <NavLink href="/explore" en="Metrics" zh="指标"/>
                <NavLink href="/alerts" en="Alerts" zh="告警"/>
                <NavLink href="/dashboards" en="Dashboards" zh="仪表盘"/>
            </nav>
            <TimePicker/>
        </header>
        <main class="page">{children()}</main>
    }
}

/// A navigation link that keeps the time range and refresh of the current view.
#[component]
fn NavLink(href: &'static str, en: &'static str, zh: &'static str) -> impl IntoView {
    let query = use_query_map();
    let location = use_location();
    let target = move || {
        query.track();
        range_link(href, &[])
    };
    let active = move || {
        let p = location.pathname.get();
        p == href || p.starts_with(&format!("{href}/")) || (href == "/services" && p == "/")
    };
    view! {
        <A href=target attr:class=move || if active() { "navlink active" } else { "navlink" }>
            {tr(en, zh)}
        </A>
    }
}
