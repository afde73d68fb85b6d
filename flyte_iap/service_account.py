"""Service-account ID tokens for CI pipelines and workloads, from the Google credentials already around.

Example::

    import flyte_iap

    token = flyte_iap.get_service_account_id_token(
        "123-web.apps.googleusercontent.com",
        impersonate_service_account="flyte-ci@my-project.iam.gserviceaccount.com",  # optional
    )

Where the credentials come from, first match wins (google-auth does the credential work):

1. ``key_file``, a service-account key JSON;
2. the file named by ``GOOGLE_APPLICATION_CREDENTIALS``, else gcloud's application default credentials
   file: ``service_account``, ``impersonated_service_account``, ``external_account`` (Workload Identity
   Federation) and, only together with ``impersonate_service_account``, the user logins
   ``authorized_user`` and ``external_account_authorized_user``;
3. the metadata server (GCE, GKE Workload Identity, Cloud Run), after a probe of about a second.

How the token is made: a key file signs a jwt-bearer grant for the audience at the token endpoint; the
metadata server answers its ``identity`` endpoint; everything else calls iamcredentials
``generateIdToken`` (``includeEmail: true``) at :func:`flyte_iap.endpoints.generate_id_token_url`,
authenticated with the source's access token. For an ``external_account`` file that token is the STS
federated token, used directly on the service account named in the file, as google-github-actions/auth
does for its ``id_token`` output: no ``generateAccessToken`` round trip, and the account needs no role on
itself.

Cache key: kind ``"sa"``, the audience, and as principal the service account the token will be for:
``impersonate_service_account`` when given; else the key's ``client_email``; else the account in the
credentials file's ``service_account_impersonation_url``; else ``"metadata"`` for the metadata server
(whose account is not known without asking it). Working that out reads at most one small JSON file, so
:func:`cached_token` answers a warm cache with the standard library alone.

The module imports only the standard library and flyte-iap's light modules at import time: google-auth
and the HTTP transport are imported inside the functions that mint a token.
"""

from __future__ import annotations

import contextlib
import os

from flyte_iap import DOCS_URL, endpoints
from flyte_iap.cache import TokenCache
from flyte_iap.errors import (
    ConfigurationError,
    CredentialsError,
    FlyteIapError,
    InvalidTokenError,
    PermissionDeniedError,
    TransportError,
)
from flyte_iap.idtoken import DEFAULT_MIN_VALID, check_id_token, checked_seconds, usable_id_token
from flyte_iap.private_file import FileRefusedError, read_json_file

# typing costs milliseconds at import; the annotations are strings (PEP 563) and type checkers read this
# constant as True.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import Any

    from flyte_iap.transport import HttpRequest

#: Cache kind of service-account tokens.
KIND = "sa"
#: Principal of tokens from the metadata server.
METADATA_PRINCIPAL = "metadata"
#: The role a caller needs on a service account to mint ID tokens for it.
OPENID_TOKEN_CREATOR = "roles/iam.serviceAccountOpenIdTokenCreator"
#: Seconds per metadata probe attempt, and attempts, unless GCE_METADATA_TIMEOUT /
#: GCE_METADATA_DETECT_RETRIES say otherwise (google-auth's own defaults, 3 s x 3, are too slow for a
#: command that runs before every pyflyte call on machines that have no metadata server at all).
PROBE_TIMEOUT = 1.0
PROBE_ATTEMPTS = 2

_USER_TYPES = ("authorized_user", "external_account_authorized_user")
_FILE_TYPES = ("service_account", "impersonated_service_account", "external_account", *_USER_TYPES)
_AWS_SUBJECT_TOKEN_TYPE = "urn:ietf:params:aws:token-type:aws4_request"
_GUIDE = f"see {DOCS_URL}/client/ci-and-workloads.html"
_SERVER_ERROR_HINT = "Google kept answering with a server error; try again in a minute"
_KEY_HINT = (
    "download a new key (gcloud iam service-accounts keys create) or, better, use Workload Identity "
    "Federation or the metadata server instead of a key"
)


# -- where the credentials are ---------------------------------------------------------------------


class CredentialSource:
    """Where the credentials for a token come from.

    Attributes:
        origin: the source in words, for messages ("GOOGLE_APPLICATION_CREDENTIALS (/path/creds.json)").
        path: the credentials file, or ``None`` for the metadata server.
        info: the parsed credentials file, or ``None`` for the metadata server.
        tried: what was looked at before this source, in words (for the "nothing found" error).
    """

    # A plain class, not a dataclass: the fast path would pay for importing dataclasses and inspect.
    __slots__ = ("info", "origin", "path", "tried")

    def __init__(
        self,
        origin: str,
        path: str | None = None,
        info: dict[str, Any] | None = None,
        tried: tuple[str, ...] = (),
    ) -> None:
        self.origin = origin
        self.path = path
        self.info = info
        self.tried = tried

    def __repr__(self) -> str:  # never the file's content: it may hold a private key
        return f"CredentialSource({self.origin!r})"

    @property
    def type(self) -> str:
        """The credentials ``type`` (``service_account``, ``external_account``, ...) or ``metadata``."""
        return str(self.info.get("type")) if self.info is not None else "metadata"


