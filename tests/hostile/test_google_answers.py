"""Whatever the token endpoint answers, a token command ends with a token or an error and a hint."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers.hostile import Runner, error_of

from flyte_iap.testing import FakeGoogle

CI_SA = "flyte-ci@fake-project.iam.gserviceaccount.com"
NESTED = b"[" * 100_000 + b"]" * 100_000
HTML = b"<!doctype html><html><body>Sign in to the hotel Wi-Fi</body></html>"


@pytest.fixture
def key_file(fake_google: FakeGoogle, tmp_path: Path) -> Path:
    path = tmp_path / "key.json"
    path.write_text(json.dumps(fake_google.add_service_account(CI_SA)))
    return path


@pytest.mark.parametrize("status", [200, 400])
def test_deeply_nested_json_from_the_token_endpoint_on_refresh_is_not_a_crash(
    cli: Runner, fake_google: FakeGoogle, signed_in: str, status: int
) -> None:
    if status == 200:
        fake_google.malformed_next(path="/token", body=NESTED)
    else:
        fake_google.fail_next(status=400, path="/token", body=NESTED)

    # --min-valid above the token's lifetime forces a refresh; the stale token is the fallback.
    result = cli("token", "--audience", fake_google.IAP_CLIENT_ID, "--min-valid", "3600")

    assert "(a bug in flyte-iap)" not in result.stderr
    assert result.returncode == 0, result.stderr
    assert "warning: Google's token endpoint" in result.stderr


@pytest.mark.parametrize("body", [HTML, NESTED], ids=["html", "nested-json"])
def test_a_token_endpoint_answering_200_with_garbage_on_the_key_file_path_is_an_error_with_a_hint(
    cli: Runner, fake_google: FakeGoogle, key_file: Path, body: bytes
) -> None:
    fake_google.malformed_next(path="/token", body=body)

    result = cli("sa-token", "--audience", fake_google.IAP_CLIENT_ID, "--key-file", str(key_file))

    stderr = error_of(result)
    assert "Google's token endpoint answered with something that is not a usable token response" in stderr
    assert "HTTPS_PROXY" in stderr
