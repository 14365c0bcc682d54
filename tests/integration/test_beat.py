"""``celery -A worker beat`` (a real subprocess) runs scheduled syncs on real workers, one run per entry at a time."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import IO, List, Optional, Tuple

import msgpack
import pytest
from _workers import REDIS_URL, ROOT, poll, worker_env
from redis import Redis

from core import keys
from core.store.redis import RedisStore
from worker.api import list_jobs
from worker.job.spec import JobSpec
from worker.schedule.ticks import running_job, skipped_ticks
from worker.state import RedisJobState
from worker.web import reads

pytestmark = pytest.mark.usefixtures("workers")

JOB_PREFIX, INFO_SUFFIX = keys.job_key("\0", "info").split("\0")


def start_beat(schedule: Path, tmp_path: Path) -> Tuple[subprocess.Popen, IO[bytes]]:
    """A real ``celery -A worker beat`` reading ``schedule``, in a process group of its own; its log file."""
    env = worker_env()
    env["SHARDSYNC_SCHEDULE_FILE"] = str(schedule)
    log = open(tmp_path / "beat.log", "wb")  # noqa: SIM115 - closed by stop_beat
    beat = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "worker", "beat", "-s", str(tmp_path / "beat-state"), "-l", "info"],
        cwd=str(ROOT),
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    return beat, log


def stop_beat(beat: subprocess.Popen, log: IO[bytes]) -> None:
    """Stop beat and whatever it started (its process group): SIGTERM, then SIGKILL if it lingers."""
    if beat.poll() is None:
        os.killpg(beat.pid, signal.SIGTERM)
        try:
            beat.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(beat.pid, signal.SIGKILL)
            beat.wait(timeout=10)
    log.close()


def entry_jobs(client: Redis, name: str) -> List[str]:
    """Ids of the jobs recorded for a schedule entry (their info names it), in no particular order."""
    found = []
    for raw in client.scan_iter(match=keys.job_key("*", "info"), count=1000):
        if client.hget(raw, "schedule") == msgpack.packb(name):
            found.append(raw.decode()[len(JOB_PREFIX) : -len(INFO_SUFFIX)])
    return found


def ticks_in_flight(client: Redis) -> bool:
    """Whether a tick's message waits in the jobs queue or runs on a worker (unacknowledged)."""
    messages = client.lrange("shardsync.jobs", 0, -1) + client.hvals("unacked")
    return any(b"shardsync.scheduled" in message for message in messages)


def forget_entry(client: Redis, name: str, job_ids: List[str]) -> None:
    """Delete what an entry's runs left in Redis: beat's entry, the published job, the marker and skip count,
    the jobs (state, stores, task results, the target's lock record) and the ticks' task results."""
    beat_name = f"shardsync:{name}"
    client.delete(f"shardsync:~beat:{beat_name}", keys.schedule_key(beat_name), keys.schedule_run_key(name))
    client.zrem("shardsync:~beat::schedule", f"shardsync:~beat:{beat_name}")
    client.srem("shardsync:~beat::statics", beat_name)
    client.hdel(keys.SCHEDULE_SKIPS, name)
    targets = set()
    for job_id in job_ids:
        job = RedisJobState(job_id, client)
        spec = job.spec_data()
        if spec:
            targets.add(JobSpec.from_data(spec).target_identity())
        for store_id in job.store_ids().values():
            RedisStore(url=REDIS_URL, store_id=store_id).clear()
        for pattern in (keys.job_pattern(job_id), f"celery-task-meta-{job_id}*"):
            for key in client.scan_iter(match=pattern, count=1000):
                client.delete(key)
    for target in targets:
        client.delete(keys.lock_holder_key(target))
    for key in client.scan_iter(match="celery-task-meta-*", count=1000):
        if beat_name.encode() in (client.get(key) or b""):  # a tick's result names its entry (result_extended)
            client.delete(key)


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
    beat, log = start_beat(path, tmp_path)
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
        # A tick while the entry's last run still ran started nothing: no run failed at the target lock.
        assert all(report["status"] == "success" for report in reports), reports
    finally:
        stop_beat(beat, log)
        poll(lambda: not ticks_in_flight(redis_db), timeout=30, what="the last ticks")
        for job in entry_jobs(redis_db, marker):
            poll(lambda job=job: RedisJobState(job, redis_db).report(), timeout=60, what=f"run {job} to end")
        forget_entry(redis_db, marker, entry_jobs(redis_db, marker))