def adc_file_path() -> str:
    """gcloud's application default credentials file, as google-auth finds it (it need not exist).

    ``$CLOUDSDK_CONFIG/application_default_credentials.json``, else ``~/.config/gcloud/...`` (POSIX) or
    ``%APPDATA%\\gcloud\\...`` (Windows). Standard library only, for the fast path.
    """
    config = os.environ.get("CLOUDSDK_CONFIG")
    if not config:
        if os.name == "nt":  # pragma: no cover - Windows only
            appdata = os.environ.get("APPDATA") or os.path.join(os.environ.get("SYSTEMDRIVE", "C:"), "\\")
            config = os.path.join(appdata, "gcloud")
        else:
            config = os.path.join(os.path.expanduser("~"), ".config", "gcloud")
    return os.path.join(config, "application_default_credentials.json")


def _read_credentials_file(path: str, origin: str) -> dict[str, Any]:
    """Parse a credentials JSON file; never put its content (a private key) in a message."""
    try:
        info = read_json_file(path)
    except FileNotFoundError:
        raise CredentialsError(f"{origin}: file not found", _missing_file_hint(origin)) from None
    except IsADirectoryError:
        raise CredentialsError(f"{origin}: is a directory, not a credentials file", _KEY_HINT) from None
    except FileRefusedError as exc:
        raise CredentialsError(f"{origin}: {exc.reason}", _KEY_HINT) from None
    except OSError as exc:
        raise CredentialsError(f"{origin}: cannot read it: {exc.strerror}", _KEY_HINT) from None
    except ValueError:
        raise CredentialsError(f"{origin}: malformed credentials file (not JSON)", _KEY_HINT) from None
    if not isinstance(info, dict):
        raise CredentialsError(f"{origin}: malformed credentials file (not a JSON object)", _KEY_HINT)
    kind = info.get("type")
    if kind not in _FILE_TYPES:
        raise CredentialsError(
            f"{origin}: unsupported credentials type {kind!r}",
            "expected one of " + ", ".join(_FILE_TYPES) + " (a key file, `gcloud auth "
            "application-default login`, or a Workload Identity Federation credential configuration)",
        )
    return info


def _missing_file_hint(origin: str) -> str:
    if origin.startswith("GOOGLE_APPLICATION_CREDENTIALS"):
        return "point GOOGLE_APPLICATION_CREDENTIALS at an existing credentials file, or unset it"
    return "check the path"


def find_credentials(key_file: str | os.PathLike[str] | None = None) -> CredentialSource:
    """Find the credentials to use, without any network call.

    Args:
        key_file: a service-account key JSON that takes precedence over everything else.

    Returns:
        The first source found; the metadata server when no file applies (it is probed later).

    Raises:
        CredentialsError: a file that should be used is missing, unreadable or malformed.
    """
    if key_file:
        origin = f"--key-file {os.fspath(key_file)}"
        info = _read_credentials_file(os.fspath(key_file), origin)
        if info.get("type") != "service_account":
            raise CredentialsError(
                f"{origin}: expected a service-account key (type service_account), got {info.get('type')!r}",
                "pass credentials of other types through GOOGLE_APPLICATION_CREDENTIALS",
            )
        return CredentialSource(origin, os.fspath(key_file), info)
    tried = ["--key-file: not given"]
    env_path = os.environ.get("GOOGLE_APPLICATION_CREDENTIALS")
    if env_path:
        origin = f"GOOGLE_APPLICATION_CREDENTIALS ({env_path})"
        return CredentialSource(origin, env_path, _read_credentials_file(env_path, origin), tuple(tried))
    tried.append("GOOGLE_APPLICATION_CREDENTIALS: not set")
    adc = adc_file_path()
    if os.path.exists(adc):
        origin = f"gcloud application default credentials ({adc})"
        return CredentialSource(origin, adc, _read_credentials_file(adc, origin), tuple(tried))
    tried.append(f"gcloud application default credentials: no {adc}")
    return CredentialSource("the metadata server", tried=tuple(tried))


def _impersonation_target(info: dict[str, Any]) -> str | None:
    """The service account in a file's ``service_account_impersonation_url``, if any."""
    url = info.get("service_account_impersonation_url")
    if not isinstance(url, str):
        return None
    tail = url.rsplit("/", 1)[-1]
    email, sep, _ = tail.partition(":generateAccessToken")
    return email if sep and email else None


