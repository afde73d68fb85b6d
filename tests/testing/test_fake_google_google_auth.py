"""FakeGoogle is faithful enough that google-auth itself, unmodified, accepts what it serves."""

from __future__ import annotations

import json
from pathlib import Path

import google.auth.iam
import pytest
from google.auth import exceptions, identity_pool, impersonated_credentials
from google.auth.compute_engine import IDTokenCredentials as ComputeIDTokenCredentials
from google.auth.compute_engine import _metadata
from google.auth.transport.requests import Request
from google.oauth2 import credentials as user_credentials
from google.oauth2 import id_token, service_account

from flyte_iap.testing import FakeGoogle

AUDIENCE = "123-iap.apps.googleusercontent.com"
SA = "ci@flyte-prod.iam.gserviceaccount.com"


def test_minted_id_token_verifies_with_google_auth_against_pem_certs(fake_google: FakeGoogle) -> None:
    token = fake_google.mint_id_token(AUDIENCE)

    claims = id_token.verify_token(token, Request(), audience=AUDIENCE, certs_url=fake_google.certs_url)

    assert claims["iss"] == "https://accounts.google.com"
    assert claims["email"] == fake_google.user_email
    assert claims["sub"] == fake_google.user_sub
    assert claims["email_verified"] is True
    assert claims["exp"] - claims["iat"] == fake_google.token_lifetime


def test_minted_id_token_verifies_with_google_auth_against_jwks(fake_google: FakeGoogle) -> None:
    token = fake_google.mint_id_token(AUDIENCE, email="bob@example.com")

    claims = id_token.verify_token(token, Request(), audience=AUDIENCE, certs_url=fake_google.jwks_url)

    assert claims["email"] == "bob@example.com"


def test_id_token_for_another_audience_is_rejected_by_google_auth(fake_google: FakeGoogle) -> None:
    token = fake_google.mint_id_token("someone-else")

    with pytest.raises(ValueError, match="audience"):
        id_token.verify_token(token, Request(), audience=AUDIENCE, certs_url=fake_google.certs_url)


def test_expired_id_token_is_rejected_by_google_auth(fake_google: FakeGoogle) -> None:
    token = fake_google.mint_id_token(AUDIENCE, expired=True)

    with pytest.raises(ValueError, match="expired"):
        id_token.verify_token(token, Request(), audience=AUDIENCE, certs_url=fake_google.certs_url)


def test_tokens_signed_before_key_rotation_still_verify(fake_google: FakeGoogle) -> None:
    old = fake_google.mint_id_token(AUDIENCE)
    old_kid = fake_google.signing_key_id

    new_kid = fake_google.rotate_keys()
    new = fake_google.mint_id_token(AUDIENCE)

    assert new_kid != old_kid
    for token in (old, new):
        id_token.verify_token(token, Request(), audience=AUDIENCE, certs_url=fake_google.certs_url)


def test_token_of_another_fake_is_rejected(fake_google: FakeGoogle) -> None:
    with FakeGoogle() as other:
        foreign = other.mint_id_token(AUDIENCE)

    with pytest.raises(ValueError, match="key id"):
        id_token.verify_token(foreign, Request(), audience=AUDIENCE, certs_url=fake_google.certs_url)


def test_refresh_token_grant_gives_google_auth_user_credentials_an_id_token(fake_google: FakeGoogle) -> None:
    refresh = fake_google.issue_refresh_token(fake_google.DESKTOP_CLIENT_ID)
    creds = user_credentials.Credentials(
        token=None,
        refresh_token=refresh,
        client_id=fake_google.DESKTOP_CLIENT_ID,
        client_secret=fake_google.DESKTOP_CLIENT_SECRET,
        token_uri=fake_google.token_uri,
    )

    creds.refresh(Request())

    claims = id_token.verify_token(
        creds.id_token, Request(), audience=fake_google.DESKTOP_CLIENT_ID, certs_url=fake_google.certs_url
    )
    assert claims["azp"] == fake_google.DESKTOP_CLIENT_ID
    assert claims["email"] == fake_google.user_email
    assert creds.token and creds.valid
    assert fake_google.access_token_info(creds.token)["principal"] == fake_google.user_email


