"""Incremental pairs (``JobSpec.pair``) on the embedded runner, against full syncs of the same systems.

The systems are the SQLite demo inventory (``worker.adapters.demo_db``): two files that persist between jobs,
whose change logs the pair's runs read. Generated changes on the source and, behind the pair's back, on the
target; each run of changes must leave the target as a full sync would (or, for a target that cannot list its
changes, right wherever the run looked, and right everywhere after the next full reconcile); a failed run never
moves the cursors.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any, Dict, List, Set, Tuple

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.store.local import LocalStore
from worker.adapters.demo_db import DbInterface, DbInventoryAdapter, connect, db_state, make_inventory_db
from worker.adapters.registry import register_adapter, unregister_adapter
from worker.errors import InvalidJob, JobFailed
from worker.job.spec import JobSpec
from worker.pairs.paths import apply_merge, plan_merge, union_trees
from worker.runners.local import run_local
from worker.state.pairs import MEMORY_PAIRS

SHAPE = {"sites": 8, "devices": 2, "interfaces": 3}
FAILING: Set[str] = set()
"""Unique ids whose update the ``test-db-failing`` target refuses (a bug in its hook)."""


class FailingInterface(DbInterface):
    @classmethod
    def create(cls, adapter: Any, ids: Dict, attrs: Dict) -> Any:
        if cls.create_unique_id(**ids) in FAILING:
            raise RuntimeError(f"the hook broke on {cls.create_unique_id(**ids)}")
        return super().create(adapter=adapter, ids=ids, attrs=attrs)

    def update(self, attrs: Dict) -> Any:
        if self.get_unique_id() in FAILING:
            raise RuntimeError(f"the hook broke on {self.get_unique_id()}")
        return super().update(attrs)


class FailingDb(DbInventoryAdapter):
    interface = FailingInterface


@pytest.fixture(autouse=True, scope="module")
def failing_adapter():
    register_adapter("test-db-failing", FailingDb)
    yield
    unregister_adapter("test-db-failing")


def spec(paths: Dict[str, str], pair: str, target: str = "demo-db", changes: bool = True, **extra: Any) -> JobSpec:
    return JobSpec.from_data({
        "source": "demo-db", "target": target, "source_kwargs": {"path": paths["source"]},
        "target_kwargs": {"path": paths["target"], "changes": changes}, "pair": pair, "allow_deletes": True,
        "shard_size": 7, **extra,
    })  # fmt: skip


def systems(folder: Path) -> Dict[str, str]:
    name = uuid.uuid4().hex
    paths = {"source": str(folder / f"s-{name}.sqlite"), "target": str(folder / f"t-{name}.sqlite")}
    make_inventory_db(paths["source"], variant=1, **SHAPE)
    make_inventory_db(paths["target"], variant=0, **SHAPE)
    return paths


# One edit of a system: (table, action, site number, device number, interface number).
EDIT = st.tuples(
    st.sampled_from(["site", "device", "interface"]),
    st.sampled_from(["update", "create", "delete"]),
    st.integers(0, SHAPE["sites"]),
    st.integers(0, SHAPE["devices"]),
    st.integers(0, SHAPE["interfaces"]),
)


def edit(path: str, edits: List[Tuple[str, str, int, int, int]], mark: str) -> Set[Tuple[str, str]]:
    """Apply edits to a system (cascading deletes as the demo's hooks do); returns the rows touched."""
    conn = connect(path)
    touched: Set[Tuple[str, str]] = set()
    for table, action, site_no, device_no, port_no in edits:
        site = f"site-{site_no:04d}"
        device = f"{site}__dev-{device_no:02d}"
        port = f"{device}__et-0/0/{port_no}"
        uid = {"site": site, "device": device, "interface": port}[table]
        key = "name" if table == "site" else "uid"
        exists = conn.execute(f"SELECT 1 FROM {table} WHERE {key} = ?", (uid,)).fetchone() is not None
        if action == "update" and exists:
            column = {"site": "status", "device": "role", "interface": "description"}[table]
            conn.execute(f"UPDATE {table} SET {column} = ? WHERE {key} = ?", (mark, uid))
        elif action == "create" and not exists:
            parent_key = {"device": ("site", "name", site), "interface": ("device", "uid", device)}.get(table)
            if parent_key and conn.execute(f"SELECT 1 FROM {parent_key[0]} WHERE {parent_key[1]} = ?",
                                           (parent_key[2],)).fetchone() is None:  # fmt: skip
                continue
            if table == "site":
                conn.execute("INSERT INTO site VALUES (?, 'emea', ?)", (site, mark))
            elif table == "device":
                values = (device, site, f"dev-{device_no:02d}", mark)
                conn.execute("INSERT INTO device VALUES (?, ?, ?, 'm', ?, 's')", values)
            else:
                values = (port, device, f"et-0/0/{port_no}", mark)
                conn.execute("INSERT INTO interface VALUES (?, ?, ?, ?, 1, 1500)", values)
        elif action == "delete" and exists:
            if table == "site":
                conn.execute("DELETE FROM interface WHERE device IN (SELECT uid FROM device WHERE site = ?)", (site,))
                conn.execute("DELETE FROM device WHERE site = ?", (site,))
            if table == "device":
                conn.execute("DELETE FROM interface WHERE device = ?", (device,))
            conn.execute(f"DELETE FROM {table} WHERE {key} = ?", (uid,))
        else:
            continue  # nothing to do: the row is not changed
        touched.add((table, uid))
    conn.close()
    return touched


def rows(state: Dict[str, Dict[str, Any]], touched: Set[Tuple[str, str]]) -> Dict[Tuple[str, str], Any]:
    return {(table, uid): state[table].get(uid) for table, uid in touched}


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(source_edits=st.lists(EDIT, max_size=12), target_edits=st.lists(EDIT, max_size=4))
def test_a_run_of_changes_equals_a_full_sync_when_both_sides_list_their_changes(tmp_path, source_edits, target_edits):
    paths = systems(tmp_path)
    pair = f"p-{uuid.uuid4().hex}"
    try:
        assert run_local(spec(paths, pair))["pair"]["run"] == "full"
        edit(paths["source"], source_edits, "from-source")
        edit(paths["target"], target_edits, "behind-the-back")  # the target's own log lists these too
        report = run_local(spec(paths, pair))
        assert report["status"] == "success", report.get("error")
        assert report["pair"]["run"] == "changes"
        assert db_state(paths["target"]) == db_state(paths["source"])
    finally:
        MEMORY_PAIRS.forget(pair)


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(source_edits=st.lists(EDIT, min_size=1, max_size=12), target_edits=st.lists(EDIT, max_size=4))
def test_a_target_without_cursors_is_right_where_the_run_looked_and_everywhere_after_a_full_reconcile(
    tmp_path, source_edits, target_edits
):
    paths = systems(tmp_path)
    pair = f"p-{uuid.uuid4().hex}"
    try:
        run_local(spec(paths, pair, changes=False))
        touched = edit(paths["source"], source_edits, "from-source")
        edit(paths["target"], target_edits, "behind-the-back")
        report = run_local(spec(paths, pair, changes=False))
        assert report["status"] == "success", report.get("error")
        assert report["pair"]["run"] == "changes"
        source, target = db_state(paths["source"]), db_state(paths["target"])
        assert rows(target, touched) == rows(source, touched), "a row the source changed is synced"
        if not target_edits:
            assert target == source
        full = run_local(spec(paths, pair, changes=False, full=True))
        assert full["pair"]["run"] == "full" and full["pair"]["reason"] == "asked for (full)"
        assert db_state(paths["target"]) == db_state(paths["source"])
    finally:
        MEMORY_PAIRS.forget(pair)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(source_edits=st.lists(EDIT, min_size=1, max_size=12))
def test_cursors_never_move_past_a_failed_run(tmp_path, source_edits):
    paths = systems(tmp_path)
    pair = f"p-{uuid.uuid4().hex}"
    try:
        run_local(spec(paths, pair, target="test-db-failing"))
        before = MEMORY_PAIRS.record(pair)
        edit(paths["source"], source_edits, "from-source")
        conn = connect(paths["source"])  # one interface written whatever the edits did: its hook breaks
        conn.execute("INSERT OR REPLACE INTO site VALUES ('site-0001', 'emea', 'active')")
        conn.execute("INSERT OR REPLACE INTO device VALUES ('site-0001__dev-01', 'site-0001', 'dev-01', 'm', 'r', 's')")
        conn.execute("INSERT OR REPLACE INTO interface VALUES "
                     "('site-0001__dev-01__et-0/0/1', 'site-0001__dev-01', 'et-0/0/1', 'always', 1, 1)")  # fmt: skip
        conn.close()
        FAILING.add("site-0001__dev-01__et-0/0/1")
        with pytest.raises(JobFailed) as raised:
            run_local(spec(paths, pair, target="test-db-failing"))
        FAILING.clear()
        failed = raised.value.report
        assert failed["status"] == "failed" and not failed["pair"]["cursors_advanced"]
        assert MEMORY_PAIRS.record(pair)["cursors"] == before["cursors"]
        again = run_local(spec(paths, pair, target="test-db-failing"))
        assert again["status"] == "success" and again["pair"]["run"] == "changes"
        assert db_state(paths["target"]) == db_state(paths["source"])
    finally:
        FAILING.clear()
        MEMORY_PAIRS.forget(pair)


def test_a_merge_delivered_again_keeps_the_deleted_children_on_the_path(tmp_path) -> None:
    """The first delivery's merge removed a child from its parent; the second still compares it (tree union)."""
    paths = systems(tmp_path)
    adapter = DbInventoryAdapter(path=paths["source"])
    kept = LocalStore()
    adapter.store, kept.adapter = kept, adapter
    adapter.load()
    edit(paths["source"], [("interface", "delete", 2, 1, 0)], "")
    trees = []
    for _ in range(2):  # the same changes merged twice, as a load step delivered again would
        scratch = LocalStore()
        loader = DbInventoryAdapter(path=paths["source"])
        loader.store, scratch.adapter = scratch, loader
        gone = [(kind, uid) for kind, uids in loader.load_changes(0).items() for uid in uids]
        tree, writes = plan_merge(kept, scratch, gone, ["site"], "DbInventoryAdapter")
        trees.append(tree)
        apply_merge(kept, writes, gone)
    deleted = "site-0002__dev-01__et-0/0/0"
    parent = "device\x1fsite-0002__dev-01"
    assert deleted in trees[0]["nodes"][parent]["interface"]
    assert deleted not in trees[1]["nodes"][parent]["interface"], "the kept store no longer lists it"
    assert deleted in union_trees(trees[0], trees[1])["nodes"][parent]["interface"]
    assert deleted not in kept.get(model="device", identifier="site-0002__dev-01").interfaces


def test_a_pair_refuses_another_sync_under_its_name_and_plans(tmp_path) -> None:
    paths = systems(tmp_path)
    pair = f"p-{uuid.uuid4().hex}"
    try:
        run_local(spec(paths, pair))
        with pytest.raises(JobFailed, match="target_kwargs differ.*shardsync forget"):
            run_local(spec(paths, pair, changes=False))
        with pytest.raises(InvalidJob, match="dry_run"):
            spec(paths, pair, dry_run=True)
        with pytest.raises(InvalidJob, match="full"):
            JobSpec.from_data({"source": "demo-db", "target": "demo-db", "full": True})
    finally:
        MEMORY_PAIRS.forget(pair)


def test_full_reconcile_every_n_runs(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("SHARDSYNC_PAIR_FULL_EVERY", "3")
    from worker.settings import get_settings

    get_settings.cache_clear()
    paths = systems(tmp_path)
    pair = f"p-{uuid.uuid4().hex}"
    try:
        runs = [run_local(spec(paths, pair))["pair"]["run"] for _ in range(5)]
        assert runs == ["full", "changes", "changes", "full", "changes"]
    finally:
        MEMORY_PAIRS.forget(pair)
        monkeypatch.delenv("SHARDSYNC_PAIR_FULL_EVERY")
        get_settings.cache_clear()


class Orphans(DbInventoryAdapter):
    """A feed that loads a changed interface without its device and site: its path cannot be known."""

    def load_changes(self, since: Any) -> Any:
        self.add(self.interface(device="site-0001__dev-00", name="et-0/0/0", description="orphan"))
        return {}


def test_a_feed_that_breaks_the_contract_fails_the_run_naming_it_and_moves_no_cursor(tmp_path) -> None:
    register_adapter("test-db-orphans", Orphans)
    paths = systems(tmp_path)
    pair = f"p-{uuid.uuid4().hex}"
    try:
        data = {"source": "test-db-orphans", "target": "demo-db", "source_kwargs": {"path": paths["source"]},
                "target_kwargs": {"path": paths["target"]}, "pair": pair, "allow_deletes": True}  # fmt: skip
        run_local(JobSpec.from_data(data))
        before = MEMORY_PAIRS.record(pair)
        with pytest.raises(JobFailed, match=r"Orphans.load_changes\(\) loaded interface .* without its parent"):
            run_local(JobSpec.from_data(data))
        assert MEMORY_PAIRS.record(pair)["cursors"] == before["cursors"]
    finally:
        MEMORY_PAIRS.forget(pair)
        unregister_adapter("test-db-orphans")