def _check_service_account(value: str) -> str:
    account = value.strip()
    if not account or "/" in account or any(c.isspace() for c in account):
        raise ConfigurationError(
            f"--impersonate-service-account {value!r} is not a service account",
            "pass the service account's email, e.g. flyte-ci@PROJECT.iam.gserviceaccount.com",
        )
    return account


def principal_for(source: CredentialSource, impersonate_service_account: str | None = None) -> str:
    """The cache principal of tokens from ``source``: the service account they are for.

    Args:
        source: from :func:`find_credentials`.
        impersonate_service_account: the account to impersonate, if any.

    Returns:
        A lower-cased service-account email, or :data:`METADATA_PRINCIPAL`.

    Raises:
        CredentialsError: user credentials (or federated ones naming no service account) without
            impersonation, which cannot yield a service-account token.
        ConfigurationError: ``impersonate_service_account`` is not a service account name.
    """
    if impersonate_service_account:
        return _check_service_account(impersonate_service_account).lower()
    info = source.info
    if info is None:
        return METADATA_PRINCIPAL
    kind = info.get("type")
    if kind == "service_account":
        email = info.get("client_email")
        if not isinstance(email, str) or "@" not in email:
            raise CredentialsError(f"{source.origin}: malformed key file (no client_email)", _KEY_HINT)
        return email.lower()
    target = _impersonation_target(info)
    if target:
        return target.lower()
    if kind in _USER_TYPES:
        raise CredentialsError(
            f"{source.origin} holds user credentials ({kind}), not a service account",
            "for your own ID token use `flyte-iap token`; to act as a service account pass "
            f"--impersonate-service-account SA_EMAIL (you need {OPENID_TOKEN_CREATOR} on it)",
        )
    if kind == "external_account":
        raise CredentialsError(
            f"{source.origin}: the federated identity names no service account, and only service "
            "accounts can get ID tokens",
            "pass --impersonate-service-account SA_EMAIL, or create the credential configuration with "
            "`gcloud iam workload-identity-pools create-cred-config ... --service-account SA_EMAIL` "
            "(google-github-actions/auth: set `service_account`)",
        )
    raise CredentialsError(  # impersonated_service_account without a usable URL
        f"{source.origin}: malformed credentials file (no service account in "
        "service_account_impersonation_url)",
        "recreate it with `gcloud auth application-default login --impersonate-service-account SA`",
    )


# -- the cache -------------------------------------------------------------------------------------


def _cached(
    cache: TokenCache, audience: str, principal: str, min_valid: float, rejected: str | None = None
) -> str | None:
    record = cache.read(KIND, audience, principal) or {}
    return usable_id_token(record.get("id_token"), audience, min_valid=min_valid, rejected=rejected)


def _principal(
    impersonate_service_account: str | None, key_file: str | os.PathLike[str] | None
) -> tuple[str, CredentialSource | None]:
    """The cache principal, and the credentials source when it had to be found to know the principal.

    With impersonation the principal is the impersonated account and the credentials are only looked
    for when a token must be minted, so a warm cache never depends on them.
    """
    if impersonate_service_account:
        return principal_for(CredentialSource(""), impersonate_service_account), None
    source = find_credentials(key_file)
    return principal_for(source), source


def cached_token(
    audience: str,
    *,
    impersonate_service_account: str | None = None,
    key_file: str | os.PathLike[str] | None = None,
    min_valid: float = DEFAULT_MIN_VALID,
    cache: TokenCache | None = None,
) -> str | None:
    """A cached token with more than ``min_valid`` seconds left, or ``None``; never a network call.

    This is the fast path of ``flyte-iap sa-token``: standard library only, and any doubt (a file that
    cannot be read, a cache warning) is ``None`` so that the full path runs and reports it.

    Args:
        audience: the IAP OAuth client ID.
        impersonate_service_account: as for :func:`get_service_account_id_token`.
        key_file: as for :func:`get_service_account_id_token`.
        min_valid: seconds the token must still be valid.
        cache: the token store; :class:`~flyte_iap.cache.TokenCache` by default.

    Returns:
        The token, or ``None``.
    """
    if not audience or not 0 <= min_valid < float("inf"):
        return None
    try:
        principal, _ = _principal(impersonate_service_account, key_file)
    except FlyteIapError:
        return None
    cache = cache if cache is not None else TokenCache()
    token = _cached(cache, audience, principal, min_valid)
    return None if cache.warnings else token


