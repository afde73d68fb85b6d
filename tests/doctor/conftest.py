"""Fixtures for `flyte-iap doctor`: a FakeFlyteAdmin, an IapProxy factory and a signed-in user."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

import pytest

import flyte_iap
from flyte_iap.testing import FakeFlyteAdmin, FakeGoogle, IapProxy

ProxyFactory = Callable[..., IapProxy]


@pytest.fixture
def admin() -> Iterator[FakeFlyteAdmin]:
    with FakeFlyteAdmin() as fake:
        yield fake


@pytest.fixture
def make_proxy(fake_google: FakeGoogle, admin: FakeFlyteAdmin) -> Iterator[ProxyFactory]:
    """Start an IapProxy in front of ``admin``; keyword arguments override its settings."""
    started: list[IapProxy] = []

    def make(**overrides: object) -> IapProxy:
        settings: dict[str, object] = {
            "certs_url": fake_google.certs_url,
            "allowed": [fake_google.user_email, fake_google.metadata_service_account],
            "http_upstream": admin.http_url,
            "grpc_upstream": admin.grpc_target,
        }
        settings.update(overrides)
        proxy = IapProxy(fake_google.IAP_CLIENT_ID, **settings).start()  # type: ignore[arg-type]
        started.append(proxy)
        return proxy

    yield make
    for proxy in started:
        proxy.stop()


@pytest.fixture
def signed_in(fake_google: FakeGoogle) -> str:
    """The user ran `flyte-iap login` for the IAP client (scripted browser); returns their e-mail."""

    def opener(url: str) -> bool:
        threading.Thread(target=fake_google.browser, args=(url,), daemon=True).start()
        return True

    flyte_iap.login_user(
        fake_google.IAP_CLIENT_ID,
        client_id=fake_google.DESKTOP_CLIENT_ID,
        client_secret=fake_google.DESKTOP_CLIENT_SECRET,
        opener=opener,
        notify=lambda message: None,
    )
    return fake_google.user_email
