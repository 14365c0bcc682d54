"""The load steps: load one side into its store, in one piece or as partitions loaded in parallel.

An adapter that declares ``partitions()`` (plain-data keys) is loaded as one task per partition: the side's
load step empties the store, keeps the keys with the job and hands over to the partitions; each writes its own
range of the store's order (``core.store.redis.partitions``), so the side reads back in partition order
however the tasks interleaved. The last partition to end records the side as loaded, and the second side to
be loaded hands over to the diff, as an unpartitioned load does.
"""

from __future__ import annotations

import time
from typing import Any, Dict, List, Optional, Sequence

import structlog

from core.adapter import Adapter
from core.store.redis.scripts import MAX_PARTITIONS
from worker.errors import InvalidJob, describe
from worker.pairs.runs import keep_cursor, load_side_changes, run_mode
from worker.pipeline.context import SIDES, StepContext
from worker.settings import get_settings
from worker.state.base import JobState, pack
from worker.targets.timeout import time_limit

logger = structlog.get_logger("shardsync.worker")

# ----------------------------------------------------------------------------------------------------
# a side
# ----------------------------------------------------------------------------------------------------


def side_done(job: JobState, side: str) -> bool:
    """Whether the side is loaded (its result recorded)."""
    return job.loads().get(side) is not None


def load(ctx: StepContext, side: str) -> Optional[Dict[str, Any]]:
    """Load one side's adapter into the job's store of that side, or hand over to its partitions' loads.

    Returns the side's load result to record, or None when its partitions record it.
    """
    job = ctx.job
    spec = ctx.spec
    if side == "source" and spec.apply_of:
        # Applying a plan writes the plan's diff: the source is not read again.
        job.record_load(side, {"objects": 0, "seconds": 0.0, "worker": ctx.hostname, "skipped": True})
        return None
    started = time.perf_counter()
    ctx.progress(f"load-{side}", len(job.loads()), 2)
    mode = run_mode(job)
    if mode == "changes":  # a run of an incremental pair: only what changed, into the pair's kept store
        return {**load_side_changes(job, spec, side, ctx.standing), "worker": ctx.hostname}
    partitioned = job.partitions(side)
    if partitioned is not None:  # a delivery again after the partitions were enqueued: never clear them
        _hand_over_partitions(ctx, side, len(partitioned["keys"]))
        return None
    adapter = spec.build_adapter(side)
    if mode == "full":  # the cursor first: what changes while the side loads is listed again next run
        keep_cursor(job, side, adapter)
    scope = spec.scope_obj
    partitions = adapter.partitions() if scope is None else adapter.partitions_in(scope)
    store = job.fresh_store(side)
    if partitions is not None:
        keys = check_partitions(adapter, partitions)
        job.save_partitions(side, keys, time.time())
        logger.info("Load partitioned", partitions=len(keys))
        _hand_over_partitions(ctx, side, len(keys))
        return {"objects": 0, "seconds": 0.0, "worker": ctx.hostname} if not keys else None  # none: side empty
    adapter.store = store
    store.adapter = adapter
    _guard_writes(ctx, store)
    if scope is None:
        with time_limit(get_settings().load_timeout, f"{type(adapter).__name__}.load()"):
            adapter.load()
    else:  # an adapter that can load part of its system reads only the scope; the rest load whole
        with time_limit(get_settings().load_timeout, f"{type(adapter).__name__}.load_scoped()"):
            adapter.load_scoped(scope)
    ctx.standing()  # a load that outlived its job writes nothing more
    flush = getattr(store, "flush", None)
    if flush is not None:
        flush()
    return {"objects": store.count(), "seconds": time.perf_counter() - started, "worker": ctx.hostname}


def _guard_writes(ctx: StepContext, store: Any) -> None:
    """Every write of the load's store checks first that this delivery's claim surely lives (its lease).

    A load paused past its claim never writes into the store its replacement has emptied and refills.
    """
    if hasattr(store, "write_guard"):
        store.write_guard = ctx.lease


def record_side(ctx: StepContext, result: Dict[str, Any], side: str) -> None:
    """Record a side as loaded: its time, worker and result (objects, seconds...)."""
    job = ctx.job
    stage = f"load-{side}"
    job.record_time(stage, result["seconds"])
    job.record_worker(stage, result["worker"])
    job.record_load(side, result)
    shown = {name: value for name, value in result.items() if name not in ("objects", "seconds", "worker")}
    logger.info("Loaded", objects=result["objects"], seconds=round(result["seconds"], 3), **shown)


def side_loaded(ctx: StepContext, outcome: Any, side: str) -> None:
    """After a load step: show how far the loads are; once both sides are loaded, hand over to the diff."""
    job = ctx.job
    loaded = len(job.loads())
    ctx.progress(f"load-{side}", loaded, 2)
    if loaded == len(SIDES):
        ctx.hand_over("finish" if job.aborted() else "diff")
    elif side == "source" and run_mode(job) == "changes":  # the target's turn: where the source's changes lead
        if job.aborted():
            ctx.hand_over("finish")
        else:
            ctx.hand_over("load", "target")


