"""Differential tests: the ``core`` engine must behave exactly like the reference diffsync 2.2.3.

The same model classes are built twice by ``make_classes()`` - once on top of ``core`` and once on top of
``diffsync`` - and the same generated scenario (a site -> device -> interface hierarchy plus a flat ``vlan``
model, split between a source and a target adapter) is diffed and synced by both engines. Everything a user
can observe is compared: the diff (summary, dict, str, len, every element), the create/update/delete hook calls,
progress callbacks, structlog events, raised exceptions, ``sync_complete`` calls, the final content of both
adapters, and the statuses of the models.

Environment variables:

* ``SHARDSYNC_DIFF_ENGINE``: module name of the engine under test (default ``core``). Set it to ``diffsync``
  to check the harness itself (the reference against itself).
* ``SHARDSYNC_DIFF_EXAMPLES``: multiplier (float) for the number of generated examples (default ``1``).
* ``SHARDSYNC_DIFF_RANDOM``: set to ``1`` to draw new random examples on each run instead of the fixed,
  derandomized set.
* ``SHARDSYNC_DIFF_SKIP``: comma-separated observation keys (see ``run_scenario``) not to compare in the
  scenario tests, to look for further discrepancies past a known one, e.g. ``src_buckets,dst_buckets``.

Besides the scenario tests there are property tests of the hand-built Diff/DiffElement API and of the
Adapter store API, explicit examples of documented behaviours, and checks of declarations and signatures.
"""

import copy
import enum
import gc
import importlib
import inspect
import os
import warnings
from dataclasses import MISSING, dataclass, field, fields
from functools import lru_cache
from pathlib import Path
from typing import NamedTuple

import pytest
import structlog
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from structlog.testing import capture_logs

REFERENCE_NAME = "diffsync"
ENGINE_NAME = os.environ.get("SHARDSYNC_DIFF_ENGINE", "core")
EXAMPLES_FACTOR = float(os.environ.get("SHARDSYNC_DIFF_EXAMPLES", "1"))
RANDOM_RUN = os.environ.get("SHARDSYNC_DIFF_RANDOM", "") not in ("", "0")
SKIP_CHECKS = [key for key in os.environ.get("SHARDSYNC_DIFF_SKIP", "").split(",") if key]

if ENGINE_NAME == "core" and not (Path(__file__).resolve().parents[2] / "core" / "__init__.py").exists():
    pytest.skip("core/__init__.py does not exist yet", allow_module_level=True)


def _examples(count):
    return max(1, int(count * EXAMPLES_FACTOR))


def _settings(count):
    return settings(
        max_examples=_examples(count),
        deadline=None,
        derandomize=not RANDOM_RUN,
        database=None,
        # No "explain" phase: it re-runs a failing example many times, and every run syncs twice.
        phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink],
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


# ----------------------------------------------------------------------------------------------------------------
# Normalisation: make values from both engines comparable
# ----------------------------------------------------------------------------------------------------------------


_PLAIN = (str, int, float, bool, type(None))


