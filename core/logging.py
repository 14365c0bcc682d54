"""Console logging set-up, the same call as ``diffsync.logging.enable_console_logging``."""

from __future__ import annotations

import logging
import sys
from importlib.util import find_spec
from typing import Any, List

import structlog


def enable_console_logging(verbosity: int = 0) -> None:
    """Send the engine's structlog events to the console through the standard library.

    Args:
        verbosity: 0 shows warnings and above, 1 adds info, anything else adds debug events (as diffsync).
    """
    if verbosity == 0:
        level = logging.WARNING
    elif verbosity == 1:
        level = logging.INFO
    else:
        level = logging.DEBUG
    logging.basicConfig(format="%(message)s", level=level)

    processors: List[Any] = [
        structlog.stdlib.filter_by_level,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.add_log_level,
        structlog.processors.TimeStamper(fmt="%Y-%m-%d %H:%M.%S"),
        structlog.processors.StackInfoRenderer(),
    ]
    # structlog renders exceptions itself when rich or better_exceptions is importable; adding
    # format_exc_info then would make it warn, so only add it when neither is there.
    if not (find_spec("rich") or find_spec("better_exceptions")):
        processors.append(structlog.processors.format_exc_info)
    # Colours only on a terminal: piped or redirected output (a log file, `| less`) gets plain text.
    processors.append(structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty()))

    structlog.configure(
        processors=processors,
        context_class=dict,
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
