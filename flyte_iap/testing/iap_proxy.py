"""A local Identity-Aware Proxy: checks Google ID tokens the way IAP does, for HTTP/1.1 and gRPC.

Example::

    from flyte_iap.testing import FakeFlyteAdmin, FakeGoogle, IapProxy

    with (
        FakeGoogle() as google,
        FakeFlyteAdmin() as admin,
        IapProxy(
            "123-iap.apps.googleusercontent.com",
            certs_url=google.certs_url,
            allowed=[google.user_email],
            http_upstream=admin.http_url,
            grpc_upstream=admin.grpc_target,
        ) as iap,
    ):
        iap.url  # "http://127.0.0.1:PORT": HTTP/1.1 and h2c gRPC on the same port, like :443
        iap.endpoint  # "127.0.0.1:PORT" for admin.endpoint (dns:///...)
        ...
        iap.passed["grpc"], iap.rejected["http"], iap.rejections[-1].message

What it enforces, from Google's programmatic-authentication page
(https://docs.cloud.google.com/iap/docs/authentication-howto) and custom-OAuth page
(https://docs.cloud.google.com/iap/docs/custom-oauth-configuration):

* Credentials come as ``Bearer`` tokens in ``Proxy-Authorization`` or ``Authorization``. IAP looks at
  ``Proxy-Authorization`` first; when that holds no valid credential it goes on to ``Authorization``
  (and ``Proxy-Authorization`` is stripped either way). A request failing both gets the answer for
  ``Proxy-Authorization`` when that header was sent.
* A Google ID token passes when its signature verifies against Google's certificates (``certs_url``,
  fetched with the standard library, cached, refetched for an unknown ``kid``), ``iss`` is Google,
  ``exp`` is in the future (by :attr:`IapProxy.clock`) and ``aud`` is an accepted audience
  (:attr:`IapProxy.accepted_audiences`): with a custom OAuth client (``google_managed=False``) the app's
  client ID and every client on the programmatic-client allowlist (``programmatic_clients``); with the
  Google-managed client only the allowlisted clients, since the managed client itself gives no
  programmatic access. A token for an allowlisted client must also have been
  obtained by an allowlisted client (``azp``); Google documents the allowlist but not how IAP reads
  ``azp``: that rule is this emulator's reading.
* A service-account signed JWT (``iss`` = ``sub`` = a service account's e-mail, self-signed with a key
  file's key or signed by IAM Credentials ``signJwt``) passes when its RS256 signature verifies against
  the account's public keys (``service_account_keys_url``, Google's ``.../robot/v1/metadata/x509/EMAIL``),
  ``aud`` is the app's URL (:attr:`IapProxy.public_url`) for the path requested or ``URL/*``, ``exp`` is
  in the future and at most an hour after ``iat``. Google's sample sets ``exp = iat + 3600``; the page's
  exact limit and skew are not in what we could read, so one hour is the emulator's limit.
* The e-mail (``email`` claim, or the service account) must be allowed (``roles/iap.httpsResourceAccessor``:
  ``allowed`` takes e-mails, ``user:``/``serviceAccount:`` members, ``domain:example.com`` or
  ``allAuthenticatedUsers``).
* Otherwise the upstream is never contacted. The answer is IAP's own: ``401`` (``403`` for a valid
  credential whose e-mail has no access), ``content-type: text/html; charset=UTF-8``,
  ``x-goog-iap-generated-response: true`` and IAP's message as the body, e.g. ``Invalid IAP
  credentials: empty token``. A request with no credentials at all that looks like a browser's (``GET``
  or ``HEAD``, ``Accept`` naming ``text/html``, not gRPC, no ``X-Requested-With``) gets instead IAP's
  ``302`` to Google's sign-in page with the app's ``client_id`` (and ``x-goog-iap-generated-response:
  true``): what a browser sees, and what audience discovery reads. Google does not document exactly which
  requests IAP treats as a browser's; this rule is the emulator's. A gRPC call gets the same HTTP/2
  response (``:status 401``, ``text/html``), which grpcio turns into ``UNAUTHENTICATED`` or, in some
  releases, ``UNKNOWN`` (401; grpc/grpc#36328), or ``PERMISSION_DENIED`` (403): exactly what flytekit's
  ``AuthUnaryInterceptor`` sees behind the real IAP, and it refreshes the proxy token on either of the
  first two.
* A passing request loses ``Proxy-Authorization`` (and ``Authorization`` when the credential came from
  it) and every ``x-goog-*`` header the client sent, and gains ``x-goog-iap-jwt-assertion`` (ES256,
  ``iss https://cloud.google.com/iap``, ``aud /projects/NUM/global/backendServices/ID``; keys in
  :attr:`IapProxy.jwks`, served by :meth:`FakeGoogle.publish_iap_keys
  <flyte_iap.testing.FakeGoogle.publish_iap_keys>`) and ``x-goog-authenticated-user-email``/``-id``;
  everything else, flyteadmin's own ``authorization`` or ``flyte-authorization`` included, reaches the
  upstream untouched.

One port serves both protocols: a connection that starts with the HTTP/2 preface (or negotiates
``h2`` by ALPN with ``tls=True``) is HTTP/2; gRPC requests (``content-type: application/grpc``) go to
``grpc_upstream`` over h2c with streaming, trailers and flow control, anything else (REST, the
console, the Flyte 2 SDK's Connect calls) to ``http_upstream`` over HTTP/1.1, as a GCE backend
service without ``app-protocols`` does. Answers from ``http_upstream`` are passed on as they arrive,
never buffered whole: a ``content-length`` is kept as sent, a chunked or close-delimited body (a
Connect server stream) goes out chunked to HTTP/1.1 clients and as DATA frames, within the client's
flow-control window, to HTTP/2 clients; ``content-encoding`` and every other end-to-end header pass
untouched. ``response_timeout`` plays the backend service's ``timeoutSec`` (a bound on the whole
answer, which cuts long streams). :attr:`Forwarded.http_version` says how the client spoke.

With ``tls=True`` the proxy serves a certificate signed by its own CA (:attr:`IapProxy.ca_cert_file`),
for ``admin.insecure: false`` + ``caCertFilePath``. An unreachable upstream gives the load balancer's
``502``. ``enforce=False`` turns the checks off: a backend that
IAP does not protect, for ``flyte-iap doctor``'s tests.

Not emulated: browser sessions (IAP's cookie after sign-in), OAuth access tokens (Google's English page
lists only ID tokens and service-account JWTs), access levels and group members. The 401 bodies are IAP's
words as reported publicly; the 403 body ``Access denied`` is less certain (one public report), the
messages for an unknown ``azp``, a service-account JWT's audience and its lifetime are the emulator's
own, and IAP's HTML page for browsers is not reproduced.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import contextlib
import datetime
import functools
import ipaddress
import json
import secrets
import shutil
import ssl
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from flyte_iap.endpoints import GOOGLE_ISSUERS

__all__ = ["MESSAGES", "Forwarded", "IapProxy", "Rejection", "Verdict"]

_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
#: IAP's answers (bodies are plain text although the content type says HTML, as IAP's are).
MESSAGES = {
    "empty_token": "Invalid IAP credentials: empty token",
    "unparsable": "Invalid IAP credentials: Unable to parse JWT",
    "bad_signature": "Invalid IAP credentials: JWT signature is invalid",
    "wrong_issuer": "Invalid IAP credentials: JWT issuer is invalid",
    "wrong_audience": (
        "Invalid IAP credentials: JWT audience doesn't match this application "
        "('aud' claim ({actual}) doesn't match expected value ({expected}))"
    ),
    "expired": "OpenID Connect token expired: JWT has expired",
    "no_email": "Invalid IAP credentials: JWT 'email' claim isn't a string",
    "access_denied": "Access denied",
    # The emulator's words (IAP's are not published) for the checks below.
    "unknown_client": (
        "Invalid IAP credentials: the OAuth client that obtained the token ('azp' claim ({actual})) "
        "is not allowed programmatic access to this application"
    ),
    "jwt_audience": (
        "Invalid IAP credentials: service account JWT audience ({actual}) doesn't match the requested "
        "URL ({expected})"
    ),
    "jwt_lifetime": "Invalid IAP credentials: service account JWT lifetime exceeds {limit} seconds",
    "jwt_not_yet_valid": "Invalid IAP credentials: service account JWT issued in the future",
    "redirect": "",
}
#: Longest lifetime (``exp - iat``) of a service-account JWT the emulator accepts: Google's sample's 3600 s.
JWT_MAX_LIFETIME = 3600
#: Clock skew allowed for a service-account JWT's ``iat`` (the emulator's choice; Google states none).
JWT_SKEW = 300
#: Google's sign-in page, where IAP sends a browser without a session.
SIGN_IN_URL = "https://accounts.google.com/o/oauth2/v2/auth"
#: Where Google publishes a service account's public keys ({email} is filled in).
_SA_KEYS_PATH = "/robot/v1/metadata/x509/{email}"
_BAD_GATEWAY = (
    "<!DOCTYPE html>\n<html lang=en><meta charset=utf-8><title>Error 502 (Server Error)!!1</title>"
    "<p><b>502.</b> That's an error.<p>The server encountered a temporary error and could not "
    "complete your request.<p>Please try again in 30 seconds.</html>\n"
)
_HOP_BY_HOP = {
    b"connection",
    b"keep-alive",
    b"proxy-connection",
    b"proxy-authorization",
    b"proxy-authenticate",
    b"te",
    b"trailer",
    b"transfer-encoding",
    b"upgrade",
}
#: Headers only IAP may set: a client's copies are dropped so they cannot be spoofed.
_IAP_SET = (b"x-goog-iap-jwt-assertion", b"x-goog-authenticated-user-email", b"x-goog-authenticated-user-id")
_CERTS_TTL = 300.0
_MAX_HEADER_BYTES = 64 * 1024
#: Bytes of a streamed HTTP/2 answer held for a client whose window is shut before the upstream waits.
_HIGH_WATER = 1 << 20


@dataclass(frozen=True)
class Rejection:
    """A request IAP turned away: the upstream never saw it."""

    protocol: str  # "http" or "grpc"
    method: str
    path: str
    status: int
    reason: str  # a key of MESSAGES
    message: str
    header: str | None  # where the token was looked for: "proxy-authorization", "authorization", None


@dataclass(frozen=True)
class Forwarded:
    """A request that passed IAP, with the headers the upstream received (lower-case names)."""

    protocol: str
    method: str
    path: str
    email: str
    token_header: str | None  # "proxy-authorization", "authorization", or None with enforce=False
    headers: dict[str, str]
    http_version: str = ""  # how the client spoke: "1.1" or "2"


@dataclass
class Verdict:
    """IAP's decision on one request (:meth:`IapProxy.check`)."""

    ok: bool
    status: int = 200
    reason: str = ""
    message: str = ""
    header: str | None = None
    claims: dict[str, Any] = field(default_factory=dict)
    #: extra response headers of a refusal (``location`` of the sign-in redirect)
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    #: "id_token" or "service_account_jwt" for a credential that passed
    kind: str = ""


