"""IapProxy enforces IAP's rules for programmatic access over HTTP/1.1 and gRPC, and forwards faithfully."""

from __future__ import annotations

import concurrent.futures
import socket
import ssl
import time
from collections.abc import Callable, Iterator

import grpc
import jwt
import pytest
import requests
from flyteidl.admin import project_pb2, version_pb2
from flyteidl.service import admin_pb2_grpc
from helpers import ProxyFactory

from flyte_iap.testing import FakeFlyteAdmin, FakeGoogle, IapProxy
from flyte_iap.testing.iap_proxy import MESSAGES


@pytest.fixture
def proxy(make_proxy: ProxyFactory) -> IapProxy:
    return make_proxy()


@pytest.fixture
def token(fake_google: FakeGoogle) -> str:
    return fake_google.mint_id_token(fake_google.IAP_CLIENT_ID)


def _stub(proxy: IapProxy) -> tuple[grpc.Channel, admin_pb2_grpc.AdminServiceStub]:
    channel = grpc.insecure_channel(proxy.endpoint)
    return channel, admin_pb2_grpc.AdminServiceStub(channel)


# -- HTTP/1.1 rejections ------------------------------------------------------------------------------


def test_request_without_token_gets_iaps_own_401_and_never_reaches_flyteadmin(
    proxy: IapProxy, admin: FakeFlyteAdmin
) -> None:
    response = requests.get(proxy.url + "/healthcheck", timeout=5)

    assert response.status_code == 401
    assert response.text == "Invalid IAP credentials: empty token"
    assert response.headers["content-type"] == "text/html; charset=UTF-8"
    assert response.headers["x-goog-iap-generated-response"] == "true"
    assert admin.http_requests == []
    assert proxy.rejected["http"] == 1 and proxy.passed["http"] == 0
    assert proxy.rejections[0].reason == "empty_token"


@pytest.mark.parametrize(
    ("make_token", "status", "reason"),
    [
        (lambda g: "not-a-jwt", 401, "unparsable"),
        (lambda g: g.mint_id_token(g.IAP_CLIENT_ID)[:-8] + "AAAAAAAA", 401, "bad_signature"),
        (lambda g: g.mint_id_token(g.IAP_CLIENT_ID, expired=True), 401, "expired"),
        (lambda g: g.mint_id_token(g.IAP_CLIENT_ID, iss="https://evil.example"), 401, "wrong_issuer"),
        (lambda g: g.mint_id_token(g.IAP_CLIENT_ID, email="mallory@example.org"), 403, "access_denied"),
    ],
    ids=["unparsable", "bad-signature", "expired", "wrong-issuer", "not-allowed"],
)
def test_each_invalid_credential_gets_iaps_message_for_it(
    proxy: IapProxy,
    admin: FakeFlyteAdmin,
    fake_google: FakeGoogle,
    make_token: Callable[[FakeGoogle], str],
    status: int,
    reason: str,
) -> None:
    response = requests.get(
        proxy.url + "/api/v1/projects", headers={"Proxy-Authorization": f"Bearer {make_token(fake_google)}"}
    )

    assert (response.status_code, response.text) == (status, MESSAGES[reason])
    assert response.headers["x-goog-iap-generated-response"] == "true"
    assert [r.reason for r in proxy.rejections] == [reason]
    assert admin.http_requests == []


def test_wrong_audience_message_names_both_audiences_like_iap(
    proxy: IapProxy, fake_google: FakeGoogle
) -> None:
    other = fake_google.mint_id_token(fake_google.DESKTOP_CLIENT_ID)

    response = requests.get(proxy.url + "/healthcheck", headers={"Authorization": f"Bearer {other}"})

    assert response.status_code == 401
    assert response.text == (
        "Invalid IAP credentials: JWT audience doesn't match this application ('aud' claim "
        f"({fake_google.DESKTOP_CLIENT_ID}) doesn't match expected value ({fake_google.IAP_CLIENT_ID}))"
    )


