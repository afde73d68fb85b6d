"""`flyte-iap login/token/logout/generate-user-id-token` as real processes: stdout, stderr, exit codes."""

from __future__ import annotations

import os
import pty
import signal
import socket
import stat
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from helpers.user import SECRET_NAME, Runner, ScriptedBrowser

from flyte_iap import _entry
from flyte_iap.cache import TokenCache
from flyte_iap.cli import cli
from flyte_iap.idtoken import decode_claims
from flyte_iap.testing import FakeGoogle
from flyte_iap.user_tokens import login_user

PROJECT, SECRET_ID = SECRET_NAME.split("/")[1], SECRET_NAME.split("/")[3]


def login_args(google: FakeGoogle, aud: str, *extra: str) -> list[str]:
    return [
        "login",
        "--audience",
        aud,
        "--client-id",
        google.DESKTOP_CLIENT_ID,
        "--client-secret",
        google.DESKTOP_CLIENT_SECRET,
        *extra,
    ]


def compat_args(google: FakeGoogle, aud: str) -> list[str]:
    return [
        "generate-user-id-token",
        "--desktop_client_id",
        google.DESKTOP_CLIENT_ID,
        "--desktop_client_secret_gcp_secret_name",
        SECRET_ID,
        "--webapp_client_id",
        aud,
        "--project",
        PROJECT,
    ]


def seed_login(google: FakeGoogle, aud: str, lifetime: int = 3600) -> dict[str, Any]:
    """Sign in in-process (scripted browser) with tokens of ``lifetime`` seconds; returns the record."""
    google.token_lifetime = lifetime
    login_user(
        aud,
        client_id=google.DESKTOP_CLIENT_ID,
        client_secret=google.DESKTOP_CLIENT_SECRET,
        opener=ScriptedBrowser(google),
        notify=lambda message: None,
        timeout=20,
    )
    google.token_lifetime = 3600
    google.clear_requests()
    record = TokenCache().read("user", aud, google.DESKTOP_CLIENT_ID)
    assert record is not None
    return record


def assert_clean_failure(result: subprocess.CompletedProcess[str], *needles: str) -> None:
    """Exit 1, nothing on stdout, `error:` and `hint:` lines on stderr, no traceback."""
    assert result.returncode == 1, result.stderr
    assert result.stdout == ""
    lines = [line for line in result.stderr.splitlines() if not line.startswith("warning: ")]
    assert [line.split(":")[0] for line in lines] == ["error", "hint"], result.stderr
    assert "Traceback" not in result.stderr
    for needle in needles:
        assert needle in result.stderr


def refreshes(google: FakeGoogle) -> list[dict[str, str]]:
    return [r.form for r in google.requests_to("/token") if r.form.get("grant_type") == "refresh_token"]


def test_login_then_token_prints_only_the_token(run_cli: Runner, fake_google: FakeGoogle, aud: str) -> None:
    login = run_cli(*login_args(fake_google, aud))
    assert login.returncode == 0, login.stderr
    assert login.stdout == ""
    assert f"Signed in as {fake_google.user_email}" in login.stderr
    # Flyte 1 clients get their proxyCommand; the flyte SDK 2.x, which cannot use one, its config command.
    assert f"Set admin.proxyCommand to: [flyte-iap, token, --audience, {aud}]" in login.stderr
    assert "flyte-iap config --sdk flyte2" in login.stderr
    assert fake_google.DESKTOP_CLIENT_SECRET not in login.stderr
    fake_google.clear_requests()

    token = run_cli("token", "--audience", aud)

    assert token.returncode == 0 and token.stderr == ""
    assert token.stdout.endswith("\n") and token.stdout.count("\n") == 1
    assert decode_claims(token.stdout.strip())["aud"] == aud
    assert fake_google.requests == []


def test_token_without_login_and_without_a_terminal_fails_at_once(
    run_cli: Runner, fake_google: FakeGoogle, aud: str
) -> None:
    result = run_cli("token", "--audience", aud, "--client-id", fake_google.DESKTOP_CLIENT_ID, timeout=20)
    assert_clean_failure(result, "no terminal", f"flyte-iap login --audience {aud}")
    assert fake_google.requests == []  # no browser, no loopback, no Google


