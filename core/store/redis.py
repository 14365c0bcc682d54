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
"""

from __future__ import annotations

import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Dict, Iterator, List, Mapping, Optional, Set, Tuple, Type, Union

import msgpack
from pydantic import BaseModel, ValidationError
from redis import Redis
from redis.exceptions import RedisError

from core import keys
from core.exceptions import ObjectAlreadyExists, ObjectNotFound, ObjectStoreException
from core.store import BaseStore, ModelRef

if TYPE_CHECKING:
    from core.model import DiffSyncModel

RECORD_VERSION = 1
_UNPACK_LIMITS = {"max_bin_len": 64 << 20, "max_str_len": 64 << 20, "max_array_len": 1 << 20, "max_map_len": 1 << 20}

# Writes a batch atomically.  KEYS: types, seq, then objects/order key pairs per type.
# ARGV: 1 + number of types, then per type: model name, entry count, then (uid, record, is_new) per entry.
# A new entry whose uid already holds a different record is not written and is returned as a conflict.
_WRITE_BATCH = """
local ntypes = tonumber(ARGV[1])
local argi = 2
local conflicts = {}
local total = 0
local plans = {}
for t = 1, ntypes do
  local model = ARGV[argi]
  local count = tonumber(ARGV[argi + 1])
  local objkey = KEYS[1 + 2 * t]
  local first = argi + 2
  local accepted = {}
  for i = 0, count - 1 do
    local base = first + 3 * i
    local uid, rec, new = ARGV[base], ARGV[base + 1], ARGV[base + 2]
    if new == '1' then
      local current = redis.call('HGET', objkey, uid)
      if current and current ~= rec then
        table.insert(conflicts, model)
        table.insert(conflicts, uid)
      else
        table.insert(accepted, base)
      end
    else
      table.insert(accepted, base)
    end
  end
  plans[t] = accepted
  total = total + #accepted
  argi = first + 3 * count
end
local position = redis.call('INCRBY', KEYS[2], total) - total
argi = 2
for t = 1, ntypes do
  local model = ARGV[argi]
  local count = tonumber(ARGV[argi + 1])
  local objkey, orderkey = KEYS[1 + 2 * t], KEYS[2 + 2 * t]
  if #plans[t] > 0 then
    redis.call('SADD', KEYS[1], model)
  end
  for _, base in ipairs(plans[t]) do
    position = position + 1
    redis.call('HSET', objkey, ARGV[base], ARGV[base + 1])
    redis.call('ZADD', orderkey, 'NX', position, ARGV[base])
  end
  argi = argi + 2 + 3 * count
