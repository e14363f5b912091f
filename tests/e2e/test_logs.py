"""Logs end to end: records sent with the real Python OpenTelemetry SDK logging handler (OTLP
over HTTP and over gRPC, from inside a traced span) and with plain Loki push (JSON, gzip,
snappy protobuf), read back through `/api/v1/logs/query` (every part of the query language),
`/histogram`, `/tail` (server-sent events), `/fields`, the log-based metric
`lookout_log_records_total` over PromQL, and the links between a trace and its logs.

Every expectation comes from what the test sent, never from Lookout. One server for the
module; each test's records live in their own time window or under their own service, so the
tests do not see each other's records. Crash and restart: `test_logs_crash.py`; bad input:
`test_logs_bad_input.py`.
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
import os
import re
import time
import warnings
from collections import Counter

import pytest
import requests
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.grpc._log_exporter import (
    OTLPLogExporter as GrpcLogExporter,
)
from opentelemetry.exporter.otlp.proto.http._log_exporter import (
    OTLPLogExporter as HttpLogExporter,
)
from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
    OTLPSpanExporter as HttpSpanExporter,
)
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceResponse
from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor, LogRecordExportResult
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExportResult

from helpers import (
    Lookout,
    otlp_log_record,
    otlp_logs_request,
    post_otlp_logs,
    push_loki,
    report_logs_of,
    search_logs,
    stops_cleanly,
    wait_until,
)

S_NS = 1_000_000_000
# How long a pushed line may take to become searchable (the promise).
NEAR_REAL_TIME_S = 2.0
# Searches that wait for records to be committed use this (generous: the promise is tested
# on its own in `test_pushed_lines_are_searchable_within_2_seconds`).
SEARCHABLE_TIMEOUT_S = 10.0
# The log-based metric is written at least every 15 s while it changes.
METRIC_TIMEOUT_S = 20.0
# Longest wait for the next piece of a tail stream.
TAIL_READ_TIMEOUT_S = 10.0

SEVERITY = {  # Python logging level -> (OTLP number, text the SDK sends, Lookout's range name)
    logging.DEBUG: (5, "DEBUG", "debug"),
    logging.INFO: (9, "INFO", "info"),
    logging.WARNING: (13, "WARN", "warn"),
    logging.ERROR: (17, "ERROR", "error"),
    logging.CRITICAL: (21, "FATAL", "fatal"),
}


# ---- the SDK scenario -------------------------------------------------------------------


@dataclasses.dataclass
class Line:
    key: str
    service: str
    offset_s: int  # record time: the scenario's base second + this
    level: int
    body: str
    extra: dict = dataclasses.field(default_factory=dict)
    in_span: bool = False


# Two services: checkout logs over OTLP/HTTP (three lines from inside the span of a traced
# request), payments over OTLP/gRPC. Words are chosen so every query below has a small, known
# answer: `timeout` (c2, p4) against `timeouts` (p5), the phrase "gateway timeout" (c2, p4),
# CJK lines that share characters with 数据库 without containing it (c4, c5), a path, an IP.
LINES = [
    Line("c1", "checkout", 1, logging.INFO, "order o-1001 accepted for user alice",
         {"order.id": "o-1001", "user.id": "alice"}, in_span=True),
    Line("c2", "checkout", 2, logging.WARNING,
         "payment retry 2 for order o-1001: gateway timeout after 3000 ms",
         {"order.id": "o-1001", "retry": 2}, in_span=True),
    Line("c3", "checkout", 3, logging.ERROR, "连接数据库超时：orders 表不可用",
         {"db.system": "postgresql"}, in_span=True),
    Line("c4", "checkout", 4, logging.INFO, "数据已保存到缓存"),
    Line("c5", "checkout", 5, logging.INFO, "库存不足 sku-77"),
    Line("c6", "checkout", 6, logging.DEBUG, "cache warmup finished in 120 ms"),
    Line("c7", "checkout", 7, logging.INFO, "GET /api/v1/users/42 returned 404",
         {"http.route": "/api/v1/users/{id}"}),
    Line("c8", "checkout", 8, logging.WARNING, "connection from 10.0.0.1 refused"),
    Line("c9", "checkout", 9, logging.CRITICAL, "disk full on /var/lib/checkout"),
    Line("p1", "payments", 11, logging.INFO, "charge ch_1 succeeded amount=42.50 currency=EUR",
         {"card.brand": "mastercard"}),
    Line("p2", "payments", 12, logging.ERROR, "charge ch_2 failed: card declined",
         {"card.brand": "visa"}),
    Line("p3", "payments", 13, logging.WARNING, "slow response from api.stripe.com: 1500 ms"),
    Line("p4", "payments", 14, logging.ERROR, "gateway timeout talking to api.stripe.com",
         {"card.brand": "visa"}),
    Line("p5", "payments", 15, logging.INFO, "2 timeouts in the last minute"),
    Line("p6", "payments", 16, logging.INFO, "user alice paid order o-1001"),
]
ALL_KEYS = {line.key for line in LINES}
CHECKOUT = {line.key for line in LINES if line.service == "checkout"}
PAYMENTS = {line.key for line in LINES if line.service == "payments"}


class SetCreated(logging.Filter):
    """Gives a record the creation time passed as `extra={"at": unix_seconds}` (the OTel
    handler sends `record.created` as the record's time), so every expectation about times
    and order is exact. Whole seconds: `created * 1e9` is then exact in a float."""

    def filter(self, record: logging.LogRecord) -> bool:
        at = record.__dict__.pop("at", None)
        if at is not None:
            record.created = float(at)
            record.msecs = 0.0
        return True


class SdkService:
    """One service's OpenTelemetry logging pipeline: a LoggerProvider with its resource, a
    batch processor that exports only when flushed, and a `logging` logger with the SDK's
    LoggingHandler attached."""

    def __init__(self, name: str, exporter):
        self.name = name
        self.results: list = []
        original_export = exporter.export

        def recording_export(batch, *args, **kwargs):
            result = original_export(batch, *args, **kwargs)
            self.results.append(result)
            return result

        exporter.export = recording_export
        resource = Resource.create({"service.name": name, "deployment.environment": "e2e"})
        self.provider = LoggerProvider(resource=resource)
        self.provider.add_log_record_processor(
            BatchLogRecordProcessor(exporter, schedule_delay_millis=3_600_000, max_export_batch_size=512)
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            self.handler = LoggingHandler(level=logging.NOTSET, logger_provider=self.provider)
        self.logger = logging.getLogger(f"e2e.logs.{name}")
        self.logger.setLevel(logging.DEBUG)
        self.logger.propagate = False
        self.logger.addFilter(SetCreated())
        self.logger.addHandler(self.handler)

    def flush(self) -> None:
        try:
            assert self.provider.force_flush(timeout_millis=15_000), f"{self.name}: flush timed out"
        finally:
            self.logger.removeHandler(self.handler)
            self.provider.shutdown()
        assert self.results, f"{self.name}: the log exporter was never called"
        assert all(r == LogRecordExportResult.SUCCESS for r in self.results), (
            f"{self.name}: OTLP log export failed: {self.results}"
        )


@dataclasses.dataclass
class Scenario:
    base: int  # Unix seconds; record `offset_s` is at base + offset_s
    trace_id: str
    span_id: str

    @property
    def start(self) -> int:
        return self.base

    @property
    def end(self) -> int:
        return self.base + 60

    def line(self, key: str) -> Line:
        return next(x for x in LINES if x.key == key)

    def time_ns(self, key: str) -> int:
        return (self.base + self.line(key).offset_s) * S_NS


def run_scenario(lookout: Lookout, base: int) -> Scenario:
    checkout = SdkService("checkout", HttpLogExporter(endpoint=f"{lookout.otlp_http}/v1/logs", timeout=10))
    payments = SdkService("payments", GrpcLogExporter(endpoint=lookout.otlp_grpc, insecure=True, timeout=10))
    services = {"checkout": checkout, "payments": payments}

    # The traced request the first three checkout lines are logged in; its span is exported
    # to Lookout too, so the trace and its logs can be followed both ways.
    span_results: list = []
    span_exporter = HttpSpanExporter(endpoint=f"{lookout.otlp_http}/v1/traces", timeout=10)
    original = span_exporter.export

    def recording(spans, *a, **kw):
        result = original(spans, *a, **kw)
        span_results.append(result)
        return result

    span_exporter.export = recording
    tracer_provider = TracerProvider(resource=Resource.create({"service.name": "checkout"}))
    tracer_provider.add_span_processor(BatchSpanProcessor(span_exporter, schedule_delay_millis=3_600_000))
    tracer = tracer_provider.get_tracer("e2e.logs")
    span = tracer.start_span("POST /checkout", start_time=base * S_NS)

    for line in LINES:
        logger = services[line.service].logger
        extra = {**line.extra, "at": base + line.offset_s}
        if line.in_span:
            with trace.use_span(span, end_on_exit=False):
                logger.log(line.level, line.body, extra=extra)
        else:
            logger.log(line.level, line.body, extra=extra)
    span.end(end_time=(base + 10) * S_NS)
    ctx = span.get_span_context()

    for service in services.values():
        service.flush()
    assert tracer_provider.force_flush(15_000)
    tracer_provider.shutdown()
    assert span_results == [SpanExportResult.SUCCESS], span_results
    return Scenario(base=base, trace_id=format(ctx.trace_id, "032x"), span_id=format(ctx.span_id, "016x"))


# ---- fixtures and helpers ---------------------------------------------------------------


@pytest.fixture(scope="module")
def logs_server(tmp_path_factory):
    """One server for the module, fed the SDK scenario once (ten minutes in the past)."""
    workdir = tmp_path_factory.mktemp("logs")
    lookout = Lookout(workdir, name="logs")
    lookout.start()
    with stops_cleanly(lookout):
        scenario = run_scenario(lookout, int(time.time()) - 600)
        # Committed to the index: every scenario record is searchable.
        wait_until(
            lambda: len(search_logs(lookout, "", scenario.start, scenario.end, limit=100)) == len(LINES),
            timeout=SEARCHABLE_TIMEOUT_S,
            what="every SDK record searchable",
        )
        yield lookout, scenario


@pytest.fixture
def server(logs_server, request) -> Lookout:
    report_logs_of(request, logs_server[0])
    return logs_server[0]


@pytest.fixture
def sdk(logs_server) -> Scenario:
    return logs_server[1]


def keys_of(records: list[dict]) -> list[str]:
    by_body = {line.body: line.key for line in LINES}
    unknown = [r["body"] for r in records if r["body"] not in by_body]
    assert not unknown, f"records the scenario did not send: {unknown}"
    return [by_body[r["body"]] for r in records]


def found(server: Lookout, sdk: Scenario, query: str, **params) -> set[str]:
    """Keys of the scenario records a query finds in the scenario's window."""
    records = search_logs(server, query, start=sdk.start, end=sdk.end, limit=1000, **params)
    keys = keys_of(records)
    assert len(keys) == len(set(keys)), f"{query!r}: a record returned twice: {keys}"
    return set(keys)


_RFC3339 = re.compile(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:\d\d)")


def rfc3339_ns(text: str) -> int:
    m = _RFC3339.fullmatch(text)
    assert m, f"not RFC 3339: {text!r}"
    whole = datetime.datetime.fromisoformat(m.group(1) + (m.group(3).replace("Z", "+00:00")))
    return int(whole.timestamp()) * S_NS + int((m.group(2) or "0").ljust(9, "0"))


def wait_equal(get, want, timeout: float):
    """Polls `get()` until it equals `want`; on timeout asserts the last value (so pytest
    shows the difference)."""
    deadline = time.monotonic() + timeout
    while True:
        got = get()
        if got == want or time.monotonic() >= deadline:
            assert got == want
            return
        time.sleep(0.2)


def now_ns() -> int:
    return time.time_ns()


def wait_found(server: Lookout, query: str, want: int, start: float, end: float | None = None,
               timeout: float = SEARCHABLE_TIMEOUT_S) -> list[dict]:
    """Polls a search until it returns `want` records; returns them."""
    end = end if end is not None else time.time() + 5
    return wait_until(
        lambda: (lambda r: r if len(r) == want else None)(
            search_logs(server, query, start=int(start), end=int(end) + 1, limit=1000)
        ),
        timeout=timeout,
        what=f"{want} records for {query!r}",
    )


# ---- what the SDK sent, read back -------------------------------------------------------


def test_records_read_back_as_sent(server, sdk):
    records = search_logs(server, "", sdk.start, sdk.end, limit=100)
    assert len(records) == len(LINES)
    by_key = dict(zip(keys_of(records), records))
    for line in LINES:
        r = by_key[line.key]
        number, text, name = SEVERITY[line.level]
        assert (r["service"], r["body"], r["severity"], r["severity_number"], r["severity_text"]) == (
            line.service, line.body, name, number, text,
        ), line.key
        assert r["time_unix_nano"] == str(sdk.time_ns(line.key)), line.key
        assert rfc3339_ns(r["time"]) == sdk.time_ns(line.key), (line.key, r["time"])
        # observed by the SDK when the record was emitted (now), not the record time
        assert int(r["observed_unix_nano"]) > sdk.time_ns(line.key), line.key
        # attributes as text ("retry": 2 reads back "2"), beside the SDK's code.* ones
        for k, v in line.extra.items():
            assert r["attributes"].get(k) == str(v), (line.key, k, r["attributes"])
        assert "code.function.name" in r["attributes"], r["attributes"]
        assert r["resource"]["service.name"] == line.service
        assert r["resource"]["deployment.environment"] == "e2e"
        if line.in_span:
            assert (r["trace_id"], r["span_id"]) == (sdk.trace_id, sdk.span_id), line.key
            assert r["trace_url"] == f"/api/v1/traces/{sdk.trace_id}"
        else:
            assert r["trace_id"] is None and r["span_id"] is None, (line.key, r)
            assert "trace_url" not in r, r


def test_newest_first_limit_and_direction(server, sdk):
    checkout = sorted(CHECKOUT, key=lambda k: sdk.line(k).offset_s)
    newest = keys_of(search_logs(server, "service:checkout", sdk.start, sdk.end))
    assert newest == checkout[::-1]
    assert keys_of(search_logs(server, "service:checkout", sdk.start, sdk.end, limit=3)) == checkout[::-1][:3]
    assert keys_of(
        search_logs(server, "service:checkout", sdk.start, sdk.end, limit=3, direction="backward")
    ) == checkout[::-1][:3]
    assert keys_of(
        search_logs(server, "service:checkout", sdk.start, sdk.end, limit=3, direction="forward")
    ) == checkout[:3]
    assert keys_of(search_logs(server, "", sdk.start, sdk.end, direction="forward")) == sorted(
        ALL_KEYS, key=lambda k: sdk.line(k).offset_s
    )


@pytest.mark.parametrize(
    "query, want",
    [
        # full-text terms, case-insensitive, not stemmed
        ("alice", {"c1", "p6"}),
        ("ALICE", {"c1", "p6"}),
        ("timeout", {"c2", "p4"}),
        ("declined", {"p2"}),
        ("nosuchword", set()),
        # phrases: words adjacent and in order
        ('"gateway timeout"', {"c2", "p4"}),
        ('"timeout gateway"', set()),
        ('"card declined"', {"p2"}),
        # words the tokenizer splits are phrases of their parts: a path, an IP, a host name
        ("/api/v1/users/42", {"c7"}),
        ("10.0.0.1", {"c8"}),
        ("10.0.0.2", set()),
        ("api.stripe.com", {"p3", "p4"}),
        # CJK: a Chinese word finds the line that has it, not lines sharing characters with it
        ("数据库", {"c3"}),
        ("缓存", {"c4"}),
        ("超时", {"c3"}),
        ("库存", {"c5"}),
        # fields
        ("service:checkout", CHECKOUT),
        ("service:payments", PAYMENTS),
        ('service:"payments"', PAYMENTS),
        ("service:nosuch", set()),
        ("body:alice", {"c1", "p6"}),
        ("severity_text:WARN", {"c2", "c8", "p3"}),
        # severities by range and by number
        ("severity>=warn", {"c2", "c3", "c8", "c9", "p2", "p3", "p4"}),
        ("level:error", {"c3", "p2", "p4"}),
        ("severity:error", {"c3", "p2", "p4"}),
        ("severity:fatal", {"c9"}),
        ("severity>error", {"c9"}),
        ("severity<info", {"c6"}),
        ("level>=info", ALL_KEYS - {"c6"}),
        ("severity>=17", {"c3", "c9", "p2", "p4"}),
        # attributes, log and resource, keys with dots
        ("attr.card.brand:visa", {"p2", "p4"}),
        ("attr.order.id:o-1001", {"c1", "c2"}),
        ("attr.retry:2", {"c2"}),
        ("attr.http.route:/api/*", {"c7"}),
        ("attr.deployment.environment:e2e", ALL_KEYS),
        ("attr.service.name:payments", PAYMENTS),
        # wildcards
        ("timeout*", {"c2", "p4", "p5"}),
        ("decl?ned", {"p2"}),
        ("service:pay*", PAYMENTS),
        ("service:check*", CHECKOUT),
        # boolean operators, adjacency, NOT, -term, parentheses, precedence NOT > AND > OR
        ("alice service:payments", {"p6"}),
        ("alice AND service:payments", {"p6"}),
        ("alice OR declined", {"c1", "p6", "p2"}),
        ("alice AND charge", set()),
        ("timeout* NOT service:checkout", {"p4", "p5"}),
        ("timeout* -gateway", {"p5"}),
        ("(alice OR declined) AND service:payments", {"p6", "p2"}),
        ("alice OR declined service:checkout", {"c1", "p6"}),
        ("service:checkout AND NOT severity>=warn", {"c1", "c4", "c5", "c6", "c7"}),
        ("NOT service:checkout", PAYMENTS),
        # everything
        ("", ALL_KEYS),
        ("*", ALL_KEYS),
    ],
)
def test_query_language(server, sdk, query, want):
    assert found(server, sdk, query) == want


def test_trace_id_search_and_links(server, sdk):
    in_span = {line.key for line in LINES if line.in_span}
    assert found(server, sdk, f"trace_id:{sdk.trace_id}") == in_span
    assert found(server, sdk, f"span_id:{sdk.span_id}") == in_span
    assert found(server, sdk, f"trace_id:{'0' * 31}1") == set()
    # record -> trace: the record's trace_url is the trace the SDK exported
    (record, *_) = search_logs(server, f"trace_id:{sdk.trace_id}", sdk.start, sdk.end)
    r = requests.get(f"{server.http}{record['trace_url']}", timeout=10)
    assert r.status_code == 200, (r.status_code, r.text)
    trace_data = r.json()["data"]
    assert [s["spanId"] for s in trace_data["spans"]] == [sdk.span_id]
    # trace -> records: the trace's logs_url finds exactly the records logged in its span
    logs_url = trace_data["logsUrl"]
    assert trace_data["logCount"] == len(in_span), trace_data["logCount"]
    r = requests.get(f"{server.http}{logs_url}", timeout=10)
    assert r.status_code == 200, (logs_url, r.status_code, r.text)
    assert set(keys_of(r.json()["data"]["records"])) == in_span, logs_url


def test_time_range(server, sdk):
    def keys(start, end) -> set[str]:
        return set(keys_of(search_logs(server, "service:checkout", start, end, limit=100)))

    b = sdk.base
    # both ends inclusive; a record outside either end is left out
    assert keys(b + 2, b + 4) == {"c2", "c3", "c4"}
    assert keys(b + 3, b + 4) == {"c3", "c4"}
    assert keys(b + 2, b + 3) == {"c2", "c3"}
    assert keys(b + 10, b + 60) == set()
    # RFC 3339 times mean the same
    iso = lambda t: datetime.datetime.fromtimestamp(t, datetime.timezone.utc).isoformat().replace("+00:00", "Z")
    assert keys(iso(b + 2), iso(b + 4)) == {"c2", "c3", "c4"}
    # without start/end the last hour: the scenario (10 minutes ago) is in it
    assert set(keys_of(search_logs(server, "service:checkout", limit=1000))) == CHECKOUT
    # an hour that ends before the scenario has none of it
    assert search_logs(server, "service:checkout", end=b - 1) == []


def test_log_based_metric_counts_records_per_service_and_severity(server, sdk):
    def per_severity(service: str) -> dict[str, float]:
        got = server.query_vector(f'sum by (severity) (lookout_log_records_total{{service="{service}"}})')
        return {dict(k)["severity"]: v for k, v in got.items()}

    for service in ("checkout", "payments"):
        want = Counter(SEVERITY[x.level][2] for x in LINES if x.service == service)
        wait_equal(lambda: per_severity(service), {k: float(v) for k, v in want.items()}, METRIC_TIMEOUT_S)


# ---- Loki push ----------------------------------------------------------------------------


def test_loki_json_push(server):
    t = now_ns() - 60 * S_NS
    streams = [
        ({"service_name": "loki-json", "level": "error", "env": "prod"}, [
            (t, "loki json line one: upstream reset", {"request_id": "req-42", "pod": "api-7"}),
            (t + 1000, "loki json line two: retrying"),
        ]),
        ({"service_name": "loki-json", "level": "warning", "env": "prod"}, [
            (t + 2000, "loki json line three: slow upstream"),
        ]),
    ]
    r = push_loki(server, streams)
    assert r.status_code == 204, (r.status_code, r.text)
    records = wait_found(server, "service:loki-json", 3, t / S_NS - 1)
    by_body = {x["body"]: x for x in records}
    one = by_body["loki json line one: upstream reset"]
    assert (one["service"], one["severity"], one["severity_number"]) == ("loki-json", "error", 17)
    assert one["time_unix_nano"] == str(t)
    assert one["resource"]["env"] == "prod"
    assert one["attributes"] == {"request_id": "req-42", "pod": "api-7"}
    three = by_body["loki json line three: slow upstream"]
    assert (three["severity"], three["severity_number"]) == ("warn", 13)
    assert by_body["loki json line two: retrying"]["attributes"] == {}
    # newest first
    assert [x["body"] for x in records] == [
        "loki json line three: slow upstream", "loki json line two: retrying", "loki json line one: upstream reset",
    ]
    # labels are searchable as attributes, structured metadata too; severity from `level`
    window = (int(t / S_NS) - 1, int(time.time()) + 1)
    assert {x["body"] for x in search_logs(server, "attr.request_id:req-42", *window)} == {
        "loki json line one: upstream reset"
    }
    assert len(search_logs(server, "service:loki-json attr.env:prod", *window)) == 3
    assert len(search_logs(server, "service:loki-json severity>=error", *window)) == 2
    assert len(search_logs(server, "service:loki-json upstream", *window)) == 2


def test_loki_json_gzip_push(server):
    t = now_ns() - 50 * S_NS
    r = push_loki(server, [({"service_name": "loki-gzip", "level": "info"}, [(t, "compressed hello")])], gzip=True)
    assert r.status_code == 204, (r.status_code, r.text)
    (record,) = wait_found(server, "service:loki-gzip", 1, t / S_NS - 1)
    assert (record["body"], record["severity"], record["time_unix_nano"]) == ("compressed hello", "info", str(t))


@pytest.mark.parametrize("gzip", [False, True], ids=["snappy", "snappy+gzip"])
def test_loki_protobuf_push(server, gzip):
    service = f"loki-proto-{'gz' if gzip else 'plain'}"
    t = now_ns() - 40 * S_NS + 123  # not a whole microsecond: nanoseconds are kept
    streams = [
        ({"service_name": service, "level": "warn", "cluster": "eu-1"}, [
            (t, "protobuf line 日志 one", {"trace_hint": "abc"}),
            (t + 5, "protobuf line two"),
        ]),
        ({"service_name": service, "level": "debug", "cluster": "eu-1"}, [(t + 10, "protobuf line three")]),
    ]
    r = push_loki(server, streams, fmt="protobuf", gzip=gzip)
    assert r.status_code == 204, (r.status_code, r.text)
    records = wait_found(server, f"service:{service}", 3, t / S_NS - 1)
    got = {x["body"]: (x["severity"], x["time_unix_nano"], x["attributes"], x["resource"].get("cluster"))
           for x in records}
    assert got == {
        "protobuf line 日志 one": ("warn", str(t), {"trace_hint": "abc"}, "eu-1"),
        "protobuf line two": ("warn", str(t + 5), {}, "eu-1"),
        "protobuf line three": ("debug", str(t + 10), {}, "eu-1"),
    }
    window = (int(t / S_NS) - 1, int(time.time()) + 1)
    for query in (f"service:{service} 日志", f"attr.trace_hint:abc attr.service_name:{service}"):
        assert [x["body"] for x in search_logs(server, query, *window)] == ["protobuf line 日志 one"], query


def test_otlp_json_push(server):
    """OTLP/JSON (as the collector's otlphttp exporter sends with `encoding: json`), gzip."""
    import json

    t = now_ns() - 30 * S_NS
    trace_id, span_id = os.urandom(16).hex(), os.urandom(8).hex()
    body = json.dumps({"resourceLogs": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "otlp-json"}}]},
        "scopeLogs": [{"logRecords": [{
            "timeUnixNano": str(t),
            "severityNumber": 18,
            "severityText": "Error2",
            "body": {"stringValue": "json record with ids"},
            "attributes": [{"key": "attempt", "value": {"intValue": "3"}}],
            "traceId": trace_id,
            "spanId": span_id,
        }]}],
    }]})
    r = post_otlp_logs(server, body, "application/json", gzip=True)
    assert r.status_code == 200, (r.status_code, r.text)
    assert not (r.json().get("partialSuccess") or {}).get("rejectedLogRecords"), r.text
    (record,) = wait_found(server, "service:otlp-json", 1, t / S_NS - 1)
    assert (record["body"], record["severity"], record["severity_number"], record["severity_text"]) == (
        "json record with ids", "error", 18, "Error2",
    )
    assert (record["trace_id"], record["span_id"]) == (trace_id, span_id)
    assert record["attributes"] == {"attempt": "3"}
    assert [x["body"] for x in search_logs(server, f"trace_id:{trace_id}", int(t / S_NS) - 1)] == [
        "json record with ids"
    ]


