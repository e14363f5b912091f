"""Prometheus remote-write 1.0 into Lookout: from Debian's real `prometheus` (2.42) with a
`remote_write` section, and from hand-built requests with known samples."""

from __future__ import annotations

import math
import shutil
import signal
import subprocess
import time

import pytest
import requests

from helpers import fmt_ts, free_port, now_ms, remote_write, wait_until


class Prometheus:
    """A real Prometheus on a free port, scraping itself and remote-writing to Lookout."""

    def __init__(self, workdir, remote_write_url: str):
        self.port = free_port()
        # JSON is YAML. Short intervals keep the test fast.
        self._launch(
            workdir,
            f"""{{
  "global": {{"scrape_interval": "1s", "evaluation_interval": "1s"}},
  "scrape_configs": [{{"job_name": "prom", "static_configs": [{{"targets": ["127.0.0.1:{self.port}"]}}]}}],
  "remote_write": [{{
    "url": "{remote_write_url}",
    "queue_config": {{"batch_send_deadline": "200ms", "min_backoff": "50ms", "max_backoff": "1s"}},
    "metadata_config": {{"send_interval": "2s"}}
  }}]
}}""",
            ["--log.level=info"],
        )

    def _launch(self, workdir, config_text: str, flags: list[str]) -> None:
        """Starts Prometheus on `self.port` with `config_text` as its config file, its TSDB and
        log in `workdir` and `flags` added, and waits until it is ready. Subclasses that set
        their own config call this from their `__init__`."""
        binary = shutil.which("prometheus")
        if binary is None:
            pytest.fail("`prometheus` is not installed (scripts/test installs Debian's package)")
        self.url = f"http://127.0.0.1:{self.port}"
        config = workdir / "prometheus.yml"
        config.write_text(config_text)
        self.log_path = workdir / "prometheus.log"
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [
                binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={workdir / 'prom-data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                *flags,
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        wait_until(self._ready, timeout=30, what="prometheus /-/ready")

    def _ready(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"prometheus exited with {self.proc.returncode}\n{self.log_tail()}")
        try:
            return requests.get(f"{self.url}/-/ready", timeout=1).status_code == 200
        except requests.RequestException:
            return False

    def query(self, expr: str, time_s: float) -> dict:
        r = requests.get(
            f"{self.url}/api/v1/query", params={"query": expr, "time": fmt_ts(time_s)}, timeout=10
        )
        body = r.json()
        assert body["status"] == "success", body
        return body["data"]

    def get(self, path: str, params) -> dict:
        body = requests.get(f"{self.url}{path}", params=params, timeout=10).json()
        assert body["status"] == "success", body
        return body["data"]

    def own_counters(self, prefix: str) -> dict[str, float]:
        """Prometheus's own /metrics, summed per metric name, for names starting with prefix."""
        text = requests.get(f"{self.url}/metrics", timeout=10).text
        out: dict[str, float] = {}
        for line in text.splitlines():
            if line.startswith(prefix):
                name = line.split("{", 1)[0].split(" ", 1)[0]
                out[name] = out.get(name, 0.0) + float(line.rsplit(" ", 1)[1])
        return out

    def log_tail(self, lines: int = 40) -> str:
        text = self.log_path.read_text(errors="replace").splitlines()[-lines:]
        return "--- prometheus log ---\n" + "\n".join(text)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


def normalise(data: dict) -> dict:
    """A query result as {labels: samples}, comparable across servers. NaN compares by text."""

    def val(v: str):
        f = float(v)
        return "NaN" if math.isnan(f) else f

    out = {}
    for s in data["result"]:
        key = frozenset(s["metric"].items())
        if data["resultType"] == "matrix":
            out[key] = [(float(t), val(v)) for t, v in s["values"]]
        else:
            out[key] = [(float(s["value"][0]), val(s["value"][1]))]
    return out


@pytest.fixture
def prometheus(tmp_path, lookout):
    workdir = tmp_path / "prometheus"
    workdir.mkdir()
    prom = Prometheus(workdir, lookout.remote_write_url)
    yield prom
    prom.stop()


COMPARED = [
    'up{job="prom"}',
    'scrape_samples_scraped{job="prom"}',
    'prometheus_tsdb_head_series{job="prom"}',
    'prometheus_build_info{job="prom"}',
    'prometheus_http_requests_total{job="prom"}',
    'prometheus_http_request_duration_seconds_bucket{job="prom",handler="/metrics"}',
]


def test_prometheus_remote_write_matches_prometheus(lookout, prometheus):
    # Enough scrapes to have several samples per series on both sides.
    def up_samples():
        raw = lookout.query_raw('up{job="prom"}[1m]')
        return raw if raw and len(next(iter(raw.values()))) >= 4 else None

    raw_up = wait_until(
        up_samples,
        timeout=30,
        what="4 samples of up{job=prom} in lookout via remote-write",
    )
    assert len(raw_up) == 1, raw_up
    # Evaluate both servers at a timestamp Lookout already has a sample for.
    t_eval = next(iter(raw_up.values()))[-1][0]

    for expr in COMPARED:
        for query in (expr, f"{expr}[10s]"):
            expected = normalise(prometheus.query(query, t_eval))
            assert expected, f"prometheus has no data for {query} at {t_eval}"

            try:
                wait_until(
                    lambda: normalise(lookout.query(query, t_eval)) == expected,
                    timeout=15,
                    what=f"lookout to match prometheus for {query}",
                )
            except AssertionError:
                got = normalise(lookout.query(query, t_eval))
                missing = {k: v for k, v in expected.items() if got.get(k) != v}
                extra = {k: v for k, v in got.items() if expected.get(k) != v}
                raise AssertionError(
                    f"{query} at {t_eval}: differs from prometheus\n"
                    f"prometheus only/different: {missing}\nlookout only/different: {extra}"
                )

    # Range queries over the same window, and the series API, agree too.
    start = t_eval - 3
    for expr in ('up{job="prom"}', 'prometheus_http_requests_total{job="prom"}'):
        params = {"query": expr, "start": fmt_ts(start), "end": fmt_ts(t_eval), "step": "0.5"}
        expected = normalise(prometheus.get("/api/v1/query_range", params))
        assert expected, f"prometheus has no data for range {expr}"
        got = normalise(lookout.api_get("/api/v1/query_range", params))
        assert got == expected, f"query_range {expr}: lookout {got}\nprometheus {expected}"
    series_params = [
        ("match[]", 'up{job="prom"}'),
        ("match[]", "prometheus_build_info"),
        ("start", fmt_ts(start)),
        ("end", fmt_ts(t_eval)),
    ]
    key = lambda s: sorted(s.items())  # noqa: E731
    assert sorted(lookout.api_get("/api/v1/series", series_params), key=key) == sorted(
        prometheus.get("/api/v1/series", series_params), key=key
    )

    # Prometheus saw every send succeed, metadata included: nothing failed, retried or dropped.
    def sent_metadata():
        c = prometheus.own_counters("prometheus_remote_storage_")
        return c if c.get("prometheus_remote_storage_metadata_total", 0) > 0 else None

    counters = wait_until(sent_metadata, timeout=15, what="prometheus to send metadata")
    assert counters["prometheus_remote_storage_samples_total"] > 0, counters
    for name in (
        "prometheus_remote_storage_samples_failed_total",
        "prometheus_remote_storage_samples_retried_total",
        "prometheus_remote_storage_samples_dropped_total",
        "prometheus_remote_storage_metadata_failed_total",
        "prometheus_remote_storage_metadata_retried_total",
    ):
        assert counters[name] == 0, (name, counters, prometheus.log_tail())

    # Scraped `up` is 1 on both sides at every sample.
    assert all(v == 1.0 for _, v in next(iter(raw_up.values())))


def test_hand_built_write_reads_back_exactly(lookout):
    base = now_ms() - 60_000
    values_a = [0.0, 1.5, -2.25, 1e300, 3.141592653589793, 42.0, 1e-9, -0.0, 7.0, 123456789.125]
    values_b = [float(i * 10) for i in range(10)]
    ts = [base + i * 1000 for i in range(10)]
    series = [
        ({"__name__": "rw_test", "job": "hand", "series": "a", "zone": "eu"}, list(zip(ts, values_a))),
        ({"__name__": "rw_test", "job": "hand", "series": "b", "zone": "us"}, list(zip(ts, values_b))),
        ({"__name__": "rw_other", "job": "hand", "series": "c"}, [(ts[-1], 5.0)]),
    ]
    r = remote_write(lookout.remote_write_url, series)
    assert 200 <= r.status_code < 300, (r.status_code, r.text)

    end = ts[-1] / 1000
    raw = lookout.query_raw("rw_test[2m]", end)
    key_a = frozenset({"__name__": "rw_test", "job": "hand", "series": "a", "zone": "eu"}.items())
    key_b = frozenset({"__name__": "rw_test", "job": "hand", "series": "b", "zone": "us"}.items())
    assert set(raw) == {key_a, key_b}
    assert raw[key_a] == [(t / 1000, v) for t, v in zip(ts, values_a)]
    assert raw[key_b] == [(t / 1000, v) for t, v in zip(ts, values_b)]

    # Instant query at each sample's own timestamp returns that sample.
    for t, v in zip(ts, values_a):
        assert lookout.query_vector('rw_test{series="a"}', t / 1000) == {key_a: v}

    # Range query with a step on the sample grid returns every sample.
    rng = lookout.query_range('rw_test{series="b"}', ts[0] / 1000, end, 1)
    assert rng == {key_b: [(t / 1000, v) for t, v in zip(ts, values_b)]}

    # All four matcher kinds.
    def names(expr: str) -> set:
        return {dict(k)["series"] for k in lookout.query_vector(expr, end)}

    assert names('{job="hand"}') == {"a", "b", "c"}
    assert names('{job="hand",zone!="eu"}') == {"b", "c"}
    assert names('{job="hand",zone=~"e.|u."}') == {"a", "b"}
    assert names('{job="hand",series!~"a|b"}') == {"c"}

    # Metadata APIs.
    found = lookout.series('{job="hand"}', start=ts[0] / 1000 - 1, end=end + 1)
    assert sorted(found, key=lambda s: s["series"]) == [
        {"__name__": "rw_test", "job": "hand", "series": "a", "zone": "eu"},
        {"__name__": "rw_test", "job": "hand", "series": "b", "zone": "us"},
        {"__name__": "rw_other", "job": "hand", "series": "c"},
    ]
    assert {"__name__", "job", "series", "zone"} <= set(lookout.api_get("/api/v1/labels"))
    assert sorted(lookout.api_get("/api/v1/label/zone/values")) == ["eu", "us"]
    assert {"rw_test", "rw_other"} <= set(lookout.api_get("/api/v1/label/__name__/values"))

    # After a clean restart everything is still there, unchanged.
    lookout.restart()
    assert lookout.query_raw("rw_test[2m]", end) == raw


def test_prometheus_backfills_after_lookout_restart(lookout, prometheus):
    """While Lookout is down Prometheus keeps scraping and retrying; after the restart every
    sample of the outage arrives, none twice."""
    wait_until(lambda: lookout.query_vector('up{job="prom"}'), timeout=30, what="first samples")
    t_down = time.time()
    assert lookout.stop() == 0, lookout.log_tail()

    def scraped_during_outage():
        raw = normalise(prometheus.query('up{job="prom"}[10s]', time.time()))
        return any(t > t_down + 3 for samples in raw.values() for t, _ in samples)

    wait_until(scraped_during_outage, timeout=20, what="prometheus to scrape during the outage")
    lookout.start()
    t_eval = time.time()
    query = f'up{{job="prom"}}[{int(t_eval - t_down) + 10}s]'
    expected = normalise(prometheus.query(query, t_eval))
    outage = [t for samples in expected.values() for t, _ in samples if t > t_down]
    assert len(outage) >= 3, expected
    wait_until(
        lambda: normalise(lookout.query(query, t_eval)) == expected,
        timeout=30,
        what="lookout to receive the samples Prometheus kept during the outage",
    )
