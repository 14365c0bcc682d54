"""Run one step: what every step needs around its own work, wrapped around every step once.

Steps never take claims, check deadlines, count poison or decide whether an error is retried: the dispatcher
does, from the step's declaration (``worker.pipeline.step``), for every runner alike. Around one delivery, in
order: the log context; a job unknown, ended or stopped; the deadline; a stray message; the claim, with the
poison check (a step whose worker died under it too often); the heartbeat and the claim kept; the job-level
hooks; the hand-over. An error the runner will not retry fails the job (the finish reports it), so no job is
left waiting for a step that will never come.
"""

from __future__ import annotations

from typing import Any, Dict, Optional, Sequence

import structlog

from worker.connection import out_of_memory
from worker.errors import describe
from worker.pipeline.context import (
    DONE,
    Busy,
    ClaimLost,
    Delivery,
    Ended,
    Runner,
    StepContext,
    Stop,
    claim_wait,
    forget_attached,
)
from worker.pipeline.step import Step, step_named
from worker.settings import get_settings
from worker.state.base import JobState

logger = structlog.get_logger("shardsync.worker")

_ENDED: Any = object()
"""The job ended while this delivery waited for its claim: nothing more to do."""


class Poisoned(RuntimeError):
    """The step's worker died under it more than SHARDSYNC_MAX_DELIVERIES times: it must not run again."""


def overdue(job: JobState, spec: Any) -> Optional[str]:
    """Why the job must stop now because its deadline passed, or None (``spec``: its spec data, as read)."""
    if not isinstance(spec, dict):
        return None
    deadline = spec.get("deadline")
    if isinstance(deadline, bool) or not isinstance(deadline, (int, float)) or deadline < 0:
        # None, or not a deadline at all: the setting's (a spec that does not validate is the step's to report)
        deadline = get_settings().job_deadline
    submitted = job.info().get("submitted")
    if not deadline or submitted is None or job.now() <= float(submitted) + float(deadline):
        return None
    return f"the job's deadline passed: it had not ended {deadline} s after it was submitted"


def poisoned(job: JobState, key: str, outage_retries: int = 0) -> Optional[str]:
    """Why a step must not run again: its worker died under it more than SHARDSYNC_MAX_DELIVERIES times.

    Asked right after the claim is taken; a task that kills its worker (out of memory, say) would otherwise
    be delivered again for ever. A delivery that ended on a Redis outage and was sent again may have left its
    claim unreleased (the release failed too): those ``outage_retries`` are not deaths.
    """
    dead = max(0, job.deaths(key) - outage_retries)
    limit = get_settings().max_deliveries
    if dead < limit:
        return None
    stood = min(dead, job.stand_downs(key))
    if stood * 2 >= dead:  # mostly deliveries that were alive but could not keep their claim
        return (
            f"{key} was started {dead + 1} times and lost its claim {stood} times while it ran "
            f"(SHARDSYNC_MAX_DELIVERIES={limit}): something keeps its process from renewing the claim for "
            f"SHARDSYNC_CLAIM_TTL={get_settings().claim_ttl} s (a hook holding the interpreter, as a C extension "
            f"parsing a huge payload does, or the process paused)"
        )
    return (
        f"{key} was started {dead + 1} times and its worker died {dead} times without finishing it "
        f"(SHARDSYNC_MAX_DELIVERIES={limit}): it may kill its worker (out of memory?)"
    )


def run_step(name: str, job: JobState, runner: Runner, delivery: Delivery, *args: Any) -> Any:
    """Run one delivery of a step by name, with its job id, stage and arguments bound to every log event.

    Returns what the step gives monitors (a shard's outcome, the finish's report), or None.

    Raises:
        Busy: if another delivery holds the step's claim (the runner runs this one again later).
        LookupError: if no step has that name.
        Exception: an error the runner retries (``Delivery.will_retry``), or any error of a ``raises`` step.
    """
    step = step_named(name)
    malformed = step.malformed(args)
    if malformed is not None:
        logger.error("Step message dropped: its arguments are not the step's", job_id=job.job_id, reason=malformed)
        return None
    context = step.log_context(job.job_id, args)
    structlog.contextvars.bind_contextvars(**context)
    try:
        return _deliver(step, StepContext(job, runner, delivery, step.label(args)), args)
    finally:
        structlog.contextvars.unbind_contextvars(*context)


