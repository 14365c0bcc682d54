"""The record codec of RedisStore: models to msgpack records and back, safely against hostile stored values.

A record is msgpack ``[RECORD_VERSION, fields, fields_set]`` where ``fields`` is pydantic's JSON-mode dump of
the model (without ``adapter``).  A record is read back through a class the caller chooses, never anything
named by the stored data, and its fields are validated through that class; nothing is ever unpickled.  The
unpacker refuses extension types, and msgpack caps the sizes of strings, binaries, arrays and maps at the
record's own length (``unpackb``'s defaults: a record can never claim more than it holds); map keys are
strings or bytes only (``strict_map_key``, the default).
"""

from __future__ import annotations

from typing import Any, Dict, Iterable, List, Optional, Set, Tuple, Type

import msgpack
from pydantic import BaseModel, ValidationError

from core._fields import json_native_model
from core.exceptions import ObjectStoreException
from core.model import _SHARED_FIELD_SET_IDS, DiffSyncModel, _shared_field_set

RECORD_VERSION = 1

_packb = msgpack.Packer(use_bin_type=True, autoreset=True).pack
_unpackb = msgpack.unpackb
_object_setattr = object.__setattr__


def _big_ints_as_strings(value: Any) -> Any:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and not -(2**63) <= value < 2**64:
        return str(value)
    if isinstance(value, dict):
        return {key: _big_ints_as_strings(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_big_ints_as_strings(item) for item in value]
    return value


def _is_shared(fields_set: Set[str]) -> bool:
    return id(fields_set) in _SHARED_FIELD_SET_IDS


def _reject_ext(code: int, data: bytes) -> Any:
    raise ValueError(f"msgpack extension type {code} is not allowed in a shardsync record")


class RecordCodec:
    """Encodes models into records and decodes records through a given class, with one store's caches."""

    __slots__ = ("_fast_encode", "_sorted_sets", "_field_sets")

    def __init__(self) -> None:
        self._fast_encode: Dict[type, bool] = {}
        self._sorted_sets: Dict[int, List[str]] = {}
        self._field_sets: Dict[Tuple[str, ...], Set[str]] = {}

    def encode(self, obj: DiffSyncModel) -> bytes:
        """The record of an object's current state."""
        cls = obj.__class__
        fast = self._fast_encode.get(cls)
        if fast is None:
            fast = self._fast_encode[cls] = json_native_model(cls)
        if fast:
            # Every field is JSON-native already (str, int, bool, lists of those...): skip model_dump.
            fields = obj.__dict__.copy()
            fields.pop("adapter", None)
            flags = fields.get("model_flags")
            if flags is not None:
                fields["model_flags"] = flags._value_
        else:
            fields = BaseModel.model_dump(obj, mode="json", exclude={"adapter"})
        fields_set = obj.__pydantic_fields_set__
        shared = _is_shared(fields_set)
        names = self._sorted_sets.get(id(fields_set)) if shared else None
        if names is None:
            names = sorted(fields_set)
            if shared:
                self._sorted_sets[id(fields_set)] = names
        try:
            return _packb([RECORD_VERSION, fields, names])
        except OverflowError:
            # msgpack integers stop at 64 bits; larger ones travel as strings and validate back into ints.
            return _packb([RECORD_VERSION, _big_ints_as_strings(fields), names])

    def decode(
        self, cls: Type[DiffSyncModel], objects_key: str, uid: str, raw: bytes, adapter: Optional[Any]
    ) -> DiffSyncModel:
        """A new ``cls`` instance from the record stored at ``objects_key`` field ``uid``, attached to ``adapter``.

        Raises:
            ObjectStoreException: if the stored value is not a record, does not validate as ``cls``, or holds
                an object with another unique id than ``uid``.
        """
        return self.decode_many(cls, objects_key, ((uid, raw),), adapter)[0]

    def decode_many(
        self, cls: Type[DiffSyncModel], objects_key: str, stored: Iterable[Tuple[str, bytes]], adapter: Optional[Any]
    ) -> List[DiffSyncModel]:
        """``decode`` of many ``(uid, record)`` pairs of one type, with the per-type lookups done once.

        A diff range or a session reads thousands of records at once.

        Raises:
            ObjectStoreException: as ``decode``, for the first record that fails.
        """
        validate = cls.__pydantic_validator__.validate_python
        new = cls.__new__
        field_sets = self._field_sets
        decoded: List[DiffSyncModel] = []
        for uid, raw in stored:
            try:
                record = _unpackb(raw, ext_hook=_reject_ext)
            except Exception as err:  # noqa: BLE001 - any decoding failure is reported the same way
                raise ObjectStoreException(
                    f"Stored value at {objects_key} field {uid!r} is not a shardsync record for model "
                    f"{cls.__name__} ({type(err).__name__}: {err})"
                ) from None
            if not (
                record.__class__ is list
                and len(record) == 3
                and record[0] == RECORD_VERSION
                and record[1].__class__ is dict
                and record[2].__class__ is list
            ):
                raise ObjectStoreException(
                    f"Stored value at {objects_key} field {uid!r} is not a shardsync record for model "
                    f"{cls.__name__} (expected [version {RECORD_VERSION}, fields, fields_set])"
                )
            obj = new(cls)
            try:
                # What model_validate does, into the new instance: validation through the caller's own class.
                validate(record[1], self_instance=obj)
            except ValidationError as err:
                raise ObjectStoreException(
                    f"Stored value at {objects_key} field {uid!r} does not validate as model {cls.__name__}: {err}"
                ) from None
            names = tuple(record[2])
            shared_set = field_sets.get(names)
            if shared_set is None:
                shared_set = self._field_set(cls, objects_key, uid, names)
            _object_setattr(obj, "__pydantic_fields_set__", shared_set)
            obj.__dict__["adapter"] = adapter
            actual = obj.get_unique_id()
            if actual != uid:
                raise ObjectStoreException(
                    f"Stored value at {objects_key} field {uid!r} is a {cls.__name__} with unique id {actual!r}, "
                    f"not {uid!r}"
                )
            decoded.append(obj)
        return decoded

    def _field_set(self, cls: type, objects_key: str, uid: str, names: Tuple[Any, ...]) -> Set[str]:
        """The set of field names a record says were given: shared when it can be, checked first."""
        if not all(isinstance(name, str) for name in names):
            raise ObjectStoreException(
                f"Stored value at {objects_key} field {uid!r} has a malformed fields_set for model {cls.__name__}"
            )
        shared_set = _shared_field_set(set(names))
        if shared_set is None:
            return set(names)
        self._field_sets[names] = shared_set
        return shared_set
