"""The write half of RedisStore: writes buffered, merged per object, and sent as one atomic script call."""

from __future__ import annotations

import time
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Callable, Dict, Iterator, List, Optional, Tuple

from redis import Redis
from redis.connection import Connection
from redis.exceptions import NoScriptError, RedisError

from core.exceptions import ObjectAlreadyExists, ObjectStoreException
from core.store import BaseStore
from core.store.redis.codec import RecordCodec
from core.store.redis.scripts import (
    CHANGE,
    DEL,
    NEW,
    PUT,
    READD,
    REFUSED,
    Record,
    conflict_pairs,
    write_batch_arguments,
)

if TYPE_CHECKING:
    from redis.commands.core import Script

    from core.model import DiffSyncModel


class WriteRefused(ObjectStoreException):
    """A write with a guarded record found its guard changed: nothing of it was written, the batch is dropped.

    The writer lost what entitled it to write (a runner's claim on a step taken by another delivery): its
    buffered writes are stale and must not reach the store later either.
    """


class _InFlight:
    """A pipelined write sent on the store's own connection, its reply not read yet."""

    __slots__ = ("connection", "pending", "script_keys", "args", "guard_key")

    def __init__(
        self, connection: Connection, pending: Dict[Any, Any], script_keys: List[str], args: List[Any], guard_key: str
    ) -> None:
        self.connection, self.pending, self.script_keys, self.args = connection, pending, script_keys, args
        self.guard_key = guard_key


