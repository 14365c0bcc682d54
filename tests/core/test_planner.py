"""The planner alone (no Celery, no Redis): shards of whole subtrees, order inside them, waves, sizes."""

from __future__ import annotations

from typing import Dict, List, Optional

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.diff import Diff, DiffElement
from core.enum import DiffSyncModelFlags
from core.planner import balanced_shard_size, count_operations, pack_subtrees, plan_sync, subtree_operations

NATURAL = DiffSyncModelFlags.NATURAL_DELETION_ORDER
SKIP = DiffSyncModelFlags.SKIP_CHILDREN_ON_DELETE


def element(kind: str, name: str, action: Optional[str], children: List[DiffElement] = ()) -> DiffElement:
    """An element whose action is ``action`` (None: unchanged), with children."""
    found = DiffElement(kind, name, {"name": name})
    if action == "create":
        found.add_attrs(source={"a": 1})
    elif action == "delete":
        found.add_attrs(dest={"a": 1})
    elif action == "update":
        found.add_attrs(source={"a": 1}, dest={"a": 2})
    else:
        found.add_attrs(source={"a": 1}, dest={"a": 1})
    for child in children:
        found.add_child(child)
    return found


def diff_of(*elements: DiffElement) -> Diff:
    diff = Diff()
    for item in elements:
        diff.add(item)
    return diff


def names(operations) -> List[str]:
    return [f"{op.action}:{op.name}" for op in operations]


def test_empty_diff_has_no_shards() -> None:
    plan = plan_sync(Diff())
    assert plan.shards == [] and plan.waves == [] and plan.operations == 0 and plan.top_level == 0


def test_unchanged_subtrees_make_no_shards() -> None:
    plan = plan_sync(diff_of(element("site", "a", None, [element("device", "a1", None)])))
    assert plan.shards == [] and plan.top_level == 1


def test_preorder_inside_a_subtree() -> None:
    tree = element(
        "site",
        "a",
        "update",
        [element("device", "a1", "create", [element("port", "a1p", "create")]), element("device", "a2", "delete")],
    )
    plan = plan_sync(diff_of(tree))
    assert names(plan.shards[0].operations) == ["update:a", "create:a1", "create:a1p", "delete:a2"]
    ops = plan.shards[0].operations
    assert [op.seq for op in ops] == [0, 1, 2, 3]
    assert [op.parent for op in ops] == [None, 0, 1, 0]


def test_unchanged_parent_still_numbers_and_visits_children() -> None:
    tree = element("site", "a", None, [element("device", "a1", None), element("device", "a2", "create")])
    (shard,) = plan_sync(diff_of(tree)).shards
    assert names(shard.operations) == ["create:a2"]
    assert shard.operations[0].seq == 2 and shard.operations[0].parent == 0


def test_natural_deletion_order_puts_children_first() -> None:
    tree = element("site", "a", "delete", [element("device", "a1", "delete"), element("device", "a2", "delete")])
    flags = {"a": NATURAL}
    plan = plan_sync(diff_of(tree), model_flags=lambda el: flags.get(el.name, DiffSyncModelFlags.NONE))
    assert names(plan.shards[0].operations) == ["delete:a1", "delete:a2", "delete:a"]


def test_skip_children_on_delete_drops_the_children() -> None:
    tree = element("site", "a", "delete", [element("device", "a1", "delete", [element("port", "p", "delete")])])
    plan = plan_sync(diff_of(tree), model_flags=lambda el: SKIP if el.name == "a" else DiffSyncModelFlags.NONE)
    assert names(plan.shards[0].operations) == ["delete:a"]


def test_flags_only_matter_for_deletes() -> None:
    tree = element("site", "a", "update", [element("device", "a1", "create")])
    plan = plan_sync(diff_of(tree), model_flags=lambda el: NATURAL | SKIP)
    assert names(plan.shards[0].operations) == ["update:a", "create:a1"]


def test_shard_sizes_and_subtree_atomicity() -> None:
    sites = [
        element("site", f"s{i}", "create", [element("device", f"s{i}d{j}", "create") for j in range(i)])
        for i in range(5)
    ]
    plan = plan_sync(diff_of(*sites), shard_size=3)
    # Subtree sizes 1, 2, 3, 4, 5: packed in order, never split, a subtree bigger than the size alone.
    assert [shard.roots for shard in plan.shards] == [[0, 1], [2], [3], [4]]
    assert [len(shard.operations) for shard in plan.shards] == [3, 3, 4, 5]
    for shard in plan.shards:
        assert {op.root for op in shard.operations} == set(shard.roots)


def test_waves_per_top_level_type_with_barrier() -> None:
    diff = diff_of(
        element("region", "r1", "create"),
        element("region", "r2", "create"),
        element("site", "s1", "create"),
        element("site", "s2", "create"),
        element("tenant", "t1", None),
    )
    plan = plan_sync(diff, shard_size=1)
    assert [[plan.shards[i].type for i in wave] for wave in plan.waves] == [["region", "region"], ["site", "site"]]
    assert [shard.wave for shard in plan.shards] == [0, 0, 1, 1]
    assert plan.top_level == 5
    assert names(plan.ordered_operations()) == ["create:r1", "create:r2", "create:s1", "create:s2"]


def test_without_barrier_one_wave_and_types_never_mixed() -> None:
    diff = diff_of(element("region", "r1", "create"), element("site", "s1", "create"), element("site", "s2", "create"))
    plan = plan_sync(diff, shard_size=10, barrier=False)
    assert len(plan.waves) == 1 and plan.waves[0] == [0, 1]
    assert [shard.type for shard in plan.shards] == ["region", "site"]
    assert [shard.roots for shard in plan.shards] == [[0], [1, 2]]


