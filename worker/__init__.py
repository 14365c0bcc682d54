"""shardsync's runner: sync jobs as Celery tasks across many workers (``celery -A worker worker``).

Apps use ``submit_sync`` (or the ``shardsync`` command line); deployments register adapters with
``register_adapter`` or the ``shardsync.adapters`` entry point group.
"""
# ruff: noqa: I001, E402 - the import order matters: adapter modules import this package's registry

from worker.errors import InvalidJob, JobFailed, RedisUnavailable, ShardsyncError, UnknownAdapter
from worker.registry import get_adapter, register_adapter, registered_adapters
from worker.settings import Settings, get_settings

from worker.celery_app import app
from worker import tasks  # noqa: F401 - registers the tasks on the app
from worker.api import JobHandle, submit_spec, submit_sync
from worker.local import run_local
from worker.schedule import load_schedule

if get_settings().schedule_file:
    # Last: the schedule names adapters, whose modules may import this package.
    app.conf.beat_schedule = load_schedule(get_settings().schedule_file)  # type: ignore[arg-type]

__all__ = [
    "app",
    "get_adapter",
    "get_settings",
    "InvalidJob",
    "JobFailed",
    "JobHandle",
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
