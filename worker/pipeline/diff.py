"""The diff steps: the two loaded stores diffed in ranges of top-level elements, then joined into one plan.

A diff of everything walks each top-level type in ``top_level`` order: the source's elements in store order
(each with its target counterpart), then the target's elements the source lacks. The diff step cuts that walk
into ranges of at most ``SHARDSYNC_DIFF_RANGE`` top-level elements of one side (``set_up``); each range is a step
of its own (``diff_range``) that reads only its elements and their subtrees, level by level, diffs them
(``DiffSyncDiffer.diff_maps``), and keeps the changed subtrees' records, its counts and, per kept subtree, its
type and number of operations. The last range to end hands over to the join, which copies the records into the
job's diff in range order, adds the counts into the summary and packs the shards from the operation counts:
the elements, their order, the summary and the shards are those of one diff of everything, and no process
ever holds more than one range of both sides.

Two kinds of job are diffed by the diff step itself, in one task: an apply of a plan (its diff is the plan's,
copied, once the target subtrees it touches are checked unchanged), and a job whose adapters override
``diff_from`` or ``diff_to`` (whatever those do is theirs to do on the whole).
"""

from __future__ import annotations

import time
from typing import Any, Dict, List, Optional, Sequence, Tuple

import structlog

from core.adapter import Adapter
from core.diff import Diff
from core.diff_codec import DiffCodec
from core.differ import DiffSyncDiffer
from core.planner import count_operations, pack_subtrees, plan_sync
from core.utils import intersection, symmetric_difference
from worker.adapters.registry import get_adapter
from worker.job.report import changed_part, rebuild_diff
from worker.job.review import copy_diff, fingerprint, plan_job, refusal
from worker.job.spec import JobSpec
from worker.pairs.runs import pruned_adapters, run_mode
from worker.pipeline.context import DONE, StepContext, Stop
from worker.pipeline.plan import after_plan, element_flags, save_plan, shard_size_for
from worker.settings import get_settings
from worker.state.base import JobState

logger = structlog.get_logger("shardsync.worker")

_COUNTS = ("create", "update", "delete", "no-change", "skip")

MIN_RANGE = 50
"""Fewest top-level elements in a range cut smaller for the live slots (each range has a fixed cost)."""


def planned(job: JobState, *_: Any) -> bool:
    """Whether the job's plan is saved (then its diff is complete: the diff and the join are done)."""
    try:
        job.plan_head()
    except LookupError:
        return False
    return True


def in_one_task(spec: JobSpec) -> bool:
    """Whether the job's diff runs in one task: an apply of a plan, or adapters with a diff of their own."""
    if spec.apply_of:
        return True
    return (
        getattr(get_adapter(spec.target), "diff_from", None) is not Adapter.diff_from
        or getattr(get_adapter(spec.source), "diff_to", None) is not Adapter.diff_to
    )


# ----------------------------------------------------------------------------------------------------
# the diff step
# ----------------------------------------------------------------------------------------------------


def diff(ctx: StepContext) -> Optional[Dict[str, Any]]:
    """Set the ranges up and hand over to them (None), or diff and plan in this task (returns the saved plan)."""
    job, spec = ctx.job, ctx.spec
    changes = run_mode(job) == "changes"  # a pair's run of changes: only the changed paths, in this task
    if not changes and not in_one_task(spec):
        ctx.progress("diff", 0, 0)
        if job.ranges() is None:  # else delivered again: the ranges stand, those without a result go
            set_up(ctx)
        hand_over_ranges(ctx)
        return None
    started = time.perf_counter()
    source, target = pruned_adapters(job, spec) if changes else ctx.adapters()
    last = [0.0]

    def on_progress(stage: str, current: int, total: int) -> None:
        now = time.monotonic()
        if now - last[0] >= 0.5 or current == total:
            last[0] = now
            ctx.progress("diff", current, total)

    ctx.progress("diff", 0, 0)
    codec = DiffCodec(source, target)
    if spec.apply_of:  # apply a plan: its diff, if the target subtrees it touches are as it saw them
        plan_state = plan_job(job, spec.apply_of)
        reason = refusal(plan_state, target, spec.apply_of)
        if reason is not None:
            raise Stop(reason)
        the_diff = rebuild_diff(copy_diff(plan_state, job), codec, source.name, target.name, job.summary())
    else:
        # Only the subtrees with a change are kept and planned; the unchanged ones live on in the summary.
        scoped = {"scope": spec.scope_obj} if spec.scope is not None else {}  # an own diff_from may not take it
        the_diff = changed_part(target.diff_from(source, flags=spec.diffsync_flags, callback=on_progress, **scoped))
        records = [codec.encode(element, changed_only=True) for element in the_diff.get_children()]
        job.save_diff(records, the_diff.summary())
        if spec.dry_run:  # a plan: fingerprint what it touches, for an apply to check
            job.save_fingerprints(fingerprint(the_diff, target))
    job.record_time("diff", time.perf_counter() - started)
    job.record_worker("diff", ctx.hostname)

    structlog.contextvars.bind_contextvars(stage="plan")
    started = time.perf_counter()
    ctx.progress("plan", 0, 1)
    slots = ctx.live_slots() if spec.shard_size is None else None
    plan = plan_sync(
        the_diff,
        shard_size=shard_size_for(spec, slots),
        barrier=spec.top_level_barrier,
        model_flags=lambda element: element_flags(target, element),
    )
    packed = [(shard.wave, shard.type, shard.roots, len(shard.operations)) for shard in plan.shards]
    return save_plan(ctx, packed, plan.waves, slots, started)


