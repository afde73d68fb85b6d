"""Helpers shared by the tests, imported as ``helpers.<module>``: pyproject.toml puts tests/ on sys.path.

Example::

    from helpers import ProxyFactory
    from helpers.sa import CI_SA, stdout_token

Fixtures live in the conftest.py files; what a test imports by name (constants, types, small functions
and classes) lives here: ``helpers.sa`` for service-account tests, ``helpers.user`` for user-token tests.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # importing IapProxy loads grpc: not for every test session
    from flyte_iap.testing import IapProxy

#: ``make_proxy(**overrides)`` from the ``make_proxy`` fixture (tests/conftest.py).
ProxyFactory = Callable[..., "IapProxy"]
#: A ``python -m flyte_iap.testing serve`` process and the variables its export lines set.
Served = tuple[subprocess.Popen[str], dict[str, str]]
#: ``serve(*args) -> Served`` from the ``serve`` fixture (tests/testing/conftest.py).
ServeFactory = Callable[..., Served]


def run_no_terminal(
    command: list[str], args: tuple[str, ...], env: dict[str, str | None], timeout: float
) -> subprocess.CompletedProcess[str]:
    """Run ``command + args`` with no terminal, in this environment changed by ``env`` (None removes)."""
    import os

    full = dict(os.environ)
    for name, value in env.items():
        if value is None:
            full.pop(name, None)
        else:
            full[name] = value
    return subprocess.run(
        [*command, *args], env=full, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout
    )
