"""Alert notifications to chat robots: Lookout evaluating rules over remote-written samples
and delivering to fake DingTalk and WeCom robots (`robots.py`) that answer as the platforms do.

The first tests check the fakes themselves (no Lookout involved), so a fake that accepts
what the real platform refuses cannot make the Lookout tests pass.
"""

from __future__ import annotations

import json
import socket
import time

import pytest
import requests

from robots import RobotServer, dingtalk_sign, robot_server  # noqa: F401 - fixture

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
