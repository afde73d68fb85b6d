"""`flyte-iap proxy` as a real process: the URL on stdout, usage on stderr, errors, clean shutdown; and
`flyte-iap token` never pays for the proxy's HTTP stack."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from flyte_iap.cli import main
from flyte_iap.testing import FakeGoogle, IapProxy
from flyte_iap.user_tokens import get_user_id_token

_STACK = ("h2", "h11", "hpack", "hyperframe", "flyte_iap.local_proxy")


def _flyte_iap() -> str:
    return str(Path(sys.executable).parent / "flyte-iap")


def _start(args: list[str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [_flyte_iap(), "proxy", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        env=os.environ,
    )


def test_proxy_prints_its_url_serves_and_stops_cleanly_on_sigterm(
    tls_iap: IapProxy, fake_google: FakeGoogle, signed_in: str
) -> None:
    process = _start(
        [
            "--endpoint",
            tls_iap.url,
            "--audience",
            fake_google.IAP_CLIENT_ID,
            "--ca-cert",
            str(tls_iap.ca_cert_file),
        ]
    )
    try:
        assert process.stdout is not None
        url = process.stdout.readline().strip()
        response = requests.get(url + "/api/v1/projects", timeout=20)
    finally:
        process.send_signal(signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=30)

    assert url.startswith("http://127.0.0.1:")
    assert response.status_code == 200
    assert process.returncode == 0
    assert stdout == ""  # nothing but the URL on stdout
    assert f"dns:///{url.removeprefix('http://')}" in stderr
    assert signed_in in stderr and "stopped (1 requests forwarded)" in stderr
    token = get_user_id_token(fake_google.IAP_CLIENT_ID, interactive=False)  # the one the proxy sent
    assert token.split(".")[2] not in stderr


def test_proxy_takes_endpoint_and_audience_from_a_profile(
    tls_iap: IapProxy,
    fake_google: FakeGoogle,
    signed_in: str,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    from flyte_iap.profiles import set_profile

    monkeypatch.setenv("FLYTE_IAP_CONFIG_DIR", str(tmp_path / "config"))
    set_profile(
        "staging",
        {
            "endpoint": tls_iap.url,
            "audience": fake_google.IAP_CLIENT_ID,
            "client_id": fake_google.DESKTOP_CLIENT_ID,
        },
    )
    process = _start(["--profile", "staging", "--ca-cert", str(tls_iap.ca_cert_file)])
    try:
        assert process.stdout is not None
        url = process.stdout.readline().strip()
        response = requests.get(url + "/api/v1/projects", timeout=20)
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=30)

    assert response.status_code == 200, stderr
    assert f"-> {tls_iap.url}" in stderr and signed_in in stderr


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({"audience": "123456789012-iap.apps.googleusercontent.com"}, "Missing option '--endpoint'"),
        ({"endpoint": "https://flyte.example.com", "mode": "service-account-jwt"}, "service-account-jwt"),
    ],
)
def test_proxy_refuses_a_profile_it_cannot_use(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    values: dict[str, str],
    expected: str,
) -> None:
    from flyte_iap.profiles import set_profile

    monkeypatch.setenv("FLYTE_IAP_CONFIG_DIR", str(tmp_path / "config"))
    set_profile("broken", values)

    with pytest.raises(SystemExit) as exited:
        main(["proxy", "--profile", "broken"])

    assert exited.value.code != 0
    captured = capsys.readouterr()
    assert captured.out == ""
    assert expected in captured.err and "hint:" in captured.err


def test_proxy_with_require_secret_prints_the_secret_on_stderr_and_enforces_it(
    tls_iap: IapProxy, fake_google: FakeGoogle, signed_in: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FLYTE_IAP_PROXY_SECRET", "chosen-by-the-wrapper")
    process = _start(
        [
            "--endpoint",
            tls_iap.url,
            "--audience",
            fake_google.IAP_CLIENT_ID,
            "--ca-cert",
            str(tls_iap.ca_cert_file),
            "--require-secret",
        ]
    )
    try:
        assert process.stdout is not None
        url = process.stdout.readline().strip()
        without = requests.get(url + "/api/v1/projects", timeout=20).status_code
        with_secret = requests.get(
            url + "/api/v1/projects",
            headers={"x-flyte-iap-proxy-secret": "chosen-by-the-wrapper"},
            timeout=20,
        ).status_code
    finally:
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=30)

    assert (without, with_secret) == (407, 200)
    assert "export FLYTE_IAP_PROXY_SECRET=chosen-by-the-wrapper" in stderr
    assert process.returncode == 0


def test_login_needed_without_a_terminal_fails_at_once_with_the_login_command(
    tls_iap: IapProxy, fake_google: FakeGoogle
) -> None:
    started = time.monotonic()
    result = subprocess.run(
        [_flyte_iap(), "proxy", "--endpoint", tls_iap.url, "--audience", fake_google.IAP_CLIENT_ID],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        env=os.environ,
        timeout=60,
        check=False,
    )

    assert result.returncode == 1
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert lines[0].startswith("error: not signed in for audience")
    assert lines[1].startswith("hint: ") and "flyte-iap login --audience" in lines[1]
    assert time.monotonic() - started < 30


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--bind", "0.0.0.0"], "error: --bind 0.0.0.0 is not a loopback address"),
        (["--bind", "0.0.0.0", "--allow-remote"], "needs a secret"),
        (["--endpoint", "http://flyte.example.com"], "is not https"),
        (["--endpoint", "https://flyte.example.com/console"], "is not an origin"),
        (["--key-file", "k.json"], "are for service-account tokens"),
    ],
)
def test_unsafe_or_malformed_options_are_one_line_errors(
    args: list[str], message: str, signed_in: str, fake_google: FakeGoogle, capsys: pytest.CaptureFixture[str]
) -> None:
    base = {"--endpoint": "https://flyte.example.com", "--audience": fake_google.IAP_CLIENT_ID}
    for name, value in zip(args[::2], args[1::2], strict=False):
        if name in base:
            base[name] = value
    extra = [a for i, a in enumerate(args) if not (a in base or (i and args[i - 1] in base))]
    argv = ["proxy", *[x for kv in base.items() for x in kv], *extra]

    with pytest.raises(SystemExit) as exit_info:
        main(argv)

    err = capsys.readouterr().err
    assert exit_info.value.code == 2
    assert message in err.splitlines()[0]
    assert err.splitlines()[1].startswith("hint: ")


def test_missing_http_stack_is_an_error_with_the_install_command(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from flyte_iap import local_proxy

    monkeypatch.setattr(local_proxy, "_STACK", ("h11", "no_such_module_for_the_test"))

    with pytest.raises(SystemExit) as exit_info:
        main(["proxy", "--endpoint", "https://flyte.example.com", "--audience", "a"])

    err = capsys.readouterr().err.splitlines()
    assert exit_info.value.code == 2
    assert err[0] == "error: flyte-iap proxy needs no_such_module_for_the_test, which is not installed"
    # the extra's own requirements: flyte-iap itself is on no package index
    assert err[1].startswith("hint: pip install 'h11>=0.14' 'h2>=4.1' (flyte-iap's [proxy] extra)")


@pytest.mark.parametrize("fast_path", ["0", "1"])
def test_token_command_does_not_import_the_proxy_stack(
    fast_path: str, fake_google: FakeGoogle, signed_in: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # FLYTE_IAP_NO_FAST_PATH=1 runs the click CLI, which registers `proxy` too
    monkeypatch.setenv("FLYTE_IAP_NO_FAST_PATH", "1" if fast_path == "0" else "0")
    probe = (
        f"import sys; sys.argv = ['flyte-iap', 'token', '--audience', {fake_google.IAP_CLIENT_ID!r}]\n"
        "from flyte_iap._entry import main\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        f"loaded = sorted(m for m in sys.modules if m.split('.')[0] in {_STACK!r} or m in {_STACK!r})\n"
        "print('LOADED=' + ','.join(loaded), file=sys.stderr)\n"
    )

    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, env=os.environ, check=True
    )

    assert out.stdout.count(".") == 2  # the token
    assert "LOADED=\n" in out.stderr
