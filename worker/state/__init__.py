"""A job's state: what its steps record and read, behind one interface with a Redis and an in-memory side.

The pipeline's steps (``worker.pipeline``) see only ``JobState``; workers give them ``RedisJobState`` (shared by
every worker of a deployment), the embedded runner ``MemoryJobState`` (one process, no Redis).
"""

from worker.state.base import JobState, pack, unpack
from worker.state.memory import MemoryJobState
from worker.state.redis import RedisJobState

__all__ = ["JobState", "MemoryJobState", "RedisJobState", "pack", "unpack"]
