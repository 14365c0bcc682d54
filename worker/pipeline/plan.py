"""From a diff to the shards: the plan (shard sizes, waves), the checks that may stop a job, and the waves' order.

Not a step of its own: the two ways a diff is computed (``worker.pipeline.diff``: in one task, or in ranges and
a join) both end here, in ``save_plan`` and ``after_plan``; the shard step reads the waves here to hand over to
the next one (``next_wave``).
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
from worker.pipeline.context import StepContext, Stop
from worker.settings import get_settings

logger = structlog.get_logger("shardsync.worker")


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
    ctx: StepContext, packed: List[PackedShard], waves: List[List[int]], slots: Optional[int], started: float
) -> Dict[str, Any]:
    """Keep the plan with the job (last: a saved plan means the diff is complete); returns it as saved."""
    shards = [
        {"index": index, "wave": wave, "type": modelname, "roots": roots, "operations": operations}
        for index, (wave, modelname, roots, operations) in enumerate(packed)
    ]
    saved = {"waves": waves, "operations": sum(shard["operations"] for shard in shards), "shards": shards}
    ctx.job.save_plan(saved)
    ctx.job.record_time("plan", time.perf_counter() - started)
    ctx.progress("plan", 1, 1)
    logger.info("Planned", shards=len(shards), waves=len(waves), operations=saved["operations"], slots=slots)
    return saved


def guardrail(ctx: StepContext) -> None:
    """The delete guardrail (``worker.job.guard``): a job over its delete limit stops before its first shard.

    Raises:
        Stop: naming the deletes, the target's objects and the limit.
    """
    spec = ctx.spec
    if spec.allow_deletes:
        return
    deletes = int((ctx.job.summary() or {}).get("delete", 0))
    target_objects = int(ctx.job.loads().get("target", {}).get("objects", 0))
    limit = parse_delete_limit(spec.delete_limit if spec.delete_limit is not None else get_settings().delete_limit)
    refusal = delete_refusal(deletes, target_objects, limit)
    if refusal is not None:
        logger.error("Delete guardrail", deletes=deletes, target_objects=target_objects, limit=str(limit))
        raise Stop(refusal)


def after_plan(ctx: StepContext, saved: Dict[str, Any], fresh: bool) -> None:
    """The checks before the first shard, then the first wave (or the finish, for a plan or no change).

    Also for a step delivered again after the plan was saved (``fresh`` False): shards may have changed the
    target store since, so the diff is never computed twice; only the next step is handed over to again.
    """
    dry_run = ctx.spec.dry_run
    if not dry_run and saved["shards"]:
        guardrail(ctx)
    if fresh and not dry_run and saved["shards"]:
        ctx.progress("sync", 0, saved["operations"])
    if dry_run or not saved["shards"]:
        ctx.hand_over("finish")
    else:
        start_wave(ctx, saved["waves"][0])


def start_wave(ctx: StepContext, shard_indexes: List[int]) -> None:
    """Hand over to the shards of one wave (they may run in parallel)."""
    for index in shard_indexes:
        ctx.hand_over("shard", index)


def next_wave(ctx: StepContext, plan: Dict[str, Any], wave: int, finished_in_wave: int) -> None:
    """After a shard: if its wave is complete, start the next wave, or the finish when none is left."""
    waves = plan["waves"]
    if finished_in_wave < len(waves[wave]):
        return
    if wave + 1 < len(waves) and not ctx.job.aborted():
        marker = f"wave-{wave + 1}"
        if not ctx.job.marked(marker):
            start_wave(ctx, waves[wave + 1])
            ctx.job.mark(marker)  # after the enqueues: a crash in between sends the wave again (shards are claimed)
        return
    ctx.hand_over("finish")