# ---- near-real-time -----------------------------------------------------------------------


def searchable_after(server: Lookout, token: str, acked_at: float, since_s: int) -> float:
    """Seconds from the push's acknowledgement until a search for `token` finds it (polled
    well past the promise, so a failure says how late the line was)."""
    while True:
        if search_logs(server, token, start=since_s):
            return time.monotonic() - acked_at
        if time.monotonic() - acked_at > 15:
            raise AssertionError(f"{token} not searchable 15 s after its push was acknowledged")
        time.sleep(0.02)


@pytest.mark.parametrize("protocol", ["loki", "otlp-http"])
def test_pushed_lines_are_searchable_within_2_seconds(server, protocol):
    since = int(time.time()) - 5
    for round_ in range(2):
        token = f"nrt{protocol.replace('-', '')}{round_}{os.urandom(4).hex()}"
        if protocol == "loki":
            r = push_loki(server, [({"service_name": "nrt"}, [(now_ns(), f"fresh line {token}")])])
            assert r.status_code == 204, (r.status_code, r.text)
        else:
            req = otlp_logs_request([({"service.name": "nrt"}, [otlp_log_record(f"fresh line {token}", now_ns(), 9)])])
            r = post_otlp_logs(server, req.SerializeToString())
            assert r.status_code == 200, (r.status_code, r.text)
            resp = ExportLogsServiceResponse()
            resp.ParseFromString(r.content)
            assert resp.partial_success.rejected_log_records == 0, resp
        acked_at = time.monotonic()
        took = searchable_after(server, token, acked_at, since)
        assert took <= NEAR_REAL_TIME_S, f"{token} became searchable {took:.2f} s after its ack"


