"""Alerting end to end: rules evaluated every second by a real `lookout serve`, alerts routed
to webhook receivers (a plain HTTP server recording Alertmanager's webhook JSON) and to email
(aiosmtpd), and Lookout's Prometheus and Alertmanager APIs read back as those tools serve them.

Covered: `/api/v1/rules` and `/api/v1/alerts` (pending, then firing after `for`, `activeAt`,
value strings, health and `lastError`), `ALERTS` / `ALERTS_FOR_STATE`, recording rules
feeding later rules of their group, a log rule (`logs_expr`) over lines pushed with Loki and
OTLP, the route tree (matchers, legacy `match`, `continue`), `group_by` / `group_wait` /
`group_interval` / `repeat_interval` timing, inhibition, silences (create, list, get,
suppress, expire, bad bodies), alerts posted by an "external Prometheus", the webhook JSON
(v4) field by field, email (headers, text and HTML parts, links, escaping) and the
notification counters in `/metrics` and `/api/v1/notifications`.

Timers are short (evaluation every 1 s, group_wait 1 s, group_interval 2-3 s) and every
wait polls; "nothing else arrived" is proven by a later sentinel notification, never by
sleeping.
"""

from __future__ import annotations

import html as html_mod
import re
import time
from urllib.parse import parse_qs, unquote_plus, urlparse

from helpers import (
    otlp_log_record,
    otlp_logs_request,
    post_otlp_logs,
    push_loki,
    self_metrics,
    wait_until,
)
from smtp import smtp_sink  # noqa: F401 - fixture
from webhook import (  # noqa: F401 - webhook is a fixture
    ZERO_TIME,
    alert_names,
    alerting_server,
    am_alert,
    am_alert_by_name,
    create_silence,
    delete_silence,
    find_rule,
    fingerprint,
    get_alerts,
    get_silence,
    list_silences,
    matcher,
    notifications,
    post_alerts,
    post_silence,
    rfc3339,
    rule_alerts,
    rule_groups,
    set_gauge,
    silence_body,
    webhook,
    webhook_receiver,
)

EXTERNAL_URL = "http://lookout.example:9800"
S_NS = 1_000_000_000


def route(receiver: str, group_by=("alertname",), group_wait="1s", group_interval="2s",
          repeat_interval="1h", **extra) -> dict:
    return {"receiver": receiver, "group_by": list(group_by), "group_wait": group_wait,
            "group_interval": group_interval, "repeat_interval": repeat_interval, **extra}


def metric_sum(server, name: str, **want_labels) -> float:
    """Sum of the samples of `name` in `/metrics` whose labels include `want_labels`."""
    return sum(
        v for lbls, v in self_metrics(server, name).items()
        if all(dict(lbls).get(k) == val for k, val in want_labels.items())
    )


# ---- rules and their APIs ----------------------------------------------------------------

API_RULES = {
    "groups": [{
        "name": "api",
        "interval": "1s",
        "rules": [
            {"record": "e2e:demo_value:sum", "expr": "sum by (service) (e2e_demo_value)"},
            {
                "alert": "DemoHigh",
                "expr": "e2e:demo_value:sum > 10",
                "for": "3s",
                "labels": {"severity": "warning"},
                "annotations": {"summary": "{{ $labels.service }} at {{ $value }}"},
            },
            {
                # Parses, but fails at every evaluation: both sides hold two series with the
                # same (empty) match group, which PromQL refuses (many-to-many matching).
                "alert": "DemoBroken",
                "expr": "e2e_demo_value * ignoring(service) e2e_demo_value",
                "labels": {"severity": "info"},
            },
        ],
    }],
}

DEMO_LABELS = {"alertname": "DemoHigh", "service": "a", "severity": "warning"}


