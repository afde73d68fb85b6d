"""`flyte-iap config --sdk flyte2` writes a file the flyte SDK's own loader reads as intended, and refuses
settings that could never pass IAP with a one-line error and a hint."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from conftest import BIN
from flyte.config import _config as flyte_config

from flyte_iap.client_config import ClientConfig, build, render
from flyte_iap.errors import ConfigurationError

AUD = "123456789012-iap.apps.googleusercontent.com"
DESKTOP = "123456789012-desktop.apps.googleusercontent.com"


def _platform(tmp_path: Path, config: ClientConfig) -> flyte_config.PlatformConfig:
    path = tmp_path / "config.yaml"
    path.write_text(render(config))
    return flyte_config.PlatformConfig.auto(str(path))


def test_user_mode_file_loads_in_the_flyte_sdk_as_external_command(tmp_path: Path) -> None:
    platform = _platform(
        tmp_path, ClientConfig("https://flyte.example.com", AUD, client_id=DESKTOP, sdk="flyte2")
    )

    assert platform.endpoint == "dns:///flyte.example.com"
    assert platform.insecure is False
    assert platform.auth_mode == "ExternalCommand"
    assert platform.command == ["flyte-iap", "token", "--audience", AUD, "--client-id", DESKTOP]
    assert platform.proxy_command is None  # broken in flyte 2.12.1: never written


def test_service_account_mode_with_a_ca_and_defaults_for_project_and_domain(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    config = ClientConfig(
        "flyte.example.com:8443",
        AUD,
        mode="service-account",
        sdk="flyte2",
        ca_cert_file=str(ca),
        project="flytesnacks",
        domain="development",
    )
    platform = _platform(tmp_path, config)
    task = flyte_config.TaskConfig.auto(str(tmp_path / "config.yaml"))

    assert platform.endpoint == "dns:///flyte.example.com:8443"
    assert platform.command == ["flyte-iap", "sa-token", "--audience", AUD]
    assert platform.ca_cert_file_path == str(ca.resolve())
    assert (task.project, task.domain) == ("flytesnacks", "development")


@pytest.mark.parametrize(
    ("overrides", "error", "hint"),
    [
        ({"endpoint": "https://flyte.example.com/api"}, "has a path", "give only the host"),
        ({"endpoint": "dns:///flyte.example.com/console"}, "has a path", "give only the host"),
        ({"endpoint": "http://flyte.example.com"}, "sends no credentials", "https://"),
        ({"insecure": True}, "sends no credentials", "https://"),
        ({"admin_auth": "pkce"}, "no Flyte 2 counterpart", "drop --admin-auth"),
        ({"audience": " "}, "no audience", "--audience"),
    ],
)
def test_settings_that_cannot_pass_iap_are_refused_with_a_hint(
    overrides: dict, error: str, hint: str
) -> None:
    settings: dict = {"endpoint": "https://flyte.example.com", "audience": AUD, "sdk": "flyte2"}
    settings.update(overrides)
    with pytest.raises(ConfigurationError) as caught:
        build(ClientConfig(**settings))
    assert error in str(caught.value)
    assert hint in caught.value.hint


def test_project_without_sdk_flyte2_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="Flyte 2"):
        build(ClientConfig("https://flyte.example.com", AUD, project="p"))


def test_cli_bad_input_is_one_error_line_and_one_hint_line(tmp_path: Path) -> None:
    out = tmp_path / "config.yaml"
    args = ["config", "--sdk", "flyte2", "--endpoint", "https://flyte.example.com/x", "--audience", AUD]
    result = subprocess.run(
        [f"{BIN}/flyte-iap", *args, "-o", str(out)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode != 0 and result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 2 and lines[0].startswith("error: ") and lines[1].startswith("hint: ")
    assert not out.exists()  # nothing half-written
