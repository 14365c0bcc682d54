"""The distributed diff: ranges of top-level elements diffed as tasks of their own, then joined into one plan.

A diff of everything walks each top-level type in ``top_level`` order: the source's elements in store order
(each with its target counterpart), then the target's elements the source lacks. The diff step cuts that
walk into ranges of at most ``SHARDSYNC_DIFF_RANGE`` top-level elements of one side (``set_up``); each range
is a task (``diff_part``) that reads only its elements and their subtrees, level by level, diffs them
(``DiffSyncDiffer.diff_maps``), and keeps the changed subtrees' records, its counts and, per kept subtree,
its type and number of operations. The last range to end enqueues the join, which copies the records into
the job's diff in range order, adds the counts into the summary and packs the shards from the operation
counts: the elements, their order, the summary and the shards are those of one diff of everything, and no
process ever holds more than one range of both sides.
"""

from __future__ import annotations

import time
from typing import Any, Dict, List, Optional

import structlog

from core.adapter import Adapter
from core.diff import Diff
from core.diff_codec import DiffCodec
from core.differ import DiffSyncDiffer
from core.planner import count_operations, pack_subtrees
from core.utils import intersection, symmetric_difference
from worker.planning import after_plan, element_flags, save_plan, shard_size_for
from worker.review import fingerprint
from worker.runner import (
    ClaimLost,
    Delivery,
    Runner,
    attach_adapters,
    claim_wait,
    claimed,
    ended_or_stopped,
    failing,
    show_progress,
    spec_of,
)
from worker.settings import get_settings
from worker.spec import JobSpec
from worker.state.base import JobState

logger = structlog.get_logger("shardsync.worker")

_COUNTS = ("create", "update", "delete", "no-change", "skip")

MIN_RANGE = 50
"""Fewest top-level elements in a range cut smaller for the live slots (each range has a fixed cost)."""


