"""IapProxy passes streamed answers (Connect server streams) through as they arrive, over HTTP/1.1 and
HTTP/2, with the upstream's framing and content-encoding intact.

The upstream here is a tiny HTTP/1.1 server that writes its body in pieces with pauses, as the Flyte 2
backend writes a ``Watch*`` stream; each test times when each piece reaches the client.
"""

from __future__ import annotations

import http.client
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from helpers import ProxyFactory

from flyte_iap.testing import FakeGoogle, IapProxy

PIECES = [b"first piece|", b"second piece|", b"third piece|"]
GAP = 0.4


class _Upstream(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    sent: list[float]

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length") or 0))
        if self.path == "/stream":
            self.send_response(200)
            self.send_header("Content-Type", "application/connect+proto")
            self.send_header("Content-Encoding", "gzip")  # passed through untouched, never decoded
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for index, piece in enumerate(PIECES):
                if index:
                    time.sleep(GAP)
                self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                self.wfile.flush()
                self.sent.append(time.monotonic())
            self.wfile.write(b"0\r\n\r\n")
        elif self.path == "/sized":
            body = b"".join(PIECES)
            self.send_response(200)
            self.send_header("Content-Type", "application/proto")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        elif self.path in ("/garbage", "/negative"):
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            self.wfile.write(b"zz\r\n" if self.path == "/garbage" else b"-5\r\nhello\r\n")
            self.wfile.flush()
            time.sleep(0.2)
            self.close_connection = True
        elif self.path == "/slow":
            time.sleep(1.0)
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif self.path == "/broken":
            self.send_response(200)
            self.send_header("Content-Type", "application/connect+proto")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            self.wfile.write(b"5\r\nhello\r\n")
            self.wfile.flush()
            self.close_connection = True  # dies mid-stream, no terminating chunk


@pytest.fixture
def upstream() -> Iterator[tuple[str, list[float]]]:
    sent: list[float] = []
    handler = type("Handler", (_Upstream,), {"sent": sent})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", sent
    server.shutdown()
    server.server_close()


@pytest.fixture
def token(fake_google: FakeGoogle) -> str:
    return fake_google.mint_id_token(fake_google.IAP_CLIENT_ID)


def _assert_arrived_piece_by_piece(arrivals: list[float], sent: list[float]) -> None:
    assert len(arrivals) == len(PIECES) == len(sent)
    # each piece reached the client before the upstream had even written the next one
    for index in range(len(PIECES) - 1):
        assert arrivals[index] < sent[index + 1], f"piece {index} was held back until a later one was sent"


def test_http11_stream_reaches_the_client_piece_by_piece_chunked_with_its_encoding(
    make_proxy: ProxyFactory, upstream: tuple[str, list[float]], token: str
) -> None:
    url, sent = upstream
    proxy = make_proxy(http_upstream=url)
    conn = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=10)
    conn.request("POST", "/stream", body=b"x", headers={"authorization": f"Bearer {token}"})
    response = conn.getresponse()

    arrivals, body = [], b""
    while len(body) < len(b"".join(PIECES)):
        data = response.read1(65536)
        assert data
        body += data
        arrivals += [time.monotonic()] * (body.count(b"|") - len(arrivals))

    assert response.read() == b""  # then the terminating chunk
    assert body == b"".join(PIECES)
    assert response.getheader("transfer-encoding") == "chunked"
    assert response.getheader("content-length") is None
    assert response.getheader("content-encoding") == "gzip"
    _assert_arrived_piece_by_piece(arrivals, sent)
    assert proxy.forwarded[-1].http_version == "1.1"
    # the connection stays usable after a streamed answer
    conn.request("POST", "/sized", body=b"x", headers={"authorization": f"Bearer {token}"})
    again = conn.getresponse()
    assert (again.status, again.read()) == (200, b"".join(PIECES))
    conn.close()


def test_sized_answer_keeps_the_upstreams_content_length(
    make_proxy: ProxyFactory, upstream: tuple[str, list[float]], token: str
) -> None:
    proxy = make_proxy(http_upstream=upstream[0])
    conn = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=10)
    conn.request("POST", "/sized", body=b"x", headers={"authorization": f"Bearer {token}"})
    response = conn.getresponse()
    assert response.getheader("content-length") == str(len(b"".join(PIECES)))
    assert response.getheader("transfer-encoding") is None
    assert response.read() == b"".join(PIECES)
    conn.close()


def test_upstream_dying_mid_stream_truncates_the_answer_instead_of_hanging(
    make_proxy: ProxyFactory, upstream: tuple[str, list[float]], token: str
) -> None:
    proxy = make_proxy(http_upstream=upstream[0])
    conn = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=10)
    conn.request("POST", "/broken", body=b"x", headers={"authorization": f"Bearer {token}"})
    response = conn.getresponse()
    with pytest.raises(http.client.IncompleteRead):
        response.read()
    conn.close()


