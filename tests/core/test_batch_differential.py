"""Differential tests of batch hooks against diffsync 2.2.3 (which has none).

The target models override ``create_batch``/``update_batch``/``delete_batch`` with loops over their single
hooks, so the engine groups their operations level by level (``core.batch``) while diffsync calls the
single hooks one by one in pre-order.  Every result must be the same: the diff and its summary, the final
data of both adapters (dict, order per type, statuses), the objects loaded at the start, the progress
callbacks, ``sync_complete``, and the hook calls themselves - the same calls with the same arguments, in
the same order for each model and action.  Only the interleaving of different models or actions may
differ (that is the point of grouping), and within it each parent's hook comes before its children's
(after them for a NATURAL_DELETION_ORDER delete).

Scenarios where a hook's exception ends the sync are turned into ones where it does not (a failing hook
returns None instead, unless CONTINUE_ON_FAILURE is set): where an exception stops a sync depends on the
order, which is exactly what batching changes.  Those cases are tested on their own below.  Models that
do not override a batch hook are not grouped at all: ``test_differential`` checks their exact order.
"""

from collections import Counter

import pytest
from hypothesis import given

from .test_differential import CONTINUE, REF, SUT, _settings, norm, run_scenario, scenarios

NATURAL = 0b10000  # DiffSyncModelFlags.NATURAL_DELETION_ORDER
SKIP_CHILDREN = 0b01000  # DiffSyncModelFlags.SKIP_CHILDREN_ON_DELETE


def _batched(scenario):
    """The scenario with looping batch hooks on both adapters' models, and no exception that ends the sync."""
    # the second sync of the harness uses ``flags``; a precomputed diff is applied with ``sync_flags``
    precomputed = scenario.api in ("diff_sync_from", "diff_sync_to")
    keeps_going = bool(scenario.flags & CONTINUE) and (not precomputed or bool(scenario.sync_flags & CONTINUE))
    for node in scenario.nodes:
        if node.fail == "raise_other" or (node.fail in ("raise", "raise_base") and not keeps_going):
            node.fail = "none"
    scenario.callback_raise_at = None
    scenario.stale = ()  # a stale precomputed diff may raise on a missing object, at an order-dependent point
    ref_scenario = scenario
    sut_scenario = type(scenario)(**{**vars(scenario)})
    sut_scenario.src_classes = scenario.src_classes._replace(batch_loop=True)
    sut_scenario.dst_classes = scenario.dst_classes._replace(batch_loop=True)
    return ref_scenario, sut_scenario


def _hashable(value):
    return repr(norm(value))


def _per_model_and_action(calls, children_first):
    """Calls by action and model (children-first deletes apart: they wait for everything below them)."""
    groups = {}
    for call in calls:
        groups.setdefault((call[0], call[1], (call[1], call[2]) in children_first), []).append(call)
    return groups


ORDER_FREE = {"hook_calls", "events", "logs", "logs_full", "adapter_calls", "src_owners", "dst_owners"}
"""Observations that depend on the interleaving.  The owners too: the store clears a removed object's
``adapter`` only ``if obj.adapter`` is truthy, that is if the adapter holds any object at that moment."""


def compare(ref, got, children_first):
    """Everything equal, except that hook calls, log events and adapter calls may be interleaved differently."""
    if ref["exception"] is not None:
        # Not from a hook (those are planned not to end the sync): a model or adapter error after a hook, such
        # as a child type the target's parent does not declare. Grouping changes how many hooks ran before.
        assert got["exception"] == ref["exception"], "exception raised"
        return
    for key in sorted(set(ref) - ORDER_FREE):
        assert got[key] == ref[key], key
    assert Counter(map(_hashable, got["hook_calls"])) == Counter(map(_hashable, ref["hook_calls"])), "hook calls"
    assert _per_model_and_action(got["hook_calls"], children_first) == _per_model_and_action(
        ref["hook_calls"], children_first
    ), "order per model and action"
    assert Counter(map(_hashable, got["logs_full"])) == Counter(map(_hashable, ref["logs_full"])), "log events"
    assert Counter(map(_hashable, got["adapter_calls"])) == Counter(map(_hashable, ref["adapter_calls"]))
    not_batches = [e for e in got["events"] if not str(e[0]).endswith("_batch")]
    assert [e for e in not_batches if e[0] == "cb"] == [e for e in ref["events"] if e[0] == "cb"], "progress"


def _children_first(scenario):
    """(model, uid) of the target objects whose delete comes after their children's (NATURAL_DELETION_ORDER)."""
    target = scenario.src_classes if scenario.api == "reverse_sync" else scenario.dst_classes
    found = set()
    for node in scenario.nodes:
        index = ("site", "device", "interface", "vlan").index(node.model)
        node_flags = node.src_flags if scenario.api == "reverse_sync" else node.dst_flags
        flags = node_flags if node_flags is not None else target.flags[index]
        if flags & NATURAL and not flags & SKIP_CHILDREN:
            found.add((node.model, node.uid))
    return found


def _check_parent_order(scenario, got, children_first):
    """Each hook call comes after its parent's, except a children-first delete, which comes after its children."""
    position = {(call[1], call[2]): index for index, call in enumerate(got["hook_calls"])}
    for node in scenario.nodes:
        key, parent = (node.model, node.uid), node.parent
        if parent is None or key not in position or parent not in position:
            continue
        parent_call = got["hook_calls"][position[parent]]
        if parent_call[0] == "delete" and parent in children_first:
            assert position[key] < position[parent], (node, parent)
        else:
            assert position[parent] < position[key], (node, parent)


@_settings(300)
@given(scenarios(apis=("sync_from", "sync_to", "reverse_sync", "diff_sync_from", "diff_sync_to")))
def test_looping_batch_hooks_give_diffsyncs_results(scenario):
    """Grouped operations (looping batch hooks) give diffsync's results, hook calls in order per model/action."""
    ref_scenario, sut_scenario = _batched(scenario)
    ref = run_scenario(REF, ref_scenario)
    got = run_scenario(SUT, sut_scenario)
    children_first = _children_first(sut_scenario)
    compare(ref, got, children_first)
    _check_parent_order(sut_scenario, got, children_first)
    # The grouping is real: with objects to change, batch hooks were called instead of singles one by one.
    if got["hook_calls"]:
        assert any(str(e[0]).endswith("_batch") for e in got["events"])


@pytest.mark.parametrize("fail", ["raise", "raise_base"])
def test_exception_without_continue_stops_after_the_batch(fail):
    """Without CONTINUE_ON_FAILURE a failed item stops the sync once its whole batch is recorded."""
    from .test_differential import Scenario, device_node, site_node

    nodes = [site_node(f"s{i}", src={}, fail=fail if i == 1 else "ok") for i in range(3)]
    nodes += [device_node(f"s{i}", "d0", src={}) for i in range(3)]
    scenario = Scenario(nodes=nodes)
    scenario.dst_classes = scenario.dst_classes._replace(batch_loop=True)
    got = run_scenario(SUT, scenario)
    assert got["exception"][0] in ("ObjectNotCreated", "ObjectCrudException")
    calls = [(c[0], c[1], c[2]) for c in got["hook_calls"]]
    # every site of the batch was created (the remote saw them all); no device, as the sync stopped
    assert calls == [("create", "site", "s0"), ("create", "site", "s1"), ("create", "site", "s2")]
    assert sorted(got["dst"]["dict"].get("site", {})) == ["s0", "s2"]
    assert ("error", "create", "site", "s1") in {
        (e.get("log_level"), e.get("action"), e.get("model"), e.get("unique_id")) for e in got["logs_full"]
    }
