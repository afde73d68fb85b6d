"""The one HTTP helper behind every network call flyte-iap makes.

Example::

    from flyte_iap import endpoints, transport

    reply = transport.post_oauth(
        endpoints.token_uri(),
        {"grant_type": "refresh_token", "refresh_token": rt, "client_id": cid, "client_secret": cs},
        what="Google's token endpoint",
    )
    reply["id_token"]

    response = transport.request("GET", url, headers={"Authorization": "Bearer ..."}, what="Secret Manager")
    if response.status != 200:
        raise transport.api_error(response, "Secret Manager")

    credentials.refresh(transport.google_auth_request())  # the same policy for google-auth credentials

The policy, the same for every call:

* every attempt has a total deadline (:data:`DEFAULT_TIMEOUT` seconds, or ``FLYTE_IAP_HTTP_TIMEOUT``) that
  covers connecting, sending, the headers and the whole body, as Go's ``http.Client.Timeout`` does for
  ``gh``: a server that trickles one byte every few seconds is cut off at the deadline, not kept alive
  read by read (requests alone has only per-read timeouts). flytekit runs the proxy command with no
  timeout of its own, and a hang there hangs ``pyflyte``;
* an answer larger than :data:`MAX_RESPONSE_BYTES` is refused;
* inside :func:`command_deadline` (the token commands use it) no attempt and no retry outlives the
  command's own deadline;
* HTTP 5xx, 408, 429 and connection errors are retried up to :data:`DEFAULT_TRIES` attempts in all, with a
  short jittered exponential backoff (at most :data:`MAX_BACKOFF` seconds between two attempts);
* anything that still fails becomes a :class:`~flyte_iap.errors.TransportError` with the URL and a hint;
  an OAuth error body (``{"error": "invalid_grant", ...}``) becomes an
  :class:`~flyte_iap.errors.OAuthError` whose ``error`` is the OAuth error code, and a Google API error
  body (``{"error": {"code": 403, "status": "PERMISSION_DENIED", ...}}``) a
  :class:`~flyte_iap.errors.PermissionDeniedError` or :class:`~flyte_iap.errors.CredentialsError`.

Requests go through google-auth's :class:`google.auth.transport.requests.Request` (imported when the
first request is made, never at import time), or through any ``google.auth.transport.Request`` passed as
``http=``, which is how tests and callers inject their own. Request bodies, headers and response bodies
are never put in an error message, so a token or secret cannot leak through one.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import time
import urllib.parse
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from flyte_iap import endpoints
from flyte_iap.errors import (
    ConfigurationError,
    CredentialsError,
    FlyteIapError,
    OAuthError,
    PermissionDeniedError,
    TransportError,
    printable,
)

#: Seconds allowed for one attempt in all: connecting, sending, and reading the headers and whole body.
DEFAULT_TIMEOUT = 10.0
#: The largest answer read from Google: token and API answers are a few KiB.
MAX_RESPONSE_BYTES = 1 << 20
#: Environment variable overriding :data:`DEFAULT_TIMEOUT` (gcloud's equivalent: core/http_timeout).
TIMEOUT_ENV = "FLYTE_IAP_HTTP_TIMEOUT"
#: Seconds a token command (``token``, ``sa-token``) may take in all, the browser sign-in excepted.
COMMAND_DEADLINE = 60.0
#: Environment variable overriding :data:`COMMAND_DEADLINE`.
COMMAND_DEADLINE_ENV = "FLYTE_IAP_COMMAND_DEADLINE"
#: Attempts in all (the first one included) for 5xx, 408, 429 and connection errors.
DEFAULT_TRIES = 3
#: Seconds before the second attempt; doubled for each further one (with jitter), capped at MAX_BACKOFF.
BASE_BACKOFF = 0.25
MAX_BACKOFF = 2.0

RETRYABLE_STATUSES = frozenset({408, 429, 500, 502, 503, 504})

#: An object with google-auth's ``Request`` call signature: ``http(url, method, body, headers, timeout)``.
HttpRequest = Callable[..., Any]

#: The hint of an error for a request that got no answer.
NETWORK_HINT = "check your network, proxy settings (HTTPS_PROXY) and any FLYTE_IAP_*_URI override"

#: OAuth error code -> what a user can do about it (RFC 6749 section 5.2 and Google's additions).
OAUTH_HINTS: dict[str, str] = {
    "invalid_grant": "the refresh token or authorization code was revoked, expired or already used; "
    "sign in again with `flyte-iap login`",
    "invalid_client": "the OAuth client ID or secret is wrong, or the client was deleted; check "
    "--client-id and the client secret (APIs & Services > Credentials in the Cloud console)",
    "unauthorized_client": "this OAuth client may not use this grant; use a client of type Desktop app",
    "invalid_request": "Google rejected the request as malformed; check the FLYTE_IAP_*_URI overrides",
    "invalid_scope": "the requested scopes are not allowed for this client",
    "access_denied": "sign-in was declined; run the login again and allow access, or ask an admin "
    "whether your account may use this OAuth app",
    "redirect_uri_mismatch": "the OAuth client must be of type Desktop app, which accepts loopback "
    "redirects on any port; a Web application client only accepts its registered redirect URIs",
    "invalid_token": "the token is already revoked or expired",
}


@dataclass(frozen=True)
class Response:
    """A finished HTTP exchange: status, headers (case-insensitive lookups) and body."""

    status: int
    headers: Mapping[str, str]
    data: bytes
    url: str = field(repr=False)

    def json(self) -> Any:
        """The body parsed as JSON, or ``None`` when it is not JSON (nested too deeply for the parser too)."""
        try:
            return json.loads(self.data)
        except (ValueError, UnicodeDecodeError, RecursionError):
            return None


def _default_http() -> HttpRequest:
    # google-auth's transport pulls in requests and urllib3: only when a request is really made.
    import google.auth.transport.requests

    from flyte_iap import _deadline_http

    return google.auth.transport.requests.Request(_deadline_http.session(MAX_RESPONSE_BYTES))


# -- deadlines ---------------------------------------------------------------------------------------

#: time.monotonic() by which the current command must be done, or None outside command_deadline().
_command_end: float | None = None


def _seconds_from_env(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not 0 < value < float("inf"):
        raise ConfigurationError(f"{name}={raw!r} is not a number of seconds > 0", f"unset {name}")
    return value


def http_timeout() -> float:
    """Seconds per attempt: ``FLYTE_IAP_HTTP_TIMEOUT`` when set, else :data:`DEFAULT_TIMEOUT`.

    Raises:
        ConfigurationError: the variable is not a finite number of seconds > 0.
    """
    return _seconds_from_env(TIMEOUT_ENV, DEFAULT_TIMEOUT)


def command_seconds() -> float:
    """A token command's deadline: ``FLYTE_IAP_COMMAND_DEADLINE`` when set, else :data:`COMMAND_DEADLINE`.

    Raises:
        ConfigurationError: the variable is not a finite number of seconds > 0.
    """
    return _seconds_from_env(COMMAND_DEADLINE_ENV, COMMAND_DEADLINE)


@contextlib.contextmanager
def command_deadline(seconds: float) -> Iterator[None]:
    """Make every request (and retry) in the block end within ``seconds`` from now, all together.

    Args:
        seconds: the budget of the whole block.

    Returns:
        A context manager.
    """
    global _command_end
    previous = _command_end
    _command_end = time.monotonic() + seconds
    try:
        yield
    finally:
        _command_end = previous


@contextlib.contextmanager
def deadline_paused() -> Iterator[None]:
    """Stop the command's clock while the block runs (the user is signing in in a browser)."""
    global _command_end
    start = time.monotonic()
    try:
        yield
    finally:
        if _command_end is not None:
            _command_end += time.monotonic() - start


