"""Traces end to end with the real Python OpenTelemetry SDK: three instrumented services
(`frontend` -> `checkout` -> `payments`, plus a PostgreSQL client span and a call to
`api.stripe.com`) propagate W3C trace context to each other and export over OTLP/gRPC,
OTLP/HTTP and OTLP/gRPC+gzip. A known share of the calls fail. The test then reads back the
traces (by id, by search), the derived series (PromQL over `traces_spanmetrics_*` and
`traces_service_graph_*`), the RED and service-graph APIs, and Jaeger's query API in the shape
Jaeger UI and Grafana's Jaeger data source parse.

Every expected number comes from what the scenario did (which call failed, how long each span
took), never from Lookout. The scenario runs once per module against one server; the restart
and crash tests are in `test_traces_crash.py`, bad input in `test_traces_bad_input.py`.
"""

from __future__ import annotations

import dataclasses
import time
from collections import Counter, defaultdict

import grpc
import pytest
import requests
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
    OTLPSpanExporter as GrpcSpanExporter,
)
from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
    OTLPSpanExporter as HttpSpanExporter,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExportResult
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from helpers import Lookout, fmt_ts, report_logs_of, stops_cleanly, wait_until

MS = 1_000_000  # nanoseconds
N_REQUESTS = 20
SPANS_PER_TRACE = 8
# Derived edges to an uninstrumented peer (api.stripe.com) appear once the client half stops
# waiting for a server half: 10 s (`edge_wait`, not configurable) plus the flusher's 0.5 s tick.
EDGE_EXPIRY_TIMEOUT_S = 15.0

# The RED and service-graph APIs count with `increase(...[window])` over the derived
# counters. `increase` extrapolates to the window's edges, so a count is exact only by chance;
# and a derived series born with its first flush's cumulative value (no zero sample before
# it) shows nothing of that flush to `increase` at all.

PROPAGATOR = TraceContextTextMapPropagator()


# ---- the scenario ----------------------------------------------------------------------


def hex_span(span_id: int) -> str:
    return format(span_id, "016x")


def hex_trace(trace_id: int) -> str:
    return format(trace_id, "032x")


class Service:
    """One instrumented service: its own TracerProvider, Resource and OTLP exporter, with a
    batch processor that exports only when flushed (so the test decides when spans leave)."""

    def __init__(self, name: str, exporter, scope_version: str = "0.1.0"):
        self.name = name
        self.results: list = []
        self.exported: list = []
        original_export = exporter.export

        def recording_export(spans, *args, **kwargs):
            result = original_export(spans, *args, **kwargs)
            self.results.append(result)
            if result == SpanExportResult.SUCCESS:
                self.exported.extend(spans)
            return result

        exporter.export = recording_export
        resource = Resource.create(
            {
                "service.name": name,
                "service.instance.id": f"{name}-1",
                "deployment.environment": "e2e",
            }
        )
        self.provider = TracerProvider(resource=resource)
        self.provider.add_span_processor(
            BatchSpanProcessor(
                exporter,
                max_queue_size=10_000,
                schedule_delay_millis=3_600_000,
                max_export_batch_size=2_000,
            )
        )
        self.tracer = self.provider.get_tracer("e2e.shop", scope_version)

    def flush(self) -> None:
        try:
            assert self.provider.force_flush(timeout_millis=15_000), f"{self.name}: flush timed out"
        finally:
            self.provider.shutdown()
        assert self.results, f"{self.name}: the exporter was never called"
        assert all(r == SpanExportResult.SUCCESS for r in self.results), (
            f"{self.name}: OTLP export failed: {self.results}"
        )


@dataclasses.dataclass
class Sent:
    """A span as the SDK exported it, with what the scenario knows about it."""

    service: str
    trace_id: str
    span_id: str
    parent_span_id: str | None
    name: str
    kind: SpanKind
    start: int
    end: int
    status: StatusCode
    status_message: str
    attributes: dict
    events: list
    failed: bool  # the call failed, by the scenario's own account

    @property
    def duration(self) -> int:
        return self.end - self.start

    @property
    def kind_name(self) -> str:  # Lookout's spelling
        return self.kind.name.lower()

    @property
    def stored_status(self) -> StatusCode:
        """The status Lookout stores: an UNSET span the semantic conventions make an error
        (HTTP 5xx server, HTTP 4xx/5xx client) is stored as ERROR, as the metrics count it."""
        return StatusCode.ERROR if self.failed else self.status

    @property
    def status_label(self) -> str:  # the span metrics' `status_code`
        if self.failed:
            return "STATUS_CODE_ERROR"
        return {StatusCode.OK: "STATUS_CODE_OK", StatusCode.UNSET: "STATUS_CODE_UNSET"}[self.status]


@dataclasses.dataclass
class Shop:
    t0: int
    n: int
    spans: list[Sent]
    trace_ids: list[str]  # by request number

    def by_trace(self) -> dict[str, list[Sent]]:
        out: dict[str, list[Sent]] = defaultdict(list)
        for s in self.spans:
            out[s.trace_id].append(s)
        return out

    def request_of(self, trace_id: str) -> int:
        return self.trace_ids.index(trace_id)


