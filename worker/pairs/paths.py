"""The tree of paths an incremental run compares, and the kept stores read and written along it.

A run's changes touch a few objects of a big dataset; a *tree of paths* says where they are: the top-level
roots touched (``roots``), per object on a path the children followed (``nodes``: a list per child type; None
for all of them, as for a new object, a deleted one or a subtree found drifted), and the deleted objects
(``gone``), followed wherever an object on a path lists them, on either side. Cutting both kept stores down to
the tree (``pruned_store``) leaves exactly what a diff of everything would compare on those paths.

``plan_merge`` works the tree out and the writes that merge a side's changes into its kept store, reading only;
``apply_merge`` writes them. Kept apart so that a step can save the tree before it writes (a delivery again
then joins its tree to the saved one: ``union_trees``).
"""

from __future__ import annotations

from typing import Any, Dict, Iterable, Iterator, List, Mapping, Optional, Sequence, Set, Tuple

from core.adapter import Adapter
from core.exceptions import ObjectAlreadyExists, ObjectNotFound
from core.model import DiffSyncModel
from core.store import BaseStore
from core.store.local import LocalStore
from worker.errors import InvalidJob
from worker.state.base import pack

Key = Tuple[str, str]
Filter = Optional[Dict[str, List[str]]]
"""The children of one object a run follows, by child type; None: all of them (the whole subtree)."""

_SEP = "\x1f"


def node_key(modelname: str, uid: str) -> str:
    """How a tree names one object (type and unique id)."""
    return f"{modelname}{_SEP}{uid}"


def attach(adapter: Adapter, store: BaseStore) -> None:
    """Make the store the adapter's (no ``on_attach``: only its models are needed to read it)."""
    adapter.store = store
    store.adapter = adapter


def read_objects(store: BaseStore, wanted: Iterable[Key]) -> Dict[Key, DiffSyncModel]:
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


_NONE: Set[str] = frozenset()  # type: ignore[assignment]


def _by_type(keys: Sequence[Key]) -> Dict[str, Set[str]]:
    found: Dict[str, Set[str]] = {}
    for modelname, uid in keys:
        found.setdefault(modelname, set()).add(uid)
    return found


def plan_merge(
    kept: BaseStore,
    scratch: BaseStore,
    gone: Sequence[Key],
    top_level: Sequence[str],
    adapter_name: str,
    echoes: bool = False,
) -> Tuple[Dict[str, Any], List[Tuple[DiffSyncModel, bool]]]:
    """The tree of paths a side's changes touch, and the writes that merge them (object, whether it is new).

    Reads only: the kept store is written by ``apply_merge`` once the tree is saved. ``echoes``: a listed change
    that leaves an object as the kept store holds it is no change (a target's feed lists the run's own writes,
    which its kept store holds already); it stays on the tree only as the ancestor of a change. Not for the
    source: after a failed run, its kept store holds changes the target has not been given yet.

    Raises:
        InvalidJob: if the changes hold an object of a child type without its parent (its path is unknown).
    """
    loaded: Dict[Key, DiffSyncModel] = {}
    for modelname in sorted(scratch.get_all_model_names()):
        for obj in scratch.get_all(model=modelname):
            loaded[(modelname, obj.get_unique_id())] = obj
    parent_of: Dict[Key, Key] = {}
    for key, obj in loaded.items():
        for child_type, field in obj.get_children_mapping().items():
            parent_of.update(((child_type, uid), key) for uid in getattr(obj, field) or [])
    for modelname, uid in (key for key in loaded if key not in parent_of):
        if modelname not in top_level:
            raise InvalidJob(
                f"{adapter_name}.load_changes() loaded {modelname} {uid} without its parent: load a changed "
                "object with its ancestors (each parent listing it among its children), so that its path is known"
            )
    gone_set = set(gone)
    before = read_objects(kept, list(dict.fromkeys([*loaded, *parent_of, *gone])))
    gone_of, held_of = _by_type(gone), _by_type([*loaded, *before])  # uids by type: no tuple per look-up
    changed: List[Key] = []
    lost_from: Dict[Key, Key] = {}  # a deleted child -> the object that listed it in the kept store
    follow_of: Dict[Key, Dict[str, List[str]]] = {}
    writes: List[Tuple[DiffSyncModel, bool]] = []
    for key, obj in loaded.items():
        old = before.get(key)
        differs = old is None or old.get_attrs() != obj.get_attrs()
        follow: Dict[str, List[str]] = {}
        for child_type, field in obj.get_children_mapping().items():
            old_ids = list(getattr(old, field) or []) if old is not None else []
            deleted, held = gone_of.get(child_type, _NONE), held_of.get(child_type, _NONE)
            # A child listed here that neither the changes nor the kept store hold would dangle: left out.
            new_ids = [uid for uid in getattr(obj, field) or [] if uid in held and uid not in deleted]
            lost = [uid for uid in old_ids if uid in deleted] if deleted else []
            lost_from.update(((child_type, uid), key) for uid in lost)
            follow[child_type] = list(dict.fromkeys(new_ids + lost)) if lost else new_ids
            merged = [uid for uid in old_ids if uid not in deleted] if lost else old_ids
            if new_ids:
                old_set = set(old_ids)
                merged = merged + [uid for uid in new_ids if uid not in old_set]
            differs = differs or merged != old_ids
            setattr(obj, field, merged)
        follow_of[key] = follow
        if differs:
            writes.append((obj, old is None))
        if differs or not echoes:
            changed.append(key)
    removed = [key for key in gone if not echoes or key in before]  # an echo of a delete: gone already
    on_tree: Set[Key] = set(removed)
    for key in changed + [lost_from[key] for key in removed if key in lost_from]:
        while key not in on_tree:  # the object and its ancestors, up to its root
            on_tree.add(key)
            if key not in parent_of:
                break
            key = parent_of[key]
    nodes: Dict[str, Filter] = {}
    for key in on_tree:
        if key in gone_set or before.get(key) is None:
            nodes[node_key(*key)] = None  # new or deleted: all of it, whatever the other side holds below it
        else:
            nodes[node_key(*key)] = {
                child_type: [uid for uid in uids if (child_type, uid) in on_tree]
                for child_type, uids in follow_of[key].items()
            }
    roots = [key for key in on_tree if key[0] in top_level and key not in parent_of]
    deleted: Dict[str, List[str]] = {}
    for modelname, uid in removed:
        deleted.setdefault(modelname, []).append(uid)
    # The deleted objects are followed wherever a path's object lists them, on either side: after a failed
    # run, the kept source no longer lists a child it merged away, while the target still holds it.
    tree = {"roots": sorted([list(key) for key in roots]), "nodes": nodes, "gone": deleted}
    return tree, writes


