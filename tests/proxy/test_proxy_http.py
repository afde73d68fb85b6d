"""HTTP/1.1 clients (REST, curl, flyteadmin's token endpoint) reach flyteadmin through the local proxy."""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import os
import shutil
import subprocess
from typing import Any

import pytest
import requests
from helpers import ProxyFactory
from helpers.proxy import LocalFactory, assert_flyteadmin_never_saw_iap_credentials

from flyte_iap.local_proxy import TokenSource
from flyte_iap.local_proxy.server import LocalProxy
from flyte_iap.testing import FakeFlyteAdmin, FakeGoogle, IapProxy


def test_rest_get_passes_iap_with_the_token_and_the_endpoint_as_host(
    local: LocalProxy, tls_iap: IapProxy, admin: FakeFlyteAdmin, signed_in: str
) -> None:
    response = requests.get(local.url + "/api/v1/projects", timeout=20)

    assert response.status_code == 200
    assert [p["id"] for p in response.json()["projects"]] == ["flytesnacks"]
    assert [(f.protocol, f.email, f.token_header) for f in tls_iap.forwarded] == [
        ("http", signed_in, "proxy-authorization")
    ]
    assert admin.http_requests[-1].headers["host"] == tls_iap.endpoint
    assert_flyteadmin_never_saw_iap_credentials(admin)


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_curl_lists_projects_through_the_proxy(local: LocalProxy, tls_iap: IapProxy) -> None:
    result = subprocess.run(
        ["curl", "-sS", "--fail", "--max-time", "20", local.url + "/api/v1/projects"],
        capture_output=True,
        text=True,
        check=False,
    )

    assert result.returncode == 0, result.stderr
    assert '"flytesnacks"' in result.stdout
    assert tls_iap.passed["http"] == 1


def test_client_secret_token_request_carries_the_iap_header_flyte_6089(
    admin: FakeFlyteAdmin, make_proxy: ProxyFactory, make_local: LocalFactory, signed_in: str
) -> None:
    # flytectl's ClientSecret flow POSTs to flyteadmin's token endpoint without proxy-authorization
    # (flyte#6089); through the local proxy the same request carries it.
    admin.stop()
    admin.auth = True
    admin.start()
    iap = make_proxy(tls=True, http_upstream=admin.http_url, grpc_upstream=admin.grpc_target)
    local = make_local(endpoint=iap.url, ca_cert=iap.ca_cert_file)
    basic = base64.b64encode(f"{admin.client_id}:{admin.client_secret}".encode()).decode()

    response = requests.post(
        local.url + "/oauth2/token",
        data={"grant_type": "client_credentials", "scope": "all"},
        headers={"authorization": f"Basic {basic}"},
        timeout=20,
    )

    assert response.status_code == 200, response.text
    assert response.json()["access_token"] == admin.issued_tokens[-1]
    token_request = [f for f in iap.forwarded if f.path == "/oauth2/token"]
    assert [f.token_header for f in token_request] == ["proxy-authorization"]
    # flyteadmin got its own credentials untouched, and none of IAP's
    assert admin.http_requests[-1].headers["authorization"] == f"Basic {basic}"
    assert_flyteadmin_never_saw_iap_credentials(admin)


@pytest.fixture
def echo_local(
    echo_http: Any, make_proxy: ProxyFactory, make_local: LocalFactory, signed_in: str
) -> LocalProxy:
    iap = make_proxy(tls=True, http_upstream=echo_http.url)
    return make_local(endpoint=iap.url, ca_cert=iap.ca_cert_file)


def test_large_request_body_arrives_whole(echo_local: LocalProxy) -> None:
    body = os.urandom(8 << 20)

    response = requests.post(echo_local.url + "/echo", data=body, timeout=60)

    assert response.json() == {"length": len(body), "sha256": hashlib.sha256(body).hexdigest()}


def test_chunked_request_body_arrives_whole(echo_local: LocalProxy) -> None:
    chunks = [os.urandom(100_000) for _ in range(20)]

    response = requests.post(echo_local.url + "/echo", data=iter(chunks), timeout=60)

    joined = b"".join(chunks)
    assert response.json() == {"length": len(joined), "sha256": hashlib.sha256(joined).hexdigest()}


def test_hop_by_hop_headers_are_dropped_and_authorization_passes(
    echo_local: LocalProxy, echo_http: Any
) -> None:
    headers = {
        "connection": "keep-alive, x-private-hop",
        "x-private-hop": "1",
        "keep-alive": "timeout=5",
        "authorization": "Bearer flyteadmins-own",
        "x-end-to-end": "kept",
    }

    response = requests.get(echo_local.url + "/headers", headers=headers, timeout=20)

    seen = response.json()
    assert seen["authorization"] == "Bearer flyteadmins-own"
    assert seen["x-end-to-end"] == "kept"
    assert "x-private-hop" not in seen and "keep-alive" not in seen
    assert "proxy-authorization" not in seen  # IAP consumed the proxy's token


