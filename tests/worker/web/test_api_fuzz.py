"""The HTTP API fuzzed from its own OpenAPI document (schemathesis), in-process over the suite's Redis.

Every request schemathesis makes up, valid or not, must get a documented answer that is not a 500: a bad one
a 4xx with a message. Requests without a user are refused on every route (``test_console_api``), and
schemathesis checks that the declared bearer authentication is not ignored.
"""

from __future__ import annotations

import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import checks
from schemathesis.specs.openapi import checks as openapi_checks

from core import keys
from worker.settings import Settings
from worker.state.redis import RedisJobState
from worker.web.app import create_app
from worker.web.auth import token_digest

TOKEN = "fuzzing-operator-" + "f" * 20
APP = create_app(Settings(web_users=f"fuzz operator {token_digest(TOKEN)}"))
schema = schemathesis.openapi.from_asgi("/api/v1/openapi.json", APP)

CHECKS = [
    checks.not_a_server_error,
    openapi_checks.status_code_conformance,
    openapi_checks.content_type_conformance,
    openapi_checks.response_schema_conformance,
    openapi_checks.negative_data_rejection,
    openapi_checks.ignored_auth,
]


@schema.parametrize()
@settings(max_examples=20, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_the_api_answers_every_request_with_a_documented_status(case) -> None:
    case.call_and_validate(headers={"Authorization": f"Bearer {TOKEN}"}, checks=CHECKS)


def teardown_module() -> None:
    """Jobs the fuzzer submitted (valid specs happen): their records go, as the other tests' do."""
    from worker.connection import redis_client

    client = redis_client()
    for raw in client.zrange(keys.JOB_INDEX, 0, -1):
        job = RedisJobState(raw.decode(), client)
        spec = job.spec_data() or {}
        if (job.info() or {}).get("submitted_by") == "fuzz" or not spec:
            for key in client.scan_iter(match=f"{keys.job_key(job.job_id, '')}*", count=1000):
                client.delete(key)
            client.zrem(keys.JOB_INDEX, job.job_id)
            client.hdel(keys.JOB_LINES, job.job_id)
