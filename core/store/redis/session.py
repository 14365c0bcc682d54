"""The read map of a RedisStore session: one type's objects, read one uid at a time on first use."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Dict, Iterator, Optional

if TYPE_CHECKING:
    from core.model import DiffSyncModel
    from core.store.redis.store import RedisStore


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
