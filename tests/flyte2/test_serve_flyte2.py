"""`python -m flyte_iap.testing serve --flyte2 --tls`: the Flyte 2 stack from a shell, as the Flyte 2
try-it-locally page uses it, with the real `flyte` CLI going through it."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from collections.abc import Iterator

import pytest
from conftest import BIN

from flyte_iap.testing.__main__ import READY_LINE


@pytest.fixture
def served() -> Iterator[dict[str, str]]:
    process = subprocess.Popen(
        [sys.executable, "-m", "flyte_iap.testing", "serve", "--flyte2", "--tls"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    exports: dict[str, str] = {}
    assert process.stdout is not None
    for line in process.stdout:
        if line.rstrip("\n") == READY_LINE:
            break
        words = shlex.split(line)
        assert words[0] == "export", line
        name, _, value = words[1].partition("=")
        exports[name] = value
    yield exports
    process.terminate()
    process.wait(timeout=10)
    process.stdout.close()


def test_serve_flyte2_stack_answers_the_flyte_cli_through_iap_with_a_service_account(
    served: dict[str, str],
) -> None:
    env = {**os.environ, **served}
    args = ["--endpoint", served["FLYTE_IAP_TEST_FLYTE2_ENDPOINT"]]
    args += [
        "--audience",
        served["FLYTE_IAP_TEST_IAP_CLIENT_ID"],
        "--ca-cert",
        served["FLYTE_IAP_TEST_FLYTE2_CA_CERT"],
    ]
    config = subprocess.run(
        [f"{BIN}/flyte-iap", "config", "--sdk", "flyte2", "--service-account", *args, "-o", "config.yaml"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert config.returncode == 0, config.stderr

    result = subprocess.run(
        [f"{BIN}/flyte", "get", "run", "--project", "flytesnacks"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert result.returncode == 0, result.stderr[-2000:]
    assert "r-first-run" in result.stdout
