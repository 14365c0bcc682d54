"""The Lua scripts of RedisStore, the modes of a write batch's entries and the layout of their arguments."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Tuple

import msgpack

from core import keys

# Writes a batch atomically (one script call: all of it or, on a dropped connection, none of it).
# KEYS: types, seq, meta, then objects/order key pairs per type, in the order of the batch.
# ARGV: now, ttl (0: none), batch: msgpack [[model, [uid, record, mode, uid, record, mode, ...]], ...] with
# mode "n" (new: must not hold a different record), "p" (put), "r" (re-added: put, and moved to the end of
# the insertion order), "c" (changed in place: put only if still present, so that a stale reference to an
# object removed meanwhile, e.g. a deleted parent losing a child, never brings it back) or "d" (delete).
# ARGV[4] is the namespace prefix (for TTL renewal of every key); ARGV[5] and ARGV[6], for the store of one
# partition of a load, the meta field counting the partition's objects and the base of its positions.
# One packed argument instead of three per object keeps the client's per-argument work out of the way.
# A new entry whose uid already holds a different record is not written and is returned as a conflict.
# A caller's record (ARGV[7] not empty, see ``Record``) rides in the same call: the last three KEYS are a guard
# (nothing at all is written unless it holds ARGV[8]; ARGV[8] empty: no guard), a hash taking the field/value
# pairs ARGV[11..] and a counter raised by ARGV[10] unless every field was there already (the same record
# sent again after a lost reply counts once); ARGV[9] is their ttl. The reply is then {conflicts, counter},
# or {{}, -1} when the guard refused.
WRITE_BATCH = """
local now, ttl, prefix = ARGV[1], tonumber(ARGV[2]), ARGV[4]
local recording = ARGV[7] ~= nil and ARGV[7] ~= ''
if recording and ARGV[8] ~= '' and redis.call('GET', KEYS[#KEYS - 2]) ~= ARGV[8] then
  return {{}, -1}
end
local clock = redis.call('TIME')  -- last_used on Redis's clock: hosts' clocks may differ
now = tostring(tonumber(clock[1]) + tonumber(clock[2]) / 1000000)
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
if recording then
  bad = expect(KEYS[#KEYS - 1], 'hash') or expect(KEYS[#KEYS], 'string')
  if bad then return bad end
end
for t = 1, #batch do
  bad = expect(KEYS[2 + 2 * t], 'hash') or expect(KEYS[3 + 2 * t], 'zset')
  if bad then return bad end
end
-- Commands take many fields at once (in chunks that Lua's unpack takes): one call per type and command
-- rather than three per object. A batch holds each uid of a type once, so grouping keeps its meaning.
local CHUNK = 4000
local function many(command, key, flag, args)
  for i = 1, #args, CHUNK do
    local last = math.min(i + CHUNK - 1, #args)
    if flag then
      redis.call(command, key, flag, unpack(args, i, last))
    else
      redis.call(command, key, unpack(args, i, last))
    end
  end
end
local conflicts = {}
local total = 0
for t, group in ipairs(batch) do
  local objkey = KEYS[2 + 2 * t]
  local entries = group[2]
  local fresh = {}
  for i = 1, #entries, 3 do
    local mode = entries[i + 2]
    if mode == 'n' then
      table.insert(fresh, i)
    elseif mode == 'p' or mode == 'r' then
      total = total + 1
    elseif mode == 'c' and redis.call('HEXISTS', objkey, entries[i]) == 0 then
      entries[i + 2] = 'x'
    end
  end
  for f = 1, #fresh, CHUNK do
    local last = math.min(f + CHUNK - 1, #fresh)
    local uids = {}
    for k = f, last do
      table.insert(uids, entries[fresh[k]])
    end
    local current = redis.call('HMGET', objkey, unpack(uids))
    for k = f, last do
      local i = fresh[k]
      local held = current[k - f + 1]
      if held and held ~= entries[i + 1] then
        table.insert(conflicts, group[1])
        table.insert(conflicts, entries[i])
        entries[i + 2] = 'x'
      else
        total = total + 1
      end
    end
  end
end
local position = 0
if total > 0 and ARGV[5] ~= '' then
  -- A partition's store: positions in the partition's own range of the order (base + its own counter).
  position = tonumber(ARGV[6]) + redis.call('HINCRBY', KEYS[3], ARGV[5], total) - total
elseif total > 0 then
  position = redis.call('INCRBY', KEYS[2], total) - total
end
for t, group in ipairs(batch) do
  local objkey, orderkey = KEYS[2 + 2 * t], KEYS[3 + 2 * t]
  local entries = group[2]
  local gone, put, placed, moved = {}, {}, {}, {}
  redis.call('SADD', KEYS[1], group[1])
  for i = 1, #entries, 3 do
    local uid, mode = entries[i], entries[i + 2]
    if mode == 'd' then
      table.insert(gone, uid)
    elseif mode == 'c' then
      table.insert(put, uid)
      table.insert(put, entries[i + 1])
    elseif mode ~= 'x' then
      position = position + 1
      table.insert(put, uid)
      table.insert(put, entries[i + 1])
      local order = placed
      if mode == 'r' then
        order = moved
      end
      table.insert(order, position)
      table.insert(order, uid)
    end
  end
  many('HDEL', objkey, nil, gone)
  many('ZREM', orderkey, nil, gone)
  many('HSET', objkey, nil, put)
  many('ZADD', orderkey, 'NX', placed)
  many('ZADD', orderkey, nil, moved)
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
if not recording then
  return conflicts
end
local record, counter, record_ttl = KEYS[#KEYS - 1], KEYS[#KEYS], ARGV[9]
local added = 0
for i = 11, #ARGV, CHUNK do
  added = added + redis.call('HSET', record, unpack(ARGV, i, math.min(i + CHUNK - 1, #ARGV)))
end
if #ARGV >= 11 then
  redis.call('EXPIRE', record, record_ttl)
end
redis.call('SET', counter, 0, 'NX', 'EX', record_ttl)  -- created with its expiry: INCRBY would create it without
if added > 0 or #ARGV < 11 then
  return {conflicts, redis.call('INCRBY', counter, ARGV[10])}
end
return {conflicts, tonumber(redis.call('GET', counter))}
"""

# Removes what one partition of a load wrote (a partition loaded again starts over), atomically.
# KEYS: types, meta. ARGV: prefix, first position, last position, the partition's meta field.
# Returns the number of objects removed.
CLEAR_PARTITION = """
local prefix, low, high = ARGV[1], ARGV[2], ARGV[3]
local removed = 0
for _, model in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local objkey, orderkey = prefix .. 'obj:' .. model, prefix .. 'order:' .. model
  local uids = redis.call('ZRANGEBYSCORE', orderkey, low, high)
  for i = 1, #uids, 1000 do
    redis.call('HDEL', objkey, unpack(uids, i, math.min(i + 999, #uids)))
  end
  redis.call('ZREMRANGEBYSCORE', orderkey, low, high)
  removed = removed + #uids
end
redis.call('HDEL', KEYS[2], ARGV[4])
return removed
"""

PARTITION_STRIDE = 2**32
"""Positions in the insertion order per partition of a load: partition ``i`` holds ``i * stride + 1`` on."""

MAX_PARTITIONS = 10_000
"""Most partitions of one load: their positions stay exact in Redis's scores (doubles) and Lua's numbers."""


def partition_field(index: int) -> str:
    """The meta field counting one partition's objects."""
    return f"partition:{index}"


# Removes one object atomically. KEYS: objects, order, meta. ARGV: uid, now (unused: Redis's clock stamps
# last_used). Returns 1 if it existed.
REMOVE = """
local removed = redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
local clock = redis.call('TIME')
redis.call('HSET', KEYS[3], 'last_used', tostring(tonumber(clock[1]) + tonumber(clock[2]) / 1000000))
return removed
"""

# Modes of a batch entry (see WRITE_BATCH).
NEW, PUT, DEL, READD, CHANGE = "n", "p", "d", "r", "c"

# Redis's Lua msgpack library knows only the old raw type: pack the batch without the bin type.
pack_for_lua = msgpack.Packer(use_bin_type=False, autoreset=True).pack


def write_batch_arguments(
    store_id: str, groups: Dict[str, List[Any]], ttl: int, now: float, partition: Optional[int] = None
) -> Tuple[List[str], List[Any]]:
    """KEYS and ARGV of a WRITE_BATCH call that writes ``groups`` (``{model: [uid, record, mode, ...]}``).

    ``partition``: the store writes one partition of a load; new objects take positions in its range.
    """
    script_keys: List[str] = [keys.types_key(store_id), keys.seq_key(store_id), keys.meta_key(store_id)]
    batch: List[Any] = []
    for modelname, flat in groups.items():
        script_keys.append(keys.objects_key(store_id, modelname))
        script_keys.append(keys.order_key(store_id, modelname))
        batch.append([modelname, flat])
    args: List[Any] = [now, ttl, pack_for_lua(batch), keys.namespace(store_id)]
    if partition is None:
        return script_keys, args + ["", 0]
    return script_keys, args + [partition_field(partition), partition * PARTITION_STRIDE]


@dataclass(frozen=True)
class Record:
    """What a runner records beside a store's writes, in the same script call (all of it, or none of it).

    The distributed runner's journal: "these operations are done" must reach Redis with the operations' own
    writes, in one round trip per operation (a journal written in batches re-runs a batch after a crash), and
    only while the delivery still holds its claim (``guard``): a delivery that lost it writes nothing at all.
    """

    hash_key: str
    """A hash taking ``fields`` (the journal)."""
    fields: Mapping[str, bytes]
    counter_key: str
    """A counter raised by ``amount`` (the progress), unless every field was in the hash already."""
    amount: int
    ttl: int
    """Seconds both keys live after this write."""
    guard_key: str = ""
    """A string key that must hold ``guard_value`` for anything to be written (empty: no guard)."""
    guard_value: str = ""

    def arguments(self, script_keys: List[str], args: List[Any]) -> Tuple[List[str], List[Any]]:
        """The KEYS and ARGV of a WRITE_BATCH call extended with this record."""
        flat: List[Any] = []
        for field, value in self.fields.items():
            flat.append(field)
            flat.append(value)
        guard_key = self.guard_key or self.hash_key  # a key is needed in its place; unread without a guard value
        return (
            [*script_keys, guard_key, self.hash_key, self.counter_key],
            [*args, "1", self.guard_value if self.guard_key else "", self.ttl, self.amount, *flat],
        )


REFUSED = -1
"""The counter a WRITE_BATCH call with a record returns when its guard refused the write."""


def conflict_pairs(conflicts: List[bytes]) -> List[Tuple[str, str]]:
    """The ``(model, uid)`` pairs of the new entries a WRITE_BATCH call rejected."""
    return [(conflicts[i].decode(), conflicts[i + 1].decode()) for i in range(0, len(conflicts), 2)]
