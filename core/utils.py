"""Small helpers that diffsync 2.x exposes from ``diffsync.utils``; kept public for code that imports them."""

from __future__ import annotations

from collections import OrderedDict
from typing import Callable, Dict, Generic, Iterator, List, Optional, TypeVar

SPACE = "    "
BRANCH = "│   "
TEE = "├── "
LAST = "└── "

T = TypeVar("T")
K = TypeVar("K")
V = TypeVar("V")


def intersection(lst1: List[T], lst2: List[T]) -> List[T]:
    """Return the items of ``lst1`` that are also in ``lst2``, keeping ``lst1``'s order.

    Order matters: it decides the order in which top-level types and attributes are visited.
    """
    if len(lst2) > 8:
        try:
            members = set(lst2)
            return [value for value in lst1 if value in members]
        except TypeError:  # unhashable items: compare one by one
            pass
    return [value for value in lst1 if value in lst2]


def symmetric_difference(lst1: List[T], lst2: List[T]) -> List[T]:
    """Return the sorted items that are in exactly one of the two lists."""
    return sorted(set(lst1) ^ set(lst2))  # type: ignore[type-var]


class OrderedDefaultDict(OrderedDict, Generic[K, V]):
    """An OrderedDict that creates missing values with a factory, like collections.defaultdict."""

    def __init__(self, dict_type: Callable[[], V] = dict) -> None:  # type: ignore[assignment]
        self.factory = dict_type
        super().__init__()

    def __missing__(self, key: K) -> V:
        self[key] = value = self.factory()
        return value


def _tree(data: Dict, prefix: str = "") -> Iterator[str]:
    """Yield the lines of a box-drawing tree for a nested dict, one entry per line."""
    count = len(data)
    for index, key in enumerate(data):
        last = index == count - 1
        yield prefix + (LAST if last else TEE) + key
        value = data[key]
        if isinstance(value, dict):
            yield from _tree(value, prefix=prefix + (SPACE if last else BRANCH))


def tree_string(data: Dict, root: str) -> str:
    """Render a nested dict as a tree under a root label (used by ``Adapter.get_tree_traversal``)."""
    return "\n".join([root, *_tree(data)])


def set_key(data: Dict, keys: List) -> None:
    """Make sure the nested path ``keys`` exists in ``data``, creating empty dicts on the way."""
    current_level = data
    for key in keys:
        current_level = current_level.setdefault(key, {})


def get_path(nested_dict: Dict, search_value: str) -> Optional[List]:
    """Return the list of keys leading to ``search_value`` in a nested dict, or None when it is absent."""
    for key, value in nested_dict.items():
        if key == search_value:
            return [key]
        if isinstance(value, dict):
            path = get_path(value, search_value)
            if path is not None:
                return [key, *path]
    return None
