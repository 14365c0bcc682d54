"""DiffSyncFlags and DiffSyncModelFlags: values and documented effects on diff and sync."""

import enum

import pytest
from structlog.testing import capture_logs

from ._support import DST_SITES, DST_VLANS, SRC_SITES, SRC_VLANS, both, build, log_tuples, make_models, standard_pair

# ------------------------------------------------------------------------------------------------------------
# Values
# ------------------------------------------------------------------------------------------------------------


def test_diffsync_flags_values(engine):
    assert issubclass(engine.F, enum.Flag)
    assert {name: member.value for name, member in engine.F.__members__.items()} == {
        "NONE": 0,
        "CONTINUE_ON_FAILURE": 1,
        "SKIP_UNMATCHED_SRC": 2,
        "SKIP_UNMATCHED_DST": 4,
        "SKIP_UNMATCHED_BOTH": 6,
        "LOG_UNCHANGED_RECORDS": 8,
    }
    assert engine.F.SKIP_UNMATCHED_BOTH == engine.F.SKIP_UNMATCHED_SRC | engine.F.SKIP_UNMATCHED_DST


def test_model_flags_values(engine):
    assert issubclass(engine.MF, enum.Flag)
    assert {name: member.value for name, member in engine.MF.__members__.items()} == {
        "NONE": 0,
        "IGNORE": 1,
        "SKIP_CHILDREN_ON_DELETE": 2,
        "SKIP_UNMATCHED_SRC": 4,
        "SKIP_UNMATCHED_DST": 8,
        "NATURAL_DELETION_ORDER": 16,
        "SKIP_UNMATCHED_BOTH": 12,
    }
    assert engine.MF.SKIP_UNMATCHED_BOTH == engine.MF.SKIP_UNMATCHED_SRC | engine.MF.SKIP_UNMATCHED_DST


def test_flag_enums_identical_to_diffsync():
    core_eng, ref_eng = both()
    for attr in ("F", "MF", "Status"):
        core_enum, ref_enum = getattr(core_eng, attr), getattr(ref_eng, attr)
        assert core_enum.__name__ == ref_enum.__name__
        assert {n: m.value for n, m in core_enum.__members__.items()} == {
            n: m.value for n, m in ref_enum.__members__.items()
        }
        assert [m.name for m in core_enum] == [m.name for m in ref_enum]
        assert [str(m) for m in core_enum] == [str(m) for m in ref_enum]
        assert [repr(m) for m in core_enum] == [repr(m) for m in ref_enum]
    for attr in ("CONTINUE_ON_FAILURE", "LOG_UNCHANGED_RECORDS"):
        combo_core = core_eng.F.SKIP_UNMATCHED_BOTH | getattr(core_eng.F, attr)
        combo_ref = ref_eng.F.SKIP_UNMATCHED_BOTH | getattr(ref_eng.F, attr)
        assert (combo_core.value, repr(combo_core)) == (combo_ref.value, repr(combo_ref))


def _ops_of(ns, action):
    return [op for op in ns.rec.ops if op[0] == action]


# ------------------------------------------------------------------------------------------------------------
# CONTINUE_ON_FAILURE
# ------------------------------------------------------------------------------------------------------------


def test_failure_without_continue_on_failure_aborts(engine):
    ns = make_models(engine)
    src, dst = standard_pair(ns)
    ns.rec.fail[("create", "device", "s1__d2")] = "raise"
    with pytest.raises(engine.exc.ObjectNotCreated, match="planned create failure of device s1__d2"):
        dst.sync_from(src)
    assert ns.rec.ops[-1] == ("create", "device", "s1__d2")
    assert ("create", "site", "s2") not in ns.rec.ops
    assert dst.get_or_none("device", "s1__d2") is None


