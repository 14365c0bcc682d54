"""The planner: a diff -> ordered operations -> shards of whole top-level subtrees, in waves.

A pure function with no I/O, so that the distributed runner's correctness rests on something small and
tested on its own.  The operation order is the syncer's (ARCHITECTURE.md, "Operation order"): top-level
types one after another in the diff's order, elements of a type in the diff's order, each element before its
children (pre-order), except that a delete of a model flagged NATURAL_DELETION_ORDER comes after its
children's operations and a delete flagged SKIP_CHILDREN_ON_DELETE takes its children with it (they are no
operations of their own).

A shard holds whole top-level subtrees, never part of one, so the order inside every subtree (parent before
child, a failed parent skipping its children) is kept by the one process that applies it.  Subtrees of one
top-level type are independent of each other and may run in parallel; with ``barrier`` the types form waves
that run one after another, as the local sync does; without it all shards form one wave.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Tuple, Union

from core.diff import Diff, DiffElement
from core.enum import DiffSyncActions, DiffSyncModelFlags

_SKIP_CHILDREN = DiffSyncModelFlags.SKIP_CHILDREN_ON_DELETE.value
_NATURAL = DiffSyncModelFlags.NATURAL_DELETION_ORDER.value

ModelFlagsOf = Callable[[DiffElement], DiffSyncModelFlags]
"""Gives the target model's flags for an element (they decide the order of a delete's children)."""


@dataclass(frozen=True)
class Operation:
    """One create, update or delete of the plan.

    ``root`` is the position of its top-level element among the diff's top-level elements and ``seq`` its
    position in that subtree in pre-order (0 for the top-level element itself); together they name the
    operation in a job's journal.
    """

    root: int
    seq: int
    action: str
    type: str
    name: str
    parent: Optional[int]
    """``seq`` of the parent element in the same subtree, None for a top-level element."""


@dataclass
class Shard:
    """A unit of parallel work: whole top-level subtrees of one type, with their operations in order."""

    index: int
    wave: int
    type: str
    roots: List[int] = field(default_factory=list)
    operations: List[Operation] = field(default_factory=list)


@dataclass
class Plan:
    """Shards in waves: every shard of a wave may run at once; a wave starts when the one before finished."""

    shards: List[Shard]
    waves: List[List[int]]
    """Shard indexes per wave, in the order the waves run."""
    top_level: int
    """Number of top-level elements in the diff (with or without changes)."""

    @property
    def operations(self) -> int:
        """Number of operations in all shards."""
        return sum(len(shard.operations) for shard in self.shards)

    def ordered_operations(self) -> Iterator[Operation]:
        """Every operation in the order a local sync would make them."""
        for wave in self.waves:
            for index in wave:
                yield from self.shards[index].operations


def _no_flags(element: DiffElement) -> DiffSyncModelFlags:
    return DiffSyncModelFlags.NONE


def _flag_bits(element: DiffElement, model_flags: ModelFlagsOf) -> int:
    """The target model's flags for an element, as bits (a flag enum or a plain int)."""
    flags = model_flags(element)
    return int(getattr(flags, "value", flags) or 0)


def count_operations(element: DiffElement, model_flags: ModelFlagsOf = _no_flags) -> int:
    """How many operations ``subtree_operations`` gives for this subtree, without building them.

    A distributed diff counts the operations of every changed subtree it keeps, to size the shards.
    """
    action = element.action
    count = 0 if action is None else 1
    if action == DiffSyncActions.DELETE and _flag_bits(element, model_flags) & _SKIP_CHILDREN:
        return count
    for child in element.get_children():
        count += count_operations(child, model_flags)
    return count


def preorder(element: DiffElement) -> Iterator[DiffElement]:
    """Every element of a subtree, parent before children: the numbering of its operations.

    An operation is named ``"{root}:{seq}"`` by its element's position here (the order ``DiffCodec.decode``
    visits in), so the plan, the shards' journals and the per-object log name the same operation alike.
    """
    stack = [element]
    while stack:
        current = stack.pop()
        yield current
        stack.extend(reversed(list(current.get_children())))


def number_elements(root: int, element: DiffElement, op_ids: Dict[int, str]) -> None:
    """Name every element of a top-level subtree ``"{root}:{seq}"`` in ``op_ids`` (by ``id()``, pre-order)."""
    for seq, current in enumerate(preorder(element)):
        op_ids[id(current)] = f"{root}:{seq}"


def subtree_operations(root: int, element: DiffElement, model_flags: ModelFlagsOf = _no_flags) -> List[Operation]:
    """The operations of one top-level subtree, in the syncer's order.

    Args:
        root: Position of ``element`` among the diff's top-level elements.
        element: The top-level element.
        model_flags: The target model's flags for an element (NONE for all when not given).
    """
    numbers = {id(current): seq for seq, current in enumerate(preorder(element))}

    result: List[Operation] = []

    def emit(current: DiffElement, parent: Optional[int]) -> None:
        action = current.action
        seq = numbers[id(current)]
        children_first = False
        visit_children = True
        if action == DiffSyncActions.DELETE:
            bits = _flag_bits(current, model_flags)
            if bits & _SKIP_CHILDREN:
                visit_children = False
            elif bits & _NATURAL:
                children_first = True
        own = None if action is None else Operation(root, seq, action, current.type, current.name, parent)
        if own is not None and not children_first:
            result.append(own)
        if visit_children:
            for child in current.get_children():
                emit(child, seq)
        if own is not None and children_first:
            result.append(own)

    emit(element, None)
    return result


DEFAULT_SHARD_SIZE = 500
"""Operations per shard when neither the job nor the live slots say (the embedded runner, say)."""

