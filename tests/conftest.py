"""Settings for the whole suite: the runner's tests use their own Redis database, never db 0.

Set before any test module imports ``worker`` (whose Celery app reads the environment once).
"""

import os

# SHARDSYNC_TEST_REDIS_URL lets two suites run side by side on one Redis (another database number).
TEST_REDIS_URL = os.environ.get("SHARDSYNC_TEST_REDIS_URL", "redis://127.0.0.1:6379/13")

os.environ["SHARDSYNC_BROKER_URL"] = TEST_REDIS_URL
os.environ.pop("SHARDSYNC_RESULT_BACKEND", None)
os.environ.pop("SHARDSYNC_STORE_URL", None)
os.environ.pop("SHARDSYNC_ADAPTER_MODULES", None)
os.environ.pop("SHARDSYNC_NAMESPACE", None)  # the default key root: the tests read keys by it
# Generated scenarios delete whole targets; the guardrail's own tests set a job's delete_limit (or read the
# default from a fresh Settings()).
os.environ["SHARDSYNC_DELETE_LIMIT"] = "none"
# Most tests read a job's stores after it ended; tests/integration/test_jobs.py checks the default (dropped).
os.environ["SHARDSYNC_KEEP_STORES"] = "1"


import pytest  # noqa: E402 - after the environment above, which must be set before anything imports worker
import structlog  # noqa: E402


@pytest.fixture(autouse=True)
def _structlog_as_it_was():
    """Give every test the structlog configuration the one before it started with.

    The CLI and the worker configure structlog for their process; a test that runs them in-process would
    otherwise leave that configuration to later tests, whose captured logs then depend on test order.
    """
    saved = structlog.get_config()
    yield
    if structlog.get_config() != saved:
        structlog.reset_defaults()
        structlog.configure(**saved)
