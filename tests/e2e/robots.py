"""Fake DingTalk and WeCom group robots for the alerting tests.

One threaded HTTP server on 127.0.0.1 (port 0) hosts any number of robots and answers as the
real platforms do: HTTP 200 with `{"errcode": N, "errmsg": "..."}`, where only errcode 0 means
the message was posted. Each robot records every request it got, so tests assert on what
Lookout actually sent.

    srv = RobotServer()                       # or the `robot_server` fixture below
    ding = srv.dingtalk(secret="SECabc", keyword="告警")
    wecom = srv.wecom(rate_limit=3, rate_window=10)
    config = {"url": ding.url, "secret": ding.secret}       # ding.url holds the token
    ding.fail_next(2, 500)                    # the next two requests get HTTP 500
    ding.fail_next(1, "drop")                 # ... or a connection closed without an answer
    msgs = ding.wait_accepted(1)              # polls until 1 accepted message, returns them all
    msgs[0].body["markdown"]["text"], msgs[0].query["sign"], msgs[0].time
    ding.rejected                             # [Received] with .errcode / .errmsg
    ding.max_in_window(10)                    # most requests seen in any 10 s window
    ding.wait(lambda: ..., 20, "what")        # wait_until, failing with everything received
    ding.summary()                            # "+0.000s accepted:200:0:ok, +1.002s ..."
    srv.close()

DingTalk (`POST /robot/send?access_token=T[&timestamp=MS&sign=S]`), checked in this order:
  scripted transient failure (HTTP status or "drop") -> unknown/missing token: 300001
  "token is not exist" -> Content-Type not application/json: 43004 -> with a secret: timestamp
  missing, not an integer, or more than `timestamp_window` (1 h) from now: 310000 "invalid
  timestamp"; sign missing or not base64(HMAC-SHA256(key=secret, msg=f"{timestamp}\\n{secret}"))
  (after URL-decoding, so an unencoded `+` fails as it does on the real platform): 310000 "sign
  not match" -> `allowed_ips` set and the client not in it: 310000 "ip ... not in whitelist" ->
  muted: 130101 -> more than `rate_limit` messages in the rolling `rate_window` (20 per 60 s):
  130101 "send too fast, exceed 20 times per minute" and the robot muted for `mute_for` (600 s),
  every message then 130101 -> `quota` messages already accepted: 90030 -> body not UTF-8 JSON,
  msgtype not text/markdown, empty title/text, `at` not {atMobiles: [str], atUserIds: [str],
  isAtAll: bool}: 40035 (the fake's own choice of code; errmsg says what is wrong) -> body over
  `max_bytes` (20,000): 460101 "message too long" -> `keyword` set and not in the message
  (markdown title or text, text content): 310000 "keywords not in content" -> 0 "ok".

WeCom (`POST /cgi-bin/webhook/send?key=K`): scripted transient failure -> unknown/missing key:
  93000 "invalid webhook url" -> more than `rate_limit` in `rate_window` (20 per 60 s): 45009
  "api freq out of limit" (no mute; refused requests do not count) -> body not UTF-8 JSON, bad
  shape (mentioned_list / mentioned_mobile_list not lists of strings): 40035 -> msgtype neither
  text nor markdown: 40008 -> empty content: 44004 -> markdown content over `markdown_max_bytes`
  (4,096) or text content over `text_max_bytes` (2,048) UTF-8 bytes: 40058 "content exceed max
  length N" -> 0 "ok".

Rate limits count requests that got a platform answer other than the rate-limit code itself
(the platform counts what it processed); `max_in_window` counts every request that reached the
robot, including scripted failures. Requests for unknown tokens/keys or paths land in
`RobotServer.unknown`. Each robot's `clock` (default `time.time`) may be replaced in self-tests
to move time without sleeping.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets as _secrets
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable
from urllib.parse import parse_qs, quote_plus, urlsplit

import pytest

from helpers import wait_until

# ---- what one request was ------------------------------------------------------------


@dataclass
class Received:
    """One request as a robot saw it and what it answered."""

    time: float  # robot clock (epoch seconds) at arrival
    method: str
    path: str
    query: dict[str, str]  # first value of each parameter, URL-decoded
    headers: dict[str, str]  # lower-cased names
    raw: bytes
    body: Any  # parsed JSON, or None when it did not parse
    outcome: str  # "accepted" | "rejected" | "transient"
    http_status: int | None  # None for a dropped connection
    errcode: int | None = None  # None for transient failures
    errmsg: str = ""

    @property
    def msgtype(self) -> str | None:
        return self.body.get("msgtype") if isinstance(self.body, dict) else None

    @property
    def content(self) -> str:
        """The message's visible text: DingTalk markdown title + "\\n" + text, or the text /
        markdown content (empty when the body did not parse)."""
        b = self.body if isinstance(self.body, dict) else {}
        t = b.get("msgtype")
        part = b.get(t) if isinstance(t, str) and isinstance(b.get(t), dict) else {}
        if t == "markdown" and "title" in part:
            return f"{part.get('title', '')}\n{part.get('text', '')}"
        return str(part.get("content", part.get("text", "")))


def dingtalk_sign(secret: str, timestamp_ms: int) -> str:
    """DingTalk's signature (base64, not yet URL-encoded)."""
    msg = f"{timestamp_ms}\n{secret}".encode()
    return base64.b64encode(hmac.new(secret.encode(), msg, hashlib.sha256).digest()).decode()


