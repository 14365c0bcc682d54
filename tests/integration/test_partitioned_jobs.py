"""Partitioned loads on real workers and on the embedded runner: the job of an unpartitioned load, in parallel.

A ``dataset-parts`` adapter declares chunks of its sites as partitions; each is loaded as a task of its own
into the side's store. The diff (elements, their order, its text and summary), the plan and the target a job
leaves are those of the same job with unpartitioned loads; a partition that fails fails the job with a
report naming it; a partition whose worker dies half-way is loaded again whole, and nothing of the dead
load stays; a bad declaration is a clear error.
"""

from __future__ import annotations

import uuid
from typing import Any, Dict, List, Tuple

import pytest
from _compare import REDIS_URL, contents, local_sync, target_contents
from ss_test_adapters import DatasetAdapter, read_calls

from worker import JobFailed, submit_sync
from worker.job.spec import JobSpec
from worker.runners.local import run_local
from worker.state import MemoryJobState

pytestmark = pytest.mark.usefixtures("workers")


def _data(sites: int, variant: int) -> Dict[str, Any]:
    """Sites with devices and ports; ``variant`` 1 differs from 0 in some of each (and lacks some sites)."""
    data: Dict[str, Any] = {"region": [{"name": f"r{n}", "label": f"v{variant if n == 1 else 0}"} for n in range(3)]}
    data["site"] = []
    for number in range(sites):
        if variant and number % 7 == 3:
            continue
        devices = []
        for device in range(3):
            ports = [
                {"name": f"p{port}", "speed": 10 * (1 + (variant and (number + device + port) % 5 == 0))}
                for port in range(2)
            ]
            devices.append(
                {
                    "name": f"d{device}",
                    "role": "leaf" if not variant or (number + device) % 4 else "spine",
                    "ports": ports,
                }
            )
        data["site"].append({"name": f"s{number:03d}", "region": f"r{number % 3}", "devices": devices})
    if variant:
        data["site"].append({"name": "s-extra", "region": "r0", "devices": []})
    return data


def _job(parts: Tuple[int, int], calls_key: str = "", **extra: Any) -> Tuple[Any, Dict[str, Any]]:
    source_kwargs: Dict[str, Any] = {"data": _data(40, 1), "name": "src", "parts": parts[0]}
    target_kwargs: Dict[str, Any] = {"data": _data(40, 0), "name": "dst", "parts": parts[1], "record_url": REDIS_URL}
    if calls_key:
        target_kwargs["calls_key"] = calls_key
    for side, kwargs in (("source", source_kwargs), ("target", target_kwargs)):
        kwargs.update(extra.pop(f"{side}_extra", {}))
    handle = submit_sync(
        source="dataset-parts",
        target="dataset-parts",
        source_kwargs=source_kwargs,
        target_kwargs=target_kwargs,
        shard_size=20,
        **extra,
    )
    return handle, handle.wait(timeout=90)


def _items(calls: List[List[Any]]) -> List[Tuple[str, str, str]]:
    return sorted((c[0], c[1], c[2]) for c in calls if c[0] in ("create", "update", "delete"))


def test_a_partitioned_job_is_the_job_of_unpartitioned_loads(redis_db) -> None:
    plain, plain_report = _job((0, 0))
    calls_key = f"test:calls:{uuid.uuid4().hex}"
    parted, report = _job((6, 4), calls_key=calls_key)
    assert report["status"] == "success"
    assert report["loads"]["source"]["partitions"] == 6
    assert report["loads"]["target"]["partitions"] == 4
    assert report["loads"]["source"]["objects"] == plain_report["loads"]["source"]["objects"]
    assert report["loads"]["target"]["objects"] == plain_report["loads"]["target"]["objects"]
    plain_diff, parted_diff = plain.diff(), parted.diff()
    assert parted_diff.str() == plain_diff.str()
    assert parted_diff.dict() == plain_diff.dict()
    assert parted_diff.summary() == plain_diff.summary()
    assert [(e.type, e.name) for e in parted_diff.get_children()] == [
        (e.type, e.name) for e in plain_diff.get_children()
    ]
    assert report["operations"] == plain_report["operations"]

    def layout(shards: List[Dict[str, Any]]) -> List[Tuple[Any, ...]]:
        return [(s["index"], s["wave"], s["type"], s["roots"], s["operations"]) for s in shards]

    assert layout(report["shards"]) == layout(plain_report["shards"])
    # The target the job leaves is the one a local sync_from leaves, through the same hooks.
    local, local_calls, error = local_sync(_data(40, 1), _data(40, 0), [], redis_db, REDIS_URL)
    assert error is None
    assert target_contents(parted.id, REDIS_URL) == local
    calls = read_calls(redis_db, calls_key)
    assert _items(calls) == _items(local_calls)
    assert sorted(int(c[2]) for c in calls if c[0] == "part") == [0, 1, 2, 3]  # each target partition once


