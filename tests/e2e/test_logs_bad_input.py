"""Bad log input and bad log queries: invalid UTF-8 is stored with U+FFFD and counted, a record
over the body limit is rejected naming the limit while the rest of its request is stored,
malformed bodies are a 400 (gRPC INVALID_ARGUMENT) with a message, malformed queries and
parameters are a 400 in Prometheus's error shape, with the `position` of a query error; and
the process stays healthy and keeps ingesting through all of it.

One server for the module, with a small body limit so it is cheap to cross.
"""

from __future__ import annotations

import json
import os
import time

import grpc
import pytest
import requests
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2, logs_service_pb2_grpc

from helpers import (
    Lookout,
    loki_push_json,
    loki_push_protobuf,
    otlp_log_record,
    otlp_logs_request,
    post_otlp_logs,
    push_loki,
    report_logs_of,
    search_logs,
    self_metrics,
    snappy,
    stops_cleanly,
    wait_until,
)

MAX_BODY = 1024
LIMIT_NAME = "max_body_bytes"
CONFIG = {"limits": {"logs": {LIMIT_NAME: MAX_BODY}}}
S_NS = 1_000_000_000
PROTOBUF = "application/x-protobuf"


@pytest.fixture(scope="module")
def module_lookout(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("logs-bad")
    server = Lookout(workdir, CONFIG, name="logs-bad")
    server.start()
    with stops_cleanly(server):
        server.probes = []  # bodies of the probe lines pushed after each case
        server.refused = []  # tokens in requests refused whole: none of them may be stored
        yield server


@pytest.fixture
def lookout(module_lookout, request):
    report_logs_of(request, module_lookout)
    return module_lookout


def token() -> str:
    return "tok" + os.urandom(6).hex()


def since() -> int:
    return int(time.time()) - 120


def wait_records(lookout: Lookout, query: str, n: int, timeout: float = 10) -> list[dict]:
    return wait_until(
        lambda: (lambda r: r if len(r) == n else None)(search_logs(lookout, query, start=since(), limit=100)),
        timeout=timeout,
        what=f"{n} records for {query!r}",
    )


def assert_still_serving(lookout: Lookout) -> None:
    """Alive, healthy, and a good line pushed now is acknowledged (that it is searchable is
    checked for all of them at the end of the module)."""
    assert lookout.proc.poll() is None, f"lookout died\n{lookout.log_tail()}"
    assert requests.get(f"{lookout.http}/-/healthy", timeout=5).status_code == 200
    body = f"probe {token()}"
    r = push_loki(lookout, [({"service_name": "probe", "level": "info"}, [(time.time_ns(), body)])])
    assert r.status_code == 204, (r.status_code, r.text)
    lookout.probes.append(body)


def export_response(r: requests.Response) -> logs_service_pb2.ExportLogsServiceResponse:
    assert r.status_code == 200, (r.status_code, r.text)
    resp = logs_service_pb2.ExportLogsServiceResponse()
    resp.ParseFromString(r.content)
    return resp


def invalid_utf8_total(lookout: Lookout) -> dict[str, float]:
    return {
        dict(k).get("protocol", ""): v
        for k, v in self_metrics(lookout, "lookout_logs_invalid_utf8_total").items()
    }


def moved(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {k: after[k] - before.get(k, 0.0) for k in after if after[k] != before.get(k, 0.0)}


# ---- invalid UTF-8: replaced and counted ------------------------------------------------------


@pytest.mark.parametrize("fmt", ["json", "protobuf"])
def test_invalid_utf8_in_a_loki_line_is_replaced_and_counted(lookout, fmt):
    tok = token()
    before = invalid_utf8_total(lookout)
    line = f"bad bytes here {tok} end".encode().replace(b"here", b"h\xffr\xfe")
    t = time.time_ns()
    streams = [({"service_name": "utf8-loki", "level": "warn"}, [(t, line)])]
    if fmt == "json":
        # serde-style JSON text with raw invalid bytes inside a string, as a broken shipper sends it
        body = loki_push_json([({"service_name": "utf8-loki", "level": "warn"}, [(t, "PLACEHOLDER")])])
        body = body.encode().replace(b"PLACEHOLDER", line)
        r = push_loki(lookout, body=body)
    else:
        r = push_loki(lookout, fmt="protobuf", body=snappy(loki_push_protobuf(streams)))
    assert r.status_code == 204, (r.status_code, r.text)
    (record,) = wait_records(lookout, tok, 1)
    assert record["body"] == f"bad bytes h\ufffdr\ufffd {tok} end", record["body"]
    assert record["severity"] == "warn"
    counted = moved(before, invalid_utf8_total(lookout))
    assert counted and all(v >= 1 for v in counted.values()), (before, counted)
    assert any("loki" in k for k in counted), counted
    assert_still_serving(lookout)


def test_invalid_utf8_in_an_otlp_protobuf_body_is_replaced_and_counted(lookout):
    tok = token()
    before = invalid_utf8_total(lookout)
    req = otlp_logs_request([({"service.name": "utf8-otlp"}, [
        otlp_log_record(f"otlp XXXX {tok}", time.time_ns(), 13, attributes={"user": "YYYY"}),
    ])])
    # Same-length replacements keep every length prefix valid.
    body = req.SerializeToString().replace(b"XXXX", b"a\xc3(b").replace(b"YYYY", b"\xff\xfeok")
    resp = export_response(post_otlp_logs(lookout, body))
    assert resp.partial_success.rejected_log_records == 0, resp
    (record,) = wait_records(lookout, tok, 1)
    assert record["body"] == f"otlp a\ufffd(b {tok}", record["body"]
    assert record["attributes"]["user"] == "\ufffd\ufffdok", record["attributes"]
    counted = moved(before, invalid_utf8_total(lookout))
    assert counted and all(v >= 1 for v in counted.values()), (before, counted)
    assert not any("loki" in k for k in counted), counted
    assert_still_serving(lookout)


# ---- bodies over the limit ------------------------------------------------------------------


def limit_named(message: str) -> bool:
    return LIMIT_NAME in message and str(MAX_BODY) in message


def over_limit_records(tok: str, t: int) -> tuple[list, list[str]]:
    """Three records: small, one byte over the limit, exactly at the limit; the bodies that
    should be stored."""
    at_limit = f"at-limit {tok} "
    at_limit += "y" * (MAX_BODY - len(at_limit))
    big = f"too-big {tok} " + "x" * MAX_BODY
    bodies = [f"small {tok}", big, at_limit]
    return [(t + i, b) for i, b in enumerate(bodies)], [bodies[0], bodies[2]]


@pytest.mark.parametrize("transport", ["http", "grpc"])
def test_otlp_body_over_the_limit_is_a_partial_success(lookout, transport):
    tok = token()
    entries, stored = over_limit_records(tok, time.time_ns())
    req = otlp_logs_request([({"service.name": "big-otlp"}, [otlp_log_record(b, t, 9) for t, b in entries])])
    if transport == "http":
        resp = export_response(post_otlp_logs(lookout, req.SerializeToString()))
    else:
        with grpc.insecure_channel(lookout.otlp_grpc) as channel:
            resp = logs_service_pb2_grpc.LogsServiceStub(channel).Export(req, timeout=10)
    ps = resp.partial_success
    assert ps.rejected_log_records == 1, ps
    assert limit_named(ps.error_message), ps.error_message
    got = wait_records(lookout, tok, 2)
    assert sorted(r["body"] for r in got) == sorted(stored)
    assert_still_serving(lookout)


def test_otlp_json_body_over_the_limit_is_a_partial_success(lookout):
    tok = token()
    entries, stored = over_limit_records(tok, time.time_ns())
    body = json.dumps({"resourceLogs": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "big-json"}}]},
        "scopeLogs": [{"logRecords": [
            {"timeUnixNano": str(t), "body": {"stringValue": b}} for t, b in entries
        ]}],
    }]})
    r = post_otlp_logs(lookout, body, "application/json")
    assert r.status_code == 200, (r.status_code, r.text)
    ps = r.json()["partialSuccess"]
    assert int(ps["rejectedLogRecords"]) == 1 and limit_named(ps["errorMessage"]), ps
    assert sorted(x["body"] for x in wait_records(lookout, tok, 2)) == sorted(stored)
    assert_still_serving(lookout)


