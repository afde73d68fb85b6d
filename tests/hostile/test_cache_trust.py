"""The token cache uses nothing another user could have written: not their directory, record or lock file."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
from helpers.hostile import Runner, error_of

from flyte_iap.cache import TokenCache
from flyte_iap.errors import CacheError
from flyte_iap.testing import FakeGoogle

PATHS = [pytest.param({}, id="fast-path"), pytest.param({"FLYTE_IAP_NO_FAST_PATH": "1"}, id="slow-path")]


def record_path(google: FakeGoogle, cache_dir: Path) -> Path:
    return TokenCache(cache_dir).path("user", google.IAP_CLIENT_ID, google.DESKTOP_CLIENT_ID)


@pytest.mark.parametrize("env", PATHS)
def test_a_cache_directory_owned_by_another_user_is_refused_even_at_mode_0700(
    cli: Runner,
    fake_google: FakeGoogle,
    warm_user: str,
    isolated_env: Path,
    give_away: Callable[[Path], None],
    env: dict[str, str],
) -> None:
    os.chmod(isolated_env, 0o700)
    for path in [isolated_env, *isolated_env.iterdir()]:
        give_away(path)

    result = cli("token", "--audience", fake_google.IAP_CLIENT_ID, **env)

    stderr = error_of(result)
    assert f"token cache directory {isolated_env} is owned by uid 65534" in stderr
    assert "FLYTE_IAP_CACHE_DIR" in stderr


@pytest.mark.parametrize("env", PATHS)
def test_a_record_planted_by_another_user_is_never_printed(
    cli: Runner,
    fake_google: FakeGoogle,
    warm_user: str,
    isolated_env: Path,
    give_away: Callable[[Path], None],
    env: dict[str, str],
) -> None:
    planted = record_path(fake_google, isolated_env)
    give_away(planted)

    result = cli("token", "--audience", fake_google.IAP_CLIENT_ID, **env)

    stderr = error_of(result)
    assert warm_user not in result.stdout + stderr
    assert f"token cache file {planted} is owned by uid 65534" in stderr
    assert f"rm {planted}" in stderr


def test_a_record_that_is_a_symlink_is_refused(
    cli: Runner, fake_google: FakeGoogle, warm_user: str, isolated_env: Path, tmp_path: Path
) -> None:
    record = record_path(fake_google, isolated_env)
    elsewhere = tmp_path / "elsewhere.json"
    record.rename(elsewhere)
    record.symlink_to(elsewhere)

    result = cli("token", "--audience", fake_google.IAP_CLIENT_ID)

    assert f"token cache file {record} is a symbolic link" in error_of(result)


@pytest.mark.parametrize("env", PATHS)
def test_a_record_other_users_may_write_is_refused(
    cli: Runner, fake_google: FakeGoogle, warm_user: str, isolated_env: Path, env: dict[str, str]
) -> None:
    record = record_path(fake_google, isolated_env)
    os.chmod(record, 0o666)

    result = cli("token", "--audience", fake_google.IAP_CLIENT_ID, **env)

    assert "is writable by other users (mode 0666)" in error_of(result)


def test_a_planted_lock_symlink_is_not_followed(isolated_env: Path, tmp_path: Path) -> None:
    cache = TokenCache(isolated_env)
    isolated_env.mkdir(mode=0o700)
    target = tmp_path / "root-owned-elsewhere"
    lock = Path(str(cache.path("user", "aud", "client")) + ".lock")
    lock.symlink_to(target)

    with pytest.raises(CacheError) as caught, cache.lock("user", "aud", "client"):
        pass

    assert not target.exists()  # the lock file was not created through the link
    assert f"lock file {lock} is a symbolic link" in caught.value.message


def test_a_lock_file_owned_by_another_user_is_refused(
    isolated_env: Path, give_away: Callable[[Path], None]
) -> None:
    cache = TokenCache(isolated_env)
    isolated_env.mkdir(mode=0o700)
    lock = Path(str(cache.path("user", "aud", "client")) + ".lock")
    lock.write_text("")
    give_away(lock)

    with pytest.raises(CacheError, match="is owned by uid 65534"), cache.lock("user", "aud", "client"):
        pass


@pytest.mark.parametrize("env", PATHS)
def test_reading_from_a_shared_sticky_directory_is_refused_as_login_refuses_it(
    cli: Runner, fake_google: FakeGoogle, warm_user: str, isolated_env: Path, env: dict[str, str]
) -> None:
    os.chmod(isolated_env, 0o1777)

    result = cli("token", "--audience", fake_google.IAP_CLIENT_ID, **env)

    assert f"token cache directory {isolated_env} is shared with other users" in error_of(result)
    assert os.stat(isolated_env).st_mode & 0o7777 == 0o1777  # a shared directory's mode is left alone


@pytest.mark.parametrize("env", PATHS)
def test_the_default_directory_when_loose_is_tightened_and_served(
    cli: Runner, fake_google: FakeGoogle, tmp_path: Path, env: dict[str, str]
) -> None:
    default = tmp_path / "home" / ".cache" / "flyte-iap"  # $XDG_CACHE_HOME/flyte-iap
    token = fake_google.mint_id_token(fake_google.IAP_CLIENT_ID)
    TokenCache(default).write(
        "user",
        fake_google.IAP_CLIENT_ID,
        fake_google.DESKTOP_CLIENT_ID,
        {"id_token": token, "client_id": fake_google.DESKTOP_CLIENT_ID, "store": "file"},
    )
    os.chmod(default, 0o755)  # as an older flyte-iap or a careless mkdir left it

    result = cli("token", "--audience", fake_google.IAP_CLIENT_ID, FLYTE_IAP_CACHE_DIR=None, **env)

    assert result.returncode == 0, result.stderr
    assert result.stdout == token + "\n"
    assert os.stat(default).st_mode & 0o777 == 0o700


@pytest.mark.parametrize("env", PATHS)
@pytest.mark.parametrize("mode", [0o755, 0o750, 0o777], ids=lambda mode: f"{mode:04o}")
def test_a_named_directory_open_to_others_is_refused_and_left_alone(
    cli: Runner, fake_google: FakeGoogle, warm_user: str, isolated_env: Path, env: dict[str, str], mode: int
) -> None:
    os.chmod(isolated_env, mode)

    result = cli("token", "--audience", fake_google.IAP_CLIENT_ID, **env)

    stderr = error_of(result)
    assert warm_user not in result.stdout + stderr
    assert f"token cache directory {isolated_env} is open to other users (mode {mode:04o})" in stderr
    assert f"chmod 700 {isolated_env}" in stderr
    assert f"FLYTE_IAP_CACHE_DIR={isolated_env / 'flyte-iap'}" in stderr
    assert os.stat(isolated_env).st_mode & 0o7777 == mode  # never changed


@pytest.mark.parametrize("env", PATHS)
def test_flyte_iap_cache_dir_set_to_home_never_chmods_the_home_directory(
    cli: Runner, fake_google: FakeGoogle, tmp_path: Path, env: dict[str, str]
) -> None:
    home = tmp_path / "home"
    os.chmod(home, 0o755)

    result = cli("sa-token", "--audience", fake_google.IAP_CLIENT_ID, FLYTE_IAP_CACHE_DIR="~", **env)

    assert f"token cache directory {home} is open to other users (mode 0755)" in error_of(result)
    assert os.stat(home).st_mode & 0o7777 == 0o755


@pytest.mark.parametrize("env", PATHS)
def test_a_named_directory_that_is_a_symlink_is_refused_with_its_target_as_the_hint(
    cli: Runner,
    fake_google: FakeGoogle,
    warm_user: str,
    isolated_env: Path,
    tmp_path: Path,
    env: dict[str, str],
) -> None:
    link = tmp_path / "link"
    link.symlink_to(isolated_env)  # the target itself is private (0700) and holds the warm record

    result = cli("token", "--audience", fake_google.IAP_CLIENT_ID, FLYTE_IAP_CACHE_DIR=str(link), **env)

    stderr = error_of(result)
    assert warm_user not in result.stdout + stderr
    assert f"token cache directory {link} is a symbolic link (to {isolated_env})" in stderr
    assert f"FLYTE_IAP_CACHE_DIR={isolated_env}" in stderr


def test_a_loose_default_directory_that_is_a_symlink_is_refused_not_chmodded_through_the_link(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("FLYTE_IAP_CACHE_DIR")
    target = tmp_path / "elsewhere"
    target.mkdir()
    os.chmod(target, 0o755)
    default = tmp_path / "home" / ".cache" / "flyte-iap"
    default.parent.mkdir()
    default.symlink_to(target)

    with pytest.raises(CacheError, match="is open to other users"):
        TokenCache().read("user", "aud", "client")

    assert os.stat(target).st_mode & 0o777 == 0o755


def test_a_foreign_directory_is_refused_in_process_whatever_uid_runs_the_tests(
    isolated_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = TokenCache(isolated_env)
    cache.write("user", "aud", "client", {"id_token": "x"})
    os.chmod(isolated_env, 0o700)
    monkeypatch.setattr(os, "geteuid", lambda: os.stat(isolated_env).st_uid + 1)

    with pytest.raises(CacheError, match="is owned by uid"):
        TokenCache(isolated_env).read("user", "aud", "client")
    with pytest.raises(CacheError, match="is owned by uid"):
        TokenCache(isolated_env).write("user", "aud", "client", {"id_token": "y"})
