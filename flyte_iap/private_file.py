"""Every file flyte-iap reads or writes goes through here: private files written atomically, reads bounded.

Example::

    from pathlib import Path

    from flyte_iap.private_file import read_file, write_private_file

    config = Path.home() / ".flyte" / "config.yaml"
    write_private_file(config, text)  # mode 0600, never half-written
    data = read_file(config, private=True)  # ours alone: our uid, no symlink, nobody else may write

Writing: the text goes to a temporary file in the same directory, created 0600 whatever the umask, flushed
to disk and renamed over the target, so a reader sees the old content or the new one, never half of one,
and a crash loses nothing.

Reading: only regular files are read (a FIFO would block forever, ``/dev/zero`` never ends), at most
:data:`MAX_READ_BYTES` of them, and JSON nested too deeply for the parser is refused like any other
malformed JSON. A *private* file (the token cache's records and locks) must moreover be opened without
following a symlink, be owned by the effective user and be writable by nobody else; anything else is a
:class:`FileRefusedError`, since a file someone else could write may hold a token they chose. The
directory of private files passes the same test (:func:`check_private_directory`).

Standard library only: the token cache imports this on the hot path.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
import time

#: The largest file flyte-iap reads: cache records, client secrets and key files are a few KiB.
MAX_READ_BYTES = 1 << 20

_OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_BINARY", 0) | getattr(os, "O_CLOEXEC", 0)
# O_NONBLOCK: opening a FIFO for reading must not wait for a writer (it is refused right after).
_NONBLOCK = getattr(os, "O_NONBLOCK", 0)
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
#: Whether files have owners this process can compare itself with (not on Windows).
_HAS_OWNERS = hasattr(os, "geteuid")


class FileRefusedError(Exception):
    """A file or directory flyte-iap will not use, and why.

    Attributes:
        path: the file or directory.
        reason: what is wrong, to follow the path in a message ("is owned by uid 1001, not by you").
        untrusted: True when someone else could have written it (owner, mode, symlink): refuse and say so;
            False when it is merely unusable (not a regular file, too large).
    """

    def __init__(self, path: str, reason: str, *, untrusted: bool) -> None:
        super().__init__(f"{path} {reason}")
        self.path = path
        self.reason = reason
        self.untrusted = untrusted


def trust_problem(info: os.stat_result) -> str | None:
    """Why a file or directory with this ``stat`` could have been written by another user, or None.

    The rule ssh and gh apply to their own files: owned by the effective user, not group- or world-writable.

    Args:
        info: from ``os.stat``/``os.fstat``.

    Returns:
        A reason to follow a path in a message, or ``None`` when it is ours alone (always on Windows).
    """
    if not _HAS_OWNERS:  # pragma: no cover - Windows: ACLs, not owners and modes
        return None
    uid = os.geteuid()
    if info.st_uid != uid:
        return f"is owned by uid {info.st_uid}, not by you (uid {uid})"
    if info.st_mode & 0o022:
        return f"is writable by other users (mode {stat.S_IMODE(info.st_mode):04o})"
    return None


def check_private_directory(path: str) -> os.stat_result:
    """``os.stat`` of a directory that holds private files, after checking that only we can write it.

    Args:
        path: the directory (a symlink to one is followed: ``~/.cache`` often is one).

    Returns:
        Its ``stat``.

    Raises:
        FileNotFoundError: it does not exist.
        FileRefusedError: not a directory, or another user could write it.
    """
    info = os.stat(path)
    if not stat.S_ISDIR(info.st_mode):
        raise FileRefusedError(path, "is not a directory", untrusted=False)
    problem = trust_problem(info)
    if problem:
        raise FileRefusedError(path, problem, untrusted=True)
    return info


def open_private_file(path: str, flags: int = os.O_RDWR | os.O_CREAT) -> int:
    """Open (by default create) a private file without following a symlink; check it is ours alone.

    Args:
        path: the file; its directory must have passed :func:`check_private_directory`.
        flags: ``os.open`` flags; ``O_NOFOLLOW`` and ``O_CLOEXEC`` are added. A created file is 0600.

    Returns:
        The open file descriptor (the caller closes it).

    Raises:
        FileRefusedError: a symlink, not a regular file, or another user could write it.
        OSError: it cannot be opened.
    """
    try:
        fd = os.open(path, flags | _NOFOLLOW | _NONBLOCK | getattr(os, "O_CLOEXEC", 0), 0o600)
    except OSError:
        if _NOFOLLOW and os.path.islink(path):  # ELOOP on Linux, EMLINK on FreeBSD, EFTYPE elsewhere
            raise FileRefusedError(path, "is a symbolic link", untrusted=True) from None
        raise
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise FileRefusedError(path, f"is not a regular file ({_file_type(info)})", untrusted=False)
        problem = trust_problem(info)
        if problem:
            raise FileRefusedError(path, problem, untrusted=True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def read_file(
    path: str | os.PathLike[str], *, max_bytes: int = MAX_READ_BYTES, private: bool = False
) -> bytes:
    """Read a whole regular file of at most ``max_bytes``.

    Args:
        path: the file; a symlink is followed unless ``private``.
        max_bytes: the largest size accepted.
        private: also require what :func:`open_private_file` requires (no symlink, ours alone).

    Returns:
        The content.

    Raises:
        FileNotFoundError, IsADirectoryError, PermissionError, OSError: as ``open`` does.
        FileRefusedError: not a regular file (FIFO, device, ...), larger than ``max_bytes``, or, if
            ``private``, a symlink or writable by someone else.
    """
    name = os.fspath(path)
    if private:
        fd = open_private_file(name, os.O_RDONLY)
    else:
        fd = os.open(name, _OPEN_FLAGS | _NONBLOCK)
        try:
            info = os.fstat(fd)
            if stat.S_ISDIR(info.st_mode):
                raise IsADirectoryError(21, "Is a directory", name)
            if not stat.S_ISREG(info.st_mode):
                raise FileRefusedError(
                    name,
                    f"is not a regular file ({_file_type(info)}); only regular files are read",
                    untrusted=False,
                )
        except BaseException:
            os.close(fd)
            raise
    with os.fdopen(fd, "rb") as fh:
        data = fh.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise FileRefusedError(name, f"is larger than {max_bytes // 1024} KiB", untrusted=False)
    return data


def parse_json(data: bytes | str) -> object:
    """``json.loads`` that refuses nesting too deep for the parser as malformed JSON.

    Raises:
        ValueError: not JSON (``UnicodeDecodeError`` and deep nesting included).
    """
    try:
        return json.loads(data)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None


def read_json_file(
    path: str | os.PathLike[str], *, max_bytes: int = MAX_READ_BYTES, private: bool = False
) -> object:
    """:func:`read_file`, then :func:`parse_json`.

    Raises:
        ValueError: not JSON; and what :func:`read_file` raises.
    """
    return parse_json(read_file(path, max_bytes=max_bytes, private=private))


def _file_type(info: os.stat_result) -> str:
    mode = info.st_mode
    for test, name in (
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISDIR, "a directory"),
    ):
        if test(mode):
            return name
    return "not a regular file"


def write_private_file(path: str | os.PathLike[str], text: str) -> None:
    """Replace ``path`` with ``text`` (UTF-8) atomically, as a file of mode 0600.

    Args:
        path: the file to write; its directory must exist.
        text: the new content.

    Raises:
        OSError: the temporary file cannot be created, written or renamed (it is removed again).
    """
    target = os.fspath(path)
    directory, name = os.path.split(target)
    tmp = os.path.join(directory, f".{name}.{os.getpid()}.{time.monotonic_ns()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