def test_rules_and_alerts_api_pending_firing_resolved(lookout_factory):
    server = alerting_server(lookout_factory, {"api.yaml": API_RULES})
    t0 = time.time()
    set_gauge(server, "e2e_demo_value", {"service": "a"}, 20)
    set_gauge(server, "e2e_demo_value", {"service": "b"}, 3)

    # Pending first: `for: 3s` has not passed.
    (pending,) = wait_until(
        lambda: [a for a in rule_alerts(server, "DemoHigh") if a["state"] == "pending"],
        timeout=10, what="DemoHigh pending",
    )
    active_at = rfc3339(pending["activeAt"])
    assert t0 - 1.5 <= active_at <= time.time(), (t0, pending)
    assert pending["labels"] == DEMO_LABELS, pending
    assert pending["annotations"] == {"summary": "a at 20"}, pending
    # Prometheus prints the value with Go's strconv.FormatFloat(v, 'e', -1, 64).
    assert pending["value"] == "2e+01", pending

    pending_series = {**DEMO_LABELS, "__name__": "ALERTS", "alertstate": "pending"}
    wait_until(
        lambda: server.query_vector('ALERTS{alertname="DemoHigh",alertstate="pending"}')
        == {frozenset(pending_series.items()): 1.0},
        timeout=5, what="ALERTS{alertstate=pending} while pending",
    )

    groups = rule_groups(server)
    (group,) = [g for g in groups if g["name"] == "api"]
    assert group["file"].endswith("api.yaml"), group
    assert group["interval"] == 1, group
    assert isinstance(group["evaluationTime"], (int, float)) and group["evaluationTime"] >= 0, group
    assert rfc3339(group["lastEvaluation"]) >= t0 - 1.5, group
    assert [r["name"] for r in group["rules"]] == ["e2e:demo_value:sum", "DemoHigh", "DemoBroken"]
    record, high, broken = group["rules"]
    assert record["type"] == "recording", record
    assert record["query"] == "sum by (service) (e2e_demo_value)", record
    assert record["health"] == "ok", record
    assert rfc3339(record["lastEvaluation"]) >= t0 - 1.5, record
    assert high["type"] == "alerting", high
    assert high["query"] == "e2e:demo_value:sum > 10", high
    assert high["duration"] == 3, high
    assert high["keepFiringFor"] == 0, high
    assert high["labels"] == {"severity": "warning"}, high
    assert high["annotations"] == {"summary": "{{ $labels.service }} at {{ $value }}"}, high
    assert high["health"] == "ok" and not high.get("lastError"), high
    assert high["state"] in ("pending", "firing"), high
    assert [a["labels"] for a in high["alerts"]] == [DEMO_LABELS], high
    assert broken["type"] == "alerting", broken
    assert broken["health"] == "err", broken
    assert isinstance(broken["lastError"], str) and broken["lastError"].strip(), broken
    assert broken["state"] == "inactive" and broken["alerts"] == [], broken

    # `type` filters as Prometheus's.
    only_alerts = [r["name"] for g in rule_groups(server, type="alert") for r in g["rules"]]
    assert only_alerts == ["DemoHigh", "DemoBroken"], only_alerts
    only_records = [r["name"] for g in rule_groups(server, type="record") for r in g["rules"]]
    assert only_records == ["e2e:demo_value:sum"], only_records

    # Firing once `for` has passed, with the same activeAt, and not before.
    (firing,) = wait_until(
        lambda: [a for a in rule_alerts(server, "DemoHigh") if a["state"] == "firing"],
        timeout=10, what="DemoHigh firing",
    )
    seen_firing = time.time()
    assert firing["activeAt"] == pending["activeAt"], (pending, firing)
    assert seen_firing - active_at >= 3 - 0.05, (active_at, seen_firing)
    assert seen_firing - active_at <= 3 + 3, f"fired {seen_firing - active_at:.1f}s after activeAt"
    assert find_rule(server, "DemoHigh")["state"] == "firing"

    firing_series = {**DEMO_LABELS, "__name__": "ALERTS", "alertstate": "firing"}
    wait_until(
        lambda: server.query_vector('ALERTS{alertname="DemoHigh",alertstate="firing"}')
        == {frozenset(firing_series.items()): 1.0},
        timeout=5, what="ALERTS{alertstate=firing}",
    )
    for_state = server.query_vector('ALERTS_FOR_STATE{alertname="DemoHigh"}')
    want_key = frozenset({**DEMO_LABELS, "__name__": "ALERTS_FOR_STATE"}.items())
    assert list(for_state) == [want_key], for_state
    assert abs(for_state[want_key] - active_at) < 1.0, (for_state, active_at)

    # The recording rule wrote its series (and DemoHigh read it in the same group).
    assert server.query_vector("e2e:demo_value:sum") == {
        frozenset({"__name__": "e2e:demo_value:sum", "service": "a"}.items()): 20.0,
        frozenset({"__name__": "e2e:demo_value:sum", "service": "b"}.items()): 3.0,
    }
    # Only DemoHigh{service="a"} is active.
    listed = server.api_get("/api/v1/alerts")["alerts"]
    assert [a["labels"] for a in listed] == [DEMO_LABELS], listed

    # Rule group self-metrics (rule_group is "file;group" as in Prometheus).
    evals = {dict(k)["rule_group"]: v for k, v in self_metrics(server, "lookout_rule_evaluations_total").items()}
    (key,) = [k for k in evals if k.endswith(";api")]
    assert key.split(";")[0].endswith("api.yaml"), key
    assert evals[key] >= 3, evals
    failures = self_metrics(server, "lookout_rule_evaluation_failures_total")
    assert failures.get(frozenset({"rule_group": key}.items()), 0) >= 1, failures
    interval = self_metrics(server, "lookout_rule_group_interval_seconds")
    assert interval.get(frozenset({"rule_group": key}.items())) == 1.0, interval
    assert frozenset({"rule_group": key}.items()) in self_metrics(
        server, "lookout_rule_group_last_duration_seconds"
    )

    # Resolved: gone from the alerts list, the rule inactive.
    set_gauge(server, "e2e_demo_value", {"service": "a"}, 0)
    wait_until(lambda: rule_alerts(server, "DemoHigh") == [], timeout=10, what="DemoHigh resolved")
    assert find_rule(server, "DemoHigh")["state"] == "inactive"