class IapProxy:
    """IAP for programmatic access, on 127.0.0.1, in front of flyteadmin's HTTP and gRPC ports.

    Args:
        audience: the app's OAuth client ID: the custom client's (ID tokens for it pass), or with
            ``google_managed=True`` the Google-managed client's (named in the sign-in redirect only).
        certs_url: where Google's signing certificates are (``FakeGoogle.certs_url``): a JSON object
            ``{kid: PEM certificate}``.
        programmatic_clients: the app's programmatic-client allowlist (IAP settings'
            ``accessSettings.oauthSettings.programmaticClients``): OAuth client IDs whose ID tokens pass.
        google_managed: the app uses the Google-managed OAuth client (no custom client).
        service_account_keys_url: where a service account's public keys are, with ``{email}`` in it
            [default: ``/robot/v1/metadata/x509/{email}`` on ``certs_url``'s host, as FakeGoogle serves].
        public_url: the app's URL as clients name it, for service-account JWT audiences
            [default: :attr:`url`].
        sign_in_url: the page a browser without credentials is redirected to.
        allowed: who holds ``roles/iap.httpsResourceAccessor``: e-mails, ``user:``,
            ``serviceAccount:`` or ``domain:`` members, ``allAuthenticatedUsers`` (groups are not
            emulated).
        http_upstream: ``http://127.0.0.1:PORT`` for HTTP requests (flyteadmin's HTTP port);
            ``https://`` for a TLS backend, whose certificate is not verified (nor does the load balancer).
        grpc_upstream: ``127.0.0.1:PORT`` for gRPC requests (flyteadmin's gRPC port, h2c).
        tls: serve HTTPS/h2 with a certificate from the proxy's own CA (see :attr:`ca_cert_file`).
        tls_hostnames: the certificate's subject alternative names (DNS names or IP addresses).
        tls_valid_days: how long the certificate is valid from now (negative: already expired).
        alpn_protocols: what the TLS handshake offers; ``("http/1.1",)`` makes TLS clients that would
            pick HTTP/2 (the ``flyte`` SDK's pyqwest, grpcio) speak HTTP/1.1.
        response_timeout: the backend service's ``timeoutSec`` for HTTP (not gRPC) requests: how long
            a *complete* answer may take, not an idle timeout (Google's external Application Load
            Balancer). No answer by then: ``504``; a body still streaming: cut off (HTTP/1.1: the
            connection closes without the last chunk; HTTP/2: ``RST_STREAM``). ``None``: no limit.
        project_number: for the ``aud`` of ``x-goog-iap-jwt-assertion``.
        backend_service_id: likewise.
        enforce: ``False`` lets every request through unchecked (a backend IAP does not protect).
        clock: the proxy's idea of now (seconds since the epoch), for expiry tests.
        host: interface to listen on; only loopback addresses make sense.
        port: 0 for an ephemeral port.
    """

    def __init__(
        self,
        audience: str,
        *,
        certs_url: str,
        allowed: Iterable[str] = (),
        programmatic_clients: Iterable[str] = (),
        google_managed: bool = False,
        service_account_keys_url: str | None = None,
        public_url: str | None = None,
        sign_in_url: str = SIGN_IN_URL,
        http_upstream: str | None = None,
        grpc_upstream: str | None = None,
        tls: bool = False,
        tls_hostnames: Sequence[str] = ("localhost", "127.0.0.1"),
        tls_valid_days: int = 90,
        alpn_protocols: Sequence[str] = ("h2", "http/1.1"),
        response_timeout: float | None = None,
        project_number: str = "123456789012",
        backend_service_id: str = "4567890123456789012",
        enforce: bool = True,
        clock: Callable[[], float] = time.time,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.audience = audience
        self.certs_url = certs_url
        self.programmatic_clients = tuple(programmatic_clients)
        self.google_managed = google_managed
        if service_account_keys_url is None:
            origin = urllib.parse.urlsplit(certs_url)
            service_account_keys_url = f"{origin.scheme}://{origin.netloc}{_SA_KEYS_PATH}"
        self.service_account_keys_url = service_account_keys_url
        self._public_url = public_url.rstrip("/") if public_url else None
        self.sign_in_url = sign_in_url
        self._sa_keys: dict[str, tuple[float, dict[str, str]]] = {}
        self.http_upstream = http_upstream.rstrip("/") if http_upstream else None
        self.grpc_upstream = grpc_upstream
        self.tls = tls
        self.tls_hostnames = tuple(tls_hostnames)
        self.tls_valid_days = tls_valid_days
        self.alpn_protocols = tuple(alpn_protocols)
        self.response_timeout = response_timeout
        #: answers cut off or turned into 504 by ``response_timeout``
        self.timed_out = 0
        self.project_number = project_number
        self.backend_service_id = backend_service_id
        self.enforce = enforce
        self.clock = clock
        self.host = host
        self.port = port
        self._allowed: set[str] = set()
        for member in allowed:
            self.allow(member)
        self._lock = threading.Lock()
        #: requests passed to the upstream, by protocol ("http", "grpc")
        self.passed: collections.Counter[str] = collections.Counter()
        #: requests turned away, by protocol
        self.rejected: collections.Counter[str] = collections.Counter()
        self.rejections: list[Rejection] = []
        self.forwarded: list[Forwarded] = []
        #: certificate fetches from ``certs_url`` (the cache keeps this low)
        self.certs_fetches = 0
        self._certs: dict[str, str] = {}
        self._certs_at = 0.0
        self._signing_key = ec.generate_private_key(ec.SECP256R1())
        self._kid = secrets.token_hex(4)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.AbstractServer | None = None
        self._thread: threading.Thread | None = None
        self._tmpdir: Path | None = None
        self._ssl: ssl.SSLContext | None = None
        self.ca_cert_pem: bytes = b""

    # -- membership --------------------------------------------------------------------------------
    def allow(self, member: str) -> None:
        """Grant ``roles/iap.httpsResourceAccessor`` to an e-mail or IAM member."""
        self._allowed.add(self._normalise(member))

    def revoke(self, member: str) -> None:
        """Take the role away again."""
        self._allowed.discard(self._normalise(member))

    @staticmethod
    def _normalise(member: str) -> str:
        kind, sep, rest = member.partition(":")
        if sep and kind in ("user", "serviceAccount"):
            return rest.lower()
        if sep and kind == "domain":
            return "domain:" + rest.lower()
        return member if member == "allAuthenticatedUsers" else member.lower()

    def _is_allowed(self, email: str) -> bool:
        email = email.lower()
        domain = email.rpartition("@")[2]
        allowed = self._allowed
        return "allAuthenticatedUsers" in allowed or email in allowed or f"domain:{domain}" in allowed

    # -- lifecycle -------------------------------------------------------------------------------
    def start(self) -> IapProxy:
        """Start listening in a background thread (idempotent); returns self."""
        if self._thread is not None:
            return self
        if self.tls:
            self._ssl = self._make_tls()
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            loop.set_exception_handler(_quiet_exception_handler)
            try:
                self._server = loop.run_until_complete(
                    asyncio.start_server(self._on_connection, self.host, self.port, ssl=self._ssl)
                )
                self.port = self._server.sockets[0].getsockname()[1]
            except BaseException as exc:  # report to the starting thread
                failure.append(exc)
                ready.set()
                return
            ready.set()
            try:
                loop.run_forever()
            finally:
                loop.run_until_complete(loop.shutdown_asyncgens())
                loop.close()

        self._thread = threading.Thread(target=run, name="iap-proxy", daemon=True)
        self._thread.start()
        ready.wait(10)
        if failure:
            self._thread = None
            raise failure[0]
        return self

    def stop(self) -> None:
        """Stop listening and close every connection."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return

        async def shutdown() -> None:
            if self._server is not None:
                self._server.close()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(shutdown(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        self._thread = self._loop = self._server = None
        if self._tmpdir is not None:
            shutil.rmtree(self._tmpdir, ignore_errors=True)
            self._tmpdir = None

    def __enter__(self) -> IapProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- addresses -------------------------------------------------------------------------------
    @property
    def _hostname(self) -> str:
        if self.tls and "localhost" in self.tls_hostnames:
            return "localhost"
        return self.host

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT`` (``https://localhost:PORT`` with ``tls=True``)."""
        scheme = "https" if self.tls else "http"
        return f"{scheme}://{self._hostname}:{self.port}"

    @property
    def endpoint(self) -> str:
        """``host:port`` for flytekit's ``admin.endpoint`` (prefix ``dns:///``)."""
        return f"{self._hostname}:{self.port}"

    @property
    def ca_cert_file(self) -> str | None:
        """PEM file of the CA that signed the proxy's certificate (``caCertFilePath``), with ``tls=True``."""
        if self._tmpdir is None:
            return None
        return str(self._tmpdir / "iap-proxy-ca.pem")

    @property
    def public_url(self) -> str:
        """The app's URL in service-account JWT audiences (``public_url``, else :attr:`url`)."""
        return self._public_url or self.url

    @property
    def accepted_audiences(self) -> tuple[str, ...]:
        """The ``aud`` values of Google ID tokens that pass: the custom client, then the allowlist."""
        own = () if self.google_managed else (self.audience,)
        return (*own, *(c for c in self.programmatic_clients if c not in own))

    @property
    def jwt_audience(self) -> str:
        """The ``aud`` of ``x-goog-iap-jwt-assertion``."""
        return f"/projects/{self.project_number}/global/backendServices/{self.backend_service_id}"

    @property
    def jwks(self) -> dict[str, Any]:
        """The public key of ``x-goog-iap-jwt-assertion`` as a JWK set (IAP's ``public_key-jwk``)."""
        numbers = self._signing_key.public_key().public_numbers()

        def b64(n: int) -> str:
            return base64.urlsafe_b64encode(n.to_bytes(32, "big")).rstrip(b"=").decode()

        key = {"kty": "EC", "crv": "P-256", "alg": "ES256", "use": "sig", "kid": self._kid}
        key.update(x=b64(numbers.x), y=b64(numbers.y))
        return {"keys": [key]}

    # -- records -----------------------------------------------------------------------------------
    def reset_counts(self) -> None:
        """Forget counts and records."""
        with self._lock:
            self.passed.clear()
            self.rejected.clear()
            self.rejections.clear()
            self.forwarded.clear()

    def _record_rejection(self, rejection: Rejection) -> None:
        with self._lock:
            self.rejected[rejection.protocol] += 1
            self.rejections.append(rejection)

    def _record_forward(self, forwarded: Forwarded) -> None:
        with self._lock:
            self.passed[forwarded.protocol] += 1
            self.forwarded.append(forwarded)

    # -- the check -------------------------------------------------------------------------------
    def check(
        self, headers: Sequence[tuple[bytes, bytes]], *, method: str = "GET", path: str = "/"
    ) -> Verdict:
        """Decide on a request's headers (lower-case names) as IAP would. Blocking (key fetches).

        Args:
            headers: the request's headers (HTTP/2 pseudo-headers may be among them).
            method: the request method (a browser-like request without credentials is redirected).
            path: the request path (a service-account JWT's audience names it, or ``URL/*``).
        """
        if not self.enforce:
            return Verdict(True)
        found: dict[bytes, bytes] = {}
        for name, value in headers:
            if name in (b"proxy-authorization", b"authorization") and name not in found:
                found[name] = value
        if not found:
            if _browser_like(headers, method):
                return self._redirect()
            return self._deny("empty_token", None)
        first: Verdict | None = None
        for name in (b"proxy-authorization", b"authorization"):
            if name not in found:
                continue
            header = name.decode()
            scheme, _, rest = found[name].decode("latin-1").strip().partition(" ")
            token = rest.strip() if scheme.lower() == "bearer" else ""
            verdict = self._check_token(token, header, path) if token else self._deny("empty_token", header)
            if verdict.ok:
                return verdict
            first = first or verdict
        assert first is not None
        return first

    def _check_token(self, token: str, header: str, path: str) -> Verdict:
        parts = token.split(".")
        try:
            if len(parts) != 3:
                raise ValueError("not three parts")
            head = json.loads(_b64decode(parts[0]))
            claims = json.loads(_b64decode(parts[1]))
            signature = _b64decode(parts[2])
            if not isinstance(head, dict) or not isinstance(claims, dict):
                raise ValueError("not objects")
        except ValueError:
            return self._deny("unparsable", header)
        message = f"{parts[0]}.{parts[1]}".encode()
        issuer = claims.get("iss")
        if issuer not in GOOGLE_ISSUERS and _is_service_account(issuer) and claims.get("sub") == issuer:
            return self._check_service_account_jwt(head, claims, message, signature, header, path)
        if not self._signature_ok(head, message, signature):
            return self._deny("bad_signature", header)
        if issuer not in GOOGLE_ISSUERS:
            return self._deny("wrong_issuer", header)
        aud = claims.get("aud")
        accepted = self.accepted_audiences
        if aud not in accepted:
            expected = ", ".join(accepted) if accepted else "(no programmatic clients)"
            text = MESSAGES["wrong_audience"].format(actual=aud, expected=expected)
            return Verdict(False, 401, "wrong_audience", text, header)
        azp = claims.get("azp")
        own_client = not self.google_managed and aud == self.audience
        if not own_client and azp is not None and azp != aud and azp not in self.programmatic_clients:
            text = MESSAGES["unknown_client"].format(actual=azp)
            return Verdict(False, 401, "unknown_client", text, header)
        exp = claims.get("exp")
        if not isinstance(exp, int | float) or exp <= self.clock():
            return self._deny("expired", header)
        email = claims.get("email")
        if not isinstance(email, str):
            return self._deny("no_email", header)
        return self._access(email, header, claims, "id_token")

    def _check_service_account_jwt(
        self,
        head: dict[str, Any],
        claims: dict[str, Any],
        message: bytes,
        signature: bytes,
        header: str,
        path: str,
    ) -> Verdict:
        email = str(claims["iss"])
        if not self._service_account_signature_ok(email, head, message, signature):
            return self._deny("bad_signature", header)
        base = self.public_url
        wanted = {base, base + "/", base + "/*", base + (urllib.parse.urlsplit(path).path or "/")}
        aud = claims.get("aud")
        if aud not in wanted:
            text = MESSAGES["jwt_audience"].format(actual=aud, expected=f"{base}{path} or {base}/*")
            return Verdict(False, 401, "jwt_audience", text, header)
        exp, iat = claims.get("exp"), claims.get("iat")
        now = self.clock()
        if not isinstance(exp, int | float) or isinstance(exp, bool) or exp <= now:
            return self._deny("expired", header)
        if not isinstance(iat, int | float) or isinstance(iat, bool) or exp - iat > JWT_MAX_LIFETIME:
            text = MESSAGES["jwt_lifetime"].format(limit=JWT_MAX_LIFETIME)
            return Verdict(False, 401, "jwt_lifetime", text, header)
        if iat > now + JWT_SKEW:
            return self._deny("jwt_not_yet_valid", header)
        identity = dict(claims)
        identity.setdefault("email", email)
        return self._access(email, header, identity, "service_account_jwt")

    def _access(self, email: str, header: str, claims: dict[str, Any], kind: str) -> Verdict:
        if not self._is_allowed(email):
            return Verdict(False, 403, "access_denied", MESSAGES["access_denied"], header, claims)
        return Verdict(True, header=header, claims=claims, kind=kind)

    def _redirect(self) -> Verdict:
        client = self.audience
        query = urllib.parse.urlencode(
            {
                "client_id": client,
                "response_type": "code",
                "scope": "openid email",
                "redirect_uri": f"https://iap.googleapis.com/v1/oauth/clientIds/{client}:handleRedirect",
                "state": secrets.token_urlsafe(16),
            }
        )
        location = f"{self.sign_in_url}?{query}".encode()
        return Verdict(False, 302, "redirect", "", None, headers=[(b"location", location)])

    def _service_account_signature_ok(
        self, email: str, head: dict[str, Any], message: bytes, signature: bytes
    ) -> bool:
        from google.auth import crypt

        if head.get("alg") != "RS256":
            return False
        kid = head.get("kid")
        keys = self._get_sa_keys(email, force=False)
        if kid is not None and kid not in keys:
            keys = self._get_sa_keys(email, force=True)
        candidates = list(keys.values()) if kid is None else [keys[kid]] if kid in keys else []
        try:
            return bool(candidates) and crypt.verify_signature(message, signature, candidates)
        except ValueError:
            return False

    def _get_sa_keys(self, email: str, *, force: bool) -> dict[str, str]:
        with self._lock:
            at, keys = self._sa_keys.get(email, (0.0, {}))
            if keys and time.monotonic() - at < (1.0 if force else _CERTS_TTL):
                return keys
        url = self.service_account_keys_url.format(email=urllib.parse.quote(email))
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                found = json.loads(response.read(1 << 20))
        except (OSError, ValueError):
            return keys
        fresh = {str(k): str(v) for k, v in found.items()} if isinstance(found, dict) else {}
        with self._lock:
            self._sa_keys[email] = (time.monotonic(), fresh)
        return fresh

    @staticmethod
    def _deny(reason: str, header: str | None) -> Verdict:
        return Verdict(False, 401, reason, MESSAGES[reason], header)

    def _signature_ok(self, head: dict[str, Any], message: bytes, signature: bytes) -> bool:
        from google.auth import crypt

        if head.get("alg") != "RS256":
            return False
        kid = head.get("kid")
        certs = self._get_certs(force=False)
        if kid not in certs:
            certs = self._get_certs(force=True)
        # like google.auth.jwt.decode: a kid selects its certificate; only a token without one tries all
        if kid is None:
            candidates = list(certs.values())
        elif kid in certs:
            candidates = [certs[kid]]
        else:
            return False
        try:
            return bool(candidates) and crypt.verify_signature(message, signature, candidates)
        except ValueError:
            return False

    def _get_certs(self, *, force: bool) -> dict[str, str]:
        with self._lock:
            fresh = time.monotonic() - self._certs_at < _CERTS_TTL
            # a forced refetch for an unknown kid is rate-limited, like Google's own key caches
            if self._certs and ((fresh and not force) or time.monotonic() - self._certs_at < 1.0):
                return self._certs
        try:
            with urllib.request.urlopen(self.certs_url, timeout=10) as response:
                certs = json.loads(response.read())
        except (OSError, ValueError):
            return self._certs
        with self._lock:
            self.certs_fetches += 1
            self._certs = {str(k): str(v) for k, v in certs.items()} if isinstance(certs, dict) else {}
            self._certs_at = time.monotonic()
            return self._certs

    def _rewrite(
        self, headers: Sequence[tuple[bytes, bytes]], verdict: Verdict, *, http2: bool
    ) -> list[tuple[bytes, bytes]]:
        """The headers the upstream gets: IAP's own added, the consumed credential removed."""
        drop = {b"proxy-authorization", *_IAP_SET}
        if verdict.header == "authorization":
            drop.add(b"authorization")
        # IAP strips every x-goog-* header a client sent before adding its own.
        out = [(n, v) for n, v in headers if n not in drop and not n.startswith(b"x-goog-")]
        if verdict.claims:
            email = verdict.claims["email"]
            sub = str(verdict.claims.get("sub", ""))
            out.append((b"x-goog-iap-jwt-assertion", self.assertion(email, sub).encode()))
            out.append((b"x-goog-authenticated-user-email", f"accounts.google.com:{email}".encode()))
            out.append((b"x-goog-authenticated-user-id", f"accounts.google.com:{sub}".encode()))
        if not http2:
            out.append((b"via", b"1.1 google"))
        return out

    def assertion(self, email: str, sub: str) -> str:
        """An ``x-goog-iap-jwt-assertion`` for this identity, signed with the proxy's ES256 key."""
        now = int(self.clock())
        claims = {
            "iss": "https://cloud.google.com/iap",
            "aud": self.jwt_audience,
            "sub": f"accounts.google.com:{sub}",
            "email": email,
            "iat": now,
            "exp": now + 600,
            "identity_source": "GOOGLE",
        }
        return jwt.encode(claims, self._signing_key, algorithm="ES256", headers={"kid": self._kid})

    # -- TLS -------------------------------------------------------------------------------------
    def _make_tls(self) -> ssl.SSLContext:
        self._tmpdir = Path(tempfile.mkdtemp(prefix="flyte-iap-proxy-"))
        ca_key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "flyte-iap IapProxy test CA")])
        ca = (
            x509.CertificateBuilder()
            .subject_name(ca_name)
            .issuer_name(ca_name)
            .public_key(ca_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .sign(ca_key, hashes.SHA256())
        )
        key = ec.generate_private_key(ec.SECP256R1())
        names: list[x509.GeneralName] = []
        for host in self.tls_hostnames:
            try:
                names.append(x509.IPAddress(ipaddress.ip_address(host)))
            except ValueError:
                names.append(x509.DNSName(host))
        end = now + datetime.timedelta(days=self.tls_valid_days)
        leaf = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, self.tls_hostnames[0])]))
            .issuer_name(ca_name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(min(now - datetime.timedelta(days=1), end - datetime.timedelta(days=2)))
            .not_valid_after(end)
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256())
        )
        self.ca_cert_pem = ca.public_bytes(serialization.Encoding.PEM)
        (self._tmpdir / "iap-proxy-ca.pem").write_bytes(self.ca_cert_pem)
        chain = self._tmpdir / "server.pem"
        chain.write_bytes(leaf.public_bytes(serialization.Encoding.PEM) + self.ca_cert_pem)
        key_file = self._tmpdir / "server.key"
        key_file.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(chain, key_file)
        context.set_alpn_protocols(list(self.alpn_protocols))
        return context

    # -- connections -------------------------------------------------------------------------------
    async def _on_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            ssl_object = writer.get_extra_info("ssl_object")
            alpn = ssl_object.selected_alpn_protocol() if ssl_object is not None else None
            if alpn == "h2":
                await _H2Session(self, reader, writer, b"").run()
                return
            first = b""
            if alpn is None:
                # read until the bytes either are the HTTP/2 preface or cannot become it
                while len(first) < len(_PREFACE) and _PREFACE.startswith(first):
                    chunk = await reader.read(len(_PREFACE) - len(first))
                    if not chunk:
                        break
                    first += chunk
                if not first:
                    return
                if first == _PREFACE:
                    await _H2Session(self, reader, writer, first).run()
                    return
            await _H1Session(self, _Buffered(reader, first), writer).run()
        except (
            ConnectionError,
            asyncio.IncompleteReadError,
            ssl.SSLError,
            ValueError,  # a malformed request: drop the connection, as a load balancer would
            h2.exceptions.H2Error,
            asyncio.CancelledError,
        ):
            # CancelledError: the proxy is stopping; swallowing it keeps asyncio from logging it
            pass
        finally:
            with contextlib.suppress(Exception):
                writer.close()

    async def _verdict(
        self, headers: Sequence[tuple[bytes, bytes]], method: str = "GET", path: str = "/"
    ) -> Verdict:
        # the certificate fetch blocks: keep it off the event loop
        check = functools.partial(self.check, headers, method=method, path=path)
        return await asyncio.get_running_loop().run_in_executor(None, check)


