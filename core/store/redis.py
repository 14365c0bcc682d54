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

import re
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Dict, Iterator, List, Mapping, Optional, Set, Tuple, Type, Union

import msgpack
from pydantic import BaseModel, ValidationError
from redis import Redis
from redis.exceptions import RedisError

from core import keys
from core._fields import json_native_model
from core.exceptions import ObjectAlreadyExists, ObjectNotFound, ObjectStoreException
from core.model import _SHARED_FIELD_SET_IDS, _shared_field_set
from core.store import BaseStore, ModelRef

if TYPE_CHECKING:
    from core.model import DiffSyncModel

RECORD_VERSION = 1
_UNPACK_LIMITS = {"max_bin_len": 64 << 20, "max_str_len": 64 << 20, "max_array_len": 1 << 20, "max_map_len": 1 << 20}

# Writes a batch atomically (one script call: all of it or, on a dropped connection, none of it).
# KEYS: types, seq, meta, then objects/order key pairs per type, in the order of the batch.
# ARGV: now, ttl (0: none), batch: msgpack [[model, [uid, record, mode, uid, record, mode, ...]], ...] with
# mode "n" (new: must not hold a different record), "p" (put), "r" (re-added: put, and moved to the end of
# the insertion order), "c" (changed in place: put only if still present, so that a stale reference to an
# object removed meanwhile, e.g. a deleted parent losing a child, never brings it back) or "d" (delete).
# ARGV[4] is the namespace prefix (for TTL renewal of every key).
# One packed argument
# instead of three per object keeps the client's per-argument work out of the way.
# A new entry whose uid already holds a different record is not written and is returned as a conflict.
_WRITE_BATCH = """
local now, ttl, prefix = ARGV[1], tonumber(ARGV[2]), ARGV[4]
local batch = cmsgpack.unpack(ARGV[3])
-- A command failing half-way would leave a half-written batch (scripts are not rolled back): check first
-- that every key is absent or of the type it must be, so that no write below can fail.
local function expect(key, kind)
  local found = redis.call('TYPE', key).ok
  if found ~= 'none' and found ~= kind then
    return redis.error_reply('WRONGTYPE key ' .. key .. ' holds a ' .. found .. ', not a ' .. kind)
  end
end
local bad = expect(KEYS[1], 'set') or expect(KEYS[2], 'string') or expect(KEYS[3], 'hash')
if bad then return bad end
for t = 1, #batch do
  bad = expect(KEYS[2 + 2 * t], 'hash') or expect(KEYS[3 + 2 * t], 'zset')
  if bad then return bad end
end
local conflicts = {}
local total = 0
for t, group in ipairs(batch) do
  local objkey = KEYS[2 + 2 * t]
  local entries = group[2]
  for i = 1, #entries, 3 do
    local mode = entries[i + 2]
    if mode == 'n' then
      local current = redis.call('HGET', objkey, entries[i])
      if current and current ~= entries[i + 1] then
        table.insert(conflicts, group[1])
        table.insert(conflicts, entries[i])
        entries[i + 2] = 'x'
      else
        total = total + 1
      end
    elseif mode == 'p' or mode == 'r' then
      total = total + 1
    elseif mode == 'c' and redis.call('HEXISTS', objkey, entries[i]) == 0 then
      entries[i + 2] = 'x'
    end
  end
end
local position = 0
if total > 0 then position = redis.call('INCRBY', KEYS[2], total) - total end
for t, group in ipairs(batch) do
  local objkey, orderkey = KEYS[2 + 2 * t], KEYS[3 + 2 * t]
  local entries = group[2]
  redis.call('SADD', KEYS[1], group[1])
  for i = 1, #entries, 3 do
    local uid, mode = entries[i], entries[i + 2]
    if mode == 'd' then
      redis.call('HDEL', objkey, uid)
      redis.call('ZREM', orderkey, uid)
    elseif mode == 'c' then
      redis.call('HSET', objkey, uid, entries[i + 1])
    elseif mode ~= 'x' then
      position = position + 1
      redis.call('HSET', objkey, uid, entries[i + 1])
      if mode == 'r' then
        redis.call('ZADD', orderkey, position, uid)
      else
        redis.call('ZADD', orderkey, 'NX', position, uid)
      end
    end
  end
end
redis.call('HSET', KEYS[3], 'last_used', now)
if ttl > 0 then
  -- Every key of the namespace, not only those written now: the namespace expires as a whole.
  redis.call('EXPIRE', KEYS[1], ttl)
  redis.call('EXPIRE', KEYS[2], ttl)
  redis.call('EXPIRE', KEYS[3], ttl)
  for _, model in ipairs(redis.call('SMEMBERS', KEYS[1])) do
    redis.call('EXPIRE', prefix .. 'obj:' .. model, ttl)
    redis.call('EXPIRE', prefix .. 'order:' .. model, ttl)
  end
end
return conflicts
"""

