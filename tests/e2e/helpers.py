"""Shared helpers for the end-to-end suite: running a real `lookout serve`, talking to its
query API, and building Prometheus remote-write requests by hand.

Everything here talks to the binary over the wire; nothing imports Lookout's code.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any, Callable, Iterable

import cramjam
import requests

REPO_ROOT = Path(__file__).resolve().parents[2]
READY_TIMEOUT_S = 30.0
POLL_INTERVAL_S = 0.05


def lookout_bin() -> str:
    """Path of the binary under test; fails loudly rather than skipping when it is missing."""
    path = os.environ.get("LOOKOUT_BIN", str(REPO_ROOT / "target" / "release" / "lookout"))
    if not os.path.isfile(path) or not os.access(path, os.X_OK):
        raise RuntimeError(
            f"lookout binary not found or not executable at {path!r}; "
            "build it with `cargo build --release` or set LOOKOUT_BIN"
        )
    # Absolute: servers run with their own working directory.
    return os.path.abspath(path)


_handed_out: set[int] = set()


def free_port() -> int:
    """A port the kernel just handed out on 127.0.0.1 (bound, then released).

    The kernel may hand the same ephemeral port out again right after it is released, so
    ports given out earlier in this run are never returned twice.
    """
    held = []
    try:
        while True:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            held.append(s)
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
            if port not in _handed_out:
                _handed_out.add(port)
                return port
    finally:
        for s in held:
            s.close()


def wait_until(
    predicate: Callable[[], Any], timeout: float = 20.0, what: str = "condition"
) -> Any:
    """Polls `predicate` until it returns something truthy; returns that value.

    Exceptions from the predicate count as "not yet" but the last one is reported on timeout,
    so a failing poll explains itself.
    """
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    last_value: Any = None
    while True:
        try:
            last_value = predicate()
            if last_value:
                return last_value
        except Exception as e:  # noqa: BLE001 - reported below on timeout
            last_error = e
        if time.monotonic() >= deadline:
            detail = f"last error: {last_error!r}" if last_error else f"last value: {last_value!r}"
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}; {detail}")
        time.sleep(POLL_INTERVAL_S)


class QueryError(AssertionError):
    pass


class Lookout:
    """One `lookout serve` process with its own ports, config file and data directory."""

    def __init__(self, workdir: Path, config: dict | None = None, name: str = "lookout"):
        self.workdir = workdir
        self.name = name
        self.data_dir = workdir / "data"
        self.config_path = workdir / "lookout.yaml"
        self.log_path = workdir / "lookout.log"
        self.http_port = free_port()
        self.otlp_grpc_port = free_port()
        self.otlp_http_port = free_port()
        self.query_token: str | None = None
        self.proc: subprocess.Popen | None = None
        self._log_file = None
        self.starts = 0
        base = {
            "server": {
                "http_addr": f"127.0.0.1:{self.http_port}",
                "otlp_grpc_addr": f"127.0.0.1:{self.otlp_grpc_port}",
                "otlp_http_addr": f"127.0.0.1:{self.otlp_http_port}",
            },
            # the built-in disk alert is off unless a test turns it on: a CI machine with a
            # nearly full disk must not add an alert to every test's alert lists
            "storage": {"data_dir": str(self.data_dir), "disk_alert_free_ratio": 0},
        }
        self.config = deep_merge(base, config or {})
        # JSON is YAML, and needs no YAML library here.
        self.config_path.write_text(json.dumps(self.config, indent=2))

    # ---- addresses -------------------------------------------------------------------
    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def otlp_http(self) -> str:
        return f"http://127.0.0.1:{self.otlp_http_port}"

    @property
    def otlp_grpc(self) -> str:
        return f"127.0.0.1:{self.otlp_grpc_port}"

    @property
    def remote_write_url(self) -> str:
        return f"{self.http}/api/v1/write"

    # ---- lifecycle -------------------------------------------------------------------
    def start(self, extra_args: Iterable[str] = (), env: dict | None = None) -> "Lookout":
        if self.proc is not None and self.proc.poll() is None:
            raise RuntimeError(f"{self.name} is already running (pid {self.proc.pid})")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.starts += 1
        self._log_file = open(self.log_path, "ab")
        self._log_file.write(f"\n===== start #{self.starts} =====\n".encode())
        self._log_file.flush()
        args = [
            lookout_bin(),
            "serve",
            "--config",
            str(self.config_path),
            "--data-dir",
            str(self.data_dir),
            *extra_args,
        ]
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("LOOKOUT_")}
        full_env.setdefault("RUST_LOG", "info")
        full_env.setdefault("RUST_BACKTRACE", "1")
        full_env.update(env or {})
        self.proc = subprocess.Popen(
            args, stdout=self._log_file, stderr=subprocess.STDOUT, env=full_env, cwd=self.workdir
        )
        self.wait_ready()
        return self

    def wait_ready(self, timeout: float = READY_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout
        while True:
            code = self.proc.poll() if self.proc else None
            if code is not None:
                raise AssertionError(
                    f"{self.name} exited with code {code} before becoming ready\n{self.log_tail()}"
                )
            try:
                r = requests.get(f"{self.http}/-/ready", timeout=1)
                if r.status_code == 200:
                    return
            except requests.RequestException:
                pass
            if time.monotonic() >= deadline:
                raise AssertionError(
                    f"{self.name} not ready after {timeout:.0f}s\n{self.log_tail()}"
                )
            time.sleep(POLL_INTERVAL_S)

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM and wait; returns the exit code (None-safe: already stopped returns it)."""
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError(
                    f"{self.name} did not exit within {timeout:.0f}s of SIGTERM\n{self.log_tail()}"
                )
        code = self.proc.returncode
        self._close_log()
        return code

    def kill9(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()
        self._close_log()

    def restart(self, env: dict | None = None) -> "Lookout":
        """Clean stop (asserting exit code 0) and start again on the same data directory."""
        code = self.stop()
        assert code == 0, f"{self.name} exited with {code} on SIGTERM\n{self.log_tail()}"
        return self.start(env=env)

    def _close_log(self) -> None:
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def log_tail(self, lines: int = 80) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return f"(no log at {self.log_path})"
        tail = text.splitlines()[-lines:]
        return f"--- {self.name} log ({self.log_path}) ---\n" + "\n".join(tail)

    # ---- query API -------------------------------------------------------------------
    def _query_headers(self) -> dict:
        return {"Authorization": f"Bearer {self.query_token}"} if self.query_token else {}

    def api_get(self, path: str, params: dict | list | None = None) -> Any:
        r = requests.get(
            f"{self.http}{path}", params=params, headers=self._query_headers(), timeout=10
        )
        try:
            body = r.json()
        except ValueError:
            raise QueryError(f"GET {path} {params}: HTTP {r.status_code}, non-JSON body {r.text!r}")
        if r.status_code != 200 or body.get("status") != "success":
            raise QueryError(f"GET {path} {params}: HTTP {r.status_code}: {body}")
        return body["data"]

    def query(self, expr: str, time_s: float | None = None) -> dict:
        """Instant query; returns `data` (`resultType` and `result`)."""
        params = {"query": expr}
        if time_s is not None:
            params["time"] = fmt_ts(time_s)
        return self.api_get("/api/v1/query", params)

    def query_vector(self, expr: str, time_s: float | None = None) -> dict[frozenset, float]:
        """Instant query returning {frozenset(labels): value} for a vector result."""
        data = self.query(expr, time_s)
        if data["resultType"] != "vector":
            raise QueryError(f"{expr}: expected a vector, got {data['resultType']}")
        return {frozenset(s["metric"].items()): float(s["value"][1]) for s in data["result"]}

    def query_raw(self, expr: str, time_s: float | None = None) -> dict[frozenset, list]:
        """A range-vector selector evaluated instantly: raw samples per series,
        {frozenset(labels): [(timestamp_seconds, value), ...]}."""
        data = self.query(expr, time_s)
        if data["resultType"] != "matrix":
            raise QueryError(f"{expr}: expected a matrix, got {data['resultType']}")
        return {
            frozenset(s["metric"].items()): [(float(t), float(v)) for t, v in s["values"]]
            for s in data["result"]
        }

    def query_range(self, expr: str, start: float, end: float, step: float) -> dict:
        """Range query: {frozenset(labels): [(timestamp_seconds, value), ...]}."""
        data = self.api_get(
            "/api/v1/query_range",
            {"query": expr, "start": fmt_ts(start), "end": fmt_ts(end), "step": str(step)},
        )
        if data["resultType"] != "matrix":
            raise QueryError(f"{expr}: expected a matrix, got {data['resultType']}")
        return {
            frozenset(s["metric"].items()): [(float(t), float(v)) for t, v in s["values"]]
            for s in data["result"]
        }

    def series(self, match: str, start: float | None = None, end: float | None = None) -> list:
        params: list = [("match[]", match)]
        if start is not None:
            params.append(("start", fmt_ts(start)))
        if end is not None:
            params.append(("end", fmt_ts(end)))
        return self.api_get("/api/v1/series", params)


@contextlib.contextmanager
def stops_cleanly(lookout: "Lookout"):
    """Runs the block with `lookout` (started), then stops it and checks it exited with
    code 0: a module-scoped server fixture sets its data up and yields inside it."""
    try:
        yield lookout
    finally:
        code = lookout.stop()
        assert code == 0, f"lookout exited with {code}\n{lookout.log_tail()}"


def deep_merge(base: dict, extra: dict) -> dict:
    out = dict(base)
    for k, v in extra.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = v
    return out


def fmt_ts(t: float) -> str:
    """Unix seconds with millisecond precision, as Prometheus prints them."""
    return f"{round(t * 1000) / 1000:.3f}"


def labels(**kw: str) -> frozenset:
    return frozenset(kw.items())


# ---- Prometheus remote-write 1.0, encoded by hand ------------------------------------
# WriteRequest{ repeated TimeSeries timeseries = 1 }
# TimeSeries{ repeated Label labels = 1; repeated Sample samples = 2 }
# Label{ string name = 1; string value = 2 }   Sample{ double value = 1; int64 timestamp = 2 }


def _varint(n: int) -> bytes:
    if n < 0:
        n += 1 << 64  # int64 is encoded as its two's complement
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _field_bytes(field: int, payload: bytes) -> bytes:
    return _varint((field << 3) | 2) + _varint(len(payload)) + payload


def _as_bytes(s: str | bytes) -> bytes:
    return s if isinstance(s, bytes) else s.encode("utf-8")


def encode_write_request(series: list[tuple[dict, list[tuple[int, float]]]]) -> bytes:
    """`series`: [(labels {name: value}, [(timestamp_ms, value), ...]), ...]. Label names and
    values may be `bytes` to send invalid UTF-8 on purpose. Labels are sorted by name, as the
    remote-write spec requires."""
    import struct

    out = bytearray()
    for lbls, samples in series:
        ts = bytearray()
        for name in sorted(lbls, key=_as_bytes):
            lab = _field_bytes(1, _as_bytes(name)) + _field_bytes(2, _as_bytes(lbls[name]))
            ts += _field_bytes(1, lab)
        for t_ms, value in samples:
            smp = b"\x09" + struct.pack("<d", value) + b"\x10" + _varint(t_ms)
            ts += _field_bytes(2, smp)
        out += _field_bytes(1, bytes(ts))
    return bytes(out)


def snappy(data: bytes) -> bytes:
    """Snappy block format (not framed), as remote-write uses."""
    return bytes(cramjam.snappy.compress_raw(data))


REMOTE_WRITE_HEADERS = {
    "Content-Type": "application/x-protobuf",
    "Content-Encoding": "snappy",
    "X-Prometheus-Remote-Write-Version": "0.1.0",
}


def remote_write(
    url: str,
    series: list[tuple[dict, list[tuple[int, float]]]],
    token: str | None = None,
    timeout: float = 10,
) -> requests.Response:
    headers = dict(REMOTE_WRITE_HEADERS)
    if token:
        headers["Authorization"] = f"Bearer {token}"
    body = snappy(encode_write_request(series))
    return requests.post(url, data=body, headers=headers, timeout=timeout)


def now_ms() -> int:
    return int(time.time() * 1000)


# ---- OTLP traces, built by hand ------------------------------------------------------
# For what an SDK would never send (bad ids, end before start, oversized values) and for
# exact control over ids and times. The protobuf classes come from `opentelemetry-proto`.


def otlp_any_value(value: Any):
    """An OTLP `AnyValue` from a Python value: str, bool, int, float, bytes, list, dict."""
    from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, KeyValueList

    if isinstance(value, bool):
        return AnyValue(bool_value=value)
    if isinstance(value, int):
        return AnyValue(int_value=value)
    if isinstance(value, float):
        return AnyValue(double_value=value)
    if isinstance(value, bytes):
        return AnyValue(bytes_value=value)
    if isinstance(value, str):
        return AnyValue(string_value=value)
    if isinstance(value, (list, tuple)):
        return AnyValue(array_value=ArrayValue(values=[otlp_any_value(v) for v in value]))
    if isinstance(value, dict):
        return AnyValue(kvlist_value=KeyValueList(values=otlp_attributes(value)))
    raise TypeError(f"no OTLP AnyValue for {value!r}")


def otlp_attributes(attrs: dict) -> list:
    from opentelemetry.proto.common.v1.common_pb2 import KeyValue

    return [KeyValue(key=k, value=otlp_any_value(v)) for k, v in attrs.items()]


def otlp_span(
    name: str,
    trace_id: bytes,
    span_id: bytes,
    start_ns: int,
    end_ns: int,
    parent_span_id: bytes = b"",
    kind: int = 2,  # SPAN_KIND_SERVER
    attributes: dict | None = None,
    status_code: int = 0,  # STATUS_CODE_UNSET
    events: Iterable[tuple[str, int, dict]] = (),
):
    """An OTLP `Span`; ids are raw bytes (of any length, on purpose), `events` are
    (name, time_unix_nano, attributes)."""
    from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

    return Span(
        trace_id=trace_id,
        span_id=span_id,
        parent_span_id=parent_span_id,
        name=name,
        kind=kind,
        start_time_unix_nano=start_ns,
        end_time_unix_nano=end_ns,
        attributes=otlp_attributes(attributes or {}),
        status=Status(code=status_code),
        events=[
            Span.Event(name=n, time_unix_nano=t, attributes=otlp_attributes(a)) for n, t, a in events
        ],
    )


def otlp_trace_request(groups: Iterable[tuple[dict | None, list]]):
    """An `ExportTraceServiceRequest`: one ResourceSpans per (resource attributes, spans);
    `None` attributes leave the resource out entirely."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )
    from opentelemetry.proto.common.v1.common_pb2 import InstrumentationScope
    from opentelemetry.proto.resource.v1.resource_pb2 import Resource
    from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans

    req = ExportTraceServiceRequest()
    for resource_attrs, spans in groups:
        rs = ResourceSpans(
            scope_spans=[ScopeSpans(scope=InstrumentationScope(name="e2e.hand"), spans=spans)]
        )
        if resource_attrs is not None:
            rs.resource.CopyFrom(Resource(attributes=otlp_attributes(resource_attrs)))
        req.resource_spans.append(rs)
    return req


def post_otlp_traces(
    lookout: "Lookout", body: bytes | str, content_type: str = "application/x-protobuf",
    gzip: bool = False, timeout: float = 10,
) -> requests.Response:
    """POST to `/v1/traces` as given (`body` may be anything, including garbage)."""
    headers = {"Content-Type": content_type}
    if gzip:
        headers["Content-Encoding"] = "gzip"
    return requests.post(
        f"{lookout.otlp_http}/v1/traces", data=body, headers=headers, timeout=timeout
    )


def report_logs_of(request, lookout: "Lookout") -> None:
    """Lists a server started outside `lookout_factory` (a module-scoped one) among the
    test's servers, so the failure report carries its log tail as it does for the others."""
    from conftest import _SERVERS_KEY

    request.node.stash.setdefault(_SERVERS_KEY, []).append(lookout)


# ---- logs: Loki push and OTLP logs, built by hand; the logs query API -----------------


def loki_push_json(streams: Iterable[tuple[dict, list]]) -> str:
    """A Loki push body in JSON. `streams`: [(labels, entries)], an entry being
    (timestamp_ns, line) or (timestamp_ns, line, structured_metadata)."""
    out = []
    for lbls, entries in streams:
        values = []
        for entry in entries:
            ts, line, *meta = entry
            values.append([str(ts), line, *meta])
        out.append({"stream": dict(lbls), "values": values})
    return json.dumps({"streams": out})


def loki_push_protobuf(streams: Iterable[tuple[dict, list]]) -> bytes:
    """The same as `loki_push_json`, as Loki's `logproto.PushRequest` (encoded by hand, not
    compressed): PushRequest{ repeated StreamAdapter streams = 1 };
    StreamAdapter{ string labels = 1 (`{a="b", c="d"}`); repeated EntryAdapter entries = 2 };
    EntryAdapter{ Timestamp timestamp = 1; string line = 2;
                  repeated LabelPairAdapter structuredMetadata = 3 };
    Timestamp{ int64 seconds = 1; int32 nanos = 2 }; LabelPairAdapter{ name = 1; value = 2 }.
    Lines may be `bytes` to send invalid UTF-8 on purpose."""
    out = bytearray()
    for lbls, entries in streams:
        label_text = "{" + ", ".join(f"{k}={json.dumps(v, ensure_ascii=False)}" for k, v in lbls.items()) + "}"
        stream = bytearray(_field_bytes(1, label_text.encode()))
        for entry in entries:
            ts, line, *meta = entry
            secs, nanos = divmod(int(ts), 1_000_000_000)
            stamp = b"\x08" + _varint(secs) + b"\x10" + _varint(nanos)
            e = _field_bytes(1, stamp) + _field_bytes(2, _as_bytes(line))
            for k, v in (meta[0] if meta else {}).items():
                e += _field_bytes(3, _field_bytes(1, _as_bytes(k)) + _field_bytes(2, _as_bytes(v)))
            stream += _field_bytes(2, e)
        out += _field_bytes(1, bytes(stream))
    return bytes(out)


def push_loki(
    lookout: "Lookout",
    streams: Iterable[tuple[dict, list]] | None = None,
    fmt: str = "json",
    gzip: bool = False,
    body: bytes | str | None = None,
    headers: dict | None = None,
    timeout: float = 10,
) -> requests.Response:
    """POST to `/loki/api/v1/push` as promtail does: JSON, or snappy-compressed protobuf.
    `body` sends exactly those bytes instead (with the content type of `fmt`)."""
    import gzip as gzip_mod

    if fmt == "json":
        hdrs = {"Content-Type": "application/json"}
        data = body if body is not None else loki_push_json(streams or [])
    elif fmt == "protobuf":
        hdrs = {"Content-Type": "application/x-protobuf"}
        data = body if body is not None else snappy(loki_push_protobuf(streams or []))
    else:
        raise ValueError(f"unknown Loki push format {fmt!r}")
    data = _as_bytes(data)
    if gzip:
        hdrs["Content-Encoding"] = "gzip"
        data = gzip_mod.compress(data)
    hdrs.update(headers or {})
    return requests.post(f"{lookout.http}/loki/api/v1/push", data=data, headers=hdrs, timeout=timeout)


def otlp_log_record(
    body: str,
    time_ns: int,
    severity_number: int = 0,
    severity_text: str = "",
    attributes: dict | None = None,
    trace_id: bytes = b"",
    span_id: bytes = b"",
    observed_ns: int = 0,
):
    """An OTLP `LogRecord` with a string body."""
    from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord

    return LogRecord(
        time_unix_nano=time_ns,
        observed_time_unix_nano=observed_ns,
        severity_number=severity_number,
        severity_text=severity_text,
        body=otlp_any_value(body),
        attributes=otlp_attributes(attributes or {}),
        trace_id=trace_id,
        span_id=span_id,
    )


def otlp_logs_request(groups: Iterable[tuple[dict | None, list]]):
    """An `ExportLogsServiceRequest`: one ResourceLogs per (resource attributes, records)."""
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
    from opentelemetry.proto.common.v1.common_pb2 import InstrumentationScope
    from opentelemetry.proto.logs.v1.logs_pb2 import ResourceLogs, ScopeLogs
    from opentelemetry.proto.resource.v1.resource_pb2 import Resource

    req = ExportLogsServiceRequest()
    for resource_attrs, records in groups:
        rl = ResourceLogs(
            scope_logs=[ScopeLogs(scope=InstrumentationScope(name="e2e.hand"), log_records=records)]
        )
        if resource_attrs is not None:
            rl.resource.CopyFrom(Resource(attributes=otlp_attributes(resource_attrs)))
        req.resource_logs.append(rl)
    return req


def post_otlp_logs(
    lookout: "Lookout", body: bytes | str, content_type: str = "application/x-protobuf",
    gzip: bool = False, timeout: float = 10,
) -> requests.Response:
    """POST to `/v1/logs` as given (`body` may be anything, including garbage)."""
    import gzip as gzip_mod

    headers = {"Content-Type": content_type}
    data = _as_bytes(body)
    if gzip:
        headers["Content-Encoding"] = "gzip"
        data = gzip_mod.compress(data)
    return requests.post(f"{lookout.otlp_http}/v1/logs", data=data, headers=headers, timeout=timeout)


def search_logs(
    lookout: "Lookout",
    query: str = "",
    start: float | str | None = None,
    end: float | str | None = None,
    limit: int | None = None,
    direction: str | None = None,
) -> list[dict]:
    """`GET /api/v1/logs/query`; the records of a successful answer (any failure raises)."""
    params: dict = {"query": query}
    for name, value in (("start", start), ("end", end), ("limit", limit), ("direction", direction)):
        if value is not None:
            params[name] = str(value)
    data = lookout.api_get("/api/v1/logs/query", params)
    return data["records"]


def self_metrics(lookout: "Lookout", name: str) -> dict[frozenset, float]:
    """The samples of one metric in `/metrics` (Lookout's own), {frozenset(labels): value}."""
    from prometheus_client.parser import text_string_to_metric_families

    text = requests.get(f"{lookout.http}/metrics", timeout=10).text
    out: dict[frozenset, float] = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            if s.name == name:
                out[frozenset(s.labels.items())] = s.value
    return out