# ---- histogram ------------------------------------------------------------------------------

HIST_COUNTS = [3, 0, 5, 1, 4]  # records per minute
HIST_LEVELS = ["error", "info", "warn"]


@pytest.fixture(scope="module")
def hist_data(logs_server):
    """HIST_COUNTS[i] records in minute i, starting at a whole minute 20 minutes ago; the j-th
    record of a minute has level HIST_LEVELS[j % 3]."""
    server = logs_server[0]
    base = (int(time.time()) - 1200) // 60 * 60
    streams = []
    for i, n in enumerate(HIST_COUNTS):
        for j in range(n):
            t = (base + 60 * i + 7 * j) * S_NS
            labels = {"service_name": "hist", "level": HIST_LEVELS[j % 3]}
            streams.append((labels, [(t, f"hist minute {i} record {j}")]))
    r = push_loki(server, streams)
    assert r.status_code == 204, (r.status_code, r.text)
    wait_found(server, "service:hist", sum(HIST_COUNTS), base, base + 300)
    return base


def expected_by_severity(i: int) -> dict[str, int]:
    return dict(Counter(HIST_LEVELS[j % 3] for j in range(HIST_COUNTS[i])))


def histogram(server: Lookout, **params) -> dict:
    return server.api_get("/api/v1/logs/histogram", {k: str(v) for k, v in params.items()})


