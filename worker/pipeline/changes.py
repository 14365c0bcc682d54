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
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Set, Tuple

import structlog

from core.adapter import Adapter
from core.exceptions import ObjectNotFound
from core.model import DiffSyncModel
from core.scope import Scope
from core.store import BaseStore
from core.store.local import LocalStore
from worker.adapters.registry import get_adapter
from worker.errors import InvalidJob, describe
from worker.job.spec import JobSpec
from worker.settings import get_settings
from worker.state.base import JobState, pack, unpack
from worker.targets.timeout import time_limit

logger = structlog.get_logger("shardsync.worker")

Key = Tuple[str, str]
Filter = Optional[Dict[str, List[str]]]
"""The children of one object a run follows, by child type; None: all of them (the whole subtree)."""

_SEP = "\x1f"


def _key(modelname: str, uid: str) -> str:
    return f"{modelname}{_SEP}{uid}"


# ----------------------------------------------------------------------------------------------------
# what this run is
# ----------------------------------------------------------------------------------------------------


def can_list_changes(adapter_name: str) -> bool:
    """Whether an adapter class implements the change hooks (both ``changes_cursor`` and ``load_changes``)."""
    cls = get_adapter(adapter_name)
    return cls.changes_cursor is not Adapter.changes_cursor and cls.load_changes is not Adapter.load_changes


def run_mode(job: JobState) -> Optional[str]:
    """``full`` or ``changes`` for a run of a pair (once its start decided), None for any other job."""
    run = job.pair_steps().get("run") if job.pair_name() else None
    return run.get("mode") if run else None


def decide(job: JobState, spec: JobSpec) -> Dict[str, Any]:
    """Decide (once: a start delivered again keeps it) whether this run of the pair is full or of changes.

    A full run marks the pair ``loading`` before any store is emptied: should it not complete, the next run is
    full too.

    Raises:
        InvalidJob: if the pair was kept for another identity (other adapters, kwargs, flags or scope).
    """
    name = str(spec.pair)
    decided = job.pair_steps().get("run")
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
    if side not in job.pair_steps():
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
    _attach(spec.build_adapter(side), kept)
    since = job.pair_steps()["run"].get("since", {}).get(side)
    if side == "target" and (since is None or not can_list_changes(spec.target)):
        tree = _saved_tree(job, "source")
        drifted = verify(job, spec, adapter, kept, tree, standing)
        job.save_pair_step("target", {"cursor": None, "drifted": drifted, "tree": tree})
        return {"objects": kept.count(), "seconds": time.perf_counter() - started, "verified": len(tree["roots"]),
                "drifted": len(drifted)}  # fmt: skip
    cursor = _checked_cursor(adapter)
    scratch = LocalStore()
    _attach(adapter, scratch)
    with time_limit(get_settings().load_timeout, f"{type(adapter).__name__}.load_changes()"):
        deleted = adapter.load_changes(since)
    standing()
    gone = _deleted_keys(adapter, deleted)
    with kept.engine_session():
        tree, writes = plan_merge(kept, scratch, gone, list(adapter.top_level), type(adapter).__name__)
        earlier = job.pair_steps().get(side, {}).get("tree")
        tree = union_trees(earlier, tree) if earlier else tree
        job.save_pair_step(side, {"cursor": cursor, "tree": tree, "changes": len(writes), "deleted": len(gone)})
        standing()
        apply_merge(kept, writes, gone)
    return {"objects": kept.count(), "seconds": time.perf_counter() - started, "changes": len(writes),
            "deleted": len(gone)}  # fmt: skip


def _attach(adapter: Adapter, store: BaseStore) -> None:
    adapter.store = store
    store.adapter = adapter


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


def _read(store: BaseStore, wanted: Iterable[Key]) -> Dict[Key, DiffSyncModel]:
    """The objects of the store among ``wanted`` (one read per type in a lazy Redis session)."""
    by_type: Dict[str, List[str]] = {}
    for modelname, uid in wanted:
        by_type.setdefault(modelname, []).append(uid)
    found: Dict[Key, DiffSyncModel] = {}
    for modelname, uids in by_type.items():
        prefetch = getattr(store, "prefetch", None)
        if prefetch is not None:
            prefetch(modelname, uids)
        for uid in uids:
            try:
                found[(modelname, uid)] = store.get(model=modelname, identifier=uid)
            except ObjectNotFound:
                continue
    return found


