"""`python -m flyte_iap.testing serve --flyteadmin`: the whole local stack from a shell, as in the guide."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import Served, ServeFactory


@pytest.fixture
def stack(serve: ServeFactory) -> Served:
    return serve("--flyteadmin", "--tls")


def test_serve_flyteadmin_stack_passes_doctor_after_login_from_a_shell(stack: Served, tmp_path: Path) -> None:
    process, exports = stack
    env = {**os.environ, **exports, "BROWSER": exports["FLYTE_IAP_TEST_BROWSER"]}
    aud = exports["FLYTE_IAP_TEST_IAP_CLIENT_ID"]

    def flyte_iap(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "flyte_iap", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            stdin=subprocess.DEVNULL,
        )

    login = flyte_iap(
        "login",
        "--audience",
        aud,
        "--client-id",
        exports["FLYTE_IAP_TEST_CLIENT_ID"],
        "--client-secret",
        exports["FLYTE_IAP_TEST_CLIENT_SECRET"],
    )
    assert login.returncode == 0, login.stderr
    doctor = flyte_iap(
        "doctor",
        "--endpoint",
        exports["FLYTE_IAP_TEST_ENDPOINT"],
        "--audience",
        aud,
        "--ca-cert",
        exports["FLYTE_IAP_TEST_CA_CERT"],
    )

    assert doctor.returncode == 0, doctor.stdout
    assert exports["FLYTE_IAP_TEST_ENDPOINT"].startswith("https://localhost:")
    assert exports["FLYTE_IAP_TEST_ENDPOINT_HOST"] == exports["FLYTE_IAP_TEST_ENDPOINT"].removeprefix(
        "https://"
    )
    ca_cert = Path(exports["FLYTE_IAP_TEST_CA_CERT"])
    assert ca_cert.is_file()

    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=10) == 0
    assert not ca_cert.exists()  # the proxy's temporary CA is removed on exit
