"""Alert notifications to chat robots: Lookout evaluating rules over remote-written samples
and delivering to fake DingTalk and WeCom robots (`robots.py`) that answer as the platforms do.

The first tests check the fakes themselves (no Lookout involved), so a fake that accepts
what the real platform refuses cannot make the Lookout tests pass.
"""

from __future__ import annotations

import json
import os
import re
import struct
import textwrap
import time
import uuid
from datetime import datetime, timezone
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from helpers import (
    Lookout,
    now_ms,
    otlp_span,
    otlp_trace_request,
    post_otlp_traces,
    remote_write,
    self_metrics,
    wait_until,
)
from robots import dingtalk_sign, robot_server  # noqa: F401 - robot_server is a fixture

# ---- the fakes themselves ------------------------------------------------------------


def _md(title="告警 t", text="告警 body", at=None) -> dict:
    body = {"msgtype": "markdown", "markdown": {"title": title, "text": text}}
    if at is not None:
        body["at"] = at
    return body


def _post(url: str, body, **kw) -> dict:
    r = requests.post(url, json=body, timeout=5, **kw) if not isinstance(body, (bytes, str)) else \
        requests.post(url, data=body, timeout=5, headers={"Content-Type": "application/json"}, **kw)
    assert r.status_code == 200, r.text
    return r.json()


def test_fake_dingtalk_signature_and_timestamp(robot_server):
    ding = robot_server.dingtalk(secret="SECfake123", keyword="告警")
    assert _post(ding.signed_url(), _md()) == {"errcode": 0, "errmsg": "ok"}
    # No signature, wrong secret, a `+` left unencoded, a stale or future timestamp.
    assert _post(ding.url, _md())["errcode"] == 310000
    assert _post(ding.signed_url(secret="SECother"), _md())["errmsg"].startswith("sign not match")
    now_ms = int(time.time() * 1000)
    ts = next(t for t in range(now_ms, now_ms + 10_000) if "+" in dingtalk_sign("SECfake123", t))
    raw = f"{ding.url}&timestamp={ts}&sign={dingtalk_sign('SECfake123', ts)}"
    assert _post(raw, _md())["errcode"] == 310000
    for off in (-3_601_000, 3_601_000):
        got = _post(ding.signed_url(timestamp_ms=now_ms + off), _md())
        assert got == {"errcode": 310000, "errmsg": "invalid timestamp"}
    assert _post(ding.signed_url(timestamp_ms=now_ms - 3_500_000), _md())["errcode"] == 0
    # Unknown token: the platform's 300001, recorded on the server rather than a robot.
    other = robot_server.base_url + "/robot/send?access_token=nope"
    assert _post(other, _md()) == {"errcode": 300001, "errmsg": "token is not exist"}
    assert robot_server.unknown[-1].errcode == 300001
    assert [r.errcode for r in ding.received] == [0, 310000, 310000, 310000, 310000, 310000, 0]
    assert len(ding.accepted) == 2 and ding.accepted[0].body == _md()


def test_fake_dingtalk_body_keyword_size(robot_server):
    ding = robot_server.dingtalk(keyword="告警", allowed_ips=None)
    assert _post(ding.url, _md(title="t", text="no keyword"))["errmsg"] == "keywords not in content"
    assert _post(ding.url, _md(title="告警", text="x"))["errcode"] == 0
    assert _post(ding.url, {"msgtype": "text", "text": {"content": "告警 plain"}})["errcode"] == 0
    for bad in (
        {"msgtype": "markdown", "markdown": {"title": "", "text": "告警"}},
        {"msgtype": "markdown", "markdown": {"title": "告警"}},
        {"msgtype": "image", "image": {}},
        _md(at={"atMobiles": "138"}),
        _md(at={"atMobiles": ["138"], "isAtAll": "no"}),
        _md(at={"mobiles": ["138"]}),
        b"{not json",
        b'{"msgtype":"markdown","markdown":{"title":"\xe5\x91","text":"x"}}',
    ):
        assert _post(ding.url, bad)["errcode"] == 40035, bad
    ok_at = _md(at={"atMobiles": ["13800000000"], "atUserIds": ["u1"], "isAtAll": False})
    assert _post(ding.url, ok_at)["errcode"] == 0
    # 20,000 bytes of JSON at most.
    pad = "告" * 7000  # 21,000 bytes of UTF-8
    got = _post(ding.url, _md(text=pad))
    assert got["errcode"] == 460101 and "too long" in got["errmsg"]
    # Content-Type must be JSON.
    r = requests.post(ding.url, data=json.dumps(_md()), headers={"Content-Type": "text/plain"},
                      timeout=5)
    assert r.json()["errcode"] == 43004
    ip = robot_server.dingtalk(allowed_ips=["10.1.2.3"])
    got = _post(ip.url, _md())
    assert got["errcode"] == 310000 and "whitelist" in got["errmsg"]


