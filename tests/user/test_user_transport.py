"""The HTTP helper: a timeout on every request, bounded retries of 5xx and connection errors, clear errors."""

from __future__ import annotations

import socket
from typing import Any

import google.auth.transport.requests
import pytest

from flyte_iap import transport
from flyte_iap.errors import CredentialsError, OAuthError, PermissionDeniedError, TransportError
from flyte_iap.testing import FakeGoogle

SECRET = "GOCSPX-do-not-print-me"


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RecordingHttp:
    """google-auth's requests transport, remembering the timeout of each call."""

    def __init__(self) -> None:
        self.inner = google.auth.transport.requests.Request()
        self.timeouts: list[Any] = []

    def __call__(self, **kwargs: Any) -> Any:
        self.timeouts.append(kwargs.get("timeout"))
        return self.inner(**kwargs)


def _refresh_form(google: FakeGoogle, refresh_token: str) -> dict[str, str]:
    return {
        "grant_type": "refresh_token",
        "refresh_token": refresh_token,
        "client_id": google.DESKTOP_CLIENT_ID,
        "client_secret": google.DESKTOP_CLIENT_SECRET,
        "audience": google.IAP_CLIENT_ID,
    }


def test_every_request_carries_a_timeout(fake_google: FakeGoogle) -> None:
    http = RecordingHttp()
    transport.request("GET", fake_google.certs_url, what="certs", http=http)
    wrapped = transport.google_auth_request(http=http, timeout=7)
    wrapped(url=fake_google.certs_url, method="GET")
    wrapped(url=fake_google.certs_url, method="GET", timeout=120)
    assert http.timeouts == [transport.DEFAULT_TIMEOUT, 7, 7]


def test_5xx_answers_are_retried_then_succeed(fake_google: FakeGoogle) -> None:
    refresh = fake_google.issue_refresh_token(fake_google.DESKTOP_CLIENT_ID)
    fake_google.fail_next(2, status=503, path="/token")
    reply = transport.post_oauth(fake_google.token_uri, _refresh_form(fake_google, refresh), what="token")
    assert "id_token" in reply
    assert [r.status for r in fake_google.requests_to("/token")] == [503, 503, 200]


def test_persistent_5xx_fails_after_three_tries(fake_google: FakeGoogle) -> None:
    fake_google.fail_next(5, status=500, path="/token")
    with pytest.raises(TransportError) as caught:
        transport.post_oauth(fake_google.token_uri, {"client_secret": SECRET}, what="Google's token endpoint")
    assert "HTTP 500 (tried 3 times)" in caught.value.message
    assert len(fake_google.requests_to("/token")) == 3
    assert SECRET not in str(caught.value) + caught.value.hint


def test_connection_refused_is_retried_and_reported(fake_google: FakeGoogle) -> None:
    url = f"http://127.0.0.1:{_closed_port()}/token"
    with pytest.raises(TransportError) as caught:
        transport.post_oauth(url, {"client_secret": SECRET}, what="Google's token endpoint")
    assert "connection refused (tried 3 times)" in caught.value.message
    assert url in caught.value.message
    assert "FLYTE_IAP_" in caught.value.hint


def test_a_server_that_does_not_answer_times_out(fake_google: FakeGoogle) -> None:
    fake_google.delay_next(3, n=1, path="/oauth2/v1/certs")
    with pytest.raises(TransportError) as caught:
        transport.request("GET", fake_google.certs_url, what="certs", timeout=0.5, tries=1)
    assert "no complete answer within 0.5 s" in caught.value.message


def test_oauth_error_body_becomes_oauth_error_with_its_code(fake_google: FakeGoogle) -> None:
    fake_google.oauth_error_next("invalid_client", status=401)
    with pytest.raises(OAuthError) as caught:
        transport.post_oauth(fake_google.token_uri, {"client_secret": SECRET}, what="Google's token endpoint")
    assert caught.value.error == "invalid_client"
    assert "--client-id" in caught.value.hint
    assert len(fake_google.requests_to("/token")) == 1  # a 4xx is an answer, not retried


def test_a_200_that_is_not_json_is_a_transport_error(fake_google: FakeGoogle) -> None:
    fake_google.malformed_next(path="/token")
    with pytest.raises(TransportError) as caught:
        transport.post_oauth(fake_google.token_uri, {}, what="Google's token endpoint")
    assert "not a JSON object" in caught.value.message


def test_api_errors_map_to_permission_and_credentials_errors(fake_google: FakeGoogle) -> None:
    fake_google.set_secret("projects/p/secrets/s", "v", accessors=["someone-else@example.com"])
    url = fake_google.url("/v1/projects/p/secrets/s/versions/latest:access")
    unauthenticated = transport.request("GET", url, what="Secret Manager")
    assert isinstance(transport.api_error(unauthenticated, "Secret Manager"), CredentialsError)
    token = fake_google.issue_access_token("alice@example.com")
    denied = transport.request(
        "GET", url, what="Secret Manager", headers={"Authorization": f"Bearer {token}"}
    )
    error = transport.api_error(denied, "Secret Manager")
    assert isinstance(error, PermissionDeniedError)
    assert "PERMISSION_DENIED" in error.message


def test_google_auth_request_retries_5xx_for_google_auth_credentials(fake_google: FakeGoogle) -> None:
    fake_google.fail_next(2, status=502, path="/oauth2/v1/certs")
    request = transport.google_auth_request()
    response = request(url=fake_google.certs_url, method="GET")
    assert response.status == 200
    assert len(fake_google.requests_to("/oauth2/v1/certs")) == 3


def test_query_strings_are_left_out_of_error_messages() -> None:
    url = f"http://127.0.0.1:{_closed_port()}/path?access_token=secret-value"
    with pytest.raises(TransportError) as caught:
        transport.request("GET", url, what="x", tries=1)
    assert "secret-value" not in caught.value.message
