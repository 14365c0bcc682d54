"""The dispatcher (``worker.pipeline.dispatch``): what every step gets around its own work."""

from __future__ import annotations

import time

import pytest
import structlog

from tests.worker.pipeline import _adapters
from tests.worker.pipeline._steps import (
    DyingState,
    EndingState,
    RecordingHook,
    RecordingRunner,
    drive,
    run_all,
    spec_data,
)
from worker.job.spec import JobSpec
from worker.pipeline.context import Busy, Delivery, claim_wait
from worker.pipeline.dispatch import poisoned
from worker.settings import get_settings
from worker.state.memory import MemoryJobState

RETRIED = Delivery(hostname="worker-1@test", will_retry=lambda err: True)


def test_a_step_whose_claim_is_held_raises_busy(jobs, runner) -> None:
    job = jobs.new()
    drive(runner, job, "load")
    other = job.claim("load-source", 30, "load", ["source"])

    with pytest.raises(Busy, match="load-source is running in another delivery") as busy:
        runner.deliver(job, "load", "source")

    assert busy.value.countdown == claim_wait()
    assert job.loads() == {} and runner.handed == []
    job.release_claim("load-source", other)  # still the other delivery's claim
    assert not job.claim_held("load-source")


def test_a_step_found_done_is_no_busy_even_under_a_held_claim(jobs, runner) -> None:
    job = jobs.new()
    drive(runner, job, "load")
    runner.deliver(job, "load", "source")
    job.claim("load-source", 30)

    runner.deliver(job, "load", "source")

    assert runner.progressed == [("load-source", 1, 2)]


def test_a_poisoned_step_fails_its_job(jobs, runner) -> None:
    limit = get_settings().max_deliveries
    job = jobs.new(state=DyingState)
    drive(runner, job, "load")
    job.dead["load-source"] = limit

    runner.deliver(job, "load", "source")

    assert job.aborted().startswith(
        f"load-source failed: Poisoned: load-source was started {limit + 1} times and its worker died {limit} times"
    )
    assert f"SHARDSYNC_MAX_DELIVERIES={limit}" in job.aborted()
    assert runner.handed == [("finish",)] and job.loads() == {}
    assert not job.claim_held("load-source")


def test_a_step_under_the_limit_runs(jobs, runner) -> None:
    job = jobs.new(state=DyingState)
    drive(runner, job, "load")
    job.dead["load-source"] = get_settings().max_deliveries - 1

    runner.deliver(job, "load", "source")

    assert "source" in job.loads() and job.aborted() is None


def test_a_poisoned_shard_ends_with_a_failed_result(jobs, runner) -> None:
    job = jobs.new(state=DyingState)
    assert drive(runner, job, "shard") == [("shard", 0)]
    job.dead["shard-0"] = get_settings().max_deliveries

    runner.deliver(job, "shard", 0)

    assert job.aborted().startswith("shard 0 failed: Poisoned: shard-0 was started")
    assert job.shard_result(0)["error"].startswith("Poisoned: ") and job.shard_result(0)["applied"] == 0
    assert runner.handed == [("finish",)]  # its wave ends


def test_an_overdue_job_is_stopped_before_its_step_runs(jobs, runner) -> None:
    job = jobs.new(deadline=60)
    drive(runner, job, "load")
    job.set_info(submitted=time.time() - 3600)

    runner.deliver(job, "load", "source")

    assert job.aborted() == "the job's deadline passed: it had not ended 60 s after it was submitted"
    assert runner.handed == [("finish",)]
    assert job.loads() == {} and job.running_steps() == {}

    report = runner.deliver(job, "finish")  # the finish has no deadline: it reports
    assert report["status"] == "failed" and report["error"] == job.aborted()


@pytest.mark.parametrize(("fields", "stopped"), [({}, True), ({"deadline": 0}, False)])
def test_without_a_deadline_the_setting_and_0_is_none(jobs, runner, fields, stopped) -> None:
    job = jobs.new(**fields)
    job.set_info(submitted=time.time() - get_settings().job_deadline - 60)

    runner.deliver(job, "start")

    if stopped:
        assert job.aborted().startswith("the job's deadline passed")
        assert runner.handed == [("finish",)] and "lock" not in job.info()
    else:
        assert job.aborted() is None
        assert runner.handed == [("load", "source"), ("load", "target")]


def test_a_shard_of_an_overdue_job_records_itself_stopped(jobs, runner) -> None:
    job = jobs.new(deadline=60)
    drive(runner, job, "shard")
    job.set_info(submitted=time.time() - 3600)

    runner.deliver(job, "shard", 0)

    assert job.shard_result(0)["stopped"] is True and job.journal() == {}
    assert runner.handed == [("finish",)]