def test_fake_dingtalk_rate_limit_mute_and_quota(robot_server):
    clock = [1_000_000.0]
    ding = robot_server.dingtalk(rate_limit=3, rate_window=10, mute_for=30)
    ding.clock = lambda: clock[0]
    for _ in range(3):
        assert _post(ding.url, _md())["errcode"] == 0
        clock[0] += 1
    got = _post(ding.url, _md())
    assert got == {"errcode": 130101, "errmsg": "send too fast, exceed 20 times per minute"}
    clock[0] += 20  # the window has passed, but the robot is muted for 30 s
    assert _post(ding.url, _md())["errcode"] == 130101
    clock[0] += 11
    assert _post(ding.url, _md())["errcode"] == 0
    assert ding.max_in_window(10) == 4 and ding.max_in_window(1) == 1
    q = robot_server.dingtalk(quota=2)
    assert [_post(q.url, _md())["errcode"] for _ in range(3)] == [0, 0, 90030]


def test_fake_transient_failures(robot_server):
    ding = robot_server.dingtalk()
    ding.script_failures([500, "drop", 503])
    r = requests.post(ding.url, json=_md(), timeout=5)
    assert r.status_code == 500
    with pytest.raises(requests.ConnectionError):
        requests.post(ding.url, json=_md(), timeout=5)
    assert requests.post(ding.url, json=_md(), timeout=5).status_code == 503
    assert _post(ding.url, _md())["errcode"] == 0
    assert [(r.outcome, r.http_status) for r in ding.received] == [
        ("transient", 500), ("transient", None), ("transient", 503), ("accepted", 200)]
    assert len(ding.wait_accepted(1)) == 1


def test_fake_wecom(robot_server):
    clock = [5_000.0]
    wc = robot_server.wecom(rate_limit=2, rate_window=60)
    wc.clock = lambda: clock[0]
    md = {"msgtype": "markdown", "markdown": {"content": "# 告警\n" + "中" * 1362}}  # 4,095 bytes
    assert _post(wc.url, md) == {"errcode": 0, "errmsg": "ok"}
    txt = {"msgtype": "text", "text": {"content": "a" * 2048, "mentioned_list": ["u1", "@all"],
                                       "mentioned_mobile_list": ["13800000000"]}}
    assert _post(wc.url, txt)["errcode"] == 0
    assert _post(wc.url, txt) == {"errcode": 45009, "errmsg": "api freq out of limit"}
    clock[0] += 61
    md["markdown"]["content"] += "中"  # 4,098
    got = _post(wc.url, md)
    assert got["errcode"] == 40058 and "4096" in got["errmsg"]
    txt["text"]["content"] += "b"
    got = _post(wc.url, txt)
    assert got["errcode"] == 40058 and "2048" in got["errmsg"]
    clock[0] += 61
    assert _post(wc.url, {"msgtype": "news", "news": {}})["errcode"] == 40008
    assert _post(wc.url, {"msgtype": "text", "text": {"content": " "}})["errcode"] == 44004
    clock[0] += 61
    bad = {"msgtype": "text", "text": {"content": "x", "mentioned_list": "u1"}}
    assert _post(wc.url, bad)["errcode"] == 40035
    other = robot_server.base_url + "/cgi-bin/webhook/send?key=00000000-bad"
    assert _post(other, md)["errcode"] == 93000
    assert [r.errcode for r in wc.received] == [0, 0, 45009, 40058, 40058, 40008, 44004, 40035]
    assert [r.content[:5] for r in wc.accepted] == ["# 告警\n", "aaaaa"]


# ---- Lookout delivering to the fakes -------------------------------------------------

EXTERNAL_URL = "http://lookout.example:9800"
STALE_NAN = struct.unpack("<d", struct.pack("<Q", 0x7FF0000000000002))[0]