# ---- a log rule ----------------------------------------------------------------------------

LOG_WINDOW_S = 8
LOG_QUERY = "service:e2e-payments AND severity>=error"


def log_rule(name: str, threshold: int) -> dict:
    return {
        "alert": name,
        "logs_expr": {"query": LOG_QUERY, "window": f"{LOG_WINDOW_S}s", "threshold": threshold},
        "for": "0s",
        "labels": {"severity": "warning", "service": "e2e-payments"},
        "annotations": {"summary": "{{ $value }} error lines"},
    }


def test_log_rule_fires_on_error_lines_and_resolves(lookout_factory):
    rules = {"groups": [{"name": "logs", "interval": "1s", "rules": [
        log_rule("PaymentErrorLogs", 2),
        # Same count, threshold 3: "more than" is strict, so this one never fires.
        log_rule("PaymentErrorLogsStrict", 3),
    ]}]}
    server = alerting_server(lookout_factory, {"logs.yaml": rules})
    t_ns = time.time_ns()
    # Three matching lines (two over Loki, one over OTLP), and lines that must not count:
    # the right service at info, and errors of another service.
    r = push_loki(server, [
        ({"service_name": "e2e-payments", "level": "error"},
         [(t_ns, "payment declined: upstream reset"), (t_ns + 1000, "payment declined: timeout")]),
        ({"service_name": "e2e-payments", "level": "info"},
         [(t_ns + 2000, "payment ok"), (t_ns + 3000, "payment ok again")]),
        ({"service_name": "e2e-other", "level": "error"},
         [(t_ns + 4000, "other error one"), (t_ns + 5000, "other error two")]),
    ])
    assert r.status_code == 204, (r.status_code, r.text)
    req = otlp_logs_request([({"service.name": "e2e-payments"}, [
        otlp_log_record("payment failed: card processor 503", t_ns + 6000, 17, "ERROR"),
    ])])
    r = post_otlp_logs(server, req.SerializeToString())
    assert r.status_code == 200, (r.status_code, r.text)

    def fired_with_three():
        (group,) = [g for g in rule_groups(server) if g["name"] == "logs"]
        loose, strict = group["rules"]
        alerts = [a for a in loose["alerts"] if a["state"] == "firing"]
        if len(alerts) == 1 and alerts[0]["value"] == "3e+00":
            return loose, strict
        return None

    loose, strict = wait_until(fired_with_three, timeout=10, what="PaymentErrorLogs firing with 3")
    (alert,) = loose["alerts"]
    assert alert["labels"] == {
        "alertname": "PaymentErrorLogs", "severity": "warning", "service": "e2e-payments",
    }, alert
    assert alert["annotations"] == {"summary": "3 error lines"}, alert
    assert loose["health"] == "ok" and loose["state"] == "firing", loose
    # Evaluated at the same time over the same 3 lines: 3 is not more than 3.
    assert strict["lastEvaluation"] == loose["lastEvaluation"], (loose, strict)
    assert strict["health"] == "ok", strict
    assert strict["state"] == "inactive" and strict["alerts"] == [], strict
    assert [a["labels"]["alertname"] for a in server.api_get("/api/v1/alerts")["alerts"]] == [
        "PaymentErrorLogs"
    ]

    # Once the lines leave the window the alert resolves, not before.
    wait_until(lambda: rule_alerts(server, "PaymentErrorLogs") == [], timeout=LOG_WINDOW_S + 8,
               what="PaymentErrorLogs resolved")
    resolved_seen = time.time()
    assert resolved_seen >= t_ns / S_NS + LOG_WINDOW_S - 1.0, (
        f"resolved {resolved_seen - t_ns / S_NS:.1f}s after the lines, window {LOG_WINDOW_S}s"
    )
    assert find_rule(server, "PaymentErrorLogs")["state"] == "inactive"


# ---- the webhook payload -----------------------------------------------------------------


