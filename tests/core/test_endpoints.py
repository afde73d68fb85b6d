"""Every Google URL comes from flyte_iap.endpoints, and each can be overridden from the environment."""

from __future__ import annotations

import pathlib
import re

import pytest

from flyte_iap import endpoints

DEFAULTS = {
    "auth_uri": "https://accounts.google.com/o/oauth2/v2/auth",
    "token_uri": "https://oauth2.googleapis.com/token",
    "revoke_uri": "https://oauth2.googleapis.com/revoke",
    "iamcredentials_uri": "https://iamcredentials.googleapis.com",
    "secretmanager_uri": "https://secretmanager.googleapis.com",
    "sts_uri": "https://sts.googleapis.com",
}
VARIABLES = {
    "auth_uri": "FLYTE_IAP_AUTH_URI",
    "token_uri": "FLYTE_IAP_TOKEN_URI",
    "revoke_uri": "FLYTE_IAP_REVOKE_URI",
    "iamcredentials_uri": "FLYTE_IAP_IAMCREDENTIALS_URI",
    "secretmanager_uri": "FLYTE_IAP_SECRETMANAGER_URI",
    "sts_uri": "FLYTE_IAP_STS_URI",
}


@pytest.mark.parametrize("name", sorted(DEFAULTS))
def test_default_is_googles_documented_endpoint(name: str) -> None:
    assert getattr(endpoints, name)() == DEFAULTS[name]


@pytest.mark.parametrize("name", sorted(DEFAULTS))
def test_override_is_read_at_call_time_and_trailing_slash_dropped(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(VARIABLES[name], "https://psc.internal.example/x/")
    assert getattr(endpoints, name)() == "https://psc.internal.example/x"
    monkeypatch.setenv(VARIABLES[name], "   ")
    assert getattr(endpoints, name)() == DEFAULTS[name]


def test_derived_urls_follow_their_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLYTE_IAP_IAMCREDENTIALS_URI", "http://127.0.0.1:1")
    monkeypatch.setenv("FLYTE_IAP_SECRETMANAGER_URI", "http://127.0.0.1:2")
    monkeypatch.setenv("FLYTE_IAP_STS_URI", "http://127.0.0.1:3")
    assert (
        endpoints.generate_id_token_url("ci@p.iam.gserviceaccount.com")
        == "http://127.0.0.1:1/v1/projects/-/serviceAccounts/ci@p.iam.gserviceaccount.com:generateIdToken"
    )
    assert (
        endpoints.secret_version_access_url("projects/p/secrets/s/versions/latest")
        == "http://127.0.0.1:2/v1/projects/p/secrets/s/versions/latest:access"
    )
    assert endpoints.sts_token_url() == "http://127.0.0.1:3/v1/token"


def test_metadata_host_follows_google_auth_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GCE_METADATA_HOST", raising=False)
    monkeypatch.delenv("GCE_METADATA_ROOT", raising=False)
    assert endpoints.metadata_host() == "metadata.google.internal"
    monkeypatch.setenv("GCE_METADATA_ROOT", "10.0.0.1")
    assert endpoints.metadata_host() == "10.0.0.1"
    monkeypatch.setenv("GCE_METADATA_HOST", "127.0.0.1:8080")
    assert endpoints.metadata_host() == "127.0.0.1:8080"


def test_metadata_addresses_follow_google_auth_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GCE_METADATA_HOST", raising=False)
    monkeypatch.delenv("GCE_METADATA_ROOT", raising=False)
    monkeypatch.delenv("GCE_METADATA_IP", raising=False)
    assert endpoints.metadata_root() == "http://metadata.google.internal/computeMetadata/v1/"
    assert endpoints.metadata_ip() == "169.254.169.254"
    monkeypatch.setenv("GCE_METADATA_HOST", "127.0.0.1:8080")
    monkeypatch.setenv("GCE_METADATA_IP", "127.0.0.1:8081")
    assert endpoints.metadata_root() == "http://127.0.0.1:8080/computeMetadata/v1/"
    assert endpoints.metadata_ip() == "127.0.0.1:8081"


def test_no_other_core_module_spells_out_a_google_url() -> None:
    package = pathlib.Path(endpoints.__file__).parent
    offenders = []
    for path in package.rglob("*.py"):
        if path.name == "endpoints.py" or "testing" in path.parts:
            continue
        for lineno, line in enumerate(path.read_text().splitlines(), 1):
            if re.search(
                r"https?://[a-z0-9.-]*(googleapis\.com|google\.com|google\.internal)|169\.254\.169\.254"
                r"|/computeMetadata/",
                line,
            ):
                offenders.append(f"{path.name}:{lineno}")
    assert offenders == []
