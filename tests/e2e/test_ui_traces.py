"""The trace pages in a real browser (headless Chromium, tests/e2e/browser.py), fed by the
OpenTelemetry SDK: a trace of N spans over three services (one span failing, one attribute
holding `<script>`) and a healthy trace of one service.

* the trace view's waterfall shows every span, in tree order, the failing one marked; a span
  opens its details (attributes shown as text, events, its logs link) and the tree folds;
* the search form finds the trace by service, and a result links to the trace view;
* the alert messages' link (`/traces?service=&error=true&start=&end=`) shows that search:
  the service chosen, "errors only" ticked, only the failing trace; unticking finds both;
* unknown and malformed trace ids get a clear message.
"""

from __future__ import annotations

import dataclasses
import time

import pytest
import requests
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import SpanKind, Status, StatusCode

from helpers import Lookout, report_logs_of, stops_cleanly, wait_until

MS = 1_000_000
FRONTEND, CHECKOUT, PAYMENTS = "uit-frontend", "uit-checkout", "uit-payments"
SCRIPT = "<script>window.__pwned = 1</script>"
# (name, service, parent name, start offset ms, duration ms, kind); parents come first
SPANS = [
    ("GET /checkout", FRONTEND, None, 0, 400, SpanKind.SERVER),
    ("POST checkout", FRONTEND, "GET /checkout", 5, 300, SpanKind.CLIENT),
    ("POST /checkout", CHECKOUT, "POST checkout", 10, 280, SpanKind.SERVER),
    ("SELECT cart", CHECKOUT, "POST /checkout", 20, 40, SpanKind.CLIENT),
    ("POST payments", CHECKOUT, "POST /checkout", 70, 200, SpanKind.CLIENT),
    ("POST /charge", PAYMENTS, "POST payments", 75, 180, SpanKind.SERVER),
    ("render", FRONTEND, "GET /checkout", 320, 60, SpanKind.INTERNAL),
]
# depth first, siblings by start time
WATERFALL_ORDER = [
    "GET /checkout",
    "POST checkout",
    "POST /checkout",
    "SELECT cart",
    "POST payments",
    "POST /charge",
    "render",
]
FAILING = "POST /charge"


@dataclasses.dataclass
class Scenario:
    lookout: Lookout
    trace_id: str  # the N-span trace, failing
    span_ids: dict[str, str]  # name -> span id
    healthy_trace_id: str  # one span of PAYMENTS, no error
    start: int  # a window around both, Unix seconds
    end: int


def send(lookout: Lookout) -> tuple[str, dict[str, str], str]:
    providers = {}
    for svc in (FRONTEND, CHECKOUT, PAYMENTS):
        p = TracerProvider(resource=Resource.create({"service.name": svc, "deployment.environment": "e2e"}))
        p.add_span_processor(
            SimpleSpanProcessor(OTLPSpanExporter(endpoint=f"{lookout.otlp_http}/v1/traces", timeout=10))
        )
        providers[svc] = p
    t0 = time.time_ns() - 30_000 * MS
    started = {}
    for name, svc, parent, offset, _dur, kind in SPANS:
        ctx = trace.set_span_in_context(started[parent]) if parent else None
        attrs = {"e2e.step": name}
        if name == "POST /checkout":
            attrs["note"] = SCRIPT
        if name == "SELECT cart":
            attrs["db.system"] = "postgresql"
        started[name] = providers[svc].get_tracer("e2e.ui.traces").start_span(
            name, context=ctx, kind=kind, start_time=t0 + offset * MS, attributes=attrs
        )
    started["POST /checkout"].add_event("cart loaded", {"items": 3}, timestamp=t0 + 15 * MS)
    started[FAILING].set_status(Status(StatusCode.ERROR, "card declined"))
    started[FAILING].add_event("exception", {"exception.type": "CardError"}, timestamp=t0 + 250 * MS)
    # children end first, as instrumented code does
    for name, _svc, _parent, offset, dur, _kind in reversed(SPANS):
        started[name].end(end_time=t0 + (offset + dur) * MS)
    trace_id = format(started["GET /checkout"].get_span_context().trace_id, "032x")
    span_ids = {n: format(s.get_span_context().span_id, "016x") for n, s in started.items()}

    health = providers[PAYMENTS].get_tracer("e2e.ui.traces").start_span(
        "GET /health", kind=SpanKind.SERVER, start_time=t0 + 1_000 * MS
    )
    health.end(end_time=t0 + 1_003 * MS)
    healthy_trace_id = format(health.get_span_context().trace_id, "032x")
    for p in providers.values():
        p.shutdown()
    return trace_id, span_ids, healthy_trace_id