def test_histogram_counts_what_was_sent(server, hist_data):
    base = hist_data
    data = histogram(server, query="service:hist", start=base, end=base + 299, step="1m")
    assert data["step_seconds"] == 60
    buckets = data["buckets"]
    assert [int(b["time_unix_nano"]) for b in buckets] == [(base + 60 * i) * S_NS for i in range(5)]
    assert [rfc3339_ns(b["time"]) for b in buckets] == [(base + 60 * i) * S_NS for i in range(5)]
    assert [b["count"] for b in buckets] == HIST_COUNTS
    assert all("by_severity" not in b for b in buckets), buckets
    # step in seconds; a query narrows the counts
    data = histogram(server, query="service:hist AND severity>=warn", start=base, end=base + 299, step=60)
    assert [b["count"] for b in data["buckets"]] == [
        sum(1 for j in range(n) if HIST_LEVELS[j % 3] != "info") for n in HIST_COUNTS
    ]
    # two-minute steps
    data = histogram(server, query="service:hist", start=base, end=base + 299, step="2m")
    assert data["step_seconds"] == 120
    assert [b["count"] for b in data["buckets"]] == [3, 6, 4]


def test_histogram_by_severity(server, hist_data):
    base = hist_data
    data = histogram(server, query="service:hist", start=base, end=base + 299, step="1m", by="severity")
    got = [b["by_severity"] for b in data["buckets"]]
    assert got == [expected_by_severity(i) for i in range(5)]
    assert [b["count"] for b in data["buckets"]] == HIST_COUNTS


