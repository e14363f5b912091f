"""Alerting side by side with Prometheus 2.42, and promtool's rule unit tests.

Side by side: Debian's `prometheus` 2.42 (remote-write receiver on, evaluation_interval 1s)
and Lookout (evaluation_interval 1s) load the same rule file, a driver thread remote-writes
the same samples to both in real time (every 0.5 s, timestamps = now) following a scripted
scenario (below threshold, above, flapping, below), and a poller thread reads both
`/api/v1/alerts` every 200 ms and records when each alert (by its labels) turns pending,
firing and gone. Both servers must go through the same sequence of states, each transition
within TRANSITION_TOLERANCE_S of the other server's, and Prometheus's sequence must be the
one the scenario implies (so the test cannot pass by both doing nothing). Covered: `for`,
`for: 0`, `keep_firing_for` (a dip shorter than it keeps the alert firing), a multi-series
rule, templated annotations (compared verbatim).

promtool: every `testdata/rules/promtool/*.test.yaml` passes `promtool test rules` and
`lookout test rules`; `failing/wrong_expectations.test.yaml` fails both (exit 1) with the same
failures reported.

Prometheus as Lookout's alert source (its `alerting.alertmanagers` pointed at Lookout's
`POST /api/v2/alerts`), routed to a webhook that takes SLOW_S to answer: a reload while that
delivery is in flight does not notify a second time, and SIGTERM waits for the delivery,
logs it, and so does not notify again after the restart.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import threading
import time
from contextlib import contextmanager
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests

from helpers import REPO_ROOT, free_port, lookout_bin, remote_write, wait_until
from test_remote_write import Prometheus

PROMTOOL_DIR = REPO_ROOT / "testdata" / "rules" / "promtool"
PROMTOOL_TESTS = sorted(PROMTOOL_DIR.glob("*.test.yaml"))
FAILING_TEST = PROMTOOL_DIR / "failing" / "wrong_expectations.test.yaml"

INTERVAL_S = 1.0
WRITE_EVERY_S = 0.5
POLL_EVERY_S = 0.2
# Both servers evaluate every INTERVAL_S at a phase of their own (Prometheus offsets each
# group by a hash of its name), so the same change in the data is seen up to one interval
# apart. Each state is observed through a 200 ms poll (the two servers are asked a few ms
# apart in the same round), and the 2 shared cores add scheduling delay to evaluation,
# ingestion and polling: 0.3 s more. Every phase of the scenario lasts at least 2 s, so both
# servers see it in at least two evaluations, and the sequences are deterministic.
TRANSITION_TOLERANCE_S = INTERVAL_S + POLL_EVERY_S + 0.3

RULES = """\
groups:
  - name: side-by-side
    interval: 1s
    rules:
      - alert: SbsHigh
        expr: sbs_value > 10
        for: 2s
        labels:
          severity: page
        annotations:
          summary: '{{ $labels.job }} value {{ $value }} over 10'
          detail: '{{ printf "%.1f" $value }} on {{ $labels.instance }}'
      - alert: SbsKeep
        expr: sbs_flap > 10
        keep_firing_for: 3s
        labels:
          severity: ticket
        annotations:
          summary: 'flap {{ $value | humanize }}'
      - record: shard:sbs_load:max
        expr: max by (shard) (sbs_shard_load)
      - alert: SbsShardHot
        expr: shard:sbs_load:max > 50
        for: 1s
        annotations:
          summary: 'shard {{ $labels.shard }} at {{ $value }}'
