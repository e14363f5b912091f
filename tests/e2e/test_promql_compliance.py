"""PromQL compliance: the same seeded data is remote-written to Lookout and to Debian's
`prometheus` 2.42 (remote-write receiver enabled, empty TSDB), then every query of
`promql_compliance.yaml` runs against both, as instant queries at a few fixed times and as a
range query (two: unaligned steps past the end of the data, and steps on the sample grid), and
the answers must agree:

* same `resultType`, same series (label sets), same timestamps, values equal within 1e-9
  relative (NaN equals NaN, +-Inf equal);
* result order only for `sort`/`sort_desc` (and entries marked `ordered: true`), where
  Prometheus defines it; ties compare as values in order, labels as a set;
* when Prometheus answers an error, Lookout answers an error of the same `errorType`.

Entries with `status: pending` are features Lookout does not implement yet: they run as strict
xfails, so one that starts to match fails the run until it is flipped to supported.

A few supported queries are also compared through `promtool query instant|range`, whose text
output must be identical for both servers.

The data (a few hundred series, 1 h at 15 s, ending just before now): counters with resets and
timestamp jitter, gauges (some negative, some in [-1, 1]), classic histograms (one without a
`+Inf` bucket, one non-monotonic), series that stop (with and without a staleness marker),
info-style series for `group_left`, special values (NaN, +-Inf) and dates.
"""

from __future__ import annotations

import math
import random
import re
import shutil
import struct
import subprocess
import time
from pathlib import Path

import pytest
import requests

from helpers import Lookout, fmt_ts, free_port, remote_write
from test_remote_write import Prometheus

DATA_FILE = Path(__file__).with_name("promql_compliance.yaml")
STEP_S = 15
POINTS = 241  # 1 h at 15 s, both ends included
REL_TOLERANCE = 1e-9
# Prometheus's staleness marker: a NaN with this exact bit pattern.
STALE_NAN = struct.unpack("<d", struct.pack("<Q", 0x7FF0000000000002))[0]


# ---- the query list --------------------------------------------------------------------


def _scalar(text: str):
    text = text.strip()
    if text.startswith("'"):
        if not text.endswith("'") or len(text) < 2:
            raise ValueError(f"unterminated single-quoted string: {text!r}")
        return text[1:-1].replace("''", "'")
    if text.startswith('"'):
        raise ValueError(f"use single quotes (no escapes to think about): {text!r}")
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    if text.startswith("[") and text.endswith("]"):
        return [_scalar(p) for p in text[1:-1].split(",") if p.strip()]
    return text


def load_queries(path: Path = DATA_FILE) -> list[dict]:
    """Reads the data file: a YAML list of flat mappings with single-quoted or plain scalars
    and flow lists (`[instant, range]`); see the file's header. PyYAML is not a dependency
    of the suite, so this reads exactly that subset and refuses anything else."""
    entries: list[dict] = []
    current: dict | None = None
    for lineno, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.rstrip()
        stripped = line.lstrip()
        if not stripped or stripped.startswith("#"):
            continue
        where = f"{path.name}:{lineno}"
        if line.startswith("- "):
            current = {}
            entries.append(current)
            body = line[2:]
        elif line.startswith("  ") and current is not None:
            body = line[2:]
        else:
            raise ValueError(f"{where}: expected '- key: value' or '  key: value': {raw!r}")
        key, sep, value = body.partition(":")
        key = key.strip()
        if not sep or not re.fullmatch(r"[a-z_]+", key):
            raise ValueError(f"{where}: expected 'key: value': {raw!r}")
        if key in current:
            raise ValueError(f"{where}: duplicate key {key!r}")
        try:
            current[key] = _scalar(value)
        except ValueError as e:
            raise ValueError(f"{where}: {e}") from None
    allowed = {"query", "kinds", "status", "reason", "ordered", "empty"}
    for i, e in enumerate(entries):
        unknown = set(e) - allowed
        if unknown or "query" not in e:
            raise ValueError(f"entry {i} ({e}): unknown keys {unknown} or no query")
        e.setdefault("kinds", ["instant", "range"])
        if not set(e["kinds"]) <= {"instant", "range"} or not e["kinds"]:
            raise ValueError(f"entry {i}: bad kinds {e['kinds']}")
        e.setdefault("status", "supported")
        if e["status"] not in ("supported", "pending"):
            raise ValueError(f"entry {i}: bad status {e['status']}")
    return entries


