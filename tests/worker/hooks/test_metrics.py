"""Job metrics in Redis (``worker.hooks.metrics``): counted once per job, read by the collector, against the real test
Redis (``SHARDSYNC_TEST_REDIS_URL``); whole jobs run in this process on the Redis job state, no worker needed."""

from __future__ import annotations

import os
import time
import uuid
from typing import Dict

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from redis import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from core import keys
from core.store.redis import RedisStore
from worker.cli import exporter
from worker.hooks import metrics
from worker.hooks.metrics import MetricsHook
from worker.hooks.schedule import ScheduleHook
from worker.job.spec import JobSpec
from worker.pipeline.context import Delivery
from worker.pipeline.dispatch import run_step
from worker.runners.local import LocalRunner, run_local
from worker.state import MemoryJobState, RedisJobState

URL = os.environ["SHARDSYNC_BROKER_URL"]  # tests/conftest.py: the test database


@pytest.fixture
def client():
    client = Redis.from_url(URL)
    client.delete(keys.METRICS, keys.METRICS_RUNNING)
    created = []
    yield client, created
    for job_id in created:
        doomed = list(client.scan_iter(match=keys.job_pattern(job_id), count=1000))
        for side in ("source", "target"):
            RedisStore(url=URL, store_id=keys.job_store_id(job_id, side)).clear()
        if doomed:
            client.delete(*doomed)
        client.srem(keys.RUNNING_JOBS, job_id)
    client.delete(keys.METRICS, keys.METRICS_RUNNING)


def report(job_id: str, status: str = "success", **seconds: float) -> Dict:
    return {
        "job_id": job_id,
        "status": status,
        "source": "nautobot",
        "target": "netbox",
        "counts": {"create": {"success": 5, "error": 1}, "delete": {"success": 2}},
        "seconds": {"diff": 0.3, "sync": 42.0, "total": 50.5, **seconds},
    }


def scrape(client: Redis) -> Dict:
    """One scrape through the collector, parsed back from the text format: ``{(sample, labels): value}``."""
    registry = CollectorRegistry()
    registry.register(exporter.RedisCollector(client))
    samples = {}
    for family in text_string_to_metric_families(generate_latest(registry).decode()):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def by(samples: Dict, *kept: str) -> Dict:
    """The samples summed over every label but ``kept`` (as ``sum by (...)`` does in PromQL)."""
    found: Dict = {}
    for (name, labels), value in samples.items():
        key = (name, tuple((label, text) for label, text in labels if label in kept))
        found[key] = found.get(key, 0.0) + value
    return found


def new_job(client: Redis, created: list, ttl: int = 600) -> RedisJobState:
    job = RedisJobState(f"test-metrics-{uuid.uuid4().hex}", client)
    created.append(job.job_id)
    job.create({"source": "demo", "target": "demo"}, ttl=ttl)
    return job


def test_end_increments_from_a_report() -> None:
    found = metrics.end_increments(
        {**report("j"), "skipped": 3, "seconds": {"diff": 0.3, "total": 4000.0}, "retries": 4, "paused": 1.5},
        schedule="nightly",
    )
    assert found == [
        ("jobs_ended|success|nautobot|netbox|nightly", "i", "1"),
        ("operations|create|error|nautobot|netbox|nightly", "i", "1"),
        ("operations|create|success|nautobot|netbox|nightly", "i", "5"),
        ("operations|delete|success|nautobot|netbox|nightly", "i", "2"),
        ("operations_skipped", "i", "3"),
        ("target|retries", "i", "4"),
        ("target|paused", "f", "1.500000"),
        ("stage_seconds|diff|count", "i", "1"),
        ("stage_seconds|diff|sum", "f", "0.300000"),
        ("stage_seconds|diff|le|0.5", "i", "1"),
        ("job_seconds|success|nautobot|netbox|nightly|count", "i", "1"),
        ("job_seconds|success|nautobot|netbox|nightly|sum", "f", "4000.000000"),
        ("job_seconds|success|nautobot|netbox|nightly|le|7200", "i", "1"),
    ]
    beyond = metrics.end_increments({"status": "failed", "seconds": {"total": 10**6, "sync": float("nan")}})
    assert beyond == [  # above the last bound: counted in +Inf only; not a number: not observed
        ("jobs_ended|failed|||", "i", "1"),
        ("job_seconds|failed||||count", "i", "1"),
        ("job_seconds|failed||||sum", "f", "1000000.000000"),
    ]


