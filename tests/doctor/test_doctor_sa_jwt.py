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


def _sa_jwt_config(tmp_path: Path, endpoint: str, command: list[str]) -> Path:
    """A client config as flyte-iap config writes it, with ``command`` as its proxy command."""
    import yaml

    config = tmp_path / "config.yaml"
    data = yaml.safe_load(render(ClientConfig(endpoint=endpoint, audience="", mode="service-account-jwt")))
    data["admin"]["proxyCommand"] = command
    config.write_text(yaml.safe_dump(data))
    return config


def test_doctor_signs_for_the_url_of_the_configs_proxy_command_as_the_client_does(
    managed_iap: IapProxy, ci_key: Path, tmp_path: Path
) -> None:
    """A --url that is not the app's (another host) is what the client sends: doctor must show IAP's
    refusal of it, not pass with a JWT of its own for the endpoint."""
    command = ["flyte-iap", "sa-jwt", "--url", "https://flyte-dev.example.com"]
    config = _sa_jwt_config(tmp_path, managed_iap.url, command)

    result = _doctor("--config", str(config), key=ci_key)

    assert result.returncode == 1, result.stdout + result.stderr
    assert "the signed JWT's URL https://flyte-dev.example.com" in result.stderr
    accepts = next(line for line in result.stdout.splitlines() if line.startswith("FAIL  iap-accepts"))
    assert "service account JWT audience (https://flyte-dev.example.com/*)" in accepts


@pytest.mark.parametrize(
    ("command", "message"),
    [
        (["flyte-iap", "sa-jwt"], "the proxy command `flyte-iap sa-jwt` has no --url"),
        (["flyte-iap", "sa-jwt", "--url"], "the proxy command `flyte-iap sa-jwt` has no --url"),
        (["flyte-iap", "sa-jwt", "--url="], "the proxy command `flyte-iap sa-jwt` has no --url"),
        (["flyte-iap", "sa-jwt", "--url", "flyte.example.com"], "--url 'flyte.example.com' is not the URL"),
        (["flyte-iap", "sa-jwt", "--profile", "ci"], "takes its settings from profile 'ci'"),
    ],
)
def test_a_sa_jwt_proxy_command_that_cannot_work_is_an_error_naming_the_file_not_a_pass(
    command: list[str], message: str, managed_iap: IapProxy, ci_key: Path, tmp_path: Path
) -> None:
    config = _sa_jwt_config(tmp_path, managed_iap.url, command)

    result = _doctor("--config", str(config), key=ci_key)

    assert result.returncode == 2, result.stdout + result.stderr
    first, second = result.stderr.splitlines()[-2:]
    assert first.startswith(f"error: {config}: ") and message in first, first
    assert second.startswith("hint: "), second
    assert result.stdout == ""


def test_flyte_iap_url_stands_in_for_a_missing_url_as_it_does_for_the_command(
    managed_iap: IapProxy, ci_key: Path, tmp_path: Path
) -> None:
    config = _sa_jwt_config(tmp_path, managed_iap.url, ["flyte-iap", "sa-jwt"])

    result = subprocess.run(
        [sys.executable, "-m", "flyte_iap", "doctor", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "GOOGLE_APPLICATION_CREDENTIALS": str(ci_key), "FLYTE_IAP_URL": managed_iap.url},
        stdin=subprocess.DEVNULL,
    )

    assert result.returncode == 0, result.stdout + result.stderr


def test_an_audience_in_the_environment_does_not_turn_a_jwt_check_into_an_id_token_check(
    managed_iap: IapProxy, ci_key: Path, tmp_path: Path
) -> None:
    """FLYTE_IAP_AUDIENCE, set for other commands, is not an --audience given to doctor."""
    config = _sa_jwt_config(tmp_path, managed_iap.url, ["flyte-iap", "sa-jwt", "--url", managed_iap.url])
    env = {**os.environ, "GOOGLE_APPLICATION_CREDENTIALS": str(ci_key), "FLYTE_IAP_AUDIENCE": "some-client"}
    for args in (["--config", str(config)], ["--endpoint", managed_iap.url, "--service-account-jwt"]):
        result = subprocess.run(
            [sys.executable, "-m", "flyte_iap", "doctor", *args],
            capture_output=True,
            text=True,
            timeout=120,
            env=env,
            stdin=subprocess.DEVNULL,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        assert "minted a service account signed JWT" in result.stdout
        assert "warning: FLYTE_IAP_AUDIENCE is not used" in result.stderr


def test_a_jwt_for_one_path_fails_the_audience_check_since_grpc_calls_other_paths(
    managed_iap: IapProxy, ci_key: Path
) -> None:
    report = run_checks(
        managed_iap.url,
        None,
        service_account_jwt=True,
        jwt_url=managed_iap.url + "/healthcheck",
        key_file=str(ci_key),
    )

    audience = _check(report, "audience")
    assert audience.status == "fail" and "names one path of the app" in audience.detail
    assert "without a path" in (audience.fix or "")


def test_a_jwt_signed_with_a_key_iap_does_not_know_gets_the_key_fix_not_a_google_signature_one(
    managed_iap: IapProxy, fake_google: FakeGoogle
) -> None:
    import time

    import jwt as pyjwt
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    from flyte_iap.signed_jwt import jwt_audience

    unknown = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = unknown.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    now = int(time.time())
    claims = {"iss": CI_SA, "sub": CI_SA, "aud": jwt_audience(managed_iap.url), "iat": now, "exp": now + 3600}
    forged = pyjwt.encode(claims, pem, algorithm="RS256", headers={"kid": "deleted-key"})
    fake_google.add_service_account(CI_SA)

    report = run_checks(managed_iap.url, None, service_account_jwt=True, token_provider=lambda: forged)

    accepts = _check(report, "iap-accepts")
    assert accepts.status == "fail" and "signature is invalid" in accepts.detail
    assert (accepts.fix or "").startswith(
        "IAP could not verify the JWT with the service account's public keys"
    )


def test_client_id_does_not_go_with_a_signed_jwt(managed_iap: IapProxy, ci_key: Path) -> None:
    result = _doctor(
        "--endpoint", managed_iap.url, "--service-account-jwt", "--client-id", "desktop-client", key=ci_key
    )
    assert result.returncode == 2
    assert "error: --client-id (a Desktop OAuth client) is for user mode" in result.stderr


@pytest.mark.parametrize(
    "endpoint",
    ["127.0.0.1:443", "dns:///127.0.0.1:8443", "http://127.0.0.1:80", "https://[::1]", "[::1]:8443"],
)
def test_doctor_signs_for_the_url_flyte_iap_config_writes_into_the_proxy_command(endpoint: str) -> None:
    from flyte_iap.client_config import proxy_command
    from flyte_iap.signed_jwt import jwt_audience

    written = proxy_command(ClientConfig(endpoint=endpoint, audience="", mode="service-account-jwt"))
    report = run_checks(endpoint, None, service_account_jwt=True, timeout=0.5, token_provider=lambda: "x.y.z")

    assert report.audience == jwt_audience(written[written.index("--url") + 1])
