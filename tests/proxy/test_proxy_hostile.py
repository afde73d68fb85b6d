"""Hostile HTTP/1.1 input to the local proxy: each answered by the proxy, never passed on to break IAP."""

from __future__ import annotations

import socket
from typing import Any

import pytest
import requests
from helpers import ProxyFactory
from helpers.proxy import LocalFactory

from flyte_iap.local_proxy.server import LocalProxy
from flyte_iap.testing import IapProxy


@pytest.fixture
def echo_local(
    echo_http: Any, make_proxy: ProxyFactory, make_local: LocalFactory, signed_in: str
) -> LocalProxy:
    iap = make_proxy(tls=True, http_upstream=echo_http.url)
    return make_local(endpoint=iap.url, ca_cert=iap.ca_cert_file)


def _exchange(local: LocalProxy, request: bytes) -> bytes:
    """Send raw bytes, return the answer (up to the connection's close or 20 s)."""
    with socket.create_connection(("127.0.0.1", local.port), timeout=20) as conn:
        conn.sendall(request)
        answer = b""
        while chunk := conn.recv(65536):
            answer += chunk
            head, _, body = answer.partition(b"\r\n\r\n")
            length = [line for line in head.lower().split(b"\r\n") if line.startswith(b"content-length:")]
            if length and len(body) >= int(length[0].split(b":")[1]):
                break
        return answer


def test_header_list_too_large_for_iap_is_431_and_the_shared_connection_survives(
    local: LocalProxy, tls_iap: IapProxy
) -> None:
    assert requests.get(local.url + "/api/v1/projects", timeout=20).status_code == 200
    flood = b"".join(b"x-%d: v\r\n" % i for i in range(4000))

    answer = _exchange(local, b"GET /api/v1/projects HTTP/1.1\r\nHost: 127.0.0.1\r\n" + flood + b"\r\n")

    assert answer.startswith(b"HTTP/1.1 431 ")
    assert local.refused == {431: 1}
    assert requests.get(local.url + "/api/v1/projects", timeout=20).status_code == 200
    assert local.upstream.connects == 1  # IAP never saw the flood, so never closed the connection


def test_content_length_sent_with_chunked_encoding_is_dropped_and_the_chunked_body_forwarded(
    echo_local: LocalProxy,
) -> None:
    request = (
        b"POST /echo HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5\r\nhello\r\n0\r\n\r\n"
    )

    answer = _exchange(echo_local, request)

    assert answer.startswith(b"HTTP/1.1 200 ")
    assert b'"length": 5' in answer
    assert requests.post(echo_local.url + "/echo", data=b"abc", timeout=20).status_code == 200
    assert echo_local.upstream.connects == 1


@pytest.mark.parametrize(
    ("target", "headers", "status"),
    [
        ("/api/v1/projects", b"Host: [abc\r\n", 403),
        ("http://[abc/api/v1/projects", b"Host: 127.0.0.1\r\n", 400),
        ("/api/v1/projects", b"Host: 127.0.0.1\r\nOrigin: http://[zz\r\n", 403),
    ],
    ids=["host", "absolute-target", "origin"],
)
def test_unparsable_host_target_or_origin_gets_an_answer_and_is_not_forwarded(
    local: LocalProxy, tls_iap: IapProxy, target: str, headers: bytes, status: int
) -> None:
    answer = _exchange(local, f"GET {target} HTTP/1.1\r\n".encode() + headers + b"\r\n")

    assert answer.startswith(b"HTTP/1.1 %d " % status)
    assert tls_iap.forwarded == []


def test_null_origin_of_a_sandboxed_frame_or_cross_site_redirect_is_refused(
    local: LocalProxy, tls_iap: IapProxy
) -> None:
    request = (
        b"POST /api/v1/projects HTTP/1.1\r\nHost: 127.0.0.1\r\nOrigin: null\r\nContent-Length: 0\r\n\r\n"
    )

    answer = _exchange(local, request)

    assert answer.startswith(b"HTTP/1.1 403 ")
    assert tls_iap.forwarded == []


