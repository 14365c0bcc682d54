"""deploy/README.md agrees with the app and with the files it describes.

It names no SHARDSYNC_ variable the app does not read, keeps no settings table of its own (the one list is the
top-level README's, checked by tests/test_readme.py), and the secrets it tells an operator to make are the files
deploy/make-secrets.sh writes and docker-compose.yml mounts.
"""

from __future__ import annotations

import re

from tests.deploy.files import (
    DEPLOY_README,
    ENV_NAME,
    allowed_env_names,
    compose,
    make_secrets_files,
)

TEXT = DEPLOY_README.read_text(encoding="utf-8")


def test_it_names_only_variables_the_app_reads():
    unknown = set(ENV_NAME.findall(TEXT)) - allowed_env_names()
    assert not unknown, f"deploy/README.md names variables that are no setting: {sorted(unknown)}"


def test_it_points_to_the_one_settings_table_instead_of_keeping_its_own():
    rows = [line for line in TEXT.splitlines() if re.match(r"\|\s*`SHARDSYNC_", line)]
    assert not rows, "a second settings table: point to the top-level README's instead"
    assert "../README.md#settings" in TEXT


def test_its_secrets_table_lists_the_files_make_secrets_writes():
    start = TEXT.index("## Secrets")
    section = TEXT[start : TEXT.index("\n## ", start + 1)]
    listed = re.findall(r"^\| `([a-z_]+)` \|", section, re.M)
    assert sorted(listed) == sorted(make_secrets_files()) == sorted(compose()["secrets"])


def test_its_snippet_by_hand_writes_the_same_files():
    start = TEXT.index("By hand, the same thing is:")
    snippet = TEXT[start : TEXT.index("```\n", TEXT.index("```sh", start) + 5)]
    written = set(re.findall(r"> secrets/([a-z_]+)", snippet))
    assert written == set(make_secrets_files())


def test_it_no_longer_says_what_the_app_stopped_doing():
    # Lost tasks come back through the watchdog, not only after the visibility timeout; job messages carry the
    # job id only, so specs are not shown in Flower; beat's state is in Redis.
    lowered = " ".join(TEXT.split()).lower()
    assert "only after the visibility timeout" not in lowered
    assert "restarts only after the visibility timeout" not in lowered
    assert "shown in flower" not in lowered
    assert "--schedule=" not in TEXT and "--basic-auth=" not in TEXT
    assert "celery@$HOSTNAME" not in TEXT
