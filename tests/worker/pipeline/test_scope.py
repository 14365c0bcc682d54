"""A scoped job (``JobSpec.scope``) on the embedded runner: the pipeline's load, ranged diff and shards, against
the engine's scoped ``diff_from`` of the same data, with adapters that load by scope (the demo's) and without."""

from __future__ import annotations

from typing import Any, Dict

import pytest

from core.scope import Scope
from worker.adapters.demo import ApiInventoryAdapter, InventoryAdapter
from worker.cli.main import main
from worker.errors import InvalidJob
from worker.job.spec import JobSpec
from worker.runners.local import run_local
from worker.state import MemoryJobState

SITES = 30


def spec(scope: Dict[str, Any], **extra: Any) -> JobSpec:
    data = {
        "source": "demo",
        "target": "demo-api",
        "source_kwargs": {"sites": SITES, "variant": 1, **extra.pop("source_kwargs", {})},
        "target_kwargs": {"sites": SITES},
        "shard_size": 5,
        "scope": scope,
        "diff_range": 4,  # several ranges, as on workers
    }
    data.update(extra)
    return JobSpec.from_data(data)


def expected(scope: Scope) -> Dict[str, int]:
    source, target = InventoryAdapter(sites=SITES, variant=1), ApiInventoryAdapter(sites=SITES)
    source.load()
    target.load()
    return target.diff_from(source, scope=scope).summary()


SCOPES = [
    {"ids": ["site-0003", "site-0010", "site-0029", "site-0031", "nosuch"]},
    {"types": ["site"], "children": ["device"]},
    {"ids": ["site-0004", "site-0011"], "children": []},
    {"where": {"site": {"name": ["site-0002", "site-0007"]}}},
]


@pytest.mark.parametrize("scope", SCOPES, ids=["ids", "children", "ids-no-children", "where"])
@pytest.mark.parametrize("partitions", [0, 4])
def test_a_scoped_job_is_the_scoped_diff_applied(scope: Dict[str, Any], partitions: int) -> None:
    job = spec(scope, source_kwargs={"partitions": partitions})
    state = MemoryJobState(job.job_id)
    report = run_local(job, state=state)
    want = expected(Scope.from_data(scope))
    for action in ("create", "update", "delete"):
        assert report["summary"][action] == want[action], action
    assert report["status"] == "success" and report["scope"] == {k: v for k, v in scope.items() if v not in ({}, None)}
    assert report["operations"] == want["create"] + want["update"] + want["delete"]
    touched = {entry[4].split("__")[0] for entry in state.journal().values()}
    if "ids" in scope:
        assert touched <= set(scope["ids"])  # nothing outside the scope was written


def test_the_scoped_load_reads_only_the_scope() -> None:
    adapter = InventoryAdapter(sites=SITES, variant=1, partitions=5)
    adapter.load_scoped(Scope(ids=("site-0010",), children=("device",)))
    assert [obj.name for obj in adapter.get_all("site")] == ["site-0010"]
    assert len(adapter.get_all("device")) == 2 and len(adapter.get_all("interface")) == 4  # whole subtrees
    assert adapter.partitions_in(Scope(ids=("site-0010",))) == [[6, 12], [24, 30]]  # its range, and the extra site's


def test_a_scope_naming_nothing_the_adapters_have_is_refused() -> None:
    with pytest.raises(InvalidJob, match="scope: 'device' is not a top-level type"):
        spec({"types": ["device"]})
    with pytest.raises(InvalidJob, match="child type 'nosuch'"):
        spec({"children": ["nosuch"]})


def test_the_command_line_takes_a_scope_and_the_report_shows_it(capsys) -> None:
    code = main(["sync", "--local", "--source", "demo", "--target", "demo-api", "--source-kwargs", '{"variant": 1}',
                 "--scope", '{"ids": ["site-0001"]}'])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0 and 'scope {"ids": ["site-0001"]}' in out
    with pytest.raises(SystemExit) as refused:
        main(["sync", "--local", "--source", "demo", "--target", "demo", "--scope", "[1]"])
    assert refused.value.code == 2 and "must be a JSON object" in capsys.readouterr().err