def test_an_error_the_runner_retries_is_raised(jobs, runner) -> None:
    job = jobs.new(target="pipeline-test-broken-load")
    drive(runner, job, "load")

    with pytest.raises(RuntimeError, match="the listing is down"):
        runner.deliver(job, "load", "target", delivery=RETRIED)

    assert job.aborted() is None and runner.handed == []
    assert not job.claim_held("load-target")  # the retry can take it


def test_any_other_error_fails_the_job_at_the_steps_stage(jobs, runner) -> None:
    job = jobs.new(target="pipeline-test-broken-load")
    drive(runner, job, "load")

    assert runner.deliver(job, "load", "target") is None

    assert job.aborted() == "load-target failed: RuntimeError: the listing is down"
    assert runner.handed == [("finish",)]


def test_errors_of_the_finish_are_raised(jobs, runner) -> None:
    class NoReport(MemoryJobState):
        def save_report(self, report, ttl):
            raise RuntimeError("the job state went away")

    job = jobs.new(state=NoReport)
    job.abort("cancelled")

    with pytest.raises(RuntimeError, match="the job state went away"):
        runner.deliver(job, "finish")

    assert runner.published == [] and runner.handed == []


@pytest.mark.parametrize(
    "step", [("start",), ("load", "source"), ("partition", "source", 0), ("diff",), ("range", 0), ("join",),
             ("shard", 0), ("finish",)]
)  # fmt: skip
def test_an_unknown_job_runs_nothing(runner, step) -> None:
    job = MemoryJobState(JobSpec.from_data(spec_data()).job_id)  # never created, or expired

    assert runner.deliver(job, *step) is None

    assert runner.handed == [] and runner.progressed == [] and runner.published == []
    assert job.info() == {} and job.aborted() is None and job.report() is None
    assert job.running_steps() == {} and job.loads() == {}


@pytest.mark.parametrize("step", [("load", "source"), ("diff",), ("range", 0), ("join",), ("shard", 0)])
def test_after_the_report_every_step_is_a_no_op(jobs, runner, step) -> None:
    job = jobs.new()
    pending = drive(runner, job, "shard")
    report = run_all(runner, job, pending)
    loads, summary = job.loads(), job.summary()

    assert runner.deliver(job, *step) is None

    assert runner.handed == [] and runner.progressed == []
    assert job.report() == report and job.loads() == loads and job.summary() == summary
    assert job.running_steps() == {} and job.shard_results() == {}


def test_a_stopped_job_hands_over_to_the_finish_instead_of_a_step(jobs, runner) -> None:
    job = jobs.new()
    drive(runner, job, "diff")
    job.abort("cancelled by the operator")

    runner.deliver(job, "diff")

    assert runner.handed == [("finish",)] and job.ranges() is None


def test_a_job_that_ended_while_the_step_took_its_claim(jobs, runner) -> None:
    job = jobs.new(state=EndingState)
    drive(runner, job, "load")
    job.end_in = "claim"

    assert runner.deliver(job, "load", "source") is None

    assert job.loads() == {} and runner.handed == []
    assert not job.claim_held("load-source")


def test_a_job_that_ended_while_the_step_worked_keeps_its_records(jobs, runner) -> None:
    job = jobs.new(state=EndingState)
    drive(runner, job, "load")
    job.end_in = "work"

    assert runner.deliver(job, "load", "source") is None

    assert job.loads() == {} and "load-source" not in job.times()  # the finish's records are final
    assert runner.handed == []


def test_the_log_context_is_bound_during_the_step(jobs, runner) -> None:
    job = jobs.new(
        source="pipeline-test-counting",
        source_kwargs={"sites": 4, "variant": 1, "partitions": 2},
        target="pipeline-test-failing-hook",
        shard_size=2,
    )
    drive(runner, job, "load")
    runner.deliver(job, "load", "source")

    runner.deliver(job, "partition", "source", 1)

    assert _adapters.CONTEXTS == [{"job_id": job.job_id, "stage": "load-source", "partition": 1}]
    assert structlog.contextvars.get_contextvars() == {}  # unbound after the step
    runner.deliver(job, "partition", "source", 0)
    runner.deliver(job, "load", "target")
    assert drive(runner, job, "shard", pending=runner.handed)[0] == ("shard", 0)
    assert structlog.contextvars.get_contextvars() == {}  # the join binds stage=plan: unbound too
    _adapters.CONTEXTS.clear()

    runner.deliver(job, "shard", 0)  # site-0000's update runs a site hook

    assert _adapters.CONTEXTS == [{"job_id": job.job_id, "stage": "sync", "shard": 0}]
    assert structlog.contextvars.get_contextvars() == {}


