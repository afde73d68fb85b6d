"""FakeGoogle's APIs at the HTTP level: shapes and status codes of answers and errors, faults, recording."""

from __future__ import annotations

import base64
import json
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

import pytest

from flyte_iap import endpoints
from flyte_iap.testing import FakeGoogle
from flyte_iap.testing.fake_google import MALFORMED_BODY

SA = "ci@flyte-prod.iam.gserviceaccount.com"
POOL = "//iam.googleapis.com/projects/42/locations/global/workloadIdentityPools/ci/providers/github"
TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
JWT_TYPE = "urn:ietf:params:oauth:token-type:jwt"


def _call(
    url: str,
    *,
    form: dict[str, str] | None = None,
    body: Any = None,
    token: str | None = None,
    headers: dict[str, str] | None = None,
    method: str | None = None,
) -> tuple[int, dict[str, str], bytes]:
    data = None
    all_headers = dict(headers or {})
    if form is not None:
        data = urllib.parse.urlencode(form).encode()
    elif body is not None:
        data = json.dumps(body).encode()
        all_headers["Content-Type"] = "application/json"
    if token:
        all_headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(url, data=data, headers=all_headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers.items()), response.read()
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, dict(exc.headers.items()), exc.read()


def _json(url: str, **kwargs: Any) -> tuple[int, Any]:
    status, _, data = _call(url, **kwargs)
    return status, json.loads(data)


def _claims(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def _refresh_form(google: FakeGoogle, refresh_token: str, **extra: str) -> dict[str, str]:
    return {
        "grant_type": "refresh_token",
        "refresh_token": refresh_token,
        "client_id": google.DESKTOP_CLIENT_ID,
        "client_secret": google.DESKTOP_CLIENT_SECRET,
        **extra,
    }


# ---- /token -----------------------------------------------------------------------------------------


def test_refresh_without_audience_gives_id_token_for_the_client(fake_google: FakeGoogle) -> None:
    refresh = fake_google.issue_refresh_token(fake_google.DESKTOP_CLIENT_ID, email="carol@example.com")

    status, body = _json(fake_google.token_uri, form=_refresh_form(fake_google, refresh))

    assert status == 200
    claims = _claims(body["id_token"])
    assert claims["aud"] == claims["azp"] == fake_google.DESKTOP_CLIENT_ID
    assert claims["email"] == "carol@example.com"


def test_refresh_with_audience_gives_id_token_for_that_audience(fake_google: FakeGoogle) -> None:
    refresh = fake_google.issue_refresh_token(fake_google.DESKTOP_CLIENT_ID)

    status, body = _json(
        fake_google.token_uri, form=_refresh_form(fake_google, refresh, audience=fake_google.IAP_CLIENT_ID)
    )

    assert status == 200
    assert _claims(body["id_token"])["aud"] == fake_google.IAP_CLIENT_ID
    assert _claims(body["id_token"])["azp"] == fake_google.DESKTOP_CLIENT_ID


def test_refresh_token_without_openid_grant_gets_no_id_token(fake_google: FakeGoogle) -> None:
    refresh = fake_google.issue_refresh_token(
        fake_google.DESKTOP_CLIENT_ID, scopes="https://www.googleapis.com/auth/cloud-platform"
    )

    status, body = _json(fake_google.token_uri, form=_refresh_form(fake_google, refresh))

    assert status == 200
    assert "id_token" not in body


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"refresh_token": "1//0unknown"}, (400, "invalid_grant", "Bad Request")),
        ({"client_secret": "wrong"}, (401, "invalid_client", "Unauthorized")),
        (
            {"client_id": "nobody.apps.googleusercontent.com"},
            (401, "invalid_client", "The OAuth client was not found."),
        ),
        ({"client_secret": ""}, (400, "invalid_request", "client_secret is missing.")),
        ({"grant_type": "password"}, (400, "unsupported_grant_type", "Invalid grant_type: password")),
    ],
)
def test_token_endpoint_errors_have_googles_shape_and_status(
    fake_google: FakeGoogle, change: dict[str, str], expected: tuple[int, str, str]
) -> None:
    refresh = fake_google.issue_refresh_token(fake_google.DESKTOP_CLIENT_ID)
    form = _refresh_form(fake_google, refresh) | change

    status, body = _json(fake_google.token_uri, form=form)

    assert (status, body) == (expected[0], {"error": expected[1], "error_description": expected[2]})