def run_shop(lookout: Lookout, t0: int, n: int = N_REQUESTS, first: int = 0) -> Shop:
    """Runs requests `first .. first+n-1` through frontend -> checkout -> payments and exports
    them. Request i starts at t0 + 2 s * (i - first). Its failures:

    - payments fails (i % 4 == 0): the server span records the exception and sets status
      ERROR; checkout's client span sets ERROR too (both say HTTP 500);
    - checkout answers HTTP 500 (i % 5 == 0) with the status left UNSET: a server error by the
      HTTP conventions; frontend's client span sees the 500 (UNSET: a client error by the
      conventions) and frontend's server span sets ERROR explicitly;
    - the PostgreSQL query fails (i % 10 == 3): ERROR with a recorded exception;
    - Stripe answers 503 (i % 10 == 7), status UNSET: a client error by the conventions.

    Payments is slow (1.5 s) when i % 10 == 9, otherwise 170 ms.
    """
    frontend = Service("frontend", GrpcSpanExporter(endpoint=lookout.otlp_grpc, insecure=True, timeout=10))
    checkout = Service("checkout", HttpSpanExporter(endpoint=f"{lookout.otlp_http}/v1/traces", timeout=10))
    payments = Service(
        "payments",
        GrpcSpanExporter(
            endpoint=lookout.otlp_grpc, insecure=True, timeout=10, compression=grpc.Compression.Gzip
        ),
    )
    failed: dict[tuple[str, str], bool] = {}
    trace_ids = []

    def done(span, end_ms: int, ts: int, is_failure: bool) -> None:
        span.end(end_time=ts + end_ms * MS)
        ctx = span.get_span_context()
        failed[(hex_trace(ctx.trace_id), hex_span(ctx.span_id))] = is_failure

    for i in range(first, first + n):
        ts = t0 + (i - first) * 2000 * MS
        pay_ms = 1500 if i % 10 == 9 else 170
        pay_fails, checkout_fails = i % 4 == 0, i % 5 == 0
        db_fails, stripe_fails = i % 10 == 3, i % 10 == 7

        fs = frontend.tracer.start_span(
            "GET /checkout",
            kind=SpanKind.SERVER,
            start_time=ts,
            attributes={"http.request.method": "GET", "http.route": "/checkout"},
        )
        trace_ids.append(hex_trace(fs.get_span_context().trace_id))
        fc = frontend.tracer.start_span(
            "POST /api/checkout",
            context=trace.set_span_in_context(fs),
            kind=SpanKind.CLIENT,
            start_time=ts + 10 * MS,
            attributes={"http.request.method": "POST", "server.address": "checkout"},
        )
        # The "network": W3C traceparent in a header dict, extracted on the server side.
        headers: dict[str, str] = {}
        PROPAGATOR.inject(headers, context=trace.set_span_in_context(fc))
        assert headers["traceparent"].startswith("00-")
        cs = checkout.tracer.start_span(
            "POST /api/checkout",
            context=PROPAGATOR.extract(headers),
            kind=SpanKind.SERVER,
            start_time=ts + 20 * MS,
            attributes={
                "http.request.method": "POST",
                "order.id": f"o-{i}",
                "cart.items": i % 4,
                "cart.total": 10.5 + i,
                "cart.gift": i % 2 == 1,
            },
        )
        in_checkout = trace.set_span_in_context(cs)

        db = checkout.tracer.start_span(
            "SELECT orders",
            context=in_checkout,
            kind=SpanKind.CLIENT,
            start_time=ts + 30 * MS,
            attributes={"db.system": "postgresql", "db.query.text": "SELECT * FROM orders WHERE id = $1"},
        )
        if db_fails:
            db.record_exception(RuntimeError("deadlock detected"), timestamp=ts + 55 * MS)
            db.set_status(Status(StatusCode.ERROR, "deadlock detected"))
        done(db, 60, ts, db_fails)

        stripe = checkout.tracer.start_span(
            "POST /v1/charges",
            context=in_checkout,
            kind=SpanKind.CLIENT,
            start_time=ts + 70 * MS,
            attributes={"http.request.method": "POST", "server.address": "api.stripe.com"},
        )
        stripe.set_attribute("http.response.status_code", 503 if stripe_fails else 200)
        done(stripe, 170, ts, stripe_fails)

        pc = checkout.tracer.start_span(
            "POST /pay",
            context=in_checkout,
            kind=SpanKind.CLIENT,
            start_time=ts + 180 * MS,
            attributes={"http.request.method": "POST", "server.address": "payments"},
        )
        headers = {}
        PROPAGATOR.inject(headers, context=trace.set_span_in_context(pc))
        ps = payments.tracer.start_span(
            "POST /pay",
            context=PROPAGATOR.extract(headers),
            kind=SpanKind.SERVER,
            start_time=ts + 190 * MS,
            attributes={"http.request.method": "POST"},
        )
        charge = payments.tracer.start_span(
            "charge-card",
            context=trace.set_span_in_context(ps),
            kind=SpanKind.INTERNAL,
            start_time=ts + 200 * MS,
        )
        charge.set_status(Status(StatusCode.OK))
        done(charge, 300, ts, False)
        code = 500 if pay_fails else 200
        ps.set_attribute("http.response.status_code", code)
        pc.set_attribute("http.response.status_code", code)
        if pay_fails:
            ps.record_exception(ValueError("card declined"), timestamp=ts + 310 * MS)
            ps.set_status(Status(StatusCode.ERROR, "card declined"))
            pc.set_status(Status(StatusCode.ERROR, "payment failed"))
        done(ps, 190 + pay_ms, ts, pay_fails)
        done(pc, 200 + pay_ms, ts, pay_fails)

        cs.set_attribute("http.response.status_code", 500 if checkout_fails else 200)
        done(cs, 210 + pay_ms, ts, checkout_fails)
        fc.set_attribute("http.response.status_code", 500 if checkout_fails else 200)
        done(fc, 220 + pay_ms, ts, checkout_fails)
        if checkout_fails:
            fs.set_status(Status(StatusCode.ERROR, "checkout failed"))
        fs.set_attribute("http.response.status_code", 502 if checkout_fails else 200)
        done(fs, 230 + pay_ms, ts, checkout_fails)

    # Servers first, so every client half finds its server half already waiting.
    for service in (payments, checkout, frontend):
        service.flush()

    spans = []
    for service in (frontend, checkout, payments):
        for s in service.exported:
            tid, sid = hex_trace(s.context.trace_id), hex_span(s.context.span_id)
            spans.append(
                Sent(
                    service=service.name,
                    trace_id=tid,
                    span_id=sid,
                    parent_span_id=hex_span(s.parent.span_id) if s.parent else None,
                    name=s.name,
                    kind=s.kind,
                    start=s.start_time,
                    end=s.end_time,
                    status=s.status.status_code,
                    status_message=s.status.description or "",
                    attributes=dict(s.attributes),
                    events=list(s.events),
                    failed=failed[(tid, sid)],
                )
            )
    assert len(spans) == n * SPANS_PER_TRACE, len(spans)
    return Shop(t0=t0, n=n, spans=spans, trace_ids=trace_ids)