def start_lookout(factory, rules: str, alerting: dict) -> Lookout:
    """Lookout evaluating `rules` (one rule file, found through a relative glob) every second
    and notifying per `alerting` (Alertmanager's shape)."""
    config = {
        "server": {"external_url": EXTERNAL_URL},
        "global": {"evaluation_interval": "1s"},
        "rule_files": ["rules/*.yaml"],
        "alerting": alerting,
    }
    server = factory(config, start=False)
    (server.workdir / "rules").mkdir()
    (server.workdir / "rules" / "chat.yaml").write_text(textwrap.dedent(rules))
    return server.start()


def route(receiver: str, group_by=("alertname",), group_interval="2s", **extra) -> dict:
    return {"receiver": receiver, "group_by": list(group_by), "group_wait": "1s",
            "group_interval": group_interval, "repeat_interval": "1h", **extra}


def write(lookout: Lookout, series: list[tuple[dict, float]]) -> None:
    t = now_ms()
    r = remote_write(lookout.remote_write_url, [(lbls, [(t, v)]) for lbls, v in series])
    assert r.status_code in (200, 204), r.text


def notifications(lookout: Lookout, receiver: str | None = None) -> list[dict]:
    params = {"limit": "1000"}
    if receiver:
        params["receiver"] = receiver
    return lookout.api_get("/api/v1/notifications", params)


def attempts_of(lookout: Lookout, receiver: str, integration: str) -> list[dict]:
    """Attempts of one integration, oldest first (the API lists newest first)."""
    got = [a for a in notifications(lookout, receiver) if a["integration"] == integration]
    return got[::-1]


def rfc3339(s: str) -> float:
    """Epoch seconds of an RFC 3339 time with any number of fractional digits."""
    m = re.fullmatch(r"(.*T\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)", s)
    assert m, f"not RFC 3339: {s!r}"
    base = datetime.fromisoformat(m[1] + ("+00:00" if m[3] == "Z" else m[3]))
    return base.timestamp() + (float("0." + m[2]) if m[2] else 0.0)


def counter(lookout: Lookout, name: str, **labels) -> float:
    got = self_metrics(lookout, name)
    return sum(v for k, v in got.items() if set(labels.items()) <= set(k))


def assert_secrets_hidden(lookout: Lookout, secrets: list[str], extra_texts=()) -> None:
    """No token, key or signing secret in the log or in any answer that lists receivers,
    attempts, alerts or metrics."""
    texts = {"log": lookout.log_path.read_text(errors="replace"),
             "/metrics": requests.get(f"{lookout.http}/metrics", timeout=10).text}
    for path in ("/api/v1/notifications", "/api/v1/alerts", "/api/v1/rules", "/api/v2/alerts",
                 "/api/v2/silences"):
        texts[path] = requests.get(f"{lookout.http}{path}", timeout=10).text
    for i, t in enumerate(extra_texts):
        texts[f"answer {i}"] = t
    for where, text in texts.items():
        for s in secrets:
            assert s not in text, f"secret {s[:4]}... appears in {where}"


def links_in(text: str) -> list[tuple[str, dict[str, str]]]:
    """(path, query params) of every link to the Lookout UI in a message."""
    out = []
    for url in re.findall(re.escape(EXTERNAL_URL) + r"[^\s)\]>\"']*", text):
        parts = urlsplit(url)
        out.append((parts.path, {k: v[0] for k, v in parse_qs(parts.query).items()}))
    return out


def since_forms(active_at: str) -> list[str]:
    """Ways a message may print the alert's start (to the minute), in UTC or local time."""
    t = datetime.fromtimestamp(rfc3339(active_at), timezone.utc)
    forms = []
    for tz in (timezone.utc, None):
        lt = t.astimezone(tz)
        forms += [lt.strftime("%Y-%m-%d %H:%M"), lt.strftime("%Y-%m-%dT%H:%M")]
    return forms


def push_failing_trace(lookout: Lookout, service: str) -> str:
    """One server span with an error status for `service`; returns its trace id (hex) once
    the trace search finds it."""
    trace_id = os.urandom(16)
    t = time.time_ns()
    span = otlp_span("POST /pay", trace_id, os.urandom(8), t - 50_000_000, t, status_code=2)
    req = otlp_trace_request([({"service.name": service}, [span])])
    r = post_otlp_traces(lookout, req.SerializeToString())
    assert r.status_code == 200, r.text
    hex_id = trace_id.hex()
    wait_until(lambda: any(s["traceId"] == hex_id for s in lookout.api_get(
        "/api/v1/traces", {"service": service, "error": "true"})), 15, "the failing trace")
    return hex_id