def test_a_tick_while_the_last_run_runs_is_skipped_not_piled_up(redis_db, tmp_path, worker_logs) -> None:
    name = f"beat-slow-{uuid.uuid4().hex}"
    gate, calls = f"test:{name}:gate", f"test:{name}:calls"
    # TOML through the real beat; every second, and the run's one create waits at a gate the test opens.
    schedule = tmp_path / "schedule.toml"
    schedule.write_text(
        f"""
[[syncs]]
name = {json.dumps(name)}
every = 1
[syncs.job]
source = "dataset"
target = "dataset"
source_kwargs = {{ data = {{ site = [ {{ name = "s-1", note = {json.dumps("wait:" + gate)} }} ] }} }}
target_kwargs = {{ name = {json.dumps(name)}, record_url = {json.dumps(REDIS_URL)}, calls_key = {json.dumps(calls)} }}
"""
    )
    beat, log = start_beat(schedule, tmp_path)
    seen: List[str] = []
    try:
        first = poll(lambda: entry_jobs(redis_db, name), timeout=60, what="the first scheduled run")[0]
        seen.append(first)
        poll(lambda: redis_db.llen(calls) >= 1, timeout=60, what="the first run's create to wait at the gate")
        # Ticks keep firing while it waits: each is skipped and counted, none starts or queues a job.
        poll(lambda: skipped_ticks(name, redis_db) >= 3, timeout=30, what="three skipped ticks")
        assert entry_jobs(redis_db, name) == [first]
        assert running_job(name, redis_db) == first
        assert RedisJobState(first, redis_db).report() is None
        assert redis_db.llen(calls) == 1  # one hook call: no second run reached the target

        def skip_logged() -> Optional[str]:
            for path in worker_logs.glob("*.log"):
                for line in path.read_text(errors="replace").splitlines():
                    if "Scheduled sync skipped" in line and f"schedule='{name}'" in line:
                        return line
            return None

        line = poll(skip_logged, timeout=30, what="the skip in a worker's log")
        assert f"running_job_id='{first}'" in line and "WARNING" in line, line
        skipped_while_running = skipped_ticks(name, redis_db)
        # Not only in a log: the console (and its API) shows the entry's skipped ticks and its running job,
        # and the job list says which schedule started a job, and filters by it.
        entry = next(found for found in reads.schedules(redis_db, str(schedule))["entries"] if found["name"] == name)
        assert entry["skipped"] >= 3 and entry["running"] == first and entry["when"] == "every 1 s"
        listed = list_jobs(schedule=name, limit=None)
        assert [job["job_id"] for job in listed] == [first] and listed[0]["schedule"] == name
        assert first not in [job["job_id"] for job in list_jobs(schedule="", limit=None)]

        # The run ends: its finish lets go of the marker, and the next tick starts the next run.
        redis_db.set(gate, 1, ex=300)
        first_report = poll(lambda: RedisJobState(first, redis_db).report(), timeout=60, what="the first run's end")
        assert first_report["status"] == "success" and first_report["counts"] == {"create": {"success": 1}}
        second = poll(
            lambda: [job for job in entry_jobs(redis_db, name) if job != first], timeout=30, what="the next run"
        )[0]
        seen.append(second)
        assert poll(lambda: RedisJobState(second, redis_db).report(), timeout=60)["status"] == "success"
        assert skipped_ticks(name, redis_db) >= skipped_while_running
    finally:
        stop_beat(beat, log)
        try:
            # Beat is gone: let the ticks it sent and the runs they started end, so no worker is left waiting.
            poll(lambda: not ticks_in_flight(redis_db), timeout=30, what="the last ticks")
            redis_db.set(gate, 1, ex=300)
            for job in entry_jobs(redis_db, name):
                seen.append(job)
                poll(lambda job=job: RedisJobState(job, redis_db).report(), timeout=60, what=f"run {job} to end")
            assert running_job(name, redis_db) is None
        finally:
            forget_entry(redis_db, name, sorted(set(seen)))
            redis_db.delete(gate, calls)
