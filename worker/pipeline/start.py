"""The start step: take the lock on the job's target, then hand over to both loads (they run in parallel)."""

from __future__ import annotations

import time
from typing import Any

from worker.errors import InvalidJob, describe
from worker.pairs.runs import decide, run_mode
from worker.pipeline.context import DONE, SIDES, Busy, StepContext, Stop
from worker.settings import get_settings
from worker.state.coalesce import rescope, take

COALESCED_WAIT = 2
"""Seconds between two looks of a coalesced job's start at its target's lock, held by the run before it."""


def started(job: Any) -> bool:
    """Whether the job's start handed over to its loads already (a start delivered again does nothing)."""
    return bool(job.marked("started"))


def start(ctx: StepContext) -> bool:
    """Take the target's lock for the job and record it as running; returns True (the job started).

    Raises:
        Stop: if the job's spec is invalid, another job holds the target's lock, or it was cancelled meanwhile.
    """
    job = ctx.job
    try:
        spec = ctx.spec
    except Exception as err:  # noqa: BLE001 - reported as the job's failure
        raise Stop(f"invalid job: {describe(err)}") from None
    holder = job.acquire_lock(spec.target_identity(), get_settings().lock_ttl)  # idempotent for this job
    if holder is not None and spec.coalesce is not None:
        # A coalesced run waits for the run before it (its requests keep joining it meanwhile), never refused.
        raise Busy(f"job {job.job_id}'s start (target {spec.target} held by job {holder})", COALESCED_WAIT)
    if holder is not None:
        job.set_info(lock="not held")
        raise Stop(f"target {spec.target} is being synced by job {holder}; one sync into a target at a time")
    job.set_info(lock="held")
    client = getattr(job, "client", None)  # coalescing is the Redis state's: one process has no producers
    if spec.coalesce is not None and client is not None:
        # The requests that joined it stop joining now; their scopes' union becomes the job's.
        take(
            client,
            spec.coalesce_key(),
            job.job_id,
            lambda scope: rescope(client, job.job_id, {**spec.to_message(), "scope": scope}),
        )
    if job.aborted():  # cancelled before it started
        raise Stop()
    if spec.pair is not None:  # a run of an incremental pair: full, or of changes only (once the lock is held)
        try:
            decide(job, spec)
        except InvalidJob as err:
            raise Stop(str(err)) from None
    job.set_info(status="running", started=time.time(), worker=ctx.hostname)
    return True


def hand_over(ctx: StepContext, outcome: Any) -> None:
    """Enqueue both loads, then mark the job started (a start that dies in between sends them again)."""
    if outcome is DONE:
        return  # a redelivered start: the pipeline runs already
    ctx.progress("load-source", 0, 2)
    # A run of changes loads the target after the source: it looks where the source's changes lead.
    for side in ("source",) if run_mode(ctx.job) == "changes" else SIDES:
        ctx.hand_over("load", side)
    ctx.job.mark("started")  # after the enqueues: loads are claimed, so sending them twice is harmless
