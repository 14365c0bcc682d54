"""A sync into a real HTTP API that throttles and fails for a while: hooks say "try later", the runner calls again.

The API (``_target_server.py``) answers a share of the writes with 503, and 429 with ``Retry-After`` over its
rate; the target adapter (``ss_http_target``, httpx) raises ``TransientError`` for those. On the two session
workers and on the embedded runner, with single hooks and with batch hooks (items deferred one by one): the job
succeeds, every object is written exactly once, the target converges, and the report counts the calls made
again.
"""

from __future__ import annotations

import time
from typing import Any, Dict, Iterator

import pytest
import ss_http_target  # noqa: F401 - registers http-target and http-target-bulk in this process too
from _target_api import TargetApi, target_api  # noqa: F401 - target_api: the fixture
from _workers import poll, start_worker, stop_workers, wait_for_workers

from worker import JobFailed, submit_sync
from worker.adapters.demo import InventoryAdapter
from worker.job.spec import JobSpec
from worker.runners.local import run_local

SOURCE = {"sites": 10, "variant": 1}
RETRY = {"attempts": 30, "seconds": 60, "initial": 0.02, "maximum": 0.2}


def converged(api: TargetApi) -> bool:
    source = InventoryAdapter(**SOURCE)
    source.load()
    target = ss_http_target.HttpTarget(url=api.url)
    target.load()
    return not target.diff_from(source).has_diffs()


def check(api: TargetApi, report: Dict[str, Any]) -> Dict[str, Any]:
    stats = api.stats()
    assert report["status"] == "success" and not report["failures"], report.get("error")
    assert report["retries"] > 0, "the API deferred no call: the test did not test anything"
    written = stats["writes"]
    assert set(written.values()) == {1}, {key: count for key, count in written.items() if count != 1}
    assert len(written) == report["operations"]
    assert converged(api)
    return stats


@pytest.mark.parametrize("target", ["http-target", "http-target-bulk"])
def test_a_throttling_api_on_the_workers(workers, target_api: TargetApi, target: str) -> None:  # noqa: F811
    target_api.configure(error_rate=0.2, item_error_rate=0.2, rate=40, retry_after=0.5)
    handle = submit_sync(
        "demo", target, source_kwargs=SOURCE, target_kwargs={"url": target_api.url}, retry=RETRY, shard_size=20
    )
    stats = check(target_api, handle.wait(timeout=180))
    assert stats["statuses"].get("503", 0) > 0


def test_a_throttling_api_on_the_embedded_runner(target_api: TargetApi) -> None:  # noqa: F811
    target_api.configure(error_rate=0.3)
    spec = JobSpec.from_data(
        {"source": "demo", "target": "http-target", "source_kwargs": SOURCE, "target_kwargs": {"url": target_api.url},
         "retry": RETRY}
    )  # fmt: skip
    seen = []

    def progress(stage: str, current: int, total: int, target: Any = None) -> None:
        seen.append(target)

    check(target_api, run_local(spec, callback=progress))
    shown = [target for target in seen if target]
    assert shown and shown[-1]["transient"] > 0 and shown[-1]["retries"] > 0  # the live figures, as the CLI shows


def test_a_batch_job_through_faults_reports_as_one_without(target_api: TargetApi) -> None:  # noqa: F811
    def counts(**faults: Any) -> Dict[str, Any]:
        target_api.reset()
        target_api.configure(**{"error_rate": 0.0, "item_error_rate": 0.0, **faults})
        spec = JobSpec.from_data(
            {"source": "demo", "target": "http-target-bulk", "source_kwargs": SOURCE,
             "target_kwargs": {"url": target_api.url}, "retry": RETRY, "batch_size": 7}
        )  # fmt: skip
        report = run_local(spec)
        assert converged(target_api) and set(target_api.stats()["writes"].values()) == {1}
        return {key: report[key] for key in ("status", "operations", "counts", "failures", "skipped", "summary")}

    assert counts(error_rate=0.25, item_error_rate=0.3) == counts()


@pytest.fixture
def wide(workers, worker_logs) -> Iterator[None]:
    """Two more workers of 8 threads each: 18 slots calling the API at once."""
    procs = [start_worker(name, worker_logs, concurrency=8, pool="threads") for name in ("gamma", "delta")]
    try:
        wait_for_workers(["gamma", "delta"], procs)
        yield
    finally:
        stop_workers(procs)


