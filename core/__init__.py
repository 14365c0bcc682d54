"""shardsync's engine: a drop-in for diffsync 2.x.

Change ``from diffsync import ...`` to ``from core import ...`` and the same adapters and models run here,
with the same diffs, operations, flags, statuses and log events, faster and in less memory.
"""

from typing_extensions import deprecated

from core import helpers
from core.adapter import Adapter
from core.diff import Diff, DiffElement
from core.enum import DiffSyncActions, DiffSyncFlags, DiffSyncModelFlags, DiffSyncStatus
from core.exceptions import DiffClassMismatch, ObjectAlreadyExists, ObjectNotFound, ObjectStoreWrongType, TransientError
from core.helpers import DiffSyncDiffer, DiffSyncSyncer
from core.limits import Limits
from core.model import DiffSyncModel, StrType
from core.retry import RetryBudget
from core.store import BaseStore
from core.store.local import LocalStore
from core.utils import get_path, set_key, tree_string


@deprecated("'diffsync.DiffSync' is deprecated and will be removed with 2.1, use 'diffsync.Adapter' instead.")
class DiffSync(Adapter):
    """Former name of Adapter, kept so that diffsync 1.x-style code still runs (with a deprecation warning)."""


# DiffSyncModel refers to Adapter and Adapter to DiffSyncModel: resolve the forward reference now.
DiffSyncModel.model_rebuild(_types_namespace={"Adapter": Adapter})

__all__ = [
    "Adapter",
    "BaseStore",
    "Diff",
    "DiffClassMismatch",
    "DiffElement",
    "DiffSync",
    "DiffSyncActions",
    "DiffSyncDiffer",
    "DiffSyncFlags",
    "DiffSyncModel",
    "DiffSyncModelFlags",
    "DiffSyncStatus",
    "DiffSyncSyncer",
    "Limits",
    "LocalStore",
    "ObjectAlreadyExists",
    "ObjectNotFound",
    "ObjectStoreWrongType",
    "RetryBudget",
    "StrType",
    "TransientError",
    "get_path",
    "helpers",
    "set_key",
    "tree_string",
]
