"""Two processes on one store id: each reads the other's writes, and a sync run elsewhere is visible here.

The other process is a real subprocess running a helper script written into ``tmp_path``.  The interleaved
test drives it step by step over its stdin/stdout (one JSON command and one JSON answer a line), so the
order of the two processes' writes and reads is fixed without sleeping.
"""

import concurrent.futures
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from core import keys
from core.enum import DiffSyncFlags
from core.exceptions import ObjectAlreadyExists
from core.store.redis import RedisStore

from ._models import DB, HOST, PORT, SOURCE, TARGET, Network, Vlan, children_tree, content, populate

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]
DEADLINE = 60  # seconds; only reached if the subprocess hangs

HELPER = textwrap.dedent(
    """
    import json
    import sys

    sys.path[:0] = [{repo!r}, {here!r}]

    from core.store.redis import RedisStore

    from _models import DB, HOST, PORT, Network, children_tree, content, populate


    def open_adapter(store_id, batch_size=1000):
        store = RedisStore(host=HOST, port=PORT, db=DB, store_id=store_id, batch_size=batch_size)
        return Network(internal_storage_engine=store)


    def decode_spec(spec):
        spec = dict(spec)
        spec["vlan"] = {{int(vid): attrs for vid, attrs in spec.get("vlan", {{}}).items()}}
        return spec


    def run(command, state):
        op = command["op"]
        if op == "open":
            state["adapter"] = open_adapter(command["store_id"], command.get("batch_size", 1000))
            return {{}}
        adapter = state.get("adapter")
        if op == "add_vlans":
            for vid in command["vids"]:
                adapter.add(adapter.vlan(vid=vid, label=command["label"]))
            return {{}}
        if op == "populate":
            populate(adapter, decode_spec(command["spec"]))
            return {{}}
        if op == "flush":
            adapter.store.flush()
            return {{}}
        if op == "read":
            return {{
                "content": content(adapter),
                "vlan_order": [obj.get_unique_id() for obj in adapter.get_all("vlan")],
                "tree": children_tree(adapter),
                "count": adapter.count(),
            }}
        if op == "sync":
            source = open_adapter(command["source"])
            target = open_adapter(command["target"])
            diff = target.sync_from(source)
            return {{"summary": diff.summary(), "calls": target.calls}}
        raise ValueError(op)


    def main():
        state = {{}}
        if len(sys.argv) > 1:  # one-shot: commands as arguments
            for arg in sys.argv[1:]:
                answer = run(json.loads(arg), state)
            print(json.dumps(answer))
            return
        for line in sys.stdin:
            command = json.loads(line)
            if command["op"] == "exit":
                break
            print(json.dumps(run(command, state)), flush=True)


    main()
    """
).format(repo=str(REPO), here=str(HERE))


@pytest.fixture
def helper(tmp_path):
    path = tmp_path / "store_helper.py"
    path.write_text(HELPER)
    return path


