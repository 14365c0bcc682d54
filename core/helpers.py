"""Compatibility module: diffsync exposes its differ and syncer (and what they use) from ``diffsync.helpers``."""

from core.diff import Diff, DiffElement
from core.differ import DiffSyncDiffer
from core.enum import DiffSyncActions, DiffSyncFlags, DiffSyncModelFlags, DiffSyncStatus
from core.exceptions import ObjectCrudException, ObjectNotCreated, ObjectNotDeleted, ObjectNotFound, ObjectNotUpdated
from core.syncer import DiffSyncSyncer
from core.utils import intersection, symmetric_difference

__all__ = [
    "Diff",
    "DiffElement",
    "DiffSyncActions",
    "DiffSyncDiffer",
    "DiffSyncFlags",
    "DiffSyncModelFlags",
    "DiffSyncStatus",
    "DiffSyncSyncer",
    "ObjectCrudException",
    "ObjectNotCreated",
    "ObjectNotDeleted",
    "ObjectNotFound",
    "ObjectNotUpdated",
    "intersection",
    "symmetric_difference",
]
