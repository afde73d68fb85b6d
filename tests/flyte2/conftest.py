"""Fixtures for the real ``flyte`` SDK (2.x) through IapProxy (TLS) in front of FakeFlyte2.

This folder runs in its own venv (``nox -s flyte2``): the flyte SDK needs protobuf >= 6 and connectrpc,
which flytekit 1.16 does not accept. Every test gets a temporary HOME and cwd (the SDK looks for
``./config.yaml``, ``./.flyte/config.yaml`` and ``~/.flyte/config.yaml``), the SDK's plain-text file
keyring inside that HOME (``PYTHON_KEYRING_BACKEND``, so no test touches a developer's keyring), and a
PATH on which the SDK finds this venv's ``flyte`` and ``flyte-iap``.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from flyte_iap.client_config import ClientConfig, render
from flyte_iap.testing import FakeFlyte2, FakeGoogle, IapProxy

#: The flyte SDK's own file keyring (flyte 2.12.1 wheel: flyte/_keyring/file.py), kept under $HOME/.flyte.
KEYRING_BACKEND = "flyte._keyring.file.SimplePlainTextKeyring"
BIN = os.path.dirname(sys.executable)
_SCRUB_PREFIXES = ("FLYTE", "UCTL_", "GOOGLE_", "CLOUDSDK_", "GCE_METADATA", "_U_")


@pytest.fixture(autouse=True)
def isolated_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A clean environment per test; returns the temporary HOME."""
    for name in list(os.environ):
        if name.startswith(_SCRUB_PREFIXES) or name in {"BROWSER", "NO_GCE_CHECK", "PYTHON_KEYRING_BACKEND"}:
            monkeypatch.delenv(name, raising=False)
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", KEYRING_BACKEND)
    monkeypatch.setenv("FLYTE_IAP_CACHE_DIR", str(tmp_path / "token-cache"))
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(home / ".config" / "gcloud"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(home / ".cache"))
    monkeypatch.setenv("GCE_METADATA_HOST", "127.0.0.1:9")
    monkeypatch.setenv("GCE_METADATA_IP", "127.0.0.1:9")
    monkeypatch.setenv("PATH", BIN + os.pathsep + os.environ.get("PATH", ""))
    # rich draws tables as wide as the terminal: a wide one keeps names on one line
    monkeypatch.setenv("COLUMNS", "200")
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    return home


@pytest.fixture
def fake_google(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeGoogle]:
    """FakeGoogle (its metadata server stands in for GKE Workload Identity), its env applied."""
    with FakeGoogle() as google:
        for name, value in google.env.items():
            monkeypatch.setenv(name, value)
        yield google


@pytest.fixture
def flyte2() -> Iterator[FakeFlyte2]:
    with FakeFlyte2(stream_interval=0.4) as fake:
        fake.add_run("r-watch-me")
        yield fake


ProxyFactory = Callable[..., IapProxy]


@pytest.fixture
def make_iap(fake_google: FakeGoogle, flyte2: FakeFlyte2) -> Iterator[ProxyFactory]:
    """IapProxy with TLS in front of FakeFlyte2; keyword arguments override its settings."""
    started: list[IapProxy] = []

    def make(**overrides: object) -> IapProxy:
        settings: dict[str, object] = {
            "certs_url": fake_google.certs_url,
            "allowed": [fake_google.user_email, fake_google.metadata_service_account],
            "http_upstream": flyte2.url,
            "tls": True,
        }
        settings.update(overrides)
        proxy = IapProxy(fake_google.IAP_CLIENT_ID, **settings).start()  # type: ignore[arg-type]
        started.append(proxy)
        return proxy

    yield make
    for proxy in started:
        proxy.stop()


@pytest.fixture
def iap(make_iap: ProxyFactory) -> IapProxy:
    return make_iap()


class CountingCommand:
    """A wrapper around this venv's ``flyte-iap`` that counts how often the SDK runs it."""

    def __init__(self, directory: Path) -> None:
        self.log = directory / "runs.log"
        self.path = directory / "counting-flyte-iap"
        self.path.write_text(f'#!/bin/sh\necho "$1" >> "{self.log}"\nexec "{BIN}/flyte-iap" "$@"\n')
        self.path.chmod(self.path.stat().st_mode | stat.S_IXUSR)

    @property
    def runs(self) -> int:
        return len(self.log.read_text().splitlines()) if self.log.exists() else 0


@pytest.fixture
def counting_command(tmp_path: Path) -> CountingCommand:
    directory = tmp_path / "bin"
    directory.mkdir()
    return CountingCommand(directory)


WriteConfig = Callable[..., Path]


@pytest.fixture
def write_config(fake_google: FakeGoogle, iap: IapProxy, counting_command: CountingCommand) -> WriteConfig:
    """``config.yaml`` in the cwd (the SDK's first search location), from flyte-iap's Flyte 2 writer.

    Service-account mode (the metadata server) by default; ``mode="user"`` for ``flyte-iap token``.
    """

    def write(path: str = "config.yaml", proxy: IapProxy | None = None, **overrides: object) -> Path:
        proxy = proxy or iap
        settings: dict[str, object] = {
            "endpoint": proxy.url,
            "audience": fake_google.IAP_CLIENT_ID,
            "mode": "service-account",
            "sdk": "flyte2",
            "ca_cert_file": proxy.ca_cert_file,
            "command": str(counting_command.path),
            "project": "flytesnacks",
            "domain": "development",
        }
        settings.update(overrides)
        target = Path(path)
        target.write_text(render(ClientConfig(**settings)))  # type: ignore[arg-type]
        return target.resolve()

    return write


def run_flyte(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """The ``flyte`` CLI of this venv, as a user runs it."""
    return subprocess.run(
        [os.path.join(BIN, "flyte"), *args], capture_output=True, text=True, timeout=timeout, check=False
    )


@pytest.fixture
def signed_in(fake_google: FakeGoogle) -> str:
    """The user has run `flyte-iap login` once (FakeGoogle's scripted browser); returns their e-mail."""
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