def test_webhook_payload_firing_then_resolved(lookout_factory, webhook):
    expr = "e2e_hook_up == 0"
    rules = {"groups": [{"name": "hook", "interval": "1s", "rules": [{
        "alert": "HookDown", "expr": expr, "for": "0s",
        "labels": {"severity": "critical"},
        "annotations": {"summary": "{{ $labels.instance }} is down", "description": "value {{ $value }}"},
    }]}]}
    alerting = {
        "route": route("hook", group_by=["alertname", "service"]),
        "receivers": [webhook_receiver("hook", webhook)],
    }
    server = alerting_server(lookout_factory, {"hook.yaml": rules}, alerting)
    set_gauge(server, "e2e_hook_up", {"instance": "db-1", "service": "db"}, 0)

    (first,) = webhook.wait_for("hook", 1)
    msg = first.body
    labels = {"alertname": "HookDown", "instance": "db-1", "service": "db", "severity": "critical"}
    annotations = {"summary": "db-1 is down", "description": "value 0"}
    assert first.headers.get("content-type", "").startswith("application/json"), first.headers
    assert msg["version"] == "4", msg
    assert msg["status"] == "firing", msg
    assert msg["receiver"] == "hook", msg
    assert msg["groupLabels"] == {"alertname": "HookDown", "service": "db"}, msg
    assert msg["commonLabels"] == labels, msg
    assert msg["commonAnnotations"] == annotations, msg
    assert msg["externalURL"] == EXTERNAL_URL, msg
    assert isinstance(msg["groupKey"], str) and msg["groupKey"], msg
    assert msg["truncatedAlerts"] == 0, msg
    (a,) = msg["alerts"]
    assert a["status"] == "firing", a
    assert a["labels"] == labels and a["annotations"] == annotations, a
    assert a["fingerprint"] == fingerprint(labels), a
    assert a["endsAt"] == ZERO_TIME, f"a firing alert's endsAt is Go's zero time in Alertmanager: {a}"
    (rule_alert,) = rule_alerts(server, "HookDown")
    # `for: 0s`: fired when it became active.
    assert abs(rfc3339(a["startsAt"]) - rfc3339(rule_alert["activeAt"])) < 1.0, (a, rule_alert)
    assert a["generatorURL"].startswith(EXTERNAL_URL + "/"), a
    assert expr in unquote_plus(a["generatorURL"]), a

    # The same alert through the Alertmanager API.
    (am,) = [x for x in get_alerts(server) if x["labels"].get("alertname") == "HookDown"]
    assert am["fingerprint"] == a["fingerprint"], am
    assert am["status"] == {"state": "active", "silencedBy": [], "inhibitedBy": []}, am
    assert [r["name"] for r in am["receivers"]] == ["hook"], am
    assert rfc3339(am["endsAt"]) > time.time(), am
    assert abs(rfc3339(am["startsAt"]) - rfc3339(a["startsAt"])) < 0.001, (am, a)
    rfc3339(am["updatedAt"])

    # Every delivery is counted and recorded.
    wait_until(lambda: metric_sum(server, "lookout_notifications_total", receiver="hook",
                                  integration="webhook[0]", outcome="success") == 1,
               timeout=5, what="lookout_notifications_total{receiver=hook,outcome=success} == 1")
    assert metric_sum(server, "lookout_notification_latency_seconds_count") >= 1
    attempt = notifications(server, receiver="hook")[0]
    assert attempt["receiver"] == "hook" and attempt["integration"] == "webhook[0]", attempt
    assert attempt["outcome"] == "success" and attempt["attempt"] == 1, attempt
    assert attempt["status_code"] == 200 and attempt["alerts"] == 1, attempt
    assert attempt["group_key"] == msg["groupKey"], (attempt, msg["groupKey"])
    rfc3339(attempt["time"])

    # Resolved: one more message, nothing in between (repeat_interval is 1h).
    set_gauge(server, "e2e_hook_up", {"instance": "db-1", "service": "db"}, 1)
    resolved = webhook.wait_message("hook", lambda m: m["status"] == "resolved").body
    assert [m["status"] for m in webhook.messages("hook")] == ["firing", "resolved"]
    assert resolved["groupKey"] == msg["groupKey"], resolved
    (ra,) = resolved["alerts"]
    assert ra["status"] == "resolved" and ra["fingerprint"] == a["fingerprint"], ra
    assert abs(rfc3339(ra["startsAt"]) - rfc3339(a["startsAt"])) < 0.001, ra
    assert rfc3339(a["startsAt"]) < rfc3339(ra["endsAt"]) <= time.time(), ra


# ---- routing ---------------------------------------------------------------------------------


