"""Redis at its ``maxmemory`` (noeviction) mid-sync: the job fails naming Redis memory, releases its lock, and
its journal names no operation whose store write is missing.

A throwaway ``redis-server`` of this module (its own port from 6530) holds the job state; a real worker node
uses it. The job waits at a gate in its first hook; the test then caps Redis's memory a little above what it
uses, and opens the gate: the next thousands of creates fill it. The hooks' calls and the gate live in the
suite's own Redis (the test adapters' ``record_url``).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Iterator

import msgpack
import pytest
from _compare import target_contents
from _workers import REDIS_URL, free_port, poll, start_worker, stop_workers, worker_env
from redis import Redis
from ss_test_adapters import read_calls

from core import keys
from worker.state import RedisJobState

REDIS_SERVER = shutil.which("redis-server")
pytestmark = pytest.mark.skipif(REDIS_SERVER is None, reason="redis-server is not installed")


@pytest.fixture
def small_redis() -> Iterator[Redis]:
    port = free_port(6530)
    base = Path(tempfile.mkdtemp(prefix="shardsync-memory-"))
    proc = subprocess.Popen(
        [REDIS_SERVER, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--maxmemory-policy", "noeviction", "--dir", str(base)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    client = Redis(port=port)
    try:
        poll(lambda: _answers(client), 20, "the throwaway Redis")
        yield client
    finally:
        client.close()
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        shutil.rmtree(base, ignore_errors=True)


def _answers(client: Redis) -> bool:
    try:
        return bool(client.ping())
    except Exception:  # noqa: BLE001 - not up yet
        return False


def test_a_job_larger_than_redis_memory_fails_naming_it(small_redis: Redis, tmp_path: Path) -> None:
    url = f"redis://127.0.0.1:{small_redis.connection_pool.connection_kwargs['port']}/0"
    env = {**worker_env(), "SHARDSYNC_BROKER_URL": url, "SHARDSYNC_KEEP_STORES": "1"}
    suite = Redis.from_url(REDIS_URL)
    gate, calls_key = f"test:gate:{uuid.uuid4().hex}", f"test:calls:{uuid.uuid4().hex}"
    sites = [{"name": f"s-{i:04}", "note": "", "devices": [{"name": f"d{j}", "note": ""} for j in range(2)]}
             for i in range(2000)]  # fmt: skip
    sites[0]["note"] = f"wait:{gate}"
    data_key = f"test:data:{uuid.uuid4().hex}"
    suite.set(data_key, json.dumps({"region": [], "site": sites}))  # too long for a command line
    node = start_worker("memory", tmp_path, 1, env)
    try:
        submitted = subprocess.run(
            [sys.executable, "-m", "worker.cli", "sync", "--no-wait", "--shard-size", "100000",
             "--source", "dataset", "--target", "dataset",
             "--source-kwargs", json.dumps({"data_key": data_key, "record_url": REDIS_URL}),
             "--target-kwargs", json.dumps({"record_url": REDIS_URL, "calls_key": calls_key})],
            cwd=str(Path(__file__).resolve().parents[2]), env=env, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert submitted.returncode == 0, submitted.stderr
        job_id = submitted.stdout.strip()
        poll(lambda: read_calls(suite, calls_key), 90, "the gated first hook")
        used = int(small_redis.info("memory")["used_memory"])
        small_redis.config_set("maxmemory", used + 256 * 1024)  # room for a few hundred of the 6,000 creates
        suite.set(gate, 1)
        raw = poll(lambda: small_redis.get(keys.job_key(job_id, "report")), 120, "the job's report")
        report = msgpack.unpackb(raw, raw=False)
        log = (tmp_path / "memory.log").read_text(errors="replace")[-3000:]
        assert report["status"] == "failed", report
        assert "memory" in str(report["error"]).lower(), f"{report['error']}\n{log}"
        assert 0 < sum(n for per in report["counts"].values() for n in per.values()) < 6000
        holders = [small_redis.get(key) for key in small_redis.scan_iter(match=keys.lock_key("*"))]
        assert job_id.encode() not in holders, "the failed job still holds its target's lock"
        # Every operation the journal names as done has its store write in the target store.
        small_redis.config_set("maxmemory", 0)  # room to read it (opening a store stamps its meta)
        stored = target_contents(job_id, url)
        journal = RedisJobState(job_id, small_redis).journal()
        created = [(entry[3], entry[4]) for entry in journal.values() if entry[:2] == ["create", "success"]]
        assert created, "nothing was journaled before Redis filled up"
        missing = [(model, uid) for model, uid in created if uid not in stored.get(model, {})]
        assert not missing, f"the journal names creates whose objects are not in the target store: {missing[:5]}"
        print(
            f"journaled creates {len(created)}, stored {sum(len(v) for v in stored.values())}, "
            f"error {report['error'][:200]}"
        )
    finally:
        stop_workers([node])
        suite.delete(gate, calls_key, data_key)