def test_counters_of_an_earlier_release_without_the_sync_labels_are_still_shown() -> None:
    old = {"jobs_ended|success": 4.0, "operations|create|success": 9.0, "job_seconds|success|count": 4.0,
           "job_seconds|success|sum": 12.0, "job_seconds|success|le|5": 4.0,
           "jobs_ended|success|nautobot|netbox|le": 1.0, "job_seconds|success|nautobot|netbox|le|count": 1.0,
           "job_seconds|success|nautobot|netbox|le|sum": 2.0,
           "job_seconds|success|nautobot|netbox|le|le|5": 1.0}  # fmt: skip
    found = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in exporter.families(old, [], time.time())
        for sample in family.samples
    }
    nobody = (("schedule", ""), ("source", ""), ("status", "success"), ("target", ""))
    named = (("schedule", "le"), ("source", "nautobot"), ("status", "success"), ("target", "netbox"))  # "le" too
    assert found[("shardsync_jobs_ended_total", nobody)] == 4 and found[("shardsync_jobs_ended_total", named)] == 1
    assert found[("shardsync_operations_total", (("action", "create"), *sorted(nobody)))] == 9
    assert found[("shardsync_job_duration_seconds_count", nobody)] == 4
    assert found[("shardsync_job_duration_seconds_bucket", tuple(sorted((*nobody, ("le", "5.0")))))] == 4
    assert found[("shardsync_job_duration_seconds_sum", named)] == 2
    assert found[("shardsync_job_duration_seconds_bucket", tuple(sorted((*named, ("le", "5.0")))))] == 1


def test_a_job_is_counted_once_however_often_its_steps_count_it(client) -> None:
    client, created = client
    job = new_job(client, created)
    assert metrics.count_job_started(client, job.job_id) is True
    assert metrics.count_job_started(client, job.job_id) is False  # a start delivered twice
    counters = exporter.read_counters(client)
    assert counters == {"jobs_started": 1.0}
    assert [entry[0] for entry in exporter.running_jobs(client)] == [job.job_id]

    assert metrics.count_job_ended(client, job.job_id, report(job.job_id), ttl=600) is True
    once = exporter.read_counters(client)
    for _ in range(3):  # finishes delivered again, and a start delivered after the end
        assert metrics.count_job_ended(client, job.job_id, report(job.job_id), ttl=600) is False
        assert metrics.count_job_started(client, job.job_id) is False
    assert exporter.read_counters(client) == once
    who = "nautobot|netbox|"
    assert once[f"jobs_ended|success|{who}"] == 1 and once[f"operations|create|success|{who}"] == 5
    assert once[f"job_seconds|success|{who}|count"] == 1
    assert once[f"job_seconds|success|{who}|sum"] == pytest.approx(50.5)
    assert exporter.running_jobs(client) == []
    assert isinstance(job.info()["counted"], float)  # the marker, in the job's info: it lives as its report
    assert 0 < client.ttl(job.key("info")) <= 600


def test_the_end_counted_first_keeps_a_late_start_from_counting(client) -> None:
    client, created = client
    job = new_job(client, created)
    client.persist(job.key("info"))
    count_ended(job, {"status": "failed", "seconds": {"total": 1.0}}, ttl=300)  # a job cancelled as it started
    MetricsHook().started(job)
    counters = exporter.read_counters(client)
    assert "jobs_started" not in counters and counters["jobs_ended|failed|||"] == 1
    assert client.hlen(keys.METRICS_RUNNING) == 0
    assert 0 < client.ttl(job.key("info")) <= 300  # an info without expiry gets the report's


def test_running_jobs_show_their_progress_and_leave_once_ended_or_expired(client) -> None:
    client, created = client
    running, ended = new_job(client, created), new_job(client, created)
    for job in (running, ended):
        MetricsHook().started(job)
    running.write_journal({}, 7)
    ended.save_report({"status": "success"}, ttl=60)  # its finish has not counted it yet
    client.hset(keys.METRICS_RUNNING, "vanished", "1.0")  # records expired without an end
    found = exporter.running_jobs(client)
    assert [(job_id, done) for job_id, _, done in found] == [(running.job_id, 7)]
    assert not client.hexists(keys.METRICS_RUNNING, "vanished")
    assert client.hexists(keys.METRICS_RUNNING, ended.job_id)
    samples = scrape(client)
    assert samples[("shardsync_jobs_running", ())] == 1
    assert samples[("shardsync_jobs_running_operations_done", ())] == 7
    assert 0 <= samples[("shardsync_jobs_running_longest_seconds", ())] < 60


