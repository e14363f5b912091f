"""Example service for the docker-compose demo: pushes OTLP metrics to Lookout.

Every few seconds it exports a counter (requests by route and status), a gauge (queue
depth) and a histogram (request duration in seconds) over OTLP/HTTP protobuf to
$OTEL_EXPORTER_OTLP_ENDPOINT (default http://lookout:4318). In Lookout they appear as
example_requests_total, example_queue_depth and example_request_duration_seconds_bucket
/ _sum / _count, with job="example-app".
"""

import os
import random
import signal
import sys
import time

from opentelemetry import metrics
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource

ENDPOINT = os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", "http://lookout:4318").rstrip("/")
SERVICE = os.environ.get("OTEL_SERVICE_NAME", "example-app")
EXPORT_INTERVAL_MS = int(os.environ.get("EXPORT_INTERVAL_MS", "5000"))
ROUTES = ["/checkout", "/cart", "/search"]

running = True


def stop(_signum, _frame):
    global running
    running = False


def main() -> int:
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)

    exporter = OTLPMetricExporter(endpoint=f"{ENDPOINT}/v1/metrics", timeout=10)
    reader = PeriodicExportingMetricReader(exporter, export_interval_millis=EXPORT_INTERVAL_MS)
    resource = Resource.create({"service.name": SERVICE, "service.namespace": "demo"})
    provider = MeterProvider(resource=resource, metric_readers=[reader])
    metrics.set_meter_provider(provider)
    meter = metrics.get_meter("example-app")

    requests = meter.create_counter("example_requests", unit="1", description="Requests handled.")
    duration = meter.create_histogram(
        "example_request_duration", unit="s", description="Request duration."
    )
    queue_depth = {"value": 0}
    meter.create_observable_gauge(
        "example_queue_depth",
        callbacks=[lambda _options: [metrics.Observation(queue_depth["value"])]],
        unit="1",
        description="Jobs waiting in the work queue.",
    )

    print(f"example-app: pushing OTLP metrics to {ENDPOINT} every {EXPORT_INTERVAL_MS} ms", flush=True)
    while running:
        route = random.choice(ROUTES)
        status = "500" if random.random() < 0.05 else "200"
        attrs = {"http.route": route, "http.response.status_code": status}
        requests.add(1, attrs)
        duration.record(random.lognormvariate(-3.0, 0.6), attrs)
        queue_depth["value"] = max(0, queue_depth["value"] + random.randint(-3, 3))
        time.sleep(0.2)

    # Flush what was recorded since the last export before exiting.
    provider.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
