"""Side-by-side benchmark of the ``core`` engine against diffsync 2.2.3 on one network-inventory workload.

Why this exists: ``core`` is meant to be a drop-in, faster and leaner diffsync. The only honest way to check
that is to run *the same* model/adapter code on *the same* data through both engines and compare phase
timings and peak memory. Each engine runs in its own child process (this script re-invokes itself with
``--engine NAME --json``) so that peak RSS belongs to one engine only and neither engine's imports or
caches warm up the other.

Run it by hand (pytest never collects it: the file is ``bench_*.py`` and tests/bench is excluded)::

    .venv/bin/python tests/bench/bench_engine.py --sites 1000
    .venv/bin/python tests/bench/bench_engine.py --sites 20000 --engines core
    .venv/bin/python tests/bench/bench_engine.py --sites 200 --repeat 3 --profile

Workload: N sites x 10 devices x 4 interfaces (51 objects per site). Source and target are derived from
one seeded universe: ~1% of the objects are whole subtrees present only in the source (create), ~7% are
whole subtrees present only in the target (delete), and ~6% of the shared objects carry different
attribute values in the source (update). Phases: load (build models, add them to both adapters, link
children), diff (``target.diff_from(source)``), sync (``target.sync_from(source, diff=diff)``, so the
precomputed diff is applied and not recomputed), and re-diff (which must come out empty).
"""

from __future__ import annotations

import argparse
import gc
import importlib
import json
import os
import platform
import random
import resource
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
ENGINES: tuple[str, ...] = ("core", "diffsync")
PHASES: tuple[str, ...] = ("gen", "load", "diff", "sync", "rediff")
RESULT_MARKER = "BENCH_RESULT "
SYNC_MODE = "target.sync_from(source, diff=diff): applies the diff from the diff phase, no re-diff"

DEVICES_PER_SITE = 10
INTERFACES_PER_DEVICE = 4
OBJECTS_PER_SITE = 1 + DEVICES_PER_SITE * (1 + INTERFACES_PER_DEVICE)

# Share of the universe that ends up in each action. Deletes and creates are whole subtrees, split
# evenly between site-level subtrees (51 objects) and device-level subtrees (5 objects) inside a shared
# site, so both the "drop a big branch" and "drop a small branch" code paths are exercised.
DELETE_SHARE = 0.07
CREATE_SHARE = 0.01
UPDATE_SHARE = 0.06

REGIONS = ("emea", "amer", "apac")
STATUSES = ("active", "planned", "staged", "retired")
DEVICE_MODELS = ("dcs-7280", "mx204", "n9k-c93180", "qfx5120")
ROLES = ("spine", "leaf", "border", "access")
MTUS = (1500, 9000, 9216)
MODES = ("access", "trunk", "routed")

# --profile: frames from these paths are always shown; the flat report keeps this many lines.
PROFILE_SHOW_REGEX = r".*(/diffsync/|/core/|/structlog/|/pydantic/|bench_engine).*"
PROFILE_FLAT_LINES = 40
PROFILE_SUMMARY_LINES = 6  # printed by the parent per engine and phase

# Presence of a record on each side.
BOTH, SRC_ONLY, DST_ONLY = "both", "src", "dst"


# --------------------------------------------------------------------------------------------------
# Engines and stores
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Engine:
    """The public names of one engine, so the workload code is written once and only the import differs."""

    name: str
    package: ModuleType
    adapter_cls: Any
    model_cls: Any
    version: str

    def store_module(self, kind: str) -> ModuleType:
        """Import ``<engine>.store.<kind>``; stores live in per-kind modules in both engines."""
        return importlib.import_module(f"{self.name}.store.{kind}")


def load_engine(name: str) -> Engine:
    """Import one engine by package name; only ever called in the child so the other engine stays unloaded.

    ``core`` is imported from the checkout this script lives in (repo root first on sys.path): the bench
    must measure the code next to it, and an editable install made before ``core/__init__.py`` existed
    maps ``core`` to an empty namespace package.
    """
    if name == "core" and str(REPO_ROOT) not in sys.path:
        sys.path.insert(0, str(REPO_ROOT))
    package = importlib.import_module(name)
    version = getattr(package, "__version__", "")
    if not version:
        try:
            from importlib.metadata import version as dist_version

            version = dist_version("diffsync" if name == "diffsync" else "shardsync")
        except Exception:  # noqa: BLE001 - the version is informational only
            version = "?"
    return Engine(
        name=name,
        package=package,
        adapter_cls=package.Adapter,
        model_cls=package.DiffSyncModel,
        version=version,
    )


