"""One run at a time per schedule entry (``worker.schedule.ticks``): the marker, skipped ticks, the end's release.

Against the suite's Redis database (tests/conftest.py); every test removes the keys it made.
"""

from __future__ import annotations

import os
import threading
import uuid
from typing import Any, Dict, List, Optional

import pytest
import structlog
from redis import Redis

from core import keys
from worker import api
from worker.errors import RedisUnavailable
from worker.hooks import DEFAULT_HOOKS
from worker.pipeline.context import Delivery
from worker.pipeline.dispatch import run_step
from worker.runners.celery import tasks
from worker.schedule import ticks
from worker.schedule.ticks import (
    TickSkipped,
    admit_run,
    release_run,
    running_job,
    skipped_ticks,
    skipped_ticks_by_entry,
)
from worker.settings import get_settings
from worker.state import RedisJobState
from worker.state.base import pack

URL = os.environ["SHARDSYNC_BROKER_URL"]
SPEC = {"source": "demo", "target": "demo", "target_kwargs": {"sites": 1}}


@pytest.fixture
def client():
    return Redis.from_url(URL)


@pytest.fixture
def entry(client):
    """A fresh entry name; its marker, its skip count and every job recorded under it are removed after."""
    name = f"test-ticks-{uuid.uuid4().hex}"
    made: List[str] = []
    yield name, made
    client.delete(keys.schedule_run_key(name), keys.schedule_key(f"shardsync:{name}"))
    client.hdel(keys.SCHEDULE_SKIPS, name)
    for job_id in made:
        for key in client.scan_iter(match=keys.job_pattern(job_id)):
            client.delete(key)


def recorded(client, made: List[str], job_id: str = "", **info: Any) -> RedisJobState:
    """A job recorded as ``submit_spec`` records it (before any marker is taken for it)."""
    job = RedisJobState(job_id or f"test-ticks-job-{uuid.uuid4().hex}", client)
    assert job.create({**SPEC, "job_id": job.job_id}, ttl=600, info=info or None)
    made.append(job.job_id)
    return job


def test_a_tick_takes_a_free_marker_and_one_finding_a_running_job_is_skipped(client, entry) -> None:
    name, made = entry
    first = f"test-ticks-job-{uuid.uuid4().hex}"
    admit_run(name, first, client)  # reserved before the job is recorded
    assert running_job(name, client) == first
    assert 0 < client.ttl(keys.schedule_run_key(name)) <= ticks.RESERVE_SECONDS
    with pytest.raises(TickSkipped) as caught:  # not recorded yet, not ended: being started
        admit_run(name, "another", client)
    assert caught.value.running_job_id == first and caught.value.entry == name
    recorded(client, made, first)
    assert ticks.confirm_run(name, first, 3600, client)  # enqueued: the full expiry
    assert ticks.RESERVE_SECONDS < client.ttl(keys.schedule_run_key(name)) <= 3600
    with pytest.raises(TickSkipped):
        admit_run(name, "another", client)
    admit_run(name, first, client)  # asked again for the run holding it: still its
    assert running_job(name, client) == first


def test_confirm_never_brings_back_a_marker_the_run_let_go_of(client, entry) -> None:
    name, _ = entry
    admit_run(name, "quick", client)
    assert release_run(name, "quick", client)  # the run finished before its tick confirmed it
    assert not ticks.confirm_run(name, "quick", 3600, client)
    assert running_job(name, client) is None
    admit_run(name, "next", client)
    assert not ticks.confirm_run(name, "quick", 3600, client)  # another run's marker: left alone
    assert running_job(name, client) == "next" and client.ttl(keys.schedule_run_key(name)) <= ticks.RESERVE_SECONDS


def test_release_lets_go_only_of_its_own_marker(client, entry) -> None:
    name, made = entry
    first, second = recorded(client, made), recorded(client, made)
    assert not release_run(name, first.job_id, client)  # nothing held: nothing done
    admit_run(name, first.job_id, client)
    assert not release_run(name, second.job_id, client)
    assert running_job(name, client) == first.job_id
    assert release_run(name, first.job_id, client)
    assert not release_run(name, first.job_id, client)  # again: a no-op
    assert running_job(name, client) is None
    admit_run(name, second.job_id, client)
    assert running_job(name, client) == second.job_id


def test_a_marker_left_by_a_job_that_ended_is_taken_over(client, entry) -> None:
    name, made = entry
    old = recorded(client, made)
    admit_run(name, old.job_id, client)
    ticks.confirm_run(name, old.job_id, 3600, client)
    old.save_report({"status": "success"}, ttl=60)  # its finish died between the report and letting go
    with structlog.testing.capture_logs() as logs:
        admit_run(name, "new", client)
    assert running_job(name, client) == "new"
    taken = [log for log in logs if log["event"].startswith("Schedule marker taken over")]
    assert taken and taken[0]["ended_job_id"] == old.job_id and taken[0]["schedule"] == name