def _quiet_exception_handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    # handshake failures (a client that rejects the test CA) are expected in TLS tests
    exc = context.get("exception")
    if isinstance(exc, ssl.SSLError | ConnectionError):
        return
    loop.default_exception_handler(context)


def _b64decode(part: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))
    except (ValueError, TypeError) as exc:
        raise ValueError(str(exc)) from exc


def _reject_body(verdict: Verdict) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    body = verdict.message.encode()
    headers = [
        *verdict.headers,
        (b"content-type", b"text/html; charset=UTF-8"),
        (b"x-goog-iap-generated-response", b"true"),
        (b"content-length", str(len(body)).encode()),
    ]
    return verdict.status, headers, body


def _browser_like(headers: Sequence[tuple[bytes, bytes]], method: str) -> bool:
    """A request IAP would send to the sign-in page rather than answer 401 (the emulator's rule)."""
    if method not in ("GET", "HEAD"):
        return False
    accept = (_get(headers, b"accept") or b"").lower()
    content_type = (_get(headers, b"content-type") or b"").lower()
    return (
        b"text/html" in accept
        and not content_type.startswith(b"application/grpc")
        and _get(headers, b"x-requested-with") is None
    )


def _is_service_account(issuer: object) -> bool:
    return isinstance(issuer, str) and issuer.endswith(".gserviceaccount.com") and "@" in issuer


