"""Two deployments (SHARDSYNC_NAMESPACE) share one Redis database and never see each other's work.

Each has its own real worker and beat. One deployment's only worker node is SIGKILLed mid-shard: the other's
watchdog must not send its steps again (nor its workers run them), its beat keeps ticking its own schedule,
and once a worker of the first comes back, the first deployment's own watchdog finishes its job. Afterwards
every key in the database belongs to one of the two namespaces (or to the test).

Its own database (11), flushed before and after.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Dict, Iterator, List, Optional

import msgpack
from _workers import ROOT, poll, start_worker, stop_workers, worker_env
from redis import Redis
from ss_test_adapters import read_calls

from core import keys

URL = "redis://127.0.0.1:6379/11"


@contextmanager
def under(namespace: str) -> Iterator[None]:
    """The keys of one deployment, as its own processes name them."""
    keys.configure(namespace)
    try:
        yield
    finally:
        keys.configure("")


def _env(namespace: str) -> Dict[str, str]:
    return {**worker_env(), "SHARDSYNC_BROKER_URL": URL, "SHARDSYNC_NAMESPACE": namespace}


def _beat(namespace: str, name: str, tmp_path: Path) -> tuple[subprocess.Popen, IO[bytes]]:
    schedule = tmp_path / f"schedule-{namespace}.json"
    job = {"source": "dataset", "target": "dataset", "source_kwargs": {"data": {"site": [{"name": "s-1"}]}},
           "target_kwargs": {"name": name}}  # fmt: skip
    schedule.write_text(json.dumps({"syncs": [{"name": name, "every": 1, "job": job}]}))
    log = open(tmp_path / f"beat-{namespace}.log", "wb")  # noqa: SIM115 - closed at the end of the test
    proc = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "worker", "beat", "-l", "info"],
        cwd=str(ROOT), env={**_env(namespace), "SHARDSYNC_SCHEDULE_FILE": str(schedule)},
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    return proc, log


def _report(client: Redis, namespace: str, job_id: str) -> Optional[dict]:
    with under(namespace):
        raw = client.get(keys.job_key(job_id, "report"))
    return None if raw is None else msgpack.unpackb(raw, raw=False)


def _scheduled_successes(client: Redis, namespace: str, entry: str) -> int:
    """Jobs of the schedule entry that ended well, in one deployment."""
    done = 0
    with under(namespace):
        for raw in client.scan_iter(match=keys.job_key("*", "info"), count=1000):
            if client.hget(raw, "schedule") == msgpack.packb(entry):
                report = client.get(raw.decode().rsplit(":", 1)[0] + ":report")
                done += bool(report) and msgpack.unpackb(report, raw=False)["status"] == "success"
    return done


def _submit(namespace: str, sites: List[dict], calls_key: str) -> str:
    submitted = subprocess.run(
        [sys.executable, "-m", "worker.cli", "sync", "--no-wait", "--shard-size", "1000",
         "--source", "dataset", "--target", "dataset",
         "--source-kwargs", json.dumps({"data": {"region": [], "site": sites}}),
         "--target-kwargs", json.dumps({"record_url": URL, "calls_key": calls_key, "name": f"t-{namespace}"})],
        cwd=ROOT, env=_env(namespace), capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert submitted.returncode == 0, submitted.stderr
    return submitted.stdout.strip()


def test_two_namespaces_on_one_database_keep_apart(tmp_path) -> None:
    client = Redis.from_url(URL)
    client.flushdb()
    tag = uuid.uuid4().hex[:6]
    blue, green = f"blue-{tag}", f"green-{tag}"
    gate, blue_calls, green_calls = (f"test:{what}:{tag}" for what in ("gate", "calls-blue", "calls-green"))
    nodes = {
        "blue1": start_worker("blue1", tmp_path, 2, _env(blue)),
        "green1": start_worker("green1", tmp_path, 2, _env(green)),
    }
    beats = [_beat(blue, f"tick-{blue}", tmp_path), _beat(green, f"tick-{green}", tmp_path)]
    try:
        sites = [{"name": f"s-{i}", "note": "", "devices": [{"name": "d0", "note": ""}]} for i in range(6)]
        sites[4]["note"] = f"wait:{gate}"  # blue's fifth site's create blocks: the four before it are done
        blue_job = _submit(blue, sites, blue_calls)
        poll(lambda: any(c[2] == "s-4" for c in read_calls(client, blue_calls)), 90, "blue's blocked hook")
        os.killpg(nodes["blue1"].pid, signal.SIGKILL)  # blue's only node: main process and pool
        nodes["blue1"].wait(timeout=10)
        client.set(gate, 1)
        calls_at_kill = len(read_calls(client, blue_calls))

        green_sites = [{"name": f"g-{i}", "note": ""} for i in range(3)]
        green_job = _submit(green, green_sites, green_calls)
        report = poll(lambda: _report(client, green, green_job), 90, "green's report")
        assert report["status"] == "success", report["error"]
        # Blue's claim on its shard lapses (SHARDSYNC_CLAIM_TTL 10 s): a watchdog scanning blue's running
        # steps would send it again now. Green's scans meanwhile (every second) must not, and green's beat ticks.
        with under(blue):
            claim = keys.job_key(blue_job, "claim:shard-0")
        poll(lambda: not client.exists(claim), 60, "blue's claim to lapse")
        ticked = _scheduled_successes(client, green, f"tick-{green}")
        poll(lambda: _scheduled_successes(client, green, f"tick-{green}") >= ticked + 3, 60, "three more green ticks")
        assert _report(client, blue, blue_job) is None, "blue's job ended with no blue worker alive"
        assert len(read_calls(client, blue_calls)) == calls_at_kill, "a blue hook ran with no blue worker alive"
        green_log = (tmp_path / "green1.log").read_text(errors="replace")
        assert blue_job not in green_log, green_log[-2000:]

        nodes["blue2"] = start_worker("blue2", tmp_path, 2, _env(blue))
        report = poll(lambda: _report(client, blue, blue_job), 120, "blue's report once a blue worker is back")
        assert report["status"] == "success", report["error"]
        assert report["shards"][0]["worker"].startswith("blue2@")
        runs: Dict[tuple, int] = {}
        for action, model, uid, _, _ in read_calls(client, blue_calls):
            runs[(action, model, uid)] = runs.get((action, model, uid), 0) + 1
        runs.pop(("sync_complete", None, None), None)
        assert runs.pop(("create", "site", "s-4")) == 2  # the hook in flight when its node died, and only it
        assert set(runs.values()) == {1}, runs
        poll(lambda: _scheduled_successes(client, blue, f"tick-{blue}") >= 1, 90, "a blue tick's job to succeed")

        for raw in client.scan_iter(count=1000):
            key = raw.decode(errors="replace")
            assert key.startswith((f"shardsync~{blue}:", f"shardsync~{green}:", "test:")), (
                f"a key of no deployment: {key}"
            )
    finally:
        for proc, log in beats:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
            log.close()
        stop_workers(list(nodes.values()))
        client.flushdb()