# ---- robots --------------------------------------------------------------------------


class _Robot:
    kind = ""
    rate_code = 0
    rate_msg = ""

    def __init__(self, server: "RobotServer", name: str, rate_limit: int, rate_window: float,
                 mute_for: float):
        self.server = server
        self.name = name
        self.rate_limit = rate_limit
        self.rate_window = rate_window
        self.mute_for = mute_for
        self.clock: Callable[[], float] = time.time
        self.received: list[Received] = []
        self._lock = threading.Lock()
        self._failures: list[int | str] = []
        self._muted_until = 0.0
        self._counted: list[float] = []  # arrival times counted by the rate limit

    # -- scripting
    def fail_next(self, n: int = 1, mode: int | str = 500) -> None:
        """The next `n` requests fail transiently: `mode` is an HTTP status to answer with
        (500, 502, 503, 429...) or "drop" (read the request, close without answering)."""
        with self._lock:
            self._failures.extend([mode] * n)

    def script_failures(self, modes: list[int | str]) -> None:
        """The next requests fail in this order (each entry as `fail_next`'s `mode`)."""
        with self._lock:
            self._failures.extend(modes)

    def unmute(self) -> None:
        with self._lock:
            self._muted_until = 0.0
            self._counted.clear()

    # -- reading what arrived
    def _snapshot(self) -> list[Received]:
        with self._lock:
            return list(self.received)

    @property
    def accepted(self) -> list[Received]:
        return [r for r in self._snapshot() if r.outcome == "accepted"]

    @property
    def rejected(self) -> list[Received]:
        return [r for r in self._snapshot() if r.outcome == "rejected"]

    @property
    def transient(self) -> list[Received]:
        return [r for r in self._snapshot() if r.outcome == "transient"]

    def wait_accepted(self, n: int = 1, timeout: float = 20.0,
                      where: Callable[[Received], bool] | None = None) -> list[Received]:
        """Polls until at least `n` accepted messages (matching `where`, if given) arrived;
        returns those messages."""
        def enough():
            got = [r for r in self.accepted if where is None or where(r)]
            return got if len(got) >= n else None
        return self.wait(enough, timeout, f"{n} accepted message(s)")

    def wait_received(self, n: int = 1, timeout: float = 20.0) -> list[Received]:
        """Polls until at least `n` requests of any outcome arrived; returns all of them."""
        def enough():
            got = self._snapshot()
            return got if len(got) >= n else None
        return self.wait(enough, timeout, f"{n} request(s)")

    def wait(self, predicate: Callable[[], Any], timeout: float, what: str) -> Any:
        """`wait_until` whose timeout message lists what the robot received by then."""
        try:
            return wait_until(predicate, timeout, what=f"{what} at {self.name}")
        except AssertionError as e:
            raise AssertionError(f"{e}\nreceived: {self.summary()}") from None

    def max_in_window(self, window: float | None = None) -> int:
        """The most requests that arrived within any `window` seconds (default: the robot's
        rate window), i.e. max over i of #{j : t_i <= t_j < t_i + window}."""
        window = self.rate_window if window is None else window
        times = sorted(r.time for r in self._snapshot())
        best, j = 0, 0
        for i, t in enumerate(times):
            j = max(j, i)
            while j < len(times) and times[j] < t + window:
                j += 1
            best = max(best, j - i)
        return best

    def summary(self) -> str:
        """Every request so far: seconds after the first, outcome, HTTP status, errcode, errmsg."""
        got = self._snapshot()
        return ", ".join(
            f"+{r.time - got[0].time:.3f}s {r.outcome}:{r.http_status}:{r.errcode}:{r.errmsg[:60]}"
            for r in got
        ) or "nothing"

    # -- the platform's rate limit
    def _rate_check(self, now: float) -> tuple[int, str] | None:
        """Called under the lock for a request that passed authentication."""
        if now < self._muted_until:
            return self.rate_code, self.rate_msg
        self._counted = [t for t in self._counted if t > now - self.rate_window]
        if len(self._counted) + 1 > self.rate_limit:
            if self.mute_for > 0:
                self._muted_until = now + self.mute_for
            return self.rate_code, self.rate_msg
        self._counted.append(now)
        return None

    def _record(self, rec: Received) -> None:
        self.received.append(rec)

    def handle(self, req: "_Request") -> tuple[int | None, dict | None]:
        raise NotImplementedError