class _BufferedWrites(BaseStore):
    """Base of RedisStore: the error wrapper, the write buffer and its flushes (state set by RedisStore)."""

    _redis: Redis
    _in_flight: Optional[_InFlight]
    _where: str
    _store_id: str
    _ttl: Optional[int]
    _batch_size: int
    _partition: Optional[int]
    _codec: RecordCodec
    _write_batch: Script
    _pending: Dict[Tuple[str, str], Tuple[Optional[DiffSyncModel], str]]
    _buffered_keys: Dict[int, Tuple[str, str]]
    _cache: Optional[Dict[str, Dict[str, DiffSyncModel]]]

    write_guard: Optional[Callable[[], None]] = None
    """Called before every write this store sends to Redis; what it raises stops the write (the buffer kept).

    A runner sets it to check, without Redis, that the process may still write (the distributed runner's
    lease on a step's claim: a paused or stalled delivery never writes beside the one that replaced it)."""

    @property
    def _client(self) -> Redis:
        """The client, once a pipelined write's reply was read: whatever is sent next comes after that write."""
        if self._in_flight is not None:
            self.settle()
        return self._redis

    @contextmanager
    def _errors(self, doing: str) -> Iterator[None]:
        """Turn Redis failures into ObjectStoreException naming the server (never the password)."""
        try:
            yield
        except RedisError as err:
            raise ObjectStoreException(
                f"Redis store {self._store_id} at {self._where} failed to {doing}: {type(err).__name__}: {err}"
            ) from err

    def _is_buffered(self, obj: DiffSyncModel) -> bool:
        """Whether this very object is buffered (a write of it pending), told without computing its uid.

        A parent is changed once per child added during a load: this keeps that from costing a uid each time.
        Stale entries are harmless, the pending entry's object is what is checked.
        """
        key = self._buffered_keys.get(id(obj))
        if key is None:
            return False
        entry = self._pending.get(key)
        return entry is not None and entry[0] is obj

    def _queue(self, modelname: str, uid: str, obj: Optional[DiffSyncModel], mode: str) -> None:
        """Buffer one write; later writes to the same object replace earlier ones, keeping their net effect."""
        key = (modelname, uid)
        previous = self._pending.get(key)
        if mode == CHANGE:
            if previous is not None:
                if previous[1] == DEL:
                    return  # removed meanwhile: a stale reference changed, nothing to write
                if previous[0] is obj:
                    # Buffered already: its state at the flush is written, and it keeps its place in the
                    # insertion order (a parent gaining a child after a sibling was added stays before it).
                    return
                mode = previous[1]  # new, re-added, put or changed: keep what the earlier write meant
            elif self._cache is not None:
                loaded = self._cache.get(modelname)
                if loaded is not None and loaded.get(uid) is None:
                    return  # not (or no longer) stored: nothing to write
        if previous is not None and mode == PUT and previous[0] is obj and obj is not None:
            return  # already buffered: its state when flushed is what gets written
        if previous is not None:
            del self._pending[key]
            before = previous[1]
            if mode == DEL and before == NEW:
                mode = ""  # added then removed before reaching Redis: nothing to write
            elif mode == PUT and before in (NEW, READD):
                mode = before
            elif mode == NEW and before == DEL:
                mode = READD  # removed, then added again: replaces it, at the end of the order
        if mode:
            self._pending[key] = (obj, mode)
            if obj is not None:
                self._buffered_keys[id(obj)] = key
        if self._cache is not None:
            loaded = self._cache.get(modelname)
            if loaded is not None:
                if mode == DEL or not mode:
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

    def flush_recording(self, record: Record) -> int:
        """Send the buffered writes and ``record`` in one script call: one round trip, atomic, guarded.

        Cheap enough to be made after every operation of a sync (a MULTI/EXEC of the same commands costs about
        twice as much on the client).

        Returns:
            The record's counter after the write.

        Raises:
            WriteRefused: the record's guard did not hold its value (nothing written; the buffer is dropped).
            ObjectAlreadyExists, ObjectStoreException: as ``flush`` (a rejected object does not stop the
                record, which is written all the same).
        """
        pending, script_keys, args = self._recording_call(record)
        try:
            with self._errors("write"):
                reply = self._write_batch(keys=script_keys, args=args)
        except ObjectStoreException:
            self._restore(pending)
            raise
        return self._recorded(reply, pending, record.guard_key)

    def _recording_call(self, record: Record) -> Tuple[Dict[Any, Any], List[str], List[Any]]:
        """The buffered writes taken (maybe none) and a WRITE_BATCH call's KEYS and ARGV with ``record``."""
        taken = self._take_batch()
        if taken is None:
            pending: Dict[Any, Any] = {}
            script_keys, args = write_batch_arguments(self._store_id, {}, self._ttl or 0, time.time(), self._partition)
        else:
            pending, script_keys, args = taken
        script_keys, args = record.arguments(script_keys, args)
        return pending, script_keys, args

    def _recorded(self, reply: Any, pending: Dict[Any, Any], guard_key: str) -> int:
        """The counter of a recording write's reply; raises what its reply says went wrong."""
        conflicts, counter = reply
        if counter == REFUSED:
            raise WriteRefused(
                f"Redis store {self._store_id}: write refused, {guard_key} no longer holds this writer's "
                f"value; {len(pending)} buffered writes dropped"
            )
        self._raise_conflicts(pending, conflicts)
        return int(counter)

    def send_recording(self, record: Record) -> Optional[int]:
        """``flush_recording``, pipelined: sent now, its reply read before anything else goes to Redis.

        The caller does not wait for Redis: once sent, a write reaches Redis even if this process dies at once
        (the bytes are the kernel's), so a runner journals each operation this way before its next hook runs
        at the cost of the send alone. The reply (conflicts, a refused guard, a lost connection) is read by
        ``settle``, which every other use of the store's Redis calls first.

        Returns:
            The counter of the previous pipelined write (None if there was none in flight).

        Raises:
            As ``flush_recording``, for this write (sending) or for the previous one (its reply).
        """
        counter = self.settle()
        pending, script_keys, args = self._recording_call(record)
        pool = self._redis.connection_pool
        connection = pool.get_connection()
        try:
            with self._errors("write"):
                connection.send_command("EVALSHA", self._write_batch.sha, len(script_keys), *script_keys, *args)
        except ObjectStoreException:
            connection.disconnect()
            pool.release(connection)
            self._restore(pending)
            raise
        self._in_flight = _InFlight(connection, pending, script_keys, args, record.guard_key)
        return counter

    def settle(self) -> Optional[int]:
        """Read the reply of the pipelined write in flight, if any; returns its counter.

        Raises:
            WriteRefused, ObjectAlreadyExists: as ``flush_recording``.
            ObjectStoreException: the reply was lost (Redis went away): the write may or may not have been made;
                its objects are buffered again, and sending the same record again is harmless.
        """
        sent = self._in_flight
        if sent is None:
            return None
        self._in_flight = None
        pool = self._redis.connection_pool
        try:
            with self._errors("write"):
                try:
                    reply = sent.connection.read_response()
                except NoScriptError:  # Redis lost its scripts (a restart): the write was not made, make it now
                    reply = self._write_batch(keys=sent.script_keys, args=sent.args)
        except ObjectStoreException:
            sent.connection.disconnect()
            pool.release(sent.connection)
            self._restore(sent.pending)
            raise
        pool.release(sent.connection)
        return self._recorded(reply, sent.pending, sent.guard_key)

    def _take_batch(self) -> Optional[Tuple[Dict[Any, Any], List[str], List[Any]]]:
        """Encode the buffered writes into one script call's keys and arguments, emptying the buffer."""
        if self._in_flight is not None:
            self.settle()  # a pipelined write goes first
        if not self._pending:
            return None
        if self.write_guard is not None:
            self.write_guard()
        pending = self._pending
        by_type: Dict[str, List[Any]] = {}
        encode = self._codec.encode
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
        self._buffered_keys = {}
        script_keys, args = write_batch_arguments(self._store_id, by_type, self._ttl or 0, time.time(), self._partition)
        return pending, script_keys, args

    def _restore(self, pending: Dict[Any, Any]) -> None:
        """Nothing of a batch reached Redis: keep it for the next flush rather than lose it."""
        pending.update(self._pending)
        self._pending = pending

    def _raise_conflicts(self, pending: Dict[Any, Any], conflicts: Any) -> None:
        if conflicts:
            pairs = conflict_pairs(conflicts)
            first_model, first_uid = pairs[0]
            rejected = pending[(first_model, first_uid)][0]
            if self._cache is not None:
                for modelname, _ in pairs:
                    self._cache.pop(modelname, None)
            listing = ", ".join(f"{model} {uid}" for model, uid in pairs[:10])
            more = f" and {len(pairs) - 10} more" if len(pairs) > 10 else ""
            raise ObjectAlreadyExists(f"Object {first_uid} already present ({listing}{more})", rejected)
