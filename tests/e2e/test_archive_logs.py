"""The archive tier for logs: with a warm window of seconds and one-second partitions, log
partitions move to Parquet files during the test (a local directory, and a real
S3-compatible server: moto), and the same searches, histograms and field summaries answer the
same before and after, and after a restart. Records are sent by the real OpenTelemetry SDK
(logging handler, OTLP/HTTP exporter). The files are read with pyarrow and must hold exactly
what was sent. Crash tests abort the process at each step of a move and check that the
restart loses and duplicates nothing."""

from __future__ import annotations

import io
import json
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.sdk.trace import TracerProvider

from helpers import Lookout, self_metrics, wait_until
from test_archive import archive_where, s3_env  # noqa: F401 (s3_env is a fixture)
from test_logs import SdkService

WARM_S = 8
RECORDS = 40
CONFIG = {"storage": {"logs": {"warm_for": f"{WARM_S}s", "partition_span": "1s"}}}


def send(lookout: Lookout) -> tuple[list[dict], float, str]:
    """40 records from two services over the last four seconds, every fourth inside a span;
    returns what was sent (service, body, severity, time), the start time and a trace id."""
    services = {name: SdkService(name, OTLPLogExporter(endpoint=f"{lookout.otlp_http}/v1/logs", timeout=10))
                for name in ("checkout", "payments")}
    tracer = TracerProvider().get_tracer("e2e.archive")
    base = time.time() - 4
    sent, trace_id = [], ""
    for i in range(RECORDS):
        svc = services["checkout" if i % 2 else "payments"]
        at = round(base + i * 0.1, 2)
        level = "warning" if i % 5 == 0 else "info"
        body = f"order {i} charged in {i * 3}ms 订单已支付"
        if i % 4 == 0:
            with tracer.start_as_current_span(f"charge-{i}") as span:
                trace_id = format(span.get_span_context().trace_id, "032x")
                getattr(svc.logger, level)(body, extra={"at": at, "order": str(i)})
        else:
            getattr(svc.logger, level)(body, extra={"at": at, "order": str(i)})
        sent.append({"service": svc.name, "body": body, "severity": level, "i": i})
    for svc in services.values():
        svc.flush()
    return sent, int(base) - 1, trace_id


def query(lookout: Lookout, q: str, start: float, end: float, **params) -> dict:
    p = {"query": q, "start": str(start), "end": str(end), **{k: str(v) for k, v in params.items()}}
    return lookout.api_get("/api/v1/logs/query", p)


def answers(lookout: Lookout, start: float, trace_id: str) -> dict:
    """Everything compared before and after the move (whole answers, records in order)."""
    end = start + 10
    out = {}
    for name, q, params in [
        ("all", "", {"limit": 1000}),
        ("newest", "", {"limit": 5}),
        ("oldest", "", {"limit": 5, "direction": "forward"}),
        ("field", "service:payments AND severity>=warn", {}),
        ("phrase", '"charged in 9ms"', {}),
        ("cjk", "已支付", {"limit": 1000}),
        ("trace", f"trace_id:{trace_id}", {}),
        ("attr", "attr.order:7 OR attr.order:8", {}),
    ]:
        out[name] = query(lookout, q, start, end, **params)["records"]
    out["histogram"] = lookout.api_get("/api/v1/logs/histogram", {
        "query": "", "start": str(start), "end": str(end), "step": "1s", "by": "severity"})
    out["fields"] = lookout.api_get("/api/v1/logs/fields", {
        "query": "", "start": str(start), "end": str(end)})
    return out


def files_read(lookout: Lookout, start: float) -> int:
    return query(lookout, "", start, start + 10, limit=1000)["stats"]["archive"]["filesRead"]


def local_partitions(lookout: Lookout) -> list[Path]:
    root = lookout.data_dir / "logs" / "partitions"
    return [p for p in root.iterdir() if p.name.isdigit()] if root.exists() else []


def wait_moved(lookout: Lookout, timeout: float = 60) -> None:
    wait_until(lambda: not local_partitions(lookout), timeout=timeout,
               what="every log partition moved to the archive")