def plan_merge(
    kept: BaseStore, scratch: BaseStore, gone: Sequence[Key], top_level: Sequence[str], adapter_name: str
) -> Tuple[Dict[str, Any], List[Tuple[DiffSyncModel, bool]]]:
    """The tree of paths a side's changes touch, and the writes that merge them (object, whether it is new).

    Reads only: the kept store is written by ``apply_merge`` once the tree is saved.

    Raises:
        InvalidJob: if the changes hold an object of a child type without its parent (its path is unknown).
    """
    loaded: Dict[Key, DiffSyncModel] = {}
    for modelname in sorted(scratch.get_all_model_names()):
        for obj in scratch.get_all(model=modelname):
            loaded[(modelname, obj.get_unique_id())] = obj
    listed: Set[Key] = set()
    for obj in loaded.values():
        for child_type, field in obj.get_children_mapping().items():
            listed.update((child_type, uid) for uid in getattr(obj, field) or [])
    roots = [key for key in loaded if key not in listed]
    for modelname, uid in roots:
        if modelname not in top_level:
            raise InvalidJob(
                f"{adapter_name}.load_changes() loaded {modelname} {uid} without its parent: load a changed "
                "object with its ancestors (each parent listing it among its children), so that its path is known"
            )
    gone_set = set(gone)
    before = _read(kept, list(loaded) + [key for key in listed if key not in loaded])
    nodes: Dict[str, Filter] = {}
    writes: List[Tuple[DiffSyncModel, bool]] = []
    for key, obj in loaded.items():
        old = before.get(key)
        follow: Dict[str, List[str]] = {}
        for child_type, field in obj.get_children_mapping().items():
            new_ids = [uid for uid in getattr(obj, field) or [] if (child_type, uid) not in gone_set]
            old_ids = list(getattr(old, field) or []) if old is not None else []
            # A child listed here that neither the changes nor the kept store hold would dangle: left out.
            new_ids = [uid for uid in new_ids if (child_type, uid) in loaded or (child_type, uid) in before]
            lost = [uid for uid in old_ids if (child_type, uid) in gone_set]
            follow[child_type] = list(dict.fromkeys(new_ids + lost))
            merged = old_ids + [uid for uid in new_ids if uid not in set(old_ids)]
            setattr(obj, field, [uid for uid in merged if (child_type, uid) not in gone_set])
        nodes[_key(*key)] = follow if old is not None else None  # a new object: all of it
        writes.append((obj, old is None))
    for key in gone:
        nodes[_key(*key)] = None  # whatever the other side holds below it goes with it
    tops = [list(key) for key in roots] + [list(key) for key in gone if key[0] in top_level]
    deleted: Dict[str, List[str]] = {}
    for modelname, uid in gone:
        deleted.setdefault(modelname, []).append(uid)
    # The deleted objects are followed wherever a path's object lists them, on either side: after a failed
    # run, the kept source no longer lists a child it merged away, while the target still holds it.
    tree = {"roots": [list(key) for key in dict.fromkeys(tuple(key) for key in tops)], "nodes": nodes,
            "gone": deleted}  # fmt: skip
    return tree, writes


def apply_merge(kept: BaseStore, writes: Sequence[Tuple[DiffSyncModel, bool]], gone: Sequence[Key]) -> None:
    """Write the merged objects into the kept store and remove the deleted ones with what they hold."""
    for obj in _read(kept, gone).values():
        try:
            kept.remove(obj=obj, remove_children=True)
        except ObjectNotFound:
            continue  # removed with its deleted parent
    for obj, new in writes:
        obj.adapter = kept.adapter
        if new:
            kept.add(obj=obj)
        else:
            kept.update(obj=obj)
    flush = getattr(kept, "flush", None)
    if flush is not None:
        flush()


