"""structlog events of diff and sync, progress callbacks, and core.logging.enable_console_logging."""

import logging
from contextlib import contextmanager

import pytest
import structlog
from structlog.testing import capture_logs

from ._support import (
    DST_SITES,
    DST_VLANS,
    SRC_SITES,
    SRC_VLANS,
    both,
    build,
    log_tuples,
    make_models,
    norm,
    standard_pair,
)

# ------------------------------------------------------------------------------------------------------------
# Scenarios, runnable on either engine
# ------------------------------------------------------------------------------------------------------------


def _standard(ns, flags="NONE"):
    src, dst = standard_pair(ns)
    return src, dst, getattr(ns.eng.F, flags)


def _failures(ns):
    src, dst = standard_pair(ns)
    ns.rec.fail.update(
        {
            ("create", "device", "s1__d2"): "raise",
            ("update", "vlan", "10"): "raise",
            ("delete", "site", "s3"): "raise",
            ("create", "site", "s2"): "none",
            ("update", "device", "s1__d1"): "none",
        }
    )
    return src, dst, ns.eng.F.CONTINUE_ON_FAILURE | ns.eng.F.LOG_UNCHANGED_RECORDS


def _model_skips(ns):
    src, dst = standard_pair(ns)
    mf = ns.eng.MF
    src.get("vlan", "20").model_flags = mf.SKIP_UNMATCHED_SRC
    src.get("device", "s1__d2").model_flags = mf.SKIP_UNMATCHED_BOTH
    dst.get("site", "s3").model_flags = mf.SKIP_UNMATCHED_DST
    dst.get("interface", "d1__e3").model_flags = mf.SKIP_UNMATCHED_BOTH
    return src, dst, ns.eng.F.NONE


def _ignore(ns):
    src, dst = standard_pair(ns)
    src.get("device", "s1__d1").model_flags = ns.eng.MF.IGNORE
    dst.get("vlan", "30").model_flags = ns.eng.MF.IGNORE
    dst.get("vlan", "10").model_flags = ns.eng.MF.IGNORE
    return src, dst, ns.eng.F.LOG_UNCHANGED_RECORDS


def _skip_children(ns):
    src, dst = standard_pair(ns)
    dst.get("site", "s3").model_flags = ns.eng.MF.SKIP_CHILDREN_ON_DELETE
    dst.get("device", "s1__d4").model_flags = ns.eng.MF.SKIP_CHILDREN_ON_DELETE
    return src, dst, ns.eng.F.NONE


def _natural_order(ns):
    src, dst = standard_pair(ns)
    for obj in dst.get_all("site") + dst.get_all("device"):
        obj.model_flags = ns.eng.MF.NATURAL_DELETION_ORDER
    return src, dst, ns.eng.F.NONE


def _top_level_mismatch(ns):
    class SitesOnly(ns.Backend):
        top_level = ["site"]

    src = build(ns, SRC_SITES, SRC_VLANS, name="src", adapter_cls=SitesOnly)
    dst = build(ns, DST_SITES, DST_VLANS, name="dst")
    return src, dst, ns.eng.F.NONE


def _missing_child(ns):
    # After the diff, a child of a device to delete (with SKIP_CHILDREN_ON_DELETE) leaves the store.
    src = build(ns, {"s9": ("r", {})}, name="src")
    dst = build(ns, {"s1": ("r1", {"d1": ("leaf", {"e1": "a", "e2": "b"})})}, name="dst")
    dst.get("device", "s1__d1").model_flags = ns.eng.MF.SKIP_CHILDREN_ON_DELETE

    def after_diff():
        dst.remove(dst.get("interface", "d1__e1"))

    return src, dst, ns.eng.F.NONE, after_diff


SCENARIOS = {
    "standard": _standard,
    "log_unchanged": lambda ns: _standard(ns, "LOG_UNCHANGED_RECORDS"),
    "skip_unmatched_src": lambda ns: _standard(ns, "SKIP_UNMATCHED_SRC"),
    "skip_unmatched_dst": lambda ns: _standard(ns, "SKIP_UNMATCHED_DST"),
    "skip_unmatched_both": lambda ns: _standard(ns, "SKIP_UNMATCHED_BOTH"),
    "failures_continue": _failures,
    "model_skips": _model_skips,
    "ignore": _ignore,
    "skip_children_on_delete": _skip_children,
    "top_level_mismatch": _top_level_mismatch,
    "missing_child_on_delete": _missing_child,
}


