"""Diff and DiffElement: the tree of what differs between two adapters, with diffsync 2.x's API.

A diff holds one element per compared object, changed or not (the syncer walks unchanged parents to reach
changed children, and the summary counts them).  Elements of unchanged objects are the bulk of a diff, so
they are kept small: they record the two objects and the fact that they are equal, and build their
attribute dicts only if somebody asks for them.  Elements with changes hold their attribute dicts from the
start, so a diff is a snapshot of every change it describes.
"""

from __future__ import annotations

from functools import total_ordering
from typing import TYPE_CHECKING, Any, Dict, Iterable, Iterator, List, Optional, Type

from core.enum import DiffSyncActions
from core.exceptions import ObjectAlreadyExists
from core.utils import OrderedDefaultDict, intersection

if TYPE_CHECKING:
    from core.differ import PairPlan

StrType = str

_CREATE = DiffSyncActions.CREATE
_UPDATE = DiffSyncActions.UPDATE
_DELETE = DiffSyncActions.DELETE


class _Unset:
    """Marker for a value not worked out yet."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "<unset>"


UNSET: Any = _Unset()


class _Epoch:
    """Counts changes made to any DiffElement after it was built.

    Elements cache whether their subtree has diffs.  A change deep in a tree must be seen by its ancestors,
    which elements do not point to (that would make every diff a reference cycle); instead any change bumps
    this counter and a cached answer is only trusted if it was computed at the current count.
    """

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0


EPOCH = _Epoch()


class Diff:
    """A group of DiffElements, by type and then by name; also the child diff of every element."""

    def __init__(self) -> None:
        self.children: OrderedDefaultDict[StrType, Dict[StrType, DiffElement]] = OrderedDefaultDict(dict)
        """``children[type][name] == DiffElement(...)``."""
        self.models_processed = 0

    def __len__(self) -> int:
        """Total number of DiffElements in this diff, at every depth."""
        total = 0
        for child in self.get_children():
            total += len(child)
        return total

    def complete(self) -> None:
        """Called when the differ has filled this diff; override to persist or post-process it."""

    def add(self, element: DiffElement) -> None:
        """Add a DiffElement.

        Raises:
            ObjectAlreadyExists: if an element of the same type and name is already there (the rejected
                element is attached, as in diffsync).
        """
        group = self.children[element.type]
        if element.name in group:
            raise ObjectAlreadyExists(f"Already storing a {element.type} named {element.name}", element)
        group[element.name] = element

    def groups(self) -> List[StrType]:
        """Get the type names present in this diff, in the order they were first added."""
        return list(self.children.keys())

    def has_diffs(self) -> bool:
        """Tell whether any element, at any depth, calls for a change."""
        for group in self.children.values():
            for child in group.values():
                if child.has_diffs(include_children=True):
                    return True
        return False

    def get_children(self) -> Iterator[DiffElement]:
        """Iterate over the elements, group by group, each group ordered by its ``order_children_<type>`` hook.

        Without such a hook a group is ordered by ``order_children_default`` (insertion order by default).
        """
        for group, children in self.children.items():
            order_method = getattr(self, f"order_children_{group}", None)
            if order_method is None:
                order_method = self.order_children_default
            yield from order_method(children)

    @classmethod
    def order_children_default(cls, children: Dict[StrType, DiffElement]) -> Iterator[DiffElement]:
        """Order the elements of a group for which no specific hook exists; insertion order by default."""
        yield from children.values()

    def summary(self) -> Dict[StrType, int]:
        """Count the elements per action (create, update, delete, no-change, skip), at every depth.

        ``skip`` counts the objects the diff left out (flags, IGNORE, unmatched types): the models processed
        minus those in elements, matched pairs counted twice as they were read on both sides.
        """
        summary = {_CREATE: 0, _UPDATE: 0, _DELETE: 0, "no-change": 0}
        self._add_counts(summary)
        summary[DiffSyncActions.SKIP] = (
            self.models_processed
            - summary[_CREATE]
            - 2 * summary[_UPDATE]
            - summary[_DELETE]
            - 2 * summary["no-change"]
        )
        return summary

    def _add_counts(self, summary: Dict[StrType, int]) -> None:
        """Add the action counts of all elements at every depth to ``summary``."""
        for child in self.get_children():
            action = child.action
            summary[action if action else "no-change"] += 1
            child_diff = child._child_diff
            if child_diff is not None:
                child_diff._add_child_counts(summary)

    def _add_child_counts(self, summary: Dict[StrType, int]) -> None:
        """Add this child diff's counts, through its own summary() if a subclass overrides it (as diffsync)."""
        if type(self).summary is Diff.summary:
            self._add_counts(summary)
            return
        counts = self.summary()
        for key in (_CREATE, _UPDATE, _DELETE, "no-change"):
            summary[key] += counts[key]

    def str(self, indent: int = 0) -> StrType:
        """Build a detailed, indented text of the elements that call for changes."""
        margin = " " * indent
        output = []
        for group, children in self.children.items():
            group_heading_added = False
            for child in children.values():
                if child.has_diffs(include_children=True):
                    if not group_heading_added:
                        output.append(f"{margin}{group}")
                        group_heading_added = True
                    output.append(child.str(indent + 2))
        result = "\n".join(output)
        if not result:
            result = "(no diffs)"
        return result

    def dict(self) -> Dict[StrType, Dict[StrType, Dict]]:
        """Build ``{type: {name: {"-": ..., "+": ..., <child types>...}}}`` for the elements with changes."""
        result = OrderedDefaultDict[str, Dict](dict)
        for child in self.get_children():
            if child.has_diffs(include_children=True):
                result[child.type][child.name] = child.dict()
        return dict(result)