def union_trees(first: Optional[Dict[str, Any]], second: Optional[Dict[str, Any]]) -> Dict[str, Any]:
    """Both trees' paths: roots joined, and per object the children either follows (all, if either does)."""
    if not first:
        return second or {"roots": [], "nodes": {}, "gone": {}}
    if not second:
        return first
    roots = list(dict.fromkeys(tuple(key) for key in first["roots"] + second["roots"]))
    gone = {name: list(uids) for name, uids in first.get("gone", {}).items()}
    for modelname, uids in second.get("gone", {}).items():
        gone[modelname] = list(dict.fromkeys(gone.get(modelname, []) + list(uids)))
    nodes: Dict[str, Filter] = dict(first["nodes"])
    for key, follow in second["nodes"].items():
        if key not in nodes:
            nodes[key] = follow
        elif nodes[key] is None or follow is None:
            nodes[key] = None
        else:
            mine = dict(nodes[key])  # type: ignore[arg-type]
            for child_type, uids in follow.items():
                mine[child_type] = list(dict.fromkeys(mine.get(child_type, []) + list(uids)))
            nodes[key] = mine
    return {"roots": [list(key) for key in roots], "nodes": nodes, "gone": gone}


def _followed(uids: Sequence[str], follow: Filter, child_type: str, gone: Mapping[str, Set[str]]) -> List[str]:
    """The children of a path's object that a run follows: all (``follow`` None), or those named or deleted."""
    if follow is None:
        return list(uids)
    wanted = set(follow.get(child_type, ()))
    deleted = gone.get(child_type, set())
    return [uid for uid in uids if uid in wanted or uid in deleted]


def _gone_sets(tree: Dict[str, Any]) -> Dict[str, Set[str]]:
    return {modelname: set(uids) for modelname, uids in tree.get("gone", {}).items()}


def _saved_tree(job: JobState, side: str) -> Dict[str, Any]:
    return job.pair_steps().get(side, {}).get("tree") or {"roots": [], "nodes": {}, "gone": {}}


def run_tree(job: JobState) -> Dict[str, Any]:
    """The paths this run compares: both sides' changes (and the target's drifted subtrees, whole)."""
    return union_trees(_saved_tree(job, "source"), _saved_tree(job, "target"))


# ----------------------------------------------------------------------------------------------------
# a target that cannot list its changes: its kept state checked where the run looks
# ----------------------------------------------------------------------------------------------------


def verify(
    job: JobState, spec: JobSpec, adapter: Adapter, kept: BaseStore, tree: Dict[str, Any], standing: Any
) -> List[str]:
    """Load the touched top-level subtrees from the live target and compare the paths with the kept ones.

    A root whose path differs (someone wrote to the target behind the pair's back, or a failed run's write
    landed without its record) has its kept subtree replaced by the live one and is compared whole. Returns
    the drifted roots as ``"type uid"``; the tree is changed in place.
    """
    roots = [tuple(key) for key in tree["roots"]]
    if not roots:
        return []
    scope = spec.scope_obj or Scope()
    live = LocalStore()
    _attach(adapter, live)
    wanted = Scope(types=scope.types, ids=[uid for _, uid in roots], where=scope.where, children=scope.children)
    with time_limit(get_settings().load_timeout, f"{type(adapter).__name__}.load_scoped()"):
        adapter.load_scoped(wanted)
    standing()
    drifted: List[str] = []
    with kept.engine_session():
        for root in roots:
            if path_digest(kept, root, tree) != path_digest(live, root, tree):
                drifted.append(f"{root[0]} {root[1]}")
                replace_subtree(kept, live, root)
                tree["nodes"][_key(*root)] = None
        flush = getattr(kept, "flush", None)
        if flush is not None:
            flush()
    if drifted:
        logger.warning("Target drifted behind the pair's back: kept state replaced", subtrees=drifted[:20],
                       count=len(drifted))  # fmt: skip
    return drifted


def path_digest(store: BaseStore, root: Tuple[str, str], tree: Dict[str, Any]) -> List[Any]:
    """What a store holds along a tree's paths from one root: objects, attributes and whole children lists."""
    nodes, gone = tree["nodes"], _gone_sets(tree)
    seen: List[Any] = []
    level: List[Tuple[Key, bool]] = [((root[0], root[1]), False)]
    while level:
        found = _read(store, [key for key, _ in level])
        following: List[Tuple[Key, bool]] = []
        for key, whole in level:
            obj = found.get(key)
            if obj is None:
                seen.append([key[0], key[1], None])
                continue
            lists = {child_type: sorted(getattr(obj, field) or []) for child_type, field in
                     obj.get_children_mapping().items()}  # fmt: skip
            seen.append([key[0], key[1], pack(obj.get_attrs()), lists])
            follow = None if whole else nodes.get(_key(*key))
            for child_type, uids in lists.items():
                chosen = _followed(uids, follow, child_type, gone)
                following.extend(((child_type, uid), whole or follow is None) for uid in chosen)
        level = following
    return seen


