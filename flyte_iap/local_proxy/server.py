"""The listener: local HTTP/1.1 and HTTP/2 (prior knowledge) clients in, one IAP origin out.

See :mod:`flyte_iap.local_proxy` for what it does and why it is built this way.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hmac
import ipaddress
import ssl
import threading
import time
import urllib.parse
from collections.abc import Callable
from typing import Any

from flyte_iap.errors import (
    ConfigurationError,
    FlyteIapError,
    LoginRequiredError,
    TransportError,
    printable,
)
from flyte_iap.local_proxy._h2peer import Headers, Queue, StreamGone, end_to_end
from flyte_iap.local_proxy._messages import get
from flyte_iap.local_proxy.http1 import H1Session
from flyte_iap.local_proxy.http2 import H2Session
from flyte_iap.local_proxy.tokens import TokenSource
from flyte_iap.local_proxy.upstream import Upstream, UpstreamConnection

__all__ = ["SECRET_HEADER", "LocalProxy", "parse_endpoint"]

#: Where a client may send the per-session secret (or as proxy-authorization, Bearer or Basic password).
SECRET_HEADER = "x-flyte-iap-proxy-secret"
_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
_LOOPBACK_NAMES = {"localhost", "localhost.", "ip6-localhost"}
_HINT_INTERVAL = 60.0
#: The largest request header list forwarded, counted as HPACK does (name + value + 32 per field): the
#: default limit of hpack's decoder (h2 servers); a server that refuses a header block mid-decoding must
#: close the whole connection (RFC 9113 4.3), failing every other request multiplexed on it.
MAX_HEADER_LIST = 64 * 1024

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


def _hostname(url: str) -> str | None:
    """The host a URL (or ``//`` + authority) names, "" for none, None when it does not parse."""
    try:
        return urllib.parse.urlsplit(url).hostname or ""
    except ValueError:  # "[abc": an unclosed IPv6 literal
        return None


def _is_loopback(host: str) -> bool:
    host = host.strip("[]").lower()
    if host in _LOOPBACK_NAMES or host == "127.0.0.1":  # the common answer, without parsing
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
        head_timeout: seconds a client connection may take to send the start of HTTP/2, each HTTP/1.1
            request head (idle keep-alive time included) or each HTTP/2 header block, and may stay
            with no HTTP/2 request open, before it is closed: a client that trickles bytes
            (slowloris) or idles must not hold one of ``max_connections`` forever.
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
        head_timeout: float = 60.0,
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
        self.head_timeout = head_timeout
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
            self.say("connections", f"more than {self.max_connections} client connections: closing new ones")
            writer.close()
            return
        self._sessions.add(task)
        try:
            first = b""
            async with asyncio.timeout(self.head_timeout):
                while len(first) < len(_PREFACE) and _PREFACE.startswith(first):
                    chunk = await reader.read(len(_PREFACE) - len(first))
                    if not chunk:
                        break
                    first += chunk
            if not first:
                return
            if first == _PREFACE:
                await H2Session(self, reader, writer, first).run()
            else:
                await H1Session(self, reader, writer, first).run()
        except (ConnectionError, asyncio.IncompleteReadError, StreamGone, TimeoutError):
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
            host = _hostname(target)
            if host is None:
                return 400, f"request target {target[:100]!r} is not a URL", []
            if host.lower() != self.endpoint_host.lower() and not self._own_host(host):
                return 403, f"flyte-iap proxy forwards only to {self.endpoint}, not to {host}", []
        elif not target.startswith("/"):
            return 400, f"request target {target[:100]!r} is not a path", []
        # A browser page on another site must not use the person's identity: DNS rebinding sends a
        # foreign Host, cross-site requests carry a foreign Origin or Sec-Fetch-Site.
        host = _hostname("//" + authority) if authority else ""
        if host is None or (authority and not self._own_host(host)):
            return 403, f"flyte-iap proxy does not serve host {authority[:100]!r}", []
        # "null" is the origin of a sandboxed frame or a cross-site redirect (RFC 6454 7.3): foreign too
        origin = get(headers, b"origin")
        if origin:
            origin_host = _hostname(origin.decode("latin-1"))
            if origin_host is None or not self._own_host(origin_host):
                return 403, "flyte-iap proxy refuses cross-site requests from browsers", []
        if (get(headers, b"sec-fetch-site") or b"").lower() == b"cross-site":
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
            self.say("login", f"error: {exc.message}\nhint: {exc.hint}")
            return 503, f"flyte-iap proxy is not signed in: {exc.hint}"
        except FlyteIapError as exc:
            self.say("token:" + exc.message, f"error: {exc.message}\nhint: {exc.hint}")
            return 503, f"flyte-iap proxy cannot get an ID token: {exc.message}"
        upstream_headers = self.upstream_headers(method, path, headers, token)
        size = sum(len(name) + len(value) + 32 for name, value in upstream_headers)
        if size > MAX_HEADER_LIST:
            # sent on, it would make the endpoint close the shared connection: every request on it fails
            self.note_refusal(431)
            return (
                431,
                f"flyte-iap proxy: request headers too large ({size} bytes, at most {MAX_HEADER_LIST})",
            )
        try:
            connection, stream_id = await self.upstream.open_stream(
                upstream_headers, responses, end_stream=no_body
            )
        except TransportError as exc:
            self.say("upstream:" + exc.message, f"error: {exc.message}\nhint: {exc.hint}")
            return 502, f"flyte-iap proxy: {exc.message}"
        self.forwarded += 1
        return connection, stream_id, token

    def watch(self, status: int, headers: Headers, token: str) -> _IapAnswer | None:
        """Something to feed the body of an answer IAP itself generated (a 401 or 403), else None."""
        if status in (401, 403) and get(headers, b"x-goog-iap-generated-response") == b"true":
            return _IapAnswer(self, status, token)
        return None

    def note_refusal(self, status: int) -> None:
        self.refused[status] = self.refused.get(status, 0) + 1

    def say(self, key: str, message: str) -> None:
        """Log a hint, once per key per minute: a failing client retries many times a second."""
        now = time.monotonic()
        if now - self._said.get(key, -_HINT_INTERVAL) >= _HINT_INTERVAL:
            self._said[key] = now
            self._log(message)

    def iap_refused(self, status: int, message: str, token: str) -> None:
        text = printable(" ".join(message.split()))  # the body is the endpoint's: no terminal escapes
        if status == 403:
            who = self.tokens.email or "the signed-in account"
            self.say(
                "403",
                f"IAP: access denied for {who} (403: {text})\n"
                "hint: grant it roles/iap.httpsResourceAccessor on the backend service (or the project), "
                "or sign in as another account",
            )
        elif "audience" in text:
            self.say(
                "401-audience",
                f"IAP: wrong audience (401: {text})\n"
                "hint: --audience must be the OAuth client ID of this IAP app (the expected value above)",
            )
        elif "expired" in text.lower():
            self.tokens.reject(token)
            self.say(
                "401-expired",
                f"IAP: the token expired by IAP's clock (401: {text}); the next request gets a new one\n"
                "hint: if this repeats, check this machine's clock (NTP)",
            )
        else:
            self.say(
                "401:" + text,
                f"IAP refused the token (401: {text})\n"
                "hint: check `flyte-iap doctor --endpoint ... --audience ...`",
            )


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