# ---------------------------------------------------------------------------------------------------
# HTTP/1.1
# ---------------------------------------------------------------------------------------------------


class _Buffered:
    """A StreamReader with bytes pushed back in front (the peeked preface)."""

    def __init__(self, reader: asyncio.StreamReader, initial: bytes) -> None:
        self._reader = reader
        self._buffer = bytearray(initial)

    async def readuntil(self, separator: bytes, limit: int) -> bytes:
        while True:
            index = self._buffer.find(separator)
            if index >= 0:
                end = index + len(separator)
                data = bytes(self._buffer[:end])
                del self._buffer[:end]
                return data
            if len(self._buffer) > limit:
                raise ValueError("header section too large")
            chunk = await self._reader.read(65536)
            if not chunk:
                raise asyncio.IncompleteReadError(bytes(self._buffer), None)
            self._buffer += chunk

    async def readexactly(self, n: int) -> bytes:
        while len(self._buffer) < n:
            chunk = await self._reader.read(max(65536, n - len(self._buffer)))
            if not chunk:
                raise asyncio.IncompleteReadError(bytes(self._buffer), n)
            self._buffer += chunk
        data = bytes(self._buffer[:n])
        del self._buffer[:n]
        return data

    async def read_to_eof(self) -> bytes:
        data = bytes(self._buffer) + await self._reader.read()
        self._buffer.clear()
        return data

    async def read_some(self, n: int) -> bytes:
        """Up to ``n`` bytes: what is buffered, else what one read brings (b"" at EOF)."""
        if self._buffer:
            data = bytes(self._buffer[:n])
            del self._buffer[:n]
            return data
        return await self._reader.read(n)


