"""How a target is doing, as every worker's calls found it: paused, its adaptive limit, its circuit breaker.

One record per target (``core.keys.target_key``), updated by Lua scripts on Redis's own clock so that every
worker reads and changes it at once:

- **Pause.** A "try later" with ``retry_after`` pauses the target until then: no worker starts a call before.
- **Adaptive limit.** Calls in flight are held under a limit that halves after a transient failure (at most
  once per ``DECREASE_EVERY`` seconds: one overload is one event) and grows by 1/limit per success (additive
  increase, multiplicative decrease, as TCP and Netflix's concurrency-limits do), between 1 and the declared
  concurrency (or ``CEILING`` when none is declared).
- **Rising latency.** A guard whose calls' average latency rose to ``LATENCY_RISE`` times the fastest it
  saw (a target queueing calls before it fails them) lowers the limit as a failure does, without counting
  towards the breaker (``slowed``).
- **Circuit breaker.** ``THRESHOLD`` transient failures in a row over at least ``WINDOW`` seconds open it:
  no call for a cool-down (``COOLDOWN``, doubling up to ``MAX_COOLDOWN``), then ``PROBES`` calls at most try
  the target (half-open); one success closes it, a failure opens it again. ``down_since`` says since when
  the target has not answered well, for the outage budget.

The embedded runner keeps the same record in its process (``MemoryCondition``).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any, Dict, List, Optional

from redis import Redis

from core import keys

CEILING = 1000.0
"""The adaptive limit's top when the target declares no concurrency: in effect no limit until it fails."""
DECREASE_EVERY = 1.0
"""Seconds between two halvings of the adaptive limit."""
THRESHOLD = 5
"""Transient failures in a row that may open the breaker."""
WINDOW = 2.0
"""Seconds those failures must span (a burst of errors from one moment is not an outage)."""
COOLDOWN = 2.0
"""The breaker's first cool-down, in seconds; it doubles at each failed probe."""
MAX_COOLDOWN = 30.0
"""The longest cool-down."""
PROBES = 2
"""Calls at most that try a half-open target at once."""
PROBE_TIMEOUT = 10.0
"""Seconds after which probes that never told how they went (their worker died, their call raised something
else) no longer hold a half-open breaker: another call may probe."""
TTL = 3600
"""Seconds a target's record lives after its last change."""


@dataclass
class Admission:
    """Whether a call may start now: ``wait`` seconds first (0: go), as a ``probe`` of a half-open breaker."""

    wait: float
    limit: float
    probe: bool = False
    down_since: Optional[float] = None
    open: bool = False


_ADMIT = """
local now = redis.call('TIME')
local t = tonumber(now[1]) + tonumber(now[2]) / 1000000
local h = redis.call('HMGET', KEYS[1], 'paused_until', 'state', 'opened', 'cooldown', 'probes', 'limit', 'down_since')
local limit = h[6] or ARGV[1]
local down = h[7] or ''
local paused = tonumber(h[1] or '0')
if paused > t then return {'wait', tostring(paused - t), limit, down, '0'} end
local state = h[2] or 'closed'
if state == 'open' then
  local ready = tonumber(h[3]) + tonumber(h[4])
  if t < ready then return {'wait', tostring(ready - t), limit, down, '1'} end
  redis.call('HSET', KEYS[1], 'state', 'half', 'probes', '0')
  state = 'half'
end
if state == 'half' then
  local probes = tonumber(redis.call('HGET', KEYS[1], 'probes') or '0')
  local last = tonumber(redis.call('HGET', KEYS[1], 'probe_at') or '0')
  if probes >= tonumber(ARGV[2]) and t - last < tonumber(ARGV[4]) then
    return {'wait', '0.25', limit, down, '1'}
  end
  if probes >= tonumber(ARGV[2]) then probes = 0 end  -- its probes never told how they went: try again
  redis.call('HSET', KEYS[1], 'probes', tostring(probes + 1), 'probe_at', tostring(t))
  redis.call('EXPIRE', KEYS[1], ARGV[3])
  return {'probe', '0', limit, down, '1'}
end
return {'go', '0', limit, down, '0'}
"""

