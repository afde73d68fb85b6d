"""Sign-in grants (refresh token, client secret) live in the platform state dir, apart from the deletable
token cache; older records are moved there once; FLYTE_IAP_CACHE_DIR alone keeps everything together."""

from __future__ import annotations

import json
import os
import shutil
import stat
from pathlib import Path

import pytest
from helpers.user import ScriptedBrowser

from flyte_iap.cache import TokenCache
from flyte_iap.grants import KIND, grant_store
from flyte_iap.status import stored_identities
from flyte_iap.testing import FakeGoogle
from flyte_iap.user_tokens import get_user_id_token, login_user, logout_user


@pytest.fixture
def default_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    """No FLYTE_IAP_CACHE_DIR: the XDG cache and state dirs, as on a workstation."""
    monkeypatch.delenv("FLYTE_IAP_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg-state"))
    return tmp_path / "xdg-cache" / "flyte-iap", tmp_path / "xdg-state" / "flyte-iap"


def _login(google: FakeGoogle, aud: str) -> None:
    login_user(
        aud,
        client_id=google.DESKTOP_CLIENT_ID,
        client_secret=google.DESKTOP_CLIENT_SECRET,
        opener=ScriptedBrowser(google),
        notify=lambda message: None,
        timeout=20,
    )


def _files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.glob("*.json")) if directory.exists() else []


def test_grant_goes_to_the_state_dir_and_survives_deleting_the_cache(
    fake_google: FakeGoogle, aud: str, default_dirs: tuple[Path, Path]
) -> None:
    cache_dir, state_dir = default_dirs
    _login(fake_google, aud)

    (grant_file,) = _files(state_dir)
    record = TokenCache().read("user", aud, fake_google.DESKTOP_CLIENT_ID) or {}
    grant = json.loads(grant_file.read_text())
    assert "refresh_token" not in record and "client_secret" not in record
    assert grant["refresh_token"] and grant["client_secret"] == fake_google.DESKTOP_CLIENT_SECRET
    assert stat.S_IMODE(grant_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(state_dir.stat().st_mode) == 0o700

    shutil.rmtree(cache_dir)  # a cache is meant to be deletable
    fake_google.clear_requests()
    token = get_user_id_token(aud, interactive=False)  # no browser: the grant is still there

    assert token and [r.form["grant_type"] for r in fake_google.requests_to("/token")] == ["refresh_token"]
    assert grant_store(TokenCache()).read(KIND, aud, fake_google.DESKTOP_CLIENT_ID)  # type: ignore[union-attr]


def test_a_record_with_the_grant_inside_is_moved_once_on_its_next_refresh(
    fake_google: FakeGoogle, aud: str, default_dirs: tuple[Path, Path]
) -> None:
    _, state_dir = default_dirs
    refresh = fake_google.issue_refresh_token(fake_google.DESKTOP_CLIENT_ID)
    cache = TokenCache()
    cache.write(
        "user",
        aud,
        fake_google.DESKTOP_CLIENT_ID,
        {
            "client_id": fake_google.DESKTOP_CLIENT_ID,
            "store": "file",
            "refresh_token": refresh,
            "client_secret": fake_google.DESKTOP_CLIENT_SECRET,
            "id_token": fake_google.mint_id_token(aud, expired=True),
        },
    )

    token = get_user_id_token(aud, interactive=False)
    (grant_file,) = _files(state_dir)
    first = grant_file.stat().st_mtime_ns
    again = get_user_id_token(aud, interactive=False, rejected_token=token)

    record = TokenCache().read("user", aud, fake_google.DESKTOP_CLIENT_ID) or {}
    assert "refresh_token" not in record and "client_secret" not in record
    assert json.loads(grant_file.read_text())["refresh_token"] == refresh
    assert again and grant_file.stat().st_mtime_ns == first  # moved once, not rewritten per refresh
    assert [i["refresh_grant"] for i in stored_identities()] == [True]


def test_logout_removes_the_grant_too(
    fake_google: FakeGoogle, aud: str, default_dirs: tuple[Path, Path]
) -> None:
    _, state_dir = default_dirs
    _login(fake_google, aud)

    logout_user(aud)

    assert _files(state_dir) == []


def test_flyte_iap_cache_dir_alone_keeps_everything_in_that_directory(
    fake_google: FakeGoogle, aud: str, isolated_env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg-state"))
    _login(fake_google, aud)

    record = TokenCache().read("user", aud, fake_google.DESKTOP_CLIENT_ID) or {}
    assert record["refresh_token"] and not (tmp_path / "xdg-state").exists()
    assert grant_store(TokenCache()) is None


def test_flyte_iap_state_dir_names_the_grant_directory(
    fake_google: FakeGoogle, aud: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FLYTE_IAP_STATE_DIR", str(tmp_path / "grants"))
    _login(fake_google, aud)

    assert len(_files(tmp_path / "grants")) == 1
    assert "refresh_token" not in (TokenCache().read("user", aud, fake_google.DESKTOP_CLIENT_ID) or {})
    assert os.environ["FLYTE_IAP_CACHE_DIR"]  # the cache stays where it was


def test_the_default_state_dir_when_loose_is_tightened(
    fake_google: FakeGoogle, aud: str, default_dirs: tuple[Path, Path]
) -> None:
    _, state_dir = default_dirs
    state_dir.mkdir(parents=True)
    os.chmod(state_dir, 0o755)

    _login(fake_google, aud)

    assert len(_files(state_dir)) == 1
    assert stat.S_IMODE(state_dir.stat().st_mode) == 0o700


def test_a_loose_flyte_iap_state_dir_is_refused_with_its_variable_in_the_hint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flyte_iap.errors import CacheError

    named = tmp_path / "grants"
    named.mkdir()
    os.chmod(named, 0o755)
    monkeypatch.setenv("FLYTE_IAP_STATE_DIR", str(named))
    store = grant_store(TokenCache())
    assert store is not None

    with pytest.raises(CacheError) as caught:
        store.read(KIND, "aud", "client")

    assert f"{named} is open to other users (mode 0755)" in caught.value.message
    assert f"chmod 700 {named}" in caught.value.hint
    assert f"FLYTE_IAP_STATE_DIR={named / 'flyte-iap'}" in caught.value.hint
    assert stat.S_IMODE(named.stat().st_mode) == 0o755
