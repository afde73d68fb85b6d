"""The browser half of Google's OAuth 2.0 flow for installed apps: PKCE, a checked state, a loopback server.

Example::

    from flyte_iap.browser_login import authorize

    grant = authorize("123-desktop.apps.googleusercontent.com", timeout=300)
    # grant.code, grant.redirect_uri and grant.code_verifier go to the token endpoint
    # (flyte_iap.user_tokens does that exchange).

What happens, following RFC 8252 and Google's guide for desktop apps:

1. A server starts on ``127.0.0.1`` (never ``0.0.0.0``), on an ephemeral port unless ``port`` is given;
   a port in use is a :class:`~flyte_iap.errors.LoginError` at once, not a hang.
2. A PKCE verifier (S256) and a random ``state`` are made, and the authorization URL (scopes
   ``openid email``, ``access_type=offline`` and ``prompt=consent`` so that Google returns a refresh
   token) is opened with :mod:`webbrowser`, which honours ``BROWSER``; or handed to ``opener``; or, with
   ``open_browser=False`` or no display, only shown through ``notify`` with the SSH port-forward hint.
3. The server answers requests until one carries the right ``state``. A redirect with another state
   (a stale tab, or a page trying to plant its own code) gets a 400 page and is otherwise ignored; a
   stray request (``/favicon.ico``) gets a 404. The right redirect gets a page saying the window may be
   closed, and the server stops.
4. With no right redirect within ``timeout`` seconds the flow ends with a :class:`LoginError`.

This is written on the standard library rather than google-auth-oauthlib's ``InstalledAppFlow``, whose
``run_local_server`` serves exactly one request (a favicon fetch or a wrong-state redirect ends the
login), shows its success page for any request including an error, prints the URL on stdout, and sends
the code exchange with no timeout through oauthlib, which refuses plain-http endpoints.
"""

from __future__ import annotations

import base64
import contextlib
import errno
import hashlib
import hmac
import html
import http.server
import logging
import os
import secrets
import socket
import socketserver
import subprocess
import sys
import threading
import time
import urllib.parse
import webbrowser
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from flyte_iap import endpoints
from flyte_iap.errors import LoginError, printable
from flyte_iap.idtoken import checked_seconds

_log = logging.getLogger(__name__)

DEFAULT_SCOPES = ("openid", "email")
DEFAULT_TIMEOUT = 300.0

