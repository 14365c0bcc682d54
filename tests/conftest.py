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
# Generated scenarios delete whole targets; the guardrail's own tests set a job's delete_limit (or read the
# default from a fresh Settings()).
os.environ["SHARDSYNC_DELETE_LIMIT"] = "none"
# Most tests read a job's stores after it ended; tests/integration/test_jobs.py checks the default (dropped).
os.environ["SHARDSYNC_KEEP_STORES"] = "1"