# ---- expectations derived from the scenario -------------------------------------------


def expected_calls(shop: Shop, *keys: str) -> dict[tuple, float]:
    """Span counts grouped like `sum by (keys) (traces_spanmetrics_calls_total)`."""
    label = {
        "service": lambda s: s.service,
        "span_name": lambda s: s.name,
        "span_kind": lambda s: f"SPAN_KIND_{s.kind.name}",
        "status_code": lambda s: s.status_label,
    }
    return dict(Counter(tuple(label[k](s) for k in keys) for s in shop.spans))


def expected_requests(shop: Shop) -> dict[str, tuple[int, int]]:
    """Per service: (requests, failed requests) over its SERVER spans."""
    out: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for s in shop.spans:
        if s.kind == SpanKind.SERVER:
            out[s.service][0] += 1
            out[s.service][1] += s.failed
    return {k: (v[0], v[1]) for k, v in out.items()}


def expected_edges(shop: Shop) -> dict[tuple[str, str, str], tuple[int, int]]:
    """(client, server, connection_type) -> (requests, failed), from the spans' parent links:
    a client span and its server child in another service are one edge, failed when either
    side failed; a root server span is called by `user`; database spans call the database;
    other client spans without a server child call the host they name."""
    by_id = {(s.trace_id, s.span_id): s for s in shop.spans}
    children = defaultdict(list)
    for s in shop.spans:
        if s.parent_span_id:
            children[(s.trace_id, s.parent_span_id)].append(s)
    out: dict[tuple, list[int]] = defaultdict(lambda: [0, 0])

    def add(key, failed):
        out[key][0] += 1
        out[key][1] += failed

    for s in shop.spans:
        if s.kind == SpanKind.SERVER and s.parent_span_id is None:
            add(("user", s.service, "virtual_node"), s.failed)
        if s.kind != SpanKind.CLIENT:
            continue
        if "db.system" in s.attributes:
            add((s.service, s.attributes["db.system"], "database"), s.failed)
            continue
        servers = [c for c in children[(s.trace_id, s.span_id)] if c.kind == SpanKind.SERVER]
        if servers:
            (srv,) = servers
            add((s.service, srv.service, ""), s.failed or srv.failed)
        else:
            add((s.service, s.attributes["server.address"], "virtual_node"), s.failed)
    assert by_id  # the scenario has spans
    return {k: (v[0], v[1]) for k, v in out.items()}


# ---- fixtures and API helpers ----------------------------------------------------------


@pytest.fixture(scope="module")
def shop_server(tmp_path_factory):
    """One server for the module, fed the shop scenario once."""
    workdir = tmp_path_factory.mktemp("traces")
    lookout = Lookout(workdir, name="traces")
    lookout.start()
    # Two minutes ago, so every span (the last ends ~40 s later) is in the past.
    t0 = time.time_ns() - 120_000 * MS
    with stops_cleanly(lookout):
        shop = run_shop(lookout, t0)
        yield lookout, shop


@pytest.fixture
def server(shop_server, request):
    report_logs_of(request, shop_server[0])
    return shop_server[0]


@pytest.fixture
def shop(shop_server):
    return shop_server[1]


def get_json(lookout: Lookout, path: str, params=None, status: int = 200):
    r = requests.get(f"{lookout.http}{path}", params=params, timeout=10)
    assert r.status_code == status, f"GET {path} {params}: HTTP {r.status_code} {r.text[:2000]}"
    assert r.headers["Content-Type"].startswith("application/json"), r.headers
    return r.json()


def search(lookout: Lookout, **params) -> list[dict]:
    return lookout.api_get("/api/v1/traces", {"limit": "100", **params})


def found_requests(shop: Shop, summaries: list[dict]) -> set[int]:
    return {shop.request_of(s["traceId"]) for s in summaries}


def stripe_edge_flushed(lookout: Lookout) -> None:
    """Waits until the Stripe edge (one client half, no server half) has expired into its
    virtual node and been flushed, so every edge of the scenario is stored."""
    wait_until(
        lambda: lookout.query_vector(
            'traces_service_graph_request_total{client="checkout",server="api.stripe.com"}'
        ),
        timeout=EDGE_EXPIRY_TIMEOUT_S,
        what="the checkout -> api.stripe.com edge",
    )


# ---- trace by id -------------------------------------------------------------------------


def test_every_trace_by_id_has_all_spans_with_their_parents(server, shop):
    for trace_id, sent in shop.by_trace().items():
        data = server.api_get(f"/api/v1/traces/{trace_id}")
        got = {s["spanId"]: s for s in data["spans"]}
        assert set(got) == {s.span_id for s in sent}, trace_id
        assert len(data["spans"]) == SPANS_PER_TRACE
        for s in sent:
            g = got[s.span_id]
            # parent links exactly as the SDK reported its span contexts
            assert g["parentSpanId"] == s.parent_span_id, (s.name, g)
            assert (g["traceId"], g["service"], g["name"], g["kind"]) == (
                trace_id, s.service, s.name, s.kind_name,
            )
            assert (int(g["startTimeUnixNano"]), int(g["endTimeUnixNano"]), g["durationNanos"]) == (
                s.start, s.end, s.duration,
            )
            assert g["status"] == {
                "code": s.stored_status.name.lower(),
                "message": s.status_message,
            }, (s.name, g["status"])
            assert g["attributes"] == s.attributes, s.name
            assert g["resourceAttributes"]["service.name"] == s.service
            assert g["resourceAttributes"]["deployment.environment"] == "e2e"
            assert g["scope"] == {"name": "e2e.shop", "version": "0.1.0"}
            assert [(e["name"], int(e["timeUnixNano"])) for e in g["events"]] == [
                (e.name, e.timestamp) for e in s.events
            ]
        # spans in start order
        starts = [int(s["startTimeUnixNano"]) for s in data["spans"]]
        assert starts == sorted(starts)
        # the child of every client span in another service is a server span: the
        # propagated context really crossed services
        for s in sent:
            if s.kind == SpanKind.CLIENT and s.name in ("POST /api/checkout", "POST /pay"):
                kids = [k for k in sent if k.parent_span_id == s.span_id]
                assert [(k.kind, k.service != s.service) for k in kids] == [(SpanKind.SERVER, True)]


