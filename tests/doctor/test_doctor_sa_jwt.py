"""`flyte-iap doctor --service-account-jwt`: a deployment reached with `flyte-iap sa-jwt`, checked as such.

Apps on the Google-managed OAuth client give service accounts no ID-token access; their way in is a
signed JWT whose audience is the app's URL. doctor mints one as the proxy command would and checks it
through IAP (the emulator accepts such JWTs as flyte_iap/testing/iap_proxy.py documents).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import ProxyFactory

from flyte_iap.client_config import ClientConfig, render
from flyte_iap.doctor import CHECKS, Check, Report, run_checks
from flyte_iap.errors import ConfigurationError
from flyte_iap.testing import FakeGoogle, IapProxy

CI_SA = "flyte-ci@fake-project.iam.gserviceaccount.com"


def _check(report: Report, name: str) -> Check:
    return next(c for c in report.checks if c.name == name)


def _doctor(*args: str, key: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "flyte_iap", "doctor", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "GOOGLE_APPLICATION_CREDENTIALS": str(key)},
        stdin=subprocess.DEVNULL,
    )


@pytest.fixture
def managed_iap(make_proxy: ProxyFactory, fake_google: FakeGoogle) -> IapProxy:
    """An app on the Google-managed client: the CI service account may get in, with a signed JWT only."""
    return make_proxy(google_managed=True, allowed=[f"serviceAccount:{CI_SA}"])


@pytest.fixture
def ci_key(fake_google: FakeGoogle, tmp_path: Path) -> Iterator[Path]:
    key = tmp_path / "ci-key.json"
    key.write_text(json.dumps(fake_google.add_service_account(CI_SA)))
    yield key


def test_a_signed_jwt_deployment_passes_every_check_from_the_cli(managed_iap: IapProxy, ci_key: Path) -> None:
    result = _doctor(
        "--endpoint", managed_iap.url, "--service-account-jwt", "--key-file", str(ci_key), key=ci_key
    )

    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert [line.split()[:2] for line in lines] == [["PASS", name] for name in CHECKS]
    assert "minted a service account signed JWT" in result.stdout
    assert f"aud matches the endpoint's URL; the token names {CI_SA}" in result.stdout


def test_doctor_reads_a_client_config_whose_proxy_command_is_sa_jwt(
    managed_iap: IapProxy, ci_key: Path, tmp_path: Path
) -> None:
    """What `flyte-iap config --service-account-jwt` writes has no --audience: doctor used to stop there
    ("has no flyte-iap proxy command to take the audience from")."""
    config = tmp_path / "config.yaml"
    config.write_text(render(ClientConfig(endpoint=managed_iap.url, audience="", mode="service-account-jwt")))

    result = _doctor("--config", str(config), key=ci_key)

    assert result.returncode == 0, result.stdout + result.stderr
    assert f"settings from {config}: endpoint {managed_iap.url}, the signed JWT's URL" in result.stderr
    assert "minted a service account signed JWT" in result.stdout


def test_a_service_account_without_access_gets_the_binding_for_that_account(
    make_proxy: ProxyFactory, ci_key: Path
) -> None:
    proxy = make_proxy(google_managed=True, allowed=[])

    report = run_checks(proxy.url, None, service_account_jwt=True, key_file=str(ci_key))

    accepts = _check(report, "iap-accepts")
    assert accepts.status == "fail" and "HTTP 403" in accepts.detail
    assert f"--member=serviceAccount:{CI_SA}" in (accepts.fix or "")


def test_a_jwt_for_another_url_is_refused_by_iap_and_the_fix_says_to_name_the_apps_url(
    managed_iap: IapProxy, ci_key: Path
) -> None:
    report = run_checks(
        managed_iap.url,
        None,
        service_account_jwt=True,
        jwt_url="https://other.example.com",
        key_file=str(ci_key),
    )

    assert _check(report, "audience").status == "pass"  # it is the JWT of the URL asked for
    accepts = _check(report, "iap-accepts")
    assert accepts.status == "fail" and "service account JWT audience" in accepts.detail
    assert "make it with `flyte-iap sa-jwt --url` and the endpoint's scheme and host only" in (
        accepts.fix or ""
    )


def test_a_refusal_whose_fix_would_speak_of_oauth_clients_gets_the_signed_jwt_fix_instead(
    managed_iap: IapProxy, fake_google: FakeGoogle
) -> None:
    """Here the token IAP gets is a Google ID token (a proxy command that is not sa-jwt): IAP refuses its
    audience as an ID token's, and the usual fix (--audience, programmatic clients) would mislead."""
    report = run_checks(
        managed_iap.url,
        None,
        service_account_jwt=True,
        token_provider=lambda: fake_google.mint_id_token("https://nowhere.example.com/*", email=CI_SA),
    )

    accepts = _check(report, "iap-accepts")
    assert accepts.status == "fail" and "audience doesn't match" in accepts.detail
    assert (accepts.fix or "").startswith("IAP refused the service account's signed JWT: its aud must be")
    assert "--audience" not in (accepts.fix or "")


def test_audience_does_not_go_with_a_signed_jwt(managed_iap: IapProxy, ci_key: Path) -> None:
    with pytest.raises(ConfigurationError, match="--audience does not apply"):
        run_checks(managed_iap.url, FakeGoogle.IAP_CLIENT_ID, service_account_jwt=True)

    result = _doctor(
        "--endpoint",
        managed_iap.url,
        "--service-account-jwt",
        "--audience",
        FakeGoogle.IAP_CLIENT_ID,
        key=ci_key,
    )
    assert result.returncode != 0
    assert result.stderr.startswith("error: --audience does not apply to --service-account-jwt\nhint: ")


def test_signed_jwt_with_sdk_flyte2_is_refused_with_the_way_to_check_it(
    managed_iap: IapProxy, ci_key: Path
) -> None:
    result = _doctor("--endpoint", managed_iap.url, "--service-account-jwt", "--sdk", "flyte2", key=ci_key)

    assert result.returncode != 0
    assert "error: --service-account-jwt is not checked with --sdk flyte2" in result.stderr
    assert "hint: check the signed JWT with --sdk flytekit" in result.stderr