end
return conflicts
"""

# Removes one object atomically. KEYS: objects, order. ARGV: uid. Returns 1 if it existed.
_REMOVE = """
local removed = redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
return removed
"""


def _reject_ext(code: int, data: bytes) -> Any:
    raise ValueError(f"msgpack extension type {code} is not allowed in a shardsync record")


@dataclass(frozen=True)
class NamespaceInfo:
    """A store namespace found in Redis (see ``list_namespaces``)."""

    store_id: str
    created: float
    last_used: float
    ttl: Optional[int]


def _describe_client(client: Any) -> str:
    """Host and port (or socket path) of a client, for error messages; never the password."""
    try:
        kwargs = client.connection_pool.connection_kwargs
    except AttributeError:
        return "an unknown Redis server"
    if kwargs.get("path"):
        return f"unix socket {kwargs['path']} (db {kwargs.get('db', 0)})"
    return f"{kwargs.get('host', 'localhost')}:{kwargs.get('port', 6379)} (db {kwargs.get('db', 0)})"


class RedisStore(BaseStore):
    """Adapter store in Redis, shared between processes (see the module documentation for the write model)."""

    def __init__(
        self,
        *args: Any,
        store_id: Optional[str] = None,
        host: Optional[str] = None,
        port: int = 6379,
        url: Optional[str] = None,
        db: int = 0,
        password: Optional[str] = None,
        client: Optional[Redis] = None,
        ttl: Optional[int] = None,
        batch_size: int = 1000,
        **kwargs: Any,
    ) -> None:
        """Connect to Redis and open (or create) the namespace ``store_id``.

        Args:
            *args: Passed to BaseStore.
            store_id: Namespace of this store; a new random one when not given. Stores with the same id
                (in any process) share their data.
            host: Redis host (with ``port``, ``db``, ``password``); not together with ``url``.
            port: Redis port.
            url: ``redis://`` or ``rediss://`` (TLS) URL, e.g. ``rediss://:secret@cache.example:6380/2``.
            db: Database number, when not given in the URL.
            password: Password, when not given in the URL.
            client: An existing ``redis.Redis`` client to use instead of connecting.
            ttl: If set, every key of the namespace expires this many seconds after the last write.
            batch_size: Number of buffered object writes that triggers a flush.
            **kwargs: Passed to BaseStore (``adapter``, ``name``).

        Raises:
            ValueError: if both ``url`` and ``host`` are given, or ``batch_size`` < 1.
            ObjectStoreException: if Redis cannot be reached (naming host and port, never the password).
        """
        super().__init__(*args, **kwargs)
        if url and host:
            raise ValueError("'url' and 'host' arguments can't be specified together.")
        if batch_size < 1:
            raise ValueError(f"batch_size must be 1 or more, not {batch_size}")
        if client is not None:
            self._client = client
        elif url:
            # A database or password in the URL wins over the keyword arguments.
            options: Dict[str, Any] = {"db": db}
            if password is not None:
                options["password"] = password
            self._client = Redis.from_url(url, **options)
        elif host:
            self._client = Redis(host=host, port=port, db=db, password=password)
        else:
            raise ObjectStoreException("Redis store is unavailable: neither 'host', 'url' nor 'client' was given.")
        self._where = _describe_client(self._client)
        self._store_id = store_id if store_id else uuid.uuid4().hex
        self._ttl = ttl
        self._batch_size = batch_size
        self._pending: Dict[Tuple[str, str], Tuple[DiffSyncModel, bool]] = {}
        self._session_depth = 0
        self._cache: Optional[Dict[str, Dict[str, DiffSyncModel]]] = None
        with self._errors("connect"):
            self._client.ping()
            self._write_batch = self._client.register_script(_WRITE_BATCH)
            self._remove = self._client.register_script(_REMOVE)
            now = time.time()
            pipe = self._client.pipeline(transaction=True)
            pipe.hsetnx(keys.meta_key(self._store_id), "created", now)
            pipe.hset(keys.meta_key(self._store_id), mapping={"last_used": now, "ttl": ttl or 0})
            if ttl:
                pipe.expire(keys.meta_key(self._store_id), ttl)
            pipe.execute()

    def __str__(self) -> str:
        return f"{self.name} ({self._store_id})"

    @property
    def store_id(self) -> str:
        """Namespace of this store."""
        return self._store_id

    @property
    def client(self) -> Redis:
        """The Redis client in use."""
        return self._client

    @contextmanager
    def _errors(self, doing: str) -> Iterator[None]:
        """Turn Redis failures into ObjectStoreException naming the server (never the password)."""
        try:
            yield
        except RedisError as err:
            raise ObjectStoreException(
                f"Redis store {self._store_id} at {self._where} failed to {doing}: {type(err).__name__}: {err}"
            ) from err

    # ------------------------------------------------------------------------------------------------
    # Records
    # ------------------------------------------------------------------------------------------------

    def _model_class(self, modelname: str) -> Type[DiffSyncModel]:
        """The adapter's model class for a type name: the only classes records are ever read as."""
        from core.model import DiffSyncModel  # pylint: disable=import-outside-toplevel

        cls = getattr(self.adapter, modelname, None) if self.adapter is not None else None
        if not (isinstance(cls, type) and issubclass(cls, DiffSyncModel)):
            raise ObjectStoreException(
                f"Redis store {self._store_id}: no model class for {modelname!r} on adapter {self.adapter!r}"
            )
        return cls

    @staticmethod
    def _encode(obj: DiffSyncModel) -> bytes:
        fields = BaseModel.model_dump(obj, mode="json", exclude={"adapter"})
        return msgpack.packb([RECORD_VERSION, fields, sorted(obj.__pydantic_fields_set__)], use_bin_type=True)

    def _decode(self, modelname: str, cls: Type[DiffSyncModel], uid: str, raw: bytes) -> DiffSyncModel:
        where = f"{keys.objects_key(self._store_id, modelname)} field {uid!r}"
        try:
            record = msgpack.unpackb(raw, raw=False, strict_map_key=True, ext_hook=_reject_ext, **_UNPACK_LIMITS)
        except Exception as err:  # noqa: BLE001 - any decoding failure is reported the same way
            raise ObjectStoreException(
                f"Stored value at {where} is not a shardsync record for model {cls.__name__} "
                f"({type(err).__name__}: {err})"
            ) from None
        if not (
            isinstance(record, list)
            and len(record) == 3
            and record[0] == RECORD_VERSION
            and isinstance(record[1], dict)
            and isinstance(record[2], list)
        ):
            raise ObjectStoreException(
                f"Stored value at {where} is not a shardsync record for model {cls.__name__} "
                f"(expected [version {RECORD_VERSION}, fields, fields_set])"
            )
        fields = record[1]
        try:
            obj = cls(**fields)
        except ValidationError as err:
            raise ObjectStoreException(
                f"Stored value at {where} does not validate as model {cls.__name__}: {err}"
            ) from None
        except TypeError as err:
            raise ObjectStoreException(
                f"Stored value at {where} has unusable fields for model {cls.__name__}: {err}"
            ) from None
        from core.model import _shared_field_set  # pylint: disable=import-outside-toplevel

        names = {name for name in record[2] if isinstance(name, str)}
        shared = _shared_field_set(names)
        object.__setattr__(obj, "__pydantic_fields_set__", shared if shared is not None else names)
        obj.__dict__["adapter"] = self.adapter
        return obj

    # ------------------------------------------------------------------------------------------------
    # Writes
    # ------------------------------------------------------------------------------------------------

    def _queue(self, obj: DiffSyncModel, new: bool) -> None:
        key = (obj.get_type(), obj.get_unique_id())
        previous = self._pending.get(key)
        self._pending[key] = (obj, new or (previous is not None and previous[1]))
        if self._cache is not None:
            loaded = self._cache.get(key[0])
            if loaded is not None:
                loaded[key[1]] = obj
        if len(self._pending) >= self._batch_size:
            self.flush()

    def flush(self) -> None:
        """Send the buffered writes to Redis now, atomically.

        Raises:
            ObjectAlreadyExists: if an object was added whose uid already holds a different object in Redis
                (added by another process or before); the other objects of the batch are written.
            ObjectStoreException: if Redis fails.
        """
        if not self._pending:
            return
        pending = self._pending
        self._pending = {}
        by_type: Dict[str, List[Tuple[str, DiffSyncModel, bool]]] = {}
        for (modelname, uid), (obj, new) in pending.items():
            by_type.setdefault(modelname, []).append((uid, obj, new))
        script_keys: List[str] = [keys.types_key(self._store_id), keys.seq_key(self._store_id)]
        args: List[Any] = [len(by_type)]
        for modelname, entries in by_type.items():
            script_keys.append(keys.objects_key(self._store_id, modelname))
            script_keys.append(keys.order_key(self._store_id, modelname))
            args.append(modelname)
            args.append(len(entries))
            for uid, obj, new in entries:
                args.append(uid)
                args.append(self._encode(obj))
                args.append("1" if new else "0")
        with self._errors("write"):
            conflicts = self._write_batch(keys=script_keys, args=args)
            self._touch(list(by_type))
        if conflicts:
            pairs = [
                (conflicts[i].decode(), conflicts[i + 1].decode()) for i in range(0, len(conflicts), 2)
            ]
            first_model, first_uid = pairs[0]
            rejected = pending[(first_model, first_uid)][0]
            if self._cache is not None:
                for modelname, _ in pairs:
                    self._cache.pop(modelname, None)
            listing = ", ".join(f"{model} {uid}" for model, uid in pairs[:10])
            more = f" and {len(pairs) - 10} more" if len(pairs) > 10 else ""
            raise ObjectAlreadyExists(f"Object {first_uid} already present ({listing}{more})", rejected)

    def _touch(self, modelnames: List[str]) -> None:
        """Record the namespace as used now and renew the expiry of its keys when a TTL is set."""
        pipe = self._client.pipeline(transaction=False)
        pipe.hset(keys.meta_key(self._store_id), "last_used", time.time())
        if self._ttl:
            for key in (keys.meta_key(self._store_id), keys.types_key(self._store_id), keys.seq_key(self._store_id)):
                pipe.expire(key, self._ttl)
            for modelname in modelnames:
                pipe.expire(keys.objects_key(self._store_id, modelname), self._ttl)
                pipe.expire(keys.order_key(self._store_id, modelname), self._ttl)
        pipe.execute()

    def add(self, *, obj: DiffSyncModel) -> None:
        """Add an object (written at the next flush; see BaseStore.add).

        Raises:
            ObjectAlreadyExists: if a different object with the same uid is pending or known in this session
                (immediately), or stored in Redis (at the flush that writes it).
        """
        modelname = obj.get_type()
        uid = obj.get_unique_id()
        entry = self._pending.get((modelname, uid))
        if entry is not None:
            if entry[0] is obj:
                return
            raise ObjectAlreadyExists(f"Object {uid} already present", obj)
        if self._cache is not None:
            loaded = self._cache.get(modelname)
            if loaded is not None and uid in loaded:
                if loaded[uid] is obj:
                    return
                raise ObjectAlreadyExists(f"Object {uid} already present", obj)
        if not obj.adapter:
            obj.adapter = self.adapter
        self._queue(obj, True)

    def update(self, *, obj: DiffSyncModel) -> None:
        """Store the current state of ``obj`` under its uid (written at the next flush)."""
        self._queue(obj, False)

    def _after_change(self, obj: DiffSyncModel, created: bool) -> None:
        """Persist an object changed in place by the engine (children, sync updates)."""
        self._queue(obj, False)

    def remove_item(self, modelname: str, uid: str) -> None:
        """Remove one object by type name and uid.

        Raises:
            ObjectNotFound: if the object is not present.
        """
        self.flush()
        with self._errors("remove"):
            removed = self._remove(
                keys=[keys.objects_key(self._store_id, modelname), keys.order_key(self._store_id, modelname)],
                args=[uid],
            )
        if self._cache is not None and modelname in self._cache:
            self._cache[modelname].pop(uid, None)
        if not removed:
            raise ObjectNotFound(f"{modelname} {uid} not present in {self}")

    def clear(self) -> None:
        """Delete every key of this namespace (and forget buffered writes)."""
        self._pending = {}
        if self._cache is not None:
            self._cache = {}
        with self._errors("clear"):
            names = [name.decode() for name in self._client.smembers(keys.types_key(self._store_id))]
            doomed = [keys.types_key(self._store_id), keys.seq_key(self._store_id), keys.meta_key(self._store_id)]
            for modelname in names:
                doomed.append(keys.objects_key(self._store_id, modelname))
                doomed.append(keys.order_key(self._store_id, modelname))
            self._client.unlink(*doomed)

    # ------------------------------------------------------------------------------------------------
    # Reads
    # ------------------------------------------------------------------------------------------------

    def _load_type(self, modelname: str) -> Dict[str, DiffSyncModel]:
        """All objects of a type in insertion order, read in one round trip."""
        cls = self._model_class(modelname)
        with self._errors("read"):
            pipe = self._client.pipeline(transaction=True)
            pipe.zrange(keys.order_key(self._store_id, modelname), 0, -1)
            pipe.hgetall(keys.objects_key(self._store_id, modelname))
            order, records = pipe.execute()
        decode = self._decode
        result: Dict[str, DiffSyncModel] = {}
        for raw_uid in order:
            raw = records.get(raw_uid)
            if raw is not None:
                uid = raw_uid.decode()
                result[uid] = decode(modelname, cls, uid, raw)
        return result

    def _uid_map(self, modelname: str) -> Optional[Mapping[str, DiffSyncModel]]:
        if self._cache is None:
            return None
        loaded = self._cache.get(modelname)
        if loaded is None:
            self.flush()
            loaded = self._cache[modelname] = self._load_type(modelname)
        return loaded

    @contextmanager
    def _session(self) -> Iterator[None]:
        """Read objects in bulk and keep them until the outermost session ends; flush writes at the end."""
        self._session_depth += 1
        if self._session_depth == 1:
            self.flush()
            self._cache = {}
        try:
            yield
        finally:
            self._session_depth -= 1
            if self._session_depth == 0:
                try:
                    self.flush()
                finally:
                    self._cache = None

    def get_all_model_names(self) -> Set[str]:
        """Get the names of all model types held in the store."""
        self.flush()
        with self._errors("read"):
            return {name.decode() for name in self._client.smembers(keys.types_key(self._store_id))}

    def get(self, *, model: ModelRef, identifier: Union[str, Dict]) -> DiffSyncModel:
        """Get one object by its unique id (see BaseStore.get)."""
        object_class, modelname = self._get_object_class_and_model(model)
        uid = self._get_uid(model, object_class, identifier)
        if self._cache is not None:
            loaded = self._uid_map(modelname)
            obj = loaded.get(uid) if loaded is not None else None
            if obj is None:
                raise ObjectNotFound(f"{modelname} {uid} not present in {self}")
            return obj
        self.flush()
        with self._errors("read"):
            raw = self._client.hget(keys.objects_key(self._store_id, modelname), uid)
        if raw is None:
            raise ObjectNotFound(f"{modelname} {uid} not present in {self}")
        return self._decode(modelname, self._model_class(modelname), uid, raw)

    def get_all(self, *, model: ModelRef) -> List[DiffSyncModel]:
        """Get all objects of one type, in the order they were added."""
        modelname = model if isinstance(model, str) else model.get_type()
        if self._cache is not None:
            return list(self._uid_map(modelname).values())  # type: ignore[union-attr]
        self.flush()
        return list(self._load_type(modelname).values())

    def get_by_uids(self, *, uids: List[str], model: ModelRef) -> List[DiffSyncModel]:
        """Get several objects of one type by their unique ids, in one round trip."""
        modelname = model if isinstance(model, str) else model.get_type()
        if self._cache is not None:
            loaded = self._uid_map(modelname)
            try:
                return [loaded[uid] for uid in uids]  # type: ignore[index]
            except KeyError as err:
                raise ObjectNotFound(f"{modelname} {err.args[0]} not present in {self}") from None
        if not uids:
            return []
        self.flush()
        cls = self._model_class(modelname)
        with self._errors("read"):
            records = self._client.hmget(keys.objects_key(self._store_id, modelname), uids)
        result = []
        for uid, raw in zip(uids, records, strict=True):
            if raw is None:
                raise ObjectNotFound(f"{modelname} {uid} not present in {self}")
            result.append(self._decode(modelname, cls, uid, raw))
        return result

    def count(self, *, model: Optional[ModelRef] = None) -> int:
        """Count the objects of one type, or of all types, from Redis's own counts (no scan)."""
        self.flush()
        with self._errors("count"):
            if model:
                modelname = model if isinstance(model, str) else model.get_type()
                return int(self._client.hlen(keys.objects_key(self._store_id, modelname)))
            names = [name.decode() for name in self._client.smembers(keys.types_key(self._store_id))]
            if not names:
                return 0
            pipe = self._client.pipeline(transaction=False)
            for modelname in names:
                pipe.hlen(keys.objects_key(self._store_id, modelname))
            return sum(int(value) for value in pipe.execute())


