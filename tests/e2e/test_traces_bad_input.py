"""Bad trace input over OTLP/HTTP (protobuf and JSON) and OTLP/gRPC: every case gets the
answer `collector/src/otlp/traces/convert.rs` documents (a partial success naming what was
rejected, a documented normalisation, or a 400 naming the problem), what was accepted reads
back as documented, and the process stays healthy and keeps ingesting afterwards.

One server for the module, with small limits so they are cheap to cross.
"""

from __future__ import annotations

import base64
import itertools
import json
import os
import time

import grpc
import pytest
import requests
from google.rpc import status_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

from helpers import Lookout, otlp_span, otlp_trace_request, post_otlp_traces, report_logs_of, stops_cleanly

MAX_SPANS = 50
MAX_VALUE = 256
PROTOBUF = "application/x-protobuf"
ORIGINAL_END_ATTR = "lookout.original_end_time_unix_nano"
_ids = itertools.count(1)


def new_trace_id() -> bytes:
    return os.urandom(8) + next(_ids).to_bytes(8, "big")


def new_span_id() -> bytes:
    return os.urandom(4) + next(_ids).to_bytes(4, "big")


def now_ns() -> int:
    return time.time_ns() - 5_000_000_000


# Both the collector (`collector/src/telemetry.rs`, a counter vec by protocol and reason) and
# the trace store (`store/src/traces/metrics.rs`, a plain counter) register
# `lookout_traces_spans_rejected_total` in the process-wide registry, each lazily and
# panicking on failure. Whichever comes second panics inside the request handler: the
# connection closes without an answer and nothing of the request is stored. Store first (a
# clean request first): every later request with a rejected span is dropped. Collector first
# (the first request has a rejected span): every later trace request is dropped, good ones too.


