"""Job metrics on real workers: a real ``shardsync metrics`` exporter, scraped over HTTP while a job runs and after."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import urllib.request
import uuid
from pathlib import Path
from typing import Dict, Iterator, Optional, Tuple

import pytest
from _compare import REDIS_URL
from _workers import ROOT, poll, worker_env
from prometheus_client.parser import text_string_to_metric_families
from redis import Redis

from core import keys
from worker import JobFailed, submit_sync
from worker.job.spec import JobSpec

pytestmark = pytest.mark.usefixtures("workers")

Samples = Dict[Tuple[str, Tuple[Tuple[str, str], ...]], float]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def scrape(url: str) -> Optional[Samples]:
    """One scrape over HTTP, parsed: ``{(sample name, sorted labels): value}``; None if nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - loopback only
            text = response.read().decode()
    except OSError:
        return None
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sum of the samples named so whose labels include ``labels`` (``sum`` over the rest, as PromQL)."""
    wanted = set(labels.items())
    return sum(found for (sample, have), found in samples.items() if sample == name and wanted <= set(have))


def delta(after: Samples, before: Samples, name: str, **labels: str) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


@pytest.fixture(scope="module")
def exporter(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``shardsync metrics`` (the installed command) as a subprocess in a process group of its own."""
    port = free_port()
    command = shutil.which("shardsync", path=str(Path(sys.executable).parent))
    argv = [command] if command else [sys.executable, "-m", "worker.cli"]
    log_path = tmp_path_factory.mktemp("metrics") / "exporter.log"
    log = open(log_path, "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [*argv, "metrics", "--port", str(port), "--addr", "127.0.0.1"],
        cwd=str(ROOT),
        env=worker_env(),
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}/metrics"
    try:
        poll(lambda: proc.poll() is not None or scrape(url) is not None, timeout=30, what="the exporter to answer")
        assert proc.poll() is None, f"the exporter exited: {log_path.read_text(errors='replace')}"
        yield url
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            assert proc.wait(timeout=10) == 0, "the exporter did not stop cleanly on SIGTERM"
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
            log.close()
        Redis.from_url(REDIS_URL).delete(keys.METRICS, keys.METRICS_RUNNING)  # every job of this module has ended


def test_a_scrape_while_a_job_runs_and_after_it_ended(redis_db, exporter) -> None:
    run = uuid.uuid4().hex
    gate, calls = f"test:metrics:gate:{run}", f"test:metrics:calls:{run}"
    source = {"site": [{"name": "s-0"}, {"name": "s-1", "note": "fail-raise"}, {"name": "s-2", "note": f"wait:{gate}"}]}
    target = {"site": [{"name": "gone"}]}
    before = scrape(exporter)
    assert before is not None and value(before, "shardsync_redis_up") == 1
    handle = submit_sync(
        source="dataset",
        target="dataset",
        source_kwargs={"data": source},
        target_kwargs={"data": target, "record_url": REDIS_URL, "calls_key": calls, "name": f"metrics-{run}"},
        flags=["continue_on_failure"],
        shard_size=1000,
    )
    try:

        def running() -> Optional[Samples]:
            now = scrape(exporter)
            done = now is not None and delta(now, before, "shardsync_jobs_running_operations_done") >= 1
            return now if done and delta(now, before, "shardsync_jobs_running") == 1 else None

        during = poll(running, timeout=30, what="a scrape showing the job running, with operations done")
        assert delta(during, before, "shardsync_jobs_started_total") == 1
        assert value(during, "shardsync_jobs_running_longest_seconds") > 0
        assert not handle.done(), "the job ended while its gate was shut"
        for status in ("success", "failed", "dry-run"):
            assert delta(during, before, "shardsync_jobs_ended_total", status=status) == 0
        assert delta(during, before, "shardsync_job_duration_seconds_count", status="success") == 0
    finally:
        redis_db.set(gate, 1)
    report = handle.wait(timeout=60)
    after = scrape(exporter)  # counted before the job's end is published: no wait needed
    assert after is not None
    assert report["status"] == "success" and report["failures"], report
    assert delta(after, before, "shardsync_jobs_started_total") == 1
    assert delta(after, before, "shardsync_jobs_ended_total", status="success") == 1
    who = {"source": "dataset", "target": "dataset", "schedule": ""}  # which sync: labels of its own
    assert delta(after, before, "shardsync_jobs_ended_total", status="success", **who) == 1
    assert delta(after, before, "shardsync_job_duration_seconds_count", status="success", **who) == 1
    assert delta(after, before, "shardsync_jobs_ended_total", status="failed") == 0
    assert delta(after, before, "shardsync_jobs_running") == 0
    assert delta(after, before, "shardsync_jobs_running_operations_done") == 0

    expected = {(action, status): n for action, per in report["counts"].items() for status, n in per.items()}
    assert expected == {("create", "success"): 2, ("create", "error"): 1, ("delete", "success"): 1}
    for (action, status), count in expected.items():
        assert delta(after, before, "shardsync_operations_total", action=action, status=status) == count
    assert delta(after, before, "shardsync_operations_skipped_total") == report["skipped"]

    job_seconds = "shardsync_job_duration_seconds"
    assert delta(after, before, f"{job_seconds}_count", status="success") == 1
    assert delta(after, before, f"{job_seconds}_bucket", status="success", le="+Inf") == 1
    total = report["seconds"]["total"]
    assert delta(after, before, f"{job_seconds}_sum", status="success") == pytest.approx(total, abs=1e-3)
    stages = set(report["seconds"]) - {"total"}
    assert stages >= {"load-source", "load-target", "diff", "plan", "sync", "finish"}
    for stage in stages:
        name = "shardsync_stage_duration_seconds"
        assert delta(after, before, f"{name}_count", stage=stage) == 1, stage
        seconds = report["seconds"][stage]
        assert delta(after, before, f"{name}_sum", stage=stage) == pytest.approx(seconds, abs=1e-3), stage
    redis_db.delete(gate, calls)


def test_jobs_by_final_status(redis_db, exporter) -> None:
    run = uuid.uuid4().hex
    kwargs = {"data": {"site": [{"name": "s-0"}]}, "name": f"metrics-{run}"}
    before = scrape(exporter)
    assert before is not None
    dry = submit_sync(
        source="dataset", target="dataset", source_kwargs=kwargs, target_kwargs={"name": f"dry-{run}"}, dry_run=True
    )
    assert dry.wait(timeout=60)["status"] == "dry-run"
    # A job refused at its start (another job holds the target's lock): it ends failed, never having started.
    spec = JobSpec.from_data({"source": "dataset", "target": "dataset", "target_kwargs": kwargs})
    lock = keys.lock_key(spec.target_identity())
    redis_db.set(lock, "someone-else", ex=60)
    try:
        refused = submit_sync(source="dataset", target="dataset", target_kwargs=kwargs)
        with pytest.raises(JobFailed, match="being synced by job someone-else"):
            refused.wait(timeout=60)
    finally:
        redis_db.delete(lock)
    after = scrape(exporter)
    assert after is not None
    assert delta(after, before, "shardsync_jobs_ended_total", status="dry-run") == 1
    assert delta(after, before, "shardsync_jobs_ended_total", status="failed") == 1
    assert delta(after, before, "shardsync_jobs_ended_total", status="success") == 0
    assert delta(after, before, "shardsync_jobs_started_total") == 1  # the dry run only
    assert delta(after, before, "shardsync_jobs_running") == 0
    assert delta(after, before, "shardsync_job_duration_seconds_count", status="failed") == 1
    assert delta(after, before, "shardsync_stage_duration_seconds_count", stage="sync") == 0  # neither synced