def test_token_from_another_signer_fails_the_signature_check(
    proxy: IapProxy, fake_google: FakeGoogle
) -> None:
    with FakeGoogle() as impostor:
        forged = impostor.mint_id_token(fake_google.IAP_CLIENT_ID)

    response = requests.get(proxy.url + "/healthcheck", headers={"Proxy-Authorization": f"Bearer {forged}"})

    assert (response.status_code, response.text) == (401, MESSAGES["bad_signature"])


def test_token_expires_by_the_proxys_clock(make_proxy: ProxyFactory, token: str) -> None:
    offset = [0.0]
    proxy = make_proxy(clock=lambda: time.time() + offset[0])
    headers = {"Proxy-Authorization": f"Bearer {token}"}

    assert requests.get(proxy.url + "/healthcheck", headers=headers).status_code == 200
    offset[0] = 3601
    late = requests.get(proxy.url + "/healthcheck", headers=headers)

    assert (late.status_code, late.text) == (401, "OpenID Connect token expired: JWT has expired")


def test_allow_list_accepts_iam_members_and_domains(
    make_proxy: ProxyFactory, fake_google: FakeGoogle
) -> None:
    proxy = make_proxy(allowed=["domain:example.com", "serviceAccount:ci@proj.iam.gserviceaccount.com"])

    def status(email: str) -> int:
        tok = fake_google.mint_id_token(fake_google.IAP_CLIENT_ID, email=email)
        return requests.get(
            proxy.url + "/healthcheck", headers={"Proxy-Authorization": f"Bearer {tok}"}
        ).status_code

    assert status("bob@example.com") == 200
    assert status("ci@proj.iam.gserviceaccount.com") == 200
    assert status("eve@example.org") == 403
    proxy.revoke("domain:example.com")
    assert status("bob@example.com") == 403


def test_certificates_are_fetched_once_and_refetched_for_a_new_key(
    proxy: IapProxy, fake_google: FakeGoogle
) -> None:
    for _ in range(5):
        tok = fake_google.mint_id_token(fake_google.IAP_CLIENT_ID)
        assert requests.get(proxy.url + "/healthcheck", headers={"Proxy-Authorization": f"Bearer {tok}"}).ok
    assert proxy.certs_fetches == 1

    fake_google.rotate_keys()
    time.sleep(1.05)  # unknown-kid refetches are rate-limited to one a second
    rotated = fake_google.mint_id_token(fake_google.IAP_CLIENT_ID)

    assert requests.get(proxy.url + "/healthcheck", headers={"Proxy-Authorization": f"Bearer {rotated}"}).ok
    assert proxy.certs_fetches == 2


# -- HTTP/1.1 forwarding ------------------------------------------------------------------------------


def test_proxy_authorization_is_consumed_and_flyteadmins_authorization_passes_untouched(
    proxy: IapProxy, admin: FakeFlyteAdmin, token: str, fake_google: FakeGoogle
) -> None:
    response = requests.post(
        proxy.url + "/oauth2/token",
        data={"grant_type": "client_credentials"},
        headers={"Proxy-Authorization": f"Bearer {token}", "Authorization": "Basic Zmx5dGU6c2VjcmV0"},
    )

    assert response.status_code == 401  # flyteadmin's own answer: it has auth off
    seen = admin.requests_to("/oauth2/token")[0]
    assert "proxy-authorization" not in seen.headers
    assert seen.headers["authorization"] == "Basic Zmx5dGU6c2VjcmV0"
    assert seen.headers["x-goog-authenticated-user-email"] == f"accounts.google.com:{fake_google.user_email}"
    assert seen.form() == {"grant_type": "client_credentials"}
    assert proxy.forwarded[0].token_header == "proxy-authorization"


def test_token_in_authorization_is_replaced_by_a_signed_iap_assertion(
    proxy: IapProxy, admin: FakeFlyteAdmin, token: str, fake_google: FakeGoogle
) -> None:
    requests.get(proxy.url + "/healthcheck", headers={"Authorization": f"Bearer {token}"}).raise_for_status()

    seen = admin.requests_to("/healthcheck")[0].headers
    assert "authorization" not in seen
    key = jwt.PyJWKSet.from_dict(proxy.jwks).keys[0]
    claims = jwt.decode(
        seen["x-goog-iap-jwt-assertion"], key.key, algorithms=["ES256"], audience=proxy.jwt_audience
    )
    assert claims["iss"] == "https://cloud.google.com/iap"
    assert claims["email"] == fake_google.user_email
    assert claims["sub"] == f"accounts.google.com:{fake_google.user_sub}"
    assert proxy.jwt_audience == "/projects/123456789012/global/backendServices/4567890123456789012"


