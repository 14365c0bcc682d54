"""The RedisStore class: connection, namespace set-up, the public store methods and the session reads."""

from __future__ import annotations

import time
import uuid
from contextlib import contextmanager
from typing import Any, Dict, Iterator, List, Mapping, Optional, Set, Type, Union

from redis import Redis

from core import keys
from core.exceptions import ObjectAlreadyExists, ObjectNotFound, ObjectStoreException
from core.model import DiffSyncModel
from core.store import ModelRef
from core.store.redis.codec import RecordCodec
from core.store.redis.namespaces import check_store_id, clear_namespace, describe_client, server_time
from core.store.redis.partitions import _PartitionedLoads
from core.store.redis.scripts import CHANGE, CLEAR_PARTITION, DEL, MAX_PARTITIONS, NEW, PUT, REMOVE, WRITE_BATCH
from core.store.redis.session import _LazyTypeMap


class RedisStore(_PartitionedLoads):
    """Adapter store in Redis, shared between processes (see ``core.store.redis`` for the write model)."""

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
        partition: Optional[int] = None,
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
            partition: This store object writes partition ``partition`` of a partitioned load (see
                ``Adapter.partitions``): the objects it adds take positions in that partition's range of
                the insertion order, so that partitions loaded at once by several processes read back in
                partition order. ``reserve_partitions`` sets the namespace up for them first.
            **kwargs: Passed to BaseStore (``adapter``, ``name``).

        Raises:
            ValueError: if both ``url`` and ``host`` are given, ``batch_size`` < 1, ``partition`` is out of
                range, or ``store_id`` has characters
                other than letters, digits and ``_.-`` (it is part of every key name and of SCAN patterns).
            ObjectStoreException: if Redis cannot be reached (naming host and port, never the password).
        """
        super().__init__(*args, **kwargs)
        if url and host:
            raise ValueError("'url' and 'host' arguments can't be specified together.")
        if batch_size < 1:
            raise ValueError(f"batch_size must be 1 or more, not {batch_size}")
        if partition is not None and not 0 <= partition < MAX_PARTITIONS:
            raise ValueError(f"partition must be from 0 to {MAX_PARTITIONS - 1}, not {partition}")
        self._in_flight = None
        if client is not None:
            self._redis = client
        elif url:
            # A database or password in the URL wins over the keyword arguments.
            options: Dict[str, Any] = {"db": db}
            if password is not None:
                options["password"] = password
            self._redis = Redis.from_url(url, **options)
        elif host:
            self._redis = Redis(host=host, port=port, db=db, password=password)
        else:
            raise ObjectStoreException("Redis store is unavailable: neither 'host', 'url' nor 'client' was given.")
        self._where = describe_client(self._client)
        self._store_id = check_store_id(store_id) if store_id else uuid.uuid4().hex
        self._ttl = ttl
        self._batch_size = batch_size
        self._lazy_reads = lazy_reads
        self._partition = partition
        self._pending = {}
        self._buffered_keys = {}
        self._codec = RecordCodec()
        self._session_depth = 0
        self._cache = None
        with self._errors("connect"):
            self._client.ping()
            self._write_batch = self._client.register_script(WRITE_BATCH)
            self._remove = self._client.register_script(REMOVE)
            self._clear_partition = self._client.register_script(CLEAR_PARTITION)
            now = server_time(self._client)  # Redis's clock, as the writes' last_used
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
        self.settle()

    def __enter__(self) -> RedisStore:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

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

    # ------------------------------------------------------------------------------------------------
    # Model classes
    # ------------------------------------------------------------------------------------------------

    def _model_class(self, modelname: str, model: Optional[ModelRef] = None) -> Type[DiffSyncModel]:
        """The class records of a type are read as: the adapter's class for that name, else the caller's.

        The caller's class is the ``model`` argument of a read (a DiffSyncModel subclass or instance of that
        type), so that a store used without an adapter can be read as with diffsync.  Never a class named by
        the stored data.
        """
        cls = getattr(self.adapter, modelname, None) if self.adapter is not None else None
        if isinstance(cls, type) and issubclass(cls, DiffSyncModel):
            return cls
        given = model if isinstance(model, type) else type(model)
        if issubclass(given, DiffSyncModel) and given.get_type() == modelname:
            return given
        raise ObjectStoreException(
            f"Redis store {self._store_id}: no model class for {modelname!r} on adapter {self.adapter!r}; "
            "without one, pass the model class (or an instance), not its name"
        )

    # ------------------------------------------------------------------------------------------------
    # Writes
    # ------------------------------------------------------------------------------------------------

    def add(self, *, obj: DiffSyncModel) -> None:
        """Add an object (written at the next flush; see BaseStore.add).

        Raises:
            ObjectAlreadyExists: if a different object with the same uid is pending or known in this session
                (immediately), or stored in Redis (at the flush that writes it).
        """
        modelname = obj.get_type()
        uid = obj.get_unique_id()
        entry = self._pending.get((modelname, uid))
        if entry is not None and entry[1] != DEL:
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
        self._queue(modelname, uid, obj, NEW)

    def update(self, *, obj: DiffSyncModel) -> None:
        """Store the current state of ``obj`` under its uid (written at the next flush)."""
        if self._is_buffered(obj):
            return  # its state at the flush is what gets written
        self._queue(obj.get_type(), obj.get_unique_id(), obj, PUT)

    def _after_change(self, obj: DiffSyncModel, created: bool) -> None:
        """Persist an object changed in place by the engine (children, sync updates), if it is still stored."""
        if self._is_buffered(obj):
            return  # its state at the flush is written, in its place in the order
        self._queue(obj.get_type(), obj.get_unique_id(), obj, CHANGE)

    def remove_item(self, modelname: str, uid: str) -> None:
        """Remove one object by type name and uid (buffered during a session, immediate otherwise).

        Raises:
            ObjectNotFound: if the object is not present.
        """
        if self._cache is not None:
            loaded = self._uid_map(modelname)
            if loaded is None or uid not in loaded:
                raise ObjectNotFound(f"{modelname} {uid} not present in {self}")
            self._queue(modelname, uid, None, DEL)
            return
        self.flush()
        if self.write_guard is not None:
            self.write_guard()
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
            clear_namespace(self._client, self._store_id)

    # ------------------------------------------------------------------------------------------------
    # Reads
    # ------------------------------------------------------------------------------------------------

    def _load_type(self, modelname: str, model: Optional[ModelRef] = None) -> Dict[str, DiffSyncModel]:
        """All objects of a type in insertion order, read in one round trip (``model``: see _model_class)."""
        cls = self._model_class(modelname, model)
        objects_key = keys.objects_key(self._store_id, modelname)
        with self._errors("read"):
            pipe = self._client.pipeline(transaction=True)
            pipe.zrange(keys.order_key(self._store_id, modelname), 0, -1)
            pipe.hgetall(objects_key)
            order, records = pipe.execute()
        stored = [(raw_uid.decode(), raw) for raw_uid in order if (raw := records.get(raw_uid)) is not None]
        objects = self._codec.decode_many(cls, objects_key, stored, self.adapter)
        return {uid: obj for (uid, _), obj in zip(stored, objects, strict=True)}

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
        objects_key = keys.objects_key(self._store_id, modelname)
        with self._errors("read"):
            records = self._client.hmget(objects_key, wanted)
        stored = [(uid, raw) for uid, raw in zip(wanted, records, strict=True) if raw is not None]
        objects = iter(self._codec.decode_many(cls, objects_key, stored, self.adapter))
        for uid, raw in zip(wanted, records, strict=True):
            loaded.remember(uid, None if raw is None else next(objects))

    def _read_one(self, modelname: str, uid: str) -> Optional[DiffSyncModel]:
        """One object straight from Redis (after a flush), or None."""
        self.flush()
        objects_key = keys.objects_key(self._store_id, modelname)
        with self._errors("read"):
            raw = self._client.hget(objects_key, uid)
        if raw is None:
            return None
        return self._codec.decode(self._model_class(modelname), objects_key, uid, raw, self.adapter)

    @contextmanager  # type: ignore[override]
    def engine_session(self) -> Iterator[None]:
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
        objects_key = keys.objects_key(self._store_id, modelname)
        with self._errors("read"):
            raw = self._client.hget(objects_key, uid)
        if raw is None:
            raise ObjectNotFound(f"{modelname} {uid} not present in {self}")
        return self._codec.decode(self._model_class(modelname, model), objects_key, uid, raw, self.adapter)

    def get_all(self, *, model: ModelRef) -> List[DiffSyncModel]:
        """Get all objects of one type, in the order they were added."""
        modelname = model if isinstance(model, str) else model.get_type()
        if self._cache is not None:
            return list(self._uid_map(modelname).values())  # type: ignore[union-attr]
        self.flush()
        return list(self._load_type(modelname, model).values())

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
        cls = self._model_class(modelname, model)
        objects_key = keys.objects_key(self._store_id, modelname)
        with self._errors("read"):
            records = self._client.hmget(objects_key, uids)
        for uid, raw in zip(uids, records, strict=True):
            if raw is None:
                raise ObjectNotFound(f"{modelname} {uid} not present in {self}")
        return self._codec.decode_many(cls, objects_key, zip(uids, records, strict=True), self.adapter)

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