def _parse_head(head: bytes) -> tuple[str, list[tuple[bytes, bytes]]]:
    lines = head.rstrip(b"\r\n").split(b"\r\n")
    headers: list[tuple[bytes, bytes]] = []
    for line in lines[1:]:
        name, sep, value = line.partition(b":")
        if not sep or not name or name != name.strip():
            raise ValueError("malformed header line")
        headers.append((name.lower(), value.strip()))
    return lines[0].decode("latin-1"), headers


def _get(headers: Sequence[tuple[bytes, bytes]], name: bytes) -> bytes | None:
    for n, v in headers:
        if n == name:
            return v
    return None


async def _read_body(reader: _Buffered, headers: Sequence[tuple[bytes, bytes]]) -> bytes:
    encoding = (_get(headers, b"transfer-encoding") or b"").lower()
    if b"chunked" in encoding:
        body = bytearray()
        while True:
            size_line = await reader.readuntil(b"\r\n", 1024)
            size = int(size_line.split(b";")[0].strip(), 16)
            if size == 0:
                # trailer section, ends with an empty line
                while (await reader.readuntil(b"\r\n", _MAX_HEADER_BYTES)) != b"\r\n":
                    pass
                return bytes(body)
            body += await reader.readexactly(size)
            await reader.readexactly(2)
    length = _get(headers, b"content-length")
    if length is not None:
        return await reader.readexactly(int(length))
    return b""


def _serialise_response(
    status: int, reason: str, headers: Iterable[tuple[bytes, bytes]], body: bytes
) -> bytes:
    lines = [f"HTTP/1.1 {status} {reason}".encode()]
    lines += [n + b": " + v for n, v in headers]
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


_REASONS = {
    200: "OK",
    302: "Found",
    401: "Unauthorized",
    403: "Forbidden",
    400: "Bad Request",
    502: "Bad Gateway",
}


class _UpstreamResponse:
    """An HTTP/1.1 response from the upstream whose body is read as it arrives, never buffered whole.

    ``framing`` is how the upstream delimits the body: ``"none"`` (HEAD, 1xx, 204, 304), ``"length"``
    (``content-length``, passed on unchanged), ``"chunked"`` or ``"eof"`` (read until close). A
    streamed answer (a Connect server stream is ``chunked``) thus reaches the client piece by piece,
    without a content-length the proxy would have to compute by waiting for the end.
    """

    def __init__(
        self,
        status: int,
        reason: str,
        headers: list[tuple[bytes, bytes]],
        framing: str,
        *,
        length: int = 0,
        reader: _Buffered | None = None,
        writer: asyncio.StreamWriter | None = None,
        static: bytes | None = None,
    ) -> None:
        self.status = status
        self.reason = reason
        self.headers = headers
        self.framing = framing
        self.length = length
        self._reader = reader
        self._writer = writer
        self._static = static

    @classmethod
    def bad_gateway(cls) -> _UpstreamResponse:
        body = _BAD_GATEWAY.encode()
        headers = [
            (b"content-type", b"text/html; charset=UTF-8"),
            (b"content-length", str(len(body)).encode()),
        ]
        return cls(502, "Bad Gateway", headers, "length", length=len(body), static=body)

    async def chunks(self) -> AsyncIterator[bytes]:
        """The body's bytes as they arrive (chunked framing removed). Raises ValueError or
        asyncio.IncompleteReadError when the upstream breaks off or sends garbage."""
        if self._static is not None:
            yield self._static
            return
        reader = self._reader
        if reader is None or self.framing == "none":
            return
        if self.framing == "length":
            remaining = self.length
            while remaining:
                data = await reader.read_some(min(remaining, 65536))
                if not data:
                    raise asyncio.IncompleteReadError(b"", remaining)
                remaining -= len(data)
                yield data
        elif self.framing == "chunked":
            while True:
                size_line = await reader.readuntil(b"\r\n", 1024)
                size = int(size_line.split(b";")[0].strip(), 16)
                if size < 0:
                    raise ValueError("negative chunk size")
                if size == 0:
                    while (await reader.readuntil(b"\r\n", _MAX_HEADER_BYTES)) != b"\r\n":
                        pass
                    return
                remaining = size
                while remaining:
                    data = await reader.read_some(min(remaining, 65536))
                    if not data:
                        raise asyncio.IncompleteReadError(b"", remaining)
                    remaining -= len(data)
                    yield data
                if await reader.readexactly(2) != b"\r\n":
                    raise ValueError("chunk not followed by CRLF")
        else:
            while data := await reader.read_some(65536):
                yield data

    def close(self) -> None:
        if self._writer is not None:
            with contextlib.suppress(Exception):
                self._writer.close()
            self._writer = None


