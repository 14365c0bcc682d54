"""What a create/update/delete is checked against and how its failure reads, whichever path runs its hook.

The syncer's single hooks (``DiffSyncSyncer._sync_model``) and the batch hooks of ``core.batch.LevelRun``
must refuse the same operations with the same exceptions and messages as the reference: log-based tooling
and callers that catch ``ObjectNotCreated`` and friends see one behaviour.  Both paths use these functions,
so a message is written once.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping, Optional, Type

from core.enum import DiffSyncActions
from core.exceptions import ObjectCrudException, ObjectNotCreated, ObjectNotDeleted, ObjectNotUpdated

if TYPE_CHECKING:
    from core.model import DiffSyncModel

_CREATE = DiffSyncActions.CREATE
_UPDATE = DiffSyncActions.UPDATE
_DELETE = DiffSyncActions.DELETE


def precheck(
    action: str, model_class: Type[DiffSyncModel], dst_model: Optional[DiffSyncModel], ids: Mapping[str, Any]
) -> Optional[ObjectCrudException]:
    """The error that forbids an operation before its hook runs, or None when the hook may run.

    Returned, not raised: the single hook path raises it inside its error handling, while a batch records it
    for one item and goes on with the others.

    Args:
        action: The element's action.
        model_class: The class named in the message (the reference names the class of the element it logs
            the operation with, which for a NATURAL_DELETION_ORDER delete may be another element's).
        dst_model: The destination object found for the element, or None.
        ids: The element's identifiers, as shown in the message.

    Returns:
        ObjectNotCreated for a create whose object exists, ObjectNotUpdated or ObjectNotDeleted for an update
        or delete whose object is missing, ObjectCrudException for an unknown action, else None.
    """
    if action == _CREATE:
        if dst_model is not None:
            return ObjectNotCreated(f"Failed to create {model_class.get_type()} {ids} - it already exists!")
    elif action == _UPDATE:
        if dst_model is None:
            return ObjectNotUpdated(f"Failed to update {model_class.get_type()} {ids} - not found!")
    elif action == _DELETE:
        if dst_model is None:
            return ObjectNotDeleted(f"Failed to delete {model_class.get_type()} {ids} - not found!")
    else:
        return ObjectCrudException(f'Unknown action "{action}"!')
    return None


def no_model_message(model_class: Type[DiffSyncModel], action: str) -> str:
    """The message of an operation whose hook returned None (status FAILURE, its children skipped)."""
    return f"{model_class.get_type()} {action} did not return the model object."