def test_trace_summary_of_a_trace(server, shop):
    for i in (0, 3, 7, 9):  # payments + checkout failing, a db error, a Stripe 503, slow
        trace_id = shop.trace_ids[i]
        sent = shop.by_trace()[trace_id]
        data = server.api_get(f"/api/v1/traces/{trace_id}")
        start = min(s.start for s in sent)
        end = max(s.end for s in sent)
        summary = {k: v for k, v in data.items() if k not in ("spans", "logsUrl", "logCount")}
        assert summary == {
            "traceId": trace_id,
            "rootService": "frontend",
            "rootOperation": "GET /checkout",
            "startTimeUnixNano": str(start),
            "endTimeUnixNano": str(end),
            "durationNanos": end - start,
            "spanCount": SPANS_PER_TRACE,
            # the summary counts spans whose status is ERROR
            "errorCount": sum(s.stored_status == StatusCode.ERROR for s in sent),
            "services": ["checkout", "frontend", "payments"],
        }
        # the link to the trace's log records (these services log nothing)
        assert data["logsUrl"].startswith(f"/api/v1/logs/query?query=trace_id:{trace_id}&"), data
        assert data["logCount"] == 0, data


def test_exception_events_are_kept(server, shop):
    trace_id = shop.trace_ids[4]  # payments declined the card
    data = server.api_get(f"/api/v1/traces/{trace_id}")
    (pay,) = [s for s in data["spans"] if s["service"] == "payments" and s["kind"] == "server"]
    assert pay["status"] == {"code": "error", "message": "card declined"}
    (event,) = pay["events"]
    assert event["name"] == "exception"
    assert event["attributes"]["exception.type"] == "ValueError"
    assert event["attributes"]["exception.message"] == "card declined"
    assert int(event["timeUnixNano"]) == shop.t0 + 4 * 2000 * MS + 310 * MS


def test_trace_lookup_errors(server, shop):
    missing = "0af7651916cd43dd8448eb211c80319c"
    assert missing not in shop.trace_ids
    body = get_json(server, f"/api/v1/traces/{missing}", status=404)
    assert body["status"] == "error" and body["errorType"] == "not_found", body
    for bad, words in [("abc", "32 hex"), ("0" * 32, "zero"), ("g" * 32, "not hex")]:
        body = get_json(server, f"/api/v1/traces/{bad}", status=400)
        assert body["errorType"] == "bad_data", body
        assert words in body["error"], body


# ---- search -----------------------------------------------------------------------------


def test_search_by_service_operation_kind(server, shop):
    everything = set(range(shop.n))
    assert found_requests(shop, search(server, service="payments")) == everything
    assert found_requests(shop, search(server, service="checkout", operation="SELECT orders")) == everything
    assert found_requests(shop, search(server, service="checkout", kind="client")) == everything
    # conditions hold on one span: payments has no client span, frontend no "POST /pay"
    assert search(server, service="payments", kind="client") == []
    assert search(server, service="frontend", operation="POST /pay") == []
    assert search(server, service="no-such-service") == []
    # default limit 20, explicit limit honoured, newest first
    assert len(server.api_get("/api/v1/traces", {"service": "frontend"})) == 20
    newest = search(server, service="frontend", limit="3")
    assert [shop.request_of(s["traceId"]) for s in newest] == [19, 18, 17]


def test_search_results_are_summaries_newest_first(server, shop):
    results = search(server, service="frontend")
    assert [shop.request_of(s["traceId"]) for s in results] == list(reversed(range(shop.n)))
    by_trace = shop.by_trace()
    for summary in results:
        sent = by_trace[summary["traceId"]]
        start = min(s.start for s in sent)
        assert summary == {
            "traceId": summary["traceId"],
            "rootService": "frontend",
            "rootOperation": "GET /checkout",
            "startTimeUnixNano": str(start),
            "durationNanos": max(s.end for s in sent) - start,
            "spanCount": SPANS_PER_TRACE,
            "errorCount": sum(s.stored_status == StatusCode.ERROR for s in sent),
            "services": ["checkout", "frontend", "payments"],
        }


def test_search_by_error(server, shop):
    # A trace is an error trace when one of its spans is an error (payments declined,
    # frontend gave up on checkout, the database failed, or Stripe answered 503: a client
    # span with HTTP 503 is an error by the semantic conventions, stored as ERROR).
    with_error = {i for i in range(shop.n) if i % 4 == 0 or i % 5 == 0 or i % 10 in (3, 7)}
    assert found_requests(shop, search(server, service="frontend", error="true")) == with_error
    assert found_requests(shop, search(server, service="frontend", error="false")) == (
        set(range(shop.n)) - with_error
    )
    for s in search(server, service="frontend", error="true"):
        assert s["errorCount"] > 0
    body = get_json(server, "/api/v1/traces", {"error": "maybe"}, status=400)
    assert body["errorType"] == "bad_data" and "error" in body["error"], body


def test_search_by_duration(server, shop):
    slow = {9, 19}
    assert found_requests(shop, search(server, service="payments", min_duration="1s")) == slow
    assert found_requests(shop, search(server, min_duration="1.5s")) == slow
    # the payments server span takes exactly 1.5 s when slow: bounds are inclusive
    assert found_requests(
        shop, search(server, service="payments", operation="POST /pay", kind="server",
                     min_duration="1500ms", max_duration="1500ms")
    ) == slow
    assert search(server, service="payments", min_duration="1501ms") == []
    # the database span takes 30 ms: nothing of checkout is shorter
    assert found_requests(shop, search(server, service="checkout", max_duration="30ms")) == set(range(shop.n))
    assert search(server, service="checkout", max_duration="29999us") == []
    body = get_json(server, "/api/v1/traces", {"min_duration": "2s", "max_duration": "1s"}, status=400)
    assert body["errorType"] == "bad_data", body
    body = get_json(server, "/api/v1/traces", {"min_duration": "soon"}, status=400)
    assert "min_duration" in body["error"], body


