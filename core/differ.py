"""The differ: walks two adapters' trees together and builds the Diff, as diffsync's DiffSyncDiffer does.

Same traversal, same counting for the progress callback, same log events and same errors as the reference;
the difference is in the per-object work: unique ids are taken from the stores' own indexes, attributes are
compared as tuples read straight from the objects, and unchanged objects get a lazy element (see core.diff).
"""

from __future__ import annotations

from collections.abc import Iterable as ABCIterable
from collections.abc import Mapping as ABCMapping
from operator import itemgetter
from typing import TYPE_CHECKING, Any, Callable, Dict, Iterable, List, Mapping, Optional, Tuple, Type

import structlog

from core._gc import paused_gc
from core._log import level_enabled
from core.diff import EPOCH as _EPOCH
from core.diff import UNSET, Diff, DiffElement
from core.enum import DiffSyncActions, DiffSyncFlags, DiffSyncModelFlags
from core.exceptions import ObjectNotFound
from core.scope import Scope
from core.store import reads_through_index
from core.utils import intersection, symmetric_difference

if TYPE_CHECKING:
    from core.adapter import Adapter
    from core.model import DiffSyncModel

_CREATE = DiffSyncActions.CREATE
_UPDATE = DiffSyncActions.UPDATE
_DELETE = DiffSyncActions.DELETE
_MODEL_NONE = DiffSyncModelFlags.NONE
_M_IGNORE = DiffSyncModelFlags.IGNORE.value
_M_SKIP_SRC = DiffSyncModelFlags.SKIP_UNMATCHED_SRC.value
_M_SKIP_DST = DiffSyncModelFlags.SKIP_UNMATCHED_DST.value
_F_SKIP_SRC = DiffSyncFlags.SKIP_UNMATCHED_SRC.value
_F_SKIP_DST = DiffSyncFlags.SKIP_UNMATCHED_DST.value
_new_element = DiffElement.__new__


class PairPlan:
    """How to compare an object of one model class with an object of another (usually its counterpart).

    Attributes:
        common_names: attribute names present on both sides, in the destination's order.
        fast: attributes can be read straight from the objects' ``__dict__`` on both sides.
        getter: reads the common attributes of one object's ``__dict__`` as one value (or tuple).
        ids_getter: reads the identifier values, when both classes name the same identifiers (else None).
        check_shortname: shortnames may differ even when unique ids are equal, so they must be compared.
    """

    __slots__ = (
        "common_names",
        "fast",
        "getter",
        "ids_getter",
        "check_shortname",
        "type_mismatch",
        "children",
        "partial_children",
        "same_attrs",
        "src_copies",
        "dst_copies",
    )

    def __init__(self, src_cls: Type[DiffSyncModel], dst_cls: Type[DiffSyncModel]) -> None:
        from core.model import DiffSyncModel  # pylint: disable=import-outside-toplevel

        src_plan = src_cls._ss_plan
        dst_plan = dst_cls._ss_plan
        self.fast = bool(src_cls._ss_fast_attrs and dst_cls._ss_fast_attrs)
        src_names = set(src_plan.attr_names)
        self.common_names: Tuple[str, ...] = tuple(name for name in dst_plan.attr_names if name in src_names)
        # Unchanged elements keep one tuple of values for both sides: only possible with the same attributes.
        self.same_attrs = src_plan.attr_names == dst_plan.attr_names
        # Positions (in the compared tuple) of container values, and their copiers: an unchanged element keeps
        # copies of those, so that later in-place changes to the models do not show in the diff.
        src_copiers = src_plan.copiers
        dst_copiers = dst_plan.copiers
        self.src_copies = tuple(
            (index, src_copiers[name]) for index, name in enumerate(self.common_names) if name in src_copiers
        )
        self.dst_copies = tuple(
            (index, dst_copiers[name]) for index, name in enumerate(self.common_names) if name in dst_copiers
        )
        self.getter: Optional[Callable[[Dict[str, Any]], Any]] = (
            itemgetter(*self.common_names) if self.common_names else None
        )
        self.ids_getter: Optional[Callable[[Dict[str, Any]], Any]] = None
        if (
            src_cls._ss_fast_ids
            and dst_cls._ss_fast_ids
            and src_plan.id_names == dst_plan.id_names
            and src_plan.id_names
        ):
            self.ids_getter = itemgetter(*src_plan.id_names)
        base = DiffSyncModel
        self.check_shortname = not (
            not src_cls._shortname
            and not dst_cls._shortname
            and src_cls.get_shortname is base.get_shortname
            and dst_cls.get_shortname is base.get_shortname
            and src_cls.get_unique_id is base.get_unique_id
            and dst_cls.get_unique_id is base.get_unique_id
        )
        self.type_mismatch = src_cls.get_type() != dst_cls.get_type()
        src_mapping = src_cls.get_children_mapping()
        dst_mapping = dst_cls.get_children_mapping()
        # Child types both sides declare are diffed (with the source's field names, as the reference does);
        # the others are only counted.
        self.children = tuple((t, field) for t, field in src_mapping.items() if t in dst_mapping)
        self.partial_children = set(src_mapping) != set(dst_mapping)