def test_refresh_token_of_another_client_is_refused(fake_google: FakeGoogle) -> None:
    fake_google.add_oauth_client("other.apps.googleusercontent.com", "other-secret")
    refresh = fake_google.issue_refresh_token("other.apps.googleusercontent.com")

    status, body = _json(fake_google.token_uri, form=_refresh_form(fake_google, refresh))

    assert (status, body["error"]) == (401, "unauthorized_client")


def test_client_credentials_in_basic_auth_header_are_accepted(fake_google: FakeGoogle) -> None:
    refresh = fake_google.issue_refresh_token(fake_google.DESKTOP_CLIENT_ID)
    basic = base64.b64encode(f"{fake_google.DESKTOP_CLIENT_ID}:{fake_google.DESKTOP_CLIENT_SECRET}".encode())

    status, _ = _json(
        fake_google.token_uri,
        form={"grant_type": "refresh_token", "refresh_token": refresh},
        headers={"Authorization": "Basic " + basic.decode()},
    )

    assert status == 200


def test_token_endpoint_also_takes_a_json_body(fake_google: FakeGoogle) -> None:
    refresh = fake_google.issue_refresh_token(fake_google.DESKTOP_CLIENT_ID)

    status, body = _json(fake_google.token_uri, body=_refresh_form(fake_google, refresh))

    assert status == 200
    assert body["id_token"]


def test_issue_refresh_token_needs_a_registered_client(fake_google: FakeGoogle) -> None:
    with pytest.raises(KeyError, match="add_oauth_client"):
        fake_google.issue_refresh_token("nobody.apps.googleusercontent.com")


def test_jwt_bearer_with_garbage_assertion_is_invalid_grant(fake_google: FakeGoogle) -> None:
    status, body = _json(
        fake_google.token_uri,
        form={"grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer", "assertion": "not-a-jwt"},
    )

    assert (status, body["error"]) == (400, "invalid_grant")


# ---- /revoke ----------------------------------------------------------------------------------------


def test_revoked_refresh_token_stops_working(fake_google: FakeGoogle) -> None:
    refresh = fake_google.issue_refresh_token(fake_google.DESKTOP_CLIENT_ID)
    status, _, body = _call(fake_google.revoke_uri, form={"token": refresh})
    assert (status, body) == (200, b"")

    status, answer = _json(fake_google.token_uri, form=_refresh_form(fake_google, refresh))

    assert refresh in fake_google.revoked_tokens
    assert (status, answer) == (
        400,
        {"error": "invalid_grant", "error_description": "Token has been expired or revoked."},
    )


def test_revoking_an_access_token_revokes_its_grant(fake_google: FakeGoogle) -> None:
    refresh = fake_google.issue_refresh_token(fake_google.DESKTOP_CLIENT_ID)
    _, body = _json(fake_google.token_uri, form=_refresh_form(fake_google, refresh))

    assert _call(fake_google.revoke_uri, form={"token": body["access_token"]})[0] == 200

    assert {refresh, body["access_token"]} <= fake_google.revoked_tokens


def test_revoking_an_unknown_token_is_invalid_token(fake_google: FakeGoogle) -> None:
    status, body = _json(fake_google.revoke_uri, form={"token": "ya29.unknown"})

    assert (status, body["error"]) == (400, "invalid_token")


def test_revoking_twice_is_invalid_token(fake_google: FakeGoogle) -> None:
    refresh = fake_google.issue_refresh_token(fake_google.DESKTOP_CLIENT_ID)
    assert _call(fake_google.revoke_uri, form={"token": refresh})[0] == 200

    status, body = _json(fake_google.revoke_uri, form={"token": refresh})

    assert (status, body["error"]) == (400, "invalid_token")


# ---- metadata server --------------------------------------------------------------------------------


def _metadata(google: FakeGoogle, path: str, flavor: bool = True) -> tuple[int, dict[str, str], bytes]:
    headers = {"Metadata-Flavor": "Google"} if flavor else {}
    return _call(f"http://{google.env['GCE_METADATA_HOST']}/computeMetadata/v1/{path}", headers=headers)