DING_RULES = """\
    groups:
      - name: chat
        rules:
          - alert: PaymentsErrors
            expr: chat_errors{job="pay"} > 1
            for: 0s
            labels: { severity: critical, at_mobiles: "13900000002" }
            annotations: { summary: "{{ $labels.service }} errors at {{ $value }}" }
"""


def test_dingtalk_signed_markdown_mentions_links_and_resolved(lookout_factory, robot_server):
    a = robot_server.dingtalk(secret="SEC" + os.urandom(16).hex(), keyword="告警")
    b = robot_server.dingtalk()  # unsigned, send_resolved false
    lookout = start_lookout(lookout_factory, DING_RULES, {
        "route": route("chat"),
        "receivers": [{"name": "chat", "dingtalk_configs": [
            {"url": a.url, "secret": a.secret, "keyword": "告警",
             "at_mobiles": ["13800000001"], "at_user_ids": ["ops-lead"], "send_resolved": True},
            {"url": b.url, "send_resolved": False},
        ]}],
    })
    trace_id = push_failing_trace(lookout, "payments")
    series = {"__name__": "chat_errors", "job": "pay", "service": "payments", "instance": "pay-1"}
    write(lookout, [(series, 7)])

    msg = a.wait_accepted(1)[0]
    assert a.rejected == [], a.summary()  # signature, timestamp, keyword, size, shape all fine
    assert set(msg.query) == {"access_token", "timestamp", "sign"}
    assert abs(int(msg.query["timestamp"]) / 1000 - msg.time) < 60
    assert msg.msgtype == "markdown"
    title, text = msg.body["markdown"]["title"], msg.body["markdown"]["text"]
    assert "PaymentsErrors" in title, title
    for want in ("PaymentsErrors", "critical", "payments errors at 7", "service", "payments",
                 "instance", "pay-1", "7"):
        assert want in text, f"{want!r} not in the message:\n{text}"
    assert "告警" in msg.content
    alerts = lookout.api_get("/api/v1/alerts")["alerts"]
    assert len(alerts) == 1 and alerts[0]["state"] == "firing", alerts
    assert any(f in text for f in since_forms(alerts[0]["activeAt"])), (
        f"start time ({since_forms(alerts[0]['activeAt'])}) not in:\n{text}")
    # Links to the UI under external_url: the query over its window, the failing trace and
    # the failing-traces search, the service's error logs.
    links = links_in(text)
    explore = [q for p, q in links if p == "/explore"]
    assert explore and explore[0]["query"] == 'chat_errors{job="pay"} > 1', links
    assert int(explore[0]["start"]) < int(explore[0]["end"]), explore
    assert ("/traces/" + trace_id, {}) in links, links
    assert any(p == "/traces" and q.get("service") == "payments" and q.get("error") == "true"
               for p, q in links), links
    assert any(p == "/logs" and "service:payments" in q.get("query", "") for p, q in links), links
    # @mentions from the config and from the alert's `at_mobiles` label, in `at` and the text.
    at = msg.body["at"]
    assert {"13800000001", "13900000002"} <= set(at["atMobiles"]), at
    assert "ops-lead" in at.get("atUserIds", []), at
    assert at.get("isAtAll", False) is False
    for who in ("@13800000001", "@13900000002", "@ops-lead"):
        assert who in text, f"{who} not in the message:\n{text}"

    first_b = b.wait_accepted(1)[0]
    assert "sign" not in first_b.query and "PaymentsErrors" in first_b.content

    # The series stops (a staleness marker, as Prometheus writes when a target goes away):
    # the alert resolves; only the robot with send_resolved hears of it.
    write(lookout, [(series, STALE_NAN)])
    resolved = a.wait_accepted(2)[1]
    assert "PaymentsErrors" in resolved.content and "resolved" in resolved.content.lower(), (
        resolved.content)
    assert a.rejected == [], a.summary()
    time.sleep(3)  # longer than group_interval: any notice to b would have gone out by now
    assert len(b.received) == 1, b.summary()
    assert len(a.accepted) == 2, a.summary()
    att = attempts_of(lookout, "chat", "dingtalk[0]")
    assert [(x["outcome"], x["attempt"]) for x in att] == [("success", 1), ("success", 1)], att
    assert att[0]["receiver"] == "chat" and att[0]["messages"] == 1 and att[0]["alerts"] == 1
    assert att[0]["digest"] is False and att[0]["status_code"] == 200, att[0]
    assert len(attempts_of(lookout, "chat", "dingtalk[1]")) == 1
    assert_secrets_hidden(lookout, [a.token, a.secret, b.token])


