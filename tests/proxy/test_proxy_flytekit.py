"""Real flytekit with no proxyCommand at all, pointed at the local proxy, reaches flyteadmin behind IAP."""

from __future__ import annotations

from pathlib import Path

import pytest
from flytekit.configuration import Config
from flytekit.remote import FlyteRemote
from helpers import ProxyFactory
from helpers.proxy import LocalFactory, assert_flyteadmin_never_saw_iap_credentials

from flyte_iap.local_proxy.server import LocalProxy
from flyte_iap.testing import FakeFlyteAdmin, IapProxy

pytestmark = pytest.mark.e2e


def _remote(tmp_path: Path, local: LocalProxy) -> FlyteRemote:
    config = tmp_path / "config.yaml"
    # what `flyte-iap proxy` prints: no proxyCommand, no auth section
    config.write_text(f"admin:\n  endpoint: dns:///127.0.0.1:{local.port}\n  insecure: true\n")
    return FlyteRemote(
        Config.auto(config_file=str(config)), default_project="flytesnacks", default_domain="development"
    )


def test_flyte_remote_without_proxy_command_passes_iap_on_every_call(
    tmp_path: Path, local: LocalProxy, tls_iap: IapProxy, admin: FakeFlyteAdmin, signed_in: str
) -> None:
    admin.add_execution("f7a1b2c3d4")
    remote = _remote(tmp_path, local)

    projects = remote.client.list_projects()
    executions = remote.recent_executions()

    assert [p.id for p in projects.projects] == ["flytesnacks"]
    assert [e.id.name for e in executions] == ["f7a1b2c3d4"]
    # unlike admin.proxyCommand, not even the first call goes out without the header
    assert tls_iap.rejections == []
    assert {(f.protocol, f.email, f.token_header) for f in tls_iap.forwarded} == {
        ("grpc", signed_in, "proxy-authorization")
    }
    assert_flyteadmin_never_saw_iap_credentials(admin)


def test_task_registration_through_the_proxy(
    tmp_path: Path, local: LocalProxy, tls_iap: IapProxy, admin: FakeFlyteAdmin
) -> None:
    from flytekit import task
    from flytekit.configuration import ImageConfig, SerializationSettings

    @task
    def double(x: int) -> int:
        return 2 * x

    remote = _remote(tmp_path, local)
    settings = SerializationSettings(image_config=ImageConfig.auto_default_image())
    registered = remote.register_task(double, serialization_settings=settings, version="v1")
    fetched = remote.fetch_task(name=registered.id.name, version="v1")

    assert fetched.id.name.endswith("double")
    assert {c.method.rsplit("/", 1)[1] for c in admin.grpc_calls} >= {"CreateTask", "GetTask"}
    assert tls_iap.rejections == []


def test_flytekit_client_secret_flow_sends_its_token_request_through_the_proxy(
    tmp_path: Path,
    admin: FakeFlyteAdmin,
    make_proxy: ProxyFactory,
    make_local: LocalFactory,
    signed_in: str,
) -> None:
    # flyteadmin with its own auth, advertising its token endpoint on the IAP origin, as a real one
    # does for requests whose host is the IAP endpoint (flyteadmin/auth/handler_utils.go GetPublicURL)
    admin.stop()
    admin.auth = True
    admin.start()
    iap = make_proxy(tls=True, http_upstream=admin.http_url, grpc_upstream=admin.grpc_target)
    admin.public_url = iap.url
    local = make_local(endpoint=iap.url, ca_cert=iap.ca_cert_file)
    secret = tmp_path / "client_secret"
    secret.write_text(admin.client_secret + "\n")
    config = tmp_path / "config.yaml"
    config.write_text(
        f"admin:\n  endpoint: dns:///127.0.0.1:{local.port}\n  insecure: true\n"
        f"  authType: ClientSecret\n  clientId: {admin.client_id}\n  clientSecretLocation: {secret}\n"
    )
    remote = FlyteRemote(
        Config.auto(config_file=str(config)), default_project="flytesnacks", default_domain="development"
    )

    assert [p.id for p in remote.client.list_projects().projects] == ["flytesnacks"]

    # the token request reached flyteadmin over HTTP through the proxy and IAP, with IAP's header
    token_requests = [f for f in iap.forwarded if f.path == "/oauth2/token"]
    assert [(f.protocol, f.token_header) for f in token_requests] == [("http", "proxy-authorization")]
    assert iap.rejections == []
    assert admin.issued_tokens  # and flyteadmin's own token was used on the calls after it
    assert_flyteadmin_never_saw_iap_credentials(admin)