def test_compat_command_without_login_names_the_exact_login_command(
    run_cli: Runner, fake_google: FakeGoogle, aud: str
) -> None:
    result = run_cli(*compat_args(fake_google, aud), timeout=20)
    assert_clean_failure(
        result,
        f"flyte-iap login --audience {aud} --client-id {fake_google.DESKTOP_CLIENT_ID} "
        f"--client-secret-gcp-secret {SECRET_NAME}/versions/latest",
    )
    assert fake_google.requests == []


def _run_in_terminal(args: list[str], env: dict[str, str]) -> tuple[int, str, str]:
    """Run with stdin and stderr on a pseudo-terminal and stdout on a pipe, as a person at a shell."""
    master, slave = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "flyte_iap", *args], stdin=slave, stderr=slave, stdout=subprocess.PIPE, env=env
    )
    os.close(slave)
    screen: list[bytes] = []

    def drain() -> None:
        while True:
            try:
                chunk = os.read(master, 4096)
            except OSError:
                return
            if not chunk:
                return
            screen.append(chunk)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    try:
        stdout, _ = process.communicate(timeout=60)
    finally:
        reader.join(timeout=5)
        os.close(master)
    return process.returncode, stdout.decode(), b"".join(screen).decode(errors="replace")


def test_compat_command_signs_in_from_a_terminal_and_reads_the_secret_once(
    run_cli: Runner, cli_env: dict[str, str], fake_google: FakeGoogle, aud: str, adc_key_file: Path
) -> None:
    env = dict(cli_env, GOOGLE_APPLICATION_CREDENTIALS=str(adc_key_file))
    fake_google.token_lifetime = 100  # below min-valid: the next run must refresh

    code, stdout, screen = _run_in_terminal(compat_args(fake_google, aud), env)

    assert code == 0, screen
    first = stdout.strip()
    assert stdout == first + "\n" and decode_claims(first)["aud"] == aud
    assert "Opening a browser" in screen
    assert len(fake_google.requests_to("/v1/projects/")) == 1

    fake_google.token_lifetime = 3600
    again = run_cli(*compat_args(fake_google, aud), env=env)
    assert again.returncode == 0, again.stderr
    second = again.stdout.strip()
    assert second != first and again.stdout == second + "\n"
    cached = run_cli(*compat_args(fake_google, aud), env=env)
    assert cached.stdout == again.stdout and cached.stderr == ""

    assert len(fake_google.requests_to("/v1/projects/")) == 1  # the secret was fetched once
    assert len(refreshes(fake_google)) == 2  # the login's, then one refresh


def test_what_the_browser_command_prints_stays_out_of_the_token_on_stdout(
    cli_env: dict[str, str], fake_google: FakeGoogle, aud: str, tmp_path: Path
) -> None:
    # Like xdg-open starting Chrome, which prints "Opening in existing browser session." on stdout.
    chatty = tmp_path / "chatty-browser"
    browse = fake_google.browser_command % '"$1"'
    chatty.write_text(f"#!/bin/sh\necho 'Opening in existing browser session.'\nexec {browse}\n")
    chatty.chmod(0o755)
    env = dict(cli_env, BROWSER=f"{chatty} %s")
    args = ["token", "--audience", aud, "--client-id", fake_google.DESKTOP_CLIENT_ID]

    code, stdout, screen = _run_in_terminal(
        [*args, "--client-secret", fake_google.DESKTOP_CLIENT_SECRET], env
    )

    assert code == 0, screen
    assert stdout.count("\n") == 1 and decode_claims(stdout.strip())["aud"] == aud
    assert "Opening in existing browser session." in screen