"""

# The scenario: per series, (start_s, value) steps; each value holds until the next step.
# The run lasts SCENARIO_S. Times are seconds from the first write.
SCENARIO_S = 31.0
SCENARIO: dict[tuple[tuple[str, str], ...], list[tuple[float, float]]] = {
    # SbsHigh (for 2s): above 3-10 fires, 14-18 fires, a 2 s dip resolves it, 20-25 fires again
    (("__name__", "sbs_value"), ("instance", "i-1"), ("job", "sbs")): [
        (0, 5), (3, 20), (10, 5), (14, 20), (18, 5), (20, 20), (25, 5),
    ],
    # SbsKeep (for 0, keep_firing_for 3s): the 2 s dip at 6-8 is held; after 11 resolved
    # about 3 s later; 17-20 fires again, resolved about 23
    (("__name__", "sbs_flap"), ("job", "sbs")): [
        (0, 0), (3, 20), (6, 0), (8, 20), (11, 0), (17, 20), (20, 0),
    ],
    # SbsShardHot (for 1s) over a recording rule: shard a 5-15, b 9-12, c never, d 20-26
    (("__name__", "sbs_shard_load"), ("shard", "a")): [(0, 10), (5, 80), (15, 10)],
    (("__name__", "sbs_shard_load"), ("shard", "b")): [(0, 10), (9, 90), (12, 10)],
    (("__name__", "sbs_shard_load"), ("shard", "c")): [(0, 10)],
    (("__name__", "sbs_shard_load"), ("shard", "d")): [(0, 10), (20, 70), (26, 10)],
}

P, F = "pending", "firing"
GONE = "gone"
# What the scenario implies, per alert: the sequence of states (Prometheus must show exactly
# this, Lookout the same as Prometheus) and the approximate scenario time of each transition
# (a sanity check of the Prometheus side, within 1.5 intervals).
EXPECTED: dict[tuple[tuple[str, str], ...], list[tuple[str, float]]] = {
    (("alertname", "SbsHigh"), ("instance", "i-1"), ("job", "sbs"), ("severity", "page")): [
        (P, 3), (F, 5), (GONE, 10), (P, 14), (F, 16), (GONE, 18), (P, 20), (F, 22), (GONE, 25),
    ],
    (("alertname", "SbsKeep"), ("job", "sbs"), ("severity", "ticket")): [
        (F, 3), (GONE, 14), (F, 17), (GONE, 23),
    ],
    (("alertname", "SbsShardHot"), ("shard", "a")): [(P, 5), (F, 6), (GONE, 15)],
    (("alertname", "SbsShardHot"), ("shard", "b")): [(P, 9), (F, 10), (GONE, 12)],
    (("alertname", "SbsShardHot"), ("shard", "d")): [(P, 20), (F, 21), (GONE, 26)],
}


def value_at(steps: list[tuple[float, float]], t: float) -> float:
    v = steps[0][1]
    for start, value in steps:
        if t >= start:
            v = value
    return v


class RulePrometheus(Prometheus):
    """Debian's Prometheus 2.42 receiving remote-write and evaluating `rule_file` every 1s."""

    def __init__(self, workdir: Path, rule_file: Path):  # noqa: D107 - base handles the process
        self.port = free_port()
        self._launch(
            workdir,
            json.dumps({
                "global": {"evaluation_interval": "1s", "scrape_interval": "1m"},
                "rule_files": [str(rule_file)],
            }),
            ["--web.enable-remote-write-receiver", "--log.level=warn"],
        )


def alerts_of(base: str) -> dict[frozenset, dict]:
    """`GET /api/v1/alerts` as {frozenset(labels): alert}."""
    r = requests.get(f"{base}/api/v1/alerts", timeout=2)
    body = r.json()
    assert r.status_code == 200 and body["status"] == "success", (base, r.status_code, body)
    return {frozenset(a["labels"].items()): a for a in body["data"]["alerts"]}


def last_evaluation(base: str) -> float | None:
    """Unix seconds of the side-by-side group's last evaluation, None before the first."""
    r = requests.get(f"{base}/api/v1/rules", timeout=2)
    body = r.json()
    for g in body.get("data", {}).get("groups", []):
        text = str(g.get("lastEvaluation") or "")
        if g["name"] != "side-by-side" or not text or text.startswith("0001"):
            continue
        # RFC 3339 with up to nanoseconds; Python parses at most microseconds
        m = re.fullmatch(r"(.*T\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)", text)
        assert m, f"{base}: lastEvaluation {text!r} is not RFC 3339"
        whole = datetime.fromisoformat(m.group(1) + m.group(3).replace("Z", "+00:00"))
        return whole.timestamp() + float("0." + (m.group(2) or "0"))
    return None