def get_service_account_id_token(
    audience: str,
    *,
    impersonate_service_account: str | None = None,
    key_file: str | os.PathLike[str] | None = None,
    min_valid: float = DEFAULT_MIN_VALID,
    cache: TokenCache | None = None,
    rejected_token: str | None = None,
) -> str:
    """Return a Google ID token for ``audience`` that names a service account, from the cache if possible.

    A cached token with more than ``min_valid`` seconds left is returned without a network call. Else
    one is minted from the first credentials found (see the module documentation) under the cache lock,
    so that concurrent callers make one request, checked (``aud``, ``iss``, ``exp``) and cached.

    Args:
        audience: the OAuth client ID of the IAP-protected app; the token's ``aud``.
        impersonate_service_account: a service account to mint the token for, through iamcredentials
            ``generateIdToken``, with whatever credentials are found; the caller needs
            ``roles/iam.serviceAccountOpenIdTokenCreator`` on it.
        key_file: a service-account key JSON to use instead of looking for credentials.
        min_valid: seconds of validity a returned token must have left.
        cache: the token store; :class:`~flyte_iap.cache.TokenCache` by default. Its ``warnings`` list
            collects skipped (corrupt) cache files.
        rejected_token: a token the server just refused (HTTP 401): a new one is minted even if it
            looks valid (fits :class:`flyte_iap.IapAuth`'s ``token_getter``).

    Returns:
        The ID token, with an ``email`` claim.

    Raises:
        CredentialsError: no credentials found, a malformed file, user credentials without impersonation,
            a key or subject token that Google rejects.
        PermissionDeniedError: iamcredentials answered 403 (a role is missing).
        TransportError: Google or the metadata server could not be reached, or kept failing.
        InvalidTokenError: what came back is not a usable token for ``audience``.
        CacheError: the token store cannot be written.
        ConfigurationError: an argument is not usable.
    """
    if not audience or not audience.strip():
        raise ConfigurationError("--audience is empty", "pass the OAuth client ID of the IAP-protected app")
    min_valid = checked_seconds(min_valid)
    cache = cache if cache is not None else TokenCache()
    principal, source = _principal(impersonate_service_account, key_file)
    token = _cached(cache, audience, principal, min_valid, rejected_token)
    if token:
        return token
    from flyte_iap import transport

    with cache.lock(KIND, audience, principal, timeout=transport.time_left(60.0)):
        # Another process may have minted one while this one waited for the lock.
        token = _cached(cache, audience, principal, min_valid, rejected_token)
        if token:
            return token
        source = source or find_credentials(key_file)
        target = _check_service_account(impersonate_service_account) if impersonate_service_account else None
        token = _mint(source, audience, target)
        claims = check_id_token(token, audience, min_valid=min_valid)
        cache.write(
            KIND,
            audience,
            principal,
            {"id_token": token, "email": claims.get("email"), "source": source.origin},
        )
    return token


# -- minting -------------------------------------------------------------------------------------


class _Caller:
    """An access token that calls iamcredentials, and who it is, for a 403 message."""

    __slots__ = ("description", "member", "token")

    def __init__(self, token: str, description: str, member: str | None = None) -> None:
        self.token = token
        self.description = description
        self.member = member


class _Unreachable(Exception):
    """Raised inside google-auth calls when a request failed for good (after the transport's retries)."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(reason)
        self.url = url
        self.reason = reason


def _http() -> HttpRequest:
    """google-auth's ``Request`` with flyte-iap's timeout/retry policy, failing hard when retries run out.

    The transport returns the last 5xx answer after its retries; google-auth would then retry again
    (token endpoint) or report it as a rejection (STS). Raising a ``TransportError`` subclass instead
    makes every flow report "unreachable" the same way.
    """
    import google.auth.exceptions

    from flyte_iap import transport

    inner = transport.google_auth_request()

    class Unreachable(_Unreachable, google.auth.exceptions.TransportError):
        pass

    def send(url: str, method: str = "GET", body: Any = None, headers: Any = None, **kwargs: Any) -> Any:
        try:
            response = inner(url=url, method=method, body=body, headers=headers, **kwargs)
        except google.auth.exceptions.TransportError as exc:
            limit = transport.http_timeout()
            asked = kwargs.get("timeout")
            reason = transport.failure_reason(
                exc, min(asked, limit) if isinstance(asked, int | float) else limit
            )
            raise Unreachable(url, f"{reason} (tried {transport.DEFAULT_TRIES} times)") from exc
        if response.status in transport.RETRYABLE_STATUSES:
            raise Unreachable(url, f"HTTP {response.status} (tried {transport.DEFAULT_TRIES} times)")
        return response

    return send


def _unreachable_in(exc: BaseException) -> _Unreachable | None:
    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        if isinstance(cause, _Unreachable):
            return cause
        if cause.args and isinstance(cause.args[0], _Unreachable):  # google-auth wraps the exception
            return cause.args[0]
        cause = cause.__cause__ or cause.__context__
    return None


def _reason(exc: BaseException) -> str:
    """google-auth's message on one short line (it may hold a whole JSON body)."""
    first = exc.args[0] if exc.args else exc
    text = " ".join(str(first).split())
    return text if len(text) <= 300 else text[:297] + "..."


