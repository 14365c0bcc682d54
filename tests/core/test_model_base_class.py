"""DiffSyncModel used as a model itself, and model classes made in unusual ways.

core works out per-class fast paths (the ``_ss_`` attributes) when pydantic defines a subclass; these tests
cover the classes that hook never plans: the base class itself, and a class below an override of
``__pydantic_init_subclass__`` that does not call super().  Engine-parametrized tests state diffsync's
behaviour; the ``*_matches_diffsync`` tests compare what both engines observe.
"""

from typing import Generic, List, Optional, TypeVar

import pydantic
import pytest

from ._support import both, norm


def _adapter_for(eng, *model_classes):
    """An adapter class holding these model classes as top-level types."""
    namespace = {cls.get_type(): cls for cls in model_classes}
    namespace["top_level"] = [cls.get_type() for cls in model_classes]
    return type("Backend", (eng.Adapter,), namespace)


def _observe_model(obj):
    """What the identity and attribute accessors of one object return."""
    return {
        "uid": obj.get_unique_id(),
        "ids": obj.get_identifiers(),
        "short": obj.get_shortname(),
        "attrs": obj.get_attrs(),
        "str()": str(obj),
        "repr": repr(obj),
        ".str()": obj.str(),
        "dict": norm(obj.dict()),
        "json": obj.json(),
    }


# ------------------------------------------------------------------------------------------------------------
# The base class itself
# ------------------------------------------------------------------------------------------------------------


def test_base_class_accessors(engine):
    obj = engine.DiffSyncModel()
    assert obj.get_type() == "diffsyncmodel"
    assert obj.get_unique_id() == ""
    assert obj.get_identifiers() == {}
    assert obj.get_shortname() == ""
    assert obj.get_attrs() == {}
    assert str(obj) == ""
    assert repr(obj) == 'diffsyncmodel ""'
    assert obj.str() == "diffsyncmodel: : {}"
    assert obj.dict() == {"model_flags": engine.MF.NONE}
    assert obj.json() == "{}"


def test_base_class_in_adapter(engine):
    Backend = _adapter_for(engine, engine.DiffSyncModel)
    adapter = Backend()
    obj = engine.DiffSyncModel()
    adapter.add(obj)
    assert obj.adapter is adapter
    with pytest.raises(engine.exc.ObjectAlreadyExists):
        adapter.add(engine.DiffSyncModel())
    assert adapter.get(engine.DiffSyncModel, "") is obj
    assert adapter.get(engine.DiffSyncModel, {}) is obj
    assert adapter.get("diffsyncmodel", "") is obj
    assert adapter.get_all(engine.DiffSyncModel) == [obj]
    assert adapter.get_by_uids([""], engine.DiffSyncModel) == [obj]
    assert adapter.count() == 1
    assert adapter.dict() == {"diffsyncmodel": {"": {}}}
    assert adapter.str() == "diffsyncmodel\n  diffsyncmodel: : {}"
    assert adapter.get_or_instantiate(engine.DiffSyncModel, {}, {}) == (obj, False)
    adapter.remove(obj)
    assert adapter.count() == 0
    with pytest.raises(engine.exc.ObjectNotFound):
        adapter.get(engine.DiffSyncModel, "")


def test_base_class_diff_and_sync(engine):
    Backend = _adapter_for(engine, engine.DiffSyncModel)
    src, dst = Backend(name="src"), Backend(name="dst")
    src.add(engine.DiffSyncModel())
    diff = dst.diff_from(src)
    assert diff.dict() == {"diffsyncmodel": {"": {"+": {}}}}
    assert diff.summary()["create"] == 1
    dst.sync_from(src)
    assert dst.dict() == {"diffsyncmodel": {"": {}}}
    assert dst.diff_from(src).summary()["no-change"] == 1
    assert src.diff_from(Backend()).summary()["delete"] == 1


def test_base_class_next_to_a_declared_model(engine):
    # A declared model next to the base class keeps its own fast paths; the base class does not borrow them.
    Site = _make_site(engine)
    Backend = _adapter_for(engine, Site, engine.DiffSyncModel)
    src, dst = Backend(), Backend()
    src.add(Site(name="s1", region="r1"))
    src.add(engine.DiffSyncModel())
    dst.add(Site(name="s1", region="r2"))
    assert dst.diff_from(src).dict() == {
        "site": {"s1": {"-": {"region": "r2"}, "+": {"region": "r1"}}},
        "diffsyncmodel": {"": {"+": {}}},
    }
    assert _observe_model(Site(name="s1", region="r1"))["attrs"] == {"region": "r1"}