def test_routing_matchers_continue_and_external_alerts(lookout_factory, webhook):
    alerting = {
        "route": route("default", routes=[
            {"matchers": ['team="db"'], "receiver": "db", "continue": True},
            {"matchers": ['team=~"db|infra"'], "receiver": "infra"},
            {"match": {"severity": "critical"}, "receiver": "pager"},
        ]),
        "receivers": [webhook_receiver(n, webhook) for n in ("default", "db", "infra", "pager")],
    }
    server = alerting_server(lookout_factory, alerting=alerting)
    received_before = metric_sum(server, "lookout_alerts_received_total")
    t = time.time()
    posted = [
        am_alert({"alertname": "RouteDb", "team": "db", "severity": "critical"},
                 {"summary": "db alert"}, starts=t, ends=t + 3600),
        am_alert({"alertname": "RouteInfra", "team": "infra"}, starts=t, ends=t + 3600),
        am_alert({"alertname": "RoutePager", "team": "web", "severity": "critical"}, starts=t),
        am_alert({"alertname": "RouteDefault", "team": "web"}, starts=t),
    ]
    r = post_alerts(server, posted)
    assert r.status_code == 200, (r.status_code, r.text)

    # Where each alert goes, without waiting for any timer.
    want = {"RouteDb": ["db", "infra"], "RouteInfra": ["infra"], "RoutePager": ["pager"],
            "RouteDefault": ["default"]}
    got = {a["labels"]["alertname"]: sorted(x["name"] for x in a["receivers"]) for a in get_alerts(server)}
    assert got == want, got
    for a in get_alerts(server):
        assert a["status"]["state"] == "active", a
        assert a["fingerprint"] == fingerprint(a["labels"]), a
        assert abs(rfc3339(a["startsAt"]) - t) < 0.002, (a, t)
        assert a["generatorURL"] == "http://prometheus.example/graph", a
    # Posted without endsAt: resolve_timeout (5m) from now.
    pager = am_alert_by_name(server, "RoutePager")
    assert 240 < rfc3339(pager["endsAt"]) - time.time() <= 300 + 1, pager

    webhook.wait_for("db", 1)
    webhook.wait_for("infra", 2)
    webhook.wait_for("pager", 1)
    webhook.wait_for("default", 1)
    # A sentinel posted now is flushed after anything the first post caused.
    r = post_alerts(server, [am_alert({"alertname": "Sentinel", "team": "web"})])
    assert r.status_code == 200, (r.status_code, r.text)
    webhook.wait_message("default", lambda m: alert_names(m) == ["Sentinel"])

    def names(receiver):
        return sorted(n for m in webhook.messages(receiver) for n in alert_names(m))

    assert names("db") == ["RouteDb"]
    assert names("infra") == ["RouteDb", "RouteInfra"]
    assert names("pager") == ["RoutePager"]
    assert names("default") == ["RouteDefault", "Sentinel"]
    for m in webhook.messages("infra"):
        assert m["receiver"] == "infra" and m["status"] == "firing", m
    (db_msg,) = webhook.messages("db")
    (a,) = db_msg["alerts"]
    assert a["labels"] == {"alertname": "RouteDb", "team": "db", "severity": "critical"}, a
    assert a["annotations"] == {"summary": "db alert"}, a
    assert a["generatorURL"] == "http://prometheus.example/graph", a
    assert abs(rfc3339(a["startsAt"]) - t) < 0.002 and a["endsAt"] == ZERO_TIME, a
    assert metric_sum(server, "lookout_alerts_received_total") - received_before >= 5


def test_posted_alerts_bad_bodies_answer_400(lookout_factory, webhook):
    alerting = {"route": route("hook"), "receivers": [webhook_receiver("hook", webhook)]}
    server = alerting_server(lookout_factory, alerting=alerting)
    t = time.time()
    # Alertmanager answers 422 when a required field is missing (its schema check), 400 for
    # the rest; either is right for those cases.
    cases = [
        ("not JSON", None, "{not json", (), {400}),
        ("an object, not a list", {"labels": {"alertname": "x"}}, None, (), {400}),
        ("no labels", [{"annotations": {"summary": "x"}}], None, ("label",), {400, 422}),
        ("empty labels", [{"labels": {}}], None, ("label",), {400}),
        ("bad label name", [{"labels": {"alertname": "x", "0bad": "y"}}], None, ("0bad",), {400}),
        ("bad time", [{"labels": {"alertname": "x"}, "startsAt": "yesterday"}], None, ("yesterday",), {400}),
        ("ends before it starts",
         [am_alert({"alertname": "x"}, starts=t, ends=t - 60)], None, ("start", "end"), {400}),
    ]
    for what, body, raw, words, codes in cases:
        r = post_alerts(server, body, raw=raw)
        assert r.status_code in codes, (what, r.status_code, r.text)
        low = r.text.lower()
        assert r.text.strip(), (what, "400 without a message")
        assert all(w in low for w in words), (what, words, r.text)
    assert get_alerts(server) == []
    # Still serving.
    r = post_alerts(server, [am_alert({"alertname": "AfterBad"})])
    assert r.status_code == 200, (r.status_code, r.text)
    assert [a["labels"]["alertname"] for a in get_alerts(server)] == ["AfterBad"]
    webhook.wait_message("hook", lambda m: alert_names(m) == ["AfterBad"])