class DingTalkRobot(_Robot):
    kind = "dingtalk"
    rate_code = 130101
    rate_msg = "send too fast, exceed 20 times per minute"

    def __init__(self, server, token: str, secret: str | None = None, keyword: str | None = None,
                 rate_limit: int = 20, rate_window: float = 60.0, mute_for: float = 600.0,
                 max_bytes: int = 20_000, quota: int | None = None,
                 allowed_ips: list[str] | None = None, timestamp_window: float = 3600.0):
        super().__init__(server, f"dingtalk:{token[:6]}", rate_limit, rate_window, mute_for)
        self.token = token
        self.secret = secret
        self.keyword = keyword
        self.max_bytes = max_bytes
        self.quota = quota
        self.allowed_ips = allowed_ips
        self.timestamp_window = timestamp_window

    @property
    def url(self) -> str:
        """The webhook URL as DingTalk shows it (without timestamp/sign)."""
        return f"{self.server.base_url}/robot/send?access_token={self.token}"

    def signed_url(self, timestamp_ms: int | None = None, secret: str | None = None) -> str:
        """The URL with `timestamp` and URL-encoded `sign`, as a correct client builds it."""
        ts = int(self.clock() * 1000) if timestamp_ms is None else timestamp_ms
        sig = dingtalk_sign(secret if secret is not None else (self.secret or ""), ts)
        return f"{self.url}&timestamp={ts}&sign={quote_plus(sig)}"

    def handle(self, req):
        now = req.now
        if self.secret is not None:
            ts = req.query.get("timestamp", "")
            if not ts.isdigit() or abs(now * 1000 - int(ts)) > self.timestamp_window * 1000:
                return 310000, "invalid timestamp"
            sign = req.query.get("sign")
            if sign is None or not hmac.compare_digest(sign, dingtalk_sign(self.secret, int(ts))):
                return 310000, "sign not match, more: [https://ding-doc.dingtalk.com/doc#/serverapi2/qf2nxq]"
        if self.allowed_ips is not None and req.client_ip not in self.allowed_ips:
            return 310000, f"ip {req.client_ip} not in whitelist"
        limited = self._rate_check(now)
        if limited:
            return limited
        if self.quota is not None and len([r for r in self.received if r.outcome == "accepted"]) >= self.quota:
            return 90030, "robot quota exceeded"
        problem = _dingtalk_body_problem(req.body, req.json_error)
        if problem:
            return 40035, problem
        if len(req.raw) > self.max_bytes:
            return 460101, f"message too long, exceed {self.max_bytes} bytes"
        if self.keyword and self.keyword not in _dingtalk_visible(req.body):
            return 310000, "keywords not in content"
        return 0, "ok"


