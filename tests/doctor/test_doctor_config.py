"""doctor takes endpoint, audience and token mode from the Flyte client config when not given."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from helpers import ProxyFactory

from flyte_iap.doctor import CHECKS
from flyte_iap.testing import FakeGoogle

AUD = FakeGoogle.IAP_CLIENT_ID


def _run(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "flyte_iap", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env if env is not None else dict(os.environ),
        stdin=subprocess.DEVNULL,
        cwd=cwd,
    )


def _write_config(path: Path, endpoint: str, *extra: str) -> None:
    result = _run("config", "--endpoint", endpoint, "--audience", AUD, "--output", str(path), *extra)
    assert result.returncode == 0, result.stderr


def test_doctor_with_config_reads_endpoint_and_audience_from_it(
    make_proxy: ProxyFactory, signed_in: str, tmp_path: Path
) -> None:
    proxy = make_proxy()
    config = tmp_path / "config.yaml"
    _write_config(config, proxy.url)

    result = _run("doctor", "--config", str(config))

    assert result.returncode == 0, result.stdout + result.stderr
    assert [line.split()[:2] for line in result.stdout.splitlines()] == [["PASS", n] for n in CHECKS]
    assert result.stderr.splitlines() == [
        f"settings from {config}: endpoint {proxy.url}, audience {AUD}",
        "7/7 checks passed",
    ]


def test_doctor_without_options_reads_the_file_flytekit_uses(
    make_proxy: ProxyFactory, signed_in: str, tmp_path: Path
) -> None:
    proxy = make_proxy()
    home = tmp_path / "home"
    _write_config(home / ".flyte" / "config.yaml", proxy.url)
    env = {**os.environ, "HOME": str(home)}
    env.pop("FLYTECTL_CONFIG", None)

    result = _run("doctor", env=env, cwd=tmp_path)

    assert result.returncode == 0, result.stdout + result.stderr
    assert f"settings from {home / '.flyte' / 'config.yaml'}" in result.stderr


def test_flytectl_config_variable_wins_over_the_home_file(
    make_proxy: ProxyFactory, signed_in: str, tmp_path: Path
) -> None:
    proxy = make_proxy()
    home = tmp_path / "home"
    _write_config(home / ".flyte" / "config.yaml", "https://flyte.x.invalid")
    chosen = tmp_path / "chosen.yaml"
    _write_config(chosen, proxy.url)

    result = _run(
        "doctor", env={**os.environ, "HOME": str(home), "FLYTECTL_CONFIG": str(chosen)}, cwd=tmp_path
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert f"settings from {chosen}" in result.stderr


def test_service_account_config_makes_doctor_mint_a_service_account_token(
    make_proxy: ProxyFactory, fake_google: FakeGoogle, tmp_path: Path
) -> None:
    proxy = make_proxy()
    config = tmp_path / "ci.yaml"
    _write_config(config, proxy.url, "--service-account")

    result = _run("doctor", "--config", str(config), "--format", "json")

    assert result.returncode == 0, result.stdout + result.stderr
    assert '"minted a service account ID token"' in result.stdout


def test_an_option_given_overrides_the_config(
    make_proxy: ProxyFactory, signed_in: str, tmp_path: Path
) -> None:
    proxy = make_proxy()
    config = tmp_path / "config.yaml"
    _write_config(config, "https://flyte.x.invalid")

    result = _run("doctor", "--config", str(config), "--endpoint", proxy.url)

    assert result.returncode == 0, result.stdout + result.stderr


def test_no_options_and_no_config_is_a_one_line_error_with_a_hint(tmp_path: Path) -> None:
    env = {**os.environ, "HOME": str(tmp_path)}
    env.pop("FLYTECTL_CONFIG", None)

    result = _run("doctor", env=env, cwd=tmp_path)

    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        "error: no --endpoint and --audience, and no Flyte client config to read them from",
        "hint: pass --endpoint and --audience, or --config FILE (flyte-iap config writes one; flytekit "
        "reads $FLYTECTL_CONFIG, else ~/.flyte/config.yaml)",
    ]


def test_a_config_whose_proxy_command_is_not_flyte_iap_needs_audience(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("admin:\n  endpoint: dns:///flyte.example.com\n  proxyCommand: [gcloud, auth]\n")

    result = _run("doctor", "--config", str(config))

    assert result.returncode == 2
    assert result.stderr.splitlines()[0] == (
        f"error: {config} has no flyte-iap proxy command to take the audience from"
    )


def test_doctor_warns_about_an_audience_that_is_not_a_client_id(tmp_path: Path) -> None:
    result = _run("doctor", "--endpoint", "https://flyte.x.invalid", "--audience", "hello", "--timeout", "1")

    assert result.stderr.splitlines()[0].startswith(
        "warning: --audience 'hello' does not look like an OAuth client ID"
    )
