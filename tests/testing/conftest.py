"""Fixtures for the fakes' tests: a client's loopback redirect server, PKCE parameters, `serve` processes."""

from __future__ import annotations

import base64
import hashlib
import secrets
import shlex
import subprocess
import sys
import threading
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from google.auth.compute_engine import _metadata
from helpers import Served, ServeFactory

from flyte_iap.testing import FakeGoogle
from flyte_iap.testing.__main__ import READY_LINE


@dataclass
class Loopback:
    """A stand-in for a login flow's loopback server: records each callback's query parameters."""

    url: str
    callbacks: list[dict[str, str]] = field(default_factory=list)


@pytest.fixture
def loopback() -> Iterator[Loopback]:
    """An HTTP server on 127.0.0.1:0 answering ``/callback`` with a small page."""
    received: list[dict[str, str]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            received.append(dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(self.path).query)))
            body = b"<html><body>Signed in. You may close this window.</body></html>"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield Loopback(f"http://127.0.0.1:{server.server_address[1]}/callback", received)
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def pkce() -> tuple[str, str]:
    """A fresh ``(code_verifier, S256 code_challenge)``."""
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


AuthorizeUrl = Callable[..., str]


@pytest.fixture
def authorize_url(fake_google: FakeGoogle, loopback: Loopback, pkce: tuple[str, str]) -> AuthorizeUrl:
    """Build the URL a login flow would open; keyword overrides replace parameters (None drops one)."""

    def build(**overrides: str | None) -> str:
        params: dict[str, str | None] = {
            "client_id": fake_google.DESKTOP_CLIENT_ID,
            "redirect_uri": loopback.url,
            "response_type": "code",
            "scope": "openid email",
            "state": "state-123",
            "code_challenge": pkce[1],
            "code_challenge_method": "S256",
            "access_type": "offline",
        }
        params.update(overrides)
        query = urllib.parse.urlencode({k: v for k, v in params.items() if v is not None})
        return f"{fake_google.auth_uri}?{query}"

    return build


@pytest.fixture
def metadata_server(fake_google: FakeGoogle, monkeypatch: pytest.MonkeyPatch) -> FakeGoogle:
    """``fake_google`` also serving as google-auth's metadata server in this process."""
    # google-auth reads GCE_METADATA_HOST at import time; GCE_METADATA_IP (the ping) per call.
    monkeypatch.setattr(_metadata, "_GCE_METADATA_HOST", fake_google.env["GCE_METADATA_HOST"])
    return fake_google


@pytest.fixture
def serve() -> Iterator[ServeFactory]:
    """Start ``python -m flyte_iap.testing serve ARGS`` and read its export lines; stopped after the test."""
    started: list[subprocess.Popen[str]] = []

    def start(*args: str) -> Served:
        process = subprocess.Popen(
            [sys.executable, "-m", "flyte_iap.testing", "serve", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        started.append(process)
        exports: dict[str, str] = {}
        assert process.stdout is not None
        for line in process.stdout:
            if line.rstrip("\n") == READY_LINE:
                break
            # Each line must be valid shell: parse it as a shell would.
            words = shlex.split(line)
            assert words[0] == "export", line
            name, _, value = words[1].partition("=")
            exports[name] = value
        return process, exports

    yield start
    for process in started:
        if process.poll() is None:
            process.terminate()
        process.wait(timeout=10)
        if process.stdout is not None:
            process.stdout.close()
