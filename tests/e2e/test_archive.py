"""The archive tier for metrics: with a warm window of seconds, blocks move to Parquet files
during the test (a local directory, and a real S3-compatible server: moto), and the same
PromQL queries answer the same before and after. The files are read with pyarrow, an
independent reader, and must hold exactly what was written. Crash tests abort the process at
each step of a move (`LOOKOUT_FAILPOINT`) and check that the restart loses and duplicates
nothing."""

from __future__ import annotations

import contextlib
import json
import math
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import requests

from helpers import free_port, remote_write, self_metrics, wait_until

STEP_MS = 15_000
SPAN_MS = 2 * 3_600_000  # two hours: every block spans two or three UTC hours
JOBS = ("api", "db")


def pushed_series(end_ms: int) -> list[tuple[dict, list[tuple[int, float]]]]:
    """A counter (with a reset) and a gauge per job, a sample every 15 s for two hours."""
    start = (end_ms - SPAN_MS) // STEP_MS * STEP_MS
    times = list(range(start, end_ms, STEP_MS))
    out = []
    for j, job in enumerate(JOBS):
        counter, total = [], 0.0
        for i, t in enumerate(times):
            total = 0.0 if i == len(times) // 2 else total + 3 + j  # one reset mid-way
            counter.append((t, total))
        gauge = [(t, round(math.sin(i / 10) * 100 + j, 6)) for i, t in enumerate(times)]
        out.append(({"__name__": "arch_requests_total", "job": job, "env": "prod"}, counter))
        out.append(({"__name__": "arch_temperature", "job": job}, gauge))
    return out


def push(lookout, series) -> None:
    for labels, samples in series:
        for i in range(0, len(samples), 200):
            r = remote_write(lookout.remote_write_url, [(labels, samples[i : i + 200])])
            assert r.status_code == 204, r.text


def push_fleet(lookout) -> tuple[list, float, dict]:
    """Pushes two hours up to now; returns the series, their end and the answers then."""
    end_ms = int(time.time() * 1000)
    series = pushed_series(end_ms)
    push(lookout, series)
    return series, end_ms / 1000, answers(lookout, end_ms / 1000)


def answers(lookout, end_s: float) -> dict:
    """The queries compared before and after the move."""
    start_s = end_s - SPAN_MS / 1000
    return {
        "rate": lookout.query_range(
            "sum by (job) (rate(arch_requests_total[5m]))", start_s, end_s, 60
        ),
        "avg": lookout.query_range("avg_over_time(arch_temperature[10m])", start_s, end_s, 300),
        "raw": lookout.query_raw("arch_temperature[3h]", end_s),
        "count": lookout.query_vector("count_over_time({__name__=~\"arch_.*\"}[3h])", end_s),
        "series": sorted(
            json.dumps(s, sort_keys=True)
            for s in lookout.series("{__name__=~\"arch_.*\"}", start_s - 60, end_s)
        ),
        "labels": lookout.api_get(
            "/api/v1/label/job/values",
            {"start": str(start_s - 60), "end": str(end_s)},
        ),
    }


def tsdb_tiers(lookout) -> dict:
    return lookout.api_get("/api/v1/status/tsdb")["tiers"]


def wait_archived(lookout, series, timeout: float = 60) -> dict:
    """Until no block is left locally and the archive holds every pushed sample."""
    expected = sum(len(s) for _, s in series)

    def moved():
        t = tsdb_tiers(lookout)
        return t if t["warm"]["blocks"] == 0 and t["archive"]["samples"] == expected else None

    return wait_until(moved, timeout=timeout, what="blocks moved to the archive")


def archive_stats_files(lookout, end_s: float) -> int:
    data = lookout.api_get(
        "/api/v1/query",
        {"query": "count_over_time(arch_temperature[3h])", "time": str(end_s), "stats": "all"},
    )
    return data["stats"]["archive"]["filesRead"]