def test_failure_with_continue_on_failure_goes_on(engine):
    ns = make_models(engine)
    src, dst = standard_pair(ns)
    ns.rec.fail[("create", "device", "s1__d2")] = "raise"
    ns.rec.fail[("update", "vlan", "10")] = "raise"
    ns.rec.fail[("delete", "site", "s3")] = "raise"
    with capture_logs() as logs:
        dst.sync_from(src, flags=engine.F.CONTINUE_ON_FAILURE)
    # The failed create's children were not attempted; everything else was.
    assert ("create", "interface", "d2__e5") not in ns.rec.ops
    assert ("create", "site", "s2") in ns.rec.ops
    assert ("create", "vlan", "20") in ns.rec.ops
    assert ("delete", "device", "s3__d5") not in ns.rec.ops
    assert dst.get_or_none("device", "s1__d2") is None
    assert dst.get("vlan", "10").vname == "TEN"
    assert dst.get("site", "s3") is not None
    errors = [entry for entry in logs if entry["log_level"] == "error"]
    assert [(e["action"], e["model"], e["unique_id"], e["status"]) for e in errors] == [
        ("create", "device", "s1__d2", "error"),
        ("delete", "site", "s3", "error"),
        ("update", "vlan", "10", "error"),
    ]
    assert errors[0]["event"] == "planned create failure of device s1__d2"
    warnings = [entry for entry in logs if entry["log_level"] == "warning"]
    assert [e["event"] for e in warnings] == ["No object resulted from sync, will not process child objects."] * 3


def test_hook_returning_none_skips_children_without_raising(engine):
    ns = make_models(engine)
    src, dst = standard_pair(ns)
    ns.rec.fail[("create", "site", "s2")] = "none"
    with capture_logs() as logs:
        dst.sync_from(src)
    assert ("create", "device", "s2__d3") not in ns.rec.ops
    assert dst.get_or_none("site", "s2") is None
    failure = [entry for entry in logs if entry.get("status") == "failure"]
    assert len(failure) == 1
    assert failure[0]["event"] == "site create did not return the model object."
    assert failure[0]["log_level"] == "warning"


@pytest.mark.parametrize("flags", ["NONE", "CONTINUE_ON_FAILURE"])
def test_failure_handling_matches_diffsync(flags):
    results = []
    for eng in both():
        ns = make_models(eng)
        src, dst = standard_pair(ns)
        ns.rec.fail.update(
            {
                ("create", "device", "s1__d2"): "raise",
                ("update", "device", "s1__d1"): "none",
                ("delete", "vlan", "30"): "raise",
            }
        )
        with capture_logs() as logs:
            try:
                dst.sync_from(src, flags=getattr(eng.F, flags))
                outcome = "ok"
            except eng.exc.ObjectCrudException as exc:
                outcome = (type(exc).__name__, str(exc))
        results.append((outcome, ns.rec.ops, log_tuples(logs), sorted(dst.dict()["device"])))
    assert results[0] == results[1]


# ------------------------------------------------------------------------------------------------------------
# SKIP_UNMATCHED_* at adapter level
# ------------------------------------------------------------------------------------------------------------


def test_skip_unmatched_src_creates_nothing(engine):
    ns = make_models(engine)
    src, dst = standard_pair(ns)
    diff = dst.sync_from(src, flags=engine.F.SKIP_UNMATCHED_SRC)
    assert _ops_of(ns, "create") == []
    assert len(_ops_of(ns, "delete")) == 7
    assert len(_ops_of(ns, "update")) == 2
    assert diff.summary()["create"] == 0
    assert "s2" not in diff.children["site"]


def test_skip_unmatched_dst_deletes_nothing(engine):
    ns = make_models(engine)
    src, dst = standard_pair(ns)
    diff = dst.sync_from(src, flags=engine.F.SKIP_UNMATCHED_DST)
    assert _ops_of(ns, "delete") == []
    assert len(_ops_of(ns, "create")) == 7
    assert dst.get("site", "s3").region == "r3"
    assert diff.summary()["delete"] == 0


