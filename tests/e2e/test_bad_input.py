"""Bad input gets the right 4xx and a message naming the problem, and the server keeps
serving; bearer-token auth for ingest and query endpoints."""

from __future__ import annotations

import itertools
import json

import grpc
import pytest
import requests
from google.rpc import status_pb2
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2, metrics_service_pb2_grpc
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.metrics.v1.metrics_pb2 import (
    Gauge,
    Metric,
    NumberDataPoint,
    ResourceMetrics,
    ScopeMetrics,
)
from opentelemetry.proto.resource.v1.resource_pb2 import Resource

from helpers import REMOTE_WRITE_HEADERS, encode_write_request, now_ms, remote_write, snappy

PROTOBUF = {"Content-Type": "application/x-protobuf"}
_probe_ids = itertools.count()


def gauge_request(points: list[tuple[str, float, dict]], service: str = "bad-input") -> bytes:
    """An OTLP export request with one gauge data point per (name, value, attributes)."""
    t_ns = now_ms() * 1_000_000
    metrics = []
    for name, value, attrs in points:
        dp = NumberDataPoint(
            time_unix_nano=t_ns,
            as_double=value,
            attributes=[KeyValue(key=k, value=AnyValue(string_value=v)) for k, v in attrs.items()],
        )
        metrics.append(Metric(name=name, gauge=Gauge(data_points=[dp])))
    req = metrics_service_pb2.ExportMetricsServiceRequest(
        resource_metrics=[
            ResourceMetrics(
                resource=Resource(
                    attributes=[KeyValue(key="service.name", value=AnyValue(string_value=service))]
                ),
                scope_metrics=[ScopeMetrics(metrics=metrics)],
            )
        ]
    )
    return req.SerializeToString()


def error_message(r: requests.Response) -> str:
    """The message of an error answer: OTLP's google.rpc.Status (protobuf or JSON), or text."""
    ctype = r.headers.get("Content-Type", "")
    if "protobuf" in ctype:
        status = status_pb2.Status()
        status.ParseFromString(r.content)
        return status.message
    if "json" in ctype:
        body = r.json()
        return str(body.get("message") or body.get("error") or body)
    return r.text


def assert_still_serving(lookout, token: str | None = None) -> None:
    """The process is up, healthy, and a good write lands and reads back."""
    assert lookout.proc.poll() is None, f"lookout died\n{lookout.log_tail()}"
    assert requests.get(f"{lookout.http}/-/healthy", timeout=5).status_code == 200
    name = f"probe_{next(_probe_ids)}"
    t = now_ms()
    r = remote_write(lookout.remote_write_url, [({"__name__": name, "job": "probe"}, [(t, 1.0)])], token=token)
    assert 200 <= r.status_code < 300, (r.status_code, r.text)
    assert lookout.query_vector(name, t / 1000) == {
        frozenset({"__name__": name, "job": "probe"}.items()): 1.0
    }


def post_otlp(lookout, body: bytes, headers=PROTOBUF) -> requests.Response:
    return requests.post(f"{lookout.otlp_http}/v1/metrics", data=body, headers=headers, timeout=10)


def post_rw(lookout, body: bytes, headers=REMOTE_WRITE_HEADERS) -> requests.Response:
    return requests.post(lookout.remote_write_url, data=body, headers=headers, timeout=10)


