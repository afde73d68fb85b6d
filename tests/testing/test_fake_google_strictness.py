"""FakeGoogle is as strict as Google where flyte-iap could otherwise pass by accident: IAM Credentials'
resource names, caller scopes and signJwt, and the refresh grant's ID-token audience."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
import requests
from google.auth import crypt
from google.auth import jwt as google_jwt

from flyte_iap.testing import FakeGoogle

SA = "ci@flyte-prod.iam.gserviceaccount.com"
CLOUD_PLATFORM = "https://www.googleapis.com/auth/cloud-platform"


def _iam(
    google: FakeGoogle, method: str, body: dict[str, Any], token: str, project: str = "-"
) -> requests.Response:
    url = f"{google.base_url}/v1/projects/{project}/serviceAccounts/{SA}:{method}"
    return requests.post(url, json=body, headers={"Authorization": f"Bearer {token}"}, timeout=10)


@pytest.fixture
def caller(fake_google: FakeGoogle) -> str:
    fake_google.allow_impersonation("alice@example.com", SA)
    return fake_google.issue_access_token("alice@example.com")


def test_a_project_id_instead_of_the_dash_wildcard_is_invalid(fake_google: FakeGoogle, caller: str) -> None:
    response = _iam(fake_google, "generateIdToken", {"audience": "a"}, caller, project="flyte-prod")

    assert response.status_code == 400
    assert response.json()["error"]["status"] == "INVALID_ARGUMENT"


@pytest.mark.parametrize("method", ["generateIdToken", "signJwt"])
def test_caller_token_without_cloud_platform_or_iam_scope_is_insufficient(
    fake_google: FakeGoogle, method: str
) -> None:
    fake_google.allow_impersonation("alice@example.com", SA)
    narrow = fake_google.issue_access_token("alice@example.com", scopes=["openid", "email"])

    response = _iam(fake_google, method, {"audience": "a", "payload": "{}"}, narrow)

    error = response.json()["error"]
    assert (response.status_code, error["status"]) == (403, "PERMISSION_DENIED")
    assert error["message"] == "Request had insufficient authentication scopes."
    assert error["details"][0]["reason"] == "ACCESS_TOKEN_SCOPE_INSUFFICIENT"


def test_iam_scope_alone_is_enough(fake_google: FakeGoogle) -> None:
    fake_google.allow_impersonation("alice@example.com", SA)
    token = fake_google.issue_access_token(
        "alice@example.com", scopes=["https://www.googleapis.com/auth/iam"]
    )

    assert _iam(fake_google, "generateIdToken", {"audience": "a"}, token).status_code == 200


def test_sign_jwt_signs_with_a_key_published_for_the_account(fake_google: FakeGoogle, caller: str) -> None:
    now = int(time.time())
    payload = {"iss": SA, "sub": SA, "aud": "https://flyte.example.com/*", "iat": now, "exp": now + 600}

    response = _iam(fake_google, "signJwt", {"payload": json.dumps(payload)}, caller)

    body = response.json()
    certs = requests.get(fake_google.service_account_keys_url(SA), timeout=10).json()
    assert response.status_code == 200 and body["keyId"] in certs
    assert (
        google_jwt.decode(body["signedJwt"], certs=certs, audience="https://flyte.example.com/*") == payload
    )


def test_sign_jwt_adds_an_exp_an_hour_ahead_when_there_is_none(fake_google: FakeGoogle, caller: str) -> None:
    response = _iam(fake_google, "signJwt", {"payload": json.dumps({"sub": SA})}, caller)

    claims = google_jwt.decode(response.json()["signedJwt"], verify=False)
    assert abs(claims["exp"] - (time.time() + 3600)) < 5


@pytest.mark.parametrize(
    "payload",
    [
        lambda now: json.dumps({"exp": now + 12 * 3600 + 600}),
        lambda now: json.dumps({"exp": now - 600}),
        lambda now: json.dumps({"exp": "soon"}),
        lambda now: json.dumps(["not", "an", "object"]),
        lambda now: "not json",
    ],
    ids=["over-12h", "past", "not-a-number", "not-an-object", "not-json"],
)
def test_sign_jwt_refuses_a_payload_google_refuses(
    fake_google: FakeGoogle, caller: str, payload: Any
) -> None:
    response = _iam(fake_google, "signJwt", {"payload": payload(int(time.time()))}, caller)

    assert (response.status_code, response.json()["error"]["status"]) == (400, "INVALID_ARGUMENT")


def test_sign_jwt_needs_the_sign_jwt_permission(fake_google: FakeGoogle) -> None:
    fake_google.add_service_account(SA)
    outsider = fake_google.issue_access_token("bob@example.com")

    response = _iam(fake_google, "signJwt", {"payload": "{}"}, outsider)

    assert response.status_code == 403
    assert "iam.serviceAccounts.signJwt" in response.json()["error"]["message"]


def test_service_account_keys_url_lists_key_file_keys_too(fake_google: FakeGoogle) -> None:
    key = fake_google.add_service_account(SA)
    signer = crypt.RSASigner.from_service_account_info(key)

    certs = requests.get(fake_google.service_account_keys_url(SA), timeout=10).json()

    assert signer.key_id in certs
    assert (
        requests.get(fake_google.service_account_keys_url("nobody@x.iam.gserviceaccount.com")).status_code
        == 404
    )


# ---- refresh grant: ID tokens for another client ------------------------------------------------------


def _refresh(google: FakeGoogle, audience: str) -> requests.Response:
    refresh = google.issue_refresh_token(google.DESKTOP_CLIENT_ID)
    form = {
        "grant_type": "refresh_token",
        "refresh_token": refresh,
        "client_id": google.DESKTOP_CLIENT_ID,
        "client_secret": google.DESKTOP_CLIENT_SECRET,
        "audience": audience,
    }
    return requests.post(google.token_uri, data=form, timeout=10)


def test_refresh_grant_mints_an_id_token_for_a_client_of_the_same_project(fake_google: FakeGoogle) -> None:
    response = _refresh(fake_google, fake_google.IAP_CLIENT_ID)

    claims = google_jwt.decode(response.json()["id_token"], verify=False)
    assert (claims["aud"], claims["azp"]) == (fake_google.IAP_CLIENT_ID, fake_google.DESKTOP_CLIENT_ID)


@pytest.mark.parametrize(
    "audience",
    [
        "999999999999-otherproject.apps.googleusercontent.com",
        "123456789012-unregistered.apps.googleusercontent.com",
    ],
    ids=["other-project", "unregistered"],
)
def test_refresh_grant_refuses_an_audience_outside_the_clients_project(
    fake_google: FakeGoogle, audience: str
) -> None:
    fake_google.add_oauth_client("999999999999-otherproject.apps.googleusercontent.com", "s")

    response = _refresh(fake_google, audience)

    assert response.status_code == 400
    assert response.json()["error"] == "invalid_audience"