def group_evaluated(base: str) -> bool:
    return last_evaluation(base) is not None


class Recorder:
    """Per server and alert: [(state, seconds since t0)] each time the state changes; also
    the first firing alert seen per alert (labels, annotations, value) for comparison."""

    def __init__(self, servers: dict[str, str], t0: float):
        self.servers = servers
        self.t0 = t0
        self.transitions: dict[str, dict[frozenset, list[tuple[str, float]]]] = {
            name: {} for name in servers
        }
        self.current: dict[str, dict[frozenset, str]] = {name: {} for name in servers}
        self.firing_sample: dict[str, dict[frozenset, dict]] = {name: {} for name in servers}
        self.errors: list[str] = []
        self.stop = threading.Event()

    def poll_once(self) -> None:
        for name, base in self.servers.items():
            try:
                seen = alerts_of(base)
            except (requests.RequestException, ValueError, AssertionError) as e:
                self.errors.append(f"{name}: {e!r}")
                continue
            now = time.monotonic() - self.t0
            cur = self.current[name]
            for key, alert in seen.items():
                state = alert["state"]
                if cur.get(key) != state:
                    self.transitions[name].setdefault(key, []).append((state, now))
                    cur[key] = state
                if state == "firing":
                    self.firing_sample[name].setdefault(key, alert)
            for key in [k for k, s in cur.items() if s != GONE and k not in seen]:
                self.transitions[name][key].append((GONE, now))
                cur[key] = GONE

    def run(self) -> None:
        while not self.stop.is_set():
            started = time.monotonic()
            self.poll_once()
            self.stop.wait(max(0.0, POLL_EVERY_S - (time.monotonic() - started)))


def drive(urls: list[str], t0_wall: float, t0: float, errors: list[str]) -> None:
    """Writes every series' current scenario value to every server every WRITE_EVERY_S."""
    step = 0
    while True:
        due = t0 + step * WRITE_EVERY_S
        delay = due - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        t = step * WRITE_EVERY_S
        if t > SCENARIO_S:
            return
        ts_ms = int((t0_wall + (time.monotonic() - t0)) * 1000)
        batch = [
            (dict(key), [(ts_ms, float(value_at(steps, t)))]) for key, steps in SCENARIO.items()
        ]
        for url in urls:
            try:
                r = remote_write(url, batch, timeout=2)
                if not 200 <= r.status_code < 300:
                    errors.append(f"{url} at {t}s: HTTP {r.status_code} {r.text[:200]}")
            except requests.RequestException as e:
                errors.append(f"{url} at {t}s: {e!r}")
        step += 1


def show(key: frozenset) -> str:
    return "{" + ", ".join(f"{k}={v}" for k, v in sorted(key)) + "}"