@dataclass(frozen=True)
class StoreKind:
    """How to give an adapter its storage backend.

    Why a small record instead of a hard-coded LocalStore: a Redis store (and maybe others) will be added
    later; they need per-run options (URL, key prefix) and cleanup (flush keys) that the local store does
    not. To add one, write a ``make`` (and optionally ``close``) function and register it in STORE_KINDS;
    store options reach it from ``--store-option KEY=VALUE`` on the command line.
    """

    make: Callable[[Engine, str, dict[str, str]], Any]
    """Return the ``internal_storage_engine`` argument (a store class or instance) for one side."""
    close: Callable[[Any], None] = field(default=lambda _store: None)
    """Release whatever ``make`` set up, given the adapter's ``store``; called after the run."""


def _make_local_store(engine: Engine, side: str, options: dict[str, str]) -> Any:
    """Return the engine's LocalStore class; the adapter instantiates it, as in plain diffsync usage."""
    del side, options  # the in-memory store needs neither
    return engine.store_module("local").LocalStore


def _make_redis_store(engine: Engine, side: str, options: dict[str, str]) -> Any:
    """A RedisStore of the engine in its own namespace (url from ``--store-option url=...``, db 14 by default).

    Each run gets a fresh namespace (pid + side) so concurrent or repeated runs never share data.
    """
    url = options.get("url", "redis://127.0.0.1:6379/14")
    store_id = f"bench-{os.getpid()}-{side}"
    module = engine.store_module("redis")
    return module.RedisStore(url=url, store_id=store_id)


def _close_redis_store(store: Any) -> None:
    """Remove the run's keys: core's store clears its namespace, diffsync's keys are found by prefix."""
    if hasattr(store, "clear"):
        store.clear()
        return
    client = store._store  # diffsync's RedisStore keeps its client there
    keys = list(client.scan_iter(match=f"{store._store_label}:*", count=1000))
    for start in range(0, len(keys), 500):
        client.unlink(*keys[start : start + 500])


STORE_KINDS: dict[str, StoreKind] = {
    "local": StoreKind(make=_make_local_store),
    "redis": StoreKind(make=_make_redis_store, close=_close_redis_store),
}


# --------------------------------------------------------------------------------------------------
# Models: defined once, built per engine
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Inventory:
    """The model and adapter classes of the inventory, bound to one engine."""

    site: Any
    device: Any
    interface: Any
    adapter: Any


def make_inventory(engine: Engine) -> Inventory:
    """Define the inventory models on top of ``engine``.

    Why a factory: the comparison is only fair if both engines run byte-for-byte the same user code, so
    the classes are written once here and only their base classes come from the engine under test.
    """
    base_model = engine.model_cls
    base_adapter = engine.adapter_cls

    class Site(base_model):  # type: ignore[misc, valid-type]
        _modelname = "site"
        _identifiers = ("name",)
        _attributes = ("region", "status", "description")
        _children = {"device": "devices"}

        name: str
        region: str
        status: str
        description: str
        devices: list[str] = []

    class Device(base_model):  # type: ignore[misc, valid-type]
        _modelname = "device"
        _identifiers = ("site_name", "name")
        _attributes = ("model", "role", "serial", "status")
        _children = {"interface": "interfaces"}

        site_name: str
        name: str
        model: str
        role: str
        serial: str
        status: str
        interfaces: list[str] = []

    class Interface(base_model):  # type: ignore[misc, valid-type]
        _modelname = "interface"
        _identifiers = ("device_name", "name")
        _attributes = ("description", "enabled", "mtu", "mode")

        device_name: str
        name: str
        description: str
        enabled: bool
        mtu: int
        mode: str

    class InventoryAdapter(base_adapter):  # type: ignore[misc, valid-type]
        site = Site
        device = Device
        interface = Interface
        top_level = ["site"]

    # diffsync's RedisStore pickles objects, which needs their classes reachable by module and name: publish
    # them as module globals under engine-specific names (core's store never pickles; harmless for it).
    module = sys.modules[__name__]
    for cls in (Site, Device, Interface, InventoryAdapter):
        public_name = f"_{engine.name}_{cls.__name__}"
        cls.__qualname__ = public_name
        cls.__module__ = __name__
        setattr(module, public_name, cls)
    return Inventory(site=Site, device=Device, interface=Interface, adapter=InventoryAdapter)