@pytest.mark.parametrize("path", ["", "project/project-id", "instance/service-accounts/default/email"])
def test_metadata_requires_metadata_flavor_header(fake_google: FakeGoogle, path: str) -> None:
    status, headers, body = _metadata(fake_google, path, flavor=False)

    assert status == 403
    assert b"Missing Metadata-Flavor:Google header" in body
    assert headers["Metadata-Flavor"] == "Google"


def test_metadata_ping_without_header_is_forbidden(fake_google: FakeGoogle) -> None:
    status, _, _ = _call(fake_google.base_url + "/")

    assert status == 403


def test_metadata_service_account_addressed_by_email(fake_google: FakeGoogle) -> None:
    email = fake_google.metadata_service_account

    status, headers, body = _metadata(fake_google, f"instance/service-accounts/{email}/?recursive=true")

    assert status == 200
    assert headers["Metadata-Flavor"] == "Google"
    assert json.loads(body) == {"aliases": ["default"], "email": email, "scopes": fake_google.metadata_scopes}
    assert _metadata(fake_google, f"instance/service-accounts/{email}/email")[2].decode() == email


def test_metadata_unknown_service_account_is_not_found(fake_google: FakeGoogle) -> None:
    status, _, _ = _metadata(fake_google, "instance/service-accounts/other@p.iam.gserviceaccount.com/email")

    assert status == 404


def test_metadata_identity_without_format_full_has_no_email(fake_google: FakeGoogle) -> None:
    status, _, token = _metadata(fake_google, "instance/service-accounts/default/identity?audience=aud")

    claims = _claims(token.decode())
    assert status == 200
    assert claims["aud"] == "aud"
    assert "email" not in claims


def test_metadata_identity_needs_audience(fake_google: FakeGoogle) -> None:
    status, _, body = _metadata(fake_google, "instance/service-accounts/default/identity")

    assert status == 400
    assert b"audience" in body


def test_metadata_token_is_an_access_token_of_the_metadata_account(fake_google: FakeGoogle) -> None:
    status, _, body = _metadata(fake_google, "instance/service-accounts/default/token")

    answer = json.loads(body)
    assert status == 200
    assert answer["token_type"] == "Bearer"
    assert answer["expires_in"] == fake_google.token_lifetime
    assert (
        fake_google.access_token_info(answer["access_token"])["principal"]
        == fake_google.metadata_service_account
    )


def test_metadata_project_id(fake_google: FakeGoogle) -> None:
    assert _metadata(fake_google, "project/project-id")[2] == b"fake-project"


# ---- iamcredentials ---------------------------------------------------------------------------------


def _generate_id_token(
    google: FakeGoogle, token: str | None, target: str = SA, **body: Any
) -> tuple[int, Any]:
    payload = {"audience": "aud", "includeEmail": True, "delegates": []} | body
    return _json(_generate_id_token_url(google, target), body=payload, token=token)


def _generate_id_token_url(google: FakeGoogle, target: str) -> str:
    # flyte-iap builds this URL with endpoints.generate_id_token_url and google.env applied.
    assert endpoints.iamcredentials_uri() == google.base_url
    return endpoints.generate_id_token_url(target)


def test_generate_id_token_without_permission_is_403_in_googles_shape(fake_google: FakeGoogle) -> None:
    fake_google.add_service_account(SA)
    caller = fake_google.issue_access_token("alice@example.com")

    status, body = _generate_id_token(fake_google, caller)

    assert status == 403
    assert body["error"]["code"] == 403
    assert body["error"]["status"] == "PERMISSION_DENIED"
    assert body["error"]["message"] == (
        "Permission 'iam.serviceAccounts.getOpenIdToken' denied on resource (or it may not exist)."
    )


def test_generate_id_token_on_itself_still_needs_permission(fake_google: FakeGoogle) -> None:
    fake_google.add_service_account(SA)

    status, _ = _generate_id_token(fake_google, fake_google.issue_access_token(SA))

    assert status == 403


