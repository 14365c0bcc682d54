"""Adapter: a set of models loaded from one system, which can be diffed against and synced with another."""

from __future__ import annotations

import functools
import inspect
from copy import deepcopy
from inspect import isclass
from typing import Any, Callable, ClassVar, Dict, Iterable, List, Mapping, Optional, Sequence, Set, Tuple, Type, Union

import structlog

from core.batch import BatchSize, check_batch_size
from core.diff import Diff
from core.enum import DiffSyncFlags
from core.exceptions import DiffClassMismatch, ObjectNotFound
from core.limits import Limits
from core.model import DiffSyncModel
from core.retry import RetryBudget
from core.scope import Scope, ScopeLike
from core.store import BaseStore
from core.store.local import LocalStore
from core.utils import get_path, set_key, tree_string

StrType = str
ProgressCallback = Callable[[StrType, int, int], None]


def _persisting_load(load: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a subclass's ``load`` so that a buffering store has written everything once it returns."""

    @functools.wraps(load)
    def wrapper(self: Adapter, *args: Any, **kwargs: Any) -> Any:
        result = load(self, *args, **kwargs)
        self.store._after_load()
        return result

    wrapper._ss_wrapped = True  # type: ignore[attr-defined]
    return wrapper


def _recorded(value: Any) -> Any:
    """Snapshot one constructor argument as diffsync does: later changes by the caller must not show in it.

    Connections, clients and locks cannot be deep-copied (TypeError or AttributeError); they are kept as they
    are rather than making the adapter impossible to build.
    """
    try:
        return deepcopy(value)
    except (TypeError, AttributeError):
        return value


def _has_elements(diff: Optional[Diff]) -> bool:
    """``bool(diff)`` as diffsync evaluates it (through ``len``), without counting a whole large diff."""
    if diff is None:
        return False
    if type(diff).__len__ is Diff.__len__ and not hasattr(type(diff), "__bool__"):
        for _ in diff.get_children():
            return True
        return False
    return bool(diff)


class Adapter:
    """A group of DiffSyncModel instances from one system, with diff and sync against another Adapter.

    Subclasses name their model classes as class attributes (``site = Site``, the attribute name equal to the
    model's ``_modelname``) and list the roots of the tree in ``top_level``.
    """

    type: Optional[str] = None
    """Type of the adapter; the class name when not set."""

    top_level: ClassVar[List[str]] = []
    """Model names the diff and sync start from, in this order."""

    transient_errors: ClassVar[Tuple[Type[BaseException], ...]] = ()
    """Exception types that mean "try later" when a hook of this adapter's models raises them (a client
    library's timeouts and connection errors, say), as ``TransientError`` does: the call is made again."""

    retry_budget: ClassVar[Optional[RetryBudget]] = None
    """How long a hook of this adapter's models is called again after transient failures (``core.retry``);
    None: the sync's (or job's) budget, else ``RetryBudget()``."""

    limits: ClassVar[Optional[Limits]] = None
    """What the system behind this adapter can take (``core.limits``): calls in flight, calls per second;
    enforced by the distributed and embedded runners over every job that writes to it."""

    identity_kwargs: ClassVar[Optional[Tuple[str, ...]]] = None
    """The constructor kwargs that name the system this adapter writes to (``("url",)``): two jobs whose
    targets agree on them write the same system and share its lock, whatever their other kwargs (a timeout, a
    page size, a rotated token). None: every kwarg (``target_identity`` may say otherwise)."""

    @classmethod
    def target_identity(cls, kwargs: Dict[str, Any]) -> Optional[Any]:
        """What names the system a job writes to when this adapter is its target, from its constructor kwargs.

        A runner takes the target's lock on it (with the adapter class: aliases of one class share it), and
        counts its limits under it by default. Override it where the system is not named by kwargs alone
        (a tenant read from a file, a URL to normalise); return plain data, or None for ``identity_kwargs``.
        """
        return None

    def limits_key(self) -> Optional[str]:
        """The name ``limits`` are counted under: adapters that return the same key share one budget.

        Override it when several adapters (or the same adapter with other arguments) write to one system.

        Returns:
            The key, or None for the runner's default: the job's target (the identity its lock is taken on).
        """
        return None

    _meta_kwargs: Dict[str, Any]
    """The keyword arguments of the constructor as they were when it was called (diffsync's name for them)."""

    def __new__(cls, *args: Any, **kwargs: Any) -> Adapter:
        """Record the constructor arguments before ``__init__`` can change them, so that an equal adapter can be built.

        ``_meta_kwargs`` holds the keyword arguments only, as diffsync's does.  diffsync's ``__new__`` rejects
        positional arguments; core accepts them, as diffsync 2.2.3 does, and records them apart for
        ``get_constructor_kwargs()``.
        """
        instance = super().__new__(cls)
        instance._meta_kwargs = {key: _recorded(value) for key, value in kwargs.items()}
        instance._ss_init_args = tuple(_recorded(value) for value in args)
        return instance

    def __init__(
        self,
        name: Optional[str] = None,
        internal_storage_engine: Union[Type[BaseStore], BaseStore] = LocalStore,
    ) -> None:
        """Set up the adapter and its store; subclasses that override this must call ``super().__init__()``.

        Args:
            name: Name of this instance; the adapter's type when not given.
            internal_storage_engine: Store class (instantiated here) or store instance (attached to this adapter).
        """
        if isinstance(internal_storage_engine, BaseStore):
            self.store = internal_storage_engine
            self.store.adapter = self
        else:
            self.store = internal_storage_engine(adapter=self)
        if self.type is None:
            self.type = self.__class__.__name__
        self.name = name if name else self.type

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Check that model attributes match their model names and that top_level names models."""
        super().__init_subclass__(**kwargs)
        for name, value in cls.__dict__.items():
            if isclass(value) and issubclass(value, DiffSyncModel) and value.get_type() != name:
                raise AttributeError(
                    f'Incorrect field name - {value.__name__} has type name "{value.get_type()}", not "{name}"'
                )
        if "load" in cls.__dict__ and not getattr(cls.__dict__["load"], "_ss_wrapped", False):
            cls.load = _persisting_load(cls.__dict__["load"])  # type: ignore[method-assign]
        for name in cls.top_level:
            if not hasattr(cls, name):
                raise AttributeError(f'top_level references attribute "{name}" but it is not a class attribute!')
            value = getattr(cls, name)
            if not isclass(value) or not issubclass(value, DiffSyncModel):
                raise AttributeError(f'top_level references attribute "{name}" but it is not a DiffSyncModel subclass!')

    def __str__(self) -> StrType:
        if self.type != self.name:
            return f'{self.type} "{self.name}"'
        return self.type  # type: ignore[return-value]

    def __repr__(self) -> StrType:
        return f"<{self}>"

    def __len__(self) -> int:
        """Total number of objects stored."""
        return self.store.count()

    def get_constructor_kwargs(self) -> Dict[str, Any]:
        """Get the arguments this adapter was constructed with, by parameter name.

        A worker uses them to build an equal, empty adapter in another process (then attach it to a shared
        store); they must therefore be plain data for the adapter to be used that way.

        The values are the ones recorded when the adapter was constructed (the very objects in ``_meta_kwargs``
        for keyword arguments), so that what is re-created does not depend on what the caller changed since.

        Returns:
            ``{parameter: value}``; values of ``**kwargs`` parameters are merged in.
        """
        # An instance made without Adapter.__new__ (object.__new__, a __new__ not calling it) recorded nothing.
        args = getattr(self, "_ss_init_args", ())
        kwargs = getattr(self, "_meta_kwargs", {})
        signature = inspect.signature(type(self).__init__)
        bound = signature.bind(self, *args, **kwargs)
        result: Dict[str, Any] = {}
        for index, (param_name, value) in enumerate(bound.arguments.items()):
            if index == 0:
                continue  # self
            kind = signature.parameters[param_name].kind
            if kind is inspect.Parameter.VAR_KEYWORD:
                result.update(value)
            elif kind is inspect.Parameter.VAR_POSITIONAL:
                if value:
                    raise TypeError(f"{type(self).__name__} was given *{param_name}; it cannot be re-created by name")
            else:
                result[param_name] = value
        return result

    def attach_store(self, store: BaseStore) -> None:
        """Use a store that was loaded elsewhere (by another process or worker) instead of calling ``load()``.

        A distributed sync builds its adapters from their constructor kwargs on each worker and attaches
        them to the job's shared stores; ``on_attach()`` then runs to rebuild what ``load()`` would have set
        up besides the models.
        """
        self.store = store
        store.adapter = self
        self.on_attach()

    def on_attach(self) -> None:
        """Rebuild the adapter's own state for a store it did not load itself; to be overridden.

        ``load()`` often builds more than models: a map of remote ids, an API client, a cache of look-ups
        that ``create``/``update``/``delete`` hooks use later. On a worker that applies part of a sync, the
        adapter is re-created from its constructor kwargs and attached to a store another worker loaded, so
        ``load()`` never ran in this process. Override this to rebuild such state, reading the models from
        ``self.get_all(...)`` or the remote system. Does nothing by default.
        """

    @classmethod
    def _get_initial_value_order(cls) -> List[str]:
        """Get the model attribute names in processing order: top_level first, then the others by name."""
        value_order = list(cls.top_level) if isinstance(getattr(cls, "top_level", None), list) else []
        for item in dir(cls):
            if item in value_order:
                continue
            value = getattr(cls, item)
            if isclass(value) and issubclass(value, DiffSyncModel):
                value_order.append(item)
        return value_order

    def load(self) -> None:
        """Load all data from the system behind this adapter; to be overridden.

        An adapter that declares ``partitions()`` may leave this alone: it then loads every partition in
        their order, which is the order a distributed job's partitioned load keeps too.
        """
        parts = self.partitions()
        if parts is not None:
            for part in parts:
                self.load_partition(part)

    def load_scoped(self, scope: Scope) -> None:
        """Load at least the objects in ``scope`` (``core.scope.Scope``), for a scoped job; to be overridden.

        The default loads everything (``load()``), and a scoped diff then leaves out what is outside the scope.
        Override it when the system can be asked for part of its data (one device, one region, some types):
        a scoped job then reads only that. Loading more than the scope is harmless (it is never compared);
        loading less is not: an object in scope that is not loaded on the target side is created again, one
        missing on the source side is deleted. Load whole subtrees, children with their parent, of every child
        type (those the scope excludes too): a delete that would take excluded children along is skipped, and
        only loaded children tell.
        """
        self.load()

    def changes_cursor(self) -> Any:
        """Where the system's change feed is now, as plain data; None (the default) when it cannot list changes.

        An incremental pair (``pair=`` on a job) asks for it before every load of this side, whole or of
        changes; the next run of the pair asks ``load_changes`` for what changed since. Take it no later than
        the data it covers: a change made while the load runs is then listed again next time (a change listed
        twice is harmless; a change never listed is missed until the pair's next full reconcile).
        """
        return None

    def load_changes(self, since: Any) -> Optional[Mapping[str, Iterable[str]]]:
        """Load what changed in the system since the cursor ``since`` (``changes_cursor``'s); to be overridden.

        Load, as ``load()`` would, every object created or updated since then **with its ancestors**: a parent
        holding in its children list at least its changed children (it need not list the unchanged ones, nor
        be loaded with them). A parent that lost a child counts as changed: load it too. Return the unique ids
        of the objects deleted since then, by type (``{"interface": ["dev1__et-0"]}``); a deleted object's
        descendants go with it. The runner merges this into the pair's kept store and compares only the
        objects on these paths (a new object with all it holds).
        """
        raise NotImplementedError(f"{type(self).__name__} cannot list its changes (it has no load_changes)")

    def partitions_in(self, scope: Scope) -> Optional[Sequence[Any]]:
        """The partitions that hold the objects in ``scope``, for a scoped job (default: all of ``partitions()``).

        Override it with ``partitions()`` when a partition's key tells what it holds (a region, an id range):
        a scoped job then loads only those partitions.
        """
        return self.partitions()

    def partitions(self) -> Optional[Sequence[Any]]:
        """The parts this adapter's load divides into, as plain-data keys, or None to load in one piece.

        A distributed job loads each partition as a task of its own, in parallel across workers, into the
        side's store; the store keeps the objects in partition order, so the diff is the one of a load that
        went through the partitions one after another. Keys are plain data (str, int, float, bool, None and
        lists or dicts of them: they travel through Redis as msgpack), distinct, at most 10,000. Typical
        keys: page numbers or cursor ranges of a paginated API, id ranges or ``WHERE`` values of a query.
        Each partition must hold whole top-level subtrees: a child loaded with its parent.
        """
        return None

    def load_partition(self, partition: Any) -> None:
        """Load one of the keys ``partitions()`` returned (the whole subtrees of that part); to be overridden.

        Runs in any worker, on an adapter built from the constructor kwargs, possibly at the same time as
        other partitions of the same side in other processes: it must not depend on another partition's
        objects being present.
        """
        raise NotImplementedError(
            f"{type(self).__name__} declares partitions() but does not implement load_partition(partition)"
        )

    def dict(self, exclude_defaults: bool = True, **kwargs: Any) -> Dict[str, Dict[str, Dict]]:
        """Represent the contents as ``{modelname: {unique_id: fields}}``."""
        data: Dict[str, Dict[str, Dict]] = {}
        for modelname in self.store.get_all_model_names():
            data[modelname] = {}
            for obj in self.store.get_all(model=modelname):
                data[obj.get_type()][obj.get_unique_id()] = obj.dict(exclude_defaults=exclude_defaults, **kwargs)
        return data

    def str(self, indent: int = 0) -> StrType:
        """Build a detailed string representation of the contents, tree by tree."""
        margin = " " * indent
        output = ""
        for modelname in self.top_level:
            if output:
                output += "\n"
            output += f"{margin}{modelname}"
            models = self.get_all(modelname)
            if not models:
                output += ": []"
            else:
                for model in models:
                    output += "\n" + model.str(indent=indent + 2)
        return output

    def load_from_dict(self, data: Dict) -> None:
        """Load the contents from a dict shaped as ``dict()`` returns it.

        Args:
            data: ``{modelname: {unique_id: fields}}``.
        """
        for field_name in self._get_initial_value_order():
            model_class = getattr(self, field_name)
            for values in data.get(field_name, {}).values():
                self.add(model_class(**values))

    # ------------------------------------------------------------------------------------------------
    # Diff and sync
    # ------------------------------------------------------------------------------------------------

    def sync_from(
        self,
        source: Adapter,
        diff_class: Type[Diff] = Diff,
        flags: DiffSyncFlags = DiffSyncFlags.NONE,
        callback: Optional[ProgressCallback] = None,
        diff: Optional[Diff] = None,
        *,
        batch_size: Optional[BatchSize] = None,
        retry: Optional[RetryBudget] = None,
        scope: Optional[ScopeLike] = None,
    ) -> Diff:
        """Make this adapter's data match ``source``, through the models' create/update/delete hooks.

        Args:
            source: Adapter to take the data from.
            diff_class: Diff class (or subclass) used to compute the diff.
            flags: Flags changing how the diff and the sync behave.
            callback: Called as ``callback(stage, current, total)`` while the diff and the sync progress.
            diff: A diff computed before, used instead of computing a new one.
            batch_size: Most items per batch hook call, one number or per model name (default: each
                model's ``_batch_size``); only models that override a batch hook are grouped.
            retry: How long a hook whose remote says "try later" (``TransientError``, or one of
                ``transient_errors``) is called again (default: ``retry_budget``, else ``RetryBudget()``).
            scope: Only this part of both datasets is compared and written (``core.scope.Scope``, or its plain
                data); nothing outside it is created, updated or deleted. A ``diff`` given is applied as it is.

        Returns:
            The diff that was applied.

        Raises:
            DiffClassMismatch: if ``diff`` is not an instance of ``diff_class``.
            ValueError: if ``batch_size`` is not a whole number of 1 or more (or a mapping of such), or the
                scope is not one.
        """
        from core.syncer import DiffSyncSyncer  # pylint: disable=import-outside-toplevel

        check_batch_size(batch_size, self)
        if diff_class and _has_elements(diff):
            if not isinstance(diff, diff_class):
                raise DiffClassMismatch(
                    f"The provided diff's class ({diff.__class__.__name__}) does not match the diff_class: "
                    f"{diff_class.__name__}",
                )
        if not _has_elements(diff):
            if scope is not None:  # passed only when given: a subclass's diff_from of diffsync's signature still works
                diff = self.diff_from(source, diff_class=diff_class, flags=flags, callback=callback, scope=scope)
            else:
                diff = self.diff_from(source, diff_class=diff_class, flags=flags, callback=callback)
        syncer = DiffSyncSyncer(
            diff=diff,
            src_diffsync=source,
            dst_diffsync=self,
            flags=flags,
            callback=callback,
            batch_size=batch_size,
            retry=retry,
        )
        result = syncer.perform_sync()
        if result:
            self.sync_complete(source, diff, flags, syncer.base_logger)
        return diff

    def sync_to(
        self,
        target: Adapter,
        diff_class: Type[Diff] = Diff,
        flags: DiffSyncFlags = DiffSyncFlags.NONE,
        callback: Optional[ProgressCallback] = None,
        diff: Optional[Diff] = None,
        *,
        batch_size: Optional[BatchSize] = None,
        retry: Optional[RetryBudget] = None,
        scope: Optional[ScopeLike] = None,
    ) -> Diff:
        """Make ``target``'s data match this adapter's (see ``sync_from``).

        Returns:
            The diff that was applied.

        Raises:
            DiffClassMismatch: if ``diff`` is not an instance of ``diff_class``.
        """
        extra = {"scope": scope} if scope is not None else {}
        return target.sync_from(
            self, diff_class=diff_class, flags=flags, callback=callback, diff=diff, batch_size=batch_size, retry=retry,
            **extra,
        )  # fmt: skip

    def sync_complete(
        self,
        source: Adapter,
        diff: Diff,
        flags: DiffSyncFlags = DiffSyncFlags.NONE,
        logger: Optional[structlog.BoundLogger] = None,
    ) -> None:
        """Called after a ``sync_from`` that changed something (never after one that changed nothing).

        Does nothing by default; override it for work that is best done once per sync, such as writing a
        file or committing a bulk update to a backend without per-record updates.

        Args:
            source: The adapter whose data was synced into this one.
            diff: The diff that was applied.
            flags: The flags of the sync.
            logger: The sync's bound logger.
        """

    def diff_from(
        self,
        source: Adapter,
        diff_class: Type[Diff] = Diff,
        flags: DiffSyncFlags = DiffSyncFlags.NONE,
        callback: Optional[ProgressCallback] = None,
        *,
        scope: Optional[ScopeLike] = None,
    ) -> Diff:
        """Compute what would have to change for this adapter's data to match ``source``.

        Args:
            source: Adapter to compare with.
            diff_class: Diff class (or subclass) to build.
            flags: Flags changing how the diff behaves.
            callback: Called as ``callback("diff", current, total)`` while the diff progresses.
            scope: Compare only this part of both datasets (``core.scope.Scope``, or its plain data).

        Raises:
            ValueError: if ``scope`` is not a scope.
        """
        from core.differ import DiffSyncDiffer  # pylint: disable=import-outside-toplevel

        differ = DiffSyncDiffer(
            src_diffsync=source, dst_diffsync=self, flags=flags, diff_class=diff_class, callback=callback,
            scope=Scope.from_data(scope),
        )  # fmt: skip
        return differ.calculate_diffs()

    def diff_to(
        self,
        target: Adapter,
        diff_class: Type[Diff] = Diff,
        flags: DiffSyncFlags = DiffSyncFlags.NONE,
        callback: Optional[ProgressCallback] = None,
        *,
        scope: Optional[ScopeLike] = None,
    ) -> Diff:
        """Compute what would have to change in ``target`` for it to match this adapter (see ``diff_from``)."""
        if scope is not None:
            return target.diff_from(self, diff_class=diff_class, flags=flags, callback=callback, scope=scope)
        return target.diff_from(self, diff_class=diff_class, flags=flags, callback=callback)

    # ------------------------------------------------------------------------------------------------
    # Object store
    # ------------------------------------------------------------------------------------------------

    def get_all_model_names(self) -> Set[StrType]:
        """Get the names of all model types in the store."""
        return self.store.get_all_model_names()

    def get(
        self, obj: Union[StrType, DiffSyncModel, Type[DiffSyncModel]], identifier: Union[StrType, Dict]
    ) -> DiffSyncModel:
        """Get one object by type and unique id (or dict of identifiers).

        Raises:
            ValueError: if obj is a str and identifier a dict (a uid cannot be built without a model class).
            ObjectNotFound: if the object is not present.
        """
        return self.store.get(model=obj, identifier=identifier)

    def get_or_none(
        self, obj: Union[StrType, DiffSyncModel, Type[DiffSyncModel]], identifier: Union[StrType, Dict]
    ) -> Optional[DiffSyncModel]:
        """Get one object by type and unique id, or None if it is not present.

        Raises:
            ValueError: if obj is a str and identifier a dict.
        """
        try:
            return self.get(obj, identifier)  # through self.get, so that overrides of get see it (as diffsync)
        except ObjectNotFound:
            return None

    def get_all(self, obj: Union[StrType, DiffSyncModel, Type[DiffSyncModel]]) -> List[DiffSyncModel]:
        """Get all objects of one type."""
        return self.store.get_all(model=obj)

    def get_by_uids(
        self, uids: List[StrType], obj: Union[StrType, DiffSyncModel, Type[DiffSyncModel]]
    ) -> List[DiffSyncModel]:
        """Get several objects of one type by unique id.

        Raises:
            ObjectNotFound: if any of the uids is not present.
        """
        return self.store.get_by_uids(uids=uids, model=obj)

    @classmethod
    def get_tree_traversal(cls, as_dict: bool = False) -> Union[StrType, Dict]:
        """Describe the tree of model types the diff and sync walk, as text or as a nested dict.

        Args:
            as_dict: Return the nested dict instead of its text rendering.
        """
        output_dict: Dict = {}
        for key in cls._get_initial_value_order():
            model_obj = getattr(cls, key)
            if not get_path(output_dict, key):
                set_key(output_dict, [key])
            if hasattr(model_obj, "_children"):
                for child_key in list(model_obj._children.keys()):
                    path = get_path(output_dict, key) or [key]
                    path.append(child_key)
                    set_key(output_dict, path)
        if as_dict:
            return output_dict
        return tree_string(output_dict, cls.__name__)

    def add(self, obj: DiffSyncModel) -> None:
        """Add an object to the store.

        Raises:
            ObjectAlreadyExists: if a different object with the same type and uid is already present.
        """
        return self.store.add(obj=obj)

    def update(self, obj: DiffSyncModel) -> None:
        """Store the current state of an object under its uid."""
        return self.store.update(obj=obj)

    def remove(self, obj: DiffSyncModel, remove_children: bool = False) -> None:
        """Remove an object, and optionally its descendants, from the store.

        Raises:
            ObjectNotFound: if the object is not present.
        """
        return self.store.remove(obj=obj, remove_children=remove_children)

    def get_or_instantiate(
        self, model: Type[DiffSyncModel], ids: Dict, attrs: Optional[Dict] = None
    ) -> Tuple[DiffSyncModel, bool]:
        """Get the object with these identifiers, or create and add it with these identifiers and attributes.

        Returns:
            The object, and whether it was created.
        """
        return self.store.get_or_instantiate(model=model, ids=ids, attrs=attrs)

    def get_or_add_model_instance(self, obj: DiffSyncModel) -> Tuple[DiffSyncModel, bool]:
        """Get the stored object with the same type and uid as ``obj``, or add ``obj``.

        Returns:
            The object, and whether it was added.
        """
        return self.store.get_or_add_model_instance(obj=obj)

    def update_or_instantiate(self, model: Type[DiffSyncModel], ids: Dict, attrs: Dict) -> Tuple[DiffSyncModel, bool]:
        """Update the object with these identifiers with ``attrs``, or create and add it.

        Returns:
            The object, and whether it was created.
        """
        return self.store.update_or_instantiate(model=model, ids=ids, attrs=attrs)

    def update_or_add_model_instance(self, obj: DiffSyncModel) -> Tuple[DiffSyncModel, bool]:
        """Update the stored object with the attributes of ``obj``, or add ``obj``.

        Returns:
            The object, and whether it was added.
        """
        return self.store.update_or_add_model_instance(obj=obj)

    def count(self, model: Union[StrType, DiffSyncModel, Type[DiffSyncModel], None] = None) -> int:
        """Count the objects of one type, or of all types when ``model`` is not given."""
        return self.store.count(model=model)
