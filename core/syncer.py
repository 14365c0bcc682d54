"""The syncer: applies a Diff to the destination adapter through its models' hooks, as diffsync's does.

Order of operations, skipped children after a failure, flags, statuses, log events and progress counts are
the reference's (see ARCHITECTURE.md, "Operation order").  Per-element state lives in local variables, not
on the syncer, and the work for an unchanged element is one store lookup.

A runner that applies a diff its own way (``worker.pipeline.journal.ShardSyncer`` journals each operation and
replays those a previous delivery made) subclasses ``DiffSyncSyncer`` and overrides the methods of ``SyncHooks``,
its published extension points; everything else here is the engine's own.
"""

from __future__ import annotations

import time
from functools import partial
from typing import TYPE_CHECKING, Any, Callable, Dict, Iterable, List, Optional, Protocol, Tuple, Type, TypeVar, Union

import structlog

from core._gc import frozen_heap
from core._log import level_enabled
from core._operation import no_model_message, precheck
from core.batch import BatchSize, Level, LevelRun, batched_actions, check_batch_size
from core.diff import Diff, DiffElement
from core.enum import DiffSyncActions, DiffSyncFlags, DiffSyncModelFlags, DiffSyncStatus
from core.exceptions import ObjectCrudException, ObjectNotFound
from core.retry import DEFAULT_RETRY_BUDGET, Retrier, RetryBudget
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

T = TypeVar("T")

_Started = Tuple[Type["DiffSyncModel"], str, Optional["DiffSyncModel"], bool, bool, Any, Dict[str, Any]]
"""An element whose operation is to run: (model class, unique id, destination object or None, whether its
model has NATURAL_DELETION_ORDER, whether it has SKIP_CHILDREN_ON_DELETE, bound logger, attributes to apply)."""


