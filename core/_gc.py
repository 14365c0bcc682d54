"""Keep Python's cyclic garbage collector from re-scanning the whole heap during a diff or a sync.

A diff or sync allocates objects for every element while both adapters' objects (often millions) sit in
memory.  Every allocation-triggered full collection then walks all of them; measured here, that is more
than half of the time of a large diff.

- A diff creates no reference cycles and runs no user code but small accessors, so collection is paused
  while it runs and resumed (never forced) afterwards: ``paused_gc``.
- A sync runs the models' hooks, which may well create cyclic garbage (clients, exceptions), so collection
  keeps running, but over new objects only: the heap as it was when the sync started is frozen
  (``gc.freeze``) and unfrozen when it ends: ``frozen_heap``.  When something else in the process already
  froze objects, it is left alone.

Set SHARDSYNC_GC_PAUSE=0 to keep the collector as it is.
"""

from __future__ import annotations

import gc
import os
import threading
from contextlib import contextmanager
from typing import Iterator

ENVIRONMENT = "SHARDSYNC_GC_PAUSE"
"""The variable the engine reads itself (not a runner setting: ``worker.settings`` knows it as the engine's)."""

_lock = threading.Lock()
_depth = 0
_was_enabled = False


def _wanted() -> bool:
    return os.environ.get(ENVIRONMENT, "1").strip().lower() not in ("0", "false", "no", "off")


@contextmanager
def paused_gc() -> Iterator[None]:
    """Pause automatic garbage collection for the duration of the block (re-entrant, thread-safe)."""
    global _depth, _was_enabled  # noqa: PLW0603 - process-wide state, as the collector's own
    if not _wanted():
        yield
        return
    with _lock:
        if _depth == 0:
            _was_enabled = gc.isenabled()
            gc.disable()
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0 and _was_enabled:
                gc.enable()


_freeze_depth = 0
_froze = False


@contextmanager
def frozen_heap() -> Iterator[None]:
    """Exclude the objects alive now from collections until the block ends (re-entrant, thread-safe)."""
    global _freeze_depth, _froze  # noqa: PLW0603 - process-wide state, as the collector's own
    if not _wanted():
        yield
        return
    with _lock:
        if _freeze_depth == 0:
            _froze = gc.get_freeze_count() == 0
            if _froze:
                gc.freeze()
        elif _froze:
            gc.freeze()  # nested in a freeze of ours: what was made since is frozen too, till the outermost end
        _freeze_depth += 1
    try:
        yield
    finally:
        with _lock:
            _freeze_depth -= 1
            if _freeze_depth == 0 and _froze:
                gc.unfreeze()
                _froze = False
