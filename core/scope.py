"""What a scoped diff or sync may look at and touch: some top-level types, some of their objects, some child types.

A scope narrows a diff to part of both datasets, the same part on each side: an object outside it is neither
compared nor written, so a target object outside the scope is never deleted, and one inside it is compared with
its counterpart only. Scopes are plain data (they travel with a job and are kept in its report):

- ``types``: the top-level types in scope (default: every one);
- ``ids``: top-level unique ids in scope (of any type in scope; default: all);
- ``where``: per top-level type, identifier values an object must have (``{"site": {"region": ["emea"]}}``:
  sites whose ``region`` identifier is ``emea``), a predicate on identifiers that needs no attribute;
- ``children``: the child types included below the top level (default: every one). An object of an excluded
  type is left alone, and so is any object below it.

A top-level object that only the target has, and that holds children of an excluded type, is not deleted (its
deletion would take them with it in most systems): the diff skips it, and says so in its ``skip`` count.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, Mapping, Optional, Tuple, Union

IdValues = Mapping[str, Tuple[Any, ...]]


def _strings(value: Any, what: str) -> Optional[Tuple[str, ...]]:
    if value is None:
        return None
    if isinstance(value, str) or not isinstance(value, Iterable):
        raise ValueError(f"scope {what} must be a list of strings, not {value!r}")
    found = tuple(value)
    if not all(isinstance(item, str) and item for item in found):
        raise ValueError(f"scope {what} must be non-empty strings: {list(found)!r}")
    return found


@dataclass(frozen=True)
class Scope:
    """The part of two datasets a diff looks at (see the module's docstring); ``Scope()`` is everything."""

    types: Optional[Tuple[str, ...]] = None
    ids: Optional[Tuple[str, ...]] = None
    where: Mapping[str, IdValues] = field(default_factory=dict)
    children: Optional[Tuple[str, ...]] = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "types", _strings(self.types, "types"))
        object.__setattr__(self, "ids", _strings(self.ids, "ids"))
        object.__setattr__(self, "children", _strings(self.children, "children"))
        if not isinstance(self.where, Mapping):
            raise ValueError(f"scope where must map a top-level type to identifier values, not {self.where!r}")
        where: Dict[str, Dict[str, Tuple[Any, ...]]] = {}
        for modelname, values in self.where.items():
            if not isinstance(values, Mapping) or not values:
                raise ValueError(f"scope where[{modelname!r}] must map identifiers to allowed values")
            where[modelname] = {
                name: tuple(allowed) if isinstance(allowed, (list, tuple, set, frozenset)) else (allowed,)
                for name, allowed in values.items()
            }
        object.__setattr__(self, "where", where)
        object.__setattr__(self, "_id_set", frozenset(self.ids) if self.ids is not None else None)
        object.__setattr__(self, "_child_set", frozenset(self.children) if self.children is not None else None)

    @classmethod
    def from_data(cls, data: Any) -> Optional[Scope]:
        """A scope from plain data (a job's ``scope``), None for None; a Scope is returned as is.

        Raises:
            ValueError: naming the field that is not what a scope takes.
        """
        if data is None or isinstance(data, Scope):
            return data
        if not isinstance(data, Mapping):
            raise ValueError(f"a scope is a table of types, ids, where and children, not {data!r}")
        unknown = sorted(set(data) - {"types", "ids", "where", "children"})
        if unknown:
            raise ValueError(f"scope: unknown field {unknown[0]!r} (types, ids, where, children)")
        return cls(types=data.get("types"), ids=data.get("ids"), where=data.get("where") or {},
                   children=data.get("children"))  # fmt: skip

    def to_data(self) -> Dict[str, Any]:
        """The scope as plain data (only what narrows it)."""
        found: Dict[str, Any] = {}
        if self.types is not None:
            found["types"] = list(self.types)
        if self.ids is not None:
            found["ids"] = list(self.ids)
        if self.where:
            found["where"] = {name: {key: list(allowed) for key, allowed in by_id.items()}
                              for name, by_id in self.where.items()}  # fmt: skip
        if self.children is not None:
            found["children"] = list(self.children)
        return found

    @property
    def whole(self) -> bool:
        """Whether it narrows nothing."""
        return self.types is None and self.ids is None and not self.where and self.children is None

    def has_type(self, modelname: str) -> bool:
        """Whether top-level objects of this type may be in scope."""
        return self.types is None or modelname in self.types

    def has_child_type(self, modelname: str) -> bool:
        """Whether objects of this child type (below the top level) are in scope."""
        return self._child_set is None or modelname in self._child_set  # type: ignore[attr-defined]

    def has_top(self, modelname: str, uid: str, obj: Any) -> bool:
        """Whether one top-level object (of a type in scope) is in scope: its unique id, its identifiers."""
        ids = self._id_set  # type: ignore[attr-defined]
        if ids is not None and uid not in ids:
            return False
        wanted = self.where.get(modelname)
        if wanted:
            for name, allowed in wanted.items():
                if getattr(obj, name, None) not in allowed:
                    return False
        return True

    def describe(self) -> str:
        """The scope in a few words, for reports and logs."""
        if self.whole:
            return "everything"
        parts = []
        if self.types is not None:
            parts.append("types " + ", ".join(self.types))
        if self.ids is not None:
            shown = ", ".join(self.ids[:5]) + (f" and {len(self.ids) - 5} more" if len(self.ids) > 5 else "")
            parts.append(f"ids {shown}")
        for modelname, values in self.where.items():
            parts.append(f"{modelname} where " + ", ".join(f"{k} in {list(v)}" for k, v in values.items()))
        if self.children is not None:
            parts.append("children " + (", ".join(self.children) or "none"))
        return "; ".join(parts)


def union(first: Optional[Scope], second: Optional[Scope]) -> Optional[Scope]:
    """The smallest scope this module can say that holds both (None: everything).

    Exact for scopes that differ in one way (two lists of ids, of types or of child types); otherwise a scope
    that holds more than both (syncing more of the same pair is right, only slower): a constraint only one of
    them has is dropped, and lists are joined.
    """
    if first is None or second is None or first.whole or second.whole:
        return None

    def joined(one: Optional[Tuple[str, ...]], other: Optional[Tuple[str, ...]]) -> Optional[Tuple[str, ...]]:
        return None if one is None or other is None else tuple(dict.fromkeys(one + other))

    where: Dict[str, Dict[str, Tuple[Any, ...]]] = {}
    for modelname in first.where.keys() & second.where.keys():
        own, theirs = first.where[modelname], second.where[modelname]
        common = {name: tuple(dict.fromkeys(own[name] + theirs[name])) for name in own.keys() & theirs.keys()}
        if common:
            where[modelname] = common
    return Scope(
        types=joined(first.types, second.types), ids=joined(first.ids, second.ids), where=where,
        children=joined(first.children, second.children),
    )  # fmt: skip


ScopeLike = Union[Scope, Mapping[str, Any]]
"""A scope, or its plain data (``Scope.to_data``'s form), as the engine's and the runner's APIs take it."""

__all__ = ["Scope", "ScopeLike", "union"]
