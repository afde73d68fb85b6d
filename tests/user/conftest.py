"""Fixtures for user ID tokens: a scripted browser, a fake keyring, and the CLI run as a real process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import keyring
import pytest
from helpers.user import ADC_ACCOUNT, SECRET_NAME, MemoryKeyring, Runner, ScriptedBrowser

from flyte_iap.testing import FakeGoogle


@pytest.fixture
def browser(fake_google: FakeGoogle) -> ScriptedBrowser:
    return ScriptedBrowser(fake_google)


@pytest.fixture
def aud(fake_google: FakeGoogle) -> str:
    """The IAP app's OAuth client ID: the audience of every user token here."""
    return fake_google.IAP_CLIENT_ID


@pytest.fixture
def adc_key_file(fake_google: FakeGoogle, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Application default credentials (a service-account key) that can read :data:`SECRET_NAME`."""
    path = tmp_path / "adc.json"
    path.write_text(json.dumps(fake_google.add_service_account(ADC_ACCOUNT)))
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(path))
    fake_google.set_secret(SECRET_NAME, fake_google.DESKTOP_CLIENT_SECRET + "\n", accessors=[ADC_ACCOUNT])
    return path


@pytest.fixture
def memory_keyring() -> Iterator[MemoryKeyring]:
    previous = keyring.get_keyring()
    backend = MemoryKeyring()
    keyring.set_keyring(backend)
    yield backend
    keyring.set_keyring(previous)


@pytest.fixture
def cli_env(fake_google: FakeGoogle) -> dict[str, str]:
    """The environment for ``flyte-iap`` subprocesses: the fakes, the test cache and the scripted browser."""
    env = dict(os.environ)
    env.update(fake_google.env)
    env["BROWSER"] = fake_google.browser_command
    env.pop("DISPLAY", None)
    return env


@pytest.fixture
def run_cli(cli_env: dict[str, str]) -> Runner:
    """Run ``python -m flyte_iap ARGS`` as a process with no terminal; the timeout guards against hangs."""

    def run(
        *args: str, env: dict[str, str] | None = None, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "flyte_iap", *args],
            env=env if env is not None else cli_env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    return run