@pytest.mark.parametrize("fmt", ["json", "protobuf"])
def test_loki_line_over_the_limit_is_400_naming_it_and_the_rest_stored(lookout, fmt):
    tok = token()
    entries, stored = over_limit_records(tok, time.time_ns())
    r = push_loki(lookout, [({"service_name": f"big-loki-{fmt}"}, entries)], fmt=fmt)
    assert r.status_code == 400, (r.status_code, r.text)
    assert limit_named(r.text), r.text
    assert sorted(x["body"] for x in wait_records(lookout, tok, 2)) == sorted(stored)
    assert_still_serving(lookout)


def test_accepted_and_rejected_records_are_counted_in_self_metrics(lookout):
    received = self_metrics(lookout, "lookout_logs_received_records_total")
    rejected = self_metrics(lookout, "lookout_logs_rejected_records_total")
    tok = token()
    entries, stored = over_limit_records(tok, time.time_ns())
    r = push_loki(lookout, [({"service_name": "big-counted"}, entries)])
    assert r.status_code == 400, (r.status_code, r.text)
    received_moved = moved(received, self_metrics(lookout, "lookout_logs_received_records_total"))
    rejected_moved = moved(rejected, self_metrics(lookout, "lookout_logs_rejected_records_total"))
    (loki_received,) = [v for k, v in received_moved.items() if "loki" in dict(k).get("protocol", "")]
    assert loki_received == len(stored), received_moved
    assert list(rejected_moved.values()) == [1.0], rejected_moved
    (labels,) = rejected_moved
    assert "loki" in dict(labels)["protocol"] and dict(labels).get("reason"), labels
    assert_still_serving(lookout)