def time_left(limit: float) -> float:
    """``limit``, or less when the command's deadline comes first (never below 0)."""
    if _command_end is None:
        return limit
    return max(0.0, min(limit, _command_end - time.monotonic()))


def _attempt_timeout(timeout: float | None, what: str, where: str) -> float:
    """The deadline of the next attempt; raises TransportError once the command's deadline has passed."""
    left = time_left(timeout if timeout is not None else http_timeout())
    if left <= 0:
        raise TransportError(
            f"gave up on {what} at {where}: the command's deadline has passed",
            NETWORK_HINT,
        )
    return left


def url_for_message(url: str) -> str:
    """``url`` without its query string and fragment, which are never needed in a message and may carry data.

    Args:
        url: any URL.

    Returns:
        The scheme, host and path.
    """
    parts = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))


def failure_reason(exc: BaseException, timeout: float) -> str:
    """A short human reason for a request that got no answer, for an error message.

    google-auth wraps the exception of requests and urllib3, so the chain of causes is searched.

    Args:
        exc: what the transport raised (a ``google.auth.exceptions.TransportError``, say).
        timeout: the timeout of the attempt, for "no answer within N s".

    Returns:
        "no answer within N s", "connection refused", "TLS handshake failed", "host name not found" or
        "connection failed".
    """
    cause: BaseException | None = exc
    seen: list[BaseException] = []
    while cause is not None and cause not in seen:
        seen.append(cause)
        name = type(cause).__name__
        if name == "DeadlineExceeded":
            return f"no complete answer within {timeout:g} s"
        if name == "AnswerTooLarge":
            return f"answer larger than {MAX_RESPONSE_BYTES // 1024} KiB"
        if name in {"ConnectTimeout", "ReadTimeout", "Timeout", "TimeoutError", "ReadTimeoutError"}:
            return f"no answer within {timeout:g} s"
        if isinstance(cause, ConnectionRefusedError) or "Connection refused" in str(cause):
            return "connection refused"
        if name == "SSLError":
            return "TLS handshake failed"
        if "Name or service not known" in str(cause) or "nodename nor servname" in str(cause):
            return "host name not found"
        cause = cause.__cause__ or cause.__context__
    return "connection failed"


