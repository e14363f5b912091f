"""The alerts page in a real browser (headless Chromium) against the real binary.

A rule fires on a gauge written over remote write; its alert goes to a fake DingTalk robot
whose keyword it lacks, so every delivery is refused with errcode 310000. The page then shows:
the firing alert with its labels and value; the rule with its health; a silence created from
the alert's "Silence" button (the alert becomes silenced in Alertmanager's API and on the
page) and expired again from the page; the refused deliveries with the platform's errcode.
"""

from __future__ import annotations

import pytest

from helpers import Lookout, stops_cleanly, wait_until
from robots import RobotServer
from webhook import alerting_server, am_alert_by_name, list_silences, notifications, rule_alerts, set_gauge

ALERT = "UiCheckoutDown"


@pytest.fixture(scope="module")
def robots():
    srv = RobotServer()
    yield srv
    srv.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory, robots):
    ding = robots.dingtalk(keyword="never-in-the-message")
    rules = {"groups": [{"name": "ui", "interval": "1s", "rules": [{
        "alert": ALERT, "expr": "e2e_ui_up == 0", "for": "0s",
        "labels": {"severity": "critical", "team": "shop"},
        "annotations": {"summary": "checkout is down"},
    }]}]}
    alerting = {
        "route": {"receiver": "ding", "group_by": ["alertname"], "group_wait": "1s",
                  "group_interval": "1s", "repeat_interval": "1h"},
        "receivers": [{"name": "ding", "dingtalk_configs": [{"url": ding.url}]}],
    }

    def factory(config, start=True, name=None):
        lk = Lookout(tmp_path_factory.mktemp("ui-alerts"), config, name="ui-alerts")
        return lk.start() if start else lk

    lookout = alerting_server(factory, {"ui.yaml": rules}, alerting)
    with stops_cleanly(lookout):
        set_gauge(lookout, "e2e_ui_up", {"job": "checkout", "instance": "c1"}, 0)
        wait_until(lambda: [a for a in rule_alerts(lookout, ALERT) if a["state"] == "firing"],
                   30, f"{ALERT} firing")
        wait_until(lambda: [n for n in notifications(lookout, receiver="ding")
                            if n.get("errcode") == 310000], 30, "a refused DingTalk delivery")
        yield lookout


def test_firing_alert_with_labels_value_and_rule_health(server, page):
    page.goto(f"{server.http}/alerts")
    row = f"tr.alert-row.state-firing[data-alertname='{ALERT}']"
    text = page.wait_for(row)
    assert "severity=critical" in text and "team=shop" in text, text
    assert "checkout is down" in text, text
    assert page.text(f"{row} td.num").strip() == "0", text

    page.click("a.alerts-tab[data-tab=rules]")
    page.wait_url("tab=rules")
    rules = page.wait_for(".rule-group[data-group=ui]", text=ALERT)
    assert "e2e_ui_up == 0" in rules, rules
    assert "ok" in rules.lower(), rules
    page.assert_no_errors()


def test_silence_created_from_the_alert_then_expired(server, page):
    page.goto(f"{server.http}/alerts")
    page.click(f"tr.alert-row[data-alertname='{ALERT}'] a.silence-link")
    page.wait_url("tab=silences")
    page.wait_for("form.silence-form", visible=True)
    matchers = page.value("form.silence-form textarea[name=matchers]")
    assert f'alertname="{ALERT}"' in matchers, matchers
    page.type("form.silence-form input[name=creator]", "e2e")
    page.type("form.silence-form textarea[name=comment]", "deploying checkout")
    page.click("form.silence-form button[type=submit]")

    # the browser created it: the API has it, active, and the alert is silenced there
    page.wait_url("silence=")
    (sil,) = wait_until(
        lambda: [s for s in list_silences(server) if s["comment"] == "deploying checkout"],
        10, "the silence in /api/v2/silences")
    assert sil["status"]["state"] == "active" and sil["createdBy"] == "e2e", sil
    assert {"name": "alertname", "value": ALERT, "isRegex": False, "isEqual": True} in [
        {k: m[k] for k in ("name", "value", "isRegex", "isEqual")} for m in sil["matchers"]]
    wait_until(lambda: (am_alert_by_name(server, ALERT) or {}).get("status", {}).get("state")
               == "suppressed", 10, f"{ALERT} suppressed in /api/v2/alerts")
    row = f"tr[data-silence-id='{sil['id']}']"
    assert page.attr(row, "data-state") == "active"
    page.goto(f"{server.http}/alerts")
    page.wait_for(f"tr.alert-row[data-alertname='{ALERT}'] .silenced")

    # expire it from the silences tab: a confirmation, then the list shows it expired
    page.goto(f"{server.http}/alerts?tab=silences")
    page.click(f"{row} button.expire")
    page.click(f"{row} button.expire-confirm")
    page.wait_until(
        f"document.querySelector(\"{row}\")?.dataset.state === 'expired'", 10,
        "the silence listed as expired")
    (after,) = [s for s in list_silences(server) if s["id"] == sil["id"]]
    assert after["status"]["state"] == "expired", after
    wait_until(lambda: (am_alert_by_name(server, ALERT) or {}).get("status", {}).get("state")
               == "active", 10, f"{ALERT} no longer suppressed")
    page.assert_no_errors()


def test_a_bad_silence_is_refused_with_the_reason(server, page):
    page.goto(f"{server.http}/alerts?tab=silences&new=1")
    page.type("form.silence-form textarea[name=matchers]", 'alertname="x"')
    page.type("form.silence-form textarea[name=comment]", "")
    before = len(list_silences(server))
    page.click("form.silence-form button[type=submit]")
    err = page.wait_for("form.silence-form .error", visible=True)
    assert "comment" in err.lower(), err
    assert len(list_silences(server)) == before


def test_refused_deliveries_show_the_platform_errcode(server, page):
    page.goto(f"{server.http}/alerts?tab=notifications")
    row = page.wait_for("tr.notification-row[data-receiver=ding]", text="310000")
    assert "keyword" in row.lower(), row
    page.assert_no_errors()
