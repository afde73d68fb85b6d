"""The library API: login, cached and refreshed tokens, invalid grants, stores, secrets and logout."""

from __future__ import annotations

import io
import json
import stat
import sys
from pathlib import Path
from typing import Any

import pytest
from helpers.user import ADC_ACCOUNT, SECRET_NAME, MemoryKeyring, ScriptedBrowser

import flyte_iap
from flyte_iap.cache import TokenCache
from flyte_iap.errors import (
    CacheError,
    ConfigurationError,
    CredentialsError,
    FlyteIapError,
    InvalidTokenError,
    LoginRequiredError,
    OAuthError,
    PermissionDeniedError,
    TransportError,
)
from flyte_iap.idtoken import decode_claims
from flyte_iap.testing import FakeGoogle
from flyte_iap.user_tokens import UserLogin, get_user_id_token, login_user, logout_user


def quiet(message: str) -> None:
    pass


def login(google: FakeGoogle, browser: ScriptedBrowser, aud: str, **options: Any) -> UserLogin:
    options.setdefault("client_id", google.DESKTOP_CLIENT_ID)
    if not {"client_secret", "client_secrets_file", "client_secret_gcp_secret"} & options.keys():
        options["client_secret"] = google.DESKTOP_CLIENT_SECRET
    return login_user(aud, opener=browser, notify=quiet, timeout=20, **options)


def login_with_short_token(google: FakeGoogle, browser: ScriptedBrowser, aud: str, **options: Any) -> str:
    """Sign in while the fake issues tokens with 100 s left (below the 300 s min_valid), then go back."""
    google.token_lifetime = 100
    result = login(google, browser, aud, **options)
    google.token_lifetime = 3600
    google.clear_requests()
    return result.id_token


def refreshes(google: FakeGoogle) -> list[dict[str, str]]:
    return [r.form for r in google.requests_to("/token") if r.form.get("grant_type") == "refresh_token"]


def record_of(cache_dir: Path, google: FakeGoogle, aud: str) -> dict[str, Any] | None:
    return TokenCache(cache_dir).read("user", aud, google.DESKTOP_CLIENT_ID)


def test_public_names_are_exported_lazily() -> None:
    assert flyte_iap.get_user_id_token is get_user_id_token
    assert flyte_iap.login_user is login_user
    assert flyte_iap.logout_user is logout_user
    assert flyte_iap.IapAuth.__name__ == "IapAuth"


def test_login_stores_a_token_for_the_audience_and_the_grant(
    fake_google: FakeGoogle, browser: ScriptedBrowser, aud: str, isolated_env: Path
) -> None:
    result = login(fake_google, browser, aud)

    claims = decode_claims(result.id_token)
    assert claims["aud"] == aud and claims["azp"] == fake_google.DESKTOP_CLIENT_ID
    assert result.email == fake_google.user_email
    record = record_of(isolated_env, fake_google, aud)
    assert record is not None
    assert record["id_token"] == result.id_token
    assert record["store"] == "file"
    assert record["client_id"] == fake_google.DESKTOP_CLIENT_ID
    assert record["client_secret"] == fake_google.DESKTOP_CLIENT_SECRET
    assert record["refresh_token"].startswith("1//")
    # the exchange, then one refresh with the IAP audience
    grants = [r.form["grant_type"] for r in fake_google.requests_to("/token")]
    assert grants == ["authorization_code", "refresh_token"]
    assert refreshes(fake_google)[0]["audience"] == aud


def test_signing_in_again_reuses_the_stored_client_and_secret(
    fake_google: FakeGoogle, browser: ScriptedBrowser, aud: str
) -> None:
    first = login(fake_google, browser, aud)
    again = login_user(aud, opener=browser, notify=quiet, timeout=20)
    assert again.client_id == first.client_id
    assert again.id_token != first.id_token
    codes = [
        r.form for r in fake_google.requests_to("/token") if r.form["grant_type"] == "authorization_code"
    ]
    assert [c["client_secret"] for c in codes] == [fake_google.DESKTOP_CLIENT_SECRET] * 2