def test_skip_unmatched_both_only_updates(engine):
    ns = make_models(engine)
    src, dst = standard_pair(ns)
    dst.sync_from(src, flags=engine.F.SKIP_UNMATCHED_BOTH)
    assert ns.rec.ops == [("update", "device", "s1__d1"), ("update", "vlan", "10")]


# ------------------------------------------------------------------------------------------------------------
# SKIP_UNMATCHED_* at model level
# ------------------------------------------------------------------------------------------------------------


def test_model_skip_unmatched_src_class_level(engine):
    ns = make_models(engine, device_flags=engine.MF.SKIP_UNMATCHED_SRC)
    src, dst = standard_pair(ns)
    dst.sync_from(src)
    created = _ops_of(ns, "create")
    assert not any(op[1] == "device" for op in created)
    # s2 is created, but its device is skipped, and so is the device's interface.
    assert ("create", "site", "s2") in created
    assert ("create", "interface", "d3__e7") not in created
    # The interface e2 of a matched device is still created.
    assert ("create", "interface", "d1__e2") in created
    # SKIP_UNMATCHED_SRC does not protect dst-only devices.
    assert ("delete", "device", "s1__d4") in ns.rec.ops


def test_model_skip_unmatched_src_instance_level(engine):
    ns = make_models(engine)
    src, dst = standard_pair(ns)
    src.get("vlan", "20").model_flags = engine.MF.SKIP_UNMATCHED_SRC
    dst.sync_from(src)
    assert ("create", "vlan", "20") not in ns.rec.ops
    assert ("create", "vlan", "10") not in ns.rec.ops
    assert ("update", "vlan", "10") in ns.rec.ops


def test_model_skip_unmatched_dst(engine):
    ns = make_models(engine)
    src, dst = standard_pair(ns)
    dst.get("site", "s3").model_flags = engine.MF.SKIP_UNMATCHED_DST
    dst.get("vlan", "30").model_flags = engine.MF.SKIP_UNMATCHED_DST
    src.get("vlan", "20").model_flags = engine.MF.SKIP_UNMATCHED_DST  # wrong side: no effect
    diff = dst.sync_from(src)
    deleted = _ops_of(ns, "delete")
    assert ("delete", "site", "s3") not in deleted
    assert ("delete", "device", "s3__d5") not in deleted
    assert ("delete", "vlan", "30") not in deleted
    assert ("delete", "device", "s1__d4") in deleted
    assert ("create", "vlan", "20") in ns.rec.ops
    assert dst.get("site", "s3") is not None
    assert diff.summary()["skip"] == 2


def test_model_skip_unmatched_both(engine):
    ns = make_models(engine, vlan_flags=engine.MF.SKIP_UNMATCHED_BOTH)
    src, dst = standard_pair(ns)
    dst.sync_from(src)
    assert [op for op in ns.rec.ops if op[1] == "vlan"] == [("update", "vlan", "10")]


# ------------------------------------------------------------------------------------------------------------
# LOG_UNCHANGED_RECORDS
# ------------------------------------------------------------------------------------------------------------


def test_log_unchanged_records(engine):
    ns = make_models(engine)
    src, dst = standard_pair(ns)
    with capture_logs() as logs:
        dst.sync_from(src, flags=engine.F.LOG_UNCHANGED_RECORDS)
    unchanged = [entry for entry in logs if entry["event"] == "No changes to apply; no action needed"]
    assert [(e["log_level"], e["action"], e["model"], e["unique_id"], e["status"]) for e in unchanged] == [
        ("debug", None, "site", "s1", "success"),
        ("debug", None, "interface", "d1__e1", "success"),
        ("debug", None, "site", "s4", "success"),
        ("debug", None, "device", "s4__d6", "success"),
        ("debug", None, "interface", "d6__e6", "success"),
        ("debug", None, "vlan", "40", "success"),
    ]
    assert unchanged[0]["diffs"] == {"-": {}, "+": {}}


