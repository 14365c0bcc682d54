"""Starting, steering and reading the tests' HTTP API (``_target_server.py``), a subprocess of its own."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, Iterator

import httpx
import pytest

HERE = Path(__file__).resolve().parent


class TargetApi:
    """A running API: its URL, and its settings and counters over HTTP."""

    def __init__(self, process: subprocess.Popen, port: int) -> None:
        self.process = process
        self.url = f"http://127.0.0.1:{port}"
        self.client = httpx.Client(base_url=self.url, timeout=10)

    def configure(self, **settings: Any) -> Dict[str, Any]:
        """Change how it answers (``capacity``, ``rate``, ``error_rate``, ``outage_seconds``...)."""
        response = self.client.post("/config", json=settings)
        response.raise_for_status()
        return response.json()  # type: ignore[no-any-return]

    def stats(self) -> Dict[str, Any]:
        """Its counters (``_target_server.Target.stats``)."""
        return self.client.get("/stats").json()  # type: ignore[no-any-return]

    def release(self, status: int = 503) -> None:
        """Let the writes held by ``hang_writes`` go: served (200) or answered ``status``."""
        self.client.post("/release", json={"status": status}).raise_for_status()

    def reset(self) -> None:
        """No objects, no counters."""
        self.client.post("/reset").raise_for_status()

    def stop(self) -> None:
        self.client.close()
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)


def start_target_api(**settings: Any) -> TargetApi:
    """Start an API on a free port; returns once it listens."""
    process = subprocess.Popen(
        [sys.executable, str(HERE / "_target_server.py"), "--config", json.dumps(settings)],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline()  # its first line, once it listens ("" if it died first)
    if not line.startswith("PORT "):
        process.kill()
        raise RuntimeError(f"the test API did not start: {line!r}")
    return TargetApi(process, int(line.split()[1]))


@pytest.fixture
def target_api() -> Iterator[TargetApi]:
    """A fresh API for one test, stopped after it."""
    api = start_target_api()
    try:
        yield api
    finally:
        api.stop()
