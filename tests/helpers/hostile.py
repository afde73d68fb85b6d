"""Helpers for the hostile-input suite (fixtures live in tests/hostile/conftest.py)."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable

#: A uid that is not ours: nobody.
OTHER_UID = 65534

#: ``cli(*args, timeout=60, **env)`` from the ``cli`` fixture.
Runner = Callable[..., subprocess.CompletedProcess[str]]


def error_of(result: subprocess.CompletedProcess[str], code: int = 1) -> str:
    """The stderr of a run that failed cleanly: exit ``code``, nothing on stdout, ``error:`` and ``hint:``."""
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    assert "(a bug in flyte-iap)" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if not line.startswith("warning: ")]
    assert [line.split(":")[0] for line in lines] == ["error", "hint"], result.stderr
    return result.stderr


def wait_until(predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
    """Poll ``predicate`` until it is true or ``timeout`` seconds pass; returns its last value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()
