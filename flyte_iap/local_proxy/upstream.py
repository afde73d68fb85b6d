"""The proxy's connections to the one IAP origin: TLS, HTTP/2 (ALPN ``h2``), multiplexed, reconnected.

Every downstream request, HTTP/1.1 or HTTP/2, becomes a stream on one of these connections. Google's
front ends negotiate ``h2`` on :443 for both gRPC and plain HTTP, so one protocol upstream covers the
console, the REST API, Connect and gRPC. A connection takes streams up to the server's
``SETTINGS_MAX_CONCURRENT_STREAMS``; beyond that, or after a GOAWAY, a new one is opened.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ssl
from typing import Any

import h2.config
import h2.connection
import h2.events
import h2.exceptions

from flyte_iap.errors import TransportError
from flyte_iap.local_proxy._h2peer import H2Peer, Headers, Queue

_CONNECT_TIMEOUT = 15.0


def new_h2() -> h2.connection.H2Connection:
    """The HTTP/2 state of one connection to the endpoint (the client side), as the proxy sets it up."""
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding=None))
    # h2 sends proxy-authorization never-indexed (right: it stays out of the compression context),
    # so every request carries the ~1 KB token again; Huffman-coding it in pure Python cost about
    # 0.3 ms per request (cProfile), more than sending the raw bytes. Only the upstream side skips it.
    conn.encoder.encode = functools.partial(conn.encoder.encode, huffman=False)  # type: ignore[method-assign]
    return conn


class UpstreamConnection(H2Peer):
    """One TLS + HTTP/2 client connection to the origin."""

    def __init__(self, conn: h2.connection.H2Connection, writer: asyncio.StreamWriter) -> None:
        super().__init__(conn, writer)
        #: upstream stream id -> the queue of that exchange's response events
        self.responses: dict[int, Queue] = {}
        self.goaway = False

    def has_room(self) -> bool:
        if self.closed or self.goaway:
            return False
        limit = self.conn.remote_settings.max_concurrent_streams
        return self.conn.open_outbound_streams < limit

    def open_stream(self, headers: Headers, responses: Queue, *, end_stream: bool = False) -> int:
        """Send a request's headers; response events will arrive on ``responses``.

        Raises:
            h2.exceptions.ProtocolError: the connection is closed (nothing would ever answer).
        """
        if self.closed:
            raise h2.exceptions.ProtocolError("the connection to the endpoint is closed")
        stream_id = self.conn.get_next_available_stream_id()
        self.conn.send_headers(stream_id, headers, end_stream=end_stream)
        self.responses[stream_id] = responses
        self.flush()
        return stream_id

    def forget(self, stream_id: int) -> None:
        self.responses.pop(stream_id, None)

    def close(self) -> None:
        super().close()
        self._closed("the connection to the endpoint closed")

    def received(self, data: bytes) -> None:
        """Bytes from the endpoint, handled in the transport's callback (see :class:`_Feed`)."""
        if self.closed:
            return
        try:
            events = self.conn.receive_data(data)
        except h2.exceptions.ProtocolError as exc:
            self.flush_now()  # h2's GOAWAY, written before the connection closes
            self._closed(f"the endpoint broke HTTP/2 ({type(exc).__name__})")
            return
        for event in events:
            self._on_event(event)
        self.flush_now()

    def _closed(self, reason: str) -> None:
        """The connection is over: every exchange still on it hears why."""
        self.closed = True
        self.wake()
        responses, self.responses = self.responses, {}
        for queue in responses.values():
            queue.put("gone", reason)
        with contextlib.suppress(Exception):
            self.writer.close()

    def _on_event(self, event: h2.events.Event) -> None:
        if isinstance(event, h2.events.WindowUpdated):
            self.wake(event.stream_id)
            return
        if isinstance(event, h2.events.RemoteSettingsChanged):
            self.wake()
            return
        if isinstance(event, h2.events.ConnectionTerminated):
            # Streams above last_stream_id were never processed; the ones below finish normally.
            self.goaway = True
            last = event.last_stream_id if event.last_stream_id is not None else 0
            for stream_id in [s for s in self.responses if s > last]:
                self.responses.pop(stream_id).put("gone", "the endpoint closed the connection (GOAWAY)")
            return
        stream_id = getattr(event, "stream_id", 0)
        responses = self.responses.get(stream_id) if stream_id else None
        if responses is None:
            if isinstance(event, h2.events.DataReceived):
                self.ack(event.stream_id, event.flow_controlled_length)
            return
        if isinstance(event, h2.events.ResponseReceived):
            # a trailers-only answer (a gRPC error) must reach the client as one HEADERS frame
            responses.put("headers", list(event.headers), event.stream_ended is not None)
        elif isinstance(event, h2.events.DataReceived):
            responses.put("data", event.data, event.flow_controlled_length)
        elif isinstance(event, h2.events.TrailersReceived):
            responses.put("trailers", list(event.headers))
        elif isinstance(event, h2.events.StreamEnded):
            self.responses.pop(stream_id, None)
            responses.put("end")
        elif isinstance(event, h2.events.StreamReset):
            self.responses.pop(stream_id, None)
            self.wake(stream_id)
            responses.put("reset", event.error_code)