def test_a_scrape_shows_counters_and_histograms(client) -> None:
    client, created = client
    quick, slow, dry = new_job(client, created), new_job(client, created), new_job(client, created)
    count_ended(quick, {**report(quick.job_id), "skipped": 2, "retries": 3, "throttled": 1, "waited": 0.5}, ttl=60)
    count_ended(slow, {**report(slow.job_id, total=9000.0, sync=8000.0), "retries": 2, "paused": 20.0}, ttl=60)
    count_ended(dry, {"status": "dry-run", "counts": {}, "seconds": {"diff": 2.0, "total": 3.0}}, ttl=60)
    samples = scrape(client)
    assert samples[("shardsync_redis_up", ())] == 1
    assert samples[("shardsync_jobs_started_total", ())] == 0
    assert samples[("shardsync_target_retries_total", ())] == 5
    assert samples[("shardsync_target_throttled_total", ())] == 1
    assert samples[("shardsync_target_waited_seconds_total", ())] == 0.5
    assert samples[("shardsync_target_paused_seconds_total", ())] == 20.0
    samples = by(samples, "status", "action", "stage", "le")  # summed over source, target and schedule
    ended = {dict(labels)["status"]: v for (name, labels), v in samples.items() if name == "shardsync_jobs_ended_total"}
    assert ended == {"success": 2, "failed": 0, "dry-run": 1}
    assert samples[("shardsync_operations_total", (("action", "create"), ("status", "success")))] == 10
    assert samples[("shardsync_operations_total", (("action", "delete"), ("status", "success")))] == 4
    assert samples[("shardsync_operations_skipped_total", ())] == 2
    assert samples[("shardsync_jobs_running", ())] == 0

    def bucket(name, label, value, le):
        return samples[(f"{name}_bucket", tuple(sorted({label: value, "le": le}.items())))]

    job, stage = "shardsync_job_duration_seconds", "shardsync_stage_duration_seconds"
    assert bucket(job, "status", "success", "30.0") == 0
    assert bucket(job, "status", "success", "60.0") == 1  # 50.5 s
    assert bucket(job, "status", "success", "7200.0") == 1
    assert bucket(job, "status", "success", "14400.0") == 2  # 9000 s
    assert bucket(job, "status", "success", "+Inf") == 2
    assert samples[(f"{job}_count", (("status", "success"),))] == 2
    assert samples[(f"{job}_sum", (("status", "success"),))] == pytest.approx(9050.5)
    assert bucket(stage, "stage", "sync", "60.0") == 1 and bucket(stage, "stage", "sync", "+Inf") == 2
    assert samples[(f"{stage}_count", (("stage", "diff"),))] == 3
    assert samples[(f"{stage}_sum", (("stage", "diff"),))] == pytest.approx(2.6)
    assert not any(dict(labels).get("stage") == "total" for _, labels in samples)


def test_a_scrape_without_redis_says_so() -> None:
    dead = exporter.exporter_client("redis://127.0.0.1:1/0")  # nothing listens on port 1
    started = time.monotonic()
    assert scrape(dead) == {("shardsync_redis_up", ()): 0}
    assert time.monotonic() - started < 2


def count_ended(job, report, ttl) -> None:
    metrics.count_job_ended(job.client, job.job_id, report, ttl)


class FlakyMetrics(MetricsHook):
    """The metrics hook, whose first count of the job's end meets Redis gone (as at a crash)."""

    failures = 1

    def ended(self, job, report) -> None:
        if self.failures:
            self.failures -= 1
            raise RedisConnectionError("Connection refused (the test's)")
        super().ended(job, report)


def test_a_job_run_on_the_redis_state_is_counted_once_though_its_finish_runs_again(client) -> None:
    client, created = client
    spec = JobSpec.from_data(
        {
            "source": "demo",
            "target": "demo-api",
            "source_kwargs": {"sites": 4, "variant": 1},
            "target_kwargs": {"sites": 4, "api_url": f"memory://metrics-{uuid.uuid4().hex}"},
            "shard_size": 5,
        }
    )
    job = RedisJobState(spec.job_id, client)
    created.append(job.job_id)
    assert job.create(spec.to_message(), ttl=600)
    runner = LocalRunner(hooks=(FlakyMetrics(), ScheduleHook()))
    runner.enqueue("start", job.job_id)
    retrying = Delivery(hostname="test", will_retry=lambda err: isinstance(err, RedisConnectionError))
    try:
        with pytest.raises(RedisConnectionError):  # the finish's count failed after the report was saved
            runner.run(job, retrying)  # type: ignore[arg-type]
        saved = job.report()
        assert saved is not None and saved["status"] == "success"
        assert "jobs_ended|success" not in exporter.read_counters(client)
        assert run_step("finish", job, runner, retrying) == saved  # the finish delivered again counts the end
        once = exporter.read_counters(client)
        assert run_step("finish", job, runner, retrying) == saved  # and once more: nothing more
        assert exporter.read_counters(client) == once
    finally:
        job.release_lock(spec.target_identity())
        client.delete(keys.lock_holder_key(spec.target_identity()))
    assert once["jobs_started"] == 1 and once["jobs_ended|success|demo|demo-api|"] == 1
    ops = {
        "|".join(field.split("|")[1:3]): value
        for field, value in once.items()
        if field.startswith("operations|") and field.endswith("|demo|demo-api|")
    }
    assert ops == {f"{a}|{s}": n for a, per in saved["counts"].items() for s, n in per.items()}
    assert sum(ops.values()) + saved["skipped"] == saved["operations"] > 0
    assert once.get("operations_skipped", 0) == saved["skipped"]
    for stage, seconds in saved["seconds"].items():
        name = "job_seconds|success|demo|demo-api|" if stage == "total" else f"stage_seconds|{stage}"
        assert once[f"{name}|count"] == 1 and once[f"{name}|sum"] == pytest.approx(seconds, abs=1e-5), stage
    assert exporter.running_jobs(client) == []


def test_an_embedded_job_counts_nothing(client) -> None:
    client, _ = client
    spec = JobSpec.from_data({"source": "demo", "target": "demo-api", "source_kwargs": {"sites": 2, "variant": 1}})
    state = MemoryJobState(spec.job_id)
    assert run_local(spec, state=state)["status"] == "success"
    assert not client.exists(keys.METRICS) and "counted" not in state.info()
