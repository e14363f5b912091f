"""Lookout scraping a Python `prometheus-client` exporter: exact values, `up`,
`scrape_duration_seconds`, target relabelling, and staleness when the target goes away."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from helpers import free_port, wait_until


class Exporter:
    def __init__(self):
        self.port = free_port()
        self.registry = CollectorRegistry()
        orders = Counter("shop_orders", "orders placed", ["region"], registry=self.registry)
        orders.labels(region="eu").inc(3)
        orders.labels(region="us").inc(5.5)
        Gauge("shop_temperature_celsius", "temperature", registry=self.registry).set(21.25)
        queue = Gauge("shop_queue_length", "queue length", ["queue"], registry=self.registry)
        queue.labels(queue="fast").set(0)
        queue.labels(queue="slow").set(-4)
        # A `job` label from the target: renamed to exported_job unless honor_labels is set.
        Gauge("shop_info", "info", ["job"], registry=self.registry).labels(job="exported").set(1)
        latency = Histogram(
            "shop_latency_seconds", "latency", buckets=(0.1, 0.5, 1.0), registry=self.registry
        )
        self.latencies = [0.05, 0.3, 0.3, 0.7, 2.0]
        for v in self.latencies:
            latency.observe(v)
        self.server, self.thread = start_http_server(
            self.port, addr="127.0.0.1", registry=self.registry
        )
        self.address = f"127.0.0.1:{self.port}"

    def stop(self):
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None


@pytest.fixture
def exporter():
    e = Exporter()
    yield e
    e.stop()


@pytest.fixture
def scraping(lookout_factory, exporter):
    config = {
        "global": {"scrape_interval": "1s"},
        "scrape_configs": [
            {
                "job_name": "app",
                "scrape_interval": "1s",
                "scrape_timeout": "1s",
                "static_configs": [
                    {"targets": [exporter.address], "labels": {"env": "test", "dropme": "x"}}
                ],
                "relabel_configs": [
                    # replace: copy the port out of __address__ into its own label
                    {
                        "source_labels": ["__address__"],
                        "regex": "127\\.0\\.0\\.1:(\\d+)",
                        "target_label": "port",
                        "replacement": "p$1",
                        "action": "replace",
                    },
                    {"regex": "dropme", "action": "labeldrop"},
                ],
            }
        ],
    }
    return lookout_factory(config)


def test_scraped_values_exact(scraping, exporter):
    lookout = scraping
    target = {"job": "app", "instance": exporter.address, "env": "test", "port": f"p{exporter.port}"}

    def key(name: str, **extra) -> frozenset:
        return frozenset({"__name__": name, **target, **extra}.items())

    up = wait_until(
        lambda: lookout.query_vector('up{job="app"}') or None, timeout=20, what="up{job=app}"
    )
    assert up == {key("up"): 1.0}

    # The first scrape lands everything at once; poll for it rather than sleeping.
    orders = wait_until(
        lambda: lookout.query_vector('shop_orders_total{job="app"}') or None,
        timeout=10,
        what="shop_orders_total",
    )
    assert orders == {key("shop_orders_total", region="eu"): 3.0, key("shop_orders_total", region="us"): 5.5}
    assert lookout.query_vector('shop_temperature_celsius{job="app"}') == {
        key("shop_temperature_celsius"): 21.25
    }
    assert lookout.query_vector('shop_queue_length{job="app"}') == {
        key("shop_queue_length", queue="fast"): 0.0,
        key("shop_queue_length", queue="slow"): -4.0,
    }

    buckets = lookout.query_vector('shop_latency_seconds_bucket{job="app"}')
    by_le = {float(dict(k)["le"]): v for k, v in buckets.items()}
    assert by_le == {0.1: 1.0, 0.5: 3.0, 1.0: 4.0, float("inf"): 5.0}
    expected_sum = 0.0
    for v in exporter.latencies:
        expected_sum += v
    assert lookout.query_vector('shop_latency_seconds_sum{job="app"}') == {
        key("shop_latency_seconds_sum"): expected_sum
    }
    assert lookout.query_vector('shop_latency_seconds_count{job="app"}') == {
        key("shop_latency_seconds_count"): 5.0
    }

    # honor_labels is off: the target's own `job` label moves aside to exported_job.
    assert lookout.query_vector('shop_info{job="app"}') == {key("shop_info", exported_job="exported"): 1.0}

    # Relabelling: `port` added by replace, `dropme` removed by labeldrop, on every series.
    for s in lookout.series('{job="app"}'):
        assert s.get("port") == f"p{exporter.port}", s
        assert "dropme" not in s, s

    duration = lookout.query_vector('scrape_duration_seconds{job="app"}')
    assert list(duration) == [key("scrape_duration_seconds")]
    assert 0.0 < next(iter(duration.values())) < 1.0

    # Samples land once per scrape interval: several scrapes give several raw samples.
    raw = wait_until(
        lambda: (r := lookout.query_raw('up{job="app"}[1m]')) and len(r[key("up")]) >= 3 and r,
        timeout=10,
        what="3 scrapes",
    )
    samples = raw[key("up")]
    assert all(v == 1.0 for _, v in samples)
    gaps = [b - a for (a, _), (b, _) in zip(samples, samples[1:])]
    assert all(0.5 <= g <= 3.0 for g in gaps), gaps


def test_target_down_and_staleness(scraping, exporter):
    lookout = scraping
    wait_until(
        lambda: lookout.query_vector('shop_temperature_celsius{job="app"}') or None,
        timeout=20,
        what="first scrape",
    )
    exporter.stop()

    # The next failed scrape sets up to 0 and marks the target's series stale, so instant
    # queries stop returning them at once instead of after the 5m lookback.
    wait_until(
        lambda: list(lookout.query_vector('up{job="app"}').values()) == [0.0],
        timeout=10,
        what="up == 0 after the exporter stopped",
    )
    wait_until(
        lambda: lookout.query_vector('{job="app",__name__=~"shop_.*"}') == {},
        timeout=10,
        what="scraped series to go stale",
    )
    # scrape_duration_seconds is still reported for the failed scrapes.
    assert len(lookout.query_vector('scrape_duration_seconds{job="app"}')) == 1


@pytest.fixture
def not_found_server():
    """An HTTP server answering 404 to everything (prometheus_client serves on any path)."""
    import http.server
    import threading

    class NotFound(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's naming
            self.send_error(404, "no metrics here")

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), NotFound)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_scrape_job_options(lookout_factory, exporter, not_found_server):
    lookout = lookout_factory(
        {
            "scrape_configs": [
                {
                    "job_name": "wrong-path",
                    "scrape_interval": "1s",
                    "metrics_path": "/nope",
                    "static_configs": [{"targets": [not_found_server]}],
                },
                {
                    "job_name": "dropped-target",
                    "scrape_interval": "1s",
                    "static_configs": [{"targets": [exporter.address]}],
                    "relabel_configs": [
                        {"source_labels": ["__address__"], "regex": "nomatch.*", "action": "keep"}
                    ],
                },
                {
                    "job_name": "honor",
                    "scrape_interval": "1s",
                    "honor_labels": True,
                    "static_configs": [{"targets": [exporter.address]}],
                },
            ]
        }
    )
    # A 404 from the target is a failed scrape.
    wait_until(
        lambda: list(lookout.query_vector('up{job="wrong-path"}').values()) == [0.0],
        timeout=15,
        what="up == 0 for a wrong metrics_path",
    )
    # honor_labels keeps the target's `job` label as it is.
    info = wait_until(
        lambda: lookout.query_vector('shop_info{instance="%s"}' % exporter.address) or None,
        timeout=15,
        what="shop_info from the honor job",
    )
    assert [dict(k)["job"] for k in info] == ["exported"], info
    assert lookout.query_vector('up{job="honor"}') == {
        frozenset({"__name__": "up", "job": "honor", "instance": exporter.address}.items()): 1.0
    }
    # A target dropped by relabelling is never scraped: no series at all, not even `up`.
    assert lookout.series('{job="dropped-target"}') == []
    assert lookout.query_vector('{job="wrong-path",__name__=~"shop_.*"}') == {}
