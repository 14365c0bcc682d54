"""Diff elements to plain msgpack-able data and back, with attribute values typed through the models.

A distributed sync keeps its diff in Redis and rebuilds parts of it on other processes.  Attribute values
reach the models' hooks there, so they must come back as the same Python values the local engine would
hand over (datetimes, IP addresses, tuples; nested models as dicts, as ``model_dump()`` gives them).
Values travel in pydantic's JSON form, are validated back through the annotation of the model field they
belong to and dumped in Python mode: the source model's fields for the source side, the target model's for
keys and the target side, the same classes the stores use.
Nothing but plain data is ever decoded (no pickle, no class named by the data).
"""

from __future__ import annotations

from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple, Type

from pydantic import TypeAdapter
from pydantic_core import to_jsonable_python

from core.diff import Diff, DiffElement
from core.model import DiffSyncModel

_SCALARS = frozenset({str, int, float, bool, type(None)})

ElementRecord = List[Any]
"""``[type, name, keys, source_attrs or None, dest_attrs or None, [child records...]]``."""


def _identity(value: Any) -> Any:
    return value


def _python_mode(adapter: TypeAdapter) -> Callable[[Any], Any]:
    """Validate a JSON-form value, then give it as ``model_dump()`` does (the form diff attributes have)."""
    validate = adapter.validate_python
    dump = adapter.dump_python

    def decode(value: Any) -> Any:
        return dump(validate(value))

    return decode


class _FieldCodec:
    """Encoders and decoders of the fields of one model class (plain scalars pass through untouched)."""

    __slots__ = ("_cls", "_encoders", "_decoders")

    def __init__(self, cls: Optional[Type[DiffSyncModel]]) -> None:
        self._cls = cls
        self._encoders: Dict[str, Callable[[Any], Any]] = {}
        self._decoders: Dict[str, Callable[[Any], Any]] = {}

    def _annotation(self, name: str) -> Any:
        cls = self._cls
        field = cls.model_fields.get(name) if cls is not None else None
        return None if field is None else field.annotation

    def encoder(self, name: str) -> Callable[[Any], Any]:
        found = self._encoders.get(name)
        if found is None:
            annotation = self._annotation(name)
            found = _identity if annotation in _SCALARS else to_jsonable_python
            self._encoders[name] = found
        return found

    def decoder(self, name: str) -> Callable[[Any], Any]:
        found = self._decoders.get(name)
        if found is None:
            annotation = self._annotation(name)
            if annotation is None or annotation in _SCALARS:
                found = _identity
            else:
                found = _python_mode(TypeAdapter(annotation))
            self._decoders[name] = found
        return found

    def encode(self, values: Optional[Dict[str, Any]]) -> Optional[Dict[str, Any]]:
        if values is None:
            return None
        encoders = self._encoders
        encoded = {}
        for name, value in values.items():
            encode = encoders.get(name) or self.encoder(name)
            encoded[name] = value if encode is _identity else encode(value)
        return encoded

    def decode(self, values: Optional[Dict[str, Any]]) -> Optional[Dict[str, Any]]:
        if values is None:
            return None
        if not isinstance(values, dict):
            raise ValueError(f"malformed diff record: attributes must be a map, not {type(values).__name__}")
        return {name: self.decoder(name)(value) for name, value in values.items()}


class DiffCodec:
    """Encodes diff elements between a source and a target adapter class, and decodes them again.

    Args:
        source: The source adapter (class or instance): its model classes type the source attributes.
        target: The target adapter (class or instance): its model classes type keys and target attributes.
    """

    def __init__(self, source: Any, target: Any) -> None:
        self._source = source
        self._target = target
        self._codecs: Dict[Tuple[bool, str], _FieldCodec] = {}

    def _codec(self, target_side: bool, modelname: str) -> _FieldCodec:
        key = (target_side, modelname)
        codec = self._codecs.get(key)
        if codec is None:
            owner = self._target if target_side else self._source
            cls = getattr(owner, modelname, None)
            if not (isinstance(cls, type) and issubclass(cls, DiffSyncModel)):
                cls = None
            codec = self._codecs[key] = _FieldCodec(cls)
        return codec

    def encode(self, element: DiffElement, changed_only: bool = False) -> ElementRecord:
        """One element and everything below it, as plain data.

        With ``changed_only``, children with no change anywhere below them are left out: a job keeps what its
        shards apply and what ``Diff.str()``/``dict()`` show, not the unchanged parts of a changed subtree.
        """
        modelname = element.type
        target_codec = self._codec(True, modelname)
        children = element.get_children()
        if changed_only:
            children = (child for child in children if child.has_diffs(include_children=True))
        return [
            modelname,
            element.name,
            target_codec.encode(element.keys),
            self._codec(False, modelname).encode(element.source_attrs),
            target_codec.encode(element.dest_attrs),
            [self.encode(child, changed_only) for child in children],
        ]

    def decode(
        self,
        record: ElementRecord,
        source_name: str = "source",
        dest_name: str = "dest",
        diff_class: Type[Diff] = Diff,
        visit: Optional[Callable[[DiffElement], None]] = None,
    ) -> DiffElement:
        """Rebuild an element (and its children) from ``encode``'s data.

        Args:
            record: What ``encode`` returned (after a msgpack round trip).
            source_name: Name of the source adapter, as the element records it.
            dest_name: Name of the target adapter.
            diff_class: Diff class for the children's diffs.
            visit: Called with each rebuilt element in pre-order (parent before its children).

        Raises:
            ValueError: if the record is not shaped as ``encode`` makes them.
        """
        if not (isinstance(record, list) and len(record) == 6 and isinstance(record[5], list)):
            raise ValueError("malformed diff record: expected [type, name, keys, source, dest, children]")
        modelname, name, keys, source, dest, children = record
        if not isinstance(modelname, str) or not isinstance(name, str):
            raise ValueError("malformed diff record: type and name must be strings")
        target_codec = self._codec(True, modelname)
        element = DiffElement(
            modelname, name, target_codec.decode(keys) or {}, source_name, dest_name, diff_class=diff_class
        )
        element.add_attrs(source=self._codec(False, modelname).decode(source), dest=target_codec.decode(dest))
        if visit is not None:
            visit(element)
        for child in children:
            element.add_child(self.decode(child, source_name, dest_name, diff_class, visit))
        return element


def walk(element: DiffElement) -> Iterator[DiffElement]:
    """An element and all below it, in pre-order (the order ``DiffCodec.decode`` visits them)."""
    yield element
    for child in element.get_children():
        yield from walk(child)
