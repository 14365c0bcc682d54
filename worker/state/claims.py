"""The target lock (fenced), the steps' claims, and the heartbeat that keeps both alive, in Redis.

A mixin of ``RedisJobState``: the part of a job's state that decides who may run a step and who may write to
the target. Scripts run atomically in Redis, so a check and the write it guards can never be split.
"""

from __future__ import annotations

import threading
import time
import uuid
from contextlib import AbstractContextManager, contextmanager
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence

import structlog
from redis import Redis

from core import keys
from worker.errors import LockLost, lock_lost_message
from worker.settings import get_settings
from worker.state.base import Heartbeat, pack, unpack
from worker.state.tracking import LockWatch

logger = structlog.get_logger("shardsync.worker")


@contextmanager
def _watching(watch: LockWatch) -> Iterator[Callable[[], bool]]:
    with watch:
        yield watch.holds


_RENEW_CLAIM = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""
_RELEASE_CLAIM = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('HDEL', KEYS[2], ARGV[2])
  redis.call('HINCRBY', KEYS[3], ARGV[2], 1)
  redis.call('EXPIRE', KEYS[3], ARGV[3])
  return redis.call('DEL', KEYS[1])
end
return 0
"""
_FORGET_RUNNING = """
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then return redis.call('HDEL', KEYS[1], ARGV[1]) end
return 0
"""
# The target lock, fenced: KEYS[1] the lock (expiring), KEYS[2] the last job that took it. A job takes the lock
# when it is free, and takes it back after it expired only while it is still the last job that took it.
_ACQUIRE_LOCK = """
local holder = redis.call('GET', KEYS[1])
if not holder then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  redis.call('SET', KEYS[2], ARGV[1], 'EX', ARGV[3])
  return ''
end
if holder == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return ''
end
return holder
"""
_RENEW_LOCK = """
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
if not holder and redis.call('GET', KEYS[2]) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
"""
_RELEASE_LOCK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
if redis.call('GET', KEYS[2]) == ARGV[1] then redis.call('SET', KEYS[2], '~released', 'KEEPTTL') end
return 0
"""


