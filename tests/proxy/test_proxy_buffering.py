"""Memory the local proxy holds for request bodies when the endpoint stops taking them."""

from __future__ import annotations

import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers.proxy import LocalFactory, self_signed_certificate

from flyte_iap.local_proxy.server import LocalProxy


@pytest.fixture
def stalled_endpoint(tmp_path: Path) -> Iterator[tuple[str, str, list[int]]]:
    """An HTTP/2 endpoint on TLS that takes requests but never opens a flow-control window beyond the
    protocol's 64 KiB nor answers: the proxy can forward only that much of any body.

    Yields its URL, its CA file and, as the test runs, the DATA bytes it received.
    """
    import h2.config
    import h2.connection
    import h2.events

    cert_file, key_file = self_signed_certificate(tmp_path, "127.0.0.1")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    context.set_alpn_protocols(["h2"])
    listener = socket.create_server(("127.0.0.1", 0))
    received = [0]
    stop = threading.Event()

    def serve(raw: socket.socket) -> None:
        with raw:
            try:
                conn = context.wrap_socket(raw, server_side=True)
            except (OSError, ssl.SSLError):
                return
            conn.settimeout(0.2)
            h2conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
            h2conn.initiate_connection()
            conn.sendall(h2conn.data_to_send())
            while not stop.is_set():
                try:
                    data = conn.recv(65536)
                except TimeoutError:
                    continue
                except (OSError, ssl.SSLError):
                    return
                if not data:
                    return
                for event in h2conn.receive_data(data):
                    if isinstance(event, h2.events.DataReceived):
                        received[0] += event.flow_controlled_length
                conn.sendall(h2conn.data_to_send())

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                raw, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=serve, args=(raw,), daemon=True).start()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"https://127.0.0.1:{listener.getsockname()[1]}", str(cert_file), received
    stop.set()
    thread.join(5)
    listener.close()


def _push_bodies(local: LocalProxy, streams: int) -> int:
    """Open ``streams`` uploads and send body bytes while the proxy's windows allow (at most 40 rounds
    of 0.2 s); the bytes the proxy took in."""
    import h2.config
    import h2.connection
    import h2.events

    client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding=None))
    client.initiate_connection()
    ids = [1 + 2 * n for n in range(streams)]
    for stream_id in ids:
        client.send_headers(
            stream_id,
            [
                (b":method", b"POST"),
                (b":scheme", b"http"),
                (b":authority", f"127.0.0.1:{local.port}".encode()),
                (b":path", b"/api/v1/upload"),
            ],
        )
    chunk = b"u" * 16384
    sent = 0
    with socket.create_connection(("127.0.0.1", local.port), timeout=20) as conn:
        conn.settimeout(0.2)
        for _ in range(40):
            for stream_id in ids:
                while min(client.local_flow_control_window(stream_id), client.max_outbound_frame_size) > 0:
                    size = min(
                        len(chunk),
                        client.local_flow_control_window(stream_id),
                        client.max_outbound_frame_size,
                    )
                    client.send_data(stream_id, chunk[:size])
                    sent += size
            conn.sendall(client.data_to_send())
            try:
                data = conn.recv(65536)
            except TimeoutError:
                continue
            if not data:
                break
            client.receive_data(data)
    return sent


def test_request_bodies_held_for_a_stalled_endpoint_stay_within_the_client_connection_window(
    make_local: LocalFactory, stalled_endpoint: tuple[str, str, list[int]], signed_in: str
) -> None:
    url, ca_cert, received = stalled_endpoint
    local = make_local(endpoint=url, ca_cert=ca_cert)

    taken = _push_bodies(local, streams=16)

    assert 0 < received[0] <= 65535  # the endpoint never opened its window: the rest sits in the proxy
    # what the client could send: the proxy's 1 MiB connection window plus what it passed on
    assert 65535 < taken <= 1024 * 1024 + 65535