def check_tables(tables: list, sent: list[dict], trace_id: str) -> None:
    """The archived rows are exactly the records sent."""
    rows = []
    for t in tables:
        times = t.column("time").cast("int64").to_pylist()
        assert all(abs(ns / 1e9 - time.time()) < 600 for ns in times), "times are Unix nanoseconds"
        rows += t.drop_columns(["time", "observed_time"]).to_pylist()
    assert len(rows) == len(sent)
    got = sorted((r["service"], r["body"], r["severity_number"] >= 13) for r in rows)
    want = sorted((s["service"], s["body"], s["severity"] == "warning") for s in sent)
    assert got == want
    for t in tables:
        services = t.column("service").to_pylist()
        assert services == sorted(services), "rows are sorted by service"
    with_trace = [r for r in rows if r["trace_id"] is not None]
    assert len(with_trace) == RECORDS // 4
    assert trace_id in {r["trace_id"].hex() for r in with_trace}
    one = rows[0]
    assert json.loads(one["resource"])["service.name"] == one["service"]
    assert "order" in json.loads(one["attributes"])


def local_tables(lookout: Lookout) -> list:
    files = sorted((lookout.data_dir / "archive" / "logs").rglob("*.parquet"))
    manifest = json.loads((lookout.data_dir / "archive" / "manifest.json").read_text())
    named = sorted(f["path"] for f in manifest["files"] if f["signal"] == "logs")
    assert [str(p.relative_to(lookout.data_dir / "archive")) for p in files] == named, \
        "every file is named by the manifest, and nothing else is left"
    for p in files:
        assert p.parent.name.startswith("hour=") and p.parent.parent.name.startswith("date=")
        meta = pq.ParquetFile(p).metadata
        assert meta.metadata[b"lookout.schema"] == b"logs/v1"
        time_col = meta.row_group(0).column(1)
        assert time_col.compression == "ZSTD" and time_col.statistics.has_min_max
    return [pq.read_table(p) for p in files]


def s3_log_tables(client) -> list:
    objects = client.list_objects_v2(Bucket="lookout-archive", Prefix="team-a/logs/")["Contents"]
    return [pq.read_table(io.BytesIO(client.get_object(Bucket="lookout-archive", Key=o["Key"])["Body"].read()))
            for o in objects]


@pytest.mark.parametrize("where", ["local", "s3"])
def test_logs_move_to_the_archive_and_answer_the_same(lookout_factory, tmp_path, s3_env, where):  # noqa: F811
    with archive_where(where, CONFIG, tmp_path, s3_env) as (config, client, env):
        lookout = lookout_factory(config, start=False)
        lookout.start(env=env)
        sent, start, trace_id = send(lookout)
        wait_until(lambda: len(query(lookout, "", start, start + 10, limit=1000)["records"]) == RECORDS,
                   timeout=10, what="records searchable")
        before = answers(lookout, start, trace_id)
        assert len(before["all"]) == RECORDS and len(before["trace"]) >= 1
        assert len(before["cjk"]) == RECORDS and len(before["phrase"]) == 1

        warm = lookout.api_get("/api/v1/status/logs")["tiers"]["warm"]
        assert warm["records"] == RECORDS and warm["bytes"] > 0, warm

        wait_moved(lookout)
        assert answers(lookout, start, trace_id) == before
        assert files_read(lookout, start) >= 1
        tiers = lookout.api_get("/api/v1/status/logs")["tiers"]
        assert tiers["warm"]["partitions"] == 0 and tiers["warm"]["records"] == 0, tiers
        assert tiers["archive"]["records"] == RECORDS and tiers["archive"]["files"] >= 1, tiers
        assert tiers["archive"]["bytes"] > 0, tiers
        moved = self_metrics(lookout, "lookout_archive_moves_total")
        assert moved[frozenset({("signal", "logs")})] >= 1
        tables = local_tables(lookout) if client is None else s3_log_tables(client)
        check_tables(tables, sent, trace_id)

        lookout.restart(env=env)
        assert answers(lookout, start, trace_id) == before


@pytest.mark.parametrize(
    "step", ["archive.logs.after_file", "archive.logs.before_manifest", "archive.logs.before_delete"]
)
def test_a_log_move_killed_at_each_step_loses_and_duplicates_nothing(lookout_factory, step):
    lookout = lookout_factory(CONFIG, start=False)
    lookout.start(env={"LOOKOUT_FAILPOINT": step})
    sent, start, trace_id = send(lookout)
    wait_until(lambda: lookout.proc.poll() is not None, timeout=60, what=f"abort at {step}")
    assert step in lookout.log_tail(20)
    lookout.kill9()  # closes the log; the process is already gone

    lookout.start()
    wait_moved(lookout)
    records = query(lookout, "", start, start + 10, limit=1000)["records"]
    assert sorted(r["body"] for r in records) == sorted(s["body"] for s in sent)
    check_tables(local_tables(lookout), sent, trace_id)
