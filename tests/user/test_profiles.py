"""Profiles: a TOML file of named deployments that fills the token commands' options, `profile set` finds
the audience once, `config --profile` writes a short proxy command, and bad files get one-line errors."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml
from helpers import ProxyFactory
from helpers.user import Runner, ScriptedBrowser

from flyte_iap.errors import ConfigurationError
from flyte_iap.idtoken import decode_claims
from flyte_iap.profiles import MAX_BYTES, get_profile, load_profiles, profiles_path, render, set_profile
from flyte_iap.testing import FakeGoogle
from flyte_iap.user_tokens import login_user

MANAGED = "999999999999-googlemanagedfakeclient.apps.googleusercontent.com"


def test_profiles_live_in_the_platform_config_dir_or_flyte_iap_config_dir(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    assert profiles_path() == os.path.join(os.environ["HOME"], ".config", "flyte-iap", "profiles.toml")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    assert profiles_path() == str(tmp_path / "xdg" / "flyte-iap" / "profiles.toml")
    monkeypatch.setenv("FLYTE_IAP_CONFIG_DIR", str(tmp_path / "mine"))
    assert profiles_path() == str(tmp_path / "mine" / "profiles.toml")


def test_set_then_load_round_trips_awkward_values_and_keeps_the_file_private() -> None:
    set_profile("prod", {"endpoint": "https://flyte.example.com", "key_file": 'C:\\keys\\"ci".json'})
    set_profile("prod", {"audience": "123-iap.apps.googleusercontent.com", "key_file": None})

    assert get_profile("prod") == {
        "endpoint": "https://flyte.example.com",
        "audience": "123-iap.apps.googleusercontent.com",
        "key_file": 'C:\\keys\\"ci".json',
    }
    assert os.stat(profiles_path()).st_mode & 0o777 == 0o600


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("[profiles.prod\n", "not valid TOML"),
        ('[profiles.prod]\nendpoint = "x"\npassword = "hunter2"\n', "unknown key(s) password"),
        ("[profiles.prod]\nendpoint = 3\n", "must be non-empty strings"),
        ('[profiles.prod]\nmode = "robot"\n', "has mode 'robot'"),
        ('profiles = "nope"\n', "must be a table of tables"),
        ("[profiles]\nprod = 1\n", "is not a table"),
        ("a = " + "[" * 5000 + "]" * 5000 + "\n", "not valid TOML"),
    ],
    ids=["syntax", "unknown-key", "not-a-string", "bad-mode", "not-tables", "not-a-table", "deep-nesting"],
)
def test_a_bad_profiles_file_is_a_configuration_error(text: str, needle: str) -> None:
    path = Path(profiles_path())
    path.parent.mkdir(parents=True)
    path.write_text(text)

    with pytest.raises(ConfigurationError, match=None) as caught:
        load_profiles()

    assert needle in caught.value.message


def test_a_huge_file_or_a_fifo_is_refused_without_reading_it() -> None:
    path = Path(profiles_path())
    path.parent.mkdir(parents=True)
    path.write_text("#" * (MAX_BYTES + 1))
    with pytest.raises(ConfigurationError, match="larger than"):
        load_profiles()
    path.unlink()
    os.mkfifo(path)
    with pytest.raises(ConfigurationError, match="not a regular file"):
        load_profiles()


def test_file_names_in_a_profile_have_the_home_directory_expanded() -> None:
    set_profile("prod", {"client_secrets_file": "~/desktop.json", "key_file": "~/ci.json"})

    values = get_profile("prod")

    assert values["client_secrets_file"] == os.path.join(os.environ["HOME"], "desktop.json")
    assert values["key_file"] == os.path.join(os.environ["HOME"], "ci.json")
    assert load_profiles()["prod"]["key_file"] == "~/ci.json"  # stored as written


def test_unknown_profile_names_the_known_ones() -> None:
    set_profile("prod", {"endpoint": "https://flyte.example.com"})

    with pytest.raises(ConfigurationError, match=r"no profile 'stage' .* \(profiles: prod\)"):
        get_profile("stage")


def test_render_quotes_names_that_are_not_bare_keys() -> None:
    assert '[profiles."my profile"]' in render({"my profile": {"endpoint": "https://x"}})


# -- through the command line -------------------------------------------------------------------------


@pytest.fixture
def logged_in(fake_google: FakeGoogle, aud: str) -> None:
    login_user(
        aud,
        client_id=fake_google.DESKTOP_CLIENT_ID,
        client_secret=fake_google.DESKTOP_CLIENT_SECRET,
        opener=ScriptedBrowser(fake_google),
        notify=lambda message: None,
        timeout=20,
    )


@pytest.mark.parametrize("fast", [None, "1"], ids=["fast-path", "click"])
def test_token_with_a_profile_prints_the_profiles_token(
    run_cli: Runner,
    cli_env: dict[str, str],
    fake_google: FakeGoogle,
    aud: str,
    logged_in: None,
    fast: str | None,
) -> None:
    set_profile("prod", {"endpoint": "https://flyte.example.com", "audience": aud})
    env = dict(cli_env, **({"FLYTE_IAP_NO_FAST_PATH": fast} if fast else {}))

    by_option = run_cli("token", "--profile", "prod", env=env)
    by_env = run_cli("token", env=dict(env, FLYTE_IAP_PROFILE="prod"))

    assert by_option.returncode == 0, by_option.stderr
    assert decode_claims(by_option.stdout.strip())["aud"] == aud
    assert by_env.stdout == by_option.stdout


def test_options_on_the_command_line_win_over_the_profile(
    run_cli: Runner, aud: str, logged_in: None, fake_google: FakeGoogle
) -> None:
    set_profile("prod", {"audience": "123456789012-other.apps.googleusercontent.com"})

    result = run_cli("token", "--profile", "prod", "--audience", aud)

    assert decode_claims(result.stdout.strip())["aud"] == aud


def test_missing_profile_is_an_error_and_a_hint(run_cli: Runner) -> None:
    result = run_cli("token", "--profile", "nope")

    assert result.returncode == 2 and result.stdout == ""
    error, hint = result.stderr.splitlines()
    assert error.startswith("error: no profile 'nope' in ")
    assert hint == "hint: add it with `flyte-iap profile set nope --endpoint URL ...`"


@pytest.mark.parametrize(
    ("managed", "expected"),
    [(False, "IAP_CLIENT_ID"), (True, "DESKTOP_CLIENT_ID")],
    ids=["custom", "managed"],
)
def test_profile_set_finds_the_audience_once_from_iaps_redirect(
    run_cli: Runner, make_proxy: ProxyFactory, fake_google: FakeGoogle, managed: bool, expected: str
) -> None:
    proxy = make_proxy(google_managed=managed)
    if managed:
        proxy.audience = MANAGED

    result = run_cli(
        "profile", "set", "prod", "--endpoint", proxy.url, "--client-id", fake_google.DESKTOP_CLIENT_ID
    )

    assert result.returncode == 0, result.stderr
    assert get_profile("prod")["audience"] == getattr(fake_google, expected)
    assert "use: flyte-iap token --profile prod" in result.stderr


def test_config_with_a_profile_writes_a_short_proxy_command(run_cli: Runner, aud: str) -> None:
    set_profile("prod", {"endpoint": "https://flyte.example.com", "audience": aud})
    set_profile("ci", {"endpoint": "https://flyte.example.com", "mode": "service-account-jwt"})

    user = yaml.safe_load(run_cli("config", "--profile", "prod").stdout)["admin"]
    ci = yaml.safe_load(run_cli("config", "--profile", "ci").stdout)["admin"]

    assert user["proxyCommand"] == ["flyte-iap", "token", "--profile", "prod"]
    assert user["endpoint"] == "dns:///flyte.example.com"
    assert ci["proxyCommand"] == ["flyte-iap", "sa-jwt", "--profile", "ci"]


def test_profile_list_shows_every_profile(run_cli: Runner) -> None:
    set_profile("prod", {"endpoint": "https://flyte.example.com"})

    result = run_cli("profile", "list")

    assert result.stdout == "prod:\n  endpoint: https://flyte.example.com\n"


def test_logout_with_a_profile_forgets_that_profiles_sign_in(
    run_cli: Runner, aud: str, logged_in: None, fake_google: FakeGoogle
) -> None:
    set_profile("prod", {"audience": aud})

    result = run_cli("logout", "--profile", "prod")

    assert result.returncode == 0, result.stderr
    assert f"signed out for audience {aud}" in result.stderr
    assert run_cli("token", "--profile", "prod").returncode == 1
