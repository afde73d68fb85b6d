"""A bad cache record is a miss with a warning, never a crash, and the next login replaces it."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from helpers.hostile import Runner, error_of
from helpers.user import ScriptedBrowser

import flyte_iap
from flyte_iap.cache import TokenCache
from flyte_iap.testing import FakeGoogle


def record_path(google: FakeGoogle, cache_dir: Path, client: str | None = None) -> Path:
    return TokenCache(cache_dir).path("user", google.IAP_CLIENT_ID, client or google.DESKTOP_CLIENT_ID)


def test_a_record_of_deeply_nested_brackets_is_a_miss_and_login_replaces_it(
    cli: Runner, fake_google: FakeGoogle, isolated_env: Path
) -> None:
    isolated_env.mkdir(mode=0o700)
    record = record_path(fake_google, isolated_env)
    record.write_text("[" * 30_000 + "]" * 30_000)  # under the size cap, too deep for the parser
    os.chmod(record, 0o600)

    result = cli("token", "--audience", fake_google.IAP_CLIENT_ID)

    stderr = error_of(result)
    assert f"warning: ignoring unreadable token cache file {record}: not valid JSON" in stderr
    assert "not signed in" in stderr
    login = flyte_iap.login_user(
        fake_google.IAP_CLIENT_ID,
        client_id=fake_google.DESKTOP_CLIENT_ID,
        client_secret=fake_google.DESKTOP_CLIENT_SECRET,
        opener=ScriptedBrowser(fake_google),
        notify=lambda message: None,
        timeout=20,
    )
    assert json.loads(record.read_text())["id_token"] == login.id_token


def test_a_record_with_a_malformed_updated_field_is_skipped_by_token_and_logout(
    cli: Runner, fake_google: FakeGoogle, warm_user: str, isolated_env: Path
) -> None:
    other = record_path(fake_google, isolated_env, "other-client")
    other.write_text(
        json.dumps(
            {
                "version": 1,
                "kind": "user",
                "audience": fake_google.IAP_CLIENT_ID,
                "principal": "other-client",
                "updated": "x",
                "id_token": warm_user,
            }
        )
    )
    os.chmod(other, 0o600)

    token = cli("token", "--audience", fake_google.IAP_CLIENT_ID, FLYTE_IAP_NO_FAST_PATH="1")
    logout = cli("logout", "--audience", fake_google.IAP_CLIENT_ID)

    assert token.returncode == 0, token.stderr
    assert token.stdout == warm_user + "\n"
    assert f"warning: ignoring token cache file with malformed fields: {other}" in token.stderr
    assert logout.returncode == 0, logout.stderr
    assert "signed out" in logout.stderr


@pytest.mark.parametrize("kind", ["huge", "fifo"])
def test_a_huge_or_fifo_record_is_a_miss_with_a_warning_not_a_hang(
    cli: Runner, fake_google: FakeGoogle, isolated_env: Path, kind: str
) -> None:
    isolated_env.mkdir(mode=0o700)
    record = record_path(fake_google, isolated_env)
    if kind == "huge":
        record.write_bytes(b" " * (2 << 20))
        os.chmod(record, 0o600)
    else:
        os.mkfifo(record, 0o600)

    result = cli("token", "--audience", fake_google.IAP_CLIENT_ID, timeout=30)

    stderr = error_of(result)
    assert f"warning: ignoring token cache file {record}" in stderr
    assert "not signed in" in stderr