def _dingtalk_body_problem(body: Any, json_error: str | None) -> str | None:
    if json_error:
        return f"invalid json: {json_error}"
    if not isinstance(body, dict):
        return "invalid json: not an object"
    t = body.get("msgtype")
    if t == "markdown":
        md = body.get("markdown")
        if not isinstance(md, dict):
            return "markdown: missing"
        for k in ("title", "text"):
            if not isinstance(md.get(k), str) or not md[k].strip():
                return f"markdown.{k}: missing or empty"
    elif t == "text":
        tx = body.get("text")
        if not isinstance(tx, dict) or not isinstance(tx.get("content"), str) or not tx["content"].strip():
            return "text.content: missing or empty"
    else:
        return f"msgtype {t!r}: not text or markdown"
    at = body.get("at")
    if at is not None:
        if not isinstance(at, dict):
            return "at: not an object"
        for k in ("atMobiles", "atUserIds"):
            v = at.get(k)
            if v is not None and not (isinstance(v, list) and all(isinstance(x, str) for x in v)):
                return f"at.{k}: not a list of strings"
        if "isAtAll" in at and not isinstance(at["isAtAll"], bool):
            return "at.isAtAll: not a boolean"
        unknown = set(at) - {"atMobiles", "atUserIds", "isAtAll"}
        if unknown:
            return f"at: unknown fields {sorted(unknown)}"
    return None


def _dingtalk_visible(body: dict) -> str:
    t = body.get("msgtype")
    if t == "markdown":
        return body["markdown"]["title"] + "\n" + body["markdown"]["text"]
    return body["text"]["content"]


class WeComRobot(_Robot):
    kind = "wecom"
    rate_code = 45009
    rate_msg = "api freq out of limit"

    def __init__(self, server, key: str, rate_limit: int = 20, rate_window: float = 60.0,
                 markdown_max_bytes: int = 4096, text_max_bytes: int = 2048):
        super().__init__(server, f"wecom:{key[:6]}", rate_limit, rate_window, 0.0)
        self.key = key
        self.markdown_max_bytes = markdown_max_bytes
        self.text_max_bytes = text_max_bytes

    @property
    def url(self) -> str:
        return f"{self.server.base_url}/cgi-bin/webhook/send?key={self.key}"

    def handle(self, req):
        limited = self._rate_check(req.now)
        if limited:
            return limited
        body = req.body
        if req.json_error:
            return 40035, f"invalid json: {req.json_error}"
        if not isinstance(body, dict):
            return 40035, "invalid json: not an object"
        t = body.get("msgtype")
        if t not in ("text", "markdown"):
            return 40008, f"invalid message type {t!r}"
        part = body.get(t)
        if not isinstance(part, dict):
            return 40035, f"{t}: missing"
        content = part.get("content")
        if not isinstance(content, str) or not content.strip():
            return 44004, "empty content"
        if t == "text":
            for k in ("mentioned_list", "mentioned_mobile_list"):
                v = part.get(k)
                if v is not None and not (isinstance(v, list) and all(isinstance(x, str) for x in v)):
                    return 40035, f"text.{k}: not a list of strings"
        limit = self.markdown_max_bytes if t == "markdown" else self.text_max_bytes
        size = len(content.encode("utf-8"))
        if size > limit:
            return 40058, f"content exceed max length {limit}, got {size} bytes"
        return 0, "ok"


# ---- the server ----------------------------------------------------------------------


@dataclass
class _Request:
    now: float
    query: dict[str, str]
    raw: bytes
    body: Any
    json_error: str | None
    client_ip: str
    headers: dict[str, str] = field(default_factory=dict)