def test_redirect_is_passed_back_not_followed(echo_local: LocalProxy, echo_http: Any) -> None:
    response = requests.get(echo_local.url + "/redirect", allow_redirects=False, timeout=20)

    assert response.status_code == 302
    assert response.headers["location"] == "https://elsewhere.example/landing"
    assert len(echo_http.seen) == 1


def test_keep_alive_connection_serves_several_requests(local: LocalProxy, tls_iap: IapProxy) -> None:
    with requests.Session() as session:
        statuses = [session.get(local.url + "/api/v1/projects", timeout=20).status_code for _ in range(5)]

    assert statuses == [200] * 5
    assert tls_iap.passed["http"] == 5


# -- refusals ----------------------------------------------------------------------------------------


def _raw(
    local: LocalProxy, method: str, target: str, headers: dict[str, str] | None = None
) -> tuple[int, str]:
    connection = http.client.HTTPConnection("127.0.0.1", local.port, timeout=20)
    try:
        connection.putrequest(method, target, skip_host=bool(headers and "Host" in headers))
        for name, value in (headers or {}).items():
            connection.putheader(name, value)
        connection.endheaders()
        response = connection.getresponse()
        return response.status, response.read().decode()
    finally:
        connection.close()


def test_connect_is_refused(local: LocalProxy, tls_iap: IapProxy) -> None:
    status, body = _raw(local, "CONNECT", "example.com:443")

    assert status == 405 and "CONNECT" in body
    assert tls_iap.passed["http"] == 0


def test_absolute_target_naming_another_host_is_refused(local: LocalProxy, tls_iap: IapProxy) -> None:
    status, body = _raw(local, "GET", "http://metadata.google.internal/computeMetadata/v1/")

    assert status == 403 and "forwards only to" in body
    assert tls_iap.forwarded == []


def test_absolute_target_naming_the_endpoint_is_forwarded_as_a_path(
    local: LocalProxy, tls_iap: IapProxy
) -> None:
    status, _ = _raw(local, "GET", f"{tls_iap.url}/api/v1/projects")

    assert status == 200
    assert [f.path for f in tls_iap.forwarded] == ["/api/v1/projects"]


def test_foreign_host_header_is_refused_against_dns_rebinding(local: LocalProxy, tls_iap: IapProxy) -> None:
    status, _ = _raw(local, "GET", "/api/v1/projects", {"Host": f"attacker.example:{local.port}"})

    assert status == 403
    assert tls_iap.forwarded == []


def test_cross_site_browser_requests_are_refused(local: LocalProxy, tls_iap: IapProxy) -> None:
    by_origin = requests.post(
        local.url + "/api/v1/projects", headers={"origin": "https://evil.example"}, timeout=20
    )
    by_fetch_site = requests.get(
        local.url + "/api/v1/projects", headers={"sec-fetch-site": "cross-site"}, timeout=20
    )
    same_origin = requests.get(local.url + "/api/v1/projects", headers={"origin": local.url}, timeout=20)

    assert (by_origin.status_code, by_fetch_site.status_code, same_origin.status_code) == (403, 403, 200)
    assert tls_iap.passed["http"] == 1


def test_secret_is_required_when_set_and_accepted_in_each_form(
    make_local: LocalFactory, tls_iap: IapProxy, signed_in: str
) -> None:
    local = make_local(secret="s3cret-value")
    url = local.url + "/api/v1/projects"
    basic = base64.b64encode(b"flyte-iap:s3cret-value").decode()

    missing = requests.get(url, timeout=20)
    wrong = requests.get(url, headers={"x-flyte-iap-proxy-secret": "nope"}, timeout=20)
    statuses = [
        requests.get(url, headers=headers, timeout=20).status_code
        for headers in (
            {"x-flyte-iap-proxy-secret": "s3cret-value"},
            {"proxy-authorization": "Bearer s3cret-value"},
            {"proxy-authorization": f"Basic {basic}"},
        )
    ]

    assert (missing.status_code, wrong.status_code) == (407, 407)
    assert missing.headers["proxy-authenticate"].startswith("Basic")
    assert statuses == [200, 200, 200]
    # the secret never reaches IAP or flyteadmin
    assert all("x-flyte-iap-proxy-secret" not in f.headers for f in tls_iap.forwarded)


# -- IAP's answers and token problems ------------------------------------------------------------------


def test_wrong_audience_reaches_the_client_as_iaps_401_with_a_hint_in_the_log(
    make_local: LocalFactory, tls_iap: IapProxy, fake_google: FakeGoogle
) -> None:
    token = fake_google.mint_id_token("999-other.apps.googleusercontent.com")
    log: list[str] = []
    local = make_local(tokens=TokenSource(lambda rejected: token), log=log.append)

    response = requests.get(local.url + "/api/v1/projects", timeout=20)

    assert response.status_code == 401
    assert "audience" in response.text
    assert response.headers["x-goog-iap-generated-response"] == "true"
    assert len(log) == 1 and "wrong audience" in log[0] and "--audience" in log[0]
    assert token not in log[0]


