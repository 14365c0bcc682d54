"""The syncer: applies a Diff to the destination adapter through its models' hooks, as diffsync's does.

Order of operations, skipped children after a failure, flags, statuses, log events and progress counts are
the reference's (see ARCHITECTURE.md, "Operation order").  Per-element state lives in local variables, not
on the syncer, and the work for an unchanged element is one store lookup.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Dict, Iterable, List, Optional, Tuple, Type

import structlog

from core._gc import frozen_heap
from core._log import level_enabled
from core.batch import BatchSize, LevelRun, batched_actions, check_batch_size
from core.diff import Diff, DiffElement
from core.enum import DiffSyncActions, DiffSyncFlags, DiffSyncModelFlags, DiffSyncStatus
from core.exceptions import ObjectCrudException, ObjectNotCreated, ObjectNotDeleted, ObjectNotFound, ObjectNotUpdated
from core.store import reads_through_index
from core.store.local import LocalStore

if TYPE_CHECKING:
    from core.adapter import Adapter
    from core.model import DiffSyncModel

_CREATE = DiffSyncActions.CREATE
_UPDATE = DiffSyncActions.UPDATE
_DELETE = DiffSyncActions.DELETE
_MODEL_NONE = DiffSyncModelFlags.NONE
_NATURAL = DiffSyncModelFlags.NATURAL_DELETION_ORDER.value
_SKIP_CHILDREN = DiffSyncModelFlags.SKIP_CHILDREN_ON_DELETE.value
_UNKNOWN = DiffSyncStatus.UNKNOWN
_SUCCESS = DiffSyncStatus.SUCCESS
_FAILURE = DiffSyncStatus.FAILURE
_ERROR = DiffSyncStatus.ERROR


class DiffSyncSyncer:
    """Applies a Diff from a source adapter to a destination adapter (use ``Adapter.sync_from``)."""

    def __init__(
        self,
        diff: Diff,
        src_diffsync: Adapter,
        dst_diffsync: Adapter,
        flags: DiffSyncFlags,
        callback: Optional[Callable[[str, int, int], None]] = None,
        batch_size: Optional[BatchSize] = None,
    ) -> None:
        self.diff = diff
        self.batch_size = check_batch_size(batch_size)
        """Most items per batch hook call, for every model or per model name (None: each model's own)."""
        self.stopped = False
        """Whether the sync stopped early because ``_should_stop`` said so (a runner's abort)."""
        self.src_diffsync = src_diffsync
        self.dst_diffsync = dst_diffsync
        self.flags = flags
        self.callback = callback
        self.elements_processed = 0
        self._total_elements: Optional[int] = None
        self.base_logger = structlog.get_logger().new(src=src_diffsync, dst=dst_diffsync, flags=flags)
        self.logger = self.base_logger
        self._continue_on_failure = bool(flags & DiffSyncFlags.CONTINUE_ON_FAILURE)
        self._log_unchanged = bool(flags & DiffSyncFlags.LOG_UNCHANGED_RECORDS) and level_enabled(
            self.base_logger, "debug"
        )
        self._debug = level_enabled(self.base_logger, "debug")
        self._uid_maps: Dict[str, Any] = {}
        self._last_started: Tuple[Any, Any, str] = (None, None, "")
        self._current_op: Tuple[Any, str] = (None, "")
        # A direct look-up in the destination store's index is only equivalent to Adapter.get when neither
        # the adapter nor the store changes how get works.
        self._direct_get = reads_through_index(dst_diffsync, "get")
        # diffsync also looks every element up in the source (get_or_none) and discards the result. Where that
        # can be observed (an overridden get/get_or_none, a custom store) the look-up is made as in diffsync;
        # for a LocalStore its only trace, the type registered in the store, is reproduced.
        self._real_src_lookup = not (
            reads_through_index(src_diffsync, "get_or_none") and reads_through_index(src_diffsync, "get")
        )
        self._src_registered: set = set()
        self._batching: Dict[str, bool] = {}

    @property
    def total_elements(self) -> int:
        """Number of elements in the diff (counted when first needed: it walks the whole diff)."""
        if self._total_elements is None:
            self._total_elements = len(self.diff)
        return self._total_elements

    @total_elements.setter
    def total_elements(self, value: int) -> None:
        self._total_elements = value

    def incr_elements_processed(self, delta: int = 1) -> None:
        """Count processed elements and report progress to the callback."""
        if delta:
            self.elements_processed += delta
            if self.callback:
                self.callback("sync", self.elements_processed, self.total_elements)

    def perform_sync(self) -> bool:
        """Apply the diff.

        Returns:
            True if any change was made (or attempted), else False.
        """
        changed = False
        self.base_logger.info("Beginning sync")
        with frozen_heap(), self.src_diffsync.store.session(), self.dst_diffsync.store.session():
            changed = self.sync_top_level(self.diff.get_children())
        self.base_logger.info("Sync complete")
        return changed

    def sync_top_level(self, elements: Iterable[DiffElement]) -> bool:
        """Apply top-level elements in order: one by one, or level by level for a type batch hooks touch.

        Stops (setting ``stopped``) between top-level elements, and between hooks of a level, when
        ``_should_stop`` says so.

        Returns:
            True if any change was made (or attempted), else False.
        """
        changed = False
        group: List[DiffElement] = []
        for element in elements:
            if group and element.type != group[0].type:
                changed |= self._sync_group(group)
                group = []
            if self.stopped:
                return changed
            if self._batched_type(element.type):
                group.append(element)
                continue
            if self._should_stop():
                self.stopped = True
                return changed
            changed |= self.sync_diff_element(element)
        if group:
            changed |= self._sync_group(group)
        return changed

    def _sync_group(self, elements: List[DiffElement]) -> bool:
        run = LevelRun(self)
        changed = run.run(elements)
        self.stopped = self.stopped or run.stopped
        return changed

    def _batched_type(self, modelname: str) -> bool:
        """Whether a batch hook is overridden by the target model of this type or of any type below it."""
        found = self._batching.get(modelname)
        if found is None:
            found = False
            seen = set()
            names = [modelname]
            while names and not found:
                name = names.pop()
                model_class = getattr(self.dst_diffsync, name, None)
                if name in seen or model_class is None or not hasattr(model_class, "_children"):
                    continue
                seen.add(name)
                found = bool(batched_actions(model_class))
                names.extend(model_class._children)
            self._batching[modelname] = found
        return found

    # -- what a runner may override (each does nothing here) ------------------------------------------

    def _should_stop(self) -> bool:
        """Asked between top-level elements and between the hooks of a level: True stops the sync there."""
        return False

    def _replayed(self, element: DiffElement) -> Optional[Tuple[bool, Optional[DiffSyncModel]]]:
        """For a runner with a journal: None when the element's operation must run, else how to go on.

        Returns (whether to visit its children, the parent object to give them) for an operation an earlier
        run already made.
        """
        return None

    def _before_hook(self) -> None:
        """Called before each create/update/delete hook or batch hook call, between complete operations."""

    def _batch_done(self) -> None:
        """Called once the outcome of every item of a batch hook call is recorded (its store writes made)."""

    def _lookup_src(self, model_class: Type[DiffSyncModel], element: DiffElement) -> None:
        """Make diffsync's (unused) source look-up, or reproduce its only visible effect (see __init__)."""
        if self._real_src_lookup:
            self.src_diffsync.get_or_none(model_class, element.keys)
            return
        modelname = model_class.get_type()
        if modelname not in self._src_registered:
            self._src_registered.add(modelname)
            store = self.src_diffsync.store
            if isinstance(store, LocalStore):
                store._uid_map(modelname)

    def _lookup_dst(self, model_class: Type[DiffSyncModel], element: DiffElement) -> Tuple[str, Any]:
        """Find the destination object of an element; returns (unique id, object or None)."""
        dst_obj = element._dst_obj
        uid = element._uid
        if uid is None or dst_obj is None or dst_obj.__class__ is not model_class:
            uid = model_class.create_unique_id(**element.keys)
        if self._direct_get:
            modelname = model_class.get_type()
            uid_map = self._uid_maps.get(modelname)
            if uid_map is None:
                uid_map = self._uid_maps[modelname] = self.dst_diffsync.store._uid_map(modelname)
            return uid, uid_map.get(uid)
        try:
            return uid, self.dst_diffsync.get(model_class, element.keys)
        except ObjectNotFound:
            return uid, None

    def _bind(self, element: DiffElement, action: Optional[str], uid: str, diffs: Optional[Dict]) -> Any:
        if diffs is None:
            diffs = element.get_attrs_diffs()
        return self.base_logger.bind(action=action, model=element.type, unique_id=uid, diffs=diffs)

    def sync_diff_element(self, element: DiffElement, parent_model: Optional[DiffSyncModel] = None) -> bool:
        """Apply one element and then its children (children first for a NATURAL_DELETION_ORDER delete).

        Returns:
            True if this element or any below it led to a change (or an attempted one).
        """
        action = element.action
        if action is not None:
            replay = self._replayed(element)
            if replay is not None:
                visit_children, children_parent = replay
                if visit_children:
                    for child in element.get_children():
                        self.sync_diff_element(child, parent_model=children_parent)
                return True
        model_class = getattr(self.dst_diffsync, element.type)
        self._lookup_src(model_class, element)
        uid, dst_model = self._lookup_dst(model_class, element)
        self._last_started = (element, model_class, uid)
        if dst_model is not None:
            dst_model.set_status(_UNKNOWN)

        natural_deletion_order = False
        skip_children = False
        if dst_model is not None:
            model_flags = dst_model.model_flags
            if model_flags is not _MODEL_NONE:
                bits = model_flags.value
                natural_deletion_order = bool(bits & _NATURAL)
                skip_children = bool(bits & _SKIP_CHILDREN)

        if action is None:
            # Unchanged: nothing to apply, only the children to visit.
            if self._log_unchanged:
                self._bind(element, action, uid, None).debug(
                    "No changes to apply; no action needed", status=_SUCCESS.value
                )
            if dst_model is None:
                self._bind(element, action, uid, None).warning(
                    "No object resulted from sync, will not process child objects."
                )
                return False
            self.incr_elements_processed()
            changed = False
            if element._child_diff is not None:
                for child in element.get_children():
                    changed |= self.sync_diff_element(child, parent_model=dst_model)
            return changed

        diffs = element.get_attrs_diffs()
        logger = self._bind(element, action, uid, diffs)
        log_class = model_class
        changed = False
        if natural_deletion_order and action == _DELETE and not skip_children:
            for child in element.get_children():
                changed |= self.sync_diff_element(child, parent_model=dst_model)
            # diffsync keeps per-element state on its syncer, so after deleting the children first it logs
            # (and names in error messages) this element's own delete with the context of the last element
            # it visited. Log-based tooling sees the same events here, in the same form.
            last_element, last_class, last_uid = self._last_started
            if last_element is not element:
                logger = self._bind(last_element, last_element.action, last_uid, None)
                log_class = last_class

        self._current_op = (element, uid)
        changed, modified_model = self._sync_model(
            logger, log_class, action, dst_model, element.keys, diffs.get("+", {})
        )
        if modified_model is not None:
            dst_model = modified_model
        if modified_model is None or dst_model is None:
            logger.warning("No object resulted from sync, will not process child objects.")
            return changed

        if action == _CREATE:
            if parent_model is not None:
                parent_model.add_child(dst_model)
            self.dst_diffsync.add(dst_model)
        elif action == _DELETE:
            if parent_model is not None:
                parent_model.remove_child(dst_model)
            self.dst_diffsync.remove(dst_model, remove_children=skip_children)
            if skip_children:
                return changed

        self.incr_elements_processed()

        if not natural_deletion_order or action != _DELETE:
            for child in element.get_children():
                changed |= self.sync_diff_element(child, parent_model=dst_model)
        return changed

    def _sync_model(
        self,
        logger: Any,
        model_class: Type[DiffSyncModel],
        action: str,
        dst_model: Optional[DiffSyncModel],
        ids: Dict,
        attrs: Dict,
    ) -> Tuple[bool, Optional[DiffSyncModel]]:
        """Run the create/update/delete hook; returns (changed, resulting model or None on failure)."""
        self._before_hook()
        try:
            if self._debug:
                logger.debug(f"Attempting model {action}")
            if action == _CREATE:
                if dst_model is not None:
                    raise ObjectNotCreated(f"Failed to create {model_class.get_type()} {ids} - it already exists!")
                dst_model = model_class.create(adapter=self.dst_diffsync, ids=ids, attrs=attrs)
            elif action == _UPDATE:
                if dst_model is None:
                    raise ObjectNotUpdated(f"Failed to update {model_class.get_type()} {ids} - not found!")
                dst_model = dst_model.update(attrs=attrs)
                if dst_model is not None:
                    self.dst_diffsync.store._after_change(dst_model, False)
            elif action == _DELETE:
                if dst_model is None:
                    raise ObjectNotDeleted(f"Failed to delete {model_class.get_type()} {ids} - not found!")
                dst_model = dst_model.delete()
            else:
                raise ObjectCrudException(f'Unknown action "{action}"!')

            if dst_model is not None:
                status, message = dst_model.get_status()
            else:
                status = _FAILURE
                message = f"{model_class.get_type()} {action} did not return the model object."
        except ObjectCrudException as exception:
            self.log_sync_status(logger, action, _ERROR, str(exception))
            self._operation_done(action, _ERROR, str(exception), None)
            if self._continue_on_failure:
                return True, None
            raise

        self.log_sync_status(logger, action, status, message)
        self._operation_done(action, status, message, dst_model)
        return True, dst_model

    def _operation_done(
        self, action: str, status: DiffSyncStatus, message: str, model: Optional[DiffSyncModel]
    ) -> None:
        """Called once per create/update/delete with its outcome; ``self._current_op`` is (element, uid).

        ``model`` is what the hook returned (None when it failed or raised).

        Does nothing here: a distributed runner overrides it to journal and count operations.
        """

    def log_sync_status(self, logger: Any, action: Optional[str], status: DiffSyncStatus, message: str) -> None:
        """Log the outcome of one element at the level its status calls for."""
        if action is None:
            if self._log_unchanged:
                logger.debug(message, status=status.value)
        elif status == _SUCCESS:
            logger.info(message, status=status.value)
        elif status == _FAILURE:
            logger.warning(message, status=status.value)
        else:
            logger.error(message, status=status.value)