def test_same_alert_states_as_prometheus(lookout_factory, tmp_path):
    rule_file = tmp_path / "side-by-side.yaml"
    rule_file.write_text(RULES)
    prom_dir = tmp_path / "prometheus"
    prom_dir.mkdir()
    prom = RulePrometheus(prom_dir, rule_file)
    try:
        lookout = lookout_factory({
            "global": {"evaluation_interval": "1s"},
            "rule_files": [str(rule_file)],
        })
        wait_until(lambda: group_evaluated(prom.url), timeout=20, what="prometheus evaluates the group")
        wait_until(lambda: group_evaluated(lookout.http), timeout=20, what="lookout evaluates the group")
        assert alerts_of(prom.url) == {} and alerts_of(lookout.http) == {}

        # The values change on whole seconds of the scenario. Start it half an interval
        # after Prometheus's evaluation phase, so its evaluations never race a change (a
        # race would only shift a transition by one interval, but keeps the premise check
        # below exact). Lookout's phase is its own: any race there is within the tolerance.
        phase = last_evaluation(prom.url) % INTERVAL_S
        now = time.time()
        start = now - (now % INTERVAL_S) + phase + INTERVAL_S / 2
        while start < now + 0.1:
            start += INTERVAL_S
        time.sleep(start - now)
        t0_wall, t0 = time.time(), time.monotonic()
        rec = Recorder({"prometheus": prom.url, "lookout": lookout.http}, t0)
        write_errors: list[str] = []
        poller = threading.Thread(target=rec.run, daemon=True)
        driver = threading.Thread(
            target=drive,
            args=([f"{prom.url}/api/v1/write", lookout.remote_write_url], t0_wall, t0, write_errors),
            daemon=True,
        )
        poller.start()
        driver.start()
        driver.join(timeout=SCENARIO_S + 30)
        # the last resolutions (keep_firing_for, last step at 26 s) are seen well before the
        # scenario's end; one more interval and a poll for the tail
        time.sleep(INTERVAL_S + POLL_EVERY_S)
        rec.stop.set()
        poller.join(timeout=5)
        assert not driver.is_alive(), "the driver did not finish"
        assert not write_errors, write_errors[:5]
        # a failed poll would hide a transition
        assert not rec.errors, rec.errors[:5]

        prom_t, look_t = rec.transitions["prometheus"], rec.transitions["lookout"]
        expected = {frozenset(k): v for k, v in EXPECTED.items()}
        problems = []
        # 1. Prometheus does what the scenario implies (the test's own premise)
        if set(prom_t) != set(expected):
            problems.append(
                f"prometheus alerted on {sorted(map(show, prom_t))}, "
                f"the scenario implies {sorted(map(show, expected))}"
            )
        for key, exp in expected.items():
            got = prom_t.get(key, [])
            if [s for s, _ in got] != [s for s, _ in exp]:
                problems.append(f"prometheus {show(key)}: {got}, scenario implies {exp}")
                continue
            for (state, t), (_, te) in zip(got, exp):
                if not te <= t <= te + INTERVAL_S + POLL_EVERY_S + 0.3:
                    problems.append(f"prometheus {show(key)}: {state} at {t:.2f}s, scenario {te}s")
        # 2. Lookout goes through the same states at the same evaluations (within tolerance)
        if set(look_t) != set(prom_t):
            problems.append(
                f"alerts only in prometheus: {sorted(map(show, set(prom_t) - set(look_t)))}; "
                f"only in lookout: {sorted(map(show, set(look_t) - set(prom_t)))}"
            )
        for key in sorted(set(prom_t) & set(look_t), key=show):
            p, lk = prom_t[key], look_t[key]
            if [s for s, _ in p] != [s for s, _ in lk]:
                problems.append(f"{show(key)}: lookout {fmt(lk)} != prometheus {fmt(p)}")
                continue
            for (state, tp), (_, tl) in zip(p, lk):
                if abs(tp - tl) > TRANSITION_TOLERANCE_S:
                    problems.append(
                        f"{show(key)}: {state} at {tl:.2f}s in lookout, {tp:.2f}s in prometheus "
                        f"(tolerance {TRANSITION_TOLERANCE_S}s)"
                    )
        # 3. the same labels, annotations (templates over $labels/$value) and value
        for key, pa in rec.firing_sample["prometheus"].items():
            la = rec.firing_sample["lookout"].get(key)
            if la is None:
                continue  # reported above
            if la["annotations"] != pa["annotations"] or float(la["value"]) != float(pa["value"]):
                problems.append(
                    f"{show(key)}: lookout annotations {la['annotations']} value {la['value']}, "
                    f"prometheus {pa['annotations']} value {pa['value']}"
                )
        assert not problems, "\n".join(problems) + "\n\nprometheus: " + fmt_all(prom_t) + \
            "\nlookout: " + fmt_all(look_t)
    except BaseException:
        print(prom.log_tail())
        raise
    finally:
        prom.stop()


def fmt(ts: list[tuple[str, float]]) -> str:
    return "[" + ", ".join(f"{s}@{t:.2f}" for s, t in ts) + "]"


