"""Helpers for the user-token tests (fixtures live in tests/user/conftest.py)."""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Callable

import keyring.backend
import keyring.errors

from flyte_iap.testing import FakeGoogle
from flyte_iap.testing.fake_google import BrowserResult

#: ``run_cli(*args, env=None, timeout=60)`` from the ``run_cli`` fixture.
Runner = Callable[..., subprocess.CompletedProcess[str]]

SECRET_NAME = "projects/fake-project/secrets/flyte-desktop"
ADC_ACCOUNT = "reader@fake-project.iam.gserviceaccount.com"


class ScriptedBrowser:
    """An ``opener`` for the login flow: the fake's scripted user consents and lands on the loopback page."""

    def __init__(self, google: FakeGoogle, before: Callable[[str], None] | None = None) -> None:
        self.google = google
        self.before = before
        self.urls: list[str] = []
        self._results: list[BrowserResult] = []
        self._done = threading.Condition()

    def __call__(self, url: str) -> bool:
        self.urls.append(url)
        if self.before is not None:
            self.before(url)
        result = self.google.browser(url, timeout=10)
        with self._done:
            self._results.append(result)
            self._done.notify_all()
        return True

    @property
    def results(self) -> list[BrowserResult]:
        """What the browser saw, once each opened URL has finished loading (the flow may end first)."""
        with self._done:
            self._done.wait_for(lambda: len(self._results) >= len(self.urls), timeout=15)
            return list(self._results)


class MemoryKeyring(keyring.backend.KeyringBackend):
    """A keyring backend that keeps passwords in a dict."""

    priority = 1  # type: ignore[assignment]

    def __init__(self) -> None:
        super().__init__()
        self.entries: dict[tuple[str, str], str] = {}

    def get_password(self, service: str, username: str) -> str | None:
        return self.entries.get((service, username))

    def set_password(self, service: str, username: str, password: str) -> None:
        self.entries[(service, username)] = password

    def delete_password(self, service: str, username: str) -> None:
        if (service, username) not in self.entries:
            raise keyring.errors.PasswordDeleteError("not found")
        del self.entries[(service, username)]
