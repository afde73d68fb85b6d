"""Options get the same answer on a warm cache as on a cold one, and nonsense numbers are refused."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers.hostile import Runner

import flyte_iap
from flyte_iap.cache import TokenCache
from flyte_iap.errors import ConfigurationError
from flyte_iap.testing import FakeGoogle

CI_SA = "flyte-ci@fake-project.iam.gserviceaccount.com"


@pytest.mark.parametrize(
    ("args", "env"),
    [
        (["--store", "bogus"], {}),
        (["--port", "abc"], {}),
        (["--port", "70000"], {}),
        (["--timeout", "nan"], {}),
        (["--timeout", "0"], {}),
        (["--min-valid", "nan"], {}),
        (["--min-valid", "inf"], {}),
        (["--min-valid", "-1"], {}),
        ([], {"FLYTE_IAP_STORE": "bogus"}),
        ([], {"FLYTE_IAP_PORT": "abc"}),
        ([], {"FLYTE_IAP_MIN_VALID": "nan"}),
        ([], {"FLYTE_IAP_NO_BROWSER": "maybe"}),
    ],
    ids=lambda value: (
        " ".join(value) if isinstance(value, list) else ",".join(f"{k}={v}" for k, v in value.items())
    ),
)
def test_a_bad_token_option_exits_2_on_a_warm_cache_as_on_a_cold_one(
    cli: Runner,
    fake_google: FakeGoogle,
    warm_user: str,
    isolated_env: Path,
    args: list[str],
    env: dict[str, str],
) -> None:
    warm = cli("token", "--audience", fake_google.IAP_CLIENT_ID, *args, **env)
    TokenCache(isolated_env).delete("user", fake_google.IAP_CLIENT_ID)
    cold = cli("token", "--audience", fake_google.IAP_CLIENT_ID, *args, **env)

    assert cold.returncode == 2, cold.stderr
    assert (warm.returncode, warm.stdout, warm.stderr) == (cold.returncode, cold.stdout, cold.stderr)
    assert warm_user not in warm.stdout


def test_a_client_secrets_file_that_is_a_directory_exits_2_on_a_warm_cache(
    cli: Runner, fake_google: FakeGoogle, warm_user: str, tmp_path: Path
) -> None:
    result = cli("token", "--audience", fake_google.IAP_CLIENT_ID, "--client-secrets-file", str(tmp_path))

    assert result.returncode == 2, result.stderr
    assert result.stdout == ""


def test_the_old_plugin_command_requires_its_options_on_a_warm_cache_too(
    cli: Runner, fake_google: FakeGoogle, warm_user: str
) -> None:
    result = cli(
        "generate-user-id-token",
        "--webapp_client_id",
        fake_google.IAP_CLIENT_ID,
        "--desktop_client_id",
        fake_google.DESKTOP_CLIENT_ID,
    )

    assert result.returncode == 2, result.stderr
    assert "--desktop_client_secret_gcp_secret_name" in result.stderr


@pytest.mark.parametrize("value", ["nan", "inf", "-5"])
def test_sa_token_refuses_a_nonsense_min_valid_on_a_warm_cache(
    cli: Runner, fake_google: FakeGoogle, isolated_env: Path, value: str
) -> None:
    token = fake_google.mint_id_token(fake_google.IAP_CLIENT_ID, email=CI_SA)
    TokenCache(isolated_env).write("sa", fake_google.IAP_CLIENT_ID, CI_SA, {"id_token": token})

    result = cli(
        "sa-token",
        "--audience",
        fake_google.IAP_CLIENT_ID,
        "--impersonate-service-account",
        CI_SA,
        "--min-valid",
        value,
    )

    assert result.returncode == 2, result.stderr
    assert result.stdout == ""
    assert "finite number of seconds" in result.stderr or "-5" in result.stderr


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -1.0])
def test_min_valid_nan_never_returns_an_expired_token_when_google_is_unreachable(
    fake_google: FakeGoogle, signed_in: str, isolated_env: Path, monkeypatch: pytest.MonkeyPatch, value: float
) -> None:
    cache = TokenCache(isolated_env)
    record = cache.find("user", fake_google.IAP_CLIENT_ID)[0]
    record["id_token"] = fake_google.mint_id_token(fake_google.IAP_CLIENT_ID, expired=True)
    cache.write("user", fake_google.IAP_CLIENT_ID, record["principal"], record)
    monkeypatch.setenv("FLYTE_IAP_TOKEN_URI", "http://127.0.0.1:9/token")  # nothing listens there

    with pytest.raises(ConfigurationError, match="finite number of seconds"):
        flyte_iap.get_user_id_token(fake_google.IAP_CLIENT_ID, min_valid=value, interactive=False)
    with pytest.raises(ConfigurationError):
        flyte_iap.get_service_account_id_token(
            fake_google.IAP_CLIENT_ID, impersonate_service_account=CI_SA, min_valid=value
        )
    with pytest.raises(ConfigurationError):
        flyte_iap.IapAuth(fake_google.IAP_CLIENT_ID, min_valid=value)


@pytest.mark.parametrize("value", ["nan", "inf", "-1"])
def test_doctor_refuses_a_nonsense_timeout_before_any_check(cli: Runner, value: str) -> None:
    result = cli(
        "doctor",
        "--endpoint",
        "https://flyte.example.invalid",
        "--audience",
        "123456789012-iap.apps.googleusercontent.com",
        "--timeout",
        value,
    )

    assert result.returncode == 2, result.stderr
    assert result.stdout == ""
    assert "--timeout" in result.stderr