class DiffSyncDiffer:
    """Computes the Diff between a source and a destination adapter (use ``Adapter.diff_from``)."""

    def __init__(
        self,
        src_diffsync: Adapter,
        dst_diffsync: Adapter,
        flags: DiffSyncFlags,
        diff_class: Type[Diff] = Diff,
        callback: Optional[Callable[[str, int, int], None]] = None,
        scope: Optional[Scope] = None,
    ) -> None:
        self.scope = scope if scope is not None and not scope.whole else None
        self._scoped_children: Dict[Tuple[Tuple[str, str], ...], Tuple[Tuple[str, str], ...]] = {}
        self.src_diffsync = src_diffsync
        self.dst_diffsync = dst_diffsync
        self.flags = flags
        self.logger = structlog.get_logger().new(src=src_diffsync, dst=dst_diffsync, flags=flags)
        self.diff_class = diff_class
        self.callback = callback
        self.diff: Optional[Diff] = None
        self.models_processed = 0
        with src_diffsync.store.engine_session(), dst_diffsync.store.engine_session():
            self.total_models = len(src_diffsync) + len(dst_diffsync)
        self._debug = level_enabled(self.logger, "debug")
        if self._debug:
            self.logger.debug(f"Diff calculation between these two datasets will involve {self.total_models} models")
        self._flags = flags.value
        self._plans: Dict[Tuple[type, type], PairPlan] = {}
        self._infos: Dict[type, ClassInfo] = {}
        self._src_indexes: Dict[str, Any] = {}
        self._dst_indexes: Dict[str, Any] = {}
        self._src_index_reads = reads_through_index(src_diffsync, "get_by_uids")
        self._dst_index_reads = reads_through_index(dst_diffsync, "get_by_uids")
        self._skipped = False
        self._plain_add = diff_class.add is Diff.add
        self._src_name = src_diffsync.name
        self._dst_name = dst_diffsync.name

    def incr_models_processed(self, delta: int = 1) -> None:
        """Count processed models and report progress to the callback."""
        if delta:
            self.models_processed += delta
            if self.callback:
                self.callback("diff", self.models_processed, self.total_models)

    def calculate_diffs(self) -> Diff:
        """Compute (once) and return the Diff between the source and destination adapters."""
        if self.diff is not None:
            return self.diff
        with self.src_diffsync.store.engine_session(), self.dst_diffsync.store.engine_session():
            return self._calculate()

    def _calculate(self) -> Diff:
        self.models_processed = 0
        self.logger.info("Beginning diff calculation")
        self.diff = self.diff_class()

        src = self.src_diffsync
        dst = self.dst_diffsync
        # Counted, not diffed: types that are top-level on one side only (their children are not counted).
        for skipped_type in symmetric_difference(dst.top_level, src.top_level):
            if skipped_type in dst.top_level:
                self.incr_models_processed(len(dst.get_all(skipped_type)))
            elif skipped_type in src.top_level:
                self.incr_models_processed(len(src.get_all(skipped_type)))

        scope = self.scope
        with paused_gc():
            for obj_type in intersection(dst.top_level, src.top_level):
                if scope is not None and not scope.has_type(obj_type):
                    continue  # outside the scope: neither compared nor counted
                src_map, src_len = _all_of_type(src, obj_type)
                dst_map, dst_len = _all_of_type(dst, obj_type)
                if scope is not None:
                    src_map, src_len = self.in_scope(obj_type, src_map)
                    dst_map, dst_len = self.in_scope(obj_type, dst_map)
                for diff_element in self._diff_maps(src_map, src_len, dst_map, dst_len):
                    self.diff.add(diff_element)

        self.logger.info("Diff calculation complete")
        self.diff.models_processed = self.models_processed
        self.diff.complete()
        return self.diff

    def diff_maps(
        self,
        src_map: Mapping[str, DiffSyncModel],
        dst_map: Mapping[str, DiffSyncModel],
        modelname: Optional[str] = None,
    ) -> List[DiffElement]:
        """Diff a slice of one top-level type: ``{uid: object}`` maps, source order first, then the rest.

        What a distributed diff runs per range of top-level elements, inside both stores' sessions; the
        elements of consecutive slices, joined, are those of one diff of everything, and ``models_processed``
        counts this differ's share. With a scope, ``modelname`` names the slice's type: only its objects in
        scope are diffed.
        """
        if self.scope is not None and modelname is not None:
            if not self.scope.has_type(modelname):
                return []
            src_map = self.in_scope(modelname, src_map)[0]
            dst_map = self.in_scope(modelname, dst_map)[0]
        with paused_gc():
            return self._diff_maps(src_map, len(src_map), dst_map, len(dst_map))

    def in_scope(self, modelname: str, objects: Mapping[str, DiffSyncModel]) -> Tuple[Mapping[str, DiffSyncModel], int]:
        """The top-level objects of one type that are in the scope, in their order, and how many."""
        scope = self.scope
        if scope is None or (scope.ids is None and not scope.where.get(modelname)):
            return objects, len(objects)
        has_top = scope.has_top
        kept = {uid: obj for uid, obj in objects.items() if has_top(modelname, uid, obj)}
        return kept, len(kept)

    def _children_in_scope(self, children: Tuple[Tuple[str, str], ...]) -> Tuple[Tuple[str, str], ...]:
        found = self._scoped_children.get(children)
        if found is None:
            has_child_type = self.scope.has_child_type  # type: ignore[union-attr]
            found = self._scoped_children[children] = tuple(pair for pair in children if has_child_type(pair[0]))
        return found

    def _holds_excluded_children(self, obj: DiffSyncModel) -> bool:
        """Whether a target object holds objects of an excluded child type, at any depth (a delete takes them)."""
        scope = self.scope
        if scope is None or scope.children is None:
            return False
        for modelname, fieldname in obj.get_children_mapping().items():
            uids = getattr(obj, fieldname)
            if not uids:
                continue
            if not scope.has_child_type(modelname):
                return True
            children, _ = self._children_of(False, modelname, uids)
            if any(self._holds_excluded_children(child) for child in children.values()):
                return True
        return False

    def diff_object_list(self, src: List[DiffSyncModel], dst: List[DiffSyncModel]) -> List[DiffElement]:
        """Diff two lists of objects of the same type, matching them by unique id.

        Raises:
            TypeError: if an argument is not iterable, or matched objects have different types.
            ValueError: if matched objects have different shortnames or identifiers.
        """
        if not (isinstance(src, ABCIterable) and isinstance(dst, ABCIterable)):
            raise TypeError(f"Type combination {type(src)}/{type(dst)} is not supported... for now")
        src_map = src if isinstance(src, ABCMapping) else {item.get_unique_id(): item for item in src}
        dst_map = dst if isinstance(dst, ABCMapping) else {item.get_unique_id(): item for item in dst}
        return self._diff_maps(src_map, len(src), dst_map, len(dst))

    def _diff_maps(
        self,
        src_map: Mapping[str, DiffSyncModel],
        src_len: int,
        dst_map: Mapping[str, DiffSyncModel],
        dst_len: int,
    ) -> List[DiffElement]:
        """Diff two ``{uid: object}`` maps: source order first, then objects only in the destination."""
        dst_get = dst_map.get
        pairs: List[Tuple[str, Optional[DiffSyncModel], Optional[DiffSyncModel]]] = [
            (uid, src_obj, dst_get(uid)) for uid, src_obj in src_map.items()
        ]
        if dst_map:
            pairs.extend([(uid, None, dst_obj) for uid, dst_obj in dst_map.items() if uid not in src_map])
        combined = len(pairs)
        extra = max(src_len - combined, 0) + max(dst_len - combined, 0)
        if extra:
            self.incr_models_processed(extra)

        self._validate_pairs(pairs)

        pair = self._diff_pair
        elements = [pair(uid, src_obj, dst_obj) for uid, src_obj, dst_obj in pairs]
        if self._skipped:
            elements = [element for element in elements if element is not None]
        return elements

    def _plan(self, src_cls: type, dst_cls: type) -> PairPlan:
        key = (src_cls, dst_cls)
        plan = self._plans.get(key)
        if plan is None:
            plan = self._plans[key] = PairPlan(src_cls, dst_cls)
        return plan

    def _validate_pairs(self, pairs: List[Tuple[str, Optional[DiffSyncModel], Optional[DiffSyncModel]]]) -> None:
        """Check matched objects are comparable: same type, shortname and identifiers (as the reference does)."""
        plans = self._plans
        last_src_cls: Any = None
        last_dst_cls: Any = None
        ids_getter: Any = None
        simple = False
        for _, src_obj, dst_obj in pairs:
            if src_obj is None or dst_obj is None:
                continue
            src_cls = src_obj.__class__
            dst_cls = dst_obj.__class__
            if src_cls is not last_src_cls or dst_cls is not last_dst_cls:
                # Objects of one list nearly always share their classes: look the plan up once per change.
                plan = plans.get((src_cls, dst_cls))
                if plan is None:
                    plan = self._plan(src_cls, dst_cls)
                last_src_cls, last_dst_cls = src_cls, dst_cls
                ids_getter = plan.ids_getter
                simple = not plan.type_mismatch and not plan.check_shortname and ids_getter is not None
            if simple and ids_getter(src_obj.__dict__) == ids_getter(dst_obj.__dict__):
                continue
            if plan.type_mismatch:
                raise TypeError(f"Type mismatch: {src_obj.get_type()} vs {dst_obj.get_type()}")
            if plan.check_shortname and src_obj.get_shortname() != dst_obj.get_shortname():
                raise ValueError(f"Shortname mismatch: {src_obj.get_shortname()} vs {dst_obj.get_shortname()}")
            if ids_getter is not None and ids_getter(src_obj.__dict__) == ids_getter(dst_obj.__dict__):
                continue
            if src_obj.get_identifiers() != dst_obj.get_identifiers():
                raise ValueError(f"Keys mismatch: {src_obj.get_identifiers()} vs {dst_obj.get_identifiers()}")

    def diff_object_pair(
        self, src_obj: Optional[DiffSyncModel], dst_obj: Optional[DiffSyncModel]
    ) -> Optional[DiffElement]:
        """Diff one source object with its destination counterpart (either may be None)."""
        if src_obj is not None:
            uid = src_obj.get_unique_id()
        elif dst_obj is not None:
            uid = dst_obj.get_unique_id()
        else:
            raise RuntimeError("diff_object_pair() called with neither src_obj nor dst_obj??")
        return self._diff_pair(uid, src_obj, dst_obj)

    def _skip(self, obj: DiffSyncModel, message: str) -> None:
        if self._debug:
            self.logger.bind(model=obj.get_type(), unique_id=obj.get_unique_id()).debug(message)
        self._skipped = True
        self.incr_models_processed()

    def _model_skip(self, src_obj: Optional[DiffSyncModel], dst_obj: Optional[DiffSyncModel]) -> bool:
        """Apply the adapter-level and model-level skip rules, in the reference's order; True if skipped."""
        flags = self._flags
        if flags & _F_SKIP_SRC and dst_obj is None:
            self._skip(src_obj, "Skipping due to SKIP_UNMATCHED_SRC flag on source adapter")  # type: ignore
            return True
        if flags & _F_SKIP_DST and src_obj is None:
            self._skip(dst_obj, "Skipping due to SKIP_UNMATCHED_DST flag on source adapter")  # type: ignore
            return True
        src_bits = src_obj.model_flags.value if src_obj is not None else 0
        dst_bits = dst_obj.model_flags.value if dst_obj is not None else 0
        if dst_obj is None and src_bits & _M_SKIP_SRC:
            self._skip(src_obj, "Skipping due to SKIP_UNMATCHED_SRC flag on model")  # type: ignore[arg-type]
            return True
        if src_obj is None and dst_bits & _M_SKIP_DST:
            self._skip(dst_obj, "Skipping due to SKIP_UNMATCHED_DST flag on model")  # type: ignore[arg-type]
            return True
        if src_bits & _M_IGNORE:
            self._skip(src_obj, "Skipping due to IGNORE flag on source object")  # type: ignore[arg-type]
            return True
        if dst_bits & _M_IGNORE:
            self._skip(dst_obj, "Skipping due to IGNORE flag on dest object")  # type: ignore[arg-type]
            return True
        return False

    def _diff_pair(  # noqa: C901 - the hot path, kept flat on purpose
        self, uid: str, src_obj: Optional[DiffSyncModel], dst_obj: Optional[DiffSyncModel]
    ) -> Optional[DiffElement]:
        if src_obj is not None:
            src_dict = src_obj.__dict__
            if dst_obj is not None:
                dst_dict = dst_obj.__dict__
                if (
                    self._flags
                    or src_dict["model_flags"] is not _MODEL_NONE
                    or dst_dict["model_flags"] is not _MODEL_NONE
                ) and self._model_skip(src_obj, dst_obj):
                    return None
                obj_cls = src_obj.__class__
            else:
                if (self._flags or src_dict["model_flags"] is not _MODEL_NONE) and self._model_skip(src_obj, None):
                    return None
                obj_cls = src_obj.__class__
        elif dst_obj is not None:
            if (self._flags or dst_obj.__dict__["model_flags"] is not _MODEL_NONE) and self._model_skip(None, dst_obj):
                return None
            if self.scope is not None and self._holds_excluded_children(dst_obj):
                self._skip(dst_obj, "Skipping: a delete would take children outside the scope with it")
                return None
            obj_cls = dst_obj.__class__
        else:
            raise RuntimeError("diff_object_pair() called with neither src_obj nor dst_obj??")

        info = self._infos.get(obj_cls)
        if info is None:
            info = self._infos[obj_cls] = ClassInfo(obj_cls)
        obj = src_obj if src_obj is not None else dst_obj
        if info.name_is_uid:
            name = uid
        else:
            name = obj.get_shortname()  # type: ignore[union-attr]
            if name.__class__ is not str:
                raise ValueError(f"name must be a string (not {type(name)})")
        element = _new_element(DiffElement)
        element.type = info.modelname
        element.name = name
        element._keys = UNSET
        element.source_name = self._src_name
        element.dest_name = self._dst_name
        element._diff_class = self.diff_class
        element._child_diff = None
        element._src_obj = src_obj
        element._dst_obj = dst_obj
        element._uid = uid

        callback = self.callback
        if src_obj is not None and dst_obj is not None:
            plan = self._plans.get((obj_cls, dst_obj.__class__))
            if plan is None:
                plan = self._plan(obj_cls, dst_obj.__class__)
            element._plan = plan
            getter = plan.getter
            if plan.fast and getter is not None:
                values = getter(src_dict)
                dst_values = getter(dst_dict)
                equal = values == dst_values
            else:
                values = dst_values = None
                equal = plan.fast
            if equal and plan.same_attrs:
                # Unchanged: keep the compared values; the attribute dicts are built only if asked for.
                if plan.src_copies:
                    values = _copied(values, plan.src_copies, len(plan.common_names))
                if plan.dst_copies:
                    dst_values = _copied(dst_values, plan.dst_copies, len(plan.common_names))
                element._values = values
                element._dst_values = dst_values
                element._source_attrs = UNSET
                element._dest_attrs = UNSET
                element._action = None
            elif equal:
                element._source_attrs = src_obj.get_attrs()
                element._dest_attrs = dst_obj.get_attrs()
                element._action = None
            elif plan.fast:
                element._source_attrs = src_obj.get_attrs()
                element._dest_attrs = dst_obj.get_attrs()
                element._action = _UPDATE
            else:
                # get_attrs may be overridden or go through model_dump: compare its dicts, as the reference does.
                element._plan = None
                element._source_attrs = src_obj.get_attrs()
                element._dest_attrs = dst_obj.get_attrs()
                element._action = element._compute_action()
            if callback is None:
                self.models_processed += 2
            else:
                self.incr_models_processed(2)
            children = plan.children
            if plan.partial_children:
                self._count_unmatched_children(src_obj, dst_obj)
        else:
            element._plan = None
            if src_obj is not None:
                element._source_attrs = src_obj.get_attrs()
                element._dest_attrs = None
                element._action = _CREATE
            else:
                element._source_attrs = None
                element._dest_attrs = dst_obj.get_attrs()  # type: ignore[union-attr]
                element._action = _DELETE
            if callback is None:
                self.models_processed += 1
            else:
                self.incr_models_processed(1)
            children = info.children

        if self.scope is not None and self.scope.children is not None and children:
            children = self._children_in_scope(children)
        element._subtree_diffs = self._add_children(element, src_obj, dst_obj, children) or element._action is not None
        element._epoch = _EPOCH.value
        return element

    def _add_children(
        self,
        element: DiffElement,
        src_obj: Optional[DiffSyncModel],
        dst_obj: Optional[DiffSyncModel],
        children: Tuple[Tuple[str, str], ...],
    ) -> bool:
        """Diff the children of one pair into ``element``; returns whether any child subtree has diffs."""
        subtree_diffs = False
        for child_type, child_fieldname in children:
            if src_obj is not None:
                src_map, src_len = self._children_of(True, child_type, getattr(src_obj, child_fieldname))
            else:
                src_map, src_len = _EMPTY, 0
            if dst_obj is not None:
                dst_map, dst_len = self._children_of(False, child_type, getattr(dst_obj, child_fieldname))
            else:
                dst_map, dst_len = _EMPTY, 0
            if not src_len and not dst_len:
                continue
            child_elements = self._diff_maps(src_map, src_len, dst_map, dst_len)
            if not child_elements:
                continue
            child_diff = element.child_diff
            group = child_diff.children[child_type] if self._plain_add else None
            for child_element in child_elements:
                if group is None or child_element.name in group:
                    child_diff.add(child_element)  # a subclass's add, or raising ObjectAlreadyExists
                else:
                    group[child_element.name] = child_element
                if child_element._subtree_diffs:
                    subtree_diffs = True
        return subtree_diffs

    def _count_unmatched_children(self, src_obj: DiffSyncModel, dst_obj: DiffSyncModel) -> None:
        """Count children of types only one side of a matched pair declares (processed, never diffed)."""
        src_mapping = src_obj.get_children_mapping()
        dst_mapping = dst_obj.get_children_mapping()
        for child_type, child_fieldname in src_mapping.items():
            if child_type not in dst_mapping:
                self.incr_models_processed(len(getattr(src_obj, child_fieldname)))
        for child_type, child_fieldname in dst_mapping.items():
            if child_type not in src_mapping:
                self.incr_models_processed(len(getattr(dst_obj, child_fieldname)))

    def diff_child_objects(
        self, diff_element: DiffElement, src_obj: Optional[DiffSyncModel], dst_obj: Optional[DiffSyncModel]
    ) -> DiffElement:
        """Diff the children of a pair of objects into ``diff_element`` (kept for API compatibility)."""
        if src_obj is None and dst_obj is None:
            raise RuntimeError("Called with neither src_obj nor dest_obj??")
        if src_obj is not None and dst_obj is not None:
            plan = self._plan(src_obj.__class__, dst_obj.__class__)
            if plan.partial_children:
                self._count_unmatched_children(src_obj, dst_obj)
            children = plan.children
        else:
            children = tuple((src_obj or dst_obj).get_children_mapping().items())  # type: ignore[union-attr]
        self._add_children(diff_element, src_obj, dst_obj, children)
        _EPOCH.value += 1  # children were added: cached subtree answers may now be wrong (as add_child does)
        return diff_element

    def _children_of(
        self, source: bool, modelname: str, uids: Iterable[str]
    ) -> Tuple[Mapping[str, DiffSyncModel], int]:
        """Children by uid, as ``get_by_uids`` would return them, without recomputing their unique ids."""
        adapter = self.src_diffsync if source else self.dst_diffsync
        if self._src_index_reads if source else self._dst_index_reads:
            if not uids:
                return _EMPTY, 0  # diffsync looks nothing up for no children (a LocalStore registers no type)
            indexes = self._src_indexes if source else self._dst_indexes
            index = indexes.get(modelname)
            if index is None:
                index = indexes[modelname] = adapter.store._uid_map(modelname)
            if index is not None:
                try:
                    return {uid: index[uid] for uid in uids}, len(uids)  # type: ignore[arg-type]
                except KeyError as err:
                    raise ObjectNotFound(f"{modelname} {err.args[0]} not present in {adapter.store}") from None
        objs = adapter.get_by_uids(list(uids), modelname)
        return {obj.get_unique_id(): obj for obj in objs}, len(objs)