@contextlib.contextmanager
def _google_errors(
    what: str, *, rejected: str, hint: str, unreachable_hint: str | None = None
) -> Iterator[None]:
    """Turn google-auth exceptions raised while talking to ``what`` into flyte-iap errors.

    A request that failed for good is a :class:`TransportError`; anything else google-auth raises
    (an OAuth error, a refused key, a 404) is a :class:`CredentialsError` saying ``rejected``.
    """
    import google.auth.exceptions

    from flyte_iap import transport

    try:
        yield
    except FlyteIapError:
        raise
    except google.auth.exceptions.GoogleAuthError as exc:
        lost = _unreachable_in(exc)
        if lost is not None:
            if unreachable_hint is None:
                unreachable_hint = (
                    _SERVER_ERROR_HINT if lost.reason.startswith("HTTP") else transport.NETWORK_HINT
                )
            raise TransportError(
                f"cannot reach {what} at {transport.url_for_message(lost.url)}: {lost.reason}",
                unreachable_hint,
            ) from None
        raise CredentialsError(f"{rejected}: {_reason(exc)}", hint) from None
    except (ValueError, TypeError, KeyError, AttributeError, RecursionError) as exc:
        # google-auth parses answers with json.loads and indexes them without checks: an HTML page or a
        # deeply nested body served with HTTP 200 surfaces as one of these (issue 10).
        raise TransportError(
            f"{what} answered with something that is not a usable token response ({type(exc).__name__})",
            "a proxy or captive portal may be answering instead of Google; check HTTPS_PROXY and the "
            "FLYTE_IAP_*_URI overrides",
        ) from None


def _mint(source: CredentialSource, audience: str, target: str | None) -> str:
    http = _http()
    kind = source.type
    if kind == "metadata":
        return _from_metadata(source, audience, target, http)
    info = source.info or {}
    if target is None and kind == "service_account":
        return _from_key(source, audience, http)
    if target is None:
        target = _impersonation_target(info)
        if target is None:  # principal_for() has already refused these
            raise CredentialsError(f"{source.origin}: no service account to mint a token for", _GUIDE)
        delegates = _chain(info, drop=target)
    else:
        delegates = [*_chain(info, drop=target), *_via(info, drop=target)]
    caller = _caller(source, info, http)
    return _generate_id_token(caller, target, delegates, audience)


def _chain(info: dict[str, Any], drop: str) -> list[str]:
    """Delegates listed in an impersonated_service_account file."""
    found = info.get("delegates") if info.get("type") == "impersonated_service_account" else None
    chain = [d.rsplit("/", 1)[-1] for d in found or [] if isinstance(d, str)]
    return [d for d in chain if d.lower() != drop.lower()]


def _via(info: dict[str, Any], drop: str) -> list[str]:
    """The account a file impersonates, which becomes a delegate when impersonating another one."""
    through = _impersonation_target(info)
    return [through] if through and through.lower() != drop.lower() else []


def _from_key(source: CredentialSource, audience: str, http: HttpRequest) -> str:
    from google.oauth2 import service_account

    info = source.info or {}
    email = info.get("client_email", "?")
    try:
        credentials = service_account.IDTokenCredentials.from_service_account_info(
            info, target_audience=audience, token_uri=_key_token_uri(info)
        )
    except Exception as exc:  # building them from local data failed: a bad file
        raise CredentialsError(
            f"{source.origin}: malformed service-account key: {_reason(exc)}", _KEY_HINT
        ) from None
    _check_signer(credentials, source)
    with _google_errors(
        "Google's token endpoint",
        rejected=f"Google's token endpoint rejected the key of {email} from {source.origin}",
        hint="the key may have been deleted or disabled, or the account disabled; list keys with "
        f"`gcloud iam service-accounts keys list --iam-account {email}`",
    ):
        credentials.refresh(http)
    return str(credentials.token)


def _check_signer(credentials: Any, source: CredentialSource) -> None:
    """Sign a test message, so that a key google-auth cannot sign RS256 with fails here with a hint.

    google-auth loads any PEM private key, an EC key too, and fails only when signing the grant, with a
    TypeError from deep inside (google-auth v2.63: google/auth/crypt/_cryptography_rsa.py). Google's
    service-account keys are RSA (gcloud iam service-accounts keys create).
    """
    try:
        credentials.signer.sign(b"flyte-iap")
    except Exception:
        raise CredentialsError(
            f"{source.origin}: its private_key cannot sign RS256 requests (service-account keys are RSA)",
            _KEY_HINT,
        ) from None