def test_generate_id_token_with_permission(fake_google: FakeGoogle) -> None:
    fake_google.allow_impersonation("alice@example.com", SA)
    caller = fake_google.issue_access_token("alice@example.com")

    status, body = _generate_id_token(fake_google, caller, audience="my-iap-client")

    claims = _claims(body["token"])
    assert status == 200
    assert claims["iss"] == "https://accounts.google.com"
    assert claims["aud"] == "my-iap-client"
    assert claims["email"] == SA and claims["email_verified"] is True
    assert claims["sub"] == claims["azp"]


def test_generate_id_token_without_include_email_has_no_email(fake_google: FakeGoogle) -> None:
    fake_google.allow_impersonation("alice@example.com", SA)

    status, body = _generate_id_token(
        fake_google, fake_google.issue_access_token("alice@example.com"), includeEmail=False
    )

    assert status == 200
    assert "email" not in _claims(body["token"])


def test_generate_id_token_through_delegates_needs_every_link(fake_google: FakeGoogle) -> None:
    middle = "middle@flyte-prod.iam.gserviceaccount.com"
    fake_google.allow_impersonation("alice@example.com", middle)
    caller = fake_google.issue_access_token("alice@example.com")
    delegates = [f"projects/-/serviceAccounts/{middle}"]

    fake_google.add_service_account(SA)
    assert _generate_id_token(fake_google, caller, delegates=delegates)[0] == 403
    fake_google.allow_impersonation(middle, SA)
    assert _generate_id_token(fake_google, caller, delegates=delegates)[0] == 200


def test_generate_id_token_for_unknown_service_account_is_404(fake_google: FakeGoogle) -> None:
    status, body = _generate_id_token(fake_google, fake_google.issue_access_token("alice@example.com"))

    assert (status, body["error"]["status"]) == (404, "NOT_FOUND")


@pytest.mark.parametrize("token", [None, "ya29.not-issued-here"])
def test_generate_id_token_without_valid_bearer_is_401(fake_google: FakeGoogle, token: str | None) -> None:
    fake_google.allow_impersonation("alice@example.com", SA)

    status, body = _generate_id_token(fake_google, token)

    assert (status, body["error"]["status"]) == (401, "UNAUTHENTICATED")


def test_generate_id_token_with_expired_access_token_is_401(fake_google: FakeGoogle) -> None:
    fake_google.allow_impersonation("alice@example.com", SA)
    fake_google.token_lifetime = 0
    caller = fake_google.issue_access_token("alice@example.com")

    assert _generate_id_token(fake_google, caller)[0] == 401


def test_generate_access_token(fake_google: FakeGoogle) -> None:
    fake_google.allow_impersonation("alice@example.com", SA)
    caller = fake_google.issue_access_token("alice@example.com")

    status, body = _json(
        fake_google.generate_access_token_url(SA),
        body={"scope": ["https://www.googleapis.com/auth/cloud-platform"], "lifetime": "600s"},
        token=caller,
    )

    assert status == 200
    assert fake_google.access_token_info(body["accessToken"])["principal"] == SA
    expire = time.mktime(time.strptime(body["expireTime"], "%Y-%m-%dT%H:%M:%SZ")) - time.timezone
    assert 590 <= expire - time.time() <= 610


# ---- Secret Manager ---------------------------------------------------------------------------------


def test_secret_access_returns_payload_and_crc32c(fake_google: FakeGoogle) -> None:
    fake_google.set_secret("projects/fake-project/secrets/iap-client", "old")
    fake_google.set_secret("projects/fake-project/secrets/iap-client", "hello world")
    token = fake_google.issue_access_token(SA)

    status, latest = _json(
        endpoints.secret_version_access_url("projects/fake-project/secrets/iap-client/versions/latest"),
        token=token,
    )
    _, first = _json(
        endpoints.secret_version_access_url("projects/fake-project/secrets/iap-client/versions/1"),
        token=token,
    )

    assert status == 200
    assert latest["name"] == "projects/123456789012/secrets/iap-client/versions/2"
    assert base64.b64decode(latest["payload"]["data"]) == b"hello world"
    assert latest["payload"]["dataCrc32c"] == "3381945770"  # CRC-32C of b"hello world"
    assert base64.b64decode(first["payload"]["data"]) == b"old"


def test_secret_access_needs_bearer_token(fake_google: FakeGoogle) -> None:
    fake_google.set_secret("projects/fake-project/secrets/s", "v")

    status, body = _json(
        endpoints.secret_version_access_url("projects/fake-project/secrets/s/versions/latest")
    )

    assert (status, body["error"]["status"]) == (401, "UNAUTHENTICATED")