def test_a_run_whose_tick_died_before_enqueueing_it_blocks_its_entry_a_minute_at_most(client, entry) -> None:
    name, made = entry
    admit_run(name, "never-enqueued", client)  # its worker died here: nothing recorded, nothing confirmed
    with pytest.raises(TickSkipped):  # indistinguishable from a run being started right now
        admit_run(name, "next", client)
    assert 0 < client.pttl(keys.schedule_run_key(name)) <= ticks.RESERVE_SECONDS * 1000
    client.delete(keys.schedule_run_key(name))  # as Redis does when the reservation's minute has passed
    admit_run(name, "next", client)
    assert running_job(name, client) == "next"


def run_at_once(count: int, work) -> List[Any]:
    """Call ``work(i)`` in ``count`` threads released together; each result or raised exception, by i."""
    barrier = threading.Barrier(count)
    results: List[Any] = [None] * count

    def run(index: int) -> None:
        barrier.wait()
        try:
            results[index] = work(index)
        except Exception as err:  # noqa: BLE001 - collected for the test to look at
            results[index] = err

    threads = [threading.Thread(target=run, args=(index,)) for index in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    return results


@pytest.mark.parametrize("stale", [False, True], ids=["free", "stale"])
def test_of_ticks_processed_at_once_exactly_one_starts_a_job(client, entry, stale) -> None:
    name, made = entry
    if stale:  # all of them find the marker left by an ended job, and race to take it over
        old = recorded(client, made)
        admit_run(name, old.job_id, client)
        old.save_report({"status": "failed"}, ttl=60)
    jobs = [f"test-ticks-job-{index}-{uuid.uuid4().hex}" for index in range(8)]
    clients = [Redis.from_url(URL) for _ in jobs]  # a connection each, as on separate workers

    def tick(index: int) -> str:
        admit_run(name, jobs[index], clients[index])
        return jobs[index]

    results = run_at_once(len(jobs), tick)
    admitted = [result for result in results if isinstance(result, str)]
    skipped = [result for result in results if isinstance(result, TickSkipped)]
    assert len(admitted) == 1 and len(skipped) == len(jobs) - 1, results
    assert running_job(name, client) == admitted[0]
    assert {skip.running_job_id for skip in skipped} == {admitted[0]}


def test_skips_are_counted_per_entry_and_logged(client, entry) -> None:
    name, _ = entry
    other = f"{name}-other"
    try:
        with structlog.testing.capture_logs() as logs:
            assert ticks.record_skip(TickSkipped(name, "job-1"), client) == 1
            assert ticks.record_skip(TickSkipped(name, "job-1"), client) == 2
            ticks.record_skip(TickSkipped(other, "job-2"), client)
        assert skipped_ticks(name, client) == 2 and skipped_ticks(other, client) == 1
        assert skipped_ticks(f"{name}-never", client) == 0
        counts = skipped_ticks_by_entry(client)
        assert counts[name] == 2 and counts[other] == 1
        events = [log for log in logs if log["event"] == "Scheduled sync skipped"]
        assert [(e["schedule"], e["running_job_id"], e["skipped"]) for e in events] == [
            (name, "job-1", 1),
            (name, "job-1", 2),
            (other, "job-2", 1),
        ]
        assert all(e["log_level"] == "warning" for e in events)
    finally:
        client.hdel(keys.SCHEDULE_SKIPS, other)


def test_the_marker_outlives_the_jobs_deadline(monkeypatch) -> None:
    settings = get_settings()
    assert ticks.marker_ttl(None) == settings.job_deadline + settings.lock_ttl
    assert ticks.marker_ttl(600) == 600 + settings.lock_ttl
    assert ticks.marker_ttl(0) == settings.store_ttl + settings.lock_ttl  # no deadline: as long as its record


# -- the finish lets go of the marker ------------------------------------------------------------------------


class QuietRunner:
    """A runner that enqueues nothing and shows nothing (the finish is run directly)."""

    hooks = DEFAULT_HOOKS

    def __init__(self) -> None:
        self.ended: List[Dict[str, Any]] = []

    def live_slots(self) -> None:
        return None

    def enqueue(self, step: str, job_id: str, *args: Any) -> None:
        raise AssertionError(f"the finish enqueued {step}")

    def progress(
        self, job_id: str, stage: str, current: int, total: int, extra: Optional[Dict[str, Any]] = None
    ) -> None:
        pass

    def publish_end(self, job_id: str, report: Dict[str, Any]) -> None:
        self.ended.append(report)

    def end_published(self, job_id: str) -> bool:
        return bool(self.ended)


@pytest.mark.parametrize("how", ["success", "failed", "cancelled"])
def test_the_finish_releases_the_entrys_marker_however_the_job_ended(client, entry, how) -> None:
    name, made = entry
    job = recorded(client, made, schedule=name)
    admit_run(name, job.job_id, client)
    ticks.confirm_run(name, job.job_id, 3600, client)
    if how == "failed":
        job.abort("load-source failed: RuntimeError: boom")
    elif how == "cancelled":
        job.abort("cancelled: by a test")
    report = run_step("finish", job, QuietRunner(), Delivery(hostname="test"))
    assert report["status"] == ("success" if how == "success" else "failed")
    assert running_job(name, client) is None
    assert job.info()["schedule"] == name  # the job still says which entry it ran for


def test_a_finish_delivered_again_releases_a_marker_the_first_left(client, entry) -> None:
    name, made = entry
    job = recorded(client, made, schedule=name)
    job.save_report({"status": "success", "operations": 0}, ttl=60)  # the first delivery died right after this
    client.set(keys.schedule_run_key(name), job.job_id, ex=120)
    runner = QuietRunner()
    assert run_step("finish", job, runner, Delivery(hostname="test"))["status"] == "success"
    assert running_job(name, client) is None and runner.ended


def test_the_finish_leaves_a_marker_a_later_run_took(client, entry) -> None:
    name, made = entry
    job, later = recorded(client, made, schedule=name), recorded(client, made, schedule=name)
    client.set(keys.schedule_run_key(name), later.job_id, ex=120)
    run_step("finish", job, QuietRunner(), Delivery(hostname="test"))
    assert running_job(name, client) == later.job_id


def test_a_job_not_from_a_schedule_touches_no_marker(client, entry) -> None:
    name, made = entry
    job = recorded(client, made)
    client.set(keys.schedule_run_key(name), job.job_id, ex=120)
    run_step("finish", job, QuietRunner(), Delivery(hostname="test"))
    assert running_job(name, client) == job.job_id


# -- the scheduled task, with the broker left out ------------------------------------------------------------


@pytest.fixture
def sent(monkeypatch) -> List[str]:
    """Task ids ``submit_spec`` would have sent (nothing reaches the broker: no worker runs these jobs)."""
    ids: List[str] = []
    monkeypatch.setattr(api.app, "send_task", lambda name, **kw: ids.append(kw["task_id"]))
    return ids


def publish(client, name: str) -> None:
    client.set(keys.schedule_key(f"shardsync:{name}"), pack(SPEC))


def test_the_scheduled_task_starts_one_run_and_skips_ticks_while_it_runs(client, entry, sent) -> None:
    name, made = entry
    publish(client, name)
    first = tasks.scheduled(f"shardsync:{name}")
    made.append(first)
    assert sent == [first] and running_job(name, client) == first
    assert RedisJobState(first, client).info()["schedule"] == name
    assert ticks.RESERVE_SECONDS < client.ttl(keys.schedule_run_key(name)) <= ticks.marker_ttl(None)
    with structlog.testing.capture_logs() as logs:
        assert tasks.scheduled(f"shardsync:{name}") is None
        assert tasks.scheduled(f"shardsync:{name}") is None
    assert sent == [first] and skipped_ticks(name, client) == 2
    assert [log["running_job_id"] for log in logs if log["event"] == "Scheduled sync skipped"] == [first, first]
    # The skipped ticks recorded no job: only the running one is known under this entry.
    infos = [key.decode() for key in client.scan_iter(match=keys.job_key("*", "info"))]
    assert [key for key in infos if client.hget(key, "schedule") == pack(name)] == [keys.job_key(first, "info")]
    # The run ends: the next tick starts the next run.
    run_step("finish", RedisJobState(first, client), QuietRunner(), Delivery(hostname="test"))
    second = tasks.scheduled(f"shardsync:{name}")
    made.append(second)
    assert second != first and sent == [first, second] and running_job(name, client) == second


def test_a_run_that_cannot_be_enqueued_lets_go_of_the_marker(client, entry, monkeypatch) -> None:
    name, made = entry
    publish(client, name)

    def broker_down(name: str, **kwargs: Any) -> None:
        made.append(kwargs["task_id"])
        raise ConnectionError("broker down")

    monkeypatch.setattr(api.app, "send_task", broker_down)
    with pytest.raises(RedisUnavailable, match="broker down"):
        tasks.scheduled(f"shardsync:{name}")
    assert running_job(name, client) is None
    assert RedisJobState(made[0], client).spec_data() is None  # forgotten, as any job not enqueued