def _key_token_uri(info: dict[str, Any]) -> str:
    """FLYTE_IAP_TOKEN_URI when it is set, else the key's own ``token_uri`` (as google-auth does)."""
    override = endpoints.token_uri()
    if override != endpoints.OVERRIDES["FLYTE_IAP_TOKEN_URI"].rstrip("/"):
        return override
    own = info.get("token_uri")
    return own if isinstance(own, str) and own else override


# -- the metadata server ---------------------------------------------------------------------------


@contextlib.contextmanager
def _quiet_metadata_logs() -> Iterator[None]:
    """google-auth logs a warning per failed probe attempt; this module reports the outcome itself."""
    import logging

    logger = logging.getLogger("google.auth.compute_engine._metadata")
    previous = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(previous)


def _env_number(name: str, default: float) -> float:
    try:
        value = float(os.environ[name])
    except (KeyError, ValueError):
        return default
    return value if value > 0 else default


def _metadata_root() -> str | None:
    """The metadata root from GCE_METADATA_HOST as it is now (google-auth froze it at import)."""
    from google.auth.compute_engine import _metadata

    return None if endpoints.metadata_host() == _metadata._GCE_METADATA_HOST else endpoints.metadata_root()


def _metadata_get(http: HttpRequest, path: str, params: dict[str, str] | None = None) -> Any:
    from google.auth.compute_engine import _metadata

    # The transport already retries; google-auth's own retries (5, with 1-16 s sleeps) would hang.
    with _quiet_metadata_logs():
        return _metadata.get(http, path, root=_metadata_root(), params=params, retry_count=1)


def _probe_metadata(source: CredentialSource) -> None:
    """Raise the "no credentials" error unless a metadata server answers within about a second."""
    from google.auth.compute_engine import _metadata

    from flyte_iap import transport

    host = endpoints.metadata_ip()
    if os.environ.get("NO_GCE_CHECK") == "true":
        found = False
        outcome = "skipped (NO_GCE_CHECK=true)"
    else:
        timeout = _env_number("GCE_METADATA_TIMEOUT", PROBE_TIMEOUT)
        attempts = int(_env_number("GCE_METADATA_DETECT_RETRIES", PROBE_ATTEMPTS))
        probe = transport.google_auth_request(timeout=timeout, tries=1)
        with _quiet_metadata_logs():
            found = _metadata.ping(probe, timeout=timeout, retry_count=attempts)
        outcome = f"no answer at {host} ({attempts} x {timeout:g} s)"
    if not found:
        tried = "; ".join([*source.tried, f"metadata server: {outcome}"])
        raise CredentialsError(
            f"no Google credentials found (tried {tried})",
            "in CI authenticate first (Workload Identity Federation, e.g. google-github-actions/auth) or "
            "pass --key-file; on a workstation run `gcloud auth application-default login` and pass "
            "--impersonate-service-account SA_EMAIL, or use `flyte-iap token` for your own ID token",
        )


def _from_metadata(source: CredentialSource, audience: str, target: str | None, http: HttpRequest) -> str:
    if target is None:
        _probe_metadata(source)
        with _metadata_errors():
            token = _metadata_get(
                http,
                "instance/service-accounts/default/identity",
                params={"audience": audience, "format": "full"},
            )
        return str(token).strip()
    caller, _ = metadata_caller(source, http)
    return _generate_id_token(caller, target, [], audience)


def _metadata_errors() -> contextlib.AbstractContextManager[None]:
    what = "the metadata server"
    return _google_errors(
        what,
        rejected=f"{what} gave no token",
        hint="on GKE, the pod's Kubernetes service account needs the iam.gke.io/gcp-service-account "
        "annotation and Workload Identity on its node pool",
        unreachable_hint="it answered the probe and then failed; on GKE the metadata server can take a few "
        "seconds to serve a new pod: retry, and check GCE_METADATA_HOST",
    )


def metadata_caller(source: CredentialSource, http: HttpRequest) -> tuple[_Caller, str]:
    """The metadata server's service account as an iamcredentials caller, and its email.

    Args:
        source: the metadata-server source from :func:`find_credentials` (for the "not found" message).
        http: from :func:`_http`.

    Returns:
        The caller (a ``cloud-platform`` access token) and the account's email.

    Raises:
        CredentialsError: no metadata server answers, or it gives no token.
        TransportError: it stopped answering.
    """
    _probe_metadata(source)
    with _metadata_errors():
        email = str(_metadata_get(http, "instance/service-accounts/default/email")).strip()
        reply = _metadata_get(
            http,
            "instance/service-accounts/default/token",
            params={"scopes": endpoints.CLOUD_PLATFORM_SCOPE},
        )
    if not isinstance(reply, dict) or not isinstance(reply.get("access_token"), str):
        raise TransportError(
            "the metadata server answered without an access token", "is GCE_METADATA_HOST right?"
        )
    caller = _Caller(reply["access_token"], f"{email} (from the metadata server)", f"serviceAccount:{email}")
    return caller, email


