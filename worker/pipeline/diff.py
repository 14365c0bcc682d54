"""The diff step: diff the two loaded stores in ranges (``worker.pipeline.ranges``), or in one task when it must.

Most jobs are diffed in ranges, as tasks of their own. Two kinds are diffed here, in one task: an apply
of a plan (its diff is the plan's, copied, once the target subtrees it touches are checked unchanged), and
a job whose adapters override ``diff_from`` or ``diff_to`` (whatever those do is theirs to do on the whole).
"""

from __future__ import annotations

import time
from typing import Any, Dict, Optional

import structlog

from core.adapter import Adapter
from core.diff_codec import DiffCodec
from core.planner import plan_sync
from worker.adapters.registry import get_adapter
from worker.job.report import changed_part, rebuild_diff
from worker.job.review import copy_diff, fingerprint, plan_job, refusal
from worker.job.spec import JobSpec
from worker.pipeline.context import (
    Delivery,
    Runner,
    attach_adapters,
    claimed,
    ended_or_stopped,
    failing,
    show_progress,
    spec_of,
)
from worker.pipeline.plan import Refused, after_plan, element_flags, save_plan, shard_size_for
from worker.pipeline.ranges import enqueue_parts, set_up
from worker.settings import get_settings
from worker.state.base import JobState

logger = structlog.get_logger("shardsync.worker")


def in_one_task(spec: JobSpec) -> bool:
    """Whether the job's diff runs in one task: an apply of a plan, or adapters with a diff of their own."""
    if spec.apply_of:
        return True
    return (
        getattr(get_adapter(spec.target), "diff_from", None) is not Adapter.diff_from
        or getattr(get_adapter(spec.source), "diff_to", None) is not Adapter.diff_to
    )


def diff(job: JobState, runner: Runner, delivery: Delivery) -> None:
    """Diff the two loaded stores (or set the ranges up that do), plan the shards and start the first wave."""
    if ended_or_stopped(job, runner):
        return
    with failing(job, runner, delivery, "diff"):
        spec = spec_of(job)
        try:
            saved: Optional[Dict[str, Any]] = job.plan_head()
        except LookupError:
            saved = None
        if saved is not None:  # delivered again after the plan was saved: only what comes next, again
            after_plan(job, runner, spec, saved, fresh=False)
            return
        # Claimed: a duplicate diffing now makes this one come back when the plan is saved.
        with claimed(job, "diff", "diff", [], "the diff") as token:
            if not in_one_task(spec):
                show_progress(job, runner, "diff", 0, 0)
                if job.diff_parts() is None:  # else delivered again: the ranges stand, those without a result go
                    set_up(job, spec)
                enqueue_parts(job, runner)
                return
            try:
                saved = _diff_and_plan(job, runner, delivery, spec, token)
            except Refused as refused:
                job.abort(str(refused))
                runner.enqueue("finish", job.job_id)
                return
        after_plan(job, runner, spec, saved, fresh=True)


def _diff_and_plan(job: JobState, runner: Runner, delivery: Delivery, spec: JobSpec, token: str) -> Dict[str, Any]:
    """Diff the loaded stores in this task, keep the diff and the plan with the job; returns the saved plan."""
    with job.heartbeat(spec.target_identity(), get_settings().lock_ttl, claim="diff", token=token):
        source, target = attach_adapters(job, spec)
        started = time.perf_counter()
        last = [0.0]

        def on_progress(stage: str, current: int, total: int) -> None:
            now = time.monotonic()
            if now - last[0] >= 0.5 or current == total:
                last[0] = now
                show_progress(job, runner, "diff", current, total)

        show_progress(job, runner, "diff", 0, 0)
        codec = DiffCodec(source, target)
        if spec.apply_of:  # apply a plan: its diff, if the target subtrees it touches are as it saw them
            plan_state = plan_job(job, spec.apply_of)
            reason = refusal(plan_state, target, spec.apply_of)
            if reason is not None:
                raise Refused(reason)
            the_diff = rebuild_diff(copy_diff(plan_state, job), codec, source.name, target.name, job.summary())
        else:
            # Only the subtrees with a change are kept and planned; the unchanged ones live on in the summary.
            the_diff = changed_part(target.diff_from(source, flags=spec.diffsync_flags, callback=on_progress))
            records = [codec.encode(element, changed_only=True) for element in the_diff.get_children()]
            job.save_diff(records, the_diff.summary())
            if spec.dry_run:  # a plan: fingerprint what it touches, for an apply to check
                job.save_fingerprints(fingerprint(the_diff, target))
        job.record_time("diff", time.perf_counter() - started)
        job.record_worker("diff", delivery.hostname)

        structlog.contextvars.bind_contextvars(stage="plan")
        started = time.perf_counter()
        show_progress(job, runner, "plan", 0, 1)
        slots = job.live_slots() if spec.shard_size is None else None
        plan = plan_sync(
            the_diff,
            shard_size=shard_size_for(spec, slots),
            barrier=spec.top_level_barrier,
            model_flags=lambda element: element_flags(target, element),
        )
        packed = [(shard.wave, shard.type, shard.roots, len(shard.operations)) for shard in plan.shards]
        return save_plan(job, runner, packed, plan.waves, slots, started)