WECOM_RULES = """\
    groups:
      - name: shards
        rules:
          - alert: ShardLag
            expr: chat_shard_lag > 0
            labels: { severity: warning, wecom_mentioned_list: "li" }
            annotations: { summary: "分片 {{ $labels.shard }} 延迟过高，请检查复制链路（{{ $value }} 秒）" }
"""
SHARDS = [f"sh{i:02d}q" for i in range(60)]


def test_long_groups_split_under_each_platforms_limit(lookout_factory, robot_server):
    md = robot_server.wecom()
    tx = robot_server.wecom()
    dd = robot_server.dingtalk()
    lookout = start_lookout(lookout_factory, WECOM_RULES, {
        "route": route("shards"),
        "receivers": [{"name": "shards", "wecom_configs": [
            {"url": md.url, "msg_type": "markdown", "language": "zh"},
            {"url": tx.url, "msg_type": "text", "mentioned_list": ["wang"],
             "mentioned_mobile_list": ["13800000003"]},
        ], "dingtalk_configs": [{"url": dd.url}]}],
    })
    write(lookout, [({"__name__": "chat_shard_lag", "shard": s}, 30 + i)
                    for i, s in enumerate(SHARDS)])

    # WeCom limits the content (4,096 bytes of markdown, 2,048 of text), DingTalk the whole
    # JSON body (20,000 bytes).
    for robot, kind, integ, size, limit in (
        (md, "markdown", "wecom[0]", lambda m: len(m.content.encode()), 4096),
        (tx, "text", "wecom[1]", lambda m: len(m.content.encode()), 2048),
        (dd, "markdown", "dingtalk[0]", lambda m: len(m.raw), 20_000),
    ):
        def all_there(robot=robot):
            seen = "\n".join(m.content for m in robot.accepted)
            return robot.rejected or all(s in seen for s in SHARDS)
        robot.wait(all_there, 30, f"all {len(SHARDS)} alerts at {integ}")
        assert robot.rejected == [], robot.summary()
        msgs = robot.accepted
        assert len(msgs) >= 2, f"{len(SHARDS)} alerts should not fit in one {integ} message"
        for m in msgs:
            assert m.msgtype == kind
            assert size(m) <= limit
            assert "\ufffd" not in m.content
        # Split at alert boundaries: every alert whole in exactly one message, CJK intact.
        for i, s in enumerate(SHARDS):
            holders = [m for m in msgs if s in m.content]
            assert len(holders) == 1, f"{s} in {len(holders)} {integ} messages"
            assert f"分片 {s} 延迟过高，请检查复制链路（{30 + i} 秒）" in holders[0].content
        att = wait_until(lambda: attempts_of(lookout, "shards", integ), 5, f"{integ}'s attempt")
        assert [(x["outcome"], x["messages"], x["alerts"]) for x in att] == [
            ("success", len(msgs), len(SHARDS))], att
    # The text notification mentions (once, in its first message) the users of the config
    # and of the alerts' `wecom_mentioned_list` label, and the config's mobiles.
    first = tx.accepted[0].body["text"]
    assert {"wang", "li"} <= set(first.get("mentioned_list", [])), first
    assert "13800000003" in first.get("mentioned_mobile_list", []), first
    assert_secrets_hidden(lookout, [md.key, tx.key, dd.token])


ONE_RULE = """\
    groups:
      - name: one
        rules:
          - alert: QueueStuck
            expr: chat_queue_depth > 100
            labels: { severity: critical }
            annotations: { summary: "queue {{ $labels.queue }} at {{ $value }}" }
"""


