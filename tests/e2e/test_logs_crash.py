"""Logs survive `kill -9` in the middle of a stream of pushes and a clean restart: every record
whose push was acknowledged is searchable afterwards, exactly once (counted by a unique id in
its body), and nothing that was never sent appears.

Two writers push at the same time, one over Loki push (JSON), one over OTLP/HTTP (protobuf),
each batch of records under its own service; the server is killed while both still push.
"""

from __future__ import annotations

import re
import threading
import time
from collections import Counter

import requests
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceResponse

from helpers import otlp_log_record, otlp_logs_request, post_otlp_logs, push_loki, search_logs, wait_until

RECORDS_PER_BATCH = 10
MAX_BATCHES = 450  # per writer: the records of one writer stay under one search's limit (5000)
PACE_S = 0.01  # between a writer's batches, so MAX_BATCHES outlasts the kill
# The kill comes after this long, so index commits (every second) have happened and the
# replay has to skip what was committed and re-index only the rest.
KILL_AFTER_S = 2.5
KILL_AFTER_BATCHES = 60  # acknowledged, over both writers, at least
ID = re.compile(r"crash-rec (w\d+-\d+-\d+) payload")


class Writer(threading.Thread):
    """Pushes batches of RECORDS_PER_BATCH records until told to stop or the server goes
    away; `acked` holds the ids of every record of every acknowledged batch."""

    def __init__(self, lookout, name: str, protocol: str):
        super().__init__(daemon=True)
        self.lookout, self.wname, self.protocol = lookout, name, protocol
        self.acked: list[str] = []
        self.sent: list[str] = []
        self.errors: list = []
        self.stop = threading.Event()

    def batch(self, seq: int) -> tuple[list[str], int]:
        ids = [f"{self.wname}-{seq}-{k}" for k in range(RECORDS_PER_BATCH)]
        return ids, time.time_ns() - 1_000_000_000

    def push(self, ids: list[str], t: int) -> bool:
        """True when acknowledged; False when refused for overload (retried)."""
        service = f"crash-{self.wname}"
        if self.protocol == "loki":
            entries = [(t + k, f"crash-rec {i} payload") for k, i in enumerate(ids)]
            r = push_loki(self.lookout, [({"service_name": service, "level": "info"}, entries)], timeout=5)
            if r.status_code == 204:
                return True
        else:
            records = [otlp_log_record(f"crash-rec {i} payload", t + k, 9) for k, i in enumerate(ids)]
            body = otlp_logs_request([({"service.name": service}, records)]).SerializeToString()
            r = post_otlp_logs(self.lookout, body, timeout=5)
            if r.status_code == 200:
                resp = ExportLogsServiceResponse()
                resp.ParseFromString(r.content)
                if resp.partial_success.rejected_log_records:
                    self.errors.append(("partial success", resp.partial_success))
                    self.stop.set()
                return True
        if r.status_code in (429, 503):
            return False
        self.errors.append((r.status_code, r.text))
        self.stop.set()
        return False

    def run(self) -> None:
        seq = 0
        while not self.stop.is_set() and seq < MAX_BATCHES:
            ids, t = self.batch(seq)
            self.sent.extend(ids)
            try:
                ok = self.push(ids, t)
            except requests.RequestException:
                return  # the server is gone: nothing after this was acknowledged
            if ok:
                self.acked.extend(ids)
                seq += 1
            time.sleep(PACE_S)


def stored_ids(lookout, writer: Writer, since_s: int) -> Counter:
    records = search_logs(lookout, f"service:crash-{writer.wname}", start=since_s, limit=5000)
    assert len(records) < 5000, "more records than one search returns: lower MAX_BATCHES"
    out: Counter = Counter()
    for r in records:
        m = ID.fullmatch(r["body"])
        assert m, r["body"]
        out[m.group(1)] += 1
    return out


def check_exactly_once(lookout, writers: list[Writer], acked: dict, since_s: int) -> None:
    for w in writers:
        want = set(acked[w.wname])
        # replayed records become searchable within the commit interval
        got = wait_until(
            lambda: (lambda c: c if want <= set(c) else None)(stored_ids(lookout, w, since_s)),
            timeout=15,
            what=f"every acknowledged record of {w.wname} ({len(want)})",
        )
        twice = {i: n for i, n in got.items() if n != 1}
        assert not twice, f"{w.wname}: records stored more than once: {sorted(twice.items())[:10]}"
        never_sent = set(got) - set(w.sent)
        assert not never_sent, f"{w.wname}: records that were never sent: {sorted(never_sent)[:10]}"


def test_kill9_mid_stream_keeps_every_acknowledged_record_once(lookout_factory):
    lookout = lookout_factory()
    since = int(time.time()) - 60
    writers = [Writer(lookout, "w0", "loki"), Writer(lookout, "w1", "otlp")]
    for w in writers:
        w.start()
    started = time.monotonic()
    wait_until(
        lambda: (time.monotonic() - started >= KILL_AFTER_S
                 and sum(len(w.acked) for w in writers) >= KILL_AFTER_BATCHES * RECORDS_PER_BATCH)
        or any(w.errors for w in writers)
        or not any(w.is_alive() for w in writers),
        timeout=30,
        what=f"{KILL_AFTER_BATCHES} acknowledged batches",
    )
    # Both writers are still pushing: the kill lands in the middle of requests.
    assert all(w.is_alive() for w in writers), "a writer finished before the kill"
    lookout.kill9()
    for w in writers:
        w.stop.set()
        w.join(timeout=15)
    for w in writers:
        assert not w.errors, (w.wname, w.errors[:3])
        assert w.acked, f"{w.wname} had nothing acknowledged"
    acked = {w.wname: list(w.acked) for w in writers}

    lookout.start()
    check_exactly_once(lookout, writers, acked, since)

    # A clean restart right after recovery: the same records, still once each.
    before = {w.wname: stored_ids(lookout, w, since) for w in writers}
    lookout.restart()
    check_exactly_once(lookout, writers, acked, since)
    assert {w.wname: stored_ids(lookout, w, since) for w in writers} == before

    # And a second kill right after: replaying twice doubles nothing.
    lookout.kill9()
    lookout.start()
    check_exactly_once(lookout, writers, acked, since)
    assert {w.wname: stored_ids(lookout, w, since) for w in writers} == before

    # The store keeps taking records after all that.
    entry = (time.time_ns(), "crash-rec w0-999-0 payload")
    r = push_loki(lookout, [({"service_name": "crash-w0", "level": "info"}, [entry])])
    assert r.status_code == 204, (r.status_code, r.text)
    wait_until(lambda: stored_ids(lookout, writers[0], since).get("w0-999-0") == 1, timeout=10, what="a new record")


def test_sigterm_keeps_every_acknowledged_record(lookout_factory):
    lookout = lookout_factory()
    since = int(time.time()) - 60
    w = Writer(lookout, "w2", "otlp")
    for seq in range(20):
        ids, t = w.batch(seq)
        w.sent.extend(ids)
        assert w.push(ids, t), w.errors
        w.acked.extend(ids)
    # stopped right after the last ack: what is not committed to the index yet is in the WAL
    lookout.restart()
    check_exactly_once(lookout, [w], {"w2": w.acked}, since)
    lookout.restart()
    check_exactly_once(lookout, [w], {"w2": w.acked}, since)