def test_base_class_matches_diffsync():
    observed = []
    for eng in both():
        Backend = _adapter_for(eng, eng.DiffSyncModel)
        src, dst = Backend(name="src"), Backend(name="dst")
        obj = eng.DiffSyncModel()
        src.add(obj)
        observed.append(
            {
                **_observe_model(obj),
                "adapter": src.dict(),
                "adapter.str": src.str(),
                "get_all": [repr(item) for item in src.get_all("diffsyncmodel")],
                "diff": dst.diff_from(src).dict(),
                "summary": dst.diff_from(src).summary(),
            }
        )
    assert observed[0] == observed[1]


# ------------------------------------------------------------------------------------------------------------
# Model classes made in unusual ways
# ------------------------------------------------------------------------------------------------------------


def _make_site(eng):
    class Site(eng.DiffSyncModel):
        _modelname = "site"
        _identifiers = ("name",)
        _attributes = ("region",)

        name: str
        region: str = ""

    return Site


def _create_model_on_base(eng):
    return pydantic.create_model("Made", __base__=eng.DiffSyncModel, name=(str, ...)), {"name": "x"}, {}


def _create_model_on_subclass(eng):
    made = pydantic.create_model("Made", __base__=_make_site(eng), extra=(str, "e"))
    return made, {"name": "x", "region": "r1"}, {"region": "r2"}


def _subclass_of_subclass(eng):
    class Sub(_make_site(eng)):
        pass

    class SubSub(Sub):
        pass

    return SubSub, {"name": "x", "region": "r1"}, {"region": "r2"}


def _declarations_as_lists(eng):
    class Listed(eng.DiffSyncModel):
        _modelname = "listed"
        _identifiers = ["site", "name"]
        _shortname = ["name"]
        _attributes = ["value", "tags"]

        name: str
        site: str
        value: int = 0
        tags: List[str] = []

    return Listed, {"name": "a", "site": "s", "value": 1, "tags": ["t"]}, {"value": 2}


def _below_init_subclass_override_without_super(eng):
    class Parent(_make_site(eng)):
        @classmethod
        def __pydantic_init_subclass__(cls, **kwargs):
            pass  # deliberately no super(): pydantic then runs no engine hook for Parent's subclasses

    class Child(Parent):
        _identifiers = ("site", "name")
        _attributes = ("size",)

        site: str = "s"
        size: int = 0

    return Child, {"name": "x", "region": "r1", "size": 1}, {"size": 2}


T = TypeVar("T")


def _parametrized_generic(eng):
    class Generic_(eng.DiffSyncModel, Generic[T]):
        _modelname = "generic"
        _identifiers = ("name",)
        _attributes = ("value",)

        name: str
        value: Optional[T] = None

    return Generic_[int], {"name": "g", "value": 3}, {"value": 4}


def _made_with_type(eng):
    made = type(
        "Made",
        (eng.DiffSyncModel,),
        {"_modelname": "made", "_identifiers": ("name",), "__annotations__": {"name": str}},
    )
    return made, {"name": "d"}, {}


@pytest.mark.parametrize(
    "make",
    [
        _create_model_on_base,
        _create_model_on_subclass,
        _subclass_of_subclass,
        _declarations_as_lists,
        _below_init_subclass_override_without_super,
        _parametrized_generic,
        _made_with_type,
    ],
    ids=["create_model-base", "create_model-sub", "subsub", "lists", "no-super-hook", "generic", "type()"],
)
def test_unusually_made_model_class_matches_diffsync(make):
    observed = []
    for eng in both():
        cls, values, changes = make(eng)
        obj = cls(**values)
        Backend = _adapter_for(eng, cls)
        src, dst = Backend(), Backend()
        src.add(obj)
        dst.add(cls(**{**values, **changes}))
        observed.append(
            {
                **_observe_model(obj),
                "got": repr(src.get(cls, obj.get_identifiers())),
                "diff": norm(dst.diff_from(src).dict()),
                "summary": dst.diff_from(src).summary(),
            }
        )
    assert observed[0] == observed[1]


def test_class_below_init_subclass_override_uses_its_own_declarations(engine):
    cls, values, _ = _below_init_subclass_override_without_super(engine)
    obj = cls(**values)
    assert obj.get_identifiers() == {"name": "x", "site": "s"}
    assert obj.get_unique_id() == "s__x"
    assert obj.get_attrs() == {"size": 1}
