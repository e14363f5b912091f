"""OTLP metrics from the real Python OpenTelemetry SDK (HTTP and gRPC exporters) read back
through the Prometheus query API, named and labelled as the OpenTelemetry "Prometheus and
OpenMetrics compatibility" spec says."""

from __future__ import annotations

import pytest
from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import (
    OTLPMetricExporter as GrpcMetricExporter,
)
from opentelemetry.exporter.otlp.proto.http import Compression as HttpCompression
from opentelemetry.exporter.otlp.proto.http.metric_exporter import (
    OTLPMetricExporter as HttpMetricExporter,
)
from opentelemetry.metrics import Observation
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricExportResult, PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource

from helpers import wait_until

LATENCY_BOUNDS = [0.1, 0.5, 1.0]
LATENCIES = [0.05, 0.3, 0.3, 0.7, 2.0]


def without_scope(metric: dict) -> dict:
    """Scope labels (`otel_scope_*`) are optional in the spec; compare everything else."""
    return {k: v for k, v in metric.items() if not k.startswith("otel_scope_")}


def make_exporter(transport: str, lookout):
    if transport == "http":
        return HttpMetricExporter(endpoint=f"{lookout.otlp_http}/v1/metrics", timeout=10)
    if transport == "http-gzip":
        return HttpMetricExporter(
            endpoint=f"{lookout.otlp_http}/v1/metrics",
            timeout=10,
            compression=HttpCompression.Gzip,
        )
    if transport == "grpc":
        return GrpcMetricExporter(endpoint=lookout.otlp_grpc, insecure=True, timeout=10)
    raise ValueError(transport)


def push_with_sdk(transport: str, lookout, service: str) -> None:
    """Records a counter, an up-down counter, an observable gauge and a histogram, exports
    them once with force_flush, and asserts the exporter reported success."""
    exporter = make_exporter(transport, lookout)
    results: list = []
    original_export = exporter.export

    def recording_export(metrics_data, *args, **kwargs):
        result = original_export(metrics_data, *args, **kwargs)
        results.append(result)
        return result

    exporter.export = recording_export
    # A long interval: the only exports are the explicit force_flush and shutdown.
    reader = PeriodicExportingMetricReader(exporter, export_interval_millis=3_600_000)
    resource = Resource.create(
        {
            "service.name": service,
            "service.namespace": "shop",
            "service.instance.id": "inst-1",
            "deployment.environment": "e2e",
        }
    )
    provider = MeterProvider(resource=resource, metric_readers=[reader])
    meter = provider.get_meter("e2e.meter", "1.2.3")

    sent = meter.create_counter("app.sent", unit="By", description="bytes sent")
    sent.add(3, {"route": "/a"})
    sent.add(4.5, {"route": "/a"})
    sent.add(10, {"route": "/b"})

    depth = meter.create_up_down_counter("app.queue.depth", description="queued jobs")
    depth.add(5, {"queue": "q1"})
    depth.add(-2, {"queue": "q1"})

    meter.create_observable_gauge(
        "app.temperature",
        callbacks=[lambda _options: [Observation(21.5, {"room": "lab"})]],
        description="room temperature",
    )

    latency = meter.create_histogram(
        "app.latency",
        unit="s",
        description="request latency",
        explicit_bucket_boundaries_advisory=LATENCY_BOUNDS,
    )
    for v in LATENCIES:
        latency.record(v, {"route": "/a"})

    try:
        assert provider.force_flush(timeout_millis=15_000), "force_flush timed out"
    finally:
        provider.shutdown()
    assert results, "the exporter was never called"
    assert all(r == MetricExportResult.SUCCESS for r in results), (
        f"OTLP {transport} export failed: {results}\n{lookout.log_tail()}"
    )