# -- callers of iamcredentials -----------------------------------------------------------------------


def _caller(source: CredentialSource, info: dict[str, Any], http: HttpRequest) -> _Caller:
    """Refresh the source credentials of ``info`` and say who they are."""
    kind = info.get("type")
    if kind == "impersonated_service_account":
        inner = info.get("source_credentials")
        if not isinstance(inner, dict) or inner.get("type") not in (*_USER_TYPES, "service_account"):
            raise CredentialsError(
                f"{source.origin}: malformed credentials file (unsupported source_credentials)",
                "recreate it with `gcloud auth application-default login --impersonate-service-account SA`",
            )
        return _caller(source, inner, http)
    if kind == "service_account":
        return _service_account_caller(source, info, http)
    if kind == "authorized_user":
        return _user_caller(source, info, http)
    if kind == "external_account":
        return _federated_caller(source, info, http)
    return _workforce_caller(source, info, http)


def _service_account_caller(source: CredentialSource, info: dict[str, Any], http: HttpRequest) -> _Caller:
    from google.oauth2 import service_account

    email = str(info.get("client_email", "?"))
    try:
        credentials = service_account.Credentials.from_service_account_info(
            info, scopes=[endpoints.CLOUD_PLATFORM_SCOPE]
        ).with_token_uri(_key_token_uri(info))
    except Exception as exc:  # building them from local data failed: a bad file
        raise CredentialsError(
            f"{source.origin}: malformed service-account key: {_reason(exc)}", _KEY_HINT
        ) from None
    _check_signer(credentials, source)
    with _google_errors(
        "Google's token endpoint",
        rejected=f"Google's token endpoint rejected the key of {email} from {source.origin}",
        hint=f"the key may have been deleted or disabled (gcloud iam service-accounts keys list "
        f"--iam-account {email})",
    ):
        credentials.refresh(http)
    return _Caller(str(credentials.token), email, f"serviceAccount:{email}")


def _user_caller(source: CredentialSource, info: dict[str, Any], http: HttpRequest) -> _Caller:
    from google.oauth2 import credentials as oauth2_credentials

    missing = [k for k in ("client_id", "client_secret", "refresh_token") if not info.get(k)]
    if missing:
        raise CredentialsError(
            f"{source.origin}: malformed user credentials (missing {', '.join(missing)})",
            "run `gcloud auth application-default login` again",
        )
    # No scopes: the refresh keeps those of the login (gcloud's include cloud-platform), and asking for
    # a subset would make google-auth fail if the answer lists them differently.
    credentials = oauth2_credentials.Credentials(
        None,
        refresh_token=info["refresh_token"],
        client_id=info["client_id"],
        client_secret=info["client_secret"],
        token_uri=endpoints.token_uri(),
    )
    with _google_errors(
        "Google's token endpoint",
        rejected=f"Google's token endpoint refused the user credentials in {source.origin}",
        hint="run `gcloud auth application-default login` again",
    ):
        credentials.refresh(http)
    email = None
    id_token = getattr(credentials, "id_token", None)
    if isinstance(id_token, str):
        with contextlib.suppress(FlyteIapError):
            from flyte_iap.idtoken import decode_claims

            email = decode_claims(id_token).get("email")
    who = email or "the gcloud user"
    return _Caller(
        str(credentials.token), f"{who} (from {source.origin})", f"user:{email}" if email else None
    )


def _external_credentials(info: dict[str, Any]) -> Any:
    """google-auth's credentials for an ``external_account`` file (as google.auth.default() picks them)."""
    source = info.get("credential_source")
    if info.get("subject_token_type") == _AWS_SUBJECT_TOKEN_TYPE:
        from google.auth import aws

        return aws.Credentials.from_info(info, scopes=[endpoints.CLOUD_PLATFORM_SCOPE])
    if isinstance(source, dict) and source.get("executable") is not None:
        from google.auth import pluggable

        return pluggable.Credentials.from_info(info, scopes=[endpoints.CLOUD_PLATFORM_SCOPE])
    from google.auth import identity_pool

    return identity_pool.Credentials.from_info(info, scopes=[endpoints.CLOUD_PLATFORM_SCOPE])


def _pool_member(audience: object) -> str | None:
    """``principalSet:...*`` for every identity of the workload identity pool in an STS audience."""
    if not isinstance(audience, str) or "/workloadIdentityPools/" not in audience:
        return None
    pool = audience.split("/providers/", 1)[0]
    return f"principalSet:{pool}/*"