def test_group_by_group_interval_and_repeat_interval(lookout_factory, webhook):
    alerting = {
        "route": route("grp", group_by=["alertname"], group_wait="1s", group_interval="3s",
                       repeat_interval="5s"),
        "receivers": [webhook_receiver("grp", webhook)],
    }
    server = alerting_server(lookout_factory, alerting=alerting)

    def grouped(instance):
        return am_alert({"alertname": "Grouped", "instance": instance, "severity": "warning"},
                        ends=time.time() + 3600)

    t_post = time.time()
    assert post_alerts(server, [grouped("a"), grouped("b")]).status_code == 200
    (first,) = webhook.wait_for("grp", 1)
    assert first.at - t_post >= 1 - 0.2, f"flushed {first.at - t_post:.2f}s after, group_wait 1s"
    m1 = first.body
    assert sorted(a["labels"]["instance"] for a in m1["alerts"]) == ["a", "b"], m1
    assert m1["groupLabels"] == {"alertname": "Grouped"}, m1
    assert m1["commonLabels"] == {"alertname": "Grouped", "severity": "warning"}, m1

    # A new alert in the existing group waits for the next group_interval tick.
    assert post_alerts(server, [grouped("c")]).status_code == 200
    second = webhook.wait_for("grp", 2)[1]
    gap = second.at - first.at
    assert 3 - 0.3 <= gap <= 3 + 1.5, f"second flush {gap:.2f}s after the first, group_interval 3s"
    assert sorted(a["labels"]["instance"] for a in second.body["alerts"]) == ["a", "b", "c"]
    assert second.body["groupKey"] == m1["groupKey"]

    # Nothing changes: the next message is the repeat, after repeat_interval (5s; on the
    # group_interval tick that follows it).
    third = webhook.wait_for("grp", 3, timeout=15)[2]
    gap = third.at - second.at
    assert 5 - 0.3 <= gap <= 6 + 1.5, f"repeat {gap:.2f}s after the last message, repeat_interval 5s"
    assert sorted(a["labels"]["instance"] for a in third.body["alerts"]) == ["a", "b", "c"]
    assert len(webhook.received("grp")) == 3


def test_inhibition_critical_mutes_warning_of_same_service(lookout_factory, webhook):
    alerting = {
        "route": route("inh", group_by=["alertname", "service"]),
        "inhibit_rules": [{
            "source_matchers": ['severity="critical"'],
            "target_matchers": ['severity="warning"'],
            "equal": ["service"],
        }],
        "receivers": [webhook_receiver("inh", webhook)],
    }
    server = alerting_server(lookout_factory, alerting=alerting)
    t = time.time()
    down = {"alertname": "ServiceDown", "severity": "critical", "service": "s1"}
    slow1 = {"alertname": "ServiceSlow", "severity": "warning", "service": "s1"}
    slow2 = {"alertname": "ServiceSlow", "severity": "warning", "service": "s2"}
    r = post_alerts(server, [am_alert(x, starts=t, ends=t + 3600) for x in (down, slow1, slow2)])
    assert r.status_code == 200, (r.status_code, r.text)

    by_fp = {a["fingerprint"]: a for a in get_alerts(server)}
    assert by_fp[fingerprint(slow1)]["status"] == {
        "state": "suppressed", "silencedBy": [], "inhibitedBy": [fingerprint(down)],
    }, by_fp[fingerprint(slow1)]
    assert by_fp[fingerprint(slow2)]["status"]["state"] == "active"
    assert by_fp[fingerprint(down)]["status"]["state"] == "active"

    def has(m, lbls):
        return any(a["labels"] == lbls and a["status"] == "firing" for a in m["alerts"])

    webhook.wait_message("inh", lambda m: has(m, down))
    webhook.wait_message("inh", lambda m: has(m, slow2))
    assert post_alerts(server, [am_alert({"alertname": "Sentinel"})]).status_code == 200
    webhook.wait_message("inh", lambda m: alert_names(m) == ["Sentinel"])
    assert not any(has(m, slow1) for m in webhook.messages("inh")), webhook.messages("inh")

    not_inhibited = {a["fingerprint"] for a in get_alerts(server, {"inhibited": "false"})}
    assert fingerprint(slow1) not in not_inhibited and fingerprint(slow2) in not_inhibited

    # The critical alert resolves: the warning is no longer inhibited and gets notified.
    r = post_alerts(server, [am_alert(down, starts=t, ends=time.time())])
    assert r.status_code == 200, (r.status_code, r.text)
    webhook.wait_message("inh", lambda m: has(m, slow1))
    resolved = webhook.wait_message("inh", lambda m: m["status"] == "resolved").body
    assert resolved["groupLabels"] == {"alertname": "ServiceDown", "service": "s1"}, resolved


# ---- silences ----------------------------------------------------------------------------