class ClassInfo:
    """Facts about one model class that the differ needs for every object of it."""

    __slots__ = ("modelname", "name_is_uid", "children")

    def __init__(self, cls: Type[DiffSyncModel]) -> None:
        from core.model import DiffSyncModel  # pylint: disable=import-outside-toplevel

        base = DiffSyncModel
        self.modelname = cls.get_type()
        # Without _shortname the shortname is the unique id, which the differ already has.
        self.name_is_uid = (
            not cls._shortname
            and cls.get_shortname is base.get_shortname
            and cls.get_unique_id is base.get_unique_id
            and cls.get_type.__func__ is base.get_type.__func__  # type: ignore[attr-defined]
        )
        self.children = tuple(cls.get_children_mapping().items())


_EMPTY: Dict[str, Any] = {}


def _copied(values: Any, copies: Tuple[Tuple[int, Callable[[Any], Any]], ...], count: int) -> Any:
    """Copy the container values of a compared tuple (or single value) with their copiers."""
    if count == 1:
        return copies[0][1](values)
    result = list(values)
    for index, copier in copies:
        result[index] = copier(result[index])
    return tuple(result)


def _all_of_type(adapter: Adapter, modelname: str) -> Tuple[Mapping[str, DiffSyncModel], int]:
    """All objects of a type as ``{uid: object}`` in store order, from the store's index where it has one."""
    if reads_through_index(adapter, "get_all"):
        index = adapter.store._uid_map(modelname)
        if index is not None:
            return index, len(index)
    objs = adapter.get_all(modelname)
    return {obj.get_unique_id(): obj for obj in objs}, len(objs)