ShardSizeOf = Callable[[int], int]
"""Gives the most operations per shard for a wave, from the number of operations in that wave."""


def balanced_shard_size(operations: int, slots: int, rounds: int = 4, smallest: int = 10, largest: int = 1000) -> int:
    """A shard size that gives every one of ``slots`` about ``rounds`` shards of a wave of ``operations``.

    With several shards per slot, a slot that drew quick shards takes more while slow ones run, and the last
    round of a wave is a small part of it (one shard per slot leaves slots idle behind the slowest one).
    ``smallest`` bounds the fixed cost of each shard (its task, its claim, its share of the plan);
    ``largest`` what a crashed shard's journal replays and how coarse progress is.
    """
    wanted = -(-operations // max(1, slots * rounds))  # ceiling
    return max(1, min(largest, max(smallest, wanted)))


def plan_sync(
    diff: Diff,
    shard_size: Union[int, ShardSizeOf] = DEFAULT_SHARD_SIZE,
    barrier: bool = True,
    model_flags: ModelFlagsOf = _no_flags,
) -> Plan:
    """Split a diff into shards of whole top-level subtrees.

    Subtrees are packed in the diff's order into shards of at most ``shard_size`` operations (a subtree with
    more operations than that gets a shard of its own); top-level elements without any change below them
    are left out.

    Args:
        diff: The diff to apply.
        shard_size: Most operations per shard, unless one subtree alone has more; or a function giving a
            size for each wave from the wave's number of operations (``balanced_shard_size`` for the live
            slots): the wave is then cut into ``ceil(operations / size)`` shards of near-equal operations
            (each within half a subtree of its share), so that the shards fill whole rounds of the slots.
        barrier: Whether each top-level type waits for the types before it (one wave per type).
        model_flags: The target model's flags for an element.

    Raises:
        ValueError: if ``shard_size`` is (or gives) less than 1.
    """
    if not callable(shard_size) and shard_size < 1:
        raise ValueError(f"shard_size must be 1 or more, not {shard_size}")
    subtrees: List[Tuple[int, str, int]] = []
    operations_of: Dict[int, List[Operation]] = {}
    top_level = 0
    for root, element in enumerate(diff.get_children()):
        top_level += 1
        operations = subtree_operations(root, element, model_flags)
        if operations:
            subtrees.append((root, element.type, len(operations)))
            operations_of[root] = operations
    packed, waves = pack_subtrees(subtrees, shard_size, barrier)
    shards = []
    for index, (wave, modelname, roots, _) in enumerate(packed):
        shard = Shard(index=index, wave=wave, type=modelname, roots=roots)
        for root in roots:
            shard.operations.extend(operations_of[root])
        shards.append(shard)
    return Plan(shards=shards, waves=waves, top_level=top_level)


PackedShard = Tuple[int, str, List[int], int]
"""A shard as packed: its wave, its type, the positions of its top-level elements, its number of operations."""


def pack_subtrees(
    subtrees: Iterable[Tuple[int, str, int]],
    shard_size: Union[int, ShardSizeOf] = DEFAULT_SHARD_SIZE,
    barrier: bool = True,
) -> Tuple[List[PackedShard], List[List[int]]]:
    """Pack top-level subtrees (``(position, type, operations)``, in the diff's order) into shards.

    What ``plan_sync`` does once it has counted each subtree's operations, and what the join of a
    distributed diff does with the counts its parts wrote. Returns the shards and the waves (shard indexes).

    Raises:
        ValueError: if ``shard_size`` is (or gives) less than 1.
    """
    size_of: ShardSizeOf = shard_size if callable(shard_size) else (lambda operations: int(shard_size))  # type: ignore[arg-type]
    items = list(subtrees)
    waves: List[List[int]] = []
    wave_of_type: Dict[str, int] = {}
    wave_operations: List[int] = []
    for _, modelname, count in items:
        if modelname not in wave_of_type:
            wave_of_type[modelname] = len(waves) if barrier or not waves else 0
            if wave_of_type[modelname] == len(waves):
                waves.append([])
                wave_operations.append(0)
        wave_operations[wave_of_type[modelname]] += count
    limits = [size_of(count) for count in wave_operations]
    if any(limit < 1 for limit in limits):
        raise ValueError(f"shard_size must be 1 or more, not {min(limits)}")
    # Sized per wave (for the live slots): the wave is cut into as many shards as its size asks for, of
    # near-equal operations, at the subtree boundary nearest each even share. Filling each shard up to the
    # size instead leaves most shards a subtree short, and one more shard than slots x rounds: a last round
    # with one shard running and every other slot idle.
    even = callable(shard_size)
    pieces = [max(1, -(-total // limit)) for total, limit in zip(wave_operations, limits, strict=True)]
    placed = [0] * len(waves)
    shards: List[PackedShard] = []
    current: Optional[List[Any]] = None  # [wave, type, roots, operations] of the shard being filled
    for root, modelname, count in items:
        wave = wave_of_type[modelname]
        if current is not None:
            if current[1] != modelname:
                current = None  # never mix types in a shard
            elif even:
                share_end = len(waves[wave]) * wave_operations[wave] / pieces[wave]
                if placed[wave] + count / 2 > share_end:
                    current = None  # this subtree lies mostly past the shard's share: the next shard's
            elif current[3] + count > limits[wave]:
                current = None  # a full shard is closed
        placed[wave] += count
        if current is None:
            current = [wave, modelname, [], 0]
            waves[wave].append(len(shards))
            shards.append(current)  # type: ignore[arg-type]
        current[2].append(root)
        current[3] += count
    return [tuple(shard) for shard in shards], waves  # type: ignore[misc]