def fmt_all(tr: dict) -> str:
    return "; ".join(f"{show(k)} {fmt(v)}" for k, v in sorted(tr.items(), key=lambda kv: show(kv[0])))


# ---- promtool test rules -------------------------------------------------------------


def run_tool(args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, text=True, timeout=120, cwd=PROMTOOL_DIR)


def promtool_bin() -> str:
    binary = shutil.which("promtool")
    if binary is None:
        pytest.fail("`promtool` is not installed (it comes with Debian's prometheus package)")
    return binary


def test_promtool_files_are_there():
    assert len(PROMTOOL_TESTS) >= 4, PROMTOOL_TESTS
    assert FAILING_TEST.is_file()


@pytest.mark.parametrize("path", PROMTOOL_TESTS, ids=lambda p: p.name)
def test_rule_unit_tests_pass_promtool(path):
    r = run_tool([promtool_bin(), "test", "rules", str(path)])
    assert r.returncode == 0, (r.stdout, r.stderr)
    assert "SUCCESS" in r.stdout


@pytest.mark.parametrize("path", PROMTOOL_TESTS, ids=lambda p: p.name)
def test_rule_unit_tests_pass_lookout(path):
    r = run_tool([lookout_bin(), "test", "rules", str(path)])
    assert r.returncode == 0, f"exit {r.returncode}\n{r.stdout}\n{r.stderr}"
    # promtool's shape: the heading once, then SUCCESS
    assert r.stdout.count(f"Unit Testing:  {path}") == 1, r.stdout
    assert r.stdout.split(f"Unit Testing:  {path}\n", 1)[1].startswith("  SUCCESS\n"), r.stdout
    assert "FAILED" not in r.stdout, r.stdout


def test_all_files_at_once_pass_lookout():
    r = run_tool([lookout_bin(), "test", "rules", *map(str, PROMTOOL_TESTS)])
    assert r.returncode == 0, f"exit {r.returncode}\n{r.stdout}\n{r.stderr}"
    assert r.stdout.count("SUCCESS") == len(PROMTOOL_TESTS), r.stdout


def test_failing_file_fails_both():
    """The same two wrong expectations are reported by both tools, with exit 1; a passing
    file beside it does not hide the failure."""
    passing = PROMTOOL_TESTS[0]
    for tool in (promtool_bin(), lookout_bin()):
        r = run_tool([tool, "test", "rules", str(passing), str(FAILING_TEST)])
        name = Path(tool).name
        assert r.returncode == 1, f"{name}: exit {r.returncode}\n{r.stdout}\n{r.stderr}"
        out = r.stdout + r.stderr
        assert f"Unit Testing:  {FAILING_TEST}" in out, (name, out)
        assert "FAILED" in out, (name, out)
        # the alert expected firing at 10m (it is pending) and the wrong recording value
        assert "HighErrorRatio" in out and "10m" in out, (name, out)
        assert "job:http_requests:rate5m" in out, (name, out)
        assert "1.8333333333333335" in out.replace("E+00", ""), (name, out)


# ---- Prometheus as the alert source, a slow receiver -----------------------------------

SLOW_S = 4.0  # how long the receiver takes to answer each notification
SOURCE_RULES = """\
groups:
  - name: alert-source
    interval: 1s
    rules:
      - alert: E2eSlowReceiver
        expr: vector(1)
        labels:
          severity: page
"""