@pytest.mark.parametrize("transport", ["http", "http-gzip", "grpc"])
def test_sdk_metrics_read_back_exactly(lookout, transport):
    service = f"checkout-{transport}"
    push_with_sdk(transport, lookout, service)
    job = f"shop/{service}"
    sel = f'job="{job}",instance="inst-1"'

    # Acknowledged means durable and queryable; poll only to absorb clock granularity.
    counter = wait_until(
        lambda: lookout.query(f"app_sent_bytes_total{{{sel}}}")["result"],
        timeout=10,
        what="app_sent_bytes_total",
    )
    got = {s["metric"]["route"]: (without_scope(s["metric"]), float(s["value"][1])) for s in counter}
    assert got == {
        "/a": ({"__name__": "app_sent_bytes_total", "job": job, "instance": "inst-1", "route": "/a"}, 7.5),
        "/b": ({"__name__": "app_sent_bytes_total", "job": job, "instance": "inst-1", "route": "/b"}, 10.0),
    }

    depth = lookout.query(f"app_queue_depth{{{sel}}}")["result"]
    assert [(without_scope(s["metric"]), float(s["value"][1])) for s in depth] == [
        ({"__name__": "app_queue_depth", "job": job, "instance": "inst-1", "queue": "q1"}, 3.0)
    ]

    temp = lookout.query(f"app_temperature{{{sel}}}")["result"]
    assert [(without_scope(s["metric"]), float(s["value"][1])) for s in temp] == [
        ({"__name__": "app_temperature", "job": job, "instance": "inst-1", "room": "lab"}, 21.5)
    ]

    buckets = lookout.query(f'app_latency_seconds_bucket{{{sel},route="/a"}}')["result"]
    by_le = {float(s["metric"]["le"]): float(s["value"][1]) for s in buckets}
    assert by_le == {0.1: 1.0, 0.5: 3.0, 1.0: 4.0, float("inf"): 5.0}
    for s in buckets:
        assert without_scope(s["metric"]).keys() == {"__name__", "job", "instance", "route", "le"}

    expected_sum = 0.0
    for v in LATENCIES:  # the SDK sums in recording order; so do we, for an exact float
        expected_sum += v
    hsum = lookout.query(f'app_latency_seconds_sum{{{sel},route="/a"}}')["result"]
    assert [float(s["value"][1]) for s in hsum] == [expected_sum]
    hcount = lookout.query(f'app_latency_seconds_count{{{sel},route="/a"}}')["result"]
    assert [float(s["value"][1]) for s in hcount] == [float(len(LATENCIES))]

    info = lookout.query(f"target_info{{{sel}}}")["result"]
    assert len(info) == 1, info
    info_labels = info[0]["metric"]
    assert float(info[0]["value"][1]) == 1.0
    assert info_labels["deployment_environment"] == "e2e"
    assert info_labels["job"] == job and info_labels["instance"] == "inst-1"

    # The series API sees the same names.
    names = {s["__name__"] for s in lookout.series(f"{{{sel}}}")}
    assert {
        "app_sent_bytes_total",
        "app_queue_depth",
        "app_temperature",
        "app_latency_seconds_bucket",
        "app_latency_seconds_sum",
        "app_latency_seconds_count",
        "target_info",
    } <= names, names



def json_sum_request(t_ms: int, service: str, value: int, enum_names: bool) -> str:
    """A cumulative monotonic sum as OTLP/JSON (lowerCamelCase keys, int64 as strings)."""
    from google.protobuf.json_format import MessageToJson
    from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
        ExportMetricsServiceRequest,
    )

    req = ExportMetricsServiceRequest()
    rm = req.resource_metrics.add()
    for k, v in (("service.name", service), ("service.instance.id", "j1")):
        attr = rm.resource.attributes.add()
        attr.key, attr.value.string_value = k, v
    metric = rm.scope_metrics.add().metrics.add()
    metric.name = "json.requests"
    metric.sum.is_monotonic = True
    metric.sum.aggregation_temporality = 2  # cumulative
    dp = metric.sum.data_points.add()
    dp.time_unix_nano = t_ms * 1_000_000
    dp.start_time_unix_nano = (t_ms - 10_000) * 1_000_000
    dp.as_int = value
    attr = dp.attributes.add()
    attr.key, attr.value.string_value = "code", "200"
    return MessageToJson(req, use_integers_for_enums=not enum_names)


