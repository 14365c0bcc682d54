"""Exception hierarchy, identical in names and bases to diffsync 2.x so existing ``except`` clauses keep working."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional, Union

if TYPE_CHECKING:
    from core import DiffSyncModel
    from core.diff import DiffElement


class ObjectCrudException(Exception):
    """A create, update or delete of a model failed; with CONTINUE_ON_FAILURE the sync goes on."""


class ObjectNotCreated(ObjectCrudException):
    """A model could not be created."""


class ObjectNotUpdated(ObjectCrudException):
    """A model could not be updated."""


class ObjectNotDeleted(ObjectCrudException):
    """A model could not be deleted."""


class TransientError(ObjectCrudException):
    """The remote said "try later" (429, 502/503/504, a timeout, a reset connection): the call is tried again.

    Raised by a hook (single or batch; a batch hook may also return it as one item's result). The syncer calls
    the hook again after a backoff, never before ``retry_after`` seconds, within the operation's retry budget
    (``core.retry``); only when that is spent is it the hook's failure, as any ``ObjectCrudException``.
    Not in diffsync: it is raised only by adapters written for it.
    """

    def __init__(self, message: str = "", retry_after: Optional[float] = None) -> None:
        """Args: message: what the remote said; retry_after: seconds it asked to wait (its ``Retry-After``)."""
        super().__init__(message)
        self.retry_after = retry_after


class ObjectStoreException(Exception):
    """A store could not keep or find an object (or could not be reached at all)."""


class ObjectAlreadyExists(ObjectStoreException):
    """An object with the same unique id is already stored; the one already there is carried for inspection."""

    def __init__(
        self, message: str, existing_object: Union[DiffSyncModel, DiffElement], *args: Any, **kwargs: Any
    ) -> None:
        self.existing_object = existing_object
        super().__init__(message, existing_object, *args, **kwargs)


class ObjectNotFound(ObjectStoreException):
    """The requested object is not in the store."""


class ObjectStoreWrongType(ObjectStoreException):
    """The object is not of a type that may be stored there (e.g. not a declared child type)."""


class DiffException(Exception):
    """A diff could not be used as asked."""


class DiffClassMismatch(DiffException):
    """A diff passed to sync_from/sync_to is not an instance of the diff_class given with it."""