@total_ordering
class DiffElement:
    """One object compared between source and destination, with its children's elements below it."""

    __slots__ = (
        "type",
        "name",
        "_keys",
        "source_name",
        "dest_name",
        "_source_attrs",
        "_dest_attrs",
        "_diff_class",
        "_child_diff",
        "_action",
        "_subtree_diffs",
        "_epoch",
        "_values",
        "_dst_values",
        "_src_obj",
        "_dst_obj",
        "_plan",
        "_uid",
        "__weakref__",
    )

    def __init__(
        self,
        obj_type: StrType,
        name: StrType,
        keys: Dict,
        source_name: StrType = "source",
        dest_name: StrType = "dest",
        diff_class: Type[Diff] = Diff,
    ) -> None:
        """Describe one object.

        Args:
            obj_type: Type name of the object, as in ``DiffSyncModel.get_type()``.
            name: Name of the object, as in ``get_shortname()``; unique within the parent diff.
            keys: Identifiers of the object, as in ``get_identifiers()``.
            source_name: Name of the source adapter.
            dest_name: Name of the destination adapter.
            diff_class: Diff class used for this element's children.
        """
        if not isinstance(obj_type, StrType):
            raise ValueError(f"obj_type must be a string (not {type(obj_type)})")
        if not isinstance(name, StrType):
            raise ValueError(f"name must be a string (not {type(name)})")
        self.type = obj_type
        self.name = name
        self._keys = keys
        self.source_name = source_name
        self.dest_name = dest_name
        # None means "no such object on that side"; {} means an object without attributes.
        self._source_attrs: Optional[Dict] = None
        self._dest_attrs: Optional[Dict] = None
        self._diff_class = diff_class
        self._child_diff: Optional[Diff] = None
        self._action: Any = UNSET
        self._subtree_diffs: Optional[bool] = None
        self._epoch = 0
        self._values: Any = None
        self._dst_values: Any = None
        self._src_obj: Any = None
        self._dst_obj: Any = None
        self._plan: Optional[PairPlan] = None
        self._uid: Optional[str] = None

    # -------------------------------------------------------------------------------------------------
    # Attribute dicts (built on demand for unchanged objects)
    # -------------------------------------------------------------------------------------------------

    @property
    def keys(self) -> Dict:
        """Identifiers of the object and their values, as in ``DiffSyncModel.get_identifiers()``."""
        keys = self._keys
        if keys is UNSET:
            obj = self._src_obj if self._src_obj is not None else self._dst_obj
            keys = self._keys = obj.get_identifiers()
        return keys

    @keys.setter
    def keys(self, value: Dict) -> None:
        self._keys = value

    def _snapshot_attrs(self, dest: bool) -> Dict:
        """Attribute dict of one side of an unchanged object, from the values recorded when it was compared."""
        plan = self._plan
        names = plan.common_names  # type: ignore[union-attr]
        values = self._dst_values if dest else self._values
        if not names:
            return {}
        if len(names) == 1:
            attrs = {names[0]: values}
        else:
            attrs = dict(zip(names, values, strict=True))
        # The recorded values are this element's own copies; hand out copies of them in turn.
        copies = plan.dst_copies if dest else plan.src_copies  # type: ignore[union-attr]
        for index, copier in copies:
            name = names[index]
            attrs[name] = copier(attrs[name])
        return attrs

    def _src(self) -> Optional[Dict]:
        attrs = self._source_attrs
        if attrs is UNSET:
            attrs = self._source_attrs = self._snapshot_attrs(False)
        return attrs

    def _dst(self) -> Optional[Dict]:
        attrs = self._dest_attrs
        if attrs is UNSET:
            attrs = self._dest_attrs = self._snapshot_attrs(True)
        return attrs

    @property
    def source_attrs(self) -> Optional[Dict]:
        """Attributes of the source object; None if the object does not exist in the source.

        The dict is this element's own: changing it changes the element (as in diffsync), so handing it out
        retires every cached conclusion.
        """
        attrs = self._src()
        EPOCH.value += 1
        return attrs

    @source_attrs.setter
    def source_attrs(self, value: Optional[Dict]) -> None:
        self._source_attrs = value
        self._invalidate()

    @property
    def dest_attrs(self) -> Optional[Dict]:
        """Attributes of the destination object; None if the object does not exist in the destination."""
        attrs = self._dst()
        EPOCH.value += 1
        return attrs

    @dest_attrs.setter
    def dest_attrs(self, value: Optional[Dict]) -> None:
        self._dest_attrs = value
        self._invalidate()

    @property
    def child_diff(self) -> Diff:
        """The diff of this object's children (created on first use)."""
        child_diff = self._child_diff
        if child_diff is None:
            child_diff = self._child_diff = self._diff_class()
        return child_diff

    @child_diff.setter
    def child_diff(self, value: Diff) -> None:
        self._child_diff = value
        EPOCH.value += 1

    def _invalidate(self) -> None:
        """Forget cached conclusions after the attributes changed (here and, through the epoch, above)."""
        if self._source_attrs is UNSET:
            self._source_attrs = self._snapshot_attrs(False)
        if self._dest_attrs is UNSET:
            self._dest_attrs = self._snapshot_attrs(True)
        self._action = UNSET
        self._plan = None
        EPOCH.value += 1

    def __lt__(self, other: DiffElement) -> bool:
        return (self.type, self.name) < (other.type, other.name)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, DiffElement):
            return NotImplemented
        return (
            self.type == other.type
            and self.name == other.name
            and self.keys == other.keys
            and self._src() == other._src()
            and self._dst() == other._dst()
        )

    __hash__ = None  # type: ignore[assignment]

    def __str__(self) -> StrType:
        return (
            f'{self.type} "{self.name}" : {self.keys} : '
            f"{self.source_name} → {self.dest_name} : {self.get_attrs_diffs()}"
        )

    def __repr__(self) -> StrType:
        return f"<DiffElement {self.type} {self.name!r} action={self.action}>"

    def __len__(self) -> int:
        """Number of elements in this one's subtree, itself included."""
        total = 1
        if self._child_diff is not None:
            for child in self._child_diff.get_children():
                total += len(child)
        return total

    @property
    def action(self) -> Optional[StrType]:
        """The action that would bring the destination in line: "create", "update", "delete" or None."""
        if self._source_attrs is UNSET:
            return self._action  # an unchanged object compared by the differ, attrs not handed out yet
        # Otherwise from the dicts every time: they may have been changed since (as diffsync sees it).
        return self._compute_action()

    def _compute_action(self) -> Optional[StrType]:
        source_attrs = self._src()
        dest_attrs = self._dst()
        if source_attrs is not None and dest_attrs is None:
            return _CREATE
        if source_attrs is None and dest_attrs is not None:
            return _DELETE
        if source_attrs is not None and dest_attrs is not None:
            for key in self.get_attrs_keys():
                if source_attrs[key] != dest_attrs[key]:
                    return _UPDATE
        return None

    def add_attrs(self, source: Optional[Dict] = None, dest: Optional[Dict] = None) -> None:
        """Set the attributes of the source and/or destination object (None leaves a side unchanged)."""
        if source is not None:
            self._source_attrs = source
        if dest is not None:
            self._dest_attrs = dest
        self._invalidate()

    def get_attrs_keys(self) -> Iterable[StrType]:
        """Get the attribute names to compare: those common to both sides (in destination order), else one side's."""
        source_attrs = self._src()
        dest_attrs = self._dst()
        if source_attrs is not None and dest_attrs is not None:
            plan = self._plan
            if plan is not None:
                return list(plan.common_names)
            return intersection(list(dest_attrs.keys()), list(source_attrs.keys()))
        if dest_attrs is not None:
            return dest_attrs.keys()
        if source_attrs is not None:
            return source_attrs.keys()
        return []

    def get_attrs_diffs(self) -> Dict[StrType, Dict[StrType, Any]]:
        """Get the differing attributes: ``{"-": {name: dest value}, "+": {name: source value}}``.

        Only ``"+"`` for an object to create, only ``"-"`` for one to delete, both for one to update (empty
        dicts when nothing differs).
        """
        if self._source_attrs is UNSET and self._action is None:
            return {"-": {}, "+": {}}
        source_attrs = self._src()
        dest_attrs = self._dst()
        if source_attrs is not None and dest_attrs is not None:
            minus = {}
            plus = {}
            for key in self.get_attrs_keys():
                src_value = source_attrs[key]
                dst_value = dest_attrs[key]
                if src_value != dst_value:
                    minus[key] = dst_value
                    plus[key] = src_value
            return {"-": minus, "+": plus}
        if dest_attrs is not None:
            return {"-": {key: dest_attrs[key] for key in self.get_attrs_keys()}}
        if source_attrs is not None:
            return {"+": {key: source_attrs[key] for key in self.get_attrs_keys()}}
        return {}

    def add_child(self, element: DiffElement) -> None:
        """Attach the element of a child object (stored by type and name in ``child_diff``)."""
        self.child_diff.add(element)
        EPOCH.value += 1

    def get_children(self) -> Iterator[DiffElement]:
        """Iterate over the elements of this object's children."""
        if self._child_diff is not None:
            yield from self._child_diff.get_children()

    def has_diffs(self, include_children: bool = True) -> bool:
        """Tell whether this element (or, with ``include_children``, anything below it) calls for a change."""
        if not include_children:
            return self.action is not None
        cached = self._subtree_diffs
        if cached is not None and self._epoch == EPOCH.value:
            return cached
        # Computed answers are not kept: the attribute dicts may change under them (only the differ's are).
        return self.action is not None or (self._child_diff is not None and self._child_diff.has_diffs())

    def summary(self) -> Dict[StrType, int]:
        """Count this element and those below it per action (create, update, delete, no-change)."""
        summary = {_CREATE: 0, _UPDATE: 0, _DELETE: 0, "no-change": 0}
        action = self.action
        summary[action if action else "no-change"] += 1
        if self._child_diff is not None:
            self._child_diff._add_child_counts(summary)
        return summary

    def str(self, indent: int = 0) -> StrType:
        """Build a detailed, indented text of this element and its children with changes."""
        margin = " " * indent
        result = f"{margin}{self.type}: {self.name}"
        source_attrs = self._src()
        dest_attrs = self._dst()
        if source_attrs is not None and dest_attrs is not None:
            attrs_diffs = self.get_attrs_diffs()
            for attr in attrs_diffs["+"]:
                result += (
                    f"\n{margin}  {attr}"
                    f"    {self.source_name}({attrs_diffs['+'][attr]})"
                    f"    {self.dest_name}({attrs_diffs['-'][attr]})"
                )
        elif dest_attrs is not None:
            result += f" MISSING in {self.source_name}"
        elif source_attrs is not None:
            result += f" MISSING in {self.dest_name}"

        if self._child_diff is not None and self._child_diff.has_diffs():
            result += "\n" + self._child_diff.str(indent + 2)
        elif source_attrs is None and dest_attrs is None:
            result += " (no diffs)"
        return result

    def dict(self) -> Dict[StrType, Dict[StrType, Any]]:
        """Build ``{"-": ..., "+": ..., <child type>: {...}}`` for this element and its children with changes."""
        attrs_diffs = self.get_attrs_diffs()
        result = {}
        if "-" in attrs_diffs:
            result["-"] = attrs_diffs["-"]
        if "+" in attrs_diffs:
            result["+"] = attrs_diffs["+"]
        if self._child_diff is not None and self._child_diff.has_diffs():
            result.update(self._child_diff.dict())
        return result
