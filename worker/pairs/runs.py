"""Incremental runs of a sync pair: load only what changed into the pair's kept stores, compare only that.

A job that names a ``pair`` keeps both sides' stores between its runs (``worker.state.pairs``). Its start
decides what this run is (``decide``): a **full** one (the first, one asked for with ``full``, one after a full
run that did not complete, one every ``SHARDSYNC_PAIR_FULL_EVERY`` jobs or ``SHARDSYNC_PAIR_FULL_AGE`` seconds,
or one whose source cannot list its changes) loads both sides whole into the kept stores and compares
everything, as any job; a **changes** run asks the source adapter for what changed since its last good cursor
(``Adapter.load_changes``), merges that into the kept source store, does the same on the target when it can
list its changes, and otherwise checks the target's kept state where this run looks (``verify``); then it
compares only the paths that changed (``pruned``) and applies as any job.

What a run looks at is a *tree of paths* (kept with the job, ``save_pair_step``): the top-level roots it
touches and, per object on a path, the children to follow (``None``: all of them, for a new object, a deleted
one, or a subtree found drifted). Both sides are cut to that tree before the diff, so a child that neither
side changed is never read, and the diff is exactly the one of these paths in a diff of everything.

Why merging twice is harmless: the tree is saved before the merge writes (a delivery again joins its tree to
the saved one, so a child deleted by the first delivery's merge stays on the path), an upsert writes the same
object again, and a delete of what is gone is nothing. Cursors move only at the finish of a successful job.
"""

from __future__ import annotations

import time
from typing import Any, Dict, Iterable, List, Mapping, Optional, Tuple

import structlog

from core.adapter import Adapter
from core.scope import Scope
from core.store import BaseStore
from core.store.local import LocalStore
from worker.adapters.registry import get_adapter
from worker.connection import reaching_redis, redis_client
from worker.errors import InvalidJob, describe
from worker.job.report import iso
from worker.job.spec import JobSpec
from worker.pairs.paths import (
    Key,
    apply_merge,
    attach,
    node_key,
    path_digests,
    plan_merge,
    pruned_store,
    replace_subtree,
    union_trees,
)
from worker.settings import get_settings
from worker.state.base import JobState, pack, unpack
from worker.state.pairs import MemoryPairs, RedisPairs
from worker.state.redis import RedisJobState
from worker.targets.timeout import time_limit

logger = structlog.get_logger("shardsync.worker")


# ----------------------------------------------------------------------------------------------------
# what this run is
# ----------------------------------------------------------------------------------------------------


def can_list_changes(adapter_name: str) -> bool:
    """Whether an adapter class implements the change hooks (both ``changes_cursor`` and ``load_changes``)."""
    cls = get_adapter(adapter_name)
    return cls.changes_cursor is not Adapter.changes_cursor and cls.load_changes is not Adapter.load_changes


def run_mode(job: JobState) -> Optional[str]:
    """``full`` or ``changes`` for a run of a pair (once its start decided), None for any other job."""
    run = job.pair_step("run") if job.pair_name() else None
    return run.get("mode") if run else None


