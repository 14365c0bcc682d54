"""Starting and stopping real ``celery -A worker worker`` processes for the integration tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import List, Optional

from worker import app

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
REDIS_URL = os.environ["SHARDSYNC_BROKER_URL"]
WORKER_NAMES = ("alpha", "beta")


def worker_env() -> dict:
    env = dict(os.environ)
    env["SHARDSYNC_BROKER_URL"] = REDIS_URL
    env["SHARDSYNC_ADAPTER_MODULES"] = "ss_test_adapters,ss_test_steps,ss_http_target"  # test adapters, a step
    env["SHARDSYNC_LOCK_TTL"] = "10"
    env["SHARDSYNC_CLAIM_TTL"] = "10"  # short claims: a redelivered shard takes over within seconds
    env["SHARDSYNC_WATCHDOG_INTERVAL"] = "1"
    # Every operation journaled before the next hook: the fault tests count exactly which hooks run again.
    # tests/integration/test_replay.py crashes shards in batches of several too.
    env["SHARDSYNC_JOURNAL_BATCH"] = "1"
    env["PYTHONPATH"] = os.pathsep.join([str(HERE), str(ROOT), env.get("PYTHONPATH", "")])
    return env


def start_worker(
    name: str, log_dir: Path, concurrency: int = 1, env: Optional[dict] = None, pool: Optional[str] = None
) -> subprocess.Popen:
    """Start one real worker process consuming both queues (in a process group of its own: a node)."""
    log = open(log_dir / f"{name}.log", "wb")  # noqa: SIM115 - closed with the process
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "worker",
            "worker",
            "-n",
            f"{name}@%h",
            "-c",
            str(concurrency),
            "-Q",
            "shardsync.jobs,shardsync.shards",
            "--without-gossip",
            "--without-mingle",
            "-l",
            "warning",
            *(["-P", pool] if pool else []),
        ],
        cwd=str(ROOT),
        env=env if env is not None else worker_env(),
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def wait_for_workers(names: List[str], procs: List[subprocess.Popen], timeout: float = 60.0) -> None:
    """Poll Celery's control ping until every named worker answers (or fail with their logs)."""
    deadline = time.monotonic() + timeout
    wanted = {n for n in names}
    while time.monotonic() < deadline:
        for proc in procs:
            if proc.poll() is not None:
                raise RuntimeError(f"a worker exited at start-up with code {proc.returncode}")
        replies = app.control.ping(timeout=0.5) or []
        seen = {next(iter(reply)).split("@")[0] for reply in replies}
        if wanted <= seen:
            return
    raise RuntimeError(f"workers {sorted(wanted)} did not answer within {timeout} s")


def stop_workers(procs: List[subprocess.Popen]) -> None:
    """Warm shutdown, then kill whatever is left (the whole process group: pool children too)."""
    for proc in procs:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + 20
    for proc in procs:
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


def poll(predicate, timeout: float = 60.0, what: str = "condition"):
    """Call ``predicate`` until it returns something true (returned), or fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def free_port(start: int) -> int:
    """The first port from ``start`` nobody listens on, for a throwaway redis-server (binds as it does)."""
    for port in range(start, start + 200):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {start}..{start + 199}")
