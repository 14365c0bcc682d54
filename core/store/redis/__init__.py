"""RedisStore: adapter data in Redis, shared by every process that opens the same ``store_id``.

Layout (key names come from ``core.keys``), under ``shardsync:{store_id}:``:

- ``obj:{model}``: HASH ``unique_id -> record``, one per model type;
- ``order:{model}``: ZSET ``unique_id -> insertion position``, so reads keep insertion order as LocalStore does;
- ``types``: SET of model names; ``seq``: insertion counter; ``meta``: HASH (created, last_used, ttl).

Records are msgpack ``[1, fields, fields_set]`` where ``fields`` is pydantic's JSON-mode dump of the model
(without ``adapter``).  On read the model class is the adapter's class for that model name, never anything
named by the stored data, and the fields are validated through it; nothing is ever unpickled.

Write model: write-through with batching.  ``add``, ``update``, ``remove``, the models' ``add_child`` and
``remove_child``, and every create/update/delete a sync makes are written to Redis; writes are buffered and
sent as one atomic Lua call per batch (``batch_size`` objects), and always before the store reads anything,
so a reader (this process or another) never misses a write made before its read.  ``flush()`` sends the
buffer at once.  An object changed in place by other means (``obj.field = x`` outside a sync) is only written
by ``adapter.update(obj)``, as with diffsync's RedisStore.

During a diff or a sync the engine opens a session on the store: objects are read in bulk, one type at a
time, and kept in memory until the session ends, so the diff and the sync make a few round trips per type
instead of one per object.

Modules: ``store`` (the RedisStore class and its reads), ``writes`` (the write buffer and its flushes),
``session`` (the lazy per-uid read map of a session), ``codec`` (records), ``scripts`` (the Lua scripts) and
``namespaces`` (store ids and namespace housekeeping).
"""

from core.exceptions import ObjectAlreadyExists, ObjectNotFound, ObjectStoreException
from core.keys import ROOT as REDIS_DIFFSYNC_ROOT_LABEL
from core.store import BaseStore, ModelRef
from core.store.redis.codec import RECORD_VERSION
from core.store.redis.namespaces import (
    NamespaceInfo,
    check_store_id,
    clear_namespace,
    expire_namespace,
    list_namespaces,
    remove_namespace,
    remove_stale_namespaces,
    server_time,
)
from core.store.redis.scripts import Record
from core.store.redis.store import RedisStore
from core.store.redis.writes import WriteRefused

# diffsync's name for the first component of every key it writes: kept for code that reads it, with this
# project's own root ("shardsync"), since that is what the keys here start with.

__all__ = [
    "REDIS_DIFFSYNC_ROOT_LABEL",
    "RECORD_VERSION",
    "BaseStore",
    "ModelRef",
    "NamespaceInfo",
    "ObjectAlreadyExists",
    "ObjectNotFound",
    "ObjectStoreException",
    "Record",
    "RedisStore",
    "WriteRefused",
    "check_store_id",
    "clear_namespace",
    "expire_namespace",
    "list_namespaces",
    "remove_namespace",
    "remove_stale_namespaces",
    "server_time",
]
