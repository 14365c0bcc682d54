"""The table of steps (``worker.pipeline.step``): each step declared once, and a step added through it alone."""

from __future__ import annotations

import dataclasses

import pytest
import structlog

from tests.worker.pipeline._steps import RecordingRunner
from worker.errors import describe
from worker.job.spec import JobSpec
from worker.pipeline.context import DONE, Delivery
from worker.pipeline.step import STEPS, Step, register, step_named, unregister
from worker.runners.local import LocalRunner

PIPELINE = {"start", "load", "partition", "diff", "range", "join", "shard", "finish"}


def test_every_step_is_declared_with_a_task_of_its_own() -> None:
    assert PIPELINE <= set(STEPS)
    tasks = [step.task for step in STEPS.values()]
    assert len(set(tasks)) == len(tasks)
    assert all(task.startswith("shardsync.") for task in tasks)
    assert all(name == step.name for name, step in STEPS.items())
    assert {step.queue for step in STEPS.values()} <= {"jobs", "shards"}
    assert STEPS["start"].queue == STEPS["finish"].queue == "jobs" and STEPS["shard"].queue == "shards"
    assert [name for name, step in STEPS.items() if step.job_task] == ["start"]


@pytest.mark.parametrize(
    ("name", "args", "key", "stage", "shown", "failure"),
    [
        ("start", (), "start", "start", "job X", "start"),
        ("load", ("source",), "load-source", "load-source", "job X source", "load-source"),
        ("partition", ("target", 2), "load-target-2", "load-target", "job X target partition 2",
         "load-target partition 2"),
        ("diff", (), "diff", "diff", "job X", "diff"),
        ("range", (4,), "diff-4", "diff", "job X range 4", "diff"),
        ("join", (), "join", "diff", "job X", "diff"),
        ("shard", (3,), "shard-3", "sync", "job X shard 3", "sync"),
        ("finish", (), "finish", "finish", "job X", "finish"),
    ],
)  # fmt: skip
def test_keys_task_ids_and_how_monitors_show_a_step(name, args, key, stage, shown, failure) -> None:
    step = step_named(name)
    assert step.key_of(args) == step.label(args) == key
    assert step.stage_of(args) == stage
    assert step.argsrepr("X", args) == shown
    assert step.failure_of(args) == failure
    assert step.task_id("X", args) == ("X" if name == "start" else f"X.{key}")


def test_the_log_context_of_a_step() -> None:
    assert STEPS["shard"].log_context("X", [3]) == {"job_id": "X", "stage": "sync", "shard": 3}
    assert STEPS["partition"].log_context("X", ["source", 1]) == {"job_id": "X", "stage": "load-source", "partition": 1}
    assert STEPS["range"].log_context("X", [0]) == {"job_id": "X", "stage": "diff", "range": 0}
    assert STEPS["load"].log_context("X", ["target"]) == {"job_id": "X", "stage": "load-target"}


def test_a_task_name_is_one_steps_only() -> None:
    with pytest.raises(ValueError, match="task name 'shardsync.shard' is step 'shard'"):
        register(Step("not-a-shard", task="shardsync.shard", work=lambda ctx: None))
    assert "not-a-shard" not in STEPS


def test_an_unknown_step_is_named_with_the_known_ones() -> None:
    with pytest.raises(LookupError, match="no step 'nope'; steps: .*range.*shard"):
        step_named("nope")


# ----------------------------------------------------------------------------------------------------
# a throwaway step, added through the table alone
# ----------------------------------------------------------------------------------------------------

CALLS: list = []


def probe_check(job, n):
    return None if isinstance(n, int) and 0 <= n <= 3 else f"no probe {n!r}"


def probe_done(job, n):
    return job.marked(f"probe-{n}")


def probe_work(ctx, n):
    CALLS.append(("work", n, ctx.job.claim_held(f"probe-{n}"), structlog.contextvars.get_contextvars()))
    if n == 0:
        raise RuntimeError("probe 0 refused")
    return {"n": n, "host": ctx.hostname}


def probe_record(ctx, outcome, n):
    CALLS.append(("record", n, ctx.job.claim_held(f"probe-{n}"), outcome))
    ctx.job.mark(f"probe-{n}")


def probe_failed(ctx, err, n):
    CALLS.append(("failed", n, ctx.job.claim_held(f"probe-{n}"), describe(err)))
    return {"n": n, "error": describe(err)}


