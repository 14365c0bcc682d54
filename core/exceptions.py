"""Exception hierarchy, identical in names and bases to diffsync 2.x so existing ``except`` clauses keep working."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Union

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
