"""A data disk that fills up: Lookout pages (the built-in LookoutDiskAlmostFull alert), refuses
writes with a clear 503 naming the cause, keeps every acknowledged sample, and takes writes
again once there is room, while its own log is on the same full disk.

The disk is a small tmpfs mounted by the test (root with CAP_SYS_ADMIN, as in CI's
container); where mounting is not permitted the test is skipped and says why."""

from __future__ import annotations

import random
import subprocess
import time
from pathlib import Path

import pytest
import requests

from helpers import Lookout, remote_write, wait_until


@pytest.fixture
def small_disk(tmp_path):
    mount = tmp_path / "disk"
    mount.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mount)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def grow(mount: Path) -> None:
    subprocess.run(["mount", "-o", "remount,size=32m", str(mount)], check=True)


def test_a_full_disk_refuses_writes_clearly_keeps_what_was_acked_and_recovers(small_disk):
    (small_disk / "lookout").mkdir()
    server = Lookout(small_disk / "lookout", {"storage": {"disk_alert_free_ratio": 0.5}},
                     name="full-disk")
    try:
        server.start()
        now = int(time.time() * 1000)
        acked, refusal = [], None
        for i in range(5000):
            job = f"fill-{i}"
            samples = [(now - 1000 + k, random.random()) for k in range(200)]
            r = remote_write(server.remote_write_url,
                             [({"__name__": "fill_metric", "job": job, "pad": "x" * 200}, samples)])
            if r.status_code == 204:
                acked.append(job)
            else:
                refusal = r
                break
        assert refusal is not None, "3 MB should fill up"
        assert refusal.status_code == 503, refusal.text
        assert "No space left on device" in refusal.text, refusal.text
        # the disk is past half full: the built-in alert fires
        wait_until(lambda: any(a["labels"]["alertname"] == "LookoutDiskAlmostFull"
                               for a in requests.get(f"{server.http}/api/v2/alerts",
                                                     timeout=10).json()),
                   timeout=30, what="LookoutDiskAlmostFull firing")
        # still refusing, still answering (nothing hangs), every acknowledged series readable
        for _ in range(3):
            r = remote_write(server.remote_write_url,
                             [({"__name__": "fill_metric", "job": "late"}, [(now, 1.0)])])
            assert r.status_code == 503, r.text
        got = server.query_vector("count(count_over_time(fill_metric[1h]))")
        assert list(got.values())[0] >= len(acked)

        grow(small_disk)
        r = remote_write(server.remote_write_url,
                         [({"__name__": "after_room", "job": "a"}, [(now, 1.0)])])
        assert r.status_code == 204, r.text
        server.restart()
        jobs = {dict(k)["job"] for k in
                server.query_vector("count_over_time(fill_metric[1h])").keys()}
        assert set(acked) <= jobs, "an acknowledged series is gone after the restart"
        assert server.query_vector("after_room")
    finally:
        server.stop()