QUERIES = load_queries()


def _param(i: int, entry: dict):
    marks = []
    if entry["status"] == "pending":
        reason = entry.get("reason", "not implemented yet")
        marks.append(pytest.mark.xfail(strict=True, reason=reason))
    return pytest.param(entry, id=f"{i:03d}:{entry['query']}", marks=marks)


# ---- the data --------------------------------------------------------------------------


def generate(start_ms: int, seed: int = 20261121) -> list[tuple[dict, list[tuple[int, float]]]]:
    """Seeded series over POINTS steps of STEP_S from start_ms: [(labels, [(t_ms, v)])]."""
    rng = random.Random(seed)
    ts = [start_ms + i * STEP_S * 1000 for i in range(POINTS)]
    out: list[tuple[dict, list[tuple[int, float]]]] = []
    jobs = ["api", "db", "web"]
    instances = [f"host-{i}:9100" for i in range(5)]
    zones = ["a", "b", "c"]

    # Counters, a sixth of them with one or two resets.
    for job in jobs:
        for inst in instances:
            for method in ("get", "post"):
                for code in ("200", "500"):
                    v = rng.uniform(0, 1000)
                    resets = set(rng.sample(range(10, POINTS), 2)) if rng.random() < 0.17 else set()
                    samples = []
                    for i, t in enumerate(ts):
                        if i in resets:
                            v = rng.uniform(0, 5)
                        else:
                            v += round(rng.uniform(0, 20 if code == "200" else 2), 3)
                        samples.append((t, v))
                    lbl = {"__name__": "cmp_requests_total", "job": job, "instance": inst,
                           "method": method, "code": code}
                    out.append((lbl, samples))

    # Counters with jittered timestamps, and one scraped every minute only.
    for k in range(4):
        v = 0.0
        samples = []
        for t in ts:
            v += rng.uniform(0, 3)
            samples.append((t + rng.randint(-2000, 2000), v))
        out.append(({"__name__": "cmp_jitter_total", "job": "jitter", "instance": f"j{k}"}, samples))
    v = 0.0
    sparse = []
    for i, t in enumerate(ts):
        v += rng.uniform(0, 7)
        if i % 4 == 0:
            sparse.append((t, v))
    out.append(({"__name__": "cmp_sparse_total", "job": "sparse"}, sparse))

    # Gauges: temperature (one zone per instance), signed values, ratios in [-1, 1].
    for job in jobs:
        for n, inst in enumerate(instances):
            temp = rng.uniform(10, 30)
            signed = rng.uniform(-5, 5)
            t_samples, s_samples, r_samples = [], [], []
            for t in ts:
                temp += rng.gauss(0, 0.7)
                signed += rng.gauss(0, 1.5)
                t_samples.append((t, round(temp, 4)))
                s_samples.append((t, round(signed, 3)))
                r_samples.append((t, rng.uniform(-1, 1)))
            base = {"job": job, "instance": inst}
            out.append(({"__name__": "cmp_temperature_celsius", **base, "zone": zones[n % 3]}, t_samples))
            out.append(({"__name__": "cmp_signed", **base}, s_samples))
            out.append(({"__name__": "cmp_ratio", **base}, r_samples))
            out.append(({"__name__": "cmp_build_info", **base, "version": f"1.{n}.{jobs.index(job)}"},
                        [(t, 1.0) for t in ts]))
    for n, job in enumerate(jobs):
        # Changes value a few times, for changes().
        out.append(({"__name__": "cmp_job_capacity", "job": job},
                    [(t, float(100 * (n + 1) + (i // 60))) for i, t in enumerate(ts)]))

    # Classic histograms.
    bounds = ["0.05", "0.1", "0.25", "0.5", "1", "2.5", "+Inf"]
    for job in jobs:
        for inst in instances:
            counts = [0.0] * len(bounds)
            total = 0.0
            series = {b: [] for b in bounds}
            sums, cnts = [], []
            for i, t in enumerate(ts):
                for _ in range(rng.randint(0, 12)):
                    obs = rng.expovariate(2.0)
                    total += obs
                    for bi, b in enumerate(bounds):
                        if obs <= float(b):
                            counts[bi] += 1
                for bi, b in enumerate(bounds):
                    series[b].append((t, counts[bi]))
                sums.append((t, round(total, 6)))
                cnts.append((t, counts[-1]))
            for b in bounds:
                out.append(({"__name__": "cmp_latency_seconds_bucket", "job": job,
                             "instance": inst, "le": b}, series[b]))
            out.append(({"__name__": "cmp_latency_seconds_sum", "job": job, "instance": inst}, sums))
            out.append(({"__name__": "cmp_latency_seconds_count", "job": job, "instance": inst}, cnts))
    for inst in ("b0", "b1"):
        # No +Inf bucket: histogram_quantile answers NaN.
        for n, b in enumerate(["0.1", "1", "10"]):
            out.append(({"__name__": "cmp_broken_seconds_bucket", "job": "broken", "instance": inst,
                         "le": b}, [(t, float(i * (n + 1))) for i, t in enumerate(ts)]))
    for n, (b, mult) in enumerate([("0.1", 3), ("1", 2), ("10", 5), ("+Inf", 6)]):
        # Non-monotonic (le=1 below le=0.1): Prometheus fixes it up.
        out.append(({"__name__": "cmp_nonmono_bucket", "job": "nonmono", "le": b},
                    [(t, float(i * mult)) for i, t in enumerate(ts)]))

    # Series that stop: without a marker (lookback runs out), with a staleness marker,
    # one that starts late and one with a 10-minute gap.
    for k in range(6):
        samples = []
        for i, t in enumerate(ts):
            if k in (0, 1) and i >= 120:
                break
            if k in (2, 3) and i >= 160:
                samples.append((t, STALE_NAN))
                break
            if k == 4 and i < 80:
                continue
            if k == 5 and 100 <= i < 140:
                continue
            samples.append((t, round(rng.uniform(0, 10), 2)))
        out.append(({"__name__": "cmp_stopping", "job": "batch", "instance": f"s{k}"}, samples))

    # Special values and dates (Unix seconds).
    for kind, value in [("nan", math.nan), ("inf", math.inf), ("neg_inf", -math.inf),
                        ("zero", 0.0), ("neg", -3.5), ("big", 1e300)]:
        out.append(({"__name__": "cmp_special", "kind": kind}, [(t, value) for t in ts]))
    for which, value in [("leap_day", 1709164800.0), ("new_year_eve", 1704067199.0),
                         ("epoch", 0.0), ("y2038", 2147483647.0)]:
        out.append(({"__name__": "cmp_dates", "which": which}, [(t, value) for t in ts]))
    out.append(({"__name__": "cmp_dates", "which": "now"}, [(t, t / 1000) for t in ts]))
    return out


def write_in_time_order(url: str, series, slice_ms: int = 5 * 60 * 1000) -> None:
    """Writes all series slice by slice in time order (Prometheus's head only accepts samples
    within an hour of its newest, so series-by-series would be refused)."""
    t_min = min(t for _, s in series for t, _ in s)
    t_max = max(t for _, s in series for t, _ in s)
    lo = t_min
    while lo <= t_max:
        hi = lo + slice_ms
        batch = [(lbl, [(t, v) for t, v in s if lo <= t < hi]) for lbl, s in series]
        batch = [(lbl, s) for lbl, s in batch if s]
        if batch:
            r = remote_write(url, batch, timeout=30)
            assert 200 <= r.status_code < 300, (url, r.status_code, r.text)
        lo = hi


class ReceivingPrometheus(Prometheus):
    """Debian's Prometheus with an empty TSDB, scraping nothing, receiving remote-write."""

    def __init__(self, workdir: Path):  # noqa: D107 - same process handling as the base
        self.port = free_port()
        self._launch(
            workdir,
            '{"global": {"evaluation_interval": "1m"}}',
            ["--web.enable-remote-write-receiver", "--log.level=warn"],
        )


class Env:
    def __init__(self, lookout: Lookout, prom: ReceivingPrometheus, start_s: float, end_s: float):
        self.lookout = lookout
        self.prom = prom
        self.start = start_s
        self.end = end_s
        mid = start_s + 1800
        # Aligned, unaligned (with milliseconds), near the start where windows are partial,
        # and past the end where the 5-minute lookback has run out for all but the newest.
        self.instant_times = [end_s, end_s - 433.25, mid, start_s + 100, end_s + 290]
        # Unaligned steps running past the data (staleness), and steps on the sample grid
        # (window edges fall exactly on samples).
        self.ranges = [(start_s + 7, end_s + 120, 53), (start_s + 600, end_s, 15)]
        self.range = self.ranges[0]
        self.subst = {"$START": str(int(start_s)), "$MID": str(int(mid)), "$END": str(int(end_s))}

    def expand(self, query: str) -> str:
        for k, v in self.subst.items():
            query = query.replace(k, v)
        return query


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    lookout = Lookout(tmp_path_factory.mktemp("lookout"), name="lookout")
    prom = None
    try:
        lookout.start()
        prom = ReceivingPrometheus(tmp_path_factory.mktemp("prometheus"))
        end_ms = (int(time.time()) // STEP_S) * STEP_S * 1000 - STEP_S * 1000
        start_ms = end_ms - (POINTS - 1) * STEP_S * 1000
        series = generate(start_ms)
        write_in_time_order(lookout.remote_write_url, series)
        write_in_time_order(f"{prom.url}/api/v1/write", series)
        yield Env(lookout, prom, start_ms / 1000, end_ms / 1000)
    finally:
        if prom is not None:
            prom.stop()
        code = lookout.stop()
        assert code == 0, f"lookout exited with {code}\n{lookout.log_tail()}"


# ---- comparing answers -----------------------------------------------------------------


def ask(base: str, path: str, params: dict) -> dict:
    r = requests.get(f"{base}{path}", params=params, timeout=30)
    try:
        body = r.json()
    except ValueError:
        return {"status": "error", "errorType": f"non-JSON HTTP {r.status_code}", "error": r.text}
    body["http_status"] = r.status_code
    return body


def _close(a: float, b: float) -> bool:
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    if a == b:
        return True
    if math.isinf(a) or math.isinf(b):
        return False
    return abs(a - b) <= REL_TOLERANCE * max(abs(a), abs(b))


def _series(data: dict) -> list[tuple[frozenset, list[tuple[float, float]]]]:
    rt = data["resultType"]
    if rt in ("scalar", "string"):
        t, v = data["result"]
        return [(frozenset(), [(float(t), v if rt == "string" else float(v))])]
    out = []
    for s in data["result"]:
        points = s["values"] if rt == "matrix" else [s["value"]]
        out.append((frozenset(s["metric"].items()), [(float(t), float(v)) for t, v in points]))
    return out


def _show(labels: frozenset) -> str:
    d = dict(labels)
    name = d.pop("__name__", "")
    return name + "{" + ",".join(f'{k}="{v}"' for k, v in sorted(d.items())) + "}"


def compare(what: str, expected: dict, got: dict, ordered: bool) -> list[str]:
    """Differences between Prometheus's answer and Lookout's, as readable lines."""
    if expected["status"] != "success":
        if got.get("status") != "error":
            return [f"{what}: prometheus rejects it ({expected.get('errorType')}: "
                    f"{expected.get('error')}), lookout answers {str(got.get('data'))[:300]}"]
        if got.get("errorType") != expected.get("errorType"):
            return [f"{what}: errorType {got.get('errorType')!r} ({got.get('error')}), "
                    f"prometheus {expected.get('errorType')!r} ({expected.get('error')})"]
        if got.get("http_status") != expected.get("http_status"):
            return [f"{what}: HTTP {got.get('http_status')} for {got.get('errorType')}, "
                    f"prometheus HTTP {expected.get('http_status')}"]
        return []
    if got.get("status") != "success":
        return [f"{what}: lookout error {got.get('errorType')}: {got.get('error')}"]
    e, g = expected["data"], got["data"]
    if e["resultType"] != g["resultType"]:
        return [f"{what}: resultType {g['resultType']}, prometheus {e['resultType']}"]
    es, gs = _series(e), _series(g)
    problems = []
    if e["resultType"] == "string":
        return [] if es == gs else [f"{what}: {gs} != prometheus {es}"]
    emap, gmap = dict(es), dict(gs)
    if len(emap) != len(es) or len(gmap) != len(gs):
        problems.append(f"{what}: duplicate label sets (prometheus {len(es)}, lookout {len(gs)})")
    for k in emap.keys() - gmap.keys():
        problems.append(f"{what}: missing {_show(k)} = {emap[k][:3]}...")
    for k in gmap.keys() - emap.keys():
        problems.append(f"{what}: extra {_show(k)} = {gmap[k][:3]}...")
    for k in emap.keys() & gmap.keys():
        ep, gp = emap[k], gmap[k]
        if [t for t, _ in ep] != [t for t, _ in gp]:
            et, gt = {t for t, _ in ep}, {t for t, _ in gp}
            problems.append(f"{what}: {_show(k)} timestamps differ: prometheus only "
                            f"{sorted(et - gt)[:5]}, lookout only {sorted(gt - et)[:5]}")
            continue
        bad = [(t, ev, gv) for (t, ev), (_, gv) in zip(ep, gp) if not _close(ev, gv)]
        if bad:
            problems.append(f"{what}: {_show(k)} {len(bad)} values differ, first "
                            f"(t, prometheus, lookout): {bad[:3]}")
    if ordered and not problems:
        ev = [p[0][1] for _, p in es]
        gv = [p[0][1] for _, p in gs]
        if not all(_close(a, b) for a, b in zip(ev, gv)):
            problems.append(f"{what}: order differs: prometheus {ev[:10]}, lookout {gv[:10]}")
    return problems


def run_entry(env: Env, entry: dict) -> tuple[list[str], bool]:
    """Runs one entry everywhere; returns (differences, whether prometheus had any data)."""
    query = env.expand(entry["query"])
    ordered = bool(entry.get("ordered")) or bool(re.match(r"\s*sort(_desc)?\s*\(", query))
    problems: list[str] = []
    had_data = False
    jobs = []
    if "instant" in entry["kinds"]:
        for t in env.instant_times:
            jobs.append((f"instant @{fmt_ts(t)}", "/api/v1/query",
                         {"query": query, "time": fmt_ts(t)}, ordered))
    if "range" in entry["kinds"]:
        for start, end, step in env.ranges:
            params = {"query": query, "start": fmt_ts(start), "end": fmt_ts(end), "step": str(step)}
            jobs.append((f"range {fmt_ts(start)}..{fmt_ts(end)} step {step}s",
                         "/api/v1/query_range", params, False))
    for what, path, params, is_ordered in jobs:
        expected = ask(env.prom.url, path, params)
        got = ask(env.lookout.http, path, params)
        if expected["status"] != "success" or expected["data"]["result"]:
            had_data = True
        problems += compare(what, expected, got, is_ordered)
    return problems, had_data


@pytest.mark.parametrize("entry", [_param(i, e) for i, e in enumerate(QUERIES)])
def test_query_matches_prometheus(env, entry):
    problems, had_data = run_entry(env, entry)
    assert had_data or entry.get("empty"), (
        f"{entry['query']}: prometheus answers nothing at any time; a typo? "
        "(mark `empty: true` if that is the point)"
    )
    assert not problems, f"{entry['query']} differs from Prometheus 2.42:\n" + "\n".join(
        problems[:20]
    )


def test_compare_catches_differences():
    def vec(*points, rt="vector"):
        return {"status": "success", "data": {"resultType": rt, "result": [
            {"metric": {"a": a}, "value": [1.0, v]} for a, v in points]}}

    same = vec(("x", "1"), ("y", "NaN"), ("z", "+Inf"))
    assert compare("t", same, vec(("x", "1.0000000000001"), ("y", "NaN"), ("z", "+Inf")), False) == []
    assert compare("t", same, vec(("x", "1.001"), ("y", "NaN"), ("z", "+Inf")), False)
    assert compare("t", same, vec(("x", "1"), ("y", "0"), ("z", "+Inf")), False)
    assert compare("t", same, vec(("x", "1"), ("y", "NaN"), ("z", "-Inf")), False)
    assert compare("t", same, vec(("x", "1"), ("y", "NaN")), False)
    assert compare("t", same, vec(("x", "1"), ("y", "NaN"), ("z", "+Inf"), ("w", "1")), False)
    assert compare("t", same, vec(("z", "+Inf"), ("x", "1"), ("y", "NaN")), False) == []
    assert compare("t", same, vec(("z", "+Inf"), ("x", "1"), ("y", "NaN")), True)
    assert compare("t", same, vec(("x", "1"), ("y", "NaN"), ("z", "+Inf"), rt="matrix"), False)
    bad = {"status": "error", "errorType": "bad_data", "error": "parse error", "http_status": 400}
    assert compare("t", bad, same, False)
    assert compare("t", bad, dict(bad, errorType="execution", http_status=422), False)
    assert compare("t", bad, dict(bad, error="another message"), False) == []
    assert compare("t", same, bad, False)

    line = '{job="api"} => 7.090287275586895 @[1795232551.75]'
    assert same_promtool_text([line], [line.replace("895 @", "896 @")])
    assert not same_promtool_text([line], [line.replace("7.09", "7.08")])
    assert not same_promtool_text([line], [line.replace("api", "db")])
    assert not same_promtool_text([line], [line.replace(".75]", ".5]")])
    assert not same_promtool_text([line], [line, line])


def test_query_list_is_big_enough():
    assert len(QUERIES) >= 150, len(QUERIES)
    assert len({e["query"] for e in QUERIES}) == len(QUERIES), "duplicate queries"


# ---- promtool --------------------------------------------------------------------------

PROMTOOL_QUERIES = [
    'cmp_temperature_celsius{job="api",instance="host-1:9100"}',
    'cmp_requests_total{job="db",method="post",code="500"} offset 5m',
    'cmp_stopping{instance="s5"}',
    'cmp_temperature_celsius{job="api"} @ end()',
    'sum by (job) (cmp_requests_total)',
    'cmp_requests_total{code="500"} / ignoring(code) cmp_requests_total{code="200"}',
    'sum by (job) (rate(cmp_requests_total[5m]))',
    'histogram_quantile(0.9, sum by (le) (rate(cmp_latency_seconds_bucket[5m])))',
    'max_over_time(cmp_temperature_celsius{job="web"}[10m:1m])',
]


def promtool(*args: str) -> str:
    binary = shutil.which("promtool")
    if binary is None:
        pytest.fail("`promtool` is not installed (it comes with Debian's prometheus package)")
    r = subprocess.run([binary, *args], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, (args, r.returncode, r.stdout, r.stderr)
    return r.stdout


@pytest.mark.parametrize("query", PROMTOOL_QUERIES)
def test_promtool_output_matches(env, query):
    start, end, step = env.range
    for args in (
        ("query", "instant", f"--time={fmt_ts(env.instant_times[1])}"),
        ("query", "range", f"--start={fmt_ts(start)}", f"--end={fmt_ts(end)}", f"--step={step}s"),
    ):
        expected = promtool(*args, env.prom.url, query)
        assert expected.strip(), (args, query, "prometheus answered nothing")
        got = promtool(*args, env.lookout.http, query)
        exp_lines, got_lines = expected.splitlines(), got.splitlines()
        if args[1] == "instant":
            # One line per series, in an order Prometheus leaves undefined for these queries.
            exp_lines, got_lines = sorted(exp_lines), sorted(got_lines)
        assert same_promtool_text(exp_lines, got_lines), (
            f"promtool {' '.join(args)} {query!r}:\n{got}\n!= prometheus\n{expected}"
        )


# A sample in promtool's text: `{labels} => 1.5 @[1700000000]` (instant) or `1.5 @[1700000000]`
# (one line per point under `{labels} =>`, range).
_PROMTOOL_VALUE = re.compile(r"^(.*?)(\S+)( @\[[0-9.]+\])$")


def same_promtool_text(expected: list[str], got: list[str]) -> bool:
    """Line by line identical, except that sample values may differ within REL_TOLERANCE (the
    last digit of a sum depends on the order series are added in)."""
    if len(expected) != len(got):
        return False
    for e, g in zip(expected, got):
        me, mg = _PROMTOOL_VALUE.match(e), _PROMTOOL_VALUE.match(g)
        if me is None or mg is None:
            if e != g:
                return False
            continue
        if (me.group(1), me.group(3)) != (mg.group(1), mg.group(3)):
            return False
        try:
            if not _close(float(me.group(2)), float(mg.group(2))):
                return False
        except ValueError:
            return False
    return True


# ---- format_query and stats ---------------------------------------------------------------

FORMAT_QUERIES = [
    "cmp_requests_total",
    'sum by (job) (rate(cmp_requests_total{code=~"5.."}[5m])) / ignoring(code) group_left sum by (job) (rate(cmp_requests_total[5m]))',
    "histogram_quantile(0.9, sum by (le) (rate(cmp_latency_seconds_bucket[5m])))",
    "max_over_time(cmp_temperature_celsius{job=\"web\"}[10m:1m] offset 5m)",
    "-(1 + 2) * 3 ^ 2",
    'topk(3, sum without (instance) (cmp_requests_total @ end()))',
    'label_replace(up, "foo", "$1", "job", "(.*)")',
    "cmp_requests_total{",
]


@pytest.mark.parametrize("query", FORMAT_QUERIES)
def test_format_query_matches_prometheus(env, query):
    expected = ask(env.prom.url, "/api/v1/format_query", {"query": query})
    got = ask(env.lookout.http, "/api/v1/format_query", {"query": query})
    assert got["status"] == expected["status"], (query, got, expected)
    assert got["http_status"] == expected["http_status"], (query, got, expected)
    if expected["status"] == "success":
        assert got["data"] == expected["data"], (query, got["data"], expected["data"])
    else:
        assert got["errorType"] == expected["errorType"] == "bad_data", (got, expected)


def test_stats_are_given_when_asked(env):
    start, end, step = env.range
    params = {"query": "sum by (job) (rate(cmp_requests_total[5m]))", "start": start, "end": end, "step": step}
    for base in (env.prom.url, env.lookout.http):
        plain = ask(base, "/api/v1/query_range", params)
        assert "stats" not in plain["data"], base
    exp = ask(env.prom.url, "/api/v1/query_range", {**params, "stats": "1"})["data"]["stats"]
    got = ask(env.lookout.http, "/api/v1/query_range", {**params, "stats": "1"})["data"]["stats"]
    assert set(got["timings"]) == set(exp["timings"]), (got, exp)
    assert all(isinstance(v, (int, float)) and v >= 0 for v in got["timings"].values()), got
    assert set(exp["samples"]) <= set(got["samples"]) | {"totalQueryableSamplesPerStep"}, (got, exp)
    # both read the same raw data; Prometheus counts a sample once per step that sees it,
    # Lookout once per read, so Lookout's figure is positive and no larger
    assert 0 < got["samples"]["totalQueryableSamples"] <= exp["samples"]["totalQueryableSamples"]
    assert 0 < got["samples"]["peakSamples"]
