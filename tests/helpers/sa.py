"""Names and helpers shared by the service-account tests (fixtures live in tests/sa/conftest.py)."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

from flyte_iap.idtoken import decode_claims

#: The service account CI runs as (its key, or the one a federated identity impersonates).
CI_SA = "flyte-ci@fake-project.iam.gserviceaccount.com"
#: A service account that others impersonate with --impersonate-service-account.
DEPLOYER_SA = "flyte-deployer@fake-project.iam.gserviceaccount.com"
#: A Workload Identity Federation provider, as an external_account file's ``audience``.
POOL_PROVIDER = (
    "//iam.googleapis.com/projects/123456789012/locations/global/workloadIdentityPools/github/providers/flyte"
)
JWT_SUBJECT_TOKEN = "urn:ietf:params:oauth:token-type:jwt"

Runner = Callable[..., subprocess.CompletedProcess[str]]


def claims(token: str) -> dict[str, Any]:
    """The payload of an ID token (signature not checked)."""
    return decode_claims(token)


def write_json(path: Path, data: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return path


def stdout_token(result: subprocess.CompletedProcess[str]) -> str:
    """The token a successful run printed, after checking stdout holds nothing else and stderr nothing."""
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    lines = result.stdout.splitlines()
    assert len(lines) == 1, "stdout must hold the token and nothing else"
    return lines[0]


def error_lines(result: subprocess.CompletedProcess[str]) -> tuple[str, str]:
    """The ``error:`` and ``hint:`` lines of a failed run, after checking that is all it printed."""
    assert result.returncode == 1, (result.returncode, result.stderr)
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 2, result.stderr
    assert lines[0].startswith("error: ") and lines[1].startswith("hint: "), result.stderr
    return lines[0], lines[1]