def norm(value):
    """Turn engine-specific values (enums) into plain data, keeping dict order."""
    if type(value) in _PLAIN:
        return value
    if isinstance(value, enum.Enum):
        return (type(value).__name__, value.value)
    if isinstance(value, dict):
        return {norm(k): norm(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [norm(v) for v in value]
    if isinstance(value, (set, frozenset)):
        return sorted(norm(v) for v in value)
    return value


LOG_OBJECT_KEYS = ("src", "dst", "flags", "store")
LOG_CORE_KEYS = ("event", "log_level", "action", "model", "unique_id", "diffs", "status")


def norm_log(entry):
    """Normalise a captured structlog event: objects are compared through str()."""
    return {k: (str(v) if k in LOG_OBJECT_KEYS else norm(v)) for k, v in entry.items()}


def norm_exc(engine, exc):
    """An exception as (class name, message, names of the engine's exception classes it is an instance of)."""
    bases = []
    for name in dir(REF.exceptions):
        cls = getattr(engine.exceptions, name, None)
        if isinstance(cls, type) and issubclass(cls, BaseException) and isinstance(exc, cls):
            bases.append(name)
    return (type(exc).__name__, str(exc.args[0]) if exc.args else "", bases)


def safe(func, *args):
    """Call func; an exception becomes a comparable value instead of aborting the observation."""
    try:
        return func(*args)
    except Exception as exc:  # noqa: BLE001 - any exception is an observation
        # args[0] only: further args may hold objects whose repr has a memory address (ObjectAlreadyExists).
        return ("raised", type(exc).__name__, str(exc.args[0]) if exc.args else "")


# ----------------------------------------------------------------------------------------------------------------
# Model classes, built for one engine
# ----------------------------------------------------------------------------------------------------------------

MODES = (
    "ok",  # call super().create()/update()/delete()
    "raise",  # raise ObjectNotCreated / ObjectNotUpdated / ObjectNotDeleted
    "none",  # return None
    "base",  # call create_base()/update_base()/delete_base() directly
    "bare",  # return a model without calling the base implementation (status untouched)
    "failure_status",  # succeed but set_status(FAILURE)
    "error_status",  # succeed but set_status(ERROR)
    "raise_base",  # raise the ObjectCrudException base class
    "raise_other",  # raise an exception that is not an ObjectCrudException
    "copy",  # return a new instance (not the stored one), as if re-read from a backend
)


# What generated scenarios plan for hooks that do not just succeed (non-CRUD errors are rarer: they end the sync).
FAIL_CHOICES = ("raise", "none", "base", "bare", "failure_status", "error_status", "raise_base", "raise", "none")
FAIL_CHOICES += ("bare", "copy", "raise_other")


class PlannedError(RuntimeError):
    """A non-CRUD exception raised by a hook (must propagate even with CONTINUE_ON_FAILURE)."""


class Recorder:
    """Per-engine log of everything the hooks, callbacks and Diff subclasses see, plus the failure plan."""

    def __init__(self):
        """Start empty."""
        self.reset({})

    def reset(self, plan, callback_raise_at=None):
        """Clear the logs; install a failure plan ``{(modelname, "__".join(identifier values)): mode}``."""
        self.events = []
        self.adapter_calls = []
        self.plan = dict(plan)
        self.completed_diffs = []
        self.callback_raise_at = callback_raise_at
        self.callback_calls = 0

    def planned(self, action, modelname, ids, record, crud_exc, base_exc):
        """Record a hook call, then raise if the plan says so; return the planned mode."""
        uid = "__".join(str(v) for v in ids.values())
        mode = self.plan.get((modelname, uid), "ok")
        self.events.append((*record, mode))
        if mode == "raise":
            raise crud_exc(f"planned {action} failure of {modelname} {uid}")
        if mode == "raise_base":
            raise base_exc(f"planned generic {action} failure of {modelname} {uid}")
        if mode == "raise_other":
            raise PlannedError(f"planned non-CRUD {action} failure of {modelname} {uid}")
        return mode

    def callback(self, stage, current, total):
        """Progress callback passed to diff_from/sync_from (raises at the planned call, if any)."""
        self.events.append(("cb", stage, current, total))
        self.callback_calls += 1
        if self.callback_calls == self.callback_raise_at:
            raise PlannedError(f"planned callback failure at ({stage}, {current}, {total})")


class Engine:
    """The modules of one engine: the package root plus its ``enum``, ``exceptions`` and ``diff`` modules."""

    def __init__(self, name):
        """Import the engine ``name`` (``core`` or ``diffsync``)."""
        self.name = name
        self.root = importlib.import_module(name)
        self.enum = importlib.import_module(f"{name}.enum")
        self.exceptions = importlib.import_module(f"{name}.exceptions")
        self.diff = importlib.import_module(f"{name}.diff")
        self.local = importlib.import_module(f"{name}.store.local")
        self.rec = Recorder()
        self.model_cache = {}


REF = Engine(REFERENCE_NAME)
SUT = Engine(ENGINE_NAME)


class ClassConfig(NamedTuple):
    """Class-level options of one adapter's model classes.

    ``flags``: class-level ``model_flags`` (ints) of site, device, interface and vlan.
    ``leaf_device``: the device model has no ``interface`` children.
    ``vlan_shortname``: vlans use their (non-unique) ``vname`` attribute as shortname.
    ``custom_vlan``: vlans override ``create_unique_id`` (unique id ``vlan-<vid>``) and ``get_attrs``.
    ``traced``: the adapter classes override their store-access methods to record every call.
    ``slim_interface``: interfaces declare ``enabled`` before ``description`` and ``mtu`` is not an attribute.
    ``batch_loop``: the models override the batch hooks (``create_batch``...) with loops over the single
    hooks, so the engine groups their operations level by level (the reference has no batch hooks).
    """

    flags: tuple = (0, 0, 0, 0)
    leaf_device: bool = False
    vlan_shortname: bool = False
    custom_vlan: bool = False
    traced: bool = False
    slim_interface: bool = False
    batch_loop: bool = False

    def __repr__(self):
        """Only the options that differ from the defaults."""
        changed = [f"{k}={v!r}" for k, v in self._asdict().items() if v != self._field_defaults[k]]
        return f"ClassConfig({', '.join(changed)})"


@dataclass
class Bundle:
    """The classes built by ``make_classes`` for one engine and one class-level configuration."""

    engine: Engine
    rec: Recorder
    models: dict
    Source: type
    Target: type
    diff_classes: dict

    @property
    def flags(self):
        """The engine's DiffSyncFlags."""
        return self.engine.enum.DiffSyncFlags


def make_classes(engine, src_config=None, dst_config=None, src_top=("site", "vlan"), dst_top=("site", "vlan")):
    """Define the test models, adapters and Diff subclasses on top of ``engine``.

    ``src_config``/``dst_config`` configure the model classes of the source and the target adapter classes;
    ``src_top``/``dst_top`` are their ``top_level`` lists.
    """
    src_config = src_config or ClassConfig()
    dst_config = dst_config or ClassConfig()
    root, enums, exc = engine.root, engine.enum, engine.exceptions
    mflags = enums.DiffSyncModelFlags
    status = enums.DiffSyncStatus
    rec = engine.rec
    crud = {"create": exc.ObjectNotCreated, "update": exc.ObjectNotUpdated, "delete": exc.ObjectNotDeleted}

    def finish(model, mode):
        if mode == "failure_status":
            model.set_status(status.FAILURE, "planned failure status")
        elif mode == "error_status":
            model.set_status(status.ERROR, "planned error status")
        return model

    class Outer(root.DiffSyncModel):
        @classmethod
        def create(cls, adapter, ids, attrs):
            uid = cls.create_unique_id(**ids)
            record = ("create", cls.get_type(), uid, norm(ids), norm(attrs), str(adapter))
            mode = rec.planned("create", cls.get_type(), ids, record, crud["create"], exc.ObjectCrudException)
            if mode == "none":
                return None
            if mode in ("bare", "copy"):
                return cls(**ids, **attrs, adapter=adapter)
            if mode == "base":
                return cls.create_base(adapter=adapter, ids=ids, attrs=attrs)
            return finish(super().create(adapter=adapter, ids=ids, attrs=attrs), mode)

        def update(self, attrs):
            uid = self.get_unique_id()
            record = ("update", self.get_type(), uid, norm(attrs), str(self.adapter), norm(self.get_status()))
            ids = self.get_identifiers()
            mode = rec.planned("update", self.get_type(), ids, record, crud["update"], exc.ObjectCrudException)
            if mode == "none":
                return None
            if mode == "bare":
                return self
            if mode == "copy":
                return type(self)(**{**self.dict(), **attrs}).update_base(attrs={})
            if mode == "base":
                return self.update_base(attrs=attrs)
            return finish(super().update(attrs=attrs), mode)

        def delete(self):
            uid = self.get_unique_id()
            record = ("delete", self.get_type(), uid, str(self.adapter), norm(self.get_status()))
            ids = self.get_identifiers()
            mode = rec.planned("delete", self.get_type(), ids, record, crud["delete"], exc.ObjectCrudException)
            if mode == "none":
                return None
            if mode == "bare":
                return self
            if mode == "copy":
                return type(self)(**self.dict()).delete_base()
            if mode == "base":
                return self.delete_base()
            return finish(super().delete(), mode)

    class Looping:
        """Batch hooks that call the single hooks in order, as the engine's defaults do, but overridden."""

        @classmethod
        def create_batch(cls, adapter, items):
            rec.events.append(("create_batch", cls.get_type(), len(items)))
            return [_item(cls.create, adapter=adapter, ids=ids, attrs=attrs) for ids, attrs in items]

        @classmethod
        def update_batch(cls, adapter, items):
            rec.events.append(("update_batch", cls.get_type(), len(items)))
            return [_item(model.update, attrs=attrs) for model, attrs in items]

        @classmethod
        def delete_batch(cls, adapter, items):
            rec.events.append(("delete_batch", cls.get_type(), len(items)))
            return [_item(model.delete) for model in items]

    def _item(call, **kwargs):
        try:
            return call(**kwargs)
        except exc.ObjectCrudException as err:
            return err

    def model_classes(config):
        site_flags, device_flags, interface_flags, vlan_flags = config.flags
        Base = Outer if not config.batch_loop else type("LoopingBase", (Looping, Outer), {})

        class Site(Base):
            _modelname = "site"
            _identifiers = ("name",)
            _attributes = ("region", "asn")
            _children = {"device": "devices"}

            name: str
            region: str | None = None
            asn: int = 0
            note: str = ""
            devices: list[str] = []
            if site_flags:
                model_flags: mflags = mflags(site_flags)

        class Device(Base):
            _modelname = "device"
            _identifiers = ("site_name", "name")
            _shortname = ("name",)
            _attributes = ("role", "tags")

            site_name: str
            name: str
            role: str = "leaf"
            tags: list[str] = []
            note: str = ""
            if not config.leaf_device:
                _children = {"interface": "interfaces"}
                interfaces: list[str] = []
            if device_flags:
                model_flags: mflags = mflags(device_flags)

        class Interface(Base):
            _modelname = "interface"
            _identifiers = ("site_name", "device_name", "name")
            _shortname = ("name",)
            _attributes = ("description", "enabled") if config.slim_interface else ("description", "mtu", "enabled")

            site_name: str
            device_name: str
            name: str
            if config.slim_interface:
                enabled: bool = True
            description: str = ""
            mtu: int | None = None
            if not config.slim_interface:
                enabled: bool = True
            note: str = ""
            if interface_flags:
                model_flags: mflags = mflags(interface_flags)

        class Vlan(Base):
            _modelname = "vlan"
            _identifiers = ("vid",)
            _attributes = ("vname",)
            if config.vlan_shortname:
                _shortname = ("vname",)

            vid: int
            vname: str = ""
            if vlan_flags:
                model_flags: mflags = mflags(vlan_flags)

            if config.custom_vlan:

                @classmethod
                def create_unique_id(cls, **identifiers):
                    return f"vlan-{identifiers['vid']}"

                def get_attrs(self):
                    return {"vname": self.vname.upper()}

        return {"site": Site, "device": Device, "interface": Interface, "vlan": Vlan}

    def sync_complete(self, source, diff, flags=enums.DiffSyncFlags.NONE, logger=None):
        rec.events.append(("sync_complete", str(self), str(source), type(diff).__name__, len(diff), str(flags)))
        rec.events.append(("sync_complete_logger", logger is not None))
        rec.completed_diffs.append(diff)
        if logger is not None:
            logger.info("sync_complete called", completed=True)
        return root.Adapter.sync_complete(self, source, diff, flags, logger)

    # Building pydantic classes is slow: reuse them across calls (the hooks only depend on engine.rec).
    for config in (src_config, dst_config):
        if config not in engine.model_cache:
            engine.model_cache[config] = model_classes(config)
    src_models = engine.model_cache[src_config]
    dst_models = engine.model_cache[dst_config]

    def ref_name(obj):
        return obj if isinstance(obj, str) else ("class" if isinstance(obj, type) else "instance", obj.get_type())

    class Traced(root.Adapter):
        def get(self, obj, identifier):
            rec.adapter_calls.append(("get", str(self), ref_name(obj), norm(identifier)))
            return super().get(obj, identifier)

        def get_all(self, obj):
            rec.adapter_calls.append(("get_all", str(self), ref_name(obj)))
            return super().get_all(obj)

        def get_by_uids(self, uids, obj):
            rec.adapter_calls.append(("get_by_uids", str(self), norm(uids), ref_name(obj)))
            return super().get_by_uids(uids, obj)

        def add(self, obj):
            rec.adapter_calls.append(("add", str(self), obj.get_type(), obj.get_unique_id()))
            return super().add(obj)

        def remove(self, obj, remove_children=False):
            rec.adapter_calls.append(("remove", str(self), obj.get_type(), obj.get_unique_id(), remove_children))
            return super().remove(obj, remove_children=remove_children)

    src_base = Traced if src_config.traced else root.Adapter
    dst_base = Traced if dst_config.traced else root.Adapter

    class Source(src_base):
        site = src_models["site"]
        device = src_models["device"]
        interface = src_models["interface"]
        vlan = src_models["vlan"]
        top_level = list(src_top)

    class Target(dst_base):
        site = dst_models["site"]
        device = dst_models["device"]
        interface = dst_models["interface"]
        vlan = dst_models["vlan"]
        top_level = list(dst_top)

    Source.sync_complete = sync_complete
    Target.sync_complete = sync_complete

    base_diff = engine.diff.Diff

    class RecordingDiff(base_diff):
        def add(self, element):
            rec.events.append(("diff_add", element.type, element.name, element.action))
            return super().add(element)

        def complete(self):
            rec.events.append(("diff_complete", type(self).__name__, len(self), self.models_processed))
            return super().complete()

    class ReverseDeviceDiff(RecordingDiff):
        @classmethod
        def order_children_device(cls, children):
            yield from reversed(list(children.values()))

    class SortedDiff(base_diff):
        @classmethod
        def order_children_default(cls, children):
            yield from sorted(children.values(), reverse=True)

    class DecoratedDiff(base_diff):
        # Overrides of the rendering methods; DiffElement calls them on its child diffs, too.
        def str(self, indent=0):
            return "\n".join(f"{line} |" for line in super().str(indent).splitlines())

        def dict(self):
            return {f"<{key}>": value for key, value in super().dict().items()}

        def summary(self):
            summary = super().summary()
            summary["no-change"] = 0  # "only count changes"
            return summary

    class ChangesOnlyLenDiff(base_diff):
        def __len__(self):  # counts only the top-level elements with changes (so may be 0, i.e. falsy)
            return sum(1 for element in self.get_children() if element.has_diffs())

    return Bundle(
        engine=engine,
        rec=rec,
        models={"src": src_models, "dst": dst_models},
        Source=Source,
        Target=Target,
        diff_classes={
            "default": None,
            "plain": base_diff,
            "recording": RecordingDiff,
            "reverse": ReverseDeviceDiff,
            "sorted": SortedDiff,
            "changes_len": ChangesOnlyLenDiff,
            "decorated": DecoratedDiff,
        },
    )


@lru_cache(maxsize=256)
def _bundle(engine, src_config, dst_config, src_top, dst_top):
    return make_classes(engine, src_config, dst_config, src_top, dst_top)


# ----------------------------------------------------------------------------------------------------------------
# Scenarios: plain data, independent of the engine
# ----------------------------------------------------------------------------------------------------------------


def _changed_fields(obj, skip=()):
    """``name=value`` for the dataclass fields that differ from their defaults (compact, pasteable reprs)."""
    parts = []
    for item in fields(obj):
        if item.name in skip:
            continue
        default = item.default if item.default_factory is MISSING else item.default_factory()
        value = getattr(obj, item.name)
        if value != default:
            parts.append(f"{item.name}={value!r}")
    return parts


@dataclass(repr=False)
class Node:
    """One model instance of the scenario, present in the source and/or the target.

    ``src``/``dst`` are the field values on each side (None: absent on that side), ``*_flags`` the
    instance-level ``model_flags`` (None: keep the class default), ``*_order`` the sort key among siblings,
    and ``fail`` the planned behaviour of the target-side hook for this object.
    """

    model: str
    ids: dict
    src: dict | None = None
    dst: dict | None = None
    src_flags: int | None = None
    dst_flags: int | None = None
    src_order: int = 0
    dst_order: int = 0
    fail: str = "ok"

    def __repr__(self):
        """E.g. ``device_node('s0', 'd1', src={...}, fail='raise')``, as built by the helpers below."""
        args = [repr(v) for v in self.ids.values()] + _changed_fields(self, skip=("model", "ids"))
        return f"{self.model}_node({', '.join(args)})"

    def _repr_pretty_(self, printer, cycle):
        printer.text(repr(self))  # what Hypothesis prints for a failing example

    @property
    def uid(self):
        """The unique id of this node with the default create_unique_id (also the key of the failure plan)."""
        return "__".join(str(v) for v in self.ids.values())

    @property
    def parent(self):
        """(modelname, unique_id) of the parent node, or None for top-level nodes."""
        if self.model == "device":
            return ("site", self.ids["site_name"])
        if self.model == "interface":
            return ("device", f"{self.ids['site_name']}__{self.ids['device_name']}")
        return None


@dataclass(repr=False)
class Scenario:
    """A complete generated test case."""

    def __repr__(self):
        """Only the fields that differ from the defaults."""
        return f"Scenario({', '.join(_changed_fields(self))})"

    def _repr_pretty_(self, printer, cycle):
        printer.text(repr(self))

    nodes: list = field(default_factory=list)
    src_classes: ClassConfig = ClassConfig()
    dst_classes: ClassConfig = ClassConfig()
    src_top: tuple = ("site", "vlan")
    dst_top: tuple = ("site", "vlan")
    api: str = "sync_from"
    flags: int = 0
    sync_flags: int = 0
    diff_class: str = "default"
    sync_diff_class: str = "default"
    callback: bool = True
    stale: tuple = ()
    loader: str = "add"
    store_instance: bool = False
    callback_raise_at: int | None = None
    log_level: str | None = None


def site_node(name, src=None, dst=None, **kwargs):
    """Build a site Node (src/dst: field dicts, {} for "present with default values")."""
    return Node("site", {"name": name}, src, dst, **kwargs)


def device_node(site, name, src=None, dst=None, **kwargs):
    """Build a device Node."""
    return Node("device", {"site_name": site, "name": name}, src, dst, **kwargs)


def interface_node(site, device, name, src=None, dst=None, **kwargs):
    """Build an interface Node."""
    return Node("interface", {"site_name": site, "device_name": device, "name": name}, src, dst, **kwargs)


def vlan_node(vid, src=None, dst=None, **kwargs):
    """Build a vlan Node."""
    return Node("vlan", {"vid": vid}, src, dst, **kwargs)


SITES = ("s0", "s1", "s2")
DEVICES = ("d0", "d1", "d2")
INTERFACES = ("i0", "i1")
VLANS = (10, 20)

FIELD_VALUES = {
    "site": {"region": [None, "eu", "us"], "asn": [0, 65000], "note": ["", "n"]},
    "device": {"role": ["leaf", "spine", "edge"], "tags": [[], ["a"], ["a", "b"]], "note": ["", "n"]},
    "interface": {
        "description": ["", "uplink", "Ünïcode → ✓"],
        "mtu": [None, 1500, 9000],
        "enabled": [True, False],
        "note": ["", "n"],
    },
    "vlan": {"vname": ["", "prod", "dev"]},
}
FLAG_DIFFSYNC_BITS = 0b1111
# Single DiffSyncModelFlags mostly (random combinations would nearly always include IGNORE), plus a few combos.
MODEL_FLAG_CHOICES = (0b10000, 0b00010, 0b00001, 0b00100, 0b01000, 0b01100, 0b10010, 0b11000, 0b00000, 0b11111)
# Changes made between a diff and the sync that uses it: remove/add the target object ("flip"), or change
# attribute values in place on both sides ("touch").
STALE_OPS = ("flip", "touch")
TOUCH = {
    "site": ("region", "touched"),
    "device": ("role", "touched"),
    "interface": ("description", "touched"),
    "vlan": ("vname", "touched"),
}
APIS = ("sync_from", "sync_to", "diff_sync_from", "diff_sync_to", "reverse_sync", "diff_only")
DIFF_CLASSES = ("default", "plain", "recording", "reverse", "sorted", "changes_len", "decorated")
LOADERS = ("add", "get_or_instantiate", "update_or_add_model_instance", "load_from_dict")


@st.composite
def scenarios(draw, max_sites=3, max_devices=3, max_interfaces=2, apis=APIS):
    """Generate a Scenario; every choice shrinks towards "absent", "no flag", "ok", "plain sync_from"."""
    flag_density = draw(st.sampled_from((0, 1, 2)))
    fail_density = draw(st.sampled_from((0, 1, 2)))

    def field_values(model):
        values = {name: draw(st.sampled_from(choices)) for name, choices in FIELD_VALUES[model].items()}
        return {name: list(v) if isinstance(v, list) else v for name, v in values.items()}  # no shared lists

    def rare(n):
        # True with probability 1/(n+1); shrinks towards False.
        return draw(st.integers(0, n)) == n

    def model_flags(rarity):
        if flag_density == 0 or not rare(rarity if flag_density == 1 else 3):
            return None
        return draw(st.sampled_from(MODEL_FLAG_CHOICES))

    def instance_flags():
        return model_flags(12)

    def fail_mode():
        if fail_density == 0 or not rare(10 if fail_density == 1 else 3):
            return "ok"
        return draw(st.sampled_from(FAIL_CHOICES))

    def node(model, ids, parent_presence):
        # "none" first so that examples shrink towards fewer objects; "both" twice as likely as the others.
        allowed = {
            "both": ("none", "both", "src", "dst", "both"),
            "src": ("none", "src", "src"),
            "dst": ("none", "dst", "dst"),
            "none": ("none",),
        }
        presence = draw(st.sampled_from(allowed[parent_presence]))
        if presence == "none":
            return None, presence
        new = Node(model, ids)
        if presence in ("both", "src"):
            new.src = field_values(model)
            new.src_flags = instance_flags()
            new.src_order = draw(st.integers(0, 2))
        if presence in ("both", "dst"):
            new.dst = dict(new.src) if presence == "both" and draw(st.booleans()) else field_values(model)
            new.dst_flags = instance_flags()
            new.dst_order = draw(st.integers(0, 2))
        new.fail = fail_mode()
        return new, presence

    nodes = []
    for site in SITES[:max_sites]:
        site_n, site_p = node("site", {"name": site}, "both")
        if site_n is None:
            continue
        nodes.append(site_n)
        for dev in DEVICES[:max_devices]:
            dev_n, dev_p = node("device", {"site_name": site, "name": dev}, site_p)
            if dev_n is None:
                continue
            nodes.append(dev_n)
            for intf in INTERFACES[:max_interfaces]:
                intf_n, _ = node("interface", {"site_name": site, "device_name": dev, "name": intf}, dev_p)
                if intf_n is not None:
                    nodes.append(intf_n)
    for vid in VLANS:
        vlan_n, _ = node("vlan", {"vid": vid}, "both")
        if vlan_n is not None:
            nodes.append(vlan_n)

    src_classes = ClassConfig(
        flags=tuple(model_flags(4) or 0 for _ in range(4)),
        vlan_shortname=rare(7),
        custom_vlan=rare(5),
        traced=rare(3),
    )
    dst_classes = src_classes
    if rare(3):  # the target's model classes differ from the source's
        dst_classes = ClassConfig(
            flags=tuple(model_flags(4) or 0 for _ in range(4)),
            vlan_shortname=src_classes.vlan_shortname if draw(st.booleans()) else draw(st.booleans()),
            custom_vlan=src_classes.custom_vlan,
            traced=rare(1),
            slim_interface=rare(2),
        )
    leaf = draw(st.sampled_from((None, None, None, None, None, None, "src", "dst")))
    if leaf == "src":
        src_classes = src_classes._replace(leaf_device=True)
    elif leaf == "dst":
        dst_classes = dst_classes._replace(leaf_device=True)
    tops = (("site", "vlan"), ("site",), ("vlan", "site"))
    scenario = Scenario(
        nodes=nodes,
        src_classes=src_classes,
        dst_classes=dst_classes,
        src_top=draw(st.sampled_from(tops)),
        dst_top=draw(st.sampled_from(tops)),
        api=draw(st.sampled_from(apis)),
        flags=draw(st.integers(0, FLAG_DIFFSYNC_BITS)),
        diff_class=draw(st.sampled_from(DIFF_CLASSES)),
        callback=draw(st.sampled_from((True, False))),
        loader=draw(st.sampled_from(LOADERS)),
        store_instance=draw(st.booleans()),
    )
    if scenario.api in ("diff_sync_from", "diff_sync_to"):
        scenario.sync_flags = draw(st.sampled_from((scenario.flags, *range(FLAG_DIFFSYNC_BITS + 1))))
        scenario.sync_diff_class = scenario.diff_class
        if rare(7):
            scenario.sync_diff_class = draw(st.sampled_from(DIFF_CLASSES))
        if nodes:
            keys = [(n.model, n.uid) for n in nodes]
            picked = draw(st.lists(st.sampled_from(keys), max_size=3, unique=True))
            scenario.stale = tuple((*key, draw(st.sampled_from(STALE_OPS))) for key in picked)
    if scenario.callback and rare(5):
        scenario.callback_raise_at = draw(st.integers(1, 30))
    scenario.log_level = draw(st.sampled_from((None, None, None, None, "info", "warning")))
    return scenario


# ----------------------------------------------------------------------------------------------------------------
# Running one scenario on one engine
# ----------------------------------------------------------------------------------------------------------------


def _load(adapter, bundle, scenario, side):
    """Load the ``side`` ("src"/"dst") half of the scenario into ``adapter``; return objects in load order."""
    leaf_device = getattr(scenario, f"{side}_classes").leaf_device
    present = [
        n for n in scenario.nodes if getattr(n, side) is not None and not (leaf_device and n.model == "interface")
    ]
    by_parent = {}
    for n in present:
        by_parent.setdefault(n.parent, []).append(n)
    loaded = []
    target = adapter
    if scenario.loader == "load_from_dict":
        target = type(adapter)(name="scratch")

    def load(n, parent_obj):
        cls = bundle.models[side][n.model]
        values = dict(getattr(n, side))
        flags = getattr(n, f"{side}_flags")
        if flags is not None:
            values["model_flags"] = bundle.engine.enum.DiffSyncModelFlags(flags)
        if scenario.loader == "get_or_instantiate":
            obj, _ = target.get_or_instantiate(cls, dict(n.ids), values)
        elif scenario.loader == "update_or_add_model_instance":
            obj, _ = target.update_or_add_model_instance(cls(**n.ids, **values))
        else:
            obj = cls(**n.ids, **values)
            target.add(obj)
        if parent_obj is not None:
            parent_obj.add_child(obj)
        loaded.append(obj)
        children = sorted(by_parent.get((n.model, n.uid), []), key=lambda c: (getattr(c, f"{side}_order"), c.uid))
        for child in children:
            load(child, obj)

    tops = sorted(by_parent.get(None, []), key=lambda c: (getattr(c, f"{side}_order"), c.model, c.uid))
    for n in tops:
        load(n, None)
    if target is not adapter:
        adapter.load_from_dict(target.dict())
        loaded = [adapter.get(obj.get_type(), obj.get_unique_id()) for obj in loaded]
    return loaded


def _apply_stale(bundle, src, dst, scenario):
    """Make a precomputed diff stale: remove/add target objects, or change attributes in place."""
    nodes = {(n.model, n.uid): n for n in scenario.nodes}
    for model, uid, op in scenario.stale:
        n = nodes[(model, uid)]
        cls = bundle.models["dst"][model]
        existing = dst.get_or_none(cls, dict(n.ids))
        if op == "touch":
            name, value = TOUCH[model]
            for obj in (existing, src.get_or_none(bundle.models["src"][model], dict(n.ids))):
                if obj is not None:
                    setattr(obj, name, value)
                    if model == "device":
                        obj.tags.append("touched")  # in place
        elif existing is not None:
            dst.remove(existing)
        elif n.src is not None:
            dst.add(cls(**n.ids, **n.src))


def describe_diff(diff):
    """Everything observable about a Diff, as plain data."""
    if diff is None:
        return None
    dict_out = diff.dict()
    return {
        "type": type(diff).__name__,
        "summary": norm(diff.summary()),
        "dict": norm(dict_out),
        "dict_order": repr(norm(dict_out)),
        "str": diff.str(),
        "len": len(diff),
        "has_diffs": diff.has_diffs(),
        "models_processed": diff.models_processed,
        "groups": list(diff.groups()),
        "elements": describe_elements(diff),
    }


def describe_elements(diff):
    """Every DiffElement of the diff (including no-change ones), recursively, in iteration order."""
    return [describe_element(el) for el in diff.get_children()]


def describe_element(el):
    """Everything observable about one DiffElement and its children."""
    return {
        "type": el.type,
        "name": el.name,
        "keys": norm(el.keys),
        "source_name": el.source_name,
        "dest_name": el.dest_name,
        "source_attrs": norm(el.source_attrs),
        "dest_attrs": norm(el.dest_attrs),
        "action": el.action,
        "attrs_diffs": norm(el.get_attrs_diffs()),
        "has_diffs": el.has_diffs(),
        "has_own_diffs": el.has_diffs(include_children=False),
        "len": len(el),
        "summary": norm(el.summary()),
        "dict": norm(el.dict()),
        "str": str(el),
        "detail": el.str(),
        "attrs_keys": list(el.get_attrs_keys()),
        "children": describe_elements(el.child_diff),
    }


def describe_adapter(adapter):
    """Content of an adapter: dict() (without empty model buckets), order, str, len, statuses."""
    strict = norm(adapter.dict())
    ordered = {}
    statuses = []
    for modelname in sorted(adapter.get_all_model_names()):
        objs = adapter.get_all(modelname)
        ordered[modelname] = [o.get_unique_id() for o in objs]
        statuses.extend((modelname, o.get_unique_id(), norm(o.get_status())) for o in objs)
    return {
        "dict": {k: v for k, v in strict.items() if v},
        "order": {k: v for k, v in ordered.items() if v},
        "str": adapter.str(),
        "dunder_str": (str(adapter), repr(adapter), len(adapter)),
        "count": {name: adapter.count(name) for name in ("site", "device", "interface", "vlan")},
        "statuses": statuses,
    }


def describe_owners(objs, adapter):
    """What the ``adapter`` field of each originally loaded object points to after the run."""
    return [
        (obj.get_type(), obj.get_unique_id(), "own" if obj.adapter is adapter else repr(obj.adapter)) for obj in objs
    ]


def describe_objects(objs, adapter):
    """State of the objects originally loaded (they may have been updated, or removed from the store)."""
    out = []
    for obj in objs:
        out.append(
            {
                "id": (obj.get_type(), obj.get_unique_id(), obj.get_shortname(), norm(obj.get_identifiers())),
                "dict": norm(obj.dict()),
                "attrs": norm(obj.get_attrs()),
                "status": norm(obj.get_status()),
                "repr": (str(obj), repr(obj)),
                "json": obj.json(),
                "str": safe(obj.str),
                "str_no_children": safe(obj.str, False, 2),
            }
        )
    return out


def _diff_class_kwargs(bundle, name):
    cls = bundle.diff_classes[name]
    return {} if cls is None else {"diff_class": cls}


def _perform(bundle, src, dst, scenario, ctx):
    """Run the scenario's API calls; intermediate results go into ctx so they survive an exception."""
    flags = bundle.flags(scenario.flags)
    sync_flags = bundle.flags(scenario.sync_flags)
    cb = {"callback": bundle.rec.callback} if scenario.callback else {}
    dc = _diff_class_kwargs(bundle, scenario.diff_class)
    sdc = _diff_class_kwargs(bundle, scenario.sync_diff_class)
    api = scenario.api
    if api == "sync_from":
        ctx["returned"] = dst.sync_from(src, flags=flags, **cb, **dc)
    elif api == "sync_to":
        ctx["returned"] = src.sync_to(dst, flags=flags, **cb, **dc)
    elif api == "reverse_sync":
        ctx["returned"] = src.sync_from(dst, flags=flags, **cb, **dc)
    elif api == "diff_only":
        ctx["diff"] = dst.diff_from(src, flags=flags, **cb, **dc)
        ctx["reverse_diff"] = dst.diff_to(src, flags=flags, **cb, **dc)
    elif api in ("diff_sync_from", "diff_sync_to"):
        if api == "diff_sync_from":
            ctx["diff"] = dst.diff_from(src, flags=flags, **cb, **dc)
        else:
            ctx["diff"] = src.diff_to(dst, flags=flags, **cb, **dc)
        ctx["diff_before_sync"] = describe_diff(ctx["diff"])
        _apply_stale(bundle, src, dst, scenario)
        if api == "diff_sync_from":
            ctx["returned"] = dst.sync_from(src, flags=sync_flags, diff=ctx["diff"], **cb, **sdc)
        else:
            ctx["returned"] = src.sync_to(dst, flags=sync_flags, diff=ctx["diff"], **cb, **sdc)
    else:  # pragma: no cover
        raise AssertionError(api)


def run_scenario(engine, scenario):
    """Run ``scenario`` on ``engine`` and return a dict of observations.

    Keys: ``exception``; ``diff``, ``diff_before_sync``, ``reverse_diff``, ``returned``, ``post_diff`` (diffs);
    ``returned_is_precomputed``, ``second_sync``; ``hook_calls``, ``callbacks``, ``sync_complete``,
    ``sync_complete_got_returned_diff``, ``diff_complete``, ``events`` (all of those, interleaved);
    ``logs`` (main fields), ``logs_full``; ``src``, ``dst`` (adapter contents), ``src_objects``,
    ``dst_objects`` (the objects loaded at the start), ``src_owners``, ``dst_owners`` (their ``adapter``
    field), ``src_buckets``, ``dst_buckets`` (get_all_model_names()); ``adapter_calls``; ``gc``.
    """
    bundle = _bundle(engine, scenario.src_classes, scenario.dst_classes, scenario.src_top, scenario.dst_top)
    rec = bundle.rec
    rec.reset({(n.model, n.uid): n.fail for n in scenario.nodes if n.fail != "ok"}, scenario.callback_raise_at)
    ctx = {}
    obs = {}
    old_wrapper = structlog.get_config()["wrapper_class"]
    if scenario.log_level:
        structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(scenario.log_level))
    try:
        with capture_logs() as logs:
            _run(engine, bundle, scenario, ctx, obs, logs)
    finally:
        structlog.configure(wrapper_class=old_wrapper)
    return obs


def _run(engine, bundle, scenario, ctx, obs, logs):
    """Body of run_scenario, inside the log capture."""
    rec = bundle.rec
    if scenario.store_instance:
        src = bundle.Source(name="src-a", internal_storage_engine=engine.local.LocalStore(name="src-store"))
        dst = bundle.Target(name="dst-b", internal_storage_engine=engine.local.LocalStore())
    else:
        src = bundle.Source(name="src-a")
        dst = bundle.Target(name="dst-b")
    src_objs = _load(src, bundle, scenario, "src")
    dst_objs = _load(dst, bundle, scenario, "dst")
    loaded_events = len(logs)
    try:
        _perform(bundle, src, dst, scenario, ctx)
        obs["exception"] = None
    except Exception as exc:  # noqa: BLE001 - the exception is an observation
        obs["exception"] = norm_exc(engine, exc)
    if obs["exception"] is None and "returned" in ctx:
        # Diff and sync again: exercises the post-sync store state.
        target, source = (src, dst) if scenario.api == "reverse_sync" else (dst, src)
        obs["post_diff"] = safe(lambda: describe_diff(target.diff_from(source)))
        rec.events.append(("second sync",))
        obs["second_sync"] = safe(lambda: target.sync_from(source, flags=bundle.flags(scenario.flags)).summary())
    # Before the observations below, which may touch the stores (count() registers a model type in a LocalStore).
    obs["src_buckets"] = safe(lambda: sorted(src.get_all_model_names()))
    obs["dst_buckets"] = safe(lambda: sorted(dst.get_all_model_names()))
    obs["adapter_calls"] = list(rec.adapter_calls)
    events = norm(rec.events)
    first = events[: events.index(["second sync"])] if ["second sync"] in events else events
    logs = [norm_log(e) for e in logs[loaded_events:]]
    obs.update(
        {
            "diff": safe(describe_diff, ctx.get("diff")),
            "diff_before_sync": ctx.get("diff_before_sync"),
            "reverse_diff": safe(describe_diff, ctx.get("reverse_diff")),
            "returned": safe(describe_diff, ctx.get("returned")),
            "returned_is_precomputed": "diff" in ctx and ctx.get("returned") is ctx["diff"],
            "hook_calls": [e for e in first if e[0] in ("create", "update", "delete")],
            "callbacks": [e for e in first if e[0] == "cb"],
            "sync_complete": [e for e in first if e[0].startswith("sync_complete")],
            "sync_complete_got_returned_diff": [d is ctx.get("returned") for d in rec.completed_diffs],
            "diff_complete": [e for e in events if e[0] == "diff_complete"],
            "events": events,
            "logs": [tuple(e.get(k) for k in LOG_CORE_KEYS) for e in logs],
            "logs_full": logs,
            "src": safe(describe_adapter, src),
            "dst": safe(describe_adapter, dst),
            "src_objects": safe(describe_objects, src_objs, src),
            "dst_objects": safe(describe_objects, dst_objs, dst),
            "src_owners": safe(describe_owners, src_objs, src),
            "dst_owners": safe(describe_owners, dst_objs, dst),
            "gc": (gc.isenabled(), gc.get_freeze_count()),
        }
    )


def _sub(obs, key, sub):
    value = obs.get(key)
    return value.get(sub) if isinstance(value, dict) else value


def assert_same(ref, got):
    """Compare observations; one assert per property so Hypothesis reports distinct discrepancies separately."""
    got = dict(got)
    for key in SKIP_CHECKS:
        got[key] = ref.get(key)
    assert _sub(got, "diff", "summary") == _sub(ref, "diff", "summary"), "diff summary"
    assert _sub(got, "diff", "dict") == _sub(ref, "diff", "dict"), "diff dict"
    assert _sub(got, "diff", "str") == _sub(ref, "diff", "str"), "diff str"
    assert _sub(got, "diff", "len") == _sub(ref, "diff", "len"), "diff len"
    assert got["diff"] == ref["diff"], "diff (elements, order, models_processed, ...)"
    assert got["diff_before_sync"] == ref["diff_before_sync"], "precomputed diff"
    assert got["reverse_diff"] == ref["reverse_diff"], "diff_to"
    assert got["exception"] == ref["exception"], "exception raised"
    assert got["hook_calls"] == ref["hook_calls"], "create/update/delete hook calls"
    assert got["callbacks"] == ref["callbacks"], "progress callbacks"
    assert _sub(got, "returned", "summary") == _sub(ref, "returned", "summary"), "returned diff summary"
    assert _sub(got, "returned", "dict") == _sub(ref, "returned", "dict"), "returned diff dict"
    assert got["returned"] == ref["returned"], "returned diff"
    assert got["returned_is_precomputed"] == ref["returned_is_precomputed"], "returned diff identity"
    assert _sub(got, "dst", "dict") == _sub(ref, "dst", "dict"), "target dict()"
    assert _sub(got, "src", "dict") == _sub(ref, "src", "dict"), "source dict()"
    assert _sub(got, "dst", "order") == _sub(ref, "dst", "order"), "target store order"
    assert _sub(got, "dst", "statuses") == _sub(ref, "dst", "statuses"), "target model statuses"
    assert got["sync_complete"] == ref["sync_complete"], "sync_complete calls"
    assert got["sync_complete_got_returned_diff"] == ref["sync_complete_got_returned_diff"], "sync_complete diff"
    assert got["diff_complete"] == ref["diff_complete"], "Diff.complete() calls"
    assert got["logs"] == ref["logs"], "structlog events (event, level, action, model, unique_id, diffs, status)"
    assert got["dst_objects"] == ref["dst_objects"], "original target objects after sync"
    assert got["src_objects"] == ref["src_objects"], "original source objects after sync"
    assert got["dst"] == ref["dst"], "target adapter (str, len, count, statuses)"
    assert got["src"] == ref["src"], "source adapter (str, len, count, statuses)"
    assert got.get("post_diff") == ref.get("post_diff"), "diff after sync"
    assert got.get("second_sync") == ref.get("second_sync"), "second sync"
    assert got["gc"] == ref["gc"], "garbage collector state after the run"
    assert got["events"] == ref["events"], "interleaving of hooks, callbacks and completions"
    assert got["logs_full"] == ref["logs_full"], "structlog events, all keys"
    assert got["adapter_calls"] == ref["adapter_calls"], "calls to overridden Adapter get/get_all/add/remove/..."
    assert got["src_buckets"] == ref["src_buckets"], "source get_all_model_names() (empty buckets show in dict())"
    assert got["dst_buckets"] == ref["dst_buckets"], "target get_all_model_names() (empty buckets show in dict())"
    assert got["src_owners"] == ref["src_owners"], "adapter field of the original source objects"
    assert got["dst_owners"] == ref["dst_owners"], "adapter field of the original target objects"
    assert got.keys() == ref.keys()


def check(scenario, ignore=()):
    """Run the scenario on both engines and compare (except the ``ignore`` keys); return the reference's result."""
    ref = run_scenario(REF, scenario)
    got = run_scenario(SUT, scenario)
    assert_same(ref, {**got, **{key: ref.get(key) for key in ignore}})
    return ref


# ----------------------------------------------------------------------------------------------------------------
# Property tests
# ----------------------------------------------------------------------------------------------------------------


@_settings(450)
@given(scenarios())
def test_differential_sync(scenario):
    """Any scenario: core and diffsync produce the same diffs, hook calls, logs, exceptions and final data."""
    check(scenario)


@_settings(200)
@given(scenarios(max_sites=2, max_devices=2, max_interfaces=2, apis=("diff_sync_from", "diff_sync_to")))
def test_differential_precomputed_diff(scenario):
    """sync_from(diff=...) with a possibly stale or mismatching precomputed diff behaves the same."""
    check(scenario)


# Up to 11 keys: intersections of long key lists may take another code path than short ones.
ATTR_DICTS = st.dictionaries(st.sampled_from("abcdefghijk"), st.sampled_from((None, 0, 1, "x", [1])), max_size=11)
DIFF_OPS = st.lists(
    st.one_of(
        st.tuples(
            st.just("new"),
            st.sampled_from(("site", "device", "b-type", 7)),
            st.sampled_from(("n0", "n1", "n2", None)),
            st.sampled_from(({}, {"name": "n0"}, {"site": "s", "name": "n1"})),
            st.booleans(),
        ),
        st.tuples(st.just("attrs"), st.integers(0, 7), st.none() | ATTR_DICTS, st.none() | ATTR_DICTS),
        st.tuples(st.sampled_from(("child", "child_diff.add")), st.integers(0, 7), st.integers(0, 7)),
        st.tuples(st.sampled_from(("top", "children[][]")), st.integers(0, 7)),
        st.tuples(
            st.just("mutate"),
            st.integers(0, 7),
            st.sampled_from(("source_attrs", "dest_attrs")),
            st.sampled_from("abc"),
            st.sampled_from((None, 0, 1, "x")),
        ),
        st.tuples(st.just("processed"), st.integers(0, 9)),
    ),
    max_size=14,
)


def run_diff_ops(engine, ops):
    """Build a Diff by hand with the public Diff/DiffElement API; observe everything after every step."""
    diff_mod = engine.diff
    diff = diff_mod.Diff()
    elements = []
    trace = []
    for op in copy.deepcopy(ops):  # "mutate" changes dicts in place: each engine gets its own
        try:
            if op[0] == "new":
                _, obj_type, name, keys, named = op
                names = {"source_name": "left", "dest_name": "right"} if named else {}
                elements.append(diff_mod.DiffElement(obj_type, name, dict(keys), **names))
                result = None
            elif not elements and op[0] != "processed":
                continue
            elif op[0] == "attrs":
                el = elements[op[1] % len(elements)]
                result = el.add_attrs(source=op[2], dest=op[3])
            elif op[0] in ("child", "child_diff.add"):
                parent, child = sorted((op[1] % len(elements), op[2] % len(elements)))
                if parent == child:  # no cycles: a child always comes later than its parent
                    continue
                if op[0] == "child":
                    result = elements[parent].add_child(elements[child])
                else:
                    result = elements[parent].child_diff.add(elements[child])
            elif op[0] == "top":
                result = diff.add(elements[op[1] % len(elements)])
            elif op[0] == "children[][]":  # subclasses of Diff may fill self.children directly
                el = elements[op[1] % len(elements)]
                diff.children[el.type][el.name] = el
                result = None
            elif op[0] == "mutate":  # in-place change of a dict given to add_attrs
                attrs = getattr(elements[op[1] % len(elements)], op[2])
                if attrs is None:
                    continue
                attrs[op[3]] = op[4]
                result = None
            else:
                diff.models_processed = op[1]
                result = None
            trace.append(("ok", norm(result)))
        except Exception as exc:  # noqa: BLE001 - the exception is an observation
            trace.append(norm_exc(engine, exc))
        trace.append(safe(describe_diff, diff))
        trace.append([safe(describe_element, el) for el in elements])
        trace.append([[(a < b, a == b, a <= b) for b in elements] for a in elements])
    return trace


@_settings(300)
@given(DIFF_OPS)
def test_differential_diff_api(ops):
    """Diffs built by hand through DiffElement/Diff (add_attrs, add_child, add) render and count the same."""
    ref = run_diff_ops(REF, ops)
    got = run_diff_ops(SUT, ops)
    for step, (want, have) in enumerate(zip(ref, got, strict=True)):
        assert have == want, f"step {step // 4}, observation {step % 4}"


STORE_MODELS = ("site", "device", "ghost")
STORE_OPS = st.lists(
    st.one_of(
        st.tuples(
            st.sampled_from(("add", "update", "get_or_instantiate", "update_or_instantiate")),
            st.sampled_from(("site", "device")),
            st.integers(0, 2),
            st.integers(0, 2),
        ),
        st.tuples(
            st.sampled_from(("get_or_add_model_instance", "update_or_add_model_instance")),
            st.sampled_from(("site", "device")),
            st.integers(0, 2),
            st.integers(0, 2),
        ),
        st.tuples(
            st.sampled_from(("get", "get_or_none")),
            st.sampled_from(STORE_MODELS),
            st.integers(0, 2),
            st.sampled_from(("str", "class", "instance")),
            st.sampled_from(("uid", "dict")),
        ),
        st.tuples(st.just("get_all"), st.sampled_from(STORE_MODELS), st.sampled_from(("str", "class", "instance"))),
        st.tuples(st.just("get_by_uids"), st.sampled_from(STORE_MODELS), st.lists(st.integers(0, 2), max_size=3)),
        st.tuples(st.just("remove"), st.sampled_from(("site", "device")), st.integers(0, 2), st.booleans()),
        st.tuples(st.just("count"), st.sampled_from((None, *STORE_MODELS))),
        st.tuples(st.sampled_from(("add_child", "remove_child")), st.integers(0, 2), st.integers(0, 2)),
    ),
    max_size=12,
)


def run_store_ops(engine, ops):
    """Drive the Adapter/store API directly; observe results, errors and the adapter after every step."""
    bundle = _bundle(engine, ClassConfig(), ClassConfig(), ("site", "vlan"), ("site", "vlan"))
    models = bundle.models["dst"]
    adapter = bundle.Target(name="store-test")
    trace = []

    def ids(model, index):
        if model == "device":
            return {"site_name": "s0", "name": f"d{index}"}
        return {"name": f"s{index}"}

    def instance(model, index, variant=0):
        values = {"region": ("eu", "us", None)[variant]} if model == "site" else {"role": ("a", "b", "c")[variant]}
        return models[model](**ids(model, index), **values)

    def describe(value):
        if isinstance(value, engine.root.DiffSyncModel):
            return ("model", value.get_type(), value.get_unique_id(), norm(value.dict()), value.adapter is adapter)
        if isinstance(value, (list, tuple)):
            return [describe(v) for v in value]
        return norm(value)

    for op in ops:
        name = op[0]
        try:
            if name in ("add", "update"):
                result = getattr(adapter, name)(instance(op[1], op[2], op[3]))
            elif name in ("get_or_instantiate", "update_or_instantiate"):
                attrs = {"region": "x"} if op[1] == "site" else {"role": "x"}
                result = getattr(adapter, name)(models[op[1]], ids(op[1], op[2]), attrs if op[3] else {})
            elif name in ("get_or_add_model_instance", "update_or_add_model_instance"):
                result = getattr(adapter, name)(instance(op[1], op[2], op[3]))
            elif name in ("get", "get_or_none"):
                _, model, index, ref_kind, id_kind = op
                model_ids = ids(model, index)
                identifier = "__".join(model_ids.values()) if id_kind == "uid" else model_ids
                if model == "ghost" or ref_kind == "str":
                    ref = model
                else:
                    ref = models[model] if ref_kind == "class" else instance(model, index)
                result = getattr(adapter, name)(ref, identifier)
            elif name == "get_all":
                _, model, ref_kind = op
                ref = model if model == "ghost" or ref_kind == "str" else models[model]
                result = adapter.get_all(ref if ref_kind != "instance" or model == "ghost" else instance(model, 0))
            elif name == "get_by_uids":
                result = adapter.get_by_uids(["__".join(ids(op[1], i).values()) for i in op[2]], op[1])
            elif name == "remove":
                result = adapter.remove(adapter.get(op[1], "__".join(ids(op[1], op[2]).values())), op[3])
            elif name == "count":
                result = adapter.count(op[1])
            else:
                site = adapter.get_or_none("site", f"s{op[1]}") or instance("site", op[1])
                device = adapter.get_or_none("device", f"s0__d{op[2]}") or instance("device", op[2])
                result = getattr(site, name)(device)
            trace.append(("ok", describe(result)))
        except Exception as exc:  # noqa: BLE001 - the exception is an observation
            trace.append(norm_exc(engine, exc))
        trace.append(sorted(adapter.get_all_model_names()))
        trace.append((norm(adapter.dict()), adapter.str(), len(adapter)))
    return trace


@_settings(300)
@given(STORE_OPS)
def test_differential_store_api(ops):
    """The Adapter store API (add/get/get_by_uids/remove/update/get_or_*/update_or_*/add_child...) behaves the same."""
    ref = run_store_ops(REF, ops)
    got = run_store_ops(SUT, ops)
    for step, (want, have) in enumerate(zip(ref, got, strict=True)):
        assert have == want, f"step {step // 3} ({ops[step // 3]}), observation {step % 3}"


# ----------------------------------------------------------------------------------------------------------------
# Explicit regression examples
# ----------------------------------------------------------------------------------------------------------------

NDO = 0b10000  # DiffSyncModelFlags.NATURAL_DELETION_ORDER
SCOD = 0b10  # DiffSyncModelFlags.SKIP_CHILDREN_ON_DELETE
IGNORE = 0b1
CONTINUE = 0b1  # DiffSyncFlags.CONTINUE_ON_FAILURE


def _calls(obs):
    return [(c[0], c[1], c[2]) for c in obs["hook_calls"]]


def _site_tree_only_in_target(site_flags=None, device_flags=None):
    return [
        site_node("s0", dst={}, dst_flags=site_flags),
        device_node("s0", "d0", dst={}, dst_flags=device_flags),
        interface_node("s0", "d0", "i0", dst={}),
        interface_node("s0", "d0", "i1", dst={}),
    ]


def test_natural_deletion_order():
    """NATURAL_DELETION_ORDER deletes children first; diffsync then logs the parent delete with child context."""
    ref = check(Scenario(nodes=_site_tree_only_in_target(site_flags=NDO, device_flags=NDO)))
    assert _calls(ref) == [
        ("delete", "interface", "s0__d0__i0"),
        ("delete", "interface", "s0__d0__i1"),
        ("delete", "device", "s0__d0"),
        ("delete", "site", "s0"),
    ]
    assert ref["dst"]["dict"] == {}
    # diffsync keeps per-element state on its syncer: the device's and the site's own deletes are logged with the
    # context (model, unique_id) of the last element visited before them.
    deletes = [e[3:5] for e in ref["logs"] if e[0] == "Deleted successfully"]
    assert deletes == [("interface", "s0__d0__i0")] + [("interface", "s0__d0__i1")] * 3


def test_natural_deletion_order_class_level():
    """Same, with the flag set on the class instead of the instances, and only on the device."""
    classes = ClassConfig((0, NDO, 0, 0))
    ref = check(Scenario(nodes=_site_tree_only_in_target(), src_classes=classes, dst_classes=classes))
    assert _calls(ref) == [
        ("delete", "site", "s0"),
        ("delete", "interface", "s0__d0__i0"),
        ("delete", "interface", "s0__d0__i1"),
        ("delete", "device", "s0__d0"),
    ]


def test_default_deletion_order():
    """Without the flag, parents are deleted before their children."""
    ref = check(Scenario(nodes=_site_tree_only_in_target()))
    assert _calls(ref) == [
        ("delete", "site", "s0"),
        ("delete", "device", "s0__d0"),
        ("delete", "interface", "s0__d0__i0"),
        ("delete", "interface", "s0__d0__i1"),
    ]


def test_skip_children_on_delete():
    """SKIP_CHILDREN_ON_DELETE: only the parent's delete hook runs; the children leave the store with it."""
    nodes = [*_site_tree_only_in_target(device_flags=SCOD), site_node("s1", src={}, dst={})]
    ref = check(Scenario(nodes=nodes))
    assert _calls(ref) == [("delete", "site", "s0"), ("delete", "device", "s0__d0")]
    assert ref["dst"]["dict"] == {"site": {"s1": {"name": "s1"}}}
    # Elements under a SKIP_CHILDREN_ON_DELETE parent (and the parent itself) are not counted by the callback.
    assert [c for c in ref["callbacks"] if c[1] == "sync"] == [["cb", "sync", 1, 5], ["cb", "sync", 2, 5]]


def test_skip_children_on_delete_with_natural_order():
    """Both flags: SKIP_CHILDREN_ON_DELETE wins, children are not deleted one by one."""
    ref = check(Scenario(nodes=_site_tree_only_in_target(site_flags=SCOD | NDO)))
    assert _calls(ref) == [("delete", "site", "s0")]
    assert ref["dst"]["dict"] == {}


@pytest.mark.parametrize("mode", ["none", "raise"])
def test_failed_parent_create_skips_children(mode):
    """A parent whose create fails (None or ObjectNotCreated) gets no children; sync goes on with CONTINUE."""
    nodes = [
        site_node("s0", src={}, fail=mode),
        device_node("s0", "d0", src={}),
        interface_node("s0", "d0", "i0", src={}),
        site_node("s1", src={}),
    ]
    ref = check(Scenario(nodes=nodes, flags=CONTINUE))
    assert _calls(ref) == [("create", "site", "s0"), ("create", "site", "s1")]
    assert ref["exception"] is None
    assert ref["dst"]["dict"] == {"site": {"s1": {"name": "s1"}}}
    assert ("No object resulted from sync, will not process child objects.", "warning") in [e[:2] for e in ref["logs"]]


@pytest.mark.parametrize("flags", [0, CONTINUE])
@pytest.mark.parametrize("action", ["create", "update", "delete"])
def test_continue_on_failure(flags, action):
    """Without CONTINUE_ON_FAILURE the ObjectCrudException propagates; with it, the next objects still sync."""
    src, dst = {"create": ({}, None), "update": ({"region": "eu"}, {"region": "us"}), "delete": (None, {})}[action]
    nodes = [
        site_node("s0", src=src, dst=dst, fail="raise"),
        site_node("s1", src={"region": "eu"}, dst={"region": "us"}),
    ]
    ref = check(Scenario(nodes=nodes, flags=flags))
    # Objects only in the target come after all the source's objects in the diff.
    calls = [(action, "site", "s0"), ("update", "site", "s1")]
    if action == "delete":
        calls.reverse()
    if flags:
        assert ref["exception"] is None
        assert _calls(ref) == calls
        assert ref["dst"]["dict"]["site"]["s1"]["region"] == "eu"
        assert ref["sync_complete"][1:] == [["sync_complete_logger", True]]
    else:
        expected = {"create": "ObjectNotCreated", "update": "ObjectNotUpdated", "delete": "ObjectNotDeleted"}
        assert ref["exception"][0] == expected[action]
        assert _calls(ref) == calls[: calls.index((action, "site", "s0")) + 1]
        assert ref["sync_complete"] == []


def test_non_crud_exception_propagates_with_continue():
    """A hook raising something other than ObjectCrudException stops the sync even with CONTINUE_ON_FAILURE."""
    nodes = [site_node("s0", src={}, fail="raise_other"), site_node("s1", src={})]
    ref = check(Scenario(nodes=nodes, flags=CONTINUE))
    assert ref["exception"][0] == "PlannedError"
    assert _calls(ref) == [("create", "site", "s0")]


def _small_mixed_nodes():
    return [
        site_node("s0", src={"region": "eu"}, dst={"region": "us"}),
        device_node("s0", "d0", src={"role": "spine"}, dst={}),
        device_node("s0", "d1", src={}),
        device_node("s0", "d2", dst={}),
        site_node("s1", src={}),
        vlan_node(10, src={"vname": "prod"}, dst={"vname": "dev"}),
    ]


@pytest.mark.parametrize("api", ["diff_sync_from", "diff_sync_to"])
def test_sync_with_precomputed_diff(api):
    """sync_from/sync_to(diff=...) use the given diff and return that same object."""
    scenario = Scenario(nodes=_small_mixed_nodes(), api=api, diff_class="recording", sync_diff_class="recording")
    ref = check(scenario)
    assert ref["returned_is_precomputed"] is True
    assert ref["exception"] is None
    assert ref["diff"]["summary"] == {"create": 2, "update": 3, "delete": 1, "no-change": 0, "skip": 0}
    # The diff is computed (and completed) once only.
    assert len(ref["diff_complete"]) == 1
    assert ref["post_diff"]["summary"] == {"create": 0, "update": 0, "delete": 0, "no-change": 5, "skip": 0}


def test_sync_with_empty_precomputed_diff_recomputes():
    """An empty precomputed diff is falsy, so diffsync computes a fresh one (and returns it)."""
    nodes = [site_node("s0", src={}, dst={}, dst_flags=IGNORE)]
    scenario = Scenario(nodes=nodes, api="diff_sync_from", diff_class="recording", sync_diff_class="recording")
    ref = check(scenario)
    assert ref["returned_is_precomputed"] is False
    assert len(ref["diff_complete"]) == 2


def test_sync_with_mismatching_diff_class():
    """A precomputed diff that is not an instance of diff_class raises DiffClassMismatch."""
    scenario = Scenario(
        nodes=_small_mixed_nodes(), api="diff_sync_from", diff_class="plain", sync_diff_class="recording"
    )
    ref = check(scenario)
    assert ref["exception"][0] == "DiffClassMismatch"
    assert ref["hook_calls"] == []


def test_stale_precomputed_diff():
    """Objects removed from/added to the target after the diff: the syncer's own CRUD errors, with CONTINUE."""
    scenario = Scenario(
        nodes=_small_mixed_nodes(),
        api="diff_sync_from",
        flags=CONTINUE,
        sync_flags=CONTINUE,
        stale=(("device", "s0__d0", "flip"), ("site", "s1", "flip"), ("device", "s0__d2", "flip")),
    )
    ref = check(scenario)
    errors = [e for e in ref["logs"] if e[1] == "error"]
    assert [e[0] for e in errors] == [
        "Failed to update device {'site_name': 's0', 'name': 'd0'} - not found!",
        "Failed to delete device {'site_name': 's0', 'name': 'd2'} - not found!",
        "Failed to create site {'name': 's1'} - it already exists!",
    ]


@pytest.mark.parametrize("api", ["sync_from", "sync_to", "diff_only", "reverse_sync"])
def test_diff_to_sync_to(api):
    """diff_to/sync_to are the mirror images of diff_from/sync_from."""
    ref = check(Scenario(nodes=_small_mixed_nodes(), api=api, flags=0b1000))
    if api == "diff_only":
        assert ref["diff"]["summary"] == {"create": 2, "update": 3, "delete": 1, "no-change": 0, "skip": 0}
        assert ref["reverse_diff"]["summary"] == {"create": 1, "update": 3, "delete": 2, "no-change": 0, "skip": 0}


def test_skipped_top_level_types_are_counted():
    """A top-level type known to one side only is skipped, but counted as processed."""
    nodes = [*_small_mixed_nodes(), vlan_node(20, dst={})]
    ref = check(Scenario(nodes=nodes, dst_top=("site",), api="diff_only"))
    # Only the source's vlan 10 is counted: the target's vlans are outside its top_level walk.
    assert ref["diff"]["summary"]["skip"] == 1
    assert ref["callbacks"][-1] == ["cb", "diff", 8, 10]


@pytest.mark.parametrize("flags", [0b10, 0b100, 0b110])
def test_adapter_skip_unmatched_flags(flags):
    """SKIP_UNMATCHED_SRC/DST/BOTH on the sync call."""
    ref = check(Scenario(nodes=_small_mixed_nodes(), flags=flags))
    kinds = {c[0] for c in _calls(ref)}
    assert ("create" in kinds) == (not flags & 0b10)
    assert ("delete" in kinds) == (not flags & 0b100)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("action", ["create", "update", "delete"])
def test_every_hook_mode(mode, action):
    """Every planned hook behaviour, for every action, with and without CONTINUE_ON_FAILURE."""
    values = {"create": ({}, None), "update": ({"region": "eu"}, {}), "delete": (None, {})}[action]
    nodes = [
        site_node("s0", src=values[0], dst=values[1], fail=mode),
        device_node(
            "s0", "d0", src=None if values[0] is None else {}, dst=None if values[1] is None else {"role": "x"}
        ),
    ]
    for flags in (0, CONTINUE | 0b1000):
        check(Scenario(nodes=nodes, flags=flags))


def test_module_layout():
    """The public names live at the same module paths as in diffsync."""
    for name in dir(REF.root):
        value = getattr(REF.root, name)
        if not name.startswith("_") and getattr(value, "__module__", "").startswith(REF.name):
            assert hasattr(SUT.root, name), name
    assert SUT.root.Diff is SUT.diff.Diff
    assert hasattr(SUT.diff, "DiffElement")
    for name in dir(REF.exceptions):
        if name[0].isupper():
            assert hasattr(SUT.exceptions, name), name
    for flag_enum in ("DiffSyncModelFlags", "DiffSyncFlags", "DiffSyncStatus"):
        ref_enum, sut_enum = getattr(REF.enum, flag_enum), getattr(SUT.enum, flag_enum)
        assert [(m.name, m.value) for m in ref_enum] == [(m.name, m.value) for m in sut_enum]
    assert importlib.import_module(f"{SUT.name}.store.local").LocalStore is SUT.root.LocalStore


def test_tree_traversal():
    """Adapter.get_tree_traversal() as string and dict."""
    outputs = []
    for engine in (REF, SUT):
        bundle = _bundle(engine, ClassConfig(), ClassConfig((0, 0, 0, 0), True), ("site", "vlan"), ("site",))
        for cls in (bundle.Source, bundle.Target):
            outputs.append((cls.get_tree_traversal(), cls.get_tree_traversal(as_dict=True)))
    assert outputs[2:] == outputs[:2]


def test_removed_object_adapter_reference():
    """Store.remove() clears ``obj.adapter``; diffsync tests it with ``if obj.adapter:``, False for an empty Adapter.

    So in diffsync the last object removed from an adapter keeps its ``adapter`` reference.
    """
    ref = check(Scenario(nodes=[site_node("s0", dst={}), site_node("s1", dst={})]))
    assert ref["dst_owners"] == [("site", "s0", "None"), ("site", "s1", "own")]


def test_overridden_adapter_methods_see_the_same_calls():
    """Adapters overriding get/get_all/get_by_uids/add/remove get the same calls, with the same arguments."""
    traced = ClassConfig(traced=True)
    ref = check(Scenario(nodes=_small_mixed_nodes(), src_classes=traced, dst_classes=traced))
    # diffsync looks every synced element up in the source too (and discards the result) ...
    assert ("get", 'Source "src-a"', ("class", "site"), {"name": "s0"}) in ref["adapter_calls"]
    # ... and asks for the children of every object, even when there are none.
    assert ("get_by_uids", 'Source "src-a"', [], "interface") in ref["adapter_calls"]


def test_source_lookup_registers_model_type():
    """diffsync's syncer looks each element up in the source store, which registers the type in a LocalStore."""
    traced = ClassConfig(traced=True)
    nodes = [site_node("s0", src={}, dst={}), device_node("s0", "d0", dst={})]
    for classes in (ClassConfig(), traced):
        ref = check(Scenario(nodes=nodes, src_classes=classes, dst_classes=classes), ignore=("adapter_calls",))
        assert ref["src_buckets"] == ["device", "site", "vlan"]


def _declare(engine, case):
    """Declare a model/adapter class that diffsync rejects (or accepts) and return what happened."""
    root = engine.root
    try:
        if case == "missing identifier":

            class Bad(root.DiffSyncModel):
                _identifiers = ("name",)

        elif case == "missing attribute":

            class Bad(root.DiffSyncModel):
                _identifiers = ("name",)
                _attributes = ("color",)
                name: str

        elif case == "missing shortname":

            class Bad(root.DiffSyncModel):
                _identifiers = ("name",)
                _shortname = ("short",)
                name: str

        elif case == "missing children field":

            class Bad(root.DiffSyncModel):
                _identifiers = ("name",)
                _children = {"child": "children"}
                name: str

        elif case == "identifier is attribute":

            class Bad(root.DiffSyncModel):
                _identifiers = ("name",)
                _attributes = ("name",)
                name: str

        elif case == "attribute is children field":

            class Bad(root.DiffSyncModel):
                _identifiers = ("name",)
                _attributes = ("children",)
                _children = {"child": "children"}
                name: str
                children: list[str] = []

        elif case == "adapter field name":

            class Thing(root.DiffSyncModel):
                _modelname = "thing"
                _identifiers = ("name",)
                name: str

            class Bad(root.Adapter):
                other = Thing

        elif case == "top_level missing":

            class Bad(root.Adapter):
                top_level = ["nothing"]

        elif case == "top_level not a model":

            class Bad(root.Adapter):
                top_level = ["thing"]
                thing = "not a model"

        else:  # deprecated DiffSync alias: warns when subclassed and when instantiated
            with warnings.catch_warnings(record=True) as record:
                warnings.simplefilter("always")

                class Old(root.DiffSync):
                    pass

                Old()
                root.DiffSync()
            return ("warned", [(w.category.__name__, str(w.message)) for w in record])
        return ("accepted", Bad.__name__)
    except Exception as exc:  # noqa: BLE001 - the exception is the observation
        return norm_exc(engine, exc)


@pytest.mark.parametrize(
    "case",
    [
        "missing identifier",
        "missing attribute",
        "missing shortname",
        "missing children field",
        "identifier is attribute",
        "attribute is children field",
        "adapter field name",
        "top_level missing",
        "top_level not a model",
        "deprecated DiffSync",
    ],
)
def test_declaration_errors(case):
    """Invalid model/adapter declarations are rejected with the same exception and message."""
    assert _declare(SUT, case) == _declare(REF, case)


def _signature_of(func):
    def default(value):
        if value is inspect.Parameter.empty:
            return "<none>"
        return value.__name__ if isinstance(value, type) else norm(value)

    params = inspect.signature(func).parameters.values()
    return [(p.name, p.kind.name, default(p.default)) for p in params]


SIGNATURE_CLASSES = {
    "Adapter": lambda e: e.root.Adapter,
    "DiffSyncModel": lambda e: e.root.DiffSyncModel,
    "Diff": lambda e: e.diff.Diff,
    "DiffElement": lambda e: e.diff.DiffElement,
    "LocalStore": lambda e: e.local.LocalStore,
    "BaseStore": lambda e: importlib.import_module(f"{e.name}.store").BaseStore,
}


@pytest.mark.parametrize("class_name", sorted(SIGNATURE_CLASSES))
def test_method_signatures(class_name):
    """Public methods take the same parameters (names, kinds, defaults), so positional callers keep working."""
    ref_cls = SIGNATURE_CLASSES[class_name](REF)
    sut_cls = SIGNATURE_CLASSES[class_name](SUT)
    names = [
        name
        for name, value in vars(ref_cls).items()
        if (name == "__init__" or not name.startswith("_"))
        and (callable(value) or isinstance(value, (classmethod, staticmethod)))
    ]
    for name in names:
        assert hasattr(sut_cls, name), name
        sut = [p for p in _signature_of(getattr(sut_cls, name)) if (name, p[0]) not in EXTENSIONS]
        assert sut == _signature_of(getattr(ref_cls, name)), name
    for (name, param), default in EXTENSIONS.items():
        if hasattr(ref_cls, name) and name in vars(ref_cls):
            found = inspect.signature(getattr(sut_cls, name)).parameters[param]
            assert (found.kind, found.default) == (inspect.Parameter.KEYWORD_ONLY, default), (name, param)


EXTENSIONS = {
    ("sync_from", "batch_size"): None,
    ("sync_to", "batch_size"): None,
    ("sync_from", "retry"): None,
    ("sync_to", "retry"): None,
    ("sync_from", "scope"): None,  # scoped syncs (diffsync's open PR #345 adds the same idea)
    ("sync_to", "scope"): None,
    ("diff_from", "scope"): None,
    ("diff_to", "scope"): None,
}
"""Parameters shardsync adds: keyword-only, with a default that keeps diffsync's behaviour."""


def _element_after_attrs_change(engine):
    element = engine.diff.DiffElement("site", "s0", {"name": "s0"})
    source, dest = {"region": "eu"}, {"region": "eu"}
    element.add_attrs(source=source, dest=dest)
    before = (element.action, element.has_diffs(), element.summary())
    source["region"] = "us"  # the caller changes the dict it handed to add_attrs
    return before, (element.action, element.has_diffs(), element.summary(), element.get_attrs_diffs())


def test_diff_element_sees_later_changes_to_its_attrs():
    """DiffElement keeps the dicts given to add_attrs; diffsync derives action/has_diffs from them on every call."""
    assert _element_after_attrs_change(SUT) == _element_after_attrs_change(REF)


def test_diff_subclass_len_decides_reuse_of_precomputed_diff():
    """sync_from(diff=...) recomputes the diff when ``not diff``; a Diff subclass may define that through __len__."""
    nodes = [site_node("s0", src={}, dst={})]
    ref = check(Scenario(nodes=nodes, api="diff_sync_from", diff_class="changes_len", sync_diff_class="changes_len"))
    assert ref["returned_is_precomputed"] is False


def test_diff_subclass_overrides_apply_to_child_diffs():
    """Child diffs are instances of diff_class: DiffElement.str/dict/summary go through their overrides."""
    nodes = [
        site_node("s0", src={}, dst={}),
        device_node("s0", "d0", src={}, dst={}),
        device_node("s0", "d1", src={"role": "x"}, dst={}),
    ]
    ref = check(Scenario(nodes=nodes, api="diff_only", diff_class="decorated"))
    assert ref["diff"]["summary"] == {"create": 0, "update": 1, "delete": 0, "no-change": 0, "skip": 2}


def test_skip_children_on_delete_with_missing_child():
    """Removing a SKIP_CHILDREN_ON_DELETE parent whose child is no longer stored logs an error and goes on."""
    nodes = [
        site_node("s0", src={}, dst={}),
        device_node("s0", "d0", dst={}, dst_flags=SCOD),
        interface_node("s0", "d0", "i0", dst={}),
        interface_node("s0", "d0", "i1", dst={}),
    ]
    scenario = Scenario(nodes=nodes, api="diff_sync_from", stale=(("interface", "s0__d0__i0", "flip"),))
    ref = check(scenario)
    assert ref["exception"] is None
    errors = [e for e in ref["logs_full"] if e["log_level"] == "error"]
    assert errors == [
        {
            "store": "LocalStore",
            "child_type": "interface",
            "child_id": "s0__d0__i0",
            "parent_type": "device",
            "parent_id": "s0__d0",
            "event": "Unable to remove child element as it was not found!",
            "log_level": "error",
        }
    ]