def test_transient_failures_are_retried_and_recorded(lookout_factory, robot_server):
    ding = robot_server.dingtalk(secret="SEC" + os.urandom(8).hex())
    wc = robot_server.wecom()
    ding.script_failures([500, "drop"])
    wc.fail_next(1, 503)
    lookout = start_lookout(lookout_factory, ONE_RULE, {
        "route": route("ops"),
        "receivers": [{"name": "ops",
                       "dingtalk_configs": [{"url": ding.url, "secret": ding.secret}],
                       "wecom_configs": [{"url": wc.url}]}],
    })
    write(lookout, [({"__name__": "chat_queue_depth", "queue": "orders"}, 250)])
    ding.wait_accepted(1)
    wc.wait_accepted(1)
    assert [(r.outcome, r.http_status) for r in ding.received] == [
        ("transient", 500), ("transient", None), ("accepted", 200)], ding.summary()
    assert [(r.outcome, r.http_status) for r in wc.received] == [
        ("transient", 503), ("accepted", 200)], wc.summary()
    # Each retry signs again with a fresh timestamp.
    assert all(r.query.get("sign") for r in ding.received)

    def recorded():
        d = attempts_of(lookout, "ops", "dingtalk[0]")
        w = attempts_of(lookout, "ops", "wecom[0]")
        return (d, w) if len(d) == 3 and len(w) == 2 else None
    d, w = wait_until(recorded, 10, "the attempts in /api/v1/notifications")
    assert [(x["attempt"], x["outcome"], x["status_code"]) for x in d] == [
        (1, "retrying", 500), (2, "retrying", None), (3, "success", 200)], d
    assert [(x["attempt"], x["outcome"], x["status_code"]) for x in w] == [
        (1, "retrying", 503), (2, "success", 200)], w
    gap = rfc3339(d[1]["time"]) - rfc3339(d[0]["time"])
    assert 0.3 <= gap <= 5, f"first retry {gap}s after the first try (backoff starts at 500 ms)"
    for integ, retrying in (("dingtalk[0]", 2), ("wecom[0]", 1)):
        assert counter(lookout, "lookout_notifications_total", receiver="ops",
                       integration=integ, outcome="retrying") == retrying
        assert counter(lookout, "lookout_notifications_total", receiver="ops",
                       integration=integ, outcome="success") == 1
    time.sleep(3)  # past group_interval: a delivered notification is not sent again
    assert len(ding.accepted) == 1 and len(wc.accepted) == 1
    assert_secrets_hidden(lookout, [ding.token, ding.secret, wc.key])
    # The platform's answer to the successful attempt (errcode 0) is recorded too.
    assert (d[2]["errcode"], w[1]["errcode"]) == (0, 0), (d[2], w[1])


def test_permanent_errors_reported_once_and_test_send(lookout_factory, robot_server):
    signed = robot_server.dingtalk(secret="SEC" + os.urandom(8).hex())
    keyword = robot_server.dingtalk(keyword="仅此关键词")
    good = robot_server.dingtalk(secret="SEC" + os.urandom(8).hex(), keyword="告警")
    bad_token = os.urandom(16).hex()
    bad_key = str(uuid.uuid4())
    wrong_secret = "SEC" + os.urandom(8).hex()
    broken = [
        {"url": f"{robot_server.base_url}/robot/send?access_token={bad_token}"},
        {"url": signed.url, "secret": wrong_secret},
        {"url": keyword.url},
    ]
    lookout = start_lookout(lookout_factory, ONE_RULE, {
        # group_interval long: within the test only the first flush happens, so every
        # request the fakes see after it would be a retry.
        "route": route("broken", group_interval="5m"),
        "receivers": [
            {"name": "broken", "dingtalk_configs": broken,
             "wecom_configs": [{"url": f"{robot_server.base_url}/cgi-bin/webhook/send?key={bad_key}"}]},
            {"name": "good", "dingtalk_configs": [
                {"url": good.url, "secret": good.secret, "keyword": "告警"}]},
        ],
    })
    write(lookout, [({"__name__": "chat_queue_depth", "queue": "payments"}, 500)])

    expected = {"dingtalk[0]": 300001, "dingtalk[1]": 310000, "dingtalk[2]": 310000,
                "wecom[0]": 93000}

    def all_failed():
        got = {i: attempts_of(lookout, "broken", i) for i in expected}
        return got if all(got.values()) else None
    got = wait_until(all_failed, 20, "a failed attempt per broken integration")
    time.sleep(4)  # retries at 0.5 s, 1 s, 2 s would all have happened by now
    by_token = [r for r in robot_server.unknown if r.query.get("access_token") == bad_token]
    by_key = [r for r in robot_server.unknown if r.query.get("key") == bad_key]
    assert len(by_token) == 1 and len(by_key) == 1, robot_server.unknown
    assert [r.errmsg[:14] for r in signed.received] == ["sign not match"], signed.summary()
    assert [r.errmsg for r in keyword.received] == ["keywords not in content"], keyword.summary()
    for integ, code in expected.items():
        att = attempts_of(lookout, "broken", integ)
        assert len(att) == 1, (integ, att)
        assert (att[0]["attempt"], att[0]["outcome"], att[0]["errcode"]) == (1, "failed", code), att
        assert att[0]["status_code"] == 200 and att[0]["errmsg"], att
        assert counter(lookout, "lookout_notifications_total", receiver="broken",
                       integration=integ, outcome="failed") == 1
        assert counter(lookout, "lookout_notifications_total", receiver="broken",
                       integration=integ, outcome="retrying") == 0
    assert attempts_of(lookout, "broken", "dingtalk[2]")[0]["errmsg"] == "keywords not in content"

    # Test-send: through every integration of the receiver, now.
    r = requests.post(f"{lookout.http}/api/v1/receivers/good/test", timeout=30)
    assert r.status_code == 200, r.text
    msg = good.wait_accepted(1, timeout=5)[0]
    assert good.rejected == [] and msg.msgtype == "markdown" and "告警" in msg.content
    bad = requests.post(f"{lookout.http}/api/v1/receivers/broken/test", timeout=30)
    assert bad.status_code == 502, bad.text
    for code in ("300001", "310000", "93000"):
        assert code in bad.text, bad.text
    assert requests.post(f"{lookout.http}/api/v1/receivers/nobody/test", timeout=10).status_code == 404
    assert_secrets_hidden(lookout, [bad_token, bad_key, wrong_secret, signed.token, keyword.token,
                                    good.token, good.secret], [r.text, bad.text])


