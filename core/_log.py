"""Decide once per diff or sync whether a log level can produce output at all.

The engine emits the same structlog events as diffsync, but building an event (binding context, computing
the attribute diffs it carries, formatting its message) costs more than the work it reports.  When the
configured logger cannot emit a level, none of that is done for it.
"""

from __future__ import annotations

import logging
from typing import Any

import structlog

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


def level_enabled(logger: Any, method: str) -> bool:
    """Tell whether ``logger.<method>(...)`` can emit anything under the current structlog configuration.

    Errs on the side of True: only a filtering bound logger whose method is a no-op, or a standard-library
    logger behind ``filter_by_level`` as first processor, is known to drop the event unseen.
    """
    func = getattr(type(logger), method, None)
    if func is not None and getattr(func, "__name__", "") == "_nop":
        return False
    is_enabled_for = getattr(logger, "isEnabledFor", None)
    if is_enabled_for is not None:
        try:
            processors = structlog.get_config().get("processors") or []
        except Exception:  # pragma: no cover - structlog always has a config
            return True
        if processors and processors[0] is structlog.stdlib.filter_by_level:
            try:
                return bool(is_enabled_for(_LEVELS[method]))
            except Exception:  # noqa: BLE001 - a logger we cannot ask is assumed to emit
                return True
    return True