def test_the_job_level_hooks_are_called_once_per_event(jobs) -> None:
    hook = RecordingHook()
    runner = RecordingRunner(hooks=[hook])
    job = jobs.new(shard_size=2)

    report = run_all(runner, job, [("start",)])

    assert report["status"] == "success"
    assert hook.calls == [("started", job.job_id, None), ("ended", job.job_id, "success")]


def test_a_started_hook_that_fails_is_no_failure_of_the_job(jobs) -> None:
    hook = RecordingHook(fail=RuntimeError("metrics are down"))
    runner = RecordingRunner(hooks=[hook])
    job = jobs.new()

    runner.deliver(job, "start")

    assert hook.calls == [("started", job.job_id, None)]
    assert job.aborted() is None  # fails: "start failed: TypeError: ... multiple values for argument 'event'"
    assert runner.handed == [("load", "source"), ("load", "target")]


def test_an_ended_hook_that_fails_does_not_keep_the_end_from_being_published(jobs) -> None:
    hook = RecordingHook(fail=RuntimeError("metrics are down"))
    runner = RecordingRunner(hooks=[hook])
    job = jobs.new()
    job.abort("cancelled by the operator")

    report = runner.deliver(job, "finish")  # fails: the finish raises the TypeError, the end is never published

    assert report == job.report() and report["error"] == "cancelled by the operator"
    assert runner.published == [(job.job_id, report)]
    assert hook.calls == [("ended", job.job_id, "failed")]


def test_a_hook_error_the_runner_retries_is_raised_before_the_hand_over(jobs) -> None:
    hook = RecordingHook(fail=RuntimeError("metrics are down"))
    runner = RecordingRunner(hooks=[hook])
    job = jobs.new()

    with pytest.raises(RuntimeError, match="metrics are down"):
        runner.deliver(job, "start", delivery=RETRIED)

    assert runner.handed == [] and not job.marked("started") and job.aborted() is None
    hook.fail = None
    runner.deliver(job, "start")  # the retry: the start runs again, its hooks too
    assert runner.handed == [("load", "source"), ("load", "target")]
    assert hook.calls == [("started", job.job_id, None)] * 2


BAD_MESSAGES = [
    ("load", ("bogus",)), ("load", (None,)), ("load", (1,)), ("load", ()), ("load", ("source", 0)),
    ("partition", ("source", True)), ("partition", ("bogus", 0)), ("range", ("0",)), ("range", (-1,)),
    ("shard", (True,)), ("shard", ("0",)), ("shard", (-1,)), ("shard", ("x" * 20_000_000,)),
    ("diff", ("source",)), ("finish", (0,)), ("end", ("x",)),
]  # fmt: skip


@pytest.mark.parametrize(("step", "args"), BAD_MESSAGES, ids=lambda value: repr(value)[:30])
def test_a_message_whose_arguments_are_not_its_steps_is_dropped(jobs, runner, step, args) -> None:
    job = jobs.new()
    drive(runner, job, "shard")
    running, info = job.running_steps(), job.info()

    assert runner.deliver(job, step, *args) is None

    assert runner.handed == [] and runner.progressed == [] and runner.published == []
    assert job.aborted() is None and job.report() is None
    assert job.running_steps() == running and job.info() == info
    assert job.loads().keys() == {"source", "target"}


class _Counted:
    """The two counts the poison check reads, as a Redis job state would give them."""

    def __init__(self, deaths: int, stand_downs: int) -> None:
        self._deaths, self._stand_downs = deaths, stand_downs

    def deaths(self, key: str) -> int:
        return self._deaths

    def stand_downs(self, key: str) -> int:
        return self._stand_downs


def test_the_poison_check_names_lost_claims_apart_from_dead_workers() -> None:
    assert poisoned(_Counted(4, 4), "shard-0") is None  # under SHARDSYNC_MAX_DELIVERIES (5)
    died = poisoned(_Counted(5, 0), "shard-0")
    assert died is not None and "worker died 5 times" in died and "out of memory" in died
    stalled = poisoned(_Counted(5, 4), "shard-0")
    assert stalled is not None and "lost its claim 4 times" in stalled and "holding the interpreter" in stalled
    assert "out of memory" not in stalled
    assert poisoned(_Counted(7, 2), "shard-0", outage_retries=2) is not None  # outages are not deaths
    assert poisoned(_Counted(6, 2), "shard-0", outage_retries=2) is None