def test_ctrl_c_during_the_sign_in_is_an_error_and_a_hint_without_traceback(
    cli_env: dict[str, str], fake_google: FakeGoogle, aud: str
) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "flyte_iap", *login_args(fake_google, aud, "--no-browser", "--timeout", "60")],
        env=cli_env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stderr is not None and process.stdout is not None
    for line in process.stderr:
        if "ssh -N -L" in line:  # the last line before the wait
            break
    process.send_signal(signal.SIGINT)
    rest = process.stderr.read()
    stdout = process.stdout.read()
    process.wait(timeout=30)

    assert process.returncode == 130
    assert stdout == ""
    assert [line.split(":")[0] for line in rest.splitlines() if line] == ["error", "hint"], rest


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["token"], "Missing option '--audience'"),
        (["sa-token", "--audience", "a", "--min-valid", "-1"], "--min-valid"),
        (["no-such-command"], "No such command"),
        (["check"], "give manifest files"),
    ],
)
def test_usage_errors_are_an_error_and_a_hint_line(run_cli: Runner, args: list[str], needle: str) -> None:
    result = run_cli(*args)

    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert [line.split(":")[0] for line in lines] == ["error", "hint"], result.stderr
    assert needle in lines[0] and "--help" in lines[1]


def test_no_browser_prints_the_url_and_the_forward_hint_on_stderr(
    cli_env: dict[str, str], fake_google: FakeGoogle, aud: str
) -> None:
    env = dict(cli_env)
    env.pop("BROWSER")
    process = subprocess.Popen(
        [sys.executable, "-m", "flyte_iap", *login_args(fake_google, aud, "--no-browser", "--timeout", "60")],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stderr is not None
    seen: list[str] = []
    for line in process.stderr:
        seen.append(line)
        if line.strip().startswith(fake_google.auth_uri):
            fake_google.browser(line.strip())
            break
    # Not communicate(): it reads the raw pipe and would lose what the line iterator buffered ahead.
    rest = process.stderr.read()
    assert process.stdout is not None
    stdout = process.stdout.read()
    process.wait(timeout=60)
    stderr = "".join(seen) + rest
    assert process.returncode == 0, stderr
    assert stdout == ""
    assert "ssh -N -L " in stderr and "127.0.0.1" in stderr
    assert "Signed in as" in stderr


def test_twenty_concurrent_runs_on_an_expired_token_refresh_once_and_agree(
    cli_env: dict[str, str], fake_google: FakeGoogle, aud: str
) -> None:
    old = seed_login(fake_google, aud, lifetime=100)["id_token"]
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "flyte_iap", "token", "--audience", aud],
            env=cli_env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(20)
    ]
    results = [p.communicate(timeout=120) for p in processes]

    assert [p.returncode for p in processes] == [0] * 20, results
    outputs = {stdout for stdout, _ in results}
    assert len(outputs) == 1
    (token,) = outputs
    assert token.strip() != old and token.count("\n") == 1
    assert len(refreshes(fake_google)) == 1
    assert all(stderr == "" for _, stderr in results)


def test_an_expiring_token_is_refreshed_and_secrets_stay_off_stderr(
    run_cli: Runner, fake_google: FakeGoogle, aud: str
) -> None:
    record = seed_login(fake_google, aud, lifetime=100)
    result = run_cli("token", "--audience", aud)
    assert result.returncode == 0
    assert result.stdout.strip() != record["id_token"]
    for secret in (record["refresh_token"], fake_google.DESKTOP_CLIENT_SECRET, result.stdout.strip()):
        assert secret not in result.stderr


def test_5xx_from_the_token_endpoint_is_retried(run_cli: Runner, fake_google: FakeGoogle, aud: str) -> None:
    seed_login(fake_google, aud, lifetime=100)
    fake_google.fail_next(2, status=503, path="/token")
    result = run_cli("token", "--audience", aud)
    assert result.returncode == 0, result.stderr
    assert [r.status for r in fake_google.requests_to("/token")] == [503, 503, 200]


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize(
    ("fault", "needles"),
    [
        ("invalid_grant", ["invalid_grant", "flyte-iap login --audience"]),
        ("invalid_client", ["invalid_client", "--client-id"]),
        ("503", ["HTTP 503 (tried 3 times)"]),
        ("refused", ["connection refused"]),
    ],
)
def test_refresh_failures_are_one_line_with_a_hint(
    run_cli: Runner,
    cli_env: dict[str, str],
    fake_google: FakeGoogle,
    aud: str,
    fault: str,
    needles: list[str],
) -> None:
    # 20 s left: too little to fall back on the cached token when Google cannot be reached
    record = seed_login(fake_google, aud, lifetime=20)
    env = dict(cli_env)
    if fault == "503":
        fake_google.fail_next(3, status=503, path="/token")
    elif fault == "refused":
        env["FLYTE_IAP_TOKEN_URI"] = f"http://127.0.0.1:{_closed_port()}/token"
    else:
        fake_google.oauth_error_next(fault, status=401 if fault == "invalid_client" else 400)

    result = run_cli("token", "--audience", aud, env=env)

    assert_clean_failure(result, *needles)
    assert record["refresh_token"] not in result.stderr
    assert fake_google.DESKTOP_CLIENT_SECRET not in result.stderr


