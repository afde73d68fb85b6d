"""A local fake of the Google endpoints flyte-iap and google-auth talk to, on 127.0.0.1.

Example::

    import os

    from flyte_iap.testing import FakeGoogle

    with FakeGoogle(user_email="alice@example.com") as google:
        os.environ.update(google.env)  # flyte-iap and google-auth now talk to the fake
        token = google.mint_id_token("my-iap-client-id")  # RS256, verifiable at google.certs_url
        refresh = google.issue_refresh_token(google.DESKTOP_CLIENT_ID)  # skip the browser
        google.fail_next(status=503, path="/token")  # the next token request fails
        ...
        assert google.requests_to("/token")[0].form["grant_type"] == "refresh_token"

One ``ThreadingHTTPServer`` on an ephemeral port serves, by path, what Google serves on several hosts:

=========================================================  =============================================
path                                                       Google service
=========================================================  =============================================
``GET /o/oauth2/v2/auth``                                  OAuth consent screen (PKCE S256 *required*)
``POST /token``                                            OAuth token endpoint: ``authorization_code``,
                                                           ``refresh_token`` (``audience`` -> ID token for
                                                           that audience), JWT bearer (service-account
                                                           keys, ``target_audience``), token exchange
``POST /revoke``                                           OAuth revocation
``GET /oauth2/v1/certs``, ``GET /oauth2/v3/certs``         ID-token signing keys (PEM certs / JWKS)
``GET /``, ``GET /computeMetadata/v1/...``                 GCE/GKE metadata server
``POST /v1/projects/-/serviceAccounts/SA:generateIdToken``  IAM Credentials (also ``:generateAccessToken``,
                                                           ``:signJwt``)
``GET /robot/v1/metadata/x509/SA``                         a service account's public keys (PEM certs)
``GET /iap/verify/public_key-jwk``                         IAP's signed-header keys (see
                                                           :meth:`FakeGoogle.publish_iap_keys`)
``GET /v1/projects/P/secrets/S/versions/V:access``          Secret Manager
``POST /v1/token``                                         STS (Workload Identity Federation)
``GET /.well-known/openid-configuration``                  OIDC discovery document
=========================================================  =============================================

Identities. A user consents as :attr:`FakeGoogle.user_email`; access tokens the fake issues carry the
identity of whoever they were issued to (the user, a service account, the metadata server's service
account, or a federated principal). A federated (STS) access token's identity is
``principal://iam.googleapis.com/projects/NUM/locations/global/workloadIdentityPools/POOL/subject/SUBJECT``
(see :meth:`FakeGoogle.workload_identity_principal`); grant it impersonation with
:meth:`FakeGoogle.allow_impersonation` using that string, or the matching
``principalSet://.../workloadIdentityPools/POOL/*``.

Where this fake is stricter than Google, on purpose, so that flyte-iap is proven to do the right thing:
the consent screen rejects a missing or ``plain`` PKCE challenge, a missing ``state``, a scope without
``openid`` and any redirect URI that is not a loopback ``http://127.0.0.1:PORT/...`` or
``http://localhost:PORT/...`` (unless the client was registered with explicit ``redirect_uris``); a refresh
token is only issued for ``access_type=offline``; and iamcredentials needs an explicit
:meth:`FakeGoogle.allow_impersonation` even when a service account acts on itself.

Where it is as strict as Google: IAM Credentials takes only ``projects/-/serviceAccounts/...`` (the API
reference: "The ``-`` wildcard character is required; replacing it with a project ID is invalid") and a
caller whose access token has the ``cloud-platform`` or ``iam`` scope (else 403
``ACCESS_TOKEN_SCOPE_INSUFFICIENT``, Google's error shape for too narrow a token); ``signJwt`` checks the
payload as its reference says (a JSON object; an ``exp`` not in the past and at most 12 hours ahead; no
``exp`` gets one an hour ahead) and signs with a Google-managed key of the account, published with its
key-file keys at ``/robot/v1/metadata/x509/SA``. The refresh grant's ``audience`` (an ID token for another
client) must be a registered client of the same project as the refreshing client; the error text for a
mismatch (``invalid_audience``) is as reported publicly, not from a Google reference page.

Pointing a login flow's browser at the fake: set ``BROWSER`` to :attr:`FakeGoogle.browser_command` (which is
``<python> -m flyte_iap.testing browse %s``). :mod:`webbrowser` waits for that command, which in turn waits
for the loopback redirect to be answered, so the login flow must serve its loopback redirect on another
thread than the one that opens the browser. The command reports on stderr only, never stdout.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import html
import itertools
import json
import re
import secrets
import shlex
import sys
import threading
import time
import traceback
import urllib.parse
from collections.abc import Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from google.auth import crypt
from google.auth import jwt as google_jwt

from flyte_iap import endpoints
from flyte_iap.testing.browser import BrowserResult, browse

__all__ = ["BrowserResult", "FakeGoogle", "RecordedRequest", "browse"]

ISSUER = "https://accounts.google.com"
_JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
_TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
_SUBJECT_TOKEN_TYPES = ("urn:ietf:params:oauth:token-type:jwt", "urn:ietf:params:oauth:token-type:id_token")
_ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"
_CLOUD_PLATFORM = "https://www.googleapis.com/auth/cloud-platform"
_IAM_SCOPE = "https://www.googleapis.com/auth/iam"
#: signJwt's limit on a payload's ``exp`` (IAM Credentials reference: "no more than 12 hours in the future").
_SIGN_JWT_MAX_EXP = 12 * 3600
_USERINFO_EMAIL = "https://www.googleapis.com/auth/userinfo.email"
# Google answers with the long form of the short OpenID scopes.
_SCOPE_ALIASES = {
    "email": _USERINFO_EMAIL,
    "profile": "https://www.googleapis.com/auth/userinfo.profile",
}
_IAM_PRINCIPAL = "//iam.googleapis.com"
_POOL_AUDIENCE = re.compile(
    r"^(?:https:)?//iam\.googleapis\.com/projects/(?P<number>[^/]+)/locations/global/"
    r"workloadIdentityPools/(?P<pool>[^/]+)/providers/(?P<provider>[^/]+)$"
)
_STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ALREADY_EXISTS",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    501: "NOT_IMPLEMENTED",
    502: "UNAVAILABLE",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
_OAUTH_ERROR_DESCRIPTIONS = {
    "invalid_grant": "Bad Request",
    "invalid_client": "The OAuth client was not found.",
    "unauthorized_client": "Unauthorized",
    "invalid_request": "Bad Request",
    "invalid_scope": "Invalid OAuth scope or ID token audience provided.",
    "unsupported_grant_type": "Invalid grant_type: ",
    "access_denied": "Access denied.",
    "temporarily_unavailable": "The service is currently unavailable.",
}
_METADATA_FLAVOR = {"Metadata-Flavor": "Google"}
#: What :meth:`FakeGoogle.malformed_next` answers by default: a captive portal or an interfering proxy.
MALFORMED_BODY = b"<html><head><title>Sign in to the network</title></head><body>Welcome!</body></html>"


# --------------------------------------------------------------------------------------------------
# Requests, responses and results


@dataclass
class RecordedRequest:
    """One request the fake received, as the fake saw it.

    Attributes:
        method: ``GET``, ``POST``, ...
        path: the URL path, without the query string.
        query: the query string parameters (first value of each).
        headers: request headers with lower-case names.
        body: the raw request body.
        status: the HTTP status the fake answered (0 while the request is being handled).
        fault: which injected fault answered it (``"fail"``, ``"malformed"``, ``"oauth_error"``,
            ``"delay"``), or None.
    """

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    status: int = 0
    fault: str | None = None
    received_at: float = field(default_factory=time.time)

    @property
    def form(self) -> dict[str, str]:
        """The urlencoded form body (first value of each field); empty for other bodies."""
        if "application/x-www-form-urlencoded" not in self.headers.get("content-type", ""):
            return {}
        pairs = urllib.parse.parse_qsl(self.body.decode("utf-8", "replace"), keep_blank_values=True)
        form: dict[str, str] = {}
        for name, value in pairs:
            form.setdefault(name, value)
        return form

    @property
    def json(self) -> Any:
        """The JSON body, or None when the body is empty or not JSON."""
        try:
            return json.loads(self.body)
        except ValueError:
            return None

    @property
    def params(self) -> dict[str, str]:
        """The form body, or the JSON object body with string values (Google's token endpoints take both)."""
        if self.form:
            return self.form
        body = self.json
        return {str(k): str(v) for k, v in body.items()} if isinstance(body, dict) else {}

    @property
    def bearer(self) -> str | None:
        """The bearer token of the ``Authorization`` header, if any."""
        auth = self.headers.get("authorization", "")
        scheme, _, token = auth.partition(" ")
        return token.strip() if scheme.lower() == "bearer" and token.strip() else None


@dataclass
class _Response:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


# --------------------------------------------------------------------------------------------------
# Keys and tokens


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _int_b64(value: int) -> str:
    return _b64url(value.to_bytes((value.bit_length() + 7) // 8, "big"))


_KEY_MATERIAL: list[rsa.RSAPrivateKey] = []
_KEY_MATERIAL_LOCK = threading.Lock()


def _rsa_key(index: int) -> rsa.RSAPrivateKey:
    """The ``index``-th RSA key of this process.

    Generating a 2048-bit key takes 50-300 ms, and a test suite starts a FakeGoogle per test. So the n-th key
    of every FakeGoogle in a process is the same material; within one fake every key differs, and each key
    gets a fresh random ``kid``, so one fake's certs never vouch for another fake's tokens.
    """
    with _KEY_MATERIAL_LOCK:
        while len(_KEY_MATERIAL) <= index:
            _KEY_MATERIAL.append(rsa.generate_private_key(public_exponent=65537, key_size=2048))
        return _KEY_MATERIAL[index]


class _SigningKey:
    """An RSA key with a ``kid``, its self-signed certificate and its JWK, like Google's rotating keys."""

    def __init__(self, key: rsa.RSAPrivateKey) -> None:
        self.kid = secrets.token_hex(20)
        self.key = key
        self.private_pem = self.key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode("ascii")
        self.public_pem = (
            self.key.public_key()
            .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
            .decode("ascii")
        )
        # From the key objects, not the PEMs: parsing a PEM re-validates the key, which costs as much as
        # generating it.
        self.signer = crypt.RSASigner(self.key, key_id=self.kid)
        self.verifier = crypt.RSAVerifier(self.key.public_key())
        self._cert_pem: str | None = None

    @property
    def cert_pem(self) -> str:
        if self._cert_pem is None:
            name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, self.kid)])
            now = datetime.datetime.now(datetime.UTC)
            cert = (
                x509.CertificateBuilder()
                .subject_name(name)
                .issuer_name(name)
                .public_key(self.key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(days=1))
                .not_valid_after(now + datetime.timedelta(days=14))
                .sign(self.key, hashes.SHA256())
            )
            self._cert_pem = cert.public_bytes(serialization.Encoding.PEM).decode("ascii")
        return self._cert_pem

    @property
    def jwk(self) -> dict[str, str]:
        numbers = self.key.public_key().public_numbers()
        return {
            "kty": "RSA",
            "alg": "RS256",
            "use": "sig",
            "kid": self.kid,
            "n": _int_b64(numbers.n),
            "e": _int_b64(numbers.e),
        }

    def sign(self, claims: dict[str, Any]) -> str:
        return google_jwt.encode(self.signer, claims).decode("ascii")