def _federated_caller(source: CredentialSource, info: dict[str, Any], http: HttpRequest) -> _Caller:
    import google.auth.exceptions

    # The STS token itself calls generateIdToken (the file's generateAccessToken step is skipped).
    direct = {
        k: v
        for k, v in info.items()
        if k not in ("service_account_impersonation_url", "service_account_impersonation")
    }
    try:
        credentials = _external_credentials(direct)
    except Exception as exc:  # building them from local data failed: a bad file
        raise CredentialsError(
            f"{source.origin}: malformed external_account credentials: {_reason(exc)}",
            "recreate it with `gcloud iam workload-identity-pools create-cred-config` or "
            "google-github-actions/auth",
        ) from None
    audience = info.get("audience")
    # One refresh reads the subject token and exchanges it; only the exchange raises OAuthError.
    with _google_errors(
        "the subject token source or the Security Token Service",
        rejected=f"cannot read the subject token named in {source.origin}",
        hint="run flyte-iap after the step that provides it (in GitHub Actions: google-github-actions/auth "
        "earlier in the same job, with `permissions: id-token: write`)",
    ):
        try:
            credentials.refresh(http)
        except google.auth.exceptions.OAuthError as exc:
            if _unreachable_in(exc) is not None:
                raise
            raise CredentialsError(
                f"the Security Token Service rejected the subject token from {source.origin}: {_reason(exc)}",
                f"check the workload identity provider in the file's audience ({audience}): its attribute "
                "condition and allowed audiences, and that the subject token has not expired",
            ) from None
    description = f"the federated identity from {source.origin}"
    return _Caller(str(credentials.token), description, _pool_member(audience))


def _workforce_caller(source: CredentialSource, info: dict[str, Any], http: HttpRequest) -> _Caller:
    from google.auth import external_account_authorized_user

    try:
        credentials = external_account_authorized_user.Credentials.from_info(info)
    except Exception as exc:  # building them from local data failed: a bad file
        raise CredentialsError(f"{source.origin}: malformed credentials: {_reason(exc)}", _GUIDE) from None
    with _google_errors(
        "the workforce identity token endpoint",
        rejected=f"the token endpoint refused the workforce credentials in {source.origin}",
        hint="run `gcloud auth application-default login --login-config=...` again",
    ):
        credentials.refresh(http)
    return _Caller(str(credentials.token), f"the workforce identity from {source.origin}", None)


def _generate_id_token(caller: _Caller, target: str, delegates: list[str], audience: str) -> str:
    """iamcredentials ``generateIdToken`` for ``target``, called by ``caller``."""
    from flyte_iap import transport

    what = "iamcredentials generateIdToken"
    body: dict[str, Any] = {"audience": audience, "includeEmail": True}
    if delegates:
        body["delegates"] = [f"projects/-/serviceAccounts/{d}" for d in delegates]
    response = transport.request(
        "POST",
        endpoints.generate_id_token_url(target),
        what=what,
        json_body=body,
        headers={"Authorization": f"Bearer {caller.token}"},
    )
    if response.status == 403:
        member = caller.member or "the principal behind these credentials"
        if delegates:
            raise PermissionDeniedError(
                f"{caller.description} may not create ID tokens for {target} through "
                f"{', '.join(delegates)}: iamcredentials answered HTTP 403",
                f"{member} needs roles/iam.serviceAccountTokenCreator on {delegates[0]}, each delegate the "
                f"same on the next, and {delegates[-1]} needs {OPENID_TOKEN_CREATOR} on {target}",
            )
        grant = (
            f"gcloud iam service-accounts add-iam-policy-binding {target} --role={OPENID_TOKEN_CREATOR} "
            f"--member={member}"
            if caller.member
            else f"grant {member} {OPENID_TOKEN_CREATOR} on {target}"
        )
        raise PermissionDeniedError(
            f"{caller.description} may not create ID tokens for {target}: iamcredentials answered HTTP 403 "
            f"({member} needs {OPENID_TOKEN_CREATOR} on it)",
            grant,
        )
    return iamcredentials_result(response, target, what, "token", "a token")


def iamcredentials_result(response: Any, target: str, what: str, field: str, description: str) -> str:
    """The string ``field`` of an IAM Credentials answer, after its 403 was handled by the caller.

    Raises:
        CredentialsError: HTTP 404, no such service account.
        InvalidTokenError: HTTP 200 without ``field`` (``description`` names it in the message).
    """
    from flyte_iap import transport

    if response.status == 404:
        raise CredentialsError(
            f"service account {target} does not exist (iamcredentials answered HTTP 404)",
            "check the email: gcloud iam service-accounts list --project PROJECT",
        )
    if response.status != 200:
        raise transport.api_error(response, what)
    payload = response.json()
    value = payload.get(field) if isinstance(payload, dict) else None
    if not isinstance(value, str) or not value:
        raise InvalidTokenError(
            f"{what} answered HTTP 200 without {description}",
            "check the FLYTE_IAP_IAMCREDENTIALS_URI override",
        )
    return value