# ARGV: probe (0/1), ceiling. A success: the breaker closes, the failures are forgotten, the limit grows.
# ARGV: ceiling, decrease every, ttl. Calls grew slow: the limit halves (as after a failure), nothing else.
_SLOWED = """
local now = redis.call('TIME')
local t = tonumber(now[1]) + tonumber(now[2]) / 1000000
local limit = tonumber(redis.call('HGET', KEYS[1], 'limit') or ARGV[1])
local decreased = tonumber(redis.call('HGET', KEYS[1], 'decreased') or '0')
if t - decreased >= tonumber(ARGV[2]) then
  limit = math.max(1, limit / 2)
  redis.call('HSET', KEYS[1], 'limit', tostring(limit), 'decreased', tostring(t))
  redis.call('EXPIRE', KEYS[1], ARGV[3])
end
return tostring(limit)
"""

_SUCCEEDED = """
local limit = tonumber(redis.call('HGET', KEYS[1], 'limit') or ARGV[2])
limit = math.min(tonumber(ARGV[2]), limit + 1 / limit)
if ARGV[1] == '1' or redis.call('HGET', KEYS[1], 'state') ~= 'open' then
  redis.call('HSET', KEYS[1], 'state', 'closed', 'cooldown', '0', 'probes', '0')
end
redis.call('HDEL', KEYS[1], 'failures', 'failing_since', 'down_since')
redis.call('HSET', KEYS[1], 'limit', tostring(limit))
redis.call('EXPIRE', KEYS[1], ARGV[3])
return tostring(limit)
"""

# ARGV: retry_after, probe, ceiling, threshold, window, cooldown, max cooldown, decrease every, ttl.
_FAILED = """
local now = redis.call('TIME')
local t = tonumber(now[1]) + tonumber(now[2]) / 1000000
local k = KEYS[1]
local limit = tonumber(redis.call('HGET', k, 'limit') or ARGV[3])
local decreased = tonumber(redis.call('HGET', k, 'decreased') or '0')
if t - decreased >= tonumber(ARGV[8]) then
  limit = math.max(1, limit / 2)
  redis.call('HSET', k, 'limit', tostring(limit), 'decreased', tostring(t))
end
local after = tonumber(ARGV[1])
if after > 0 then
  local paused = tonumber(redis.call('HGET', k, 'paused_until') or '0')
  if t + after > paused then redis.call('HSET', k, 'paused_until', tostring(t + after)) end
end
local failures = redis.call('HINCRBY', k, 'failures', 1)
local since = tonumber(redis.call('HGET', k, 'failing_since') or tostring(t))
redis.call('HSETNX', k, 'failing_since', tostring(t))
redis.call('HSETNX', k, 'down_since', tostring(t))
local state = redis.call('HGET', k, 'state') or 'closed'
local cooldown = tonumber(redis.call('HGET', k, 'cooldown') or '0')
if ARGV[2] == '1' or state == 'half' then
  cooldown = math.min(tonumber(ARGV[7]), math.max(tonumber(ARGV[6]), cooldown * 2))
  redis.call('HSET', k, 'state', 'open', 'opened', tostring(t), 'cooldown', tostring(cooldown), 'probes', '0')
elseif state == 'closed' and failures >= tonumber(ARGV[4]) and t - since >= tonumber(ARGV[5]) then
  redis.call('HSET', k, 'state', 'open', 'opened', tostring(t), 'cooldown', ARGV[6], 'probes', '0')
end
redis.call('EXPIRE', k, ARGV[9])
return tostring(limit)
"""


def _admission(raw: List[Any]) -> Admission:
    decode = [item.decode() if isinstance(item, bytes) else str(item) for item in raw]
    verdict, wait, limit, down, opened = decode
    return Admission(
        wait=float(wait) if verdict == "wait" else 0.0,
        limit=float(limit),
        probe=verdict == "probe",
        down_since=float(down) if down else None,
        open=opened == "1",
    )


class Condition:
    """One target's shared record: what a guard asks before a call and tells after it."""

    def __init__(self, key: str, ceiling: float) -> None:
        self.key = key
        self.ceiling = float(ceiling)

    def admit(self) -> Admission:
        """Whether a call may start now (and whether as a probe)."""
        raise NotImplementedError

    def succeeded(self, probe: bool) -> None:
        """A call answered well."""
        raise NotImplementedError

    def failed(self, retry_after: float, probe: bool) -> None:
        """A call met "try later" (``retry_after``: the seconds the target asked for, 0 when it did not say)."""
        raise NotImplementedError

    def slowed(self) -> None:
        """Calls answer much slower than they did: lower the limit (at most once per DECREASE_EVERY)."""
        raise NotImplementedError


