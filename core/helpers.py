"""Compatibility module: diffsync exposes its differ and syncer from ``diffsync.helpers``."""

from core.differ import DiffSyncDiffer
from core.syncer import DiffSyncSyncer

__all__ = ["DiffSyncDiffer", "DiffSyncSyncer"]