_GATEWAY_TIMEOUT = b"upstream request timeout"


async def _open_timed(
    proxy: IapProxy, method: str, target: str, headers: list[tuple[bytes, bytes]], body: bytes
) -> tuple[_UpstreamResponse, float | None]:
    """:func:`_open_upstream` under ``proxy.response_timeout``: the answer and the loop time by which
    its body must be complete (``None``: no limit). A head that comes too late is a 504."""
    if proxy.response_timeout is None:
        return await _open_upstream(proxy.http_upstream, method, target, headers, body), None
    loop = asyncio.get_running_loop()
    deadline = loop.time() + proxy.response_timeout
    try:
        opened = _open_upstream(proxy.http_upstream, method, target, headers, body)
        return await asyncio.wait_for(opened, proxy.response_timeout), deadline
    except TimeoutError:
        proxy.timed_out += 1
        head = [(b"content-type", b"text/plain"), (b"content-length", b"%d" % len(_GATEWAY_TIMEOUT))]
        return _UpstreamResponse(504, "Gateway Timeout", head, "length", static=_GATEWAY_TIMEOUT), None


async def _timed_chunks(response: _UpstreamResponse, deadline: float | None) -> AsyncIterator[bytes]:
    """The body's pieces; TimeoutError once ``deadline`` (loop time) passes mid-body."""
    chunks = response.chunks()
    loop = asyncio.get_running_loop()
    try:
        while True:
            try:
                if deadline is None:
                    data = await anext(chunks)
                else:
                    data = await asyncio.wait_for(anext(chunks), max(0.0, deadline - loop.time()))
            except StopAsyncIteration:
                return
            yield data
    finally:
        with contextlib.suppress(Exception):
            await chunks.aclose()


async def _open_upstream(
    upstream: str | None, method: str, target: str, headers: list[tuple[bytes, bytes]], body: bytes
) -> _UpstreamResponse:
    """Send one request to the upstream over HTTP/1.1 and read the response head; a 502 when it
    cannot be reached or answers garbage. The caller reads the body with ``chunks()`` and closes."""
    if upstream is None:
        return _UpstreamResponse.bad_gateway()
    parts = urllib.parse.urlsplit(upstream)
    tls = None
    if parts.scheme == "https":
        # the load balancer speaks TLS to an HTTPS/HTTP2 backend and does not verify its certificate
        tls = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        tls.check_hostname = False
        tls.verify_mode = ssl.CERT_NONE
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(parts.hostname, parts.port or (443 if tls else 80), ssl=tls), timeout=10
        )
    except (OSError, TimeoutError):
        return _UpstreamResponse.bad_gateway()
    try:
        connection_named = {
            t.strip().lower().encode() for t in (_get(headers, b"connection") or b"").decode().split(",") if t
        }
        out = [(n, v) for n, v in headers if n not in _HOP_BY_HOP and n not in connection_named]
        out = [(n, v) for n, v in out if n != b"content-length"]
        if body or method in ("POST", "PUT", "PATCH"):
            out.append((b"content-length", str(len(body)).encode()))
        out.append((b"connection", b"close"))
        request = f"{method} {target} HTTP/1.1\r\n".encode()
        request += b"".join(n + b": " + v + b"\r\n" for n, v in out) + b"\r\n" + body
        writer.write(request)
        await writer.drain()
        buffered = _Buffered(reader, b"")
        while True:
            head = await buffered.readuntil(b"\r\n\r\n", _MAX_HEADER_BYTES)
            status_line, response_headers = _parse_head(head)
            code, _, reason = status_line.partition(" ")[2].partition(" ")
            status = int(code)
            if not 100 <= status < 200:
                break  # interim answers (100 Continue) are the proxy's business, not the client's
        length = _get(response_headers, b"content-length")
        if method == "HEAD" or status in (204, 304):
            framing, size = "none", 0
        elif b"chunked" in (_get(response_headers, b"transfer-encoding") or b"").lower():
            framing, size = "chunked", 0
        elif length is not None:
            framing, size = "length", int(length)
            if size < 0:
                raise ValueError("negative content-length")
        else:
            framing, size = "eof", 0
        return _UpstreamResponse(
            status, reason, response_headers, framing, length=size, reader=buffered, writer=writer
        )
    except (OSError, ValueError, asyncio.IncompleteReadError):
        with contextlib.suppress(Exception):
            writer.close()
        return _UpstreamResponse.bad_gateway()


class _H1Session:
    def __init__(self, proxy: IapProxy, reader: _Buffered, writer: asyncio.StreamWriter) -> None:
        self.proxy = proxy
        self.reader = reader
        self.writer = writer

    async def run(self) -> None:
        while True:
            try:
                head = await self.reader.readuntil(b"\r\n\r\n", _MAX_HEADER_BYTES)
            except asyncio.IncompleteReadError:
                return
            try:
                request_line, headers = _parse_head(head)
                method, target, version = request_line.split(" ")
            except ValueError:
                self.writer.write(_serialise_response(400, "Bad Request", [(b"connection", b"close")], b""))
                await self.writer.drain()
                return
            keep_alive = version == "HTTP/1.1" and (_get(headers, b"connection") or b"").lower() != b"close"
            path = urllib.parse.urlsplit(target).path or target
            verdict = await self.proxy._verdict(headers, method, path)
            if not verdict.ok:
                self.proxy._record_rejection(
                    Rejection(
                        "http", method, path, verdict.status, verdict.reason, verdict.message, verdict.header
                    )
                )
                status, reject_headers, body = _reject_body(verdict)
                expect = (_get(headers, b"expect") or b"").lower() == b"100-continue"
                length = _get(headers, b"content-length")
                # drain a small body so the connection stays usable; otherwise don't read it at all
                reusable = keep_alive and not expect and (length is None or int(length) <= 1 << 20)
                if reusable:
                    await _read_body(self.reader, headers)
                else:
                    reject_headers.append((b"connection", b"close"))
                self.writer.write(_serialise_response(status, _REASONS[status], reject_headers, body))
                await self.writer.drain()
                if not reusable:
                    return
                continue
            if (_get(headers, b"expect") or b"").lower() == b"100-continue":
                self.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
                await self.writer.drain()
            body = await _read_body(self.reader, headers)
            rewritten = self.proxy._rewrite(headers, verdict, http2=False)
            rewritten = [(n, v) for n, v in rewritten if n != b"expect"]
            self.proxy._record_forward(
                Forwarded(
                    "http",
                    method,
                    path,
                    verdict.claims.get("email", ""),
                    verdict.header,
                    _as_dict(rewritten),
                    version.removeprefix("HTTP/"),
                )
            )
            response, deadline = await _open_timed(self.proxy, method, target, rewritten, body)
            try:
                http11 = version == "HTTP/1.1"
                if not await self._relay(response, deadline, keep_alive=keep_alive, http11=http11):
                    return
            finally:
                response.close()
            if not keep_alive:
                return

    async def _relay(
        self, response: _UpstreamResponse, deadline: float | None, *, keep_alive: bool, http11: bool
    ) -> bool:
        """Pass the upstream's answer on as it arrives; False when the connection must close."""
        out = [(n, v) for n, v in response.headers if n not in _HOP_BY_HOP]
        framing = response.framing
        chunked = framing in ("chunked", "eof") and http11
        if chunked:
            out.append((b"transfer-encoding", b"chunked"))
        elif framing == "eof":
            keep_alive = False  # an HTTP/1.0 client: the end of the body is the end of the connection
        if not keep_alive:
            out.append((b"connection", b"close"))
        reason = response.reason or _REASONS.get(response.status, "")
        self.writer.write(_serialise_response(response.status, reason, out, b""))
        await self.writer.drain()
        try:
            async for data in _timed_chunks(response, deadline):
                self.writer.write(b"%x\r\n%s\r\n" % (len(data), data) if chunked else data)
                await self.writer.drain()
        except TimeoutError:
            self.proxy.timed_out += 1
            return False  # the load balancer's timeoutSec ran out mid-body
        except (ValueError, asyncio.IncompleteReadError, OSError):
            # the upstream broke off mid-body: the client sees a truncated answer, as behind a real LB
            return False
        if chunked:
            self.writer.write(b"0\r\n\r\n")
            await self.writer.drain()
        return keep_alive