def test_denied_consent_fails_the_login(run_cli: Runner, fake_google: FakeGoogle, aud: str) -> None:
    fake_google.deny_consent = True
    result = run_cli(*login_args(fake_google, aud))
    assert result.returncode == 1 and result.stdout == ""
    assert "error: Google sign-in failed: access_denied" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_web_client_times_out_with_the_redirect_uri_mismatch_hint(
    run_cli: Runner, fake_google: FakeGoogle, aud: str
) -> None:
    fake_google.add_oauth_client("999-web.apps.googleusercontent.com", "s", redirect_uris=["https://x/cb"])
    result = run_cli(
        "login", "--audience", aud, "--client-id", "999-web.apps.googleusercontent.com",
        "--client-secret", "s", "--timeout", "2",
    )  # fmt: skip
    assert result.returncode == 1
    assert "timed out after 2 s" in result.stderr and "redirect_uri_mismatch" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_port_in_use_fails_the_login(run_cli: Runner, fake_google: FakeGoogle, aud: str) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = run_cli(*login_args(fake_google, aud, "--port", str(port)), timeout=20)
    assert_clean_failure(result, f"port {port} on 127.0.0.1 is already in use")


def test_a_cache_that_cannot_be_written_fails_the_login_before_the_browser_opens(
    run_cli: Runner, cli_env: dict[str, str], fake_google: FakeGoogle, aud: str, tmp_path: Path
) -> None:
    not_a_directory = tmp_path / "file"
    not_a_directory.write_text("")
    env = dict(cli_env, FLYTE_IAP_CACHE_DIR=str(not_a_directory))

    result = run_cli(*login_args(fake_google, aud), env=env, timeout=20)

    assert_clean_failure(
        result, f"token cache directory {not_a_directory}: it is not a directory", "FLYTE_IAP_CACHE_DIR"
    )
    assert fake_google.requests == []  # the browser never went to Google


def test_corrupt_cache_is_a_miss_with_a_warning_and_no_traceback(
    run_cli: Runner, fake_google: FakeGoogle, aud: str, isolated_env: Path
) -> None:
    seed_login(fake_google, aud)
    TokenCache().path("user", aud, fake_google.DESKTOP_CLIENT_ID).write_bytes(b"\x00garbage{")
    result = run_cli("token", "--audience", aud, "--client-id", fake_google.DESKTOP_CLIENT_ID)
    assert_clean_failure(result, "warning: ignoring unreadable token cache file", "flyte-iap login")