def run_scenario(eng, scenario, capture_callbacks=False):
    """Run diff then sync of a scenario on one engine; return (captured events, callback calls, diff)."""
    ns = make_models(eng)
    src, dst, flags, *after_diff = scenario(ns)
    calls = []

    def callback(stage, current, total):
        calls.append((stage, current, total))

    with capture_logs() as logs:
        diff = dst.diff_from(src, flags=flags, callback=callback)
        diff_calls = list(calls)
        for hook in after_diff:
            hook()
        dst.sync_from(src, flags=flags, callback=callback, diff=diff)
    return logs, (diff_calls, calls[len(diff_calls) :]), diff


def full_event(entry):
    """A captured event with engine objects made comparable."""
    return {
        key: (str(value) if key in ("src", "dst", "store") else norm(value)) for key, value in sorted(entry.items())
    }


# ------------------------------------------------------------------------------------------------------------
# Events of a diff
# ------------------------------------------------------------------------------------------------------------


def test_diff_events(engine):
    ns = make_models(engine)
    src, dst = standard_pair(ns)
    with capture_logs() as logs:
        dst.diff_from(src)
    assert [(e["event"], e["log_level"]) for e in logs] == [
        ("Diff calculation between these two datasets will involve 30 models", "debug"),
        ("Beginning diff calculation", "info"),
        ("Diff calculation complete", "info"),
    ]
    for entry in logs:
        assert entry["src"] is src
        assert entry["dst"] is dst
        assert entry["flags"] == engine.F.NONE


def test_diff_events_carry_flags(engine):
    ns = make_models(engine)
    src, dst = standard_pair(ns)
    flags = engine.F.SKIP_UNMATCHED_DST | engine.F.LOG_UNCHANGED_RECORDS
    with capture_logs() as logs:
        dst.diff_from(src, flags=flags)
    assert logs[1]["event"] == "Beginning diff calculation"
    assert logs[1]["flags"] == flags


def test_skip_events_during_diff(engine):
    ns = make_models(engine)
    src, dst = standard_pair(ns)
    src.get("vlan", "20").model_flags = engine.MF.SKIP_UNMATCHED_SRC
    dst.get("vlan", "30").model_flags = engine.MF.SKIP_UNMATCHED_DST
    src.get("site", "s4").model_flags = engine.MF.IGNORE
    dst.get("vlan", "40").model_flags = engine.MF.IGNORE
    with capture_logs() as logs:
        dst.diff_from(src)
    skips = [(e["event"], e["log_level"], e["model"], e["unique_id"]) for e in logs if "Skipping" in e["event"]]
    assert skips == [
        ("Skipping due to IGNORE flag on source object", "debug", "site", "s4"),
        ("Skipping due to SKIP_UNMATCHED_SRC flag on model", "debug", "vlan", "20"),
        ("Skipping due to IGNORE flag on dest object", "debug", "vlan", "40"),
        ("Skipping due to SKIP_UNMATCHED_DST flag on model", "debug", "vlan", "30"),
    ]
    with capture_logs() as logs:
        dst.diff_from(src, flags=engine.F.SKIP_UNMATCHED_BOTH)
    adapter_skips = {(e["event"], e["model"], e["unique_id"]) for e in logs if "Skipping" in e["event"]}
    assert ("Skipping due to SKIP_UNMATCHED_SRC flag on source adapter", "site", "s2") in adapter_skips
    assert ("Skipping due to SKIP_UNMATCHED_DST flag on source adapter", "site", "s3") in adapter_skips
    assert ("Skipping due to SKIP_UNMATCHED_SRC flag on source adapter", "interface", "d1__e2") in adapter_skips


# ------------------------------------------------------------------------------------------------------------
# Events of a sync
# ------------------------------------------------------------------------------------------------------------


