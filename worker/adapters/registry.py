"""The adapter registry: the only way a job names the code it runs.

A job message carries adapter *names*, never import paths: a worker runs only adapters that its own
deployment registered, either in code (``register_adapter``, from a module listed in
``SHARDSYNC_ADAPTER_MODULES``) or through the ``shardsync.adapters`` entry point group of an installed
distribution.
"""

from __future__ import annotations

import importlib
import re
import threading
from importlib.metadata import entry_points
from typing import Callable, Dict, List, Optional, Type, TypeVar, Union, overload

from core.adapter import Adapter
from worker.errors import UnknownAdapter
from worker.settings import get_settings

ENTRY_POINT_GROUP = "shardsync.adapters"
_NAME = re.compile(r"^[A-Za-z0-9_.\-]{1,100}$")

_registry: Dict[str, Type[Adapter]] = {}
_lock = threading.Lock()
_entry_points_loaded = False
_modules_imported: List[str] = []

A = TypeVar("A", bound=Type[Adapter])


def _check(name: str, cls: object) -> None:
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ValueError(f"adapter name {name!r} is not valid: use 1 to 100 letters, digits, '_', '.' or '-'")
    if not (isinstance(cls, type) and issubclass(cls, Adapter)):
        raise TypeError(f"adapter {name!r} must be a subclass of core.Adapter, not {cls!r}")


def _add(name: str, cls: Type[Adapter]) -> None:
    _check(name, cls)
    with _lock:
        existing = _registry.get(name)
        if existing is not None and existing is not cls:
            same = existing.__module__ == cls.__module__ and existing.__qualname__ == cls.__qualname__
            if not same:  # a module imported twice re-registers its own class: allowed
                raise ValueError(
                    f"adapter name {name!r} is already registered to {existing.__module__}.{existing.__qualname__}"
                )
        _registry[name] = cls


@overload
def register_adapter(name: str) -> Callable[[A], A]: ...


@overload
def register_adapter(name: str, cls: A) -> A: ...


def register_adapter(name: str, cls: Optional[A] = None) -> Union[A, Callable[[A], A]]:
    """Register an adapter class under a name that jobs use; as a decorator or a plain call.

    Raises:
        ValueError: if the name is malformed or already taken by another class.
        TypeError: if ``cls`` is not an Adapter subclass.
    """
    if cls is not None:
        _add(name, cls)
        return cls

    def decorator(klass: A) -> A:
        _add(name, klass)
        return klass

    return decorator


def unregister_adapter(name: str) -> None:
    """Forget a registered name (for tests and plugins that reload)."""
    with _lock:
        _registry.pop(name, None)


def load_entry_points() -> None:
    """Register the adapters that installed distributions declare in the ``shardsync.adapters`` group."""
    global _entry_points_loaded  # noqa: PLW0603 - loaded once per process
    if _entry_points_loaded:
        return
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        if entry.name in _registry:
            continue
        try:
            cls = entry.load()
        except Exception as err:  # noqa: BLE001 - a broken plugin must not hide the others
            raise UnknownAdapter(f"adapter {entry.name!r} ({entry.value}) failed to import: {err}") from err
        _add(entry.name, cls)
    _entry_points_loaded = True


def import_adapter_modules(modules: List[str]) -> None:
    """Import the modules that register adapters (``SHARDSYNC_ADAPTER_MODULES``), once each."""
    for module in modules:
        if module in _modules_imported:
            continue
        try:
            importlib.import_module(module)
        except Exception as err:  # noqa: BLE001 - any error of the module's own code, named without a traceback
            hint = ""
            if isinstance(err, ModuleNotFoundError) and err.name and module.startswith(err.name):
                # The module itself is missing here (not one it imports): where it must be, said once.
                hint = (
                    "; every process that submits or runs jobs (the shardsync CLI or your app, each worker, beat) "
                    "must be able to import it: install it in their environment, or put its folder on PYTHONPATH"
                )
            raise UnknownAdapter(
                f"adapter module {module!r} (SHARDSYNC_ADAPTER_MODULES) cannot be imported: "
                f"{type(err).__name__}: {err}{hint}"
            ) from err
        _modules_imported.append(module)


def get_adapter(name: str) -> Type[Adapter]:
    """The adapter class registered under ``name``.

    Raises:
        UnknownAdapter: if nothing is registered under that name (the message lists what is).
    """
    found = _registry.get(name)
    if found is None:
        import_adapter_modules(get_settings().adapter_modules)
        load_entry_points()
        found = _registry.get(name)
    if found is None:
        known = ", ".join(sorted(_registry)) or "none"
        raise UnknownAdapter(f"unknown adapter {name!r}; registered adapters: {known}")
    return found


def registered_adapters() -> Dict[str, Type[Adapter]]:
    """Every registered adapter by name (SHARDSYNC_ADAPTER_MODULES and entry points included)."""
    import_adapter_modules(get_settings().adapter_modules)
    load_entry_points()
    return dict(_registry)
