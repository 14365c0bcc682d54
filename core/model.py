"""DiffSyncModel: the base class of every model an Adapter stores, with diffsync 2.x's API."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any, ClassVar, Dict, List, Optional, Sequence, Set, Tuple, Union

import pydantic.main as _pydantic_main
from pydantic import BaseModel, ConfigDict

from core._fields import FieldPlan, build_field_plan
from core.enum import DiffSyncModelFlags, DiffSyncStatus
from core.exceptions import ObjectAlreadyExists, ObjectCrudException, ObjectNotFound, ObjectStoreWrongType

if sys.version_info >= (3, 11):
    from typing import Self
else:  # pragma: no cover
    from typing_extensions import Self

if TYPE_CHECKING:
    from core.adapter import Adapter

# DiffSyncModel defines a method called ``str``, which hides the builtin inside the class body.
StrType = str

_SUCCESS = DiffSyncStatus.SUCCESS
_UNKNOWN = DiffSyncStatus.UNKNOWN

# The syncer marks every destination object it visits UNKNOWN; objects with no private state of their
# own share this one read-only dict for that status instead of getting a dict each.
_SHARED_UNKNOWN: Dict[str, Any] = {"_status": _UNKNOWN, "_status_message": ""}
_DEFAULT_STATUS: Dict[str, Any] = {"_status": _SUCCESS, "_status_message": ""}
_STATUS_NAMES = frozenset({"_status", "_status_message"})

# Sets of field names shared by many instances (see DiffSyncModel.__init__), by content, and their ids.
_SHARED_FIELD_SETS: Dict[frozenset, Set[str]] = {}
_SHARED_FIELD_SET_IDS: Set[int] = set()
# (id of a shared set, field name) -> the shared set with that name added: the step an assignment takes.
_SHARED_FIELD_SET_STEPS: Dict[Tuple[int, str], Set[str]] = {}
# pydantic's memoized handler for assigning a plain field (no validation, not frozen), where pydantic has
# them (2.11 on); an older pydantic has neither the handler nor the memo, and every assignment goes through it.
_PLAIN_FIELD_SETTER = getattr(_pydantic_main, "_SIMPLE_SETATTR_HANDLERS", {}).get("model_field")
_object_setattr = object.__setattr__

# The plan of a class whose fields were never looked at: every read takes the model_dump path.
_UNPLANNED = FieldPlan(False, (), (), frozenset(), {})


def _shared_field_set(names: Set[str]) -> Optional[Set[str]]:
    """The shared set with exactly these names, made on first use; None once too many distinct sets exist."""
    key = frozenset(names)
    shared = _SHARED_FIELD_SETS.get(key)
    if shared is None:
        if len(_SHARED_FIELD_SETS) >= 4096:
            return None
        shared = _SHARED_FIELD_SETS[key] = set(names)
        _SHARED_FIELD_SET_IDS.add(id(shared))
    return shared


class DiffSyncModel(BaseModel):
    """Base class for all models.

    Read-only accessors are ``get_*()`` methods rather than properties so that subclasses may use names
    such as ``type``, ``keys`` or ``attrs`` as fields.  Subclasses declare:

    - ``_modelname``: the type name under which instances are stored and looked up.
    - ``_identifiers``: fields that together identify an instance, globally unique for the type.
    - ``_shortname``: optional fields giving a shorter name, unique among siblings only.
    - ``_attributes``: fields compared when diffing (identifiers excluded).
    - ``_children``: ``{child_modelname: field_name}``; the field holds the children's unique ids.

    A field may appear in at most one of ``_identifiers``, ``_attributes`` and ``_children``.

    Optionally, ``create_batch``/``update_batch``/``delete_batch`` make one call for many objects, and
    ``_batch_size`` says how many at most (see ``core.batch``).
    """

    _modelname: ClassVar[str] = "diffsyncmodel"
    _identifiers: ClassVar[Tuple[str, ...]] = ()
    _shortname: ClassVar[Tuple[str, ...]] = ()
    _attributes: ClassVar[Tuple[str, ...]] = ()
    _children: ClassVar[Dict[str, str]] = {}
    _batch_size: ClassVar[int] = 100
    """Most items per call of this model's batch hooks (a sync or a job may override it)."""

    model_flags: DiffSyncModelFlags = DiffSyncModelFlags.NONE
    """Behaviour flags for this model; set on the class or on one instance."""

    adapter: Optional[Adapter] = None
    """The Adapter that owns this instance, if any."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    # Worked out once per class by __pydantic_init_subclass__.
    _ss_plan: ClassVar[FieldPlan]
    _ss_fast_uid: ClassVar[bool]
    _ss_fast_ids: ClassVar[bool]
    _ss_fast_attrs: ClassVar[bool]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        # type.__new__ calls this for every subclass, even one below an override of __pydantic_init_subclass__
        # that does not call super(): such a class must not read its parent's fast paths (planned for other
        # declarations) but the reference's slow ones, until __pydantic_init_subclass__ plans it.
        super().__init_subclass__(**kwargs)
        type.__setattr__(cls, "_ss_plan", _UNPLANNED)
        type.__setattr__(cls, "_ss_fast_ids", False)
        type.__setattr__(cls, "_ss_fast_attrs", False)
        type.__setattr__(cls, "_ss_fast_uid", False)

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        """Check the declarations against the fields as soon as a subclass is defined, and plan fast paths."""
        super().__pydantic_init_subclass__(**kwargs)
        fields = cls.model_fields
        for attr in cls._identifiers:
            if attr not in fields and not hasattr(cls, attr):
                raise AttributeError(f"_identifiers {cls._identifiers} references missing or un-annotated attr {attr}")
        for attr in cls._shortname:
            if attr not in fields:
                raise AttributeError(f"_shortname {cls._shortname} references missing or un-annotated attr {attr}")
        for attr in cls._attributes:
            if attr not in fields:
                raise AttributeError(f"_attributes {cls._attributes} references missing or un-annotated attr {attr}")
        for attr in cls._children.values():
            if attr not in fields:
                raise AttributeError(f"_children {cls._children} references missing or un-annotated attr {attr}")

        overlap = set(cls._identifiers).intersection(cls._attributes)
        if overlap:
            raise AttributeError(f"Fields {overlap} are included in both _identifiers and _attributes.")
        overlap = set(cls._identifiers).intersection(cls._children.values())
        if overlap:
            raise AttributeError(f"Fields {overlap} are included in both _identifiers and _children.")
        overlap = set(cls._attributes).intersection(cls._children.values())
        if overlap:
            raise AttributeError(f"Fields {overlap} are included in both _attributes and _children.")

        cls._ss_plan_class()

    @classmethod
    def _ss_plan_class(cls) -> None:
        """Work out the class's fast paths, which pydantic's subclass hook alone would not do for the base class.

        Sets every ``_ss_`` attribute together, so that no class can end up with only some of them.
        """
        plan = build_field_plan(cls)
        base = DiffSyncModel
        if cls.dict is not base.dict:
            # get_identifiers/get_attrs go through self.dict() in the reference: an override must be honoured.
            plan.plain = False
        type.__setattr__(cls, "_ss_plan", plan)
        fast_ids = plan.plain and cls.get_identifiers is base.get_identifiers  # type: ignore[comparison-overlap]
        type.__setattr__(cls, "_ss_fast_ids", fast_ids)
        type.__setattr__(cls, "_ss_fast_attrs", plan.plain and cls.get_attrs is base.get_attrs)  # type: ignore
        type.__setattr__(
            cls,
            "_ss_fast_uid",
            fast_ids and cls.create_unique_id.__func__ is base.create_unique_id.__func__,  # type: ignore[attr-defined]
        )

    def __init__(self, /, **data: Any) -> None:
        self.__pydantic_validator__.validate_python(data, self_instance=self)
        # pydantic gives every instance its own set of the field names it was given (~700 bytes for ten
        # fields), nearly always the same names for one class.  Share one set per distinct content; the
        # instance gets a private copy back before anything can change it (see __setattr__).
        fields_set = self.__pydantic_fields_set__
        shared = _SHARED_FIELD_SETS.get(frozenset(fields_set))
        if shared is None:
            shared = _shared_field_set(fields_set)
        if shared is not None and shared is not fields_set:
            _object_setattr(self, "__pydantic_fields_set__", shared)

    def __setattr__(self, name: str, value: Any) -> None:
        fields_set = self.__pydantic_fields_set__
        if id(fields_set) in _SHARED_FIELD_SET_IDS and name not in fields_set:
            # Assigning a field adds it to the set: switch to the shared set with that name added (pydantic's
            # own add() is then a no-op), or to a private copy for anything unusual.
            step = (id(fields_set), name)
            shared = _SHARED_FIELD_SET_STEPS.get(step)
            if shared is None and name in self.__class__.model_fields:
                shared = _shared_field_set(fields_set | {name})
                if shared is not None:
                    _SHARED_FIELD_SET_STEPS[step] = shared
            fields_set = shared if shared is not None else set(fields_set)
            _object_setattr(self, "__pydantic_fields_set__", fields_set)
        if _PLAIN_FIELD_SETTER is not None and self.__pydantic_setattr_handlers__.get(name) is _PLAIN_FIELD_SETTER:
            # What pydantic's memoized handler of a plain field does, without its dispatch: every object an
            # adapter adds gets its adapter set this way, so this is paid once per object of a load.
            self.__dict__[name] = value
            fields_set.add(name)
            return
        if name in _STATUS_NAMES:
            status, message = self.get_status()
            if name == "_status":
                self.set_status(value, message)
            else:
                self.set_status(status, value)
            return
        if self.__pydantic_private__ is _SHARED_UNKNOWN and name.startswith("_"):
            _object_setattr(self, "__pydantic_private__", dict(_SHARED_UNKNOWN))
        super().__setattr__(name, value)

    def __getattr__(self, name: str) -> Any:
        # diffsync declares _status/_status_message as private attributes; code that reads them directly
        # keeps working although they are only stored once set (see set_status).
        if name in _STATUS_NAMES:
            status, message = self.get_status()
            return status if name == "_status" else message
        return super().__getattr__(name)  # type: ignore[misc]

    def __eq__(self, other: object) -> bool:
        result = super().__eq__(other)
        if result is False and isinstance(other, DiffSyncModel):
            # A model whose status was never set equals one set to the default status, as in diffsync.
            mine, theirs = self.__pydantic_private__, other.__pydantic_private__
            if (mine is None) != (theirs is None) or mine is _SHARED_UNKNOWN or theirs is _SHARED_UNKNOWN:
                if {**_DEFAULT_STATUS, **(mine or {})} == {**_DEFAULT_STATUS, **(theirs or {})}:
                    _object_setattr(self, "__pydantic_private__", None)
                    _object_setattr(other, "__pydantic_private__", None)
                    try:
                        return super().__eq__(other)
                    finally:
                        _object_setattr(self, "__pydantic_private__", mine)
                        _object_setattr(other, "__pydantic_private__", theirs)
        return result

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f'{self.get_type()} "{self.get_unique_id()}"'

    def __str__(self) -> str:
        return self.get_unique_id()

    def dict(self, **kwargs: Any) -> Dict:  # type: ignore[override]
        """Convert this model to a dict, leaving out the (unserializable) adapter field unless told otherwise."""
        if "exclude" not in kwargs:
            kwargs["exclude"] = {"adapter"}
        return super().model_dump(**kwargs)

    def json(self, **kwargs: Any) -> StrType:  # type: ignore[override]
        """Convert this model to a JSON string, without the adapter field and without default values."""
        if "exclude" not in kwargs:
            kwargs["exclude"] = {"adapter"}
        if "exclude_defaults" not in kwargs:
            kwargs["exclude_defaults"] = True
        return super().model_dump_json(**kwargs)

    def str(self, include_children: bool = True, indent: int = 0) -> StrType:
        """Build a detailed string representation of this model and, optionally, of its children."""
        margin = " " * indent
        output = f"{margin}{self.get_type()}: {self.get_unique_id()}: {self.get_attrs()}"
        for modelname, fieldname in self._children.items():
            output += f"\n{margin}  {fieldname}"
            child_ids = getattr(self, fieldname)
            if not child_ids:
                output += ": []"
            elif not self.adapter or not include_children:
                output += f": {child_ids}"
            else:
                for child_id in child_ids:
                    try:
                        child = self.adapter.get(modelname, child_id)
                        output += "\n" + child.str(include_children=include_children, indent=indent + 4)
                    except ObjectNotFound:
                        output += f"\n{margin}    {child_id} (ERROR: details unavailable)"
        return output

    # ------------------------------------------------------------------------------------------------
    # Status of the last create/update/delete
    # ------------------------------------------------------------------------------------------------

    def set_status(self, status: DiffSyncStatus, message: StrType = "") -> None:
        """Record the outcome of a create/update/delete of this model, for the syncer to log."""
        # Kept in pydantic's private-attribute dict, created on first use: most objects never get a status,
        # and not declaring private attributes spares every instance a dict.
        private = self.__pydantic_private__
        if private is None or private is _SHARED_UNKNOWN:
            if status is _UNKNOWN and not message:
                _object_setattr(self, "__pydantic_private__", _SHARED_UNKNOWN)
            else:
                _object_setattr(self, "__pydantic_private__", {"_status": status, "_status_message": message})
        else:
            private["_status"] = status
            private["_status_message"] = message

    def get_status(self) -> Tuple[DiffSyncStatus, StrType]:
        """Get the status of the last create/update/delete of this model, and its message."""
        private = self.__pydantic_private__
        if private is None:
            return _SUCCESS, ""
        return private.get("_status", _SUCCESS), private.get("_status_message", "")

    # ------------------------------------------------------------------------------------------------
    # Create / update / delete
    # ------------------------------------------------------------------------------------------------

    @classmethod
    def create_base(cls, adapter: Adapter, ids: Dict, attrs: Dict) -> Optional[Self]:
        """Instantiate this class; not meant to be overridden (override ``create`` instead).

        Args:
            adapter: The adapter the new object belongs to.
            ids: Identifiers of the new object.
            attrs: Attributes of the new object.

        Returns:
            The new instance.
        """
        model = cls(**ids, adapter=adapter, **attrs)
        model.set_status(DiffSyncStatus.SUCCESS, "Created successfully")
        return model

    @classmethod
    def create(cls, adapter: Adapter, ids: Dict, attrs: Dict) -> Optional[Self]:
        """Create the object, here and in the system behind the adapter.

        Overrides must call ``super().create()`` or ``cls.create_base()``, and may then call ``set_status()``
        to say more about what happened in the underlying system.

        Args:
            adapter: The adapter the new object belongs to.
            ids: Identifiers of the new object.
            attrs: Attributes of the new object.

        Returns:
            The new instance, or None when creation failed in such a way that the children must not be created.

        Raises:
            ObjectNotCreated: if creation failed.
        """
        return cls.create_base(adapter=adapter, ids=ids, attrs=attrs)

    def update_base(self, attrs: Dict) -> Optional[Self]:
        """Set the given attributes on this instance; not meant to be overridden (override ``update``).

        Args:
            attrs: Attributes to change, with their new values.

        Returns:
            This instance.
        """
        for attr, value in attrs.items():
            setattr(self, attr, value)
        self.set_status(DiffSyncStatus.SUCCESS, "Updated successfully")
        return self

    def update(self, attrs: Dict) -> Optional[Self]:
        """Update the object, here and in the system behind the adapter.

        Overrides must call ``super().update()`` or ``self.update_base()``.

        Args:
            attrs: Attributes to change, with their new values.

        Returns:
            This instance, or None when the update failed in such a way that the children must not be changed.

        Raises:
            ObjectNotUpdated: if the update failed.
        """
        return self.update_base(attrs=attrs)

    def delete_base(self) -> Optional[Self]:
        """Mark this instance as deleted; not meant to be overridden (override ``delete``).

        Returns:
            This instance.
        """
        self.set_status(DiffSyncStatus.SUCCESS, "Deleted successfully")
        return self

    def delete(self) -> Optional[Self]:
        """Delete the object in the system behind the adapter.

        Overrides must call ``super().delete()`` or ``self.delete_base()``.

        Returns:
            This instance, or None when the deletion failed in such a way that the children must not be deleted.

        Raises:
            ObjectNotDeleted: if the deletion failed.
        """
        return self.delete_base()

    # ------------------------------------------------------------------------------------------------
    # Batch hooks: one call for many objects (see core.batch for when and in what order they run)
    # ------------------------------------------------------------------------------------------------

    @classmethod
    def create_batch(
        cls, adapter: Adapter, items: Sequence[Tuple[Dict, Dict]]
    ) -> Sequence[Union[Self, None, BaseException]]:
        """Create many objects of this class in one go; override it to make one call to a bulk API.

        Only an overriding class has its creates grouped; this default calls ``create`` for each item in
        order, so it behaves exactly as single hooks.  Build each result with ``create_base`` (or
        ``super().create``/``cls.create_base``) and ``set_status`` as a single hook would.

        Args:
            adapter: The adapter the new objects belong to.
            items: ``(ids, attrs)`` of each object, in the sync's order.

        Returns:
            One result per item, in the same order: the new instance, None (failed: its children are not
            created), or an exception (an ``ObjectCrudException`` fails that item as a single hook's would).
        """
        results: List[Union[Self, None, BaseException]] = []
        for ids, attrs in items:
            try:
                results.append(cls.create(adapter=adapter, ids=ids, attrs=attrs))
            except ObjectCrudException as err:
                results.append(err)
        return results

    @classmethod
    def update_batch(
        cls, adapter: Adapter, items: Sequence[Tuple[Self, Dict]]
    ) -> Sequence[Union[Self, None, BaseException]]:
        """Update many objects of this class in one go (see ``create_batch``).

        Args:
            adapter: The adapter the objects belong to.
            items: ``(object, attrs to change)`` of each object; results come from ``update_base``.

        Returns:
            One result per item, in order: the updated instance, None or an exception.
        """
        results: List[Union[Self, None, BaseException]] = []
        for model, attrs in items:
            try:
                results.append(model.update(attrs=attrs))
            except ObjectCrudException as err:
                results.append(err)
        return results

    @classmethod
    def delete_batch(cls, adapter: Adapter, items: Sequence[Self]) -> Sequence[Union[Self, None, BaseException]]:
        """Delete many objects of this class in one go (see ``create_batch``).

        Args:
            adapter: The adapter the objects belong to.
            items: The objects to delete; results come from ``delete_base``.

        Returns:
            One result per item, in order: the deleted instance, None or an exception.
        """
        results: List[Union[Self, None, BaseException]] = []
        for model in items:
            try:
                results.append(model.delete())
            except ObjectCrudException as err:
                results.append(err)
        return results

    # ------------------------------------------------------------------------------------------------
    # Identity and attributes
    # ------------------------------------------------------------------------------------------------

    @classmethod
    def get_type(cls) -> StrType:
        """Get the type name (``_modelname``) under which objects of this class are stored."""
        return cls._modelname

    @classmethod
    def create_unique_id(cls, **identifiers: Any) -> StrType:
        """Build the unique id of an object of this class from its identifiers.

        Args:
            **identifiers: identifier names and values, as returned by ``get_identifiers()``.
        """
        return "__".join(str(identifiers[key]) for key in cls._identifiers)

    @classmethod
    def get_children_mapping(cls) -> Dict[StrType, StrType]:
        """Get the mapping of child type names to the fields holding their unique ids."""
        return cls._children

    def get_identifiers(self) -> Dict:
        """Get the identifiers of this object and their values, in field-definition order."""
        if self._ss_fast_ids:
            return self._read_plain(self._ss_plan.id_names)
        return self.dict(include=set(self._identifiers))

    def get_attrs(self) -> Dict:
        """Get the attributes of this object (``_attributes`` only) and their values.

        Mutable values are copies, as with pydantic's ``model_dump``, so changing them does not change the model.
        """
        plan = self._ss_plan
        if plan.plain:
            return self._read_plain(plan.attr_names)
        return self.dict(include=set(self._attributes))

    def _read_plain(self, names: Tuple[str, ...]) -> Dict:
        """``model_dump(include=names)`` for plain fields: values as they are, containers copied."""
        values = self.__dict__
        copiers = self._ss_plan.copiers
        if copiers:
            return {name: copiers[name](values[name]) if name in copiers else values[name] for name in names}
        return {name: values[name] for name in names}

    def get_unique_id(self) -> StrType:
        """Get the unique id of this object, built by ``create_unique_id`` from its identifiers."""
        if self._ss_fast_uid:
            values = self.__dict__
            names = self._identifiers
            count = len(names)
            if count == 1:
                return str(values[names[0]])
            if count == 2:  # the usual compound id (a child within its parent); no comprehension to call
                return str(values[names[0]]) + "__" + str(values[names[1]])
            return "__".join([str(values[name]) for name in names])
        return self.create_unique_id(**self.get_identifiers())

    def get_shortname(self) -> StrType:
        """Get the short name of this object (unique among siblings only); the unique id if none is declared."""
        names = self._shortname
        if names:
            values = self.__dict__
            if len(names) == 1 and names[0] in values:  # a field (the usual case): no comprehension to call
                return str(values[names[0]])
            return "__".join([str(getattr(self, key)) for key in names])
        return self.get_unique_id()

    # ------------------------------------------------------------------------------------------------
    # Children
    # ------------------------------------------------------------------------------------------------

    def add_child(self, child: DiffSyncModel) -> None:
        """Add a child's unique id to the field declared for its type in ``_children``.

        Only the reference is kept here; the child itself lives in the adapter's store.

        Raises:
            ObjectStoreWrongType: if the child's type is not declared in ``_children``.
            ObjectAlreadyExists: if the child's unique id is already there.
        """
        child_type = child.get_type()
        if child_type not in self._children:
            raise ObjectStoreWrongType(
                f"Unable to store {child_type} as a child of {self.get_type()}; "
                f"valid types are {sorted(self._children.keys())}"
            )
        child_ids = getattr(self, self._children[child_type])
        uid = child.get_unique_id()
        if uid in child_ids:
            raise ObjectAlreadyExists(f"Already storing a {child_type} with unique_id {uid}", child)
        child_ids.append(uid)
        self._children_changed()

    def remove_child(self, child: DiffSyncModel) -> None:
        """Remove a child's unique id from the field declared for its type in ``_children``.

        Raises:
            ObjectStoreWrongType: if the child's type is not declared in ``_children``.
            ObjectNotFound: if the child's unique id is not there.
        """
        child_type = child.get_type()
        if child_type not in self._children:
            raise ObjectStoreWrongType(
                f"Unable to find and delete {child_type} as a child of {self.get_type()}; "
                f"valid types are {sorted(self._children.keys())}"
            )
        attr_name = self._children[child_type]
        child_ids = getattr(self, attr_name)
        uid = child.get_unique_id()
        if uid not in child_ids:
            raise ObjectNotFound(f"{child} was not found as a child in {attr_name}")
        child_ids.remove(uid)
        self._children_changed()

    def _children_changed(self) -> None:
        """Tell the owning adapter's store that this object's children changed, for stores that keep copies."""
        adapter = self.adapter
        if adapter is not None:
            adapter.store._after_change(self, False)


# pydantic runs __pydantic_init_subclass__ for subclasses only; the base class is usable as a model too.
DiffSyncModel._ss_plan_class()
