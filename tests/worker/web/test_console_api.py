"""The console and the HTTP API in-process (Starlette's test client) over the suite's real Redis database.

Jobs are written straight into the job state (as a worker would leave them), so each read is checked against
known content: paging a diff, the job list's filters and retention, who may do what, the CSRF guard.
"""

from __future__ import annotations

import os
import re
import time
import uuid
from typing import Any, Dict, Iterator, List

import pytest
from fastapi.testclient import TestClient
from redis import Redis

from core import keys
from worker.errors import InvalidSetting
from worker.job.history import list_jobs, record_line
from worker.settings import Settings, get_settings
from worker.state.redis import RedisJobState
from worker.web import reads
from worker.web.app import create_app
from worker.web.auth import UserBook, parse_users, token_digest

OPERATOR, VIEWER = "operator-token-" + "o" * 20, "viewer-token-" + "v" * 20
USERS = f"olga operator {token_digest(OPERATOR)}\nvic viewer {VIEWER}\n"


@pytest.fixture
def client_redis() -> Iterator[Redis]:
    client = Redis.from_url(os.environ["SHARDSYNC_BROKER_URL"])
    made: List[str] = []
    client.made = made  # type: ignore[attr-defined]
    yield client
    for job_id in made:
        for key in client.scan_iter(match=f"{keys.job_key(job_id, '')}*", count=1000):
            client.delete(key)
        client.zrem(keys.JOB_INDEX, job_id)
        client.hdel(keys.JOB_LINES, job_id)


@pytest.fixture
def app(tmp_path) -> Any:
    users = tmp_path / "users"
    users.write_text(USERS)
    settings = Settings(web_users_file=str(users))
    return create_app(settings)


def bearer(token: str) -> Dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def element(name: str, source: Any, target: Any, children: List[Any] = ()) -> List[Any]:  # type: ignore[assignment]
    return ["site", name, {"name": name}, source, target, list(children)]


def make_job(client: Redis, records: List[Any] = (), status: str = "success", **spec: Any) -> RedisJobState:  # type: ignore[assignment]
    job_id = "t-" + uuid.uuid4().hex
    client.made.append(job_id)  # type: ignore[attr-defined]
    job = RedisJobState(job_id, client)
    info = {"schedule": spec.pop("schedule")} if "schedule" in spec else None
    job.create({"job_id": job_id, "source": "src", "target": "dst", **spec}, 3600, info)
    if records:
        job.save_diff(list(records), {"create": 1, "update": 1, "delete": 1, "no-change": 0, "skip": 0})
    if status:
        job.save_report({"status": status, "operations": len(records), "failures": []}, 3600)
        job.set_info(status=status, finished=time.time())
        record_line(job)
    return job


# -- users ---------------------------------------------------------------------------------------------------


def test_users_file_errors_name_the_entry() -> None:
    with pytest.raises(InvalidSetting, match=r"entry 2: expected 'name role token'"):
        parse_users("a viewer " + "x" * 20 + "\nb operator\n", "users")
    with pytest.raises(InvalidSetting, match=r"role 'admin' of a is not one of viewer, operator"):
        parse_users("a admin " + "x" * 20, "users")
    with pytest.raises(InvalidSetting, match=r"user a is listed twice"):
        parse_users(f"a viewer {'x' * 20}; a operator {'y' * 20}", "users")
    with pytest.raises(InvalidSetting, match=r"shorter than 16"):
        parse_users("a viewer short", "users")
    with pytest.raises(InvalidSetting, match=r"not sha256: and 64 hex digits"):
        parse_users("a viewer sha256:abc", "users")


def test_no_users_refuses_to_start_and_says_how() -> None:
    with pytest.raises(InvalidSetting, match=r"SHARDSYNC_WEB_USERS_FILE .*shardsync web token"):
        UserBook(Settings())


