"""Fixtures for driving real flytekit through IapProxy in front of FakeFlyteAdmin.

Every test here can have FakeGoogle (``fake_google``, its environment applied), a FakeFlyteAdmin
(``admin``), the IapProxy of tests/conftest.py's ``make_proxy`` in front of it (``iap``), and a PATH on
which flytekit finds this environment's ``flyte-iap``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from helpers import ProxyFactory

from flyte_iap.client_config import ClientConfig, render
from flyte_iap.testing import FakeFlyteAdmin, FakeGoogle, IapProxy

WriteConfig = Callable[..., Path]


@pytest.fixture(autouse=True)
def flyte_iap_on_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """flytekit runs admin.proxyCommand without a shell: put this interpreter's scripts first on PATH."""
    monkeypatch.setenv("PATH", os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""))


@pytest.fixture
def iap(make_proxy: ProxyFactory, admin: FakeFlyteAdmin) -> IapProxy:
    """IAP in front of ``admin``, whose links (``public_url``) point at IAP, as behind a load balancer."""
    proxy = make_proxy()
    admin.public_url = proxy.url
    return proxy


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