def test_bad_shard_size() -> None:
    with pytest.raises(ValueError, match="shard_size must be 1 or more"):
        plan_sync(Diff(), shard_size=0)


# -- property: the plan is a partition of the syncer's order into whole subtrees ------------------------

ACTIONS = st.sampled_from([None, "create", "update", "delete"])


@st.composite
def trees(draw: st.DrawFn, depth: int = 0, prefix: str = "n") -> DiffElement:
    kind = ["site", "device", "port"][depth]
    action = draw(ACTIONS)
    children = []
    if depth < 2:
        for index in range(draw(st.integers(0, 3))):
            children.append(draw(trees(depth=depth + 1, prefix=f"{prefix}.{index}")))
    return element(kind, prefix, action, children)


def syncer_order(diff: Diff, flags: Dict[str, DiffSyncModelFlags]) -> List[str]:
    """The order the syncer applies operations in, written out independently of the planner."""
    out: List[str] = []

    def visit(el: DiffElement) -> None:
        own = None if el.action is None else f"{el.action}:{el.name}"
        f = flags.get(el.name, DiffSyncModelFlags.NONE) if el.action == "delete" else DiffSyncModelFlags.NONE
        if f & SKIP:
            out.append(own)
            return
        if f & NATURAL:
            for child in el.get_children():
                visit(child)
            if own:
                out.append(own)
            return
        if own:
            out.append(own)
        for child in el.get_children():
            visit(child)

    for top in diff.get_children():
        visit(top)
    return out


@settings(max_examples=200, deadline=None)
@given(
    roots=st.lists(trees(), min_size=0, max_size=6),
    shard_size=st.integers(1, 8),
    barrier=st.booleans(),
    flag_names=st.dictionaries(st.sampled_from([f"n{i}" for i in range(6)]), st.sampled_from([NATURAL, SKIP])),
)
def test_plan_is_the_syncer_order_cut_into_whole_subtrees(roots, shard_size, barrier, flag_names) -> None:
    diff = Diff()
    for index, root in enumerate(roots):
        root.name = f"n{index}"
        diff.add(root)
    plan = plan_sync(diff, shard_size=shard_size, barrier=barrier, model_flags=lambda el: flag_names.get(el.name, 0))
    assert names(plan.ordered_operations()) == syncer_order(diff, flag_names)
    seen_roots = [root for shard in plan.shards for root in shard.roots]
    assert len(seen_roots) == len(set(seen_roots))
    for shard in plan.shards:
        assert all(op.root in shard.roots for op in shard.operations)
        if len(shard.roots) > 1:
            assert len(shard.operations) <= shard_size
    for index, top in enumerate(diff.get_children()):
        ops = subtree_operations(index, top, lambda el: flag_names.get(el.name, 0))
        assert count_operations(top, lambda el: flag_names.get(el.name, 0)) == len(ops)
        holders = [shard for shard in plan.shards if index in shard.roots]
        assert len(holders) == (1 if ops else 0)


def test_balanced_shard_size_gives_each_slot_several_shards_within_bounds() -> None:

    assert balanced_shard_size(20_000, 16) == 313  # 64 shards: four rounds of 16 slots
    assert balanced_shard_size(20_000, 2) == 1000  # capped: a crashed shard replays at most that much
    assert balanced_shard_size(100, 16) == 10  # floored: each shard's fixed cost stays small beside its work
    assert balanced_shard_size(5, 1, smallest=1) == 2
    assert balanced_shard_size(0, 4) == 10


def test_a_shard_size_function_sizes_each_wave_from_its_operations() -> None:
    sites = [  # 4 operations per subtree
        element("site", f"s{n}", "create", [element("device", f"s{n}d{m}", "create") for m in range(3)])
        for n in range(12)
    ]
    diff = diff_of(*sites)
    seen = []

    def size_of(operations: int) -> int:
        seen.append(operations)
        return operations // 3

    plan = plan_sync(diff, shard_size=size_of)
    assert seen == [48]
    assert [len(shard.operations) for shard in plan.shards] == [16, 16, 16]
    with pytest.raises(ValueError, match="shard_size must be 1 or more, not 0"):
        plan_sync(diff, shard_size=lambda operations: 0)


def test_shards_sized_for_the_slots_fill_whole_rounds() -> None:
    """Sized per wave, a wave of uneven subtrees is cut into exactly ceil(operations / size) shards (when no
    subtree is larger than a share), each within the largest subtree of its even share. Greedy filling gave
    one shard more: a last round with one shard running and every other slot idle."""
    import random

    rng = random.Random(11)
    for _ in range(200):
        counts = [rng.randint(1, rng.choice([5, 20, 60])) for _ in range(rng.randint(200, 800))]
        total, slots = sum(counts), rng.choice([2, 4, 8, 16])
        size = balanced_shard_size(total, slots, smallest=1)
        subtrees = [(index, "site", count) for index, count in enumerate(counts)]
        packed, waves = pack_subtrees(
            subtrees, lambda operations, slots=slots: balanced_shard_size(operations, slots, smallest=1)
        )
        pieces = -(-total // size)
        share = total / pieces
        if max(counts) <= share:
            assert len(packed) == pieces
        else:  # subtrees larger than a share: fewer shards, never more
            assert len(packed) <= pieces
        assert waves == [list(range(len(packed)))]
        for shard in packed:
            assert abs(shard[3] - share) <= max(counts), (shard[3], share)
        assert [root for shard in packed for root in shard[2]] == list(range(len(counts)))
