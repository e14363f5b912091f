"""The Prometheus HTTP API's contract beyond values: time formats, error shapes and statuses,
so Grafana and promtool can talk to Lookout unchanged."""

from __future__ import annotations

import datetime

import pytest
import requests

from helpers import now_ms, remote_write


@pytest.fixture
def loaded(lookout):
    t = (now_ms() // 1000) * 1000  # a whole second, so RFC 3339 can name it exactly
    r = remote_write(
        lookout.remote_write_url,
        [({"__name__": "api_test", "job": "api", "k": "v"}, [(t - 1000, 1.0), (t, 2.0)])],
    )
    assert 200 <= r.status_code < 300, (r.status_code, r.text)
    return lookout, t


def test_rfc3339_and_unix_times_agree(loaded):
    lookout, t = loaded
    rfc = datetime.datetime.fromtimestamp(t / 1000, tz=datetime.timezone.utc).strftime(
        "%Y-%m-%dT%H:%M:%SZ"
    )
    by_unix = lookout.api_get("/api/v1/query", {"query": "api_test", "time": str(t // 1000)})
    by_rfc = lookout.api_get("/api/v1/query", {"query": "api_test", "time": rfc})
    assert by_unix == by_rfc
    assert by_unix["result"][0]["value"] == [t // 1000, "2"]


def test_instant_query_json_shape(loaded):
    lookout, t = loaded
    r = requests.get(
        f"{lookout.http}/api/v1/query", params={"query": "api_test", "time": t / 1000}, timeout=10
    )
    assert r.status_code == 200
    assert r.headers["Content-Type"].startswith("application/json")
    assert r.json() == {
        "status": "success",
        "data": {
            "resultType": "vector",
            "result": [
                {"metric": {"__name__": "api_test", "job": "api", "k": "v"}, "value": [t / 1000, "2"]}
            ],
        },
    }


@pytest.mark.parametrize(
    "path,params",
    [
        ("/api/v1/query", {"query": "api_test{"}),
        ("/api/v1/query", {}),
        ("/api/v1/query", {"query": "api_test", "time": "not-a-time"}),
        ("/api/v1/query_range", {"query": "api_test", "start": "10", "end": "5", "step": "1"}),
        ("/api/v1/query_range", {"query": "api_test", "start": "1", "end": "2", "step": "0"}),
        ("/api/v1/query_range", {"query": "api_test", "start": "0", "end": "100000", "step": "1"}),
        ("/api/v1/series", {}),
    ],
    ids=["bad-expr", "no-query", "bad-time", "end-before-start", "zero-step", "too-many-points", "series-no-match"],
)
def test_errors_are_prometheus_shaped(loaded, path, params):
    lookout, _ = loaded
    r = requests.get(f"{lookout.http}{path}", params=params, timeout=10)
    assert r.status_code == 400, (r.status_code, r.text)
    body = r.json()
    assert body["status"] == "error", body
    assert body["errorType"] == "bad_data", body
    assert body["error"], body


def test_label_apis(loaded):
    lookout, _ = loaded
    assert lookout.api_get("/api/v1/label/k/values") == ["v"]
    assert lookout.api_get("/api/v1/label/nonexistent/values") == []
    assert set(lookout.api_get("/api/v1/labels")) >= {"__name__", "job", "k"}