def decide(job: JobState, spec: JobSpec) -> Dict[str, Any]:
    """Decide (once: a start delivered again keeps it) whether this run of the pair is full or of changes.

    A full run marks the pair ``loading`` before any store is emptied: should it not complete, the next run is
    full too.

    Raises:
        InvalidJob: if the pair was kept for another identity (other adapters, kwargs, flags or scope).
    """
    name = str(spec.pair)
    decided = job.pair_step("run")
    if decided:
        return decided
    pairs = job.pairs()
    record = pairs.record(name)
    identity = unpack(pack(spec.pair_identity()))
    if record is not None and record.get("identity") != identity:
        kept = record.get("identity") if isinstance(record.get("identity"), dict) else {}
        differ = [field for field in identity if kept.get(field) != identity[field]]  # type: ignore[union-attr]
        raise InvalidJob(
            f"pair {name!r} is kept for another sync ({_describe_identity(kept)}): this job's "
            f"{', '.join(differ) or 'identity'} differ. Name another pair, or drop it first: shardsync forget {name}"
        )
    settings = get_settings()
    now = job.now()
    reason = ""
    if spec.full:
        reason = "asked for (full)"
    elif record is None:
        reason = "the pair's first run (or its kept state expired or was forgotten)"
        if isinstance(pairs, MemoryPairs):
            reason += "; the embedded runner keeps a pair in its own process only"
    elif record.get("state") != "warm":
        reason = "the pair's last full run did not complete"
    elif not can_list_changes(spec.source) or (record.get("cursors") or {}).get("source") is None:
        reason = f"the source adapter {spec.source!r} cannot list its changes (no changes_cursor/load_changes)"
    elif int(record.get("runs", 0)) + 1 >= settings.pair_full_every:
        reason = f"every {settings.pair_full_every} runs (SHARDSYNC_PAIR_FULL_EVERY)"
    elif settings.pair_full_age and now - float(record.get("full_at", 0)) >= settings.pair_full_age:
        reason = f"the last full reconcile is older than {settings.pair_full_age} s (SHARDSYNC_PAIR_FULL_AGE)"
    run = {"mode": "full" if reason else "changes", "reason": reason or "the pair's kept state is warm"}
    if run["mode"] == "full":
        kept = dict(record or {})
        kept.update(identity=identity, state="loading", job=job.job_id, cursors={}, running=job.job_id)
        kept.setdefault("runs", 0)
        kept.setdefault("full_at", 0.0)
        pairs.save(name, kept)
    else:
        run["since"] = (record or {}).get("cursors", {})
        run["runs"] = int((record or {}).get("runs", 0))
        pairs.save(name, {**(record or {}), "running": job.job_id})  # ``forget`` refuses while it runs
    job.save_pair_step("run", run)
    logger.info("Pair run", pair=name, mode=run["mode"], reason=run["reason"])
    return run


def _describe_identity(identity: Any) -> str:
    if not isinstance(identity, dict):
        return "unknown"
    scope = identity.get("scope")
    return f"{identity.get('source')} -> {identity.get('target')}" + (f", scope {scope}" if scope else "")


def keep_cursor(job: JobState, side: str, adapter: Adapter) -> None:
    """Before a full load of a side: its cursor now (changes from here on are listed by the next run)."""
    if job.pair_step(side) is None:
        job.save_pair_step(side, {"cursor": _checked_cursor(adapter), "full": True})


def _checked_cursor(adapter: Adapter) -> Any:
    cursor = adapter.changes_cursor()
    try:
        pack(cursor)
    except Exception as err:  # noqa: BLE001 - named in the message
        raise InvalidJob(
            f"{type(adapter).__name__}.changes_cursor() must return plain data (str, int, float, bool, None, "
            f"lists and dicts of them), not {type(cursor).__name__}: {describe(err)}"
        ) from None
    return cursor


# ----------------------------------------------------------------------------------------------------
# a side's changes, merged into the kept store
# ----------------------------------------------------------------------------------------------------


def load_side_changes(job: JobState, spec: JobSpec, side: str, standing: Any) -> Dict[str, Any]:
    """Load one side's changes (or, for a target that cannot list them, verify it) into the pair's store.

    Returns the side's load result: the kept store's objects, the changes and what they touched.
    """
    started = time.perf_counter()
    adapter = spec.build_adapter(side)
    kept = job.open_store(side, lazy=True)
    attach(spec.build_adapter(side), kept)
    since = (job.pair_step("run") or {}).get("since", {}).get(side)
    if side == "target" and (since is None or not can_list_changes(spec.target)):
        tree = _saved_tree(job, "source")
        live, drifted = verify(spec, adapter, kept, tree, standing)
        # Saved before the kept subtrees are replaced: a delivery again, finding no drift left, keeps this.
        earlier = job.pair_step("target") or {}
        drifted = list(dict.fromkeys(list(earlier.get("drifted", [])) + drifted))
        tree = union_trees(job.pair_step("target-tree"), tree)
        job.save_pair_step("target-tree", tree)
        job.save_pair_step("target", {"cursor": None, "drifted": drifted, "paths": len(tree["roots"])})
        standing()
        with kept.engine_session():
            for root in drifted:
                replace_subtree(kept, live, tuple(root.split(" ", 1)))  # type: ignore[arg-type]
        return {"objects": kept.count(), "seconds": time.perf_counter() - started, "verified": len(tree["roots"]),
                "drifted": len(drifted)}  # fmt: skip
    cursor = _checked_cursor(adapter)
    scratch = LocalStore()
    attach(adapter, scratch)
    with time_limit(get_settings().load_timeout, f"{type(adapter).__name__}.load_changes()"):
        deleted = adapter.load_changes(since)
    standing()
    gone = _deleted_keys(adapter, deleted)
    with kept.engine_session():
        tree, writes = plan_merge(kept, scratch, gone, list(adapter.top_level), type(adapter).__name__,
                                  echoes=side == "target")  # fmt: skip
        earlier = job.pair_step(f"{side}-tree")
        tree = union_trees(earlier, tree) if earlier else tree
        job.save_pair_step(f"{side}-tree", tree)
        job.save_pair_step(side, {"cursor": cursor, "changes": len(writes), "deleted": len(gone),
                                  "paths": len(tree["roots"])})  # fmt: skip
        standing()
        apply_merge(kept, writes, gone)
    return {"objects": kept.count(), "seconds": time.perf_counter() - started, "changes": len(writes),
            "deleted": len(gone)}  # fmt: skip


