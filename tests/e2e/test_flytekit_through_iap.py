"""Real flytekit, configured by `flyte-iap config`, talks to flyteadmin through the IAP emulator.

flytekit runs the configured ``admin.proxyCommand`` (this environment's ``flyte-iap``) as a subprocess,
sends its stdout as ``proxy-authorization`` on gRPC and HTTP, and re-runs it when IAP answers 401.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from flytekit.configuration import Config, PlatformConfig
from flytekit.exceptions.user import FlyteAuthenticationException
from flytekit.remote import FlyteRemote

import flyte_iap
from flyte_iap.testing import FakeFlyteAdmin, FakeGoogle, IapProxy

WriteConfig = Callable[..., Path]

pytestmark = pytest.mark.e2e


def _remote(config: Path) -> FlyteRemote:
    return FlyteRemote(
        Config.auto(config_file=str(config)), default_project="flytesnacks", default_domain="development"
    )


def _assert_flyteadmin_never_saw_iap_credentials(admin: FakeFlyteAdmin) -> None:
    assert admin.grpc_calls, "no call reached flyteadmin"
    for call in admin.grpc_calls:
        assert "proxy-authorization" not in call.metadata, call.method
    for request in admin.http_requests:
        assert "proxy-authorization" not in request.headers, request.path


def test_flyte_remote_calls_pass_iap_with_the_user_token_command(
    write_config: WriteConfig, iap: IapProxy, admin: FakeFlyteAdmin, signed_in: str
) -> None:
    admin.add_execution("f7a1b2c3d4")
    remote = _remote(write_config(client_id=FakeGoogle.DESKTOP_CLIENT_ID))

    projects = remote.client.list_projects()
    executions = remote.recent_executions()

    assert [p.id for p in projects.projects] == ["flytesnacks"]
    assert [e.id.name for e in executions] == ["f7a1b2c3d4"]
    # flytekit's first call goes out without the header (it runs the command lazily), IAP refuses it
    assert [r.reason for r in iap.rejections] == ["empty_token"]
    assert iap.passed["grpc"] == 2
    assert {f.email for f in iap.forwarded} == {signed_in}
    assert {f.token_header for f in iap.forwarded} == {"proxy-authorization"}
    _assert_flyteadmin_never_saw_iap_credentials(admin)


def test_task_registration_and_lookup_pass_iap(
    write_config: WriteConfig, iap: IapProxy, admin: FakeFlyteAdmin, signed_in: str
) -> None:
    from flytekit import task
    from flytekit.configuration import ImageConfig, SerializationSettings

    @task
    def double(x: int) -> int:
        return 2 * x

    remote = _remote(write_config())
    settings = SerializationSettings(image_config=ImageConfig.auto_default_image())
    registered = remote.register_task(double, serialization_settings=settings, version="v1")
    fetched = remote.fetch_task(name=registered.id.name, version="v1")

    assert fetched.id.name.endswith("double")
    assert {c.method.rsplit("/", 1)[1] for c in admin.grpc_calls} >= {"CreateTask", "GetTask"}
    _assert_flyteadmin_never_saw_iap_credentials(admin)


def test_service_account_token_command_passes_iap(
    write_config: WriteConfig, iap: IapProxy, admin: FakeFlyteAdmin, fake_google: FakeGoogle
) -> None:
    # no user sign-in: `flyte-iap sa-token` asks FakeGoogle's metadata server (GCE_METADATA_HOST)
    remote = _remote(write_config(mode="service-account"))

    assert remote.client.list_projects().projects[0].id == "flytesnacks"
    assert {f.email for f in iap.forwarded} == {fake_google.metadata_service_account}
    _assert_flyteadmin_never_saw_iap_credentials(admin)


@pytest.fixture
def secured_admin(admin: FakeFlyteAdmin) -> FakeFlyteAdmin:
    """flyteadmin with its own auth on (useAuth), behind the same proxy."""
    admin.stop()
    admin.auth = True
    admin.start()
    return admin


def test_flyteadmin_client_secret_flow_passes_iap_and_flyteadmin_sees_only_its_own_header(
    fake_google: FakeGoogle,
    secured_admin: FakeFlyteAdmin,
    tmp_path: Path,
    signed_in: str,
) -> None:
    with IapProxy(
        fake_google.IAP_CLIENT_ID,
        certs_url=fake_google.certs_url,
        allowed=[signed_in],
        http_upstream=secured_admin.http_url,
        grpc_upstream=secured_admin.grpc_target,
    ) as iap:
        secured_admin.public_url = iap.url  # the token endpoint flyteadmin advertises is behind IAP
        secret = tmp_path / "client_secret"
        secret.write_text(secured_admin.client_secret + "\n")
        from flyte_iap.client_config import ClientConfig, render

        config = tmp_path / "ci.yaml"
        config.write_text(
            render(
                ClientConfig(
                    endpoint=iap.url,
                    audience=fake_google.IAP_CLIENT_ID,
                    admin_auth="client-secret",
                    admin_client_id=secured_admin.client_id,
                    admin_client_secret_location=str(secret),
                )
            )
        )
        remote = _remote(config)

        assert remote.client.list_projects().projects[0].id == "flytesnacks"
        assert remote.client.list_projects().projects[0].id == "flytesnacks"

    # the token request went to flyteadmin over HTTP through IAP, with flyteadmin's Basic credentials
    token_requests = [f for f in iap.forwarded if f.path == "/oauth2/token"]
    assert len(token_requests) == 1 and token_requests[0].protocol == "http"
    assert token_requests[0].token_header == "proxy-authorization"
    assert token_requests[0].headers["authorization"].startswith("Basic ")
    # the calls that succeeded carried both: IAP's proxy-authorization (consumed at the proxy) and
    # flyteadmin's flyte-authorization (forwarded untouched)
    listed = [c for c in secured_admin.calls_to("ListProjects") if c.code == "OK"]
    assert len(listed) == 2
    token = secured_admin.issued_tokens[0]
    assert {c.metadata["flyte-authorization"] for c in listed} == {f"Bearer {token}"}
    passed = [
        f for f in iap.forwarded if f.path.endswith("ListProjects") and "flyte-authorization" in f.headers
    ]
    assert len(passed) == 2 and {f.token_header for f in passed} == {"proxy-authorization"}
    _assert_flyteadmin_never_saw_iap_credentials(secured_admin)


def test_without_proxy_command_every_call_stops_at_iap(
    iap: IapProxy, admin: FakeFlyteAdmin, tmp_path: Path
) -> None:
    config = tmp_path / "no-proxy.yaml"
    config.write_text(f"admin:\n  endpoint: dns:///{iap.endpoint}\n  insecure: true\n")
    remote = _remote(config)

    with pytest.raises(FlyteAuthenticationException, match="status: 401"):
        remote.client.list_projects()

    # flytekit retries (rpc_retries), asking flyteadmin's auth metadata each time: all refused by IAP
    assert iap.rejected["grpc"] >= 2
    assert {r.path.rsplit("/", 1)[1] for r in iap.rejections} == {"ListProjects", "GetPublicClientConfig"}
    assert {r.reason for r in iap.rejections} == {"empty_token"}
    assert iap.passed.total() == 0
    assert admin.grpc_calls == [] and admin.http_requests == []


def test_id_token_expiring_mid_session_is_refreshed_by_rerunning_the_command(
    write_config: WriteConfig, iap: IapProxy, admin: FakeFlyteAdmin, fake_google: FakeGoogle, signed_in: str
) -> None:
    # The cached token lives 200 s: less than flyte-iap's 300 s refresh margin, so the next run refreshes.
    fake_google.token_lifetime = 200
    flyte_iap.get_user_id_token(fake_google.IAP_CLIENT_ID, min_valid=3600)
    remote = _remote(write_config())
    assert remote.client.list_projects().projects
    assert [r.reason for r in iap.rejections] == ["empty_token"]

    # 250 s later by IAP's clock the token has expired; Google now issues hour-long tokens again.
    fake_google.token_lifetime = 3600
    iap.clock = lambda: time.time() + 250

    assert remote.client.list_projects().projects  # the same client: flytekit keeps the token in memory
    assert [r.reason for r in iap.rejections] == ["empty_token", "expired"]
    assert iap.passed["grpc"] == 2
    assert len(admin.calls_to("ListProjects")) == 2


def test_pyflyte_subprocess_reaches_flyteadmin_through_iap(
    write_config: WriteConfig, iap: IapProxy, admin: FakeFlyteAdmin, signed_in: str
) -> None:
    config = write_config()
    pyflyte = Path(sys.executable).with_name("pyflyte")

    result = subprocess.run(
        [str(pyflyte), "--config", str(config), "info"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "COLUMNS": "200"},
        stdin=subprocess.DEVNULL,
    )

    assert result.returncode == 0, result.stderr
    assert "v1.16.0-fake" in result.stdout
    assert [c.method for c in admin.grpc_calls] == ["/flyteidl.service.AdminService/GetVersion"]
    assert iap.passed["grpc"] == 1
    _assert_flyteadmin_never_saw_iap_credentials(admin)


def test_tls_endpoint_with_ca_cert_file(
    fake_google: FakeGoogle, admin: FakeFlyteAdmin, tmp_path: Path, signed_in: str
) -> None:
    with IapProxy(
        fake_google.IAP_CLIENT_ID,
        certs_url=fake_google.certs_url,
        allowed=[signed_in],
        http_upstream=admin.http_url,
        grpc_upstream=admin.grpc_target,
        tls=True,
    ) as iap:
        from flyte_iap.client_config import ClientConfig, render

        config = tmp_path / "tls.yaml"
        assert iap.ca_cert_file is not None
        config.write_text(
            render(
                ClientConfig(
                    endpoint=iap.url, audience=fake_google.IAP_CLIENT_ID, ca_cert_file=iap.ca_cert_file
                )
            )
        )
        platform = PlatformConfig.auto(config_file=str(config))
        assert (platform.insecure, platform.ca_cert_file_path) == (False, iap.ca_cert_file)

        assert _remote(config).client.list_projects().projects[0].id == "flytesnacks"
        assert iap.passed["grpc"] == 1