def test_search_by_tags(server, shop):
    assert found_requests(shop, search(server, tags="order.id=o-7")) == {7}
    # typed attributes match their text: int, double, bool
    assert found_requests(shop, search(server, tags="cart.items=3")) == {3, 7, 11, 15, 19}
    assert found_requests(shop, search(server, tags="cart.total=17.5")) == {7}
    assert found_requests(shop, search(server, tags="cart.gift=true")) == set(range(1, shop.n, 2))
    # several tags: all on the same span
    assert found_requests(shop, search(server, tags="cart.items=3 cart.gift=true")) == {3, 7, 11, 15, 19}
    assert search(server, tags="order.id=o-7 cart.items=0") == []
    # a client span's attributes: Stripe answered 503
    assert found_requests(
        shop, search(server, service="checkout", tags="server.address=api.stripe.com http.response.status_code=503")
    ) == {7, 17}
    # resource attributes match too
    assert found_requests(shop, search(server, tags='service.instance.id="payments-1"')) == set(range(shop.n))
    body = get_json(server, "/api/v1/traces", {"tags": 'a="unterminated'}, status=400)
    assert body["errorType"] == "bad_data" and "tags" in body["error"], body


def test_search_by_time_range(server, shop):
    # Request i starts at t0 + 2 s * i: a window from 9.5 s to 19.5 s holds requests 5 to 9.
    start = (shop.t0 + 9_500 * MS) / 1e9
    end = (shop.t0 + 19_500 * MS) / 1e9
    got = search(server, service="frontend", start=fmt_ts(start), end=fmt_ts(end))
    assert found_requests(shop, got) == {5, 6, 7, 8, 9}
    # RFC 3339 as well
    rfc = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(int(start)))
    got = search(server, service="frontend", start=f"{rfc}Z", end=fmt_ts(end))
    assert {5, 6, 7, 8, 9} <= found_requests(shop, got) <= {4, 5, 6, 7, 8, 9}
    # the default window is the last hour: everything
    assert len(search(server, service="frontend")) == shop.n
    assert search(server, service="frontend", end=fmt_ts(shop.t0 / 1e9 - 1)) == []


# ---- derived series through PromQL --------------------------------------------------------


def promql_by(lookout: Lookout, expr: str, keys: tuple[str, ...]) -> dict[tuple, float]:
    return {
        tuple(dict(labels).get(k, "") for k in keys): value
        for labels, value in lookout.query_vector(expr).items()
    }


def test_spanmetrics_calls_equal_the_spans_sent(server, shop):
    keys = ("service", "status_code")
    got = promql_by(server, "sum by (service, status_code) (traces_spanmetrics_calls_total)", keys)
    assert got == expected_calls(shop, *keys)
    # spot-check the numbers themselves, not only their agreement with the helper
    assert got[("payments", "STATUS_CODE_ERROR")] == 5
    assert got[("payments", "STATUS_CODE_OK")] == 20  # charge-card sets OK
    assert got[("checkout", "STATUS_CODE_ERROR")] == 4 + 2 + 2 + 5  # 500s, db, Stripe 503, payments
    keys = ("service", "span_name", "span_kind", "status_code")
    got = promql_by(server, "traces_spanmetrics_calls_total", keys)
    assert got == expected_calls(shop, *keys)


def test_spanmetrics_latency_histogram(server, shop):
    count = promql_by(
        server, "sum by (service, span_name, span_kind) (traces_spanmetrics_latency_count)",
        ("service", "span_name", "span_kind"),
    )
    assert count == expected_calls(shop, "service", "span_name", "span_kind")
    sel = 'service="payments",span_name="POST /pay",span_kind="SPAN_KIND_SERVER"'
    buckets = promql_by(server, f"sum by (le) (traces_spanmetrics_latency_bucket{{{sel}}})", ("le",))
    # 18 calls of 170 ms and two of 1.5 s, in Tempo's default buckets
    assert buckets[("0.128",)] == 0
    assert buckets[("0.256",)] == 18
    assert buckets[("1.024",)] == 18
    assert buckets[("2.048",)] == 20
    assert buckets[("+Inf",)] == 20
    (total,) = server.query_vector(f"sum(traces_spanmetrics_latency_sum{{{sel}}})").values()
    assert total == pytest.approx(18 * 0.17 + 2 * 1.5, abs=1e-9)


def test_spanmetrics_success_ratio_through_promql(server, shop):
    """The success rate PromQL gives over the raw counters equals the known failure ratio."""
    expr = (
        'sum by (service) (traces_spanmetrics_calls_total{span_kind="SPAN_KIND_SERVER",status_code="STATUS_CODE_ERROR"})'
        ' / sum by (service) (traces_spanmetrics_calls_total{span_kind="SPAN_KIND_SERVER"})'
    )
    got = {dict(k)["service"]: 1 - v for k, v in server.query_vector(expr).items()}
    want = {svc: 1 - failed / total for svc, (total, failed) in expected_requests(shop).items()}
    assert want == {"frontend": 0.8, "checkout": 0.8, "payments": 0.75}
    assert got.keys() == want.keys()
    for svc in want:
        assert abs(got[svc] - want[svc]) < 1e-9, (svc, got[svc])


def test_service_graph_series_through_promql(server, shop):
    stripe_edge_flushed(server)
    keys = ("client", "server", "connection_type")
    total = promql_by(server, "sum by (client, server, connection_type) (traces_service_graph_request_total)", keys)
    failed = promql_by(
        server, "sum by (client, server, connection_type) (traces_service_graph_request_failed_total)", keys
    )
    want = expected_edges(shop)
    assert want == {
        ("user", "frontend", "virtual_node"): (20, 4),
        ("frontend", "checkout", ""): (20, 4),
        ("checkout", "payments", ""): (20, 5),
        ("checkout", "postgresql", "database"): (20, 2),
        ("checkout", "api.stripe.com", "virtual_node"): (20, 2),
    }
    assert {k: (total[k], failed.get(k)) for k in total} == want
    # both histograms of every edge count every request
    for side in ("server", "client"):
        count = promql_by(
            server,
            f"sum by (client, server, connection_type) (traces_service_graph_request_{side}_seconds_count)",
            keys,
        )
        assert count == {k: v[0] for k, v in want.items()}, side