def apply_merge(kept: BaseStore, writes: Sequence[Tuple[DiffSyncModel, bool]], gone: Sequence[Key]) -> None:
    """Write the merged objects into the kept store and remove the deleted ones with what they hold."""
    for obj in read_objects(kept, gone).values():
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


def followed(uids: Sequence[str], follow: Filter, child_type: str, gone: Mapping[str, Set[str]]) -> List[str]:
    """The children of a path's object that a run follows: all (``follow`` None), or those named or deleted."""
    if follow is None:
        return list(uids)
    wanted = set(follow.get(child_type, ()))
    deleted = gone.get(child_type, set())
    return [uid for uid in uids if uid in wanted or uid in deleted]


def gone_sets(tree: Dict[str, Any]) -> Dict[str, Set[str]]:
    """The tree's deleted objects, as sets by type."""
    return {modelname: set(uids) for modelname, uids in tree.get("gone", {}).items()}


def walk_paths(
    store: BaseStore, roots: Sequence[Key], tree: Dict[str, Any]
) -> Iterator[Tuple[Key, Key, Optional[DiffSyncModel], Dict[str, List[str]]]]:
    """Every object along the tree's paths from these roots, with the children followed below it.

    Yields its key, its root, it (None if the store lacks it) and the children followed by type (none for a
    leaf type). All roots are walked together, level by level: one read per type and level from a Redis store.
    """
    nodes, gone = tree["nodes"], gone_sets(tree)
    level: List[Tuple[Key, Key, bool]] = [(root, root, False) for root in roots]  # (object, its root, whole)
    while level:
        found = read_objects(store, [key for key, _, _ in level])
        following: List[Tuple[Key, Key, bool]] = []
        for key, root, whole in level:
            obj = found.get(key)
            chosen: Dict[str, List[str]] = {}
            if obj is not None:
                follow = None if whole else nodes.get(node_key(*key))
                for child_type, field in obj.get_children_mapping().items():
                    chosen[child_type] = followed(getattr(obj, field) or [], follow, child_type, gone)  # a new list
                    following.extend(((child_type, uid), root, whole or follow is None) for uid in chosen[child_type])
            yield key, root, obj, chosen
        level = following


def path_digests(store: BaseStore, roots: Sequence[Key], tree: Dict[str, Any]) -> Dict[Key, List[Any]]:
    """What a store holds along a tree's paths, per root: objects, attributes and whole children lists.

    In unique-id order, whatever order the store keeps children in.
    """
    seen: Dict[Key, List[Any]] = {root: [] for root in roots}
    for key, root, obj, _ in walk_paths(store, roots, tree):
        if obj is None:
            seen[root].append([key[0], key[1], None])
            continue
        lists = {child_type: sorted(getattr(obj, field) or []) for child_type, field in
                 obj.get_children_mapping().items()}  # fmt: skip
        seen[root].append([key[0], key[1], pack(obj.get_attrs()), lists])
    return {root: sorted(entries, key=lambda entry: (entry[0], entry[1])) for root, entries in seen.items()}


def replace_subtree(kept: BaseStore, live: BaseStore, root: Tuple[str, str]) -> None:
    """The kept subtree of ``root`` replaced by the live one (removed, if the live target has none)."""
    old = read_objects(kept, [root]).get(root)
    if old is not None:
        kept.remove(obj=old, remove_children=True)
    level = [root]
    while level:
        found = read_objects(live, level)
        level = []
        for obj in found.values():
            copy = obj.model_copy()
            copy.adapter = kept.adapter
            try:
                kept.add(obj=copy)
            except ObjectAlreadyExists:  # held elsewhere in the kept store (moved, in the live target): replaced
                kept.update(obj=copy)
            for child_type, field in obj.get_children_mapping().items():
                level.extend((child_type, uid) for uid in getattr(obj, field) or [])


# ----------------------------------------------------------------------------------------------------
# the diff of the changed paths
# ----------------------------------------------------------------------------------------------------


def pruned_store(kept: BaseStore, tree: Dict[str, Any], adapter: Adapter) -> LocalStore:
    """A store of copies of the kept objects on the tree's paths, each listing only the children followed."""
    out = LocalStore()
    attach(adapter, out)
    roots = [(str(key[0]), str(key[1])) for key in tree["roots"]]
    with kept.engine_session():
        for _, _, obj, chosen in walk_paths(kept, roots, tree):
            if obj is None:
                continue
            if not chosen:  # nothing to cut: the kept object itself (a diff only reads it)
                out.update(obj=obj)
                continue
            copy = obj.model_copy()
            for child_type, field in obj.get_children_mapping().items():
                setattr(copy, field, chosen[child_type])
            copy.adapter = adapter
            out.update(obj=copy)  # a copy, once per path: nothing to check an add for
    return out
