"""`flyte-iap sa-token` gets a service account's ID token from every kind of credentials, in order."""

from __future__ import annotations

import json
from pathlib import Path

import google.auth.transport.requests
import pytest
from google.oauth2 import id_token as google_id_token
from helpers.sa import (
    CI_SA,
    DEPLOYER_SA,
    JWT_SUBJECT_TOKEN,
    POOL_PROVIDER,
    Runner,
    claims,
    stdout_token,
    write_json,
)

from flyte_iap.testing import FakeGoogle


def test_metadata_server_token_is_printed_and_verifies_against_googles_certs(
    fake_google: FakeGoogle, sa_token: Runner, aud: str
) -> None:
    token = stdout_token(sa_token())

    verified = google_id_token.verify_token(
        token, google.auth.transport.requests.Request(), audience=aud, certs_url=fake_google.certs_url
    )
    assert verified["email"] == fake_google.metadata_service_account
    identity = fake_google.requests_to("/computeMetadata/v1/instance/service-accounts/default/identity")
    assert len(identity) == 1
    assert identity[0].query == {"audience": aud, "format": "full"}
    assert fake_google.requests_to("/token") == []


def test_key_file_is_exchanged_with_a_jwt_bearer_assertion_for_the_audience(
    fake_google: FakeGoogle, sa_token: Runner, aud: str, key_file: Path, no_metadata: None
) -> None:
    token = stdout_token(sa_token("--key-file", str(key_file)))

    assert claims(token)["email"] == CI_SA
    (grant,) = fake_google.requests_to("/token")
    assert grant.form["grant_type"] == "urn:ietf:params:oauth:grant-type:jwt-bearer"
    assert claims(grant.form["assertion"])["target_audience"] == aud
    assert fake_google.requests_to("/computeMetadata") == []


def test_key_file_wins_over_application_default_credentials_and_metadata(
    fake_google: FakeGoogle, sa_token: Runner, key_file: Path, user_adc: Path, tmp_path: Path
) -> None:
    other = write_json(tmp_path / "other.json", fake_google.add_service_account(DEPLOYER_SA))

    token = stdout_token(sa_token("--key-file", str(key_file), GOOGLE_APPLICATION_CREDENTIALS=str(other)))

    assert claims(token)["email"] == CI_SA
    assert fake_google.requests_to("/computeMetadata") == []


def test_google_application_credentials_key_is_used_before_gcloud_adc(
    fake_google: FakeGoogle, sa_token: Runner, key_file: Path, user_adc: Path
) -> None:
    token = stdout_token(sa_token(GOOGLE_APPLICATION_CREDENTIALS=str(key_file)))

    assert claims(token)["email"] == CI_SA
    assert fake_google.requests_to("/computeMetadata") == []


def test_gcloud_adc_user_login_impersonates_the_service_account(
    fake_google: FakeGoogle, sa_token: Runner, aud: str, user_adc: Path, no_metadata: None
) -> None:
    fake_google.allow_impersonation(fake_google.user_email, DEPLOYER_SA)

    token = stdout_token(sa_token("--impersonate-service-account", DEPLOYER_SA))

    assert claims(token)["email"] == DEPLOYER_SA
    (refresh,) = fake_google.requests_to("/token")
    assert refresh.form["grant_type"] == "refresh_token"
    (call,) = fake_google.requests_to("/v1/projects/-/serviceAccounts/")
    assert call.path.endswith(f"/{DEPLOYER_SA}:generateIdToken")
    assert call.json == {"audience": aud, "includeEmail": True}
    assert fake_google.access_token_info(call.bearer or "")["principal"] == fake_google.user_email


def test_external_account_file_exchanges_the_subject_token_at_sts_then_calls_generate_idstdout_token(
    fake_google: FakeGoogle, sa_token: Runner, wif_file: Path, no_metadata: None
) -> None:
    token = stdout_token(sa_token(GOOGLE_APPLICATION_CREDENTIALS=str(wif_file)))

    assert claims(token)["email"] == CI_SA
    (exchange,) = fake_google.requests_to("/v1/token")
    assert exchange.form["grant_type"] == "urn:ietf:params:oauth:grant-type:token-exchange"
    assert exchange.form["audience"] == POOL_PROVIDER
    assert exchange.form["subject_token_type"] == JWT_SUBJECT_TOKEN
    assert exchange.form["scope"] == "https://www.googleapis.com/auth/cloud-platform"
    # The federated token itself asks for the ID token, as google-github-actions/auth does: no
    # generateAccessToken round trip, and no role for the service account on itself.
    (call,) = fake_google.requests_to("/v1/projects/-/serviceAccounts/")
    assert call.path.endswith(f"/{CI_SA}:generateIdToken")
    assert fake_google.access_token_info(call.bearer or "")["principal"].startswith("principal://")


