"""HTTP/2 clients with prior knowledge (gRPC from flytekit, flytectl, grpcio): streams mapped 1:1 upstream."""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING

import h2.config
import h2.connection
import h2.events
import h2.exceptions

from flyte_iap.local_proxy import oauth_metadata
from flyte_iap.local_proxy._h2peer import (
    CLIENT_CONNECTION_WINDOW,
    CLIENT_STREAM_WINDOW,
    READ_SIZE,
    H2Peer,
    Headers,
    Queue,
    StreamGone,
    end_to_end,
)
from flyte_iap.local_proxy._messages import COALESCE, get, grpc_error, origin_form, status_of
from flyte_iap.local_proxy.upstream import UpstreamConnection

if TYPE_CHECKING:
    from flyte_iap.local_proxy.server import LocalProxy


def new_h2() -> h2.connection.H2Connection:
    """The HTTP/2 state of one client connection (the server side), as the proxy sets it up."""
    return h2.connection.H2Connection(h2.config.H2Configuration(client_side=False, header_encoding=None))


class H2Session(H2Peer):
    """One client connection."""

    def __init__(
        self, proxy: LocalProxy, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, initial: bytes
    ) -> None:
        super().__init__(new_h2(), writer)
        self.proxy = proxy
        self.reader = reader
        self.initial = initial
        self.requests: dict[int, Queue] = {}
        self.tasks: dict[int, asyncio.Task[None]] = {}
        self._deadline: asyncio.Timeout | None = None
        self._frames = _FrameWatch(skip=len(initial))

    async def run(self) -> None:
        self.conn.initiate_connection()
        self.advertise_windows(
            CLIENT_STREAM_WINDOW, CLIENT_CONNECTION_WINDOW, MAX_CONCURRENT_STREAMS=self.proxy.max_streams
        )
        self.flush_now()
        data = self.initial
        try:
            # TimeoutError ends the session: the caller closes the connection, clients get GOAWAY below
            async with asyncio.timeout(None) as self._deadline:
                while True:
                    if data:
                        self._frames.feed(data)
                        try:
                            events = self.conn.receive_data(data)
                        except h2.exceptions.ProtocolError:
                            self.flush_now()
                            return
                        for event in events:
                            self._on_event(event)
                        self.flush_now()
                        await self.drain()
                    self._rearm()
                    data = await self.reader.read(READ_SIZE)
                    if not data:
                        return
        finally:
            self._deadline = None
            for task in list(self.tasks.values()):
                task.cancel()
            if self.tasks:
                await asyncio.gather(*self.tasks.values(), return_exceptions=True)
            with contextlib.suppress(Exception):
                self.conn.close_connection()
            self.close()

    def _on_event(self, event: h2.events.Event) -> None:
        if isinstance(event, h2.events.RequestReceived):
            queue = Queue()
            self.requests[event.stream_id] = queue
            ended = event.stream_ended is not None
            task = asyncio.ensure_future(self._stream(event.stream_id, list(event.headers), queue, ended))
            self.tasks[event.stream_id] = task
            task.add_done_callback(lambda _, sid=event.stream_id: self._stream_done(sid))
        elif isinstance(event, h2.events.DataReceived):
            queue = self.requests.get(event.stream_id)
            if queue is None:
                self.ack(event.stream_id, event.flow_controlled_length)
            else:
                queue.put("data", event.data, event.flow_controlled_length)
        elif isinstance(event, h2.events.TrailersReceived):
            queue = self.requests.get(event.stream_id)
            if queue is not None:
                queue.put("trailers", list(event.headers))
        elif isinstance(event, h2.events.StreamEnded):
            queue = self.requests.get(event.stream_id)
            if queue is not None:
                queue.put("end")
        elif isinstance(event, h2.events.StreamReset):
            self.requests.pop(event.stream_id, None)
            task = self.tasks.pop(event.stream_id, None)
            if task is not None:
                task.cancel()
            self.wake(event.stream_id)
        elif isinstance(event, h2.events.WindowUpdated):
            self.wake(event.stream_id)
        elif isinstance(event, h2.events.RemoteSettingsChanged):
            self.wake()

    def _stream_done(self, stream_id: int) -> None:
        self.tasks.pop(stream_id, None)
        self._rearm()

    def _rearm(self) -> None:
        """Give the client ``head_timeout`` while it holds a connection with no open stream (idle) or
        is part-way through a header block (HEADERS or CONTINUATION frames trickled): either way it
        holds one of ``max_connections`` without asking for anything.
        """
        deadline = self._deadline
        if deadline is None or deadline.expired():
            return
        if self.tasks and not self._frames.in_header_block:
            deadline.reschedule(None)
        elif deadline.when() is None:
            deadline.reschedule(asyncio.get_running_loop().time() + self.proxy.head_timeout)

    async def _stream(self, stream_id: int, headers: Headers, requests: Queue, no_body: bool) -> None:
        proxy = self.proxy
        method = (get(headers, b":method") or b"").decode("latin-1")
        path = (get(headers, b":path") or b"").decode("latin-1")
        authority = (get(headers, b":authority") or get(headers, b"host") or b"").decode("latin-1")
        grpc = (get(headers, b"content-type") or b"").startswith(b"application/grpc")
        upstream: UpstreamConnection | None = None
        upstream_id = 0
        try:
            refusal = proxy.refusal(method, path, authority, headers)
            if refusal is not None:
                proxy.note_refusal(refusal[0])
                self._local(stream_id, *refusal, grpc=grpc)
                return
            path = origin_form(path)
            responses = Queue()
            begun = await proxy.begin(method, path, headers, responses, no_body=no_body)
            if len(begun) == 2:
                self._local(stream_id, *begun, [], grpc=grpc)
                return
            upstream, upstream_id, token = begun
            # A unary request (gRPC, Connect) is often whole by now: it leaves in the headers' write.
            whole = None if no_body else requests.whole_body(upstream.room(upstream_id))
            if whole is not None:
                upstream.send_last(upstream_id, whole[0])
                await upstream.drain()  # as the pump does: the client may send more once it is taken
                self.ack(stream_id, whole[1])
            pump = (
                asyncio.ensure_future(self._pump_request(requests, upstream, upstream_id, stream_id))
                if not no_body and whole is None
                else None
            )
            try:
                rewrite = grpc and path == oauth_metadata.METHOD
                await self._pump_response(stream_id, responses, upstream, upstream_id, token, grpc, rewrite)
            finally:
                if pump is not None and not pump.done():
                    pump.cancel()
        except asyncio.CancelledError:
            # the client reset the stream, or the proxy is stopping
            if upstream is not None:
                upstream.reset(upstream_id)
            raise
        except StreamGone:
            if upstream is not None:
                upstream.reset(upstream_id)
        finally:
            self.requests.pop(stream_id, None)
            if upstream is not None:
                upstream.forget(upstream_id)

    async def _pump_request(
        self, requests: Queue, upstream: UpstreamConnection, upstream_id: int, stream_id: int
    ) -> None:
        try:
            while True:
                kind, *args = await requests.get()
                if kind == "data":
                    more, flow = requests.more_data(COALESCE)
                    await upstream.send_data(upstream_id, b"".join([args[0], *more]) if more else args[0])
                    self.ack(stream_id, args[1] + flow)
                elif kind == "trailers":
                    upstream.send_headers(upstream_id, end_to_end(args[0]), end_stream=True)
                    return
                else:
                    upstream.end_stream(upstream_id)
                    return
        except StreamGone:
            return

    async def _pump_response(
        self,
        stream_id: int,
        responses: Queue,
        upstream: UpstreamConnection,
        upstream_id: int,
        token: str,
        grpc: bool,
        rewrite: bool,
    ) -> None:
        started = ended = False
        held = bytearray() if rewrite else None  # flyteadmin's OAuth2 metadata, rewritten when complete
        while True:
            kind, *args = await responses.get()
            if held is not None and kind != "data" and kind != "headers":
                body = oauth_metadata.rewrite_grpc_response(bytes(held), self.proxy.endpoint, self.proxy.url)
                held = None
                await self.send_data(stream_id, body)
            if kind == "headers":
                status = status_of(args[0])
                answer = self.proxy.watch(status, args[0], token)
                if answer is not None:
                    await answer.report(responses)
                drop = frozenset({b"content-length"}) if rewrite else frozenset()
                headers = [(b":status", str(status).encode()), *end_to_end(args[0], drop=drop)]
                self.send_headers(stream_id, headers, end_stream=args[1])
                started = True
                ended = args[1]
            elif kind == "data" and held is not None:
                held += args[0]
                upstream.ack(upstream_id, args[1])
                if len(held) > oauth_metadata.MAX_BODY:  # not flyteadmin's small answer: pass it on
                    body, held = bytes(held), None
                    await self.send_data(stream_id, body)
            elif kind == "data":
                more, flow = responses.more_data(COALESCE)
                await self.send_data(stream_id, b"".join([args[0], *more]) if more else args[0])
                upstream.ack(upstream_id, args[1] + flow)
            elif kind == "trailers":
                self.send_headers(stream_id, end_to_end(args[0]), end_stream=True)
                ended = True
            elif kind == "end":
                if not ended:
                    self.end_stream(stream_id)
                return
            else:
                reason = args[0] if kind == "gone" else f"the endpoint reset the request (code {args[0]})"
                if started:
                    self.reset(stream_id, 2 if kind == "gone" else args[0])  # INTERNAL_ERROR
                else:
                    self.proxy.say("reset:" + str(reason), f"error: {reason}")
                    self._local(stream_id, 502, f"flyte-iap proxy: {reason}", [], grpc=grpc)
                return

    def _local(self, stream_id: int, status: int, message: str, extra: Headers, *, grpc: bool) -> None:
        """The proxy's own answer on one stream (a gRPC status for gRPC clients)."""
        try:
            if grpc:
                self.send_headers(stream_id, grpc_error(status, message), end_stream=True)
                return
            body = (message + "\n").encode()
            headers = [
                (b":status", str(status).encode()),
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"content-length", str(len(body)).encode()),
                *extra,
            ]
            self.send_headers(stream_id, headers)
            self.conn.send_data(stream_id, body, end_stream=True)
            self.flush()
        except (StreamGone, h2.exceptions.ProtocolError, h2.exceptions.StreamClosedError):
            pass


