"""A call to the target that never returns: interrupted by its time limit, or its job ended around it.

The tests' HTTP API holds writes on demand (``hang_writes``) until the test lets them go. With a per-call time
limit the held call is interrupted inside the hook (the session workers are prefork: a soft limit) and made
again; with none that reaches it, the job stops at its deadline and the watchdog ends it around the hung
shard: the report names it, the lock is free for the next job at once, and when the held call finally
returns, nothing more is written to the ended job's state.
"""

from __future__ import annotations

import time
from typing import Any, Dict, Iterator

import pytest
import ss_http_target  # noqa: F401 - registers http-target in this process too
from _target_api import TargetApi, target_api  # noqa: F401 - target_api: the fixture
from _workers import poll
from celery.result import AsyncResult
from redis import Redis

from core import keys
from worker import JobFailed, app, submit_sync

SOURCE = {"sites": 4, "variant": 1}
WATCHDOG_INTERVAL = 1.0  # the session workers' SHARDSYNC_WATCHDOG_INTERVAL (tests/integration/_workers.py)


@pytest.fixture
def api(target_api: TargetApi) -> Iterator[TargetApi]:  # noqa: F811
    """The API, its held calls let go after the test (so no worker process stays stuck in one)."""
    try:
        yield target_api
    finally:
        target_api.release(503)
        poll(lambda: target_api.stats()["hanging"] == 0, timeout=30, what="the held calls to end")


def snapshot(client: Redis, job_id: str) -> Dict[bytes, Any]:
    """Every key of the job's state with its value (``DUMP``: the value, whatever its type; not its expiry)."""
    found = client.scan_iter(match=keys.job_key(job_id, "*").encode(), count=1000)
    return {key: client.dump(key) for key in sorted(found)}


def test_a_hook_past_its_time_limit_is_interrupted_and_made_again(workers, api: TargetApi) -> None:
    api.configure(hang_writes=1)
    handle = submit_sync(
        "demo", "http-target", source_kwargs=SOURCE, target_kwargs={"url": api.url, "timeout": 600},
        limits={"call_timeout": 2}, retry={"attempts": 5, "seconds": 60},
    )  # fmt: skip
    report = handle.wait(timeout=120)
    stats = api.stats()
    assert stats["hung"] == 1, "no call was held: the test tested nothing"
    assert report["status"] == "success" and report["retries"] >= 1, report.get("error")
    assert set(stats["writes"].values()) == {1} and len(stats["writes"]) == report["operations"]


def test_a_hung_hook_ends_its_job_by_the_deadline_and_writes_nothing_after(
    workers, api: TargetApi, redis_db: Redis
) -> None:
    api.configure(hang_writes=1)
    deadline = 6
    started = time.monotonic()
    handle = submit_sync(
        "demo", "http-target", source_kwargs=SOURCE, target_kwargs={"url": api.url, "timeout": 600},
        limits={"call_timeout": 600}, deadline=deadline,
    )  # fmt: skip
    with pytest.raises(JobFailed, match="deadline passed") as failed:
        handle.wait(timeout=120)
    ended = time.monotonic() - started
    report = failed.value.report
    assert report is not None and report["hung"], report
    assert all(step.startswith("shard-") for step in report["hung"])
    assert "ended by the watchdog" in report["error"]
    assert api.stats()["hanging"] == 1, "the held call should still be held"
    # Deadline plus two watchdog intervals, plus the queues' latency: a job that never ends fails here.
    assert ended < deadline + 2 * WATCHDOG_INTERVAL + 10, f"ended {ended:.1f} s after it was submitted"

    # The lock is free: the next job into the same target is admitted and runs at once.
    second = submit_sync("demo", "http-target", source_kwargs=SOURCE, target_kwargs={"url": api.url})
    assert second.wait(timeout=120)["status"] == "success"

    # The held call returns (served: the object written) after the end; its delivery writes nothing.
    before = snapshot(redis_db, handle.id)
    api.release(200)
    poll(lambda: api.stats()["hanging"] == 0, timeout=30, what="the held call to return")
    hung_task = AsyncResult(f"{handle.id}.{report['hung'][0]}", app=app)
    poll(lambda: hung_task.state == "SUCCESS", timeout=60, what="the hung shard's delivery to stand down")
    assert snapshot(redis_db, handle.id) == before


def test_the_target_is_what_its_adapter_says_it_is(workers, api: TargetApi) -> None:
    """Another timeout or another registered name of the same class is the same system: one sync at a time."""
    api.configure(hang_writes=1)
    first = submit_sync(
        "demo", "http-target", source_kwargs=SOURCE, target_kwargs={"url": api.url, "timeout": 600},
        limits={"call_timeout": 600},
    )  # fmt: skip
    poll(lambda: api.stats()["hanging"] == 1, timeout=60, what="the first job to be writing")
    for target, kwargs in (("http-target", {"timeout": 5}), ("http-target-alias", {})):
        second = submit_sync("demo", target, source_kwargs=SOURCE, target_kwargs={"url": api.url, **kwargs})
        with pytest.raises(JobFailed, match=f"is being synced by job {first.id}"):
            second.wait(timeout=60)
    first.cancel()
    with pytest.raises(JobFailed, match="cancelled"):
        first.wait(timeout=60)  # ended around its hung shard by the watchdog