@pytest.mark.parametrize("status", [401, 403])
def test_iap_answer_quoted_in_the_log_has_terminal_escapes_escaped(status: int) -> None:
    from flyte_iap.local_proxy import TokenSource

    log: list[str] = []
    proxy = LocalProxy("https://flyte.example.com", TokenSource(lambda rejected: "t"), log=log.append)

    proxy.iap_refused(status, "Invalid IAP credentials\x1b]0;pwned\x07\x1b[2J", "t")

    assert len(log) == 1
    assert "\x1b" not in log[0] and "\x07" not in log[0]
    assert "\\x1b]0;pwned" in log[0]


def _closed_by_the_proxy_while_trickling(conn: socket.socket, start: bytes) -> bool:
    """Send ``start``, then a header byte every 0.2 s for at most 10 s; whether the proxy closed first."""
    conn.settimeout(0.2)
    conn.sendall(start)
    for _ in range(50):
        try:
            if conn.recv(1024) == b"":
                return True
        except TimeoutError:
            pass
        except OSError:  # reset: the proxy closed while a trickled byte was on its way
            return True
        try:
            conn.sendall(b"x")
        except OSError:
            return True
    return False


@pytest.mark.parametrize(
    "start",
    [b"GET /api/v1/projects HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ", b"PRI * HTTP/2.0\r\n", b""],
    ids=["http1-head", "http2-preface", "idle"],
)
def test_a_client_trickling_its_request_head_is_closed_and_frees_its_slot(
    make_local: LocalFactory, tls_iap: IapProxy, signed_in: str, start: bytes
) -> None:
    local = make_local(max_connections=1, head_timeout=1.0)

    with socket.create_connection(("127.0.0.1", local.port), timeout=20) as slow:
        closed = _closed_by_the_proxy_while_trickling(slow, start)

    assert closed
    assert requests.get(local.url + "/api/v1/projects", timeout=20).status_code == 200


def test_http2_absolute_path_let_through_reaches_iap_in_origin_form(
    local: LocalProxy, tls_iap: IapProxy
) -> None:
    import h2.config
    import h2.connection
    import h2.events

    client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding=None))
    client.initiate_connection()
    targets = [f"{tls_iap.url}/api/v1/projects?limit=1", f"{local.url}/api/v1/projects"]
    for stream_id, target in zip((1, 3), targets, strict=True):
        request = [
            (b":method", b"GET"),
            (b":scheme", b"http"),
            (b":authority", f"127.0.0.1:{local.port}".encode()),
        ]
        client.send_headers(stream_id, [*request, (b":path", target.encode())], end_stream=True)
    ended = 0
    with socket.create_connection(("127.0.0.1", local.port), timeout=20) as conn:
        conn.sendall(client.data_to_send())
        while ended < 2 and (data := conn.recv(65536)):
            ended += sum(isinstance(e, h2.events.StreamEnded) for e in client.receive_data(data))
            conn.sendall(client.data_to_send())

    assert ended == 2
    assert sorted(f.path for f in tls_iap.forwarded) == ["/api/v1/projects", "/api/v1/projects?limit=1"]


def _h2_request(port: int, path: bytes, **extra: bytes) -> list[tuple[bytes, bytes]]:
    return [
        (b":method", b"POST" if extra else b"GET"),
        (b":scheme", b"http"),
        (b":authority", f"127.0.0.1:{port}".encode()),
        (b":path", path),
        *((name.replace("_", "-").encode(), value) for name, value in extra.items()),
    ]


def _h2_closed_by_the_proxy(conn: socket.socket, client: Any, trickle: list[bytes]) -> tuple[bool, list[Any]]:
    """Read for at most 40 x 0.2 s, sending one item of ``trickle`` each turn (or, without one, what h2
    answers: no other frame may come inside a header block); whether the proxy closed the connection
    first, and the h2 events received."""
    import h2.exceptions

    conn.settimeout(0.2)
    events: list[Any] = []
    for turn in range(min(40, len(trickle)) if trickle else 40):
        try:
            data = conn.recv(65536)
            if data == b"":
                return True, events
            events += client.receive_data(data)
        except TimeoutError:
            pass
        except (OSError, h2.exceptions.ProtocolError):
            return True, events
        try:
            conn.sendall(trickle[turn] if trickle else client.data_to_send())
        except OSError:
            return True, events
    return False, events


