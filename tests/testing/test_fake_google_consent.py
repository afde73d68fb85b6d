"""The consent screen and the authorization-code + PKCE exchange, driven by hand like a login flow would."""

from __future__ import annotations

import json
import socket
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

import pytest
from google.auth.transport.requests import Request
from google.oauth2 import id_token

from flyte_iap.testing import FakeGoogle


def _post_form(url: str, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
    data = urllib.parse.urlencode(form).encode()
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data=data), timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, json.loads(exc.read())


def _exchange(
    google: FakeGoogle, code: str, redirect_uri: str, verifier: str, **overrides: str
) -> tuple[int, Any]:
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": redirect_uri,
        "client_id": google.DESKTOP_CLIENT_ID,
        "client_secret": google.DESKTOP_CLIENT_SECRET,
        "code_verifier": verifier,
    }
    form.update(overrides)
    return _post_form(google.token_uri, form)


def test_authorization_code_flow_with_pkce_yields_verified_id_token_and_refresh_token(
    fake_google, loopback, pkce, authorize_url
) -> None:
    result = fake_google.browser(authorize_url())

    assert result.ok, result
    assert result.redirect_url.startswith(loopback.url + "?")
    assert loopback.callbacks[0]["state"] == "state-123" == result.state
    assert "Signed in" in result.body
    status, body = _exchange(fake_google, loopback.callbacks[0]["code"], loopback.url, pkce[0])

    assert status == 200, body
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == fake_google.token_lifetime
    assert body["refresh_token"]
    assert set(body["scope"].split()) == {"openid", "https://www.googleapis.com/auth/userinfo.email"}
    claims = id_token.verify_token(
        body["id_token"], Request(), audience=fake_google.DESKTOP_CLIENT_ID, certs_url=fake_google.certs_url
    )
    assert claims["email"] == fake_google.user_email
    assert claims["azp"] == fake_google.DESKTOP_CLIENT_ID
    assert "at_hash" in claims


def test_refresh_token_from_login_mints_id_token_for_requested_audience(
    fake_google, loopback, pkce, authorize_url
) -> None:
    fake_google.browser(authorize_url())
    _, body = _exchange(fake_google, loopback.callbacks[0]["code"], loopback.url, pkce[0])

    status, refreshed = _post_form(
        fake_google.token_uri,
        {
            "grant_type": "refresh_token",
            "refresh_token": body["refresh_token"],
            "client_id": fake_google.DESKTOP_CLIENT_ID,
            "client_secret": fake_google.DESKTOP_CLIENT_SECRET,
            "audience": fake_google.IAP_CLIENT_ID,
        },
    )

    assert status == 200
    assert "refresh_token" not in refreshed
    claims = id_token.verify_token(
        refreshed["id_token"], Request(), audience=fake_google.IAP_CLIENT_ID, certs_url=fake_google.certs_url
    )
    assert claims["azp"] == fake_google.DESKTOP_CLIENT_ID


def test_no_refresh_token_without_offline_access(fake_google, loopback, pkce, authorize_url) -> None:
    fake_google.browser(authorize_url(access_type=None))

    status, body = _exchange(fake_google, loopback.callbacks[0]["code"], loopback.url, pkce[0])

    assert status == 200
    assert "refresh_token" not in body
    assert body["id_token"]


def test_wrong_code_verifier_is_invalid_grant(fake_google, loopback, authorize_url) -> None:
    fake_google.browser(authorize_url())

    status, body = _exchange(fake_google, loopback.callbacks[0]["code"], loopback.url, "x" * 64)

    assert (status, body) == (400, {"error": "invalid_grant", "error_description": "Invalid code verifier."})


def test_missing_code_verifier_is_invalid_grant(fake_google, loopback, authorize_url) -> None:
    fake_google.browser(authorize_url())

    status, body = _exchange(fake_google, loopback.callbacks[0]["code"], loopback.url, "")

    assert (status, body["error"]) == (400, "invalid_grant")


def test_code_is_single_use(fake_google, loopback, pkce, authorize_url) -> None:
    fake_google.browser(authorize_url())
    code = loopback.callbacks[0]["code"]
    assert _exchange(fake_google, code, loopback.url, pkce[0])[0] == 200

    status, body = _exchange(fake_google, code, loopback.url, pkce[0])

    assert (status, body["error"]) == (400, "invalid_grant")


