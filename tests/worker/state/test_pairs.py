"""An incremental pair's record and kept stores in Redis (``worker.state.pairs``), and ``forget`` on them."""

from __future__ import annotations

import json
import os
import uuid

import pytest
from click.testing import CliRunner
from redis import Redis

from core import keys
from worker.adapters.demo import InventoryAdapter
from worker.cli.main import cli
from worker.errors import InvalidJob
from worker.pairs.runs import forget_pair
from worker.state.codec import pack
from worker.state.pairs import RedisPairs


@pytest.fixture
def pair():
    client = Redis.from_url(os.environ["SHARDSYNC_BROKER_URL"])
    name = "t-pair-" + uuid.uuid4().hex[:12]
    yield client, name
    RedisPairs(client).forget(name)
    client.delete(keys.job_key(f"{name}-job", "spec"), keys.job_key(f"{name}-job", "report"))


def loaded(client: Redis, name: str) -> None:
    """Both kept stores hold the demo inventory."""
    for side in ("source", "target"):
        store = RedisPairs(client).store(name, side)
        adapter = InventoryAdapter(sites=2)
        adapter.store, store.adapter = store, adapter
        adapter.load()
        store.flush()


def test_a_record_is_saved_whole_and_renews_every_key_of_both_stores(pair, monkeypatch) -> None:
    client, name = pair
    loaded(client, name)
    store_keys = [key for side in ("source", "target") for key in client.scan_iter(match=f"*pair-{name}-{side}*")]
    assert len(store_keys) >= 6
    for key in store_keys:
        client.expire(key, 5)  # as a type no run wrote for days
    RedisPairs(client).save(name, {"state": "warm", "cursors": {"source": 7, "target": None}, "runs": 2})
    assert RedisPairs(client).record(name) == {"state": "warm", "cursors": {"source": 7, "target": None}, "runs": 2}
    assert all(client.ttl(key) > 600_000 for key in store_keys), "every key of the kept stores lives PAIR_TTL again"
    RedisPairs(client).save(name, {"state": "loading"})
    assert RedisPairs(client).record(name) == {"state": "loading"}, "a record is written whole, never merged"


def test_forget_drops_the_record_and_both_stores_but_not_while_a_run_runs(pair) -> None:
    client, name = pair
    loaded(client, name)
    running = f"{name}-job"
    client.set(keys.job_key(running, "spec"), pack({"job_id": running}), ex=60)
    RedisPairs(client).save(name, {"state": "warm", "running": running})
    with pytest.raises(InvalidJob, match="is running"):
        forget_pair(name)
    client.set(keys.job_key(running, "report"), pack({"status": "success"}), ex=60)
    result = CliRunner().invoke(cli, ["forget", name])
    assert result.exit_code == 0 and "forgotten" in result.output
    assert not list(client.scan_iter(match=f"*pair-{name}-*")) and not client.exists(keys.pair_key(name))
    again = CliRunner().invoke(cli, ["forget", name])
    assert again.exit_code == 0 and "was not kept" in again.output


def test_pairs_lists_what_each_kept_pair_syncs_and_holds(pair) -> None:
    client, name = pair
    loaded(client, name)
    identity = {"source": "demo", "target": "demo-api", "scope": None}
    RedisPairs(client).save(name, {"identity": identity, "state": "warm", "job": "j-1", "runs": 3, "full_at": 0.0,
                                   "cursors": {"source": 41, "target": None}})  # fmt: skip
    result = CliRunner().invoke(cli, ["pairs", "--json"])
    assert result.exit_code == 0, result.output
    (found,) = [entry for entry in json.loads(result.output) if entry["pair"] == name]
    assert found["state"] == "warm" and found["runs_since_full"] == 3 and found["cursors"]["source"] == 41
    assert found["objects"] == {"source": 14, "target": 14} and found["full_at"] is None  # 2 sites of 2 of 2
    shown = CliRunner().invoke(cli, ["pairs"]).output
    assert f"{name}: demo -> demo-api, warm, last job j-1, 3 runs since the full one of never; objects 14 / 14" in shown