def probe_then(ctx, outcome, n):
    CALLS.append(("then", n, ctx.job.claim_held(f"probe-{n}"), outcome))
    if n and n < 3:
        ctx.hand_over("probe", n + 1)
    return f"probe {n} shown"


PROBE = Step(
    "probe", task="shardsync.test_probe", work=probe_work, record=probe_record, then=probe_then, done=probe_done,
    check=probe_check, failed=probe_failed, key="probe-{0}", stage="probing", context=("probe",), shown="probe {0}",
)  # fmt: skip


@pytest.fixture
def probe(jobs):
    """The probe step registered, and a started job (holding its target's lock, as every step's job does)."""
    CALLS.clear()
    assert register(PROBE) is PROBE
    job = jobs.new()
    assert job.acquire_lock(JobSpec.from_data(job.spec_data()).target_identity(), 60) is None
    yield job
    unregister("probe")
    assert "probe" not in STEPS


def test_a_new_step_runs_through_the_dispatcher(probe, runner) -> None:
    job = probe

    assert runner.deliver(job, "probe", 1) == "probe 1 shown"

    context = {"job_id": job.job_id, "stage": "probing", "probe": 1}
    host = "worker-1@test"
    assert CALLS == [
        ("work", 1, True, context),  # under its claim, with its log context
        ("record", 1, True, {"n": 1, "host": host}),  # still under its claim
        ("then", 1, False, {"n": 1, "host": host}),  # after it
    ]
    assert runner.handed == [("probe", 2)]
    assert job.running_steps() == {} and job.marked("probe-1")
    assert structlog.contextvars.get_contextvars() == {}


def test_a_new_step_found_done_only_hands_over(probe, runner) -> None:
    job = probe
    runner.deliver(job, "probe", 1)
    CALLS.clear()

    runner.deliver(job, "probe", 1)

    assert CALLS == [("then", 1, False, DONE)]
    assert runner.handed == [("probe", 2)]


def test_a_new_steps_stray_message_is_dropped(probe, runner) -> None:
    assert runner.deliver(probe, "probe", 9) is None
    assert CALLS == [] and runner.handed == [] and probe.aborted() is None


def test_a_new_steps_failure_goes_to_its_failed_phase(probe, runner) -> None:
    job = probe

    runner.deliver(job, "probe", 0)

    assert [call[:3] for call in CALLS] == [("work", 0, True), ("failed", 0, True), ("then", 0, False)]
    assert CALLS[-1][3] == {"n": 0, "error": "RuntimeError: probe 0 refused"}  # no record of a failure
    assert job.aborted() is None and not job.marked("probe-0")


def test_without_a_failed_phase_a_new_steps_failure_fails_the_job(probe, runner) -> None:
    register(dataclasses.replace(PROBE, failed=None, failure="probe {0}"))

    runner.deliver(probe, "probe", 0)

    assert probe.aborted() == "probe 0 failed: RuntimeError: probe 0 refused"
    assert runner.handed == [("finish",)]


def test_a_new_step_runs_in_the_embedded_runner(probe) -> None:
    job = probe
    local = LocalRunner(hooks=())
    local.enqueue("probe", job.job_id, 1)

    local.run(job, Delivery(hostname="local@test"))

    assert [(call[0], call[1]) for call in CALLS] == [
        (phase, n) for n in (1, 2, 3) for phase in ("work", "record", "then")
    ]
    assert all(job.marked(f"probe-{n}") for n in (1, 2, 3))
    assert CALLS[1][3] == {"n": 1, "host": "local@test"}
    assert not local.queue and job.running_steps() == {}


def test_the_embedded_runner_finds_a_held_claim_a_bug(probe) -> None:
    job = probe
    job.claim("probe-2", 30)
    local = LocalRunner(hooks=())
    local.enqueue("probe", job.job_id, 1)

    with pytest.raises(RuntimeError, match=f"embedded job {job.job_id}: probe-2 is running in another delivery"):
        local.run(job, Delivery())

    assert job.marked("probe-1") and not job.marked("probe-2")


def test_an_unregistered_step_is_gone(probe) -> None:
    unregister("probe")
    with pytest.raises(LookupError, match="no step 'probe'"):
        RecordingRunner().deliver(probe, "probe", 1)
    assert CALLS == []