def test_revoked_refresh_token_makes_google_auth_raise_refresh_error(fake_google: FakeGoogle) -> None:
    refresh = fake_google.issue_refresh_token(fake_google.DESKTOP_CLIENT_ID)
    fake_google.revoked_tokens.add(refresh)
    creds = user_credentials.Credentials(
        token=None,
        refresh_token=refresh,
        client_id=fake_google.DESKTOP_CLIENT_ID,
        client_secret=fake_google.DESKTOP_CLIENT_SECRET,
        token_uri=fake_google.token_uri,
    )

    with pytest.raises(exceptions.RefreshError, match="expired or revoked"):
        creds.refresh(Request())


def test_service_account_key_gets_id_token_for_target_audience(fake_google: FakeGoogle) -> None:
    info = fake_google.add_service_account(SA)
    creds = service_account.IDTokenCredentials.from_service_account_info(info, target_audience=AUDIENCE)

    creds.refresh(Request())

    claims = id_token.verify_token(creds.token, Request(), audience=AUDIENCE, certs_url=fake_google.certs_url)
    assert claims["email"] == SA
    assert claims["sub"] == info["client_id"]
    assert fake_google.requests_to("/token")[-1].form["grant_type"].endswith(":jwt-bearer")


def test_service_account_key_gets_scoped_access_token(fake_google: FakeGoogle) -> None:
    info = fake_google.add_service_account(SA)
    creds = service_account.Credentials.from_service_account_info(
        info, scopes=["https://www.googleapis.com/auth/cloud-platform"]
    )

    creds.refresh(Request())

    assert fake_google.access_token_info(creds.token)["principal"] == SA


def test_unregistered_service_account_key_is_refused(fake_google: FakeGoogle) -> None:
    info = fake_google.add_service_account(SA)
    with FakeGoogle() as other:
        # Same key file, but this fake never created the account.
        foreign = dict(info, token_uri=other.token_uri)
        creds = service_account.IDTokenCredentials.from_service_account_info(
            foreign, target_audience=AUDIENCE
        )
        with pytest.raises(exceptions.RefreshError, match="account not found"):
            creds.refresh(Request())


def test_assertion_signed_with_another_key_is_refused(fake_google: FakeGoogle) -> None:
    info = fake_google.add_service_account(SA)
    other_key = fake_google.add_service_account("other@flyte-prod.iam.gserviceaccount.com")["private_key"]
    forged = dict(info, private_key=other_key)
    creds = service_account.IDTokenCredentials.from_service_account_info(forged, target_audience=AUDIENCE)

    with pytest.raises(exceptions.RefreshError, match="Invalid JWT Signature"):
        creds.refresh(Request())


def test_fetch_id_token_uses_key_file_from_google_application_credentials(
    fake_google: FakeGoogle, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    key_file = tmp_path / "sa.json"
    key_file.write_text(json.dumps(fake_google.add_service_account(SA)))
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(key_file))

    token = id_token.fetch_id_token(Request(), AUDIENCE)

    claims = id_token.verify_token(token, Request(), audience=AUDIENCE, certs_url=fake_google.certs_url)
    assert claims["email"] == SA


def test_metadata_ping_succeeds(metadata_server: FakeGoogle) -> None:
    assert _metadata.ping(Request()) is True
    assert metadata_server.requests_to("/")[0].headers["metadata-flavor"] == "Google"


def test_compute_engine_id_token_credentials_use_metadata_identity_endpoint(
    metadata_server: FakeGoogle,
) -> None:
    creds = ComputeIDTokenCredentials(Request(), AUDIENCE, use_metadata_identity_endpoint=True)

    creds.refresh(Request())

    claims = id_token.verify_token(
        creds.token, Request(), audience=AUDIENCE, certs_url=metadata_server.certs_url
    )
    assert claims["email"] == metadata_server.metadata_service_account
    assert claims["google"]["compute_engine"]["project_id"] == metadata_server.project_id
    identity = metadata_server.requests_to("/computeMetadata/v1/instance/service-accounts/default/identity")
    assert identity[0].query == {"audience": AUDIENCE, "format": "full"}