def test_account_without_access_gets_403_and_a_hint_naming_the_role(
    local: LocalProxy, tls_iap: IapProxy, signed_in: str
) -> None:
    log: list[str] = []
    local._log = log.append
    tls_iap.revoke(signed_in)

    response = requests.get(local.url + "/api/v1/projects", timeout=20)

    assert response.status_code == 403
    assert len(log) == 1 and signed_in in log[0] and "roles/iap.httpsResourceAccessor" in log[0]


def test_token_iap_calls_expired_is_dropped_and_the_next_request_gets_a_new_one(
    make_local: LocalFactory, tls_iap: IapProxy, fake_google: FakeGoogle, signed_in: str
) -> None:
    fresh = fake_google.mint_id_token(fake_google.IAP_CLIENT_ID)
    handed: list[str | None] = []

    def fetch(rejected: str | None) -> str:
        handed.append(rejected)
        return fresh

    tokens = TokenSource(fetch)
    local = make_local(tokens=tokens, log=lambda message: None)
    requests.get(local.url + "/healthcheck", timeout=20)
    tls_iap.clock = lambda: 4e9  # IAP's clock is far ahead: the token is expired for it

    first = requests.get(local.url + "/healthcheck", timeout=20)
    tls_iap.clock = __import__("time").time
    second = requests.get(local.url + "/healthcheck", timeout=20)

    assert (first.status_code, second.status_code) == (401, 200)
    assert handed == [None, fresh]  # the refused token was handed back as rejected_token


def test_login_needed_answers_503_and_logs_the_login_command(
    make_local: LocalFactory, tls_iap: IapProxy
) -> None:
    # nobody signed in: the user token fetcher cannot start a browser from the proxy
    log: list[str] = []
    local = make_local(log=log.append)

    response = requests.get(local.url + "/api/v1/projects", timeout=20)
    again = requests.get(local.url + "/api/v1/projects", timeout=20)

    assert (response.status_code, again.status_code) == (503, 503)
    assert "flyte-iap login" in response.text
    assert len(log) == 1 and "flyte-iap login --audience" in log[0]  # once, not per request
    assert tls_iap.forwarded == [] and tls_iap.rejections == []


def test_unreachable_endpoint_is_502_with_a_hint(make_local: LocalFactory, signed_in: str) -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    log: list[str] = []
    local = make_local(endpoint=f"https://127.0.0.1:{port}", log=log.append)

    response = requests.get(local.url + "/api/v1/projects", timeout=30)

    assert response.status_code == 502
    assert "cannot connect" in response.text
    assert log and "--endpoint" in log[0]


def test_untrusted_endpoint_certificate_is_502_and_names_ca_cert(
    make_local: LocalFactory, tls_iap: IapProxy, signed_in: str
) -> None:
    log: list[str] = []
    local = make_local(ca_cert=None, log=log.append)

    response = requests.get(local.url + "/api/v1/projects", timeout=30)

    assert response.status_code == 502
    assert log and "--ca-cert" in log[0]
    assert tls_iap.forwarded == []


def test_connections_beyond_the_limit_are_closed_at_once(
    make_local: LocalFactory, tls_iap: IapProxy, signed_in: str
) -> None:
    import socket

    local = make_local(max_connections=1)
    with socket.create_connection(("127.0.0.1", local.port)) as held:
        held.sendall(b"GET /api/v1/projects HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert held.recv(12) == b"HTTP/1.1 200"  # the one connection allowed is being served
        with pytest.raises(requests.ConnectionError):
            requests.get(local.url + "/api/v1/projects", timeout=20)
    assert requests.get(local.url + "/api/v1/projects", timeout=20).status_code == 200


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_curl_upload_with_expect_100_continue_arrives_whole(echo_local: LocalProxy, tmp_path: Any) -> None:
    body = os.urandom(3 << 20)
    upload = tmp_path / "upload.bin"
    upload.write_bytes(body)

    result = subprocess.run(
        [
            "curl",
            "-sS",
            "--fail",
            "--max-time",
            "60",
            "-v",
            "-H",
            "Expect: 100-continue",
            "--data-binary",
            f"@{upload}",
            echo_local.url + "/echo",
        ],
        capture_output=True,
        text=True,
        check=False,
    )

    assert result.returncode == 0, result.stderr
    assert "> Expect: 100-continue" in result.stderr and "< HTTP/1.1 100 Continue" in result.stderr
    assert json.loads(result.stdout) == {"length": len(body), "sha256": hashlib.sha256(body).hexdigest()}