def check_partitions(adapter: Adapter, partitions: Any) -> List[Any]:
    """The partition keys an adapter declared, as they travel (msgpack); a clear error for anything else.

    Raises:
        InvalidJob: if they are not a list of distinct plain-data keys, at most MAX_PARTITIONS.
    """
    name = f"{type(adapter).__name__}.partitions()"
    if isinstance(partitions, (str, bytes, dict)) or not isinstance(partitions, Sequence):
        raise InvalidJob(f"{name} must return a list of plain-data keys or None, not {type(partitions).__name__}")
    if len(partitions) > MAX_PARTITIONS:
        raise InvalidJob(f"{name} returned {len(partitions)} partitions; a load has at most {MAX_PARTITIONS}")
    seen = {}
    for index, key in enumerate(partitions):
        try:
            packed = pack(key)
        except Exception as err:  # noqa: BLE001 - named in the message
            raise InvalidJob(
                f"{name}: partition {index} ({key!r}) is not plain data (str, int, float, bool, None, lists "
                f"and dicts of them): {describe(err)}"
            ) from None
        if packed in seen:
            raise InvalidJob(f"{name}: partitions {seen[packed]} and {index} are the same key {key!r}")
        seen[packed] = index
    return list(partitions)


def _hand_over_partitions(ctx: StepContext, side: str, count: int) -> None:
    done = ctx.job.partitions_done(side)
    for index in range(count):
        if index not in done:
            ctx.hand_over("partition", side, index)


# ----------------------------------------------------------------------------------------------------
# a partition of a side
# ----------------------------------------------------------------------------------------------------


def stray_partition(job: JobState, side: str, index: Any) -> Optional[str]:
    """Why a partition message names no partition of its job's load (then nothing runs), or None."""
    partitioned = job.partitions(side)
    if partitioned is None or not isinstance(index, int) or not 0 <= index < len(partitioned["keys"]):
        return f"Partition message names no partition of its job's load: {side} partition {index!r}"
    return None


def partition_done(job: JobState, side: str, index: int) -> bool:
    """Whether the partition is loaded (its result recorded)."""
    return index in job.partitions_done(side)


def load_partition(ctx: StepContext, side: str, index: int) -> Dict[str, Any]:
    """Load one partition of a side into its range of the side's store; returns its result to record."""
    job = ctx.job
    key = job.partitions(side)["keys"][index]  # type: ignore[index]
    started = time.perf_counter()
    store = job.partition_store(side, index)  # what an earlier delivery of this partition wrote is gone
    counter: Optional[Any] = getattr(store, "count_partition", None)
    before = 0 if counter is not None else store.count()
    adapter = ctx.spec.build_adapter(side)
    adapter.store = store
    store.adapter = adapter
    _guard_writes(ctx, store)
    with time_limit(get_settings().load_timeout, f"{type(adapter).__name__}.load_partition({key!r})"):
        adapter.load_partition(key)
    ctx.standing()
    flush = getattr(store, "flush", None)
    if flush is not None:
        flush()
    count = counter() if counter is not None else store.count() - before
    return {"objects": count, "seconds": time.perf_counter() - started, "ended": time.time(), "worker": ctx.hostname}


def record_partition(ctx: StepContext, result: Dict[str, Any], side: str, index: int) -> None:
    """Record a loaded partition."""
    ctx.job.record_partition(side, index, result)
    logger.info(
        "Partition loaded", side=side, partition=index, objects=result["objects"], seconds=round(result["seconds"], 3)
    )


def partition_loaded(ctx: StepContext, outcome: Any, side: str, index: int) -> None:
    """After a partition: show the side's progress; the last partition records the side and hands over."""
    job = ctx.job
    partitioned = job.partitions(side) or {"keys": [], "started": time.time()}
    total = len(partitioned["keys"])
    done = len(job.partitions_done(side))
    ctx.progress(f"load-{side}", done, total)
    if done < total:
        return
    if job.loads().get(side) is None:  # the results are read once, by the partition that ends the side
        results = job.partition_results(side)
        objects = sum(int(result.get("objects", 0)) for result in results.values())
        wall = max(float(result.get("ended", 0.0)) for result in results.values()) - float(partitioned["started"])
        hosts = sorted({str(result.get("worker", "")) for result in results.values()})
        record_side(
            ctx,
            {
                "objects": objects,
                "seconds": max(0.0, wall),
                "worker": ctx.hostname,
                "partitions": total,
                "workers": hosts,
            },
            side,
        )
    side_loaded(ctx, outcome, side)