def test_otlp_truncated_protobuf(lookout):
    full = gauge_request([("ok_gauge", 1.0, {"a": "b" * 40})])
    r = post_otlp(lookout, full[: len(full) // 2])
    assert r.status_code == 400, (r.status_code, r.text)
    assert error_message(r).strip(), "a 400 must say what is wrong"
    assert_still_serving(lookout)


def test_otlp_wrong_content_type(lookout):
    r = post_otlp(lookout, gauge_request([("ok_gauge", 1.0, {})]), {"Content-Type": "text/plain"})
    assert r.status_code == 415, (r.status_code, r.text)
    assert_still_serving(lookout)


def test_otlp_invalid_utf8_attribute(lookout):
    body = gauge_request([("utf8_gauge", 1.0, {"k": "ZQZQ"})])
    assert body.count(b"ZQZQ") == 1
    r = post_otlp(lookout, body.replace(b"ZQZQ", b"\xff\xfe\xfd\xfc"))
    assert r.status_code == 400, (r.status_code, r.text)
    assert error_message(r).strip()
    assert lookout.query_vector("utf8_gauge") == {}
    assert_still_serving(lookout)


def test_remote_write_truncated_protobuf(lookout):
    proto = encode_write_request([({"__name__": "trunc", "job": "x" * 50}, [(now_ms(), 1.0)])])
    r = post_rw(lookout, snappy(proto[: len(proto) // 2]))
    assert r.status_code == 400, (r.status_code, r.text)
    assert r.text.strip()
    assert lookout.query_vector("trunc") == {}
    assert_still_serving(lookout)


def test_remote_write_bad_snappy(lookout):
    r = post_rw(lookout, b"\xff\xff\xff\xff\xff this is not snappy")
    assert r.status_code == 400, (r.status_code, r.text)
    assert "snappy" in r.text.lower(), r.text
    assert_still_serving(lookout)


def test_remote_write_wrong_content_type(lookout):
    body = snappy(encode_write_request([({"__name__": "ctype"}, [(now_ms(), 1.0)])]))
    headers = dict(REMOTE_WRITE_HEADERS, **{"Content-Type": "application/json"})
    r = post_rw(lookout, body, headers)
    assert r.status_code == 415, (r.status_code, r.text)
    assert_still_serving(lookout)


def test_remote_write_invalid_utf8_label(lookout):
    t = now_ms()
    r = remote_write(
        lookout.remote_write_url,
        [({"__name__": "utf8_rw", "job": b"\xff\xfebad"}, [(t, 1.0)])],
    )
    assert r.status_code == 400, (r.status_code, r.text)
    assert r.text.strip()
    assert lookout.query_vector("utf8_rw", t / 1000) == {}
    assert_still_serving(lookout)


LIMITS = {"limits": {"max_labels_per_series": 5, "max_request_body_bytes": 65536}}
TOO_MANY = {f"attr{i}": "v" for i in range(8)}


def names_limit(message: str) -> bool:
    return "max_labels_per_series" in message or "too_many_labels" in message


def test_otlp_label_limit_partial_success(lookout_factory):
    lookout = lookout_factory(LIMITS)
    body = gauge_request([("limit_ok", 1.0, {"a": "1"}), ("limit_bad", 2.0, TOO_MANY)])
    r = post_otlp(lookout, body)
    assert r.status_code == 200, (r.status_code, r.text)
    resp = metrics_service_pb2.ExportMetricsServiceResponse()
    resp.ParseFromString(r.content)
    assert resp.partial_success.rejected_data_points == 1, resp
    assert names_limit(resp.partial_success.error_message), resp.partial_success.error_message

    ok = lookout.query_vector("limit_ok")
    assert list(ok.values()) == [1.0], ok
    assert lookout.query_vector("limit_bad") == {}

    # The same over gRPC.
    with grpc.insecure_channel(lookout.otlp_grpc) as channel:
        stub = metrics_service_pb2_grpc.MetricsServiceStub(channel)
        req = metrics_service_pb2.ExportMetricsServiceRequest()
        req.ParseFromString(gauge_request([("limit_ok2", 3.0, {}), ("limit_bad2", 4.0, TOO_MANY)]))
        resp = stub.Export(req, timeout=10)
    assert resp.partial_success.rejected_data_points == 1, resp
    assert names_limit(resp.partial_success.error_message), resp.partial_success.error_message
    assert list(lookout.query_vector("limit_ok2").values()) == [3.0]
    assert_still_serving(lookout)


def test_remote_write_label_limit(lookout_factory):
    lookout = lookout_factory(LIMITS)
    lbls = {"__name__": "rw_limit", **{f"l{i}": "v" for i in range(6)}}
    r = remote_write(lookout.remote_write_url, [(lbls, [(now_ms(), 1.0)])])
    assert r.status_code == 400, (r.status_code, r.text)
    assert names_limit(r.text), r.text
    assert lookout.query_vector("rw_limit") == {}
    assert_still_serving(lookout)


def test_oversize_body(lookout_factory):
    lookout = lookout_factory(LIMITS)
    r = post_otlp(lookout, b"\x00" * 100_000)
    assert r.status_code == 413, (r.status_code, r.text)
    # remote-write: small on the wire, over the limit once decompressed.
    series = [({"__name__": "big", "i": str(i), "pad": "x" * 80}, [(now_ms(), 1.0)]) for i in range(1000)]
    proto = encode_write_request(series)
    assert len(proto) > 65536
    r = post_rw(lookout, snappy(proto))
    assert r.status_code == 413, (r.status_code, r.text)
    assert "max_request_body_bytes" in r.text, r.text
    assert lookout.query_vector("big") == {}
    assert_still_serving(lookout)


AUTH = {"server": {"auth": {"ingest_tokens": ["t1"], "query_tokens": ["q1"]}}}


@pytest.mark.parametrize(
    "header,ok",
    [(None, False), ("Bearer wrong", False), ("Bearer q1", False), ("Bearer t1", True)],
    ids=["none", "wrong", "query-token", "ingest-token"],
)
def test_ingest_auth(lookout_factory, header, ok):
    lookout = lookout_factory(AUTH)
    lookout.query_token = "q1"
    auth = {"Authorization": header} if header else {}
    rw = post_rw(
        lookout,
        snappy(encode_write_request([({"__name__": "auth_rw"}, [(now_ms(), 1.0)])])),
        dict(REMOTE_WRITE_HEADERS, **auth),
    )
    otlp = post_otlp(lookout, gauge_request([("auth_otlp", 1.0, {})]), dict(PROTOBUF, **auth))
    with grpc.insecure_channel(lookout.otlp_grpc) as channel:
        stub = metrics_service_pb2_grpc.MetricsServiceStub(channel)
        req = metrics_service_pb2.ExportMetricsServiceRequest()
        req.ParseFromString(gauge_request([("auth_grpc", 1.0, {})]))
        metadata = [("authorization", header)] if header else []
        try:
            stub.Export(req, timeout=10, metadata=metadata)
            grpc_code = grpc.StatusCode.OK
        except grpc.RpcError as e:
            grpc_code = e.code()
    if ok:
        assert 200 <= rw.status_code < 300, (rw.status_code, rw.text)
        assert otlp.status_code == 200, (otlp.status_code, otlp.text)
        assert grpc_code == grpc.StatusCode.OK
        for name in ("auth_rw", "auth_otlp", "auth_grpc"):
            assert len(lookout.query_vector(name)) == 1, name
    else:
        assert rw.status_code == 401, (rw.status_code, rw.text)
        assert otlp.status_code == 401, (otlp.status_code, otlp.text)
        assert grpc_code == grpc.StatusCode.UNAUTHENTICATED
        for name in ("auth_rw", "auth_otlp", "auth_grpc"):
            assert lookout.query_vector(name) == {}, name
    assert_still_serving(lookout, token="t1")


@pytest.mark.parametrize(
    "header,status",
    [(None, 401), ("Bearer wrong", 401), ("Bearer t1", 401), ("Bearer q1", 200)],
    ids=["none", "wrong", "ingest-token", "query-token"],
)
def test_query_auth(lookout_factory, header, status):
    lookout = lookout_factory(AUTH)
    auth = {"Authorization": header} if header else {}
    for path, params in [
        ("/api/v1/query", {"query": "up"}),
        ("/api/v1/query_range", {"query": "up", "start": "1", "end": "2", "step": "1"}),
        ("/api/v1/series", {"match[]": "up"}),
        ("/api/v1/labels", {}),
        ("/api/v1/label/job/values", {}),
    ]:
        r = requests.get(f"{lookout.http}{path}", params=params, headers=auth, timeout=10)
        assert r.status_code == status, (path, r.status_code, r.text)
        if status == 401:
            body = json.loads(r.text)
            assert body["status"] == "error" and body["error"], body
    # Health and readiness stay open so probes need no secret.
    assert requests.get(f"{lookout.http}/-/healthy", timeout=5).status_code == 200
    assert requests.get(f"{lookout.http}/-/ready", timeout=5).status_code == 200


def test_otlp_bad_gzip(lookout):
    r = post_otlp(
        lookout,
        b"\x1f\x8b\x08\x00 definitely not gzip",
        dict(PROTOBUF, **{"Content-Encoding": "gzip"}),
    )
    assert r.status_code == 400, (r.status_code, r.text)
    assert error_message(r).strip()
    assert_still_serving(lookout)


AGE_LIMITS = {"limits": {"max_sample_age": "1h", "max_future": "5m"}}


@pytest.mark.parametrize(
    "offset_ms,words",
    [
        (-2 * 3600 * 1000, ("max_sample_age", "too_old")),
        (3600 * 1000, ("max_future", "too_far_in_future")),
    ],
    ids=["too-old", "too-far-in-future"],
)
def test_remote_write_sample_age_limits(lookout_factory, offset_ms, words):
    lookout = lookout_factory(AGE_LIMITS)
    t = now_ms() + offset_ms
    r = remote_write(lookout.remote_write_url, [({"__name__": "aged", "job": "x"}, [(t, 1.0)])])
    assert r.status_code == 400, (r.status_code, r.text)
    assert any(w in r.text for w in words), r.text
    assert lookout.query_raw("aged[10m]", t / 1000) == {}
    assert_still_serving(lookout)


def test_rejections_are_counted_in_self_metrics(lookout_factory):
    from prometheus_client.parser import text_string_to_metric_families

    lookout = lookout_factory(LIMITS)
    lbls = {"__name__": "rw_limit", **{f"l{i}": "v" for i in range(6)}}
    r = remote_write(lookout.remote_write_url, [(lbls, [(now_ms(), 1.0)])])
    assert r.status_code == 400, (r.status_code, r.text)
    r = post_otlp(lookout, gauge_request([("limit_bad", 2.0, TOO_MANY)]))
    assert r.status_code in (200, 400), (r.status_code, r.text)

    text = requests.get(f"{lookout.http}/metrics", timeout=10).text
    rejected = [
        s
        for fam in text_string_to_metric_families(text)
        for s in fam.samples
        if "rejected" in s.name and s.value > 0
    ]
    reasons = " ".join(str(s.labels) for s in rejected)
    assert rejected, f"no rejected-sample counter moved in /metrics:\n{text[:3000]}"
    assert "too_many_labels" in reasons or "max_labels_per_series" in reasons, reasons
    total = sum(s.value for s in rejected if "too_many_labels" in str(s.labels) or "max_labels" in str(s.labels))
    assert total >= 2, rejected


@pytest.mark.parametrize("corruption", ["truncated", "invalid-utf8"])
def test_otlp_grpc_malformed_is_invalid_argument(lookout, corruption):
    """A payload that does not decode is the client's fault: INVALID_ARGUMENT (not retried),
    with a message, as a 400 is over HTTP."""
    body = gauge_request([("grpc_bad", 1.0, {"a": "ZQZQ" * 10})])
    if corruption == "truncated":
        body = body[: len(body) // 2]
    else:
        body = body.replace(b"ZQZQ", b"\xff\xfe\xfd\xfc", 1)
    with grpc.insecure_channel(lookout.otlp_grpc) as channel:
        # Raw bytes on the wire: the Python protobuf library refuses to build such messages.
        export = channel.unary_unary("/opentelemetry.proto.collector.metrics.v1.MetricsService/Export")
        with pytest.raises(grpc.RpcError) as err:
            export(body, timeout=10)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, (err.value.code(), err.value.details())
    assert err.value.details()
    assert lookout.query_vector("grpc_bad") == {}
    assert_still_serving(lookout)
