"""doctor names the cause it saw: grpcio's own error, and whether IAP is in front at all."""

from __future__ import annotations

import http.server
import socket
import threading
from collections.abc import Iterator

import pytest
from helpers import ProxyFactory

from flyte_iap.doctor import CHECKS, STEPS, Check, Report, _check_grpc, run_checks
from flyte_iap.testing import FakeFlyteAdmin, FakeGoogle

AUD = FakeGoogle.IAP_CLIENT_ID
NO_BACKEND = "no healthy HTTP/2 backend"


def _check(report: Report, name: str) -> Check:
    return next(c for c in report.checks if c.name == name)


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A port bound but not listening: connections to it are refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


@pytest.fixture
def http1_server() -> Iterator[int]:
    """An HTTP/1.1-only server answering 200 to everything, with no IAP in front."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("content-length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_port
    server.shutdown()
    server.server_close()


def test_steps_and_titles_list_the_same_checks_in_order() -> None:
    assert [name for name, _ in STEPS] == list(CHECKS)


def test_refused_connection_is_reported_as_refused_not_as_an_unhealthy_backend(
    closed_port: int, fake_google: FakeGoogle
) -> None:
    report = run_checks(
        f"http://127.0.0.1:{closed_port}",
        AUD,
        token_provider=lambda: fake_google.mint_id_token(AUD),
        timeout=3,
    )

    grpc_check = _check(report, "grpc")
    assert grpc_check.status == "fail"
    assert (
        grpc_check.detail
        == f"nothing accepts connections on 127.0.0.1:{closed_port} (Connection refused) (UNAVAILABLE)"
    )
    assert NO_BACKEND not in (grpc_check.fix or "")
    assert "port" in (grpc_check.fix or "")


def test_a_server_that_speaks_only_http1_is_reported_as_not_http2(http1_server: int) -> None:
    check = _check_grpc("127.0.0.1", http1_server, False, None, "token", 5, http_passed=True)

    assert check.status == "fail"
    assert check.detail == f"127.0.0.1:{http1_server} answered, but not with HTTP/2 (UNAVAILABLE)"
    assert "cloud.google.com/app-protocols" in (check.fix or "")


def test_tls_to_a_plaintext_server_is_reported_as_a_failed_handshake(http1_server: int) -> None:
    check = _check_grpc("127.0.0.1", http1_server, True, None, "token", 5, http_passed=True)

    assert check.detail == f"the TLS handshake for gRPC to 127.0.0.1:{http1_server} failed (UNAVAILABLE)"
    assert NO_BACKEND not in (check.fix or "")


def test_load_balancer_5xx_is_still_reported_as_no_healthy_backend(
    make_proxy: ProxyFactory, admin: FakeFlyteAdmin, fake_google: FakeGoogle
) -> None:
    proxy = make_proxy()
    admin.stop_grpc()

    report = run_checks(proxy.url, AUD, token_provider=lambda: fake_google.mint_id_token(AUD), timeout=5)

    assert NO_BACKEND in (_check(report, "grpc").fix or "")


def test_flyteadmin_without_iap_skips_the_checks_that_need_iap_and_says_why(
    admin: FakeFlyteAdmin, fake_google: FakeGoogle
) -> None:
    report = run_checks(admin.http_url, AUD, token_provider=lambda: fake_google.mint_id_token(AUD))

    statuses = {c.name: c.status for c in report.checks}
    assert statuses == {
        "dns": "pass",
        "tls": "pass",
        "iap-enforced": "fail",
        "token": "pass",
        "audience": "pass",
        "iap-accepts": "skip",
        "grpc": "skip",
    }
    for name in ("iap-accepts", "grpc"):
        assert f"IAP is not in front of {report.endpoint}" in _check(report, name).detail
    assert not report.ok


def test_another_server_answering_instead_of_iap_also_skips_iap_accepts(
    http1_server: int, fake_google: FakeGoogle
) -> None:
    report = run_checks(
        f"http://127.0.0.1:{http1_server}", AUD, token_provider=lambda: fake_google.mint_id_token(AUD)
    )

    assert _check(report, "iap-enforced").status == "fail"
    assert _check(report, "iap-accepts").status == "skip"


def test_a_service_account_id_token_refused_by_an_app_on_the_managed_client_gets_the_sa_jwt_fix(
    make_proxy: ProxyFactory, fake_google: FakeGoogle
) -> None:
    proxy = make_proxy(google_managed=True, programmatic_clients=[fake_google.DESKTOP_CLIENT_ID])
    sa = fake_google.metadata_service_account

    report = run_checks(
        proxy.url, AUD, service_account=True, token_provider=lambda: fake_google.mint_id_token(AUD, email=sa)
    )

    accepts = _check(report, "iap-accepts")
    assert accepts.status == "fail"
    assert "audience doesn't match" in accepts.detail
    assert f"signs in with OAuth client {AUD}" in (accepts.fix or "")
    assert "the Google-managed client" in (accepts.fix or "")
    assert f"`flyte-iap sa-jwt --url {proxy.url}`" in (accepts.fix or "")


def test_a_service_account_id_token_for_another_client_of_a_custom_client_app_is_told_the_right_audience(
    make_proxy: ProxyFactory, fake_google: FakeGoogle
) -> None:
    proxy = make_proxy()
    sa = fake_google.metadata_service_account
    other = "999999999999-staging.apps.googleusercontent.com"

    report = run_checks(
        proxy.url,
        other,
        service_account=True,
        token_provider=lambda: fake_google.mint_id_token(other, email=sa),
    )

    accepts = _check(report, "iap-accepts")
    assert (
        accepts.fix
        == f"the token was minted for another OAuth client: use --audience {AUD} in the proxy command"
    )


def test_the_audience_fix_names_iaps_expected_value_whole_when_it_holds_parentheses(
    make_proxy: ProxyFactory, fake_google: FakeGoogle
) -> None:
    proxy = make_proxy(google_managed=True)  # no programmatic clients: the emulator says so in parentheses
    report = run_checks(proxy.url, AUD, token_provider=lambda: fake_google.mint_id_token(AUD))

    assert "use --audience (no programmatic clients), IAP's client" in (
        _check(report, "iap-accepts").fix or ""
    )
