"""Adapter._meta_kwargs (diffsync's record of the constructor's keyword arguments) and get_constructor_kwargs.

diffsync's development branch sets ``_meta_kwargs`` in ``Adapter.__new__``: each keyword argument deep-copied,
or kept as it is when deepcopy raises TypeError or AttributeError.  diffsync 2.2.3 (the installed reference)
has no ``_meta_kwargs``, so those tests run on core only and state the development branch's behaviour; the
engine-parametrized tests check what 2.2.3 already does and core must keep doing (positional arguments,
copies of adapters).
"""

import copy
import pickle
import threading

import pytest

from ._support import get_engine, make_models


@pytest.fixture
def core():
    return get_engine("core")


class _DeepcopyRaises:
    """Stands for a connection or client: deep-copying it raises the given exception."""

    def __init__(self, exc_type):
        self.exc_type = exc_type

    def __deepcopy__(self, memo):
        raise self.exc_type("cannot deep copy this object")


def _extra_kwargs_adapter(core):
    """An adapter class whose constructor takes arbitrary keyword arguments besides diffsync's own."""

    class WithExtras(core.Adapter):
        def __init__(self, name=None, internal_storage_engine=core.LocalStore, **extras):
            super().__init__(name=name, internal_storage_engine=internal_storage_engine)
            self.extras = extras

    return WithExtras


# ------------------------------------------------------------------------------------------------------------
# What is recorded
# ------------------------------------------------------------------------------------------------------------


def test_meta_kwargs_records_keyword_arguments(core):
    assert core.Adapter()._meta_kwargs == {}
    assert core.Adapter(name="a")._meta_kwargs == {"name": "a"}
    adapter = core.Adapter(name="a", internal_storage_engine=core.LocalStore)
    assert adapter._meta_kwargs == {"name": "a", "internal_storage_engine": core.LocalStore}
    assert make_models(core).Backend(name="b")._meta_kwargs == {"name": "b"}


def test_meta_kwargs_of_instances_are_independent(core):
    first, second = core.Adapter(name="one"), core.Adapter(name="two")
    assert first._meta_kwargs is not second._meta_kwargs
    assert (first._meta_kwargs["name"], second._meta_kwargs["name"]) == ("one", "two")


def test_meta_kwargs_leaves_positional_arguments_out(core):
    # diffsync's __new__ takes keyword arguments only; core accepts positional ones (as 2.2.3 does) but
    # _meta_kwargs still holds only what was passed by keyword.  get_constructor_kwargs names them all.
    ns = make_models(core)
    adapter = ns.Backend("east", internal_storage_engine=core.LocalStore)
    assert adapter._meta_kwargs == {"internal_storage_engine": core.LocalStore}
    assert adapter.get_constructor_kwargs() == {"name": "east", "internal_storage_engine": core.LocalStore}
    assert core.Adapter("x")._meta_kwargs == {}


def test_positional_arguments_still_accepted(engine):
    ns = make_models(engine)
    adapter = ns.Backend("east", engine.LocalStore)
    assert (adapter.name, type(adapter.store)) == ("east", engine.LocalStore)


def test_meta_kwargs_are_deep_copies(core):
    WithExtras = _extra_kwargs_adapter(core)
    config = {"host": "localhost", "ports": [5432]}
    tags = [1, 2, 3]
    adapter = WithExtras(name="test", config=config, tags=tags)
    config["host"] = "elsewhere"
    config["ports"].append(9999)
    tags.append(4)
    assert adapter._meta_kwargs == {"name": "test", "config": {"host": "localhost", "ports": [5432]}, "tags": [1, 2, 3]}
    assert adapter._meta_kwargs["config"] is not config
    # The adapter itself got the caller's objects, as with any constructor.
    assert adapter.extras["config"] is config


def test_each_keyword_argument_is_copied_on_its_own(core):
    WithExtras = _extra_kwargs_adapter(core)
    shared = [1]
    adapter = WithExtras(first=shared, second=shared)
    assert adapter._meta_kwargs["first"] == adapter._meta_kwargs["second"] == [1]
    assert adapter._meta_kwargs["first"] is not adapter._meta_kwargs["second"]


@pytest.mark.parametrize(
    "make",
    [threading.Lock, lambda: _DeepcopyRaises(TypeError), lambda: _DeepcopyRaises(AttributeError)],
    ids=["lock", "deepcopy-TypeError", "deepcopy-AttributeError"],
)
def test_meta_kwargs_keeps_what_cannot_be_deep_copied(core, make):
    WithExtras = _extra_kwargs_adapter(core)
    connection = make()
    config = {"key": "value"}
    adapter = WithExtras(name="test", connection=connection, config=config)
    assert adapter._meta_kwargs["connection"] is connection
    assert adapter._meta_kwargs["config"] == config
    assert adapter._meta_kwargs["config"] is not config
    assert adapter.get_constructor_kwargs()["connection"] is connection


def test_other_deepcopy_errors_are_not_swallowed(core):
    # diffsync catches TypeError and AttributeError only; anything else still fails the construction.
    WithExtras = _extra_kwargs_adapter(core)
    with pytest.raises(ValueError, match="cannot deep copy"):
        WithExtras(connection=_DeepcopyRaises(ValueError))


def test_store_instance_that_cannot_be_copied_is_kept(core):
    class LockedStore(core.LocalStore):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.lock = threading.Lock()

    store = LockedStore()
    adapter = core.Adapter(name="a", internal_storage_engine=store)
    assert adapter.store is store
    assert adapter._meta_kwargs["internal_storage_engine"] is store