# ---- RED and service-graph APIs ------------------------------------------------------------


RED_FIELDS = {"requestRate", "errorRate", "successRate", "requests", "errors", "p50", "p95", "p99"}


def is_number_or_null(v) -> bool:
    return v is None or (isinstance(v, (int, float)) and not isinstance(v, bool))


def test_services_api_lists_every_service_in_shape(server, shop):
    data = server.api_get("/api/v1/services")
    assert [d["service"] for d in data] == ["checkout", "frontend", "payments"]
    for d in data:
        assert set(d) == {"service"} | RED_FIELDS, d
        assert all(is_number_or_null(d[f]) for f in RED_FIELDS), d
    ops = server.api_get("/api/v1/services/checkout/operations")
    assert sorted((o["operation"], o["kind"]) for o in ops) == [
        ("POST /api/checkout", "server"),
        ("POST /pay", "client"),
        ("POST /v1/charges", "client"),
        ("SELECT orders", "client"),
    ]
    for o in ops:
        assert set(o) == {"operation", "kind"} | RED_FIELDS, o
    body = get_json(server, "/api/v1/services", {"start": "100", "end": "100"}, status=400)
    assert body["errorType"] == "bad_data", body


def test_services_api_success_rate_equals_the_failure_ratio(server, shop):
    data = {d["service"]: d for d in server.api_get("/api/v1/services")}
    for svc, (total, failed) in expected_requests(shop).items():
        d = data[svc]
        assert (d["requests"], d["errors"]) == (total, failed), d
        assert d["successRate"] is not None and abs(d["successRate"] - (1 - failed / total)) < 1e-9, d
        # payments: 18 calls of 170 ms, two of 1.5 s; the others end around them
        assert d["p50"] is not None and d["p50"] <= 0.512, d
    assert 1.024 < data["payments"]["p99"] <= 2.048, data["payments"]


def test_operations_api_counts_every_call(server, shop):
    ops = {(o["operation"], o["kind"]): o for o in server.api_get("/api/v1/services/checkout/operations")}
    want = {
        ("POST /api/checkout", "server"): (20, 4),
        ("SELECT orders", "client"): (20, 2),
        ("POST /v1/charges", "client"): (20, 2),
        ("POST /pay", "client"): (20, 5),
    }
    assert {k: (o["requests"], o["errors"]) for k, o in ops.items()} == want


def test_service_graph_api_shape(server, shop):
    data = server.api_get("/api/v1/service-graph")
    assert set(data) == {"nodes", "edges"}
    nodes = {n["id"]: n for n in data["nodes"]}
    for name in ("frontend", "checkout", "payments"):
        assert nodes[name]["virtual"] is False, nodes[name]
    graph_fields = {"requestRate", "errorRate", "successRate", "requests", "errors", "p95"}
    for n in data["nodes"]:
        assert set(n) == {"id", "virtual"} | graph_fields, n
    for e in data["edges"]:
        assert set(e) == {"source", "target", "connectionType"} | graph_fields, e


def test_service_graph_api_edges_and_counts(server, shop):
    stripe_edge_flushed(server)
    data = server.api_get("/api/v1/service-graph")
    edges = {(e["source"], e["target"], e["connectionType"]): (e["requests"], e["errors"]) for e in data["edges"]}
    assert edges == expected_edges(shop)
    nodes = {n["id"]: n for n in data["nodes"]}
    assert {k: n["virtual"] for k, n in nodes.items()} == {
        "user": True, "frontend": False, "checkout": False, "payments": False,
        "postgresql": True, "api.stripe.com": True,
    }
    assert (nodes["postgresql"]["requests"], nodes["postgresql"]["errors"]) == (20, 2)
    assert (nodes["payments"]["requests"], nodes["payments"]["errors"]) == (20, 5)


# ---- Jaeger's query API ---------------------------------------------------------------------

# Jaeger's JSON model (jaeger/model/json/model.go): the fields and their JSON types.
JAEGER_TRACE_FIELDS = {"traceID": str, "spans": list, "processes": dict, "warnings": (list, type(None))}
JAEGER_SPAN_FIELDS = {
    "traceID": str, "spanID": str, "flags": int, "operationName": str, "references": list,
    "startTime": int, "duration": int, "tags": list, "logs": list, "processID": str,
    "warnings": (list, type(None)),
}
JAEGER_VALUE_TYPES = {"string": str, "bool": bool, "int64": int, "float64": float, "binary": str}


def jaeger_get(lookout: Lookout, path: str, params=None, status: int = 200) -> dict:
    body = get_json(lookout, path, params, status)
    assert set(body) == {"data", "total", "limit", "offset", "errors"}, body
    if status == 200:
        assert body["errors"] is None or isinstance(body["errors"], list)
    return body


def check_jaeger_kv(kv: dict) -> None:
    assert set(kv) == {"key", "type", "value"}, kv
    assert isinstance(kv["key"], str)
    want = JAEGER_VALUE_TYPES[kv["type"]]
    value = kv["value"]
    if kv["type"] == "int64" and isinstance(value, str):  # beyond 2^53, as Jaeger
        int(value)
    elif kv["type"] == "float64":
        assert isinstance(value, (int, float)) and not isinstance(value, bool), kv
    else:
        assert isinstance(value, want) and (want is bool or not isinstance(value, bool)), kv


