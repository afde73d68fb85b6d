"""`flyte-iap status` lists what is stored, per identity, without any token or secret, and exits 1 when
nothing usable is there."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from helpers.user import Runner, ScriptedBrowser

from flyte_iap.cache import TokenCache
from flyte_iap.signed_jwt import get_service_account_jwt
from flyte_iap.status import stored_identities
from flyte_iap.testing import FakeGoogle
from flyte_iap.user_tokens import login_user

SA = "flyte-ci@fake-project.iam.gserviceaccount.com"
URL = "https://flyte.example.com"


@pytest.fixture
def stored(fake_google: FakeGoogle, aud: str, tmp_path: Path) -> dict[str, str]:
    """A user login, a service-account ID token and a service-account JWT in the store."""
    from flyte_iap.service_account import get_service_account_id_token

    login_user(
        aud,
        client_id=fake_google.DESKTOP_CLIENT_ID,
        client_secret=fake_google.DESKTOP_CLIENT_SECRET,
        opener=ScriptedBrowser(fake_google),
        notify=lambda message: None,
        timeout=20,
    )
    key = tmp_path / "key.json"
    key.write_text(json.dumps(fake_google.add_service_account(SA)))
    sa_token = get_service_account_id_token(aud, key_file=key)
    jwt = get_service_account_jwt(URL, key_file=key)
    record = TokenCache().read("user", aud, fake_google.DESKTOP_CLIENT_ID) or {}
    return {
        "id_token": record["id_token"],
        "refresh_token": record["refresh_token"],
        "sa_token": sa_token,
        "jwt": jwt,
    }


def test_every_stored_identity_is_listed_with_its_details_and_no_secret(
    run_cli: Runner, fake_google: FakeGoogle, aud: str, stored: dict[str, str]
) -> None:
    result = run_cli("status", "--format", "json")

    assert result.returncode == 0, result.stderr
    identities = json.loads(result.stdout)["identities"]
    by_kind = {i["kind"]: i for i in identities}
    assert set(by_kind) == {"user", "service-account", "service-account-jwt"}
    user = by_kind["user"]
    assert (user["email"], user["audience"], user["client_id"]) == (
        fake_google.user_email,
        aud,
        fake_google.DESKTOP_CLIENT_ID,
    )
    assert (user["store"], user["secret_source"], user["refresh_grant"], user["usable"]) == (
        "file",
        "--client-secret",
        True,
        True,
    )
    assert 3500 < user["seconds_left"] <= 3600 and user["expiry"].endswith("Z")
    assert by_kind["service-account"]["email"] == SA
    assert by_kind["service-account"]["credentials_source"].startswith("--key-file ")
    assert by_kind["service-account-jwt"]["audience"] == f"{URL}/*"
    for secret in (*stored.values(), fake_google.DESKTOP_CLIENT_SECRET):
        assert secret not in result.stdout and secret not in result.stderr


def test_text_output_names_account_audience_and_time_left(
    run_cli: Runner, fake_google: FakeGoogle, aud: str, stored: dict[str, str]
) -> None:
    result = run_cli("status", "--audience", aud)

    assert result.returncode == 0
    assert f"{fake_google.user_email} (user, usable)" in result.stdout
    assert f"  audience:     {aud}" in result.stdout
    assert re.search(r"token:        expires \S+Z \(\d+m\d\ds left\)", result.stdout)
    assert "refresh:      held, file store" in result.stdout
    assert f"{URL}/*" not in result.stdout  # the JWT is for another audience


@pytest.mark.parametrize("fast", [None, "1"], ids=["fast-path", "click"])
def test_fast_path_and_click_print_the_same(
    run_cli: Runner, cli_env: dict[str, str], stored: dict[str, str], fast: str | None
) -> None:
    env = dict(cli_env)
    if fast:
        env["FLYTE_IAP_NO_FAST_PATH"] = fast
    first = run_cli("status", "--format", "json", env=env)
    other = dict(env)
    other.pop("FLYTE_IAP_NO_FAST_PATH", None) if fast else other.update(FLYTE_IAP_NO_FAST_PATH="1")
    second = run_cli("status", "--format", "json", env=other)

    strip = [
        {k: v for k, v in i.items() if k not in ("seconds_left",)}
        for i in json.loads(first.stdout)["identities"]
    ]
    again = [
        {k: v for k, v in i.items() if k not in ("seconds_left",)}
        for i in json.loads(second.stdout)["identities"]
    ]
    assert strip == again and first.returncode == second.returncode == 0


@pytest.mark.parametrize("fast", [None, "1"], ids=["fast-path", "click"])
def test_nothing_stored_exits_1_with_the_login_hint(
    run_cli: Runner, cli_env: dict[str, str], fast: str | None
) -> None:
    env = dict(cli_env, **({"FLYTE_IAP_NO_FAST_PATH": fast} if fast else {}))
    result = run_cli("status", env=env)

    assert result.returncode == 1
    assert result.stdout == "No stored identities.\n"
    error, hint = result.stderr.splitlines()
    assert error == "error: nothing usable is stored"
    assert hint.startswith("hint: sign in with `flyte-iap login")


def test_dropped_grant_and_expired_token_is_not_usable(
    fake_google: FakeGoogle, aud: str, stored: dict[str, str]
) -> None:
    cache = TokenCache()
    record = cache.read("user", aud, fake_google.DESKTOP_CLIENT_ID) or {}
    record.pop("refresh_token")
    record["grant_dropped"] = "invalid_grant"
    record["id_token"] = fake_google.mint_id_token(aud, expired=True)
    cache.write("user", aud, fake_google.DESKTOP_CLIENT_ID, record)

    (user,) = [i for i in stored_identities(audience=aud) if i["kind"] == "user"]

    assert (user["usable"], user["refresh_grant"], user["token_valid"], user["seconds_left"]) == (
        False,
        False,
        False,
        0,
    )


def test_a_corrupt_store_file_is_a_warning_not_a_failure(
    run_cli: Runner, stored: dict[str, str], isolated_env: Path
) -> None:
    (isolated_env / "user-0000-0000.json").write_text("{not json")

    result = run_cli("status")

    assert result.returncode == 0
    assert "warning: ignoring unreadable token cache file" in result.stderr
