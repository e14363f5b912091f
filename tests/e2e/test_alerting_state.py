"""Alert state across restarts and reloads, and `lookout check-config` on broken alerting.

- SIGTERM and `kill -9` while an alert fires: after the restart the alert is still firing
  with its original `activeAt`, and its group is not notified a second time (repeat_interval
  is 1 h). "Not notified" is proven by a sentinel alert posted after the restarted rule has
  run twice: its group flushes after anything the restart could have caused.
- A pending alert's `for` clock survives a restart: the time it spent pending before still
  counts, the downtime does not (its `activeAt` moves later by the downtime), so it fires
  sooner than a whole `for` after the restart. (Prometheus starts clocks shorter than its
  10 min grace period over; the grace period for longer ones and the 1 h outage tolerance are
  unit-tested in alerter/src/rules/eval.rs, too slow for end-to-end tests.)
- Silences (active and expired) survive SIGTERM and `kill -9`, and still silence.
- `kill -HUP` and `POST /-/reload` after editing the rule file: the new rule appears, the
  removed one goes (its `ALERTS` series ends at once, with a staleness marker), the unchanged
  firing alert keeps firing without a second notification.
- A reload with a broken rule file answers an error naming the file and the problems, and
  the old rules keep running; a fixed file reloads again.
- `lookout check-config` prints every alerting and rule error as FILE:LINE: message, exit 1.
"""

from __future__ import annotations

import re
import signal
import subprocess
import time

import pytest
import requests

from helpers import lookout_bin, wait_until
from webhook import (  # noqa: F401 - webhook is a fixture
    alert_names,
    alerting_server,
    am_alert,
    am_alert_by_name,
    create_silence,
    delete_silence,
    evaluated_after,
    find_rule,
    list_silences,
    matcher,
    notifications,
    post_alerts,
    rfc3339,
    rule_alerts,
    rule_groups,
    set_gauge,
    webhook,
    webhook_receiver,
    write_rules,
)


def route(receiver: str, **extra) -> dict:
    return {"receiver": receiver, "group_by": ["alertname"], "group_wait": "1s",
            "group_interval": "1s", "repeat_interval": "1h", **extra}


def firing(server, name: str) -> list[dict]:
    return [a for a in rule_alerts(server, name) if a["state"] == "firing"]


def restart(server, how: str) -> float:
    """Restarts `server` (SIGTERM, or kill -9) and returns when it was back."""
    if how == "sigterm":
        server.restart()
    else:
        server.kill9()
        server.start()
    return time.time()


def prove_no_more_messages(server, webhook, receiver: str, since: float, rule: str) -> None:
    """Waits until `rule` ran twice after `since` (anything it re-sent is in the dispatcher
    by then), then posts a sentinel alert into a new group of the same route and waits for
    it: everything due before it has been delivered."""
    evaluated_after(server, rule, since + 1.0)
    r = post_alerts(server, [am_alert({"alertname": "Sentinel"})])
    assert r.status_code == 200, (r.status_code, r.text)
    webhook.wait_message(receiver, lambda m: alert_names(m) == ["Sentinel"])


# ---- restarts while firing --------------------------------------------------------------


@pytest.mark.parametrize("how", ["sigterm", "kill9"])
def test_restart_while_firing_does_not_notify_again(lookout_factory, webhook, how):
    rules = {"groups": [{"name": "state", "interval": "1s", "rules": [{
        "alert": "StillDown", "expr": "e2e_state_up == 0", "for": "0s",
        "labels": {"severity": "critical"},
    }]}]}
    alerting = {"route": route("st"), "receivers": [webhook_receiver("st", webhook)]}
    server = alerting_server(lookout_factory, {"state.yaml": rules}, alerting)
    set_gauge(server, "e2e_state_up", {"instance": "x"}, 0)

    webhook.wait_for("st", 1)
    (before,) = firing(server, "StillDown")
    # Pull the plug a second after Lookout recorded the delivery: a crash in the instant of
    # a delivery may deliver again (at least once, as Alertmanager), one "while firing" not.
    (sent,) = wait_until(
        lambda: [a for a in notifications(server, receiver="st") if a["outcome"] == "success"],
        timeout=5, what="the delivery recorded")
    evaluated_after(server, "StillDown", rfc3339(sent["time"]) + 1.0)

    back = restart(server, how)
    evaluated_after(server, "StillDown", back)
    (after,) = firing(server, "StillDown")
    assert after["activeAt"] == before["activeAt"], (before, after)
    assert after["labels"] == before["labels"], (before, after)
    # Prometheus does not persist when it last sent an alert: the first evaluation after a
    # restart sends it again, so Alertmanager (silences, inhibition, routing) has it at once.
    wait_until(lambda: am_alert_by_name(server, "StillDown"), timeout=5,
               what="StillDown in /api/v2/alerts again after the restart (the first evaluation "
                    "after a restart must hand it to the dispatcher)")

    prove_no_more_messages(server, webhook, "st", back, "StillDown")
    got = [alert_names(m) for m in webhook.messages("st")]
    assert got == [["StillDown"], ["Sentinel"]], f"after {how}: {webhook.messages('st')}"