# Removes one object atomically. KEYS: objects, order, meta. ARGV: uid, now. Returns 1 if it existed.
_REMOVE = """
local removed = redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('HSET', KEYS[3], 'last_used', ARGV[2])
return removed
"""

_NEW, _PUT, _DEL, _READD, _CHANGE = "n", "p", "d", "r", "c"


_packb = msgpack.Packer(use_bin_type=True, autoreset=True).pack
_unpackb = msgpack.unpackb
# Redis's Lua msgpack library knows only the old raw type: pack the batch without the bin type.
_pack_for_lua = msgpack.Packer(use_bin_type=False, autoreset=True).pack
_object_setattr = object.__setattr__


def _big_ints_as_strings(value: Any) -> Any:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and not -(2**63) <= value < 2**64:
        return str(value)
    if isinstance(value, dict):
        return {key: _big_ints_as_strings(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_big_ints_as_strings(item) for item in value]
    return value


def _is_shared(fields_set: Set[str]) -> bool:
    return id(fields_set) in _SHARED_FIELD_SET_IDS


def _reject_ext(code: int, data: bytes) -> Any:
    raise ValueError(f"msgpack extension type {code} is not allowed in a shardsync record")


@dataclass(frozen=True)
class NamespaceInfo:
    """A store namespace found in Redis (see ``list_namespaces``)."""

    store_id: str
    created: float
    last_used: float
    ttl: Optional[int]


_STORE_ID = re.compile(r"^[A-Za-z0-9_.\-]{1,200}$")


def check_store_id(store_id: str) -> str:
    """Return ``store_id`` if it is usable as a namespace (no ``:`` and no glob characters), else raise ValueError."""
    if not isinstance(store_id, str) or not _STORE_ID.match(store_id):
        raise ValueError(
            f"store_id {store_id!r} is not valid: use 1 to 200 letters, digits, '_', '.' or '-' "
            "(it becomes part of Redis key names and patterns)"
        )
    return store_id


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
        lazy_reads: bool = False,
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
            lazy_reads: During a diff or sync session, read objects one by one on first use (and keep them)
                instead of whole types at once: for a process that touches a few subtrees of a large store,
                such as a worker applying one shard of a job.
            **kwargs: Passed to BaseStore (``adapter``, ``name``).

        Raises:
            ValueError: if both ``url`` and ``host`` are given, ``batch_size`` < 1, or ``store_id`` has characters
                other than letters, digits and ``_.-`` (it is part of every key name and of SCAN patterns).
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
        self._store_id = check_store_id(store_id) if store_id else uuid.uuid4().hex
        self._ttl = ttl
        self._batch_size = batch_size
        self._lazy_reads = lazy_reads
        self._pending: Dict[Tuple[str, str], Tuple[Optional[DiffSyncModel], str]] = {}
        self._fast_encode: Dict[type, bool] = {}
        self._sorted_sets: Dict[int, List[str]] = {}
        self._field_sets: Dict[Tuple[str, ...], Set[str]] = {}
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

    def close(self) -> None:
        """Write what is still buffered; call it (or use the store as a context manager) before exiting."""
        self.flush()

    def __enter__(self) -> RedisStore:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.flush()

    def _after_load(self) -> None:
        self.flush()

    def _adapter_truthy(self, obj: DiffSyncModel) -> bool:
        # An adapter's truth value is its length, which for Redis means a round trip to count everything:
        # "has an adapter" is what is meant.
        return obj.adapter is not None

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

    def _encode(self, obj: DiffSyncModel) -> bytes:
        cls = obj.__class__
        fast = self._fast_encode.get(cls)
        if fast is None:
            fast = self._fast_encode[cls] = json_native_model(cls)
        if fast:
            # Every field is JSON-native already (str, int, bool, lists of those...): skip model_dump.
            fields = {name: value for name, value in obj.__dict__.items() if name != "adapter"}
            flags = fields.get("model_flags")
            if flags is not None:
                fields["model_flags"] = flags.value
        else:
            fields = BaseModel.model_dump(obj, mode="json", exclude={"adapter"})
        fields_set = obj.__pydantic_fields_set__
        shared = _is_shared(fields_set)
        names = self._sorted_sets.get(id(fields_set)) if shared else None
        if names is None:
            names = sorted(fields_set)
            if shared:
                self._sorted_sets[id(fields_set)] = names
        try:
            return _packb([RECORD_VERSION, fields, names])
        except OverflowError:
            # msgpack integers stop at 64 bits; larger ones travel as strings and validate back into ints.
            return _packb([RECORD_VERSION, _big_ints_as_strings(fields), names])

    def _decode(self, modelname: str, cls: Type[DiffSyncModel], uid: str, raw: bytes) -> DiffSyncModel:
        try:
            record = _unpackb(raw, raw=False, strict_map_key=True, ext_hook=_reject_ext, **_UNPACK_LIMITS)
        except Exception as err:  # noqa: BLE001 - any decoding failure is reported the same way
            raise ObjectStoreException(
                f"Stored value at {self._where_is(modelname, uid)} is not a shardsync record for model "
                f"{cls.__name__} ({type(err).__name__}: {err})"
            ) from None
        if not (
            record.__class__ is list
            and len(record) == 3
            and record[0] == RECORD_VERSION
            and record[1].__class__ is dict
            and record[2].__class__ is list
        ):
            raise ObjectStoreException(
                f"Stored value at {self._where_is(modelname, uid)} is not a shardsync record for model "
                f"{cls.__name__} (expected [version {RECORD_VERSION}, fields, fields_set])"
            )
        obj = cls.__new__(cls)
        try:
            # What model_validate does, into the new instance: validation through the adapter's own class.
            cls.__pydantic_validator__.validate_python(record[1], self_instance=obj)
        except ValidationError as err:
            raise ObjectStoreException(
                f"Stored value at {self._where_is(modelname, uid)} does not validate as model {cls.__name__}: {err}"
            ) from None
        names = tuple(record[2])
        shared_set = self._field_sets.get(names)
        if shared_set is None:
            if not all(isinstance(name, str) for name in names):
                raise ObjectStoreException(
                    f"Stored value at {self._where_is(modelname, uid)} has a malformed fields_set for model "
                    f"{cls.__name__}"
                )
            shared_set = _shared_field_set(set(names))
            if shared_set is None:
                shared_set = set(names)
            else:
                self._field_sets[names] = shared_set
        _object_setattr(obj, "__pydantic_fields_set__", shared_set)
        obj.__dict__["adapter"] = self.adapter
        actual = obj.get_unique_id()
        if actual != uid:
            raise ObjectStoreException(
                f"Stored value at {self._where_is(modelname, uid)} is a {cls.__name__} with unique id {actual!r}, "
                f"not {uid!r}"
            )
        return obj

    def _where_is(self, modelname: str, uid: str) -> str:
        return f"{keys.objects_key(self._store_id, modelname)} field {uid!r}"

    # ------------------------------------------------------------------------------------------------
    # Writes
    # ------------------------------------------------------------------------------------------------

    def _queue(self, modelname: str, uid: str, obj: Optional[DiffSyncModel], mode: str) -> None:
        """Buffer one write; later writes to the same object replace earlier ones, keeping their net effect."""
        key = (modelname, uid)
        previous = self._pending.get(key)
        if mode == _CHANGE:
            if previous is not None:
                if previous[1] == _DEL:
                    return  # removed meanwhile: a stale reference changed, nothing to write
                mode = previous[1]  # new, re-added, put or changed: keep what the earlier write meant
            elif self._cache is not None:
                loaded = self._cache.get(modelname)
                if loaded is not None and loaded.get(uid) is None:
                    return  # not (or no longer) stored: nothing to write
        if previous is not None and mode == _PUT and previous[0] is obj and obj is not None:
            return  # already buffered: its state when flushed is what gets written
        if previous is not None:
            del self._pending[key]
            before = previous[1]
            if mode == _DEL and before == _NEW:
                mode = ""  # added then removed before reaching Redis: nothing to write
            elif mode == _PUT and before in (_NEW, _READD):
                mode = before
            elif mode == _NEW and before == _DEL:
                mode = _READD  # removed, then added again: replaces it, at the end of the order
        if mode:
            self._pending[key] = (obj, mode)
        if self._cache is not None:
            loaded = self._cache.get(modelname)
            if loaded is not None:
                if mode == _DEL or not mode:
                    loaded.pop(uid, None)
                else:
                    loaded[uid] = obj  # type: ignore[assignment]
        if len(self._pending) >= self._batch_size:
            self.flush()

    def flush(self) -> None:
        """Send the buffered writes to Redis now, in one atomic script call.

        Raises:
            ObjectAlreadyExists: if an object was added whose uid already holds a different object in Redis
                (added by another process or before); the rest of the batch is written.
            ObjectStoreException: if Redis fails (then nothing of the batch was written; it stays buffered).
        """
        batch = self._take_batch()
        if batch is None:
            return
        pending, script_keys, args = batch
        try:
            with self._errors("write"):
                conflicts = self._write_batch(keys=script_keys, args=args)
        except ObjectStoreException:
            self._restore(pending)
            raise
        self._raise_conflicts(pending, conflicts)

    def flush_with(self, commands: Callable[[Any], None]) -> List[Any]:
        """Send the buffered writes and some commands of the caller's in one MULTI/EXEC transaction.

        A distributed runner records "this operation is done" together with the operation's own writes, so
        that neither can reach Redis without the other on a dropped connection.

        Args:
            commands: Called with the transaction's pipeline to queue the caller's commands.

        Returns:
            The results of the caller's commands.

        Raises:
            ObjectAlreadyExists, ObjectStoreException: as ``flush`` (a rejected script write does not stop
                the caller's commands, which Redis runs all the same).
        """
        batch = self._take_batch()
        pipe = self._client.pipeline(transaction=True)
        if batch is not None:
            self._write_batch(keys=batch[1], args=batch[2], client=pipe)
        commands(pipe)
        try:
            with self._errors("write"):
                results = pipe.execute()
        except ObjectStoreException:
            if batch is not None:
                self._restore(batch[0])
            raise
        if batch is None:
            return list(results)
        self._raise_conflicts(batch[0], results[0])
        return list(results[1:])

    def _take_batch(self) -> Optional[Tuple[Dict[Any, Any], List[str], List[Any]]]:
        """Encode the buffered writes into one script call's keys and arguments, emptying the buffer."""
        if not self._pending:
            return None
        pending = self._pending
        by_type: Dict[str, List[Any]] = {}
        encode = self._encode
        for (modelname, uid), (obj, mode) in list(pending.items()):
            try:
                record = b"" if obj is None else encode(obj)
            except Exception as err:  # noqa: BLE001 - whatever fails to encode is reported, the rest kept
                del pending[(modelname, uid)]
                raise ObjectStoreException(
                    f"Redis store {self._store_id}: {modelname} {uid} cannot be stored "
                    f"({type(err).__name__}: {err}); it was not written, the other pending writes are kept"
                ) from err
            flat = by_type.setdefault(modelname, [])
            flat.append(uid)
            flat.append(record)
            flat.append(mode)
        self._pending = {}
        sid = self._store_id
        script_keys: List[str] = [keys.types_key(sid), keys.seq_key(sid), keys.meta_key(sid)]
        groups: List[Any] = []
        for modelname, flat in by_type.items():
            script_keys.append(keys.objects_key(sid, modelname))
            script_keys.append(keys.order_key(sid, modelname))
            groups.append([modelname, flat])
        args = [time.time(), self._ttl or 0, _pack_for_lua(groups), keys.namespace(sid)]
        return pending, script_keys, args

    def _restore(self, pending: Dict[Any, Any]) -> None:
        """Nothing of a batch reached Redis: keep it for the next flush rather than lose it."""
        pending.update(self._pending)
        self._pending = pending

    def _raise_conflicts(self, pending: Dict[Any, Any], conflicts: Any) -> None:
        if conflicts:
            pairs = [(conflicts[i].decode(), conflicts[i + 1].decode()) for i in range(0, len(conflicts), 2)]
            first_model, first_uid = pairs[0]
            rejected = pending[(first_model, first_uid)][0]
            if self._cache is not None:
                for modelname, _ in pairs:
                    self._cache.pop(modelname, None)
            listing = ", ".join(f"{model} {uid}" for model, uid in pairs[:10])
            more = f" and {len(pairs) - 10} more" if len(pairs) > 10 else ""
            raise ObjectAlreadyExists(f"Object {first_uid} already present ({listing}{more})", rejected)

    def add(self, *, obj: DiffSyncModel) -> None:
        """Add an object (written at the next flush; see BaseStore.add).

        Raises:
            ObjectAlreadyExists: if a different object with the same uid is pending or known in this session
                (immediately), or stored in Redis (at the flush that writes it).
        """
        modelname = obj.get_type()
        uid = obj.get_unique_id()
        entry = self._pending.get((modelname, uid))
        if entry is not None and entry[1] != _DEL:
            if entry[0] is obj:
                return
            raise ObjectAlreadyExists(f"Object {uid} already present", obj)
        if self._cache is not None:
            loaded = self._cache.get(modelname)
            if loaded is not None and uid in loaded:
                if loaded[uid] is obj:
                    return
                raise ObjectAlreadyExists(f"Object {uid} already present", obj)
        if obj.adapter is None:
            obj.adapter = self.adapter
        self._queue(modelname, uid, obj, _NEW)

    def update(self, *, obj: DiffSyncModel) -> None:
        """Store the current state of ``obj`` under its uid (written at the next flush)."""
        self._queue(obj.get_type(), obj.get_unique_id(), obj, _PUT)

    def _after_change(self, obj: DiffSyncModel, created: bool) -> None:
        """Persist an object changed in place by the engine (children, sync updates), if it is still stored."""
        self._queue(obj.get_type(), obj.get_unique_id(), obj, _CHANGE)

    def remove_item(self, modelname: str, uid: str) -> None:
        """Remove one object by type name and uid (buffered during a session, immediate otherwise).

        Raises:
            ObjectNotFound: if the object is not present.
        """
        if self._cache is not None:
            loaded = self._uid_map(modelname)
            if loaded is None or uid not in loaded:
                raise ObjectNotFound(f"{modelname} {uid} not present in {self}")
            self._queue(modelname, uid, None, _DEL)
            return
        self.flush()
        sid = self._store_id
        with self._errors("remove"):
            removed = self._remove(
                keys=[keys.objects_key(sid, modelname), keys.order_key(sid, modelname), keys.meta_key(sid)],
                args=[uid, time.time()],
            )
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
            if self._lazy_reads:
                loaded = self._cache[modelname] = _LazyTypeMap(self, modelname)  # type: ignore[assignment]
            else:
                self.flush()
                loaded = self._cache[modelname] = self._load_type(modelname)
        return loaded

    def prefetch(self, modelname: str, uids: List[str]) -> None:
        """Read these objects in one round trip into a lazy session, so later look-ups cost nothing.

        Does nothing outside a session or in a session that reads whole types anyway.
        """
        if self._cache is None or not self._lazy_reads or not uids:
            return
        loaded = self._uid_map(modelname)
        if not isinstance(loaded, _LazyTypeMap):
            return
        wanted = [uid for uid in dict.fromkeys(uids) if not loaded.knows(uid)]
        if not wanted:
            return
        self.flush()
        cls = self._model_class(modelname)
        with self._errors("read"):
            records = self._client.hmget(keys.objects_key(self._store_id, modelname), wanted)
        for uid, raw in zip(wanted, records, strict=True):
            loaded.remember(uid, None if raw is None else self._decode(modelname, cls, uid, raw))

    def _read_one(self, modelname: str, uid: str) -> Optional[DiffSyncModel]:
        """One object straight from Redis (after a flush), or None."""
        self.flush()
        with self._errors("read"):
            raw = self._client.hget(keys.objects_key(self._store_id, modelname), uid)
        return None if raw is None else self._decode(modelname, self._model_class(modelname), uid, raw)

    @contextmanager  # type: ignore[override]
    def _session(self) -> Iterator[None]:
        """Read objects in bulk and keep them until the outermost session ends; flush writes at the end."""
        if self._session_depth == 0:
            self.flush()  # if this raises, no session was opened
            self._cache = {}
        self._session_depth += 1
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


class _LazyTypeMap:
    """A session's objects of one type, read from Redis one uid at a time on first use.

    Absent uids are remembered too, so a lookup costs at most one round trip per session; iterating reads
    the whole type once (what a non-lazy session does up front).
    """

    __slots__ = ("_store", "_modelname", "_known", "_complete")

    def __init__(self, store: RedisStore, modelname: str) -> None:
        self._store = store
        self._modelname = modelname
        self._known: Dict[str, Optional[DiffSyncModel]] = {}
        self._complete = False

    def get(self, uid: str, default: Any = None) -> Any:
        known = self._known
        if uid in known:
            obj = known[uid]
        elif self._complete:
            obj = None
        else:
            obj = known[uid] = self._store._read_one(self._modelname, uid)
        return default if obj is None else obj

    def __contains__(self, uid: object) -> bool:
        return isinstance(uid, str) and self.get(uid) is not None

    def knows(self, uid: str) -> bool:
        """Whether this uid was read (or found absent) already."""
        return self._complete or uid in self._known

    def remember(self, uid: str, obj: Optional[DiffSyncModel]) -> None:
        """Keep what a bulk read found for this uid (None: absent)."""
        self._known[uid] = obj

    def __getitem__(self, uid: str) -> DiffSyncModel:
        obj = self.get(uid)
        if obj is None:
            raise KeyError(uid)
        return obj

    def __setitem__(self, uid: str, obj: DiffSyncModel) -> None:
        self._known[uid] = obj

    def pop(self, uid: str, default: Any = None) -> Any:
        obj = self._known.get(uid)
        self._known[uid] = None
        return default if obj is None else obj

    def _everything(self) -> Dict[str, DiffSyncModel]:
        if not self._complete:
            self._store.flush()
            merged = self._store._load_type(self._modelname)
            for uid, obj in self._known.items():  # objects already handed out stay the same instances
                if obj is None:
                    merged.pop(uid, None)
                else:
                    merged[uid] = obj
            self._known = merged  # type: ignore[assignment]
            self._complete = True
        return self._known  # type: ignore[return-value]

    def values(self) -> Any:
        return self._everything().values()

    def items(self) -> Any:
        return self._everything().items()

    def keys(self) -> Any:
        return self._everything().keys()

    def __iter__(self) -> Iterator[str]:
        return iter(self._everything())

    def __len__(self) -> int:
        return len(self._everything())


# ----------------------------------------------------------------------------------------------------
# Namespace housekeeping
# ----------------------------------------------------------------------------------------------------


def list_namespaces(client: Redis) -> List[NamespaceInfo]:
    """List the store namespaces present in a Redis database (an administrative scan, not a hot path).

    Only keys of exactly the form ``shardsync:{store_id}:meta`` holding a hash count: a model named ``meta``
    (``shardsync:{id}:obj:meta``) or anything else matching the pattern is passed over.
    """
    infos = []
    prefix = f"{keys.ROOT}:"
    for raw_key in client.scan_iter(match=keys.META_PATTERN, count=1000):
        key = raw_key.decode(errors="replace") if isinstance(raw_key, bytes) else raw_key
        store_id = key[len(prefix) : -len(":meta")]
        if not _STORE_ID.match(store_id) or client.type(raw_key) not in (b"hash", "hash"):
            continue
        meta = {k.decode(errors="replace"): v.decode(errors="replace") for k, v in client.hgetall(raw_key).items()}
        infos.append(
            NamespaceInfo(
                store_id=store_id,
                created=_as_float(meta.get("created")),
                last_used=_as_float(meta.get("last_used")),
                ttl=int(_as_float(meta.get("ttl"))) or None,
            )
        )
    return sorted(infos, key=lambda info: info.last_used)


def _as_float(value: Optional[str]) -> float:
    try:
        return float(value or 0)
    except ValueError:
        return 0.0


def remove_namespace(client: Redis, store_id: str) -> int:
    """Delete every key of one namespace; returns the number of keys removed."""
    check_store_id(store_id)
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