def check_parquet(tables: list, series) -> None:
    """The files hold exactly the pushed samples; in each file a series' rows are together,
    in time order."""

    def row(metric, labels_json, t, v):
        return (metric, json.dumps(json.loads(labels_json), sort_keys=True), t, v)

    expected = set()
    for labels, samples in series:
        rest = json.dumps({k: v for k, v in labels.items() if k != "__name__"})
        expected.update(row(labels["__name__"], rest, t, v) for t, v in samples)
    got = []
    for table in tables:
        assert table.schema.names == ["metric", "labels", "timestamp", "value"]
        assert str(table.schema.field("timestamp").type) == "timestamp[ms, tz=UTC]"
        rows = [
            row(m, l, int(ts.timestamp() * 1000), v)
            for m, l, ts, v in zip(*(table.column(c).to_pylist() for c in table.schema.names))
        ]
        seen, previous = set(), None
        for r in rows:
            key = r[:2]
            if previous is not None and key == previous[:2]:
                assert r[2] > previous[2], f"time order broken at {r}"
            else:
                assert key not in seen, f"series {key} is not contiguous"
                seen.add(key)
            previous = r
        got.extend(rows)
    assert len(got) == len(expected), f"{len(got)} rows, {len(expected)} samples pushed"
    assert set(got) == expected


def local_files(data_dir: Path) -> list[Path]:
    return sorted((data_dir / "archive" / "metrics").rglob("*.parquet"))


def manifest_paths(data_dir: Path) -> list[str]:
    m = json.loads((data_dir / "archive" / "manifest.json").read_text())
    assert m["version"] == 1
    return sorted(f["path"] for f in m["files"] if f["signal"] == "metrics")


WARM = {"storage": {"metrics": {"warm_for": "10s", "flush_interval": "1s"}}}


def test_metrics_move_to_a_local_archive_and_answer_the_same(lookout_factory):
    lookout = lookout_factory(WARM)
    series, end_s, before = push_fleet(lookout)
    assert len(before["rate"]) == 2 and len(before["raw"]) == 2
    tiers = wait_archived(lookout, series)
    assert tiers["archive"]["files"] >= 2 and tiers["archive"]["bytes"] > 0
    assert answers(lookout, end_s) == before
    assert archive_stats_files(lookout, end_s) >= 2

    files = local_files(lookout.data_dir)
    assert [str(p.relative_to(lookout.data_dir / "archive")) for p in files] == manifest_paths(
        lookout.data_dir
    )
    for p in files:
        assert p.parent.name.startswith("hour=") and p.parent.parent.name.startswith("date=")
        meta = pq.ParquetFile(p).metadata
        assert meta.metadata[b"lookout.schema"] == b"metrics/v1"
        col = meta.row_group(0).column(2)
        assert col.compression == "ZSTD"
        assert col.statistics is not None and col.statistics.has_min_max
    check_parquet([pq.read_table(p) for p in files], series)
    archived = self_metrics(lookout, "lookout_archive_files")
    assert archived[frozenset({("signal", "metrics")})] == len(files)

    # the archive is read after a restart too
    lookout.restart()
    assert answers(lookout, end_s) == before


def start_moto(tmp_path: Path, port: int) -> subprocess.Popen:
    moto = Path(sys.executable).with_name("moto_server")
    log = open(tmp_path / f"moto-{port}.log", "ab")
    proc = subprocess.Popen([str(moto), "-H", "127.0.0.1", "-p", str(port)], stdout=log,
                            stderr=subprocess.STDOUT)
    wait_until(lambda: requests.get(f"http://127.0.0.1:{port}/", timeout=2).ok, timeout=30,
               what="moto server up")
    return proc


@pytest.fixture
def s3_env():
    # moto accepts any credentials; the client signs every request with these
    return {"AWS_ACCESS_KEY_ID": "lookout-test", "AWS_SECRET_ACCESS_KEY": "lookout-secret"}