def test_client_cannot_spoof_iap_identity_headers(proxy: IapProxy, admin: FakeFlyteAdmin, token: str) -> None:
    requests.get(
        proxy.url + "/healthcheck",
        headers={
            "Proxy-Authorization": f"Bearer {token}",
            "X-Goog-Authenticated-User-Email": "accounts.google.com:ceo@example.com",
        },
    ).raise_for_status()

    assert (
        admin.http_requests[0].headers["x-goog-authenticated-user-email"]
        != "accounts.google.com:ceo@example.com"
    )


def test_keep_alive_connection_serves_rejections_and_passes_in_turn(
    proxy: IapProxy, admin: FakeFlyteAdmin, token: str
) -> None:
    with requests.Session() as session:
        assert session.get(proxy.url + "/healthcheck").status_code == 401
        assert session.post(proxy.url + "/healthcheck", data=b"x" * 1000).status_code == 401
        chunked = session.post(
            proxy.url + "/oauth2/token",
            data=iter([b"grant_type=", b"client_credentials"]),
            headers={"Proxy-Authorization": f"Bearer {token}"},
        )
        assert chunked.status_code == 401  # flyteadmin without auth refuses the client
        assert session.get(proxy.url + "/healthcheck", headers={"Proxy-Authorization": f"Bearer {token}"}).ok

    assert admin.requests_to("/oauth2/token")[0].body == b"grant_type=client_credentials"
    assert (proxy.passed["http"], proxy.rejected["http"]) == (2, 2)


def test_unreachable_upstream_is_the_load_balancers_502(make_proxy: ProxyFactory, token: str) -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{closed.getsockname()[1]}"
    proxy = make_proxy(http_upstream=dead)

    response = requests.get(proxy.url + "/healthcheck", headers={"Proxy-Authorization": f"Bearer {token}"})

    assert response.status_code == 502
    assert "x-goog-iap-generated-response" not in response.headers


def test_enforce_false_lets_everything_through_unchanged(
    make_proxy: ProxyFactory, admin: FakeFlyteAdmin
) -> None:
    proxy = make_proxy(enforce=False)

    assert requests.get(proxy.url + "/healthcheck").status_code == 200
    assert "x-goog-iap-jwt-assertion" not in admin.http_requests[0].headers


# -- gRPC -------------------------------------------------------------------------------------------------


def test_grpc_call_without_token_fails_like_behind_iap_and_never_reaches_flyteadmin(
    proxy: IapProxy, admin: FakeFlyteAdmin
) -> None:
    channel, stub = _stub(proxy)
    with channel, pytest.raises(grpc.RpcError) as caught:
        stub.ListProjects(project_pb2.ProjectListRequest(), timeout=5)

    # grpcio >= 1.62 maps IAP's text/html 401 to UNAUTHENTICATED or (some versions) UNKNOWN: flytekit's
    # interceptor re-runs the proxy command on both.
    assert caught.value.code() in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.UNKNOWN)
    assert "401" in (caught.value.details() or "")
    assert admin.grpc_calls == []
    assert proxy.rejected["grpc"] == 1
    assert proxy.rejections[0].path == "/flyteidl.service.AdminService/ListProjects"


def test_grpc_call_from_an_email_without_access_is_permission_denied(
    proxy: IapProxy, admin: FakeFlyteAdmin, fake_google: FakeGoogle
) -> None:
    outsider = fake_google.mint_id_token(fake_google.IAP_CLIENT_ID, email="eve@example.org")
    channel, stub = _stub(proxy)
    with channel, pytest.raises(grpc.RpcError) as caught:
        stub.ListProjects(
            project_pb2.ProjectListRequest(),
            metadata=[("proxy-authorization", f"Bearer {outsider}")],
            timeout=5,
        )

    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert admin.grpc_calls == []


