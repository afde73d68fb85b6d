"""FakeFlyteAdmin answers like flyteadmin, with and without its own auth, and records every header."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
import requests
from flyteidl.admin import common_pb2, execution_pb2, project_pb2, version_pb2
from flyteidl.core import identifier_pb2
from flyteidl.service import admin_pb2_grpc, auth_pb2, auth_pb2_grpc

from flyte_iap.testing import FakeFlyteAdmin

# secure mode: requests to the fake's self-signed HTTPS port skip verification, as the load balancer does
pytestmark = pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")


@pytest.fixture
def admin() -> Iterator[FakeFlyteAdmin]:
    with FakeFlyteAdmin() as fake:
        yield fake


@pytest.fixture
def secured() -> Iterator[FakeFlyteAdmin]:
    with FakeFlyteAdmin(auth=True, public_url="https://flyte.example.com") as fake:
        yield fake


def _admin_stub(fake: FakeFlyteAdmin) -> tuple[grpc.Channel, admin_pb2_grpc.AdminServiceStub]:
    channel = grpc.insecure_channel(fake.grpc_target)
    return channel, admin_pb2_grpc.AdminServiceStub(channel)


def test_without_auth_admin_calls_answer_and_auth_metadata_is_not_served(admin: FakeFlyteAdmin) -> None:
    channel, stub = _admin_stub(admin)
    with channel:
        version = stub.GetVersion(version_pb2.GetVersionRequest(), timeout=5)
        projects = stub.ListProjects(project_pb2.ProjectListRequest(), timeout=5)
        with pytest.raises(grpc.RpcError) as caught:
            auth_pb2_grpc.AuthMetadataServiceStub(channel).GetPublicClientConfig(
                auth_pb2.PublicClientAuthConfigRequest(), timeout=5
            )

    assert version.control_plane_version.Version
    assert [p.id for p in projects.projects] == ["flytesnacks"]
    # flyteadmin registers AuthMetadataService only with useAuth
    assert caught.value.code() == grpc.StatusCode.UNIMPLEMENTED
    assert [c.code for c in admin.grpc_calls] == ["OK", "OK", "UNIMPLEMENTED"]


def test_every_grpc_calls_metadata_is_recorded(admin: FakeFlyteAdmin) -> None:
    channel, stub = _admin_stub(admin)
    with channel:
        stub.ListProjects(project_pb2.ProjectListRequest(), metadata=[("x-probe", "1"), ("x-probe", "2")])

    call = admin.calls_to("ListProjects")[0]
    assert call.method == "/flyteidl.service.AdminService/ListProjects"
    assert call.metadata["x-probe"] == "2"
    assert ("x-probe", "1") in call.metadata_pairs


def test_with_auth_calls_need_a_token_from_the_token_endpoint(secured: FakeFlyteAdmin) -> None:
    channel, stub = _admin_stub(secured)
    with channel:
        with pytest.raises(grpc.RpcError) as caught:
            stub.ListProjects(project_pb2.ProjectListRequest(), timeout=5)
        response = requests.post(
            secured.http_url + "/oauth2/token",
            data={"grant_type": "client_credentials", "scope": "all"},
            auth=(secured.client_id, secured.client_secret),
        )
        token = response.json()["access_token"]
        projects = stub.ListProjects(
            project_pb2.ProjectListRequest(), metadata=[("flyte-authorization", f"Bearer {token}")], timeout=5
        )

    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert response.json()["token_type"] == "bearer" and response.json()["expires_in"] == 3600
    assert len(projects.projects) == 1
    assert secured.issued_tokens == [token]


def test_token_endpoint_refuses_a_wrong_secret(secured: FakeFlyteAdmin) -> None:
    response = requests.post(
        secured.http_url + "/oauth2/token",
        data={"grant_type": "client_credentials"},
        auth=(secured.client_id, "wrong"),
    )

    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"
    assert secured.issued_tokens == []


def test_auth_metadata_advertises_the_public_url_and_flyte_authorization(secured: FakeFlyteAdmin) -> None:
    with grpc.insecure_channel(secured.grpc_target) as channel:
        stub = auth_pb2_grpc.AuthMetadataServiceStub(channel)
        oauth2 = stub.GetOAuth2Metadata(auth_pb2.OAuth2MetadataRequest(), timeout=5)
        client = stub.GetPublicClientConfig(auth_pb2.PublicClientAuthConfigRequest(), timeout=5)

    assert oauth2.token_endpoint == "https://flyte.example.com/oauth2/token"
    assert client.authorization_metadata_key == "flyte-authorization"


def test_http_side_serves_healthcheck_and_guards_the_api(secured: FakeFlyteAdmin) -> None:
    assert requests.get(secured.http_url + "/healthcheck").status_code == 200
    assert requests.get(secured.http_url + "/api/v1/projects").status_code == 401
    token = secured.issue_token()
    ok = requests.get(secured.http_url + "/api/v1/projects", headers={"Authorization": f"Bearer {token}"})

    assert ok.json() == {"projects": [{"id": "flytesnacks", "name": "flytesnacks"}]}
    assert [r.path for r in secured.http_requests] == ["/healthcheck", "/api/v1/projects", "/api/v1/projects"]


def test_seeded_executions_are_listed_newest_first_and_fetched(admin: FakeFlyteAdmin) -> None:
    admin.add_execution("older")
    admin.add_execution("newer", phase="RUNNING")
    channel, stub = _admin_stub(admin)
    with channel:
        listed = stub.ListExecutions(
            common_pb2.ResourceListRequest(
                id=common_pb2.NamedEntityIdentifier(project="flytesnacks", domain="development"), limit=10
            )
        )
        fetched = stub.GetExecution(
            execution_pb2.WorkflowExecutionGetRequest(
                id=identifier_pb2.WorkflowExecutionIdentifier(
                    project="flytesnacks", domain="development", name="older"
                )
            )
        )
        with pytest.raises(grpc.RpcError) as missing:
            stub.GetExecution(
                execution_pb2.WorkflowExecutionGetRequest(
                    id=identifier_pb2.WorkflowExecutionIdentifier(
                        project="flytesnacks", domain="development", name="nope"
                    )
                )
            )

    assert [e.id.name for e in listed.executions] == ["newer", "older"]
    assert fetched.closure.phase == 4  # SUCCEEDED
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND


def test_stopping_grpc_leaves_http_serving(admin: FakeFlyteAdmin) -> None:
    admin.stop_grpc()

    with grpc.insecure_channel(admin.grpc_target) as channel, pytest.raises(grpc.RpcError) as caught:
        admin_pb2_grpc.AdminServiceStub(channel).ListProjects(project_pb2.ProjectListRequest(), timeout=2)
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    assert requests.get(admin.http_url + "/healthcheck").status_code == 200


# -- secure mode: the REST gateway dials flyteadmin itself (serveGatewaySecure) ---------------------

_CHART_SANS = "DNS:flyteadmin,DNS:flyteadmin.flyte.svc,DNS:flyteadmin.flyte.svc.cluster.local"


def _self_signed(tmp_path: Path, sans: str) -> tuple[Path, Path]:
    """A key and certificate made the way the guide makes them (openssl req -x509)."""
    cert, key = tmp_path / "tls.crt", tmp_path / "tls.key"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "30",
            "-keyout", str(key), "-out", str(cert), "-subj", "/CN=flyteadmin.flyte.svc",
            "-addext", f"subjectAltName={sans}",
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is not installed")
def test_secure_mode_rest_api_fails_when_no_san_equals_the_host_address(tmp_path: Path) -> None:
    cert, key = _self_signed(tmp_path, _CHART_SANS)
    with FakeFlyteAdmin(certificate_file=cert, key_file=key) as admin:
        health = requests.get(admin.http_url + "/healthcheck", verify=False, timeout=5)
        projects = requests.get(admin.http_url + "/api/v1/projects", verify=False, timeout=5)

    assert health.status_code == 200  # the load balancer's check stays green
    assert projects.status_code == 503
    assert projects.json()["code"] == 14
    assert (
        "x509: certificate is valid for flyteadmin, flyteadmin.flyte.svc, flyteadmin.flyte.svc.cluster.local,"
        " not 0.0.0.0:8088" in projects.json()["message"]
    )


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is not installed")
def test_secure_mode_rest_api_answers_when_a_san_equals_the_host_address_exactly(tmp_path: Path) -> None:
    cert, key = _self_signed(tmp_path, "DNS:0.0.0.0:8088," + _CHART_SANS)
    with FakeFlyteAdmin(certificate_file=cert, key_file=key) as admin:
        projects = requests.get(admin.http_url + "/api/v1/projects", verify=False, timeout=5)
        creds = grpc.ssl_channel_credentials(root_certificates=cert.read_bytes())
        options = [("grpc.ssl_target_name_override", "flyteadmin.flyte.svc")]
        with grpc.secure_channel(admin.grpc_target, creds, options=options) as channel:
            stub = admin_pb2_grpc.AdminServiceStub(channel)
            listed = stub.ListProjects(project_pb2.ProjectListRequest(), timeout=5)

    assert admin.host_address == "0.0.0.0:8088"
    assert projects.status_code == 200
    assert projects.json() == {"projects": [{"id": "flytesnacks", "name": "flytesnacks"}]}
    assert [p.id for p in listed.projects] == ["flytesnacks"]


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is not installed")
def test_secure_mode_server_name_follows_the_configured_http_port(tmp_path: Path) -> None:
    cert, key = _self_signed(tmp_path, "DNS:0.0.0.0:8088")
    with FakeFlyteAdmin(certificate_file=cert, key_file=key, server_http_port=9000) as admin:
        projects = requests.get(admin.http_url + "/api/v1/projects", verify=False, timeout=5)

    assert projects.status_code == 503
    assert "not 0.0.0.0:9000" in projects.json()["message"]


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is not installed")
def test_secure_mode_trusts_only_the_served_certificate(tmp_path: Path) -> None:
    (tmp_path / "served").mkdir()
    (tmp_path / "other").mkdir()
    cert, key = _self_signed(tmp_path / "served", "DNS:0.0.0.0:8088")
    other, _ = _self_signed(tmp_path / "other", "DNS:0.0.0.0:8088")
    admin = FakeFlyteAdmin(certificate_file=cert, key_file=key)
    with admin:
        admin.certificate_file = str(other)  # the pool no longer holds what the server presents
        projects = requests.get(admin.http_url + "/api/v1/projects", verify=False, timeout=5)

    assert projects.status_code == 503
    assert "failed to verify certificate" in projects.json()["message"]


def test_secure_mode_needs_both_files() -> None:
    with pytest.raises(ValueError, match="both certificate_file and key_file"):
        FakeFlyteAdmin(certificate_file="tls.crt")


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is not installed")
def test_secure_mode_behind_iap_proxy_forwards_over_tls(tmp_path: Path) -> None:
    """IapProxy speaks TLS to an https:// upstream without verifying it, as the load balancer does."""
    from flyte_iap.testing import FakeGoogle, IapProxy

    cert, key = _self_signed(tmp_path, "DNS:0.0.0.0:8088," + _CHART_SANS)
    audience = "123-iap.apps.googleusercontent.com"
    with (
        FakeGoogle() as google,
        FakeFlyteAdmin(certificate_file=cert, key_file=key) as admin,
        IapProxy(
            audience, certs_url=google.certs_url, allowed=[google.user_email], http_upstream=admin.http_url
        ) as iap,
    ):
        token = google.mint_id_token(audience)
        reply = requests.get(
            iap.url + "/api/v1/projects", headers={"Proxy-Authorization": f"Bearer {token}"}, timeout=10
        )

    assert admin.http_url.startswith("https://")
    assert reply.status_code == 200
    assert reply.json() == {"projects": [{"id": "flytesnacks", "name": "flytesnacks"}]}
    assert "proxy-authorization" not in admin.requests_to("/api/v1/projects")[0].headers