def s3_archive(port: int) -> dict:
    """`storage.archive` for the moto bucket on `port`."""
    return {"type": "s3", "endpoint": f"http://127.0.0.1:{port}", "bucket": "lookout-archive",
            "prefix": "team-a/", "region": "us-east-1"}


def s3_config(port: int) -> dict:
    return {"storage": {"metrics": {"warm_for": "10s", "flush_interval": "1s"}, "archive": s3_archive(port)}}


@contextlib.contextmanager
def archive_where(where: str, config: dict, tmp_path: Path, env: dict):
    """For "local", `config` as it is; for "s3", a moto bucket and `config` pointing at it.
    Yields (config, S3 client or None, env for the server)."""
    if where == "local":
        yield config, None, None
        return
    port = free_port()
    moto, client = start_bucket(tmp_path, port, env)
    try:
        config = json.loads(json.dumps(config))
        config["storage"]["archive"] = s3_archive(port)
        yield config, client, env
    finally:
        moto.terminate()
        moto.wait()


def start_bucket(tmp_path: Path, port: int, env: dict):
    """A moto S3 server on `port` with an empty bucket `lookout-archive`, and a client."""
    moto = start_moto(tmp_path, port)
    client = s3_client(port, env)
    client.create_bucket(Bucket="lookout-archive")
    return moto, client


