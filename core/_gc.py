"""Keep Python's cyclic garbage collector from re-scanning the whole heap during a diff.

A diff allocates one element per compared object while both adapters' objects (often millions) sit in
memory.  Every allocation-triggered full collection then walks all of them; measured here, that is more
than half of the time of a large diff.  The diff creates no reference cycles itself, so collection is paused
while it runs and resumed (never forced) afterwards.  Set SHARDSYNC_GC_PAUSE=0 to keep the collector as is.
"""

from __future__ import annotations

import gc
import os
import threading
from contextlib import contextmanager
from typing import Iterator

_lock = threading.Lock()
_depth = 0
_was_enabled = False


def _wanted() -> bool:
    return os.environ.get("SHARDSYNC_GC_PAUSE", "1").strip().lower() not in ("0", "false", "no", "off")


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