def test_login_files_are_private(
    fake_google: FakeGoogle, browser: ScriptedBrowser, aud: str, isolated_env: Path
) -> None:
    login(fake_google, browser, aud)
    assert stat.S_IMODE(isolated_env.stat().st_mode) == 0o700
    files = list(isolated_env.iterdir())
    assert files
    assert all(stat.S_IMODE(f.stat().st_mode) == 0o600 for f in files)


def test_a_cached_token_is_returned_without_any_request(
    fake_google: FakeGoogle, browser: ScriptedBrowser, aud: str
) -> None:
    token = login(fake_google, browser, aud).id_token
    fake_google.clear_requests()
    assert get_user_id_token(aud) == token
    assert get_user_id_token(aud, client_id=fake_google.DESKTOP_CLIENT_ID) == token
    assert fake_google.requests == []


def test_an_expiring_token_is_refreshed_with_one_request_for_the_audience(
    fake_google: FakeGoogle, browser: ScriptedBrowser, aud: str, isolated_env: Path
) -> None:
    old = login_with_short_token(fake_google, browser, aud)

    new = get_user_id_token(aud, interactive=False)

    assert new != old
    assert decode_claims(new)["aud"] == aud
    assert [r.path for r in fake_google.requests] == ["/token"]
    (form,) = refreshes(fake_google)
    assert form["audience"] == aud and form["client_id"] == fake_google.DESKTOP_CLIENT_ID
    record = record_of(isolated_env, fake_google, aud)
    assert record is not None and record["id_token"] == new
    assert get_user_id_token(aud) == new  # now cached


def test_when_google_is_unreachable_a_still_valid_token_is_used_with_a_warning(
    fake_google: FakeGoogle, browser: ScriptedBrowser, aud: str
) -> None:
    token = login_with_short_token(fake_google, browser, aud)
    fake_google.fail_next(3, status=503, path="/token")
    cache = TokenCache()
    assert get_user_id_token(aud, interactive=False, cache=cache) == token
    assert any("HTTP 503" in w and "using the cached token" in w for w in cache.warnings)
    fake_google.fail_next(3, status=503, path="/token")
    with pytest.raises(TransportError):  # a token the server refused is never the fallback
        get_user_id_token(aud, interactive=False, rejected_token=token)


def test_min_valid_decides_when_to_refresh(
    fake_google: FakeGoogle, browser: ScriptedBrowser, aud: str
) -> None:
    token = login_with_short_token(fake_google, browser, aud)
    assert get_user_id_token(aud, min_valid=30) == token
    assert fake_google.requests == []


def test_a_rejected_token_is_replaced_even_if_it_looks_valid(
    fake_google: FakeGoogle, browser: ScriptedBrowser, aud: str
) -> None:
    token = login(fake_google, browser, aud).id_token
    fake_google.clear_requests()
    assert get_user_id_token(aud, rejected_token=token) != token
    assert len(refreshes(fake_google)) == 1


@pytest.mark.parametrize(
    ("reply", "message"),
    [
        ({"id_token_for": "someone-else.apps.googleusercontent.com"}, "audience"),
        ({"expired": True}, "expires in"),
        ({"iss": "https://evil.example.com"}, "issuer"),
        ({}, "no ID token"),
    ],
)
def test_a_bad_token_from_google_is_an_error_and_not_cached(
    fake_google: FakeGoogle,
    browser: ScriptedBrowser,
    aud: str,
    isolated_env: Path,
    reply: dict[str, Any],
    message: str,
) -> None:
    old = login_with_short_token(fake_google, browser, aud)
    body: dict[str, Any] = {"access_token": "ya29.x", "expires_in": 3600}
    if "id_token_for" in reply:
        body["id_token"] = fake_google.mint_id_token(reply["id_token_for"])
    elif "expired" in reply:
        body["id_token"] = fake_google.mint_id_token(aud, expired=True)
    elif "iss" in reply:
        body["id_token"] = fake_google.mint_id_token(aud, iss=reply["iss"])
    fake_google.malformed_next(path="/token", body=json.dumps(body).encode())

    with pytest.raises(InvalidTokenError) as caught:
        get_user_id_token(aud, interactive=False)

    assert message in caught.value.message
    record = record_of(isolated_env, fake_google, aud)
    assert record is not None and record["id_token"] == old