def replace_subtree(kept: BaseStore, live: BaseStore, root: Tuple[str, str]) -> None:
    """The kept subtree of ``root`` replaced by the live one (removed, if the live target has none)."""
    old = _read(kept, [root]).get(root)
    if old is not None:
        kept.remove(obj=old, remove_children=True)
    level = [root]
    while level:
        found = _read(live, level)
        level = []
        for obj in found.values():
            copy = obj.model_copy()
            copy.adapter = kept.adapter
            kept.add(obj=copy)
            for child_type, field in obj.get_children_mapping().items():
                level.extend((child_type, uid) for uid in getattr(obj, field) or [])


# ----------------------------------------------------------------------------------------------------
# the diff of the changed paths
# ----------------------------------------------------------------------------------------------------


def pruned_store(kept: BaseStore, tree: Dict[str, Any], adapter: Adapter) -> LocalStore:
    """A store of copies of the kept objects on the tree's paths, each listing only the children followed."""
    out = LocalStore()
    _attach(adapter, out)
    nodes, gone = tree["nodes"], _gone_sets(tree)
    level: List[Tuple[Key, bool]] = [((str(key[0]), str(key[1])), False) for key in tree["roots"]]
    with kept.engine_session():
        while level:
            found = _read(kept, [key for key, _ in level])
            following: List[Tuple[Key, bool]] = []
            for key, whole in level:
                obj = found.get(key)
                if obj is None:
                    continue
                copy = obj.model_copy()
                follow = None if whole else nodes.get(_key(*key))
                for child_type, field in obj.get_children_mapping().items():
                    uids = _followed(list(getattr(obj, field) or []), follow, child_type, gone)
                    setattr(copy, field, uids)
                    following.extend(((child_type, uid), whole or follow is None) for uid in uids)
                copy.adapter = adapter
                out.add(obj=copy)
            level = following
    return out


def pruned_adapters(job: JobState, spec: JobSpec) -> Tuple[Adapter, Adapter]:
    """Source and target adapters attached to the run's paths cut out of both kept stores."""
    tree = run_tree(job)
    pair = []
    for side in ("source", "target"):
        kept = job.open_store(side, lazy=True)
        _attach(spec.build_adapter(side), kept)  # its models, to read the kept objects by type name
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
    steps = job.pair_steps()
    run = steps.get("run", {})
    part: Dict[str, Any] = {"name": spec.pair, "run": run.get("mode"), "reason": run.get("reason")}
    for side in ("source", "target"):
        found = steps.get(side, {})
        part[side] = {field: found[field] for field in ("changes", "deleted") if field in found}
        if found.get("drifted") is not None:
            part[side]["drifted"] = list(found["drifted"])[:100]
            part[side]["drifted_count"] = len(found["drifted"])
    part["paths"] = len(run_tree(job)["roots"]) if run.get("mode") == "changes" else None
    part["cursors_advanced"] = status == "success" and bool(run)
    return part


def advance_pair(job: JobState, spec: JobSpec) -> None:
    """After a successful run's report is saved: the pair is warm, with this run's cursors.

    Only here do cursors move: a run that failed (or whose finish died before this) leaves the next run to
    list its changes again from the last good cursors, and a full run that did not get here leaves it full.
    """
    name = str(spec.pair)
    steps = job.pair_steps()
    run = steps.get("run")
    if not run:
        return
    pairs = job.pairs()
    record = pairs.record(name) or {}
    full = run.get("mode") == "full"
    record.update(
        identity=unpack(pack(spec.pair_identity())), state="warm", job=job.job_id,
        cursors={side: steps.get(side, {}).get("cursor") for side in ("source", "target")},
        runs=0 if full else int(record.get("runs", 0)) + 1,
        full_at=job.now() if full else float(record.get("full_at", 0.0)),
    )  # fmt: skip
    pairs.save(name, record)
