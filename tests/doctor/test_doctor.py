"""`flyte-iap doctor` passes on a healthy deployment and names the fix for each failure injected in turn."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest
from helpers import ProxyFactory

from flyte_iap.doctor import CHECKS, Check, Report, run_checks
from flyte_iap.testing import FakeFlyteAdmin, FakeGoogle

AUD = FakeGoogle.IAP_CLIENT_ID


def _statuses(report: Report) -> dict[str, str]:
    return {c.name: c.status for c in report.checks}


def _check(report: Report, name: str) -> Check:
    return next(c for c in report.checks if c.name == name)


def test_healthy_deployment_passes_every_check(make_proxy: ProxyFactory, signed_in: str) -> None:
    proxy = make_proxy()

    report = run_checks(proxy.url, AUD)

    assert [c.name for c in report.checks] == list(CHECKS)
    assert report.ok, report.as_dict()
    assert (
        _check(report, "iap-enforced").detail == "IAP answered HTTP 401: Invalid IAP credentials: empty token"
    )
    assert signed_in in _check(report, "audience").detail
    assert _check(report, "grpc").detail == "flyteadmin answered grpc.health.v1 Check: SERVING"


def test_healthy_tls_deployment_passes_with_its_ca(make_proxy: ProxyFactory, signed_in: str) -> None:
    proxy = make_proxy(tls=True)

    report = run_checks(proxy.url, AUD, ca_cert=proxy.ca_cert_file)

    assert report.ok, report.as_dict()
    assert "HTTP/2 offered" in _check(report, "tls").detail


def test_unresolvable_host_fails_dns_and_skips_the_rest() -> None:
    report = run_checks("https://flyte.x.invalid", AUD, token_provider=lambda: pytest.fail("not reached"))

    assert _statuses(report) == {"dns": "fail", **{name: "skip" for name in list(CHECKS)[1:]}}
    assert "static-ip-dns" in (_check(report, "dns").fix or "")
    assert not report.ok


def test_plain_http_endpoint_that_nothing_answers_names_a_fix_beyond_the_passing_tls_check(
    fake_google: FakeGoogle,
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        endpoint = f"http://127.0.0.1:{sock.getsockname()[1]}"  # bound, not listening: refused

        report = run_checks(endpoint, AUD, token_provider=lambda: fake_google.mint_id_token(AUD), timeout=2)

    assert _check(report, "tls").status == "pass"
    for name in ("iap-enforced", "iap-accepts"):
        check = _check(report, name)
        assert check.status == "fail"
        assert f"check that {endpoint} is the load balancer's address" in (check.fix or "")


def test_certificate_from_an_untrusted_ca_fails_tls(make_proxy: ProxyFactory, signed_in: str) -> None:
    proxy = make_proxy(tls=True)

    report = run_checks(proxy.url, AUD)

    tls = _check(report, "tls")
    assert tls.status == "fail" and "not trusted" in tls.detail
    assert "--ca-cert" in (tls.fix or "") and "PROVISIONING" in (tls.fix or "")
    assert _statuses(report)["iap-enforced"] == "skip" and _statuses(report)["grpc"] == "skip"


def test_certificate_for_another_host_fails_tls_and_names_its_hosts(
    make_proxy: ProxyFactory, signed_in: str
) -> None:
    proxy = make_proxy(tls=True, tls_hostnames=("flyte.other.example",))

    report = run_checks(f"https://localhost:{proxy.port}", AUD, ca_cert=proxy.ca_cert_file)

    tls = _check(report, "tls")
    assert tls.detail == "the certificate does not name localhost (the certificate names flyte.other.example)"
    assert "ManagedCertificate" in (tls.fix or "")


def test_certificate_about_to_expire_fails_tls_but_later_checks_run(
    make_proxy: ProxyFactory, signed_in: str
) -> None:
    proxy = make_proxy(tls=True, tls_valid_days=3)

    report = run_checks(proxy.url, AUD, ca_cert=proxy.ca_cert_file)

    assert _check(report, "tls").detail == "the certificate for localhost expires in 3 days"
    assert _statuses(report)["grpc"] == "pass"
    assert not report.ok


def test_backend_without_iap_in_front_fails_iap_enforced(make_proxy: ProxyFactory, signed_in: str) -> None:
    proxy = make_proxy(enforce=False)

    report = run_checks(proxy.url, AUD)

    check = _check(report, "iap-enforced")
    assert check.status == "fail"
    assert "IAP is not in front of it" in check.detail
    assert "iap.enabled: true" in (check.fix or "")


def test_token_for_another_audience_is_refused_and_the_fix_names_iaps_client(
    make_proxy: ProxyFactory, fake_google: FakeGoogle
) -> None:
    proxy = make_proxy()
    other = "999-other.apps.googleusercontent.com"

    report = run_checks(proxy.url, other, token_provider=lambda: fake_google.mint_id_token(other))

    accepts = _check(report, "iap-accepts")
    assert accepts.status == "fail"
    assert "JWT audience doesn't match this application" in accepts.detail
    assert accepts.fix is not None and f"--audience {AUD}" in accepts.fix
    assert _statuses(report)["audience"] == "pass"  # the token is what was asked for; IAP wants another


def test_user_without_access_gets_the_iam_binding_to_add(make_proxy: ProxyFactory, signed_in: str) -> None:
    proxy = make_proxy(allowed=[])

    report = run_checks(proxy.url, AUD)

    accepts = _check(report, "iap-accepts")
    assert accepts.detail == "IAP refused the token: HTTP 403: Access denied"
    assert f"--member=user:{signed_in} --role=roles/iap.httpsResourceAccessor" in (accepts.fix or "")


def test_grpc_backend_down_fails_only_the_grpc_check(
    make_proxy: ProxyFactory, admin: FakeFlyteAdmin, signed_in: str
) -> None:
    proxy = make_proxy()
    admin.stop_grpc()

    report = run_checks(proxy.url, AUD, timeout=5)

    assert [c.name for c in report.checks if c.status != "pass"] == ["grpc"]
    grpc_check = _check(report, "grpc")
    assert grpc_check.detail == "gRPC through IAP did not reach flyteadmin (HTTP 502)"
    assert "cloud.google.com/app-protocols" in (grpc_check.fix or "")


def test_no_sign_in_fails_the_token_check_with_the_login_command(make_proxy: ProxyFactory) -> None:
    proxy = make_proxy()

    report = run_checks(proxy.url, AUD)

    token = _check(report, "token")
    assert token.status == "fail"
    assert "flyte-iap login" in (token.fix or "")
    assert _statuses(report) == {
        "dns": "pass",
        "tls": "pass",
        "iap-enforced": "pass",
        "token": "fail",
        "audience": "skip",
        "iap-accepts": "skip",
        "grpc": "skip",
    }


def test_no_sign_in_in_a_terminal_says_doctor_does_not_sign_in_not_that_there_is_no_terminal(
    make_proxy: ProxyFactory, in_a_terminal: None
) -> None:
    proxy = make_proxy()

    report = run_checks(proxy.url, AUD)

    token = _check(report, "token")
    assert token.status == "fail"
    assert token.detail == (
        f"not signed in for audience {AUD}: no login stored; "
        "doctor does not sign in (it never opens a browser)"
    )
    assert token.fix == (
        f"sign in, then run doctor again: flyte-iap login --audience {AUD} --client-id <DESKTOP_CLIENT_ID> "
        "--client-secrets-file <DESKTOP_CLIENT_JSON>"
    )


def test_missing_grpcio_fails_the_grpc_check_with_the_extra_to_install(
    make_proxy: ProxyFactory, signed_in: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    proxy = make_proxy()
    monkeypatch.setitem(sys.modules, "grpc", None)

    report = run_checks(proxy.url, AUD)

    grpc_check = _check(report, "grpc")
    assert grpc_check.status == "fail"
    assert "pip install 'grpcio>=1.62' (flyte-iap's [doctor] extra)" in (grpc_check.fix or "")


def _doctor(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "flyte_iap", "doctor", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=dict(os.environ),
        stdin=subprocess.DEVNULL,
    )


def test_cli_prints_one_line_per_check_and_exits_0_when_all_pass(
    make_proxy: ProxyFactory, signed_in: str
) -> None:
    proxy = make_proxy()

    result = _doctor("--endpoint", proxy.url, "--audience", AUD)

    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert [line.split()[:2] for line in lines] == [["PASS", name] for name in CHECKS]
    assert result.stderr.strip() == "7/7 checks passed"


def test_cli_service_account_mode_and_json_report_exit_1_on_failure(
    make_proxy: ProxyFactory, fake_google: FakeGoogle
) -> None:
    # the metadata server's account has access; the load balancer has no gRPC backend
    proxy = make_proxy(grpc_upstream=None)

    result = _doctor("--endpoint", proxy.url, "--audience", AUD, "--service-account", "--format", "json")

    assert result.returncode == 1
    report = json.loads(result.stdout)
    assert report["ok"] is False
    statuses = {c["name"]: c["status"] for c in report["checks"]}
    assert statuses == {**{name: "pass" for name in CHECKS}, "grpc": "fail"}
    assert fake_google.metadata_service_account in report["checks"][4]["detail"]
    assert report["checks"][6]["fix"]


def test_cli_text_shows_the_fix_under_a_failed_check(make_proxy: ProxyFactory, signed_in: str) -> None:
    proxy = make_proxy(enforce=False)

    result = _doctor("--endpoint", proxy.url, "--audience", AUD)

    assert result.returncode == 1
    lines = result.stdout.splitlines()
    index = next(i for i, line in enumerate(lines) if line.startswith("FAIL  iap-enforced"))
    assert lines[index + 1].lstrip().startswith("fix: turn IAP on for the backend service")