def check_jaeger_trace(t: dict) -> None:
    """Field names and JSON types of Jaeger's documented trace model."""
    assert set(t) == set(JAEGER_TRACE_FIELDS), set(t)
    for f, typ in JAEGER_TRACE_FIELDS.items():
        assert isinstance(t[f], typ), (f, t[f])
    for pid, p in t["processes"].items():
        assert set(p) == {"serviceName", "tags"}, p
        assert isinstance(p["serviceName"], str)
        for kv in p["tags"]:
            check_jaeger_kv(kv)
    for s in t["spans"]:
        assert set(s) == set(JAEGER_SPAN_FIELDS), set(s) ^ set(JAEGER_SPAN_FIELDS)
        for f, typ in JAEGER_SPAN_FIELDS.items():
            assert isinstance(s[f], typ) and not isinstance(s[f], bool), (f, s[f])
        assert s["traceID"] == t["traceID"]
        assert s["processID"] in t["processes"]
        for r in s["references"]:
            assert set(r) == {"refType", "traceID", "spanID"} and r["refType"] in ("CHILD_OF", "FOLLOWS_FROM"), r
        for kv in s["tags"]:
            check_jaeger_kv(kv)
        for log in s["logs"]:
            assert set(log) == {"timestamp", "fields"} and isinstance(log["timestamp"], int), log
            for kv in log["fields"]:
                check_jaeger_kv(kv)


def grafana_span_rows(t: dict) -> list[dict]:
    """What Grafana's Jaeger data source makes of a trace (responseTransform.ts `toSpanRow`):
    the parent is the first CHILD_OF reference, the service comes from the span's process,
    times go from µs to ms."""
    return [
        {
            "spanID": s["spanID"],
            "traceID": s["traceID"],
            "parentSpanID": next((r["spanID"] for r in s["references"] if r["refType"] == "CHILD_OF"), None),
            "operationName": s["operationName"],
            "startTime": s["startTime"] / 1000,
            "duration": s["duration"] / 1000,
            "logs": [{**log, "timestamp": log["timestamp"] / 1000} for log in s["logs"]],
            "tags": s["tags"],
            "serviceName": t["processes"][s["processID"]]["serviceName"],
            "serviceTags": t["processes"][s["processID"]]["tags"],
        }
        for s in t["spans"]
    ]


def jaeger_ui_trace_name(t: dict) -> tuple[str, int, int]:
    """Jaeger UI's `transformTraceData` (used by Grafana's search table): the trace name is
    `service: operation` of the span without a parent in the trace; start and duration in µs."""
    ids = {s["spanID"] for s in t["spans"]}
    roots = [
        s for s in t["spans"]
        if not any(r["refType"] == "CHILD_OF" and r["spanID"] in ids for r in s["references"])
    ]
    root = min(roots, key=lambda s: s["startTime"])
    start = min(s["startTime"] for s in t["spans"])
    end = max(s["startTime"] + s["duration"] for s in t["spans"])
    return f"{t['processes'][root['processID']]['serviceName']}: {root['operationName']}", start, end - start


def tag_map(tags: list[dict]) -> dict:
    return {kv["key"]: (kv["type"], kv["value"]) for kv in tags}


def test_jaeger_services_and_operations(server, shop):
    body = jaeger_get(server, "/api/services")
    assert body["data"] == ["checkout", "frontend", "payments"] and body["total"] == 3
    body = jaeger_get(server, "/api/services/checkout/operations")
    assert body["data"] == ["POST /api/checkout", "POST /pay", "POST /v1/charges", "SELECT orders"]
    body = jaeger_get(server, "/api/operations", {"service": "payments"})
    assert sorted((o["name"], o["spanKind"]) for o in body["data"]) == [
        ("POST /pay", "server"), ("charge-card", "internal"),
    ]
    body = jaeger_get(server, "/api/operations", {"service": "checkout", "spanKind": "client"})
    assert sorted(o["name"] for o in body["data"]) == ["POST /pay", "POST /v1/charges", "SELECT orders"]
    assert jaeger_get(server, "/api/services/nobody/operations")["data"] == []


def test_jaeger_trace_in_jaegers_json_shape(server, shop):
    i = 4  # payments declined the card: errors, an exception log, every tag type
    trace_id = shop.trace_ids[i]
    sent = {s.span_id: s for s in shop.by_trace()[trace_id]}
    body = jaeger_get(server, f"/api/traces/{trace_id}")
    assert body["errors"] is None and len(body["data"]) == 1
    t = body["data"][0]
    check_jaeger_trace(t)
    assert t["traceID"] == trace_id
    assert {p["serviceName"] for p in t["processes"].values()} == {"frontend", "checkout", "payments"}
    for p in t["processes"].values():
        tags = tag_map(p["tags"])
        assert "service.name" not in tags  # it is the serviceName
        assert tags["service.instance.id"] == ("string", f"{p['serviceName']}-1")
        assert tags["deployment.environment"] == ("string", "e2e")
    assert {s["spanID"] for s in t["spans"]} == set(sent)
    for s in t["spans"]:
        want = sent[s["spanID"]]
        assert s["operationName"] == want.name
        assert t["processes"][s["processID"]]["serviceName"] == want.service
        assert s["startTime"] == want.start // 1000  # µs
        assert s["duration"] == want.duration // 1000
        assert s["flags"] == 1
        parents = [r for r in s["references"] if r["refType"] == "CHILD_OF"]
        if want.parent_span_id is None:
            assert parents == []
        else:
            assert parents == [{"refType": "CHILD_OF", "traceID": trace_id, "spanID": want.parent_span_id}]
        tags = tag_map(s["tags"])
        assert tags["span.kind"] == ("string", want.kind_name)
        assert tags["otel.scope.name"] == ("string", "e2e.shop")
        if want.stored_status == StatusCode.ERROR:
            assert tags["error"] == ("bool", True)
            assert tags["otel.status_code"] == ("string", "ERROR")
            if want.status_message:
                assert tags["otel.status_description"] == ("string", want.status_message)
        else:
            assert "error" not in tags
        if want.status == StatusCode.OK:
            assert tags["otel.status_code"] == ("string", "OK")
    by_name = {(s["operationName"], tag_map(s["tags"])["span.kind"][1]): s for s in t["spans"]}
    cart = tag_map(by_name[("POST /api/checkout", "server")]["tags"])
    assert cart["order.id"] == ("string", f"o-{i}")
    assert cart["cart.items"] == ("int64", i % 4)
    assert cart["cart.total"] == ("float64", 10.5 + i)
    assert cart["cart.gift"] == ("bool", False)
    assert cart["http.response.status_code"] == ("int64", 200)
    (log,) = by_name[("POST /pay", "server")]["logs"]
    assert log["timestamp"] == (shop.t0 + i * 2000 * MS + 310 * MS) // 1000
    fields = tag_map(log["fields"])
    assert fields["event"] == ("string", "exception")
    assert fields["exception.type"] == ("string", "ValueError")
    assert fields["exception.message"] == ("string", "card declined")