@pytest.fixture(scope="module")
def scenario(tmp_path_factory):
    lookout = Lookout(tmp_path_factory.mktemp("ui-traces"), name="ui-traces")
    lookout.start()
    with stops_cleanly(lookout):
        now = int(time.time())
        trace_id, span_ids, healthy = send(lookout)

        def stored():
            r = requests.get(f"{lookout.http}/api/v1/traces/{trace_id}", timeout=10)
            return r.status_code == 200 and len(r.json()["data"]["spans"]) == len(SPANS)

        wait_until(stored, 20, "the N-span trace in the trace store")
        wait_until(
            lambda: requests.get(f"{lookout.http}/api/v1/traces/{healthy}", timeout=10).status_code == 200,
            20,
            "the healthy trace in the trace store",
        )
        yield Scenario(lookout, trace_id, span_ids, healthy, now - 600, now + 120)


@pytest.fixture
def s(scenario, request) -> Scenario:
    report_logs_of(request, scenario.lookout)
    return scenario


def result_ids(page) -> list[str]:
    return page.eval(
        "Array.from(document.querySelectorAll('table.trace-results a.trace-link'))"
        ".map(a => a.getAttribute('href').split('?')[0].split('/').pop())"
    )


def test_waterfall_shows_every_span_in_tree_order(s, page):
    url = f"{s.lookout.http}/traces/{s.trace_id}"
    page.goto(url)
    assert page.count(".wf-span") == len(SPANS)
    assert [n.strip() for n in page.texts(".wf-span .wf-op")] == WATERFALL_ORDER
    # the failing span, and only it, is marked
    assert page.count(".wf-span.wf-error") == 1
    assert FAILING in page.text(".wf-span.wf-error")
    # indentation follows the depth: POST /charge is five levels under the root
    pads = page.eval(
        "Array.from(document.querySelectorAll('.wf-span .wf-name')).map(e => parseInt(e.style.paddingLeft))"
    )
    depths = [0, 1, 2, 3, 3, 4, 1]
    assert [p - pads[0] for p in pads] == [d * 14 for d in depths], pads
    # the header counts what the scenario sent
    stats = page.text(".trace-stats")
    assert "7" in stats and "400ms" in stats, stats
    for svc in (FRONTEND, CHECKOUT, PAYMENTS):
        assert svc in page.text(".trace-services")
    # server-rendered: every span is in the HTML before any wasm runs
    html = requests.get(url, timeout=10).text
    for name in WATERFALL_ORDER:
        assert f">{name}<" in html, name


def test_a_span_opens_its_details_and_the_tree_folds(s, page):
    page.goto(f"{s.lookout.http}/traces/{s.trace_id}")
    assert page.count(".wf-detail") == 0
    page.click(".wf-span .wf-op", text="POST /checkout")
    detail = page.wait_for(".wf-detail", text="cart loaded")
    sid = s.span_ids["POST /checkout"]
    assert sid in detail and s.span_ids["POST checkout"] in detail  # its id and its parent's
    # attributes are text: the <script> value is shown, never run
    assert SCRIPT in detail
    assert page.eval("document.querySelectorAll('.wf-detail script').length") == 0
    assert page.eval("window.__pwned === undefined")
    assert "items=3" in detail and CHECKOUT in detail  # event attribute, resource attribute
    # the open span is in the URL, so the link can be shared
    assert f"span={sid}" in page.wait_url(f"span={sid}")
    logs = page.attr(".wf-detail .wf-detail-links a", "href")
    assert logs.startswith(f"/logs?query=trace_id%3A{s.trace_id}%20span_id%3A{sid}&start="), logs
    trace_logs = page.attr(".trace-tools a.button", "href")
    assert trace_logs.startswith(f"/logs?query=trace_id%3A{s.trace_id}&start="), trace_logs
    # a pasted link opens the same span (server-rendered)
    page.goto(page.url)
    assert "cart loaded" in page.text(".wf-detail")
    # the failing span shows its status
    page.click(".wf-span .wf-op", text=FAILING)
    page.wait_for(".wf-detail", text="card declined")
    # folding the root leaves it alone; "Expand all" brings every span back
    page.click(".wf-span .wf-toggle")
    page.wait_until(f"document.querySelectorAll('.wf-span').length === 1", what="the root folded")
    assert "+6" in page.text(".wf-span")
    page.click(".trace-tools button", text="Expand all")
    page.wait_until(f"document.querySelectorAll('.wf-span').length === {len(SPANS)}", what="all spans back")


