"""The logs page in a real browser (headless Chromium, tests/e2e/browser.py), with records sent
by the Python OpenTelemetry SDK logging handler over OTLP/HTTP:

* a search for a known line finds it (server-rendered and after typing the query), its row
  expands to its attributes and links to its trace page, and a field value narrows the query;
* bodies are text: `<script>alert(1)</script>` shows as those characters, no script element
  is created, nothing runs (no alert, no `onerror` of an injected image);
* the histogram shows the matches per severity and a drag across it zooms (the URL's range);
* a query that does not parse is shown next to the box with the position;
* live tail receives a line logged after it was opened, and stops when closed.
"""

from __future__ import annotations

import logging
import re
import time
import urllib.parse
import uuid

import pytest
import requests
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from helpers import Lookout, report_logs_of, search_logs, stops_cleanly, wait_until

SERVICE = "ui-logs-demo"
LIVE_SERVICE = "ui-logs-live"
RUN = uuid.uuid4().hex[:10]
NEEDLE = f"needle{RUN}"
KNOWN_LINE = f"payment declined for order 42 {NEEDLE}"
SCRIPT_BODY = "<script>alert(1)</script>"
IMG_BODY = f'<img src="x" onerror="window.__xss = 1"> {NEEDLE}img'
SEARCHABLE_TIMEOUT_S = 10.0
# Set on every new document before the page's own scripts: a dialog would block the tab, so
# alert() records that it was called instead.
NO_DIALOGS = "window.alert = (m) => { window.__alerted = String(m); };"


class SdkLogger:
    """A `logging` logger whose records go to Lookout through the SDK's LoggingHandler,
    exported one by one (SimpleLogRecordProcessor), so a line is sent when it is logged."""

    def __init__(self, lookout: Lookout, service: str):
        self.provider = LoggerProvider(resource=Resource.create({"service.name": service}))
        self.provider.add_log_record_processor(
            SimpleLogRecordProcessor(OTLPLogExporter(endpoint=f"{lookout.otlp_http}/v1/logs", timeout=10))
        )
        self.handler = LoggingHandler(level=logging.NOTSET, logger_provider=self.provider)
        self.logger = logging.getLogger(f"e2e.ui.logs.{service}.{RUN}")
        self.logger.setLevel(logging.DEBUG)
        self.logger.propagate = False
        self.logger.addHandler(self.handler)

    def close(self) -> None:
        self.logger.removeHandler(self.handler)
        self.provider.shutdown()


def first_record(lookout: Lookout, query: str) -> dict:
    def found():
        recs = search_logs(lookout, query, start=time.time() - 3600)
        return recs[0] if recs else None

    return wait_until(found, SEARCHABLE_TIMEOUT_S, f"a record for {query!r}")


@pytest.fixture(scope="module")
def ui_server(tmp_path_factory):
    """One server with the module's records: the known line (inside a traced span, with an
    attribute), hostile bodies, and a spread of severities for the histogram."""
    lookout = Lookout(tmp_path_factory.mktemp("ui-logs"), name="ui-logs")
    lookout.start()
    with stops_cleanly(lookout):
        tracer_provider = TracerProvider(resource=Resource.create({"service.name": SERVICE}))
        tracer_provider.add_span_processor(
            SimpleSpanProcessor(OTLPSpanExporter(endpoint=f"{lookout.otlp_http}/v1/traces", timeout=10))
        )
        tracer = tracer_provider.get_tracer("e2e.ui.logs")
        sdk = SdkLogger(lookout, SERVICE)
        with tracer.start_as_current_span("charge") as span:
            sdk.logger.error(KNOWN_LINE, extra={"order.id": "42"})
            trace_id = format(span.get_span_context().trace_id, "032x")
        sdk.logger.warning(SCRIPT_BODY)
        sdk.logger.warning(IMG_BODY)
        for i in range(5):
            sdk.logger.info(f"routine work {i} {NEEDLE}hist")
        sdk.logger.debug(f"details {NEEDLE}hist")
        sdk.close()
        tracer_provider.shutdown()
        rec = first_record(lookout, NEEDLE)
        assert rec["trace_id"] == trace_id, rec
        first_record(lookout, f'"{SCRIPT_BODY}"')
        first_record(lookout, f"{NEEDLE}img")
        wait_until(
            lambda: len(search_logs(lookout, f"{NEEDLE}hist", start=time.time() - 3600)) == 6,
            SEARCHABLE_TIMEOUT_S,
            "the histogram's records",
        )
        lookout.trace_id = trace_id  # type: ignore[attr-defined]
        yield lookout


@pytest.fixture
def server(ui_server, request):
    report_logs_of(request, ui_server)
    return ui_server


def logs_url(server: Lookout, **params: str) -> str:
    return f"{server.http}/logs?{urllib.parse.urlencode(params, quote_via=urllib.parse.quote)}"


