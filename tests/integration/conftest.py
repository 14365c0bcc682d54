"""Real Celery workers (subprocesses of ``celery -A worker worker``) against the real Redis, database 13."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Iterator, List

import pytest
from redis import Redis

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the workers import ss_test_adapters by this name too

import subprocess  # noqa: E402

import ss_test_adapters  # noqa: E402,F401 - registers the "dataset" adapter in this process
from _workers import REDIS_URL, WORKER_NAMES, start_worker, stop_workers, wait_for_workers  # noqa: E402


@pytest.fixture(scope="session")
def redis_db() -> Iterator[Redis]:
    client = Redis.from_url(REDIS_URL)
    client.flushdb()
    yield client
    client.flushdb()


WORKER_LOGS: dict = {}
"""Where the session's workers log ({"dir": Path}), for tests that read what the workers wrote."""


@pytest.fixture(scope="session")
def worker_logs(workers) -> Path:
    return WORKER_LOGS["dir"]


@pytest.fixture(scope="session")
def workers(redis_db: Redis, tmp_path_factory: pytest.TempPathFactory) -> Iterator[List[subprocess.Popen]]:
    """Two real worker processes, each with one pool process, for the whole session."""
    log_dir = WORKER_LOGS.setdefault("dir", tmp_path_factory.mktemp("workers"))
    procs = [start_worker(name, log_dir) for name in WORKER_NAMES]
    try:
        wait_for_workers(list(WORKER_NAMES), procs)
        yield procs
    finally:
        stop_workers(procs)
        for name in WORKER_NAMES:
            text = (log_dir / f"{name}.log").read_text(errors="replace")
            if "Traceback" in text:
                sys.stderr.write(f"--- {name}.log ---\n{text[-5000:]}\n")
