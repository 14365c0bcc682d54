"""Flower (a real ``celery -A worker flower`` subprocess) shows a running job's PROGRESS and its end."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid

import pytest
from _workers import ROOT, poll, worker_env

from worker import submit_sync

pytestmark = pytest.mark.usefixtures("workers")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def get(url: str):
    try:
        with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - loopback only
            body = response.read()
            try:
                return response.status, json.loads(body or b"null")
            except ValueError:
                return response.status, body.decode(errors="replace")
    except OSError:
        return None, None


def test_flower_shows_job_progress_and_result(redis_db, tmp_path) -> None:
    port = free_port()
    env = worker_env()
    env["FLOWER_UNAUTHENTICATED_API"] = "true"
    log = open(tmp_path / "flower.log", "wb")  # noqa: SIM115 - closed below
    flower = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "worker",
            "flower",
            f"--port={port}",
            "--address=127.0.0.1",
            f"--db={tmp_path / 'flower.db'}",
        ],
        cwd=str(ROOT),
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    gate = f"test:gate:{uuid.uuid4().hex}"
    try:
        poll(lambda: get(f"{base}/healthcheck")[0] == 200, what="flower to answer")

        # Flower answers before its event receiver is bound: a job's events sent before are lost for good (task
        # events are Redis pub/sub). Warm-up jobs, one after another until Flower shows one complete: then events
        # flow.
        def warm_up_seen() -> bool:
            warm_up = submit_sync(source="dataset", target="dataset", source_kwargs={"data": {"site": [{"name": "w"}]}})
            warm_up.wait(timeout=60)
            seen = time.monotonic() + 5
            while time.monotonic() < seen:
                if (get(f"{base}/api/task/info/{warm_up.id}.finish")[1] or {}).get("state") == "SUCCESS":
                    return True
                time.sleep(0.1)
            return False

        poll(warm_up_seen, timeout=120, what="flower to see events")
        source = {"site": [{"name": "s-0"}, {"name": "s-1", "note": f"wait:{gate}"}]}
        handle = submit_sync(source="dataset", target="dataset", source_kwargs={"data": source})

        def progress_seen():
            status, info = get(f"{base}/api/task/info/{handle.id}")
            return status == 200 and info.get("state") == "PROGRESS" and "sync" in str(info.get("result")) and info

        info = poll(progress_seen, what="flower to show the job in PROGRESS")
        assert info["result"].startswith("sync ") and info["result"].endswith("/2")
        status, result = get(f"{base}/api/task/result/{handle.id}")
        assert status == 200 and result["state"] == "PROGRESS"
        redis_db.set(gate, 1)
        handle.wait(timeout=60)
        done = poll(
            lambda: (get(f"{base}/api/task/info/{handle.id}")[1] or {}).get("state") == "SUCCESS",
            what="flower to show the job succeeded",
        )
        assert done
        status, result = get(f"{base}/api/task/result/{handle.id}")
        assert result["state"] == "SUCCESS" and result["result"]["counts"] == {"create": {"success": 2}}

        # The job's own task reads as a sync: its adapters as arguments, its report's gist as its result.
        def job_shown():
            status, info = get(f"{base}/api/task/info/{handle.id}")
            return info if status == 200 and info.get("args") and "'status'" in str(info.get("result")) else None

        job_info = poll(job_shown, what="the job's arguments and result in flower")
        assert job_info["args"] == "dataset -> dataset" and job_info["kwargs"] == "{}"
        assert "'status': 'success'" in job_info["result"]
        assert "'counts': {'create': {'success': 2}}" in job_info["result"] and "kwargs" not in job_info["result"]
        # Tasks are listed under the workers that exist, never under a made-up gen<pid>@host.
        status, tasks = get(f"{base}/api/tasks")
        mine = {task_id: task for task_id, task in tasks.items() if task_id.startswith(handle.id)}
        assert mine and all(str(task.get("worker")).split("@")[0] in ("alpha", "beta") for task in mine.values())
        status, workers = get(f"{base}/api/workers?refresh=1")
        assert status == 200 and not [name for name in workers if name.startswith("gen")], workers

        # A shard shows readable arguments and a result.
        def shard_shown():  # its events (received: args; succeeded: result) may reach Flower in any order
            info = get(f"{base}/api/task/info/{handle.id}.shard-0")[1] or {}
            return info if info.get("args") and info.get("result") else None

        shard = poll(shard_shown, what="the shard's arguments and result in flower")
        assert shard["args"] == f"job {handle.id} shard 0"
        assert "'applied': 2" in shard["result"] and "'seconds'" in shard["result"]
    finally:
        redis_db.delete(gate)
        os.killpg(flower.pid, signal.SIGTERM)
        flower.wait(timeout=20)
        log.close()
