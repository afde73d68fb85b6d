"""The endpoint fails mid-request: the client gets an answer that says so, and the next request works.

The endpoint here is a small TLS + HTTP/2 server that misbehaves on purpose, once per connection, in
the ways a front end or a network can: the connection drops, the bytes stop being HTTP/2, GOAWAY.
"""

from __future__ import annotations

import asyncio
import datetime
import http.client
import threading
from collections.abc import Iterator
from pathlib import Path

import h2.config
import h2.connection
import h2.events
import pytest

from flyte_iap.local_proxy import LocalProxy, TokenSource
from flyte_iap.testing import FakeGoogle

#: A DATA frame on stream 0, which RFC 9113 6.1 makes a connection error.
_NOT_HTTP2 = b"\x00\x00\x04\x00\x00\x00\x00\x00\x00" + b"oops"


def _self_signed(directory: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = directory / "endpoint.pem", directory / "endpoint.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_file, key_file


class _Endpoint:
    """Answers 200 "ok", except that each new connection first plays the next of ``faults``."""

    def __init__(self, directory: Path, faults: list[str]) -> None:
        import ssl

        self.cert, key = _self_signed(directory)
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(self.cert, key)
        self.context.set_alpn_protocols(["h2"])
        self.faults = list(faults)
        self.connections = 0
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
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        fault = self.faults.pop(0) if self.faults else "none"
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
        conn.initiate_connection()
        writer.write(conn.data_to_send())
        while data := await reader.read(65536):
            for event in conn.receive_data(data):
                if not isinstance(event, h2.events.RequestReceived):
                    continue
                if fault == "drop":
                    writer.transport.abort()
                    return
                if fault == "not-http2":
                    writer.write(_NOT_HTTP2)
                    continue
                if fault == "goaway":
                    conn.close_connection(last_stream_id=0)
                    continue
                conn.send_headers(event.stream_id, [(":status", "200"), ("content-length", "2")])
                conn.send_data(event.stream_id, b"ok", end_stream=True)
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