# --------------------------------------------------------------------------------------------------
# Deterministic data
# --------------------------------------------------------------------------------------------------


@dataclass(slots=True)
class Node:
    """One object of the universe with its presence and its attribute values on each side."""

    ids: dict[str, Any]
    presence: str
    dst_attrs: dict[str, Any]
    src_attrs: dict[str, Any]
    children: list[Node]

    def attrs(self, side: str) -> dict[str, Any]:
        """Attribute values of this object as the given side ("src" or "dst") holds them."""
        return self.src_attrs if side == SRC_ONLY else self.dst_attrs

    def on(self, side: str) -> bool:
        """Whether this object exists on the given side."""
        return self.presence == BOTH or self.presence == side


def _mutate(attrs: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    """Change one attribute, of whatever type it is, so the update path sees str, bool and int changes."""
    changed = dict(attrs)
    key = rng.choice(sorted(changed))
    value = changed[key]
    if isinstance(value, bool):
        changed[key] = not value
    elif isinstance(value, int):
        changed[key] = value + 1
    else:
        changed[key] = f"{value}-changed"
    return changed


def _presence(rng: random.Random, share_delete: float, share_create: float, inherited: str) -> str:
    """Draw where a subtree root lives; objects inside a one-sided subtree inherit that side."""
    if inherited != BOTH:
        return inherited
    roll = rng.random()
    if roll < share_delete:
        return DST_ONLY
    if roll < share_delete + share_create:
        return SRC_ONLY
    return BOTH


def _attrs_pair(attrs: dict[str, Any], presence: str, rng: random.Random) -> tuple[dict[str, Any], dict[str, Any]]:
    """Return (dst_attrs, src_attrs); shared objects differ in the source with probability UPDATE_SHARE."""
    if presence == BOTH and rng.random() < UPDATE_SHARE:
        return attrs, _mutate(attrs, rng)
    return attrs, attrs


def iter_universe(n_sites: int, seed: int) -> Iterator[Node]:
    """Yield the universe one site subtree at a time.

    Why streaming and per-site seeding: the raw data must not sit in memory next to the models (it would
    blur the peak-RSS comparison), and seeding each site from (seed, index) makes every site reproducible
    on its own, so both engines see identical data however they consume it.
    """
    site_delete = DELETE_SHARE / 2
    site_create = CREATE_SHARE / 2
    # Device subtrees are drawn only inside shared sites; scale so the overall share stays on target.
    device_delete = (DELETE_SHARE / 2) / (1 - site_delete - site_create)
    device_create = (CREATE_SHARE / 2) / (1 - site_delete - site_create)
    for i in range(n_sites):
        rng = random.Random(seed * 1_000_003 + i)
        site_name = f"site-{i:06d}"
        site_presence = _presence(rng, site_delete, site_create, BOTH)
        site_base = {
            "region": REGIONS[i % len(REGIONS)],
            "status": STATUSES[i % len(STATUSES)],
            "description": f"Site number {i}",
        }
        site_dst, site_src = _attrs_pair(site_base, site_presence, rng)
        devices: list[Node] = []
        for j in range(DEVICES_PER_SITE):
            device_name = f"{site_name}-dev{j:02d}"
            device_presence = _presence(rng, device_delete, device_create, site_presence)
            device_base = {
                "model": DEVICE_MODELS[(i + j) % len(DEVICE_MODELS)],
                "role": ROLES[j % len(ROLES)],
                "serial": f"SN{i:06d}{j:02d}",
                "status": STATUSES[(i + j) % len(STATUSES)],
            }
            device_dst, device_src = _attrs_pair(device_base, device_presence, rng)
            interfaces: list[Node] = []
            for k in range(INTERFACES_PER_DEVICE):
                iface_base = {
                    "description": f"{device_name} port {k}",
                    "enabled": (i + j + k) % 5 != 0,
                    "mtu": MTUS[(i + k) % len(MTUS)],
                    "mode": MODES[(j + k) % len(MODES)],
                }
                iface_dst, iface_src = _attrs_pair(iface_base, device_presence, rng)
                interfaces.append(
                    Node(
                        ids={"device_name": device_name, "name": f"eth{k}"},
                        presence=device_presence,
                        dst_attrs=iface_dst,
                        src_attrs=iface_src,
                        children=[],
                    )
                )
            devices.append(
                Node(
                    ids={"site_name": site_name, "name": device_name},
                    presence=device_presence,
                    dst_attrs=device_dst,
                    src_attrs=device_src,
                    children=interfaces,
                )
            )
        yield Node(
            ids={"name": site_name},
            presence=site_presence,
            dst_attrs=site_dst,
            src_attrs=site_src,
            children=devices,
        )


def _walk(node: Node) -> Iterator[Node]:
    """Yield a node and all its descendants, depth first."""
    yield node
    for child in node.children:
        yield from _walk(child)


def expected_counts(n_sites: int, seed: int) -> dict[str, int]:
    """Count what the diff must report, straight from the generator, so each engine's diff can be checked."""
    counts = {"source": 0, "target": 0, "create": 0, "update": 0, "delete": 0, "no-change": 0}
    for site in iter_universe(n_sites, seed):
        for node in _walk(site):
            if node.presence == SRC_ONLY:
                counts["source"] += 1
                counts["create"] += 1
            elif node.presence == DST_ONLY:
                counts["target"] += 1
                counts["delete"] += 1
            else:
                counts["source"] += 1
                counts["target"] += 1
                counts["update" if node.src_attrs != node.dst_attrs else "no-change"] += 1
    return counts


def load_site(adapter: Any, inventory: Inventory, site: Node, side: str) -> None:
    """Build one site subtree for one side and add it to the adapter, linking children as users do."""
    if not site.on(side):
        return
    site_obj = inventory.site(**site.ids, **site.attrs(side))
    adapter.add(site_obj)
    for device in site.children:
        if not device.on(side):
            continue
        device_obj = inventory.device(**device.ids, **device.attrs(side))
        adapter.add(device_obj)
        site_obj.add_child(device_obj)
        for iface in device.children:
            iface_obj = inventory.interface(**iface.ids, **iface.attrs(side))
            adapter.add(iface_obj)
            device_obj.add_child(iface_obj)


# --------------------------------------------------------------------------------------------------
# Child: run the workload on one engine
# --------------------------------------------------------------------------------------------------


def configure_logging(level: str = "default") -> Any:
    """Keep structlog's default configuration (processors, level, wrapper) and only discard the output.

    Why: both engines log through structlog; rendering cost is part of what users pay, so the default
    processor chain (incl. ConsoleRenderer, no level filtering) stays, but nothing reaches the terminal.
    """
    import structlog

    sink = open(os.devnull, "w")  # noqa: SIM115 - kept open for the life of the process
    structlog.reset_defaults()
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(file=sink))
    if level != "default":
        # Same for both engines: events below the level are dropped by structlog before any rendering,
        # which shows the engines' own cost without the (identical) cost of rendering their events.
        import logging  # noqa: PLC0415 - only needed here

        structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(getattr(logging, level.upper())))
    return sink