def test_sync_events(engine):
    ns = make_models(engine)
    src, dst = standard_pair(ns)
    diff = dst.diff_from(src)
    with capture_logs() as logs:
        dst.sync_from(src, diff=diff)
    assert logs[0]["event"] == "Beginning sync"
    assert logs[-1]["event"] == "Sync complete"
    assert logs[0]["log_level"] == logs[-1]["log_level"] == "info"
    assert (logs[0]["src"], logs[0]["dst"], logs[0]["flags"]) == (src, dst, engine.F.NONE)
    created = [e for e in logs if e["event"] == "Created successfully"]
    assert [(e["model"], e["unique_id"]) for e in created] == [
        ("interface", "d1__e2"),
        ("device", "s1__d2"),
        ("interface", "d2__e5"),
        ("site", "s2"),
        ("device", "s2__d3"),
        ("interface", "d3__e7"),
        ("vlan", "20"),
    ]
    site = next(e for e in created if e["unique_id"] == "s2")
    assert site["log_level"] == "info"
    assert site["action"] == "create"
    assert site["model"] == "site"
    assert site["diffs"] == {"+": {"region": "r2"}}
    assert site["status"] == "success"
    assert site["src"] is src and site["dst"] is dst
    attempt = [e for e in logs if e["event"] == "Attempting model create" and e["unique_id"] == "s2"]
    assert len(attempt) == 1
    assert attempt[0]["log_level"] == "debug"
    assert attempt[0]["action"] == "create"
    assert "status" not in attempt[0]
    updated = next(e for e in logs if e["event"] == "Updated successfully" and e["model"] == "vlan")
    assert (updated["action"], updated["unique_id"], updated["status"]) == ("update", "10", "success")
    assert updated["diffs"] == {"-": {"vname": "TEN"}, "+": {"vname": "ten"}}
    deleted = next(e for e in logs if e["event"] == "Deleted successfully" and e["model"] == "site")
    assert (deleted["action"], deleted["unique_id"], deleted["diffs"]) == ("delete", "s3", {"-": {"region": "r3"}})
    assert sum(e["event"] == "Deleted successfully" for e in logs) == 7
    assert sum(e["event"].startswith("Attempting model ") for e in logs) == 16


def test_no_object_resulted_event(engine):
    ns = make_models(engine)
    src, dst = standard_pair(ns)
    ns.rec.fail[("create", "site", "s2")] = "none"
    with capture_logs() as logs:
        dst.sync_from(src)
    warnings = [e for e in logs if e["event"] == "No object resulted from sync, will not process child objects."]
    assert len(warnings) == 1
    assert (warnings[0]["log_level"], warnings[0]["action"], warnings[0]["model"], warnings[0]["unique_id"]) == (
        "warning",
        "create",
        "site",
        "s2",
    )


def test_log_unchanged_records_event(engine):
    ns = make_models(engine)
    src, dst = standard_pair(ns)
    with capture_logs() as logs:
        dst.sync_from(src, flags=engine.F.LOG_UNCHANGED_RECORDS)
    unchanged = [e for e in logs if e["event"] == "No changes to apply; no action needed"]
    assert len(unchanged) == 6
    first = unchanged[0]
    assert (first["log_level"], first["action"], first["model"], first["unique_id"], first["status"]) == (
        "debug",
        None,
        "site",
        "s1",
        "success",
    )
    assert first["flags"] == engine.F.LOG_UNCHANGED_RECORDS


# ------------------------------------------------------------------------------------------------------------
# Events compared with diffsync
# ------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_log_events_match_diffsync(scenario):
    core_eng, ref_eng = both()
    expected = log_tuples(run_scenario(ref_eng, SCENARIOS[scenario])[0])
    actual = log_tuples(run_scenario(core_eng, SCENARIOS[scenario])[0])
    assert actual == expected


def test_log_events_natural_deletion_order_match_diffsync():
    core_eng, ref_eng = both()
    expected = log_tuples(run_scenario(ref_eng, _natural_order)[0])
    actual = log_tuples(run_scenario(core_eng, _natural_order)[0])
    assert actual == expected


