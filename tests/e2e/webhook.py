"""A plain webhook receiver that records Alertmanager's webhook JSON (version 4), and small
helpers for the alerting tests: Lookout's Prometheus rule APIs, its Alertmanager v2 API
(alerts, silences), Alertmanager's fingerprint, RFC 3339 times, and starting a server with
rule files written next to its config.

One `WebhookSink` serves any number of receivers: each receiver gets its own path
(`sink.url("db")` -> `http://127.0.0.1:PORT/db`) and the sink keeps what arrived per path,
with the time it arrived, so tests can check routing and group timers.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import requests

from helpers import Lookout, free_port, now_ms, remote_write, wait_until

ZERO_TIME = "0001-01-01T00:00:00Z"  # what Alertmanager sends as a firing alert's endsAt


# ---- the webhook receiver ------------------------------------------------------------------


@dataclass
class Received:
    path: str
    body: Any  # the decoded JSON (None when the body was not JSON)
    raw: bytes
    headers: dict  # names lower-cased
    at: float  # time.time() when it arrived


class WebhookSink:
    def __init__(self) -> None:
        self.port = free_port()
        self._lock = threading.Lock()
        self._received: list[Received] = []
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's name
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    raw = bytearray()
                    while True:
                        size = int(self.rfile.readline().strip().split(b";")[0], 16)
                        if size == 0:
                            self.rfile.readline()
                            break
                        raw += self.rfile.read(size)
                        self.rfile.readline()
                    raw = bytes(raw)
                else:
                    raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                try:
                    body = json.loads(raw)
                except ValueError:
                    body = None
                with sink._lock:
                    sink._received.append(
                        Received(self.path, body, raw, {k.lower(): v for k, v in self.headers.items()}, time.time())
                    )
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):  # quiet: pytest shows failures, not access logs
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/{name}"

    def received(self, name: str | None = None) -> list[Received]:
        with self._lock:
            return [r for r in self._received if name is None or r.path == f"/{name}"]

    def messages(self, name: str) -> list[dict]:
        return [r.body for r in self.received(name)]

    def wait_for(self, name: str, n: int = 1, timeout: float = 20.0, what: str = "") -> list[Received]:
        """Waits until at least `n` messages arrived for receiver `name`; returns them all."""
        return wait_until(
            lambda: (lambda got: got if len(got) >= n else None)(self.received(name)),
            timeout=timeout,
            what=what or f"{n} webhook message(s) for {name!r} (so far: {self.messages(name)})",
        )

    def wait_message(self, name: str, predicate, timeout: float = 20.0, what: str = "") -> Received:
        """Waits for a message for `name` whose JSON satisfies `predicate`; returns the first."""

        def find():
            for r in self.received(name):
                if r.body is not None and predicate(r.body):
                    return r
            return None

        return wait_until(find, timeout=timeout, what=what or f"a matching message for {name!r} "
                          f"(so far: {self.messages(name)})")

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def webhook():
    sink = WebhookSink()
    yield sink
    sink.close()


def webhook_receiver(name: str, sink: WebhookSink, **extra) -> dict:
    """A `receivers:` entry with one webhook config pointing at `sink`."""
    return {"name": name, "webhook_configs": [{"url": sink.url(name), "send_resolved": True, **extra}]}


def alert_names(message: dict) -> list[str]:
    return sorted(a["labels"].get("alertname", "") for a in message["alerts"])


# ---- Alertmanager's identity and times --------------------------------------------------


def fingerprint(labels: dict) -> str:
    """Alertmanager's alert fingerprint (Prometheus `LabelSet.Fingerprint`): FNV-1a 64 over
    the labels sorted by name, each name and value followed by 0xff; 16 hex digits."""
    h = 0xCBF29CE484222325
    for name in sorted(labels):
        for part in (name.encode(), b"\xff", labels[name].encode(), b"\xff"):
            for b in part:
                h ^= b
                h = (h * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return f"{h:016x}"


def rfc3339(s: str) -> float:
    """Unix seconds of an RFC 3339 time (`Z` or an offset, any fraction)."""
    if not isinstance(s, str) or "T" not in s:
        raise AssertionError(f"not an RFC 3339 time: {s!r}")
    text = s.replace("Z", "+00:00").replace("z", "+00:00")
    # Python keeps at most 6 fractional digits; Go prints up to 9.
    if "." in text:
        head, rest = text.split(".", 1)
        digits = ""
        while rest and rest[0].isdigit():
            digits, rest = digits + rest[0], rest[1:]
        text = f"{head}.{(digits + '000000')[:6]}{rest}"
    dt = datetime.fromisoformat(text)
    if dt.tzinfo is None:
        raise AssertionError(f"RFC 3339 time without a zone: {s!r}")
    return dt.timestamp()


def iso(t: float) -> str:
    """Unix seconds as RFC 3339 UTC with milliseconds."""
    return datetime.fromtimestamp(t, tz=timezone.utc).isoformat(timespec="milliseconds").replace(
        "+00:00", "Z"
    )


# ---- starting a server with rules and an alerting section ------------------------------


def write_rules(server: Lookout, name: str, content: dict | str) -> None:
    """Writes `rules/<name>` next to the server's config (dicts as JSON, which is YAML)."""
    d = server.workdir / "rules"
    d.mkdir(exist_ok=True)
    text = content if isinstance(content, str) else json.dumps(content, indent=2)
    (d / name).write_text(text)