def test_invalid_grant_drops_the_grant_and_asks_for_a_login(
    fake_google: FakeGoogle, browser: ScriptedBrowser, aud: str, isolated_env: Path
) -> None:
    login_with_short_token(fake_google, browser, aud)
    record = record_of(isolated_env, fake_google, aud)
    assert record is not None
    fake_google.revoked_tokens.add(record["refresh_token"])

    with pytest.raises(LoginRequiredError) as caught:
        get_user_id_token(aud, interactive=False)

    assert "invalid_grant" in caught.value.message
    assert caught.value.hint.endswith(
        f"flyte-iap login --audience {aud} --client-id {fake_google.DESKTOP_CLIENT_ID} "
        "--client-secrets-file <DESKTOP_CLIENT_JSON>"  # never a secret on a command line
    )
    record = record_of(isolated_env, fake_google, aud)
    assert record is not None and "refresh_token" not in record and "id_token" not in record
    fake_google.clear_requests()
    with pytest.raises(LoginRequiredError) as again:
        get_user_id_token(aud, interactive=False)
    assert fake_google.requests == []  # the stale grant is not tried again
    assert "revoked or has expired (invalid_grant)" in again.value.message  # and the reason is kept


def test_invalid_grant_in_a_terminal_signs_in_again(
    fake_google: FakeGoogle, browser: ScriptedBrowser, aud: str
) -> None:
    login_with_short_token(fake_google, browser, aud)
    fake_google.oauth_error_next("invalid_grant")
    lines: list[str] = []
    token = get_user_id_token(aud, interactive=True, opener=browser, notify=lines.append, timeout=20)
    assert decode_claims(token)["aud"] == aud
    assert any("Signing in again" in line and "invalid_grant" in line for line in lines)
    assert len(browser.urls) == 2


@pytest.mark.parametrize(
    ("error", "hint"), [("redirect_uri_mismatch", "Desktop app"), ("invalid_grant", "flyte-iap login")]
)
def test_a_refused_code_exchange_is_an_oauth_error_with_a_hint(
    fake_google: FakeGoogle, browser: ScriptedBrowser, aud: str, isolated_env: Path, error: str, hint: str
) -> None:
    fake_google.oauth_error_next(error)
    with pytest.raises(OAuthError) as caught:
        login(fake_google, browser, aud)
    assert caught.value.error == error
    assert hint in caught.value.hint
    assert record_of(isolated_env, fake_google, aud) is None


def test_a_wrong_client_secret_fails_the_login_with_invalid_client(
    fake_google: FakeGoogle, browser: ScriptedBrowser, aud: str
) -> None:
    with pytest.raises(OAuthError) as caught:
        login(fake_google, browser, aud, client_secret="GOCSPX-wrong")
    assert caught.value.error == "invalid_client"
    assert "GOCSPX-wrong" not in str(caught.value) + caught.value.hint