def _split_jwt(token: str) -> tuple[dict[str, Any], dict[str, Any], bytes, bytes]:
    """Header, claims, signed part and signature of a JWT; ValueError when it is not one."""
    parts = token.split(".")
    if len(parts) != 3:
        raise ValueError("not a JWT")
    try:
        header = json.loads(_b64url_decode(parts[0]))
        claims = json.loads(_b64url_decode(parts[1]))
        signature = _b64url_decode(parts[2])
    except (ValueError, TypeError) as exc:
        raise ValueError("not a JWT") from exc
    if not isinstance(header, dict) or not isinstance(claims, dict):
        raise ValueError("not a JWT")
    return header, claims, f"{parts[0]}.{parts[1]}".encode("ascii"), signature


def _numeric_id(email: str) -> str:
    """A stable 21-digit id for an email, like Google's ``sub`` and service-account unique ids."""
    digest = int.from_bytes(hashlib.sha256(email.lower().encode()).digest()[:9], "big")
    return "1" + str(digest % 10**20).zfill(20)


def _crc32c(data: bytes) -> int:
    """CRC-32C (Castagnoli), the checksum Secret Manager reports as ``dataCrc32c``."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc = _CRC32C_TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def _crc32c_table() -> list[int]:
    table = []
    for i in range(256):
        crc = i
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
        table.append(crc)
    return table


_CRC32C_TABLE = _crc32c_table()


def _scopes(text: str | Iterable[str] | None) -> list[str]:
    if text is None:
        return []
    items = text.split() if isinstance(text, str) else list(text)
    out: list[str] = []
    for item in items:
        scope = _SCOPE_ALIASES.get(item, item)
        if scope not in out:
            out.append(scope)
    return out


def _client_project(client_id: str) -> str:
    """The project number an OAuth client ID starts with (``123456789012-abc.apps.googleusercontent.com``)."""
    return client_id.partition("-")[0]


def _rfc3339(epoch: float) -> str:
    return datetime.datetime.fromtimestamp(int(epoch), datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# --------------------------------------------------------------------------------------------------
# State


@dataclass
class _Client:
    secret: str
    redirect_uris: tuple[str, ...] | None = None


@dataclass
class _Code:
    client_id: str
    redirect_uri: str
    challenge: str
    scopes: list[str]
    email: str
    offline: bool
    nonce: str | None
    expires_at: float
    used: bool = False


@dataclass
class _RefreshGrant:
    client_id: str
    email: str
    scopes: list[str]


@dataclass
class _AccessGrant:
    principal: str
    scopes: list[str]
    expires_at: float
    client_id: str | None = None
    refresh_token: str | None = None


@dataclass
class _ServiceAccount:
    email: str
    key: _SigningKey | None = None
    #: A Google-managed key: signs what ``signJwt`` signs (created on first use).
    system_key: _SigningKey | None = None

    @property
    def unique_id(self) -> str:
        return _numeric_id(self.email)


@dataclass
class _Pool:
    audience: str
    project_number: str
    pool: str
    allowed_audiences: tuple[str, ...]
    issuer: str


@dataclass
class _Secret:
    versions: list[bytes]
    accessors: frozenset[str] | None


@dataclass
class _Fault:
    kind: str
    remaining: int
    path: str | None
    status: int = 500
    seconds: float = 0.0
    body: bytes | None = None
    error: str = ""
    description: str | None = None

    def matches(self, path: str) -> bool:
        return self.remaining > 0 and (self.path is None or path.startswith(self.path))


class _OAuthError(Exception):
    def __init__(self, error: str, description: str, status: int = 400) -> None:
        super().__init__(description)
        self.error, self.description, self.status = error, description, status


class _ApiError(Exception):
    def __init__(self, status: int, message: str, details: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.details = status, message, details


# --------------------------------------------------------------------------------------------------
# The fake


class FakeGoogle:
    """Google's OAuth, metadata, IAM Credentials, Secret Manager and STS endpoints, served on 127.0.0.1.

    Args:
        user_email: the Google account that consents in the (scripted) browser.
        token_lifetime: lifetime in seconds of the access and ID tokens it issues.
        port: TCP port to listen on; 0 picks a free one.
        project_id: project reported by the metadata server.
        project_number: its number (used in Secret Manager names and federated principals).

    Use it as a context manager, or call :meth:`start` and :meth:`stop`.
    """

    DESKTOP_CLIENT_ID = "123456789012-flyteiapdesktop0fake0client.apps.googleusercontent.com"
    DESKTOP_CLIENT_SECRET = "GOCSPX-fake-desktop-client-secret"
    #: A registered web client standing for the IAP OAuth client: its id is the audience IAP expects.
    IAP_CLIENT_ID = "123456789012-flyteiapiap0fake0client000000.apps.googleusercontent.com"
    IAP_CLIENT_SECRET = "GOCSPX-fake-iap-client-secret"

    def __init__(
        self,
        user_email: str = "alice@example.com",
        token_lifetime: int = 3600,
        *,
        port: int = 0,
        project_id: str = "fake-project",
        project_number: str = "123456789012",
    ) -> None:
        self.user_email = user_email
        self.token_lifetime = token_lifetime
        self.project_id = project_id
        self.project_number = project_number
        #: Authorization codes expire after this many seconds (Google: a few minutes).
        self.code_lifetime = 300
        #: When True the scripted user clicks "Cancel" on the consent screen.
        self.deny_consent = False
        #: The service account the metadata server serves (a GCE default compute account).
        self.metadata_service_account = f"{project_number}-compute@developer.gserviceaccount.com"
        #: Scopes the metadata server's service account was given.
        self.metadata_scopes = [_CLOUD_PLATFORM, _USERINFO_EMAIL]
        #: Every refresh or access token revoked through ``/revoke``.
        self.revoked_tokens: set[str] = set()
        #: Every request received, oldest first.
        self.requests: list[RecordedRequest] = []

        self._port = port
        self._lock = threading.RLock()
        self._key_count = 0
        self._keys = [self._new_key()]
        self._idp_key: _SigningKey | None = None
        self._clients: dict[str, _Client] = {
            self.DESKTOP_CLIENT_ID: _Client(self.DESKTOP_CLIENT_SECRET),
            self.IAP_CLIENT_ID: _Client(self.IAP_CLIENT_SECRET),
        }
        self._codes: dict[str, _Code] = {}
        self._refresh_tokens: dict[str, _RefreshGrant] = {}
        self._access_tokens: dict[str, _AccessGrant] = {}
        self._service_accounts: dict[str, _ServiceAccount] = {}
        self._impersonation: set[tuple[str, str]] = set()
        self._pools: dict[str, _Pool] = {}
        self._secrets: dict[str, _Secret] = {}
        self._faults: list[_Fault] = []
        self._iap_jwks: list[dict[str, Any]] = []
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ---- lifecycle ------------------------------------------------------------------------------

    def start(self) -> FakeGoogle:
        """Start serving on a background thread (idempotent) and return self."""
        if self._server is not None:
            return self
        handler = type("_BoundHandler", (_Handler,), {"fake": self})
        server = ThreadingHTTPServer(("127.0.0.1", self._port), handler)
        server.daemon_threads = True
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.01}, name="FakeGoogle", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and release the port (idempotent)."""
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> FakeGoogle:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        """The TCP port the fake listens on."""
        if self._server is None:
            raise RuntimeError("FakeGoogle is not running: use it as a context manager or call start()")
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT``."""
        return f"http://127.0.0.1:{self.port}"

    def url(self, path: str) -> str:
        """``base_url + path``."""
        return self.base_url + path

    @property
    def env(self) -> dict[str, str]:
        """Environment variables that point flyte-iap and google-auth at this fake."""
        base = self.base_url
        host = f"127.0.0.1:{self.port}"
        return {
            "FLYTE_IAP_AUTH_URI": base + "/o/oauth2/v2/auth",
            "FLYTE_IAP_TOKEN_URI": base + "/token",
            "FLYTE_IAP_REVOKE_URI": base + "/revoke",
            "FLYTE_IAP_IAMCREDENTIALS_URI": base,
            "FLYTE_IAP_SECRETMANAGER_URI": base,
            "FLYTE_IAP_STS_URI": base,
            "GCE_METADATA_HOST": host,
            "GCE_METADATA_IP": host,
        }

    @property
    def auth_uri(self) -> str:
        """The consent screen (authorization endpoint)."""
        return self.base_url + "/o/oauth2/v2/auth"

    @property
    def token_uri(self) -> str:
        """The OAuth token endpoint."""
        return self.base_url + "/token"

    @property
    def revoke_uri(self) -> str:
        """The OAuth revocation endpoint."""
        return self.base_url + "/revoke"

    @property
    def certs_url(self) -> str:
        """ID-token signing keys as ``{kid: PEM certificate}`` (Google's v1 certs)."""
        return self.base_url + "/oauth2/v1/certs"

    @property
    def jwks_url(self) -> str:
        """ID-token signing keys as a JWK set (Google's v3 certs)."""
        return self.base_url + "/oauth2/v3/certs"

    @property
    def sts_token_url(self) -> str:
        """The STS token-exchange URL (``token_url`` of an external_account credential file)."""
        return self.base_url + "/v1/token"

    def generate_access_token_url(self, service_account: str) -> str:
        """iamcredentials ``generateAccessToken`` for ``service_account`` on this fake."""
        return f"{self.base_url}/v1/projects/-/serviceAccounts/{service_account}:generateAccessToken"

    def generate_id_token_url(self, service_account: str) -> str:
        """iamcredentials ``generateIdToken`` for ``service_account`` on this fake."""
        return f"{self.base_url}/v1/projects/-/serviceAccounts/{service_account}:generateIdToken"

    @property
    def browser_command(self) -> str:
        """A ``BROWSER`` value that makes :mod:`webbrowser` run the scripted user (``browse %s``)."""
        return f"{shlex.quote(sys.executable)} -m flyte_iap.testing browse %s"

    def browser(self, url: str, *, timeout: float = 30.0) -> BrowserResult:
        """The scripted user opens ``url`` (an authorization URL), consents and lands on the loopback page.

        Consent is given as :attr:`user_email`, or refused when :attr:`deny_consent` is set.

        Args:
            url: the URL the login flow would open in a browser.
            timeout: seconds to wait for each page.

        Returns:
            A :class:`BrowserResult` (see :func:`browse`).
        """
        return browse(url, timeout=timeout)

    @property
    def user_sub(self) -> str:
        """The stable ``sub`` claim of :attr:`user_email`."""
        return _numeric_id(self.user_email)

    # ---- keys and tokens ------------------------------------------------------------------------

    @property
    def signing_key_id(self) -> str:
        """The ``kid`` of the key that signs new ID tokens."""
        return self._keys[-1].kid

    def rotate_keys(self) -> str:
        """Sign with a new key; the previous one stays published, as Google does. Returns the new kid."""
        with self._lock:
            self._keys = [*self._keys[-1:], self._new_key()]
            return self._keys[-1].kid

    def mint_id_token(
        self,
        audience: str,
        *,
        email: str | None = None,
        azp: str | None = None,
        lifetime: int | None = None,
        expired: bool = False,
        include_email: bool = True,
        **claims: Any,
    ) -> str:
        """Sign a Google ID token with the fake's current key.

        Args:
            audience: the ``aud`` claim.
            email: the ``email`` claim; defaults to :attr:`user_email`. ``sub`` is derived from it.
            azp: the ``azp`` claim; defaults to ``audience``.
            lifetime: seconds until ``exp``; defaults to :attr:`token_lifetime`.
            expired: issue a token whose ``exp`` is a minute in the past.
            include_email: put ``email`` and ``email_verified`` in (Google leaves them out when the
                ``email`` scope or ``includeEmail`` was not asked for).
            **claims: extra claims, or overrides; a claim given as None is left out.

        Returns:
            The compact JWT.
        """
        email = self.user_email if email is None else email
        lifetime = self.token_lifetime if lifetime is None else lifetime
        now = int(time.time())
        iat = now - lifetime - 60 if expired else now
        payload: dict[str, Any] = {
            "iss": ISSUER,
            "azp": azp or audience,
            "aud": audience,
            "sub": _numeric_id(email),
            "email": email,
            "email_verified": True,
            "iat": iat,
            "exp": iat + lifetime,
        }
        if not include_email:
            del payload["email"], payload["email_verified"]
        payload.update(claims)
        return self._sign({k: v for k, v in payload.items() if v is not None})

    def _new_key(self) -> _SigningKey:
        with self._lock:
            index, self._key_count = self._key_count, self._key_count + 1
        return _SigningKey(_rsa_key(index))

    def _sign(self, claims: dict[str, Any]) -> str:
        with self._lock:
            key = self._keys[-1]
        return key.sign(claims)

    def _new_access_token(
        self,
        principal: str,
        scopes: list[str],
        *,
        client_id: str | None = None,
        refresh_token: str | None = None,
        lifetime: int | None = None,
    ) -> tuple[str, int]:
        lifetime = self.token_lifetime if lifetime is None else lifetime
        token = "ya29.fake-" + secrets.token_urlsafe(32)
        with self._lock:
            self._access_tokens[token] = _AccessGrant(
                principal, scopes, time.time() + lifetime, client_id, refresh_token
            )
        return token, lifetime

    def issue_access_token(self, principal: str, scopes: Iterable[str] = (_CLOUD_PLATFORM,)) -> str:
        """An access token the fake accepts as ``principal`` (a user, service account or federated principal).

        Args:
            principal: the identity the token stands for.
            scopes: its OAuth scopes.

        Returns:
            The bearer token.
        """
        return self._new_access_token(principal, _scopes(scopes))[0]

    def issue_refresh_token(
        self, client_id: str, *, email: str | None = None, scopes: str | Iterable[str] = "openid email"
    ) -> str:
        """A refresh token as if ``email`` had logged in with ``client_id`` (no browser needed).

        Args:
            client_id: a registered OAuth client.
            email: the user; defaults to :attr:`user_email`.
            scopes: the granted scopes (an ``openid`` grant makes refreshes return an ``id_token``).

        Returns:
            The refresh token.

        Raises:
            KeyError: ``client_id`` is not registered.
        """
        if client_id not in self._clients:
            raise KeyError(f"OAuth client {client_id!r} is not registered: call add_oauth_client() first")
        token = "1//0fake-" + secrets.token_urlsafe(40)
        with self._lock:
            self._refresh_tokens[token] = _RefreshGrant(client_id, email or self.user_email, _scopes(scopes))
        return token

    def access_token_info(self, token: str) -> dict[str, Any] | None:
        """Who an access token issued by the fake stands for (``principal``, ``scopes``, ``expires_at``)."""
        with self._lock:
            grant = self._access_tokens.get(token)
        return None if grant is None else dict(grant.__dict__)

    # ---- registration ---------------------------------------------------------------------------

    def add_oauth_client(
        self, client_id: str, client_secret: str, *, redirect_uris: Iterable[str] | None = None
    ) -> None:
        """Register an OAuth client.

        Args:
            client_id: its id.
            client_secret: its secret.
            redirect_uris: exact redirect URIs it accepts (a Web client); default any loopback URI with a
                port (a Desktop client).
        """
        with self._lock:
            uris = tuple(redirect_uris) if redirect_uris is not None else None
            self._clients[client_id] = _Client(client_secret, uris)

    def add_service_account(self, email: str) -> dict[str, str]:
        """Create a service account with a key and return its key file as a dict.

        Args:
            email: e.g. ``ci@my-project.iam.gserviceaccount.com``.

        Returns:
            What ``gcloud iam service-accounts keys create`` writes (``type: service_account``), with
            ``token_uri`` pointing at this fake.
        """
        key = self._new_key()
        with self._lock:
            self._service_accounts[email] = _ServiceAccount(email, key)
        project = email.partition("@")[2].split(".")[0] or self.project_id
        return {
            "type": "service_account",
            "project_id": project,
            "private_key_id": key.kid,
            "private_key": key.private_pem,
            "client_email": email,
            "client_id": _numeric_id(email),
            "auth_uri": self.auth_uri,
            "token_uri": self.token_uri,
            "auth_provider_x509_cert_url": self.certs_url,
            "client_x509_cert_url": f"{self.base_url}/robot/v1/metadata/x509/{urllib.parse.quote(email)}",
            "universe_domain": "googleapis.com",
        }

    def allow_impersonation(self, caller: str, target_sa: str) -> None:
        """Let ``caller`` mint tokens for ``target_sa`` through iamcredentials.

        This stands for ``roles/iam.serviceAccountTokenCreator`` (both ``getOpenIdToken`` and
        ``getAccessToken``). ``target_sa`` becomes a known service account if it was not.

        Args:
            caller: a user or service-account email, a federated ``principal://...`` identity, or a
                ``principalSet://.../workloadIdentityPools/POOL/*`` matching all of a pool's principals.
            target_sa: the service account email.
        """
        with self._lock:
            self._impersonation.add((caller, target_sa))
            self._service_accounts.setdefault(target_sa, _ServiceAccount(target_sa))

    def add_workload_identity_pool(
        self,
        audience: str,
        *,
        allowed_audiences: Iterable[str] | None = None,
        issuer: str | None = None,
    ) -> dict[str, str]:
        """Register a Workload Identity Federation provider that STS accepts subject tokens for.

        Args:
            audience: the provider, as an external_account file's ``audience``:
                ``//iam.googleapis.com/projects/NUM/locations/global/workloadIdentityPools/POOL/providers/P``.
            allowed_audiences: ``aud`` values accepted in subject tokens; default the provider's https URL
                (``https:`` + audience), as Google's default.
            issuer: the ``iss`` subject tokens must carry; default :attr:`external_issuer`.

        Returns:
            ``{"audience", "principal_set", "subject_token_audience"}``.

        Raises:
            ValueError: ``audience`` is not a provider resource name.
        """
        match = _POOL_AUDIENCE.match(audience)
        if match is None:
            raise ValueError(
                "a workload identity provider audience looks like //iam.googleapis.com/projects/NUM/"
                f"locations/global/workloadIdentityPools/POOL/providers/PROVIDER, not {audience!r}"
            )
        audience = audience.removeprefix("https:")
        allowed = tuple(allowed_audiences) if allowed_audiences is not None else ("https:" + audience,)
        pool = _Pool(audience, match["number"], match["pool"], allowed, issuer or self.external_issuer)
        with self._lock:
            self._pools[audience] = pool
        return {
            "audience": audience,
            "principal_set": self._principal_set(pool),
            "subject_token_audience": allowed[0] if allowed else "",
        }

    @property
    def external_issuer(self) -> str:
        """The ``iss`` of subject tokens from :meth:`mint_subject_token` (the fake CI identity provider)."""
        return self.base_url + "/external-idp"

    def mint_subject_token(
        self,
        audience: str,
        *,
        subject: str = "repo:example/flyte-workflows:ref:refs/heads/main",
        lifetime: int | None = None,
        expired: bool = False,
        **claims: Any,
    ) -> str:
        """An OIDC token like a CI provider (GitHub Actions, GitLab) issues, for STS to exchange.

        Args:
            audience: a pool provider audience (``//iam.googleapis.com/...``; the ``aud`` claim becomes its
                ``https:`` URL) or a literal ``aud`` value.
            subject: the ``sub`` claim, which names the federated principal.
            lifetime: seconds until ``exp``; default :attr:`token_lifetime`.
            expired: issue a token whose ``exp`` is in the past.
            **claims: extra claims or overrides; None leaves a claim out.

        Returns:
            The compact JWT, signed by the fake identity provider's key (not Google's).
        """
        with self._lock:
            if self._idp_key is None:
                self._idp_key = self._new_key()
            key = self._idp_key
        lifetime = self.token_lifetime if lifetime is None else lifetime
        now = int(time.time())
        iat = now - lifetime - 60 if expired else now
        aud = "https:" + audience if audience.startswith("//") else audience
        payload: dict[str, Any] = {
            "iss": self.external_issuer,
            "aud": aud,
            "sub": subject,
            "iat": iat,
            "nbf": iat,
            "exp": iat + lifetime,
        }
        payload.update(claims)
        return key.sign({k: v for k, v in payload.items() if v is not None})

    def workload_identity_principal(self, audience: str, subject: str) -> str:
        """The identity of a federated access token for ``subject`` in the pool of ``audience``.

        Returns:
            ``principal://iam.googleapis.com/projects/NUM/locations/global/workloadIdentityPools/POOL/subject/SUBJECT``.
        """
        match = _POOL_AUDIENCE.match(audience)
        if match is None:
            raise ValueError(f"not a workload identity provider audience: {audience!r}")
        return (
            f"principal:{_IAM_PRINCIPAL}/projects/{match['number']}/locations/global/"
            f"workloadIdentityPools/{match['pool']}/subject/{subject}"
        )

    @staticmethod
    def _principal_set(pool: _Pool) -> str:
        return (
            f"principalSet:{_IAM_PRINCIPAL}/projects/{pool.project_number}/locations/global/"
            f"workloadIdentityPools/{pool.pool}/*"
        )

    def set_secret(self, name: str, value: str | bytes, *, accessors: Iterable[str] | None = None) -> str:
        """Add a version to a Secret Manager secret (creating it).

        Args:
            name: ``projects/P/secrets/S``.
            value: the payload.
            accessors: principals allowed to read it; default anyone with a valid access token. Others
                get 403 PERMISSION_DENIED.

        Returns:
            The new version's resource name (``projects/P/secrets/S/versions/N``).
        """
        if not re.fullmatch(r"projects/[^/]+/secrets/[^/]+", name):
            raise ValueError(f"a secret name looks like projects/P/secrets/S, not {name!r}")
        data = value.encode() if isinstance(value, str) else bytes(value)
        with self._lock:
            secret = self._secrets.setdefault(name, _Secret([], None))
            secret.versions.append(data)
            if accessors is not None:
                secret.accessors = frozenset(accessors)
            return f"{name}/versions/{len(secret.versions)}"

    # ---- recording and faults -------------------------------------------------------------------

    def requests_to(self, path_prefix: str) -> list[RecordedRequest]:
        """Recorded requests whose path starts with ``path_prefix``, oldest first."""
        with self._lock:
            return [r for r in self.requests if r.path.startswith(path_prefix)]

    def clear_requests(self) -> None:
        """Forget every recorded request."""
        with self._lock:
            self.requests.clear()

    def fail_next(
        self, n: int = 1, status: int = 500, path: str | None = None, *, body: bytes | None = None
    ) -> None:
        """Answer the next ``n`` requests (whose path starts with ``path``) with HTTP ``status``.

        The body is Google's JSON error shape for that status unless ``body`` is given.
        """
        self._add_fault(_Fault("fail", n, path, status=status, body=body))

    def delay_next(self, seconds: float, n: int = 1, path: str | None = None) -> None:
        """Hold the next ``n`` matching requests for ``seconds`` before answering them normally."""
        self._add_fault(_Fault("delay", n, path, seconds=seconds))

    def malformed_next(self, n: int = 1, path: str | None = None, *, body: bytes = MALFORMED_BODY) -> None:
        """Answer the next ``n`` matching requests with HTTP 200 and a body the client cannot use.

        The default body is an HTML page (a captive portal), served as ``application/json`` on JSON
        endpoints.
        """
        self._add_fault(_Fault("malformed", n, path, status=200, body=body))

    def oauth_error_next(
        self,
        error: str = "invalid_grant",
        n: int = 1,
        path: str | None = "/token",
        status: int = 400,
        *,
        description: str | None = None,
    ) -> None:
        """Answer the next ``n`` matching requests with an OAuth error ``{"error", "error_description"}``."""
        self._add_fault(_Fault("oauth_error", n, path, status=status, error=error, description=description))

    def _add_fault(self, fault: _Fault) -> None:
        if fault.remaining < 1:
            raise ValueError("n must be at least 1")
        with self._lock:
            self._faults.append(fault)

    def _take_faults(self, path: str) -> tuple[float, _Fault | None]:
        delay, answer = 0.0, None
        with self._lock:
            for fault in self._faults:
                if fault.kind == "delay" and fault.matches(path):
                    fault.remaining -= 1
                    delay += fault.seconds
            for fault in self._faults:
                if fault.kind != "delay" and fault.matches(path):
                    fault.remaining -= 1
                    answer = fault
                    break
            self._faults = [f for f in self._faults if f.remaining > 0]
        return delay, answer

    # ---- dispatch -------------------------------------------------------------------------------

    def _handle(self, request: RecordedRequest) -> _Response:
        with self._lock:
            self.requests.append(request)
        delay, fault = self._take_faults(request.path)
        if delay:
            request.fault = "delay"
            time.sleep(delay)
        if fault is not None:
            request.fault = fault.kind
            response = self._fault_response(fault, request)
        else:
            try:
                response = self._route(request)
            except _OAuthError as exc:
                response = _oauth_error(exc.error, exc.description, exc.status)
            except _ApiError as exc:
                response = _api_error(exc.status, exc.message, exc.details)
            except Exception as exc:
                # A bug in the fake: answer like Google's 500 (so the client under test does not hang)
                # and keep the traceback where a failing test shows it.
                traceback.print_exc()
                response = _api_error(500, f"FakeGoogle failed: {exc!r}")
        if request.path == "/" or request.path.startswith("/computeMetadata/"):
            response.headers.update(_METADATA_FLAVOR)
        request.status = response.status
        return response

    def _fault_response(self, fault: _Fault, request: RecordedRequest) -> _Response:
        if fault.kind == "oauth_error":
            description = fault.description or _OAUTH_ERROR_DESCRIPTIONS.get(fault.error, "Bad Request")
            return _oauth_error(fault.error, description, fault.status)
        if fault.kind == "malformed":
            assert fault.body is not None
            json_endpoint = not request.path.startswith(("/computeMetadata/", "/o/oauth2"))
            content_type = "application/json; charset=utf-8" if json_endpoint else "text/html; charset=UTF-8"
            return _Response(200, fault.body, {"Content-Type": content_type})
        if fault.body is not None:
            return _Response(fault.status, fault.body, {"Content-Type": "text/html; charset=UTF-8"})
        return _api_error(fault.status, _status_message(fault.status))

    def _route(self, request: RecordedRequest) -> _Response:
        path, method = request.path, request.method
        if path == "/" or path.startswith("/computeMetadata/"):
            return self._metadata(request)
        routes: dict[str, tuple[str, Any]] = {
            "/o/oauth2/v2/auth": ("GET", self._authorize),
            "/o/oauth2/auth": ("GET", self._authorize),
            "/token": ("POST", self._token),
            "/revoke": ("POST", self._revoke),
            "/oauth2/v1/certs": ("GET", self._certs_v1),
            "/oauth2/v3/certs": ("GET", self._certs_v3),
            "/v1/token": ("POST", self._sts),
            "/.well-known/openid-configuration": ("GET", self._discovery),
            "/oauth2/v3/tokeninfo": ("GET", self._tokeninfo),
        }
        if path in routes:
            allowed, handler = routes[path]
            if method != allowed and not (path == "/revoke" and method == "GET"):
                return _not_found(request, status=405)
            return handler(request)
        match = re.fullmatch(
            r"/v1/projects/([^/]+)/serviceAccounts/([^/:]+):(generateIdToken|generateAccessToken|signJwt)",
            path,
        )
        if match:
            if method != "POST":
                return _not_found(request, status=405)
            if match[1] != "-":
                # IAM Credentials reference: the "-" wildcard is required; a project ID is invalid.
                raise _ApiError(400, "Request contains an invalid argument.")
            return self._iamcredentials(request, urllib.parse.unquote(match[2]), match[3])
        match = re.fullmatch(r"/robot/v1/metadata/x509/([^/]+)", path)
        if match:
            if method != "GET":
                return _not_found(request, status=405)
            return self._service_account_certs(request, urllib.parse.unquote(match[1]))
        if path == "/iap/verify/public_key-jwk":
            with self._lock:
                keys = [k for jwks in self._iap_jwks for k in jwks.get("keys", [])]
            return _json(200, {"keys": keys}, self._cache_headers())
        match = re.fullmatch(r"/v1/(projects/[^/]+/secrets/[^/]+)/versions/([^/:]+):access", path)
        if match:
            if method != "GET":
                return _not_found(request, status=405)
            return self._secret_access(request, match[1], match[2])
        return _not_found(request)

    # ---- OAuth: consent screen ------------------------------------------------------------------

    def _authorize(self, request: RecordedRequest) -> _Response:
        q = request.query
        client_id = q.get("client_id", "")
        with self._lock:
            client = self._clients.get(client_id)
        if not client_id:
            return _consent_error(400, "invalid_request", "Missing required parameter: client_id", q)
        if client is None:
            return _consent_error(401, "invalid_client", "The OAuth client was not found.", q)
        redirect_uri = q.get("redirect_uri", "")
        if not redirect_uri:
            return _consent_error(400, "invalid_request", "Missing required parameter: redirect_uri", q)
        if not _redirect_allowed(client, redirect_uri):
            return _consent_error(
                400,
                "redirect_uri_mismatch",
                f"You can't sign in to this app because it doesn't comply with Google's OAuth 2.0 policy. "
                f"redirect_uri={redirect_uri} is not a registered redirect URI, nor a loopback "
                f"http://127.0.0.1:PORT/ or http://localhost:PORT/ address.",
                q,
            )
        if q.get("response_type") != "code":
            return _consent_error(
                400, "unsupported_response_type", f"Invalid response_type: {q.get('response_type', '')}", q
            )
        scopes = _scopes(q.get("scope", ""))
        if not scopes:
            return _consent_error(400, "invalid_request", "Missing required parameter: scope", q)
        if "openid" not in scopes:
            return _consent_error(
                400, "invalid_request", "This fake requires the openid scope: an ID token is the point.", q
            )
        if not q.get("state"):
            return _consent_error(400, "invalid_request", "Missing required parameter: state", q)
        challenge, method = q.get("code_challenge", ""), q.get("code_challenge_method", "")
        if not challenge or method != "S256":
            return _consent_error(
                400,
                "invalid_request",
                "code_challenge and code_challenge_method=S256 are required (PKCE); "
                f"got code_challenge_method={method or '(none)'}",
                q,
            )
        if not re.fullmatch(r"[A-Za-z0-9_-]{43}", challenge):
            return _consent_error(
                400, "invalid_request", "Invalid code_challenge: not a base64url SHA-256.", q
            )

        if self.deny_consent:
            params = {"error": "access_denied", "state": q["state"]}
        else:
            code = "4/0Afake-" + secrets.token_urlsafe(32)
            with self._lock:
                self._codes[code] = _Code(
                    client_id=client_id,
                    redirect_uri=redirect_uri,
                    challenge=challenge,
                    scopes=scopes,
                    email=self.user_email,
                    offline=q.get("access_type") == "offline",
                    nonce=q.get("nonce"),
                    expires_at=time.time() + self.code_lifetime,
                )
            params = {
                "state": q["state"],
                "code": code,
                "scope": " ".join(scopes),
                "authuser": "0",
                "prompt": "consent",
            }
        separator = "&" if urllib.parse.urlsplit(redirect_uri).query else "?"
        location = redirect_uri + separator + urllib.parse.urlencode(params)
        return _Response(
            302, _redirect_page(location), {"Location": location, "Content-Type": "text/html; charset=UTF-8"}
        )

    # ---- OAuth: token endpoint ------------------------------------------------------------------

    def _token(self, request: RecordedRequest) -> _Response:
        form = request.params
        grant_type = form.get("grant_type", "")
        if not grant_type:
            raise _OAuthError("unsupported_grant_type", "Invalid grant_type: ")
        if grant_type == "authorization_code":
            return self._grant_code(request, form)
        if grant_type == "refresh_token":
            return self._grant_refresh(request, form)
        if grant_type == _JWT_BEARER:
            return self._grant_jwt_bearer(request, form)
        if grant_type == _TOKEN_EXCHANGE:
            return self._sts(request)
        raise _OAuthError("unsupported_grant_type", f"Invalid grant_type: {grant_type}")

    def _authenticate_client(self, request: RecordedRequest, form: dict[str, str]) -> str:
        client_id, client_secret = form.get("client_id"), form.get("client_secret")
        auth = request.headers.get("authorization", "")
        if auth.lower().startswith("basic "):
            try:
                user, _, password = base64.b64decode(auth[6:]).decode().partition(":")
            except ValueError:
                raise _OAuthError("invalid_client", "Unauthorized", 401) from None
            client_id = urllib.parse.unquote_plus(user)
            client_secret = urllib.parse.unquote_plus(password)
        if not client_id:
            raise _OAuthError("invalid_request", "Could not determine client ID from request.")
        with self._lock:
            client = self._clients.get(client_id)
        if client is None:
            raise _OAuthError("invalid_client", "The OAuth client was not found.", 401)
        if not client_secret:
            raise _OAuthError("invalid_request", "client_secret is missing.")
        if not secrets.compare_digest(client_secret, client.secret):
            raise _OAuthError("invalid_client", "Unauthorized", 401)
        return client_id

    def _grant_code(self, request: RecordedRequest, form: dict[str, str]) -> _Response:
        client_id = self._authenticate_client(request, form)
        code_value = form.get("code", "")
        if not code_value:
            raise _OAuthError("invalid_request", "Missing required parameter: code")
        with self._lock:
            code = self._codes.get(code_value)
            first_use = code is not None and not code.used
            if code is not None:
                code.used = True
        if code is None:
            raise _OAuthError("invalid_grant", "Malformed auth code.")
        if not first_use or time.time() >= code.expires_at or code.client_id != client_id:
            raise _OAuthError("invalid_grant", "Bad Request")
        if form.get("redirect_uri", "") != code.redirect_uri:
            raise _OAuthError("redirect_uri_mismatch", "Bad Request")
        verifier = form.get("code_verifier", "")
        if not verifier:
            raise _OAuthError("invalid_grant", "Missing code verifier.")
        if not 43 <= len(verifier) <= 128 or not re.fullmatch(r"[A-Za-z0-9._~-]+", verifier):
            raise _OAuthError("invalid_grant", "Invalid code verifier.")
        expected = _b64url(hashlib.sha256(verifier.encode("ascii")).digest())
        if not secrets.compare_digest(expected, code.challenge):
            raise _OAuthError("invalid_grant", "Invalid code verifier.")
        refresh_token = None
        if code.offline:
            refresh_token = self.issue_refresh_token(client_id, email=code.email, scopes=code.scopes)
        access_token, lifetime = self._new_access_token(
            code.email, code.scopes, client_id=client_id, refresh_token=refresh_token
        )
        body: dict[str, Any] = {"access_token": access_token, "expires_in": lifetime}
        if refresh_token:
            body["refresh_token"] = refresh_token
        body["scope"] = " ".join(code.scopes)
        body["token_type"] = "Bearer"
        if "openid" in code.scopes:
            body["id_token"] = self._user_id_token(
                code.email, code.scopes, client_id, client_id, access_token, nonce=code.nonce
            )
        return _json(200, body)

    def _user_id_token(
        self,
        email: str,
        scopes: list[str],
        audience: str,
        client_id: str,
        access_token: str,
        nonce: str | None = None,
    ) -> str:
        digest = hashlib.sha256(access_token.encode()).digest()
        with_email = _USERINFO_EMAIL in scopes
        return self.mint_id_token(
            audience,
            email=email,
            azp=client_id,
            at_hash=_b64url(digest[:16]),
            nonce=nonce,
            include_email=with_email,
        )

    def _grant_refresh(self, request: RecordedRequest, form: dict[str, str]) -> _Response:
        client_id = self._authenticate_client(request, form)
        token = form.get("refresh_token", "")
        if not token:
            raise _OAuthError("invalid_request", "Missing required parameter: refresh_token")
        with self._lock:
            revoked = token in self.revoked_tokens
            grant = self._refresh_tokens.get(token)
        if revoked:
            raise _OAuthError("invalid_grant", "Token has been expired or revoked.")
        if grant is None:
            raise _OAuthError("invalid_grant", "Bad Request")
        if grant.client_id != client_id:
            raise _OAuthError("unauthorized_client", "Unauthorized", 401)
        scopes = grant.scopes
        if form.get("scope"):
            asked = _scopes(form["scope"])
            if not set(asked) <= set(grant.scopes):
                raise _OAuthError(
                    "invalid_scope",
                    "Some requested scopes were invalid. {invalid="
                    + ", ".join(sorted(set(asked) - set(grant.scopes)))
                    + "}",
                )
            scopes = asked
        access_token, lifetime = self._new_access_token(
            grant.email, scopes, client_id=client_id, refresh_token=token
        )
        body: dict[str, Any] = {
            "access_token": access_token,
            "expires_in": lifetime,
            "scope": " ".join(scopes),
            "token_type": "Bearer",
        }
        if "openid" in scopes:
            audience = form.get("audience") or client_id
            if audience != client_id:
                with self._lock:
                    known = audience in self._clients
                if not known or _client_project(audience) != _client_project(client_id):
                    raise _OAuthError(
                        "invalid_audience",
                        "The audience client and the client need to be in the same project.",
                    )
            body["id_token"] = self._user_id_token(grant.email, scopes, audience, client_id, access_token)
        return _json(200, body)

    def _grant_jwt_bearer(self, request: RecordedRequest, form: dict[str, str]) -> _Response:
        assertion = form.get("assertion", "")
        try:
            header, claims, signed, signature = _split_jwt(assertion)
        except ValueError:
            raise _OAuthError("invalid_grant", "Invalid JWT: could not parse the assertion.") from None
        issuer = claims.get("iss", "")
        with self._lock:
            account = self._service_accounts.get(issuer)
        if account is None or account.key is None:
            raise _OAuthError("invalid_grant", "Invalid grant: account not found")
        if header.get("alg") != "RS256" or not account.key.verifier.verify(signed, signature):
            raise _OAuthError("invalid_grant", "Invalid JWT Signature.")
        if header.get("kid") not in (None, account.key.kid):
            raise _OAuthError("invalid_grant", "Invalid JWT Signature.")
        accepted = {
            self.token_uri,
            endpoints.OVERRIDES["FLYTE_IAP_TOKEN_URI"],
            f"http://localhost:{self.port}/token",
        }
        if claims.get("aud") not in accepted:
            raise _OAuthError(
                "invalid_grant", f"Invalid JWT: Failed audience check. The right audience is {self.token_uri}"
            )
        now = time.time()
        iat, exp = claims.get("iat"), claims.get("exp")
        if (
            not isinstance(iat, int | float)
            or not isinstance(exp, int | float)
            or exp - iat > 3600
            or exp < now
            or iat > now + 300
        ):
            raise _OAuthError(
                "invalid_grant",
                "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe. "
                "Check your iat and exp values in the assertion and use a clock with skew to account for "
                "clock differences between systems.",
            )
        if claims.get("target_audience"):
            return _json(
                200, {"id_token": self._service_account_id_token(account, claims["target_audience"])}
            )
        scopes = _scopes(claims.get("scope"))
        if not scopes:
            raise _OAuthError("invalid_scope", "Invalid OAuth scope or ID token audience provided.")
        principal = claims.get("sub") or account.email
        access_token, lifetime = self._new_access_token(principal, scopes)
        return _json(200, {"access_token": access_token, "expires_in": lifetime, "token_type": "Bearer"})

    def _service_account_id_token(
        self, account: _ServiceAccount | str, audience: str, *, include_email: bool = True, **claims: Any
    ) -> str:
        email = account if isinstance(account, str) else account.email
        return self.mint_id_token(
            audience, email=email, azp=_numeric_id(email), include_email=include_email, **claims
        )

    # ---- OAuth: revoke, certs, discovery --------------------------------------------------------

    def _revoke(self, request: RecordedRequest) -> _Response:
        token = request.params.get("token") or request.query.get("token", "")
        with self._lock:
            known = token in self._refresh_tokens or token in self._access_tokens
            if not token or not known or token in self.revoked_tokens:
                return _oauth_error("invalid_token", "Token expired or revoked", 400)
            grant = self._access_tokens.get(token)
            refresh = grant.refresh_token if grant is not None else token
            self.revoked_tokens.add(token)
            if refresh is not None:
                # Google revokes the whole grant: the refresh token and every access token it minted.
                self.revoked_tokens.add(refresh)
                self.revoked_tokens.update(
                    t for t, g in self._access_tokens.items() if g.refresh_token == refresh
                )
        return _Response(200, b"", {"Content-Type": "text/html; charset=utf-8"})

    def _cache_headers(self) -> dict[str, str]:
        return {"Cache-Control": "public, max-age=19000, must-revalidate, no-transform"}

    def _certs_v1(self, request: RecordedRequest) -> _Response:
        with self._lock:
            keys = list(self._keys)
        return _json(200, {key.kid: key.cert_pem for key in keys}, self._cache_headers())

    def _certs_v3(self, request: RecordedRequest) -> _Response:
        with self._lock:
            keys = list(self._keys)
        return _json(200, {"keys": [key.jwk for key in keys]}, self._cache_headers())

    def _discovery(self, request: RecordedRequest) -> _Response:
        return _json(
            200,
            {
                "issuer": ISSUER,
                "authorization_endpoint": self.auth_uri,
                "token_endpoint": self.token_uri,
                "revocation_endpoint": self.revoke_uri,
                "jwks_uri": self.jwks_url,
                "response_types_supported": ["code"],
                "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["RS256"],
                "scopes_supported": ["openid", "email", "profile"],
                "code_challenge_methods_supported": ["S256"],
                "grant_types_supported": [
                    "authorization_code",
                    "refresh_token",
                    _JWT_BEARER,
                    _TOKEN_EXCHANGE,
                ],
            },
        )

    def _tokeninfo(self, request: RecordedRequest) -> _Response:
        if "access_token" in request.query:
            grant = self._valid_access_grant(request.query["access_token"])
            if grant is None:
                raise _OAuthError("invalid_token", "Invalid Value")
            info = {"scope": " ".join(grant.scopes), "expires_in": str(int(grant.expires_at - time.time()))}
            if "@" in grant.principal:
                info["email"] = grant.principal
            return _json(200, info)
        try:
            _, claims, _, _ = _split_jwt(request.query.get("id_token", ""))
        except ValueError:
            raise _OAuthError("invalid_token", "Invalid Value") from None
        return _json(200, {k: str(v) for k, v in claims.items()})

    # ---- metadata server ------------------------------------------------------------------------

    def _metadata(self, request: RecordedRequest) -> _Response:
        if request.headers.get("metadata-flavor") != "Google" or "x-forwarded-for" in request.headers:
            body = (
                "<!DOCTYPE html><html lang=en><title>Error 403 (Forbidden)!!1</title>"
                "<p><b>403.</b> <ins>That's an error.</ins>"
                "<p>Your client does not have permission to get URL "
                f"<code>{html.escape(request.path)}</code> from this server. Missing Metadata-Flavor:Google "
                "header. <ins>That's all we know.</ins>"
            )
            return _Response(403, body.encode(), {"Content-Type": "text/html; charset=UTF-8"})
        if request.method != "GET":
            return _text(405, "Method not allowed")
        path = request.path
        if path in ("/", "/computeMetadata/", "/computeMetadata/v1/"):
            return _text(200, "computeMetadata/\n" if path == "/" else "instance/\nproject/\n")
        project = {
            "/computeMetadata/v1/project/project-id": self.project_id,
            "/computeMetadata/v1/project/numeric-project-id": self.project_number,
            "/computeMetadata/v1/instance/zone": f"projects/{self.project_number}/zones/us-central1-a",
            "/computeMetadata/v1/instance/id": "4520031799277581759",
        }
        if path in project:
            return _text(200, project[path])
        prefix = "/computeMetadata/v1/instance/service-accounts/"
        if path == prefix:
            return _text(200, f"default/\n{self.metadata_service_account}/\n")
        if not path.startswith(prefix):
            return _not_found(request)
        account, _, item = path[len(prefix) :].partition("/")
        if account not in ("default", self.metadata_service_account):
            return _not_found(request)
        email = self.metadata_service_account
        if item == "":
            if request.query.get("recursive", "").lower() == "true":
                return _json(200, {"aliases": ["default"], "email": email, "scopes": self.metadata_scopes})
            return _text(200, "aliases\nemail\nidentity\nscopes\ntoken\n")
        if item == "email":
            return _text(200, email)
        if item == "aliases":
            return _text(200, "default\n")
        if item == "scopes":
            return _text(200, "".join(s + "\n" for s in self.metadata_scopes))
        if item == "token":
            scopes = (
                _scopes(request.query["scopes"].split(","))
                if request.query.get("scopes")
                else self.metadata_scopes
            )
            token, lifetime = self._new_access_token(email, list(scopes))
            return _json(200, {"access_token": token, "expires_in": lifetime, "token_type": "Bearer"})
        if item == "identity":
            audience = request.query.get("audience", "")
            if not audience:
                return _text(400, "non-empty audience parameter required")
            full = request.query.get("format") == "full"
            extra: dict[str, Any] = {}
            if full:
                extra["google"] = {
                    "compute_engine": {
                        "instance_creation_timestamp": 1700000000,
                        "instance_id": "4520031799277581759",
                        "instance_name": "fake-instance",
                        "project_id": self.project_id,
                        "project_number": int(self.project_number),
                        "zone": "us-central1-a",
                    }
                }
            token = self._service_account_id_token(email, audience, include_email=full, **extra)
            return _text(200, token)
        return _not_found(request)

    # ---- IAM Credentials ------------------------------------------------------------------------

    def _valid_access_grant(self, token: str | None) -> _AccessGrant | None:
        if not token:
            return None
        with self._lock:
            grant = self._access_tokens.get(token)
            if grant is None or token in self.revoked_tokens or time.time() >= grant.expires_at:
                return None
            if grant.refresh_token is not None and grant.refresh_token in self.revoked_tokens:
                return None
            return grant

    def _caller(self, request: RecordedRequest) -> _AccessGrant:
        grant = self._valid_access_grant(request.bearer)
        if grant is None:
            raise _ApiError(
                401,
                "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie "
                "or other valid authentication credential. See "
                "https://developers.google.com/identity/sign-in/web/devconsole-project.",
                [
                    _error_info(
                        "ACCESS_TOKEN_TYPE_UNSUPPORTED" if request.bearer else "CREDENTIALS_MISSING",
                        "googleapis.com",
                    )
                ],
            )
        return grant

    def _may_impersonate(self, caller: str, target: str) -> bool:
        with self._lock:
            if (caller, target) in self._impersonation:
                return True
            if caller.startswith("principal://"):
                pool_prefix = caller.split("/subject/", 1)[0].replace("principal://", "principalSet://", 1)
                return (pool_prefix + "/*", target) in self._impersonation
            return False

    def _iamcredentials(self, request: RecordedRequest, target: str, method: str) -> _Response:
        caller = self._caller(request)
        permission = {
            "generateIdToken": "iam.serviceAccounts.getOpenIdToken",
            "generateAccessToken": "iam.serviceAccounts.getAccessToken",
            "signJwt": "iam.serviceAccounts.signJwt",
        }[method]
        if not {_CLOUD_PLATFORM, _IAM_SCOPE} & set(caller.scopes):
            raise _ApiError(
                403,
                "Request had insufficient authentication scopes.",
                [
                    _error_info(
                        "ACCESS_TOKEN_SCOPE_INSUFFICIENT",
                        "googleapis.com",
                        {
                            "service": "iamcredentials.googleapis.com",
                            "method": "google.iam.credentials.v1.IAMCredentials."
                            + method[0].upper()
                            + method[1:],
                        },
                    )
                ],
            )
        body = request.json
        if not isinstance(body, dict):
            raise _ApiError(400, "Invalid JSON payload received. Expected an object.")
        with self._lock:
            known = target in self._service_accounts or target == self.metadata_service_account
        if not known:
            raise _ApiError(404, f"Not found; Gaia id not found for email {target}")
        delegates = [str(d).rsplit("/", 1)[-1] for d in body.get("delegates") or []]
        chain = [caller.principal, *delegates, target]
        for source, destination in itertools.pairwise(chain):
            if not self._may_impersonate(source, destination):
                resource = f"projects/-/serviceAccounts/{destination}"
                raise _ApiError(
                    403,
                    f"Permission '{permission}' denied on resource (or it may not exist).",
                    [
                        _error_info(
                            "IAM_PERMISSION_DENIED",
                            "iam.googleapis.com",
                            {"permission": permission, "resource": resource},
                        )
                    ],
                )
        if method == "signJwt":
            return self._sign_jwt(target, body)
        if method == "generateIdToken":
            audience = body.get("audience")
            if not audience or not isinstance(audience, str):
                raise _ApiError(400, "Request contains an invalid argument.")
            include_email = bool(body.get("includeEmail"))
            return _json(
                200, {"token": self._service_account_id_token(target, audience, include_email=include_email)}
            )
        scopes = body.get("scope")
        if not scopes or not isinstance(scopes, list):
            raise _ApiError(400, "Request contains an invalid argument.")
        lifetime = self.token_lifetime
        if body.get("lifetime"):
            match = re.fullmatch(r"(\d+)(?:\.\d+)?s", str(body["lifetime"]))
            if match is None or not 1 <= int(match[1]) <= 43200:
                raise _ApiError(400, "Request contains an invalid argument.")
            lifetime = int(match[1])
        token, lifetime = self._new_access_token(target, _scopes(scopes), lifetime=lifetime)
        return _json(200, {"accessToken": token, "expireTime": _rfc3339(time.time() + lifetime)})

    def _system_key(self, email: str) -> _SigningKey:
        with self._lock:
            account = self._service_accounts.setdefault(email, _ServiceAccount(email))
            if account.system_key is None:
                account.system_key = self._new_key()
            return account.system_key

    def _sign_jwt(self, target: str, body: dict[str, Any]) -> _Response:
        payload = body.get("payload")
        try:
            claims = json.loads(payload) if isinstance(payload, str) else None
        except ValueError:
            claims = None
        if not isinstance(claims, dict):
            raise _ApiError(400, "Request contains an invalid argument.")
        now = time.time()
        if "exp" not in claims:
            claims["exp"] = int(now) + 3600
        exp = claims["exp"]
        if not isinstance(exp, int) or isinstance(exp, bool) or exp < now or exp > now + _SIGN_JWT_MAX_EXP:
            raise _ApiError(400, "Request contains an invalid argument.")
        key = self._system_key(target)
        return _json(200, {"keyId": key.kid, "signedJwt": key.sign(claims)})

    def _service_account_certs(self, request: RecordedRequest, email: str) -> _Response:
        with self._lock:
            account = self._service_accounts.get(email)
            keys = [] if account is None else [k for k in (account.key, account.system_key) if k is not None]
        if account is None:
            return _not_found(request)
        return _json(200, {key.kid: key.cert_pem for key in keys}, self._cache_headers())

    def service_account_keys_url(self, email: str) -> str:
        """Where a service account's public keys are (Google: ``.../robot/v1/metadata/x509/EMAIL``)."""
        return f"{self.base_url}/robot/v1/metadata/x509/{urllib.parse.quote(email)}"

    def publish_iap_keys(self, jwks: dict[str, Any]) -> str:
        """Serve an :class:`~flyte_iap.testing.IapProxy`'s signed-header keys, as gstatic serves IAP's.

        Args:
            jwks: :attr:`IapProxy.jwks <flyte_iap.testing.IapProxy.jwks>`.

        Returns:
            The URL a backend fetches them from (IAP's is ``https://www.gstatic.com/iap/verify/public_key-jwk``).
        """
        with self._lock:
            self._iap_jwks.append(jwks)
        return self.iap_keys_url

    @property
    def iap_keys_url(self) -> str:
        """The JWK set of every IAP signed-header key published with :meth:`publish_iap_keys`."""
        return f"{self.base_url}/iap/verify/public_key-jwk"

    # ---- Secret Manager -------------------------------------------------------------------------

    def _secret_access(self, request: RecordedRequest, name: str, version: str) -> _Response:
        caller = self._caller(request)
        resource = f"{name}/versions/{version}"
        # Google accepts the project id or number in the request and answers with the number.
        canonical = re.sub(r"^projects/[^/]+", f"projects/{self.project_number}", name)
        with self._lock:
            secret = self._secrets.get(name) or self._secrets.get(canonical)
            if secret is None:
                alias = re.sub(r"^projects/[^/]+", f"projects/{self.project_id}", name)
                secret = self._secrets.get(alias)
        if secret is None:
            raise _ApiError(404, f"Secret [{name}] not found or has no versions.")
        if secret.accessors is not None and caller.principal not in secret.accessors:
            raise _ApiError(
                403,
                f"Permission 'secretmanager.versions.access' denied for resource '{resource}' "
                "(or it may not exist).",
                [
                    _error_info(
                        "IAM_PERMISSION_DENIED",
                        "secretmanager.googleapis.com",
                        {"permission": "secretmanager.versions.access", "resource": resource},
                    )
                ],
            )
        if version == "latest":
            number = len(secret.versions)
        elif version.isdigit() and 1 <= int(version) <= len(secret.versions):
            number = int(version)
        else:
            raise _ApiError(404, f"Secret Version [{resource}] not found.")
        data = secret.versions[number - 1]
        project = (
            self.project_number
            if name.split("/")[1] in (self.project_id, self.project_number)
            else (name.split("/")[1])
        )
        full_name = f"projects/{project}/secrets/{name.split('/')[3]}/versions/{number}"
        payload = {"data": base64.b64encode(data).decode("ascii"), "dataCrc32c": str(_crc32c(data))}
        return _json(200, {"name": full_name, "payload": payload})

    # ---- STS ------------------------------------------------------------------------------------

    def _sts(self, request: RecordedRequest) -> _Response:
        form = request.params
        if form.get("grant_type") != _TOKEN_EXCHANGE:
            raise _OAuthError("unsupported_grant_type", f"Invalid grant_type: {form.get('grant_type', '')}")
        for name in ("audience", "subject_token", "subject_token_type"):
            if not form.get(name):
                raise _OAuthError("invalid_request", f"Missing required parameter: {name}")
        if form["subject_token_type"] not in _SUBJECT_TOKEN_TYPES:
            raise _OAuthError("invalid_request", f"Invalid subject_token_type: {form['subject_token_type']}")
        requested = form.get("requested_token_type", _ACCESS_TOKEN_TYPE)
        if requested != _ACCESS_TOKEN_TYPE:
            raise _OAuthError("invalid_request", f"Invalid requested_token_type: {requested}")
        with self._lock:
            pool = self._pools.get(form["audience"].removeprefix("https:"))
            idp_key = self._idp_key
        if pool is None:
            raise _OAuthError(
                "invalid_target",
                'The target service indicated by the "audience" parameters is invalid. This might either be '
                "because the pool or provider is disabled or deleted or because it doesn't exist.",
            )
        try:
            header, claims, signed, signature = _split_jwt(form["subject_token"])
        except ValueError:
            raise _OAuthError("invalid_grant", "Unable to parse the ID Token.") from None
        if (
            idp_key is None
            or header.get("kid") != idp_key.kid
            or not idp_key.verifier.verify(signed, signature)
        ):
            raise _OAuthError("invalid_grant", "Invalid ID Token signature.")
        if claims.get("iss") != pool.issuer:
            raise _OAuthError(
                "invalid_grant",
                f"The issuer in ID Token {claims.get('iss')} does not match the expected ones: "
                f"{pool.issuer}.",
            )
        aud = claims.get("aud")
        auds = aud if isinstance(aud, list) else [aud]
        if not any(a in pool.allowed_audiences for a in auds):
            raise _OAuthError(
                "invalid_grant",
                f"The audience in ID Token [{', '.join(map(str, auds))}] does not match the expected "
                "audience.",
            )
        exp = claims.get("exp")
        if not isinstance(exp, int | float) or exp <= time.time():
            raise _OAuthError("invalid_grant", "ID Token has expired.")
        subject = claims.get("sub")
        if not subject:
            raise _OAuthError("invalid_grant", "The ID Token has no sub claim.")
        principal = self.workload_identity_principal(pool.audience, str(subject))
        token, lifetime = self._new_access_token(principal, _scopes(form.get("scope", _CLOUD_PLATFORM)))
        return _json(
            200,
            {
                "access_token": token,
                "issued_token_type": _ACCESS_TOKEN_TYPE,
                "token_type": "Bearer",
                "expires_in": lifetime,
            },
        )


# --------------------------------------------------------------------------------------------------
# Responses


def _json(status: int, body: Any, headers: dict[str, str] | None = None) -> _Response:
    data = json.dumps(body, indent=2).encode()
    return _Response(status, data, {"Content-Type": "application/json; charset=utf-8", **(headers or {})})


def _text(status: int, text: str) -> _Response:
    return _Response(status, text.encode(), {"Content-Type": "application/text"})


def _oauth_error(error: str, description: str, status: int) -> _Response:
    return _json(status, {"error": error, "error_description": description})


def _status_message(status: int) -> str:
    return {
        429: "Quota exceeded.",
        500: "Internal error encountered.",
        502: "Bad Gateway",
        503: "The service is currently unavailable.",
        504: "Deadline exceeded.",
    }.get(status, "Request failed.")


def _api_error(status: int, message: str, details: list[dict[str, Any]] | None = None) -> _Response:
    error: dict[str, Any] = {
        "code": status,
        "message": message,
        "status": _STATUS_NAMES.get(status, "UNKNOWN"),
    }
    if details:
        error["details"] = details
    return _json(status, {"error": error})


def _error_info(reason: str, domain: str, metadata: dict[str, str] | None = None) -> dict[str, Any]:
    info: dict[str, Any] = {
        "@type": "type.googleapis.com/google.rpc.ErrorInfo",
        "reason": reason,
        "domain": domain,
    }
    if metadata:
        info["metadata"] = metadata
    return info


def _google_page(status: int, title: str, message: str) -> bytes:
    return (
        f"<!DOCTYPE html>\n<html lang=en><meta charset=utf-8><title>Error {status} ({html.escape(title)})!!1"
        f"</title>\n<p><b>{status}.</b> <ins>That's an error.</ins>\n<p>{message} "
        "<ins>That's all we know.</ins>\n"
    ).encode()


def _not_found(request: RecordedRequest, status: int = 404) -> _Response:
    path = f"<code>{html.escape(request.path)}</code>"
    if status == 405:
        method = f"<code>{html.escape(request.method)}</code>"
        message = f"The request method {method} is inappropriate for the URL {path}."
        body = _google_page(405, "Method Not Allowed", message)
    else:
        body = _google_page(404, "Not Found", f"The requested URL {path} was not found on this server.")
    return _Response(status, body, {"Content-Type": "text/html; charset=UTF-8"})


def _consent_error(status: int, error: str, detail: str, query: dict[str, str]) -> _Response:
    details = "".join(
        f"<li>{html.escape(k)}={html.escape(v)}</li>" for k, v in query.items() if k != "code_challenge"
    )
    page = (
        "<!DOCTYPE html>\n<html lang=en><head><meta charset=utf-8>"
        f"<title>Error {status}: {error}</title></head><body>\n"
        "<h1>Sign in with Google</h1>\n"
        "<h2>Access blocked: This app's request is invalid</h2>\n"
        f"<p>{html.escape(detail)}</p>\n"
        f'<p id="error">Error {status}: {error}</p>\n'
        f"<details><summary>Request details</summary><ul>{details}</ul></details>\n"
        "</body></html>\n"
    )
    return _Response(status, page.encode(), {"Content-Type": "text/html; charset=utf-8"})


def _redirect_page(location: str) -> bytes:
    href = html.escape(location, quote=True)
    return (
        "<HTML><HEAD><TITLE>Moved Temporarily</TITLE></HEAD>"
        f'<BODY>The document has moved <A HREF="{href}">here</A>.</BODY></HTML>'
    ).encode()


def _redirect_allowed(client: _Client, redirect_uri: str) -> bool:
    if client.redirect_uris is not None:
        return redirect_uri in client.redirect_uris
    try:
        parts = urllib.parse.urlsplit(redirect_uri)
        port = parts.port
    except ValueError:
        return False
    return (
        parts.scheme == "http"
        and parts.hostname in ("127.0.0.1", "localhost", "::1")
        and port is not None
        and not parts.fragment
    )


# --------------------------------------------------------------------------------------------------
# HTTP plumbing


class _Handler(BaseHTTPRequestHandler):
    fake: FakeGoogle
    protocol_version = "HTTP/1.1"
    server_version = "ESF"
    sys_version = ""
    # Idle keep-alive connections from clients' pools must not keep handler threads forever.
    timeout = 30

    def _serve(self) -> None:
        split = urllib.parse.urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        query: dict[str, str] = {}
        for name, value in urllib.parse.parse_qsl(split.query, keep_blank_values=True):
            query.setdefault(name, value)
        request = RecordedRequest(
            method=self.command,
            path=split.path or "/",
            query=query,
            headers={k.lower(): v for k, v in self.headers.items()},
            body=body,
        )
        response = self.fake._handle(request)
        self.send_response(response.status)
        for name, value in response.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(response.body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(response.body)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = _serve

    def log_message(self, format: str, *args: Any) -> None:
        pass