def test_silences_suppress_then_expire(lookout_factory, webhook):
    alerting = {"route": route("sil"), "receivers": [webhook_receiver("sil", webhook)]}
    server = alerting_server(lookout_factory, alerting=alerting)
    matchers = [matcher("alertname", "Silenced"), matcher("env", "prod|staging", regex=True)]
    t = time.time()
    sid = create_silence(server, matchers, starts=t - 1, ends=t + 3600, comment="maintenance")

    r = get_silence(server, sid)
    assert r.status_code == 200, (r.status_code, r.text)
    s = r.json()
    assert s["id"] == sid and s["status"] == {"state": "active"}, s
    key = lambda ms: sorted((m["name"], m["value"], m["isRegex"], m.get("isEqual", True)) for m in ms)  # noqa: E731
    assert key(s["matchers"]) == key(matchers), s
    assert s["createdBy"] == "e2e" and s["comment"] == "maintenance", s
    # A start in the past becomes "now" (as Alertmanager does), or stays as given.
    assert t - 1 - 0.002 <= rfc3339(s["startsAt"]) <= time.time(), s
    assert abs(rfc3339(s["endsAt"]) - (t + 3600)) < 0.002, s
    rfc3339(s["updatedAt"])
    assert [x["id"] for x in list_silences(server)] == [sid]
    assert metric_sum(server, "lookout_silences", state="active") == 1

    prod = {"alertname": "Silenced", "env": "prod"}
    dev = {"alertname": "Silenced", "env": "dev"}
    loud = {"alertname": "Loud", "env": "prod"}
    r = post_alerts(server, [am_alert(x, ends=time.time() + 3600) for x in (prod, dev, loud)])
    assert r.status_code == 200, (r.status_code, r.text)
    by_fp = {a["fingerprint"]: a for a in get_alerts(server)}
    assert by_fp[fingerprint(prod)]["status"] == {
        "state": "suppressed", "silencedBy": [sid], "inhibitedBy": [],
    }, by_fp[fingerprint(prod)]
    assert by_fp[fingerprint(dev)]["status"]["state"] == "active"
    assert by_fp[fingerprint(loud)]["status"]["state"] == "active"
    not_silenced = {a["fingerprint"] for a in get_alerts(server, {"silenced": "false"})}
    assert not_silenced == {fingerprint(dev), fingerprint(loud)}, not_silenced

    webhook.wait_message("sil", lambda m: alert_names(m) == ["Loud"])
    # The silenced alert's group is notified with the unsilenced alert only.
    silenced_group = webhook.wait_message("sil", lambda m: m["groupLabels"] == {"alertname": "Silenced"})
    assert [a["labels"] for a in silenced_group.body["alerts"]] == [dev], silenced_group.body

    # Expire it: the alert is notified at the group's next flush.
    r = delete_silence(server, sid)
    assert r.status_code == 200, (r.status_code, r.text)
    assert get_silence(server, sid).json()["status"] == {"state": "expired"}
    assert rfc3339(get_silence(server, sid).json()["endsAt"]) <= time.time()
    webhook.wait_message(
        "sil", lambda m: any(a["labels"] == prod and a["status"] == "firing" for a in m["alerts"])
    )
    assert am_alert_by_name(server, "Loud")["status"]["state"] == "active"
    assert {a["fingerprint"]: a for a in get_alerts(server)}[fingerprint(prod)]["status"]["state"] == "active"
    assert metric_sum(server, "lookout_silences", state="expired") == 1
    assert metric_sum(server, "lookout_silences", state="active") == 0

    # Unknown ids, then bad silences: 400 naming the problem.
    assert get_silence(server, "00000000-0000-0000-0000-000000000000").status_code == 404
    assert delete_silence(server, "00000000-0000-0000-0000-000000000000").status_code == 404
    # (Alertmanager answers 422 for what its schema requires: matchers, a body.)
    bad = [
        ("no matchers", silence_body([]), ("matcher",), {400, 422}),
        ("ends before it starts", silence_body([matcher("a", "b")], starts=t + 60, ends=t), ("end",), {400}),
        ("bad regex", silence_body([matcher("a", "(unclosed", regex=True)]), ("regex", "regular expression"), {400}),
        ("matcher without a name", silence_body([matcher("", "b")]), ("name",), {400}),
    ]
    for what, body, words, codes in bad:
        r = post_silence(server, body)
        assert r.status_code in codes, (what, r.status_code, r.text)
        low = r.text.lower()
        assert any(w in low for w in words), (what, words, r.text)
    r = post_silence(server, None)
    assert r.status_code in (400, 422), (r.status_code, r.text)
    assert [x["id"] for x in list_silences(server)] == [sid]

    # Alertmanager's filter parameter.
    assert [x["id"] for x in list_silences(server, {"filter": 'alertname="Silenced"'})] == [sid]
    assert list_silences(server, {"filter": 'alertname="Other"'}) == []
    names = {a["labels"]["alertname"] for a in get_alerts(server, {"filter": 'alertname="Loud"'})}
    assert names == {"Loud"}, names


# ---- email -------------------------------------------------------------------------------


