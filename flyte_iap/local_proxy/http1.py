"""HTTP/1.1 clients (REST API, console, Connect): each request becomes a stream upstream (h11 framing)."""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING, Any

import h11

from flyte_iap.local_proxy._h2peer import READ_SIZE, Headers, Queue, StreamGone, end_to_end
from flyte_iap.local_proxy._messages import COALESCE, get, origin_form, reason_phrase, status_of
from flyte_iap.local_proxy.upstream import UpstreamConnection

if TYPE_CHECKING:
    from flyte_iap.local_proxy.server import LocalProxy

#: Largest request head (request line and headers) accepted.
MAX_HEAD = 64 * 1024


class H1Session:
    """One client connection."""

    def __init__(
        self, proxy: LocalProxy, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, initial: bytes
    ) -> None:
        self.proxy = proxy
        self.reader = reader
        self.writer = writer
        self.conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD)
        self.conn.receive_data(initial)
        self._out = bytearray()

    async def run(self) -> None:
        while True:
            try:
                async with asyncio.timeout(self.proxy.head_timeout):
                    event = await self._next()
            except TimeoutError:
                return  # no request head in time: a stalled or idle connection gives its slot back
            except h11.RemoteProtocolError as exc:
                status = exc.error_status_hint
                head = f"HTTP/1.1 {status} Bad Request\r\nconnection: close\r\ncontent-length: 0\r\n\r\n"
                self.writer.write(head.encode())
                return
            if not isinstance(event, h11.Request):
                return
            keep = await self._exchange(event)
            if not keep or self.conn.our_state is not h11.DONE or self.conn.their_state is not h11.DONE:
                return
            self.conn.start_next_cycle()

    async def _next(self) -> Any:
        while True:
            event = self.conn.next_event()
            if event is h11.NEED_DATA:
                if self.conn.they_are_waiting_for_100_continue:
                    await self._send(
                        h11.InformationalResponse(status_code=100, headers=[], reason=b"Continue")
                    )
                self.conn.receive_data(await self.reader.read(READ_SIZE))
                continue
            return None if event is h11.PAUSED else event

    async def _send(self, event: Any, *, more: bool = False) -> None:
        """Send an event; with ``more``, only buffer it: the next events go out in the same write."""
        data = self.conn.send(event)
        if data:
            self._out += data
        if not more and self._out:
            self.writer.write(bytes(self._out))
            self._out.clear()
            await self.writer.drain()

    async def _exchange(self, request: h11.Request) -> bool:
        proxy = self.proxy
        method = request.method.decode("ascii", "replace")
        target = request.target.decode("latin-1")
        headers: Headers = list(request.headers)
        if get(headers, b"transfer-encoding") is not None:
            # h11 framed the body by Transfer-Encoding, which overrides a Content-Length sent with it; an
            # intermediary must remove that Content-Length (RFC 9112 6.3) or IAP gets a malformed request
            headers = [(name, value) for name, value in headers if name != b"content-length"]
        refusal = proxy.refusal(method, target, (get(headers, b"host") or b"").decode("latin-1"), headers)
        if refusal is not None:
            status, message, extra = refusal
            proxy.note_refusal(status)
            return await self._local(status, message, extra)
        target = origin_form(target)
        responses = Queue()
        # a request without a body ends with its HEADERS frame: one frame, one write less
        no_body = (
            get(headers, b"content-length") in (None, b"0") and get(headers, b"transfer-encoding") is None
        )
        begun = await proxy.begin(method, target, headers, responses, no_body=no_body)
        if len(begun) == 2:
            return await self._local(*begun, [])
        upstream, stream_id, token = begun
        if no_body:
            # h11 ends a body-less request at once (no more bytes needed): no task to pump a body
            ended = self.conn.next_event()
            try:
                answered = isinstance(ended, h11.EndOfMessage) and await self._pump_response(
                    upstream, stream_id, responses, method, token
                )
                if not answered:  # the client left mid-answer: the endpoint stops sending it
                    upstream.reset(stream_id)
                return answered
            except asyncio.CancelledError:
                upstream.reset(stream_id)
                raise
            finally:
                upstream.forget(stream_id)
        body = asyncio.ensure_future(self._pump_request(upstream, stream_id, no_body))
        answer = asyncio.ensure_future(self._pump_response(upstream, stream_id, responses, method, token))
        try:
            await asyncio.wait({body, answer}, return_when=asyncio.FIRST_COMPLETED)
            if not body.done():
                # answered before the request body was complete (IAP's 401, say): drop the rest and
                # the connection, whose next bytes would be the unread body
                await answer
                return False
            sent = body.result()
            keep = await answer
            if not keep:  # the client left mid-answer: the endpoint stops sending it
                upstream.reset(stream_id)
            return sent and keep
        finally:
            for task in (body, answer):
                if not task.done():
                    task.cancel()
                    upstream.reset(stream_id)
            upstream.forget(stream_id)

    async def _pump_request(self, upstream: UpstreamConnection, stream_id: int, ended: bool) -> bool:
        try:
            while True:
                event = await self._next()
                if isinstance(event, h11.Data):
                    await upstream.send_data(stream_id, bytes(event.data))
                elif isinstance(event, h11.EndOfMessage) and ended:
                    return True
                elif isinstance(event, h11.EndOfMessage):
                    trailers = end_to_end(list(event.headers))
                    if trailers:
                        upstream.send_headers(stream_id, trailers, end_stream=True)
                    else:
                        upstream.end_stream(stream_id)
                    return True
                else:
                    return False
        except (StreamGone, h11.RemoteProtocolError):
            return False

    async def _pump_response(
        self, upstream: UpstreamConnection, stream_id: int, responses: Queue, method: str, token: str
    ) -> bool:
        started = False
        chunked = False
        trailers: Headers = []
        try:
            while True:
                kind, *args = await responses.get()
                if kind == "headers":
                    status = status_of(args[0])
                    out = end_to_end(args[0])
                    answer = self.proxy.watch(status, args[0], token)
                    if answer is not None:
                        await answer.report(responses)
                    chunked = (
                        get(out, b"content-length") is None
                        and self.conn.their_http_version == b"1.1"
                        and method != "HEAD"
                        and status not in (204, 304)
                    )
                    # what arrived with the headers goes out in the same write
                    response = h11.Response(status_code=status, headers=out, reason=reason_phrase(status))
                    await self._send(response, more=responses.ready)
                    started = True
                elif kind == "data":
                    more, flow = responses.more_data(COALESCE)
                    data = b"".join([args[0], *more]) if more else args[0]
                    await self._send(h11.Data(data=data), more=responses.ready)
                    upstream.ack(stream_id, args[1] + flow)
                elif kind == "trailers":
                    trailers = end_to_end(args[0])
                elif kind == "end":
                    await self._send(h11.EndOfMessage(headers=trailers if chunked else []))
                    return True
                else:  # "reset" or "gone": the endpoint dropped the request
                    reason = args[0] if kind == "gone" else f"the endpoint reset the request (code {args[0]})"
                    if not started:
                        self.proxy.say("reset:" + str(reason), f"error: {reason}")
                        await self._local(502, f"flyte-iap proxy: {reason}", [])
                    return False
        except (h11.LocalProtocolError, ConnectionError, StreamGone):
            return False

    async def _local(self, status: int, message: str, extra: Headers) -> bool:
        """The proxy's own answer; True when the connection can serve another request."""
        body = (message + "\n").encode()
        headers = [
            (b"content-type", b"text/plain; charset=utf-8"),
            (b"content-length", str(len(body)).encode()),
            *extra,
        ]
        try:
            await self._send(
                h11.Response(status_code=status, headers=headers, reason=reason_phrase(status)), more=True
            )
            await self._send(h11.Data(data=body), more=True)
            await self._send(h11.EndOfMessage())
        except h11.LocalProtocolError:
            return False
        # A request without a body can be followed by another one on the same connection.
        with contextlib.suppress(h11.RemoteProtocolError):
            if self.conn.their_state is h11.SEND_BODY:
                return isinstance(self.conn.next_event(), h11.EndOfMessage)
        return self.conn.their_state is h11.DONE
