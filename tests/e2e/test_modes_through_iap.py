"""Each way into IAP, end to end with real flytekit through an IapProxy set up as that mode's IAP is.

* custom OAuth client: tests/e2e/test_flytekit_through_iap.py (unchanged);
* Google-managed client + a Desktop client on the programmatic-client allowlist: `flyte-iap login` and
  `token` with only the Desktop client's ID and secret, whose own ID is the audience;
* service-account signed JWT: `flyte-iap sa-jwt`, no OAuth client at all;
* the wrong mode for the setup: IAP's rejection, and flyte-iap's hint naming the mode to use.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from flytekit.configuration import Config
from flytekit.exceptions.user import FlyteAuthenticationException
from flytekit.remote import FlyteRemote
from helpers import ProxyFactory

from flyte_iap.client_config import ClientConfig, render
from flyte_iap.idtoken import decode_claims
from flyte_iap.testing import FakeFlyteAdmin, FakeGoogle, IapProxy

pytestmark = pytest.mark.e2e

#: The Google-managed OAuth client lives in a Google project, not the app's.
MANAGED_CLIENT = "999999999999-googlemanagedfakeclient.apps.googleusercontent.com"
CI_SA = "flyte-ci@fake-project.iam.gserviceaccount.com"


def _remote(config: Path) -> FlyteRemote:
    return FlyteRemote(
        Config.auto(config_file=str(config)), default_project="flytesnacks", default_domain="development"
    )


def _config(tmp_path: Path, **settings: object) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(render(ClientConfig(**settings)))  # type: ignore[arg-type]
    return path


def _cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "flyte_iap", *args],
        env={**os.environ, **env},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def managed_iap(
    make_proxy: ProxyFactory, admin: FakeFlyteAdmin, fake_google: FakeGoogle
) -> Iterator[IapProxy]:
    """IAP with the Google-managed client and the Desktop client on its programmatic-client allowlist."""
    proxy = make_proxy(
        google_managed=True,
        programmatic_clients=[fake_google.DESKTOP_CLIENT_ID],
        allowed=[fake_google.user_email, f"serviceAccount:{CI_SA}"],
    )
    proxy.audience = MANAGED_CLIENT
    admin.public_url = proxy.url
    yield proxy


@pytest.fixture
def desktop_login(fake_google: FakeGoogle) -> subprocess.CompletedProcess[str]:
    """`flyte-iap login` with only the Desktop client's ID and secret (scripted browser)."""
    return _cli(
        "login",
        "--client-id",
        fake_google.DESKTOP_CLIENT_ID,
        "--client-secret",
        fake_google.DESKTOP_CLIENT_SECRET,
        BROWSER=fake_google.browser_command,
    )


def test_managed_client_desktop_login_with_only_client_id_and_secret_lets_flytekit_through(
    managed_iap: IapProxy,
    admin: FakeFlyteAdmin,
    fake_google: FakeGoogle,
    desktop_login: subprocess.CompletedProcess[str],
    tmp_path: Path,
) -> None:
    assert desktop_login.returncode == 0, desktop_login.stderr
    desktop = fake_google.DESKTOP_CLIENT_ID
    config = _config(tmp_path, endpoint=managed_iap.url, audience=desktop, client_id=desktop)

    projects = _remote(config).client.list_projects()

    assert [p.id for p in projects.projects] == ["flytesnacks"]
    assert {f.email for f in managed_iap.forwarded} == {fake_google.user_email}
    assert all(r.reason == "empty_token" for r in managed_iap.rejections)  # flytekit's first, headerless call


def test_token_finds_the_desktop_audience_from_iaps_redirect_to_the_managed_client(
    managed_iap: IapProxy, fake_google: FakeGoogle, desktop_login: subprocess.CompletedProcess[str]
) -> None:
    result = _cli("token", "--endpoint", managed_iap.url, "--client-id", fake_google.DESKTOP_CLIENT_ID)

    assert result.returncode == 0, result.stderr
    assert decode_claims(result.stdout.strip())["aud"] == fake_google.DESKTOP_CLIENT_ID