# ----------------------------------------------------------------------------------------------------
# Namespace housekeeping
# ----------------------------------------------------------------------------------------------------


def list_namespaces(client: Redis) -> List[NamespaceInfo]:
    """List the store namespaces present in a Redis database (an administrative scan, not a hot path)."""
    infos = []
    prefix = f"{keys.ROOT}:"
    for raw_key in client.scan_iter(match=keys.META_PATTERN, count=1000):
        key = raw_key.decode() if isinstance(raw_key, bytes) else raw_key
        store_id = key[len(prefix) : -len(":meta")]
        meta = {k.decode(): v.decode() for k, v in client.hgetall(key).items()}
        infos.append(
            NamespaceInfo(
                store_id=store_id,
                created=float(meta.get("created", 0) or 0),
                last_used=float(meta.get("last_used", 0) or 0),
                ttl=int(float(meta.get("ttl", 0) or 0)) or None,
            )
        )
    return sorted(infos, key=lambda info: info.last_used)


def remove_namespace(client: Redis, store_id: str) -> int:
    """Delete every key of one namespace; returns the number of keys removed."""
    removed = 0
    batch: List[Any] = []
    for key in client.scan_iter(match=f"{keys.namespace(store_id)}*", count=1000):
        batch.append(key)
        if len(batch) >= 500:
            removed += int(client.unlink(*batch))
            batch = []
    if batch:
        removed += int(client.unlink(*batch))
    return removed


def remove_stale_namespaces(client: Redis, older_than: float, now: Optional[float] = None) -> List[str]:
    """Delete the namespaces not written to for ``older_than`` seconds; returns their store ids."""
    limit = (time.time() if now is None else now) - older_than
    removed = []
    for info in list_namespaces(client):
        if info.last_used < limit:
            remove_namespace(client, info.store_id)
            removed.append(info.store_id)
    return removed