class RedisClaims:
    """Locks and claims of one job (needs ``job_id``, ``client``, ``key()`` and ``_keep_records()``)."""

    job_id: str
    client: Redis

    def key(self, part: str) -> str:
        """Full key name of one part of the job's state."""
        return keys.job_key(self.job_id, part)

    def _keep_records(self) -> None:
        raise NotImplementedError

    def _lock_keys(self, target: str) -> List[str]:
        return [keys.lock_key(target), keys.lock_holder_key(target)]

    def acquire_lock(self, target: str, ttl: int) -> Optional[str]:
        """Take the lock on ``target``; returns None when this job holds it, else the id of the holder."""
        holder = self.client.eval(
            _ACQUIRE_LOCK, 2, *self._lock_keys(target), self.job_id, ttl * 1000, get_settings().store_ttl
        )
        holder_id = holder.decode() if isinstance(holder, bytes) else str(holder or "")
        return holder_id or None

    def renew_lock(self, target: str, ttl: int) -> bool:
        """Extend this job's lock, or take it back if it expired and no other job has taken it since."""
        kept = bool(self.client.eval(_RENEW_LOCK, 2, *self._lock_keys(target), self.job_id, ttl * 1000))
        if not kept:
            logger.warning("Lost the target lock", job_id=self.job_id, target=target)
        return kept

    def holds_lock(self, target: str) -> bool:
        """Whether this job holds the lock now."""
        return self.client.get(keys.lock_key(target)) == self.job_id.encode()

    def watch_lock(self, target: str) -> AbstractContextManager[Callable[[], bool]]:
        """The check of ``holds_lock`` answered from Redis's invalidation messages (``worker.state.tracking``)."""
        return _watching(
            LockWatch(self.client, keys.lock_key(target), self.job_id.encode(), get_settings().lock_tracking)
        )

    def release_lock(self, target: str) -> None:
        """Release the lock if this job holds it; it can never take it back after that."""
        self.client.eval(_RELEASE_LOCK, 2, *self._lock_keys(target), self.job_id)

    @contextmanager
    def heartbeat(
        self, target: Optional[str], ttl: int, claim: Optional[str] = None, token: str = ""
    ) -> Iterator[Heartbeat]:
        """Renew the job's lock, a step's claim and the job's records in the background while a step runs.

        A renewal that finds the lock lost sets ``Heartbeat.lost`` and stops renewing it: the lock is never
        taken back from a job that took it since.
        """
        stop = threading.Event()
        claim_key = self.key(f"claim:{claim}") if claim else None
        claim_ttl = get_settings().claim_ttl
        state = Heartbeat(claim_ttl if claim_key else 0.0)
        if target is not None and not self.renew_lock(target, ttl):  # a redelivered task may find it lost
            raise LockLost(lock_lost_message(self.job_id, target))
        self._keep_records()

        def beat() -> None:
            while not stop.wait(max(1.0, min(ttl, claim_ttl) / 3)):
                try:
                    if target is not None and not state.lost.is_set() and not self.renew_lock(target, ttl):
                        state.lost.set()
                    sent = time.monotonic()
                    if claim_key and not self.client.eval(_RENEW_CLAIM, 1, claim_key, token, claim_ttl * 1000):
                        state.claim_lost.set()
                        return  # the step is another delivery's now, or its job ended: keep nothing alive
                    state.renewed(sent)
                    self._keep_records()
                except Exception:  # noqa: BLE001, S112 - a missed beat is retried at the next one
                    continue

        thread = threading.Thread(target=beat, name=f"shardsync-heartbeat-{self.job_id}", daemon=True)
        thread.start()
        try:
            yield state
        finally:
            stop.set()
            thread.join(timeout=5)

    def claim(self, step_key: str, ttl: int, step: str = "", args: Sequence[Any] = ()) -> Optional[str]:
        """Claim a step; a token, or None if another delivery holds it. Recorded as running for the watchdog."""
        token = uuid.uuid4().hex
        if not self.client.set(self.key(f"claim:{step_key}"), token, nx=True, px=ttl * 1000):
            return None
        # Expiring like the job's other records: a late duplicate of an ended job leaves nothing for ever.
        retention = get_settings().store_ttl
        pipe = self.client.pipeline(transaction=False)
        pipe.hincrby(self.key("claims"), step_key, 1)
        pipe.expire(self.key("claims"), retention)
        if step:
            pipe.hset(self.key("running"), step_key, pack([step, list(args), time.time()]))
            pipe.expire(self.key("running"), retention)
            pipe.sadd(keys.RUNNING_JOBS, self.job_id)
        pipe.execute()
        return token

    def release_claim(self, step_key: str, token: str) -> None:
        """Release a claim taken with ``claim``."""
        self.client.eval(
            _RELEASE_CLAIM,
            3,
            self.key(f"claim:{step_key}"),
            self.key("running"),
            self.key("releases"),
            token,
            step_key,
            get_settings().store_ttl,
        )

    def deaths(self, step_key: str) -> int:
        """Deliveries that took the step's claim and never released it (the caller's own claim not counted)."""
        taken = self.client.hget(self.key("claims"), step_key)
        released = self.client.hget(self.key("releases"), step_key)
        return max(0, int(taken or 0) - 1 - int(released or 0))

    def record_stand_down(self, step_key: str) -> None:
        """Count a delivery that found its own claim lost and stood down (alive: not a death of its worker)."""
        pipe = self.client.pipeline(transaction=False)
        pipe.hincrby(self.key("standdowns"), step_key, 1)
        pipe.expire(self.key("standdowns"), get_settings().store_ttl)
        pipe.execute()

    def stand_downs(self, step_key: str) -> int:
        """How many deliveries of a step stood down on a lost claim."""
        return int(self.client.hget(self.key("standdowns"), step_key) or 0)

    def claim_held(self, step_key: str) -> bool:
        """Whether some delivery holds the step's claim now."""
        return bool(self.client.exists(self.key(f"claim:{step_key}")))

    def revoke_claim(self, step_key: str) -> None:
        """Take a step's claim from its holder (its renewals and release then find it gone)."""
        pipe = self.client.pipeline(transaction=True)
        pipe.delete(self.key(f"claim:{step_key}"))
        pipe.hdel(self.key("running"), step_key)
        pipe.execute()

    def running_steps(self) -> Dict[str, List[Any]]:
        """Steps recorded as running by their claims."""
        return {name.decode(): unpack(value) for name, value in self.client.hgetall(self.key("running")).items()}

    def forget_running(self, step_key: str, entry: Optional[List[Any]] = None) -> None:
        """Drop a step from the running ones (only if its record is ``entry``, when given: one script)."""
        if entry is None:
            self.client.hdel(self.key("running"), step_key)
        else:
            self.client.eval(_FORGET_RUNNING, 1, self.key("running"), step_key, pack(entry))