def test_a_rewritten_users_file_takes_effect_and_ends_the_removed_users_sessions(tmp_path) -> None:
    users = tmp_path / "users"
    users.write_text(USERS)
    book = UserBook(Settings(web_users_file=str(users)))
    assert book.by_token(VIEWER).name == "vic"
    users.write_text(f"olga operator {token_digest(OPERATOR)}\n# vic left\n")
    os.utime(users, (time.time() + 5, time.time() + 5))  # a new modification time, whatever the clock's grain
    assert book.by_token(VIEWER) is None
    assert book.by_session("olga", token_digest(OPERATOR)).role == "operator"
    assert book.by_session("olga", token_digest("another")) is None


# -- who may do what ---------------------------------------------------------------------------------------------


def test_every_api_route_refuses_a_request_without_a_user(app: Any) -> None:
    client = TestClient(app)
    paths = client.get("/api/v1/openapi.json").json()["paths"]
    assert len(paths) >= 10
    for path, methods in paths.items():
        for method in methods:
            answer = client.request(method.upper(), path.replace("{job_id}", "x"))
            assert answer.status_code == 401, (method, path, answer.text)
            assert "sign in" in answer.json()["detail"]
            answer = client.request(method.upper(), path.replace("{job_id}", "x"), headers=bearer("wrong" * 5))
            assert answer.status_code == 401, (method, path)


def test_a_viewer_reads_but_cannot_submit_cancel_or_apply(app: Any, client_redis: Redis) -> None:
    job = make_job(client_redis, status="")
    client = TestClient(app)
    assert client.get(f"/api/v1/jobs/{job.job_id}", headers=bearer(VIEWER)).json()["state"] == "queued"
    for path in ("/api/v1/jobs", f"/api/v1/jobs/{job.job_id}/cancel", f"/api/v1/jobs/{job.job_id}/apply"):
        answer = client.post(path, headers=bearer(VIEWER), json={"source": "demo", "target": "demo"})
        assert answer.status_code == 403, path
        assert "vic is a viewer" in answer.json()["detail"]
    assert job.aborted() is None


def test_the_session_cookie_needs_the_csrf_token_for_a_change(app: Any, client_redis: Redis) -> None:
    job = make_job(client_redis, status="")
    client = TestClient(app)
    answer = client.get("/jobs", follow_redirects=False)
    assert answer.status_code == 303 and answer.headers["location"] == "/login?next=/jobs"
    answer = client.post("/login", data={"token": OPERATOR, "next": "//elsewhere.example/x"}, follow_redirects=False)
    assert answer.headers["location"] == "/jobs"  # never off the site
    page = client.get(f"/jobs/{job.job_id}").text
    csrf = re.search(r'name="csrf" value="([^"]+)"', page).group(1)
    assert client.post(f"/api/v1/jobs/{job.job_id}/cancel").status_code == 403  # the cookie alone
    assert client.post(f"/jobs/{job.job_id}/cancel", data={"csrf": "forged"}).status_code == 403
    assert job.aborted() is None
    answer = client.post(f"/jobs/{job.job_id}/cancel", data={"csrf": csrf}, follow_redirects=False)
    assert answer.status_code == 303
    assert "cancelled in the console by olga" in job.aborted()
    answer = client.post(f"/api/v1/jobs/{job.job_id}/cancel", headers={"X-CSRF-Token": csrf})
    assert answer.status_code == 202


def test_a_wrong_token_at_the_login_is_refused(app: Any) -> None:
    answer = TestClient(app).post("/login", data={"token": "nope"}, follow_redirects=False)
    assert answer.status_code == 401 and "Unknown token" in answer.text