def test_grafana_parses_the_jaeger_trace(server, shop):
    trace_id = shop.trace_ids[9]
    sent = {s.span_id: s for s in shop.by_trace()[trace_id]}
    t = jaeger_get(server, f"/api/traces/{trace_id}")["data"][0]
    rows = grafana_span_rows(t)
    assert {r["spanID"]: (r["parentSpanID"], r["serviceName"], r["operationName"]) for r in rows} == {
        sid: (s.parent_span_id, s.service, s.name) for sid, s in sent.items()
    }
    for r in rows:
        assert r["startTime"] == pytest.approx(sent[r["spanID"]].start / 1e6, abs=1e-3)
        assert r["duration"] == pytest.approx(sent[r["spanID"]].duration / 1e6, abs=1e-3)
    name, start, duration = jaeger_ui_trace_name(t)
    first = min(s.start for s in sent.values())
    assert name == "frontend: GET /checkout"
    assert start == first // 1000
    assert duration == (max(s.end for s in sent.values()) - first) // 1000
    # ids are case-insensitive hex; a short (64-bit) id is read left-padded, as Jaeger does
    assert jaeger_get(server, f"/api/traces/{trace_id.upper()}")["data"][0]["traceID"] == trace_id
    jaeger_get(server, "/api/traces/1f", status=404)


def test_jaeger_search_as_grafana_sends_it(server, shop):
    start_us = shop.t0 // 1000 - 60_000_000
    end_us = time.time_ns() // 1000
    base = {"service": "checkout", "start": str(start_us), "end": str(end_us), "lookback": "custom"}

    def found(**params) -> list[int]:
        body = jaeger_get(server, "/api/traces", {**base, **params})
        for t in body["data"]:
            check_jaeger_trace(t)
            assert len(t["spans"]) == SPANS_PER_TRACE  # whole traces, not only matching spans
        return sorted(shop.request_of(t["traceID"]) for t in body["data"])

    assert found() == list(range(shop.n))
    assert found(limit="5") == [15, 16, 17, 18, 19]  # newest first, then cut
    assert found(operation="POST /v1/charges") == list(range(shop.n))
    # Grafana turns logfmt tags into this JSON object
    assert found(tags='{"order.id":"o-7"}') == [7]
    assert found(tags='{"http.response.status_code":"503","server.address":"api.stripe.com"}') == [7, 17]
    assert found(tag="order.id:o-12") == [12]
    assert found(minDuration="1.5s") == [9, 19]
    assert found(maxDuration="30ms", operation="SELECT orders") == list(range(shop.n))
    assert found(maxDuration="29ms") == []
    window = {"start": str((shop.t0 + 9_500 * MS) // 1000), "end": str((shop.t0 + 19_500 * MS) // 1000)}
    assert found(**window, service="frontend") == [5, 6, 7, 8, 9]
    # traceID= fetches those traces; an unknown one is an error beside the data
    missing = "0af7651916cd43dd8448eb211c80319c"
    body = jaeger_get(
        server, "/api/traces", [("traceID", shop.trace_ids[3]), ("traceID", missing)]
    )
    assert [t["traceID"] for t in body["data"]] == [shop.trace_ids[3]]
    assert body["errors"] == [{"msg": "trace not found", "traceID": missing}], body["errors"]
    # Grafana's search table: one row per trace, named by its root
    for t in jaeger_get(server, "/api/traces", {**base, "limit": "3"})["data"]:
        assert jaeger_ui_trace_name(t)[0] == "frontend: GET /checkout"


def test_jaeger_errors_are_jaeger_shaped(server, shop):
    body = jaeger_get(server, "/api/traces/0af7651916cd43dd8448eb211c80319c", status=404)
    assert body["data"] is None and body["errors"] == [{"code": 404, "msg": "trace not found"}], body
    body = jaeger_get(server, "/api/traces/xyz", status=400)
    assert body["errors"][0]["code"] == 400 and "traceID" in body["errors"][0]["msg"], body
    body = jaeger_get(server, "/api/traces", {"operation": "x"}, status=400)
    assert "service" in body["errors"][0]["msg"], body
    body = jaeger_get(server, "/api/traces", {"service": "checkout", "tags": "{not json"}, status=400)
    assert "tags" in body["errors"][0]["msg"], body
    body = jaeger_get(server, "/api/traces", {"service": "checkout", "minDuration": "2s", "maxDuration": "1s"}, status=400)
    assert "maxDuration" in body["errors"][0]["msg"], body
    body = jaeger_get(server, "/api/operations", status=400)
    assert "service" in body["errors"][0]["msg"], body


def test_jaeger_dependencies_shape(server, shop):
    body = jaeger_get(server, "/api/dependencies", {"endTs": str(int(time.time() * 1000)), "lookback": "3600000"})
    assert isinstance(body["data"], list)
    for link in body["data"]:
        assert set(link) == {"parent", "child", "callCount"} and isinstance(link["callCount"], int), link
    body = jaeger_get(server, "/api/dependencies", {"lookback": "-1"}, status=400)
    assert "lookback" in body["errors"][0]["msg"], body


def test_jaeger_dependencies_count_every_call(server, shop):
    stripe_edge_flushed(server)
    body = jaeger_get(server, "/api/dependencies", {"endTs": str(int(time.time() * 1000)), "lookback": "3600000"})
    links = {(d["parent"], d["child"]): d["callCount"] for d in body["data"]}
    assert links == {(c, s): total for (c, s, _), (total, _) in expected_edges(shop).items()}
