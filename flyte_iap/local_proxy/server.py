"""The listener: local HTTP/1.1 and HTTP/2 (prior knowledge) clients in, one IAP origin out.

See :mod:`flyte_iap.local_proxy` for what it does and why it is built this way.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hmac
import http
import ipaddress
import ssl
import threading
import time
import urllib.parse
from collections.abc import Callable
from typing import Any

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h11

from flyte_iap.errors import ConfigurationError, FlyteIapError, LoginRequiredError, TransportError
from flyte_iap.local_proxy import oauth_metadata
from flyte_iap.local_proxy._h2peer import READ_SIZE, H2Peer, Headers, Queue, StreamGone, end_to_end
from flyte_iap.local_proxy.tokens import TokenSource
from flyte_iap.local_proxy.upstream import Upstream, UpstreamConnection

__all__ = ["SECRET_HEADER", "LocalProxy", "parse_endpoint"]

#: Where a client may send the per-session secret (or as proxy-authorization, Bearer or Basic password).
SECRET_HEADER = "x-flyte-iap-proxy-secret"
_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
_MAX_HEAD = 64 * 1024
_LOOPBACK_NAMES = {"localhost", "localhost.", "ip6-localhost"}
_HINT_INTERVAL = 60.0
#: HTTP status of the proxy's own answers -> the gRPC status a gRPC client gets instead.
_GRPC_STATUS = {400: 13, 403: 7, 405: 12, 407: 16, 502: 14, 503: 14}

Log = Callable[[str], None]


def parse_endpoint(endpoint: str) -> tuple[str, int]:
    """``https://host[:port]`` (also ``dns:///host[:port]`` or ``host[:port]``, as in Flyte configs).

    Returns:
        The host and port (443 unless given).

    Raises:
        ConfigurationError: not an https origin (another scheme, a path, credentials, no host).
    """
    value = endpoint.strip()
    if value.startswith("dns:///"):
        value = "https://" + value[len("dns:///") :]
    elif "://" not in value:
        value = "https://" + value
    hint = "pass the IAP front door as https://flyte.example.com (the endpoint without a path)"
    try:
        parts = urllib.parse.urlsplit(value)
        port = parts.port or 443
    except ValueError:
        raise ConfigurationError(f"--endpoint {endpoint!r} is not a URL", hint) from None
    if parts.scheme != "https":
        raise ConfigurationError(f"--endpoint {endpoint!r} is not https", "IAP serves only HTTPS; " + hint)
    if not parts.hostname or parts.username or parts.password or parts.path not in ("", "/") or parts.query:
        raise ConfigurationError(f"--endpoint {endpoint!r} is not an origin", hint)
    return parts.hostname, port


def _is_loopback(host: str) -> bool:
    host = host.strip("[]").lower()
    if host in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class LocalProxy:
    """A local reverse proxy to ``endpoint`` that adds ``proxy-authorization: Bearer <ID token>``.

    Args:
        endpoint: the IAP front door, ``https://flyte.example.com``.
        tokens: where the ID token comes from.
        host: the address to listen on; loopback unless ``allow_remote``.
        port: 0 for an ephemeral port.
        allow_remote: permit a non-loopback ``host`` (then ``secret`` is required).
        secret: when set, requests must carry it (see :data:`SECRET_HEADER`), else get 407.
        ca_cert: a PEM file of CAs that sign the endpoint's certificate (default: the system's).
        max_connections: client connections served at once; more are closed at once.
        max_streams: concurrent requests per HTTP/2 client connection.
        log: where hints go (one line each, never a token); default: nowhere.
        connect_host: connect here instead of resolving the endpoint's host (tests).
    """

    def __init__(
        self,
        endpoint: str,
        tokens: TokenSource,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        allow_remote: bool = False,
        secret: str | None = None,
        ca_cert: str | None = None,
        max_connections: int = 256,
        max_streams: int = 128,
        log: Log | None = None,
        connect_host: str | None = None,
    ) -> None:
        self.endpoint_host, self.endpoint_port = parse_endpoint(endpoint)
        default_port = self.endpoint_port == 443
        self.authority = self.endpoint_host if default_port else f"{self.endpoint_host}:{self.endpoint_port}"
        self.endpoint = "https://" + self.authority
        if not _is_loopback(host) and not allow_remote:
            raise ConfigurationError(
                f"--bind {host} is not a loopback address",
                "anyone who reaches it acts as you; "
                "add --allow-remote (with --require-secret) if you mean it",
            )
        if allow_remote and not _is_loopback(host) and not secret:
            raise ConfigurationError(
                f"--bind {host} with --allow-remote needs a secret",
                "add --require-secret so only clients that know it can use your identity",
            )
        self.tokens = tokens
        self.host = host
        self.port = port
        self.allow_remote = allow_remote
        self.secret = secret
        self.max_connections = max_connections
        self.max_streams = max_streams
        self._log = log or (lambda message: None)
        try:
            context = ssl.create_default_context(cafile=ca_cert)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigurationError(
                f"cannot read --ca-cert {ca_cert}: {exc}", "pass a PEM file of CA certificates"
            ) from None
        self.upstream = Upstream(self.endpoint_host, self.endpoint_port, context, connect_host=connect_host)
        self._server: asyncio.AbstractServer | None = None
        self._sessions: set[asyncio.Task[None]] = set()
        self._said: dict[str, float] = {}
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        #: requests forwarded, and the proxy's own refusals by status, for tests and benchmarks
        self.forwarded = 0
        self.refused: dict[int, int] = {}

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT``: what clients use instead of the endpoint."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    # -- lifecycle (asyncio) ---------------------------------------------------------------------------
    async def start(self) -> None:
        """Listen; :attr:`port` is then the port bound."""
        self._server = await asyncio.start_server(self._on_connection, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Stop listening, end every client connection (HTTP/2 clients get GOAWAY) and the upstream ones."""
        if self._server is not None:
            self._server.close()
        for task in list(self._sessions):
            task.cancel()
        await asyncio.gather(*self._sessions, return_exceptions=True)
        self.upstream.close()
        self._server = None

    # -- lifecycle (a background thread, for tests, notebooks and benchmarks) --------------------------
    def start_in_thread(self) -> LocalProxy:
        """Run the proxy on an event loop in a daemon thread; returns self once it listens."""
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                loop.run_until_complete(self.start())
            except BaseException as exc:
                failure.append(exc)
                ready.set()
                return
            ready.set()
            try:
                loop.run_forever()
            finally:
                loop.run_until_complete(self.stop())
                loop.close()

        self._thread = threading.Thread(target=run, name="flyte-iap-proxy", daemon=True)
        self._thread.start()
        ready.wait(30)
        if failure:
            raise failure[0]
        return self

    def stop_thread(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is not None and thread is not None:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(30)
        self._loop = self._thread = None

    def __enter__(self) -> LocalProxy:
        return self.start_in_thread()

    def __exit__(self, *exc: object) -> None:
        self.stop_thread()

    # -- connections ----------------------------------------------------------------------------------
    async def _on_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is None or len(self._sessions) >= self.max_connections:
            self._say("connections", f"more than {self.max_connections} client connections: closing new ones")
            writer.close()
            return
        self._sessions.add(task)
        try:
            first = b""
            while len(first) < len(_PREFACE) and _PREFACE.startswith(first):
                chunk = await reader.read(len(_PREFACE) - len(first))
                if not chunk:
                    break
                first += chunk
            if not first:
                return
            if first == _PREFACE:
                await _H2Session(self, reader, writer, first).run()
            else:
                await _H1Session(self, reader, writer, first).run()
        except (ConnectionError, asyncio.IncompleteReadError, StreamGone):
            pass
        except asyncio.CancelledError:
            pass  # the proxy is stopping
        finally:
            self._sessions.discard(task)
            with contextlib.suppress(Exception):
                writer.close()

    # -- policy ---------------------------------------------------------------------------------------
    def refusal(
        self, method: str, target: str, authority: str, headers: Headers
    ) -> tuple[int, str, Headers] | None:
        """Why a request must not be forwarded, as (status, message, extra headers), or None."""
        if method == "CONNECT":
            return 405, "flyte-iap proxy is a reverse proxy for one endpoint: CONNECT is refused", []
        if target.startswith(("http://", "https://")):
            host = urllib.parse.urlsplit(target).hostname or ""
            if host.lower() != self.endpoint_host.lower() and not self._own_host(host):
                return 403, f"flyte-iap proxy forwards only to {self.endpoint}, not to {host}", []
        elif not target.startswith("/"):
            return 400, f"request target {target[:100]!r} is not a path", []
        # A browser page on another site must not use the person's identity: DNS rebinding sends a
        # foreign Host, cross-site requests carry a foreign Origin or Sec-Fetch-Site.
        host = urllib.parse.urlsplit("//" + authority).hostname or "" if authority else ""
        if authority and not self._own_host(host):
            return 403, f"flyte-iap proxy does not serve host {authority[:100]!r}", []
        origin = _get(headers, b"origin")
        if origin and origin != b"null":
            origin_host = urllib.parse.urlsplit(origin.decode("latin-1")).hostname or ""
            if not self._own_host(origin_host):
                return 403, "flyte-iap proxy refuses cross-site requests from browsers", []
        if (_get(headers, b"sec-fetch-site") or b"").lower() == b"cross-site":
            return 403, "flyte-iap proxy refuses cross-site requests from browsers", []
        if self.secret is not None and not self._has_secret(headers):
            return (
                407,
                "flyte-iap proxy needs its session secret",
                [(b"proxy-authenticate", b'Basic realm="flyte-iap proxy"')],
            )
        return None

    def _own_host(self, host: str) -> bool:
        if self.allow_remote and not _is_loopback(self.host):
            return True  # names the machine goes by are not known; the secret guards it
        return _is_loopback(host) or host.strip("[]").lower() == self.host.lower()

    def _has_secret(self, headers: Headers) -> bool:
        assert self.secret is not None
        expected = self.secret.encode()
        candidates = []
        for name, value in headers:
            if name == SECRET_HEADER.encode():
                candidates.append(value.strip())
            elif name == b"proxy-authorization":
                scheme, _, rest = value.strip().partition(b" ")
                if scheme.lower() == b"bearer":
                    candidates.append(rest.strip())
                elif scheme.lower() == b"basic":
                    with contextlib.suppress(binascii.Error, ValueError):
                        candidates.append(base64.b64decode(rest.strip(), validate=True).partition(b":")[2])
        return any(hmac.compare_digest(c, expected) for c in candidates)

    def upstream_headers(self, method: str, path: str, headers: Headers, token: str) -> Headers:
        """The HTTP/2 request IAP gets: the endpoint as authority, our token, the client's own headers."""
        return [
            (b":method", method.encode()),
            (b":scheme", b"https"),
            (b":authority", self.authority.encode()),
            (b":path", path.encode()),
            *end_to_end(headers, drop=_CONSUMED),
            (b"proxy-authorization", b"Bearer " + token.encode()),
        ]

    async def begin(
        self, method: str, path: str, headers: Headers, responses: Queue, *, no_body: bool = False
    ) -> tuple[UpstreamConnection, int, str] | tuple[int, str]:
        """Get the token and open the upstream stream; (status, message) when either fails."""
        try:
            token = await self.tokens.get()
        except LoginRequiredError as exc:
            self._say("login", f"error: {exc.message}\nhint: {exc.hint}")
            return 503, f"flyte-iap proxy is not signed in: {exc.hint}"
        except FlyteIapError as exc:
            self._say("token:" + exc.message, f"error: {exc.message}\nhint: {exc.hint}")
            return 503, f"flyte-iap proxy cannot get an ID token: {exc.message}"
        try:
            connection, stream_id = await self.upstream.open_stream(
                self.upstream_headers(method, path, headers, token), responses, end_stream=no_body
            )
        except TransportError as exc:
            self._say("upstream:" + exc.message, f"error: {exc.message}\nhint: {exc.hint}")
            return 502, f"flyte-iap proxy: {exc.message}"
        self.forwarded += 1
        return connection, stream_id, token

    def watch(self, status: int, headers: Headers, token: str) -> _IapAnswer | None:
        """Something to feed the body of an answer IAP itself generated (a 401 or 403), else None."""
        if status in (401, 403) and _get(headers, b"x-goog-iap-generated-response") == b"true":
            return _IapAnswer(self, status, token)
        return None

    def note_refusal(self, status: int) -> None:
        self.refused[status] = self.refused.get(status, 0) + 1

    def _say(self, key: str, message: str) -> None:
        """Log a hint, once per key per minute: a failing client retries many times a second."""
        now = time.monotonic()
        if now - self._said.get(key, -_HINT_INTERVAL) >= _HINT_INTERVAL:
            self._said[key] = now
            self._log(message)

    def iap_refused(self, status: int, message: str, token: str) -> None:
        text = " ".join(message.split())[:300]
        if status == 403:
            who = self.tokens.email or "the signed-in account"
            self._say(
                "403",
                f"IAP: access denied for {who} (403: {text})\n"
                "hint: grant it roles/iap.httpsResourceAccessor on the backend service (or the project), "
                "or sign in as another account",
            )
        elif "audience" in text:
            self._say(
                "401-audience",
                f"IAP: wrong audience (401: {text})\n"
                "hint: --audience must be the OAuth client ID of this IAP app (the expected value above)",
            )
        elif "expired" in text.lower():
            self.tokens.reject(token)
            self._say(
                "401-expired",
                f"IAP: the token expired by IAP's clock (401: {text}); the next request gets a new one\n"
                "hint: if this repeats, check this machine's clock (NTP)",
            )
        else:
            self._say(
                "401:" + text,
                f"IAP refused the token (401: {text})\n"
                "hint: check `flyte-iap doctor --endpoint ... --audience ...`",
            )


#: Up to this many bytes of DATA waiting on one stream are forwarded in one go.
_COALESCE = 256 * 1024
#: Request headers the proxy consumes: its secret, and what HTTP/2 forbids or the proxy sets itself.
_CONSUMED = frozenset({SECRET_HEADER.encode(), b"expect"})


class _IapAnswer:
    """Collects the start of an IAP-generated body, then reports it as a hint."""

    _LIMIT = 2048

    def __init__(self, proxy: LocalProxy, status: int, token: str) -> None:
        self.proxy = proxy
        self.status = status
        self.token = token
        self.body = bytearray()

    async def report(self, responses: Queue) -> None:
        """Read ahead in the answer (IAP's are small) and log the hint before the client sees the answer.

        The events read are put back, so the answer still reaches the client whole and in order.
        """
        held: list[tuple[Any, ...]] = []
        try:
            while len(self.body) < self._LIMIT:
                item = await responses.get()
                held.append(item)
                if item[0] == "data":
                    self.body += item[1][: self._LIMIT - len(self.body)]
                elif item[0] != "trailers":
                    break
        finally:
            responses.unget(held)
        self.proxy.iap_refused(self.status, self.body.decode("utf-8", "replace"), self.token)


def _get(headers: Headers, name: bytes) -> bytes | None:
    for key, value in headers:
        if key == name:
            return value
    return None


def _reason(status: int) -> bytes:
    """The standard reason phrase (HTTP/2 has none to pass on)."""
    try:
        return http.HTTPStatus(status).phrase.encode()
    except ValueError:
        return b""


def _status_of(headers: Headers) -> int:
    try:
        return int(_get(headers, b":status") or b"502")
    except ValueError:
        return 502


def _grpc_error(status: int, message: str) -> Headers:
    """A trailers-only gRPC answer for the proxy's own refusals: gRPC clients show the message."""
    return [
        (b":status", b"200"),
        (b"content-type", b"application/grpc"),
        (b"grpc-status", str(_GRPC_STATUS.get(status, 2)).encode()),
        (b"grpc-message", urllib.parse.quote(message, safe=" :/,.'()@=-_").encode()),
    ]


# -------------------------------------------------------------------------------------------------
# HTTP/1.1 clients (REST, console, Connect)
# -------------------------------------------------------------------------------------------------


class _H1Session:
    def __init__(
        self, proxy: LocalProxy, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, initial: bytes
    ) -> None:
        self.proxy = proxy
        self.reader = reader
        self.writer = writer
        self.conn = h11.Connection(h11.SERVER, max_incomplete_event_size=_MAX_HEAD)
        self.conn.receive_data(initial)
        self._out = bytearray()

    async def run(self) -> None:
        while True:
            try:
                event = await self._next()
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
        refusal = proxy.refusal(method, target, (_get(headers, b"host") or b"").decode("latin-1"), headers)
        if refusal is not None:
            status, message, extra = refusal
            proxy.note_refusal(status)
            return await self._local(status, message, extra)
        if target.startswith(("http://", "https://")):
            parts = urllib.parse.urlsplit(target)
            target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        responses = Queue()
        # a request without a body ends with its HEADERS frame: one frame, one write less
        no_body = (
            _get(headers, b"content-length") in (None, b"0") and _get(headers, b"transfer-encoding") is None
        )
        begun = await proxy.begin(method, target, headers, responses, no_body=no_body)
        if len(begun) == 2:
            return await self._local(*begun, [])
        upstream, stream_id, token = begun
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
                    status = _status_of(args[0])
                    out = end_to_end(args[0])
                    answer = self.proxy.watch(status, args[0], token)
                    if answer is not None:
                        await answer.report(responses)
                    chunked = (
                        _get(out, b"content-length") is None
                        and self.conn.their_http_version == b"1.1"
                        and method != "HEAD"
                        and status not in (204, 304)
                    )
                    # what arrived with the headers goes out in the same write
                    response = h11.Response(status_code=status, headers=out, reason=_reason(status))
                    await self._send(response, more=responses.ready)
                    started = True
                elif kind == "data":
                    more, flow = responses.more_data(_COALESCE)
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
                        self.proxy._say("reset:" + str(reason), f"error: {reason}")
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
                h11.Response(status_code=status, headers=headers, reason=_reason(status)), more=True
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


# -------------------------------------------------------------------------------------------------
# HTTP/2 clients with prior knowledge (gRPC from flytekit, flytectl, grpcio)
# -------------------------------------------------------------------------------------------------


class _H2Session(H2Peer):
    def __init__(
        self, proxy: LocalProxy, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, initial: bytes
    ) -> None:
        config = h2.config.H2Configuration(client_side=False, header_encoding=None)
        super().__init__(h2.connection.H2Connection(config=config), writer)
        self.proxy = proxy
        self.reader = reader
        self.initial = initial
        self.requests: dict[int, Queue] = {}
        self.tasks: dict[int, asyncio.Task[None]] = {}

    async def run(self) -> None:
        self.conn.initiate_connection()
        self.advertise_windows(MAX_CONCURRENT_STREAMS=self.proxy.max_streams)
        self.flush_now()
        data = self.initial
        try:
            while True:
                if data:
                    try:
                        events = self.conn.receive_data(data)
                    except h2.exceptions.ProtocolError:
                        self.flush_now()
                        return
                    for event in events:
                        self._on_event(event)
                    self.flush_now()
                    await self.drain()
                data = await self.reader.read(READ_SIZE)
                if not data:
                    return
        finally:
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
            task.add_done_callback(lambda _, sid=event.stream_id: self.tasks.pop(sid, None))
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

    async def _stream(self, stream_id: int, headers: Headers, requests: Queue, no_body: bool) -> None:
        proxy = self.proxy
        method = (_get(headers, b":method") or b"").decode("latin-1")
        path = (_get(headers, b":path") or b"").decode("latin-1")
        authority = (_get(headers, b":authority") or _get(headers, b"host") or b"").decode("latin-1")
        grpc = (_get(headers, b"content-type") or b"").startswith(b"application/grpc")
        upstream: UpstreamConnection | None = None
        upstream_id = 0
        try:
            refusal = proxy.refusal(method, path, authority, headers)
            if refusal is not None:
                proxy.note_refusal(refusal[0])
                self._local(stream_id, *refusal, grpc=grpc)
                return
            responses = Queue()
            begun = await proxy.begin(method, path, headers, responses, no_body=no_body)
            if len(begun) == 2:
                self._local(stream_id, *begun, [], grpc=grpc)
                return
            upstream, upstream_id, token = begun
            pump = asyncio.ensure_future(
                self._pump_request(requests, upstream, upstream_id, stream_id)
                if not no_body
                else asyncio.sleep(0)
            )
            try:
                rewrite = grpc and path == oauth_metadata.METHOD
                await self._pump_response(stream_id, responses, upstream, upstream_id, token, grpc, rewrite)
            finally:
                if not pump.done():
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
                    more, flow = requests.more_data(_COALESCE)
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
                status = _status_of(args[0])
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
                more, flow = responses.more_data(_COALESCE)
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
                    self.proxy._say("reset:" + str(reason), f"error: {reason}")
                    self._local(stream_id, 502, f"flyte-iap proxy: {reason}", [], grpc=grpc)
                return

    def _local(self, stream_id: int, status: int, message: str, extra: Headers, *, grpc: bool) -> None:
        """The proxy's own answer on one stream (a gRPC status for gRPC clients)."""
        try:
            if grpc:
                self.send_headers(stream_id, _grpc_error(status, message), end_stream=True)
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
