"""The web console in real headless Chromium (Debian's ``chromium``, driven by Playwright), served by
``shardsync web`` as a process of its own, over the 2 real workers of the session and the real Redis.

Each test does what an operator does in the browser, and saves a screenshot of each page it sees as an
artifact (PNG, under ``$SHARDSYNC_TEST_ARTIFACTS`` or ``artifacts/`` in the checkout).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import urllib.request
import uuid
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional

import pytest
from _workers import REDIS_URL, ROOT, free_port, poll, worker_env
from redis import Redis

from worker import JobFailed, submit_sync
from worker.web.auth import token_digest

pytestmark = pytest.mark.usefixtures("workers")

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
if CHROMIUM is None:  # .ci/run installs it; a bare checkout without it cannot run these
    pytest.skip("Debian's chromium is not installed (apt-get install chromium)", allow_module_level=True)
playwright_api = pytest.importorskip("playwright.sync_api")

OPERATOR, VIEWER = "op-" + uuid.uuid4().hex, "view-" + uuid.uuid4().hex
ARTIFACTS = Path(os.environ.get("SHARDSYNC_TEST_ARTIFACTS") or ROOT / "artifacts") / "console"


@pytest.fixture(scope="module")
def console(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``shardsync web`` on a free port, its users in a file, its session key in another; its base URL."""
    where = tmp_path_factory.mktemp("console")
    (where / "users").write_text(f"olga operator {token_digest(OPERATOR)}\nvic viewer {token_digest(VIEWER)}\n")
    (where / "secret").write_text(uuid.uuid4().hex * 2)
    port = free_port(18700)
    env = {**worker_env(), "SHARDSYNC_WEB_USERS_FILE": str(where / "users"),
           "SHARDSYNC_WEB_SECRET_FILE": str(where / "secret")}  # fmt: skip
    log = open(where / "web.log", "wb")  # noqa: SIM115 - closed with the process
    proc = subprocess.Popen(
        [sys.executable, "-m", "worker.cli", "web", "--port", str(port)],
        cwd=str(ROOT), env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        assert proc.poll() is None, (where / "web.log").read_text(errors="replace")
        try:
            with urllib.request.urlopen(f"{base}/health", timeout=1) as answer:
                return answer.status == 200
        except OSError:
            return False

    try:
        poll(healthy, 30, "the console to answer")
        yield base
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()
        text = (where / "web.log").read_text(errors="replace")
        assert "Traceback" not in text, text[-4000:]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with playwright_api.sync_playwright() as driver:
        chromium = driver.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        try:
            yield chromium
        finally:
            chromium.close()


def signed_in(browser: Any, console: str, token: str) -> Any:
    """A fresh browser page, signed in with ``token`` through the login form."""
    page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
    page.set_default_timeout(30_000)
    page.goto(f"{console}/jobs")
    assert page.url.startswith(f"{console}/login")  # no session: sent to sign in
    page.fill("input[name=token]", token)
    page.click("button[type=submit]")
    page.wait_for_url(f"{console}/jobs")
    return page


def shot(page: Any, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def sites(count: int, note: str = "", special: Optional[Dict[int, str]] = None) -> Dict[str, Any]:
    special = special or {}
    return {
        "region": [],
        "site": [
            {"name": f"s-{i}", "note": special.get(i, note), "devices": [{"name": "d0", "ports": [{"name": "p0"}]}]}
            for i in range(count)
        ],
    }


def target_kwargs(calls_key: str, data_key: str = "") -> Dict[str, Any]:
    found: Dict[str, Any] = {"record_url": REDIS_URL, "calls_key": calls_key}
    if data_key:
        found["data_key"] = data_key
    return found


def badge(page: Any) -> str:
    return str(page.inner_text("#state")).strip()


def wait_for_state(page: Any, *states: str, timeout: float = 60) -> str:
    """The job page's state once it is one of ``states`` (the page reloads itself when the job ends)."""
    return poll(lambda: badge(page) in states and badge(page), timeout, f"the job page to say {states}")  # type: ignore[no-any-return]


def test_sign_in_and_watch_a_running_job_move_on_two_workers(browser: Any, console: str, redis_db: Redis) -> None:
    page = signed_in(browser, console, OPERATOR)
    assert "olga (operator)" in page.inner_text("#user")
    shot(page, "01-jobs")
    calls_key = f"test:calls:{uuid.uuid4().hex}"
    data = {"data": sites(16, "sleep:0.4")}
    handle = submit_sync("dataset", "dataset", data, target_kwargs(calls_key), shard_size=1)
    page.goto(f"{console}/jobs/{handle.id}")
    page.evaluate("window.__same_page = true")  # gone if the page were reloaded to show progress
    poll(lambda: page.inner_text("#stage") == "sync" and int(page.inner_text("#count").split("/")[0]) > 0, 60,
         "the sync stage to start")  # fmt: skip
    first = int(page.inner_text("#count").split("/")[0])
    shot(page, "02-job-running")
    poll(lambda: int(page.inner_text("#count").split("/")[0] or 0) > first, 60,
         "the count to move")  # fmt: skip
    moved = page.evaluate("window.__same_page === true")
    running = page.locator("#shards li.done, #shards li.running").count()
    assert moved and running > 0
    report = handle.wait(120)
    assert {name.split("@")[0] for name in report["workers"]} == {"alpha", "beta"}  # both real workers took shards
    assert wait_for_state(page, "success") == "success"
    assert page.locator("#shards li.done").count() == int(page.inner_text("#shards-total")) == 16
    shot(page, "03-job-done")

    # Its diff, folded: the first site's subtree closes and its children are hidden.
    page.click("#diff-link")
    first_fold = page.locator("#tree details").first
    child = first_fold.locator("details, .leaf").first
    assert first_fold.evaluate("node => node.open") and child.is_visible()
    first_fold.locator("summary").first.click()
    assert not first_fold.evaluate("node => node.open") and not child.is_visible()
    shot(page, "04-diff-folded")
    page.select_option("select[name=action]", "create")
    page.fill("input[name=type]", "port")
    page.click("form.filters button")
    assert page.locator("#tree .element").count() == 16
    assert set(page.locator("#tree .type").all_inner_texts()) == {"port"}


def test_the_log_filtered_to_failures_shows_the_traceback(browser: Any, console: str, redis_db: Redis) -> None:
    handle = submit_sync("dataset", "dataset", {"data": sites(4, special={2: "fail-runtime"})},
                         target_kwargs(f"test:calls:{uuid.uuid4().hex}"))  # fmt: skip
    with pytest.raises(JobFailed):
        handle.wait(120)
    page = signed_in(browser, console, OPERATOR)
    page.goto(f"{console}/jobs/{handle.id}/log")
    page.select_option("#status-filter", "failure")
    page.click("#filter")
    rows = page.locator("#log tbody tr")
    assert rows.count() == 1 and "s-2" in rows.first.inner_text()
    assert not page.locator(".traceback pre").first.is_visible()
    page.locator(".traceback summary").first.click()
    trace = page.locator(".traceback pre").first
    assert trace.is_visible()
    assert "Traceback (most recent call last)" in trace.inner_text()
    assert "RuntimeError: the hook broke on fail-runtime" in trace.inner_text()
    shot(page, "05-log-failures")


def plan_of(data_key: str, calls_key: str, redis_db: Redis) -> str:
    redis_db.set(
        data_key, json.dumps({"region": [], "site": [{"name": "s-0", "region": "a"}, {"name": "s-1", "region": "a"}]})
    )
    source = {"region": [], "site": [{"name": "s-0", "region": "b"}, {"name": "s-1", "region": "b"}, {"name": "s-2"}]}
    handle = submit_sync("dataset", "dataset", {"data": source}, target_kwargs(calls_key, data_key), dry_run=True)
    assert handle.wait(120)["status"] == "dry-run"
    return handle.id


def test_approve_a_plan_and_see_it_applied(browser: Any, console: str, redis_db: Redis) -> None:
    from ss_test_adapters import read_calls

    data_key, calls_key = f"test:data:{uuid.uuid4().hex}", f"test:calls:{uuid.uuid4().hex}"
    plan_id = plan_of(data_key, calls_key, redis_db)
    assert read_calls(redis_db, calls_key) == []  # a plan changes nothing
    page = signed_in(browser, console, OPERATOR)
    page.goto(f"{console}/jobs/{plan_id}")
    assert "a plan: nothing applied" in page.inner_text("main")
    shot(page, "06-plan")
    page.click("#approve")
    page.wait_for_url(lambda url: "/jobs/" in url and plan_id not in url)
    assert wait_for_state(page, "success", "failed") == "success"
    assert plan_id in page.inner_text("main")  # "Applies plan <id>"
    shot(page, "07-plan-applied")
    calls = {(call[0], call[2]) for call in read_calls(redis_db, calls_key) if call[0] != "sync_complete"}
    assert calls == {("update", "s-0"), ("update", "s-1"), ("create", "s-2")}
    page.goto(f"{console}/jobs/{plan_id}")
    assert page.locator("#approve").count() == 0  # applied once: no second approval


def test_approving_a_stale_plan_shows_the_refusal(browser: Any, console: str, redis_db: Redis) -> None:
    from ss_test_adapters import read_calls

    data_key, calls_key = f"test:data:{uuid.uuid4().hex}", f"test:calls:{uuid.uuid4().hex}"
    plan_id = plan_of(data_key, calls_key, redis_db)
    # Someone changes the target after the plan: s-1 is not what the plan saw any more.
    redis_db.set(
        data_key, json.dumps({"region": [], "site": [{"name": "s-0", "region": "a"}, {"name": "s-1", "region": "q"}]})
    )
    page = signed_in(browser, console, OPERATOR)
    page.goto(f"{console}/jobs/{plan_id}")
    page.click("#approve")
    page.wait_for_url(lambda url: "/jobs/" in url and plan_id not in url)
    assert wait_for_state(page, "success", "failed") == "failed"
    error = page.inner_text("#report-error")
    assert f"refused to apply plan {plan_id}: the target has changed since the plan" in error
    shot(page, "08-stale-plan-refused")
    assert read_calls(redis_db, calls_key) == []  # nothing applied


def test_cancel_a_running_job(browser: Any, console: str, redis_db: Redis) -> None:
    gate = f"test:gate:{uuid.uuid4().hex}"
    handle = submit_sync("dataset", "dataset", {"data": sites(6, f"wait:{gate}")},
                         target_kwargs(f"test:calls:{uuid.uuid4().hex}"), shard_size=1)  # fmt: skip
    page = signed_in(browser, console, OPERATOR)
    page.goto(f"{console}/jobs/{handle.id}")
    poll(lambda: page.inner_text("#stage") == "sync", 60, "the sync stage")
    page.on("dialog", lambda dialog: dialog.accept())  # "Cancel this job?"
    page.click("#cancel")
    page.wait_for_load_state()
    redis_db.set(gate, 1, ex=120)  # the hooks that wait finish their operation; no new subtree starts
    try:
        assert wait_for_state(page, "failed") == "failed"
        assert "cancelled in the console by olga" in page.inner_text("#report-error")
        shot(page, "09-cancelled")
    finally:
        redis_db.set(gate, 1, ex=120)


def test_a_viewer_can_neither_cancel_nor_approve(browser: Any, console: str, redis_db: Redis) -> None:
    gate = f"test:gate:{uuid.uuid4().hex}"
    data_key, calls_key = f"test:data:{uuid.uuid4().hex}", f"test:calls:{uuid.uuid4().hex}"
    plan_id = plan_of(data_key, calls_key, redis_db)
    handle = submit_sync("dataset", "dataset", {"data": sites(2, f"wait:{gate}")}, target_kwargs(calls_key))
    try:
        page = signed_in(browser, console, VIEWER)
        page.goto(f"{console}/jobs/{handle.id}")
        assert page.locator("#cancel").count() == 0
        csrf = page.get_attribute("input[name=csrf]", "value")
        answers: List[int] = page.evaluate(
            """async ([job, plan, csrf]) => {
                const post = (path) => fetch(path, {method: "POST", headers: {"X-CSRF-Token": csrf}});
                return [(await post(`/api/v1/jobs/${job}/cancel`)).status,
                        (await post(`/api/v1/jobs/${plan}/apply`)).status,
                        (await post(`/jobs/${job}/cancel`)).status];
            }""",
            [handle.id, plan_id, csrf],
        )
        assert answers[:2] == [403, 403] and answers[2] in (403, 422)
        shot(page, "10-viewer-job")
        page.goto(f"{console}/jobs/{plan_id}")
        assert page.locator("#approve").count() == 0 and "a plan: nothing applied" in page.inner_text("main")
        for name in ("schedules", "workers"):
            page.goto(f"{console}/{name}")
            shot(page, f"11-{name}")
        assert "alpha@" in page.inner_text("#workers") and "beta@" in page.inner_text("#workers")
    finally:
        redis_db.set(gate, 1, ex=120)
    assert handle.wait(120)["status"] == "success"  # nobody cancelled it
