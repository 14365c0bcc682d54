"""BaseStore: the storage contract every backend (in memory, Redis) fulfils for an Adapter.

The public methods and their keyword-only signatures are those of ``diffsync.store.BaseStore``, so custom
stores written for diffsync keep working.  Two optional hooks (``_uid_map`` and ``_lookup_map``) let the
engine read a store's own index directly instead of rebuilding it; a store that does not provide them
still works, through the public methods only.
"""

from __future__ import annotations

from contextlib import nullcontext
from typing import TYPE_CHECKING, Any, ContextManager, Dict, List, Mapping, Optional, Set, Tuple, Type, Union

import structlog

from core.exceptions import ObjectNotFound

if TYPE_CHECKING:
    from core import Adapter, DiffSyncModel

ModelRef = Union[str, "DiffSyncModel", Type["DiffSyncModel"]]


class BaseStore:
    """Reference store, to be implemented by each backend."""

    def __init__(
        self,
        *args: Any,
        adapter: Optional[Adapter] = None,
        name: str = "",
        **kwargs: Any,
    ) -> None:
        self.adapter = adapter
        self.name = name or self.__class__.__name__
        self._log = structlog.get_logger().new(store=self)

    def __str__(self) -> str:
        return self.name

    def get_all_model_names(self) -> Set[str]:
        """Get the names of all model types held in the store.

        Returns:
            Set of model names.
        """
        raise NotImplementedError

    def get(self, *, model: ModelRef, identifier: Union[str, Dict]) -> DiffSyncModel:
        """Get one object by its unique id.

        Args:
            model: DiffSyncModel class or instance, or modelname string, naming the type of the object.
            identifier: Unique id of the object, or dict of its identifier keys and values.

        Raises:
            ValueError: if model is a str and identifier a dict (a uid cannot be built without a model class).
            ObjectNotFound: if the object is not present.
        """
        raise NotImplementedError

    def get_all(self, *, model: ModelRef) -> List[DiffSyncModel]:
        """Get all objects of one type, in the order they were added.

        Args:
            model: DiffSyncModel class or instance, or modelname string.

        Returns:
            List of objects.
        """
        raise NotImplementedError

    def get_by_uids(self, *, uids: List[str], model: ModelRef) -> List[DiffSyncModel]:
        """Get several objects of one type by their unique ids, in the order of ``uids``.

        Args:
            uids: Unique ids of the objects.
            model: DiffSyncModel class or instance, or modelname string.

        Raises:
            ObjectNotFound: if any of the uids is not present.
        """
        raise NotImplementedError

    def remove_item(self, modelname: str, uid: str) -> None:
        """Remove one object, given its type name and unique id.

        Raises:
            ObjectNotFound: if the object is not present.
        """
        raise NotImplementedError

    def remove(self, *, obj: DiffSyncModel, remove_children: bool = False) -> None:
        """Remove an object, and optionally all its descendants, from the store.

        Args:
            obj: Object to remove.
            remove_children: If True, also remove the object's children, recursively.

        Raises:
            ObjectNotFound: if the object is not present.
        """
        modelname = obj.get_type()
        uid = obj.get_unique_id()

        self.remove_item(modelname, uid)

        if self._adapter_truthy(obj):
            obj.adapter = None

        if remove_children:
            for child_type, child_fieldname in obj.get_children_mapping().items():
                for child_id in getattr(obj, child_fieldname):
                    try:
                        child_obj = self.get(model=child_type, identifier=child_id)
                        self.remove(obj=child_obj, remove_children=remove_children)
                    except ObjectNotFound:
                        # Clean-up code: report the inconsistency and go on rather than abort half-way.
                        self._log.error(
                            "Unable to remove child element as it was not found!",
                            child_type=child_type,
                            child_id=child_id,
                            parent_type=modelname,
                            parent_id=uid,
                        )

    def add(self, *, obj: DiffSyncModel) -> None:
        """Add an object to the store.

        Args:
            obj: Object to store.

        Raises:
            ObjectAlreadyExists: if a different object with the same uid is already present.
        """
        raise NotImplementedError

    def update(self, *, obj: DiffSyncModel) -> None:
        """Store the current state of an object, replacing what is stored under its uid.

        Args:
            obj: Object to update.
        """
        raise NotImplementedError

    def count(self, *, model: Optional[ModelRef] = None) -> int:
        """Count the objects of one type, or of all types when ``model`` is not given."""
        raise NotImplementedError

    def get_or_instantiate(
        self, *, model: Type[DiffSyncModel], ids: Dict, attrs: Optional[Dict] = None
    ) -> Tuple[DiffSyncModel, bool]:
        """Get the object with these identifiers, or create it with these identifiers and attributes and add it.

        Args:
            model: The DiffSyncModel class to get or create.
            ids: Identifiers of the object.
            attrs: Attributes to create the object with if it does not exist.

        Returns:
            The existing or new object, and whether it was created.
        """
        try:
            return self.get(model=model, identifier=ids), False
        except ObjectNotFound:
            obj = model(**ids, **(attrs or {}))
            self.add(obj=obj)
            return obj, True

    def get_or_add_model_instance(self, obj: DiffSyncModel) -> Tuple[DiffSyncModel, bool]:
        """Get the stored object with the same type and uid as ``obj``, or add ``obj``.

        Args:
            obj: Object to look up or add.

        Returns:
            The existing or added object, and whether it was added.
        """
        try:
            return self.get(model=type(obj), identifier=obj.get_unique_id()), False
        except ObjectNotFound:
            self.add(obj=obj)
            return obj, True

    def update_or_instantiate(
        self, *, model: Type[DiffSyncModel], ids: Dict, attrs: Dict
    ) -> Tuple[DiffSyncModel, bool]:
        """Update the object with these identifiers with ``attrs``, or create and add it.

        Args:
            model: The DiffSyncModel class to update or create.
            ids: Identifiers of the object.
            attrs: Attributes to set (pass an empty dict for none).

        Returns:
            The updated or new object, and whether it was created.
        """
        created = False
        try:
            obj = self.get(model=model, identifier=ids)
        except ObjectNotFound:
            obj = model(**ids, **attrs)
            self.add(obj=obj)
            created = True

        for attr, value in attrs.items():
            if getattr(obj, attr) != value:
                setattr(obj, attr, value)
        self._after_change(obj, created)
        return obj, created

    def update_or_add_model_instance(self, obj: DiffSyncModel) -> Tuple[DiffSyncModel, bool]:
        """Update the stored object with the attributes of ``obj``, or add ``obj`` if none is stored.

        Args:
            obj: Object carrying the wanted attributes.

        Returns:
            The updated or added object, and whether it was added.
        """
        attrs = obj.get_attrs()
        added = False
        try:
            obj = self.get(model=type(obj), identifier=obj.get_unique_id())
        except ObjectNotFound:
            self.add(obj=obj)
            added = True

        for attr, value in attrs.items():
            setattr(obj, attr, value)
        self._after_change(obj, added)
        return obj, added

    # ------------------------------------------------------------------------------------------------
    # Hooks for the engine and for backends
    # ------------------------------------------------------------------------------------------------
    # Range reads: a distributed diff reads one range of a type's objects at a time
    # ------------------------------------------------------------------------------------------------

    def _index(self, modelname: str) -> Mapping[str, DiffSyncModel]:
        index = self._uid_map(modelname)
        if index is None:
            index = {obj.get_unique_id(): obj for obj in self.get_all(model=modelname)}
        return index

    def uids_in_order(self, modelname: str, first: int, end: int) -> List[str]:
        """The uids at positions ``first`` to ``end - 1`` of a type's insertion order."""
        return list(self._index(modelname))[first:end]

    def existing_uids(self, modelname: str, uids: List[str]) -> Set[str]:
        """Which of these uids the store holds."""
        index = self._index(modelname)
        return {uid for uid in uids if uid in index}

    def fetch_subtrees(self, modelname: str, uids: List[str]) -> Dict[str, DiffSyncModel]:
        """Those of these objects the store holds, in the order given.

        A store that reads from elsewhere (RedisStore) also reads everything below them now, so that a diff of
        them reads nothing more.
        """
        index = self._index(modelname)
        return {uid: index[uid] for uid in uids if uid in index}

    # ------------------------------------------------------------------------------------------------

    def _after_change(self, obj: DiffSyncModel, created: bool) -> None:
        """Called after the store changed an object in place; stores that keep copies persist it here."""

    def _adapter_truthy(self, obj: DiffSyncModel) -> bool:
        """``bool(obj.adapter)`` as diffsync evaluates it (an Adapter is falsy when empty)."""
        return bool(obj.adapter)

    def _after_load(self) -> None:
        """Called when the adapter's ``load()`` returns; buffering stores write out what it added."""

    def engine_session(self) -> ContextManager[None]:
        """A context for one diff or sync (or a runner's step), inside which the store may cache and batch.

        The engine enters it around each diff and sync, so a store that talks to a server can read objects in
        bulk and keep them, and write its changes once, instead of one round trip per object. Sessions nest:
        only the outermost one begins and ends the caching. This store needs none, so it does nothing. (Named
        so that it clashes with no attribute a diffsync store of one's own may have, a database ``session``.)

        Returns:
            A context manager; when the outermost one exits, the store's buffered writes have been made.
        """
        return nullcontext()

    def _uid_map(self, modelname: str) -> Optional[Mapping[str, DiffSyncModel]]:
        """Return a live ``{uid: object}`` mapping of one type in insertion order, or None if there is none.

        The differ uses it to skip recomputing unique ids; the mapping must not be modified by the caller.
        """
        return None

    def _get_object_class_and_model(
        self, model: ModelRef
    ) -> Tuple[Union[DiffSyncModel, Type[DiffSyncModel], None], str]:
        """Resolve a model reference to its class (if known to the adapter) and its type name."""
        if isinstance(model, str):
            modelname = model
            if not hasattr(self.adapter, model):
                return None, modelname
            object_class = getattr(self.adapter, model)
        else:
            object_class = model
            modelname = model.get_type()
        return object_class, modelname

    @staticmethod
    def _get_uid(
        model: ModelRef,
        object_class: Union[DiffSyncModel, Type[DiffSyncModel], None],
        identifier: Union[str, Dict],
    ) -> str:
        """Turn an identifier (a uid already, or a dict of identifiers) into a uid."""
        if isinstance(identifier, str):
            return identifier
        if object_class:
            return object_class.create_unique_id(**identifier)
        raise ValueError(
            f"Invalid args: ({model}, {object_class}, {identifier}): "
            f"either {object_class} should be a class/instance or {identifier} should be a str"
        )


def reads_through_index(adapter: Adapter, method: str) -> bool:
    """Whether the engine may read the store's own index instead of calling ``adapter.<method>``.

    Only when neither the adapter nor the store overrides that method (an override must see every call, as
    in diffsync) and the store keeps an index at all (defines ``_uid_map``).
    """
    from core.adapter import Adapter  # pylint: disable=import-outside-toplevel

    if getattr(type(adapter), method, None) is not getattr(Adapter, method):
        return False
    store_cls = type(adapter.store)
    index_cls = next((klass for klass in store_cls.__mro__ if "_uid_map" in klass.__dict__), BaseStore)
    if index_cls is BaseStore:
        return False
    store_method = {"get_or_none": "get"}.get(method, method)
    return getattr(store_cls, store_method) is getattr(index_cls, store_method)
