"""shardsync's runner: sync jobs as Celery tasks across many workers (``celery -A worker worker``).

Apps use ``submit_sync`` (or the ``shardsync`` command line); deployments register adapters with
``register_adapter`` or the ``shardsync.adapters`` entry point group.
"""

from worker import tasks  # noqa: E402,F401 - registers the tasks on the app
from worker.api import JobHandle, submit_spec, submit_sync  # noqa: E402
from worker.celery_app import app  # noqa: E402,I001 - after the registry: adapter modules import it
from worker.errors import InvalidJob, JobFailed, ShardsyncError, TargetLocked, UnknownAdapter
from worker.registry import get_adapter, register_adapter, registered_adapters
from worker.settings import Settings, get_settings

__all__ = [
    "app",
    "get_adapter",
    "get_settings",
    "InvalidJob",
    "JobFailed",
    "JobHandle",
    "register_adapter",
    "registered_adapters",
    "Settings",
    "ShardsyncError",
    "submit_spec",
    "submit_sync",
    "TargetLocked",
    "UnknownAdapter",
]
