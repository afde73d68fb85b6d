"""A ``requests`` auth that sends the user's Google ID token to Identity-Aware Proxy.

Example::

    import requests

    import flyte_iap

    auth = flyte_iap.IapAuth("123-web.apps.googleusercontent.com")  # after `flyte-iap login`
    response = requests.get("https://flyte.example.com/api/v1/projects", auth=auth, timeout=30)

The token goes in ``Proxy-Authorization: Bearer ...``, which IAP checks and strips, so the request's own
``Authorization`` (flyteadmin's token, say) reaches the backend untouched. The token is kept in memory
and refreshed (through :func:`flyte_iap.get_user_id_token` and its shared cache) when it has less than
``min_valid`` seconds left. If IAP itself still answers 401 (its responses carry
``x-goog-iap-generated-response: true``), a new token is obtained and the request is sent once more:
a bytes or str body as it is, a file body from where it stood before the first send. A body from a
generator or iterator (or a file that cannot seek) cannot be sent again, so that 401 is returned; the
token is replaced all the same, so sending the request again with a new body passes.

The token goes only to one origin (scheme, host and port): the one the auth object is first used with,
or those given as ``origins``. A request to any other origin, including one an app redirected to, gets
no token, and a 401 from it is never retried with one. ``localhost`` and ``127.0.0.1`` are different
origins. This is requests' own rule for ``Authorization`` on redirects, made strict: requests strips
that header when the host changes and drops ``Proxy-Authorization`` on every redirect
(psf/requests@v2.34.2:src/requests/sessions.py ``rebuild_auth``, ``rebuild_proxies``), but a response
hook travels with redirected requests, so without the check the 401 retry would re-add the token for
whatever host the app sent the client to.
"""

from __future__ import annotations

import logging
import threading
import urllib.parse
from collections.abc import Callable, Iterable
from typing import Any

import requests
import requests.auth
import requests.exceptions
import requests.utils

from flyte_iap.idtoken import DEFAULT_MIN_VALID, checked_seconds, decode_claims, seconds_left
from flyte_iap.user_tokens import get_user_id_token

#: Header IAP puts on the responses it generates itself (as opposed to the backend's).
IAP_GENERATED_HEADER = "x-goog-iap-generated-response"

_log = logging.getLogger(__name__)