def test_histogram_default_step(server, hist_data):
    base = hist_data
    # (end - start) / 60: one bucket per 5 s over 5 minutes
    data = histogram(server, query="service:hist", start=base, end=base + 300)
    assert data["step_seconds"] == 5
    assert sum(b["count"] for b in data["buckets"]) == sum(HIST_COUNTS)
    counts = {int(b["time_unix_nano"]) // S_NS - base: b["count"] for b in data["buckets"] if b["count"]}
    want = Counter(60 * i + 7 * j - (60 * i + 7 * j) % 5 for i, n in enumerate(HIST_COUNTS) for j in range(n))
    assert counts == dict(want)


def test_log_based_metric_from_loki(server, hist_data):
    want = Counter(HIST_LEVELS[j % 3] for n in HIST_COUNTS for j in range(n))

    def per_severity() -> dict[str, float]:
        got = server.query_vector('sum by (severity) (lookout_log_records_total{service="hist"})')
        return {dict(k)["severity"]: v for k, v in got.items()}

    wait_equal(per_severity, {k: float(v) for k, v in want.items()}, METRIC_TIMEOUT_S)


# ---- fields ---------------------------------------------------------------------------------


def test_fields_lists_top_values_and_counts(server):
    t = now_ns() - 20 * S_NS
    streams = [
        ({"service_name": "fields-a", "level": "error", "suite": "fields"}, [
            (t, "f1", {"region": "eu"}), (t + 1, "f2", {"region": "eu"}), (t + 2, "f3", {"region": "eu"}),
        ]),
        ({"service_name": "fields-a", "level": "info", "suite": "fields"}, [(t + 3, "f4", {"region": "us"})]),
        ({"service_name": "fields-b", "level": "warn", "suite": "fields"}, [
            (t + 4, "f5", {"region": "eu"}), (t + 5, "f6", {"region": "eu"}),
        ]),
    ]
    r = push_loki(server, streams)
    assert r.status_code == 204, (r.status_code, r.text)
    start, end = int(t / S_NS) - 1, int(time.time()) + 1
    wait_found(server, "attr.suite:fields", 6, start, end)
    data = server.api_get(
        "/api/v1/logs/fields", {"query": "attr.suite:fields", "start": str(start), "end": str(end), "top": "5"}
    )
    fields = {f["name"]: f for f in data["fields"]}
    names = [f["name"] for f in data["fields"]]
    assert names == sorted(names), names

    def summary(name):
        f = fields[name]
        return f["records"], f["distinct_values"], [(v["value"], v["count"]) for v in f["top"]]

    assert summary("service") == (6, 2, [("fields-a", 4), ("fields-b", 2)])
    assert summary("severity") == (6, 3, [("error", 3), ("warn", 2), ("info", 1)])
    assert summary("attr.region") == (6, 2, [("eu", 5), ("us", 1)])
    assert summary("attr.suite") == (6, 1, [("fields", 6)])
    # no record of these has a trace id
    assert "trace_id" not in fields or fields["trace_id"]["records"] == 0
    # top limits the values listed, not the counts
    data = server.api_get(
        "/api/v1/logs/fields", {"query": "attr.suite:fields", "start": str(start), "end": str(end), "top": "1"}
    )
    fields = {f["name"]: f for f in data["fields"]}
    assert summary("severity") == (6, 3, [("error", 3)])


# ---- live tail ------------------------------------------------------------------------------


class Tail:
    """A `/api/v1/logs/tail` subscription, its server-sent events parsed as they arrive.

    Read on the test's own thread: a stream closed while another thread is blocked reading
    it waits for that read to return (the buffered reader's lock), up to the next keep-alive.
    A read that waits longer than TAIL_READ_TIMEOUT_S fails the test."""

    def __init__(self, server: Lookout, query: str, **params):
        self.resp = requests.get(
            f"{server.http}/api/v1/logs/tail",
            params={"query": query, **{k: str(v) for k, v in params.items()}},
            headers={"Accept": "text/event-stream"},
            stream=True,
            timeout=(5, TAIL_READ_TIMEOUT_S),
        )
        assert self.resp.status_code == 200, (self.resp.status_code, self.resp.text)
        assert self.resp.headers["Content-Type"].startswith("text/event-stream"), self.resp.headers
        self.events = self._parse()

    def _parse(self):
        """Yields (event, data) per dispatched event; comments (keep-alives) are skipped."""
        buf = b""
        event, data = "message", []
        for chunk in self.resp.iter_content(chunk_size=None):
            buf += chunk
            while b"\n" in buf:
                raw, buf = buf.split(b"\n", 1)
                line = raw.rstrip(b"\r").decode("utf-8")
                if line == "":
                    if data:
                        yield event, "\n".join(data)
                    event, data = "message", []
                elif not line.startswith(":"):
                    name, _, value = line.partition(":")
                    value = value[1:] if value.startswith(" ") else value
                    if name == "event":
                        event = value
                    elif name == "data":
                        data.append(value)
        raise AssertionError("the tail stream ended")

    def records_until(self, last_body: str) -> list[dict]:
        """Log records received until (and including) the one with body `last_body`."""
        import json

        out = []
        for event, data in self.events:
            assert event == "log", (event, data)
            record = json.loads(data)
            out.append(record)
            if record["body"] == last_body:
                return out
        raise AssertionError("unreachable")

    def close(self) -> None:
        self.resp.close()


def push_one(server: Lookout, labels: dict, body: str, t: int | None = None) -> None:
    r = push_loki(server, [(labels, [(t or now_ns(), body)])])
    assert r.status_code == 204, (r.status_code, r.text)


def test_tail_streams_matching_lines_pushed_after_connecting(server):
    # a matching line stored before connecting is not replayed without `start`
    push_one(server, {"service_name": "tail", "level": "error"}, "tail before connect")
    tail = Tail(server, "service:tail severity>=warn")
    try:
        push_one(server, {"service_name": "tail", "level": "info"}, "tail 1 info: no match")
        push_one(server, {"service_name": "tail", "level": "warn"}, "tail 2 warn: match")
        push_one(server, {"service_name": "other-tail", "level": "error"}, "tail 3 other service: no match")
        push_one(server, {"service_name": "tail", "level": "error"}, "tail 4 error: match")
        push_one(server, {"service_name": "tail", "level": "error"}, "tail end")
        records = tail.records_until("tail end")
        assert [r["body"] for r in records] == ["tail 2 warn: match", "tail 4 error: match", "tail end"]
        two = records[0]
        assert (two["service"], two["severity"], two["severity_number"]) == ("tail", "warn", 13)
        # over OTLP too, with the same record shape
        req = otlp_logs_request([({"service.name": "tail"}, [
            otlp_log_record("tail otlp: no match", now_ns(), 9),
            otlp_log_record("tail otlp: match", now_ns(), 21, "FATAL"),
        ])])
        assert post_otlp_logs(server, req.SerializeToString()).status_code == 200
        (otlp,) = tail.records_until("tail otlp: match")
        assert (otlp["severity"], otlp["severity_text"]) == ("fatal", "FATAL")
    finally:
        tail.close()


def test_tail_with_start_sends_the_backlog_first(server):
    t = now_ns() - 120 * S_NS
    backlog = [("tail-backlog", "warn", f"backlog {i}", t + i * S_NS) for i in range(3)]
    for service, level, body, ts in backlog:
        push_one(server, {"service_name": service, "level": level}, body, ts)
    push_one(server, {"service_name": "tail-backlog", "level": "info"}, "backlog no match", t + 5 * S_NS)
    query = "service:tail-backlog severity>=warn"
    wait_found(server, query, 3, t / S_NS - 1)
    tail = Tail(server, query, start=int(t / S_NS) - 60)
    try:
        push_one(server, {"service_name": "tail-backlog", "level": "error"}, "backlog live")
        records = tail.records_until("backlog live")
        # stored ones oldest first, then the live one
        assert [r["body"] for r in records] == ["backlog 0", "backlog 1", "backlog 2", "backlog live"]
        assert [r["time_unix_nano"] for r in records[:3]] == [str(ts) for *_, ts in backlog]
    finally:
        tail.close()
