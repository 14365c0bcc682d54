"""A worker refuses a Redis that may evict job state, and warns of one that keeps nothing on disk.

Real ``redis-server`` processes of this module (their own ports from 6460, nothing on disk) with the policy
under test, and real ``celery worker`` processes pointed at them.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Iterator, List

import pytest
from _workers import ROOT, free_port, worker_env
from redis import Redis

from worker.connection import redis_config_problems

REDIS_SERVER = shutil.which("redis-server")
pytestmark = pytest.mark.skipif(REDIS_SERVER is None, reason="redis-server is not installed")


def _redis(*options: str) -> Iterator[str]:
    port = free_port(6460)
    folder = Path(tempfile.mkdtemp(prefix="shardsync-redis-config-"))
    proc = subprocess.Popen(
        [REDIS_SERVER, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", str(folder), *options],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    client = Redis(port=port)
    deadline = time.monotonic() + 20
    while True:
        try:
            client.ping()
            break
        except Exception:
            if time.monotonic() > deadline or proc.poll() is not None:
                raise
            time.sleep(0.05)  # polling for the server to listen, with a deadline
    try:
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        client.close()
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def evicting() -> Iterator[str]:
    yield from _redis("--maxmemory-policy", "allkeys-lru", "--maxmemory", "64mb")


@pytest.fixture
def sound() -> Iterator[str]:
    yield from _redis("--appendonly", "yes", "--appendfsync", "always", "--maxmemory-policy", "noeviction")


def test_the_problems_read_from_info(evicting: str, sound: str) -> None:
    refused, warned = redis_config_problems(evicting, "job-state")
    assert len(refused) == 1 and "maxmemory-policy allkeys-lru" in refused[0] and "job-state Redis" in refused[0]
    assert len(warned) == 1 and "appendonly no" in warned[0]
    assert redis_config_problems(sound, "broker") == ([], [])
    Redis.from_url(sound).config_set("maxmemory-policy", "volatile-ttl")  # job keys all expire: evictable too
    refused, _ = redis_config_problems(sound, "broker")
    assert "volatile-ttl" in refused[0]
    assert redis_config_problems("redis://127.0.0.1:1/0", "broker") == ([], [])  # not answering: not judged


def _worker(url: str, extra: dict) -> subprocess.Popen:
    env = {**worker_env(), "SHARDSYNC_BROKER_URL": url, **extra}
    return subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "worker", "worker", "-n", "config-check@%h", "-c", "1", "-P", "solo",
         "--without-gossip", "--without-mingle", "-l", "info"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip


def _read_until(proc: subprocess.Popen, wanted: List[str], timeout: float) -> str:
    """The worker's output up to a line holding one of ``wanted``, or up to its exit."""
    seen: List[str] = []
    deadline = time.monotonic() + timeout
    assert proc.stdout is not None
    os.set_blocking(proc.stdout.fileno(), False)
    while time.monotonic() < deadline:
        chunk = proc.stdout.read()
        if chunk:
            seen.append(chunk.decode(errors="replace"))
            if any(word in "".join(seen) for word in wanted):
                return "".join(seen)
        elif proc.poll() is not None:
            return "".join(seen)
        else:
            time.sleep(0.05)  # polling the pipe, with a deadline
    raise AssertionError(f"nothing of {wanted} within {timeout} s:\n{''.join(seen)[-3000:]}")


def test_a_worker_refuses_an_evicting_redis(evicting: str) -> None:
    proc = _worker(evicting, {})
    try:
        output = _read_until(proc, ["ready."], 60)
        assert proc.wait(timeout=30) != 0, output
        assert "maxmemory-policy allkeys-lru" in output and "SHARDSYNC_REDIS_EVICTION=warn" in output, output
        assert "ready." not in output
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def test_a_worker_told_to_warn_runs_and_says_so(evicting: str) -> None:
    proc = _worker(evicting, {"SHARDSYNC_REDIS_EVICTION": "warn"})
    try:
        output = _read_until(proc, ["ready."], 60)
        assert "ready." in output and proc.poll() is None, output
        assert "maxmemory-policy allkeys-lru" in output and "appendonly no" in output
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def test_a_worker_with_a_bad_setting_stops_at_start_naming_it(sound: str) -> None:
    proc = _worker(sound, {"SHARDSYNC_SHARD_SIZE": "0"})
    try:
        output = _read_until(proc, ["ready."], 60)
        assert proc.wait(timeout=30) != 0, output
        assert "SHARDSYNC_SHARD_SIZE='0'" in output and "ready." not in output, output
        assert "ValidationError" not in output, "a pydantic traceback instead of the setting's name"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