def test_declared_limits_hold_over_every_worker(wide, target_api: TargetApi) -> None:  # noqa: F811
    """Limits(concurrency=4, rate=50): never more than 4 calls in flight, nor 50 started in one second."""

    def run(**limits: Any) -> Dict[str, Any]:
        target_api.reset()
        target_api.configure(service_time=0.02)
        handle = submit_sync(
            "demo", "http-target", source_kwargs={"sites": 24, "variant": 1},
            target_kwargs={"url": target_api.url}, shard_size=8, limits=limits or None,
        )  # fmt: skip
        report = handle.wait(timeout=180)
        assert report["status"] == "success" and len(report["shards"]) > 4
        return {**target_api.stats(), "report": report}

    unlimited = run()
    assert unlimited["most_in_flight"] > 4, "18 slots never had 5 calls in flight: the test tests nothing"
    limited = run(concurrency=4, rate=50)
    assert 2 <= limited["most_in_flight"] <= 4
    assert limited["most_per_second"] <= 50
    assert limited["report"]["throttled"] > 0 and limited["report"]["waited"] > 0
    assert set(limited["writes"].values()) == {1}


def test_a_retry_after_holds_every_worker_back(wide, target_api: TargetApi) -> None:  # noqa: F811
    """Over its rate the API answers 429 with Retry-After: 2: no worker calls it again before the 2 s are up."""
    target_api.configure(rate=25, retry_after=2, service_time=0.01)
    handle = submit_sync(
        "demo", "http-target", source_kwargs={"sites": 12, "variant": 1}, target_kwargs={"url": target_api.url},
        shard_size=8, limits={"concurrency": 6}, retry={"attempts": 20, "seconds": 120},
    )  # fmt: skip
    report = handle.wait(timeout=180)
    stats = target_api.stats()
    assert report["status"] == "success" and set(stats["writes"].values()) == {1}
    answered = [entry for entry in stats["retry_afters"] if entry["first_after"] is not None]
    assert answered, "no 429 was answered: the test tested nothing"
    early = [entry for entry in answered if entry["first_after"] - entry["at"] < entry["retry_after"]]
    assert not early, early
    assert report["paused"] > 0


def test_an_outage_pauses_the_job_and_it_completes(wide, target_api: TargetApi) -> None:  # noqa: F811
    target_api.configure(service_time=0.03)
    handle = submit_sync(
        "demo", "http-target", source_kwargs={"sites": 16, "variant": 1}, target_kwargs={"url": target_api.url},
        shard_size=8, limits={"concurrency": 6}, retry={"attempts": 6, "initial": 0.2, "maximum": 2},
    )  # fmt: skip
    poll(lambda: len(target_api.stats()["writes"]) >= 20, timeout=60, what="the job writing")
    before = target_api.stats()["statuses"].get("503", 0)
    target_api.configure(outage_seconds=20)
    shown = poll(
        lambda: (target := handle.target()) and target.get("unavailable_since") and target.get("resume_at") and target,
        timeout=30,
        what="the job's progress to say the target is unavailable, and when the next call goes",
    )
    assert shown["transient"] > 0
    report = handle.wait(timeout=180)
    stats = target_api.stats()
    during = stats["statuses"].get("503", 0) - before
    assert report["status"] == "success" and set(stats["writes"].values()) == {1}, report.get("error")
    assert report["paused"] > 0 and report["lowest_limit"] is not None
    assert during < 60, f"{during} calls during a 20 s outage: the runner hammered the target"


def test_an_outage_longer_than_its_budget_fails_the_job_and_frees_the_target(workers, target_api: TargetApi) -> None:  # noqa: F811
    target_api.configure(service_time=0.01, outage_seconds=3600)
    budget = 4
    started = time.monotonic()
    handle = submit_sync(
        "demo", "http-target", source_kwargs=SOURCE, target_kwargs={"url": target_api.url},
        retry={"attempts": 50, "seconds": 600, "initial": 0.2, "maximum": 2}, outage_budget=budget,
    )  # fmt: skip
    with pytest.raises(JobFailed, match=rf"unavailable since .* outage budget of {budget} s"):
        handle.wait(timeout=120)
    assert time.monotonic() - started < budget + 60
    assert target_api.stats()["statuses"].get("503", 0) < 60, "the runner hammered a target that was down"
    target_api.configure(outage_seconds=0)
    second = submit_sync("demo", "http-target", source_kwargs=SOURCE, target_kwargs={"url": target_api.url})
    assert second.wait(timeout=120)["status"] == "success"  # the lock was released with the first job's end
