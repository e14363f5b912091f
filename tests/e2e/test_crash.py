"""Crash safety: every acknowledged write survives `kill -9` and shows up exactly once after
the restart replays the WAL."""

from __future__ import annotations

import threading
import time

import pytest
import requests

from helpers import remote_write, wait_until

WRITERS = 4
SAMPLES_PER_REQUEST = 5


def writer(url: str, idx: int, start_ms: int, acked: list, stop: threading.Event, errors: list):
    """Pushes one series with strictly increasing timestamps; records what got a 2xx."""
    labels = {"__name__": "crash_test", "writer": str(idx)}
    t = start_ms
    n = 0
    while not stop.is_set():
        batch = [(t + i, float(n + i)) for i in range(SAMPLES_PER_REQUEST)]
        try:
            r = remote_write(url, [(labels, batch)], timeout=5)
        except requests.RequestException:
            return  # the server is gone: nothing sent after this point was acknowledged
        if 200 <= r.status_code < 300:
            acked.extend(batch)
        elif r.status_code in (429, 503):
            continue  # backpressure: the batch was refused, retry it
        else:
            errors.append((r.status_code, r.text))
            return
        t += SAMPLES_PER_REQUEST
        n += SAMPLES_PER_REQUEST


@pytest.mark.parametrize(
    "config,min_run_s",
    [
        ({}, 0.0),
        # Persist the head to blocks every second while writing, so the kill can land in the
        # middle of a flush and the WAL truncation that follows it.
        ({"storage": {"metrics": {"flush_interval": "1s"}}}, 3.5),
    ],
    ids=["wal-only", "flushing"],
)
def test_acknowledged_samples_survive_kill9(lookout_factory, config, min_run_s):
    lookout = lookout_factory(config)
    # Timestamps one ms apart, starting a minute ago, so every sample is recent and in order.
    start_ms = int(time.time() * 1000) - 60_000
    stop = threading.Event()
    acked: list[list] = [[] for _ in range(WRITERS)]
    errors: list = []
    threads = [
        threading.Thread(
            target=writer,
            args=(lookout.remote_write_url, i, start_ms, acked[i], stop, errors),
            daemon=True,
        )
        for i in range(WRITERS)
    ]
    for th in threads:
        th.start()

    # Kill mid-stream, once a good number of writes were acknowledged.
    began = time.monotonic()
    wait_until(
        lambda: (sum(len(a) for a in acked) >= 2000 and time.monotonic() - began >= min_run_s)
        or errors,
        timeout=30,
        what="2000 acknowledged samples",
    )
    lookout.kill9()
    stop.set()
    for th in threads:
        th.join(timeout=10)
    assert not errors, f"writes were refused before the crash: {errors[:3]}"
    # Nothing acknowledged after the kill can be recorded: writers only record 2xx answers.
    snapshot = [list(a) for a in acked]
    assert all(snapshot), "every writer should have had writes acknowledged"

    lookout.start()
    end_s = max(t for a in snapshot for t, _ in a) / 1000 + 0.001
    got = lookout.query_raw("crash_test[5m]", end_s)
    check_survivors(got, snapshot, start_ms)

    # A second crash straight after recovery: replaying again must give the same answer,
    # nothing lost and nothing doubled.
    lookout.kill9()
    lookout.start()
    assert lookout.query_raw("crash_test[5m]", end_s) == got

    # And the restarted server keeps accepting writes for the same series.
    nxt = max(t for t, _ in snapshot[0]) + 1000
    r = remote_write(lookout.remote_write_url, [({"__name__": "crash_test", "writer": "0"}, [(nxt, -1.0)])])
    assert 200 <= r.status_code < 300, (r.status_code, r.text)
    assert lookout.query_vector('crash_test{writer="0"}', nxt / 1000) == {
        frozenset({"__name__": "crash_test", "writer": "0"}.items()): -1.0
    }


def check_survivors(got: dict, snapshot: list, start_ms: int) -> None:
    for i, samples in enumerate(snapshot):
        key = frozenset({"__name__": "crash_test", "writer": str(i)}.items())
        assert key in got, f"writer {i}'s series is gone after the restart; have {list(got)}"
        stored = dict()
        for t, v in got[key]:
            assert t not in stored, f"writer {i}: sample at {t} stored twice"
            stored[t] = v
        missing = [(t, v) for t, v in samples if stored.get(t / 1000) != v]
        assert not missing, (
            f"writer {i}: {len(missing)} of {len(samples)} acknowledged samples lost or changed "
            f"after kill -9, first: {missing[:5]}"
        )
        # Anything stored beyond what was acknowledged must still be a prefix of what was sent
        # (a write may land in the WAL just before the kill without its ack reaching us).
        wrong = [(t, v) for t, v in stored.items() if v != float(round(t * 1000) - start_ms)]
        assert not wrong, f"writer {i}: samples that were never sent: {wrong[:5]}"
