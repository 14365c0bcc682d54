"""The Step declaration and the table of steps: everything about a step, said once.

A step's declaration names its work and the phases around it, its claim key, its Celery task and queue, how
its log context and monitors show it, and how to tell that it is done. The dispatcher
(``worker.pipeline.dispatch``) runs any step from its declaration; the runners (``worker.runners``), the
watchdog, the Celery task names and routes all read it here. Adding a step touches its own module and one
entry of ``STEPS``.

The phases of one delivery, in order (the dispatcher's, around the step's own functions):

1. ``check(job, *args)``: a message that names nothing of its job (a stray) is logged and dropped.
2. ``done(job, *args)``: work an earlier delivery did is not done again (the outcome is then ``DONE``).
3. ``work(ctx, *args)``: the step's own work, under its claim (and kept alive, with ``heartbeat``).
4. ``record(ctx, outcome, *args)``: its result written, still under the claim, once the claim is known kept.
5. the job-level hooks of its ``event`` (``started``, ``ended``).
6. ``then(ctx, outcome, *args)``: the hand-over to what comes next, after the claim; its return value is the
   step's result for monitors.

An error of ``work`` or ``record`` the runner will not retry goes to ``failed(ctx, err, *args)`` when the step
declares one (its outcome then goes on to ``then``), else it fails the job; ``raises`` steps raise it instead.
"""

from __future__ import annotations

import reprlib
from dataclasses import dataclass
from typing import Any, Callable, Dict, Optional, Sequence, Tuple

from worker.pipeline import diff, finish, load, shard, start


@dataclass(frozen=True)
class Step:
    """One step of the pipeline, declared once (see the module's docstring for its phases)."""

    name: str
    """What runners enqueue and the running-steps record names (``shard``)."""
    task: str
    """Its Celery task's name (``shardsync.shard``): what workers register and monitors show."""
    work: Callable[..., Any]
    key: str = ""
    """Template of its key, from its arguments: its claim, and its task id after the job's (``shard-{0}``);
    empty: the name."""
    claimed: bool = True
    """Whether it runs under a claim (so that two deliveries never run it at once)."""
    queue: str = "shards"
    """``jobs`` (short coordination steps) or ``shards`` (the long work): the queue settings name them."""
    stage: str = ""
    """Template of the ``stage`` bound to its log events and shown by progress (``load-{0}``); empty: the name."""
    context: Tuple[str, ...] = ()
    """Log fields bound to its arguments, by position (empty name: not bound)."""
    shown: str = ""
    """Template of its arguments as monitors show them after the job id (``shard {0}``)."""
    failure: str = ""
    """Template of what a failure of it is called in its job's error; empty: the stage."""
    done: Optional[Callable[..., bool]] = None
    check: Optional[Callable[..., Optional[str]]] = None
    record: Optional[Callable[..., Any]] = None
    then: Optional[Callable[..., Any]] = None
    failed: Optional[Callable[..., Any]] = None
    event: Optional[str] = None
    """``started`` or ``ended``: the job-level hooks to call after its work."""
    heartbeat: bool = True
    """Whether its whole work is kept alive (lock, claim, records) by a heartbeat; else it keeps alive the parts
    that need it (``StepContext.kept_alive``)."""
    when_stopped: bool = False
    """Whether it runs in a stopped job (a shard records itself stopped); else the job hands over to the finish."""
    after_end: bool = False
    """Whether it runs after the job's report exists (the finish, to publish the end again)."""
    deadline: bool = True
    """Whether it stops its job when the job's deadline has passed."""
    raises: bool = False
    """Whether its errors are raised to the runner instead of failing the job (the finish: it is the end)."""
    runs_poisoned: bool = False
    """Whether it still runs, in a stopped job, when its worker died under it too often (the finish reports)."""
    job_task: bool = False
    """Whether its Celery task is the job's own (task id: the job id; the job's state is that task's)."""
    params: Optional[Tuple[str, ...]] = None
    """What each argument of its message is, by position: ``side`` (source, target) or ``index`` (a whole
    number, 0 or more); a message with other arguments is a stray (``malformed``). None: not checked (a step
    of one's own may check its arguments in ``check``)."""

    def malformed(self, args: Sequence[Any]) -> Optional[str]:
        """Why a message's arguments cannot be this step's (their number, their kinds), or None.

        Checked before anything is built from them (the claim key, the log context): a message from a bug or
        a hostile producer is logged, in a bounded repr, and dropped.
        """
        if self.params is None:
            return None
        if len(args) != len(self.params):
            return f"{self.name} takes {len(self.params)} arguments, not {len(args)}: {_shown(args)}"
        for position, (kind, value) in enumerate(zip(self.params, args, strict=True)):
            if not _PARAM_CHECKS[kind](value):
                return f"{self.name} argument {position} is no {kind}: {_shown(value)}"
        return None

    def key_of(self, args: Sequence[Any]) -> str:
        """Its key (claim and task id suffix) for these arguments."""
        return (self.key or self.name).format(*args)

    def stage_of(self, args: Sequence[Any]) -> str:
        """The ``stage`` of its log events for these arguments."""
        return (self.stage or self.name).format(*args)

    def failure_of(self, args: Sequence[Any]) -> str:
        """What a failure of it is called in its job's error."""
        return self.failure.format(*args) if self.failure else self.stage_of(args)

    def log_context(self, job_id: str, args: Sequence[Any]) -> Dict[str, Any]:
        """The fields bound to every log event of one delivery."""
        context: Dict[str, Any] = {"job_id": job_id, "stage": self.stage_of(args)}
        context.update({name: value for name, value in zip(self.context, args, strict=False) if name})
        return context

    def label(self, args: Sequence[Any]) -> str:
        """How messages name one delivery: its key (``shard-3``, ``load-source-2``)."""
        return self.key_of(args)

    def task_id(self, job_id: str, args: Sequence[Any]) -> str:
        """Its Celery task id: one per step of a job, so monitors and the result backend tell them apart."""
        return job_id if self.job_task else f"{job_id}.{self.key_of(args)}"

    def argsrepr(self, job_id: str, args: Sequence[Any]) -> str:
        """Its arguments as monitors show them (``job 3f2a... shard 3``)."""
        return " ".join(part for part in ("job", job_id, self.shown.format(*args)) if part)

    def is_done(self, job: Any, args: Sequence[Any]) -> bool:
        """Whether its work is done (recorded by some delivery): then a claim expiring under it is no loss."""
        return bool(self.done(job, *args)) if self.done is not None else False


