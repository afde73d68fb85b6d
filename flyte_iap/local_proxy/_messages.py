"""What both client-side sessions use: header look-ups, reason phrases, the proxy's own gRPC answers."""

from __future__ import annotations

import http
import urllib.parse

from flyte_iap.local_proxy._h2peer import Headers

#: HTTP status of the proxy's own answers -> the gRPC status a gRPC client gets instead. 400, 403,
#: 502 and 503 as a client maps them when an intermediary's answer has no grpc-status
#: (grpc/grpc@3e6851f:doc/http-grpc-status-mapping.md). That table says INTERNAL for 431, but it is
#: for clients guessing; the proxy knows its reason: metadata over a size limit, which gRPC itself
#: reports as RESOURCE_EXHAUSTED (grpc/grpc@0276060:doc/statuscodes.md, "larger than configured
#: limit"). 405 (CONNECT) is UNIMPLEMENTED, 407 (no session secret) UNAUTHENTICATED ("incorrect
#: auth metadata", ibid.). Anything else is UNKNOWN (2).
_GRPC_STATUS = {400: 13, 403: 7, 405: 12, 407: 16, 431: 8, 502: 14, 503: 14}
#: Up to this many bytes of DATA waiting on one stream are forwarded in one go.
COALESCE = 256 * 1024


def get(headers: Headers, name: bytes) -> bytes | None:
    for key, value in headers:
        if key == name:
            return value
    return None


def origin_form(target: str) -> str:
    """``/path?query`` of an absolute-form target (``http://host/path``) the policy let through; the
    upstream request's ``:path`` must be origin-form (RFC 9113 8.3.1). Other targets are returned as is.
    """
    if not target.startswith(("http://", "https://")):
        return target
    parts = urllib.parse.urlsplit(target)
    return (parts.path or "/") + (f"?{parts.query}" if parts.query else "")


def reason_phrase(status: int) -> bytes:
    """The standard reason phrase (HTTP/2 has none to pass on)."""
    try:
        return http.HTTPStatus(status).phrase.encode()
    except ValueError:
        return b""


def status_of(headers: Headers) -> int:
    try:
        return int(get(headers, b":status") or b"502")
    except ValueError:
        return 502


def grpc_error(status: int, message: str) -> Headers:
    """A trailers-only gRPC answer for the proxy's own refusals: gRPC clients show the message."""
    return [
        (b":status", b"200"),
        (b"content-type", b"application/grpc"),
        (b"grpc-status", str(_GRPC_STATUS.get(status, 2)).encode()),
        (b"grpc-message", urllib.parse.quote(message, safe=" :/,.'()@=-_").encode()),
    ]