def _deliver(step: Step, ctx: StepContext, args: Sequence[Any]) -> Any:
    job = ctx.job
    try:
        if not _runs(step, ctx, args):
            return None
        outcome = _claimed(step, ctx, args)
        if outcome is _ENDED:
            return None
        if step.event is not None:
            _notify(step.event, ctx, outcome)
        if job.report() is not None and not step.after_end:
            return None  # the job ended meanwhile: what came next is the finish's, and done
        if step.then is not None:
            return step.then(ctx, outcome, *args)
        return None if outcome is DONE else outcome
    except Busy:
        forget_attached()
        raise
    except Ended as ended:
        forget_attached()
        logger.warning("Step stood down: its job ended while it ran; nothing of it is kept", reason=str(ended))
        return None
    except Stop as stop:
        forget_attached()
        _stop(ctx, stop.reason)
        return None
    except Exception as err:
        forget_attached()
        if step.raises or ctx.delivery.will_retry(err):
            raise
        if not step.after_end and job.report() is not None:
            # The job ended while this step ran (the watchdog ended it around a hung call): its error is no
            # longer the job's, and nothing may be written after the end.
            logger.warning("Step failed after its job ended; nothing of it is kept", error=describe(err))
            return None
        _fail(ctx, step.failure_of(args), err)
        return None


def _runs(step: Step, ctx: StepContext, args: Sequence[Any]) -> bool:
    """Whether the delivery has anything to do: its job known, not ended, not stopped, its message no stray."""
    job = ctx.job
    try:
        spec_data = job.spec_data()
    except Exception:  # noqa: BLE001 - unreadable: known, and the steps report it as an invalid job
        spec_data = {}
    if spec_data is None:
        # A stray message (an expired job, a typo): nothing runs, and nothing is written that would outlive it.
        logger.warning("Step of an unknown or expired job: nothing done")
        return False
    if step.deadline:
        late = overdue(job, spec_data)
        if late and job.report() is None:
            job.abort(late)  # the step sees its job stopped, as after a cancel, and hands over to the finish
    if not step.after_end and job.report() is not None:
        return False  # a late duplicate of a job that has ended
    if not step.when_stopped and job.aborted():
        ctx.hand_over("finish")  # an error elsewhere, or cancelled: the finish reports it
        return False
    stray = step.check(job, *args) if step.check is not None else None
    if stray is not None:
        logger.error(stray)
        return False
    return True


def _claimed(step: Step, ctx: StepContext, args: Sequence[Any]) -> Any:
    """The step's work and record, under its claim (unclaimed steps: as they are), or DONE if done before."""
    job = ctx.job
    if step.is_done(job, args):
        return DONE
    if not step.claimed:
        return _work(step, ctx, args)
    key = step.key_of(args)
    token = job.claim(key, get_settings().claim_ttl, step.name, list(args))
    if token is None:  # another delivery runs it (or died, and its claim has not expired yet)
        raise Busy(ctx.label, claim_wait())
    ctx.claim, ctx.token = key, token
    try:
        if job.report() is not None and not step.after_end:
            return _ENDED  # the job ended between the look before the claim and the claim
        if step.is_done(job, args):
            return DONE  # another delivery did it between the look and the claim
        try:
            reason = poisoned(job, key, ctx.delivery.outage_retries)
            if reason is not None:
                if not step.runs_poisoned:
                    raise Poisoned(reason)
                job.abort(reason)  # it runs, in a stopped job, only to report
            return _work(step, ctx, args)
        except ClaimLost:
            _stood_down(job, key)
            raise
        except (Busy, Stop, Ended):
            raise
        except Exception as err:
            if step.failed is None or step.raises or ctx.delivery.will_retry(err):
                raise
            if not step.after_end and job.report() is not None:
                raise  # the job ended meanwhile: no failed result is recorded after its end
            forget_attached()
            _free_memory(ctx, err)
            return step.failed(ctx, err, *args)
    finally:
        ctx.claim, ctx.token = None, ""
        try:
            job.release_claim(key, token)
        except Exception:  # noqa: BLE001 - an unreleased claim expires by itself
            logger.warning("Claim not released", claim=key)


