"""shardsync's runner: sync jobs as Celery tasks across many workers (``celery -A worker worker``).

Apps use ``submit_sync`` (or the ``shardsync`` command line); deployments register adapters with
``register_adapter`` or the ``shardsync.adapters`` entry point group. Importing this package reads no
schedule file and opens no connection.
"""

from worker.adapters.registry import get_adapter, register_adapter, registered_adapters
from worker.api import JobHandle, list_jobs, submit_spec, submit_sync
from worker.errors import InvalidJob, JobFailed, JobStateLost, RedisUnavailable, ShardsyncError, UnknownAdapter
from worker.pairs.runs import forget_pair
from worker.runners.celery import (
    tasks,  # noqa: F401 - registers the tasks on the app
    watchdog,  # noqa: F401 - starts with every worker
)
from worker.runners.celery.app import app  # noqa: I001 - after the registry: adapter modules may import this package
from worker.runners.local import run_local
from worker.schedule.entries import load_schedule
from worker.settings import Settings, get_settings

__all__ = [
    "app",
    "forget_pair",
    "get_adapter",
    "get_settings",
    "InvalidJob",
    "JobFailed",
    "JobStateLost",
    "JobHandle",
    "list_jobs",
    "load_schedule",
    "RedisUnavailable",
    "register_adapter",
    "registered_adapters",
    "run_local",
    "Settings",
    "ShardsyncError",
    "submit_spec",
    "submit_sync",
    "UnknownAdapter",
]
