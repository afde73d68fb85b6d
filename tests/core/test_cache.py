"""The token store: atomic, private, locked across processes, forgiving of corrupt files."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from flyte_iap.cache import TokenCache, default_cache_dir
from flyte_iap.errors import CacheError

AUD = "123-web.apps.googleusercontent.com"
CLIENT = "456-desktop.apps.googleusercontent.com"


def test_write_then_read_round_trips_and_stamps_the_key(tmp_path: Path) -> None:
    cache = TokenCache(tmp_path / "c")
    cache.write("user", AUD, CLIENT, {"id_token": "t1"})
    record = cache.read("user", AUD, CLIENT)
    assert record is not None
    assert record["id_token"] == "t1"
    assert (record["kind"], record["audience"], record["principal"], record["version"]) == (
        "user",
        AUD,
        CLIENT,
        1,
    )


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX modes")
def test_directory_is_0700_and_files_0600_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        cache = TokenCache(tmp_path / "c")
        cache.write("user", AUD, CLIENT, {"id_token": "t"})
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "c").stat().st_mode) == 0o700
    assert stat.S_IMODE(cache.path("user", AUD, CLIENT).stat().st_mode) == 0o600


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX modes")
def test_an_existing_group_readable_directory_is_tightened_only_when_flyte_iap_owns_it(
    tmp_path: Path,
) -> None:
    (tmp_path / "c").mkdir(mode=0o755)
    os.chmod(tmp_path / "c", 0o755)

    with pytest.raises(CacheError, match=r"is open to other users \(mode 0755\)"):
        TokenCache(tmp_path / "c").write("sa", AUD, "metadata", {"id_token": "t"})
    assert stat.S_IMODE((tmp_path / "c").stat().st_mode) == 0o755

    TokenCache(tmp_path / "c", own=True).write("sa", AUD, "metadata", {"id_token": "t"})
    assert stat.S_IMODE((tmp_path / "c").stat().st_mode) == 0o700


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX modes")
def test_the_default_directory_is_flyte_iaps_own_and_a_named_one_is_not(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("FLYTE_IAP_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    default = tmp_path / "xdg" / "flyte-iap"
    default.mkdir(parents=True, mode=0o755)
    os.chmod(default, 0o755)

    assert TokenCache().read("sa", AUD, "metadata") is None  # a read tightens the default directory
    assert stat.S_IMODE(default.stat().st_mode) == 0o700

    os.chmod(default, 0o755)
    monkeypatch.setenv("FLYTE_IAP_CACHE_DIR", str(tmp_path / "xdg" / ".." / "xdg" / "flyte-iap"))
    assert TokenCache().read("sa", AUD, "metadata") is None  # naming the default spells the same directory
    assert stat.S_IMODE(default.stat().st_mode) == 0o700


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX modes")
def test_a_shared_sticky_directory_such_as_tmp_is_refused_not_tightened(tmp_path: Path) -> None:
    shared = tmp_path / "tmp"
    shared.mkdir()
    os.chmod(shared, 0o1777)

    with pytest.raises(CacheError) as caught:
        TokenCache(shared).write("sa", AUD, "metadata", {"id_token": "t"})

    assert stat.S_IMODE(shared.stat().st_mode) == 0o1777
    assert "shared with other users (mode 1777)" in caught.value.message
    assert str(shared / "flyte-iap") in caught.value.hint
    assert list(shared.iterdir()) == []


def test_write_leaves_no_temporary_files(tmp_path: Path) -> None:
    cache = TokenCache(tmp_path / "c")
    for i in range(5):
        cache.write("user", AUD, CLIENT, {"id_token": f"t{i}"})
    assert sorted(p.name for p in (tmp_path / "c").iterdir()) == [cache.path("user", AUD, CLIENT).name]


@pytest.mark.parametrize("content", [b"{not json", b"\xff\xfe\x00", b"[]", b'{"version": 99}', b""], ids=repr)
def test_corrupt_file_is_a_miss_with_a_warning(tmp_path: Path, content: bytes) -> None:
    cache = TokenCache(tmp_path)
    cache.path("user", AUD, CLIENT).write_bytes(content)
    assert cache.read("user", AUD, CLIENT) is None
    assert cache.find("user", AUD) == []
    assert cache.warnings and "token cache file" in cache.warnings[0]
    cache.write("user", AUD, CLIENT, {"id_token": "fresh"})  # and the next write replaces it
    assert TokenCache(tmp_path).read("user", AUD, CLIENT)["id_token"] == "fresh"


def test_record_copied_under_another_key_is_ignored(tmp_path: Path) -> None:
    cache = TokenCache(tmp_path)
    cache.write("user", AUD, CLIENT, {"id_token": "t"})
    os.replace(cache.path("user", AUD, CLIENT), cache.path("user", "other-aud", CLIENT))
    assert cache.read("user", "other-aud", CLIENT) is None
    assert "another key" in cache.warnings[0]


def test_find_returns_every_principal_for_the_audience_newest_first(tmp_path: Path) -> None:
    cache = TokenCache(tmp_path)
    cache.write("user", AUD, "old-client", {"id_token": "a"})
    time.sleep(0.01)
    cache.write("user", AUD, "new-client", {"id_token": "b"})
    cache.write("user", "other-aud", "x", {"id_token": "c"})
    cache.write("sa", AUD, "metadata", {"id_token": "d"})
    assert [r["principal"] for r in cache.find("user", AUD)] == ["new-client", "old-client"]


def test_find_in_a_missing_directory_is_empty_and_silent(tmp_path: Path) -> None:
    cache = TokenCache(tmp_path / "nope")
    assert cache.find("user", AUD) == []
    assert cache.warnings == []


def test_delete_one_or_all_principals_returns_what_was_removed(tmp_path: Path) -> None:
    cache = TokenCache(tmp_path / "c")
    cache.write("user", AUD, "a", {"refresh_token": "r1"})
    cache.write("user", AUD, "b", {"refresh_token": "r2"})
    assert [r["refresh_token"] for r in cache.delete("user", AUD, "a")] == ["r1"]
    assert cache.read("user", AUD, "a") is None
    assert [r["principal"] for r in cache.delete("user", AUD)] == ["b"]
    assert list((tmp_path / "c").iterdir()) == []


def test_discard_removes_an_unreadable_record_and_its_lock_that_delete_cannot_read(tmp_path: Path) -> None:
    cache = TokenCache(tmp_path / "c")
    with cache.lock("user", AUD, CLIENT):
        cache.path("user", AUD, CLIENT).write_text("{not json")
    assert cache.delete("user", AUD, CLIENT) == []
    assert cache.path("user", AUD, CLIENT).exists()

    cache.discard("user", AUD, CLIENT)
    cache.discard("user", AUD, CLIENT)  # nothing left to remove is not an error

    assert list((tmp_path / "c").iterdir()) == []


def test_unwritable_directory_raises_cache_error_with_hint(tmp_path: Path) -> None:
    from flyte_iap.errors import CacheError

    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(CacheError) as info:
        TokenCache(blocker / "sub").write("user", AUD, CLIENT, {})
    assert "FLYTE_IAP_CACHE_DIR" in info.value.hint


_COUNTER_WORKER = """
import sys, time
from pathlib import Path
from flyte_iap.cache import TokenCache

