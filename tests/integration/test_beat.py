"""``celery -A worker beat`` (a real subprocess) runs a scheduled sync on the real workers."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid

import msgpack
import pytest
from _workers import ROOT, worker_env

from core import keys

pytestmark = pytest.mark.usefixtures("workers")


def test_beat_runs_scheduled_syncs(redis_db, tmp_path) -> None:
    marker = f"beat-{uuid.uuid4().hex}"
    schedule = {
        "syncs": [
            {
                "name": marker,
                "every": 1,
                "job": {
                    "source": "dataset",
                    "target": "dataset",
                    "source_kwargs": {"data": {"site": [{"name": "s-1"}]}},
                    "target_kwargs": {"name": marker},
                },
            }
        ]
    }
    path = tmp_path / "schedule.json"
    path.write_text(json.dumps(schedule))
    env = worker_env()
    env["SHARDSYNC_SCHEDULE_FILE"] = str(path)
    log = open(tmp_path / "beat.log", "wb")  # noqa: SIM115 - closed below
    beat = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "worker", "beat", "-s", str(tmp_path / "beat-state"), "-l", "info"],
        cwd=str(ROOT),
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 90
        reports = []
        while time.monotonic() < deadline and not any(r.get("status") == "success" for r in reports):
            reports = []
            for key in redis_db.scan_iter(match=keys.job_key("*", "spec")):
                spec = msgpack.unpackb(redis_db.get(key) or msgpack.packb(None), raw=False)
                if spec and spec.get("target_kwargs", {}).get("name") == marker:
                    raw = redis_db.get(key.decode().rsplit(":", 1)[0] + ":report")
                    if raw:
                        reports.append(msgpack.unpackb(raw, raw=False))
            time.sleep(0.1)
        assert any(r.get("status") == "success" for r in reports), (tmp_path / "beat.log").read_text()[-3000:]
        ok = next(r for r in reports if r["status"] == "success")
        assert ok["counts"] == {"create": {"success": 1}}
        # Beat's state is in Redis (celery-redbeat), not in a shelve file (pickle) next to -s.
        assert not list(tmp_path.glob("beat-state*"))
        assert any(redis_db.scan_iter(match="shardsync:~beat:*"))
        # Runs that found the previous one still syncing into the same target failed, saying so.
        for report in reports:
            assert report["status"] == "success" or "being synced by job" in report["error"]
    finally:
        os.killpg(beat.pid, signal.SIGTERM)
        beat.wait(timeout=20)
        log.close()
