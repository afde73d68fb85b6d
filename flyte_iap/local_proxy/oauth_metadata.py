"""Point flyteadmin's advertised token endpoint at the proxy, so token requests go through it too.

Why: flytekit and flytectl (unless ``admin.tokenUrl`` is set) POST their client-secret, PKCE and device
token requests to the ``token_endpoint`` that flyteadmin's ``AuthMetadataService.GetOAuth2Metadata``
returns (flyteorg/flytekit@v1.16.8:flytekit/clients/auth_helper.py,
flyteorg/flyte@v1.16.8:flyteidl/clients/go/admin/token_source_provider.go). flyteadmin builds it from
the authorized URI matching the request's host (flyteorg/flyte@v1.16.8:flyteadmin/auth/handler_utils.go
``GetPublicURL``), which behind the proxy is the IAP endpoint: the client would send that request
straight to IAP without IAP's header, the very failure of flyte#6089. So in that one answer, an endpoint
on the IAP origin becomes the same path on the proxy; one on another origin (an external IdP) is left
alone, and so is everything else (issuer, authorization endpoint: browsers reach those through IAP).

Example::

    >>> body = grpc_message(_field(3, b"https://flyte.example.com/oauth2/token"))
    >>> rewrite_grpc_response(body, "https://flyte.example.com", "http://127.0.0.1:8089") == grpc_message(
    ...     _field(3, b"http://127.0.0.1:8089/oauth2/token"))
    True
"""

from __future__ import annotations

#: The gRPC method whose answer is rewritten.
METHOD = "/flyteidl.service.AuthMetadataService/GetOAuth2Metadata"
#: OAuth2MetadataResponse fields holding endpoints a client POSTs tokens requests to
#: (flyteorg/flyte@v1.16.8:flyteidl/protos/flyteidl/service/auth.proto): token_endpoint,
#: device_authorization_endpoint.
_FIELDS = frozenset({3, 10})
#: Larger answers are passed on untouched (flyteadmin's is well under 1 KiB).
MAX_BODY = 64 * 1024


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(data) or shift > 63:
            raise ValueError("truncated varint")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7


def _encode_varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _field(number: int, value: bytes) -> bytes:
    """One length-delimited protobuf field."""
    return _encode_varint(number << 3 | 2) + _encode_varint(len(value)) + value


def grpc_message(message: bytes) -> bytes:
    """A gRPC length-prefixed, uncompressed message."""
    return b"\x00" + len(message).to_bytes(4, "big") + message


def _rewrite_message(message: bytes, origin: bytes, local: bytes) -> bytes:
    out = bytearray()
    pos = 0
    while pos < len(message):
        start = pos
        key, pos = _varint(message, pos)
        number, wire_type = key >> 3, key & 7
        if wire_type == 0:
            _, pos = _varint(message, pos)
        elif wire_type == 1:
            pos += 8
        elif wire_type == 5:
            pos += 4
        elif wire_type == 2:
            length, pos = _varint(message, pos)
            value = message[pos : pos + length]
            if len(value) != length:
                raise ValueError("truncated field")
            pos += length
            if number in _FIELDS and (value == origin or value.startswith(origin + b"/")):
                out += _field(number, local + value[len(origin) :])
                continue
        else:
            raise ValueError(f"unsupported wire type {wire_type}")
        if pos > len(message):
            raise ValueError("truncated field")
        out += message[start:pos]
    return bytes(out)


def rewrite_grpc_response(body: bytes, origin: str, local: str) -> bytes:
    """The gRPC response body with endpoints on ``origin`` moved to ``local``; unchanged on any doubt.

    Args:
        body: the whole DATA of the response: length-prefixed messages.
        origin: ``https://flyte.example.com`` (the IAP endpoint, no trailing slash).
        local: the proxy's URL, ``http://127.0.0.1:PORT``.
    """
    out = bytearray()
    pos = 0
    try:
        while pos < len(body):
            if len(body) - pos < 5 or body[pos] != 0:  # compressed or truncated: leave it alone
                return body
            length = int.from_bytes(body[pos + 1 : pos + 5], "big")
            message = body[pos + 5 : pos + 5 + length]
            if len(message) != length:
                return body
            out += grpc_message(_rewrite_message(message, origin.encode(), local.encode()))
            pos += 5 + length
    except ValueError:
        return body
    return bytes(out)
