"""`flyte-iap sa-jwt`: service-account signed JWTs for IAP, from every credential source, cached."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import requests
from google.auth import jwt as google_jwt
from helpers.sa import CI_SA, DEPLOYER_SA, Runner, error_lines, stdout_token

from flyte_iap.errors import ConfigurationError, PermissionDeniedError
from flyte_iap.signed_jwt import LIFETIME, get_service_account_jwt, jwt_audience
from flyte_iap.testing import FakeGoogle

URL = "https://flyte.example.com"
HEAVY = ("google", "requests", "urllib3", "click", "yaml", "keyring", "cryptography")


@pytest.fixture
def sa_jwt(run_sa: Runner) -> Runner:
    def run(*args: str, **env: str | None) -> subprocess.CompletedProcess[str]:
        return run_sa("sa-jwt", "--url", URL, *args, **env)

    return run


def _verified(google: FakeGoogle, token: str, email: str) -> dict[str, object]:
    certs = requests.get(google.service_account_keys_url(email), timeout=10).json()
    return google_jwt.decode(token, certs=certs, audience=f"{URL}/*")


@pytest.mark.parametrize(
    ("url", "audience"),
    [
        ("https://flyte.example.com", "https://flyte.example.com/*"),
        ("https://flyte.example.com/", "https://flyte.example.com/*"),
        ("https://flyte.example.com/api/v1/projects", "https://flyte.example.com/api/v1/projects"),
        ("https://flyte.example.com/api/*", "https://flyte.example.com/api/*"),
    ],
)
def test_audience_is_the_apps_url_with_every_path_unless_a_path_is_given(url: str, audience: str) -> None:
    assert jwt_audience(url) == audience


@pytest.mark.parametrize("url", ["flyte.example.com", "ftp://flyte.example.com", "https://", "https://a b"])
def test_a_value_that_is_not_an_apps_url_is_a_configuration_error(url: str) -> None:
    with pytest.raises(ConfigurationError):
        jwt_audience(url)


def test_key_file_signs_locally_with_the_claims_iap_requires(
    fake_google: FakeGoogle, sa_jwt: Runner, key_file: Path, no_metadata: None
) -> None:
    token = stdout_token(sa_jwt("--key-file", str(key_file)))

    verified = _verified(fake_google, token, CI_SA)
    assert (verified["iss"], verified["sub"], verified["aud"]) == (CI_SA, CI_SA, f"{URL}/*")
    assert verified["exp"] - verified["iat"] == LIFETIME
    assert fake_google.requests_to("/v1/projects") == []  # no IAM Credentials call


def test_user_credentials_sign_through_iam_credentials_for_the_impersonated_account(
    fake_google: FakeGoogle, sa_jwt: Runner, user_adc: Path, no_metadata: None
) -> None:
    fake_google.allow_impersonation(fake_google.user_email, DEPLOYER_SA)

    token = stdout_token(sa_jwt("--impersonate-service-account", DEPLOYER_SA))

    assert _verified(fake_google, token, DEPLOYER_SA)["sub"] == DEPLOYER_SA
    (call,) = fake_google.requests_to(f"/v1/projects/-/serviceAccounts/{DEPLOYER_SA}:signJwt")
    assert json.loads(call.json["payload"])["aud"] == f"{URL}/*"


def test_federated_identity_signs_for_the_account_its_file_names(
    fake_google: FakeGoogle, sa_jwt: Runner, wif_file: Path, no_metadata: None
) -> None:
    token = stdout_token(sa_jwt(GOOGLE_APPLICATION_CREDENTIALS=str(wif_file)))

    assert _verified(fake_google, token, CI_SA)["iss"] == CI_SA


def test_metadata_server_account_signs_for_itself(fake_google: FakeGoogle, sa_jwt: Runner) -> None:
    account = fake_google.metadata_service_account
    fake_google.allow_impersonation(account, account)

    token = stdout_token(sa_jwt())

    assert _verified(fake_google, token, account)["iss"] == account


def test_missing_token_creator_role_names_the_role_and_the_grant_command(
    fake_google: FakeGoogle, sa_jwt: Runner, user_adc: Path, no_metadata: None
) -> None:
    fake_google.add_service_account(DEPLOYER_SA)

    error, hint = error_lines(sa_jwt("--impersonate-service-account", DEPLOYER_SA))

    assert "may not sign JWTs for " + DEPLOYER_SA in error and "HTTP 403" in error
    assert hint == (
        f"hint: gcloud iam service-accounts add-iam-policy-binding {DEPLOYER_SA} "
        f"--role=roles/iam.serviceAccountTokenCreator --member=user:{fake_google.user_email}"
    )


def test_sign_jwt_answer_without_a_signed_jwt_is_an_error_not_output(
    fake_google: FakeGoogle, sa_jwt: Runner, user_adc: Path, no_metadata: None
) -> None:
    fake_google.allow_impersonation(fake_google.user_email, DEPLOYER_SA)
    fake_google.malformed_next(path="/v1/projects/-/serviceAccounts/")

    result = sa_jwt("--impersonate-service-account", DEPLOYER_SA)

    error, hint = error_lines(result)
    assert result.stdout == ""
    assert "iamcredentials signJwt answered HTTP 200 without a signed JWT" in error
    assert "FLYTE_IAP_IAMCREDENTIALS_URI" in hint


def test_signing_for_an_account_that_does_not_exist_names_it(
    fake_google: FakeGoogle, sa_jwt: Runner, user_adc: Path, no_metadata: None
) -> None:
    missing = "nobody@fake-project.iam.gserviceaccount.com"

    error, hint = error_lines(sa_jwt("--impersonate-service-account", missing))

    assert f"service account {missing} does not exist (iamcredentials answered HTTP 404)" in error
    assert "gcloud iam service-accounts list" in hint


def test_jwt_is_cached_and_a_warm_run_makes_no_request_and_loads_nothing_heavy(
    fake_google: FakeGoogle, run_sa: Runner, user_adc: Path, no_metadata: None
) -> None:
    fake_google.allow_impersonation(fake_google.user_email, DEPLOYER_SA)
    args = ["sa-jwt", "--url", URL, "--impersonate-service-account", DEPLOYER_SA]
    token = stdout_token(run_sa(*args))
    fake_google.clear_requests()
    probe = (
        "import sys\n"
        f"sys.argv = ['flyte-iap', *{args!r}]\n"
        "from flyte_iap._entry import main\n"
        "main()\n"
        f"loaded = sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r})\n"
        "sys.stderr.write(repr(loaded))\n"
    )

    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)

    assert (result.returncode, result.stdout, result.stderr) == (0, token + "\n", "[]")
    assert fake_google.requests == []


def test_cached_jwt_is_reused_until_the_server_rejects_it(
    key_file: Path, no_metadata: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flyte_iap import signed_jwt

    minted: list[str] = []
    real_mint = signed_jwt._mint
    monkeypatch.setattr(signed_jwt, "_mint", lambda *a: minted.append(real_mint(*a)) or minted[-1])
    first = get_service_account_jwt(URL, key_file=key_file)

    again = get_service_account_jwt(URL, key_file=key_file)
    get_service_account_jwt(URL, key_file=key_file, rejected_token=first)

    assert again == first
    assert len(minted) == 2


def test_min_valid_at_or_over_the_lifetime_is_refused(key_file: Path, no_metadata: None) -> None:
    with pytest.raises(ConfigurationError, match="JWT lifetime"):
        get_service_account_jwt(URL, key_file=key_file, min_valid=LIFETIME)


def test_permission_error_from_the_library_is_a_permission_denied_error(
    fake_google: FakeGoogle, user_adc: Path, no_metadata: None
) -> None:
    fake_google.add_service_account(DEPLOYER_SA)

    with pytest.raises(PermissionDeniedError):
        get_service_account_jwt(URL, impersonate_service_account=DEPLOYER_SA)


@pytest.mark.parametrize("fmt", ["json", "exec-credential"])
def test_format_json_and_exec_credential_carry_the_token_and_its_expiry(
    sa_jwt: Runner, key_file: Path, no_metadata: None, fmt: str
) -> None:
    token = stdout_token(sa_jwt("--key-file", str(key_file)))

    for fast in (None, "1"):  # the fast path and click print the same document
        document = json.loads(
            stdout_token(sa_jwt("--key-file", str(key_file), "--format", fmt, FLYTE_IAP_NO_FAST_PATH=fast))
        )
        if fmt == "json":
            assert document["token"] == token
            assert document["expiry"].endswith("Z")
        else:
            assert document["kind"] == "ExecCredential"
            assert document["apiVersion"] == "client.authentication.k8s.io/v1"
            assert document["status"]["token"] == token