def _as_dict(headers: Iterable[tuple[bytes, bytes]]) -> dict[str, str]:
    return {n.decode("latin-1"): v.decode("latin-1") for n, v in headers}


# ---------------------------------------------------------------------------------------------------
# HTTP/2 (gRPC)
# ---------------------------------------------------------------------------------------------------


class _Outbox:
    """Data waiting for flow-control window on one stream of one connection, then trailers or END_STREAM."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.end = False
        self.trailers: list[tuple[bytes, bytes]] | None = None
        self.done = False


def _flush(conn: h2.connection.H2Connection, stream_id: int, box: _Outbox) -> None:
    """Send what the peer's window allows."""
    if box.done:
        return
    try:
        while box.data:
            window = min(conn.local_flow_control_window(stream_id), conn.max_outbound_frame_size)
            if window <= 0:
                return
            chunk = bytes(box.data[:window])
            del box.data[:window]
            conn.send_data(stream_id, chunk)
        if box.end:
            if box.trailers is not None:
                conn.send_headers(stream_id, box.trailers, end_stream=True)
            else:
                conn.end_stream(stream_id)
            box.done = True
    except (h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError, KeyError):
        box.done = True


@dataclass
class _Stream:
    sid: int
    method: str = ""
    path: str = ""
    grpc: bool = False
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    rejected: bool = False
    verdict: Verdict | None = None
    checked: bool = False
    request_ended: bool = False
    request_body: bytearray = field(default_factory=bytearray)
    up: _H2Upstream | None = None
    up_sid: int | None = None
    to_upstream: _Outbox = field(default_factory=_Outbox)
    to_client: _Outbox = field(default_factory=_Outbox)
    responded: bool = False
    finished: bool = False