def _stood_down(job: JobState, key: str) -> None:
    """Count a stand-down on a lost claim, so that the poison check can say what keeps happening."""
    try:
        job.record_stand_down(key)
    except Exception as err:  # noqa: BLE001 - a count for a later message, never this delivery's failure
        logger.warning("Stand-down not counted", error=describe(err))


def _work(step: Step, ctx: StepContext, args: Sequence[Any]) -> Any:
    if step.heartbeat and step.claimed:
        with ctx.kept_alive() as beat:
            outcome = step.work(ctx, *args)
        if beat.claim_lost.is_set() or beat.lease_short():  # another delivery may run it now: its result counts
            raise ClaimLost(ctx.label, claim_wait())
    else:
        outcome = step.work(ctx, *args)
    if step.record is not None and outcome is not None:
        if ctx.job.report() is not None:
            return _ENDED  # the job ended while this step worked: its records are the finish's, and final
        step.record(ctx, outcome, *args)
    return outcome


def _notify(event: str, ctx: StepContext, outcome: Any) -> None:
    """Call the runner's job-level hooks for a job that started or ended.

    A hook's error is retried when the runner retries it, never fatal: hooks count and release, they do not
    decide how the job went.
    """
    job = ctx.job
    if event == "started" and (not outcome or outcome is DONE):
        return
    report: Optional[Dict[str, Any]] = None
    if event == "ended":
        report = job.report() if outcome is DONE else outcome
        if report is None:
            return
    for hook in ctx.runner.hooks:
        try:
            if event == "started":
                hook.started(job)
            else:
                hook.ended(job, report)  # type: ignore[arg-type]
        except Exception as err:  # noqa: BLE001 - see above
            if ctx.delivery.will_retry(err):
                raise
            logger.warning("Job hook failed", hook=type(hook).__name__, hook_event=event, error=describe(err))


def _stop(ctx: StepContext, reason: Optional[str]) -> None:
    """Stop the job (the first reason recorded wins) and hand over to the finish, which reports it."""
    if ctx.job.report() is not None:
        return  # ended already: nothing is written after a job's end
    if reason is not None:
        ctx.job.abort(reason)
    ctx.hand_over("finish")


def _fail(ctx: StepContext, what: str, err: BaseException) -> None:
    """Stop the job after an error in one of its steps, and let the finish report it."""
    logger.error("Job step failed", error=describe(err), exc_info=err)
    _stop(ctx, f"{what} failed: {_free_memory(ctx, err)}{describe(err)}")


def _free_memory(ctx: StepContext, err: BaseException) -> str:
    """Before a failure is recorded: if Redis refused a write for memory, drop the job's source store.

    With ``noeviction`` (as Redis must run for shardsync), every write fails at ``maxmemory``, the abort and
    the report included: the job's source store, of no use once it fails, is what frees room to record why
    (about half the job's memory); the target store, the journal's counterpart, stays for inspection.
    Returns the words that say so in the job's error (nothing for any other error).
    """
    if not out_of_memory(err):
        return ""
    try:
        ctx.job.drop_stores(("source",))
    except Exception as failed:  # noqa: BLE001 - the failure is still reported if Redis finds room
        logger.warning("Source store not dropped", error=describe(failed))
    logger.error("Redis is out of memory (maxmemory, noeviction): the job's source store was dropped")
    return "Redis is out of memory (its maxmemory reached; the job's source store was dropped): "