def test_unchanged_records_not_logged_by_default(engine):
    ns = make_models(engine)
    src, dst = standard_pair(ns)
    with capture_logs() as logs:
        dst.sync_from(src)
    assert not any(entry["event"] == "No changes to apply; no action needed" for entry in logs)


# ------------------------------------------------------------------------------------------------------------
# IGNORE
# ------------------------------------------------------------------------------------------------------------


def test_ignore_on_source_object_skips_it_and_its_children(engine):
    ns = make_models(engine)
    src, dst = standard_pair(ns)
    src.get("device", "s1__d1").model_flags = engine.MF.IGNORE
    src.get("site", "s2").model_flags = engine.MF.IGNORE
    diff = dst.sync_from(src)
    assert ("update", "device", "s1__d1") not in ns.rec.ops
    assert not any(op[2].startswith("d1__") for op in ns.rec.ops)
    assert ("create", "site", "s2") not in ns.rec.ops
    assert "d1" not in diff.children["site"]["s1"].child_diff.children["device"]
    assert dst.get("device", "s1__d1").role == "spine"


def test_ignore_on_dest_object_protects_it(engine):
    ns = make_models(engine)
    src, dst = standard_pair(ns)
    dst.get("site", "s3").model_flags = engine.MF.IGNORE
    dst.get("vlan", "10").model_flags = engine.MF.IGNORE
    dst.sync_from(src)
    assert not any(op[2] in ("s3", "s3__d5", "d5__e8", "10") for op in ns.rec.ops)
    assert dst.get("vlan", "10").vname == "TEN"
    assert dst.get("site", "s3") is not None


def test_ignore_at_class_level(engine):
    ns = make_models(engine, vlan_flags=engine.MF.IGNORE)
    src, dst = standard_pair(ns)
    diff = dst.sync_from(src)
    assert not any(op[1] == "vlan" for op in ns.rec.ops)
    assert "vlan" not in diff.groups()
    # Each skipped pair counts once, even when the object exists on both sides.
    assert diff.summary()["skip"] == 4


# ------------------------------------------------------------------------------------------------------------
# SKIP_CHILDREN_ON_DELETE and NATURAL_DELETION_ORDER
# ------------------------------------------------------------------------------------------------------------

DELETE_SRC = {"s1": ("r1", {})}
DELETE_DST = {
    "s1": ("r1", {}),
    "s3": ("r3", {"d5": ("leaf", {"e8": "w", "e9": "v"}), "d7": ("leaf", {})}),
}


def _delete_scenario(ns, site_flags=None, device_flags=None):
    src = build(ns, DELETE_SRC, name="src")
    dst = build(ns, DELETE_DST, name="dst")
    if site_flags is not None:
        dst.get("site", "s3").model_flags = site_flags
    if device_flags is not None:
        for device in dst.get_all("device"):
            device.model_flags = device_flags
    return src, dst


def test_default_deletion_order_is_parent_first(engine):
    ns = make_models(engine)
    src, dst = _delete_scenario(ns)
    dst.sync_from(src)
    assert ns.rec.ops == [
        ("delete", "site", "s3"),
        ("delete", "device", "s3__d5"),
        ("delete", "interface", "d5__e8"),
        ("delete", "interface", "d5__e9"),
        ("delete", "device", "s3__d7"),
    ]
    assert dst.count() == 1


def test_skip_children_on_delete(engine):
    ns = make_models(engine)
    src, dst = _delete_scenario(ns, site_flags=engine.MF.SKIP_CHILDREN_ON_DELETE)
    dst.sync_from(src)
    assert ns.rec.ops == [("delete", "site", "s3")]
    # The children are removed from the store along with their parent.
    assert dst.count() == 1
    assert dst.get_or_none("interface", "d5__e8") is None


def test_skip_children_on_delete_on_inner_level(engine):
    ns = make_models(engine)
    src, dst = _delete_scenario(ns, device_flags=engine.MF.SKIP_CHILDREN_ON_DELETE)
    dst.sync_from(src)
    assert ns.rec.ops == [("delete", "site", "s3"), ("delete", "device", "s3__d5"), ("delete", "device", "s3__d7")]
    assert dst.count() == 1


