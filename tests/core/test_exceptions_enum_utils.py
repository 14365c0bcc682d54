"""Exceptions, enums, public names, helpers and core.utils."""

import collections
import importlib

import pytest

from ._support import both, make_models, standard_pair

# ------------------------------------------------------------------------------------------------------------
# Public names at the same module paths
# ------------------------------------------------------------------------------------------------------------

PUBLIC_NAMES = {
    "": ["Adapter", "DiffSyncModel", "Diff", "DiffSync", "DiffSyncFlags", "DiffSyncModelFlags", "DiffSyncStatus"],
    "diff": ["Diff", "DiffElement"],
    "enum": ["DiffSyncFlags", "DiffSyncModelFlags", "DiffSyncStatus", "DiffSyncActions"],
    "exceptions": [
        "ObjectCrudException",
        "ObjectNotCreated",
        "ObjectNotUpdated",
        "ObjectNotDeleted",
        "ObjectStoreException",
        "ObjectAlreadyExists",
        "ObjectNotFound",
        "ObjectStoreWrongType",
        "DiffException",
        "DiffClassMismatch",
    ],
    "store": ["BaseStore"],
    "store.local": ["LocalStore"],
    "store.redis": ["RedisStore", "REDIS_DIFFSYNC_ROOT_LABEL"],
    "logging": ["enable_console_logging"],
    "utils": ["intersection", "symmetric_difference", "OrderedDefaultDict", "tree_string", "set_key", "get_path"],
    "helpers": ["DiffSyncDiffer", "DiffSyncSyncer"],
}


@pytest.mark.parametrize("module", list(PUBLIC_NAMES))
def test_public_names(engine, module):
    mod = importlib.import_module(f"{engine.name}.{module}" if module else engine.name)
    for name in PUBLIC_NAMES[module]:
        assert hasattr(mod, name), f"{mod.__name__}.{name}"


def test_core_exports_diff_element_at_top_level():
    core_eng, _ = both()
    assert core_eng.root.DiffElement is core_eng.DiffElement
    assert core_eng.root.Diff is core_eng.Diff


def test_same_objects_through_different_paths(engine):
    assert engine.root.DiffSyncFlags is engine.F
    assert engine.root.DiffSyncModelFlags is engine.MF
    assert engine.root.Diff is engine.diff.Diff
    assert engine.root.LocalStore is engine.LocalStore
    assert engine.root.BaseStore is engine.BaseStore


# ------------------------------------------------------------------------------------------------------------
# Exceptions
# ------------------------------------------------------------------------------------------------------------

HIERARCHY = {
    "ObjectCrudException": "Exception",
    "ObjectNotCreated": "ObjectCrudException",
    "ObjectNotUpdated": "ObjectCrudException",
    "ObjectNotDeleted": "ObjectCrudException",
    "ObjectStoreException": "Exception",
    "ObjectAlreadyExists": "ObjectStoreException",
    "ObjectNotFound": "ObjectStoreException",
    "ObjectStoreWrongType": "ObjectStoreException",
    "DiffException": "Exception",
    "DiffClassMismatch": "DiffException",
}


@pytest.mark.parametrize("name, base", list(HIERARCHY.items()))
def test_exception_hierarchy(engine, name, base):
    cls = getattr(engine.exc, name)
    base_cls = Exception if base == "Exception" else getattr(engine.exc, base)
    assert cls.__bases__ == (base_cls,)
    assert issubclass(cls, Exception)


def test_exception_families_are_disjoint(engine):
    exc = engine.exc
    assert not issubclass(exc.ObjectNotFound, exc.ObjectCrudException)
    assert not issubclass(exc.ObjectNotCreated, exc.ObjectStoreException)
    assert not issubclass(exc.DiffClassMismatch, (exc.ObjectCrudException, exc.ObjectStoreException))
    assert not issubclass(exc.ObjectNotFound, (KeyError, LookupError))


def test_plain_exceptions_carry_message(engine):
    for name in HIERARCHY:
        if name == "ObjectAlreadyExists":
            continue
        err = getattr(engine.exc, name)("boom")
        assert str(err) == "boom"
        assert err.args == ("boom",)


def test_object_already_exists_existing_object(engine):
    ns = make_models(engine)
    obj = ns.Vlan(vid=1)
    err = engine.exc.ObjectAlreadyExists("Object 1 already present", obj)
    assert err.existing_object is obj
    assert err.args == ("Object 1 already present", obj)
    with pytest.raises(TypeError):
        engine.exc.ObjectAlreadyExists("missing the existing object")
    with pytest.raises(engine.exc.ObjectStoreException):
        raise err


def test_exceptions_identical_to_diffsync():
    core_eng, ref_eng = both()
    for name in HIERARCHY:
        core_cls, ref_cls = getattr(core_eng.exc, name), getattr(ref_eng.exc, name)
        assert [c.__name__ for c in core_cls.__mro__] == [c.__name__ for c in ref_cls.__mro__]


# ------------------------------------------------------------------------------------------------------------
# Enums
# ------------------------------------------------------------------------------------------------------------


def test_status_values(engine):
    assert {name: member.value for name, member in engine.Status.__members__.items()} == {
        "UNKNOWN": "unknown",
        "SUCCESS": "success",
        "FAILURE": "failure",
        "ERROR": "error",
    }


