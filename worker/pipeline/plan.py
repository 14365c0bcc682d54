"""From a diff to the first shard: the plan (shard sizes), the checks that may stop a job, the first wave.

Shared by the two ways a diff is computed (``worker.pipeline.diff``: one task; ``worker.pipeline.ranges``: ranges as tasks
of their own, then a join), which both end in ``save_plan`` and ``after_plan``.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Dict, List, Optional, Union

import structlog

from core.adapter import Adapter
from core.diff import DiffElement
from core.enum import DiffSyncModelFlags
from core.planner import DEFAULT_SHARD_SIZE, PackedShard, balanced_shard_size
from worker.job.guard import delete_refusal, parse_delete_limit
from worker.job.spec import JobSpec
from worker.pipeline.context import Runner, show_progress
from worker.pipeline.shard import start_wave
from worker.settings import get_settings
from worker.state.base import JobState

logger = structlog.get_logger("shardsync.worker")


class Refused(Exception):
    """The diff step refuses to go on (an apply whose target changed since its plan); the job fails with it."""


def element_flags(adapter: Adapter, element: DiffElement) -> DiffSyncModelFlags:
    """The target model's flags for an element (they decide where a delete's children go)."""
    obj = getattr(element, "_dst_obj", None)
    if obj is None:
        model_class = getattr(adapter, element.type, None)
        if model_class is None:
            return DiffSyncModelFlags.NONE
        obj = adapter.get_or_none(model_class, element.keys)
    return obj.model_flags if obj is not None else DiffSyncModelFlags.NONE


def shard_size_for(spec: JobSpec, slots: Optional[int]) -> Union[int, Callable[[int], int]]:
    """The job's own shard size; else sized per wave for the live slots; else DEFAULT_SHARD_SIZE."""
    if spec.shard_size is not None:
        return spec.shard_size
    if slots:
        return lambda operations: balanced_shard_size(operations, slots)
    return DEFAULT_SHARD_SIZE


def save_plan(
    job: JobState,
    runner: Runner,
    packed: List[PackedShard],
    waves: List[List[int]],
    slots: Optional[int],
    started: float,
) -> Dict[str, Any]:
    """Keep the plan with the job (last: a saved plan means the diff is complete); returns it as saved."""
    shards = [
        {"index": index, "wave": wave, "type": modelname, "roots": roots, "operations": operations}
        for index, (wave, modelname, roots, operations) in enumerate(packed)
    ]
    saved = {"waves": waves, "operations": sum(shard["operations"] for shard in shards), "shards": shards}
    job.save_plan(saved)
    job.record_time("plan", time.perf_counter() - started)
    show_progress(job, runner, "plan", 1, 1)
    logger.info("Planned", shards=len(shards), waves=len(waves), operations=saved["operations"], slots=slots)
    return saved


def refused(job: JobState, runner: Runner, spec: JobSpec) -> bool:
    """The delete guardrail (``worker.job.guard``): a job over its delete limit fails before its first shard."""
    if spec.allow_deletes:
        return False
    deletes = int((job.summary() or {}).get("delete", 0))
    target_objects = int(job.loads().get("target", {}).get("objects", 0))
    limit = parse_delete_limit(spec.delete_limit if spec.delete_limit is not None else get_settings().delete_limit)
    refusal = delete_refusal(deletes, target_objects, limit)
    if refusal is None:
        return False
    logger.error("Delete guardrail", deletes=deletes, target_objects=target_objects, limit=str(limit))
    job.abort(refusal)
    runner.enqueue("finish", job.job_id)
    return True


def after_plan(job: JobState, runner: Runner, spec: JobSpec, saved: Dict[str, Any], fresh: bool) -> None:
    """The checks before the first shard, then the first wave (or the finish, for a plan or no change).

    Also for a step delivered again after the plan was saved (``fresh`` False): shards may have changed the
    target store since, so the diff is never computed twice; only the next step is enqueued again.
    """
    if not spec.dry_run and saved["shards"] and refused(job, runner, spec):
        return
    if fresh and not spec.dry_run and saved["shards"]:
        show_progress(job, runner, "sync", 0, saved["operations"])
    if spec.dry_run or not saved["shards"]:
        runner.enqueue("finish", job.job_id)
    else:
        start_wave(job, runner, saved["waves"][0])