def s3_client(port: int, env: dict):
    import boto3

    return boto3.client("s3", endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1",
                        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
                        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"])


def s3_tables(client) -> list:
    import io

    objects = client.list_objects_v2(Bucket="lookout-archive", Prefix="team-a/")["Contents"]
    keys = sorted(o["Key"] for o in objects)
    assert "team-a/manifest.json" in keys
    manifest = json.loads(client.get_object(Bucket="lookout-archive",
                                            Key="team-a/manifest.json")["Body"].read())
    named = sorted("team-a/" + f["path"] for f in manifest["files"])
    assert named == [k for k in keys if k.endswith(".parquet")]
    assert any(k.startswith("team-a/metrics-5m/") for k in named), "rollups are archived too"
    return [pq.read_table(io.BytesIO(client.get_object(Bucket="lookout-archive", Key=k)["Body"].read()))
            for k in named if k.startswith("team-a/metrics/")]


def test_metrics_move_to_s3_and_answer_the_same(lookout_factory, tmp_path, s3_env):
    port = free_port()
    moto, client = start_bucket(tmp_path, port, s3_env)
    try:
        lookout = lookout_factory(s3_config(port), start=False)
        lookout.start(env=s3_env)
        series, end_s, before = push_fleet(lookout)
        wait_archived(lookout, series)
        assert answers(lookout, end_s) == before
        check_parquet(s3_tables(client), series)
        assert not local_files(lookout.data_dir), "an S3 archive writes nothing locally"
    finally:
        moto.terminate()
        moto.wait()


def test_unreachable_s3_keeps_data_local_then_catches_up(lookout_factory, tmp_path, s3_env):
    port = free_port()  # nothing listens here yet
    lookout = lookout_factory(s3_config(port), start=False)
    lookout.start(env=s3_env)
    series, end_s, before = push_fleet(lookout)
    wait_until(lambda: sum(self_metrics(lookout, "lookout_archive_errors_total").values()) >= 1,
               timeout=60, what="archive errors counted")
    time.sleep(12)  # past the warm window: the blocks are due, and must stay
    tiers = tsdb_tiers(lookout)
    assert tiers["warm"]["blocks"] >= 1 and tiers["archive"]["files"] == 0
    assert answers(lookout, end_s) == before
    assert "archive" in lookout.log_tail(200)

    moto, client = start_bucket(tmp_path, port, s3_env)
    try:
        # the mover's backoff doubles up to 5 minutes; this test's failures are few
        wait_archived(lookout, series, timeout=120)
        assert answers(lookout, end_s) == before
        check_parquet(s3_tables(client), series)
    finally:
        moto.terminate()
        moto.wait()


@pytest.mark.parametrize(
    "step",
    [
        "archive.metrics.after_file",
        "archive.metrics.before_manifest",
        "archive.metrics.before_delete",
    ],
)
def test_a_move_killed_at_each_step_loses_and_duplicates_nothing(lookout_factory, step):
    # a warm window of 1 s: the block moves right after the first flush
    lookout = lookout_factory(
        {"storage": {"metrics": {"warm_for": "1s", "flush_interval": "1s"}}}, start=False
    )
    lookout.start(env={"LOOKOUT_FAILPOINT": step})
    end_ms = int(time.time() * 1000) - 60_000
    series = pushed_series(end_ms)
    push(lookout, series)
    wait_until(lambda: lookout.proc.poll() is not None, timeout=60, what=f"abort at {step}")
    assert step in lookout.log_tail(20)
    lookout.kill9()  # closes the log; the process is already gone

    lookout.start()
    wait_archived(lookout, series)
    end_s = end_ms / 1000
    counts = lookout.query_vector("count_over_time({__name__=~\"arch_.*\"}[3h])", end_s)
    assert sorted(counts.values()) == sorted(float(len(s)) for _, s in series)
    files = local_files(lookout.data_dir)
    rel = [str(p.relative_to(lookout.data_dir / "archive")) for p in files]
    assert rel == manifest_paths(lookout.data_dir), "no unnamed file is left behind"
    check_parquet([pq.read_table(p) for p in files], series)


# Downsampling. Samples sit 7 s after each 15 s step, so no sample falls on a 5-minute
# boundary: a range (t - 1h, t] with t on a boundary then holds exactly the 5-minute windows
# that end by t, and window aggregates give the raw answer.
DS_OFFSET_MS = 7_000


def downsample_series(end_ms: int) -> list[tuple[dict, list[tuple[int, float]]]]:
    start = (end_ms - SPAN_MS) // STEP_MS * STEP_MS + DS_OFFSET_MS
    times = list(range(start, end_ms - STEP_MS, STEP_MS))
    out = []
    for j, job in enumerate(JOBS):
        total, counter = 0.0, []
        for i, t in enumerate(times):
            total = 1.0 if i == len(times) // 3 else total + 3 + j  # a reset
            counter.append((t, total))
        gauge = [(t, round(math.cos(i / 7) * 50 + j, 6)) for i, t in enumerate(times)]
        out.append(({"__name__": "ds_requests_total", "job": job}, counter))
        out.append(({"__name__": "ds_temperature", "job": job}, gauge))
    return out


# query -> (step, whether the answer equals the raw one exactly or within 1%)
DS_QUERIES = {
    "sum by (job) (rate(ds_requests_total[1h]))": (300, False),
    "increase(ds_requests_total[1h])": (300, False),
    "count_over_time(ds_temperature[1h])": (300, True),
    "sum_over_time(ds_temperature[1h])": (300, True),
    "min_over_time(ds_temperature[1h])": (300, True),
    "max_over_time(ds_temperature[1h])": (300, True),
    "last_over_time(ds_temperature[1h])": (300, True),
    "avg_over_time(ds_temperature[1h])": (300, True),
    "count_over_time(ds_temperature[8h])": (3600, True),
}


def range_with_stats(lookout, expr: str, start: float, end: float, step: int):
    data = lookout.api_get("/api/v1/query_range", {"query": expr, "start": str(start),
                                                   "end": str(end), "step": str(step),
                                                   "stats": "all"})
    values = {frozenset(s["metric"].items()): [(t, float(v)) for t, v in s["values"]]
              for s in data["result"]}
    return values, data["stats"]["archive"]["resolution"]


def assert_close(got: dict, want: dict, rel: float, what: str) -> None:
    assert got.keys() == want.keys(), what
    for key, points in want.items():
        assert [t for t, _ in got[key]] == [t for t, _ in points], f"{what} {key}: steps"
        for (t, g), (_, w) in zip(got[key], points):
            assert math.isclose(g, w, rel_tol=rel, abs_tol=1e-9), f"{what} {dict(key)} @{t}: {g} != {w}"


def test_coarse_queries_read_rollups_and_answer_as_raw_data_does(lookout_factory):
    lookout = lookout_factory(WARM)
    end_ms = int(time.time() * 1000)
    series = downsample_series(end_ms)
    push(lookout, series)
    first_ms = min(s[0][0] for _, s in series)
    last_ms = max(s[-1][0] for _, s in series)
    def steps(step: int) -> tuple[int, int]:
        """Steps on boundaries of `step` to the data's end, from an hour into the data (so
        the 1 h ranges are full) or, for hourly steps (8 h ranges), from its start."""
        lead = 3_600_000 if step < 3600 else 0
        return (-(-(first_ms + lead) // (step * 1000)) * step, last_ms // (step * 1000) * step)

    start, end = steps(300)
    raw = {}
    for expr, (step, _) in DS_QUERIES.items():
        raw[expr], resolution = range_with_stats(lookout, expr, *steps(step), step)
        assert resolution == "raw", f"{expr}: nothing is archived yet"
        assert raw[expr], f"{expr}: no answer"
    wait_archived(lookout, series)

    for expr, (step, exact) in DS_QUERIES.items():
        got, resolution = range_with_stats(lookout, expr, *steps(step), step)
        assert resolution == ("1h" if step == 3600 else "5m"), expr
        assert_close(got, raw[expr], 1e-9 if exact else 0.01, expr)
    # a plain selector, or a fine step, reads raw samples and answers exactly as before
    before = lookout.query_range("ds_temperature", start, end, 300)
    _, resolution = range_with_stats(lookout, "ds_temperature", start, end, 300)
    assert resolution == "raw"
    assert lookout.query_range("ds_temperature", start, end, 300) == before
    _, resolution = range_with_stats(lookout, "rate(ds_requests_total[1h])", start, end, 60)
    assert resolution == "raw"

    # the rollup files, read by pyarrow: every sample counted once, aggregates as pushed
    tiers = lookout.api_get("/api/v1/status/tsdb")["tiers"]
    assert tiers["archive"]["rollups"]["files"] >= 2
    for resolution_ms, name in ((300_000, "metrics-5m"), (3_600_000, "metrics-1h")):
        files = sorted((lookout.data_dir / "archive" / name).rglob("*.parquet"))
        assert files and all(p.parent.name.startswith("date=") for p in files)
        for p in files:
            assert pq.ParquetFile(p).metadata.metadata[b"lookout.schema"] == b"metrics-rollup/v1"
        rows = [r for p in files for r in pq.read_table(p).to_pylist()]
        assert set(rows[0]) == {"metric", "labels", "timestamp", "count", "sum", "min", "max",
                                "first", "last", "increase"}
        for labels, samples in series:
            rest = {k: v for k, v in labels.items() if k != "__name__"}
            mine = sorted((r for r in rows if r["metric"] == labels["__name__"]
                           and json.loads(r["labels"]) == rest), key=lambda r: r["timestamp"])
            windows: dict[int, list] = {}
            for t, v in samples:
                windows.setdefault(t // resolution_ms, []).append((t, v))
            assert len(mine) == len(windows), f"{name} {labels}"
            for r, (_, w) in zip(mine, sorted(windows.items())):
                values = [v for _, v in w]
                assert int(r["timestamp"].timestamp() * 1000) == w[-1][0]
                assert r["count"] == len(w) and r["last"] == values[-1] and r["first"] == values[0]
                assert (r["min"], r["max"]) == (min(values), max(values))
                assert math.isclose(r["sum"], sum(values), rel_tol=1e-12)
