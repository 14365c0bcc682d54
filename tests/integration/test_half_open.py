"""A half-open path to Redis under a running job: a userspace proxy stops forwarding without closing anything
(a dead NAT entry, a partition), for longer than the socket timeout, then lets traffic through again.

The worker node reaches Redis (its own database, 10) only through the proxy (``tests/core/store/_proxy.py``);
the hooks' calls and the gate live in the suite's Redis, reached directly. Expected: no worker thread stays
blocked (socket timeouts, keepalive), the shard whose lease ran out stands down, and after the path heals the
job completes equal to a local sync, at most the operation that was in flight run twice.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from pathlib import Path

import msgpack
from _compare import local_sync, target_contents
from _workers import REDIS_URL, ROOT, poll, start_worker, stop_workers, worker_env
from redis import Redis
from ss_test_adapters import read_calls

from core import keys
from tests.core.store._proxy import Proxy

DB = 10
SOCKET_TIMEOUT = 6  # the node's SHARDSYNC_REDIS_SOCKET_TIMEOUT (20 s by default): the test waits past it
FROZEN_SECONDS = 2 * SOCKET_TIMEOUT + 2.0  # past the socket timeout (twice: a command is tried twice) and the claim


def test_a_half_open_path_to_redis_mid_shard(tmp_path: Path) -> None:
    direct = Redis.from_url(f"redis://127.0.0.1:6379/{DB}")
    direct.flushdb()
    suite = Redis.from_url(REDIS_URL)
    proxy = Proxy("127.0.0.1", 6379)
    env = {**worker_env(), "SHARDSYNC_BROKER_URL": f"redis://127.0.0.1:{proxy.port}/{DB}",
           "SHARDSYNC_REDIS_SOCKET_TIMEOUT": str(SOCKET_TIMEOUT)}  # fmt: skip
    gate, calls_key = f"test:gate:{uuid.uuid4().hex}", f"test:calls:{uuid.uuid4().hex}"
    sites = [{"name": f"s-{i}", "note": "", "devices": [{"name": "d0", "note": ""}]} for i in range(6)]
    sites[3]["note"] = f"wait:{gate}"
    source = {"region": [], "site": sites}
    node = start_worker("halfopen", tmp_path, 2, env)
    try:
        submitted = subprocess.run(
            [sys.executable, "-m", "worker.cli", "sync", "--no-wait", "--shard-size", "1000",
             "--source", "dataset", "--target", "dataset",
             "--source-kwargs", json.dumps({"data": source}),
             "--target-kwargs", json.dumps({"record_url": REDIS_URL, "calls_key": calls_key})],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert submitted.returncode == 0, submitted.stderr
        job_id = submitted.stdout.strip()
        poll(lambda: any(c[2] == "s-3" for c in read_calls(suite, calls_key)), 90, "the gated hook")
        proxy.freeze()
        frozen = time.monotonic()
        suite.set(gate, 1)  # the hook returns into a silent path
        while time.monotonic() - frozen < FROZEN_SECONDS:
            assert node.poll() is None, (tmp_path / "halfopen.log").read_text(errors="replace")[-3000:]
            time.sleep(0.5)  # holds the partition itself
        proxy.restore()
        raw = poll(lambda: direct.get(keys.job_key(job_id, "report")), 120, "the job's report after the path healed")
        report = msgpack.unpackb(raw, raw=False)
        log = (tmp_path / "halfopen.log").read_text(errors="replace")[-3000:]
        assert report["status"] == "success", f"{report['error']}\n{log}"
        runs: dict = {}
        for action, model, uid, _, _ in read_calls(suite, calls_key):
            if action != "sync_complete":
                runs[(action, model, uid)] = runs.get((action, model, uid), 0) + 1
        # The crash contract: one operation in flight when the path went silent (its hook, or its journal
        # write, which never reached Redis while the claim lived) may run again; nothing else does.
        again = [op for op, count in runs.items() if count > 1]
        assert len(again) <= 1 and max(runs.values()) <= 2, f"hooks ran again beyond the one in flight: {runs}"
        local_state, _, _ = local_sync(source, {}, [], suite, REDIS_URL)
        assert target_contents(job_id, f"redis://127.0.0.1:6379/{DB}") == local_state
    finally:
        proxy.restore()
        stop_workers([node])
        proxy.close()
        suite.delete(gate, calls_key)
        direct.flushdb()