def _backoff(attempt: int, retry_after: str | None) -> float:
    delay = min(MAX_BACKOFF, BASE_BACKOFF * 2 ** (attempt - 1))
    if retry_after and retry_after.strip().isdigit():
        delay = min(MAX_BACKOFF, max(delay, float(retry_after)))
    return delay * random.uniform(0.75, 1.0)  # noqa: S311 - jitter, not security


def request(
    method: str,
    url: str,
    *,
    what: str,
    form: Mapping[str, str] | None = None,
    json_body: Any = None,
    headers: Mapping[str, str] | None = None,
    timeout: float | None = None,
    tries: int = DEFAULT_TRIES,
    http: HttpRequest | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> Response:
    """Send one HTTP request with the project's timeout and retry policy.

    A 4xx answer (other than 408 and 429) is returned, not raised: the caller knows what it means.

    Args:
        method: ``GET``, ``POST``, ...
        url: the full URL (from :mod:`flyte_iap.endpoints`).
        what: the service in words, for messages ("Google's token endpoint").
        form: fields sent as ``application/x-www-form-urlencoded``.
        json_body: a value sent as JSON (mutually exclusive with ``form``).
        headers: extra request headers.
        timeout: seconds for one attempt in all (connect and whole answer); default :func:`http_timeout`.
        tries: attempts in all for retryable failures; 1 disables retries.
        http: a ``google.auth.transport.Request``-like callable; google-auth's requests transport by
            default.
        sleep: how to wait between attempts (tests pass a no-op).

    Returns:
        The last :class:`Response`.

    Raises:
        TransportError: no answer after ``tries`` attempts (connection refused, timeout, ...), or still
            HTTP 5xx/408/429 after them.
    """
    import google.auth.exceptions

    send = http or _default_http()
    body: bytes | None = None
    all_headers = dict(headers or {})
    if form is not None:
        body = urllib.parse.urlencode(form).encode()
        all_headers.setdefault("Content-Type", "application/x-www-form-urlencoded")
    elif json_body is not None:
        body = json.dumps(json_body).encode()
        all_headers.setdefault("Content-Type", "application/json")
    where = url_for_message(url)
    attempt = 0
    while True:
        attempt += 1
        this_timeout = _attempt_timeout(timeout, what, where)
        try:
            raw = send(url=url, method=method, body=body, headers=all_headers, timeout=this_timeout)
        except google.auth.exceptions.TransportError as exc:
            if attempt >= tries or time_left(1.0) <= 0:
                reason = failure_reason(exc, this_timeout)
                raise TransportError(
                    f"cannot reach {what} at {where}: {reason} (tried {attempt} times)", NETWORK_HINT
                ) from None
            sleep(_backoff(attempt, None))
            continue
        response = Response(status=raw.status, headers=raw.headers, data=raw.data or b"", url=url)
        if response.status not in RETRYABLE_STATUSES:
            return response
        if attempt >= tries or time_left(1.0) <= 0:
            raise TransportError(
                f"{what} at {where} answered HTTP {response.status} (tried {attempt} times)",
                f"Google may be having a problem; try again in a minute, and check {endpoints.STATUS_PAGE}",
            )
        sleep(_backoff(attempt, response.headers.get("Retry-After")))


def oauth_error(response: Response, what: str) -> FlyteIapError:
    """Turn an unsuccessful OAuth endpoint answer into an exception (to raise).

    Args:
        response: an answer with a status other than 200.
        what: the endpoint in words, for the message.

    Returns:
        An :class:`OAuthError` whose ``error`` is the OAuth error code when the body is an OAuth error,
        else a :class:`TransportError`.
    """
    payload = response.json()
    if isinstance(payload, dict) and isinstance(payload.get("error"), str):
        code = payload["error"]
        description = payload.get("error_description")
        detail = f": {printable(description)}" if isinstance(description, str) and description else ""
        return OAuthError(
            f"{what} refused the request with {printable(code, 80)}{detail}",
            OAUTH_HINTS.get(code, "see the OAuth error code in Google's documentation"),
            error=code,
        )
    if isinstance(payload, dict) and isinstance(payload.get("error"), dict):
        return api_error(response, what)
    return TransportError(
        f"{what} at {url_for_message(response.url)} answered HTTP {response.status} with a body that is not "
        "an OAuth error",
        NETWORK_HINT,
    )


def post_oauth(
    url: str,
    form: Mapping[str, str],
    *,
    what: str,
    timeout: float | None = None,
    tries: int = DEFAULT_TRIES,
    http: HttpRequest | None = None,
) -> dict[str, Any]:
    """POST a form to an OAuth endpoint (token, revoke) and return its JSON answer.

    Args:
        url: the endpoint (``endpoints.token_uri()``, ``endpoints.revoke_uri()``).
        form: the form fields; they may hold secrets and are never put in a message.
        what: the endpoint in words.
        timeout: seconds per attempt in all; default :func:`http_timeout`.
        tries: attempts in all for retryable failures.
        http: an injected google-auth style transport.

    Returns:
        The parsed JSON object (``{}`` for an empty 200 answer, as revoke gives).

    Raises:
        OAuthError: the endpoint answered an OAuth error (``error`` holds its code).
        TransportError: no usable answer.
    """
    response = request("POST", url, what=what, form=form, timeout=timeout, tries=tries, http=http)
    if response.status != 200:
        raise oauth_error(response, what)
    if not response.data.strip():
        return {}
    payload = response.json()
    if not isinstance(payload, dict):
        raise TransportError(
            f"{what} at {url_for_message(url)} answered HTTP 200 with a body that is not a JSON object",
            NETWORK_HINT,
        )
    return payload


def api_error(response: Response, what: str) -> FlyteIapError:
    """Turn a failed Google API answer (``{"error": {"code", "status", "message"}}``) into an exception.

    Args:
        response: the answer, status >= 400.
        what: the API in words ("Secret Manager").

    Returns:
        :class:`PermissionDeniedError` for 403, :class:`CredentialsError` for 401, a
        :class:`FlyteIapError` carrying Google's message otherwise.
    """
    payload = response.json()
    error = payload.get("error") if isinstance(payload, dict) else None
    message = status = ""
    if isinstance(error, dict):
        message = printable(str(error.get("message") or ""))
        status = printable(str(error.get("status") or ""), 80)
    elif isinstance(error, str):
        message = printable(str(payload.get("error_description") or error))
    label = f"HTTP {response.status}" + (f" {status}" if status else "")
    text = f"{what} answered {label}" + (f": {message}" if message else "")
    if response.status == 403:
        return PermissionDeniedError(
            text, "a role is missing on the resource for the account in use; see the message above"
        )
    if response.status == 401:
        return CredentialsError(
            text,
            "the Google credentials in use are invalid or expired; for application default "
            "credentials run `gcloud auth application-default login`",
        )
    return FlyteIapError(text, "check the resource name and the FLYTE_IAP_*_URI overrides")


class _RetryingRequest:
    """A ``google.auth.transport.Request`` that applies the project's timeout and retry policy."""

    def __init__(self, timeout: float | None, tries: int, http: HttpRequest | None) -> None:
        self._timeout = timeout if timeout is not None else http_timeout()
        self._tries = tries
        self._http = http or _default_http()

    def __call__(
        self,
        url: str,
        method: str = "GET",
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
        **kwargs: Any,
    ) -> Any:
        import google.auth.exceptions

        attempt = 0
        while True:
            attempt += 1
            limit = (
                min(timeout, self._timeout) if isinstance(timeout, int | float) and timeout else self._timeout
            )
            this_timeout = time_left(limit)
            if this_timeout <= 0:
                # google-auth turns its own TransportError into the caller's error, with this reason.
                raise google.auth.exceptions.TransportError(
                    "DeadlineExceeded: the command's deadline has passed"
                )
            try:
                response = self._http(
                    url=url, method=method, body=body, headers=headers, timeout=this_timeout, **kwargs
                )
            except google.auth.exceptions.TransportError:
                if attempt >= self._tries or time_left(1.0) <= 0:
                    raise
                time.sleep(_backoff(attempt, None))
                continue
            if response.status not in RETRYABLE_STATUSES or attempt >= self._tries or time_left(1.0) <= 0:
                return response
            time.sleep(_backoff(attempt, response.headers.get("Retry-After")))


def google_auth_request(
    *, timeout: float | None = None, tries: int = DEFAULT_TRIES, http: HttpRequest | None = None
) -> HttpRequest:
    """A ``google.auth.transport.Request`` with the project's timeout and retry policy.

    Pass it to google-auth (``credentials.refresh(request)``, ``credentials.before_request(...)``). Unlike
    :func:`request`, it raises google-auth's own exceptions, which google-auth turns into
    ``RefreshError`` and the like; translate those at the call site. google-auth retries some refreshes
    itself, so ``tries=1`` avoids multiplying attempts there.

    Args:
        timeout: seconds per attempt in all (google-auth's own, if smaller, wins); default
            :func:`http_timeout`.
        tries: attempts in all for 5xx/408/429 and connection errors.
        http: the transport to wrap; google-auth's requests transport by default.

    Returns:
        A callable with google-auth's ``Request`` signature.
    """
    return _RetryingRequest(timeout, tries, http)