def test_logout_without_revoke_does_not_need_the_keyring_package(
    fake_google: FakeGoogle,
    browser: ScriptedBrowser,
    aud: str,
    memory_keyring: MemoryKeyring,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    login(fake_google, browser, aud, store="keyring")
    monkeypatch.setitem(sys.modules, "keyring", None)
    cache = TokenCache()
    assert len(logout_user(aud, cache=cache)) == 1
    assert any("keyring" in w for w in cache.warnings)  # the entry could not be removed: said, not fatal


def test_invalid_client_is_reported_and_the_grant_is_kept(
    fake_google: FakeGoogle, browser: ScriptedBrowser, aud: str, isolated_env: Path
) -> None:
    login_with_short_token(fake_google, browser, aud)
    fake_google.oauth_error_next("invalid_client", status=401)
    with pytest.raises(OAuthError) as caught:
        get_user_id_token(aud, interactive=False)
    assert caught.value.error == "invalid_client"
    record = record_of(isolated_env, fake_google, aud)
    assert record is not None and record.get("refresh_token")


def test_without_a_login_and_without_a_terminal_it_fails_at_once(
    fake_google: FakeGoogle, aud: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO())  # not a terminal
    with pytest.raises(LoginRequiredError) as caught:
        get_user_id_token(aud, client_id="456-desktop.apps.googleusercontent.com")
    assert "no terminal" in caught.value.message
    assert "flyte-iap login --audience" in caught.value.hint
    assert "--client-id 456-desktop.apps.googleusercontent.com" in caught.value.hint
    assert fake_google.requests == []


def test_interactive_false_in_a_terminal_blames_the_setting_not_the_terminal(
    fake_google: FakeGoogle, aud: str, in_a_terminal: None
) -> None:
    with pytest.raises(LoginRequiredError) as caught:
        get_user_id_token(aud, client_id="456-desktop.apps.googleusercontent.com", interactive=False)
    error = caught.value
    assert error.message == (
        f"not signed in for audience {aud}: no login stored, "
        "and signing in was not allowed (interactive=False)"
    )
    assert error.reason == "no login stored"
    assert error.login_command == (
        f"flyte-iap login --audience {aud} --client-id 456-desktop.apps.googleusercontent.com "
        "--client-secrets-file <DESKTOP_CLIENT_JSON>"
    )
    assert error.hint.endswith(error.login_command)
    assert fake_google.requests == []


def test_without_a_login_in_a_terminal_it_signs_in(
    fake_google: FakeGoogle, browser: ScriptedBrowser, aud: str
) -> None:
    token = get_user_id_token(
        aud,
        client_id=fake_google.DESKTOP_CLIENT_ID,
        client_secret=fake_google.DESKTOP_CLIENT_SECRET,
        interactive=True,
        opener=browser,
        notify=quiet,
        timeout=20,
    )
    assert decode_claims(token)["aud"] == aud
    assert get_user_id_token(aud) == token


def test_interactive_default_follows_the_terminals(monkeypatch: pytest.MonkeyPatch, aud: str) -> None:
    class Tty:
        def isatty(self) -> bool:
            return True

    opened: list[str] = []
    monkeypatch.setattr(sys, "stdin", Tty())
    monkeypatch.setattr(sys, "stderr", Tty())
    with pytest.raises(FlyteIapError) as caught:
        # a terminal: the login starts, and here fails on the missing secret before any browser
        get_user_id_token(aud, client_id="x", opener=opened.append, notify=quiet)
    assert not isinstance(caught.value, LoginRequiredError)
    assert opened == []


def test_keyring_store_keeps_the_grant_out_of_the_files(
    fake_google: FakeGoogle,
    browser: ScriptedBrowser,
    aud: str,
    isolated_env: Path,
    memory_keyring: MemoryKeyring,
) -> None:
    login_with_short_token(fake_google, browser, aud, store="keyring")

    record = record_of(isolated_env, fake_google, aud)
    assert record is not None and record["store"] == "keyring"
    assert "refresh_token" not in record and "client_secret" not in record
    stored = json.loads(memory_keyring.entries[(f"flyte-iap:{aud}", fake_google.DESKTOP_CLIENT_ID)])
    assert stored["refresh_token"].startswith("1//")
    assert stored["client_secret"] == fake_google.DESKTOP_CLIENT_SECRET

    token = get_user_id_token(aud, interactive=False)
    assert refreshes(fake_google)[0]["refresh_token"] == stored["refresh_token"]
    assert decode_claims(token)["aud"] == aud

    logout_user(aud)
    assert memory_keyring.entries == {}


def test_keyring_without_a_backend_fails_before_the_browser_opens(
    fake_google: FakeGoogle, browser: ScriptedBrowser, aud: str
) -> None:
    import keyring
    import keyring.backends.fail

    previous = keyring.get_keyring()
    keyring.set_keyring(keyring.backends.fail.Keyring())
    try:
        with pytest.raises(CacheError) as caught:
            login(fake_google, browser, aud, store="keyring")
    finally:
        keyring.set_keyring(previous)
    assert "no OS keyring backend" in caught.value.message
    assert "--store file" in caught.value.hint
    assert browser.urls == []


def test_a_keyring_backend_failing_with_its_own_exception_is_a_cache_error(
    fake_google: FakeGoogle, browser: ScriptedBrowser, aud: str
) -> None:
    import keyring

    class DBusDown(MemoryKeyring):
        def get_password(self, service: str, username: str) -> str | None:
            raise RuntimeError("org.freedesktop.DBus.Error.ServiceUnknown")

    previous = keyring.get_keyring()
    keyring.set_keyring(DBusDown())
    try:
        with pytest.raises(CacheError) as caught:
            login(fake_google, browser, aud, store="keyring")
    finally:
        keyring.set_keyring(previous)
    assert caught.value.message == "cannot read the OS keyring: the OS keyring failed (RuntimeError)"
    assert "--store file" in caught.value.hint
    assert browser.urls == []


def test_keyring_store_without_the_package_says_how_to_install_it(
    fake_google: FakeGoogle, browser: ScriptedBrowser, aud: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "keyring", None)
    with pytest.raises(ConfigurationError) as caught:
        login(fake_google, browser, aud, store="keyring")
    assert "pip install 'keyring>=24' (flyte-iap's [keyring] extra)" in caught.value.hint


def test_logout_forgets_and_revokes(
    fake_google: FakeGoogle, browser: ScriptedBrowser, aud: str, isolated_env: Path
) -> None:
    login(fake_google, browser, aud)
    record = record_of(isolated_env, fake_google, aud)
    assert record is not None

    forgotten = logout_user(aud, revoke=True)

    assert [f.email for f in forgotten] == [fake_google.user_email]
    assert record["refresh_token"] in fake_google.revoked_tokens
    assert list(isolated_env.glob("user-*")) == []
    with pytest.raises(LoginRequiredError):
        get_user_id_token(aud, interactive=False)


def test_logout_of_an_already_revoked_grant_succeeds(
    fake_google: FakeGoogle, browser: ScriptedBrowser, aud: str
) -> None:
    login(fake_google, browser, aud)
    fake_google.oauth_error_next("invalid_token", path="/revoke")
    assert len(logout_user(aud, revoke=True)) == 1
    assert logout_user(aud) == []


def test_logout_keeps_everything_when_revoking_fails(
    fake_google: FakeGoogle, browser: ScriptedBrowser, aud: str, isolated_env: Path
) -> None:
    token = login(fake_google, browser, aud).id_token
    fake_google.fail_next(3, status=503, path="/revoke")
    with pytest.raises(TransportError):
        logout_user(aud, revoke=True)
    assert get_user_id_token(aud) == token


def test_secret_manager_secret_is_read_once_and_stored(
    fake_google: FakeGoogle, browser: ScriptedBrowser, aud: str, adc_key_file: Path, isolated_env: Path
) -> None:
    login_with_short_token(fake_google, browser, aud, client_secret_gcp_secret=SECRET_NAME)
    record = record_of(isolated_env, fake_google, aud)
    assert record is not None
    assert record["client_secret"] == fake_google.DESKTOP_CLIENT_SECRET  # trailing newline stripped
    assert record["secret_source"] == {"kind": "gcp-secret", "location": SECRET_NAME + "/versions/latest"}

    get_user_id_token(aud, client_secret_gcp_secret=SECRET_NAME, interactive=False)
    get_user_id_token(aud, client_secret_gcp_secret=SECRET_NAME, min_valid=4000, interactive=False)

    assert len(refreshes(fake_google)) == 2
    assert fake_google.requests_to("/v1/projects/") == []


def test_a_rotated_secret_is_read_again_from_secret_manager(
    fake_google: FakeGoogle, browser: ScriptedBrowser, aud: str, adc_key_file: Path, isolated_env: Path
) -> None:
    login_with_short_token(fake_google, browser, aud, client_secret_gcp_secret=SECRET_NAME)
    fake_google.add_oauth_client(fake_google.DESKTOP_CLIENT_ID, "GOCSPX-rotated")
    fake_google.set_secret(SECRET_NAME, "GOCSPX-rotated")

    get_user_id_token(aud, interactive=False)

    assert len(fake_google.requests_to("/v1/projects/")) == 1
    record = record_of(isolated_env, fake_google, aud)
    assert record is not None and record["client_secret"] == "GOCSPX-rotated"


def test_secret_manager_errors_are_clear(
    fake_google: FakeGoogle, browser: ScriptedBrowser, aud: str, adc_key_file: Path
) -> None:
    with pytest.raises(FlyteIapError) as missing:
        login(fake_google, browser, aud, client_secret_gcp_secret="projects/fake-project/secrets/nope")
    assert "not found" in missing.value.message
    assert "gcloud secrets versions list nope --project fake-project" in missing.value.hint

    fake_google.set_secret("projects/fake-project/secrets/locked", "x", accessors=["other@example.com"])
    with pytest.raises(PermissionDeniedError) as denied:
        login(fake_google, browser, aud, client_secret_gcp_secret="projects/fake-project/secrets/locked")
    assert "secretAccessor" in denied.value.hint
    assert ADC_ACCOUNT not in denied.value.hint
    assert browser.urls == []


def test_secret_manager_without_application_default_credentials(
    fake_google: FakeGoogle, browser: ScriptedBrowser, aud: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import google.auth.compute_engine._metadata as metadata

    monkeypatch.setattr(metadata, "_NO_GCE_CHECK", True)  # read at import; the fake's metadata is running
    with pytest.raises(CredentialsError) as caught:
        login(fake_google, browser, aud, client_secret_gcp_secret=SECRET_NAME)
    assert "application default credentials" in caught.value.message
    assert "gcloud auth application-default login" in caught.value.hint


def test_client_secrets_file_names_the_client(
    fake_google: FakeGoogle, browser: ScriptedBrowser, aud: str, tmp_path: Path
) -> None:
    path = tmp_path / "client.json"
    path.write_text(
        json.dumps(
            {
                "installed": {
                    "client_id": fake_google.DESKTOP_CLIENT_ID,
                    "client_secret": fake_google.DESKTOP_CLIENT_SECRET,
                    "redirect_uris": ["http://localhost"],
                }
            }
        )
    )
    result = login_user(aud, client_secrets_file=str(path), opener=browser, notify=quiet, timeout=20)
    assert result.client_id == fake_google.DESKTOP_CLIENT_ID


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ({"web": {"client_id": "w", "client_secret": "s"}}, "Web application"),
        ({"installed": {"client_id": "c"}}, "lacks client_id or client_secret"),
        ("not json", "not valid JSON"),
    ],
)
def test_unusable_client_secrets_files_are_configuration_errors(
    tmp_path: Path, aud: str, content: Any, message: str
) -> None:
    path = tmp_path / "client.json"
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    with pytest.raises(ConfigurationError) as caught:
        login_user(aud, client_secrets_file=str(path), opener=lambda url: True, notify=quiet)
    assert message in caught.value.message


def test_two_secret_options_are_refused(aud: str) -> None:
    with pytest.raises(ConfigurationError):
        login_user(aud, client_id="c", client_secret="s", client_secret_gcp_secret=SECRET_NAME)


def test_corrupt_cache_file_is_a_miss_with_a_warning(
    fake_google: FakeGoogle, browser: ScriptedBrowser, aud: str, isolated_env: Path
) -> None:
    login(fake_google, browser, aud)
    TokenCache(isolated_env).path("user", aud, fake_google.DESKTOP_CLIENT_ID).write_text("{not json")
    cache = TokenCache(isolated_env)
    with pytest.raises(LoginRequiredError):
        get_user_id_token(aud, client_id=fake_google.DESKTOP_CLIENT_ID, interactive=False, cache=cache)
    assert any("not valid JSON" in w for w in cache.warnings)