# ---- malformed bodies ---------------------------------------------------------------------------


def good_loki(tok: str) -> list:
    return [({"service_name": "malformed"}, [(time.time_ns(), f"good {tok}")])]


@pytest.mark.parametrize(
    "case",
    ["json-garbage", "json-truncated", "json-not-streams", "json-bad-timestamp", "json-bad-labels",
     "protobuf-not-snappy", "protobuf-garbage", "gzip-header-plain-body"],
)
def test_malformed_loki_push_is_400(lookout, case):
    tok = token()
    good = loki_push_json(good_loki(tok))
    kwargs, words = {
        "json-garbage": (dict(body="{not json"), "JSON"),
        "json-truncated": (dict(body=good[: len(good) // 2]), "JSON"),
        "json-not-streams": (dict(body=json.dumps({"streams": "nope"})), "JSON"),
        "json-bad-timestamp": (dict(body=json.dumps({"streams": [{"stream": {"service_name": "malformed"},
                                                            "values": [["yesterday", f"good {tok}"]]}]})),
                               "timestamp"),
        "json-bad-labels": (
            dict(body=json.dumps({"streams": [{"stream": {"a": 1}, "values": [["1", f"good {tok}"]]}]})), "JSON",
        ),
        "protobuf-not-snappy": (dict(fmt="protobuf", body=loki_push_protobuf(good_loki(tok))), "snappy"),
        "protobuf-garbage": (dict(fmt="protobuf", body=snappy(b"\xff\xff\xff\xff\x0f")), "PushRequest"),
        "gzip-header-plain-body": (dict(body=good, headers={"Content-Encoding": "gzip"}), "gzip"),
    }[case]
    r = push_loki(lookout, **kwargs)
    assert r.status_code == 400, (r.status_code, r.text)
    assert words.lower() in r.text.lower(), r.text
    lookout.refused.append(tok)
    assert_still_serving(lookout)


@pytest.mark.parametrize(
    "content_type, body, words",
    [
        (PROTOBUF, b"\xff\xff\xff\xff", "ExportLogsServiceRequest"),
        ("application/json", b"{not json", "JSON"),
        ("application/json", b'{"resourceLogs": [{"scopeLogs": [{"logRecords": [{"traceId": "xyz"}]}]}]}', "trace"),
    ],
    ids=["protobuf-garbage", "json-garbage", "json-bad-trace-id"],
)
def test_malformed_otlp_logs_are_400(lookout, content_type, body, words):
    r = post_otlp_logs(lookout, body, content_type)
    assert r.status_code == 400, (r.status_code, r.text)
    assert words.lower() in r.text.lower(), r.text
    assert_still_serving(lookout)


def test_otlp_logs_truncated_protobuf_is_400(lookout):
    tok = token()
    req = otlp_logs_request([({"service.name": "malformed"}, [otlp_log_record(f"good {tok}", time.time_ns(), 9)])])
    body = req.SerializeToString()
    r = post_otlp_logs(lookout, body[: len(body) // 2])
    assert r.status_code == 400, (r.status_code, r.text)
    assert "ExportLogsServiceRequest" in r.text, r.text
    lookout.refused.append(tok)
    assert_still_serving(lookout)


def test_grpc_garbage_is_invalid_argument(lookout):
    with grpc.insecure_channel(lookout.otlp_grpc) as channel:
        raw = channel.unary_unary(
            "/opentelemetry.proto.collector.logs.v1.LogsService/Export",
            request_serializer=lambda b: b,
            response_deserializer=lambda b: b,
        )
        with pytest.raises(grpc.RpcError) as err:
            raw(b"\xff\xff\xff\xff", timeout=10)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, err.value
    assert err.value.details(), err.value
    assert_still_serving(lookout)


# ---- malformed queries and parameters -----------------------------------------------------------

ENDPOINTS = ["query", "histogram", "fields", "tail"]

# (query, positions a reasonable parser may point at)
BAD_QUERIES = [
    ("(error", {0, 6}),             # unbalanced parenthesis: where it opens or where input ends
    ("error)", {5}),                # a closing parenthesis with none open
    ("error AND", {6, 9}),          # dangling AND: the operator or the end
    ("OR error", {0}),              # nothing before OR
    ("nosuchfield:x", {0}),         # unknown field
    ("severity>=loud", {0, 8, 10}), # not a severity
    ('"unterminated phrase', {0, 20}),
    ("service:", {0, 7, 8}),        # field without a value
]


def get(lookout: Lookout, endpoint: str, params: dict) -> requests.Response:
    return requests.get(f"{lookout.http}/api/v1/logs/{endpoint}", params=params, timeout=10)


def assert_bad_data(r: requests.Response, *words: str) -> dict:
    assert r.status_code == 400, (r.status_code, r.text[:500])
    assert r.headers["Content-Type"].startswith("application/json"), r.headers
    body = r.json()
    assert body["status"] == "error" and body["errorType"] == "bad_data", body
    for w in words:
        assert w in body["error"], (w, body)
    return body


@pytest.mark.parametrize("endpoint", ENDPOINTS)
@pytest.mark.parametrize("query, positions", BAD_QUERIES, ids=[q for q, _ in BAD_QUERIES])
def test_malformed_query_is_400_with_its_position(lookout, endpoint, query, positions):
    body = assert_bad_data(get(lookout, endpoint, {"query": query}), "query")
    position = body["position"]
    assert isinstance(position, int) and position in positions, (query, body)
    assert f"at position {position}" in body["error"], body


BAD_PARAMS = [
    ("query", {"start": "yesterday"}, "start"),
    ("query", {"end": "not-a-time"}, "end"),
    ("query", {"start": "200", "end": "100"}, "end"),
    ("query", {"limit": "many"}, "limit"),
    ("query", {"limit": "-1"}, "limit"),
    ("query", {"direction": "sideways"}, "direction"),
    ("histogram", {"step": "0"}, "step"),
    ("histogram", {"step": "-5s"}, "step"),
    ("histogram", {"step": "soon"}, "step"),
    ("histogram", {"by": "colour"}, "by"),
    ("histogram", {"start": "2020-13-45T00:00:00Z"}, "start"),
    ("fields", {"top": "lots"}, "top"),
    ("fields", {"start": "200", "end": "100"}, "end"),
    ("tail", {"start": "yesterday"}, "start"),
]


@pytest.mark.parametrize(
    "endpoint, params, name", BAD_PARAMS, ids=[f"{e}-{n}-{list(p.values())[-1]}" for e, p, n in BAD_PARAMS]
)
def test_bad_parameters_are_400_naming_them(lookout, endpoint, params, name):
    assert_bad_data(get(lookout, endpoint, {"query": "", **params}), f'"{name}"')


def test_every_probe_is_searchable_and_nothing_refused_is(lookout):
    """Runs last: every good line pushed between the bad ones was stored; nothing of a
    request refused whole was (records are committed in the order they were acknowledged,
    so once the last probe is searchable, anything stored before it would be too)."""
    assert lookout.probes, "no probes were pushed"
    wait_until(
        lambda: {r["body"] for r in search_logs(lookout, "service:probe", start=since() - 600, limit=1000)}
        >= set(lookout.probes),
        timeout=10,
        what=f"{len(lookout.probes)} probe lines",
    )
    for tok in lookout.refused:
        assert search_logs(lookout, tok, start=since() - 600) == [], tok
    assert requests.get(f"{lookout.http}/-/healthy", timeout=5).status_code == 200