# ---- a pending `for` clock ------------------------------------------------------------------

FOR_S = 14
PENDING_BEFORE_RESTART_S = 5


def test_pending_for_clock_survives_restart_without_counting_the_downtime(lookout_factory):
    rules = {"groups": [{"name": "burn", "interval": "1s", "rules": [{
        "alert": "SlowBurn", "expr": "e2e_burn > 1", "for": f"{FOR_S}s",
        "labels": {"severity": "warning"},
    }]}]}
    server = alerting_server(lookout_factory, {"burn.yaml": rules})
    set_gauge(server, "e2e_burn", {"job": "x"}, 5)
    (pending,) = wait_until(
        lambda: [a for a in rule_alerts(server, "SlowBurn") if a["state"] == "pending"],
        timeout=10, what="SlowBurn pending",
    )
    active_at = rfc3339(pending["activeAt"])
    # let the clock run a while, so that keeping it is visible
    wait_until(lambda: time.time() >= active_at + PENDING_BEFORE_RESTART_S, timeout=10,
               what="the pending clock to run")

    down = time.time()
    back = restart(server, "sigterm")
    assert back < active_at + FOR_S - 4, f"restart took until {back - active_at:.1f}s after activeAt"
    evaluated_after(server, "SlowBurn", back)
    (again,) = rule_alerts(server, "SlowBurn")
    assert again["state"] == "pending", again
    restored = rfc3339(again["activeAt"])
    # moved later by the downtime: from the last evaluation before the restart to the first
    # after it, each within one 1 s interval of `down` and `back`
    assert 0 < restored - active_at <= (back - down) + 2.5, (pending, again, down, back)
    for_state = server.query_vector('ALERTS_FOR_STATE{alertname="SlowBurn"}')
    assert [abs(v - restored) < 1.0 for v in for_state.values()] == [True], (for_state, restored)

    (fired,) = wait_until(lambda: firing(server, "SlowBurn"), timeout=FOR_S + 10, what="SlowBurn firing")
    seen = time.time()
    assert fired["activeAt"] == again["activeAt"], (again, fired)
    assert seen >= restored + FOR_S - 0.05, f"fired {seen - restored:.1f}s after activeAt, for {FOR_S}s"
    assert seen <= restored + FOR_S + 2.5, f"fired {seen - restored:.1f}s after activeAt, for {FOR_S}s"
    assert seen < back + FOR_S - 1, (
        f"fired {seen - back:.1f}s after the restart, for {FOR_S}s: the clock started over"
    )


# ---- silences -----------------------------------------------------------------------------


def test_silences_survive_restart_and_kill9(lookout_factory, webhook):
    alerting = {"route": route("sil"), "receivers": [webhook_receiver("sil", webhook)]}
    server = alerting_server(lookout_factory, alerting=alerting)
    active = create_silence(server, [matcher("alertname", "Quiet")], comment="survives restarts")
    expired = create_silence(server, [matcher("alertname", "WasQuiet")])
    assert delete_silence(server, expired).status_code == 200
    before = {s["id"]: s for s in list_silences(server)}
    assert {k: s["status"]["state"] for k, s in before.items()} == {active: "active", expired: "expired"}

    for how in ("sigterm", "kill9"):
        restart(server, how)
        after = {s["id"]: s for s in list_silences(server)}
        assert after == before, f"after {how}:\n{before}\n{after}"

    r = post_alerts(server, [am_alert({"alertname": "Quiet"}), am_alert({"alertname": "WasQuiet"})])
    assert r.status_code == 200, (r.status_code, r.text)
    quiet = am_alert_by_name(server, "Quiet")
    assert quiet["status"]["state"] == "suppressed" and quiet["status"]["silencedBy"] == [active], quiet
    webhook.wait_message("sil", lambda m: alert_names(m) == ["WasQuiet"])
    assert post_alerts(server, [am_alert({"alertname": "Sentinel"})]).status_code == 200
    webhook.wait_message("sil", lambda m: alert_names(m) == ["Sentinel"])
    assert sorted(n for m in webhook.messages("sil") for n in alert_names(m)) == ["Sentinel", "WasQuiet"]