# ------------------------------------------------------------------------------------------------------------
# get_constructor_kwargs agrees with _meta_kwargs
# ------------------------------------------------------------------------------------------------------------


def test_constructor_kwargs_are_the_recorded_keyword_values(core):
    WithExtras = _extra_kwargs_adapter(core)
    config = {"host": "localhost"}
    adapter = WithExtras(name="test", config=config)
    config["host"] = "elsewhere"
    kwargs = adapter.get_constructor_kwargs()
    assert kwargs == adapter._meta_kwargs == {"name": "test", "config": {"host": "localhost"}}
    for key, value in adapter._meta_kwargs.items():
        assert kwargs[key] is value
    # A fresh dict each time: a caller popping keys (as the worker does) does not change the record.
    kwargs.pop("name")
    assert adapter._meta_kwargs == {"name": "test", "config": {"host": "localhost"}}
    assert adapter.get_constructor_kwargs() == {"name": "test", "config": {"host": "localhost"}}


def test_positional_constructor_arguments_are_recorded_as_copies_too(core):
    class Remote(core.Adapter):
        def __init__(self, options, name=None):
            super().__init__(name=name)
            self.options = options

    options = {"verify": True}
    adapter = Remote(options, name="west")
    options["verify"] = False
    assert adapter._meta_kwargs == {"name": "west"}
    assert adapter.get_constructor_kwargs() == {"options": {"verify": True}, "name": "west"}


def test_custom_init_signature_recreated_from_meta_kwargs(core):
    ns = make_models(core)

    class Remote(ns.Backend):
        def __init__(self, url, *, retries=3, name=None, **options):
            super().__init__(name=name)
            self.url, self.retries, self.options = url, retries, options

    adapter = Remote(url="http://x", retries=5, name="west", token="t")
    assert adapter._meta_kwargs == {"url": "http://x", "retries": 5, "name": "west", "token": "t"}
    assert adapter.get_constructor_kwargs() == adapter._meta_kwargs
    clone = Remote(**adapter._meta_kwargs)
    assert (clone.url, clone.retries, clone.name, clone.options) == ("http://x", 5, "west", {"token": "t"})


def test_subclass_new_without_arguments_records_nothing(core):
    class Custom(core.Adapter):
        def __new__(cls, *args, **kwargs):
            return super().__new__(cls)

    adapter = Custom(name="c")
    assert adapter.name == "c"
    assert adapter._meta_kwargs == {}
    assert adapter.get_constructor_kwargs() == {}


# ------------------------------------------------------------------------------------------------------------
# Copies of adapters
# ------------------------------------------------------------------------------------------------------------


def _picklable_classes():
    """A model and an adapter per engine, defined at module level so that pickle can find them by name."""
    classes = {}
    for name in ("core", "diffsync"):
        eng = get_engine(name)
        vlan = type(
            f"Vlan_{name}",
            (eng.DiffSyncModel,),
            {
                "__module__": __name__,
                "_modelname": "vlan",
                "_identifiers": ("vid",),
                "_attributes": ("vname",),
                "__annotations__": {"vid": int, "vname": str},
                "vname": "",
            },
        )
        backend = type(f"Backend_{name}", (eng.Adapter,), {"__module__": __name__, "vlan": vlan, "top_level": ["vlan"]})
        globals()[vlan.__name__], globals()[backend.__name__] = vlan, backend
        classes[name] = (vlan, backend)
    return classes


_PICKLABLE = _picklable_classes()


@pytest.mark.parametrize("how", ["copy", "deepcopy", "pickle"])
def test_copied_adapter_keeps_name_and_contents(engine, how):
    vlan, backend = _PICKLABLE[engine.name]
    adapter = backend(name="src")
    adapter.add(vlan(vid=10, vname="ten"))
    if how == "copy":
        other = copy.copy(adapter)
    elif how == "deepcopy":
        other = copy.deepcopy(adapter)
    else:
        other = pickle.loads(pickle.dumps(adapter))
    assert (type(other), other.name, other.dict()) == (backend, "src", {"vlan": {"10": {"vid": 10, "vname": "ten"}}})


def test_pickled_adapter_keeps_meta_kwargs(core):
    _, backend = _PICKLABLE["core"]
    adapter = pickle.loads(pickle.dumps(backend(name="src")))
    assert adapter._meta_kwargs == {"name": "src"}
    assert adapter.get_constructor_kwargs() == {"name": "src"}


def test_copied_adapter_keeps_meta_kwargs(core):
    WithExtras = _extra_kwargs_adapter(core)
    adapter = WithExtras(name="src", config={"k": [1]}, connection=threading.Lock())
    # copy.copy makes the instance through __new__ with no arguments, then takes the original's state.
    shallow = copy.copy(adapter)
    assert shallow._meta_kwargs is adapter._meta_kwargs
    assert shallow.get_constructor_kwargs() == adapter.get_constructor_kwargs()
    plain = WithExtras(name="src", config={"k": [1]})
    deep = copy.deepcopy(plain)
    assert deep._meta_kwargs == {"name": "src", "config": {"k": [1]}}
    assert deep._meta_kwargs["config"] is not plain._meta_kwargs["config"]
    assert deep.get_constructor_kwargs() == deep._meta_kwargs