def test_files_are_private_whatever_the_umask(
    cli_env: dict[str, str], fake_google: FakeGoogle, aud: str, isolated_env: Path
) -> None:
    result = subprocess.run(
        [sys.executable, "-c", "import os, sys; os.umask(0); from flyte_iap._entry import main; main()",
         *login_args(fake_google, aud)],
        env=cli_env, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert stat.S_IMODE(isolated_env.stat().st_mode) == 0o700
    modes = {f.name: stat.S_IMODE(f.stat().st_mode) for f in isolated_env.iterdir()}
    assert modes and set(modes.values()) == {0o600}, modes


def test_logout_revokes_and_forgets(run_cli: Runner, fake_google: FakeGoogle, aud: str) -> None:
    record = seed_login(fake_google, aud)
    result = run_cli("logout", "--audience", aud, "--revoke")
    assert result.returncode == 0 and result.stdout == ""
    assert f"{fake_google.user_email}: signed out and revoked" in result.stderr
    assert record["refresh_token"] in fake_google.revoked_tokens
    again = run_cli("logout", "--audience", aud)
    assert "Nothing was stored" in again.stderr
    assert_clean_failure(run_cli("token", "--audience", aud), "not signed in")


def test_logout_revoke_while_google_is_down_keeps_the_login_and_says_so(
    run_cli: Runner, fake_google: FakeGoogle, aud: str
) -> None:
    record = seed_login(fake_google, aud)
    fake_google.fail_next(n=10, status=503, path="/revoke")

    result = run_cli("logout", "--audience", aud, "--revoke")

    assert_clean_failure(result, "revoke", "nothing was forgotten", "without --revoke")
    assert record["refresh_token"] not in result.stderr
    assert TokenCache().read("user", aud, fake_google.DESKTOP_CLIENT_ID) is not None


def test_options_come_from_flyte_iap_environment_variables(
    run_cli: Runner, cli_env: dict[str, str], fake_google: FakeGoogle, aud: str
) -> None:
    env = dict(
        cli_env,
        FLYTE_IAP_AUDIENCE=aud,
        FLYTE_IAP_CLIENT_ID=fake_google.DESKTOP_CLIENT_ID,
        FLYTE_IAP_CLIENT_SECRET=fake_google.DESKTOP_CLIENT_SECRET,
    )
    assert run_cli("login", env=env).returncode == 0
    token = run_cli("token", env=dict(env, FLYTE_IAP_NO_FAST_PATH="1"))
    assert token.returncode == 0 and decode_claims(token.stdout.strip())["aud"] == aud


def test_compat_command_keeps_the_old_plugins_flags() -> None:
    result = CliRunner().invoke(cli, ["generate-user-id-token", "--help"])
    assert result.exit_code == 0
    for flag in (
        "--desktop_client_id",
        "--desktop_client_secret_gcp_secret_name",
        "--webapp_client_id",
        "--project",
    ):
        assert flag in result.output


def test_fast_path_accepts_no_browser_and_compat_environment(
    fake_google: FakeGoogle, aud: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = seed_login(fake_google, aud)["id_token"]
    assert _entry.FAST_COMMANDS["token"](["--audience", aud, "--no-browser"]) == token
    monkeypatch.setenv("FLYTE_IAP_WEBAPP_CLIENT_ID", aud)
    monkeypatch.setenv("FLYTE_IAP_DESKTOP_CLIENT_ID", fake_google.DESKTOP_CLIENT_ID)
    # All four are required, as on the slow path (click exits 2 without them).
    assert _entry.FAST_COMMANDS["generate-user-id-token"]([]) is None
    monkeypatch.setenv("FLYTE_IAP_DESKTOP_CLIENT_SECRET_GCP_SECRET_NAME", "flyte-desktop")
    monkeypatch.setenv("FLYTE_IAP_PROJECT", "fake-project")
    assert _entry.FAST_COMMANDS["generate-user-id-token"]([]) == token


def test_top_level_help_lists_every_command_with_an_untruncated_summary() -> None:
    result = CliRunner().invoke(cli, ["--help"], terminal_width=80, prog_name="flyte-iap")

    assert result.exit_code == 0
    commands = result.output.split("Commands:")[1]
    assert "..." not in commands
    for name in cli.commands:
        assert name in commands


def test_an_unexpected_exception_is_two_lines_without_its_message_unless_asked(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from flyte_iap import cli as cli_module
    from flyte_iap import client_config

    def broken(settings: object) -> str:
        raise RuntimeError("refresh_token=1//secret-looking")

    monkeypatch.setattr(client_config, "render", broken)
    args = ["config", "--endpoint", "flyte.example.com", "--audience", "aud"]

    with pytest.raises(SystemExit) as exited:
        cli_module.main(args)

    assert exited.value.code == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert [line.split(":")[0] for line in lines] == ["error", "hint"], captured.err
    assert "unexpected RuntimeError at test_user_cli.py:" in lines[0]
    assert "secret-looking" not in captured.err and "Traceback" not in captured.err

    monkeypatch.setenv("FLYTE_IAP_TRACEBACK", "1")
    with pytest.raises(RuntimeError):
        cli_module.main(args)