def test_custom_client_audience_against_a_managed_client_app_is_refused_by_iap_and_by_our_check(
    managed_iap: IapProxy, fake_google: FakeGoogle, signed_in: str, tmp_path: Path
) -> None:
    # signed in for the custom client's audience, as before the app moved to the Google-managed client
    config = _config(
        tmp_path,
        endpoint=managed_iap.url,
        audience=fake_google.IAP_CLIENT_ID,
        client_id=fake_google.DESKTOP_CLIENT_ID,
    )

    with pytest.raises(FlyteAuthenticationException, match="status: 401"):
        _remote(config).client.list_projects()
    checked = _cli(
        "token",
        "--endpoint",
        managed_iap.url,
        "--audience",
        fake_google.IAP_CLIENT_ID,
        "--client-id",
        fake_google.DESKTOP_CLIENT_ID,
        FLYTE_IAP_NO_FAST_PATH="1",
    )

    assert {r.reason for r in managed_iap.rejections} >= {"wrong_audience"}
    assert checked.returncode == 2 and checked.stdout == ""  # a configuration error
    error, hint = checked.stderr.splitlines()
    assert error.startswith(f"error: --audience {fake_google.IAP_CLIENT_ID} is not an audience IAP at")
    assert MANAGED_CLIENT in error
    assert "the Google-managed client" in hint
    assert "--client-id DESKTOP_CLIENT_ID" in hint and "sa-jwt --url" in hint


def test_service_account_jwt_lets_flytekit_through_an_app_with_no_oauth_client_of_its_own(
    managed_iap: IapProxy, admin: FakeFlyteAdmin, fake_google: FakeGoogle, tmp_path: Path
) -> None:
    key = tmp_path / "ci-key.json"
    key.write_text(__import__("json").dumps(fake_google.add_service_account(CI_SA)))
    os.environ["GOOGLE_APPLICATION_CREDENTIALS"] = str(key)
    try:
        config = _config(tmp_path, endpoint=managed_iap.url, audience="", mode="service-account-jwt")
        assert "sa-jwt" in config.read_text()

        projects = _remote(config).client.list_projects()
    finally:
        del os.environ["GOOGLE_APPLICATION_CREDENTIALS"]

    assert projects.projects[0].id == "flytesnacks"
    assert {f.email for f in managed_iap.forwarded} == {CI_SA}
    for call in admin.grpc_calls:
        assert "proxy-authorization" not in call.metadata


def test_service_account_id_token_against_a_managed_client_app_gets_iaps_rejection(
    managed_iap: IapProxy, fake_google: FakeGoogle, tmp_path: Path
) -> None:
    # sa-token mints ID tokens for an OAuth client; the managed client gives them no programmatic access
    fake_google.allow_impersonation(
        fake_google.metadata_service_account, fake_google.metadata_service_account
    )
    config = _config(tmp_path, endpoint=managed_iap.url, audience=MANAGED_CLIENT, mode="service-account")

    with pytest.raises(FlyteAuthenticationException, match="status: 401"):
        _remote(config).client.list_projects()

    assert "wrong_audience" in {r.reason for r in managed_iap.rejections}


def test_flytekit_runs_a_profile_proxy_command_written_by_config(
    managed_iap: IapProxy,
    fake_google: FakeGoogle,
    desktop_login: subprocess.CompletedProcess[str],
    tmp_path: Path,
) -> None:
    from flyte_iap.profiles import set_profile

    assert desktop_login.returncode == 0, desktop_login.stderr
    set_profile("staging", {"endpoint": managed_iap.url, "client_id": fake_google.DESKTOP_CLIENT_ID})
    config = tmp_path / "config.yaml"
    written = _cli("config", "--profile", "staging", "--output", str(config))
    assert written.returncode == 0, written.stderr

    projects = _remote(config).client.list_projects()

    assert '  proxyCommand: ["flyte-iap", "token", "--profile", "staging"]\n' in config.read_text()
    assert projects.projects[0].id == "flytesnacks"
    assert {f.email for f in managed_iap.forwarded} == {fake_google.user_email}
