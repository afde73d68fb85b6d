"""`flyte-iap doctor --sdk flyte2` passes against FakeFlyte2 behind IapProxy and names the fix for each
mistake injected into the deployment or the flyte SDK's config file."""

from __future__ import annotations

import json
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml
from conftest import BIN, CountingCommand, WriteConfig

from flyte_iap.doctor import PASS, Report
from flyte_iap.doctor_flyte2 import run_flyte2_checks
from flyte_iap.testing import FakeFlyte2, FakeGoogle, IapProxy

ALL = ["flyte2-config", "dns", "tls", "iap-enforced", "token", "audience", "iap-accepts", "connect"]


def _doctor(iap: IapProxy, config: Path | None, audience: str = FakeGoogle.IAP_CLIENT_ID) -> Report:
    return run_flyte2_checks(
        iap.url, audience, flyte_config=str(config) if config else None, ca_cert=iap.ca_cert_file, timeout=10
    )


def _failed(report: Report) -> dict[str, tuple[str, str | None]]:
    return {c.name: (c.detail, c.fix) for c in report.checks if c.status == "fail"}


def _edit(path: Path, **admin: object) -> Path:
    data = yaml.safe_load(path.read_text())
    for key, value in admin.items():
        if value is None:
            data["admin"].pop(key, None)
        else:
            data["admin"][key] = value
    path.write_text(yaml.safe_dump(data))
    return path


def test_healthy_flyte2_deployment_passes_every_check_with_the_configs_own_command(
    write_config: WriteConfig, iap: IapProxy, flyte2: FakeFlyte2, counting_command: CountingCommand
) -> None:
    report = _doctor(iap, write_config())

    assert [c.name for c in report.checks] == ALL
    assert report.ok, _failed(report)
    assert counting_command.runs == 1  # the token came from admin.command, as the SDK would get it
    assert [c.method for c in flyte2.calls] == ["flyteidl2.project.ProjectService/ListProjects"]


