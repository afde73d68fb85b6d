"""The token store: one small JSON file per (kind, audience, principal), safe across processes.

Example::

    from flyte_iap.cache import TokenCache

    cache = TokenCache()  # FLYTE_IAP_CACHE_DIR or the XDG cache dir
    with cache.lock("user", audience, client_id):
        record = cache.read("user", audience, client_id) or {}
        record["id_token"] = new_token
        cache.write("user", audience, client_id, record)

Guarantees, because ``flyte-iap token`` runs many times in parallel under flytekit and flytectl:

* the directory is created 0700 and every file 0600, whatever the umask;
* a write goes to a temporary file in the same directory, is flushed to disk and renamed over the old
  file, so a reader sees the old record or the new one, never half of one, and a crash loses nothing;
* :meth:`TokenCache.lock` is an advisory lock on a sibling ``.lock`` file (``flock`` on POSIX,
  ``msvcrt.locking`` on Windows), held while a token is refreshed, so N concurrent refreshes make one
  request and the others read its result;
* a corrupt or unreadable record (bad JSON, nested too deep, fields of the wrong type, larger than
  :data:`MAX_RECORD_BYTES`, not a regular file) is a cache miss and a warning in
  :attr:`TokenCache.warnings`, never an exception, and the file is left for the next write to replace;
* nothing another user could have written or read is used: the directory must be owned by the effective
  user and private (mode 0700). As ssh treats ``~/.ssh``, only a directory flyte-iap owns is tightened:
  the default one, or one it has just created. A directory the user named (``FLYTE_IAP_CACHE_DIR``,
  ``FLYTE_IAP_STATE_DIR``, a path given to :class:`TokenCache`) that other users may enter, or that is a
  symbolic link, is refused and never changed: ``FLYTE_IAP_CACHE_DIR=~`` must not chmod the home
  directory. Every record and lock file is opened without following symlinks and must be owned by us
  and writable by nobody else. Anything else is a :class:`~flyte_iap.errors.CacheError` that names the
  path, on every path through the code (the fast path hands such a cache to the slow path, which
  refuses it).

This module is on the hot path: standard library only, nothing heavy at import.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import stat
import sys
import time

from flyte_iap.errors import CacheError
from flyte_iap.private_file import (
    FileRefusedError,
    open_private_file,
    parse_json,
    read_file,
    write_private_file,
)

# typing and pathlib cost milliseconds at import, which the hot path does not pay: the annotations are
# strings (PEP 563), and type checkers read this constant as True.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path
    from typing import Any

#: Bumped when the record layout changes; records of another version are misses.
FORMAT_VERSION = 1
#: A record is an ID token, a refresh token and a few names: anything larger is not one of ours.
MAX_RECORD_BYTES = 64 * 1024
# Fields every record has, with their types; a record whose fields do not match is a miss.
_STR_FIELDS = ("kind", "audience", "principal")


def default_cache_dir() -> Path:
    """``FLYTE_IAP_CACHE_DIR``, else ``$XDG_CACHE_HOME/flyte-iap``, else ``~/.cache/flyte-iap``.

    On Windows, ``%LOCALAPPDATA%\\flyte-iap`` takes the place of the XDG directory.

    Returns:
        The directory (it need not exist yet).
    """
    from pathlib import Path

    return Path(_default_dir())


def _default_dir() -> str:
    explicit = os.environ.get("FLYTE_IAP_CACHE_DIR")
    if explicit:
        return os.path.expanduser(explicit)
    return _platform_dir()


def _platform_dir() -> str:
    """The cache directory flyte-iap picks itself when none is named: the one it may tighten."""
    if sys.platform == "win32" and os.environ.get("LOCALAPPDATA"):
        return os.path.join(os.environ["LOCALAPPDATA"], "flyte-iap")
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = xdg if xdg and os.path.isabs(xdg) else os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "flyte-iap")


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()[:20]


class TokenCache:
    """Records keyed by ``(kind, audience, principal)`` under one directory.

    Args:
        directory: where the files live; defaults to :func:`default_cache_dir`.
        own: whether flyte-iap chose ``directory`` itself (a default location), so that it may tighten a
            looser mode to 0700. ``None``: only when it is the default cache directory. A directory the
            user named that others may enter is refused instead, never changed.
        setting: the environment variable that names this directory, for hints.

    ``kind`` is ``"user"`` or ``"sa"``. ``principal`` is whatever identifies the credential for that
    kind: the OAuth client ID for user tokens, the service account or credential source for
    service-account tokens.
    """

    def __init__(
        self,
        directory: str | os.PathLike[str] | None = None,
        *,
        own: bool | None = None,
        setting: str = "FLYTE_IAP_CACHE_DIR",
    ) -> None:
        # A plain string: the hot path reads with os.path and never imports pathlib.
        self._dir = os.fspath(directory) if directory is not None else _default_dir()
        # Decided when a loose mode or a link asks for it: the warm path does not pay for the comparison.
        self._own_given = own
        self._setting = setting
        #: Human-readable warnings about records that were skipped (corrupt, unreadable, wrong mode).
        self.warnings: list[str] = []

    # -- naming ------------------------------------------------------------------------------

    @property
    def directory(self) -> Path:
        """Where the files live."""
        from pathlib import Path

        return Path(self._dir)

    def path(self, kind: str, audience: str, principal: str) -> Path:
        """The file that holds the record for this key.

        Args:
            kind, audience, principal: the key (see :class:`TokenCache`).

        Returns:
            ``<kind>-<digest of audience>-<digest of principal>.json`` in :attr:`directory`.
        """
        from pathlib import Path

        return Path(self._file(kind, audience, principal))

    def _file(self, kind: str, audience: str, principal: str) -> str:
        return os.path.join(self._dir, f"{kind}-{_digest(audience)}-{_digest(principal)}.json")

    # -- reading -----------------------------------------------------------------------------

    def read(self, kind: str, audience: str, principal: str) -> dict[str, Any] | None:
        """Return the record for this key.

        Args:
            kind, audience, principal: the key (see :class:`TokenCache`).

        Returns:
            The record, or ``None`` if there is none or it cannot be used (a warning in :attr:`warnings`
            then says why).
        """
        if not self._check_directory(create=False):
            return None
        path = self._file(kind, audience, principal)
        record = self._load(path)
        if record is None:
            return None
        if record.get("audience") != audience or record.get("principal") != principal:
            self.warnings.append(f"ignoring cache file written for another key: {path}")
            return None
        return record

    def find(self, kind: str, audience: str) -> list[dict[str, Any]]:
        """All usable records of ``kind`` for ``audience``, whatever their principal.

        Args:
            kind, audience: the key without its principal (see :class:`TokenCache`).

        Returns:
            The records, most recently written first.
        """
        if not self._check_directory(create=False):
            return []
        prefix = f"{kind}-{_digest(audience)}-"
        try:
            entries = [
                e for e in os.scandir(self._dir) if e.name.startswith(prefix) and e.name.endswith(".json")
            ]
        except FileNotFoundError:
            return []
        except OSError as exc:
            self.warnings.append(f"cannot list token cache {self._dir}: {exc.strerror}")
            return []
        found: list[tuple[float, dict[str, Any]]] = []
        for entry in entries:
            record = self._load(entry.path)
            if record is not None and record.get("audience") == audience:
                found.append((record.get("updated", 0), record))
        found.sort(key=lambda item: item[0], reverse=True)
        return [record for _, record in found]

    def _load(self, path: str) -> dict[str, Any] | None:
        try:
            record = parse_json(read_file(path, max_bytes=MAX_RECORD_BYTES, private=True))
        except FileNotFoundError:
            return None
        except FileRefusedError as exc:
            if exc.untrusted:
                raise CacheError(
                    f"token cache file {path} {exc.reason}",
                    "flyte-iap never uses a token file another user could have written or redirected; "
                    f"check who put it there, then remove it: rm {path}",
                ) from None
            self.warnings.append(f"ignoring token cache file {path}: it {exc.reason}")
            return None
        except (OSError, ValueError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "not valid JSON"
            self.warnings.append(f"ignoring unreadable token cache file {path}: {reason}")
            return None
        if not isinstance(record, dict) or record.get("version") != FORMAT_VERSION:
            self.warnings.append(f"ignoring token cache file in an unknown format: {path}")
            return None
        if not _well_formed(record):
            self.warnings.append(f"ignoring token cache file with malformed fields: {path}")
            return None
        return record

    def _check_directory(self, *, create: bool) -> bool:
        """Whether the directory exists and is ours alone (our own default one is tightened to 0700).

        Raises:
            CacheError: it cannot be created or read, it is not a directory, it is owned by another user,
                or it is a directory the user named that others may enter or that is a symbolic link
                (never changed then: it may be the home directory, or one other programs rely on).
        """
        created = False
        try:
            if create:
                created = self._make_directory()
            link = os.lstat(self._dir)
            info = os.stat(self._dir) if stat.S_ISLNK(link.st_mode) else link
        except FileNotFoundError:
            if create:
                raise CacheError(
                    f"cannot create token cache directory {self._dir}", self._own_dir_hint()
                ) from None
            return False
        except OSError as exc:
            raise CacheError(
                f"cannot {'create' if create else 'read'} token cache directory {self._dir}: {exc.strerror}",
                f"set {self._setting} to a directory you can write",
            ) from None
        if not stat.S_ISDIR(info.st_mode):
            raise CacheError(
                f"cannot {'create' if create else 'use'} token cache directory {self._dir}: "
                "it is not a directory",
                self._own_dir_hint(),
            )
        if sys.platform == "win32":  # pragma: no cover - ACLs, not owners and modes
            return True
        uid = os.geteuid()
        if info.st_uid != uid:
            raise CacheError(
                f"token cache directory {self._dir} is owned by uid {info.st_uid}, not by you (uid {uid}); "
                "flyte-iap only uses a token cache that is yours alone",
                self._own_dir_hint(),
            )
        mode = info.st_mode & 0o7777
        if stat.S_ISLNK(link.st_mode) and not self._own:
            real = os.path.realpath(self._dir)
            raise CacheError(
                f"token cache directory {self._dir} is a symbolic link (to {real}); "
                "flyte-iap does not follow a link to a directory you named",
                f"set {self._setting} to the directory itself: {self._setting}={real}",
            )
        if not mode & 0o077:
            return True
        if mode & 0o1000:
            # A shared directory such as /tmp (sticky bit), whose mode other programs rely on.
            raise CacheError(
                f"token cache directory {self._dir} is shared with other users "
                f"(mode {mode:o}); flyte-iap does not change its mode",
                f"set {self._setting} to a directory of your own, e.g. "
                + os.path.join(self._dir, "flyte-iap"),
            )
        if not (created or (self._own and not stat.S_ISLNK(link.st_mode))):
            # ssh's rule for ~/.ssh: a directory the user named is theirs to fix (it may be ~ itself).
            raise CacheError(
                f"token cache directory {self._dir} is open to other users (mode {mode:04o}); "
                "flyte-iap keeps tokens only in a private directory and changes the mode only of one "
                "it created",
                f"if {self._dir} is meant for flyte-iap alone, run: chmod 700 {self._dir}; otherwise set "
                f"{self._setting} to a new directory, e.g. {self._setting}="
                + os.path.join(self._dir, "flyte-iap"),
            )
        try:
            os.chmod(self._dir, 0o700)
        except OSError as exc:
            raise CacheError(
                f"cannot make token cache directory {self._dir} private (mode 0700): {exc.strerror}",
                self._own_dir_hint(),
            ) from None
        return True

    @property
    def _own(self) -> bool:
        if self._own_given is None:
            self._own_given = os.path.abspath(self._dir) == os.path.abspath(_platform_dir())
        return self._own_given

    def _make_directory(self) -> bool:
        """Create the directory (0700) if it does not exist; whether this call created it."""
        parent = os.path.dirname(os.path.abspath(self._dir))
        os.makedirs(parent, exist_ok=True)
        try:
            os.mkdir(self._dir, 0o700)
        except FileExistsError:
            return False
        return True

    def _own_dir_hint(self) -> str:
        return f"set {self._setting} to a directory of your own, e.g. ~/.cache/flyte-iap"

    # -- writing -----------------------------------------------------------------------------

    def _ensure_directory(self) -> None:
        self._check_directory(create=True)

    def write(self, kind: str, audience: str, principal: str, record: dict[str, Any]) -> None:
        """Replace the record for this key atomically; the file is 0600.

        The ``version``, ``kind``, ``audience``, ``principal`` and ``updated`` fields are set here.

        Args:
            kind, audience, principal: the key (see :class:`TokenCache`).
            record: the fields to store (a token, a refresh token, ...).

        Raises:
            CacheError: the directory or file cannot be written.
        """
        self._ensure_directory()
        final = self._file(kind, audience, principal)
        data = dict(record)
        data.update(
            version=FORMAT_VERSION, kind=kind, audience=audience, principal=principal, updated=time.time()
        )
        try:
            write_private_file(final, json.dumps(data, separators=(",", ":")))
        except OSError as exc:
            raise CacheError(
                f"cannot write token cache file {final}: {exc.strerror}",
                "set FLYTE_IAP_CACHE_DIR to a directory you can write",
            ) from exc

    def delete(self, kind: str, audience: str, principal: str | None = None) -> list[dict[str, Any]]:
        """Remove the record for this key, or every record of ``kind`` for ``audience``.

        Args:
            kind, audience: as for :meth:`find`.
            principal: only this principal's record; ``None`` removes every usable record for ``audience``.

        Returns:
            The records that were removed (so a caller can, say, revoke their refresh tokens).
        """
        if principal is None:
            records = self.find(kind, audience)
        else:
            one = self.read(kind, audience, principal)
            records = [one] if one else []
        for record in records:
            self.discard(kind, audience, record["principal"])
        return records

    def discard(self, kind: str, audience: str, principal: str) -> None:
        """Remove the files of this key, whatever they hold (an unreadable record too), if there are any.

        Args:
            kind, audience, principal: the key (see :class:`TokenCache`).
        """
        path = self._file(kind, audience, principal)
        for name in (path, path + ".lock"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(name)

    # -- locking -----------------------------------------------------------------------------

    @contextlib.contextmanager
    def lock(self, kind: str, audience: str, principal: str, timeout: float = 60.0) -> Iterator[None]:
        """Hold an exclusive cross-process lock for this key.

        Args:
            kind, audience, principal: the key (see :class:`TokenCache`).
            timeout: seconds to wait for another process to release it.

        Returns:
            A context manager that holds the lock while its block runs.

        Raises:
            CacheError: the lock could not be taken within ``timeout`` seconds.
        """
        self._ensure_directory()
        lock_path = self._file(kind, audience, principal) + ".lock"
        try:
            fd = open_private_file(lock_path)
        except FileRefusedError as exc:
            raise CacheError(
                f"lock file {lock_path} {exc.reason}",
                "flyte-iap never opens a lock file another user could have planted; check who put it there, "
                f"then remove it: rm {lock_path}",
            ) from None
        except OSError as exc:
            raise CacheError(
                f"cannot open lock file {lock_path}: {exc.strerror}",
                "set FLYTE_IAP_CACHE_DIR to a directory you can write",
            ) from exc
        try:
            _acquire(fd, timeout, lock_path)
            try:
                yield
            finally:
                _release(fd)
        finally:
            os.close(fd)


def _well_formed(record: dict[str, Any]) -> bool:
    """Whether a record's own fields have the types this module and its callers rely on."""
    if not all(isinstance(record.get(name), str) for name in _STR_FIELDS):
        return False
    updated = record.get("updated", 0)
    if isinstance(updated, bool) or not isinstance(updated, int | float) or updated != updated:
        return False
    return all(
        isinstance(record[name], str)
        for name in ("id_token", "refresh_token", "client_secret", "store", "email")
        if record.get(name) is not None
    )


if sys.platform == "win32":  # pragma: no cover - exercised on Windows only

    def _acquire(fd: int, timeout: float, lock_path: str) -> None:
        import msvcrt

        deadline = time.monotonic() + timeout
        while True:
            try:
                msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise CacheError(
                        f"timed out waiting for lock {lock_path}", "another flyte-iap may be stuck"
                    ) from None
                time.sleep(0.05)

    def _release(fd: int) -> None:
        import msvcrt

        os.lseek(fd, 0, 0)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)

else:

    def _acquire(fd: int, timeout: float, lock_path: str) -> None:
        import fcntl

        deadline = time.monotonic() + timeout
        delay = 0.005
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise CacheError(
                        f"timed out after {timeout:.0f} s waiting for lock {lock_path}",
                        "another flyte-iap process holds it; if none is running, delete the .lock file",
                    ) from None
                time.sleep(delay)
                delay = min(delay * 2, 0.1)

    def _release(fd: int) -> None:
        import fcntl

        fcntl.flock(fd, fcntl.LOCK_UN)
