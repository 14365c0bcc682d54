"""diffsync example 02 (progress callback), re-expressed as tests against ``core``.

Two adapters hold single-field ``Number`` models: one has 1..N in order, the other N numbers spread over
roughly 1..2N. ``sync_to(..., callback=cb)`` must call ``cb(stage, current, total)``: during the "diff"
stage ``total`` is the number of models in both adapters and ``current`` grows by 2 for a matched pair and
by 1 for an unmatched model; during the "sync" stage ``total`` is the number of distinct records and
``current`` grows by 1 per record.
"""

import itertools
import random

import pytest

from core import Adapter, DiffSyncModel


class Number(DiffSyncModel):
    _modelname = "number"
    _identifiers = ("number",)

    number: int


class OrderedNumbers(Adapter):
    number = Number
    top_level = ["number"]

    def load(self, count):
        for value in range(1, count + 1):
            self.add(Number(number=value))


class SpreadNumbers(Adapter):
    number = Number
    top_level = ["number"]

    def load(self, count, steps):
        """Add ``count`` numbers, each previous value plus the next step taken from ``steps``."""
        value = 0
        for step in itertools.islice(steps, count):
            value += step
            self.add(Number(number=value))


class Recorder:
    def __init__(self):
        self.calls = []

    def __call__(self, stage, current, total):
        self.calls.append((stage, current, total))

    def stage(self, name):
        return [(current, total) for stage, current, total in self.calls if stage == name]


def alternating_steps():
    return itertools.cycle((1, 2))


def expected_diff_progress(src_values, dst_values):
    """Source objects are visited in order, then destination-only objects; matched pairs count twice."""
    dst = set(dst_values)
    total = len(src_values) + len(dst_values)
    current, progress = 0, []
    for value in src_values:
        current += 2 if value in dst else 1
        progress.append((current, total))
    for value in dst_values:
        if value not in set(src_values):
            current += 1
            progress.append((current, total))
    return progress


@pytest.fixture
def adapters():
    ds1 = OrderedNumbers()
    ds1.load(count=100)
    ds2 = SpreadNumbers()
    ds2.load(count=100, steps=alternating_steps())
    return ds1, ds2


def test_fixture_data(adapters):
    ds1, ds2 = adapters
    values2 = sorted(n.number for n in ds2.get_all("number"))
    assert values2[:6] == [1, 3, 4, 6, 7, 9]
    assert values2[-1] == 150
    assert len(ds1) == len(ds2) == 100
    assert len({n.number for n in ds1.get_all(Number)} & set(values2)) == 67


def test_sync_reports_diff_then_sync_progress(adapters):
    ds1, ds2 = adapters
    src_values = [n.number for n in ds1.get_all("number")]
    dst_values = [n.number for n in ds2.get_all("number")]
    recorder = Recorder()

    diff = ds1.sync_to(ds2, callback=recorder)

    stages = [stage for stage, _, _ in recorder.calls]
    assert stages == ["diff"] * 133 + ["sync"] * 133
    assert recorder.stage("diff") == expected_diff_progress(src_values, dst_values)
    assert recorder.stage("diff")[:4] == [(2, 200), (3, 200), (5, 200), (7, 200)]
    assert recorder.stage("diff")[-1] == (200, 200)
    assert recorder.stage("sync") == [(i, 133) for i in range(1, 134)]

    assert diff.summary() == {"create": 33, "update": 0, "delete": 33, "no-change": 67, "skip": 0}
    assert len(diff) == 133
    assert sorted(n.number for n in ds2.get_all("number")) == list(range(1, 101))
    assert not ds1.diff_to(ds2).has_diffs()


def test_printing_callback_output(adapters, capsys):
    ds1, ds2 = adapters

    def print_callback(stage, current, total):
        print(f"{stage}: Processed {current:>3}/{total} records.")

    ds1.sync_to(ds2, callback=print_callback)
    # structlog's default configuration may also print to stdout: keep only our callback's lines
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith(("diff: ", "sync: "))]
    assert lines[:3] == [
        "diff: Processed   2/200 records.",
        "diff: Processed   3/200 records.",
        "diff: Processed   5/200 records.",
    ]
    assert "diff: Processed 200/200 records." in lines
    assert lines[-2:] == ["sync: Processed 132/133 records.", "sync: Processed 133/133 records."]
    assert len(lines) == 266


def test_diff_only_callback(adapters):
    ds1, ds2 = adapters
    from_recorder, to_recorder = Recorder(), Recorder()
    ds2.diff_from(ds1, callback=from_recorder)
    ds1.diff_to(ds2, callback=to_recorder)
    assert from_recorder.calls == to_recorder.calls
    assert {stage for stage, _, _ in from_recorder.calls} == {"diff"}
    assert from_recorder.calls[-1] == ("diff", 200, 200)


def test_second_sync_has_nothing_to_change_but_still_reports(adapters):
    ds1, ds2 = adapters
    ds1.sync_to(ds2)
    recorder = Recorder()
    diff = ds1.sync_to(ds2, callback=recorder)
    assert recorder.stage("diff") == [(2 * i, 200) for i in range(1, 101)]
    assert recorder.stage("sync") == [(i, 100) for i in range(1, 101)]
    assert diff.summary() == {"create": 0, "update": 0, "delete": 0, "no-change": 100, "skip": 0}


def test_sync_from_with_precomputed_diff_reports_only_sync_stage(adapters):
    ds1, ds2 = adapters
    diff = ds2.diff_from(ds1)
    recorder = Recorder()
    ds2.sync_from(ds1, diff=diff, callback=recorder)
    assert recorder.stage("diff") == []
    assert recorder.stage("sync") == [(i, 133) for i in range(1, 134)]


@pytest.mark.parametrize("seed", [0, 1, 2021])
def test_random_spread_invariants(seed):
    """The original example draws steps at random; whatever they are, the README's invariants hold."""
    rng = random.Random(seed)
    ds1 = OrderedNumbers()
    ds1.load(count=100)
    ds2 = SpreadNumbers()
    ds2.load(count=100, steps=iter(lambda: rng.randint(1, 2), None))
    values1 = {n.number for n in ds1.get_all("number")}
    values2 = {n.number for n in ds2.get_all("number")}
    distinct = len(values1 | values2)
    recorder = Recorder()

    ds1.sync_to(ds2, callback=recorder)

    diff_progress = recorder.stage("diff")
    assert {total for _, total in diff_progress} == {200}
    assert diff_progress[-1][0] == 200
    currents = [0] + [current for current, _ in diff_progress]
    steps = [after - before for before, after in itertools.pairwise(currents)]
    assert set(steps) <= {1, 2}
    assert steps.count(2) == len(values1 & values2)
    assert recorder.stage("sync") == [(i, distinct) for i in range(1, distinct + 1)]
    assert distinct < 200
    assert {n.number for n in ds2.get_all("number")} == values1
