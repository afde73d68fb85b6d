"""flyteadmin's advertised token endpoint on the IAP origin is moved to the proxy; nothing else changes."""

from __future__ import annotations

from flyteidl.service import auth_pb2

from flyte_iap.local_proxy.oauth_metadata import grpc_message, rewrite_grpc_response

ORIGIN = "https://flyte.example.com"
LOCAL = "http://127.0.0.1:8089"


def _body(**fields: object) -> bytes:
    return grpc_message(auth_pb2.OAuth2MetadataResponse(**fields).SerializeToString())


def _parse(body: bytes) -> auth_pb2.OAuth2MetadataResponse:
    assert body[0] == 0 and int.from_bytes(body[1:5], "big") == len(body) - 5
    return auth_pb2.OAuth2MetadataResponse.FromString(body[5:])


def test_token_and_device_endpoints_on_the_iap_origin_point_at_the_proxy() -> None:
    body = _body(
        issuer=ORIGIN,
        authorization_endpoint=f"{ORIGIN}/oauth2/authorize",
        token_endpoint=f"{ORIGIN}/oauth2/token",
        device_authorization_endpoint=f"{ORIGIN}/oauth2/device/code",
        scopes_supported=["all", "offline"],
        grant_types_supported=["client_credentials"],
        jwks_uri=f"{ORIGIN}/oauth2/jwks",
    )

    rewritten = _parse(rewrite_grpc_response(body, ORIGIN, LOCAL))

    assert rewritten.token_endpoint == f"{LOCAL}/oauth2/token"
    assert rewritten.device_authorization_endpoint == f"{LOCAL}/oauth2/device/code"
    # what a browser or a verifier uses stays on IAP's origin
    assert rewritten.issuer == ORIGIN
    assert rewritten.authorization_endpoint == f"{ORIGIN}/oauth2/authorize"
    assert rewritten.jwks_uri == f"{ORIGIN}/oauth2/jwks"
    assert list(rewritten.scopes_supported) == ["all", "offline"]


def test_external_identity_provider_and_lookalike_hosts_are_left_alone() -> None:
    for endpoint in ("https://idp.example.org/oauth2/v1/token", "https://flyte.example.com.evil.example/t"):
        body = _body(token_endpoint=endpoint)
        assert rewrite_grpc_response(body, ORIGIN, LOCAL) == body


def test_malformed_compressed_or_truncated_answers_pass_unchanged() -> None:
    good = _body(token_endpoint=f"{ORIGIN}/oauth2/token")
    for body in (b"", good[:-3], b"\x01" + good[1:], b"\x00\x00\x00\x00\x03\xff\xff\xff", good[:4]):
        assert rewrite_grpc_response(body, ORIGIN, LOCAL) == body