@pytest.fixture(scope="module")
def module_lookout(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("traces-bad")
    server = Lookout(
        workdir,
        {"limits": {"max_spans_per_request": MAX_SPANS, "max_attribute_value_bytes": MAX_VALUE}},
        name="traces-bad",
    )
    server.start()
    with stops_cleanly(server):
        # A clean request first, so each test below sees only what its own input does.
        assert_still_serving(server)
        yield server


@pytest.fixture
def lookout(module_lookout, request):
    report_logs_of(request, module_lookout)
    return module_lookout


def export_response(r: requests.Response) -> trace_service_pb2.ExportTraceServiceResponse:
    assert r.status_code == 200, (r.status_code, r.text)
    resp = trace_service_pb2.ExportTraceServiceResponse()
    resp.ParseFromString(r.content)
    return resp


def json_partial_success(r: requests.Response) -> tuple[int, str]:
    assert r.status_code == 200, (r.status_code, r.text)
    ps = r.json().get("partialSuccess") or {}
    return int(ps.get("rejectedSpans", 0)), ps.get("errorMessage", "")


def error_message(r: requests.Response) -> str:
    """The message of an OTLP error answer: a google.rpc.Status, protobuf or JSON."""
    ctype = r.headers.get("Content-Type", "")
    if "protobuf" in ctype:
        status = status_pb2.Status()
        status.ParseFromString(r.content)
        return status.message
    assert "json" in ctype, (ctype, r.text)
    return r.json()["message"]


def grpc_export(lookout: Lookout, req, timeout: float = 10):
    with grpc.insecure_channel(lookout.otlp_grpc) as channel:
        return trace_service_pb2_grpc.TraceServiceStub(channel).Export(req, timeout=timeout)


def get_trace(lookout: Lookout, trace_id: bytes) -> dict | None:
    r = requests.get(f"{lookout.http}/api/v1/traces/{trace_id.hex()}", timeout=10)
    if r.status_code == 404:
        return None
    assert r.status_code == 200, (r.status_code, r.text)
    return r.json()["data"]


def assert_still_serving(lookout: Lookout) -> None:
    """Alive, healthy, and a good span sent now is stored and readable at once."""
    assert lookout.proc.poll() is None, f"lookout died\n{lookout.log_tail()}"
    assert requests.get(f"{lookout.http}/-/healthy", timeout=5).status_code == 200
    tid, t = new_trace_id(), now_ns()
    req = otlp_trace_request([({"service.name": "probe"}, [otlp_span("probe", tid, new_span_id(), t, t + 1000)])])
    resp = export_response(post_otlp_traces(lookout, req.SerializeToString()))
    assert resp.partial_success.rejected_spans == 0, resp
    assert get_trace(lookout, tid)["spanCount"] == 1


# ---- invalid ids: rejected span by span --------------------------------------------------

BAD_ID_SPANS = [
    # (name, trace id, span id, parent span id)
    ("short trace id", b"\x01" * 8, b"\x02" * 8, b""),
    ("zero trace id", b"\x00" * 16, b"\x02" * 8, b""),
    ("short span id", None, b"\x03" * 4, b""),
    ("zero span id", None, b"\x00" * 8, b""),
    ("long parent id", None, b"\x05" * 8, b"\x06" * 5),
]


def bad_ids_request(good_trace: bytes, good_span: bytes, zero_parent_span: bytes):
    t = now_ns()
    spans = [otlp_span("good", good_trace, good_span, t, t + 1000)]
    # eight zero bytes as the parent: a root span (what converters write for "no parent")
    spans.append(otlp_span("zero parent", good_trace, zero_parent_span, t, t + 1000, parent_span_id=b"\x00" * 8))
    for name, trace_id, span_id, parent in BAD_ID_SPANS:
        spans.append(otlp_span(name, trace_id or new_trace_id(), span_id, t, t + 1000, parent_span_id=parent))
    return otlp_trace_request([({"service.name": "bad-ids"}, spans)])


def check_bad_ids_outcome(lookout, rejected: int, message: str, good_trace: bytes, good_span, zero_parent_span):
    assert rejected == len(BAD_ID_SPANS), message
    assert message.startswith(f"{len(BAD_ID_SPANS)} spans rejected; first: "), message
    assert 'span "short trace id" of service "bad-ids"' in message, message
    stored = get_trace(lookout, good_trace)
    assert stored is not None
    got = {s["spanId"]: s["parentSpanId"] for s in stored["spans"]}
    assert got == {good_span.hex(): None, zero_parent_span.hex(): None}


def test_invalid_ids_over_http_protobuf(lookout):
    good_trace, good_span, zp = new_trace_id(), new_span_id(), new_span_id()
    resp = export_response(
        post_otlp_traces(lookout, bad_ids_request(good_trace, good_span, zp).SerializeToString())
    )
    ps = resp.partial_success
    check_bad_ids_outcome(lookout, ps.rejected_spans, ps.error_message, good_trace, good_span, zp)
    assert_still_serving(lookout)


def test_invalid_ids_over_grpc(lookout):
    good_trace, good_span, zp = new_trace_id(), new_span_id(), new_span_id()
    resp = grpc_export(lookout, bad_ids_request(good_trace, good_span, zp))
    ps = resp.partial_success
    check_bad_ids_outcome(lookout, ps.rejected_spans, ps.error_message, good_trace, good_span, zp)
    assert_still_serving(lookout)


def json_span(name: str, trace_id: str, span_id: str, start: int, end: int, **extra) -> dict:
    """A span as OTLP/JSON writes it: hex ids, int64 times as strings."""
    return {
        "traceId": trace_id,
        "spanId": span_id,
        "name": name,
        "kind": extra.pop("kind", "SPAN_KIND_SERVER"),
        "startTimeUnixNano": str(start),
        "endTimeUnixNano": str(end),
        **extra,
    }


def json_request(service: str | None, spans: list[dict]) -> str:
    resource = {"attributes": [{"key": "service.name", "value": {"stringValue": service}}]} if service else {}
    return json.dumps({"resourceSpans": [{"resource": resource, "scopeSpans": [{"spans": spans}]}]})


def test_invalid_ids_over_http_json(lookout):
    good_trace, good_span = new_trace_id().hex(), new_span_id().hex()
    t = now_ns()
    body = json_request(
        "bad-ids-json",
        [
            json_span("good", good_trace, good_span, t, t + 1000),
            json_span("short trace id", "0102030405060708", new_span_id().hex(), t, t + 1000),
            json_span("zero trace id", "0" * 32, new_span_id().hex(), t, t + 1000),
            json_span("short span id", new_trace_id().hex(), "01020304", t, t + 1000),
            json_span("zero span id", new_trace_id().hex(), "0" * 16, t, t + 1000),
            json_span("long parent id", new_trace_id().hex(), new_span_id().hex(), t, t + 1000,
                      parentSpanId="0102030405"),
        ],
    )
    r = post_otlp_traces(lookout, body, "application/json")
    rejected, message = json_partial_success(r)
    assert rejected == 5, r.text
    assert 'first: span "short trace id" of service "bad-ids-json": ' in message, message
    stored = get_trace(lookout, bytes.fromhex(good_trace))
    assert [s["spanId"] for s in stored["spans"]] == [good_span]
    assert_still_serving(lookout)


def test_missing_start_time_is_rejected(lookout):
    tid = new_trace_id()
    req = otlp_trace_request([({"service.name": "no-start"}, [otlp_span("unstarted", tid, new_span_id(), 0, 5)])])
    ps = export_response(post_otlp_traces(lookout, req.SerializeToString())).partial_success
    assert ps.rejected_spans == 1 and "start_time_unix_nano" in ps.error_message, ps
    assert get_trace(lookout, tid) is None
    assert_still_serving(lookout)


def test_a_rejected_span_in_the_first_request_does_not_break_ingest(lookout_factory):
    """The first trace request a fresh server sees has one bad span among good ones."""
    server = lookout_factory({"limits": {"max_spans_per_request": MAX_SPANS}})
    good_trace, good_span, zp = new_trace_id(), new_span_id(), new_span_id()
    try:
        r = post_otlp_traces(server, bad_ids_request(good_trace, good_span, zp).SerializeToString())
    except requests.ConnectionError as e:
        pytest.fail(f"no answer to a request with rejected spans: {e}")
    ps = export_response(r).partial_success
    check_bad_ids_outcome(server, ps.rejected_spans, ps.error_message, good_trace, good_span, zp)
    assert_still_serving(server)


# ---- documented normalisations -------------------------------------------------------------


def test_missing_service_name_becomes_unknown_service(lookout):
    tid, t = new_trace_id(), now_ns()
    no_resource, empty_name, no_name = new_span_id(), new_span_id(), new_span_id()
    req = otlp_trace_request(
        [
            (None, [otlp_span("from nowhere", tid, no_resource, t, t + 1000)]),
            ({"service.name": ""}, [otlp_span("empty name", tid, empty_name, t, t + 1000, parent_span_id=no_resource)]),
            ({"host.name": "h1"}, [otlp_span("no name", tid, no_name, t, t + 1000, parent_span_id=no_resource)]),
        ]
    )
    ps = export_response(post_otlp_traces(lookout, req.SerializeToString())).partial_success
    assert ps.rejected_spans == 0 and ps.error_message == "", ps
    stored = get_trace(lookout, tid)
    assert {s["name"]: s["service"] for s in stored["spans"]} == {
        "from nowhere": "unknown_service", "empty name": "unknown_service", "no name": "unknown_service",
    }
    # the resource attributes are kept as sent
    (no_name_span,) = [s for s in stored["spans"] if s["name"] == "no name"]
    assert no_name_span["resourceAttributes"] == {"host.name": "h1"}
    assert stored["services"] == ["unknown_service"]
    assert "unknown_service" in requests.get(f"{lookout.http}/api/services", timeout=10).json()["data"]
    calls = lookout.query_vector('sum(traces_spanmetrics_calls_total{service="unknown_service"})')
    assert list(calls.values()) == [3.0]
    assert_still_serving(lookout)


def test_end_before_start_is_normalised_to_a_zero_length_span(lookout):
    tid, t = new_trace_id(), now_ns()
    backwards, unset_end = new_span_id(), new_span_id()
    req = otlp_trace_request(
        [({"service.name": "time-travel"}, [
            otlp_span("backwards", tid, backwards, t, t - 5_000_000),
            otlp_span("no end", tid, unset_end, t + 10, 0, parent_span_id=backwards),
        ])]
    )
    ps = export_response(post_otlp_traces(lookout, req.SerializeToString())).partial_success
    assert ps.rejected_spans == 0 and ps.error_message == "", ps
    spans = {s["spanId"]: s for s in get_trace(lookout, tid)["spans"]}
    b, u = spans[backwards.hex()], spans[unset_end.hex()]
    assert (b["startTimeUnixNano"], b["endTimeUnixNano"], b["durationNanos"]) == (str(t), str(t), 0)
    assert b["attributes"] == {ORIGINAL_END_ATTR: t - 5_000_000}
    assert (u["startTimeUnixNano"], u["endTimeUnixNano"], u["durationNanos"]) == (str(t + 10), str(t + 10), 0)
    assert u["attributes"] == {ORIGINAL_END_ATTR: 0}
    # derived latency observes zero, not a negative or huge duration
    count = lookout.query_vector('sum(traces_spanmetrics_latency_bucket{service="time-travel",le="0.002"})')
    assert list(count.values()) == [2.0]
    assert_still_serving(lookout)


def test_oversized_attribute_values_are_truncated(lookout):
    tid, sid, t = new_trace_id(), new_span_id(), now_ns()
    attrs = {
        "sql": "é" * 200,                # 400 bytes: cut to 128 characters
        "edge": "a" * 255 + "é",         # 257 bytes: the é does not fit, cut before it
        "exact": "y" * MAX_VALUE,        # at the limit: kept
        "blob": bytes(range(256)) + b"\xff" * 44,  # 300 bytes: cut to 256
        "list": ["x" * 300, "short"],    # inside arrays too
        "count": 7,
    }
    req = otlp_trace_request(
        [({"service.name": "big", "host.description": "z" * 1000}, [
            otlp_span("big", tid, sid, t, t + 1000, attributes=attrs,
                      events=[("log", t + 1, {"message": "m" * 300})]),
        ])]
    )
    ps = export_response(post_otlp_traces(lookout, req.SerializeToString())).partial_success
    # a warning, nothing rejected
    assert ps.rejected_spans == 0, ps
    assert ps.error_message == (
        f"6 attribute value(s) longer than max_attribute_value_bytes={MAX_VALUE} truncated"
    ), ps.error_message
    (span,) = get_trace(lookout, tid)["spans"]
    got = span["attributes"]
    assert got["sql"] == "é" * 128
    assert got["edge"] == "a" * 255
    assert got["exact"] == "y" * MAX_VALUE
    assert got["blob"] == bytes(range(256)).hex()  # bytes read back as hex
    assert got["list"] == ["x" * MAX_VALUE, "short"]
    assert got["count"] == 7
    assert span["resourceAttributes"]["host.description"] == "z" * MAX_VALUE
    assert span["events"][0]["attributes"]["message"] == "m" * MAX_VALUE
    # Jaeger sees the cut bytes as base64 `binary`
    jaeger = requests.get(f"{lookout.http}/api/traces/{tid.hex()}", timeout=10).json()
    tags = {kv["key"]: kv for kv in jaeger["data"][0]["spans"][0]["tags"]}
    assert tags["blob"]["type"] == "binary"
    assert base64.b64decode(tags["blob"]["value"]) == bytes(range(256))
    assert_still_serving(lookout)


# ---- whole requests refused ------------------------------------------------------------------


def many_spans(n: int):
    tid, t = new_trace_id(), now_ns()
    spans = [otlp_span(f"s{i}", tid, new_span_id(), t, t + 1000) for i in range(n)]
    return tid, otlp_trace_request([({"service.name": "many"}, spans)])


def test_too_many_spans_is_400_naming_the_limit(lookout):
    tid, req = many_spans(MAX_SPANS + 1)
    for content_type, body in [
        (PROTOBUF, req.SerializeToString()),
    ]:
        r = post_otlp_traces(lookout, body, content_type)
        assert r.status_code == 400, (r.status_code, r.text)
        msg = error_message(r)
        assert f"max_spans_per_request={MAX_SPANS}" in msg and f"{MAX_SPANS + 1} spans" in msg, msg
    with pytest.raises(grpc.RpcError) as err:
        grpc_export(lookout, req)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert f"max_spans_per_request={MAX_SPANS}" in err.value.details()
    # refused means nothing of it was stored
    assert get_trace(lookout, tid) is None
    # at the limit exactly: accepted
    tid, req = many_spans(MAX_SPANS)
    assert export_response(post_otlp_traces(lookout, req.SerializeToString())).partial_success.rejected_spans == 0
    assert get_trace(lookout, tid)["spanCount"] == MAX_SPANS
    assert_still_serving(lookout)


def good_request():
    tid, t = new_trace_id(), now_ns()
    return tid, otlp_trace_request([({"service.name": "malformed"}, [otlp_span("ok", tid, new_span_id(), t, t + 1000)])])


@pytest.mark.parametrize(
    "case",
    ["protobuf-garbage", "protobuf-truncated", "json-garbage", "json-truncated", "json-base64-ids",
     "json-unknown-kind", "gzip-header-plain-body"],
)
def test_malformed_bodies_are_400_with_a_message(lookout, case):
    tid, req = good_request()
    proto = req.SerializeToString()
    t = now_ns()
    good_json = json_request("malformed", [json_span("ok", tid.hex(), new_span_id().hex(), t, t + 1000)])
    content_type, gzip, body, words = {
        "protobuf-garbage": (PROTOBUF, False, b"\xff\xff\xff\xff", "ExportTraceServiceRequest"),
        "protobuf-truncated": (PROTOBUF, False, proto[: len(proto) // 2], "ExportTraceServiceRequest"),
        "json-garbage": ("application/json", False, "{not json", "JSON"),
        "json-truncated": ("application/json", False, good_json[: len(good_json) // 2], "JSON"),
        "json-base64-ids": (
            "application/json", False,
            good_json.replace(tid.hex(), base64.b64encode(tid).decode()), "hex",
        ),
        "json-unknown-kind": (
            "application/json", False, good_json.replace("SPAN_KIND_SERVER", "SPAN_KIND_WEIRD"), "SPAN_KIND_WEIRD",
        ),
        "gzip-header-plain-body": (PROTOBUF, True, proto, "gzip"),
    }[case]
    r = post_otlp_traces(lookout, body, content_type, gzip=gzip)
    assert r.status_code == 400, (r.status_code, r.text)
    msg = error_message(r)
    assert words.lower() in msg.lower(), msg
    assert get_trace(lookout, tid) is None
    assert_still_serving(lookout)


def test_wrong_content_type_is_415(lookout):
    tid, req = good_request()
    r = post_otlp_traces(lookout, req.SerializeToString(), "text/plain")
    assert r.status_code == 415, (r.status_code, r.text)
    assert get_trace(lookout, tid) is None
    assert_still_serving(lookout)


def test_grpc_garbage_is_invalid_argument(lookout):
    with grpc.insecure_channel(lookout.otlp_grpc) as channel:
        raw = channel.unary_unary(
            "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
            request_serializer=lambda b: b,
            response_deserializer=lambda b: b,
        )
        with pytest.raises(grpc.RpcError) as err:
            raw(b"\xff\xff\xff\xff", timeout=10)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, err.value
    assert "ExportTraceServiceRequest" in err.value.details()
    assert_still_serving(lookout)
