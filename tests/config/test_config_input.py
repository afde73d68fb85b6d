"""What users type into `flyte-iap config`, and the client configs doctor reads, are checked."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import tomllib
from pathlib import Path

import pytest

from flyte_iap import extras
from flyte_iap.client_config import (
    MAX_CONFIG_BYTES,
    audience_warnings,
    default_config_path,
    read_config,
    split_endpoint,
)
from flyte_iap.errors import ConfigurationError

AUD = "123456789012-iap.apps.googleusercontent.com"
REPO = Path(__file__).resolve().parents[2]


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "flyte_iap", "config", *args], capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize(
    "endpoint",
    ["https://flyte.example.com/console", "flyte.example.com/api/v1", "https://flyte.example.com?x=1"],
)
def test_an_endpoint_with_a_path_is_refused_not_silently_cut(endpoint: str) -> None:
    with pytest.raises(ConfigurationError, match="Flyte clients take a host and port only") as caught:
        split_endpoint(endpoint)
    assert "use https://flyte.example.com" in caught.value.hint


def test_cli_refuses_the_console_url_as_endpoint_and_writes_nothing() -> None:
    result = _cli("--endpoint", "https://flyte.example.com/console", "--audience", AUD)

    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        "error: endpoint 'https://flyte.example.com/console' has a path (/console); Flyte clients take a "
        "host and port only",
        "hint: use https://flyte.example.com (the console is at /console on the same host, and "
        "admin.endpoint has no path)",
    ]


def test_cli_warns_on_an_audience_that_is_not_an_oauth_client_id_and_still_writes() -> None:
    result = _cli("--endpoint", "https://flyte.example.com", "--audience", "hello")

    assert result.returncode == 0
    assert "--audience" in result.stdout and "hello" in result.stdout
    assert result.stderr.splitlines() == [
        "warning: --audience 'hello' does not look like an OAuth client ID "
        "(NUMBER-ID.apps.googleusercontent.com): IAP accepts only ID tokens whose audience is the OAuth "
        "client ID of the IAP-protected app"
    ]


@pytest.mark.parametrize(
    "audience",
    [AUD, "123456789012-flyteiapiap0fake0client000000.apps.googleusercontent.com", " " + AUD + "\n"],
)
def test_oauth_client_ids_raise_no_warning(audience: str) -> None:
    assert audience_warnings(audience) == []


@pytest.mark.parametrize(
    "audience",
    ["hello", "https://flyte.example.com", "123456789012", "iap.apps.googleusercontent.com", AUD + ".evil"],
)
def test_values_that_are_not_client_ids_warn(audience: str) -> None:
    assert len(audience_warnings(audience)) == 1


# -- read_config ----------------------------------------------------------------------------------


def test_read_config_takes_endpoint_audience_and_mode_from_a_written_file(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    result = _cli(
        "--endpoint",
        "https://flyte.example.com:8443",
        "--audience",
        AUD,
        "--service-account",
        "--impersonate-service-account",
        "ci@p.iam.gserviceaccount.com",
        "--absolute-command",
        "-o",
        str(path),
    )
    assert result.returncode == 0, result.stderr

    loaded = read_config(path)

    assert loaded.endpoint == "https://flyte.example.com:8443"
    assert loaded.audience == AUD
    assert loaded.mode == "service-account"
    assert loaded.impersonate_service_account == "ci@p.iam.gserviceaccount.com"


def test_read_config_of_an_insecure_file_gives_an_http_endpoint(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(
        "admin:\n  endpoint: dns:///localhost:30080\n  insecure: true\n"
        f"  proxyCommand: [flyte-iap, token, --audience={AUD}, --client-id, d]\n"
    )

    loaded = read_config(path)

    assert (loaded.endpoint, loaded.audience, loaded.mode, loaded.client_id) == (
        "http://localhost:30080",
        AUD,
        "user",
        "d",
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("admin: [", "not valid YAML"),
        ("- 1\n- 2\n", "no admin.endpoint"),
        ("admin:\n  endpoint: 42\n", "no admin.endpoint"),
        ("admin:\n  endpoint: dns:///x\n  insecure: 'yes please'\n", "admin.insecure"),
        ("admin:\n  endpoint: dns:///x\n  proxyCommand: flyte-iap token\n", "not a list of strings"),
        ("admin:\n  endpoint: https://x/console\n", "has a path"),
        ("[" * 100_000, "not valid YAML"),
    ],
)
def test_read_config_refuses_malformed_files_with_a_hint(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(text)

    with pytest.raises(ConfigurationError, match=message) as caught:
        read_config(path)
    assert caught.value.hint


def test_read_config_refuses_a_huge_file_without_reading_it_all(tmp_path: Path) -> None:
    path = tmp_path / "huge.yaml"
    with path.open("wb") as handle:
        handle.truncate(MAX_CONFIG_BYTES * 64)

    with pytest.raises(ConfigurationError, match="larger than"):
        read_config(path)


def test_read_config_refuses_a_fifo_without_waiting_for_a_writer(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo.yaml"
    os.mkfifo(fifo)
    outcome: list[BaseException] = []

    def read() -> None:
        try:
            read_config(fifo)
        except ConfigurationError as exc:
            outcome.append(exc)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(timeout=10)

    assert not reader.is_alive(), "read_config blocked on a FIFO"
    assert "not a regular file" in str(outcome[0])


def test_read_config_refuses_a_directory_and_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match=r"not a regular file|cannot read"):
        read_config(tmp_path)
    with pytest.raises(ConfigurationError, match="cannot read"):
        read_config(tmp_path / "missing.yaml")


# -- default_config_path --------------------------------------------------------------------------


def test_default_config_follows_flytekits_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    home = tmp_path / "home"
    (home / ".flyte").mkdir(parents=True)
    assert default_config_path({}, home) is None

    (home / ".flyte" / "config.yaml").write_text("admin: {}\n")
    assert default_config_path({}, home) == home / ".flyte" / "config.yaml"

    named = tmp_path / "named.yaml"
    named.write_text("admin: {}\n")
    assert default_config_path({"FLYTECTL_CONFIG": str(named)}, home) == named
    # a FLYTECTL_CONFIG that does not exist is ignored, as flytekit does
    assert (
        default_config_path({"FLYTECTL_CONFIG": str(tmp_path / "nope")}, home)
        == home / ".flyte" / "config.yaml"
    )

    # an INI file flytekit would pick first means there is no YAML config doctor can share with it
    (home / ".flyte" / "config").write_text("[platform]\n")
    assert default_config_path({}, home) is None


# -- install hints ----------------------------------------------------------------------------------


def test_extras_fallback_matches_pyproject() -> None:
    declared = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    for extra, requirements in extras._FALLBACK.items():
        assert declared[extra] == requirements


@pytest.mark.parametrize("extra", ["keyring", "doctor", "testing"])
def test_install_hints_name_installable_requirements_not_the_unpublished_package(extra: str) -> None:
    hint = extras.install_hint(extra)

    assert hint.startswith("pip install '")
    assert "flyte-iap[" not in hint.split("(")[0]
    assert f"[{extra}] extra" in hint