@pytest.mark.parametrize("scenario", ["standard", "failures_continue", "missing_child_on_delete"])
def test_full_log_events_match_diffsync(scenario):
    core_eng, ref_eng = both()
    expected = [full_event(e) for e in run_scenario(ref_eng, SCENARIOS[scenario])[0]]
    actual = [full_event(e) for e in run_scenario(core_eng, SCENARIOS[scenario])[0]]
    assert actual == expected


# ------------------------------------------------------------------------------------------------------------
# Filtering bound logger: no debug events, info ones still there
# ------------------------------------------------------------------------------------------------------------


def _filtered_events(eng, level):
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(level))
    try:
        logs, _, _ = run_scenario(eng, SCENARIOS["failures_continue"])
        more, _, _ = run_scenario(eng, SCENARIOS["model_skips"])
    finally:
        structlog.reset_defaults()
    return logs + more


def test_filtering_bound_logger_at_info(engine):
    events = _filtered_events(engine, logging.INFO)
    levels = {e["log_level"] for e in events}
    assert "debug" not in levels
    assert {"info", "warning", "error"} <= levels
    names = [e["event"] for e in events]
    assert "Beginning diff calculation" in names
    assert "Created successfully" in names
    assert "Deleted successfully" in names
    assert not any(name.startswith(("Attempting model", "Skipping", "No changes to apply")) for name in names)


def test_filtering_bound_logger_at_warning(engine):
    events = _filtered_events(engine, logging.WARNING)
    assert {e["log_level"] for e in events} == {"warning", "error"}


@pytest.mark.parametrize("level", [logging.DEBUG, logging.INFO, logging.WARNING])
def test_filtering_bound_logger_matches_diffsync(level):
    core_eng, ref_eng = both()
    assert log_tuples(_filtered_events(core_eng, level)) == log_tuples(_filtered_events(ref_eng, level))


# ------------------------------------------------------------------------------------------------------------
# Progress callbacks
# ------------------------------------------------------------------------------------------------------------


def test_callback_sequences_standard(engine):
    _, (diff_calls, sync_calls), diff = run_scenario(engine, SCENARIOS["standard"])
    assert all(stage == "diff" for stage, _, _ in diff_calls)
    assert all(total == 30 for _, _, total in diff_calls)
    assert diff_calls[-1] == ("diff", 30, 30)
    currents = [current for _, current, _ in diff_calls]
    assert currents == sorted(currents)
    assert sync_calls == [("sync", index, 22) for index in range(1, 23)]
    assert len(diff) == 22


def test_callback_diff_stage_exact_sequence(engine):
    ns = make_models(engine)
    src = build(ns, {"s1": ("r1", {"d1": ("leaf", {})})}, {1: "a"})
    dst = build(ns, {"s1": ("r2", {})}, {2: "b"})
    calls = []
    dst.diff_from(src, callback=lambda *args: calls.append(args))
    # site pair (2), device (3), vlan 1 (4), vlan 2 (5): 5 models in all.
    assert calls == [("diff", 2, 5), ("diff", 3, 5), ("diff", 4, 5), ("diff", 5, 5)]
    calls.clear()
    dst.sync_from(src, callback=lambda *args: calls.append(args))
    assert calls[4:] == [("sync", 1, 4), ("sync", 2, 4), ("sync", 3, 4), ("sync", 4, 4)]


def test_no_callback_is_fine(engine):
    ns = make_models(engine)
    src, dst = standard_pair(ns)
    dst.sync_from(src, callback=None)
    assert not dst.diff_from(src).has_diffs()


@pytest.mark.parametrize("scenario", list(SCENARIOS) + ["natural_deletion_order"])
def test_callback_sequences_match_diffsync(scenario):
    scenarios = dict(SCENARIOS, natural_deletion_order=_natural_order)
    core_eng, ref_eng = both()
    assert run_scenario(core_eng, scenarios[scenario])[1] == run_scenario(ref_eng, scenarios[scenario])[1]