def test_grpc_call_with_token_reaches_flyteadmin_with_its_own_header_only(
    proxy: IapProxy, admin: FakeFlyteAdmin, token: str
) -> None:
    channel, stub = _stub(proxy)
    with channel:
        projects = stub.ListProjects(
            project_pb2.ProjectListRequest(),
            metadata=[
                ("proxy-authorization", f"Bearer {token}"),
                ("flyte-authorization", "Bearer admin-tok"),
            ],
            timeout=5,
        )

    assert [p.id for p in projects.projects] == ["flytesnacks"]
    call = admin.calls_to("ListProjects")[0]
    assert "proxy-authorization" not in call.metadata
    assert call.metadata["flyte-authorization"] == "Bearer admin-tok"
    assert call.metadata["x-goog-iap-jwt-assertion"].count(".") == 2
    assert proxy.passed["grpc"] == 1


def test_concurrent_grpc_calls_over_shared_and_separate_channels_all_pass(
    proxy: IapProxy, admin: FakeFlyteAdmin, token: str
) -> None:
    metadata = [("proxy-authorization", f"Bearer {token}")]
    channels = [grpc.insecure_channel(proxy.endpoint) for _ in range(4)]
    stubs = [admin_pb2_grpc.AdminServiceStub(c) for c in channels]

    def call(i: int) -> int:
        return len(
            stubs[i % 4]
            .ListProjects(project_pb2.ProjectListRequest(), metadata=metadata, timeout=10)
            .projects
        )

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        results = list(pool.map(call, range(64)))
    for channel in channels:
        channel.close()

    assert results == [1] * 64
    assert proxy.passed["grpc"] == 64
    assert len(admin.calls_to("ListProjects")) == 64


@pytest.fixture
def echo_server() -> Iterator[str]:
    """A gRPC server with a unary echo and a server stream that ends with custom trailers."""

    def echo(request: bytes, context: grpc.ServicerContext) -> bytes:
        return request[::-1]

    def chunks(request: bytes, context: grpc.ServicerContext) -> Iterator[bytes]:
        context.set_trailing_metadata([("x-trailer", "kept")])
        for i in range(int(request)):
            yield bytes([i % 256]) * 100_000
        context.abort(grpc.StatusCode.FAILED_PRECONDITION, "stream ends with a status in the trailers")

    handler = grpc.method_handlers_generic_handler(
        "test.Echo",
        {
            "Echo": grpc.unary_unary_rpc_method_handler(echo),
            "Chunks": grpc.unary_stream_rpc_method_handler(chunks),
        },
    )
    server = grpc.server(concurrent.futures.ThreadPoolExecutor(4))
    server.add_generic_rpc_handlers([handler])
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield f"127.0.0.1:{port}"
    server.stop(None)


def test_large_messages_and_streams_keep_flow_control_and_trailers(
    make_proxy: ProxyFactory, echo_server: str, token: str
) -> None:
    proxy = make_proxy(grpc_upstream=echo_server)
    metadata = [("proxy-authorization", f"Bearer {token}")]
    options = [("grpc.max_receive_message_length", 16 << 20), ("grpc.max_send_message_length", 16 << 20)]
    with grpc.insecure_channel(proxy.endpoint, options=options) as channel:
        payload = bytes(range(256)) * 12_000  # 3 MB, far beyond the 64 KiB initial windows
        echoed = channel.unary_unary("/test.Echo/Echo")(payload, metadata=metadata, timeout=20)
        stream = channel.unary_stream("/test.Echo/Chunks")(b"40", metadata=metadata, timeout=20)
        received: list[int] = []
        with pytest.raises(grpc.RpcError):
            for chunk in stream:
                received.append(len(chunk))

    assert echoed == payload[::-1]
    assert received == [100_000] * 40
    assert stream.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert stream.details() == "stream ends with a status in the trailers"
    assert ("x-trailer", "kept") in tuple(stream.trailing_metadata() or ())