def set_up(job: JobState, spec: JobSpec) -> Dict[str, Any]:
    """Cut the diff of the job's two stores into ranges and keep them with the job; returns them."""
    source, target = attach_adapters(job, spec, lazy=True, reuse=True)
    size = (spec.diff_range or get_settings().diff_range) if job.distributed else 0  # one process: one range each
    slots = job.live_slots() if job.distributed and spec.diff_range is None else None
    parts: List[Dict[str, Any]] = []
    for modelname in intersection(target.top_level, source.top_level):
        for side, adapter in (("source", source), ("target", target)):
            count = adapter.store.count(model=modelname)
            step = size or max(count, 1)
            if slots:  # at least one range per live slot, so that every slot diffs (never below MIN_RANGE)
                step = min(step, max(MIN_RANGE, -(-count // slots)))
            for first in range(0, count, step):
                parts.append({"type": modelname, "side": side, "first": first, "end": min(count, first + step)})
    skipped = 0  # types top-level on one side only: counted, not diffed (as a diff of everything does)
    for modelname in symmetric_difference(target.top_level, source.top_level):
        skipped += (target if modelname in target.top_level else source).store.count(model=modelname)
    ranges = {"parts": parts, "skipped": skipped, "started": time.time()}
    job.save_diff_parts(ranges)
    logger.info("Diff in ranges", ranges=len(parts), size=size or None)
    return ranges


def enqueue_parts(job: JobState, runner: Runner) -> None:
    """Enqueue every range without a result; the join when none is left (a diff delivered again, too)."""
    ranges = job.diff_parts() or {"parts": []}
    done = job.diff_parts_done()
    total = len(ranges["parts"])
    if len(done) >= total:
        runner.enqueue("join", job.job_id)
        return
    show_progress(job, runner, "diff", len(done), total)
    for index in range(total):
        if index not in done:
            runner.enqueue("diffpart", job.job_id, index)


def diff_part(job: JobState, runner: Runner, delivery: Delivery, index: int) -> None:
    """Diff one range; the last range to end enqueues the join."""
    if ended_or_stopped(job, runner):
        return
    with failing(job, runner, delivery, "diff"):
        ranges = job.diff_parts()
        if ranges is None or not isinstance(index, int) or not 0 <= index < len(ranges["parts"]):
            logger.error("Diff range message names no range of its job's diff", range=index)
            return
        total = len(ranges["parts"])
        if index not in job.diff_parts_done():
            with claimed(job, f"diff-{index}", "diffpart", [index], f"range {index} of the diff") as token:
                if index not in job.diff_parts_done():  # not diffed by a duplicate that ended meanwhile
                    _diff_range(job, delivery, spec_of(job), index, ranges["parts"][index], token)
        if job.report() is not None:
            return
        done = len(job.diff_parts_done())
        show_progress(job, runner, "diff", done, total)
        if done >= total:
            runner.enqueue("join", job.job_id)


def _read_range(source: Adapter, target: Adapter, part: Dict[str, Any]) -> tuple:
    """The range's ``{uid: object}`` maps of both sides, their subtrees read into the stores' sessions."""
    modelname, first, end = part["type"], int(part["first"]), int(part["end"])
    if part["side"] == "source":
        src_map = source.store.fetch_subtrees(modelname, source.store.uids_in_order(modelname, first, end))
        present = target.store.existing_uids(modelname, list(src_map))
        return src_map, target.store.fetch_subtrees(modelname, [uid for uid in src_map if uid in present])
    uids = target.store.uids_in_order(modelname, first, end)
    in_source = source.store.existing_uids(modelname, uids)
    return {}, target.store.fetch_subtrees(modelname, [uid for uid in uids if uid not in in_source])


def _diff_range(job: JobState, delivery: Delivery, spec: JobSpec, index: int, part: Dict[str, Any], token: str) -> None:
    step_key = f"diff-{index}"
    with job.heartbeat(spec.target_identity(), get_settings().lock_ttl, claim=step_key, token=token) as beat:
        started = time.perf_counter()
        source, target = attach_adapters(job, spec, lazy=True, reuse=True)
        differ = DiffSyncDiffer(source, target, spec.diffsync_flags)
        with source.store.session(), target.store.session():
            src_map, dst_map = _read_range(source, target, part)
            elements = differ.diff_maps(src_map, dst_map)
            counted = Diff()
            for element in elements:
                counted.add(element)
            counted.models_processed = differ.models_processed
            kept = [element for element in elements if element.has_diffs(include_children=True)]
            codec = DiffCodec(source, target)
            records = [codec.encode(element, changed_only=True) for element in kept]
            operations = [
                [element.type, count_operations(element, lambda el: element_flags(target, el))]
                for element in kept
            ]
            fingerprints: Dict[str, str] = {}
            if spec.dry_run:  # a plan: fingerprint what it touches (by position in the range), for an apply
                kept_diff = Diff()
                for element in kept:
                    kept_diff.add(element)
                fingerprints = fingerprint(kept_diff, target)
        if beat.claim_lost.is_set():
            raise ClaimLost(f"range {index} of the diff", claim_wait())
    summary = counted.summary()
    result = {
        "summary": {name: int(summary.get(name, 0)) for name in _COUNTS},
        "operations": operations,
        "fingerprints": fingerprints,
        "seconds": time.perf_counter() - started,
        "worker": delivery.hostname,
        "elements": len(elements),
    }
    job.save_diff_part(index, records, result)
    logger.info("Diff range done", range=index, elements=len(elements), kept=len(kept))


def join(job: JobState, runner: Runner, delivery: Delivery) -> None:
    """Join the ranges into the job's diff, summary and plan, then start the first wave."""
    if ended_or_stopped(job, runner):
        return
    with failing(job, runner, delivery, "diff"):
        spec = spec_of(job)
        try:
            saved: Optional[Dict[str, Any]] = job.plan_head()
        except LookupError:
            saved = None
        fresh = saved is None
        if saved is None:
            with claimed(job, "join", "join", [], "the join of the diff") as token:
                saved = _join(job, runner, delivery, spec, token)
        after_plan(job, runner, spec, saved, fresh)


def _join(job: JobState, runner: Runner, delivery: Delivery, spec: JobSpec, token: str) -> Dict[str, Any]:
    with job.heartbeat(spec.target_identity(), get_settings().lock_ttl, claim="join", token=token):
        ranges = job.diff_parts() or {"parts": [], "skipped": 0, "started": time.time()}
        results = job.diff_part_results()
        missing = [index for index in range(len(ranges["parts"])) if index not in results]
        if missing:
            raise RuntimeError(f"the join found ranges {missing[:10]} of the diff without a result")
        summary = dict.fromkeys(_COUNTS, 0)
        summary["skip"] = int(ranges.get("skipped", 0))
        subtrees = []
        fingerprints: Dict[str, str] = {}
        job.start_diff()
        offset = 0
        for index in range(len(ranges["parts"])):
            result = results[index]
            for name in _COUNTS:
                summary[name] += int(result["summary"].get(name, 0))
            copied = job.join_diff_part(index, offset)
            if copied != len(result["operations"]):
                raise RuntimeError(f"range {index} of the diff kept {copied} records for {len(result['operations'])}")
            subtrees.extend(
                (offset + local, modelname, count) for local, (modelname, count) in enumerate(result["operations"])
            )
            fingerprints.update({str(offset + int(local)): value for local, value in result["fingerprints"].items()})
            offset += copied
        job.save_summary(summary)
        if spec.dry_run:
            job.save_fingerprints(fingerprints)
        job.record_time("diff", time.time() - float(ranges.get("started", time.time())))
        hosts = sorted({str(result.get("worker", "")) for result in results.values()})
        job.record_worker("diff", ", ".join(hosts) if hosts else delivery.hostname)
        structlog.contextvars.bind_contextvars(stage="plan")
        started = time.perf_counter()
        show_progress(job, runner, "plan", 0, 1)
        slots = job.live_slots() if spec.shard_size is None else None
        packed, waves = pack_subtrees(
            [item for item in subtrees if item[2]], shard_size_for(spec, slots), spec.top_level_barrier
        )
        return save_plan(job, runner, packed, waves, slots, started)