class _Feed(asyncio.StreamReaderProtocol):
    """Hands what the endpoint sends to its :class:`UpstreamConnection` in the transport's callback.

    A stream reader would buffer each read for a task to pick up on the next pass of the event loop;
    handled at once, a response's frames reach the client one pass sooner and a pass cheaper (there is
    nothing to hold back: HTTP/2 flow control bounds what the endpoint may send). Writing still goes
    through the :class:`asyncio.StreamWriter` (and its ``drain``) built on this protocol.
    """

    def __init__(self, reader: asyncio.StreamReader) -> None:
        super().__init__(reader)
        self._connection: UpstreamConnection | None = None
        self._early: list[bytes] = []  # arrived with the TLS handshake, before the connection existed
        self._ended: str | None = None

    def attach(self, connection: UpstreamConnection) -> str | None:
        """Start handing bytes to ``connection``, those that came early first.

        Returns:
            Why the connection is already over (the endpoint closed it during the handshake), or None.
        """
        self._connection = connection
        for data in self._early:
            connection.received(data)
        self._early.clear()
        if self._ended is not None and not connection.closed:
            connection._closed(self._ended)
        return (self._ended or "the connection to the endpoint closed") if connection.closed else None

    def data_received(self, data: bytes) -> None:
        if self._connection is None:
            self._early.append(data)
        else:
            self._connection.received(data)

    def eof_received(self) -> bool:
        self._end("the connection to the endpoint closed")
        return super().eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        if exc is None:
            self._end("the connection to the endpoint closed")
        else:
            self._end(f"the connection to the endpoint failed ({type(exc).__name__})")
        super().connection_lost(exc)

    def _end(self, reason: str) -> None:
        if self._connection is None:
            self._ended = self._ended or reason
        elif not self._connection.closed:
            self._connection._closed(reason)


class Upstream:
    """The pool of connections to ``host:port`` over TLS.

    Args:
        host: the endpoint's host name (SNI, certificate check).
        port: its port, 443 unless the endpoint URL says otherwise.
        ssl_context: verifies the endpoint's certificate; ALPN is set to ``h2`` here.
        connect_host: where to connect if not ``host`` (tests: a name that resolves elsewhere).
    """

    def __init__(
        self, host: str, port: int, ssl_context: ssl.SSLContext, *, connect_host: str | None = None
    ) -> None:
        self.host = host
        self.port = port
        self.connect_host = connect_host or host
        ssl_context.set_alpn_protocols(["h2"])
        self._ssl = ssl_context
        self._connections: list[UpstreamConnection] = []
        self._lock = asyncio.Lock()
        #: connections opened so far, for tests and the benchmark
        self.connects = 0

    async def open_stream(
        self, headers: Headers, responses: Queue, *, end_stream: bool = False
    ) -> tuple[UpstreamConnection, int]:
        """Start a request on a connection with room, opening one if needed.

        Raises:
            TransportError: the endpoint cannot be reached, its certificate fails, or it does not speak
                HTTP/2.
        """
        for attempt in range(2):
            connection = await self._connection()
            try:
                return connection, connection.open_stream(headers, responses, end_stream=end_stream)
            except h2.exceptions.TooManyStreamsError:
                continue
            except (h2.exceptions.ProtocolError, h2.exceptions.StreamClosedError):
                connection.goaway = True
                if attempt:
                    raise TransportError(
                        f"cannot start a request on {self.host}:{self.port}",
                        "the endpoint closed the connection; retry",
                    ) from None
        raise TransportError(f"cannot start a request on {self.host}:{self.port}", "retry")

    async def _connection(self) -> UpstreamConnection:
        async with self._lock:
            self._connections = [
                c for c in self._connections if not c.closed and (c.responses or not c.goaway)
            ]
            for connection in self._connections:
                if connection.has_room():
                    return connection
            connection = await self._connect()
            self._connections.append(connection)
            return connection

    async def _connect(self) -> UpstreamConnection:
        where = f"{self.host}:{self.port}"
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        feed = _Feed(reader)
        try:
            transport, _ = await asyncio.wait_for(
                loop.create_connection(
                    lambda: feed, self.connect_host, self.port, ssl=self._ssl, server_hostname=self.host
                ),
                timeout=_CONNECT_TIMEOUT,
            )
        except ssl.SSLCertVerificationError as exc:
            raise TransportError(
                f"the certificate of {where} is not trusted ({exc.verify_message})",
                "for a private CA pass --ca-cert FILE (the CA's PEM), as admin.caCertFilePath",
            ) from None
        except TimeoutError:
            message = f"{where} did not answer within {_CONNECT_TIMEOUT:.0f} s"
            raise TransportError(message, _NET_HINT) from None
        except (OSError, ssl.SSLError) as exc:
            raise TransportError(f"cannot connect to {where}: {exc.strerror or exc}", _NET_HINT) from None
        writer = asyncio.StreamWriter(transport, feed, reader, loop)
        ssl_object: Any = writer.get_extra_info("ssl_object")
        if ssl_object is None or ssl_object.selected_alpn_protocol() != "h2":
            writer.close()
            raise TransportError(
                f"{where} did not offer HTTP/2 (ALPN h2)",
                "the proxy forwards over HTTP/2, as IAP's load balancer serves it; check --endpoint",
            )
        connection = UpstreamConnection(new_h2(), writer)
        connection.conn.initiate_connection()
        connection.advertise_windows()
        connection.flush_now()
        ended = feed.attach(connection)
        if ended is not None:
            raise TransportError(f"{where} closed the connection at once: {ended}", _NET_HINT)
        self.connects += 1
        return connection

    def close(self) -> None:
        for connection in self._connections:
            connection.close()
        self._connections.clear()


_NET_HINT = "check --endpoint and your network (VPN, proxy); the proxy retries on the next request"
