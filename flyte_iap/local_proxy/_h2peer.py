"""What both HTTP/2 sides of the proxy share: sending under flow control, and the queue between sides.

Backpressure runs end to end: received DATA is acknowledged to its sender (a WINDOW_UPDATE) only after
the other side took it, so the bytes held in memory per stream never exceed the window the proxy
advertises, whatever the sizes of the bodies passing through.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
from typing import Any

import h2.connection
import h2.exceptions
import hyperframe.frame

#: Flow-control windows the proxy advertises to the endpoint, per stream and per connection: large
#: enough for responses over a long network path, small enough that 100 streams with a stalled reader
#: stay in tens of MiB.
STREAM_WINDOW = 1024 * 1024
CONNECTION_WINDOW = 8 * 1024 * 1024
#: The windows it advertises to its clients, for the request bodies it holds while the endpoint is
#: slow to take them: loopback needs little to keep busy, and ``max_connections`` (256) clients that
#: push bodies at a stalled endpoint then make the proxy hold at most 256 MiB (8 MiB windows: 2 GiB).
CLIENT_STREAM_WINDOW = 512 * 1024
CLIENT_CONNECTION_WINDOW = 1024 * 1024
#: Bytes read from a socket at once.
READ_SIZE = 256 * 1024

Headers = list[tuple[bytes, bytes]]


def _hex_prefix_repr() -> None:
    """Make hyperframe's frame ``repr`` hex-encode only the bytes it shows.

    h2 formats every frame it receives for a trace log even when nothing logs (h2 4.x ``_receive_frame``:
    ``logger.trace("Received frame: %s", repr(frame))``), and hyperframe 6.x ``_raw_data_repr``
    hex-encodes a DATA frame's whole payload to keep the first 20 hex digits: 14 % of the proxy's CPU on
    a server stream (py-spy). Encoding the first 11 bytes gives the same text for every input (they are
    22 digits, cut to 20 + "..." as before; shorter payloads are encoded whole), so the function is
    replaced by one that passes it that prefix, after checking on samples that the text is unchanged:
    a hyperframe that shows more keeps its own.
    """
    original = getattr(hyperframe.frame, "_raw_data_repr", None)
    if original is None or getattr(original, "prefix_only", False):
        return

    def prefix_repr(data: bytes | None) -> str:
        return original(data[:11] if data else data)

    samples = [None, b"", b"\x00", bytes(range(10)), bytes(range(11)), bytes(range(12)), bytes(range(200))]
    if all(prefix_repr(sample) == original(sample) for sample in samples):
        prefix_repr.prefix_only = True  # type: ignore[attr-defined]
        hyperframe.frame._raw_data_repr = prefix_repr


_hex_prefix_repr()

#: Connection-specific headers (RFC 9110 7.6.1, RFC 9113 8.2.2) and the credential the proxy replaces.
HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"proxy-authorization",
        b"proxy-authenticate",
        b"te",
        b"transfer-encoding",
        b"upgrade",
        b"http2-settings",
        b"host",
    }
)


def end_to_end(headers: Headers, *, drop: frozenset[bytes] = frozenset()) -> Headers:
    """The headers a hop passes on: pseudo-headers, hop-by-hop ones and those named by Connection dropped.

    ``te: trailers`` survives: gRPC requires it on HTTP/2.
    """
    named: set[bytes] = set()
    for name, value in headers:
        if name == b"connection":
            named.update(token.strip().lower() for token in value.split(b",") if token.strip())
    out: Headers = []
    for name, value in headers:
        if name.startswith(b":") or name in drop or name in named:
            continue
        if name in HOP_BY_HOP:
            if name == b"te" and value.strip().lower() == b"trailers":
                out.append((b"te", b"trailers"))
            continue
        out.append((name, value))
    return out


class StreamGone(Exception):
    """The stream (or its connection) closed while data was waiting to be sent on it."""


class Queue:
    """An unbounded FIFO between two tasks; the bound is the flow-control window of the producer's peer."""

    def __init__(self) -> None:
        self._items: collections.deque[tuple[Any, ...]] = collections.deque()
        self._ready = asyncio.Event()

    def put(self, *item: Any) -> None:
        self._items.append(item)
        self._ready.set()

    @property
    def ready(self) -> bool:
        """An item is waiting: :meth:`get` returns without waiting."""
        return bool(self._items)

    def unget(self, items: list[tuple[Any, ...]]) -> None:
        """Put items taken by :meth:`get` back in front, in their order."""
        self._items.extendleft(reversed(items))
        if items:
            self._ready.set()

    def more_data(self, limit: int) -> tuple[list[bytes], int]:
        """Take the ``data`` items waiting right behind one just taken, up to ``limit`` bytes.

        Returns:
            The chunks and their flow-controlled length: sent together, they cost one pass each.
        """
        chunks: list[bytes] = []
        flow = size = 0
        while self._items and self._items[0][0] == "data" and size < limit:
            _, data, length = self._items.popleft()
            chunks.append(data)
            size += len(data)
            flow += length
        return chunks, flow

    def whole_body(self, limit: int) -> tuple[bytes, int] | None:
        """The body, when all of it is here (its data items, then ``end``) and at most ``limit`` bytes.

        Returns:
            The body and its flow-controlled length, taken from the queue; None (queue untouched) if
            more is to come, trailers follow, or it is larger.
        """
        items = self._items
        if not items or items[-1][0] != "end":
            return None
        chunks: list[bytes] = []
        flow = size = 0
        for index in range(len(items) - 1):
            kind, *args = items[index]
            if kind != "data":
                return None
            chunks.append(args[0])
            size += len(args[0])
            flow += args[1]
            if size > limit:
                return None
        items.clear()
        return b"".join(chunks), flow

    async def get(self) -> tuple[Any, ...]:
        while not self._items:
            self._ready.clear()
            await self._ready.wait()
        return self._items.popleft()


