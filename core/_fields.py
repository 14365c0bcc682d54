"""Per-class facts about a model's fields, worked out once when the class is defined.

``get_attrs()``/``get_identifiers()`` in diffsync go through ``model_dump`` for every object, which is the
largest single cost of a diff.  For a field whose type pydantic dumps to an equal value (str, int, enums,
ipaddress objects, lists of those, ...), reading the attribute directly gives the same result; this module
decides which fields are such "plain" fields.  Anything else (nested models, custom serializers, ``Any``,
excluded fields) keeps the exact ``model_dump`` path.
"""

from __future__ import annotations

import copy
import datetime
import decimal
import enum
import ipaddress
import types
import typing
import uuid
from typing import Any, Dict, Tuple

from typing_extensions import Annotated, Literal, get_args, get_origin

_SCALARS = frozenset(
    {
        str,
        int,
        float,
        bool,
        bytes,
        type(None),
        decimal.Decimal,
        uuid.UUID,
        datetime.datetime,
        datetime.date,
        datetime.time,
        datetime.timedelta,
        ipaddress.IPv4Address,
        ipaddress.IPv6Address,
        ipaddress.IPv4Network,
        ipaddress.IPv6Network,
        ipaddress.IPv4Interface,
        ipaddress.IPv6Interface,
    }
)
_CONTAINERS = frozenset({list, tuple, set, frozenset, dict})
_UNIONS: Tuple[Any, ...] = (typing.Union, types.UnionType) if hasattr(types, "UnionType") else (typing.Union,)


def _metadata_is_plain(metadata: Any) -> bool:
    """Constraints (max_length, gt, strict, ...) keep a value plain; serializers and markers do not."""
    for item in metadata:
        name = type(item).__name__
        if "Serializ" in name or name in ("SerializeAsAny", "FieldInfo"):
            return False
    return True


def annotation_kind(annotation: Any) -> str:
    """Classify an annotation: ``"scalar"``, ``"container"`` (plain, but mutable or nested) or ``"complex"``."""
    if annotation in _SCALARS:
        return "scalar"
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return "scalar"
    origin = get_origin(annotation)
    if origin is None:
        # A bare list/dict can hold anything (models included), which model_dump would convert.
        return "complex"
    args = get_args(annotation)
    if origin is Literal:
        ok = all(isinstance(arg, (str, int, bool, bytes, enum.Enum)) or arg is None for arg in args)
        return "scalar" if ok else "complex"
    if origin is Annotated:
        if not _metadata_is_plain(args[1:]):
            return "complex"
        return annotation_kind(args[0])
    if origin in _UNIONS:
        kinds = {annotation_kind(arg) for arg in args}
        if "complex" in kinds:
            return "complex"
        return "container" if "container" in kinds else "scalar"
    if origin in _CONTAINERS:
        for arg in args:
            if arg is Ellipsis:
                continue
            if annotation_kind(arg) == "complex":
                return "complex"
        return "container"
    return "complex"


def copier_for(annotation: Any) -> Any:
    """A function copying a plain container value as model_dump would: shallow when it holds scalars only."""
    origin = get_origin(annotation)
    args = [arg for arg in get_args(annotation) if arg is not Ellipsis]
    if origin is Annotated:
        return copier_for(args[0])
    if origin in _UNIONS:
        if all(annotation_kind(arg) == "scalar" for arg in args):
            return None
        return copy.deepcopy
    if origin in (tuple, frozenset) and all(annotation_kind(arg) == "scalar" for arg in args):
        return None  # immutable all the way down
    if origin in (list, set, dict) and all(annotation_kind(arg) == "scalar" for arg in args):
        return copy.copy
    return copy.deepcopy


class FieldPlan:
    """How to read a model class's identifiers and attributes the fast way, if it can be done at all.

    Attributes:
        plain: True when every identifier and attribute can be read directly instead of through model_dump.
        id_names: identifier names in field-definition order (the order model_dump gives).
        attr_names: attribute names in field-definition order.
        copy_names: attributes holding mutable containers, copied when handed out (model_dump copies too).
        copiers: for each name in copy_names, the function that copies its value.
    """

    __slots__ = ("plain", "id_names", "attr_names", "copy_names", "copiers")

    def __init__(
        self,
        plain: bool,
        id_names: Tuple[str, ...],
        attr_names: Tuple[str, ...],
        copy_names: frozenset,
        copiers: Dict[str, Any],
    ) -> None:
        self.plain = plain
        self.id_names = id_names
        self.attr_names = attr_names
        self.copy_names = copy_names
        self.copiers = copiers


def build_field_plan(cls: Any) -> FieldPlan:
    """Work out the FieldPlan of a DiffSyncModel subclass."""
    fields: Dict[str, Any] = cls.model_fields
    identifiers = cls._identifiers
    attributes = cls._attributes
    wanted = set(identifiers) | set(attributes)
    order = list(fields)
    id_names = tuple(name for name in order if name in identifiers)
    attr_names = tuple(name for name in order if name in attributes)

    plain = len(id_names) == len(set(identifiers)) and len(attr_names) == len(set(attributes))
    config = getattr(cls, "model_config", {}) or {}
    if config.get("serialize_by_alias"):
        plain = False
    decorators = getattr(cls, "__pydantic_decorators__", None)
    if decorators is not None:
        if decorators.model_serializers:
            plain = False
        for info in decorators.field_serializers.values():
            targets = getattr(info.info, "fields", ())
            if "*" in targets or wanted.intersection(targets):
                plain = False
    copiers: Dict[str, Any] = {}
    if plain:
        for name in wanted:
            field = fields[name]
            if field.exclude or not _metadata_is_plain(field.metadata):
                plain = False
                break
            kind = annotation_kind(field.annotation)
            if kind == "complex":
                plain = False
                break
            if kind == "container":
                copier = copier_for(field.annotation)
                if copier is not None:
                    copiers[name] = copier
    return FieldPlan(plain, id_names, attr_names, frozenset(copiers), copiers)


_JSON_SCALARS = frozenset({str, int, float, bool, type(None)})


def _json_native(annotation: Any) -> bool:
    """True when values of this annotation are already what a JSON-mode dump would give (and msgpack takes)."""
    if annotation in _JSON_SCALARS:
        return True
    origin = get_origin(annotation)
    if origin is None:
        return False
    args = get_args(annotation)
    if origin is Literal:
        return all(isinstance(arg, (str, int, bool)) or arg is None for arg in args)
    if origin is Annotated:
        return _metadata_is_plain(args[1:]) and _json_native(args[0])
    if origin in _UNIONS:
        return all(_json_native(arg) for arg in args)
    if origin in (list, tuple):
        return all(arg is Ellipsis or _json_native(arg) for arg in args)
    if origin is dict:
        return len(args) == 2 and args[0] is str and _json_native(args[1])
    return False


def json_native_model(cls: Any) -> bool:
    """True when a model's fields can be stored straight from its ``__dict__`` (no model_dump needed).

    ``model_flags`` (an int flag) and ``adapter`` (never stored) are handled by the caller.
    """
    config = getattr(cls, "model_config", {}) or {}
    if config.get("extra") == "allow" or config.get("serialize_by_alias") or cls.model_computed_fields:
        return False
    decorators = getattr(cls, "__pydantic_decorators__", None)
    if decorators is not None and (decorators.model_serializers or decorators.field_serializers):
        return False
    for name, field in cls.model_fields.items():
        if name in ("adapter", "model_flags"):
            continue
        if field.exclude or not _metadata_is_plain(field.metadata) or not _json_native(field.annotation):
            return False
    return True
