"""Files only their owner can read, replaced atomically: the token cache and the client config use them.

Example::

    from pathlib import Path

    from flyte_iap.private_file import write_private_file

    write_private_file(Path.home() / ".flyte" / "config.yaml", text)  # mode 0600, never half-written

The text goes to a temporary file in the same directory, created 0600 whatever the umask, flushed to disk
and renamed over the target, so a reader sees the old content or the new one, never half of one, and a
crash loses nothing. Standard library only: the token cache imports this on the hot path.
"""

from __future__ import annotations

import contextlib
import os
import time


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
