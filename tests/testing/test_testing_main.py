"""``python -m flyte_iap.testing serve`` and ``browse``, run as subprocesses like users and login flows do."""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import urllib.request

import pytest
from helpers import Served, ServeFactory

from flyte_iap.testing import FakeGoogle


@pytest.fixture
def served(serve: ServeFactory) -> Served:
    """A ``serve`` subprocess and the variables its export lines set."""
    return serve("--user-email", "dave@example.com")


def test_serve_prints_export_lines_for_a_running_fake(
    served: Served,
) -> None:
    _, exports = served

    assert exports["FLYTE_IAP_TEST_CLIENT_ID"] == FakeGoogle.DESKTOP_CLIENT_ID
    assert exports["FLYTE_IAP_TEST_CLIENT_SECRET"] == FakeGoogle.DESKTOP_CLIENT_SECRET
    assert exports["FLYTE_IAP_TEST_USER_EMAIL"] == "dave@example.com"
    assert set(exports) >= {
        "FLYTE_IAP_AUTH_URI",
        "FLYTE_IAP_TOKEN_URI",
        "FLYTE_IAP_REVOKE_URI",
        "FLYTE_IAP_IAMCREDENTIALS_URI",
        "FLYTE_IAP_SECRETMANAGER_URI",
        "FLYTE_IAP_STS_URI",
        "GCE_METADATA_HOST",
        "GCE_METADATA_IP",
    }
    with urllib.request.urlopen(exports["FLYTE_IAP_STS_URI"] + "/oauth2/v1/certs", timeout=5) as response:
        assert json.loads(response.read())


def test_serve_stops_cleanly_on_sigterm(served: Served) -> None:
    process, _ = served

    process.send_signal(signal.SIGTERM)

    assert process.wait(timeout=10) == 0


def test_browse_command_completes_login_and_reports_on_stderr_only(
    fake_google, loopback, authorize_url
) -> None:
    result = subprocess.run(
        [*shlex.split(fake_google.browser_command.replace("%s", "")), authorize_url()],
        capture_output=True,
        text=True,
        timeout=30,
        env=os.environ.copy(),
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    assert "answered HTTP 200" in result.stderr
    assert "Signed in" not in result.stderr  # a success page is not echoed; a failure page is
    assert loopback.callbacks[0]["code"]


def test_browse_command_fails_when_consent_is_denied(fake_google, loopback, authorize_url) -> None:
    fake_google.deny_consent = True

    result = subprocess.run(
        [sys.executable, "-m", "flyte_iap.testing", "browse", authorize_url()],
        capture_output=True,
        text=True,
        timeout=30,
    )

    assert result.returncode == 1
    assert "access_denied" in result.stderr
    assert result.stdout == ""


def test_browser_command_works_as_browser_for_webbrowser(
    fake_google, loopback, authorize_url, monkeypatch
) -> None:
    import webbrowser

    monkeypatch.setenv("BROWSER", fake_google.browser_command)
    monkeypatch.setattr(webbrowser, "_tryorder", None)
    monkeypatch.setattr(webbrowser, "_browsers", {})

    assert webbrowser.open(authorize_url()) is True
    assert loopback.callbacks[0]["state"] == "state-123"


# `serve` without the [testing] extra: simulated by making an import of the fakes fail in the child.
_WITHOUT = (
    "import sys\n"
    "sys.modules[{module!r}] = None\n"
    "from flyte_iap.testing.__main__ import main\n"
    "sys.exit(main(sys.argv[1:]))\n"
)


@pytest.mark.parametrize(
    ("module", "args", "command"),
    [
        ("grpc", ["serve", "--flyteadmin"], "serve --flyteadmin"),
        ("h2", ["serve", "--flyteadmin"], "serve --flyteadmin"),
        ("cryptography", ["serve"], "serve"),
    ],
)
def test_serve_without_the_testing_extra_is_a_one_line_error_with_the_install_hint(
    module: str, args: list[str], command: str
) -> None:
    result = subprocess.run(
        [sys.executable, "-c", _WITHOUT.format(module=module), *args],
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )

    assert result.returncode == 2
    assert result.stdout == ""  # no export lines for fakes that never started
    lines = result.stderr.splitlines()
    assert lines[0] == f"error: {command} needs the Python package {module!r}, which is not installed"
    assert lines[1].startswith("hint: pip install 'pyjwt[crypto]>=2.8'")
    assert lines[1].endswith("(flyte-iap's [testing] extra)")
    assert len(lines) == 2
