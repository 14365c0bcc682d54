"""Run the same sync locally and as a distributed job, and compare what each did."""

from __future__ import annotations

import os
import uuid
from typing import Any, Dict, List, Optional, Tuple

from redis import Redis
from ss_test_adapters import DatasetAdapter, read_calls

from core.enum import DiffSyncFlags
from core.exceptions import ObjectCrudException
from core.keys import job_store_id
from core.store.redis import RedisStore
from worker import JobFailed, submit_sync
from worker.job.spec import JobSpec, parse_flags
from worker.runners.local import run_local
from worker.state import MemoryJobState

REDIS_URL = os.environ["SHARDSYNC_BROKER_URL"]


def root_of(call: List[Any]) -> str:
    """The top-level subtree a hook call belongs to (uids are built from the parent's: "site__device__port")."""
    return call[2].split("__")[0]


def take_calls(client: Redis, key: str) -> List[List[Any]]:
    """The hook calls recorded under ``key``, which is then deleted."""
    calls = read_calls(client, key)
    client.delete(key)
    return calls


def local_sync(
    source_data: Dict[str, Any], target_data: Dict[str, Any], flags: List[str], client: Redis, record_url: str
) -> Tuple[Dict[str, Any], List[List[Any]], Optional[str]]:
    """``target.sync_from(source)`` in this process: (target contents, hook calls, error)."""
    key = f"test:calls:local:{uuid.uuid4().hex}"
    source = DatasetAdapter(data=source_data, name="src")
    target = DatasetAdapter(data=target_data, record_url=record_url, calls_key=key, name="dst")
    source.load()
    target.load()
    error = None
    try:
        target.sync_from(source, flags=parse_flags(flags) if flags else DiffSyncFlags.NONE)
    except ObjectCrudException as err:
        error = str(err)
    calls = take_calls(client, key)
    return contents(target), calls, error


def distributed_sync(
    source_data: Dict[str, Any],
    target_data: Dict[str, Any],
    flags: List[str],
    client: Redis,
    record_url: str,
    timeout: float = 90,
    **options: Any,
) -> Tuple[Dict[str, Any], List[List[Any]], Dict[str, Any], Optional[JobFailed]]:
    """The same sync as a job on the real workers: (target store contents, hook calls, report, failure)."""
    key = f"test:calls:job:{uuid.uuid4().hex}"
    handle = submit_sync(
        source="dataset",
        target="dataset",
        source_kwargs={"data": source_data, "name": "src"},
        target_kwargs={"data": target_data, "record_url": record_url, "calls_key": key, "name": "dst"},
        flags=flags,
        **options,
    )
    failure = None
    try:
        report = handle.wait(timeout=timeout)
    except JobFailed as err:
        failure = err
        report = err.report or {}
    calls = take_calls(client, key)
    return target_contents(handle.id, record_url), calls, report, failure


def embedded_sync(
    source_data: Dict[str, Any],
    target_data: Dict[str, Any],
    flags: List[str],
    client: Redis,
    record_url: str,
    **options: Any,
) -> Tuple[Dict[str, Any], List[List[Any]], Dict[str, Any], Optional[JobFailed]]:
    """The same sync on the embedded runner (this process, memory state): as ``distributed_sync`` returns."""
    key = f"test:calls:embedded:{uuid.uuid4().hex}"
    spec = JobSpec.from_data(
        {
            "source": "dataset",
            "target": "dataset",
            "source_kwargs": {"data": source_data, "name": "src"},
            "target_kwargs": {"data": target_data, "record_url": record_url, "calls_key": key, "name": "dst"},
            "flags": flags,
            **options,
        }
    )
    state = MemoryJobState(spec.job_id)
    failure = None
    try:
        report = run_local(spec, state=state)
    except JobFailed as err:
        failure = err
        report = err.report or {}
    calls = take_calls(client, key)
    reader = DatasetAdapter(name="reader")
    reader.attach_store(state.open_store("target"))
    return contents(reader), calls, report, failure


def target_contents(job_id: str, record_url: str) -> Dict[str, Any]:
    """What a job left in its target store, read back through a fresh adapter."""
    adapter = DatasetAdapter(name="reader")
    store = RedisStore(url=record_url, store_id=job_store_id(job_id, "target"))
    adapter.attach_store(store)
    return contents(adapter)


def contents(adapter: DatasetAdapter) -> Dict[str, Any]:
    """``adapter.dict()`` without empty types (LocalStore, as diffsync's, lists types that were only looked up)."""
    return {modelname: objects for modelname, objects in adapter.dict().items() if objects}


def assert_same_calls(local: List[List[Any]], distributed: List[List[Any]], barrier: bool) -> None:
    """Same hook calls; same order within each top-level subtree; waves in order when there is a barrier."""
    strip = [call[:4] for call in local if call[0] != "sync_complete"]
    dist = [call[:4] for call in distributed if call[0] != "sync_complete"]
    assert sorted(map(repr, strip)) == sorted(map(repr, dist)), "different hook calls"
    per_root_local: Dict[str, List[Any]] = {}
    per_root_dist: Dict[str, List[Any]] = {}
    for call in strip:
        per_root_local.setdefault(root_of(call), []).append(call)
    for call in dist:
        per_root_dist.setdefault(root_of(call), []).append(call)
    assert per_root_local == per_root_dist, "different order of hook calls inside a subtree"
    position = {(call[0], call[1], call[2]): index for index, call in enumerate(dist)}
    parents = {"device": "site", "port": "device"}
    for action, model, uid, _ in dist:
        if action == "delete" or model not in parents:
            continue  # deletes may go children first (NATURAL_DELETION_ORDER), as in a local sync
        parent_uid = uid.rsplit("__", 1)[0]
        for parent_action in ("create", "update"):
            parent = position.get((parent_action, parents[model], parent_uid))
            if parent is not None:
                assert parent < position[(action, model, uid)], f"{model} {uid} {action} before its parent's"
    if barrier:
        types = [call[1] for call in dist]
        if "region" in types and any(modelname != "region" for modelname in types):
            last_region = max((i for i, t in enumerate(types) if t == "region"), default=-1)
            first_site = min((i for i, t in enumerate(types) if t != "region"), default=len(types))
            assert last_region < first_site, "a site subtree ran before the region wave finished"
    local_complete = [call for call in local if call[0] == "sync_complete"]
    dist_complete = [call for call in distributed if call[0] == "sync_complete"]
    assert len(local_complete) == len(dist_complete), "sync_complete called differently"
    if local_complete:
        assert distributed[-1][0] == "sync_complete", "sync_complete was not the last call"
        assert local_complete[0][3] == dist_complete[0][3], "sync_complete saw a different diff summary"