def test_callback_sequences_of_sync_without_precomputed_diff_match_diffsync():
    results = []
    for eng in both():
        ns = make_models(eng)
        src, dst = standard_pair(ns)
        calls = []
        src.sync_to(dst, flags=eng.F.SKIP_UNMATCHED_DST, callback=lambda *args, calls=calls: calls.append(args))
        results.append(calls)
    assert results[0] == results[1]


# ------------------------------------------------------------------------------------------------------------
# enable_console_logging
# ------------------------------------------------------------------------------------------------------------


@contextmanager
def bare_root_logger():
    """Give logging.basicConfig a root logger without handlers; put everything back afterwards."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    root.handlers.clear()
    try:
        yield root
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)


@pytest.fixture
def console_logging():
    """Teardown: structlog back to its defaults."""
    yield
    structlog.reset_defaults()


def _console_config(eng, verbosity):
    """Call enable_console_logging on a bare root logger; return what it configured, as plain data."""
    with bare_root_logger() as root:
        eng.logging.enable_console_logging(verbosity=verbosity)
        config = structlog.get_config()
        observed = {
            "root_level": root.level,
            "handlers": [(type(h).__name__, h.formatter._fmt if h.formatter else None) for h in root.handlers],
            "processors": [getattr(p, "__name__", type(p).__name__) for p in config["processors"]],
            "timestamper_fmt": [p.fmt for p in config["processors"] if isinstance(p, structlog.processors.TimeStamper)],
            "context_class": config["context_class"],
            "logger_factory": type(config["logger_factory"]),
            "wrapper_class": config["wrapper_class"],
            "cache_logger_on_first_use": config["cache_logger_on_first_use"],
        }
    structlog.reset_defaults()
    return observed


@pytest.mark.parametrize(
    "verbosity, level", [(0, logging.WARNING), (1, logging.INFO), (2, logging.DEBUG)], ids=["v0", "v1", "v2"]
)
def test_enable_console_logging_levels_and_structlog_config(engine, console_logging, verbosity, level):
    observed = _console_config(engine, verbosity)
    assert observed["root_level"] == level
    assert observed["handlers"] == [("StreamHandler", "%(message)s")]
    processors = observed["processors"]
    assert processors[:5] == ["filter_by_level", "add_logger_name", "add_log_level", "TimeStamper", "StackInfoRenderer"]
    assert processors[-1] == "ConsoleRenderer"
    # format_exc_info (an ExceptionRenderer instance in recent structlog) unless rich/better_exceptions exist.
    assert set(processors[5:-1]) <= {"format_exc_info", "ExceptionRenderer"}
    assert observed["timestamper_fmt"] == ["%Y-%m-%d %H:%M.%S"]
    assert observed["context_class"] is dict
    assert observed["logger_factory"] is structlog.stdlib.LoggerFactory
    assert observed["wrapper_class"] is structlog.stdlib.BoundLogger
    assert observed["cache_logger_on_first_use"] is True


def test_enable_console_logging_default_verbosity(engine, console_logging):
    with bare_root_logger() as root:
        engine.logging.enable_console_logging()
        assert root.level == logging.WARNING
        assert structlog.get_config()["wrapper_class"] is structlog.stdlib.BoundLogger


@pytest.mark.parametrize("verbosity", [0, 1, 2, 3, -1])
def test_enable_console_logging_matches_diffsync(console_logging, verbosity):
    core_eng, ref_eng = both()
    assert _console_config(core_eng, verbosity) == _console_config(ref_eng, verbosity)


class _ListHandler(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


@pytest.mark.parametrize("verbosity", [0, 1, 2])
def test_enable_console_logging_filters_engine_events(engine, console_logging, verbosity):
    ns = make_models(engine)
    src, dst = standard_pair(ns)
    with bare_root_logger() as root:
        engine.logging.enable_console_logging(verbosity=verbosity)
        handler = _ListHandler()
        root.handlers[:] = [handler]
        dst.sync_from(src)
    text = "\n".join(handler.messages)
    assert ("Beginning diff calculation" in text) == (verbosity >= 1)
    assert ("Created successfully" in text) == (verbosity >= 1)
    assert ("Attempting model create" in text) == (verbosity >= 2)
    assert ("Diff calculation between these two datasets" in text) == (verbosity >= 2)