def post_json(lookout, body: str):
    import requests

    return requests.post(
        f"{lookout.otlp_http}/v1/metrics",
        data=body,
        headers={"Content-Type": "application/json"},
        timeout=10,
    )


def test_otlp_http_json(lookout):
    """OTLP/HTTP with a JSON body as the OTLP spec encodes it (enums as integers)."""
    from helpers import now_ms

    t_ms = now_ms()
    r = post_json(lookout, json_sum_request(t_ms, "json-svc", 17, enum_names=False))
    assert r.status_code == 200, (r.status_code, r.text)
    assert r.headers["Content-Type"].startswith("application/json"), r.headers
    got = lookout.query_vector('json_requests_total{job="json-svc"}', t_ms / 1000)
    assert {frozenset(without_scope(dict(k)).items()): v for k, v in got.items()} == {
        frozenset(
            {"__name__": "json_requests_total", "job": "json-svc", "instance": "j1", "code": "200"}.items()
        ): 17.0
    }


def test_otlp_http_json_enum_names_are_not_silently_dropped(lookout):
    """Enum values written as names ("AGGREGATION_TEMPORALITY_CUMULATIVE", what protobuf's
    JSON printers emit by default) must be either ingested or visibly rejected: a 200 with
    no partial-success count must mean the data is stored."""
    import json

    from helpers import now_ms

    t_ms = now_ms()
    body = json_sum_request(t_ms, "json-enum", 5, enum_names=True)
    assert "AGGREGATION_TEMPORALITY_CUMULATIVE" in body
    r = post_json(lookout, body)
    got = lookout.query_vector('json_requests_total{job="json-enum"}', t_ms / 1000)
    if r.status_code == 400:
        assert got == {}
        return
    assert r.status_code == 200, (r.status_code, r.text)
    rejected = int(json.loads(r.text or "{}").get("partialSuccess", {}).get("rejectedDataPoints", 0))
    if rejected:
        assert rejected == 1 and got == {}, (r.text, got)
    else:
        assert list(got.values()) == [5.0], f"answered {r.status_code} {r.text!r} but stored {got}"


def test_sdk_delta_counter_is_accumulated(lookout):
    """A Counter exported with DELTA temporality is accumulated into the cumulative
    Prometheus counter (Lookout converts deltas rather than rejecting them)."""
    from opentelemetry.sdk.metrics import Counter
    from opentelemetry.sdk.metrics.export import AggregationTemporality

    exporter = HttpMetricExporter(
        endpoint=f"{lookout.otlp_http}/v1/metrics",
        timeout=10,
        preferred_temporality={Counter: AggregationTemporality.DELTA},
    )
    reader = PeriodicExportingMetricReader(exporter, export_interval_millis=3_600_000)
    provider = MeterProvider(
        resource=Resource.create({"service.name": "delta-svc", "service.instance.id": "d1"}),
        metric_readers=[reader],
    )
    counter = provider.get_meter("e2e").create_counter("jobs.done")
    sel = 'jobs_done_total{job="delta-svc",instance="d1"}'
    try:
        counter.add(3)
        assert provider.force_flush(timeout_millis=15_000)
        first = wait_until(lambda: lookout.query_vector(sel), timeout=10, what="first delta")
        assert list(first.values()) == [3.0]
        counter.add(4)
        assert provider.force_flush(timeout_millis=15_000)
        wait_until(
            lambda: list(lookout.query_vector(sel).values()) == [7.0],
            timeout=10,
            what="the second delta to be added",
        )
    finally:
        provider.shutdown()
    raw = lookout.query_raw(f"{sel}[1m]")
    values = [v for samples in raw.values() for _, v in samples]
    assert values == sorted(values) and values[:2] == [3.0, 7.0], raw