# ---- reloads ---------------------------------------------------------------------------------

RULES_V1 = {"groups": [{"name": "reload", "interval": "1s", "rules": [
    {"alert": "Keep", "expr": "e2e_reload_value > 1", "for": "0s", "labels": {"severity": "warning"}},
    {"alert": "Gone", "expr": "e2e_reload_value > 0", "for": "0s", "labels": {"severity": "info"}},
]}]}

RULES_V2 = {"groups": [{"name": "reload", "interval": "1s", "rules": [
    {"alert": "Keep", "expr": "e2e_reload_value > 1", "for": "0s", "labels": {"severity": "warning"}},
    {"alert": "New", "expr": "e2e_reload_value > 2", "for": "0s", "labels": {"severity": "critical"}},
    {"record": "e2e:reload_value:max", "expr": "max(e2e_reload_value)"},
]}]}

# Two mistakes in one file: a PromQL syntax error and a bad duration.
RULES_BROKEN = """\
groups:
  - name: reload
    interval: 1s
    rules:
      - alert: Keep
        expr: e2e_reload_value > 1
        for: 0s
      - alert: BrokenExpr
        expr: sum(rate(e2e_reload_value[5m])
      - alert: BrokenFor
        expr: e2e_reload_value > 1
        for: soonish
"""


def reload(server, how: str) -> requests.Response | None:
    if how == "sighup":
        server.proc.send_signal(signal.SIGHUP)
        return None
    return requests.post(f"{server.http}/-/reload", timeout=30)


def rule_names(server) -> list[str]:
    return [r["name"] for g in rule_groups(server) for r in g["rules"]]


@pytest.mark.parametrize("how", ["sighup", "http"])
def test_reload_adds_and_removes_rules_keeping_firing_state(lookout_factory, webhook, how):
    alerting = {"route": route("rl"), "receivers": [webhook_receiver("rl", webhook)]}
    server = alerting_server(lookout_factory, {"reload.yaml": RULES_V1}, alerting)
    set_gauge(server, "e2e_reload_value", {"job": "x"}, 5)
    webhook.wait_message("rl", lambda m: alert_names(m) == ["Keep"])
    webhook.wait_message("rl", lambda m: alert_names(m) == ["Gone"])
    (keep_before,) = firing(server, "Keep")

    write_rules(server, "reload.yaml", RULES_V2)
    t_reload = time.time()
    r = reload(server, how)
    if r is not None:
        assert r.status_code == 200, (r.status_code, r.text)
    wait_until(lambda: rule_names(server) == ["Keep", "New", "e2e:reload_value:max"], timeout=10,
               what=f"the edited rules after {how}")
    assert server.proc.poll() is None, "the server exited on reload"
    evaluated_after(server, "Keep", t_reload)
    (keep_after,) = firing(server, "Keep")
    assert keep_after["activeAt"] == keep_before["activeAt"], (keep_before, keep_after)
    assert rule_alerts(server, "Gone") == []
    # the removed rule's series end at the reload (staleness markers), not 5 min later
    for metric in ("ALERTS", "ALERTS_FOR_STATE"):
        wait_until(lambda m=metric: server.query_vector(f'{m}{{alertname="Gone"}}') == {}, timeout=5,
                   what=f"{metric} of the removed rule Gone stale after the reload")
    webhook.wait_message("rl", lambda m: alert_names(m) == ["New"])
    wait_until(lambda: server.query_vector("e2e:reload_value:max")
               == {frozenset({"__name__": "e2e:reload_value:max"}.items()): 5.0},
               timeout=5, what="the new recording rule's series")

    prove_no_more_messages(server, webhook, "rl", t_reload, "Keep")
    keep_msgs = [m for m in webhook.messages("rl") if alert_names(m) == ["Keep"]]
    assert len(keep_msgs) == 1, f"Keep notified again after {how}: {webhook.messages('rl')}"