def _deleted_keys(adapter: Adapter, deleted: Any) -> List[Key]:
    """The deleted objects ``load_changes`` returned, checked: ``{type: [unique ids]}`` of the adapter's types."""
    name = f"{type(adapter).__name__}.load_changes()"
    if deleted is None:
        return []
    if not isinstance(deleted, Mapping):
        raise InvalidJob(f"{name} must return the deleted unique ids by type ({{type: [ids]}}) or None")
    found: List[Key] = []
    for modelname, uids in deleted.items():
        if not isinstance(getattr(adapter, str(modelname), None), type):
            raise InvalidJob(f"{name} returned deletes of {modelname!r}, which is not a model of the adapter")
        if isinstance(uids, (str, bytes)) or not isinstance(uids, Iterable):
            raise InvalidJob(f"{name}: the deleted {modelname} must be a list of unique ids, not {uids!r}")
        found.extend((str(modelname), str(uid)) for uid in uids)
    return list(dict.fromkeys(found))


def _saved_tree(job: JobState, side: str) -> Dict[str, Any]:
    return job.pair_step(f"{side}-tree") or {"roots": [], "nodes": {}, "gone": {}}


def run_tree(job: JobState) -> Dict[str, Any]:
    """The paths this run compares: both sides' changes (and the target's drifted subtrees, whole)."""
    return union_trees(_saved_tree(job, "source"), _saved_tree(job, "target"))


# ----------------------------------------------------------------------------------------------------
# a target that cannot list its changes: its kept state checked where the run looks
# ----------------------------------------------------------------------------------------------------


def verify(
    spec: JobSpec, adapter: Adapter, kept: BaseStore, tree: Dict[str, Any], standing: Any
) -> Tuple[BaseStore, List[str]]:
    """Load the touched top-level subtrees from the live target and compare the paths with the kept ones.

    A root whose path differs (someone wrote to the target behind the pair's back, or a failed run's write
    landed without its record) is to have its kept subtree replaced by the live one, and is compared whole (the
    tree is changed in place). Reads only; returns the live store and the drifted roots as ``"type uid"``.
    """
    roots: List[Key] = [(str(key[0]), str(key[1])) for key in tree["roots"]]
    live = LocalStore()
    attach(adapter, live)
    if not roots:
        return live, []
    scope = spec.scope_obj or Scope()
    wanted = Scope(types=scope.types, ids=[uid for _, uid in roots], where=scope.where, children=scope.children)
    with time_limit(get_settings().load_timeout, f"{type(adapter).__name__}.load_scoped()"):
        adapter.load_scoped(wanted)
    standing()
    drifted: List[str] = []
    with kept.engine_session():
        kept_paths, live_paths = path_digests(kept, roots, tree), path_digests(live, roots, tree)
    for root in roots:
        if kept_paths[root] != live_paths[root]:
            drifted.append(f"{root[0]} {root[1]}")
            tree["nodes"][node_key(*root)] = None
    if drifted:
        logger.warning("Target drifted behind the pair's back: kept state replaced", subtrees=drifted[:20],
                       count=len(drifted))  # fmt: skip
    return live, drifted


