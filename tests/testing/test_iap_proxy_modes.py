"""IapProxy decides as IAP does per OAuth setup: custom client, Google-managed client + allowlist, and
service-account signed JWTs; header order, x-goog-* stripping and the browser redirect."""

from __future__ import annotations

import json
import time
import urllib.parse
from typing import Any

import jwt
import pytest
import requests
from google.auth import crypt
from google.auth import jwt as google_jwt
from helpers import ProxyFactory

from flyte_iap.testing import FakeFlyteAdmin, FakeGoogle, IapProxy
from flyte_iap.testing.iap_proxy import JWT_MAX_LIFETIME, MESSAGES

SA = "ci@fake-project.iam.gserviceaccount.com"
MANAGED_CLIENT = "999999999999-googlemanagedfakeclient.apps.googleusercontent.com"
BROWSER = {"Accept": "text/html,application/xhtml+xml,*/*;q=0.8", "User-Agent": "Mozilla/5.0"}


def _get(proxy: IapProxy, path: str = "/healthcheck", **headers: str) -> requests.Response:
    return requests.get(proxy.url + path, headers=headers, allow_redirects=False, timeout=10)


def _bearer(token: str) -> str:
    return f"Bearer {token}"


def _self_signed(key: dict[str, str], claims: dict[str, Any]) -> str:
    signer = crypt.RSASigner.from_service_account_info(key)
    return google_jwt.encode(signer, claims).decode()


def _jwt_claims(audience: str, *, lifetime: int = 3600, iat: int | None = None) -> dict[str, Any]:
    now = int(time.time()) if iat is None else iat
    return {"iss": SA, "sub": SA, "aud": audience, "iat": now, "exp": now + lifetime}


# -- which audiences pass, per setup ------------------------------------------------------------------


def test_custom_client_accepts_its_own_id_and_allowlisted_clients_only(
    make_proxy: ProxyFactory, fake_google: FakeGoogle
) -> None:
    listed = "123456789012-listed.apps.googleusercontent.com"
    proxy = make_proxy(programmatic_clients=[listed])

    own = _get(
        proxy, **{"Proxy-Authorization": _bearer(fake_google.mint_id_token(fake_google.IAP_CLIENT_ID))}
    )
    allowlisted = _get(proxy, **{"Proxy-Authorization": _bearer(fake_google.mint_id_token(listed))})
    desktop = _get(
        proxy, **{"Proxy-Authorization": _bearer(fake_google.mint_id_token(fake_google.DESKTOP_CLIENT_ID))}
    )

    assert (own.status_code, allowlisted.status_code, desktop.status_code) == (200, 200, 401)
    assert proxy.accepted_audiences == (fake_google.IAP_CLIENT_ID, listed)
    assert desktop.text == MESSAGES["wrong_audience"].format(
        actual=fake_google.DESKTOP_CLIENT_ID, expected=f"{fake_google.IAP_CLIENT_ID}, {listed}"
    )


def test_managed_client_rejects_tokens_for_the_managed_client_and_accepts_the_allowlisted_desktop_client(
    make_proxy: ProxyFactory, fake_google: FakeGoogle, admin: FakeFlyteAdmin
) -> None:
    proxy = make_proxy(google_managed=True, programmatic_clients=[fake_google.DESKTOP_CLIENT_ID])
    proxy.audience = MANAGED_CLIENT

    managed = _get(proxy, **{"Proxy-Authorization": _bearer(fake_google.mint_id_token(MANAGED_CLIENT))})
    desktop = _get(
        proxy, **{"Proxy-Authorization": _bearer(fake_google.mint_id_token(fake_google.DESKTOP_CLIENT_ID))}
    )

    assert managed.status_code == 401
    assert managed.text == MESSAGES["wrong_audience"].format(
        actual=MANAGED_CLIENT, expected=fake_google.DESKTOP_CLIENT_ID
    )
    assert desktop.status_code == 200
    assert proxy.forwarded[-1].email == fake_google.user_email


def test_managed_client_without_an_allowlist_lets_no_id_token_in(
    make_proxy: ProxyFactory, fake_google: FakeGoogle
) -> None:
    proxy = make_proxy(google_managed=True)

    refused = _get(
        proxy, **{"Proxy-Authorization": _bearer(fake_google.mint_id_token(fake_google.IAP_CLIENT_ID))}
    )

    assert refused.status_code == 401 and "(no programmatic clients)" in refused.text


def test_token_for_an_allowlisted_client_obtained_by_another_client_is_refused(
    make_proxy: ProxyFactory, fake_google: FakeGoogle
) -> None:
    proxy = make_proxy(google_managed=True, programmatic_clients=[fake_google.DESKTOP_CLIENT_ID])
    outsider = "123456789012-outsider.apps.googleusercontent.com"
    token = fake_google.mint_id_token(fake_google.DESKTOP_CLIENT_ID, azp=outsider)

    response = _get(proxy, **{"Proxy-Authorization": _bearer(token)})

    assert response.status_code == 401
    assert response.text == MESSAGES["unknown_client"].format(actual=outsider)