def run_helper(helper, *commands):
    """Run the helper once with these commands; returns the answer to the last one."""
    result = subprocess.run(
        [sys.executable, str(helper), *(json.dumps(command) for command in commands)],
        capture_output=True,
        text=True,
        timeout=DEADLINE,
        cwd=str(REPO),
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


class Conversation:
    """A helper subprocess driven one command at a time."""

    def __init__(self, helper):
        self.proc = subprocess.Popen(
            [sys.executable, str(helper)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=str(REPO),
        )
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)

    def ask(self, **command):
        self.proc.stdin.write(json.dumps(command) + "\n")
        self.proc.stdin.flush()
        line = self._pool.submit(self.proc.stdout.readline).result(timeout=DEADLINE)
        if not line:
            raise AssertionError(f"helper died: {self.proc.stderr.read()}")
        return json.loads(line)

    def close(self):
        try:
            if self.proc.poll() is None:
                self.proc.stdin.write(json.dumps({"op": "exit"}) + "\n")
                self.proc.stdin.flush()
                self.proc.wait(timeout=DEADLINE)
        finally:
            if self.proc.poll() is None:  # pragma: no cover - only if it hung
                self.proc.kill()
                self.proc.wait()
            for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
                stream.close()
            self._pool.shutdown()
        return self.proc.returncode


@pytest.fixture
def conversation(helper, redis_client):
    conversations = []

    def start():
        conversations.append(Conversation(helper))
        return conversations[-1]

    yield start
    for conv in conversations:
        assert conv.close() == 0


def _json_spec(spec):
    """A spec as it survives JSON (vlan ids become strings)."""
    return json.loads(json.dumps(spec))


def test_interleaved_writes_and_reads_between_two_processes(rbackend, conversation, local):
    parent = rbackend.adapter()
    store_id = parent.store.store_id
    for vid in range(1, 6):
        parent.add(Vlan(vid=vid, label="parent"))
    parent.store.flush()

    child = conversation()
    child.ask(op="open", store_id=store_id)
    seen = child.ask(op="read")
    assert seen["vlan_order"] == ["1", "2", "3", "4", "5"]

    # The child writes while the parent is still running, and the parent reads those writes.
    child.ask(op="add_vlans", vids=list(range(101, 106)), label="child")
    child.ask(op="populate", spec=_json_spec({"site": SOURCE["site"]}))
    child.ask(op="flush")
    assert [obj.get_unique_id() for obj in parent.get_all("vlan")] == ["1", "2", "3", "4", "5"] + [
        str(vid) for vid in range(101, 106)
    ]
    assert parent.get("vlan", "103").label == "child"
    expected_tree = local.adapter()
    populate(expected_tree, {"site": SOURCE["site"]})
    assert children_tree(parent) == children_tree(expected_tree)
    assert not parent.diff_from(expected_tree, flags=DiffSyncFlags.SKIP_UNMATCHED_DST).has_diffs()

    # The parent writes again; the child (same process as before) reads it.
    for vid in range(6, 9):
        parent.add(Vlan(vid=vid, label="parent-late"))
    parent.update(Vlan(vid=101, label="changed by parent"))
    assert parent.count("vlan") == 13  # a read: sends the buffered writes
    seen = child.ask(op="read")
    order = ["1", "2", "3", "4", "5"] + [str(vid) for vid in range(101, 106)] + ["6", "7", "8"]
    assert seen["vlan_order"] == order
    assert seen["content"]["vlan"]["7"]["label"] == "parent-late"
    assert seen["content"]["vlan"]["101"]["label"] == "changed by parent"
    assert seen["count"] == parent.count() == 13 + expected_tree.count()
    assert seen["content"] == json.loads(json.dumps(content(parent)))


def test_writes_of_a_finished_subprocess_are_read_by_an_adapter_opened_before(rbackend, helper, local):
    parent = rbackend.adapter()  # opened before the other process writes
    assert parent.count() == 0
    store_id = parent.store.store_id
    run_helper(
        helper, {"op": "open", "store_id": store_id}, {"op": "populate", "spec": _json_spec(SOURCE)}, {"op": "flush"}
    )

    expected = local.adapter()
    populate(expected, SOURCE)
    assert content(parent) == content(expected)
    assert children_tree(parent) == children_tree(expected)
    assert [obj.vid for obj in parent.get_all("vlan")] == [10, 20, 40]
    assert not parent.diff_from(expected).has_diffs()


def test_parent_writes_are_read_by_a_subprocess(rbackend, helper, local):
    parent = rbackend.adapter()
    populate(parent, SOURCE)
    parent.store.flush()
    seen = run_helper(helper, {"op": "open", "store_id": parent.store.store_id}, {"op": "read"})
    expected = local.adapter()
    populate(expected, SOURCE)
    assert seen["content"] == json.loads(json.dumps(content(expected)))
    assert seen["tree"] == children_tree(expected)
    assert seen["vlan_order"] == ["10", "20", "40"]


def test_sync_done_in_a_subprocess_is_visible_in_the_parent(rbackend, helper, local):
    source, target = rbackend.adapter(), rbackend.adapter()
    populate(source, SOURCE)
    populate(target, TARGET)
    source.store.flush()
    target.store.flush()
    assert target.diff_from(source).has_diffs()

    answer = run_helper(helper, {"op": "sync", "source": source.store.store_id, "target": target.store.store_id})

    local_source, local_target = local.adapter(), local.adapter()
    populate(local_source, SOURCE)
    populate(local_target, TARGET)
    expected_diff = local_target.sync_from(local_source)
    assert answer["summary"] == expected_diff.summary()
    assert [tuple(call) for call in answer["calls"]] == local_target.calls
    # The parent's adapters, opened before the sync, read its result.
    assert content(target) == content(local_target)
    assert children_tree(target) == children_tree(local_target)
    assert not target.diff_from(source).has_diffs()
    assert not rbackend.reread(target).diff_from(rbackend.reread(source)).has_diffs()


def test_concurrent_adds_from_two_processes(rbackend, conversation, redis_client):
    """Both processes add to one type at once: every object is kept, once, and each side's order holds."""
    parent = rbackend.adapter(batch_size=5)
    store_id = parent.store.store_id
    child = conversation()
    child.ask(op="open", store_id=store_id, batch_size=7)

    pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)
    try:
        child_vids = list(range(1000, 1300))
        pending = pool.submit(child.ask, op="add_vlans", vids=child_vids, label="child")
        parent_vids = list(range(0, 300))
        for vid in parent_vids:
            parent.add(Vlan(vid=vid, label="parent"))
        parent.store.flush()
        pending.result(timeout=DEADLINE)
    finally:
        pool.shutdown()
    child.ask(op="flush")

    order = [obj.vid for obj in parent.get_all("vlan")]
    assert sorted(order) == parent_vids + child_vids
    assert [vid for vid in order if vid < 1000] == parent_vids
    assert [vid for vid in order if vid >= 1000] == child_vids
    positions = redis_client.zrange(keys.order_key(store_id, "vlan"), 0, -1, withscores=True)
    assert len({score for _, score in positions}) == 600
    assert child.ask(op="read")["vlan_order"] == [str(vid) for vid in order]


def test_add_conflicting_with_another_process_is_rejected(rbackend, helper):
    parent = rbackend.adapter()
    store_id = parent.store.store_id
    run_helper(
        helper,
        {"op": "open", "store_id": store_id},
        {"op": "add_vlans", "vids": [1, 2], "label": "child"},
        {"op": "flush"},
    )
    # The same content again is accepted (as by diffsync's RedisStore, records are compared by content).
    parent.add(Vlan(vid=1, label="child"))
    assert parent.count() == 2
    with pytest.raises(ObjectAlreadyExists):
        parent.add(Vlan(vid=2, label="parent"))
        parent.count()
    assert parent.get("vlan", "2").label == "child"
    other = Network(internal_storage_engine=RedisStore(host=HOST, port=PORT, db=DB, store_id=store_id))
    try:
        assert other.get("vlan", "2").label == "child"
    finally:
        other.store.client.close()