#: Returns True if it showed the URL to the user (launched a browser), False otherwise.
Opener = Callable[[str], bool]
#: Receives a line meant for the person at the terminal.
Notify = Callable[[str], None]

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>flyte-iap</title>
<style>body{{font-family:system-ui,sans-serif;max-width:36em;margin:4em auto;color:#222}}</style>
</head><body><h1>{title}</h1><p>{text}</p></body></html>
"""

_CALLBACK_ERROR_HINTS = {
    "access_denied": "sign-in was declined or your account may not use this app; run the login again and "
    "click Allow, or ask an admin to add you to the OAuth consent screen's test users",
    "redirect_uri_mismatch": "the --client-id must be an OAuth client of type Desktop app; a Web "
    "application client only accepts its registered redirect URIs",
    "invalid_client": "the --client-id does not exist or was deleted; check APIs & Services > Credentials",
    "invalid_scope": "the OAuth consent screen does not allow the openid and email scopes",
}


@dataclass(frozen=True)
class AuthorizationGrant:
    """What the token endpoint needs to finish the login (all single use)."""

    code: str = field(repr=False)
    redirect_uri: str
    code_verifier: str = field(repr=False)


def make_code_verifier() -> str:
    """A new PKCE code verifier.

    Returns:
        64 random bytes, base64url: 86 characters (RFC 7636 allows 43 to 128).
    """
    return secrets.token_urlsafe(64)


def code_challenge(verifier: str) -> str:
    """The S256 code challenge of a PKCE code verifier.

    Args:
        verifier: from :func:`make_code_verifier`.

    Returns:
        base64url(SHA-256(verifier)), without padding.
    """
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def authorization_url(
    client_id: str,
    redirect_uri: str,
    state: str,
    verifier: str,
    scopes: Sequence[str] = DEFAULT_SCOPES,
    login_hint: str | None = None,
) -> str:
    """The URL of Google's consent page for this login.

    Args:
        client_id: the Desktop OAuth client ID.
        redirect_uri: the loopback URL Google sends the browser back to.
        state: the random value the redirect must carry back.
        verifier: the PKCE code verifier; the URL carries its S256 challenge.
        scopes: OAuth scopes.
        login_hint: an email address to preselect on Google's account chooser.

    Returns:
        :func:`flyte_iap.endpoints.auth_uri` with the query, asking for offline access and consent so
        that Google returns a refresh token.
    """
    params = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": redirect_uri,
        "scope": " ".join(scopes),
        "state": state,
        "code_challenge": code_challenge(verifier),
        "code_challenge_method": "S256",
        "access_type": "offline",
        # consent: Google returns a refresh token only when consent is given in this very flow.
        "prompt": "consent select_account",
    }
    if login_hint:
        params["login_hint"] = login_hint
    return f"{endpoints.auth_uri()}?{urllib.parse.urlencode(params)}"


def default_opener(url: str) -> bool:
    """Open ``url`` with :mod:`webbrowser` (``BROWSER`` is honoured).

    On Linux without a display and without ``BROWSER``, nothing is launched: :mod:`webbrowser` would fall
    back to a text browser (lynx, w3m) that takes over the terminal, and Google's sign-in does not work
    there. Whatever the launched command prints goes to stderr: stdout is the token's.

    Args:
        url: the page to show.

    Returns:
        Whether a browser was launched.
    """
    if (
        not os.environ.get("BROWSER")
        and sys.platform.startswith("linux")
        and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
    ):
        return False
    try:
        with _browsers_write_to_stderr():
            return webbrowser.open(url, new=1)
    except webbrowser.Error:
        return False


class _StderrSubprocess:
    """:mod:`subprocess` as :mod:`webbrowser` sees it while it launches: a child's stdout is our stderr."""

    def __init__(self, stdout: int) -> None:
        self._stdout = stdout

    def __getattr__(self, name: str) -> Any:
        return getattr(subprocess, name)

    def Popen(self, *args: Any, **kwargs: Any) -> subprocess.Popen[Any]:
        if kwargs.get("stdout") is None:
            kwargs["stdout"] = self._stdout
        return subprocess.Popen(*args, **kwargs)


@contextlib.contextmanager
def _browsers_write_to_stderr() -> Iterator[None]:
    # A browser command inherits stdout (xdg-open and BROWSER commands do; Chrome then prints "Opening in
    # existing browser session."), and for `flyte-iap token` stdout is the token: `$(flyte-iap token)`
    # in a terminal would capture the browser's chatter with it.
    try:
        stdout = sys.stderr.fileno()
    except (AttributeError, ValueError, OSError):
        stdout = subprocess.DEVNULL
    previous = webbrowser.subprocess  # type: ignore[attr-defined]
    webbrowser.subprocess = _StderrSubprocess(stdout)  # type: ignore[attr-defined]
    try:
        yield
    finally:
        webbrowser.subprocess = previous  # type: ignore[attr-defined]


def _log_notify(message: str) -> None:
    _log.warning("%s", message)


class _Callback:
    """What the loopback handler saw; shared between the server thread and the caller."""

    def __init__(self, state: str, path: str) -> None:
        self.state = state
        self.path = path
        self.code: str | None = None
        self.error: str | None = None
        self.error_description: str | None = None
        self.wrong_state = 0
        self.done = threading.Event()
        #: Held while a redirect is checked and recorded: connections are served on several threads.
        self.lock = threading.Lock()


def _make_handler(callback: _Callback) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        # A connection that sends nothing must not block the server (each read waits this long at most).
        timeout = 5
        server_version = "flyte-iap"
        sys_version = ""

        def do_GET(self) -> None:
            with callback.lock:
                self._answer()

        def _answer(self) -> None:
            url = urllib.parse.urlsplit(self.path)
            if url.path != callback.path or callback.done.is_set():
                self._page(404, "Not found", "This is flyte-iap's sign-in listener.")
                return
            query = urllib.parse.parse_qs(url.query)
            state = query.get("state", [""])[0]
            if not hmac.compare_digest(state.encode(), callback.state.encode()):
                callback.wrong_state += 1
                self._page(
                    400,
                    "Sign-in link not recognised",
                    "This redirect belongs to another or an older sign-in, so it was ignored. "
                    "Use the link printed by the flyte-iap command that is waiting in your terminal.",
                )
                return
            if "code" in query and query["code"][0]:
                callback.code = query["code"][0]
                self._page(
                    200,
                    "Signed in",
                    "flyte-iap received your Google sign-in. You may close this window and return to the "
                    "terminal.",
                )
            else:
                callback.error = query.get("error", ["no_code"])[0]
                callback.error_description = query.get("error_description", [""])[0] or None
                self._page(
                    200,
                    "Sign-in did not complete",
                    f"Google answered {html.escape(callback.error)}. You may close this window; the terminal "
                    "says what to do next.",
                )
            callback.done.set()

        def _page(self, status: int, title: str, text: str) -> None:
            body = _PAGE.format(title=html.escape(title), text=text).encode()
            self.send_response(status)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            # The default logs every request line on stderr, and the line carries the code.
            pass

    return Handler


class _LoopbackServer(socketserver.ThreadingMixIn, http.server.HTTPServer):
    """The redirect listener: each connection on a thread of its own, so a stalled one delays nothing.

    A connection that sends nothing, or one byte every few seconds, holds its own thread only; the
    browser's redirect is answered as soon as it arrives. Connections beyond :attr:`max_connections`
    are closed at once, and every connection still open is shut down when the login ends.
    """

    # On Linux SO_REUSEADDR only lets a fixed --port be reused while the last login's connection sits in
    # TIME_WAIT; a port someone listens on is still refused. Elsewhere it could let two listeners share it.
    allow_reuse_address = sys.platform.startswith("linux")
    daemon_threads = True
    block_on_close = False
    max_connections = 32

    def __init__(self, address: tuple[str, int], handler: type[http.server.BaseHTTPRequestHandler]) -> None:
        self._open: set[Any] = set()
        self._open_lock = threading.Lock()
        super().__init__(address, handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind does a reverse DNS lookup (getfqdn) that can stall without a network.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = "127.0.0.1", self.server_address[1]

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._open_lock:
            full = len(self._open) >= self.max_connections
            if not full:
                self._open.add(request)
        if full:
            socketserver.TCPServer.shutdown_request(self, request)
            return
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._open_lock:
            self._open.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        """Shut down every connection still open (their threads then end)."""
        with self._open_lock:
            still_open = list(self._open)
        for request in still_open:
            with contextlib.suppress(OSError):
                request.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: object, client_address: object) -> None:
        # A browser closing a connection early is not worth a traceback on the user's terminal.
        _log.debug("loopback request from %s failed", client_address, exc_info=True)


def _bind(port: int) -> _LoopbackServer:
    try:
        return _LoopbackServer(("127.0.0.1", port), http.server.BaseHTTPRequestHandler)
    except OSError as exc:
        if exc.errno in (errno.EADDRINUSE, getattr(errno, "WSAEADDRINUSE", -1)):
            raise LoginError(
                f"port {port} on 127.0.0.1 is already in use",
                "choose another --port, or leave --port out to get a free one",
            ) from None
        if exc.errno in (errno.EACCES, errno.EPERM):
            raise LoginError(
                f"not allowed to listen on port {port} of 127.0.0.1",
                "use a port above 1023, or leave --port out to get a free one",
            ) from None
        raise LoginError(
            f"cannot listen on 127.0.0.1:{port}: {exc.strerror}", "leave --port out to get a free one"
        ) from None


def _forward_hint(port: int, *, port_chosen: bool) -> str:
    """The SSH port-forward line; ``port_chosen`` when the caller fixed the port (nothing to suggest)."""
    hint = (
        f"On a remote machine over SSH, first run on your own computer: ssh -N -L {port}:127.0.0.1:{port} "
        "<this host>"
    )
    # An ephemeral port changes on every login, and with it the forward to set up.
    return hint if port_chosen else hint + "  (use --port to keep the same port between logins)"


def authorize(
    client_id: str,
    *,
    scopes: Sequence[str] = DEFAULT_SCOPES,
    port: int = 0,
    timeout: float = DEFAULT_TIMEOUT,
    open_browser: bool = True,
    opener: Opener | None = None,
    notify: Notify | None = None,
    login_hint: str | None = None,
) -> AuthorizationGrant:
    """Run the browser step of the login and return the authorization code.

    Args:
        client_id: the Desktop OAuth client ID.
        scopes: OAuth scopes; IAP needs ``openid email``.
        port: loopback port, 0 for an ephemeral one.
        timeout: seconds to wait for the browser to come back.
        open_browser: False prints the URL (through ``notify``) instead of launching a browser.
        opener: launches a browser on a URL and says whether it did; :func:`default_opener` by default.
        notify: shows one line to the user; a ``flyte_iap.browser_login`` warning log by default.
        login_hint: an email address to preselect on Google's account chooser.

    Returns:
        The :class:`AuthorizationGrant` to exchange at the token endpoint.

    Raises:
        LoginError: port in use, timeout (with a note when wrong-state redirects arrived), or Google
            redirected back with an error such as ``access_denied``.
    """
    timeout = checked_seconds(timeout, "--timeout", minimum=1)
    notify = notify or _log_notify
    port_chosen = port != 0
    server = _bind(port)
    port = server.server_address[1]
    redirect_uri = f"http://127.0.0.1:{port}/"
    state = secrets.token_urlsafe(32)
    verifier = make_code_verifier()
    callback = _Callback(state, "/")
    server.RequestHandlerClass = _make_handler(callback)
    url = authorization_url(client_id, redirect_uri, state, verifier, scopes, login_hint)

    def show_url(reason: str) -> None:
        notify(f"{reason} open this URL in a browser to sign in with Google:\n\n    {url}\n")
        notify(_forward_hint(port, port_chosen=port_chosen))

    if open_browser:
        notify(f"Opening a browser to sign in with Google (waiting up to {timeout:.0f} s)...")

        def launch() -> None:
            try:
                launched = (opener or default_opener)(url)
            except Exception:  # a broken opener must not end the login: the URL is still shown
                _log.debug("browser opener failed", exc_info=True)
                launched = False
            if not launched and not callback.done.is_set():
                show_url("Could not open a browser;")

        # webbrowser may wait for the browser command to exit, which needs this server answering.
        threading.Thread(target=launch, name="flyte-iap-browser", daemon=True).start()
    else:
        show_url(f"Waiting up to {timeout:.0f} s:")

    deadline = time.monotonic() + timeout
    try:
        with server:
            while not callback.done.is_set():
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                server.timeout = min(left, 0.5)
                server.handle_request()
    finally:
        server.close_connections()
        with contextlib.suppress(OSError):
            server.server_close()

    if callback.code:
        return AuthorizationGrant(callback.code, redirect_uri, verifier)
    if callback.error:
        # Both came in the redirect's query string: anyone who can reach the loopback port writes them.
        detail = f" ({printable(callback.error_description)})" if callback.error_description else ""
        raise LoginError(
            f"Google sign-in failed: {printable(callback.error, 80)}{detail}",
            _CALLBACK_ERROR_HINTS.get(callback.error, "run the login again"),
        )
    if callback.wrong_state:
        raise LoginError(
            f"sign-in timed out after {timeout:.0f} s; {callback.wrong_state} redirect(s) with a state that "
            "does not match this login were rejected",
            "a stale browser tab or another program answered; run the login again and use only the newest "
            "link",
        )
    raise LoginError(
        f"sign-in timed out after {timeout:.0f} s without the browser coming back",
        "run the login again and finish it in the browser (use --timeout for more time); if the page "
        "showed an error such as redirect_uri_mismatch, use an OAuth client of type Desktop app",
    )