class _FrameWatch:
    """Follows the frame boundaries in what a client sends, to tell when it is inside a header block.

    A header block is a HEADERS frame and the CONTINUATION frames up to the one flagged END_HEADERS
    (RFC 9113 6.2, 6.10); h2 reports the request only once the block is whole.
    """

    def __init__(self, *, skip: int) -> None:
        self._skip = skip  # the connection preface
        self._head = bytearray()  # a frame header received in part
        self._left = 0  # bytes of the current frame's payload still to come
        self._type = 0
        self._open_block = False  # HEADERS seen, END_HEADERS not yet

    def feed(self, data: bytes) -> None:
        pos, size = min(self._skip, len(data)), len(data)
        self._skip -= pos
        while pos < size:
            if self._left:
                step = min(self._left, size - pos)
                self._left -= step
                pos += step
                continue
            step = min(9 - len(self._head), size - pos)
            self._head += data[pos : pos + step]
            pos += step
            if len(self._head) == 9:
                self._left = int.from_bytes(self._head[:3], "big")
                self._type = self._head[3]
                if self._type in (_HEADERS, _CONTINUATION):
                    self._open_block = not self._head[4] & _END_HEADERS
                self._head.clear()

    @property
    def in_header_block(self) -> bool:
        """A header block is unfinished, or a frame (its type maybe not yet known) is only partly here."""
        return (
            self._open_block
            or bool(self._head)
            or (bool(self._left) and self._type in (_HEADERS, _CONTINUATION))
        )


_HEADERS, _CONTINUATION, _END_HEADERS = 0x1, 0x9, 0x4