class RobotServer:
    """Hosts fake robots on one port; see the module doc."""

    def __init__(self, host: str = "127.0.0.1"):
        self._lock = threading.Lock()
        self._dingtalk: dict[str, DingTalkRobot] = {}
        self._wecom: dict[str, WeComRobot] = {}
        self.unknown: list[Received] = []
        self._httpd = ThreadingHTTPServer((host, 0), _Handler)
        self._httpd.daemon_threads = True
        self._httpd.robots = self  # type: ignore[attr-defined]
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="robots", daemon=True)
        self._thread.start()

    @property
    def base_url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def dingtalk(self, token: str | None = None, **kwargs) -> DingTalkRobot:
        """A DingTalk robot (token random unless given); kwargs as `DingTalkRobot`."""
        token = token or _secrets.token_hex(16)
        robot = DingTalkRobot(self, token, **kwargs)
        with self._lock:
            self._dingtalk[token] = robot
        return robot

    def wecom(self, key: str | None = None, **kwargs) -> WeComRobot:
        """A WeCom robot (key random unless given); kwargs as `WeComRobot`."""
        key = key or str(_uuid())
        robot = WeComRobot(self, key, **kwargs)
        with self._lock:
            self._wecom[key] = robot
        return robot

    def robots(self) -> list[_Robot]:
        with self._lock:
            return [*self._dingtalk.values(), *self._wecom.values()]

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> "RobotServer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- dispatch (called from handler threads)
    def _route(self, path: str, query: dict[str, str]) -> tuple[str, _Robot | None]:
        with self._lock:
            if path == "/robot/send":
                return "dingtalk", self._dingtalk.get(query.get("access_token", ""))
            if path == "/cgi-bin/webhook/send":
                return "wecom", self._wecom.get(query.get("key", ""))
        return "", None


def _uuid():
    import uuid

    return uuid.uuid4()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the real platforms' front ends

    def log_message(self, format, *args):  # noqa: A002 - quiet: tests read the records
        pass

    def do_GET(self):
        self._serve("GET")

    def do_POST(self):
        self._serve("POST")

    def _serve(self, method: str) -> None:
        srv: RobotServer = self.server.robots  # type: ignore[attr-defined]
        parts = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length > 0 else b""
        headers = {k.lower(): v for k, v in self.headers.items()}
        body, json_error = None, None
        try:
            body = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as e:
            json_error = str(e)[:200]
        kind, robot = srv._route(parts.path, query)

        def rec(clock: Callable[[], float], outcome, status, errcode=None, errmsg=""):
            return Received(clock(), method, parts.path, query, headers, raw, body, outcome,
                            status, errcode, errmsg)

        if not kind or method != "POST":
            r = rec(time.time, "rejected", 404, None, "not found")
            with srv._lock:
                srv.unknown.append(r)
            self._answer_raw(404, b"not found", "text/plain")
            return
        if robot is None:
            code, msg = (300001, "token is not exist") if kind == "dingtalk" else (
                93000, "invalid webhook url, hint: [the key is not valid]")
            with srv._lock:
                srv.unknown.append(rec(time.time, "rejected", 200, code, msg))
            self._answer_json(code, msg)
            return

        with robot._lock:
            now = robot.clock()
            if robot._failures:
                mode = robot._failures.pop(0)
                status = None if mode == "drop" else int(mode)
                robot._record(rec(lambda: now, "transient", status))
                failure = mode
            else:
                failure = None
                if kind == "dingtalk" and not headers.get("content-type", "").lower().startswith(
                    "application/json"
                ):
                    code, msg = 43004, "invalid HTTP header Content-Type"
                else:
                    req = _Request(now, query, raw, body, json_error, self.client_address[0], headers)
                    code, msg = robot.handle(req)
                robot._record(rec(lambda: now, "accepted" if code == 0 else "rejected", 200,
                                  code, msg))
        if failure == "drop":
            self.close_connection = True
            return
        if failure is not None:
            self._answer_raw(int(failure), b"<html><body>server error</body></html>", "text/html")
            return
        self._answer_json(code, msg)

    def _answer_json(self, code: int, msg: str) -> None:
        data = json.dumps({"errcode": code, "errmsg": msg}, ensure_ascii=False).encode()
        self._answer_raw(200, data, "application/json;charset=UTF-8")

    def _answer_raw(self, status: int, data: bytes, ctype: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture
def robot_server():
    """A `RobotServer` for the test, closed at teardown. Import it into a test module
    (`from robots import robot_server`) to use it as a fixture."""
    srv = RobotServer()
    try:
        yield srv
    finally:
        srv.close()
