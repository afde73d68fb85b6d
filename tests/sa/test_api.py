"""The Python API behind `flyte-iap sa-token`: get_service_account_id_token, discovery and cache keys."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from google.auth.compute_engine import _metadata
from helpers.sa import CI_SA, DEPLOYER_SA, claims, write_json

import flyte_iap
from flyte_iap import service_account
from flyte_iap.cache import TokenCache
from flyte_iap.errors import ConfigurationError, CredentialsError, PermissionDeniedError
from flyte_iap.testing import FakeGoogle


def test_public_api_returns_a_cached_token_for_the_key_file(
    fake_google: FakeGoogle, aud: str, key_file: Path, no_metadata: None
) -> None:
    token = flyte_iap.get_service_account_id_token(aud, key_file=key_file)
    fake_google.clear_requests()

    assert flyte_iap.get_service_account_id_token(aud, key_file=str(key_file)) == token
    assert claims(token)["email"] == CI_SA
    assert fake_google.requests == []


def test_metadata_host_is_read_when_called_not_when_google_auth_was_imported(
    fake_google: FakeGoogle, aud: str
) -> None:
    # google-auth froze GCE_METADATA_HOST at import, long before the fixture pointed it at the fake.
    assert fake_google.env["GCE_METADATA_HOST"] != _metadata._GCE_METADATA_HOST

    token = flyte_iap.get_service_account_id_token(aud)

    assert claims(token)["email"] == fake_google.metadata_service_account


def test_custom_cache_directory_is_used(fake_google: FakeGoogle, aud: str, tmp_path: Path) -> None:
    cache = TokenCache(tmp_path / "elsewhere")

    token = flyte_iap.get_service_account_id_token(aud, cache=cache)

    assert cache.read("sa", aud, "metadata")["id_token"] == token
    assert TokenCache().read("sa", aud, "metadata") is None


def test_errors_are_flyte_iap_exceptions(
    fake_google: FakeGoogle, aud: str, key_file: Path, user_adc: Path, no_metadata: None
) -> None:
    with pytest.raises(CredentialsError, match="user credentials"):
        flyte_iap.get_service_account_id_token(aud)
    fake_google.allow_impersonation("nobody@fake-project.iam.gserviceaccount.com", DEPLOYER_SA)
    with pytest.raises(PermissionDeniedError, match="HTTP 403"):
        flyte_iap.get_service_account_id_token(
            aud, key_file=key_file, impersonate_service_account=DEPLOYER_SA
        )
    with pytest.raises(ConfigurationError):
        flyte_iap.get_service_account_id_token(" ")
    with pytest.raises(ConfigurationError):
        flyte_iap.get_service_account_id_token(aud, min_valid=-1)


def test_cached_token_never_touches_the_network_and_doubts_are_misses(
    fake_google: FakeGoogle, aud: str, isolated_env: Path
) -> None:
    assert service_account.cached_token(aud) is None
    token = flyte_iap.get_service_account_id_token(aud)
    fake_google.clear_requests()

    assert service_account.cached_token(aud) == token
    assert service_account.cached_token(aud, min_valid=4000) is None
    assert service_account.cached_token(aud, min_valid=-1) is None
    assert service_account.cached_token("other-audience") is None
    (isolated_env / "sa-garbage.json").write_text("{")
    cache = TokenCache()
    cache.path("sa", aud, "metadata").write_text("{")
    assert service_account.cached_token(aud, cache=cache) is None
    assert cache.warnings
    assert fake_google.requests == []


def test_discovery_order_key_file_then_env_then_adc_then_metadata(
    fake_google: FakeGoogle, key_file: Path, user_adc: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env_file = write_json(tmp_path / "env.json", fake_google.add_service_account(DEPLOYER_SA))
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(env_file))

    assert service_account.find_credentials(key_file).path == str(key_file)
    assert service_account.find_credentials().path == str(env_file)
    monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS")
    assert service_account.find_credentials().path == str(user_adc)
    user_adc.unlink()
    source = service_account.find_credentials()
    assert source.info is None and source.type == "metadata"
    assert len(source.tried) == 3


def test_adc_path_follows_cloudsdk_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from google.auth import _cloud_sdk

    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path / "gcloud"))
    assert service_account.adc_file_path() == _cloud_sdk.get_application_default_credentials_path()
    monkeypatch.delenv("CLOUDSDK_CONFIG")
    assert service_account.adc_file_path() == _cloud_sdk.get_application_default_credentials_path()


@pytest.mark.parametrize(
    ("info", "impersonate", "principal"),
    [
        (None, None, "metadata"),
        (None, "Deployer@P.iam.gserviceaccount.com", "deployer@p.iam.gserviceaccount.com"),
        ({"type": "service_account", "client_email": CI_SA}, None, CI_SA),
        ({"type": "service_account", "client_email": CI_SA}, DEPLOYER_SA, DEPLOYER_SA),
        (
            {
                "type": "impersonated_service_account",
                "service_account_impersonation_url": f"https://x/v1/projects/-/serviceAccounts/{DEPLOYER_SA}"
                ":generateAccessToken",
            },
            None,
            DEPLOYER_SA,
        ),
        (
            {
                "type": "external_account",
                "service_account_impersonation_url": f"https://x/v1/projects/-/serviceAccounts/{CI_SA}"
                ":generateAccessToken",
            },
            None,
            CI_SA,
        ),
        ({"type": "authorized_user"}, DEPLOYER_SA, DEPLOYER_SA),
    ],
)
def test_principal_is_the_service_account_the_token_is_for(
    info: dict[str, str] | None, impersonate: str | None, principal: str
) -> None:
    source = service_account.CredentialSource("test", "f.json" if info else None, info)

    assert service_account.principal_for(source, impersonate) == principal


@pytest.mark.parametrize(
    "info",
    [
        {"type": "authorized_user"},
        {"type": "external_account_authorized_user"},
        {"type": "external_account", "audience": "//pool"},
        {"type": "service_account"},
    ],
)
def test_credentials_that_name_no_service_account_have_no_principal(info: dict[str, str]) -> None:
    with pytest.raises(CredentialsError):
        service_account.principal_for(service_account.CredentialSource("test", "f.json", info))


def test_unsupported_credentials_type_is_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_json(tmp_path / "gdch.json", {"type": "gdch_service_account"})
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(path))

    with pytest.raises(CredentialsError, match="unsupported credentials type 'gdch_service_account'"):
        service_account.find_credentials()


def test_source_repr_never_shows_the_key(key_file: Path) -> None:
    source = service_account.find_credentials(key_file)

    assert "PRIVATE" not in repr(source)
    assert json.loads(key_file.read_text())["private_key"] == source.info["private_key"]  # type: ignore[index]
