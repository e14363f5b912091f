"""The UI shell in a real browser (headless Chromium, tests/e2e/browser.py): every page route
loads, hydrates and logs no console error; the services page shows a service sent with the
OTel SDK and its success rate; the time picker's presets change the URL; the UI speaks Chinese
for `Accept-Language: zh-CN` and for `ui.language: zh`; an unknown route is a 404 page.

The routes are read from ui/src/app.rs, so a page added there is visited without editing this
file."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
import requests
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import SpanKind, Status, StatusCode

from helpers import REPO_ROOT, Lookout, report_logs_of, stops_cleanly, wait_until

SERVICE = "shell-demo"
REQUESTS, FAILURES = 10, 2  # success rate 80 %
NAV = ["/services", "/map", "/traces", "/logs", "/explore", "/alerts", "/dashboards"]


def page_routes() -> list[str]:
    """The static page routes of ui/src/app.rs (no `:param` segments), in order."""
    src = (REPO_ROOT / "ui" / "src" / "app.rs").read_text()
    routes = re.findall(r'<Route\s+path=path!\("([^"]*)"\)', src)
    out = [r for r in routes if ":" not in r and "*" not in r]
    assert "/services" in out, f"no /services route found in app.rs: {routes}"
    return list(dict.fromkeys(out))


def send_service(lookout: Lookout, service: str, n: int, failures: int) -> None:
    """`n` server spans of `service` over the last minute, the first `failures` with ERROR."""
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(
        SimpleSpanProcessor(OTLPSpanExporter(endpoint=f"{lookout.otlp_http}/v1/traces", timeout=10))
    )
    tracer = provider.get_tracer("e2e.ui")
    now = time.time_ns()
    for i in range(n):
        start = now - (60 - i * 5) * 1_000_000_000
        span = tracer.start_span(
            "GET /orders",
            kind=SpanKind.SERVER,
            start_time=start,
            attributes={"http.request.method": "GET", "http.route": "/orders"},
        )
        if i < failures:
            span.set_status(Status(StatusCode.ERROR, "boom"))
        span.end(end_time=start + (20 + i) * 1_000_000)
    provider.shutdown()


@pytest.fixture(scope="module")
def ui_server(tmp_path_factory):
    """One server with one service in it, for the read-only tests of this module."""
    lookout = Lookout(tmp_path_factory.mktemp("ui-shell"), name="ui-shell")
    lookout.start()
    with stops_cleanly(lookout):
        send_service(lookout, SERVICE, REQUESTS, FAILURES)

        def listed():
            rows = lookout.api_get("/api/v1/services", {"start": str(time.time() - 3600)})
            return [r for r in rows if r["service"] == SERVICE and r.get("requests") == REQUESTS]

        wait_until(listed, 20, f"{SERVICE} in /api/v1/services")
        yield lookout


@pytest.fixture
def server(ui_server, request):
    report_logs_of(request, ui_server)
    return ui_server


def test_every_page_route_loads_hydrates_without_console_errors(server, page):
    routes = page_routes()
    for route in routes:
        status = page.goto(f"{server.http}{route}")
        assert status == 200, f"{route}: HTTP {status}"
        assert page.exists("header.topbar nav.nav"), f"{route}: no navigation bar"
        assert page.exists("main.page h1, main.page h2"), f"{route}: no heading in the page"
        # errors of requests made after hydration (refresh, client-side fetches) show late
        time.sleep(0.3)
        errors = page.unexpected_errors()
        assert not errors, f"{route}: console errors:\n" + "\n".join(errors)
        t = page.timing()
        assert t["hydrated_ms"] is not None and t["hydrated_ms"] > 0, (route, t)


def test_navigation_bar_routes_in_the_browser_and_keeps_the_time_range(server, page):
    page.goto(f"{server.http}/services?start=now-6h&end=now")
    routes = set(page_routes())
    for href in NAV:
        if href not in routes:
            continue  # a page not written yet: its link goes to the 404 page
        page.click(f'nav.nav a[href^="{href}?"], nav.nav a[href="{href}"]')
        url = page.wait_url(lambda u, h=href: u.split("?")[0].endswith(h))
        assert "start=now-6h" in url, f"{href}: time range dropped: {url}"
        page.wait_for("nav.nav a.navlink.active", text=None)
        active = page.attr("nav.nav a.navlink.active", "href")
        assert active.split("?")[0] == href, (href, active)
    page.assert_no_errors()


def test_services_page_shows_the_sdk_service_with_its_success_rate(server, page):
    page.goto(f"{server.http}/services")
    row = page.wait_for("table.services tbody tr", text=SERVICE)
    cells = row.split("\t")
    assert cells[0].strip() == SERVICE, cells
    assert "80.0%" in row, row
    # below the default 99 % threshold by far: shown as bad
    cls = page.eval(
        "Array.from(document.querySelectorAll('table.services tbody tr'))"
        f".find(r => r.innerText.includes({SERVICE!r}))"
        ".querySelector('td.health-bad, td.health-warn, td.health-ok').className"
    )
    assert "health-bad" in cls, cls
    # the service links to its own page, keeping the time range of the view
    href = page.attr("table.services a.service-link", "href")
    assert href.startswith(f"/services/{SERVICE}"), href
    # server-rendered: the row is in the HTML before any wasm runs
    html = requests.get(f"{server.http}/services", timeout=10).text
    assert SERVICE in html and "80.0%" in html


def test_time_picker_preset_changes_the_url_and_the_label(server, page):
    page.goto(f"{server.http}/services")
    assert page.text("summary.tp-button").strip() == "Last 1h", page.text("summary.tp-button")
    page.click("summary.tp-button")
    page.wait_for("a.tp-preset", text="Last 15m", visible=True)
    page.click("a.tp-preset", text="Last 15m")
    url = page.wait_url("start=now-15m")
    assert "end=now" in url, url
    page.wait_until(
        "document.querySelector('summary.tp-button').innerText.trim() === 'Last 15m'",
        what="the picker's label to follow the URL",
    )
    # the page's data follows the range: still the service (its spans are a minute old)
    page.wait_for("table.services tbody tr", text=SERVICE)
    # a pasted link shows the same view
    page.goto(url)
    assert page.text("summary.tp-button").strip() == "Last 15m"
    assert page.value("form.tp-absolute input[name=start]") == "now-15m"


def test_chinese_for_accept_language_zh(server, page):
    page.set_headers({"Accept-Language": "zh-CN,zh;q=0.9,en;q=0.5"})
    page.goto(f"{server.http}/services")
    assert page.attr("html", "lang") == "zh-CN"
    assert page.text("main.page h1") == "服务"
    nav = page.texts("nav.nav a")
    assert "链路" in nav and "日志" in nav, nav
    # after hydration the wasm keeps the server's language
    assert page.text("summary.tp-button").strip() == "最近 1h"
    page.click("summary.tp-button")
    page.click("a.tp-preset", text="最近 15m")
    page.wait_url("start=now-15m")
    page.wait_until(
        "document.querySelector('summary.tp-button').innerText.trim() === '最近 15m'",
        what="the Chinese label after a client-side change",
    )


def test_chinese_for_ui_language_zh_whatever_the_browser_says(lookout_factory, page):
    lookout = lookout_factory({"ui": {"language": "zh"}})
    page.set_headers({"Accept-Language": "en-US,en;q=0.9"})
    page.goto(f"{lookout.http}/services")
    assert page.attr("html", "lang") == "zh-CN"
    assert page.text("main.page h1") == "服务"
    assert "通过 OTLP 发送链路数据" in page.text("main.page")


def test_unknown_route_is_a_404_page(server, page):
    # Chromium logs the document's own 404 as a failed resource load; the page is what counts
    page.allow_errors(r"status of 404")
    status = page.goto(f"{server.http}/no/such/page?start=now-1h")
    assert status == 404
    assert page.text("main.page h1") == "Page not found"
    page.click("main.page a", text="Back to services")
    page.wait_url(lambda u: u.rstrip("/").endswith(str(server.http_port)) or "/services" in u)
    page.wait_for("main.page h1", text="Services")


def test_browser_half_is_gzipped_and_revalidated(server):
    url = f"{server.http}/ui/pkg/lookout_ui_bg.wasm"
    r = requests.get(url, headers={"Accept-Encoding": "gzip"}, timeout=10)
    assert r.status_code == 200, r.status_code
    assert r.headers["Content-Encoding"] == "gzip", r.headers
    assert r.content[:4] == b"\0asm"  # requests gunzipped it
    gz_len = int(r.headers["Content-Length"])
    plain = requests.get(url, headers={"Accept-Encoding": "identity"}, timeout=10)
    assert "Content-Encoding" not in plain.headers and plain.content == r.content
    assert gz_len < len(plain.content) / 2, (gz_len, len(plain.content))
    etag = r.headers["ETag"]
    again = requests.get(url, headers={"If-None-Match": etag}, timeout=10)
    assert again.status_code == 304 and not again.content, again.status_code
    other = requests.get(url, headers={"If-None-Match": '"stale"'}, timeout=10)
    assert other.status_code == 200
    missing = requests.get(f"{server.http}/ui/pkg/nope.js", timeout=10)
    assert missing.status_code == 404 and "no such UI file" in missing.text
