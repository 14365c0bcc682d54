"""LocalStore: objects kept in memory, one dict per model type keyed by unique id."""

from __future__ import annotations

from collections import defaultdict
from typing import TYPE_CHECKING, Any, Dict, List, Mapping, Optional, Set, Union

from core.exceptions import ObjectAlreadyExists, ObjectNotFound
from core.store import BaseStore, ModelRef

if TYPE_CHECKING:
    from core import DiffSyncModel


class LocalStore(BaseStore):
    """In-memory store; the default for an Adapter and the fastest for anything that fits in one process."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # A defaultdict, as in diffsync: looking a type up registers it, which shows in get_all_model_names()
        # and Adapter.dict(); keeping that keeps dict() output identical for ported code.
        self._data: Dict[str, Dict[str, DiffSyncModel]] = defaultdict(dict)

    def get_all_model_names(self) -> Set[str]:
        """Get the names of all model types held in the store."""
        return set(self._data.keys())

    def get(self, *, model: ModelRef, identifier: Union[str, Dict]) -> DiffSyncModel:
        """Get one object by its unique id (see BaseStore.get)."""
        if model.__class__ is str:
            modelname: str = model  # type: ignore[assignment]
            if identifier.__class__ is str:
                uid: str = identifier  # type: ignore[assignment]
            else:
                object_class, modelname = self._get_object_class_and_model(model)
                uid = self._get_uid(model, object_class, identifier)
        else:
            modelname = model.get_type()  # type: ignore[union-attr]
            uid = identifier if identifier.__class__ is str else model.create_unique_id(**identifier)  # type: ignore
        try:
            return self._data[modelname][uid]
        except KeyError:
            raise ObjectNotFound(f"{modelname} {uid} not present in {self}") from None

    def get_all(self, *, model: ModelRef) -> List[DiffSyncModel]:
        """Get all objects of one type, in the order they were added."""
        modelname = model if isinstance(model, str) else model.get_type()
        return list(self._data[modelname].values())

    def get_by_uids(self, *, uids: List[str], model: ModelRef) -> List[DiffSyncModel]:
        """Get several objects of one type by their unique ids (see BaseStore.get_by_uids)."""
        if not uids:
            return []  # as diffsync: no look-up, so the type is not registered
        modelname = model if isinstance(model, str) else model.get_type()
        data = self._data[modelname]
        try:
            return [data[uid] for uid in uids]
        except KeyError as err:
            raise ObjectNotFound(f"{modelname} {err.args[0]} not present in {self}") from None

    def add(self, *, obj: DiffSyncModel) -> None:
        """Add an object (see BaseStore.add); adding the very same object again is a no-op."""
        modelname = obj.get_type()
        uid = obj.get_unique_id()
        data = self._data[modelname]
        existing_obj = data.get(uid)
        if existing_obj is not None:
            if existing_obj is not obj:
                raise ObjectAlreadyExists(f"Object {uid} already present", obj)
            return
        if not obj.adapter:
            obj.adapter = self.adapter
        data[uid] = obj

    def update(self, *, obj: DiffSyncModel) -> None:
        """Store ``obj`` under its uid, replacing any other object stored there."""
        self._data[obj.get_type()][obj.get_unique_id()] = obj

    def remove_item(self, modelname: str, uid: str) -> None:
        """Remove one object by type name and uid."""
        data = self._data[modelname]
        if uid not in data:
            raise ObjectNotFound(f"{modelname} {uid} not present in {self}")
        del data[uid]

    def count(self, *, model: Optional[ModelRef] = None) -> int:
        """Count the objects of one type, or of all types."""
        if not model:
            return sum(len(entries) for entries in self._data.values())
        modelname = model if isinstance(model, str) else model.get_type()
        return len(self._data[modelname])

    def _uid_map(self, modelname: str) -> Optional[Mapping[str, DiffSyncModel]]:
        return self._data[modelname]