@pytest.mark.parametrize("how", ["sighup", "http"])
def test_broken_reload_keeps_old_rules(lookout_factory, how):
    server = alerting_server(lookout_factory, {"reload.yaml": RULES_V1})
    set_gauge(server, "e2e_reload_value", {"job": "x"}, 5)
    (keep_before,) = wait_until(lambda: firing(server, "Keep"), timeout=10, what="Keep firing")

    write_rules(server, "reload.yaml", RULES_BROKEN)
    t_reload = time.time()
    r = reload(server, how)
    if r is not None:
        assert r.status_code == 500, (r.status_code, r.text)
        text, low = r.text, r.text.lower()
        assert "reload.yaml" in text, text
        assert "brokenexpr" in low or "sum(rate(" in low or "parse" in low, f"PromQL error not named: {text}"
        assert "soonish" in low or "duration" in low, f"duration error not named: {text}"
    # The old rules keep running, unchanged.
    evaluated_after(server, "Keep", t_reload + 1.0)
    assert server.proc.poll() is None, "the server exited on a broken reload"
    assert rule_names(server) == ["Keep", "Gone"]
    (keep_after,) = firing(server, "Keep")
    assert keep_after["activeAt"] == keep_before["activeAt"]
    assert find_rule(server, "Gone")["state"] == "firing"
    if how == "sighup":
        assert "reload.yaml" in server.log_path.read_text(errors="replace"), "the failed reload is not logged"

    # Fixed, it reloads again.
    write_rules(server, "reload.yaml", RULES_V2)
    r = reload(server, how)
    if r is not None:
        assert r.status_code == 200, (r.status_code, r.text)
    wait_until(lambda: rule_names(server) == ["Keep", "New", "e2e:reload_value:max"], timeout=10,
               what="the fixed rules")


# ---- check-config ------------------------------------------------------------------------

BAD_CONFIG = """\
server:
  http_addr: 127.0.0.1:19801
global:
  evaluation_interval: 1s
rule_files:
  - rules/*.yaml
alerting:
  route:
    receiver: oncall
    group_wait: 5 minutes
    routes:
      - matchers: ['severity="critical"']
        receiver: pager
      - matchers: ['team=~"(db"']
        receiver: oncall
  receivers:
    - name: oncall
      webhook_configs:
        - url: ftp://hooks.example/x
"""

BAD_RULES = """\
groups:
  - name: broken
    rules:
      - alert: BadExpr
        expr: sum(rate(e2e_x[5m])
        labels: {severity: warning}
      - alert: BadFor
        expr: up == 0
        for: soonish
      - alert: BadTemplate
        expr: up == 0
        annotations:
          summary: "{{ $labels.instance "
      - record: "bad metric name"
        expr: up
"""

# (file, lines where the error may be reported (the item, or the offending key), words
# of which the message must hold at least one).
EXPECTED_ERRORS = [
    ("lookout.yaml", range(10, 11), ("group_wait",)),
    ("lookout.yaml", range(12, 14), ("pager",)),
    ("lookout.yaml", range(14, 16), ("team", "matchers", "(db")),
    ("lookout.yaml", range(18, 20), ("url",)),
    ("bad.yaml", range(4, 6), ("badexpr", "expr", "parse")),
    ("bad.yaml", range(7, 10), ("soonish", "for", "duration")),
    ("bad.yaml", range(10, 14), ("badtemplate", "template", "summary")),
    ("bad.yaml", range(14, 16), ("bad metric name", "record")),
]


def test_check_config_reports_every_alerting_and_rule_error(tmp_path):
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "bad.yaml").write_text(BAD_RULES)
    config = tmp_path / "lookout.yaml"
    config.write_text(BAD_CONFIG)
    p = subprocess.run([lookout_bin(), "check-config", str(config)], capture_output=True, text=True,
                       timeout=30, cwd=tmp_path)
    out = p.stdout + p.stderr
    assert p.returncode == 1, (p.returncode, out)
    located = []
    for line in out.splitlines():
        m = re.match(r"^(?P<file>\S+?):(?P<line>\d+):\s*(?P<msg>.+)$", line.strip())
        if m:
            located.append((m["file"], int(m["line"]), m["msg"].lower()))
    missing = []
    for fname, lines, words in EXPECTED_ERRORS:
        if not any(f.endswith(fname) and n in lines and any(w in msg for w in words)
                   for f, n, msg in located):
            missing.append(f"{fname}:{lines.start}-{lines.stop - 1} with one of {words}")
    assert not missing, "errors not reported as FILE:LINE: message:\n" + "\n".join(missing) + f"\n--- output ---\n{out}"

    # The good parts alone pass.
    (tmp_path / "rules" / "bad.yaml").write_text("groups: []\n")
    good = BAD_CONFIG.replace("group_wait: 5 minutes", "group_wait: 5m").replace(
        "receiver: pager", "receiver: oncall").replace('team=~"(db"', 'team=~"db"').replace(
        "ftp://hooks.example/x", "http://hooks.example/x")
    config.write_text(good)
    p = subprocess.run([lookout_bin(), "check-config", str(config)], capture_output=True, text=True,
                       timeout=30, cwd=tmp_path)
    assert p.returncode == 0, (p.returncode, p.stdout + p.stderr)