def test_natural_deletion_order(engine):
    ns = make_models(engine)
    natural = engine.MF.NATURAL_DELETION_ORDER
    src, dst = _delete_scenario(ns, site_flags=natural, device_flags=natural)
    dst.sync_from(src)
    assert ns.rec.ops == [
        ("delete", "interface", "d5__e8"),
        ("delete", "interface", "d5__e9"),
        ("delete", "device", "s3__d5"),
        ("delete", "device", "s3__d7"),
        ("delete", "site", "s3"),
    ]
    assert dst.count() == 1


def test_natural_deletion_order_only_on_site(engine):
    ns = make_models(engine)
    src, dst = _delete_scenario(ns, site_flags=engine.MF.NATURAL_DELETION_ORDER)
    dst.sync_from(src)
    assert ns.rec.ops == [
        ("delete", "device", "s3__d5"),
        ("delete", "interface", "d5__e8"),
        ("delete", "interface", "d5__e9"),
        ("delete", "device", "s3__d7"),
        ("delete", "site", "s3"),
    ]


def test_natural_deletion_order_with_skip_children(engine):
    ns = make_models(engine)
    flags = engine.MF.NATURAL_DELETION_ORDER | engine.MF.SKIP_CHILDREN_ON_DELETE
    src, dst = _delete_scenario(ns, site_flags=flags)
    dst.sync_from(src)
    assert ns.rec.ops == [("delete", "site", "s3")]
    assert dst.count() == 1


def test_natural_deletion_order_does_not_affect_creates_and_updates(engine):
    natural = engine.MF.NATURAL_DELETION_ORDER
    ns = make_models(engine, site_flags=natural, device_flags=natural, interface_flags=natural)
    src = build(ns, {"s1": ("r1", {"d1": ("x", {"e1": "a"})})})
    dst = build(ns, {"s1": ("r0", {})})
    dst.sync_from(src)
    assert ns.rec.ops == [("update", "site", "s1"), ("create", "device", "s1__d1"), ("create", "interface", "d1__e1")]


@pytest.mark.parametrize(
    "flag_names",
    [
        (),
        ("SKIP_CHILDREN_ON_DELETE",),
        ("NATURAL_DELETION_ORDER",),
        ("NATURAL_DELETION_ORDER", "SKIP_CHILDREN_ON_DELETE"),
    ],
    ids=["none", "skip-children", "natural", "natural+skip-children"],
)
def test_deletion_flags_match_diffsync(flag_names):
    results = []
    for eng in both():
        flags = eng.MF.NONE
        for name in flag_names:
            flags |= getattr(eng.MF, name)
        ns = make_models(eng)
        src, dst = _delete_scenario(ns, site_flags=flags, device_flags=flags)
        diff = dst.sync_from(src)
        results.append((ns.rec.ops, diff.summary(), sorted(dst.dict()["device"]), dst.count()))
    assert results[0] == results[1]


@pytest.mark.parametrize(
    "flag_name",
    [
        "NONE",
        "CONTINUE_ON_FAILURE",
        "SKIP_UNMATCHED_SRC",
        "SKIP_UNMATCHED_DST",
        "SKIP_UNMATCHED_BOTH",
        "LOG_UNCHANGED_RECORDS",
    ],
)
def test_adapter_flags_match_diffsync(flag_name):
    results = []
    for eng in both():
        ns = make_models(eng)
        src = build(ns, SRC_SITES, SRC_VLANS, name="src")
        dst = build(ns, DST_SITES, DST_VLANS, name="dst")
        diff = dst.sync_from(src, flags=getattr(eng.F, flag_name))
        results.append((ns.rec.ops, diff.summary(), diff.dict(), dst.dict()))
    assert results[0] == results[1]