@pytest.mark.parametrize(
    "resource",
    ["projects/fake-project/secrets/missing/versions/latest", "projects/fake-project/secrets/s/versions/7"],
)
def test_unknown_secret_or_version_is_404(fake_google: FakeGoogle, resource: str) -> None:
    fake_google.set_secret("projects/fake-project/secrets/s", "v")

    status, body = _json(
        endpoints.secret_version_access_url(resource), token=fake_google.issue_access_token(SA)
    )

    assert (status, body["error"]["status"]) == (404, "NOT_FOUND")


def test_secret_with_accessors_denies_others(fake_google: FakeGoogle) -> None:
    fake_google.set_secret("projects/fake-project/secrets/s", "v", accessors=[SA])
    url = endpoints.secret_version_access_url("projects/fake-project/secrets/s/versions/latest")

    denied, body = _json(url, token=fake_google.issue_access_token("alice@example.com"))
    allowed, _ = _json(url, token=fake_google.issue_access_token(SA))

    assert (denied, body["error"]["status"], allowed) == (403, "PERMISSION_DENIED", 200)


# ---- STS --------------------------------------------------------------------------------------------


def _exchange(google: FakeGoogle, subject_token: str, audience: str = POOL) -> tuple[int, Any]:
    form = {
        "grant_type": TOKEN_EXCHANGE,
        "audience": audience,
        "scope": "https://www.googleapis.com/auth/cloud-platform",
        "requested_token_type": "urn:ietf:params:oauth:token-type:access_token",
        "subject_token": subject_token,
        "subject_token_type": JWT_TYPE,
    }
    return _json(endpoints.sts_token_url(), form=form)


def test_sts_exchanges_subject_token_for_federated_access_token(fake_google: FakeGoogle) -> None:
    fake_google.add_workload_identity_pool(POOL)

    status, body = _exchange(fake_google, fake_google.mint_subject_token(POOL, subject="repo:acme/x"))

    assert status == 200
    assert body["token_type"] == "Bearer"
    assert body["issued_token_type"] == "urn:ietf:params:oauth:token-type:access_token"
    assert body["expires_in"] == fake_google.token_lifetime
    principal = fake_google.access_token_info(body["access_token"])["principal"]
    assert principal == (
        "principal://iam.googleapis.com/projects/42/locations/global/workloadIdentityPools/ci/subject/repo:acme/x"
    )


def test_federated_principal_set_may_impersonate(fake_google: FakeGoogle) -> None:
    pool = fake_google.add_workload_identity_pool(POOL)
    fake_google.allow_impersonation(pool["principal_set"], SA)
    _, body = _exchange(fake_google, fake_google.mint_subject_token(POOL))

    status, _ = _generate_id_token(fake_google, body["access_token"])

    assert status == 200


@pytest.mark.parametrize(
    ("subject_token", "error"),
    [
        (lambda g: g.mint_subject_token(POOL, expired=True), "invalid_grant"),
        (lambda g: g.mint_subject_token("https://someone-else"), "invalid_grant"),
        (lambda g: g.mint_subject_token(POOL, iss="https://evil.example"), "invalid_grant"),
        (lambda g: g.mint_id_token("https:" + POOL), "invalid_grant"),  # signed by Google, not the IdP
        (lambda g: "garbage", "invalid_grant"),
    ],
)
def test_sts_rejects_bad_subject_tokens(fake_google: FakeGoogle, subject_token: Any, error: str) -> None:
    fake_google.add_workload_identity_pool(POOL)
    fake_google.mint_subject_token(POOL)  # the IdP exists

    status, body = _exchange(fake_google, subject_token(fake_google))

    assert (status, body["error"]) == (400, error)
    assert body["error_description"]


def test_sts_rejects_unknown_pool(fake_google: FakeGoogle) -> None:
    status, body = _exchange(fake_google, fake_google.mint_subject_token(POOL))

    assert (status, body["error"]) == (400, "invalid_target")


def test_add_workload_identity_pool_rejects_a_non_provider_audience(fake_google: FakeGoogle) -> None:
    with pytest.raises(ValueError, match="workloadIdentityPools"):
        fake_google.add_workload_identity_pool("my-pool")