def test_search_by_service_finds_the_trace(s, page):
    page.goto(f"{s.lookout.http}/traces?start={s.start}&end={s.end}")
    # no filter: both traces
    page.wait_for("table.trace-results a.trace-link")
    assert {s.trace_id, s.healthy_trace_id} <= set(result_ids(page))
    options = page.eval("Array.from(document.querySelectorAll('select[name=service] option')).map(o => o.value)")
    assert {FRONTEND, CHECKOUT, PAYMENTS} <= set(options), options
    page.select("select[name=service]", CHECKOUT)
    page.submit("form.trace-form")
    url = page.wait_url(f"service={CHECKOUT}")
    assert f"start={s.start}" in url and f"end={s.end}" in url, url
    assert "operation=" not in url, "empty fields stay out of the URL"
    page.wait_until(
        "Array.from(document.querySelectorAll('table.trace-results a.trace-link')).length === 1",
        what="only the checkout trace",
    )
    assert result_ids(page) == [s.trace_id]
    row = page.text("table.trace-results tbody tr")
    assert "GET /checkout" in row and FRONTEND in row and "7" in row, row
    assert page.count(".scatter .dot") == 1
    # a result opens the trace view
    page.click("table.trace-results a.trace-link")
    page.wait_url(f"/traces/{s.trace_id}")
    page.wait_until(f"document.querySelectorAll('.wf-span').length === {len(SPANS)}", what="the waterfall")


def test_the_alert_link_shows_errors_only_and_the_filter_can_be_lifted(s, page):
    link = f"{s.lookout.http}/traces?service={PAYMENTS}&error=true&start={s.start}&end={s.end}"
    page.goto(link)
    assert page.value("select[name=service]") == PAYMENTS
    assert page.eval("document.querySelector('input[name=error]').checked") is True
    assert result_ids(page) == [s.trace_id]
    assert page.count("table.trace-results tbody tr.has-error") == 1
    assert page.count(".scatter .dot.err") == 1 and page.count(".scatter .dot") == 1
    # server-rendered the same way
    html = requests.get(link, timeout=10).text
    assert f"/traces/{s.trace_id}" in html and s.healthy_trace_id not in html
    # untick "errors only": the healthy trace of the service shows too
    page.click("input[name=error]")
    page.submit("form.trace-form")
    url = page.wait_url(lambda u: "error=" not in u)
    assert f"service={PAYMENTS}" in url and f"start={s.start}" in url, url
    page.wait_until(
        "document.querySelectorAll('table.trace-results a.trace-link').length === 2",
        what="both traces of the service",
    )
    assert set(result_ids(page)) == {s.trace_id, s.healthy_trace_id}
    assert page.count(".scatter .dot.err") == 1 and page.count(".scatter .dot") == 2


def test_bad_search_input_and_unknown_trace_ids_get_clear_messages(s, page):
    page.goto(f"{s.lookout.http}/traces?min_duration=fast")
    assert "min_duration" in page.text(".traces-results .error")
    page.goto(f"{s.lookout.http}/traces/{'ab' * 16}")
    assert "not found" in page.text("main .error")
    page.goto(f"{s.lookout.http}/traces/not-a-trace-id")
    assert "32 hex characters" in page.text("main .error")
    # the lookup box opens a trace by id
    page.goto(f"{s.lookout.http}/traces")
    page.type("form.trace-lookup input[name=trace_id]", s.trace_id.upper())
    page.submit("form.trace-lookup")
    page.wait_url(f"/traces/{s.trace_id}")
    page.wait_until(f"document.querySelectorAll('.wf-span').length === {len(SPANS)}", what="the waterfall")