directory, counter, rounds = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])
cache = TokenCache(directory)
for _ in range(rounds):
    with cache.lock("user", "aud", "client"):
        value = int(counter.read_text())
        time.sleep(0.001)  # widen the window a lost update would need
        counter.write_text(str(value + 1))
"""


def test_lock_serialises_read_modify_write_across_processes(tmp_path: Path) -> None:
    counter = tmp_path / "counter"
    counter.write_text("0")
    argv = [sys.executable, "-c", _COUNTER_WORKER, str(tmp_path / "c"), str(counter), "20"]
    procs = [subprocess.Popen(argv) for _ in range(4)]
    assert [p.wait(60) for p in procs] == [0, 0, 0, 0]
    assert counter.read_text() == "80"


def test_lock_times_out_with_a_clear_error(tmp_path: Path) -> None:
    from flyte_iap.errors import CacheError

    cache = TokenCache(tmp_path)
    other = TokenCache(tmp_path)
    with (
        cache.lock("user", AUD, CLIENT),
        pytest.raises(CacheError, match="timed out"),
        other.lock("user", AUD, CLIENT, timeout=0.2),
    ):
        pass


def test_default_directory_follows_env_then_xdg(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("FLYTE_IAP_CACHE_DIR", str(tmp_path / "explicit"))
    assert default_cache_dir() == tmp_path / "explicit"
    monkeypatch.delenv("FLYTE_IAP_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "flyte-iap"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/ignored")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_cache_dir() == tmp_path / "home" / ".cache" / "flyte-iap"


def test_records_are_compact_json(tmp_path: Path) -> None:
    cache = TokenCache(tmp_path)
    cache.write("sa", AUD, "metadata", {"id_token": "t"})
    assert json.loads(cache.path("sa", AUD, "metadata").read_text())["id_token"] == "t"