BURST_RULES = """\
    groups:
      - name: burst
        rules:
          - alert: HostDown
            expr: chat_host_up == 0
            labels: { severity: critical }
            annotations: { summary: "host {{ $labels.host }} is down" }
"""
HOSTS = [f"host{i}x" for i in range(8)]


def test_rate_limited_robot_gets_digests_and_is_never_muted(lookout_factory, robot_server):
    # The fake enforces exactly the limit Lookout is told: one message too many would be
    # answered 130101 and mute the robot for 10 minutes.
    ding = robot_server.dingtalk(rate_limit=3, rate_window=10)
    lookout = start_lookout(lookout_factory, BURST_RULES, {
        "route": route("hosts", group_by=("alertname", "host")),
        "receivers": [{"name": "hosts", "dingtalk_configs": [
            {"url": ding.url, "rate_limit": {"messages": 3, "per": "10s"}}]}],
    })
    # One host down per evaluation: the groups fall due one after the other, the first three
    # fill the window and the rest have to wait for it.
    for h in HOSTS:
        write(lookout, [({"__name__": "chat_host_up", "host": h}, 0)])
        wait_until(lambda h=h: any(a["labels"].get("host") == h and a["state"] == "firing"
                                   for a in lookout.api_get("/api/v1/alerts")["alerts"]),
                   10, f"{h} firing")

    def all_there_or_refused():
        seen = "\n".join(m.content for m in ding.accepted)
        return ding.rejected or all(h in seen for h in HOSTS)
    ding.wait(all_there_or_refused, 30, "all 8 alerts")
    assert ding.rejected == [], ding.summary()
    assert ding.max_in_window(10) <= 3, [round(r.time, 3) for r in ding.received]
    msgs = ding.accepted
    assert len(msgs) < len(HOSTS), "8 groups due within 10 s must be merged, not sent one by one"
    assert any(sum(h in m.content for h in HOSTS) > 1 for m in msgs), [m.content for m in msgs]
    # One attempt per group's notification; those merged into a digest say so.
    att = wait_until(lambda: len(attempts_of(lookout, "hosts", "dingtalk[0]")) == len(HOSTS)
                     and attempts_of(lookout, "hosts", "dingtalk[0]"), 5, "an attempt per group")
    assert all(x["outcome"] == "success" and x["alerts"] == 1 for x in att), att
    assert len({x["group_key"] for x in att}) == len(HOSTS), att
    digested = [x for x in att if x["digest"]]
    assert digested, att
    assert counter(lookout, "lookout_notifications_digested_total", receiver="hosts",
                   integration="dingtalk[0]") >= 1