class RedisCondition(Condition):
    """The record in the job-state Redis, shared by every worker."""

    def __init__(self, key: str, ceiling: float, client: Redis) -> None:
        super().__init__(key, ceiling)
        self._key = keys.target_key(key)
        self._admit = client.register_script(_ADMIT)
        self._succeeded = client.register_script(_SUCCEEDED)
        self._failed = client.register_script(_FAILED)
        self._slowed = client.register_script(_SLOWED)

    def admit(self) -> Admission:
        """Whether a call may start now, from the shared record (one script)."""
        return _admission(self._admit(keys=[self._key], args=[self.ceiling, PROBES, TTL, PROBE_TIMEOUT]))

    def succeeded(self, probe: bool) -> None:
        """A call answered well (one script)."""
        self._succeeded(keys=[self._key], args=["1" if probe else "0", self.ceiling, TTL])

    def failed(self, retry_after: float, probe: bool) -> None:
        """A call met "try later" (one script)."""
        self._failed(
            keys=[self._key],
            args=[retry_after, "1" if probe else "0", self.ceiling, THRESHOLD, WINDOW, COOLDOWN, MAX_COOLDOWN,
                  DECREASE_EVERY, TTL],
        )  # fmt: skip

    def slowed(self) -> None:
        """Calls answer much slower than they did (one script)."""
        self._slowed(keys=[self._key], args=[self.ceiling, DECREASE_EVERY, TTL])


_records: Dict[str, Dict[str, Any]] = {}
_records_lock = threading.Lock()


class MemoryCondition(Condition):
    """The record in this process (the embedded runner), with the same rules on the process's clock."""

    def _record(self) -> Dict[str, Any]:
        return _records.setdefault(self.key, {"limit": self.ceiling, "state": "closed", "cooldown": 0.0})

    def admit(self) -> Admission:
        """Whether a call may start now, from this process's record."""
        now = time.time()
        with _records_lock:
            record = self._record()
            down = record.get("down_since")
            if record.get("paused_until", 0.0) > now:
                return Admission(record["paused_until"] - now, record["limit"], down_since=down)
            if record["state"] == "open":
                ready = record["opened"] + record["cooldown"]
                if now < ready:
                    return Admission(ready - now, record["limit"], down_since=down, open=True)
                record.update(state="half", probes=0)
            if record["state"] == "half":
                probes = record.get("probes", 0)
                if probes >= PROBES and now - record.get("probe_at", 0.0) < PROBE_TIMEOUT:
                    return Admission(0.25, record["limit"], down_since=down, open=True)
                record.update(probes=(0 if probes >= PROBES else probes) + 1, probe_at=now)
                return Admission(0.0, record["limit"], probe=True, down_since=down, open=True)
            return Admission(0.0, record["limit"], down_since=down)

    def succeeded(self, probe: bool) -> None:
        """A call answered well."""
        with _records_lock:
            record = self._record()
            record["limit"] = min(self.ceiling, record["limit"] + 1 / record["limit"])
            if probe or record["state"] != "open":
                record.update(state="closed", cooldown=0.0, probes=0)
            for name in ("failures", "failing_since", "down_since"):
                record.pop(name, None)

    def failed(self, retry_after: float, probe: bool) -> None:
        """A call met "try later"."""
        now = time.time()
        with _records_lock:
            record = self._record()
            if now - record.get("decreased", 0.0) >= DECREASE_EVERY:
                record.update(limit=max(1.0, record["limit"] / 2), decreased=now)
            if retry_after > 0:
                record["paused_until"] = max(record.get("paused_until", 0.0), now + retry_after)
            record["failures"] = record.get("failures", 0) + 1
            since = record.setdefault("failing_since", now)
            record.setdefault("down_since", now)
            if probe or record["state"] == "half":
                cooldown = min(MAX_COOLDOWN, max(COOLDOWN, record["cooldown"] * 2))
                record.update(state="open", opened=now, cooldown=cooldown, probes=0)
            elif record["state"] == "closed" and record["failures"] >= THRESHOLD and now - since >= WINDOW:
                record.update(state="open", opened=now, cooldown=COOLDOWN, probes=0)

    def slowed(self) -> None:
        """Calls answer much slower than they did."""
        now = time.time()
        with _records_lock:
            record = self._record()
            if now - record.get("decreased", 0.0) >= DECREASE_EVERY:
                record.update(limit=max(1.0, record["limit"] / 2), decreased=now)


def condition_for(key: str, ceiling: float, client: Optional[Redis]) -> Condition:
    """The target's record: in Redis when ``client`` is given, else in this process."""
    return RedisCondition(key, ceiling, client) if client is not None else MemoryCondition(key, ceiling)