def test_grpc_upstream_down_is_unavailable_not_an_iap_rejection(
    make_proxy: ProxyFactory, admin: FakeFlyteAdmin, token: str
) -> None:
    proxy = make_proxy()
    admin.stop_grpc()
    channel, stub = _stub(proxy)
    with channel, pytest.raises(grpc.RpcError) as caught:
        stub.ListProjects(
            project_pb2.ProjectListRequest(), metadata=[("proxy-authorization", f"Bearer {token}")]
        )

    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    assert proxy.rejected["grpc"] == 0


# -- TLS, one port for both protocols -------------------------------------------------------------------


def test_tls_port_negotiates_h2_for_grpc_and_http11_for_requests(
    make_proxy: ProxyFactory, admin: FakeFlyteAdmin, token: str
) -> None:
    proxy = make_proxy(tls=True)
    assert proxy.url.startswith("https://localhost:")

    context = ssl.create_default_context(cafile=proxy.ca_cert_file)
    context.set_alpn_protocols(["h2", "http/1.1"])
    with (
        socket.create_connection(("localhost", proxy.port)) as raw,
        context.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        assert tls.selected_alpn_protocol() == "h2"

    headers = {"Proxy-Authorization": f"Bearer {token}"}
    assert requests.get(proxy.url + "/healthcheck", headers=headers, verify=proxy.ca_cert_file).ok
    credentials = grpc.ssl_channel_credentials(proxy.ca_cert_pem)
    with grpc.secure_channel(proxy.endpoint, credentials) as channel:
        stub = admin_pb2_grpc.AdminServiceStub(channel)
        version = stub.GetVersion(
            version_pb2.GetVersionRequest(), metadata=[("proxy-authorization", f"Bearer {token}")], timeout=5
        )

    assert version.control_plane_version.Version
    assert (proxy.passed["http"], proxy.passed["grpc"]) == (1, 1)


def test_tls_certificate_is_not_trusted_without_the_proxys_ca(make_proxy: ProxyFactory) -> None:
    proxy = make_proxy(tls=True)

    with pytest.raises(requests.exceptions.SSLError):
        requests.get(proxy.url + "/healthcheck")


def _h2_get(proxy: IapProxy, path: str, headers: list[tuple[str, str]]) -> tuple[dict[str, str], bytes]:
    """One HTTP/2 GET over TLS (ALPN h2) with the h2 library: what curl --http2 or a browser would send."""
    import h2.config
    import h2.connection
    import h2.events

    context = ssl.create_default_context(cafile=proxy.ca_cert_file)
    context.set_alpn_protocols(["h2"])
    with (
        socket.create_connection(("localhost", proxy.port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname="localhost") as sock,
    ):
        conn = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=True, header_encoding="utf-8")
        )
        conn.initiate_connection()
        request = [(":method", "GET"), (":scheme", "https"), (":authority", proxy.endpoint), (":path", path)]
        conn.send_headers(1, request + headers, end_stream=True)
        sock.sendall(conn.data_to_send())
        response: dict[str, str] = {}
        body = b""
        while True:
            data = sock.recv(65536)
            assert data, "connection closed before the response ended"
            for event in conn.receive_data(data):
                if isinstance(event, h2.events.ResponseReceived):
                    response = dict(event.headers)  # type: ignore[arg-type]
                elif isinstance(event, h2.events.DataReceived):
                    body += event.data
                    conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                elif isinstance(event, h2.events.StreamEnded):
                    return response, body
            sock.sendall(conn.data_to_send())


def test_plain_http2_requests_are_checked_and_translated_to_the_http_upstream(
    make_proxy: ProxyFactory, admin: FakeFlyteAdmin, token: str
) -> None:
    proxy = make_proxy(tls=True)

    refused, refused_body = _h2_get(proxy, "/api/v1/projects", [])
    passed, body = _h2_get(proxy, "/api/v1/projects", [("proxy-authorization", f"Bearer {token}")])

    assert (refused[":status"], refused["x-goog-iap-generated-response"]) == ("401", "true")
    assert refused_body == b"Invalid IAP credentials: empty token"
    assert passed[":status"] == "200" and b"flytesnacks" in body
    assert admin.http_requests[0].headers["host"] == proxy.endpoint
    assert (proxy.passed["http"], proxy.rejected["http"]) == (1, 1)