class _H2Session:
    """One downstream HTTP/2 connection (server side)."""

    def __init__(
        self, proxy: IapProxy, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, initial: bytes
    ) -> None:
        self.proxy = proxy
        self.reader = reader
        self.writer = writer
        self.initial = initial
        config = h2.config.H2Configuration(client_side=False, header_encoding=None)
        self.conn = h2.connection.H2Connection(config=config)
        self.streams: dict[int, _Stream] = {}
        self.upstream: _H2Upstream | None = None
        self._upstream_lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._window_opened = asyncio.Event()

    def send(self) -> None:
        data = self.conn.data_to_send()
        if data:
            self.writer.write(data)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def run(self) -> None:
        self.conn.initiate_connection()
        self.send()
        data = self.initial
        try:
            while True:
                if data:
                    try:
                        events = self.conn.receive_data(data)
                    except h2.exceptions.ProtocolError:
                        self.send()
                        return
                    for event in events:
                        self._on_event(event)
                    self.send()
                    await self.writer.drain()
                data = await self.reader.read(65536)
                if not data:
                    return
        finally:
            for task in list(self._tasks):
                task.cancel()
            if self.upstream is not None:
                self.upstream.close()

    def _on_event(self, event: h2.events.Event) -> None:
        if isinstance(event, h2.events.RequestReceived):
            stream = _Stream(event.stream_id, headers=list(event.headers))
            pseudo = dict(h for h in event.headers if h[0].startswith(b":"))
            stream.method = pseudo.get(b":method", b"").decode()
            stream.path = pseudo.get(b":path", b"").decode()
            content_type = _get(event.headers, b"content-type") or b""
            stream.grpc = content_type.startswith(b"application/grpc")
            self.streams[event.stream_id] = stream
            if event.stream_ended is not None:
                stream.request_ended = True
            self._spawn(self._check(stream))
        elif isinstance(event, h2.events.DataReceived):
            # Received data is acknowledged at once and buffered: the proxy never stalls a client, and
            # what it sends on either side waits for that peer's window (see _flush).
            self.conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            stream = self.streams.get(event.stream_id)
            if stream is None or stream.rejected:
                return
            if stream.grpc:
                stream.to_upstream.data += event.data
                self._pump_upstream(stream)
            else:
                stream.request_body += event.data
        elif isinstance(event, h2.events.TrailersReceived):
            stream = self.streams.get(event.stream_id)
            if stream is not None and stream.grpc and not stream.rejected:
                stream.to_upstream.trailers = list(event.headers)
        elif isinstance(event, h2.events.StreamEnded):
            stream = self.streams.get(event.stream_id)
            if stream is None or stream.rejected:
                return
            stream.request_ended = True
            if stream.grpc:
                stream.to_upstream.end = True
                self._pump_upstream(stream)
            elif stream.checked:
                self._spawn(self._forward_http(stream))
        elif isinstance(event, h2.events.StreamReset):
            stream = self.streams.pop(event.stream_id, None)
            if stream is not None:
                stream.finished = True
                self._window_opened.set()  # wakes a relay waiting for this stream's window
                if stream.up is not None and stream.up_sid is not None:
                    stream.up.reset(stream.up_sid, event.error_code)
        elif isinstance(event, h2.events.WindowUpdated):
            self.pump_client()
        elif isinstance(event, h2.events.ConnectionTerminated):
            self.writer.close()

    async def _check(self, stream: _Stream) -> None:
        verdict = await self.proxy._verdict(stream.headers, stream.method, stream.path)
        stream.verdict = verdict
        stream.checked = True
        protocol = "grpc" if stream.grpc else "http"
        if not verdict.ok:
            stream.rejected = True
            self.proxy._record_rejection(
                Rejection(
                    protocol,
                    stream.method,
                    stream.path,
                    verdict.status,
                    verdict.reason,
                    verdict.message,
                    verdict.header,
                )
            )
            status, headers, body = _reject_body(verdict)
            self.respond(stream, [(b":status", str(status).encode()), *headers], body)
            return
        rewritten = self.proxy._rewrite(stream.headers, verdict, http2=True)
        stream.headers = rewritten
        self.proxy._record_forward(
            Forwarded(
                protocol,
                stream.method,
                stream.path,
                verdict.claims.get("email", ""),
                verdict.header,
                _as_dict(rewritten),
                "2",
            )
        )
        if not stream.grpc:
            if stream.request_ended:
                await self._forward_http(stream)
            return
        upstream = await self._get_upstream()
        if upstream is None or stream.finished:
            if not stream.finished:
                self.respond(
                    stream,
                    [(b":status", b"502"), (b"content-type", b"text/html; charset=UTF-8")],
                    _BAD_GATEWAY.encode(),
                )
            return
        try:
            stream.up_sid = upstream.open(stream)
        except (h2.exceptions.ProtocolError, ConnectionError):
            self.respond(
                stream,
                [(b":status", b"502"), (b"content-type", b"text/html; charset=UTF-8")],
                _BAD_GATEWAY.encode(),
            )
            return
        stream.up = upstream
        self._pump_upstream(stream)

    async def _get_upstream(self) -> _H2Upstream | None:
        async with self._upstream_lock:
            if self.upstream is not None and self.upstream.alive:
                return self.upstream
            if not self.proxy.grpc_upstream:
                return None
            host, _, port = self.proxy.grpc_upstream.rpartition(":")
            upstream = _H2Upstream(self)
            if not await upstream.connect(host.strip("[]"), int(port)):
                return None
            self.upstream = upstream
            return upstream

    async def _forward_http(self, stream: _Stream) -> None:
        """Forward a non-gRPC request (Connect, REST, the console) over HTTP/1.1 and stream the answer
        back as DATA frames as it arrives, within the client's flow-control window."""
        if stream.finished or stream.responded:
            return
        stream.responded = True
        headers = [(n, v) for n, v in stream.headers if not n.startswith(b":")]
        authority = _get(stream.headers, b":authority")
        if authority and _get(headers, b"host") is None:
            headers.insert(0, (b"host", authority))
        response, deadline = await _open_timed(
            self.proxy, stream.method, stream.path, headers, bytes(stream.request_body)
        )
        try:
            await self._relay(stream, response, deadline)
        finally:
            response.close()

    async def _relay(self, stream: _Stream, response: _UpstreamResponse, deadline: float | None) -> None:
        out = [(b":status", str(response.status).encode())]
        out += [(n, v) for n, v in response.headers if n not in _HOP_BY_HOP and n != b"host"]
        if stream.finished:
            return
        try:
            self.conn.send_headers(stream.sid, out, end_stream=response.framing == "none")
        except (h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError):
            stream.finished = True
            return
        self.send()
        if response.framing == "none":
            stream.to_client.done = True
            self._maybe_finish(stream)
            return
        try:
            async for data in _timed_chunks(response, deadline):
                if stream.finished:
                    return  # the client reset the stream
                stream.to_client.data += data
                _flush(self.conn, stream.sid, stream.to_client)
                self.send()
                await self.writer.drain()
                # back-pressure: stop reading the upstream while the client's window is closed
                while len(stream.to_client.data) > _HIGH_WATER and not stream.finished:
                    self._window_opened.clear()
                    await self._window_opened.wait()
        except TimeoutError:
            self.proxy.timed_out += 1
            self._reset(stream, h2.errors.ErrorCodes.CANCEL)
            return
        except (ValueError, asyncio.IncompleteReadError, OSError):
            self._reset(stream, h2.errors.ErrorCodes.INTERNAL_ERROR)
            return
        stream.to_client.end = True
        _flush(self.conn, stream.sid, stream.to_client)
        self._maybe_finish(stream)
        self.send()

    def _reset(self, stream: _Stream, code: int) -> None:
        if stream.finished:
            return
        with contextlib.suppress(h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError):
            self.conn.reset_stream(stream.sid, code)
        stream.finished = True
        self.streams.pop(stream.sid, None)
        self.send()

    def respond(self, stream: _Stream, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
        """A complete response from the proxy itself (rejection, 502, or a translated HTTP/1.1 reply)."""
        if stream.finished or stream.responded:
            return
        stream.responded = True
        try:
            self.conn.send_headers(stream.sid, headers, end_stream=not body)
        except (h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError):
            stream.finished = True
            return
        if body:
            stream.to_client.data += body
            stream.to_client.end = True
            _flush(self.conn, stream.sid, stream.to_client)
        else:
            stream.to_client.done = True
        self._maybe_finish(stream)
        self.send()

    def _pump_upstream(self, stream: _Stream) -> None:
        if stream.up is None or stream.up_sid is None:
            return
        stream.up.flush_stream(stream)

    def pump_client(self) -> None:
        for stream in list(self.streams.values()):
            _flush(self.conn, stream.sid, stream.to_client)
            self._maybe_finish(stream)
        self.send()
        self._window_opened.set()

    def _maybe_finish(self, stream: _Stream) -> None:
        if stream.to_client.done:
            stream.finished = True
            self.streams.pop(stream.sid, None)

    # called by the upstream ---------------------------------------------------------------------
    def upstream_response(self, stream: _Stream, headers: list[tuple[bytes, bytes]]) -> None:
        if stream.finished:
            return
        stream.responded = True
        try:
            self.conn.send_headers(stream.sid, [(n, v) for n, v in headers if n not in _HOP_BY_HOP])
        except (h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError):
            stream.finished = True
        self.send()

    def upstream_data(self, stream: _Stream, data: bytes) -> None:
        stream.to_client.data += data
        _flush(self.conn, stream.sid, stream.to_client)
        self.send()

    def upstream_end(self, stream: _Stream, trailers: list[tuple[bytes, bytes]] | None) -> None:
        if trailers is not None:
            stream.to_client.trailers = trailers
        stream.to_client.end = True
        _flush(self.conn, stream.sid, stream.to_client)
        self._maybe_finish(stream)
        self.send()

    def upstream_reset(self, stream: _Stream, error_code: int) -> None:
        if stream.finished:
            return
        if not stream.responded:
            self.respond(
                stream,
                [(b":status", b"502"), (b"content-type", b"text/html; charset=UTF-8")],
                _BAD_GATEWAY.encode(),
            )
            return
        with contextlib.suppress(h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError):
            self.conn.reset_stream(stream.sid, error_code)
        stream.finished = True
        self.streams.pop(stream.sid, None)
        self.send()


class _H2Upstream:
    """The proxy's h2c client connection to the gRPC upstream, shared by one downstream session."""

    def __init__(self, session: _H2Session) -> None:
        self.session = session
        config = h2.config.H2Configuration(client_side=True, header_encoding=None)
        self.conn = h2.connection.H2Connection(config=config)
        self.by_sid: dict[int, _Stream] = {}
        self.alive = False
        self.writer: asyncio.StreamWriter | None = None
        self._task: asyncio.Task[None] | None = None

    async def connect(self, host: str, port: int) -> bool:
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout=10)
        except (OSError, TimeoutError):
            return False
        self.writer = writer
        self.conn.initiate_connection()
        self.alive = True
        self.send()
        self._task = asyncio.ensure_future(self._read(reader))
        return True

    def send(self) -> None:
        data = self.conn.data_to_send()
        if data and self.writer is not None:
            self.writer.write(data)

    def open(self, stream: _Stream) -> int:
        sid = self.conn.get_next_available_stream_id()
        headers = list(stream.headers)
        self.conn.send_headers(sid, headers)
        self.by_sid[sid] = stream
        self.send()
        return sid

    def flush_stream(self, stream: _Stream) -> None:
        if stream.up_sid is None:
            return
        _flush(self.conn, stream.up_sid, stream.to_upstream)
        self.send()

    def reset(self, sid: int, error_code: int) -> None:
        self.by_sid.pop(sid, None)
        with contextlib.suppress(h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError):
            self.conn.reset_stream(sid, error_code or h2.errors.ErrorCodes.CANCEL)
        self.send()

    def close(self) -> None:
        self.alive = False
        if self._task is not None:
            self._task.cancel()
        if self.writer is not None:
            with contextlib.suppress(Exception):
                self.writer.close()

    async def _read(self, reader: asyncio.StreamReader) -> None:
        session = self.session
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    break
                try:
                    events = self.conn.receive_data(data)
                except h2.exceptions.ProtocolError:
                    break
                for event in events:
                    self._on_event(event)
                self.send()
                session.send()
        except (ConnectionError, OSError):
            pass
        finally:
            self.alive = False
            for stream in list(self.by_sid.values()):
                session.upstream_reset(stream, h2.errors.ErrorCodes.INTERNAL_ERROR)
            self.by_sid.clear()
            session.send()

    def _on_event(self, event: h2.events.Event) -> None:
        session = self.session
        stream_id = getattr(event, "stream_id", None)
        stream = self.by_sid.get(stream_id) if stream_id else None
        if isinstance(event, h2.events.ResponseReceived) and stream is not None:
            session.upstream_response(stream, list(event.headers))
            if event.stream_ended is not None:
                self.by_sid.pop(event.stream_id, None)
                session.upstream_end(stream, None)
        elif isinstance(event, h2.events.DataReceived):
            self.conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            if stream is not None:
                session.upstream_data(stream, event.data)
        elif isinstance(event, h2.events.TrailersReceived) and stream is not None:
            self.by_sid.pop(event.stream_id, None)
            session.upstream_end(stream, list(event.headers))
        elif isinstance(event, h2.events.StreamEnded) and stream is not None:
            self.by_sid.pop(event.stream_id, None)
            session.upstream_end(stream, None)
        elif isinstance(event, h2.events.StreamReset) and stream is not None:
            self.by_sid.pop(event.stream_id, None)
            session.upstream_reset(stream, event.error_code)
        elif isinstance(event, h2.events.WindowUpdated):
            for s in list(self.by_sid.values()):
                if s.up_sid is not None:
                    _flush(self.conn, s.up_sid, s.to_upstream)
        elif isinstance(event, h2.events.ConnectionTerminated):
            self.alive = False