class IapAuth(requests.auth.AuthBase):
    """Adds ``Proxy-Authorization: Bearer <user ID token>`` for an IAP-protected app.

    Args:
        audience: the OAuth client ID of the IAP-protected app.
        min_valid: refresh when the token has fewer seconds left than this.
        token_getter: returns a token for ``(audience, rejected_token)``; by default
            :func:`flyte_iap.get_user_id_token` with ``**options``.
        origins: the origins (``https://flyte.example.com``, ``https://host:8443``) the token may be sent
            to; by default the origin of the first request this auth is used with.
        **options: passed to :func:`flyte_iap.get_user_id_token` (``client_id``, ``client_secret``,
            ``interactive``, ``cache``, ...).

    Thread-safe: one instance can serve a ``requests.Session`` used from several threads.
    """

    def __init__(
        self,
        audience: str,
        *,
        min_valid: float = DEFAULT_MIN_VALID,
        token_getter: Callable[[str, str | None], str] | None = None,
        origins: Iterable[str] | None = None,
        **options: Any,
    ) -> None:
        self.audience = audience
        self.min_valid = checked_seconds(min_valid, "min_valid")
        self._options = options
        self._getter = token_getter or self._default_getter
        self._lock = threading.Lock()
        self._token: str | None = None
        self._exp_claims: dict[str, Any] = {}
        self._origins: set[str] = set()
        for url in origins or ():
            origin = _origin(url)
            if origin is None:
                raise ValueError(f"not an origin: {url!r} (expected e.g. https://flyte.example.com)")
            self._origins.add(origin)

    @property
    def origins(self) -> frozenset[str]:
        """The origins the token is sent to (empty until the first request when none were given)."""
        with self._lock:
            return frozenset(self._origins)

    def _may_send_to(self, url: str | None, *, bind: bool) -> bool:
        """Whether ``url`` is on an allowed origin; with ``bind``, the first URL seen becomes the origin."""
        origin = _origin(url or "")
        if origin is None:
            return False
        with self._lock:
            if bind and not self._origins:
                self._origins.add(origin)
            return origin in self._origins

    def _default_getter(self, audience: str, rejected: str | None) -> str:
        return get_user_id_token(audience, min_valid=self.min_valid, rejected_token=rejected, **self._options)

    def token(self, rejected: str | None = None) -> str:
        """The current token, refreshed if it is about to expire or equals ``rejected``.

        Args:
            rejected: a token the server just refused (HTTP 401).

        Returns:
            A token with more than ``min_valid`` seconds left.

        Raises:
            FlyteIapError: as :func:`flyte_iap.get_user_id_token`.
        """
        with self._lock:
            fresh = (
                self._token is not None
                and self._token != rejected
                and seconds_left(self._exp_claims) > self.min_valid
            )
            if not fresh:
                self._token = self._getter(self.audience, rejected)
                self._exp_claims = {"exp": decode_claims(self._token).get("exp")}
            assert self._token is not None
            return self._token

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        if not self._may_send_to(request.url, bind=True):
            _log.debug(
                "not sending the IAP token to %s: not an origin of this IapAuth", _origin(request.url or "")
            )
            return request
        token = self.token()
        request.headers["Proxy-Authorization"] = f"Bearer {token}"
        request.register_hook("response", self._retry_on_iap_401)
        return request

    def _retry_on_iap_401(self, response: requests.Response, **kwargs: Any) -> requests.Response:
        if response.status_code != 401 or response.headers.get(IAP_GENERATED_HEADER, "").lower() != "true":
            return response
        sent = response.request
        if getattr(sent, "_flyte_iap_retried", False):
            return response
        # The hook travels with redirected requests: a 401 from wherever the app redirected to is not ours.
        if not self._may_send_to(sent.url, bind=False):
            return response
        rejected = sent.headers.get("Proxy-Authorization", "").removeprefix("Bearer ").strip() or None
        # Replaced even when this request cannot be resent, so that the caller's next one passes.
        token = self.token(rejected=rejected)
        if not _rewind_body(sent):
            _log.debug(
                "IAP refused the token (HTTP 401); not sending the request again: its %s body was consumed "
                "and cannot be rewound",
                type(sent.body).__name__,
            )
            return response
        # Drain and release the first connection before reusing the adapter, as requests' digest auth does.
        _ = response.content
        response.close()
        retry = sent.copy()
        retry.headers["Proxy-Authorization"] = f"Bearer {token}"
        retry._flyte_iap_retried = True  # type: ignore[attr-defined]
        if response.connection is None:  # pragma: no cover - only for hand-made responses
            return response
        second = response.connection.send(retry, **kwargs)
        second.history.append(response)
        second.request = retry
        return second


_DEFAULT_PORTS = {"http": 80, "https": 443}


def _origin(url: str) -> str | None:
    """``scheme://host:port`` of ``url`` (host lower-cased, default port filled in); None without a host."""
    try:
        parts = urllib.parse.urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if not parts.hostname or scheme not in _DEFAULT_PORTS:
        return None
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return f"{scheme}://{host}:{port or _DEFAULT_PORTS[scheme]}"


def _rewind_body(request: requests.PreparedRequest) -> bool:
    """Make ``request``'s body readable again from its start; False when it cannot be sent again.

    bytes-like and str bodies are resent as they are. A file body goes back to the position requests recorded
    before the first send (``_body_position``), as requests does for redirects; a generator or iterator
    has no such position, nor has a file whose ``tell`` failed.
    """
    if request.body is None or isinstance(request.body, (bytes, bytearray, memoryview, str)):
        return True
    try:
        requests.utils.rewind_body(request)
    except requests.exceptions.UnrewindableBodyError:
        return False
    return True
