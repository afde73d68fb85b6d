"""Fixtures for the local proxy: IAP (the emulator, with TLS) in front of FakeFlyteAdmin, and
``flyte-iap proxy``'s LocalProxy in front of IAP, signed in as FakeGoogle's user.

Traffic: client -> LocalProxy (http://127.0.0.1:P, h1 or h2c) -> IapProxy (https://localhost:Q, h2) ->
FakeFlyteAdmin (h2c gRPC / HTTP/1.1). Everything stays on 127.0.0.1.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from helpers import ProxyFactory

from flyte_iap.local_proxy import LocalProxy, TokenSource, user_token_fetcher
from flyte_iap.testing import FakeFlyteAdmin, FakeGoogle, IapProxy

LocalFactory = Callable[..., LocalProxy]


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
        settings.update(overrides)
        proxy = LocalProxy(overrides.pop("endpoint", tls_iap.url), tokens, **settings).start_in_thread()
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


def assert_flyteadmin_never_saw_iap_credentials(admin: FakeFlyteAdmin) -> None:
    for call in admin.grpc_calls:
        assert "proxy-authorization" not in call.metadata, call.method
    for request in admin.http_requests:
        assert "proxy-authorization" not in request.headers, request.path