class SlowWebhook:
    """A webhook receiver that answers each POST SLOW_S after it arrived; records when each
    arrived and when its answer was written."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/slow"
        self._lock = threading.Lock()
        self.arrived: list[tuple[float, dict]] = []
        self.answered: list[float] = []
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's name
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
                with sink._lock:
                    sink.arrived.append((time.time(), body))
                time.sleep(SLOW_S)
                try:
                    self.send_response(200)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    self.wfile.flush()
                except OSError:
                    return  # the sender gave up: not answered
                with sink._lock:
                    sink.answered.append(time.time())

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def count(self) -> int:
        with self._lock:
            return len(self.arrived)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class SourcePrometheus(Prometheus):
    """Debian's Prometheus 2.42 firing SOURCE_RULES' alert into `lookout` every second."""

    def __init__(self, workdir: Path, lookout):  # noqa: D107 - base handles the process
        self.port = free_port()
        rule_file = workdir / "source.yaml"
        rule_file.write_text(SOURCE_RULES)
        target = lookout.http.removeprefix("http://")
        self._launch(
            workdir,
            json.dumps({
                "global": {"evaluation_interval": "1s", "scrape_interval": "1m"},
                "rule_files": [str(rule_file)],
                "alerting": {"alertmanagers": [{"static_configs": [{"targets": [target]}]}]},
            }),
            ["--rules.alert.resend-delay=1s", "--log.level=warn"],
        )


def slow_receiver_config(sink: SlowWebhook) -> dict:
    return {
        "alerting": {
            "route": {
                "receiver": "slow", "group_by": ["alertname"], "group_wait": "1s",
                "group_interval": "2s", "repeat_interval": "1h",
            },
            "receivers": [{"name": "slow", "webhook_configs": [{"url": sink.url, "send_resolved": True}]}],
        }
    }


def holds_source_alert(lookout) -> bool:
    r = requests.get(f"{lookout.http}/api/v2/alerts", timeout=2)
    return r.status_code == 200 and any(
        a["labels"].get("alertname") == "E2eSlowReceiver" for a in r.json()
    )


@contextmanager
def slow_delivery(lookout_factory, tmp_path):
    """Lookout routing Prometheus's alert to a slow webhook, once the first notification has
    arrived (its answer still SLOW_S away); yields (lookout, sink)."""
    sink = SlowWebhook()
    lookout = lookout_factory(slow_receiver_config(sink))
    (tmp_path / "prometheus").mkdir()
    prom = SourcePrometheus(tmp_path / "prometheus", lookout)
    try:
        wait_until(lambda: sink.count() >= 1, timeout=30, what="the first notification")
        yield lookout, sink
    except BaseException:
        print(prom.log_tail())
        raise
    finally:
        prom.stop()
        sink.close()


def assert_notified_once(sink: SlowWebhook) -> None:
    # group_wait, two group_intervals and a slow answer more: any second notification
    # would have arrived by now
    time.sleep(1 + 2 * 2 + 1)
    assert sink.count() == 1, [body["alerts"] for _, body in sink.arrived]


def test_reload_during_a_slow_delivery_does_not_notify_twice(lookout_factory, tmp_path):
    with slow_delivery(lookout_factory, tmp_path) as (lookout, sink):
        # The reload rebuilds the group, whose alert is older than group_wait: the new group
        # flushes at once, while the first delivery is still waiting for its answer.
        r = requests.post(f"{lookout.http}/-/reload", timeout=30)
        reloaded = time.time()
        assert r.status_code == 200, (r.status_code, r.text)
        assert not sink.answered or sink.answered[0] > reloaded, "the reload came too late to race"
        wait_until(lambda: sink.answered, timeout=SLOW_S + 10, what="the first answer")
        assert_notified_once(sink)


def test_sigterm_waits_for_a_slow_delivery_and_logs_it(lookout_factory, tmp_path):
    with slow_delivery(lookout_factory, tmp_path) as (lookout, sink):
        code = lookout.stop()
        exited = time.time()
        assert code == 0, f"exit {code}\n{lookout.log_tail()}"
        assert sink.answered and sink.answered[0] <= exited, (
            f"lookout exited before the receiver answered (answered at {sink.answered}, "
            f"exited at {exited})"
        )
        # After the restart Prometheus re-sends the alert, a new group flushes at once (the
        # alert is older than group_wait) and finds the notification in the log.
        lookout.start()
        wait_until(lambda: holds_source_alert(lookout), timeout=15, what="the alert re-sent by prometheus")
        assert_notified_once(sink)