def test_actions(engine):
    actions = engine.Actions
    assert (actions.CREATE, actions.UPDATE, actions.DELETE, actions.SKIP, actions.NO_CHANGE) == (
        "create",
        "update",
        "delete",
        "skip",
        None,
    )


# ------------------------------------------------------------------------------------------------------------
# helpers: DiffSyncDiffer / DiffSyncSyncer used directly
# ------------------------------------------------------------------------------------------------------------


def test_differ_and_syncer_used_directly(engine):
    ns = make_models(engine)
    src, dst = standard_pair(ns)
    differ = engine.helpers.DiffSyncDiffer(src_diffsync=src, dst_diffsync=dst, flags=engine.F.NONE)
    diff = differ.calculate_diffs()
    assert differ.calculate_diffs() is diff
    assert diff.dict() == dst.diff_from(src).dict()
    assert differ.models_processed == differ.total_models == 30
    syncer = engine.helpers.DiffSyncSyncer(diff=diff, src_diffsync=src, dst_diffsync=dst, flags=engine.F.NONE)
    assert syncer.total_elements == 22
    assert syncer.perform_sync() is True
    assert syncer.elements_processed == 22
    again = engine.helpers.DiffSyncSyncer(
        diff=dst.diff_from(src), src_diffsync=src, dst_diffsync=dst, flags=engine.F.NONE
    )
    assert again.perform_sync() is False


# ------------------------------------------------------------------------------------------------------------
# utils
# ------------------------------------------------------------------------------------------------------------


def test_intersection(engine):
    intersection = engine.utils.intersection
    assert intersection([1, 2, 3], [3, 1]) == [1, 3]
    assert intersection(["b", "a", "c"], ["c", "b"]) == ["b", "c"]
    assert intersection([1, 1, 2], [1]) == [1, 1]
    assert intersection([], [1]) == []
    assert intersection([1], []) == []
    long_list = list(range(20))
    assert intersection([19, 5, 40, 0], long_list) == [19, 5, 0]
    assert intersection([1.0, True, "1"], long_list) == [1.0, True]


def test_intersection_of_unhashable_items(engine):
    intersection = engine.utils.intersection
    assert intersection([[1], {"a": 1}], [[1], [2]]) == [[1]]
    many = [[n] for n in range(12)] + [{"a": 1}]
    assert intersection([[3], {"a": 1}, [99]], many) == [[3], {"a": 1}]


def test_symmetric_difference(engine):
    symmetric_difference = engine.utils.symmetric_difference
    assert symmetric_difference([1, 2, 3], [2, 4]) == [1, 3, 4]
    assert symmetric_difference(["vlan", "site"], ["site", "device"]) == ["device", "vlan"]
    assert symmetric_difference([1, 1], [1]) == []
    assert symmetric_difference([], []) == []


def test_ordered_default_dict(engine):
    odd_cls = engine.utils.OrderedDefaultDict
    data = odd_cls(dict)
    assert isinstance(data, collections.OrderedDict)
    assert data.factory is dict
    data["b"]["x"] = 1
    data["a"]
    assert list(data) == ["b", "a"]
    assert data == {"b": {"x": 1}, "a": {}}
    lists = odd_cls[str, list](list)
    lists["k"].append(1)
    assert lists == {"k": [1]}
    assert len(odd_cls()) == 0
    assert odd_cls()["new"] == {}
    assert "missing" not in data
    assert data.get("missing") is None


def test_tree_string(engine):
    tree_string = engine.utils.tree_string
    data = {"a": {"b": {}, "c": {"d": {}}}, "e": {}}
    assert tree_string(data, "Root") == "Root\n├── a\n│   ├── b\n│   └── c\n│       └── d\n└── e"
    assert tree_string({}, "Root") == "Root"
    assert tree_string({"x": 1, "y": {"z": {}}}, "R") == "R\n├── x\n└── y\n    └── z"


def test_set_key(engine):
    set_key = engine.utils.set_key
    data = {}
    set_key(data, ["a", "b", "c"])
    assert data == {"a": {"b": {"c": {}}}}
    set_key(data, ["a", "x"])
    assert data == {"a": {"b": {"c": {}}, "x": {}}}
    set_key(data, [])
    assert data == {"a": {"b": {"c": {}}, "x": {}}}


def test_get_path(engine):
    get_path = engine.utils.get_path
    data = {"a": {"b": {"c": {}}}, "d": {"c": {}}, "e": 1}
    assert get_path(data, "a") == ["a"]
    assert get_path(data, "b") == ["a", "b"]
    assert get_path(data, "c") == ["a", "b", "c"]
    assert get_path(data, "e") == ["e"]
    assert get_path(data, "zzz") is None
    assert get_path({}, "a") is None


def test_utils_match_diffsync():
    core_eng, ref_eng = both()
    nested = {"site": {"device": {"interface": {}}, "prefix": {}}, "vlan": {}, "x": 3}
    for eng_pair_result in [
        (lambda u: u.tree_string(nested, "T")),
        (lambda u: [u.get_path(nested, key) for key in ("site", "interface", "prefix", "x", "nope")]),
        (lambda u: u.intersection(list("hello world"), list("lowered"))),
        (lambda u: u.symmetric_difference(list("hello"), list("world"))),
    ]:
        assert eng_pair_result(core_eng.utils) == eng_pair_result(ref_eng.utils)
