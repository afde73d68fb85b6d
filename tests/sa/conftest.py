"""Fixtures for service-account tokens: credentials files of every type, and the CLI run as a real process.

The autouse ``isolated_env`` fixture (tests/conftest.py) gives every test an empty token cache, an empty
gcloud config directory and no metadata server; ``fake_google`` points everything at a FakeGoogle,
whose metadata server then answers.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import run_no_terminal
from helpers.sa import CI_SA, JWT_SUBJECT_TOKEN, POOL_PROVIDER, Runner, write_json

from flyte_iap.testing import FakeGoogle


@pytest.fixture
def aud(fake_google: FakeGoogle) -> str:
    """The IAP app's OAuth client ID: the audience of every token here."""
    return fake_google.IAP_CLIENT_ID


@pytest.fixture
def run_sa() -> Runner:
    """Run ``python -m flyte_iap ARGS`` as a process, with the test's environment plus ``env`` overrides.

    A value of None in ``env`` removes that variable.
    """

    def run(*args: str, timeout: float = 60, **env: str | None) -> subprocess.CompletedProcess[str]:
        return run_no_terminal([sys.executable, "-m", "flyte_iap"], args, env, timeout)

    return run


@pytest.fixture
def no_metadata(fake_google: FakeGoogle, monkeypatch: pytest.MonkeyPatch) -> None:
    """FakeGoogle keeps serving OAuth, STS and iamcredentials, but there is no metadata server."""
    monkeypatch.setenv("GCE_METADATA_HOST", "127.0.0.1:9")
    monkeypatch.setenv("GCE_METADATA_IP", "127.0.0.1:9")


@pytest.fixture
def key_file(fake_google: FakeGoogle, tmp_path: Path) -> Path:
    """A key file for :data:`CI_SA`, as `gcloud iam service-accounts keys create` writes it."""
    return write_json(tmp_path / "keys" / "flyte-ci.json", fake_google.add_service_account(CI_SA))


@pytest.fixture
def adc_path() -> Path:
    """Where gcloud keeps application default credentials in this test (it does not exist yet)."""
    return Path(os.environ["CLOUDSDK_CONFIG"]) / "application_default_credentials.json"


@pytest.fixture
def user_adc(fake_google: FakeGoogle, adc_path: Path) -> Path:
    """`gcloud auth application-default login` as the fake's user: an authorized_user file."""
    refresh_token = fake_google.issue_refresh_token(
        fake_google.DESKTOP_CLIENT_ID,
        scopes="openid email https://www.googleapis.com/auth/cloud-platform",
    )
    return write_json(
        adc_path,
        {
            "type": "authorized_user",
            "client_id": fake_google.DESKTOP_CLIENT_ID,
            "client_secret": fake_google.DESKTOP_CLIENT_SECRET,
            "refresh_token": refresh_token,
            "account": "",
            "universe_domain": "googleapis.com",
        },
    )


@pytest.fixture
def wif_file(fake_google: FakeGoogle, tmp_path: Path) -> Path:
    """A Workload Identity Federation credential configuration, as google-github-actions/auth writes it.

    The subject token (the CI provider's OIDC token) is read from a file; the federated identity may
    impersonate :data:`CI_SA`, which the file names in ``service_account_impersonation_url``.
    """
    pool = fake_google.add_workload_identity_pool(POOL_PROVIDER)
    fake_google.allow_impersonation(pool["principal_set"], CI_SA)
    subject_token = tmp_path / "oidc" / "token.jwt"
    subject_token.parent.mkdir()
    subject_token.write_text(fake_google.mint_subject_token(POOL_PROVIDER))
    return write_json(
        tmp_path / "gha-creds.json",
        {
            "type": "external_account",
            "audience": POOL_PROVIDER,
            "subject_token_type": JWT_SUBJECT_TOKEN,
            "token_url": fake_google.sts_token_url,
            "credential_source": {"file": str(subject_token)},
            "service_account_impersonation_url": fake_google.generate_access_token_url(CI_SA),
        },
    )


@pytest.fixture
def sa_token(run_sa: Runner, aud: str) -> Runner:
    """Run ``flyte-iap sa-token --audience AUD ARGS`` as a process; like ``run_sa`` otherwise."""

    def run(*args: str, timeout: float = 60, **env: str | None) -> subprocess.CompletedProcess[str]:
        return run_sa("sa-token", "--audience", aud, *args, timeout=timeout, **env)

    return run