# ---- faults and recording ---------------------------------------------------------------------------


def test_fail_next_answers_status_then_recovers(fake_google: FakeGoogle) -> None:
    refresh = fake_google.issue_refresh_token(fake_google.DESKTOP_CLIENT_ID)
    fake_google.fail_next(2, status=503, path="/token")

    first = _json(fake_google.token_uri, form=_refresh_form(fake_google, refresh))
    certs = _call(fake_google.certs_url)[0]
    second = _json(fake_google.token_uri, form=_refresh_form(fake_google, refresh))[0]
    third = _json(fake_google.token_uri, form=_refresh_form(fake_google, refresh))[0]

    assert first == (
        503,
        {"error": {"code": 503, "message": "The service is currently unavailable.", "status": "UNAVAILABLE"}},
    )
    assert (certs, second, third) == (200, 503, 200)
    assert [r.fault for r in fake_google.requests_to("/token")] == ["fail", "fail", None]


def test_delay_next_holds_the_request(fake_google: FakeGoogle) -> None:
    fake_google.delay_next(0.3, path="/oauth2/v1/certs")

    started = time.monotonic()
    status = _call(fake_google.certs_url)[0]
    held = time.monotonic() - started
    started = time.monotonic()
    _call(fake_google.certs_url)
    second = time.monotonic() - started

    assert status == 200
    assert held >= 0.3 > second
    assert fake_google.requests[0].fault == "delay"


def test_malformed_next_answers_200_with_unusable_body(fake_google: FakeGoogle) -> None:
    fake_google.malformed_next(path="/token")
    refresh = fake_google.issue_refresh_token(fake_google.DESKTOP_CLIENT_ID)

    status, headers, body = _call(fake_google.token_uri, form=_refresh_form(fake_google, refresh))

    assert (status, body) == (200, MALFORMED_BODY)
    assert headers["Content-Type"].startswith("application/json")
    with pytest.raises(ValueError):
        json.loads(body)
    assert _call(fake_google.token_uri, form=_refresh_form(fake_google, refresh))[0] == 200


def test_oauth_error_next_answers_oauth_error(fake_google: FakeGoogle) -> None:
    fake_google.oauth_error_next("invalid_grant", description="Token has been expired or revoked.")
    refresh = fake_google.issue_refresh_token(fake_google.DESKTOP_CLIENT_ID)

    status, body = _json(fake_google.token_uri, form=_refresh_form(fake_google, refresh))

    assert (status, body) == (
        400,
        {"error": "invalid_grant", "error_description": "Token has been expired or revoked."},
    )
    assert fake_google.requests_to("/token")[0].fault == "oauth_error"


def test_fault_without_path_matches_any_request(fake_google: FakeGoogle) -> None:
    fake_google.fail_next(status=500)

    assert _call(fake_google.jwks_url)[0] == 500
    assert _call(fake_google.jwks_url)[0] == 200


def test_requests_are_recorded_with_method_path_query_headers_and_form(fake_google: FakeGoogle) -> None:
    refresh = fake_google.issue_refresh_token(fake_google.DESKTOP_CLIENT_ID)
    _call(fake_google.token_uri + "?x=1", form=_refresh_form(fake_google, refresh), headers={"X-Test": "yes"})
    _call(fake_google.generate_id_token_url(SA), body={"audience": "a"}, token="ya29.abc")

    token_request, iam_request = fake_google.requests

    assert (token_request.method, token_request.path, token_request.query) == ("POST", "/token", {"x": "1"})
    assert token_request.headers["x-test"] == "yes"
    assert token_request.form["refresh_token"] == refresh
    assert token_request.status == 200
    assert iam_request.json == {"audience": "a"}
    assert iam_request.bearer == "ya29.abc"
    assert iam_request.body == b'{"audience": "a"}'
    assert fake_google.requests_to("/v1/projects/") == [iam_request]
    fake_google.clear_requests()
    assert fake_google.requests == []


def test_unknown_path_is_404_page(fake_google: FakeGoogle) -> None:
    status, _, body = _call(fake_google.url("/nope"))

    assert status == 404
    assert b"That's an error." in body
