"""A ``requests`` session whose timeout is a total deadline per request, and whose answers are size-capped.

Example::

    from flyte_iap import _deadline_http, endpoints

    session = _deadline_http.session(max_bytes=1 << 20)
    # connect, send, headers and the whole body within 10 s, else DeadlineExceeded
    response = session.get(endpoints.token_uri(), timeout=10)

requests (and urllib3 under it) only has per-operation timeouts: a server that sends one byte every few
seconds keeps a read alive for ever. Here a numeric ``timeout`` is the deadline of the whole exchange, as
Go's ``http.Client.Timeout`` is for ``gh``. A timer armed for each request shuts down the sockets the
request's connections use when the deadline passes, which ends any blocked connect, send or receive at
once; the body is read here, one receive at a time, up to ``max_bytes``. Proxies (``HTTPS_PROXY``) and
TLS work as they do in requests, since only the connection classes of urllib3's pools are wrapped.

Imported by :mod:`flyte_iap.transport` only when a request is made (requests and urllib3 are heavy).
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from typing import Any

import requests
import requests.adapters
import requests.exceptions
import urllib3.connection
import urllib3.connectionpool


class DeadlineExceeded(requests.exceptions.Timeout):
    """The whole exchange did not finish within its deadline."""


class AnswerTooLarge(requests.exceptions.RequestException):
    """The body was larger than the session's ``max_bytes``."""


class _Watch:
    """The sockets of one request, shut down together when its timer fires."""

    def __init__(self, seconds: float) -> None:
        self.fired = False
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._timer = threading.Timer(seconds, self._fire)
        self._timer.daemon = True
        self._timer.start()

    def add(self, sock: socket.socket | None) -> None:
        if sock is None:
            return
        with self._lock:
            self._sockets.append(sock)
            fired = self.fired
        if fired:
            _shutdown(sock)

    def _fire(self) -> None:
        with self._lock:
            self.fired = True
            sockets = list(self._sockets)
        for sock in sockets:
            _shutdown(sock)

    def cancel(self) -> None:
        self._timer.cancel()


def _shutdown(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)


# The watch of the request this thread is sending: connections register their sockets with it.
_current = threading.local()


class _Registering:
    """Mixed into urllib3's connections: every socket connected or reused joins the current watch."""

    sock: Any

    def _new_conn(self) -> Any:
        sock = super()._new_conn()  # type: ignore[misc]
        _join(sock)  # before the TLS handshake, which a slow server could stretch too
        return sock

    def connect(self) -> None:
        super().connect()  # type: ignore[misc]
        _join(self.sock)

    def request(self, *args: Any, **kwargs: Any) -> None:
        _join(self.sock)  # a kept-alive connection is reused without connect()
        super().request(*args, **kwargs)  # type: ignore[misc]


def _join(sock: Any) -> None:
    watch = getattr(_current, "watch", None)
    if watch is not None and isinstance(sock, socket.socket):
        watch.add(sock)


class _HTTPConnection(_Registering, urllib3.connection.HTTPConnection):
    pass


class _HTTPSConnection(_Registering, urllib3.connection.HTTPSConnection):
    pass


class _HTTPPool(urllib3.connectionpool.HTTPConnectionPool):
    ConnectionCls = _HTTPConnection


class _HTTPSPool(urllib3.connectionpool.HTTPSConnectionPool):
    ConnectionCls = _HTTPSConnection


_POOLS = {"http": _HTTPPool, "https": _HTTPSPool}


class DeadlineAdapter(requests.adapters.HTTPAdapter):
    """An ``HTTPAdapter`` whose numeric ``timeout`` bounds the whole exchange and whose bodies are capped."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        super().__init__()

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = dict(_POOLS)

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        manager.pool_classes_by_scheme = dict(_POOLS)
        return manager

    def send(
        self, request: requests.PreparedRequest, stream: bool = False, timeout: Any = None, **kwargs: Any
    ) -> Any:
        if not isinstance(timeout, int | float) or isinstance(timeout, bool) or timeout <= 0:
            return super().send(request, stream=stream, timeout=timeout, **kwargs)
        deadline = time.monotonic() + timeout
        watch = _Watch(timeout)
        _current.watch = watch
        try:
            # The sockets' own timeouts run a little longer: the watch ends the exchange first, and they
            # only stand in should a connection escape it.
            slack = timeout + 0.5
            response = super().send(request, stream=True, timeout=(slack, slack), **kwargs)
            body = bytearray()
            while True:
                if time.monotonic() > deadline:
                    raise DeadlineExceeded(f"no complete answer within {timeout:g} s", request=request)
                chunk = _read_some(response.raw)
                if not chunk:
                    break
                body += chunk
                if len(body) > self.max_bytes:
                    response.close()
                    raise AnswerTooLarge(f"answer larger than {self.max_bytes} bytes", request=request)
            response._content = bytes(body)
            response._content_consumed = True
            response.close()
        except (AnswerTooLarge, DeadlineExceeded):
            raise
        except Exception as exc:
            # urllib3 and http.client raise their own types when a socket is shut down under them.
            if watch.fired:
                raise DeadlineExceeded(f"no complete answer within {timeout:g} s", request=request) from None
            if isinstance(exc, requests.exceptions.RequestException):
                raise
            raise requests.exceptions.ConnectionError(
                f"{type(exc).__name__}: {exc}", request=request
            ) from exc
        finally:
            watch.cancel()
            _current.watch = None
        if watch.fired:
            raise DeadlineExceeded(f"no complete answer within {timeout:g} s", request=request)
        return response


def _read_some(raw: Any) -> bytes:
    """What one receive brings (urllib3 2's ``read1``), so the deadline is checked between receives."""
    if hasattr(raw, "read1"):
        return bytes(raw.read1(65536, decode_content=True))
    return bytes(raw.read(65536, decode_content=True))  # urllib3 1.x: the timer still ends a slow read


def session(max_bytes: int) -> requests.Session:
    """A ``requests.Session`` using :class:`DeadlineAdapter` for http and https (proxies as usual).

    Args:
        max_bytes: the largest body accepted.

    Returns:
        The session.
    """
    result = requests.Session()
    adapter = DeadlineAdapter(max_bytes)
    result.mount("http://", adapter)
    result.mount("https://", adapter)
    return result
