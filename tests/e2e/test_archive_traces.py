"""The archive tier for traces: with a warm window of seconds and one-second flushes, trace
segments move to Parquet files during the test (a local directory, and a real S3-compatible
server: moto), and trace lookups, searches (Lookout's and Jaeger's APIs), services and
operations answer the same before and after, and after a restart. Spans come from the real
OpenTelemetry SDK (three services propagating W3C context, OTLP/gRPC and HTTP). The files
are read with pyarrow and must hold exactly the spans sent. Crash tests abort the process at
each step of a move and check that the restart loses and duplicates nothing."""

from __future__ import annotations

import io
import json
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from helpers import Lookout, self_metrics, wait_until
from test_archive import archive_where, s3_env  # noqa: F401 (s3_env is a fixture)
from test_traces import MS, SPANS_PER_TRACE, Shop, get_json, run_shop

WARM_S = 8
REQUESTS = 3
CONFIG = {"storage": {"traces": {"warm_for": f"{WARM_S}s", "flush_interval": "1s"}}}


def answers(lookout: Lookout, shop: Shop) -> dict:
    """Everything compared before and after the move."""
    out: dict = {}
    for tid in shop.trace_ids:
        out[f"trace {tid}"] = lookout.api_get(f"/api/v1/traces/{tid}")
    for name, params in [
        ("all", {}),
        ("payments", {"service": "payments"}),
        ("newest", {"service": "frontend", "limit": "2"}),
        ("errors", {"service": "payments", "error": "true"}),
        ("db", {"service": "checkout", "operation": "SELECT orders"}),
    ]:
        out[name] = lookout.api_get("/api/v1/traces", {"limit": "100", **params})
    # Jaeger's query API
    out["services"] = get_json(lookout, "/api/services")
    out["operations"] = get_json(lookout, "/api/operations", {"service": "checkout"})
    out["jaeger traces"] = get_json(lookout, "/api/traces", {"service": "payments", "limit": "100"})
    return out


def local_segments(lookout: Lookout) -> list[Path]:
    root = lookout.data_dir / "traces" / "segments"
    return sorted(root.glob("*.lts")) if root.exists() else []


def check_tables(tables: list, shop: Shop) -> None:
    """The archived rows are exactly the spans sent."""
    rows = []
    for t in tables:
        starts = t.column("start_time").cast("int64").to_pylist()
        services = t.column("service").to_pylist()
        assert services == sorted(services), "rows are sorted by service"
        rows += [dict(r, start=s) for r, s in zip(
            t.drop_columns(["start_time", "end_time"]).to_pylist(), starts)]
    assert len(rows) == len(shop.spans) == REQUESTS * SPANS_PER_TRACE
    got = sorted((r["trace_id"].hex(), r["span_id"].hex(), r["service"], r["name"], r["start"],
                  r["parent_span_id"].hex() if r["parent_span_id"] else None) for r in rows)
    want = sorted((s.trace_id, s.span_id, s.service, s.name, s.start, s.parent_span_id) for s in shop.spans)
    assert got == want
    checkout = next(r for r in rows if r["name"] == "POST /api/checkout" and r["service"] == "checkout")
    attrs = {a["key"]: a["value"] for a in json.loads(checkout["attributes"])}
    assert attrs["order.id"]["stringValue"].startswith("o-")
    assert "intValue" in attrs["cart.items"] and "boolValue" in attrs["cart.gift"]
    assert checkout["kind"] == "SPAN_KIND_SERVER"
    resource = {a["key"]: a["value"] for a in json.loads(checkout["resource"])}
    assert resource["service.name"] == {"stringValue": "checkout"}


def local_tables(lookout: Lookout) -> list:
    files = sorted((lookout.data_dir / "archive" / "traces").rglob("*.parquet"))
    manifest = json.loads((lookout.data_dir / "archive" / "manifest.json").read_text())
    named = sorted(f["path"] for f in manifest["files"] if f["signal"] == "traces")
    assert [str(p.relative_to(lookout.data_dir / "archive")) for p in files] == named, \
        "every file is named by the manifest, and nothing else is left"
    for p in files:
        meta = pq.ParquetFile(p).metadata
        assert meta.metadata[b"lookout.schema"] == b"traces/v1"
        assert meta.row_group(0).column(6).statistics.has_min_max
    return [pq.read_table(p) for p in files]


def send(lookout: Lookout) -> Shop:
    # requests 2 s apart from 6 s ago: all inside the warm window when sent
    return run_shop(lookout, time.time_ns() - 6_000 * MS, n=REQUESTS)


@pytest.mark.parametrize("where", ["local", "s3"])
def test_traces_move_to_the_archive_and_answer_the_same(lookout_factory, tmp_path, s3_env, where):  # noqa: F811
    with archive_where(where, CONFIG, tmp_path, s3_env) as (config, client, env):
        lookout = lookout_factory(config, start=False)
        lookout.start(env=env)
        shop = send(lookout)
        before = answers(lookout, shop)
        assert len(before["all"]) == REQUESTS
        assert all(len(before[f"trace {t}"]["spans"]) == SPANS_PER_TRACE for t in shop.trace_ids)

        wait_until(lambda: local_segments(lookout) == [] and lookout.api_get("/api/v1/traces") != []
                   and self_metrics(lookout, "lookout_archive_moves_total").get(
                       frozenset({("signal", "traces")}), 0) >= 1,
                   timeout=60, what="trace segments moved to the archive")
        assert answers(lookout, shop) == before
        tiers = lookout.api_get("/api/v1/status/traces")["tiers"]
        assert tiers["warm"]["segments"] == 0 and tiers["hot"]["spans"] == 0, tiers
        assert tiers["archive"]["spans"] == REQUESTS * SPANS_PER_TRACE, tiers
        assert tiers["archive"]["files"] >= 1 and tiers["archive"]["bytes"] > 0, tiers
        if client is None:
            check_tables(local_tables(lookout), shop)
        else:
            objects = client.list_objects_v2(Bucket="lookout-archive", Prefix="team-a/traces/")["Contents"]
            check_tables([pq.read_table(io.BytesIO(client.get_object(
                Bucket="lookout-archive", Key=o["Key"])["Body"].read())) for o in objects], shop)

        lookout.restart(env=env)
        assert answers(lookout, shop) == before


@pytest.mark.parametrize(
    "step", ["archive.traces.after_file", "archive.traces.before_manifest", "archive.traces.before_delete"]
)
def test_a_trace_move_killed_at_each_step_loses_and_duplicates_nothing(lookout_factory, step):
    lookout = lookout_factory(CONFIG, start=False)
    lookout.start(env={"LOOKOUT_FAILPOINT": step})
    shop = send(lookout)
    wait_until(lambda: lookout.proc.poll() is not None, timeout=60, what=f"abort at {step}")
    assert step in lookout.log_tail(20)
    lookout.kill9()  # closes the log; the process is already gone

    lookout.start()
    wait_until(lambda: local_segments(lookout) == [] and local_tables(lookout) != [],
               timeout=60, what="trace segments moved to the archive")
    for tid in shop.trace_ids:
        spans = lookout.api_get(f"/api/v1/traces/{tid}")["spans"]
        assert len(spans) == SPANS_PER_TRACE, f"{tid}: {len(spans)} spans"
    check_tables(local_tables(lookout), shop)
