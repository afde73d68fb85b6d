"""Fixtures shared by every test: an isolated environment and a running FakeGoogle.

Nothing here reaches beyond 127.0.0.1: the autouse fixture removes every FLYTE_IAP_*, GOOGLE_* and
metadata variable a developer's shell might carry, points the token cache at a temporary directory, and
tells google-auth there is no metadata server unless a test starts one.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

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


@pytest.fixture
def fake_google(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """A FakeGoogle on an ephemeral port, with its ``.env`` applied to this test's environment."""
    from flyte_iap.testing import FakeGoogle

    with FakeGoogle() as google:
        for name, value in google.env.items():
            monkeypatch.setenv(name, value)
        yield google