def test_an_idle_http2_connection_gets_goaway_and_frees_its_slot(
    make_local: LocalFactory, tls_iap: IapProxy, signed_in: str
) -> None:
    import h2.config
    import h2.connection
    import h2.events

    local = make_local(max_connections=1, head_timeout=1.0)
    client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding=None))
    client.initiate_connection()
    client.send_headers(1, _h2_request(local.port, b"/api/v1/projects"), end_stream=True)

    with socket.create_connection(("127.0.0.1", local.port), timeout=20) as conn:
        conn.sendall(client.data_to_send())
        closed, events = _h2_closed_by_the_proxy(conn, client, [])

    assert any(isinstance(e, h2.events.StreamEnded) and e.stream_id == 1 for e in events)
    assert closed
    assert any(isinstance(e, h2.events.ConnectionTerminated) for e in events)
    assert requests.get(local.url + "/api/v1/projects", timeout=20).status_code == 200


def test_http2_header_block_trickled_in_continuation_frames_closes_the_connection_despite_an_open_stream(
    make_local: LocalFactory, tls_iap: IapProxy, signed_in: str
) -> None:
    import h2.config
    import h2.connection
    from h2.events import RemoteSettingsChanged, SettingsAcknowledged
    from hyperframe.frame import ContinuationFrame, HeadersFrame

    local = make_local(max_connections=1, head_timeout=1.0)
    client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding=None))
    client.initiate_connection()
    # stream 1 stays open: a gRPC call whose request message never comes
    grpc = {"content_type": b"application/grpc", "te": b"trailers"}
    client.send_headers(1, _h2_request(local.port, b"/flyteidl.service.AdminService/ListProjects", **grpc))
    block = client.encoder.encode(_h2_request(local.port, b"/api/v1/projects", x_pad=b"p" * 300))
    first = HeadersFrame(3, block[:10], flags=["END_STREAM"])
    trickle = [ContinuationFrame(3, block[at : at + 2]).serialize() for at in range(10, len(block), 2)]

    with socket.create_connection(("127.0.0.1", local.port), timeout=20) as conn:
        conn.sendall(client.data_to_send())
        settled = set()
        while len(settled) < 2 and (data := conn.recv(65536)):
            events = client.receive_data(data)
            settled.update(
                type(e) for e in events if isinstance(e, (RemoteSettingsChanged, SettingsAcknowledged))
            )
            conn.sendall(client.data_to_send())
        conn.sendall(first.serialize())
        closed, _ = _h2_closed_by_the_proxy(conn, client, trickle)

    assert len(trickle) > 40  # the block would not have been complete by the end of the loop
    assert closed
    assert requests.get(local.url + "/api/v1/projects", timeout=20).status_code == 200


def test_grpc_request_with_headers_too_large_for_iap_gets_resource_exhausted_not_unknown(
    local: LocalProxy, tls_iap: IapProxy
) -> None:
    import h2.config
    import h2.connection
    import h2.events

    client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding=None))
    client.initiate_connection()
    # within the proxy's own 64 KiB header list limit; over it once the proxy adds the ID token
    big = b"b" * (64 * 1024 - 600)
    grpc = {"content_type": b"application/grpc", "te": b"trailers", "x_big": big}
    client.send_headers(1, _h2_request(local.port, b"/flyteidl.service.AdminService/ListProjects", **grpc))
    answer: list[tuple[bytes, bytes]] = []
    with socket.create_connection(("127.0.0.1", local.port), timeout=20) as conn:
        conn.sendall(client.data_to_send())
        while not answer and (data := conn.recv(65536)):
            for event in client.receive_data(data):
                if isinstance(event, h2.events.ResponseReceived):
                    answer = list(event.headers)
            conn.sendall(client.data_to_send())

    assert (b":status", b"200") in answer
    assert (b"grpc-status", b"8") in answer  # RESOURCE_EXHAUSTED
    assert b"too large" in dict(answer)[b"grpc-message"]
    assert local.refused == {431: 1}
    assert tls_iap.forwarded == []
