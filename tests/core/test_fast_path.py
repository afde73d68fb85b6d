"""A warm token is printed by the stdlib-only fast path, without click, requests or google-auth."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

import flyte_iap
from flyte_iap import _entry
from flyte_iap.cache import TokenCache

AUD = "123-web.apps.googleusercontent.com"
CLIENT = "456-desktop.apps.googleusercontent.com"
SA = "ci@p.iam.gserviceaccount.com"
HEAVY = ("click", "requests", "google", "keyring", "yaml", "urllib3", "cryptography")
#: Standard-library modules that each cost the warm token command milliseconds, and that it does not need.
SLOW_STDLIB = ("typing", "pathlib", "base64", "importlib", "dataclasses", "inspect", "urllib", "logging")


def make_token(lifetime: int = 3600, aud: str = AUD) -> str:
    def part(obj: object) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

    claims = {"iss": "https://accounts.google.com", "aud": aud, "exp": int(time.time()) + lifetime}
    return f"{part({'alg': 'RS256'})}.{part(claims)}.c2ln"


def seed(cache_dir: Path, token: str, client: str = CLIENT) -> None:
    TokenCache(cache_dir).write("user", AUD, client, {"id_token": token, "client_id": client})


def test_cached_token_printed_without_heavy_imports(isolated_env: Path) -> None:
    token = make_token()
    seed(isolated_env, token)
    probe = (
        f"import sys; sys.argv = ['flyte-iap', 'token', '--audience', {AUD!r}]\n"
        "from flyte_iap._entry import main; main()\n"
        f"heavy = sorted({{m.split('.')[0] for m in sys.modules}} & set({HEAVY!r}))\n"
        "print('HEAVY=' + ','.join(heavy), file=sys.stderr)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, env=os.environ, check=True
    )
    assert out.stdout == token + "\n"
    assert "HEAVY=\n" in out.stderr


@pytest.mark.parametrize(
    ("kind", "principal", "args"),
    [
        ("user", CLIENT, ["token", "--audience", AUD]),
        ("sa", SA, ["sa-token", "--audience", AUD, "--impersonate-service-account", SA]),
    ],
)
def test_cached_token_imports_no_slow_standard_library_module(
    isolated_env: Path, kind: str, principal: str, args: list[str]
) -> None:
    token = make_token()
    TokenCache(isolated_env).write(kind, AUD, principal, {"id_token": token})
    # -S: without site, nothing is imported before the command but what it imports itself (a
    # development install's .pth finder imports pathlib and re, say).
    probe = (
        f"import sys; sys.path.insert(0, {str(Path(flyte_iap.__file__).parent.parent)!r})\n"
        f"before = set(sys.modules); sys.argv = ['flyte-iap', *{args!r}]\n"
        "from flyte_iap._entry import main; main()\n"
        "new = {m.split('.')[0] for m in set(sys.modules) - before}\n"
        f"print('SLOW=' + ','.join(sorted(new & set({SLOW_STDLIB!r}))), file=sys.stderr)\n"
    )
    out = subprocess.run(
        [sys.executable, "-S", "-c", probe], capture_output=True, text=True, env=os.environ, check=True
    )
    assert out.stdout == token + "\n"
    assert "SLOW=\n" in out.stderr


@pytest.mark.parametrize(
    "args",
    [
        ["--audience", AUD],
        [f"--audience={AUD}"],
        ["--audience", AUD, "--client-id", CLIENT, "--min-valid", "60"],
        ["--audience", AUD, "--store", "keyring", "--client-secret", "ignored-on-a-hit"],
    ],
)
def test_fast_path_accepts_the_token_command_forms(isolated_env: Path, args: list[str]) -> None:
    token = make_token()
    seed(isolated_env, token)
    assert _entry.FAST_COMMANDS["token"](args) == token


def test_compat_command_flags_map_to_audience_and_client(isolated_env: Path) -> None:
    token = make_token()
    seed(isolated_env, token)
    args = [
        "--desktop_client_id",
        CLIENT,
        "--desktop_client_secret_gcp_secret_name",
        "s",
        "--webapp_client_id",
        AUD,
        "--project",
        "p",
    ]
    assert _entry.FAST_COMMANDS["generate-user-id-token"](args) == token


def test_audience_from_environment(isolated_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    token = make_token()
    seed(isolated_env, token)
    monkeypatch.setenv("FLYTE_IAP_AUDIENCE", AUD)
    assert _entry.FAST_COMMANDS["token"]([]) == token


@pytest.mark.parametrize(
    "args",
    [
        ["--audience", AUD, "--unknown", "x"],  # an option it does not know
        ["--audience"],  # a missing value
        ["--audience", AUD, "--min-valid", "abc"],
        ["--audience", AUD, "--client-id", "another-client"],  # nothing cached for that client
        [],  # no audience at all
    ],
)
def test_anything_unusual_falls_through_to_the_cli(isolated_env: Path, args: list[str]) -> None:
    seed(isolated_env, make_token())
    assert _entry.FAST_COMMANDS["token"](args) is None


def test_token_inside_the_min_valid_margin_is_not_served(isolated_env: Path) -> None:
    from flyte_iap.errors import InvalidTokenError

    seed(isolated_env, make_token(lifetime=200))
    with pytest.raises(InvalidTokenError):  # main() turns this into a fall-through to the slow path
        _entry.FAST_COMMANDS["token"](["--audience", AUD])
    assert _entry.FAST_COMMANDS["token"](["--audience", AUD, "--min-valid", "100"]) is not None


def test_a_cache_warning_sends_the_run_to_the_slow_path(isolated_env: Path) -> None:
    seed(isolated_env, make_token())
    TokenCache(isolated_env).path("user", AUD, "broken").write_text("{oops")
    assert _entry.FAST_COMMANDS["token"](["--audience", AUD]) is None
