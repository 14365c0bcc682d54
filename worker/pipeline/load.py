"""The load steps: load one side into its store, in one piece or as partitions loaded in parallel.

An adapter that declares ``partitions()`` (plain-data keys) is loaded as one task per partition: the side's
load step empties the store, keeps the keys with the job and enqueues the partitions; each writes its own
range of the store's order (``core.store.redis.partitions``), so the side reads back in partition order
however the tasks interleaved. The last partition to end records the side as loaded, and the second side to
be loaded enqueues the diff, as an unpartitioned load does.
"""

from __future__ import annotations

import time
from typing import Any, List, Optional, Sequence

import structlog

from core.adapter import Adapter
from core.store.redis.scripts import MAX_PARTITIONS
from worker.errors import InvalidJob, describe
from worker.job.spec import JobSpec
from worker.pipeline.context import (
    SIDES,
    ClaimLost,
    Delivery,
    Runner,
    claim_wait,
    claimed,
    ended_or_stopped,
    failing,
    show_progress,
    spec_of,
)
from worker.settings import get_settings
from worker.state.base import JobState, pack

logger = structlog.get_logger("shardsync.worker")


def load(job: JobState, runner: Runner, delivery: Delivery, side: str) -> None:
    """Load one side's adapter into the job's store of that side (or enqueue its partitions' loads)."""
    stage = f"load-{side}"
    if ended_or_stopped(job, runner):
        return
    with failing(job, runner, delivery, stage):
        spec = spec_of(job)
        if job.loads().get(side) is None and side == "source" and spec.apply_of:
            # Applying a plan writes the plan's diff: the source is not read again.
            job.record_load(side, {"objects": 0, "seconds": 0.0, "worker": delivery.hostname, "skipped": True})
        if job.loads().get(side) is None:
            # Claimed: a duplicate loading into this store now is never cleared under its feet.
            with claimed(job, stage, "load", [side], f"the {side} load") as token:
                if job.loads().get(side) is None:  # not loaded by a duplicate that finished meanwhile
                    _load_side(job, runner, delivery, spec, side, token)
        side_loaded(job, runner, stage)


def side_loaded(job: JobState, runner: Runner, stage: str) -> None:
    """After a load step: show how far the loads are; once both sides are loaded, enqueue the diff."""
    if job.report() is not None:
        return  # the job ended while this side loaded (the other failed, say): nothing more of it
    loaded = len(job.loads())
    show_progress(job, runner, stage, loaded, 2)
    if loaded == len(SIDES):
        runner.enqueue("finish" if job.aborted() else "diff", job.job_id)


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


def _load_side(job: JobState, runner: Runner, delivery: Delivery, spec: JobSpec, side: str, token: str) -> None:
    stage = f"load-{side}"
    with job.heartbeat(spec.target_identity(), get_settings().lock_ttl, claim=stage, token=token) as beat:
        started = time.perf_counter()
        show_progress(job, runner, stage, len(job.loads()), 2)
        partitioned = job.partitions(side)
        if partitioned is not None:  # a delivery again after the partitions were enqueued: never clear them
            _enqueue_partitions(job, runner, side, len(partitioned["keys"]))
            return
        adapter = spec.build_adapter(side)
        partitions = adapter.partitions()
        store = job.fresh_store(side)
        if partitions is not None:
            keys = check_partitions(adapter, partitions)
            job.save_partitions(side, keys, time.time())
            logger.info("Load partitioned", partitions=len(keys))
            if not keys:  # nothing to load: the side is empty
                _record_side(job, delivery, side, 0, 0.0)
            _enqueue_partitions(job, runner, side, len(keys))
            return
        adapter.store = store
        store.adapter = adapter
        adapter.load()
        flush = getattr(store, "flush", None)
        if flush is not None:
            flush()
        seconds = time.perf_counter() - started
        count = store.count()
        if beat.claim_lost.is_set():  # another delivery may be loading this store now: its load counts
            raise ClaimLost(f"the {side} load", claim_wait())
    if job.report() is not None:
        return  # the job ended while this side loaded: its records are the finish's, and final
    _record_side(job, delivery, side, count, seconds)


def _record_side(job: JobState, delivery: Delivery, side: str, count: int, seconds: float, **extra: Any) -> None:
    stage = f"load-{side}"
    job.record_time(stage, seconds)
    job.record_worker(stage, delivery.hostname)
    job.record_load(side, {"objects": count, "seconds": seconds, "worker": delivery.hostname, **extra})
    logger.info("Loaded", objects=count, seconds=round(seconds, 3), **extra)


def _enqueue_partitions(job: JobState, runner: Runner, side: str, count: int) -> None:
    done = job.partitions_done(side)
    for index in range(count):
        if index not in done:
            runner.enqueue("part", job.job_id, side, index)


def part(job: JobState, runner: Runner, delivery: Delivery, side: str, index: int) -> None:
    """Load one partition of a side; the last of the side's partitions to end records the side as loaded."""
    stage = f"load-{side}"
    if ended_or_stopped(job, runner):
        return
    with failing(job, runner, delivery, f"{stage} partition {index}"):
        partitioned = job.partitions(side)
        if partitioned is None or not isinstance(index, int) or not 0 <= index < len(partitioned["keys"]):
            logger.error("Partition message names no partition of its job's load", side=side, partition=index)
            return
        total = len(partitioned["keys"])
        if index not in job.partitions_done(side):
            step_key = f"load-{side}-{index}"
            with claimed(job, step_key, "part", [side, index], f"partition {index} of the {side} load") as token:
                if index not in job.partitions_done(side):
                    key = partitioned["keys"][index]
                    _load_partition(job, delivery, spec_of(job), side, index, key, step_key, token)
        if job.report() is not None:
            return
        done = len(job.partitions_done(side))
        show_progress(job, runner, stage, done, total)
        if done < total:
            return
        if job.loads().get(side) is None:  # the results are read once, by the partition that ends the side
            results = job.partition_results(side)
            objects = sum(int(result.get("objects", 0)) for result in results.values())
            wall = max(float(result.get("ended", 0.0)) for result in results.values()) - float(partitioned["started"])
            hosts = sorted({str(result.get("worker", "")) for result in results.values()})
            _record_side(job, delivery, side, objects, max(0.0, wall), partitions=total, workers=hosts)
        side_loaded(job, runner, stage)


def _load_partition(
    job: JobState, delivery: Delivery, spec: JobSpec, side: str, index: int, key: Any, step_key: str, token: str
) -> None:
    with job.heartbeat(spec.target_identity(), get_settings().lock_ttl, claim=step_key, token=token) as beat:
        started = time.perf_counter()
        store = job.partition_store(side, index)  # what an earlier delivery of this partition wrote is gone
        counter: Optional[Any] = getattr(store, "count_partition", None)
        before = 0 if counter is not None else store.count()
        adapter = spec.build_adapter(side)
        adapter.store = store
        store.adapter = adapter
        adapter.load_partition(key)
        flush = getattr(store, "flush", None)
        if flush is not None:
            flush()
        count = counter() if counter is not None else store.count() - before
        seconds = time.perf_counter() - started
        if beat.claim_lost.is_set():
            raise ClaimLost(f"partition {index} of the {side} load", claim_wait())
    if job.report() is not None:
        return
    job.record_partition(
        side, index, {"objects": count, "seconds": seconds, "ended": time.time(), "worker": delivery.hostname}
    )
    logger.info("Partition loaded", side=side, partition=index, objects=count, seconds=round(seconds, 3))