class SyncHooks(Protocol):
    """The points where a runner may change how a sync runs; by default each does nothing (nothing stops it).

    A runner (the distributed one journals every operation so that a redelivered shard skips what it already
    made, and fences its writes with the job's lock) subclasses ``DiffSyncSyncer``, which inherits these
    defaults, and overrides only these methods; the engine's other members stay free to change.  The syncer
    calls them:

    - ``should_stop()`` before each top-level element applied one by one, and before each hook (single or
      batch) of a level-by-level run (a type with batch hooks, see ``core.batch``);
    - ``before_element(element)`` as ``sync_diff_element`` starts an element; the level-by-level path does
      not call it (there ``before_hook`` and ``batch_done`` mark the points between operations);
    - ``replay(element)`` for each element that has an action, before anything is looked up: a runner that
      knows the operation was made already says how to go on, and no hook runs for it;
    - ``before_hook()`` before each create/update/delete hook and each batch hook call;
    - ``operation_done(...)`` once for every operation, when its outcome is known and logged, before the
      syncer adds, links or removes the object in the destination store;
    - ``batch_done()`` after a batch hook call, once every item's outcome and store writes are made;
    - ``call_hook(call)`` around every call of a hook or a batch hook, when overridden (a runner's limits);
    - ``held_back()`` when an operation is tried again: the seconds the runner held calls back, which a
      retry budget does not count;
    - ``backoff(seconds)`` between two calls of a hook whose remote said "try later" (``core.retry``), each
      new call preceded by ``before_hook()`` again.

    Every one of them runs between complete operations except ``operation_done``, which runs inside one (its
    store writes still to come): that is where a runner records what happened but does not yet persist it.
    An exception raised in any of them stops the sync and propagates out of ``perform_sync``.
    """

    def should_stop(self) -> bool:
        """Whether to stop the sync here, leaving the rest undone (``stopped`` is set).

        A runner overrides it to honour an abort request without killing the process mid-operation. Asked
        often: keep it cheap (the distributed runner asks Redis at most four times a second).

        Returns:
            True to stop before the next top-level element (or the next hook of a level).
        """
        return False

    def before_element(self, element: DiffElement) -> None:
        """Called as ``sync_diff_element`` starts an element, before its replay check and look-ups.

        Every operation recorded so far is complete, store writes included, so a runner may persist its
        records here (the distributed runner writes its journal when a checkpoint is due). Override it in a
        subclass: the syncer checks once, when it is created, whether there is anything to call.

        Args:
            element: The element about to be visited.
        """
        return None

    def replay(self, element: DiffElement) -> Optional[Tuple[bool, Optional[DiffSyncModel]]]:
        """How to go on with an element whose operation an earlier run already made, or None to run it.

        A runner with a journal overrides it so that a redelivered job does not run a hook twice: it answers
        from its journal (or from what it can see in the store) and counts the element as replayed. Called
        for elements that have an action only; a replayed element counts as a change.

        Args:
            element: The element about to be visited.

        Returns:
            None when the operation must run; else (whether to visit its children, the destination object to
            give them as their parent, None if there is none).
        """
        return None

    def before_hook(self) -> None:
        """Called before each create/update/delete hook and each batch hook call, between complete operations.

        The last point before the destination system is touched: a runner persists what is done (a crash in
        the hook then repeats that hook alone) and checks that it still may write (its lock).
        """
        return None

    def operation_raised(self, element: DiffElement, uid: str, action: str, error: BaseException) -> None:
        """Called when a create/update/delete raised something other than ObjectCrudException.

        A bug, a library's error: it propagates next and stops the sync, as it would in diffsync. A runner
        records it (the operation failed, with the error and where it came from) so that the object is not
        shown as never run; nothing is logged here, to keep diffsync's log events.
        """

    def operation_done(
        self,
        element: DiffElement,
        uid: str,
        action: str,
        status: DiffSyncStatus,
        message: str,
        model: Optional[DiffSyncModel],
    ) -> None:
        """Called once per create/update/delete with its outcome, after it is logged.

        A runner records it here (a journal entry, counts). The syncer has yet to add, link or remove the
        object in the destination store, so a record must wait for the next ``before_hook``, ``before_element``
        or ``batch_done`` to be persisted: a journal must never claim what the store lacks.

        Args:
            element: The element whose operation ran.
            uid: The unique id of its object.
            action: ``DiffSyncActions.CREATE``, ``UPDATE`` or ``DELETE``.
            status: SUCCESS or FAILURE from the model (FAILURE when the hook returned None), ERROR when it
                raised an ObjectCrudException or a check refused it.
            message: The message logged with the status.
            model: What the hook returned, None when it failed or raised.
        """
        return None

    def batch_done(self) -> None:
        """Called after a batch hook call, once every item's outcome is recorded and its store writes made.

        A batch is one remote call: a runner persists its records as one unit here, so that a crash repeats
        the whole batch or none of it.
        """
        return None

    def call_hook(self, call: Callable[[], T]) -> T:
        """Make one call of a create/update/delete hook or of a batch hook (``call()``), and return its result.

        A runner wraps every call to the remote system here: to hold it to the system's limits (calls in
        flight, calls per second), to time it, to watch its failures. Called only when overridden (the syncer
        checks once, when it is created), after ``before_hook``, and again for each call made again.

        Args:
            call: Makes the call; what it returns or raises is the hook's.

        Returns:
            What ``call()`` returned.
        """
        return call()

    def held_back(self) -> float:
        """Seconds this runner has held calls back so far, waiting for its target (an outage, a shared pause).

        Not counted against a retry budget's seconds, which measure trying, not waiting: an operation that
        waited out an outage may still be tried again. Asked when an operation is tried again.

        Returns:
            A running total (0.0 here: the engine holds nothing back).
        """
        return 0.0

    def backoff(self, seconds: float) -> None:
        """Wait before a hook is called again after a transient failure (``core.retry``).

        A runner may wait its own way (watching for a stop, keeping its claim alive); it is called between
        complete operations, the failed call's records persisted or not as at any ``before_hook``.

        Args:
            seconds: How long to wait (the backoff, at least the remote's Retry-After).
        """
        time.sleep(seconds)


