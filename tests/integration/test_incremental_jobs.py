"""Incremental pairs on the 2 real workers: the pair's stores kept in Redis between jobs, a run of changes that
equals a full sync, a pool process killed in the middle of one, and ``forget``."""

from __future__ import annotations

import os
import signal
import uuid
from pathlib import Path
from typing import Any, Dict

import pytest
from _workers import poll
from redis import Redis

from core import keys
from worker import forget_pair, submit_sync
from worker.adapters.demo_db import change_inventory_db, connect, db_state, make_inventory_db

pytestmark = pytest.mark.usefixtures("workers")

SHAPE = {"sites": 30, "devices": 3, "interfaces": 4}


def run(source: str, target: str, pair: str, **options: Any) -> Dict[str, Any]:
    handle = submit_sync("demo-db", options.pop("target_adapter", "demo-db"), source_kwargs={"path": source},
                         target_kwargs={"path": target}, pair=pair, allow_deletes=True, **options)  # fmt: skip
    return handle.wait(timeout=120)


def change_source(path: str) -> None:
    """Updates, creates and deletes at every level, as a day of edits in a source of truth."""
    conn = connect(path)
    conn.execute("UPDATE interface SET description = 'edited' WHERE uid LIKE 'site-000%__dev-01__et-0/0/2'")
    conn.execute("UPDATE device SET role = 'edge' WHERE uid = 'site-0012__dev-00'")
    conn.execute("UPDATE site SET status = 'retired' WHERE name = 'site-0020'")
    conn.execute("INSERT INTO interface VALUES ('site-0003__dev-02__et-9', 'site-0003__dev-02', 'et-9', 'n', 1, 9000)")
    conn.execute("INSERT INTO site VALUES ('site-0700', 'apac', 'active')")
    conn.execute("INSERT INTO device VALUES ('site-0700__r1', 'site-0700', 'r1', 'mx', 'edge', 'SN1')")
    conn.execute("DELETE FROM interface WHERE uid = 'site-0014__dev-01__et-0/0/0'")
    conn.execute("DELETE FROM interface WHERE device = 'site-0015__dev-02'")
    conn.execute("DELETE FROM device WHERE uid = 'site-0015__dev-02'")
    conn.execute("DELETE FROM interface WHERE device LIKE 'site-0017__%'")
    conn.execute("DELETE FROM device WHERE site = 'site-0017'")
    conn.execute("DELETE FROM site WHERE name = 'site-0017'")
    conn.close()


@pytest.fixture()
def systems(tmp_path: Path) -> Dict[str, str]:
    source, target = str(tmp_path / "source.sqlite"), str(tmp_path / "target.sqlite")
    make_inventory_db(source, variant=1, **SHAPE)
    make_inventory_db(target, variant=0, **SHAPE)
    return {"source": source, "target": target}


def test_runs_of_a_pair_on_workers_equal_full_syncs_and_forget_drops_it(redis_db: Redis, systems) -> None:
    pair = f"it-{uuid.uuid4().hex[:8]}"
    first = run(systems["source"], systems["target"], pair)
    assert first["status"] == "success", first.get("error")
    assert first["pair"]["run"] == "full" and first["operations"] > 0
    assert db_state(systems["source"]) == db_state(systems["target"])
    kept = redis_db.hlen(keys.objects_key(keys.pair_store_id(pair, "target"), "interface"))
    assert kept == len(db_state(systems["target"])["interface"]), "the pair's target store is kept, whole"

    change_source(systems["source"])
    behind = connect(systems["target"])  # the target changed behind the pair's back, on a path the run looks at
    behind.execute("UPDATE device SET model = 'tampered' WHERE uid = 'site-0012__dev-00'")
    behind.close()
    second = run(systems["source"], systems["target"], pair)
    assert second["status"] == "success", second.get("error")
    assert second["pair"]["run"] == "changes" and second["pair"]["cursors_advanced"]
    assert second["summary"]["no-change"] < 200, "a run of changes compares only the changed paths"
    assert db_state(systems["source"]) == db_state(systems["target"])

    third = run(systems["source"], systems["target"], pair)  # nothing changed since (but its own writes)
    assert third["pair"]["run"] == "changes" and third["operations"] == 0, third["summary"]

    assert forget_pair(pair) is True
    assert not redis_db.exists(keys.pair_key(pair))
    assert not redis_db.exists(keys.objects_key(keys.pair_store_id(pair, "source"), "site"))
    fourth = run(systems["source"], systems["target"], pair)
    assert fourth["pair"]["run"] == "full" and fourth["operations"] == 0
    forget_pair(pair)


