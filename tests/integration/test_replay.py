"""Crash a shard at any hook call, run it again from its journal: the target ends as a local sync leaves it.

No workers here: the shard's syncer runs in this process against a real RedisStore (database 13), the way a
worker runs it. A crash is an exception no handler catches, raised inside a hook; the crashed run's
unflushed store writes and unwritten journal entries are dropped, as a killed process's would be. The second
run is a redelivery: the journal's entries, ``redelivered=True``, a fresh store object on the same namespace.
"""

from __future__ import annotations

import uuid
from typing import Any, Dict, List

import pytest
from _compare import REDIS_URL, contents, local_sync
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from redis import Redis
from ss_test_adapters import DatasetAdapter, read_calls
from test_equivalence import scenarios

from core.diff import Diff
from core.diff_codec import DiffCodec
from core.planner import number_elements
from core.store.redis import RedisStore
from worker.job.spec import parse_flags
from worker.pipeline.journal import ShardSyncer
from worker.state import MemoryJobState


class Crash(BaseException):
    """A process dying: nothing in the syncer catches it."""


def planned_records(source_data, store_id, flags) -> List[Any]:
    """The diff as the diff task keeps it: computed once, before any shard runs."""
    source = DatasetAdapter(data=source_data, name="src")
    source.load()
    target = DatasetAdapter(name="dst")
    target.attach_store(RedisStore(url=REDIS_URL, store_id=store_id))
    codec = DiffCodec(source, target)
    return [codec.encode(element) for element in target.diff_from(source, flags=flags).get_children()]


def run_shard(
    records, source_data, store_id, flags, calls_key, journal, crash_at=None, redelivered=False, batch=1
) -> None:
    source = DatasetAdapter(data=source_data, name="src")
    source.load()
    target = DatasetAdapter(record_url=REDIS_URL, calls_key=calls_key, name="dst")
    target.attach_store(RedisStore(url=REDIS_URL, store_id=store_id, lazy_reads=True))
    codec = DiffCodec(source, target)
    shard = Diff()
    op_ids: Dict[int, str] = {}
    for root, record in enumerate(records):
        element = codec.decode(record, source.name, target.name)
        number_elements(root, element, op_ids)
        shard.add(element)
    calls = {"n": 0}
    if crash_at is not None:
        record = target.record

        def crashing_record(*args: Any) -> None:
            record(*args)
            if calls["n"] == crash_at:
                raise Crash()
            calls["n"] += 1

        target.record = crashing_record  # type: ignore[method-assign]
    syncer = ShardSyncer(
        diff=shard,
        src=source,
        dst=target,
        flags=flags,
        job=journal,
        op_ids=op_ids,
        done=journal.journal(),
        redelivered=redelivered,
        checkpoint_every=batch,
    )
    syncer.run()
    syncer.finish()


@pytest.fixture(scope="module")
def client():
    redis = Redis.from_url(REDIS_URL)
    yield redis


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None)
@given(scenario=scenarios(), crash_at=st.integers(min_value=0, max_value=25), batch=st.sampled_from([1, 1, 3]))
def test_a_crashed_shard_run_again_from_its_journal_ends_as_a_local_sync(client, scenario, crash_at, batch) -> None:
    source, target_data, flag_names = scenario["source"], scenario["target"], scenario["flags"]
    flags = parse_flags(flag_names)
    expected, local_calls, _ = local_sync(source, target_data, flag_names, client, REDIS_URL)
    store_id = f"test-replay-{uuid.uuid4().hex}"
    calls_key = f"test:calls:{uuid.uuid4().hex}"
    loader = DatasetAdapter(data=target_data, name="loader")
    loader.store = RedisStore(url=REDIS_URL, store_id=store_id, adapter=loader)  # as a load task does
    loader.load()
    journal = MemoryJobState(f"replay-{uuid.uuid4().hex}")
    try:
        records = planned_records(source, store_id, flags)
        crashed = False
        try:
            run_shard(records, source, store_id, flags, calls_key, journal, crash_at=crash_at, batch=batch)
        except Crash:
            crashed = True
        if crashed:
            run_shard(records, source, store_id, flags, calls_key, journal, redelivered=True, batch=batch)
        reader = DatasetAdapter(name="reader")
        reader.attach_store(RedisStore(url=REDIS_URL, store_id=store_id))
        assert contents(reader) == expected
        calls = [tuple(map(repr, call[:3])) for call in read_calls(client, calls_key) if call[0] != "sync_complete"]
        local = [tuple(map(repr, call[:3])) for call in local_calls if call[0] != "sync_complete"]
        repeated: List[Any] = [call for call in set(calls) if calls.count(call) > 1]
        assert sorted(set(calls)) == sorted(set(local)), "an operation was lost or invented"
        # The hook in flight, and the finished operations of the batch not yet journaled: each once.
        assert len(repeated) <= (batch if crashed else 0), f"hooks run twice: {repeated}"
        assert all(calls.count(call) <= 2 for call in repeated), "a hook ran more than twice"
    finally:
        RedisStore(url=REDIS_URL, store_id=store_id).clear()
        client.delete(calls_key)
