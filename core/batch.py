"""Batch hooks: one call for many objects of one model and one action, applied level by level.

A sync into an API makes one remote call per object, while most such systems take hundreds of objects in
about the time of one.  A model that overrides ``create_batch``, ``update_batch`` or ``delete_batch``
(``DiffSyncModel``) has its operations of that action grouped wherever the operation order allows it:
within one top-level type, level by level.  Every element of a level is visited, its operation waits in
the batch of its model and action, and the batches run; only then are the children of the elements
whose operation succeeded (or that had none) visited, as the next level.  So a parent's operation has
succeeded before its children's batch is sent, a failed parent still skips its children, and a delete
of a NATURAL_DELETION_ORDER model waits until everything below it is done (those run bottom-up, after the
descent).  A model without batch hooks is not grouped at all: types that no batch hook touches keep the
reference's order exactly.

Each item ends as with a single hook: a model (status from the model), None (FAILURE, children
skipped) or an ObjectCrudException (ERROR; with CONTINUE_ON_FAILURE its children are skipped, without it
the sync stops once the whole batch is recorded, so no item the remote applied goes unreported).  Any
other exception, from the call or as an item's result, stops the sync as it does from a single hook.
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING, Any, Dict, FrozenSet, List, Mapping, Optional, Tuple, Type, Union

from core._operation import no_model_message, precheck
from core.diff import DiffElement
from core.enum import DiffSyncActions, DiffSyncFlags, DiffSyncStatus
from core.exceptions import ObjectCrudException
from core.retry import retry_after_of

if TYPE_CHECKING:
    from core.model import DiffSyncModel
    from core.syncer import DiffSyncSyncer

BatchSize = Union[int, Mapping[str, int]]
"""Most items per batch hook call: one number for every model, or per model name (others keep theirs)."""

_CREATE = DiffSyncActions.CREATE
_UPDATE = DiffSyncActions.UPDATE
_DELETE = DiffSyncActions.DELETE
_HOOKS = {_CREATE: "create_batch", _UPDATE: "update_batch", _DELETE: "delete_batch"}
_FAILURE = DiffSyncStatus.FAILURE
_ERROR = DiffSyncStatus.ERROR


class BatchHookError(TypeError):
    """A batch hook broke its contract (results not one per item, or of a kind it may not return)."""


def batched_actions(model_class: Type[DiffSyncModel]) -> FrozenSet[str]:
    """The actions whose batch hook ``model_class`` overrides: only their operations are grouped."""
    from core.model import DiffSyncModel  # pylint: disable=import-outside-toplevel

    found = set()
    for action, name in _HOOKS.items():
        own = getattr(model_class, name, None)
        base = getattr(DiffSyncModel, name)
        if own is not None and getattr(own, "__func__", own) is not getattr(base, "__func__", base):
            found.add(action)
    return frozenset(found)


def check_batch_size(value: Optional[BatchSize], adapter: Any = None) -> Optional[BatchSize]:
    """Validate a batch size override; returns it unchanged (a mapping as a plain dict).

    Args:
        value: The override.
        adapter: The target adapter (or its class): a mapping's keys must name its models.

    Raises:
        ValueError: naming the bad value (not a whole number of 1 or more, a key that names no model).
    """
    if value is None:
        return None
    if isinstance(value, Mapping):
        for name, size in value.items():
            if not isinstance(name, str) or not name:
                raise ValueError(f"batch_size keys must be model names, not {name!r}")
            _check_one(size, f"batch_size[{name!r}]")
            if adapter is not None and not _is_model(getattr(adapter, name, None)):
                owner = adapter if isinstance(adapter, type) else type(adapter)
                raise ValueError(f"batch_size names {name!r}, which is no model of {owner.__qualname__}")
        return dict(value)
    _check_one(value, "batch_size")
    return value


def _is_model(candidate: Any) -> bool:
    from core.model import DiffSyncModel  # pylint: disable=import-outside-toplevel

    return isinstance(candidate, type) and issubclass(candidate, DiffSyncModel)


def _check_one(size: Any, what: str) -> None:
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ValueError(f"{what} must be a whole number of 1 or more, not {size!r}")


def batch_size_of(model_class: Type[DiffSyncModel], override: Optional[BatchSize]) -> int:
    """The batch size for one model: the sync's override if it names one, else the model's ``_batch_size``."""
    if isinstance(override, Mapping):
        size = override.get(model_class.get_type())
        if size is not None:
            return int(size)
    elif override is not None:
        return int(override)
    return max(1, int(getattr(model_class, "_batch_size", 100)))


class _Stopped(Exception):
    """Raised inside a level run when the runner asks to stop between two hooks."""


class _Op:
    """One operation of a level, waiting for its hook (alone or in its batch)."""

    __slots__ = (
        "action",
        "attrs",
        "deferred",
        "dst_model",
        "element",
        "ids",
        "log_class",
        "logger",
        "model_class",
        "parent_model",
        "skip_children",
        "slot",
        "uid",
    )

    def __init__(
        self,
        element: DiffElement,
        model_class: Any,
        uid: str,
        dst_model: Any,
        parent_model: Any,
        logger: Any,
        attrs: Dict,
        skip_children: bool,
        deferred: bool,
        slot: List[Tuple[DiffElement, Any]],
    ) -> None:
        self.element = element
        self.action = element.action
        self.model_class = model_class
        self.log_class = model_class
        self.uid = uid
        self.dst_model = dst_model
        self.parent_model = parent_model
        self.logger = logger
        self.ids = element.keys
        self.attrs = attrs
        self.skip_children = skip_children
        self.deferred = deferred
        self.slot = slot
        """Where the children of the element go for the next level, in the order of this level."""


Level = List[Tuple[DiffElement, Optional["DiffSyncModel"]]]
"""Elements to visit, each with the target object of its parent (None at the top)."""


class LevelRun:
    """Applies the subtrees of one top-level type level by level, grouping batched operations.

    Each element's visit starts as in ``sync_diff_element`` (the syncer's ``_start_visit``), a single hook
    runs through the syncer's ``_sync_model``, and every step calls the syncer's hooks (``SyncHooks``:
    ``should_stop``, ``replay``, ``before_hook``, ``operation_done``, ``batch_done``), so a runner that
    overrides them journals and fences batches too.
    """

    def __init__(self, syncer: DiffSyncSyncer) -> None:
        self.syncer = syncer
        self.dst = syncer.dst_diffsync
        self._continue_on_failure = bool(syncer.flags & DiffSyncFlags.CONTINUE_ON_FAILURE)
        self.stopped = False
        self.changed = False
        self._started: set = set()
        self._actions: Dict[Any, FrozenSet[str]] = {}

    def run(self, elements: List[DiffElement]) -> bool:
        """Apply every subtree under ``elements``; returns whether anything changed (or was attempted)."""
        self.changed = False
        level: Level = [(element, None) for element in elements]
        deferred_levels: List[List[_Op]] = []
        try:
            while level:
                # The next level keeps this level's order whatever order the operations end in: each element
                # has a slot for its children, filled when it was visited (no operation) or its operation ran.
                slots: List[Level] = [[] for _ in level]
                ops: List[_Op] = []
                deferred: List[_Op] = []
                for (element, parent), slot in zip(level, slots, strict=True):
                    self.changed |= self._visit(element, parent, ops, deferred, slot)
                self._apply(ops)
                if deferred:
                    deferred_levels.append(deferred)
                level = [pair for slot in slots for pair in slot]
            for deferred in reversed(deferred_levels):  # NATURAL_DELETION_ORDER deletes: deepest first
                for op in deferred:
                    self._deferred_context(op)
                self._apply(deferred)
        except _Stopped:
            self.stopped = True
        return self.changed

    # -- visiting -------------------------------------------------------------------------------------

    def _visit(self, element: DiffElement, parent: Any, ops: List[_Op], deferred: List[_Op], slot: Level) -> bool:
        """Start an element's visit as ``sync_diff_element`` does; its operation waits in ``ops`` or ``deferred``.

        Returns:
            Whether the element counts as a change already (a replayed operation).
        """
        action = element.action
        started = self.syncer._start_visit(element, action, slot)
        if started is True:  # replayed: the reference's syncer never started it (see _deferred_context)
            return True
        self._started.add(id(element))
        if started is False:  # no operation to run; its children, if any, wait in the slot
            return False
        model_class, uid, dst_model, natural, skip_children, logger, attrs = started
        children_first = natural and action == _DELETE and not skip_children
        op = _Op(element, model_class, uid, dst_model, parent, logger, attrs, skip_children, children_first, slot)
        if children_first:
            slot.extend((child, dst_model) for child in element.get_children())
            deferred.append(op)
        else:
            ops.append(op)
        return False

    def _deferred_context(self, op: _Op) -> None:
        """Log a children-first delete in the context of the last element visited before it, as the reference.

        The reference keeps per-element state on its syncer, so after the children it logs (and names in
        errors) the delete with the last element it started: the last one started in the subtree's pre-order.
        """
        last = op.element
        while True:
            started = [child for child in last.get_children() if id(child) in self._started]
            if not started:
                break
            last = started[-1]
        if last is not op.element:
            model_class = getattr(self.dst, last.type)
            uid = model_class.create_unique_id(**last.keys)
            op.logger = self.syncer._bind(last, last.action, uid, None)
            op.log_class = model_class

    # -- applying -------------------------------------------------------------------------------------

    def _batched(self, model_class: Any) -> FrozenSet[str]:
        actions = self._actions.get(model_class)
        if actions is None:
            actions = self._actions[model_class] = batched_actions(model_class)
        return actions

    def _apply(self, ops: List[_Op]) -> None:
        """Run a level's operations: singles at once, batched ones when their batch is full or the level ends."""
        syncer = self.syncer
        buffers: Dict[Tuple[Any, str], List[_Op]] = {}
        for op in ops:
            if op.action in self._batched(op.model_class):
                error = precheck(op.action, op.log_class, op.dst_model, op.ids)
                if error is not None:
                    self._failed(op, error)
                    if not self._continue_on_failure:
                        raise error
                    self._after(op, None)
                    continue
                key = (op.model_class, op.action)
                buffer = buffers.setdefault(key, [])
                buffer.append(op)
                if len(buffer) >= batch_size_of(op.model_class, syncer.batch_size):
                    self._run_batch(op.model_class, op.action, buffer)
                    buffers[key] = []
                continue
            self._check_stop()
            self.changed = True
            _, result = syncer._sync_model(
                op.element, op.uid, op.logger, op.log_class, op.action, op.dst_model, op.attrs
            )
            self._after(op, result)
        for (model_class, action), buffer in buffers.items():
            if buffer:
                self._run_batch(model_class, action, buffer)

    def _check_stop(self) -> None:
        if self.syncer.should_stop():
            raise _Stopped

    def _failed(self, op: _Op, error: ObjectCrudException) -> None:
        syncer = self.syncer
        self.changed = True
        syncer.log_sync_status(op.logger, op.action, _ERROR, str(error))
        syncer.operation_done(op.element, op.uid, op.action, _ERROR, str(error), None)

    def _run_batch(self, model_class: Any, action: str, ops: List[_Op]) -> None:
        """One batch hook call, then every item's outcome as the single hook path records it."""
        syncer = self.syncer
        self._check_stop()
        self.changed = True
        syncer.before_hook()
        if syncer._debug:
            for op in ops:
                op.logger.debug(f"Attempting model {action}")
        name = _HOOKS[action]
        results = self._batch_results(model_class, action, ops)
        fatal: Optional[BaseException] = None  # stops the sync whatever the flags, as from a single hook
        crud: Optional[ObjectCrudException] = None  # stops it without CONTINUE_ON_FAILURE
        store = self.dst.store
        for op, result in zip(ops, results, strict=True):
            if isinstance(result, ObjectCrudException):
                self._failed(op, result)
                if not self._continue_on_failure:
                    crud = crud or result
                else:
                    self._after(op, None)  # as a single hook's: "No object resulted", children skipped
                continue
            if isinstance(result, BaseException):
                fatal = fatal or result
                continue
            if result is None:
                status, message = _FAILURE, no_model_message(op.log_class, action)
            elif not hasattr(result, "get_status"):
                raise BatchHookError(
                    f"{model_class.__qualname__}.{name} returned {type(result).__qualname__} for an item "
                    "(it must return the model, None or an exception)"
                )
            else:
                if action == _UPDATE:
                    store._after_change(result, False)
                status, message = result.get_status()
            syncer.log_sync_status(op.logger, action, status, message)
            syncer.operation_done(op.element, op.uid, action, status, message, result)
            self._after(op, result)
        syncer.batch_done()
        if fatal is not None:
            raise fatal
        if crud is not None:
            raise crud

    def _call_batch(self, model_class: Any, action: str, ops: List[_Op]) -> List[Any]:
        """One batch hook call for these operations; its results, one per item, checked to be as many."""
        syncer = self.syncer
        if syncer._guarded:
            return syncer.call_hook(lambda: self._batch_call(model_class, action, ops))
        return self._batch_call(model_class, action, ops)

    def _batch_call(self, model_class: Any, action: str, ops: List[_Op]) -> List[Any]:
        if action == _CREATE:
            results = model_class.create_batch(adapter=self.dst, items=[(op.ids, op.attrs) for op in ops])
        elif action == _UPDATE:
            results = model_class.update_batch(adapter=self.dst, items=[(op.dst_model, op.attrs) for op in ops])
        else:
            results = model_class.delete_batch(adapter=self.dst, items=[op.dst_model for op in ops])
        results = list(results) if results is not None else []
        if len(results) != len(ops):
            raise BatchHookError(
                f"{model_class.__qualname__}.{_HOOKS[action]} returned {len(results)} results for {len(ops)} "
                "items (it must return one per item, in order: the model, None or an exception)"
            )
        return results

    def _batch_results(self, model_class: Any, action: str, ops: List[_Op]) -> List[Any]:
        """Every item's result of the batch hook, the items its remote said "try later" for called again.

        A call that fails as a whole with a transient error is made again for every item; items whose own
        result is a transient error are sent again, alone, in the next call; within the retry budget
        (``core.retry``). An item still failing when it is spent gets the TransientError naming it (an
        ObjectCrudException, as the whole call's own ObjectCrudException is every item's result).
        """
        syncer = self.syncer
        retrier = syncer._retrier
        results: List[Any] = [None] * len(ops)
        pending = list(range(len(ops)))

        def call() -> None:
            nonlocal pending
            got = self._call_batch(model_class, action, [ops[index] for index in pending])
            left = []
            for index, result in zip(pending, got, strict=True):
                results[index] = result
                if isinstance(result, BaseException) and retrier.transient(result):
                    left.append(index)
            pending = left
            if left:  # the item that asks for the longest wait speaks for all of them
                raise max((results[index] for index in left), key=retry_after_of)

        try:
            call()
        except Exception as error:
            failure: Optional[BaseException] = error
            if retrier.transient(error):
                logger = syncer.base_logger.bind(action=action, model=model_class.get_type(), items=len(pending))
                what = f"{_HOOKS[action]} of {model_class.get_type()} ({len(pending)} of {len(ops)} items)"
                try:
                    retrier.again(call, error, what, syncer.before_hook, partial(syncer._retrying, logger))
                    failure = None
                except ObjectCrudException as final:  # the budget spent, or the whole call refused
                    failure = final
            if failure is not None:
                if not isinstance(failure, ObjectCrudException):
                    raise  # stops the sync whatever the flags, as from a single hook
                for index in pending:  # the call as a whole failed: every item still pending failed with it
                    results[index] = failure
        return results

    def _after(self, op: _Op, result: Any) -> None:
        """The end of the syncer's ``sync_diff_element`` for an operation that ran: store, progress, children."""
        dst_model = result if result is not None else op.dst_model
        if result is None or dst_model is None:
            op.logger.warning("No object resulted from sync, will not process child objects.")
            return
        parent = op.parent_model
        if op.action == _CREATE:
            if parent is not None:
                parent.add_child(dst_model)
            self.dst.add(dst_model)
        elif op.action == _DELETE:
            if parent is not None:
                parent.remove_child(dst_model)
            self.dst.remove(dst_model, remove_children=op.skip_children)
            if op.skip_children:
                return
        self.syncer.incr_elements_processed()
        if not op.deferred:
            op.slot.extend((child, dst_model) for child in op.element.get_children())