def peak_rss_kib() -> int:
    """Peak resident set size of this process so far (Linux reports ru_maxrss in KiB)."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss // 1024 if sys.platform == "darwin" else rss


class Profiler:
    """Optional pyinstrument wrapper: profiles one phase at a time and writes a text report per phase."""

    def __init__(self, enabled: bool, out_dir: Path, tag: str) -> None:
        self.out_dir = out_dir
        self.tag = tag
        self.reports: dict[str, str] = {}
        self.hottest: dict[str, list[str]] = {}
        self.note = ""
        self._cls: Any = None
        if enabled:
            try:
                from pyinstrument import Profiler as PyinstrumentProfiler
            except ImportError:
                self.note = "pyinstrument not installed; --profile ignored"
            else:
                self._cls = PyinstrumentProfiler
                out_dir.mkdir(parents=True, exist_ok=True)

    def run(self, phase: str, func: Callable[[], Any]) -> Any:
        """Call ``func``, under the profiler when enabled, and keep the report path for the summary."""
        if self._cls is None:
            return func()
        profiler = self._cls()
        profiler.start()
        try:
            return func()
        finally:
            profiler.stop()
            # Engine code must stay visible even when it lives in site-packages (diffsync), so library
            # grouping only collapses frames outside the engines and their logging/validation deps.
            options = {"show_regex": PROFILE_SHOW_REGEX}
            tree = profiler.output_text(unicode=False, color=False, processor_options=options)
            flat = profiler.output_text(unicode=False, color=False, flat=True, processor_options=options)
            hot = [line.strip() for line in flat.splitlines() if line[:1].isdigit()]
            self.hottest[phase] = hot[:PROFILE_SUMMARY_LINES]
            top = "\n".join(hot[:PROFILE_FLAT_LINES])
            path = self.out_dir / f"{self.tag}-{phase}.txt"
            path.write_text(f"{tree}\n\n=== hottest functions by self time ===\n{top}\n")
            self.reports[phase] = str(path)


def _summary(diff: Any) -> dict[str, int]:
    """Diff summary with plain-str keys so it serialises to JSON the same way for both engines."""
    return {str(getattr(key, "value", key)): int(value) for key, value in diff.summary().items()}


def run_workload(args: argparse.Namespace) -> dict[str, Any]:
    """Run every phase on one engine and return timings, memory and checks as a JSON-able dict.

    A phase that raises stops the run but still returns what was measured, so a broken engine shows up
    as a FAILED row with its error instead of a missing column.
    """
    sink = configure_logging(args.log_level)
    result: dict[str, Any] = {
        "engine": args.engine,
        "sites": args.sites,
        "seed": args.seed,
        "store": args.store,
        "sync_mode": SYNC_MODE,
        "python": platform.python_version(),
        "times": {},
        "rss_kib": {},
        "failures": [],
    }
    result["rss_kib"]["start"] = peak_rss_kib()
    store_kind = STORE_KINDS[args.store]
    options = dict(opt.split("=", 1) for opt in args.store_option)
    try:
        engine = load_engine(args.engine)
        result["engine_version"] = engine.version
        inventory = make_inventory(engine)
        source = inventory.adapter(name="source", internal_storage_engine=store_kind.make(engine, "source", options))
        target = inventory.adapter(name="target", internal_storage_engine=store_kind.make(engine, "target", options))
    except Exception as exc:  # noqa: BLE001 - an engine that cannot even set up is a failed run, not a crash
        result["failures"].append(f"setup (import engine, define models, create adapters) raised {exc!r}")
        result["traceback"] = traceback.format_exc()
        result["ok"] = False
        sink.close()
        return result
    result["rss_kib"]["imported"] = peak_rss_kib()
    profiler = Profiler(args.profile, Path(args.profile_dir), f"{args.engine}-{args.sites}")
    if profiler.note:
        result["profile_note"] = profiler.note
    state: dict[str, Any] = {}

    def phase_gen() -> None:
        # Generating the data alone, so the load figure can be read net of it.
        state["expected"] = expected_counts(args.sites, args.seed)

    def phase_load() -> None:
        for site in iter_universe(args.sites, args.seed):
            load_site(source, inventory, site, SRC_ONLY)
            load_site(target, inventory, site, DST_ONLY)
        for adapter in (source, target):
            flush = getattr(adapter.store, "flush", None)
            if flush is not None:  # a buffering store: the load is done when its writes are
                flush()

    def phase_diff() -> None:
        state["diff"] = target.diff_from(source)

    def phase_sync() -> None:
        target.sync_from(source, diff=state["diff"])

    def phase_rediff() -> None:
        state["rediff"] = target.diff_from(source)

    steps: list[tuple[str, Callable[[], None]]] = [
        ("gen", phase_gen),
        ("load", phase_load),
        ("diff", phase_diff),
        ("sync", phase_sync),
        ("rediff", phase_rediff),
    ]
    try:
        for name, func in steps:
            gc.collect()
            started = time.perf_counter()
            profiler.run(name, func)
            result["times"][name] = time.perf_counter() - started
            result["rss_kib"][f"after_{name}"] = peak_rss_kib()
            if name == "load":
                result["sizes"] = {"source": source.count(), "target": target.count()}
                _check_sizes(result, state["expected"])
            elif name == "diff":
                result["diff_summary"] = _summary(state["diff"])
                _check_diff(result, state["expected"])
            elif name == "rediff":
                _check_rediff(result, state["rediff"])
        result["sizes"]["target_after_sync"] = target.count()
        if result["sizes"]["target_after_sync"] != result["sizes"]["source"]:
            result["failures"].append(
                f"after sync target has {result['sizes']['target_after_sync']} objects, "
                f"source has {result['sizes']['source']}"
            )
    except Exception as exc:  # noqa: BLE001 - report any engine error as a failed phase
        failed = next((name for name, _ in steps if name not in result["times"]), "?")
        result["failures"].append(f"phase {failed} raised {type(exc).__name__}: {exc}")
        result["traceback"] = traceback.format_exc()
    finally:
        for adapter in (source, target):
            try:
                store_kind.close(adapter.store)
            except Exception as exc:  # noqa: BLE001 - cleanup problems are reported, not raised
                result["failures"].append(f"store close failed: {exc}")
        sink.close()
    result["expected"] = state.get("expected")
    result["profiles"] = profiler.reports
    result["profile_hottest"] = profiler.hottest
    result["rss_kib"]["peak"] = peak_rss_kib()
    result["ok"] = not result["failures"]
    return result


def _check_sizes(result: dict[str, Any], expected: dict[str, int]) -> None:
    """Both adapters must hold exactly the generated objects; anything else makes the timings meaningless."""
    for side in ("source", "target"):
        if result["sizes"][side] != expected[side]:
            result["failures"].append(f"{side} holds {result['sizes'][side]} objects, expected {expected[side]}")


def _check_diff(result: dict[str, Any], expected: dict[str, int]) -> None:
    """The diff must count exactly the creates/updates/deletes that were generated."""
    summary = result["diff_summary"]
    for key in ("create", "update", "delete", "no-change"):
        if summary.get(key) != expected[key]:
            result["failures"].append(f"diff summary {key}={summary.get(key)}, expected {expected[key]}")


def _check_rediff(result: dict[str, Any], rediff: Any) -> None:
    """After the sync the target must equal the source: the re-diff has no changes at all."""
    summary = _summary(rediff)
    result["rediff_summary"] = summary
    if rediff.has_diffs():
        result["failures"].append("re-diff after sync has_diffs() is True")
    leftover = {key: summary.get(key) for key in ("create", "update", "delete") if summary.get(key)}
    if leftover:
        result["failures"].append(f"re-diff after sync is not empty: {leftover}")


# --------------------------------------------------------------------------------------------------
# Parent: spawn one child per engine and repeat, then print the comparison
# --------------------------------------------------------------------------------------------------


def run_child(engine: str, args: argparse.Namespace, store: str | None = None) -> dict[str, Any]:
    """Run the workload for one engine in a fresh interpreter and parse its JSON line.

    Why a subprocess: ru_maxrss is a per-process high-water mark, so the engines must not share one.
    """
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--engine",
        engine,
        "--json",
        "--sites",
        str(args.sites),
        "--seed",
        str(args.seed),
        "--store",
        store or args.store,
        "--profile-dir",
        args.profile_dir,
        "--log-level",
        args.log_level,
    ]
    for opt in args.store_option:
        cmd += ["--store-option", opt]
    if args.profile:
        cmd.append("--profile")
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout, check=False)
    except subprocess.TimeoutExpired:
        return {"engine": engine, "ok": False, "failures": [f"timed out after {args.timeout}s"], "times": {}}
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(RESULT_MARKER):
            data: dict[str, Any] = json.loads(line[len(RESULT_MARKER) :])
            data["returncode"] = proc.returncode
            return data
    tail = "\n".join(proc.stderr.strip().splitlines()[-15:])
    return {
        "engine": engine,
        "ok": False,
        "failures": [f"child exited {proc.returncode} without a result"],
        "traceback": tail,
        "times": {},
    }


def _fmt_seconds(value: float | None) -> str:
    """Seconds with three decimals, or a dash when the phase did not run."""
    return "-" if value is None else f"{value:.3f}"


def _ratio(a: float | None, b: float | None) -> str:
    """core/diffsync as ``0.42x``; below 1 means core is faster / smaller."""
    if a is None or b is None or b == 0:
        return "-"
    return f"{a / b:.2f}x"


def _best(runs: list[dict[str, Any]], phase: str) -> float | None:
    """Fastest time of a phase over the repeats; the minimum is the least noise-polluted estimate."""
    values = [run["times"][phase] for run in runs if phase in run.get("times", {})]
    return min(values) if values else None


def _rss_mib(runs: list[dict[str, Any]], key: str = "peak") -> float | None:
    """Largest recorded RSS mark over the repeats in MiB (peak memory barely varies between repeats)."""
    values = [run["rss_kib"][key] for run in runs if key in run.get("rss_kib", {})]
    return max(values) / 1024 if values else None


def print_report(
    args: argparse.Namespace,
    engines: list[str],
    runs: dict[str, list[dict[str, Any]]],
    ratios: list[tuple[str, str]] | None = None,
) -> bool:
    """Print the comparison table and every failure; return True when every run passed its checks."""
    ok = True
    first = next((r for rs in runs.values() for r in rs if r.get("expected")), None)
    load1, load5, _ = os.getloadavg()
    print(
        f"bench_engine: sites={args.sites} seed={args.seed} store={args.store} log={args.log_level} "
        f"repeat={args.repeat} "
        f"(times are best of {args.repeat}) cpus={os.cpu_count()} loadavg={load1:.2f}/{load5:.2f}"
    )
    for engine in engines:
        version = next((r.get("engine_version") for r in runs[engine] if r.get("engine_version")), "?")
        print(f"  {engine}: version {version}")
    if first:
        exp = first["expected"]
        print(
            f"sizes: universe {args.sites * OBJECTS_PER_SITE:,} objects ({args.sites:,} sites x {OBJECTS_PER_SITE}); "
            f"source {exp['source']:,}, target {exp['target']:,}"
        )
        print(
            f"expected diff: create {exp['create']:,}, update {exp['update']:,}, delete {exp['delete']:,}, "
            f"no-change {exp['no-change']:,}"
        )
    print(f"sync phase = {SYNC_MODE}")
    print("gen = generating the data only (also inside load); load = build + add + add_child, both adapters")
    if args.profile:
        print("NOTE: --profile is on, timings include profiler overhead")
    print()

    ratios = ratios or []
    width = max([14, *(len(e) + 4 for e in engines)])
    rwidth = max([16, *(len(f"{a} / {b}") + 2 for a, b in ratios)])
    header = f"{'phase':<10}" + "".join(f"{e + ' s':>{width}}" for e in engines)
    header += "".join(f"{f'{a} / {b}':>{rwidth}}" for a, b in ratios)
    print(header)
    print("-" * len(header))
    rows = [*PHASES, "total"]
    for phase in rows:
        values: dict[str, float | None] = {}
        for engine in engines:
            if phase == "total":
                parts = [_best(runs[engine], p) for p in PHASES if p != "gen"]
                values[engine] = None if any(v is None for v in parts) else sum(v for v in parts if v is not None)
            else:
                values[engine] = _best(runs[engine], phase)
        line = f"{phase:<10}" + "".join(f"{_fmt_seconds(values[e]):>{width}}" for e in engines)
        line += "".join(f"{_ratio(values[a], values[b]):>{rwidth}}" for a, b in ratios)
        print(line)
    print("(total = load + diff + sync + rediff)")
    for label, key in (("RSS import", "imported"), ("RSS load", "after_load"), ("peak RSS", "peak")):
        mem = {e: _rss_mib(runs[e], key) for e in engines}
        line = f"{label:<10}" + "".join(f"{'-' if mem[e] is None else f'{mem[e]:.1f} MiB':>{width}}" for e in engines)
        line += "".join(f"{_ratio(mem[a], mem[b]):>{rwidth}}" for a, b in ratios)
        print(line)
    print()

    for engine in engines:
        for index, run in enumerate(runs[engine]):
            tag = f"{engine} run {index + 1}"
            if run.get("times"):
                times = " ".join(f"{phase}={value:.3f}" for phase, value in run["times"].items())
                peak = run.get("rss_kib", {}).get("peak")
                print(f"{tag}: seconds {times}" + (f"; peak RSS {peak / 1024:.1f} MiB" if peak else ""))
            if run.get("sizes"):
                print(f"{tag}: sizes {run['sizes']}")
            if run.get("diff_summary"):
                print(f"{tag}: diff summary {run['diff_summary']}")
            if run.get("rediff_summary"):
                print(f"{tag}: re-diff summary {run['rediff_summary']}")
            if run.get("profile_note"):
                print(f"{tag}: {run['profile_note']}")
            for phase, path in run.get("profiles", {}).items():
                print(f"{tag}: profile {phase}: {path}")
                for line in run.get("profile_hottest", {}).get(phase, []):
                    print(f"    {line}")
            if not run.get("ok"):
                ok = False
                for failure in run.get("failures", []):
                    print(f"FAILED {tag}: {failure}")
                if run.get("traceback"):
                    print(run["traceback"].rstrip())
    # Same data in, so the same diff must come out; compared only where the runs got that far.
    summaries = {
        label: {json.dumps(r["diff_summary"], sort_keys=True) for r in runs[label] if r.get("diff_summary")}
        for label in engines
    }
    distinct = {summary for found in summaries.values() for summary in found}
    if len(distinct) > 1:
        ok = False
        print(f"FAILED: diff summaries differ between runs: {summaries}")
    return ok


def plan_variants(
    args: argparse.Namespace, engines: list[str]
) -> tuple[list[tuple[str, str, str]], list[tuple[str, str]]]:
    """Which (label, engine, store) runs to make, and which pairs of labels to print ratios for.

    With the local store: each engine on LocalStore, ratio core/diffsync. With ``--store redis``: core on
    Redis against core on LocalStore (the reference run), plus diffsync's RedisStore when asked for or at
    small sizes (it is far too slow beyond a few hundred sites).
    """
    if args.store == "local":
        return [(e, e, "local") for e in engines], [("core", "diffsync")] if len(engines) == 2 else []
    variants = []
    ratios = []
    if "core" in engines:
        variants.append((f"core/{args.store}", "core", args.store))
        variants.append(("core/local", "core", "local"))
        ratios.append((f"core/{args.store}", "core/local"))
    if "diffsync" in engines and (args.sites <= args.reference_store_limit):
        variants.append((f"diffsync/{args.store}", "diffsync", args.store))
        if "core" in engines:
            ratios.append((f"core/{args.store}", f"diffsync/{args.store}"))
    return variants, ratios


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command line for both the parent (comparison) and the child (``--engine X --json``) roles."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--sites", type=int, default=1000, help="number of sites (51 objects each), default 1000")
    parser.add_argument("--engines", default="core,diffsync", help="comma-separated engines to compare")
    parser.add_argument("--repeat", type=int, default=1, help="runs per engine; the best time per phase is shown")
    parser.add_argument("--store", default="local", choices=sorted(STORE_KINDS), help="storage backend")
    parser.add_argument(
        "--store-option", action="append", default=[], metavar="KEY=VALUE", help="option for the store kind"
    )
    parser.add_argument("--seed", type=int, default=20240601, help="seed of the generated data")
    parser.add_argument(
        "--log-level",
        default="default",
        choices=["default", "debug", "info", "warning", "error"],
        help="structlog level for both engines; 'default' is structlog's own configuration (every event rendered)",
    )
    parser.add_argument(
        "--reference-store-limit",
        type=int,
        default=500,
        help="with a non-local store, run diffsync on it only up to this many sites (default 500)",
    )
    parser.add_argument("--timeout", type=float, default=None, help="seconds before a child run is abandoned")
    parser.add_argument("--profile", action="store_true", help="profile each phase with pyinstrument if installed")
    parser.add_argument(
        "--profile-dir", default="/tmp/shardsync-bench-profiles", help="where --profile writes text reports"
    )
    parser.add_argument("--engine", choices=ENGINES, help=argparse.SUPPRESS)
    parser.add_argument("--json", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    for opt in args.store_option:
        if "=" not in opt:
            parser.error(f"--store-option needs KEY=VALUE, got {opt!r}")
    if args.sites < 1 or args.repeat < 1:
        parser.error("--sites and --repeat must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    """Entry point: child mode prints one JSON result line; parent mode compares engines and prints a table."""
    args = parse_args(argv)
    if args.engine:
        result = run_workload(args)
        print(RESULT_MARKER + json.dumps(result), flush=True)
        return 0 if result["ok"] else 1

    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    unknown = [e for e in engines if e not in ENGINES]
    if unknown or not engines:
        print(f"unknown engines {unknown}; choose from {','.join(ENGINES)}", file=sys.stderr)
        return 2
    variants, ratios = plan_variants(args, engines)
    runs: dict[str, list[dict[str, Any]]] = {label: [] for label, _, _ in variants}
    # Interleave variants across repeats so a burst of load from other processes hits all alike.
    for _ in range(args.repeat):
        for label, engine, store in variants:
            runs[label].append(run_child(engine, args, store))
    ok = print_report(args, [label for label, _, _ in variants], runs, ratios)
    if not ok:
        print("FAILED: see above")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