def test_external_account_with_impersonation_chains_through_the_files_service_account(
    fake_google: FakeGoogle, sa_token: Runner, wif_file: Path, no_metadata: None
) -> None:
    fake_google.allow_impersonation(CI_SA, DEPLOYER_SA)

    token = stdout_token(
        sa_token("--impersonate-service-account", DEPLOYER_SA, GOOGLE_APPLICATION_CREDENTIALS=str(wif_file))
    )

    assert claims(token)["email"] == DEPLOYER_SA
    (call,) = fake_google.requests_to("/v1/projects/-/serviceAccounts/")
    assert call.path.endswith(f"/{DEPLOYER_SA}:generateIdToken")
    assert call.json["delegates"] == [f"projects/-/serviceAccounts/{CI_SA}"]


def test_impersonated_service_account_adc_file_mints_for_its_target(
    fake_google: FakeGoogle, sa_token: Runner, user_adc: Path, adc_path: Path, no_metadata: None
) -> None:
    # `gcloud auth application-default login --impersonate-service-account DEPLOYER_SA`
    user = json.loads(user_adc.read_text())
    write_json(
        adc_path,
        {
            "type": "impersonated_service_account",
            "service_account_impersonation_url": fake_google.generate_access_token_url(DEPLOYER_SA),
            "delegates": [],
            "source_credentials": user,
        },
    )
    fake_google.allow_impersonation(fake_google.user_email, DEPLOYER_SA)

    token = stdout_token(sa_token())

    assert claims(token)["email"] == DEPLOYER_SA
    (call,) = fake_google.requests_to("/v1/projects/-/serviceAccounts/")
    assert call.path.endswith(f"/{DEPLOYER_SA}:generateIdToken")
    assert "generateAccessToken" not in call.path


def test_metadata_server_credentials_can_impersonate_another_service_account(
    fake_google: FakeGoogle, sa_token: Runner
) -> None:
    fake_google.allow_impersonation(fake_google.metadata_service_account, DEPLOYER_SA)

    token = stdout_token(sa_token("--impersonate-service-account", DEPLOYER_SA))

    assert claims(token)["email"] == DEPLOYER_SA
    (scoped,) = fake_google.requests_to("/computeMetadata/v1/instance/service-accounts/default/token")
    assert scoped.query["scopes"] == "https://www.googleapis.com/auth/cloud-platform"
    assert len(fake_google.requests_to("/v1/projects/-/serviceAccounts/")) == 1


def test_key_file_can_impersonate_with_a_cloud_platform_accessstdout_token(
    fake_google: FakeGoogle, sa_token: Runner, key_file: Path, no_metadata: None
) -> None:
    fake_google.allow_impersonation(CI_SA, DEPLOYER_SA)

    token = stdout_token(sa_token("--key-file", str(key_file), "--impersonate-service-account", DEPLOYER_SA))

    assert claims(token)["email"] == DEPLOYER_SA
    (grant,) = fake_google.requests_to("/token")
    assert claims(grant.form["assertion"])["scope"] == "https://www.googleapis.com/auth/cloud-platform"


@pytest.mark.parametrize("variable", ["FLYTE_IAP_AUDIENCE", "FLYTE_IAP_KEY_FILE"])
def test_options_can_come_from_flyte_iap_environment_variables(
    fake_google: FakeGoogle, run_sa: Runner, aud: str, key_file: Path, no_metadata: None, variable: str
) -> None:
    args = ["sa-token"]
    if variable == "FLYTE_IAP_AUDIENCE":
        args += ["--key-file", str(key_file)]
        env = {"FLYTE_IAP_AUDIENCE": aud}
    else:
        args += ["--audience", aud]
        env = {"FLYTE_IAP_KEY_FILE": str(key_file)}

    token = stdout_token(run_sa(*args, **env))

    assert claims(token)["aud"] == aud
    assert claims(token)["email"] == CI_SA
