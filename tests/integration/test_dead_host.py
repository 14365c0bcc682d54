"""A whole worker host dies mid-shard (its process group SIGKILLed): the job still completes, quickly.

Its own workers and broker database (14), so that killing a node leaves the suite's workers alone, and the
default claim expiry and watchdog interval: the shard runs again on the surviving worker after about
SHARDSYNC_CLAIM_TTL + SHARDSYNC_WATCHDOG_INTERVAL (30 + 10 s), not the broker's visibility timeout (an hour).
"""

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
from _workers import ROOT, poll, start_worker, stop_workers, worker_env
from redis import Redis
from ss_test_adapters import read_calls

from core import keys

URL = "redis://127.0.0.1:6379/14"


@pytest.fixture
def node_env(monkeypatch):
    client = Redis.from_url(URL)
    client.flushdb()
    env = worker_env()
    env["SHARDSYNC_BROKER_URL"] = URL
    for name in ("SHARDSYNC_CLAIM_TTL", "SHARDSYNC_WATCHDOG_INTERVAL", "SHARDSYNC_LOCK_TTL"):
        env.pop(name, None)  # the defaults
    yield client, env
    client.flushdb()


def test_a_dead_host_shard_runs_again_within_a_minute(node_env, tmp_path) -> None:
    client, env = node_env
    gate, calls_key = f"test:gate:{uuid.uuid4().hex}", f"test:calls:{uuid.uuid4().hex}"
    nodes = {name: start_worker(name, tmp_path, env=env) for name in ("gamma", "delta")}
    try:
        sites = [{"name": f"s-{i}", "note": "", "devices": [{"name": "d0", "note": ""}]} for i in range(6)]
        sites[4]["note"] = f"wait:{gate}"  # the fifth site's create blocks: the four before it are done
        submitted = subprocess.run(
            [sys.executable, "-m", "worker.cli", "sync", "--no-wait", "--shard-size", "1000",
             "--source", "dataset", "--target", "dataset",
             "--source-kwargs", json.dumps({"data": {"region": [], "site": sites}}),
             "--target-kwargs", json.dumps({"record_url": URL, "calls_key": calls_key})],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=True,
        )  # fmt: skip
        job_id = submitted.stdout.strip()
        blocked = poll(
            lambda: next((c for c in read_calls(client, calls_key) if c[2] == "s-4"), None),
            timeout=90,
            what="the blocked hook",
        )
        host = next(name for name, proc in nodes.items() if os.getpgid(blocked[4]) == proc.pid)
        os.killpg(nodes[host].pid, signal.SIGKILL)  # the whole node: main process and pool, no goodbye
        nodes[host].wait(timeout=10)
        died = time.monotonic()
        client.set(gate, 1)
        raw = poll(lambda: client.get(keys.job_key(job_id, "report")), timeout=90, what="the job's report")
        recovered = time.monotonic() - died
        print(f"job finished {recovered:.1f} s after its host died")
        report = msgpack.unpackb(raw, raw=False)
        assert report["status"] == "success", report["error"]
        assert recovered < 60, f"the job took {recovered:.0f} s after its host died"
        per_object = {}
        for action, model, uid, _, _ in read_calls(client, calls_key):
            if action != "sync_complete":
                per_object[(action, model, uid)] = per_object.get((action, model, uid), 0) + 1
        assert per_object.pop(("create", "site", "s-4")) == 2  # the hook in flight, and only it, ran again
        assert set(per_object.values()) == {1} and len(per_object) == 11
        (shard,) = report["shards"]
        alive = next(name for name in nodes if name != host)
        assert shard["worker"].startswith(f"{alive}@") and shard["replayed"] >= 8
    finally:
        stop_workers(list(nodes.values()))


def test_a_node_killed_mid_sync_reruns_at_most_one_hook_per_pool_process(node_env, tmp_path) -> None:
    """Two nodes of two pool processes each apply many small shards, hooks running freely; one node is
    SIGKILLed at a moment nobody chose. Each operation's journal entry was sent before the next hook ran, so at
    most the hook in flight in each killed pool process runs again: two at most, each first run by a killed
    process (counted across processes)."""
    client, env = node_env
    env = {**env, "SHARDSYNC_CLAIM_TTL": "10", "SHARDSYNC_WATCHDOG_INTERVAL": "1"}  # a quick takeover
    calls_key = f"test:calls:{uuid.uuid4().hex}"
    nodes = {name: start_worker(name, tmp_path, concurrency=2, env=env) for name in ("gamma", "delta")}
    try:
        sites = [
            {"name": f"s-{i:03}", "note": "sleep:0.01", "devices": [{"name": "d0", "note": "sleep:0.01"}]}
            for i in range(150)
        ]
        submitted = subprocess.run(
            [sys.executable, "-m", "worker.cli", "sync", "--no-wait", "--shard-size", "20",
             "--source", "dataset", "--target", "dataset",
             "--source-kwargs", json.dumps({"data": {"region": [], "site": sites}}),
             "--target-kwargs", json.dumps({"record_url": URL, "calls_key": calls_key})],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=True,
        )  # fmt: skip
        job_id = submitted.stdout.strip()

        def busy_on_both() -> bool:
            pids = {call[4] for call in read_calls(client, calls_key)}
            groups = {os.getpgid(pid) for pid in pids if _alive(pid)}
            return len(read_calls(client, calls_key)) >= 60 and {p.pid for p in nodes.values()} <= groups

        poll(busy_on_both, timeout=90, what="both nodes to be applying shards")
        killed = {pid for pid in _pool_pids(nodes["gamma"].pid)}
        os.killpg(nodes["gamma"].pid, signal.SIGKILL)
        nodes["gamma"].wait(timeout=10)
        raw = poll(lambda: client.get(keys.job_key(job_id, "report")), timeout=120, what="the job's report")
        report = msgpack.unpackb(raw, raw=False)
        assert report["status"] == "success", report["error"]
        first_by: dict = {}
        runs: dict = {}
        for action, model, uid, _, pid in read_calls(client, calls_key):
            if action == "sync_complete":
                continue
            runs[(action, model, uid)] = runs.get((action, model, uid), 0) + 1
            first_by.setdefault((action, model, uid), pid)
        again = {op for op, count in runs.items() if count > 1}
        assert len(runs) == 300 and all(runs[op] == 2 for op in again), runs
        assert len(again) <= len(killed), f"{len(again)} hooks ran twice, {len(killed)} pool processes killed"
        assert all(first_by[op] in killed for op in again), "a hook ran again that no killed process had run"
        print(f"hooks run again after the node's {len(killed)} pool processes died: {sorted(again)}")
    finally:
        stop_workers(list(nodes.values()))


def _alive(pid: int) -> bool:
    try:
        os.getpgid(pid)
    except ProcessLookupError:
        return False
    return True


def _pool_pids(group: int) -> list:
    """The processes of a worker node's group but its main process (its pool processes)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != group:
            try:
                if os.getpgid(int(entry)) == group:
                    found.append(int(entry))
            except ProcessLookupError:
                continue
    return found
