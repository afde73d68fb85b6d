"""Fixtures for the hostile-input suite: flyte-iap run the way an attacker or a careless user would run it.

Every case here once failed (issue 10); each test pins the answer that replaced the failure. What they
share: the CLI run as a real process with no terminal (``cli``), a warm token cache (``warm_user``), a
way to give a path to another user (``give_away``, root only), and an HTTP server that misbehaves on
purpose (``trickle_server``). Nothing leaves 127.0.0.1.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from helpers import run_no_terminal
from helpers.hostile import OTHER_UID, Runner

from flyte_iap.cache import TokenCache

if TYPE_CHECKING:
    from flyte_iap.testing import FakeGoogle


@pytest.fixture
def cli() -> Runner:
    """Run ``flyte-iap ARGS`` (the console script's entry, fast path included) as a process with no terminal.

    Keyword arguments set environment variables (None removes one); ``timeout`` guards against hangs.
    """

    def run(*args: str, timeout: float = 60, **env: str | None) -> subprocess.CompletedProcess[str]:
        entry = [sys.executable, "-c", "from flyte_iap._entry import main; main()"]
        return run_no_terminal(entry, args, env, timeout)

    return run


@pytest.fixture
def give_away() -> Callable[[Path], None]:
    """Make a file or directory belong to another user (needs root, which CI containers have)."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        pytest.skip("giving a file to another user needs root")

    def chown(path: Path) -> None:
        os.chown(path, OTHER_UID, OTHER_UID, follow_symlinks=False)

    return chown


@pytest.fixture
def warm_user(fake_google: FakeGoogle, isolated_env: Path) -> str:
    """A cached user ID token for FakeGoogle's IAP client with an hour left (no refresh token): returned."""
    token = fake_google.mint_id_token(fake_google.IAP_CLIENT_ID)
    TokenCache(isolated_env).write(
        "user",
        fake_google.IAP_CLIENT_ID,
        fake_google.DESKTOP_CLIENT_ID,
        {"id_token": token, "client_id": fake_google.DESKTOP_CLIENT_ID, "store": "file"},
    )
    return token


class TrickleServer:
    """An HTTP server on 127.0.0.1 that answers every request with a body sent one byte every ``interval``.

    It never stops on its own: only a client-side deadline ends the exchange. ``hits`` counts requests.
    """

    def __init__(self, interval: float = 1.0, *, headers_too: bool = False) -> None:
        self.interval = interval
        self.headers_too = headers_too
        self.hits = 0
        self._sock = socket.create_server(("127.0.0.1", 0))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._sock.getsockname()[1]}"

    def _serve(self) -> None:
        self._sock.settimeout(0.2)
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.hits += 1
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn: socket.socket) -> None:
        head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n"
        try:
            conn.recv(65536)
            if not self.headers_too:
                conn.sendall(head)
                head = b""
            for byte in head + b" " * 100000:
                if self._stop.wait(self.interval):
                    break
                conn.sendall(bytes([byte]))
        except OSError:
            pass
        finally:
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self._sock.close()


@pytest.fixture
def trickle_server() -> Iterator[Callable[..., TrickleServer]]:
    """``trickle_server(interval=1.0, headers_too=False)`` starts a :class:`TrickleServer`; all stop after."""
    started: list[TrickleServer] = []

    def start(interval: float = 1.0, *, headers_too: bool = False) -> TrickleServer:
        server = TrickleServer(interval, headers_too=headers_too)
        started.append(server)
        return server

    yield start
    for server in started:
        server.close()