def _is_index(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 10_000_000


_PARAM_CHECKS: Dict[str, Callable[[Any], bool]] = {
    "side": lambda value: value in ("source", "target") and isinstance(value, str),
    "index": _is_index,
}


_REPR = reprlib.Repr()
_REPR.maxstring = _REPR.maxother = 60
_REPR.maxlist = _REPR.maxtuple = _REPR.maxdict = 6


def _shown(value: Any) -> str:
    """A repr bounded in size: a 20 MB argument is never logged whole."""
    return _REPR.repr(value)


STEPS: Dict[str, Step] = {}
"""Every step by name (``register`` adds one)."""


def register(step: Step) -> Step:
    """Add a step to the table (or replace the one of that name); returns it.

    Raises:
        ValueError: if another step has its task name already.
    """
    for other in STEPS.values():
        if other.task == step.task and other.name != step.name:
            raise ValueError(f"step {step.name!r}: task name {step.task!r} is step {other.name!r}'s already")
    STEPS[step.name] = step
    return step


def unregister(name: str) -> None:
    """Drop a step from the table (tests that add one)."""
    STEPS.pop(name, None)


def step_named(name: str) -> Step:
    """The step of that name.

    Raises:
        LookupError: naming the step and the known ones.
    """
    found = STEPS.get(name)
    if found is None:
        raise LookupError(f"no step {name!r}; steps: {', '.join(sorted(STEPS))}")
    return found


register(Step(
    "start", task="shardsync.job", work=start.start, then=start.hand_over, done=start.started,
    claimed=False, queue="jobs", event="started", job_task=True, params=(),
))  # fmt: skip
register(Step(
    "load", task="shardsync.load", work=load.load, record=load.record_side, then=load.side_loaded,
    done=load.side_done, key="load-{0}", stage="load-{0}", shown="{0}", params=("side",),
))  # fmt: skip
register(Step(
    "partition", task="shardsync.load_part", work=load.load_partition, record=load.record_partition,
    then=load.partition_loaded, done=load.partition_done, check=load.stray_partition,
    key="load-{0}-{1}", stage="load-{0}", context=("", "partition"), shown="{0} partition {1}",
    failure="load-{0} partition {1}", params=("side", "index"),
))  # fmt: skip
register(Step(
    "diff", task="shardsync.diff", work=diff.diff, then=diff.planned_then, done=diff.planned, params=(),
))  # fmt: skip
register(Step(
    "range", task="shardsync.diff_part", work=diff.diff_range, record=diff.record_range,
    then=diff.range_diffed, done=diff.range_done, check=diff.stray_range,
    key="diff-{0}", stage="diff", context=("range",), shown="range {0}", params=("index",),
))  # fmt: skip
register(Step(
    "join", task="shardsync.join", work=diff.join, then=diff.planned_then, done=diff.planned, stage="diff", params=(),
))  # fmt: skip
register(Step(
    "shard", task="shardsync.shard", work=shard.apply_shard, failed=shard.shard_failed, then=shard.shard_ended,
    done=shard.shard_done, check=shard.stray_shard, key="shard-{0}", stage="sync", context=("shard",),
    shown="shard {0}", heartbeat=False, when_stopped=True, params=("index",),
))  # fmt: skip
register(Step(
    "finish", task="shardsync.finish", work=finish.finish, then=finish.publish, done=finish.reported,
    queue="jobs", event="ended", heartbeat=False, when_stopped=True, after_end=True, deadline=False, raises=True,
    runs_poisoned=True, params=(),
))  # fmt: skip
register(Step(
    "end", task="shardsync.end", work=finish.end_hung, then=finish.publish, done=finish.reported,
    queue="jobs", event="ended", heartbeat=False, when_stopped=True, after_end=True, deadline=False, raises=True,
    runs_poisoned=True, params=(),
))  # fmt: skip