def _h2_stream(proxy: IapProxy, path: str, token: str) -> tuple[dict[str, str], bytes, list[float]]:
    import h2.config
    import h2.connection
    import h2.events

    context = ssl.create_default_context(cafile=proxy.ca_cert_file)
    context.set_alpn_protocols(["h2"])
    arrivals: list[float] = []
    with (
        socket.create_connection(("localhost", proxy.port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname="localhost") as sock,
    ):
        assert sock.selected_alpn_protocol() == "h2"
        conn = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=True, header_encoding="utf-8")
        )
        conn.initiate_connection()
        request = [(":method", "POST"), (":scheme", "https"), (":authority", proxy.endpoint), (":path", path)]
        conn.send_headers(
            1, [*request, ("authorization", f"Bearer {token}"), ("content-type", "application/proto")]
        )
        conn.send_data(1, b"x", end_stream=True)
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
                    arrivals += [time.monotonic()] * (body.count(b"|") - len(arrivals))
                    conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                elif isinstance(event, h2.events.StreamReset):
                    raise ConnectionError("stream reset")
                elif isinstance(event, h2.events.StreamEnded):
                    return response, body, arrivals
            sock.sendall(conn.data_to_send())


def test_http2_stream_reaches_the_client_as_data_frames_as_it_arrives(
    make_proxy: ProxyFactory, upstream: tuple[str, list[float]], token: str
) -> None:
    url, sent = upstream
    proxy = make_proxy(http_upstream=url, tls=True)

    response, body, arrivals = _h2_stream(proxy, "/stream", token)

    assert response[":status"] == "200"
    assert "content-length" not in response and "transfer-encoding" not in response
    assert response["content-encoding"] == "gzip"
    assert body == b"".join(PIECES)
    _assert_arrived_piece_by_piece(arrivals, sent)
    assert proxy.forwarded[-1].http_version == "2"


def test_http2_upstream_dying_mid_stream_resets_the_stream(
    make_proxy: ProxyFactory, upstream: tuple[str, list[float]], token: str
) -> None:
    proxy = make_proxy(http_upstream=upstream[0], tls=True)
    with pytest.raises(ConnectionError, match="stream reset"):
        _h2_stream(proxy, "/broken", token)


def test_alpn_without_h2_makes_tls_clients_speak_http11(make_proxy: ProxyFactory) -> None:
    proxy = make_proxy(tls=True, alpn_protocols=("http/1.1",))
    context = ssl.create_default_context(cafile=proxy.ca_cert_file)
    context.set_alpn_protocols(["h2", "http/1.1"])
    with (
        socket.create_connection(("localhost", proxy.port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname="localhost") as sock,
    ):
        assert sock.selected_alpn_protocol() == "http/1.1"


def test_response_timeout_cuts_a_stream_mid_body_like_the_backend_service_timeout(
    make_proxy: ProxyFactory, upstream: tuple[str, list[float]], token: str
) -> None:
    proxy = make_proxy(http_upstream=upstream[0], response_timeout=0.6)  # pieces at 0, 0.4, 0.8 s
    conn = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=10)
    conn.request("POST", "/stream", body=b"x", headers={"authorization": f"Bearer {token}"})
    response = conn.getresponse()
    with pytest.raises(http.client.IncompleteRead) as caught:
        response.read()
    assert caught.value.partial == PIECES[0] + PIECES[1]
    assert proxy.timed_out == 1
    conn.close()


def test_response_timeout_before_any_answer_is_a_504(
    make_proxy: ProxyFactory, upstream: tuple[str, list[float]], token: str
) -> None:
    proxy = make_proxy(http_upstream=upstream[0], response_timeout=0.3)
    conn = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=10)
    conn.request("POST", "/slow", body=b"x", headers={"authorization": f"Bearer {token}"})
    assert conn.getresponse().status == 504
    conn.close()


def test_http2_response_timeout_resets_the_stream(
    make_proxy: ProxyFactory, upstream: tuple[str, list[float]], token: str
) -> None:
    proxy = make_proxy(http_upstream=upstream[0], tls=True, response_timeout=0.6)
    with pytest.raises(ConnectionError, match="stream reset"):
        _h2_stream(proxy, "/stream", token)
    assert proxy.timed_out == 1


@pytest.mark.parametrize("path", ["/garbage", "/negative"])
def test_hostile_chunk_framing_from_the_upstream_ends_the_answer_instead_of_hanging(
    make_proxy: ProxyFactory, upstream: tuple[str, list[float]], token: str, path: str
) -> None:
    proxy = make_proxy(http_upstream=upstream[0])
    conn = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=10)
    conn.request("POST", path, body=b"x", headers={"authorization": f"Bearer {token}"})
    response = conn.getresponse()
    with pytest.raises(http.client.IncompleteRead):
        response.read()
    conn.close()