def test_a_failing_partition_fails_the_job_with_a_report_naming_it(redis_db) -> None:
    with pytest.raises(JobFailed) as failed:
        _job((5, 0), source_extra={"part_steer": {"2": "fail"}})
    report = failed.value.report
    assert report["status"] == "failed"
    assert "load-source partition 2 failed" in report["error"]
    assert "partition 2 refused" in report["error"]
    assert report["operations"] == 0


def test_a_partition_whose_worker_dies_is_loaded_again_whole(redis_db) -> None:
    gate = f"test:died:{uuid.uuid4().hex}"
    calls_key = f"test:calls:{uuid.uuid4().hex}"
    handle, report = _job((0, 3), calls_key=calls_key, target_extra={"part_steer": {"1": f"die-once:{gate}"}})
    assert redis_db.exists(gate)  # the first delivery did die
    redis_db.delete(gate)
    assert report["status"] == "success"
    calls = read_calls(redis_db, calls_key)
    assert [int(c[2]) for c in calls if c[0] == "part"].count(1) == 2
    local, local_calls, _ = local_sync(_data(40, 1), _data(40, 0), [], redis_db, REDIS_URL)
    # Nothing of the dead half-load stayed twice or out of place: the same operations as a local sync.
    assert _items(calls) == _items(local_calls)
    assert target_contents(handle.id, REDIS_URL) == local
    assert report["loads"]["target"]["objects"] == sum(1 for _ in _objects(_data(40, 0)))


def _objects(data: Dict[str, Any]):
    yield from data["region"]
    for site in data["site"]:
        yield site
        for device in site["devices"]:
            yield device
            yield from device["ports"]


@pytest.mark.parametrize(
    ("raw_parts", "message"),
    [
        (5, "must return a list of plain-data keys or None, not int"),
        ("abc", "must return a list of plain-data keys or None, not str"),
        ([[1], [1]], "partitions 0 and 1 are the same key"),
        (list(range(10_001)), "a load has at most 10000"),
    ],
)
def test_a_bad_partition_declaration_fails_the_job_clearly(raw_parts: Any, message: str) -> None:
    spec = JobSpec.from_data(
        {
            "source": "dataset-parts",
            "target": "dataset",
            "source_kwargs": {"data": _data(4, 1), "raw_parts": raw_parts},
            "target_kwargs": {"data": _data(4, 0)},
        }
    )
    with pytest.raises(JobFailed, match="load-source failed") as failed:
        run_local(spec)
    assert message in failed.value.report["error"]


def test_no_partitions_is_an_empty_side() -> None:
    spec = JobSpec.from_data(
        {
            "source": "dataset-parts",
            "target": "dataset",
            "source_kwargs": {"raw_parts": []},
            "target_kwargs": {"data": _data(3, 0)},
            "allow_deletes": True,
        }
    )
    report = run_local(spec)
    assert report["loads"]["source"]["objects"] == 0
    assert report["summary"]["delete"] == sum(1 for _ in _objects(_data(3, 0)))


def test_the_embedded_runner_loads_partitions_in_order(redis_db) -> None:
    spec = JobSpec.from_data(
        {
            "source": "dataset-parts",
            "target": "dataset-parts",
            "source_kwargs": {"data": _data(30, 1), "parts": 4},
            "target_kwargs": {"data": _data(30, 0), "parts": 3},
        }
    )
    state = MemoryJobState(spec.job_id)
    report = run_local(spec, state=state)
    assert report["loads"]["source"]["partitions"] == 4
    reader = DatasetAdapter(name="reader")
    reader.attach_store(state.open_store("target"))
    local, _, _ = local_sync(_data(30, 1), _data(30, 0), [], redis_db, REDIS_URL)
    assert contents(reader) == local
