"""Audience discovery reads the client_id of IAP's sign-in redirect and picks the audience per OAuth setup;
token output formats."""

from __future__ import annotations

import datetime
import json
import os
import subprocess
import sys

import pytest
import yaml
from helpers import ProxyFactory

from flyte_iap.discovery import choose_audience, discover_client_id
from flyte_iap.errors import ConfigurationError, TransportError
from flyte_iap.idtoken import decode_claims
from flyte_iap.testing import FakeGoogle

MANAGED = "999999999999-googlemanagedfakeclient.apps.googleusercontent.com"


def test_custom_client_is_found_and_is_the_audience(
    make_proxy: ProxyFactory, fake_google: FakeGoogle
) -> None:
    proxy = make_proxy()

    found = discover_client_id(proxy.url)

    assert found == fake_google.IAP_CLIENT_ID
    assert choose_audience(found, fake_google.DESKTOP_CLIENT_ID) == (fake_google.IAP_CLIENT_ID, "custom")


def test_managed_client_from_another_project_sends_the_desktop_client_to_the_allowlist(
    make_proxy: ProxyFactory, fake_google: FakeGoogle
) -> None:
    proxy = make_proxy(google_managed=True)
    proxy.audience = MANAGED

    found = discover_client_id(proxy.url)

    assert found == MANAGED
    assert choose_audience(found, fake_google.DESKTOP_CLIENT_ID) == (
        fake_google.DESKTOP_CLIENT_ID,
        "allowlisted-desktop",
    )


def test_an_app_without_iap_is_a_configuration_error_naming_the_status(make_proxy: ProxyFactory) -> None:
    proxy = make_proxy(enforce=False)

    with pytest.raises(ConfigurationError, match=r"did not redirect to Google's sign-in page \(HTTP "):
        discover_client_id(proxy.url)


def test_an_unreachable_endpoint_is_a_transport_error() -> None:
    with pytest.raises(TransportError, match=r"cannot reach http://127\.0\.0\.1:9/"):
        discover_client_id("http://127.0.0.1:9", timeout=2)


@pytest.mark.parametrize("endpoint", ["ftp://x", "https://", "dns:///"])
def test_a_malformed_endpoint_is_a_configuration_error(endpoint: str) -> None:
    with pytest.raises(ConfigurationError):
        discover_client_id(endpoint)


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "flyte_iap", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=dict(os.environ),
        stdin=subprocess.DEVNULL,
    )


def test_doctor_without_audience_checks_with_the_audience_iap_names(
    make_proxy: ProxyFactory, fake_google: FakeGoogle, signed_in: str
) -> None:
    proxy = make_proxy()

    result = _cli("doctor", "--endpoint", proxy.url)

    assert result.returncode == 0, result.stdout + result.stderr
    assert (
        result.stderr.splitlines()[0]
        == f"audience {fake_google.IAP_CLIENT_ID} (custom), from IAP's sign-in redirect"
    )


def test_config_without_audience_writes_the_audience_iap_names(
    make_proxy: ProxyFactory, fake_google: FakeGoogle
) -> None:
    proxy = make_proxy()

    result = _cli("config", "--endpoint", proxy.url, "--client-id", fake_google.DESKTOP_CLIENT_ID)

    admin = yaml.safe_load(result.stdout)["admin"]
    assert admin["proxyCommand"][:4] == ["flyte-iap", "token", "--audience", fake_google.IAP_CLIENT_ID]


@pytest.mark.parametrize("fast", [None, "1"], ids=["fast-path", "click"])
def test_token_format_json_and_exec_credential_carry_the_token_and_its_expiry(
    fake_google: FakeGoogle, signed_in: str, fast: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    if fast:
        monkeypatch.setenv("FLYTE_IAP_NO_FAST_PATH", fast)
    bare = _cli("token", "--audience", fake_google.IAP_CLIENT_ID).stdout.strip()

    as_json = json.loads(_cli("token", "--audience", fake_google.IAP_CLIENT_ID, "--format", "json").stdout)
    as_exec = json.loads(
        _cli("token", "--audience", fake_google.IAP_CLIENT_ID, "--format=exec-credential").stdout
    )

    expiry = datetime.datetime.fromtimestamp(decode_claims(bare)["exp"], datetime.UTC)
    assert as_json == {"token": bare, "expiry": expiry.strftime("%Y-%m-%dT%H:%M:%SZ")}
    assert as_exec == {
        "apiVersion": "client.authentication.k8s.io/v1",
        "kind": "ExecCredential",
        "status": {"token": bare, "expirationTimestamp": as_json["expiry"]},
    }