def planned_then(ctx: StepContext, saved: Any) -> None:
    """After the diff or the join: the checks and the first wave, once a plan is saved (by this delivery or not)."""
    if saved is DONE:  # delivered again after the plan was saved: only what comes next, again
        after_plan(ctx, ctx.job.plan_head(), fresh=False)
    elif saved is not None:
        after_plan(ctx, saved, fresh=True)


def set_up(ctx: StepContext) -> Dict[str, Any]:
    """Cut the diff of the job's two stores into ranges and keep them with the job; returns them."""
    job, spec = ctx.job, ctx.spec
    source, target = ctx.adapters(lazy=True, reuse=True)
    size = (spec.diff_range or get_settings().diff_range) if job.distributed else 0  # one process: one range each
    slots = ctx.live_slots() if job.distributed and spec.diff_range is None else None
    parts: List[Dict[str, Any]] = []
    scope = spec.scope_obj
    for modelname in intersection(target.top_level, source.top_level):
        if scope is not None and not scope.has_type(modelname):
            continue  # out of scope: neither diffed nor counted
        if scope is not None and scope.ids is not None:  # the scope names its objects: read only those
            step = size or max(len(scope.ids), 1)
            for first in range(0, len(scope.ids), step):
                parts.append({"type": modelname, "side": "ids", "first": first, "end": first + step})
            continue
        for side, adapter in (("source", source), ("target", target)):
            count = adapter.store.count(model=modelname)
            step = size or max(count, 1)
            if slots:  # at least one range per live slot, so that every slot diffs (never below MIN_RANGE)
                step = min(step, max(MIN_RANGE, -(-count // slots)))
            for first in range(0, count, step):
                parts.append({"type": modelname, "side": side, "first": first, "end": min(count, first + step)})
    skipped = 0  # types top-level on one side only: counted, not diffed (as a diff of everything does)
    for modelname in symmetric_difference(target.top_level, source.top_level):
        if scope is None:
            skipped += (target if modelname in target.top_level else source).store.count(model=modelname)
    ranges = {"parts": parts, "skipped": skipped, "started": time.time()}
    job.save_ranges(ranges)
    logger.info("Diff in ranges", ranges=len(parts), size=size or None)
    return ranges


def hand_over_ranges(ctx: StepContext) -> None:
    """Hand over to every range without a result; to the join when none is left (a diff delivered again, too)."""
    job = ctx.job
    ranges = job.ranges() or {"parts": []}
    done = job.ranges_done()
    total = len(ranges["parts"])
    if len(done) >= total:
        ctx.hand_over("join")
        return
    ctx.progress("diff", len(done), total)
    for index in range(total):
        if index not in done:
            ctx.hand_over("range", index)


# ----------------------------------------------------------------------------------------------------
# a range of the diff
# ----------------------------------------------------------------------------------------------------


def stray_range(job: JobState, index: Any) -> Optional[str]:
    """Why a range message names no range of its job's diff (then nothing runs), or None."""
    ranges = job.ranges()
    if ranges is None or not isinstance(index, int) or not 0 <= index < len(ranges["parts"]):
        return f"Diff range message names no range of its job's diff: range {index!r}"
    return None


def range_done(job: JobState, index: int) -> bool:
    """Whether the range is diffed (its result recorded)."""
    return index in job.ranges_done()


def _read_range(
    source: Adapter, target: Adapter, part: Dict[str, Any], ids: Sequence[str] = ()
) -> Tuple[Dict[str, Any], Dict[str, Any]]:
    """The range's ``{uid: object}`` maps of both sides, their subtrees read into the stores' sessions.

    A range of a scope's ids (side ``ids``) reads those of them each side has: the others are never read.
    """
    modelname, first, end = part["type"], int(part["first"]), int(part["end"])
    if part["side"] == "ids":
        wanted = list(ids[first:end])
        in_source = source.store.existing_uids(modelname, wanted)
        in_target = target.store.existing_uids(modelname, wanted)
        src_map = source.store.fetch_subtrees(modelname, [uid for uid in wanted if uid in in_source])
        return src_map, target.store.fetch_subtrees(modelname, [uid for uid in wanted if uid in in_target])
    if part["side"] == "source":
        src_map = source.store.fetch_subtrees(modelname, source.store.uids_in_order(modelname, first, end))
        present = target.store.existing_uids(modelname, list(src_map))
        return src_map, target.store.fetch_subtrees(modelname, [uid for uid in src_map if uid in present])
    uids = target.store.uids_in_order(modelname, first, end)
    in_source = source.store.existing_uids(modelname, uids)
    return {}, target.store.fetch_subtrees(modelname, [uid for uid in uids if uid not in in_source])


def diff_range(ctx: StepContext, index: int) -> Tuple[List[Any], Dict[str, Any]]:
    """Diff one range; returns its kept records and its result (counts, operations per kept subtree...)."""
    spec = ctx.spec
    part = ctx.job.ranges()["parts"][index]  # type: ignore[index]
    started = time.perf_counter()
    source, target = ctx.adapters(lazy=True, reuse=True)
    scope = spec.scope_obj
    differ = DiffSyncDiffer(source, target, spec.diffsync_flags, scope=scope)
    with source.store.engine_session(), target.store.engine_session():
        src_map, dst_map = _read_range(source, target, part, scope.ids or () if scope is not None else ())
        elements = differ.diff_maps(src_map, dst_map, part["type"])
        counted = Diff()
        for element in elements:
            counted.add(element)
        counted.models_processed = differ.models_processed
        kept = [element for element in elements if element.has_diffs(include_children=True)]
        codec = DiffCodec(source, target)
        records = [codec.encode(element, changed_only=True) for element in kept]
        operations = [
            [element.type, count_operations(element, lambda el: element_flags(target, el))] for element in kept
        ]
        fingerprints: Dict[str, str] = {}
        if spec.dry_run:  # a plan: fingerprint what it touches (by position in the range), for an apply
            kept_diff = Diff()
            for element in kept:
                kept_diff.add(element)
            fingerprints = fingerprint(kept_diff, target)
    summary = counted.summary()
    result = {
        "summary": {name: int(summary.get(name, 0)) for name in _COUNTS},
        "operations": operations,
        "fingerprints": fingerprints,
        "seconds": time.perf_counter() - started,
        "worker": ctx.hostname,
        "elements": len(elements),
    }
    return records, result


def record_range(ctx: StepContext, diffed: Tuple[List[Any], Dict[str, Any]], index: int) -> None:
    """Keep one range's records and result (one transaction: two deliveries never interleave their records)."""
    records, result = diffed
    ctx.job.save_range(index, records, result)
    logger.info("Diff range done", range=index, elements=result["elements"], kept=len(records))


def range_diffed(ctx: StepContext, outcome: Any, index: int) -> None:
    """After a range: show the diff's progress; the last range hands over to the join."""
    job = ctx.job
    total = len((job.ranges() or {"parts": []})["parts"])
    done = len(job.ranges_done())
    ctx.progress("diff", done, total)
    if done >= total:
        ctx.hand_over("join")


# ----------------------------------------------------------------------------------------------------
# the join
# ----------------------------------------------------------------------------------------------------


def join(ctx: StepContext) -> Dict[str, Any]:
    """Join the ranges into the job's diff, summary and plan; returns the saved plan."""
    job, spec = ctx.job, ctx.spec
    ranges = job.ranges() or {"parts": [], "skipped": 0, "started": time.time()}
    results = job.range_results()
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
        copied = job.join_range(index, offset)
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
    job.record_worker("diff", ", ".join(hosts) if hosts else ctx.hostname)
    structlog.contextvars.bind_contextvars(stage="plan")
    started = time.perf_counter()
    ctx.progress("plan", 0, 1)
    slots = ctx.live_slots() if spec.shard_size is None else None
    packed, waves = pack_subtrees(
        [item for item in subtrees if item[2]], shard_size_for(spec, slots), spec.top_level_barrier
    )
    return save_plan(ctx, packed, waves, slots, started)