class H2Peer:
    """One HTTP/2 connection (either side) over an asyncio stream pair."""

    def __init__(self, conn: h2.connection.H2Connection, writer: asyncio.StreamWriter) -> None:
        self.conn = conn
        self.writer = writer
        self.closed = False
        self._waiters: dict[int, asyncio.Event] = {}
        self._flush_pending = False

    def flush(self) -> None:
        """Write what h2 has queued, once the tasks running now are done: their frames share a write."""
        if not self._flush_pending:
            self._flush_pending = True
            asyncio.get_running_loop().call_soon(self.flush_now)

    def flush_now(self) -> None:
        """Write what h2 has queued at once."""
        self._flush_pending = False
        data = self.conn.data_to_send()
        if data and not self.closed:
            self.writer.write(data)

    def advertise_windows(
        self, stream: int = STREAM_WINDOW, connection: int = CONNECTION_WINDOW, **settings: int
    ) -> None:
        """Open the windows the peer may fill beyond the protocol's 64 KiB defaults.

        Args:
            stream: bytes the peer may send on each stream before the proxy took them on.
            connection: the same for all streams together.
            settings: more settings by ``SettingCodes`` name (``MAX_CONCURRENT_STREAMS=100``).
        """
        from h2.settings import SettingCodes

        values = {SettingCodes.INITIAL_WINDOW_SIZE: stream}
        values.update({SettingCodes[name]: value for name, value in settings.items()})
        self.conn.update_settings(values)
        self.conn.increment_flow_control_window(connection - 65535)

    def wake(self, stream_id: int | None = None) -> None:
        """The peer opened its window (one stream's, or the connection's when ``stream_id`` is falsy)."""
        if stream_id:
            waiter = self._waiters.get(stream_id)
            if waiter is not None:
                waiter.set()
            return
        for waiter in self._waiters.values():
            waiter.set()

    def close(self) -> None:
        if not self.closed:
            self.flush_now()
        self.closed = True
        self.wake()
        with contextlib.suppress(Exception):
            self.writer.close()

    async def send_data(self, stream_id: int, data: bytes) -> None:
        """Send ``data`` on a stream as the peer's windows allow; returns once it is handed to the socket.

        Raises:
            StreamGone: the stream was reset or the connection closed first.
        """
        offset = 0
        try:
            while offset < len(data):
                if self.closed:
                    raise StreamGone
                window = self.conn.local_flow_control_window(stream_id)
                window = min(window, self.conn.max_outbound_frame_size)
                if window <= 0:
                    waiter = self._waiters.setdefault(stream_id, asyncio.Event())
                    waiter.clear()
                    await waiter.wait()
                    continue
                self.conn.send_data(stream_id, data[offset : offset + window])
                offset += window
                self.flush()  # the frames that fit now leave together, before waiting for a window
        except (h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError, KeyError) as exc:
            raise StreamGone from exc
        finally:
            self._waiters.pop(stream_id, None)
        await self.drain()

    def room(self, stream_id: int) -> int:
        """Bytes that may be sent on a stream at once, in one frame, without waiting for the peer."""
        try:
            window = self.conn.local_flow_control_window(stream_id)
        except (h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError, KeyError):
            return 0
        return 0 if self.closed else min(window, self.conn.max_outbound_frame_size)

    def send_last(self, stream_id: int, data: bytes) -> None:
        """Send the rest of a body and end the stream, at most :meth:`room` bytes: no waiting."""
        try:
            self.conn.send_data(stream_id, data, end_stream=True)
        except (h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError, KeyError) as exc:
            raise StreamGone from exc
        self.flush()

    def send_headers(self, stream_id: int, headers: Headers, *, end_stream: bool = False) -> None:
        try:
            self.conn.send_headers(stream_id, headers, end_stream=end_stream)
        except (h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError, KeyError) as exc:
            raise StreamGone from exc
        self.flush()

    def end_stream(self, stream_id: int) -> None:
        try:
            self.conn.end_stream(stream_id)
        except (h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError, KeyError) as exc:
            raise StreamGone from exc
        self.flush()

    def reset(self, stream_id: int, error_code: int = 8) -> None:
        """RST_STREAM (CANCEL by default); quiet when the stream is already gone."""
        with contextlib.suppress(h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError, KeyError):
            self.conn.reset_stream(stream_id, error_code)
        self.wake(stream_id)
        self.flush()

    def ack(self, stream_id: int, length: int) -> None:
        """The other side took ``length`` flow-controlled bytes of this stream: let the peer send more."""
        if length and not self.closed:
            with contextlib.suppress(h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError, KeyError):
                self.conn.acknowledge_received_data(length, stream_id)
            self.flush()

    async def drain(self) -> None:
        if self.closed:
            return
        try:
            await self.writer.drain()
        except (ConnectionError, RuntimeError) as exc:
            raise StreamGone from exc
