"""The endpoint fails mid-request: the client gets an answer that says so, and the next request works.

The endpoint here is a small TLS + HTTP/2 server that misbehaves on purpose, once per connection, in
the ways a front end or a network can: the connection drops, the bytes stop being HTTP/2, GOAWAY.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import threading
from collections.abc import Iterator
from pathlib import Path

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings
import pytest
from helpers.proxy import self_signed_certificate

from flyte_iap.local_proxy import LocalProxy, TokenSource
from flyte_iap.testing import FakeGoogle

#: A DATA frame on stream 0, which RFC 9113 6.1 makes a connection error.
_NOT_HTTP2 = b"\x00\x00\x04\x00\x00\x00\x00\x00\x00" + b"oops"


class _Endpoint:
    """Answers 200 "ok" once a request has ended, except that each new connection first plays the next
    of ``faults``.

    Args:
        tls12: TLS 1.2 at most: the endpoint speaks last in the handshake, so what it sends at once
            arrives with the handshake's end (before the proxy has set the connection up).
        max_streams: SETTINGS_MAX_CONCURRENT_STREAMS in the endpoint's first SETTINGS (enforced by h2).
        delay: seconds before each answer, so that requests overlap.
        endless: answer with a stream of 1,000-byte chunks that never ends (an event stream).
    """

    def __init__(
        self,
        directory: Path,
        faults: list[str],
        *,
        tls12: bool = False,
        max_streams: int | None = None,
        delay: float = 0.0,
        endless: bool = False,
    ) -> None:
        import ssl

        self.cert, key = self_signed_certificate(directory, "localhost")
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(self.cert, key)
        self.context.set_alpn_protocols(["h2"])
        if tls12:
            self.context.maximum_version = ssl.TLSVersion.TLSv1_2
        self.faults = list(faults)
        self.max_streams = max_streams
        self.delay = delay
        self.endless = endless
        #: streams the proxy reset, by connection number
        self.resets: list[tuple[int, int]] = []
        self.connections = 0
        #: request bodies received, by connection number and stream
        self.bodies: dict[tuple[int, int], bytes] = {}
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._server: asyncio.Server
        self._tasks: set[asyncio.Task[None]] = set()

    def __enter__(self) -> _Endpoint:
        self._thread.start()
        assert self._ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        async def stop() -> None:
            self._server.close()
            for task in self._tasks:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    def _run(self) -> None:
        async def start() -> None:
            self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=self.context)
            self.port = self._server.sockets[0].getsockname()[1]

        self._loop.run_until_complete(start())
        self._ready.set()
        self._loop.run_forever()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        number = self.connections
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        fault = self.faults.pop(0) if self.faults else "none"
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
        conn.initiate_connection()
        if self.max_streams is not None:
            conn.update_settings({h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: self.max_streams})
        writer.write(conn.data_to_send())
        if fault == "close-at-once":
            writer.close()
            return

        endless: set[int] = set()

        def answer(stream_id: int) -> None:
            with contextlib.suppress(h2.exceptions.ProtocolError, h2.exceptions.StreamClosedError):
                if self.endless:
                    conn.send_headers(stream_id, [(":status", "200"), ("content-type", "text/event-stream")])
                    endless.add(stream_id)
                else:
                    conn.send_headers(stream_id, [(":status", "200"), ("content-length", "2")])
                    conn.send_data(stream_id, b"ok", end_stream=True)
            writer.write(conn.data_to_send())

        async def keep_sending() -> None:
            while True:
                await asyncio.sleep(0.01)
                for stream_id in list(endless):
                    try:
                        if conn.local_flow_control_window(stream_id) >= 1000:
                            conn.send_data(stream_id, b"x" * 1000)
                    except (h2.exceptions.ProtocolError, h2.exceptions.StreamClosedError):
                        endless.discard(stream_id)
                writer.write(conn.data_to_send())

        sender = asyncio.ensure_future(keep_sending())
        task.add_done_callback(lambda _: sender.cancel())

        while data := await reader.read(65536):
            for event in conn.receive_data(data):
                if isinstance(event, h2.events.DataReceived):
                    key = (number, event.stream_id)
                    self.bodies[key] = self.bodies.get(key, b"") + event.data
                    conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                elif isinstance(event, h2.events.RequestReceived) and fault == "drop":
                    writer.transport.abort()
                    return
                elif isinstance(event, h2.events.RequestReceived) and fault == "not-http2":
                    writer.write(_NOT_HTTP2)
                elif isinstance(event, h2.events.RequestReceived) and fault == "goaway":
                    conn.close_connection(last_stream_id=0)
                elif isinstance(event, h2.events.StreamReset):
                    self.resets.append((number, event.stream_id))
                    endless.discard(event.stream_id)
                elif isinstance(event, h2.events.StreamEnded) and fault == "none":
                    asyncio.get_running_loop().call_later(self.delay, answer, event.stream_id)
            writer.write(conn.data_to_send())


@pytest.fixture
def token(fake_google: FakeGoogle) -> str:
    return fake_google.mint_id_token(fake_google.IAP_CLIENT_ID, email="someone@example.com")


@pytest.fixture
def endpoint_dir(tmp_path: Path) -> Path:
    return tmp_path


def _get(proxy: LocalProxy) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=20)
    try:
        connection.request("GET", "/api/v1/projects")
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


@pytest.fixture
def proxy_to(token: str) -> Iterator[object]:
    started: list[LocalProxy] = []

    def start(endpoint: _Endpoint) -> LocalProxy:
        proxy = LocalProxy(
            f"https://localhost:{endpoint.port}",
            TokenSource(lambda _rejected: token),
            ca_cert=str(endpoint.cert),
            connect_host="127.0.0.1",
        ).start_in_thread()
        started.append(proxy)
        return proxy

    yield start
    for proxy in started:
        proxy.stop_thread()


@pytest.mark.parametrize(
    ("fault", "reason"),
    [
        ("drop", "the connection to the endpoint"),
        ("not-http2", "the endpoint broke HTTP/2 (ProtocolError)"),
        ("goaway", "the endpoint closed the connection (GOAWAY)"),
    ],
)
def test_an_endpoint_failing_mid_request_is_a_502_that_says_why_and_the_next_request_reconnects(
    fault: str, reason: str, endpoint_dir: Path, proxy_to: object
) -> None:
    with _Endpoint(endpoint_dir, [fault]) as endpoint:
        proxy = proxy_to(endpoint)  # type: ignore[operator]
        status, body = _get(proxy)
        assert status == 502, body
        assert body.decode().startswith(f"flyte-iap proxy: {reason}"), body
        assert _get(proxy) == (200, b"ok")
        assert endpoint.connections == 2
        assert proxy.upstream.connects == 2


def test_an_endpoint_that_keeps_working_serves_every_request_on_one_connection(
    endpoint_dir: Path, proxy_to: object
) -> None:
    with _Endpoint(endpoint_dir, []) as endpoint:
        proxy = proxy_to(endpoint)  # type: ignore[operator]
        assert [_get(proxy) for _ in range(5)] == [(200, b"ok")] * 5
        assert endpoint.connections == 1


@pytest.mark.parametrize("tls12", [True, False], ids=["tls1.2", "tls1.3"])
def test_an_endpoint_closing_right_after_the_handshake_gets_every_request_an_answer_not_a_hang(
    tls12: bool, endpoint_dir: Path, proxy_to: object
) -> None:
    """With TLS 1.2 the close arrives with the handshake's end, before the proxy set the connection up:
    the request must not be put on the dead connection, where nothing would ever answer it."""
    with _Endpoint(endpoint_dir, ["close-at-once"] * 10, tls12=tls12) as endpoint:
        proxy = proxy_to(endpoint)  # type: ignore[operator]
        for _ in range(5):
            status, body = _get(proxy)  # a hang is a socket timeout here
            assert status == 502, body
            assert body.startswith(b"flyte-iap proxy: "), body


def test_settings_the_endpoint_sends_with_the_handshake_are_heeded(
    endpoint_dir: Path, proxy_to: object
) -> None:
    """An endpoint allowing one stream per connection says so at once (with TLS 1.2 its SETTINGS arrive
    with the end of the handshake, before the proxy has set the connection up): after a first request
    (by then the SETTINGS were read, early or not), two overlapping requests take two connections.

    The endpoint's limit applies only once the proxy acknowledged it (RFC 9113 6.5.3): SETTINGS lost
    before the connection was set up would leave both requests on the first connection.
    """
    import concurrent.futures

    with _Endpoint(endpoint_dir, [], tls12=True, max_streams=1, delay=0.5) as endpoint:
        proxy = proxy_to(endpoint)  # type: ignore[operator]
        assert _get(proxy) == (200, b"ok")
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            answers = list(pool.map(lambda _: _get(proxy), range(2)))
        assert answers == [(200, b"ok")] * 2
        assert endpoint.connections == 2


def test_bodies_sent_with_their_headers_give_the_client_its_window_back(
    endpoint_dir: Path, proxy_to: object
) -> None:
    """100 requests of 15,000 bytes each on one HTTP/2 connection (1.5 MB, more than the 1 MiB window the
    proxy gives a client connection): each body, whole when its headers arrive, is sent on with them and
    must still be acknowledged to the client, or the client runs out of window part-way."""
    import socket

    body = bytes(range(256)) * 58 + b"x" * 152  # 15,000 bytes
    with _Endpoint(endpoint_dir, []) as endpoint:
        proxy = proxy_to(endpoint)  # type: ignore[operator]
        client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        client.initiate_connection()
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=20) as sock:
            sock.sendall(client.data_to_send())
            for _ in range(100):
                stream = client.get_next_available_stream_id()
                headers = [
                    (":method", "POST"),
                    (":scheme", "http"),
                    (":path", "/upload"),
                    (":authority", f"127.0.0.1:{proxy.port}"),
                    ("content-length", str(len(body))),
                ]
                client.send_headers(stream, headers)
                client.send_data(stream, body, end_stream=True)  # FlowControlError once the window is gone
                sock.sendall(client.data_to_send())
                ended = False
                while not ended:
                    data = sock.recv(65536)
                    assert data, "the proxy closed the connection"
                    for event in client.receive_data(data):
                        if isinstance(event, h2.events.DataReceived):
                            client.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                        ended = ended or (
                            isinstance(event, h2.events.StreamEnded) and event.stream_id == stream
                        )
                    sock.sendall(client.data_to_send())
    assert len(endpoint.bodies) == 100
    assert set(endpoint.bodies.values()) == {body}


@pytest.mark.parametrize("request_head", [b"GET /events", b"POST /events"])
def test_an_http1_client_leaving_an_endless_answer_makes_the_proxy_reset_the_endpoints_stream(
    request_head: bytes, endpoint_dir: Path, proxy_to: object
) -> None:
    """Else the endpoint keeps streaming into a stream nobody reads, holding one of its stream slots."""
    import socket
    import struct
    import time

    with _Endpoint(endpoint_dir, [], endless=True) as endpoint:
        proxy = proxy_to(endpoint)  # type: ignore[operator]
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as client:
            body = b"content-length: 2\r\n\r\nhi" if request_head.startswith(b"POST") else b"\r\n"
            client.sendall(request_head + b" HTTP/1.1\r\nhost: 127.0.0.1\r\n" + body)
            received = b""
            while len(received) < 5000:
                chunk = client.recv(65536)
                assert chunk, received
                received += chunk
            # leave abruptly (RST), as a killed client does
            client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        deadline = time.monotonic() + 10
        while not endpoint.resets and time.monotonic() < deadline:
            time.sleep(0.05)
        assert endpoint.resets == [(1, 1)]