def test_fetch_id_token_falls_back_to_metadata_server(metadata_server: FakeGoogle) -> None:
    token = id_token.fetch_id_token(Request(), AUDIENCE)

    claims = id_token.verify_token(token, Request(), audience=AUDIENCE, certs_url=metadata_server.certs_url)
    assert claims["email"] == metadata_server.metadata_service_account


def test_metadata_server_email_and_token_via_google_auth(metadata_server: FakeGoogle) -> None:
    sa = metadata_server.metadata_service_account

    assert _metadata.get_service_account_info(Request())["email"] == sa
    token, _expiry = _metadata.get_service_account_token(Request(), service_account=sa)

    assert metadata_server.access_token_info(token)["principal"] == sa
    assert _metadata.get_project_id(Request()) == metadata_server.project_id


def test_impersonated_id_token_needs_explicit_permission(
    fake_google: FakeGoogle, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = service_account.Credentials.from_service_account_info(
        fake_google.add_service_account("deployer@flyte-prod.iam.gserviceaccount.com"),
        scopes=["https://www.googleapis.com/auth/cloud-platform"],
    )
    fake_google.add_service_account(SA)
    monkeypatch.setattr(google.auth.iam, "_IAM_IDTOKEN_ENDPOINT", fake_google.generate_id_token_url("{}"))
    target = impersonated_credentials.Credentials(
        source_credentials=source,
        target_principal=SA,
        target_scopes=["https://www.googleapis.com/auth/cloud-platform"],
        iam_endpoint_override=fake_google.generate_access_token_url(SA),
    )
    creds = impersonated_credentials.IDTokenCredentials(target, target_audience=AUDIENCE, include_email=True)

    with pytest.raises(exceptions.RefreshError, match=r"iam\.serviceAccounts\.getOpenIdToken"):
        creds.refresh(Request())

    fake_google.allow_impersonation("deployer@flyte-prod.iam.gserviceaccount.com", SA)
    creds.refresh(Request())

    claims = id_token.verify_token(creds.token, Request(), audience=AUDIENCE, certs_url=fake_google.certs_url)
    assert claims["email"] == SA
    target.refresh(Request())
    assert fake_google.access_token_info(target.token)["principal"] == SA


def test_workload_identity_federation_via_google_auth_external_account(
    fake_google: FakeGoogle, tmp_path: Path
) -> None:
    audience = "//iam.googleapis.com/projects/42/locations/global/workloadIdentityPools/ci/providers/github"
    fake_google.add_workload_identity_pool(audience)
    principal = fake_google.workload_identity_principal(audience, "repo:acme/flows")
    fake_google.allow_impersonation(principal, SA)
    token_file = tmp_path / "oidc-token"
    token_file.write_text(fake_google.mint_subject_token(audience, subject="repo:acme/flows"))
    creds = identity_pool.Credentials.from_info(
        {
            "type": "external_account",
            "audience": audience,
            "subject_token_type": "urn:ietf:params:oauth:token-type:jwt",
            "token_url": fake_google.sts_token_url,
            "service_account_impersonation_url": fake_google.generate_access_token_url(SA),
            "credential_source": {"file": str(token_file)},
        }
    ).with_scopes(["https://www.googleapis.com/auth/cloud-platform"])

    creds.refresh(Request())

    assert fake_google.access_token_info(creds.token)["principal"] == SA
    sts = fake_google.requests_to("/v1/token")[0]
    assert sts.form["audience"] == audience
    federated = fake_google.requests_to("/v1/projects/-/serviceAccounts/")[0].bearer
    assert fake_google.access_token_info(federated)["principal"] == principal