def test_expired_code_is_invalid_grant(fake_google, loopback, pkce, authorize_url) -> None:
    fake_google.code_lifetime = 0
    fake_google.browser(authorize_url())

    status, body = _exchange(fake_google, loopback.callbacks[0]["code"], loopback.url, pkce[0])

    assert (status, body["error"]) == (400, "invalid_grant")


def test_code_exchange_needs_the_same_redirect_uri(fake_google, loopback, pkce, authorize_url) -> None:
    fake_google.browser(authorize_url())

    status, body = _exchange(fake_google, loopback.callbacks[0]["code"], loopback.url + "x", pkce[0])

    assert (status, body["error"]) == (400, "redirect_uri_mismatch")


def test_code_exchange_with_wrong_client_secret_is_invalid_client(
    fake_google, loopback, pkce, authorize_url
) -> None:
    fake_google.browser(authorize_url())

    status, body = _exchange(
        fake_google, loopback.callbacks[0]["code"], loopback.url, pkce[0], client_secret="GOCSPX-wrong"
    )

    assert (status, body["error"]) == (401, "invalid_client")


@pytest.mark.parametrize(
    ("overrides", "error"),
    [
        ({"code_challenge": None, "code_challenge_method": None}, "invalid_request"),
        ({"code_challenge_method": "plain"}, "invalid_request"),
        ({"code_challenge_method": None}, "invalid_request"),
        ({"state": None}, "invalid_request"),
        ({"scope": "email"}, "invalid_request"),
        ({"response_type": "token"}, "unsupported_response_type"),
        ({"redirect_uri": "https://evil.example.com/callback"}, "redirect_uri_mismatch"),
        ({"redirect_uri": "http://127.0.0.1/callback"}, "redirect_uri_mismatch"),
        ({"client_id": "unknown.apps.googleusercontent.com"}, "invalid_client"),
    ],
)
def test_invalid_authorization_request_shows_error_page_without_redirect(
    fake_google, loopback, authorize_url, overrides, error
) -> None:
    result = fake_google.browser(authorize_url(**overrides))

    assert result.redirect_url is None
    assert result.error == error
    assert result.status in (400, 401)
    assert f"Error {result.status}: {error}" in result.body
    assert loopback.callbacks == []


def test_denied_consent_redirects_with_access_denied(fake_google, loopback, authorize_url) -> None:
    fake_google.deny_consent = True

    result = fake_google.browser(authorize_url())

    assert result.error == "access_denied"
    assert not result.ok
    assert loopback.callbacks == [{"error": "access_denied", "state": "state-123"}]


def test_localhost_redirect_uri_is_accepted(fake_google, loopback, authorize_url) -> None:
    redirect = loopback.url.replace("127.0.0.1", "localhost")

    result = fake_google.browser(authorize_url(redirect_uri=redirect))

    assert result.ok, result
    assert result.redirect_url.startswith(redirect)


def test_web_client_accepts_only_registered_redirect_uris(fake_google, loopback, authorize_url) -> None:
    fake_google.add_oauth_client(
        "web.apps.googleusercontent.com", "s3cret", redirect_uris=["https://app.example/cb"]
    )

    result = fake_google.browser(authorize_url(client_id="web.apps.googleusercontent.com"))

    assert result.error == "redirect_uri_mismatch"


def test_browser_reports_unreachable_loopback(fake_google, pkce) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed_port = sock.getsockname()[1]
    redirect = f"http://127.0.0.1:{closed_port}/callback"
    url = (
        fake_google.auth_uri
        + "?"
        + urllib.parse.urlencode(
            {
                "client_id": fake_google.DESKTOP_CLIENT_ID,
                "redirect_uri": redirect,
                "response_type": "code",
                "scope": "openid",
                "state": "s",
                "code_challenge": pkce[1],
                "code_challenge_method": "S256",
            }
        )
    )

    result = fake_google.browser(url, timeout=5)

    assert result.status == 0
    assert result.code and result.redirect_url.startswith(redirect)
    assert "cannot open" in result.error
