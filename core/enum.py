"""Flags, statuses and action names, with the same names and values as diffsync 2.x.

Values are part of the drop-in contract: users persist and compare them, so they never change.
"""

from __future__ import annotations

import enum


class DiffSyncModelFlags(enum.Flag):
    """Flags set on a DiffSyncModel class or instance to change how the engine treats it."""

    NONE = 0

    IGNORE = 0b1
    """Leave the model out of diffs and never change it during a sync."""

    SKIP_CHILDREN_ON_DELETE = 0b10
    """On delete, do not delete the children one by one: the target removes them along with the parent."""

    SKIP_UNMATCHED_SRC = 0b100
    """Ignore the model when it exists only in the source: nothing is created for it."""

    SKIP_UNMATCHED_DST = 0b1000
    """Ignore the model when it exists only in the target: it is not deleted."""

    NATURAL_DELETION_ORDER = 0b10000
    """On delete, delete the children before the model itself."""

    SKIP_UNMATCHED_BOTH = SKIP_UNMATCHED_SRC | SKIP_UNMATCHED_DST


class DiffSyncFlags(enum.Flag):
    """Flags passed to a diff_* or sync_* call."""

    NONE = 0

    CONTINUE_ON_FAILURE = 0b1
    """Keep going when the create/update/delete of one model fails (its children are still skipped)."""

    SKIP_UNMATCHED_SRC = 0b10
    """Ignore objects that exist only in the source: nothing is created."""

    SKIP_UNMATCHED_DST = 0b100
    """Ignore objects that exist only in the target: nothing is deleted."""

    SKIP_UNMATCHED_BOTH = SKIP_UNMATCHED_SRC | SKIP_UNMATCHED_DST

    LOG_UNCHANGED_RECORDS = 0b1000
    """Log a (debug) event for every model during a sync, unchanged ones included."""


class DiffSyncStatus(enum.Enum):
    """Outcome of the last create/update/delete of a model, as logged by the syncer."""

    UNKNOWN = "unknown"
    SUCCESS = "success"
    FAILURE = "failure"
    ERROR = "error"


class DiffSyncActions:  # pylint: disable=too-few-public-methods
    """Names of the actions a diff element can call for."""

    CREATE = "create"
    UPDATE = "update"
    DELETE = "delete"
    SKIP = "skip"
    NO_CHANGE = None
