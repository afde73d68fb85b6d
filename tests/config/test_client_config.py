"""`flyte-iap config` writes a file that flytekit's own loader reads as intended."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from flytekit.configuration import AuthType, PlatformConfig

from flyte_iap.client_config import ClientConfig, build, render, split_endpoint, write
from flyte_iap.errors import ConfigurationError

AUD = "123456789012-iap.apps.googleusercontent.com"
DESKTOP = "123456789012-desktop.apps.googleusercontent.com"


def _load(tmp_path: Path, config: ClientConfig) -> PlatformConfig:
    path = tmp_path / "config.yaml"
    path.write_text(render(config))
    return PlatformConfig.auto(config_file=str(path))


def test_user_mode_file_loads_in_flytekit_with_the_token_proxy_command(tmp_path: Path) -> None:
    platform = _load(tmp_path, ClientConfig("https://flyte.example.com", AUD, client_id=DESKTOP))

    assert platform.endpoint == "flyte.example.com"
    assert platform.insecure is False
    assert platform.proxy_command == ["flyte-iap", "token", "--audience", AUD, "--client-id", DESKTOP]
    # authType left out: flytekit's default, used only if flyteadmin ever answers UNAUTHENTICATED
    assert platform.auth_mode == AuthType.STANDARD
    assert platform.ca_cert_file_path is None


def test_service_account_mode_uses_sa_token_with_impersonation(tmp_path: Path) -> None:
    sa = "flyte-ci@proj.iam.gserviceaccount.com"
    platform = _load(
        tmp_path,
        ClientConfig("flyte.example.com", AUD, mode="service-account", impersonate_service_account=sa),
    )

    assert platform.proxy_command == [
        "flyte-iap",
        "sa-token",
        "--audience",
        AUD,
        "--impersonate-service-account",
        sa,
    ]


def test_client_secret_for_flyteadmin_auth_is_read_by_flytekit(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("s3cret\n")
    config = ClientConfig(
        "https://flyte.example.com",
        AUD,
        mode="service-account",
        admin_auth="client-secret",
        admin_client_id="flytepropeller",
        admin_client_secret_location=str(secret),
    )

    platform = _load(tmp_path, config)

    assert platform.auth_mode == "ClientSecret"
    assert (platform.client_id, platform.client_credentials_secret) == ("flytepropeller", "s3cret")
    assert "s3cret" not in render(config)


def test_client_secret_from_an_environment_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLYTE_CLIENT_SECRET", "from-env")
    config = ClientConfig(
        "flyte.example.com",
        AUD,
        admin_auth="client-secret",
        admin_client_id="ci",
        admin_client_secret_env_var="FLYTE_CLIENT_SECRET",
    )

    platform = _load(tmp_path, config)

    assert (platform.auth_mode, platform.client_credentials_secret) == ("ClientSecret", "from-env")


def test_pkce_for_people_and_the_flytectl_caveat_in_the_header(tmp_path: Path) -> None:
    config = ClientConfig("https://flyte.example.com", AUD, admin_auth="pkce")

    assert _load(tmp_path, config).auth_mode == "Pkce"
    assert "flyteorg/flyte#6089" in render(config)


def test_plain_http_endpoint_is_insecure_and_keeps_its_port(tmp_path: Path) -> None:
    platform = _load(tmp_path, ClientConfig("http://127.0.0.1:8080", AUD))

    assert (platform.endpoint, platform.insecure) == ("127.0.0.1:8080", True)


def test_ca_cert_is_written_as_an_absolute_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "ca.pem").write_text("x")
    monkeypatch.chdir(tmp_path)

    platform = _load(tmp_path, ClientConfig("https://flyte.example.com:8443", AUD, ca_cert_file="ca.pem"))

    assert platform.ca_cert_file_path == str(tmp_path / "ca.pem")
    assert platform.endpoint == "flyte.example.com:8443"


def test_file_is_yaml_with_a_comment_header_naming_the_login_command() -> None:
    text = render(ClientConfig("https://flyte.example.com", AUD, client_id=DESKTOP))

    assert text.startswith("# Flyte client configuration for flyte.example.com")
    assert f"#   flyte-iap login --audience {AUD} --client-id {DESKTOP}" in text
    assert yaml.safe_load(text)["admin"]["endpoint"] == "dns:///flyte.example.com"
    assert yaml.safe_load(text)["console"] == {"endpoint": "https://flyte.example.com"}


@pytest.mark.parametrize(
    ("endpoint", "expected"),
    [
        ("flyte.example.com", ("flyte.example.com", None, None)),
        ("dns:///flyte.example.com:443", ("flyte.example.com", 443, None)),
        ("https://flyte.example.com/", ("flyte.example.com", None, False)),
        ("http://localhost:30080", ("localhost", 30080, True)),
    ],
)
def test_endpoints_are_accepted_as_users_write_them(
    endpoint: str, expected: tuple[str, int | None, bool | None]
) -> None:
    assert split_endpoint(endpoint) == expected


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (ClientConfig("ftp://x", AUD), "unsupported endpoint scheme"),
        (ClientConfig("https://x", ""), "no audience"),
        (
            ClientConfig("https://x", AUD, impersonate_service_account="sa@p.iam.gserviceaccount.com"),
            "service-account",
        ),
        (ClientConfig("https://x", AUD, mode="service-account", client_id=DESKTOP), "user mode"),
        (ClientConfig("https://x", AUD, admin_auth="client-secret"), "--admin-client-id"),
        (ClientConfig("https://x", AUD, admin_auth="client-secret", admin_client_id="c"), "exactly one"),
        (ClientConfig("https://x", AUD, admin_client_id="c"), "without --admin-auth client-secret"),
        (ClientConfig("http://x", AUD, insecure=False), "contradicts"),
        (ClientConfig("x", AUD, mode="robot"), "unknown mode"),
    ],
)
def test_contradictory_settings_are_refused_with_a_hint(config: ClientConfig, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message) as caught:
        build(config)
    assert caught.value.hint


def test_write_is_0600_and_refuses_to_overwrite_without_force(tmp_path: Path) -> None:
    target = tmp_path / ".flyte" / "config.yaml"
    write("a: 1\n", target)

    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    with pytest.raises(ConfigurationError, match="already exists") as caught:
        write("a: 2\n", target)
    assert "--force" in caught.value.hint
    assert target.read_text() == "a: 1\n"
    write("a: 2\n", target, force=True)
    assert target.read_text() == "a: 2\n"
    assert [p.name for p in target.parent.iterdir()] == ["config.yaml"]


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "flyte_iap", "config", *args], capture_output=True, text=True, timeout=60
    )


def test_cli_prints_the_file_and_writes_it_with_output(tmp_path: Path) -> None:
    printed = _cli("--endpoint", "https://flyte.example.com", "--audience", AUD, "--service-account")
    target = tmp_path / "config.yaml"
    written = _cli(
        "--endpoint", "https://flyte.example.com", "--audience", AUD, "--service-account", "-o", str(target)
    )
    again = _cli("--endpoint", "https://flyte.example.com", "--audience", AUD, "-o", str(target))

    assert printed.returncode == 0 and printed.stderr == ""
    assert yaml.safe_load(printed.stdout)["admin"]["proxyCommand"][:2] == ["flyte-iap", "sa-token"]
    assert written.returncode == 0 and target.read_text() == printed.stdout
    assert again.returncode == 2
    assert again.stderr.splitlines() == [
        f"error: {target} already exists",
        "hint: pass --force to replace it",
    ]


def test_cli_absolute_command_names_this_environments_script(tmp_path: Path) -> None:
    result = _cli("--endpoint", "flyte.example.com", "--audience", AUD, "--absolute-command")

    command = yaml.safe_load(result.stdout)["admin"]["proxyCommand"][0]
    assert os.path.isabs(command) and os.path.basename(command) == "flyte-iap"
    assert os.access(command, os.X_OK)


def test_boolean_pair_option_reads_its_environment_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLYTE_IAP_INSECURE", "true")
    result = _cli("--endpoint", "flyte.example.com", "--audience", AUD)

    assert result.returncode == 0, result.stderr
    assert yaml.safe_load(result.stdout)["admin"]["insecure"] is True