def test_a_pool_process_killed_in_a_run_of_changes_loses_and_repeats_nothing(redis_db: Redis, systems) -> None:
    pair = f"it-{uuid.uuid4().hex[:8]}"
    assert run(systems["source"], systems["target"], pair, target_adapter="demo-db-gated")["status"] == "success"
    change_source(systems["source"])
    gated = "site-0005__dev-01__et-0/0/2"
    conn = connect(systems["target"])
    conn.execute("CREATE TABLE IF NOT EXISTS gate (uid TEXT PRIMARY KEY, pid INTEGER)")
    conn.execute("INSERT INTO gate VALUES (?, NULL)", (gated,))
    handle = submit_sync("demo-db", "demo-db-gated", source_kwargs={"path": systems["source"]},
                         target_kwargs={"path": systems["target"]}, pair=pair, allow_deletes=True)  # fmt: skip
    pid = poll(lambda: conn.execute("SELECT pid FROM gate").fetchone()[0], timeout=60, what="the gated update")
    os.kill(int(pid), signal.SIGKILL)  # the pool process applying the run's shard dies mid-hook
    conn.execute("DELETE FROM gate")
    report = handle.wait(timeout=120)
    assert report["status"] == "success", report.get("error")
    assert report["pair"]["run"] == "changes" and report["pair"]["cursors_advanced"]
    assert sum(shard["replayed"] for shard in report["shards"]) >= 1, "the redelivered shard replayed its journal"
    assert db_state(systems["source"]) == {**db_state(systems["target"])}
    again = run(systems["source"], systems["target"], pair, target_adapter="demo-db-gated")
    assert again["pair"]["run"] == "changes" and again["operations"] == 0, "the kept stores are what was written"
    conn.close()
    forget_pair(pair)


@pytest.mark.parametrize("target_changes", [True, False], ids=["target-lists-changes", "target-verified"])
def test_random_rounds_on_workers_equal_full_syncs(redis_db: Redis, systems, target_changes: bool) -> None:
    """Rounds of random edits on the source (and one behind the pair's back on the target, on a path the next
    run looks at); each run of changes on the workers leaves the target equal to the source."""
    pair = f"it-{uuid.uuid4().hex[:8]}"

    def one() -> Dict[str, Any]:
        handle = submit_sync("demo-db", "demo-db", source_kwargs={"path": systems["source"]},
                             target_kwargs={"path": systems["target"], "changes": target_changes}, pair=pair,
                             allow_deletes=True, shard_size=20, diff_range=10)  # fmt: skip
        return handle.wait(timeout=120)

    assert one()["pair"]["run"] == "full"
    for seed in range(3):
        change_inventory_db(systems["source"], 40, seed=seed)
        conn = connect(systems["source"])  # a device whose interface the source edits, tampered in the target
        device = conn.execute("SELECT device FROM interface ORDER BY rowid DESC LIMIT 1").fetchone()[0]
        conn.execute("UPDATE interface SET mtu = 1234 WHERE device = ?", (device,))
        conn.close()
        behind = connect(systems["target"])
        behind.execute("UPDATE device SET serial = 'tampered' WHERE uid = ?", (device,))
        behind.close()
        report = one()
        assert report["status"] == "success", report.get("error")
        assert report["pair"]["run"] == "changes"
        if not target_changes:
            assert report["pair"]["target"]["drifted_count"] >= 1
        assert db_state(systems["target"]) == db_state(systems["source"]), f"round {seed}"
    forget_pair(pair)