def test_email_text_and_html_with_links_and_escaping(lookout_factory, smtp_sink):  # noqa: F811
    expr = "e2e_mail_errors > 1"
    rules = {"groups": [{"name": "mail", "interval": "1s", "rules": [{
        "alert": "MailAlert", "expr": expr, "for": "0s",
        "labels": {"severity": "critical"},
        "annotations": {"summary": "Payments failing: {{ $value }} errors"},
    }]}]}
    alerting = {
        "route": route("mail"),
        "receivers": [{"name": "mail", "email_configs": [{
            "to": "oncall@example.com, lead@example.com",
            "from": "lookout@example.com",
            "smarthost": smtp_sink.smarthost,
            "require_tls": False,
            "send_resolved": True,
        }]}],
    }
    server = alerting_server(lookout_factory, {"mail.yaml": rules}, alerting)
    owner = "<i>pay&co</i>"
    set_gauge(server, "e2e_mail_errors", {"service": "payments", "owner": owner}, 42)

    (mail,) = smtp_sink.wait_for(1)
    msg = mail.message
    assert mail.mail_from == "lookout@example.com", mail.mail_from
    assert sorted(mail.rcpt_tos) == ["lead@example.com", "oncall@example.com"], mail.rcpt_tos
    assert "lookout@example.com" in str(msg["From"]), msg["From"]
    to = str(msg["To"])
    assert "oncall@example.com" in to and "lead@example.com" in to, to
    assert "MailAlert" in str(msg["Subject"]), msg["Subject"]
    assert msg.get_content_type() == "multipart/alternative", msg.get_content_type()

    text, body = mail.text, mail.html
    assert text and body, (text, body)
    for part in (text, body):
        assert "MailAlert" in part
        assert "Payments failing: 42 errors" in part
        assert "critical" in part and "payments" in part
    assert owner in text, text
    # Label values are HTML-escaped in the HTML part (minijinja may also escape "/").
    assert "&lt;i&gt;pay&amp;co&lt;" in body, body
    assert "<i>pay" not in body, body
    assert f"{EXTERNAL_URL}/explore?query=" in text, text

    hrefs = [html_mod.unescape(h) for h in re.findall(r'href="([^"]+)"', body)]
    explore = [urlparse(h) for h in hrefs if h.startswith(f"{EXTERNAL_URL}/explore?")]
    assert explore, hrefs
    q = parse_qs(explore[0].query)
    assert q["query"] == [expr], (q, hrefs)
    assert int(q["start"][0]) < int(q["end"][0]), q
    logs = [parse_qs(urlparse(h).query) for h in hrefs if h.startswith(f"{EXTERNAL_URL}/logs?")]
    assert logs and "payments" in logs[0]["query"][0], hrefs

    wait_until(lambda: metric_sum(server, "lookout_notifications_total", receiver="mail",
                                  integration="email[0]", outcome="success") == 1,
               timeout=5, what="lookout_notifications_total{receiver=mail,outcome=success} == 1")
    attempt = notifications(server, receiver="mail")[0]
    assert (attempt["integration"], attempt["outcome"], attempt["alerts"]) == ("email[0]", "success", 1), attempt

    # Resolved mail (send_resolved).
    set_gauge(server, "e2e_mail_errors", {"service": "payments", "owner": owner}, 0)
    second = smtp_sink.wait_for(2)[1]
    assert "MailAlert" in str(second.message["Subject"]), second.message["Subject"]
    assert "resolved" in second.text.lower(), second.text


def test_a_filling_data_disk_pages_through_the_routes(lookout_factory, webhook):
    # "almost full" below 100% free: every disk is, so the built-in alert fires at start
    alerting = {"route": route("disk"), "receivers": [webhook_receiver("disk", webhook)]}
    server = alerting_server(lookout_factory, None, alerting,
                             extra={"storage": {"disk_alert_free_ratio": 1.0}})
    msg = webhook.wait_message("disk", lambda m: m["status"] == "firing").body
    (a,) = msg["alerts"]
    data_dir = str(server.data_dir)
    assert a["labels"] == {"alertname": "LookoutDiskAlmostFull", "severity": "critical",
                           "dir": data_dir}, a
    assert "% full:" in a["annotations"]["summary"] and data_dir in a["annotations"]["summary"], a
    assert "disk_alert_free_ratio (100%)" in a["annotations"]["description"], a
    free = self_metrics(server, "lookout_disk_free_bytes")[frozenset({("dir", data_dir)})]
    size = self_metrics(server, "lookout_disk_size_bytes")[frozenset({("dir", data_dir)})]
    assert 0 < free <= size, (free, size)
    assert [x["labels"]["alertname"] for x in get_alerts(server)] == ["LookoutDiskAlmostFull"]


def test_a_disk_with_room_raises_no_disk_alert(lookout_factory):
    server = alerting_server(lookout_factory, None, None,
                             extra={"storage": {"disk_alert_free_ratio": 0.000001}})
    # the first check runs at start: its gauges are there, and no alert came of it
    wait_until(lambda: self_metrics(server, "lookout_disk_free_bytes"), what="disk gauges")
    assert get_alerts(server) == []