def test_submit_validates_as_submit_sync_and_names_the_problem(app: Any, client_redis: Redis) -> None:
    client = TestClient(app)
    answer = client.post("/api/v1/jobs", headers=bearer(OPERATOR), json={"source": "nosuch", "target": "demo"})
    assert answer.status_code == 422 and "nosuch" in answer.json()["detail"]
    answer = client.post("/api/v1/jobs", headers=bearer(OPERATOR), json={"source": "demo", "target": "demo", "x": 1})
    assert answer.status_code == 422 and "x: Extra inputs are not permitted" in answer.json()["detail"]
    answer = client.post(
        "/api/v1/jobs", headers=bearer(OPERATOR), json={"source": "demo", "target": "demo", "shard_size": 0}
    )
    assert answer.status_code == 422 and "shard_size" in answer.json()["detail"]
    job_id = "t-" + uuid.uuid4().hex
    client_redis.made.append(job_id)  # type: ignore[attr-defined]
    answer = client.post(
        "/api/v1/jobs",
        headers=bearer(OPERATOR),
        json={"source": "demo", "target": "demo", "dry_run": True, "job_id": job_id},
    )
    assert answer.status_code == 201, answer.text
    assert answer.json()["job_id"] == job_id
    shown = client.get(f"/api/v1/jobs/{job_id}", headers=bearer(VIEWER)).json()
    assert (shown["submitted_by"], shown["dry_run"]) == ("olga", True)  # queued, or taken by a worker of the session
    assert shown["state"] in ("queued", "running", "dry-run", "failed")
    again = client.post(
        "/api/v1/jobs", headers=bearer(OPERATOR), json={"source": "demo", "target": "demo", "job_id": job_id}
    )
    assert again.status_code == 409 and "already taken" in again.json()["detail"]


def test_unknown_jobs_and_bad_ids_are_4xx(app: Any) -> None:
    client = TestClient(app)
    assert client.get("/api/v1/jobs/nosuch", headers=bearer(VIEWER)).status_code == 404
    assert client.get("/api/v1/jobs/bad%20id", headers=bearer(VIEWER)).status_code == 422
    answer = client.get("/api/v1/jobs?since=yesterday", headers=bearer(VIEWER))
    assert answer.status_code == 422 and "since 'yesterday'" in answer.json()["detail"]
    answer = client.get("/api/v1/jobs?state=nosuch", headers=bearer(VIEWER))
    assert answer.status_code == 422 and "state" in answer.json()["detail"]


# -- reads -------------------------------------------------------------------------------------------------------


def tree(count: int) -> List[Any]:
    """``count`` top-level sites: each updated, with a created child holding a deleted grandchild."""
    return [
        element(
            f"s{i}",
            {"note": "new"},
            {"note": "old"},
            [element(f"c{i}", {"a": 1}, None, [element(f"g{i}", None, {"b": 2})])],
        )
        for i in range(count)
    ]


def test_diff_pages_cover_every_element_once_in_plan_order(client_redis: Redis) -> None:
    job = make_job(client_redis, tree(25))
    seen, cursor = [], None
    while True:
        page = reads.diff_page(job, cursor, limit=7)
        seen += [(item["name"], item["depth"], item["action"]) for item in page["items"]]
        cursor = page["next"]
        if cursor is None:
            break
        assert len(page["items"]) == 7
    expected = []
    for i in range(25):
        expected += [(f"s{i}", 0, "update"), (f"c{i}", 1, "create"), (f"g{i}", 2, "delete")]
    assert seen == expected
    first = reads.diff_page(job, None, limit=1)["items"][0]
    assert first["changes"] == {"note": ["new", "old"]} and first["children"] == 1


def test_diff_filters_by_type_and_action(client_redis: Redis) -> None:
    job = make_job(client_redis, tree(10))
    page = reads.diff_page(job, None, limit=100, actions=["delete"])
    assert [item["name"] for item in page["items"]] == [f"g{i}" for i in range(10)] and page["next"] is None
    assert reads.diff_page(job, None, limit=100, types=["device"])["items"] == []
    with pytest.raises(ValueError, match="unknown action 'move'"):
        reads.diff_page(job, None, actions=["move"])
    with pytest.raises(ValueError, match="cursor"):
        reads.diff_page(job, "x.y")


def test_the_api_pages_the_diff_and_the_console_draws_it_as_folds(app: Any, client_redis: Redis) -> None:
    job = make_job(client_redis, tree(3))
    client = TestClient(app)
    page = client.get(f"/api/v1/jobs/{job.job_id}/diff?limit=4", headers=bearer(VIEWER)).json()
    assert [item["name"] for item in page["items"]] == ["s0", "c0", "g0", "s1"] and page["next"] == "1.1"
    page = client.get(f"/api/v1/jobs/{job.job_id}/diff?cursor=1.1&action=create", headers=bearer(VIEWER)).json()
    assert [item["name"] for item in page["items"]] == ["c1", "c2"]
    client.post("/login", data={"token": VIEWER})
    html = client.get(f"/jobs/{job.job_id}/diff").text
    assert html.count("<details") == html.count("</details>") == 6  # each site and each created child folds


