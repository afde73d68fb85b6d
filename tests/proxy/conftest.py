"""Fixtures for the local proxy: IAP (the emulator, with TLS) in front of FakeFlyteAdmin, and
``flyte-iap proxy``'s LocalProxy in front of IAP, signed in as FakeGoogle's user.

Traffic: client -> LocalProxy (http://127.0.0.1:P, h1 or h2c) -> IapProxy (https://localhost:Q, h2) ->
FakeFlyteAdmin (h2c gRPC / HTTP/1.1). Everything stays on 127.0.0.1.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from helpers import ProxyFactory
from helpers.proxy import LocalFactory

from flyte_iap.local_proxy import LocalProxy, TokenSource, user_token_fetcher
from flyte_iap.testing import FakeGoogle, IapProxy


@pytest.fixture
def tls_iap(make_proxy: ProxyFactory) -> IapProxy:
    """IAP on TLS (ALPN h2 and http/1.1), as Google's front end on :443."""
    return make_proxy(tls=True)


@pytest.fixture
def make_local(tls_iap: IapProxy, fake_google: FakeGoogle) -> Iterator[LocalFactory]:
    """Start LocalProxy instances in front of ``tls_iap`` (keyword arguments override its settings)."""
    started: list[LocalProxy] = []

    def make(**overrides: Any) -> LocalProxy:
        settings: dict[str, Any] = {"ca_cert": tls_iap.ca_cert_file}
        tokens = overrides.pop("tokens", None) or TokenSource(user_token_fetcher(fake_google.IAP_CLIENT_ID))
        endpoint = overrides.pop("endpoint", tls_iap.url)
        settings.update(overrides)
        proxy = LocalProxy(endpoint, tokens, **settings).start_in_thread()
        started.append(proxy)
        return proxy

    yield make
    for proxy in started:
        proxy.stop_thread()


@pytest.fixture
def local(make_local: LocalFactory, signed_in: str) -> LocalProxy:
    """The proxy as `flyte-iap proxy --endpoint https://localhost:Q --audience IAP_CLIENT_ID` runs it."""
    return make_local()


@pytest.fixture
def local_target(local: LocalProxy) -> str:
    """``127.0.0.1:P``: what admin.endpoint or a grpcio channel names."""
    return f"127.0.0.1:{local.port}"


@pytest.fixture
def echo_http() -> Iterator[Any]:
    """An HTTP/1.1 upstream that reports what it got: POST /echo answers the body's length and SHA-256,
    GET /redirect answers 302 to another host, anything else 200 with the request headers as JSON."""
    import hashlib
    import http.server
    import json
    import threading

    seen: list[dict[str, str]] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            pass

        def _reply(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
            self.send_response(status)
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            seen.append({k.lower(): v for k, v in self.headers.items()})
            if self.path == "/redirect":
                self._reply(302, b"", {"location": "https://elsewhere.example/landing"})
                return
            self._reply(200, json.dumps(seen[-1]).encode(), {"content-type": "application/json"})

        def do_POST(self) -> None:
            seen.append({k.lower(): v for k, v in self.headers.items()})
            digest = hashlib.sha256()
            left = int(self.headers.get("content-length", "0"))
            total = 0
            while left:
                chunk = self.rfile.read(min(left, 1 << 16))
                if not chunk:
                    break
                digest.update(chunk)
                total += len(chunk)
                left -= len(chunk)
            self._reply(200, json.dumps({"length": total, "sha256": digest.hexdigest()}).encode())

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    server.seen = seen  # type: ignore[attr-defined]
    server.url = f"http://127.0.0.1:{server.server_address[1]}"  # type: ignore[attr-defined]
    yield server
    server.shutdown()
    server.server_close()