def alerting_server(
    lookout_factory,
    rules: dict[str, dict | str] | None = None,
    alerting: dict | None = None,
    extra: dict | None = None,
    name: str | None = None,
) -> Lookout:
    """A started server evaluating every second, with `rules/<file>` for each entry of
    `rules`, and the given `alerting:` section."""
    config: dict = {
        "server": {"external_url": "http://lookout.example:9800"},
        "global": {"evaluation_interval": "1s"},
        "rule_files": ["rules/*.yaml"],
    }
    if alerting is not None:
        config["alerting"] = alerting
    for k, v in (extra or {}).items():
        config[k] = {**config.get(k, {}), **v} if isinstance(v, dict) else v
    server = lookout_factory(config, start=False, name=name)
    for fname, content in (rules or {}).items():
        write_rules(server, fname, content)
    (server.workdir / "rules").mkdir(exist_ok=True)
    return server.start()


def set_gauge(server: Lookout, name: str, labels: dict, value: float) -> None:
    """One sample at the current time, over remote write."""
    r = remote_write(server.remote_write_url, [({"__name__": name, **labels}, [(now_ms(), value)])])
    assert r.status_code in (200, 204), (r.status_code, r.text)


# ---- Prometheus rule APIs -----------------------------------------------------------------


def rule_groups(server: Lookout, **params) -> list[dict]:
    return server.api_get("/api/v1/rules", params or None)["groups"]


def find_rule(server: Lookout, name: str) -> dict | None:
    for g in rule_groups(server):
        for r in g["rules"]:
            if r["name"] == name:
                return r
    return None


def rule_alerts(server: Lookout, alertname: str) -> list[dict]:
    """`/api/v1/alerts` entries of one alert name."""
    return [
        a for a in server.api_get("/api/v1/alerts")["alerts"]
        if a["labels"].get("alertname") == alertname
    ]


def evaluated_after(server: Lookout, rule: str, t: float, timeout: float = 10.0) -> dict:
    """Waits until `rule` has been evaluated at or after Unix time `t`; returns it."""

    def check():
        r = find_rule(server, rule)
        return r if r and r.get("lastEvaluation") and rfc3339(r["lastEvaluation"]) >= t else None

    return wait_until(check, timeout=timeout, what=f"an evaluation of {rule} after {iso(t)}")


# ---- Alertmanager v2 API -----------------------------------------------------------------


def am_alert(labels: dict, annotations: dict | None = None, starts: float | None = None,
             ends: float | None = None, generator_url: str = "http://prometheus.example/graph") -> dict:
    out: dict = {"labels": labels, "annotations": annotations or {}, "generatorURL": generator_url}
    if starts is not None:
        out["startsAt"] = iso(starts)
    if ends is not None:
        out["endsAt"] = iso(ends)
    return out


def post_alerts(server: Lookout, alerts: Any, raw: str | bytes | None = None) -> requests.Response:
    if raw is not None:
        return requests.post(f"{server.http}/api/v2/alerts", data=raw,
                             headers={"Content-Type": "application/json"}, timeout=10)
    return requests.post(f"{server.http}/api/v2/alerts", json=alerts, timeout=10)


def _get_list(server: Lookout, path: str, params: Any = None) -> list[dict]:
    """`GET path` on the v2 API, which answers a bare JSON list (as Alertmanager's does)."""
    r = requests.get(f"{server.http}{path}", params=params, timeout=10)
    assert r.status_code == 200, (r.status_code, r.text)
    body = r.json()
    assert isinstance(body, list), body
    return body


def get_alerts(server: Lookout, params: Any = None) -> list[dict]:
    """`GET /api/v2/alerts`."""
    return _get_list(server, "/api/v2/alerts", params)


def am_alert_by_name(server: Lookout, alertname: str) -> dict | None:
    for a in get_alerts(server):
        if a["labels"].get("alertname") == alertname:
            return a
    return None


def matcher(name: str, value: str, regex: bool = False, equal: bool = True) -> dict:
    return {"name": name, "value": value, "isRegex": regex, "isEqual": equal}


def silence_body(matchers: list[dict], starts: float | None = None, ends: float | None = None,
                 created_by: str = "e2e", comment: str = "end-to-end test") -> dict:
    now = time.time()
    return {
        "matchers": matchers,
        "startsAt": iso(now - 1 if starts is None else starts),
        "endsAt": iso(now + 3600 if ends is None else ends),
        "createdBy": created_by,
        "comment": comment,
    }


def post_silence(server: Lookout, body: Any) -> requests.Response:
    return requests.post(f"{server.http}/api/v2/silences", json=body, timeout=10)


def create_silence(server: Lookout, matchers: list[dict], **kw) -> str:
    r = post_silence(server, silence_body(matchers, **kw))
    assert r.status_code == 200, (r.status_code, r.text)
    sid = r.json()["silenceID"]
    assert isinstance(sid, str) and sid, r.text
    return sid


def get_silence(server: Lookout, sid: str) -> requests.Response:
    return requests.get(f"{server.http}/api/v2/silence/{sid}", timeout=10)


def list_silences(server: Lookout, params: Any = None) -> list[dict]:
    """`GET /api/v2/silences`."""
    return _get_list(server, "/api/v2/silences", params)


def delete_silence(server: Lookout, sid: str) -> requests.Response:
    return requests.delete(f"{server.http}/api/v2/silence/{sid}", timeout=10)


def notifications(server: Lookout, **params) -> list[dict]:
    return server.api_get("/api/v1/notifications", params or None)