def test_the_job_list_filters_and_forgets_jobs_past_the_retention(client_redis: Redis) -> None:
    nightly = make_job(client_redis, schedule="nightly")
    plain = make_job(client_redis, status="failed", target="other")
    queued = make_job(client_redis, status="")
    mine = {nightly.job_id, plain.job_id, queued.job_id}

    def ids(**filters: Any) -> set:
        return {line["job_id"] for line in list_jobs(limit=None, client=client_redis, **filters)} & mine

    assert ids() == mine
    assert ids(schedule="nightly") == {nightly.job_id}
    assert ids(schedule="") == {plain.job_id, queued.job_id}
    assert ids(state="failed", target="other") == {plain.job_id}
    assert ids(state="queued") == {queued.job_id}
    assert ids(since=time.time() + 60) == set()
    client_redis.zadd(keys.JOB_INDEX, {plain.job_id: time.time() - get_settings().history_ttl - 10})
    assert ids() == {nightly.job_id, queued.job_id}
    assert client_redis.hget(keys.JOB_LINES, plain.job_id) is None


def test_an_ended_job_keeps_its_records_for_the_history_within_its_budget(client_redis: Redis, monkeypatch) -> None:
    job = make_job(client_redis, tree(50))
    kept = job.keep_history()
    assert kept["diff_and_log"] is True
    assert client_redis.ttl(job.key("diff")) > get_settings().store_ttl
    assert client_redis.ttl(job.key("report")) > get_settings().store_ttl
    monkeypatch.setenv("SHARDSYNC_HISTORY_MAX_MB", "0.0001")
    get_settings.cache_clear()
    try:
        kept = job.keep_history()
    finally:
        monkeypatch.delenv("SHARDSYNC_HISTORY_MAX_MB")
        get_settings.cache_clear()
    assert kept["diff_and_log"] is False and kept["bytes"] > 100
    assert client_redis.ttl(job.key("diff")) <= get_settings().store_ttl
    assert client_redis.ttl(job.key("report")) > get_settings().store_ttl
    assert job.info()["history"]["diff_and_log"] is False


def test_pages_answer_for_a_signed_in_viewer(app: Any, client_redis: Redis) -> None:
    job = make_job(client_redis, tree(2), status="dry-run", dry_run=True)
    client = TestClient(app)
    client.post("/login", data={"token": VIEWER})
    for path in ("/jobs", f"/jobs/{job.job_id}", f"/jobs/{job.job_id}/diff", f"/jobs/{job.job_id}/log",
                 "/schedules", "/workers", "/jobs?state=dry-run"):  # fmt: skip
        answer = client.get(path)
        assert answer.status_code == 200, (path, answer.text[-500:])
        assert "built-in method" not in answer.text and "None update" not in answer.text, path
    page = client.get(f"/jobs/{job.job_id}").text
    assert "1 create, 1 update, 1 delete" in page
    assert "a plan: nothing applied" in page and 'id="approve"' not in page  # a viewer has no buttons
    answer = client.get("/jobs?since=someday", headers={"accept": "text/html"})
    assert answer.status_code == 422 and "since &#39;someday&#39;" in answer.text


def test_the_job_page_says_what_run_of_its_pair_a_job_was(app: Any, client_redis: Redis) -> None:
    job = make_job(client_redis, status="", pair="nautobot-netbox")
    pair = {"name": "nautobot-netbox", "run": "changes", "reason": "the pair's kept state is warm", "paths": 12,
            "cursors_advanced": False}  # fmt: skip
    job.save_report({"status": "failed", "operations": 0, "failures": [], "pair": pair}, 3600)
    client = TestClient(app)
    client.post("/login", data={"token": VIEWER, "next": "/jobs"})
    page = client.get(f"/jobs/{job.job_id}").text
    shown = re.search(r'<dd id="pair">(.*?)</dd>', page).group(1)
    assert shown == "nautobot-netbox: a changes run (the pair&#39;s kept state is warm), 12 changed paths; cursors kept"