# -- header order and stripping -----------------------------------------------------------------------


def test_invalid_proxy_authorization_falls_back_to_a_valid_authorization_and_both_are_stripped(
    proxy_default: IapProxy, admin: FakeFlyteAdmin, fake_google: FakeGoogle
) -> None:
    token = fake_google.mint_id_token(fake_google.IAP_CLIENT_ID)

    response = _get(
        proxy_default, **{"Proxy-Authorization": "Bearer garbage", "Authorization": _bearer(token)}
    )

    assert response.status_code == 200
    seen = admin.requests_to("/healthcheck")[0].headers
    assert "proxy-authorization" not in seen and "authorization" not in seen
    assert proxy_default.forwarded[0].token_header == "authorization"


def test_when_both_headers_fail_the_answer_is_about_proxy_authorization(
    proxy_default: IapProxy, fake_google: FakeGoogle
) -> None:
    expired = fake_google.mint_id_token(fake_google.IAP_CLIENT_ID, expired=True)

    response = _get(proxy_default, **{"Proxy-Authorization": _bearer(expired), "Authorization": "Bearer x"})

    assert (response.status_code, response.text) == (401, MESSAGES["expired"])
    assert proxy_default.rejections[0].header == "proxy-authorization"


def test_every_client_sent_x_goog_header_is_stripped_before_iaps_own_are_added(
    proxy_default: IapProxy, admin: FakeFlyteAdmin, fake_google: FakeGoogle
) -> None:
    token = fake_google.mint_id_token(fake_google.IAP_CLIENT_ID)

    _get(
        proxy_default,
        **{
            "Proxy-Authorization": _bearer(token),
            "X-Goog-Iap-Jwt-Assertion": "forged",
            "X-Goog-Custom": "client",
            "X-Goog-Api-Client": "gl-python/3.11",
        },
    ).raise_for_status()

    seen = admin.requests_to("/healthcheck")[0].headers
    goog = {name for name in seen if name.startswith("x-goog-")}
    assert goog == {
        "x-goog-iap-jwt-assertion",
        "x-goog-authenticated-user-email",
        "x-goog-authenticated-user-id",
    }
    assert seen["x-goog-iap-jwt-assertion"] != "forged"


# -- browsers are redirected, programs get 401 --------------------------------------------------------


def test_browser_without_credentials_is_redirected_to_sign_in_with_the_apps_client_id(
    proxy_default: IapProxy, fake_google: FakeGoogle, admin: FakeFlyteAdmin
) -> None:
    response = _get(proxy_default, "/console", **BROWSER)

    assert response.status_code == 302
    assert response.headers["x-goog-iap-generated-response"] == "true"
    location = urllib.parse.urlsplit(response.headers["location"])
    query = dict(urllib.parse.parse_qsl(location.query))
    assert (
        f"{location.scheme}://{location.netloc}{location.path}"
        == "https://accounts.google.com/o/oauth2/v2/auth"
    )
    assert query["client_id"] == fake_google.IAP_CLIENT_ID
    assert query["redirect_uri"] == (
        f"https://iap.googleapis.com/v1/oauth/clientIds/{fake_google.IAP_CLIENT_ID}:handleRedirect"
    )
    assert admin.http_requests == []


@pytest.mark.parametrize(
    ("method", "headers"),
    [
        ("GET", {"Accept": "*/*"}),
        ("POST", BROWSER),
        ("GET", {**BROWSER, "X-Requested-With": "XMLHttpRequest"}),
        ("GET", {**BROWSER, "Authorization": "Bearer not-a-jwt"}),
    ],
    ids=["no-html", "post", "xhr", "with-credentials"],
)
def test_requests_that_are_not_a_browsers_first_visit_get_401(
    proxy_default: IapProxy, method: str, headers: dict[str, str]
) -> None:
    response = requests.request(method, proxy_default.url + "/", headers=headers, allow_redirects=False)

    assert response.status_code == 401


# -- service-account signed JWTs ----------------------------------------------------------------------


@pytest.fixture
def sa_key(fake_google: FakeGoogle) -> dict[str, str]:
    return fake_google.add_service_account(SA)


@pytest.fixture
def proxy_default(make_proxy: ProxyFactory) -> IapProxy:
    return make_proxy(allowed=["alice@example.com", f"serviceAccount:{SA}"])


