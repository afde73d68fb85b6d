"""Fixtures shared by every test: an isolated environment, a running FakeGoogle, IAP in front of flyteadmin.

Nothing here reaches beyond 127.0.0.1: the autouse fixture removes every FLYTE_IAP_*, GOOGLE_* and
metadata variable a developer's shell might carry, points the token cache at a temporary directory, and
tells google-auth there is no metadata server unless a test starts one.
"""

from __future__ import annotations

import io
import os
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from helpers import ProxyFactory

if TYPE_CHECKING:
    from flyte_iap.testing import FakeFlyteAdmin, FakeGoogle, IapProxy

_SCRUB_PREFIXES = ("FLYTE_IAP_", "GOOGLE_", "CLOUDSDK_", "GCE_METADATA", "FLYTE_CREDENTIALS", "FLYTECTL_")


@pytest.fixture(autouse=True)
def isolated_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A clean environment per test; returns the token cache directory."""
    for name in list(os.environ):
        if name.startswith(_SCRUB_PREFIXES) or name in {"BROWSER", "NO_GCE_CHECK"}:
            monkeypatch.delenv(name, raising=False)
    cache = tmp_path / "cache"
    monkeypatch.setenv("FLYTE_IAP_CACHE_DIR", str(cache))
    # gcloud's ADC file lives under $HOME (or CLOUDSDK_CONFIG): keep the developer's out of the tests.
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(home / ".config" / "gcloud"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(home / ".cache"))
    # No real metadata server: a test that wants one points GCE_METADATA_* at FakeGoogle.
    monkeypatch.setenv("GCE_METADATA_HOST", "127.0.0.1:9")
    monkeypatch.setenv("GCE_METADATA_IP", "127.0.0.1:9")
    return cache


class _TerminalStream(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture
def in_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    """stdin and stderr say they are a terminal, as when a person runs the command (nothing is read)."""
    monkeypatch.setattr(sys, "stdin", _TerminalStream())
    monkeypatch.setattr(sys, "stderr", _TerminalStream())


@pytest.fixture
def fake_google(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """A FakeGoogle on an ephemeral port, with its ``.env`` applied to this test's environment."""
    from flyte_iap.testing import FakeGoogle

    with FakeGoogle() as google:
        for name, value in google.env.items():
            monkeypatch.setenv(name, value)
        yield google


@pytest.fixture
def admin() -> Iterator[FakeFlyteAdmin]:
    """A FakeFlyteAdmin serving HTTP and gRPC on ephemeral ports."""
    from flyte_iap.testing import FakeFlyteAdmin

    with FakeFlyteAdmin() as fake:
        yield fake


@pytest.fixture
def make_proxy(fake_google: FakeGoogle, admin: FakeFlyteAdmin) -> Iterator[ProxyFactory]:
    """Start an IapProxy in front of ``admin``; keyword arguments override its settings.

    By default its audience is FakeGoogle's IAP client and its allow list holds FakeGoogle's user and the
    metadata server's service account. Every proxy started is stopped after the test.
    """
    from flyte_iap.testing import IapProxy

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
    """The user has run `flyte-iap login` for the IAP client once (scripted browser); returns their e-mail."""
    import flyte_iap

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