def test_search_finds_the_known_line_and_links_its_trace(server, page):
    # server-rendered: the record is in the HTML before any wasm runs
    html = requests.get(logs_url(server, query=NEEDLE), timeout=10).text
    assert KNOWN_LINE in html, html[:2000]

    page.goto(f"{server.http}/logs")
    page.type("input.logs-query-input", NEEDLE)
    page.press("Enter")
    page.wait_url(lambda u: f"query={NEEDLE}" in u)
    # the list of all records is replaced by the one match
    page.wait_until(
        "document.querySelectorAll('.logs-results .log-row').length === 1",
        what="one record for the needle",
    )
    row = page.text(".logs-results .log-row")
    assert KNOWN_LINE in row and SERVICE in row and "ERROR" in row, row
    cls = page.attr(".logs-results .log-row .log-sev", "class")
    assert "sev-error" in cls, cls

    # the row links to the UI's trace page (not the API's trace_url)
    href = page.attr(".logs-results .log-row a.log-trace", "href")
    assert href == f"/traces/{server.trace_id}", href

    # expanded: attributes, resource and the ids
    page.click(".logs-results .log-row summary .log-time")
    detail = page.wait_for(".logs-results .log-row[open] .log-detail", text="order.id", visible=True)
    assert "42" in detail and "service.name" in detail and server.trace_id in detail, detail
    assert "span_id" in detail, detail

    # a field's top value narrows the query
    page.click(".logs-fields details[data-field=service] .field-value", text=SERVICE)
    url = page.wait_url(lambda u: "service%3A" in u or "service:" in u)
    query = urllib.parse.parse_qs(urllib.parse.urlparse(url).query)["query"][0]
    assert query == f"{NEEDLE} service:{SERVICE}", query
    page.wait_for(".logs-results .log-row", text=KNOWN_LINE)
    assert page.value("input.logs-query-input") == query


def test_bodies_are_shown_as_text_and_never_run(server, page):
    page.cdp("Page.addScriptToEvaluateOnNewDocument", {"source": NO_DIALOGS})
    page.goto(logs_url(server, query=f'"{SCRIPT_BODY}" OR {NEEDLE}img'))
    page.wait_for(".logs-results .log-row .log-body", text=SCRIPT_BODY)
    page.wait_for(".logs-results .log-row .log-body", text="onerror=")
    # no script element of the body's (the page's own scripts carry the records as escaped
    # JSON strings, never as markup)
    scripts = page.eval(
        "Array.from(document.querySelectorAll('script')).filter(s => s.textContent.trim() === 'alert(1)'"
        " || s.textContent.includes('<script>alert(1)')).length"
    )
    assert scripts == 0
    assert page.count(".logs-results img") == 0
    time.sleep(0.5)  # an image's onerror would have fired by now
    assert page.eval("window.__alerted === undefined && window.__xss === undefined")
    # the server's HTML has them escaped too
    html = requests.get(logs_url(server, query=f'"{SCRIPT_BODY}"'), timeout=10).text
    assert SCRIPT_BODY not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_histogram_shows_severities_and_a_drag_zooms(server, page):
    page.goto(logs_url(server, query=f"{NEEDLE}hist", start="now-30m", end="now"))
    head = page.wait_for(".logs-histogram-head", text="matching")
    assert "6 matching records" in head, head
    assert "info 5" in head and "debug 1" in head, head
    fills = page.eval(
        "Array.from(document.querySelectorAll('.logs-histogram svg.bars-svg rect[fill]'))"
        ".filter(r => r.getAttribute('height') > 0).map(r => r.getAttribute('fill'))"
    )
    assert "#3274d9" in fills and "#8e8e8e" in fills, fills  # info and debug bars

    page.drag(".logs-histogram svg.bars-svg", 0.3, 0.7)
    url = page.wait_url(lambda u: "start=now" not in u)
    q = urllib.parse.parse_qs(urllib.parse.urlparse(url).query)
    start, end = float(q["start"][0]), float(q["end"][0])
    now = time.time()
    # about the middle two fifths of the last 30 minutes
    assert now - 1800 < start < end < now, (start, end, now)
    assert 400 < end - start < 900, (start, end)
    assert q["query"][0] == f"{NEEDLE}hist"


def test_a_bad_query_is_shown_with_its_position(server, page):
    page.goto(logs_url(server, query="timeout AND"))
    err = page.wait_for(".logs-search .query-error")
    assert "position" in err and "AND" in err, err
    pos = int(re.search(r"at position (\d+)", err).group(1))
    assert 0 <= pos <= len("timeout AND"), err
    caret = page.text(".query-error .query-caret")
    assert caret.splitlines() == ["timeout AND", " " * pos + "^"], caret


def test_live_tail_receives_a_line_logged_after_it_opened(server, page):
    page.goto(logs_url(server, query=f"service:{LIVE_SERVICE}"))
    assert not page.exists(".tail-panel")
    page.click("button.tail-toggle")
    page.wait_for(".tail-state.live", timeout=10)
    sdk = SdkLogger(server, LIVE_SERVICE)
    try:
        line = f"live line {RUN}"
        sdk.logger.warning(line)
        # a line of another service does not match the tail's query
        other = SdkLogger(server, SERVICE)
        other.logger.warning(f"other service {RUN}")
        other.close()
        row = page.wait_for(".tail-list .log-row", text=line, timeout=15)
        assert LIVE_SERVICE in row and "WARN" in row, row
        assert page.count(".tail-list .log-row") == 1
        sdk.logger.error(f"second {line}")
        page.wait_for(".tail-list .log-row", text=f"second {line}", timeout=15)
        # newest first
        assert page.texts(".tail-list .log-row .log-body")[0] == f"second {line}"
    finally:
        sdk.close()
    page.click("button.tail-toggle")
    page.wait_gone(".tail-state.live")
    assert page.eval("document.querySelector('button.tail-toggle').getAttribute('aria-pressed')") == "false"