def test_cli_finds_the_config_the_sdk_would_read_and_exits_0(
    write_config: WriteConfig, iap: IapProxy, fake_google: FakeGoogle
) -> None:
    write_config()  # ./config.yaml, the SDK's first search location
    args = [
        "--endpoint",
        iap.url,
        "--audience",
        fake_google.IAP_CLIENT_ID,
        "--ca-cert",
        str(iap.ca_cert_file),
    ]
    result = subprocess.run(
        [f"{BIN}/flyte-iap", "doctor", "--sdk", "flyte2", *args, "--format", "json"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert [c["name"] for c in report["checks"]] == ALL


@pytest.mark.parametrize(
    ("edit", "detail", "fix"),
    [
        (
            {"proxyCommand": ["flyte-iap", "token"], "authType": None, "command": None},
            "proxyCommand is broken",
            "authType: ExternalCommand",
        ),
        (
            {"proxyCommand": ["flyte-iap", "token"], "authType": "Pkce"},
            "share one keyring entry",
            "ExternalCommand",
        ),
        ({"command": ["/nonexistent/flyte-iap", "token"]}, "not an executable file", "absolute path"),
        ({"command": ["no-such-flyte-iap", "token"]}, "not on PATH", "install flyte-iap"),
        ({"endpoint": "dns:///localhost:1/flyte"}, "has a path", "only the host"),
        ({"insecure": True}, "sends no credentials", "insecure: false"),
        ({"authType": "Pkce"}, "never runs a token command", "ExternalCommand"),
    ],
)
def test_config_mistakes_fail_the_config_check_with_their_fix(
    write_config: WriteConfig, iap: IapProxy, edit: dict, detail: str, fix: str
) -> None:
    report = _doctor(iap, _edit(write_config(), **edit))

    failed = _failed(report)
    assert "flyte2-config" in failed, report.checks
    assert detail in failed["flyte2-config"][0]
    assert fix in (failed["flyte2-config"][1] or "")


def test_missing_command_binary_also_fails_the_token_check(write_config: WriteConfig, iap: IapProxy) -> None:
    report = _doctor(iap, _edit(write_config(), command=["no-such-flyte-iap", "token"]))
    assert "admin.command failed to run" in _failed(report)["token"][0]


def test_unreadable_config_fails_with_a_hint_not_a_traceback(iap: IapProxy, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("admin: [unclosed\n")
    missing = tmp_path / "missing.yaml"
    for path, detail in ((bad, "not valid YAML"), (missing, "is not a file")):
        failed = _failed(_doctor(iap, path))
        assert detail in failed["flyte2-config"][0]
        assert "flyte-iap config --sdk flyte2" in (failed["flyte2-config"][1] or "")


def test_backend_not_behind_iap_fails_iap_enforced(make_iap, write_config: WriteConfig) -> None:
    iap = make_iap(enforce=False)
    failed = _failed(_doctor(iap, write_config(proxy=iap)))
    assert "not IAP's answer" in failed["iap-enforced"][0]
    assert "never be reachable without IAP" in (failed["iap-enforced"][1] or "")


def test_account_without_the_iap_role_gets_the_binding_to_add(
    make_iap, write_config: WriteConfig, fake_google: FakeGoogle
) -> None:
    iap = make_iap(allowed=[fake_google.user_email])
    failed = _failed(_doctor(iap, write_config(proxy=iap)))
    assert "HTTP 403" in failed["iap-accepts"][0]
    assert "roles/iap.httpsResourceAccessor" in (failed["iap-accepts"][1] or "")
    assert f"serviceAccount:{fake_google.metadata_service_account}" in (failed["iap-accepts"][1] or "")


def test_wrong_audience_fails_the_audience_check(write_config: WriteConfig, iap: IapProxy) -> None:
    failed = _failed(_doctor(iap, write_config(), audience="999-other.apps.googleusercontent.com"))
    assert "aud" in failed["audience"][0]


def test_backend_down_fails_with_the_health_check_fix(
    write_config: WriteConfig, iap: IapProxy, flyte2: FakeFlyte2
) -> None:
    config = write_config()
    flyte2.stop()
    failed = _failed(_doctor(iap, config))
    assert "HTTP 502" in failed["iap-accepts"][0]
    assert "/healthz" in (failed["iap-accepts"][1] or "")


class _Console(BaseHTTPRequestHandler):
    """What answers when the API paths go to the console's Service: the SPA's HTML for any path."""

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _html(self) -> None:
        body = b"<!doctype html><title>Flyte</title>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = _html

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length") or 0))
        self._html()


@pytest.fixture
def console() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Console)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_api_paths_routed_to_the_console_fail_connect_with_the_routing_fix(
    make_iap, write_config: WriteConfig, console: str
) -> None:
    iap = make_iap(http_upstream=console)
    report = _doctor(iap, write_config(proxy=iap))
    failed = _failed(report)
    assert list(failed) == ["connect"]
    assert "did not reach the Flyte 2 API" in failed["connect"][0]
    assert "-http Service" in (failed["connect"][1] or "")
    assert {c.name for c in report.checks if c.status == PASS} >= {"iap-accepts", "token"}


def test_cli_says_token_options_are_unused_when_the_config_supplies_the_command(
    write_config: WriteConfig, iap: IapProxy, fake_google: FakeGoogle
) -> None:
    config = write_config()
    args = [
        "--endpoint",
        iap.url,
        "--audience",
        fake_google.IAP_CLIENT_ID,
        "--ca-cert",
        str(iap.ca_cert_file),
    ]
    result = subprocess.run(
        [
            f"{BIN}/flyte-iap",
            "doctor",
            "--sdk",
            "flyte2",
            "--config",
            str(config),
            "--service-account",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"warning: the token comes from admin.command in {config}" in result.stderr


def test_cli_takes_endpoint_and_audience_from_the_flyte2_config_when_not_given(
    write_config: WriteConfig, iap: IapProxy, fake_google: FakeGoogle
) -> None:
    write_config()  # ./config.yaml
    result = subprocess.run(
        [f"{BIN}/flyte-iap", "doctor", "--sdk", "flyte2", "--ca-cert", str(iap.ca_cert_file)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"endpoint https://{iap.endpoint}, audience {fake_google.IAP_CLIENT_ID}" in result.stderr


def test_cli_without_endpoint_and_without_a_flyte2_config_is_an_error_with_a_hint() -> None:
    result = subprocess.run(
        [f"{BIN}/flyte-iap", "doctor", "--sdk", "flyte2"], capture_output=True, text=True, check=False
    )
    assert result.returncode != 0 and "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert lines[0].startswith("error: no --endpoint and --audience") and lines[1].startswith("hint: ")