@pytest.mark.parametrize("suffix", ["/*", "/healthcheck", ""], ids=["wildcard", "exact-path", "bare-url"])
def test_self_signed_service_account_jwt_for_the_apps_url_passes(
    proxy_default: IapProxy, admin: FakeFlyteAdmin, sa_key: dict[str, str], suffix: str
) -> None:
    token = _self_signed(sa_key, _jwt_claims(proxy_default.url + suffix))

    response = _get(proxy_default, **{"Proxy-Authorization": _bearer(token)})

    assert response.status_code == 200
    assert proxy_default.forwarded[0].email == SA
    assert admin.requests_to("/healthcheck")[0].headers["x-goog-authenticated-user-email"] == (
        f"accounts.google.com:{SA}"
    )


def test_service_account_jwt_signed_by_iam_credentials_passes(
    proxy_default: IapProxy, fake_google: FakeGoogle
) -> None:
    fake_google.allow_impersonation("alice@example.com", SA)
    caller = fake_google.issue_access_token("alice@example.com")
    signed = requests.post(
        f"{fake_google.base_url}/v1/projects/-/serviceAccounts/{SA}:signJwt",
        json={"payload": json.dumps(_jwt_claims(proxy_default.url + "/*"))},
        headers={"Authorization": _bearer(caller)},
    ).json()["signedJwt"]

    response = _get(proxy_default, **{"Authorization": _bearer(signed)})

    assert response.status_code == 200


@pytest.mark.parametrize(
    ("claims", "reason"),
    [
        (lambda url: _jwt_claims("https://other.example.com/*"), "jwt_audience"),
        (lambda url: _jwt_claims(url + "/api/*"), "jwt_audience"),
        (lambda url: _jwt_claims(url + "/*", lifetime=JWT_MAX_LIFETIME + 1), "jwt_lifetime"),
        (lambda url: _jwt_claims(url + "/*", iat=int(time.time()) - 7200), "expired"),
        (lambda url: {k: v for k, v in _jwt_claims(url + "/*").items() if k != "iat"}, "jwt_lifetime"),
        (lambda url: _jwt_claims(url + "/*", iat=int(time.time()) + 1800, lifetime=600), "jwt_not_yet_valid"),
    ],
    ids=["other-host", "other-path", "too-long", "expired", "no-iat", "issued-in-the-future"],
)
def test_service_account_jwt_breaking_a_rule_is_refused(
    proxy_default: IapProxy, sa_key: dict[str, str], claims: Any, reason: str
) -> None:
    token = _self_signed(sa_key, claims(proxy_default.url))

    response = _get(proxy_default, **{"Proxy-Authorization": _bearer(token)})

    assert response.status_code == 401
    assert proxy_default.rejections[0].reason == reason


def test_service_account_jwt_signed_by_a_key_not_of_that_account_is_refused(
    proxy_default: IapProxy, fake_google: FakeGoogle, sa_key: dict[str, str]
) -> None:
    other = fake_google.add_service_account("other@fake-project.iam.gserviceaccount.com")
    forged = _self_signed(other, _jwt_claims(proxy_default.url + "/*"))

    response = _get(proxy_default, **{"Proxy-Authorization": _bearer(forged)})

    assert (response.status_code, response.text) == (401, MESSAGES["bad_signature"])


def test_service_account_jwt_of_an_account_without_access_is_403(
    make_proxy: ProxyFactory, sa_key: dict[str, str]
) -> None:
    proxy = make_proxy(allowed=["alice@example.com"])
    token = _self_signed(sa_key, _jwt_claims(proxy.url + "/*"))

    assert _get(proxy, **{"Proxy-Authorization": _bearer(token)}).status_code == 403


def test_jwt_audience_follows_the_public_url_the_app_is_served_at(
    make_proxy: ProxyFactory, sa_key: dict[str, str]
) -> None:
    proxy = make_proxy(allowed=[f"serviceAccount:{SA}"], public_url="https://flyte.example.com/")

    local = _get(
        proxy, **{"Proxy-Authorization": _bearer(_self_signed(sa_key, _jwt_claims(proxy.url + "/*")))}
    )
    public = _get(
        proxy,
        **{"Proxy-Authorization": _bearer(_self_signed(sa_key, _jwt_claims("https://flyte.example.com/*")))},
    )

    assert (local.status_code, public.status_code) == (401, 200)


# -- the signed header's keys -------------------------------------------------------------------------


def test_backend_verifies_the_iap_assertion_with_keys_fetched_from_a_url(
    proxy_default: IapProxy, admin: FakeFlyteAdmin, fake_google: FakeGoogle
) -> None:
    url = fake_google.publish_iap_keys(proxy_default.jwks)
    token = fake_google.mint_id_token(fake_google.IAP_CLIENT_ID)
    _get(proxy_default, **{"Proxy-Authorization": _bearer(token)}).raise_for_status()
    assertion = admin.requests_to("/healthcheck")[0].headers["x-goog-iap-jwt-assertion"]

    key = jwt.PyJWKClient(url).get_signing_key_from_jwt(assertion)
    claims = jwt.decode(assertion, key.key, algorithms=["ES256"], audience=proxy_default.jwt_audience)

    assert claims["email"] == fake_google.user_email
