"""Fixtures for driving real flytekit through IapProxy in front of FakeFlyteAdmin.

Every test here gets FakeGoogle (``fake_google``, its environment applied), a FakeFlyteAdmin, an IapProxy
whose audience is FakeGoogle's IAP client and whose allow list holds the signed-in user and the metadata
server's service account, and a PATH on which flytekit finds this environment's ``flyte-iap``.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import flyte_iap
from flyte_iap.client_config import ClientConfig, render
from flyte_iap.testing import FakeFlyteAdmin, FakeGoogle, IapProxy

WriteConfig = Callable[..., Path]


@pytest.fixture(autouse=True)
def flyte_iap_on_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """flytekit runs admin.proxyCommand without a shell: put this interpreter's scripts first on PATH."""
    monkeypatch.setenv("PATH", os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""))


@pytest.fixture
def admin() -> Iterator[FakeFlyteAdmin]:
    with FakeFlyteAdmin() as fake:
        yield fake


@pytest.fixture
def iap(fake_google: FakeGoogle, admin: FakeFlyteAdmin) -> Iterator[IapProxy]:
    with IapProxy(
        fake_google.IAP_CLIENT_ID,
        certs_url=fake_google.certs_url,
        allowed=[fake_google.user_email, fake_google.metadata_service_account],
        http_upstream=admin.http_url,
        grpc_upstream=admin.grpc_target,
    ) as proxy:
        admin.public_url = proxy.url
        yield proxy


@pytest.fixture
def signed_in(fake_google: FakeGoogle) -> str:
    """The user has run `flyte-iap login` once (scripted browser); returns their e-mail."""

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


@pytest.fixture
def write_config(tmp_path: Path, fake_google: FakeGoogle, iap: IapProxy) -> WriteConfig:
    """Write a config file with `flyte-iap config`'s library (overrides: ClientConfig fields)."""

    def write(name: str = "config.yaml", **overrides: object) -> Path:
        settings: dict[str, object] = {"endpoint": iap.url, "audience": fake_google.IAP_CLIENT_ID}
        settings.update(overrides)
        path = tmp_path / name
        path.write_text(render(ClientConfig(**settings)))  # type: ignore[arg-type]
        return path

    return write