def pruned_adapters(job: JobState, spec: JobSpec) -> Tuple[Adapter, Adapter]:
    """Source and target adapters attached to the run's paths cut out of both kept stores."""
    tree = run_tree(job)
    pair = []
    for side in ("source", "target"):
        kept = job.open_store(side, lazy=True)
        attach(spec.build_adapter(side), kept)  # its models, to read the kept objects by type name
        adapter = spec.build_adapter(side)
        store = pruned_store(kept, tree, adapter)
        adapter.attach_store(store)
        pair.append(adapter)
    return pair[0], pair[1]


# ----------------------------------------------------------------------------------------------------
# the end of a run
# ----------------------------------------------------------------------------------------------------


def pair_part(job: JobState, spec: JobSpec, status: str) -> Dict[str, Any]:
    """The report's ``pair`` part: the run's kind and why, the changes per side, the drifted subtrees."""
    run = job.pair_step("run") or {}
    part: Dict[str, Any] = {"name": spec.pair, "run": run.get("mode"), "reason": run.get("reason")}
    for side in ("source", "target"):
        found = job.pair_step(side) or {}
        part[side] = {field: found[field] for field in ("changes", "deleted") if field in found}
        if found.get("drifted") is not None:
            part[side]["drifted"] = list(found["drifted"])[:100]
            part[side]["drifted_count"] = len(found["drifted"])
    part["paths"] = (job.pair_step("source") or {}).get("paths") if run.get("mode") == "changes" else None
    part["cursors_advanced"] = status == "success" and bool(run)
    return part


def advance_pair(job: JobState, spec: JobSpec) -> None:
    """After a successful run's report is saved: the pair is warm, with this run's cursors.

    Only here do cursors move: a run that failed (or whose finish died before this) leaves the next run to
    list its changes again from the last good cursors, and a full run that did not get here leaves it full.
    """
    name = str(spec.pair)
    run = job.pair_step("run")
    if not run:
        return
    pairs = job.pairs()
    record = pairs.record(name) or {}
    full = run.get("mode") == "full"
    record.update(
        identity=unpack(pack(spec.pair_identity())), state="warm", job=job.job_id,
        cursors={side: (job.pair_step(side) or {}).get("cursor") for side in ("source", "target")},
        runs=0 if full else int(record.get("runs", 0)) + 1,
        full_at=job.now() if full else float(record.get("full_at", 0.0)),
    )  # fmt: skip
    pairs.save(name, record)


def forget_pair(name: str) -> bool:
    """Drop an incremental pair's kept stores and cursors: its next job is a full one. Whether it was kept.

    Raises:
        InvalidJob: if a job of the pair is running (cancel it, or wait for its end, first).
        RedisUnavailable: if Redis does not answer.
    """
    with reaching_redis(f"forget pair {name!r}"):
        client = redis_client()
        pairs = RedisPairs(client)
        running = (pairs.record(name) or {}).get("running")
        if running:
            state = RedisJobState(str(running), client)
            if state.spec_data() is not None and state.report() is None:
                raise InvalidJob(f"job {running} of pair {name!r} is running: cancel it or wait for its end first")
        return pairs.forget(name)


def list_pairs() -> List[Dict[str, Any]]:
    """The incremental pairs this deployment keeps: name, what they sync, state, last run, cursors, objects.

    Raises:
        RedisUnavailable: if Redis does not answer.
    """
    with reaching_redis("list the kept pairs"):
        pairs = RedisPairs(redis_client())
        found = []
        for name in pairs.names():
            record = pairs.record(name)
            if record is None:
                continue  # forgotten or expired meanwhile
            identity = record.get("identity") or {}
            found.append({
                "pair": name, "source": identity.get("source"), "target": identity.get("target"),
                "scope": identity.get("scope"), "state": record.get("state"), "last_job": record.get("job"),
                "running": record.get("running"), "runs_since_full": int(record.get("runs", 0)),
                "full_at": iso(record.get("full_at")) if record.get("full_at") else None,
                "cursors": record.get("cursors") or {}, "objects": pairs.objects(name),
            })  # fmt: skip
        return found
