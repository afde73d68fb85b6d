"""`flyte-iap generate-service-account-id-token`: the old plugin's flags, with the new cache and errors."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from helpers.sa import CI_SA, DEPLOYER_SA, Runner, claims, error_lines, stdout_token, write_json

from flyte_iap.testing import FakeGoogle


@pytest.fixture
def old_command(run_sa: Runner, aud: str) -> Runner:
    """Run ``flyte-iap generate-service-account-id-token --webapp_client_id AUD ARGS`` as a process."""

    def run(*args: str, **env: str | None) -> subprocess.CompletedProcess[str]:
        return run_sa("generate-service-account-id-token", "--webapp_client_id", aud, *args, **env)

    return run


def test_old_command_prints_the_metadata_servers_token(
    fake_google: FakeGoogle, old_command: Runner, aud: str
) -> None:
    token = stdout_token(old_command())

    assert claims(token)["aud"] == aud
    assert claims(token)["email"] == fake_google.metadata_service_account


def test_old_command_uses_service_account_key(
    fake_google: FakeGoogle, old_command: Runner, key_file: Path, no_metadata: None
) -> None:
    token = stdout_token(old_command("--service_account_key", str(key_file)))

    assert claims(token)["email"] == CI_SA
    assert fake_google.requests_to("/token")[0].form["grant_type"].endswith("jwt-bearer")


def test_old_command_takes_an_impersonated_service_account_file_like_the_plugin(
    fake_google: FakeGoogle, old_command: Runner, key_file: Path, tmp_path: Path, no_metadata: None
) -> None:
    # The plugin set GOOGLE_APPLICATION_CREDENTIALS to --service_account_key, and google-auth >= 2.39
    # mints ID tokens from impersonated_service_account files there.
    impersonated = write_json(
        tmp_path / "impersonated.json",
        {
            "type": "impersonated_service_account",
            "service_account_impersonation_url": fake_google.generate_access_token_url(DEPLOYER_SA),
            "delegates": [],
            "source_credentials": json.loads(key_file.read_text()),
        },
    )
    fake_google.allow_impersonation(CI_SA, DEPLOYER_SA)

    token = stdout_token(old_command("--service_account_key", str(impersonated)))
    cached = old_command("--service_account_key", str(impersonated))

    assert claims(token)["email"] == DEPLOYER_SA
    assert cached.stdout.strip() == token and cached.stderr == ""
    assert len(fake_google.requests_to("/v1/projects/-/serviceAccounts/")) == 1


def test_old_command_is_answered_from_the_cache_it_shares_with_sa_token(
    fake_google: FakeGoogle, old_command: Runner, sa_token: Runner, key_file: Path
) -> None:
    token = stdout_token(sa_token("--key-file", str(key_file)))
    fake_google.clear_requests()

    again = stdout_token(old_command("--service_account_key", str(key_file)))
    slow = stdout_token(old_command("--service_account_key", str(key_file), FLYTE_IAP_NO_FAST_PATH="1"))

    assert again == slow == token
    assert fake_google.requests == []


def test_old_command_with_user_credentials_fails_with_a_hint_instead_of_a_traceback(
    fake_google: FakeGoogle, old_command: Runner, user_adc: Path, no_metadata: None
) -> None:
    error, hint = error_lines(old_command())

    assert "user credentials" in error
    assert "flyte-iap token" in hint


def test_old_command_reads_gcloud_adc_which_the_plugin_ignored(
    fake_google: FakeGoogle, old_command: Runner, key_file: Path, adc_path: Path, no_metadata: None
) -> None:
    adc_path.parent.mkdir(parents=True, exist_ok=True)
    adc_path.write_text(key_file.read_text())

    token = stdout_token(old_command())

    assert claims(token)["email"] == CI_SA


def test_old_command_rejects_a_missing_key_file_like_the_plugin(
    fake_google: FakeGoogle, old_command: Runner, tmp_path: Path
) -> None:
    result = old_command("--service_account_key", str(tmp_path / "missing.json"))

    assert result.returncode == 2
    assert result.stdout == ""
    assert "does not exist" in result.stderr
    assert fake_google.requests == []


def test_old_command_needs_the_audience(run_sa: Runner) -> None:
    result = run_sa("generate-service-account-id-token")

    assert result.returncode == 2
    assert "--webapp_client_id" in result.stderr


def test_old_command_options_can_come_from_the_environment(
    fake_google: FakeGoogle, run_sa: Runner, aud: str, key_file: Path, no_metadata: None
) -> None:
    env = {"FLYTE_IAP_WEBAPP_CLIENT_ID": aud, "FLYTE_IAP_SERVICE_ACCOUNT_KEY": str(key_file)}
    token = stdout_token(run_sa("generate-service-account-id-token", **env))
    fake_google.clear_requests()

    assert stdout_token(run_sa("generate-service-account-id-token", **env)) == token
    assert claims(token)["email"] == CI_SA
    assert fake_google.requests == []