class DiffSyncSyncer(SyncHooks):
    """Applies a Diff from a source adapter to a destination adapter (use ``Adapter.sync_from``)."""

    def __init__(
        self,
        diff: Diff,
        src_diffsync: Adapter,
        dst_diffsync: Adapter,
        flags: DiffSyncFlags,
        callback: Optional[Callable[[str, int, int], None]] = None,
        batch_size: Optional[BatchSize] = None,
        retry: Optional[RetryBudget] = None,
    ) -> None:
        self.diff = diff
        self.batch_size = check_batch_size(batch_size)
        """Most items per batch hook call, for every model or per model name (None: each model's own)."""
        self.stopped = False
        """Whether the sync stopped early because ``should_stop`` said so (a runner's abort)."""
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
        self.retry_budget: RetryBudget = retry or getattr(dst_diffsync, "retry_budget", None) or DEFAULT_RETRY_BUDGET
        """How long an operation is tried again after transient failures: the sync's, else its target's."""
        self.retries = 0
        """Hook calls made again after a transient failure (a batch call counts once)."""
        self._retrier = Retrier(
            self.retry_budget,
            tuple(getattr(dst_diffsync, "transient_errors", ()) or ()),
            self.backoff,
            self.held_back,
        )
        """Whether debug events are emitted at all (shared with LevelRun: "Attempting model ..." events)."""
        self._uid_maps: Dict[str, Any] = {}
        self._last_started: Tuple[Any, Any, str] = (None, None, "")
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
        # Called only when overridden: a call that does nothing, made for every element, costs a few per cent.
        self._before_element = type(self).before_element is not SyncHooks.before_element
        self._guarded = type(self).call_hook is not SyncHooks.call_hook

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
        with frozen_heap(), self.src_diffsync.store.engine_session(), self.dst_diffsync.store.engine_session():
            changed = self.sync_top_level(self.diff.get_children())
        self.base_logger.info("Sync complete")
        return changed

    def sync_top_level(self, elements: Iterable[DiffElement]) -> bool:
        """Apply top-level elements in order: one by one, or level by level for a type batch hooks touch.

        Stops (setting ``stopped``) between top-level elements, and between hooks of a level, when
        ``should_stop`` says so.

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
            if self.should_stop():
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

    def lookup_dst(self, model_class: Type[DiffSyncModel], element: DiffElement) -> Tuple[str, Any]:
        """Find an element's object in the destination, as the syncer does before its operation.

        A runner calls it to see what an earlier run left in the store (whether a create already happened,
        the object to give a replayed element's children). It reads the store's index directly where that is
        equivalent to ``Adapter.get``, and reuses the unique id the differ computed.

        Args:
            model_class: The destination adapter's class for the element's type.
            element: The element.

        Returns:
            (unique id, destination object or None).
        """
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

    # -- shared with core.batch.LevelRun, which visits and applies elements level by level --------------
    # Internal: the two paths must keep one behaviour, so each step they have in common is written once here.

    def _bind(self, element: DiffElement, action: Optional[str], uid: str, diffs: Optional[Dict]) -> Any:
        """The logger of one element's events, with the fields the reference binds."""
        if diffs is None:
            diffs = element.get_attrs_diffs()
        return self.base_logger.bind(action=action, model=element.type, unique_id=uid, diffs=diffs)

    def _start_visit(
        self, element: DiffElement, action: Optional[str], next_level: Optional[Level]
    ) -> Union[bool, _Started]:
        """The beginning of every element's visit: replay, look-ups, status, model flags, an unchanged element.

        Settles the elements that run no operation: one the runner replays (``replay``) and one without an
        action (logged, counted, its children visited). Their children are visited at once, depth-first, when
        ``next_level`` is None (``sync_diff_element``), or appended to ``next_level`` with their parent object
        (``LevelRun``).

        Args:
            element: The element to visit.
            action: Its action, as read once by the caller (reading it compares the attributes again).
            next_level: Where to put the element's children instead of visiting them now.

        Returns:
            For a settled element, whether anything changed: True when the runner replayed it; for an
            unchanged one, whether anything below it changed (False when its children went to ``next_level``).
            For an element whose operation is to run, what running it takes (``_Started``).
        """
        if action is not None:
            replay = self.replay(element)
            if replay is not None:
                visit_children, children_parent = replay
                if visit_children:
                    if next_level is None:
                        for child in element.get_children():
                            self.sync_diff_element(child, parent_model=children_parent)
                    else:
                        next_level.extend((child, children_parent) for child in element.get_children())
                return True
        model_class = getattr(self.dst_diffsync, element.type)
        self._lookup_src(model_class, element)
        uid, dst_model = self.lookup_dst(model_class, element)
        self._last_started = (element, model_class, uid)

        natural_deletion_order = False
        skip_children = False
        if dst_model is not None:
            dst_model.set_status(_UNKNOWN)
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
                if next_level is None:
                    for child in element.get_children():
                        changed |= self.sync_diff_element(child, parent_model=dst_model)
                else:
                    next_level.extend((child, dst_model) for child in element.get_children())
            return changed

        diffs = element.get_attrs_diffs()
        logger = self._bind(element, action, uid, diffs)
        return model_class, uid, dst_model, natural_deletion_order, skip_children, logger, diffs.get("+", {})

    def _sync_model(
        self,
        element: DiffElement,
        uid: str,
        logger: Any,
        model_class: Type[DiffSyncModel],
        action: str,
        dst_model: Optional[DiffSyncModel],
        attrs: Dict,
    ) -> Tuple[bool, Optional[DiffSyncModel]]:
        """Run one element's create/update/delete hook; returns (changed, resulting model or None on failure).

        ``model_class`` is the class the operation is logged and named with (see ``sync_diff_element``).
        """
        self.before_hook()
        try:
            if self._debug:
                logger.debug(f"Attempting model {action}")
            error = precheck(action, model_class, dst_model, element.keys)
            if error is not None:
                raise error
            try:  # the hook, called here rather than through _call_hook: the path every operation takes
                if self._guarded:
                    dst_model = self.call_hook(
                        partial(self._call_hook, action, model_class, dst_model, element.keys, attrs)
                    )
                elif action == _CREATE:
                    dst_model = model_class.create(adapter=self.dst_diffsync, ids=element.keys, attrs=attrs)
                elif action == _UPDATE:
                    dst_model = dst_model.update(attrs=attrs)  # type: ignore[union-attr]  # precheck: not None
                else:
                    dst_model = dst_model.delete()  # type: ignore[union-attr]  # precheck: not None
            except Exception as err:
                if not self._retrier.transient(err):
                    raise
                dst_model = self._call_again(err, logger, action, model_class, dst_model, element, uid, attrs)
            if action == _UPDATE and dst_model is not None:
                self.dst_diffsync.store._after_change(dst_model, False)

            if dst_model is not None:
                status, message = dst_model.get_status()
            else:
                status = _FAILURE
                message = no_model_message(model_class, action)
        except ObjectCrudException as exception:
            self.log_sync_status(logger, action, _ERROR, str(exception))
            self.operation_done(element, uid, action, _ERROR, str(exception), None)
            if self._continue_on_failure:
                return True, None
            raise
        except Exception as exception:  # not a failure diffsync's hooks report: it stops the sync, as there
            self.operation_raised(element, uid, action, exception)
            raise

        self.log_sync_status(logger, action, status, message)
        self.operation_done(element, uid, action, status, message, dst_model)
        return True, dst_model

    def _call_hook(
        self,
        action: str,
        model_class: Type[DiffSyncModel],
        dst_model: Optional[DiffSyncModel],
        ids: Dict,
        attrs: Dict,
    ) -> Optional[DiffSyncModel]:
        """Call one operation's create/update/delete hook (its checks made); returns what the hook returned."""
        if action == _CREATE:
            return model_class.create(adapter=self.dst_diffsync, ids=ids, attrs=attrs)
        if action == _UPDATE:
            return dst_model.update(attrs=attrs)  # type: ignore[union-attr]  # precheck: not None
        return dst_model.delete()  # type: ignore[union-attr]  # precheck: not None

    def _call_again(
        self,
        first: BaseException,
        logger: Any,
        action: str,
        model_class: Type[DiffSyncModel],
        dst_model: Optional[DiffSyncModel],
        element: DiffElement,
        uid: str,
        attrs: Dict,
    ) -> Optional[DiffSyncModel]:
        """Call a hook again after its remote said "try later", within the retry budget.

        Raises:
            TransientError: (an ObjectCrudException) when the budget is spent, naming the operation.
        """
        call = partial(self._call_hook, action, model_class, dst_model, element.keys, attrs)
        return self._retrier.again(
            partial(self.call_hook, call) if self._guarded else call,
            first,
            f"{action} {model_class.get_type()} {uid}",
            self.before_hook,
            partial(self._retrying, logger),
        )

    def _retrying(self, logger: Any, attempt: int, seconds: float, err: BaseException) -> None:
        """Count a call made again and log why (a warning: a remote that throttles wants an operator's eye)."""
        self.retries += 1
        error = f"{type(err).__name__}: {err}"
        logger.warning("Transient error, calling again", attempt=attempt, wait=round(seconds, 3), error=error)

    # -- the depth-first path -------------------------------------------------------------------------

    def sync_diff_element(self, element: DiffElement, parent_model: Optional[DiffSyncModel] = None) -> bool:
        """Apply one element and then its children (children first for a NATURAL_DELETION_ORDER delete).

        Returns:
            True if this element or any below it led to a change (or an attempted one).
        """
        if self._before_element:
            self.before_element(element)
        action = element.action
        started = self._start_visit(element, action, None)
        if started is False or started is True:
            return started
        model_class, uid, dst_model, natural_deletion_order, skip_children, logger, attrs = started
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

        changed, modified_model = self._sync_model(element, uid, logger, log_class, action, dst_model, attrs)
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
