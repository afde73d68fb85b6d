"""The proxy's ID token: one cached value, refreshed ahead of expiry in a thread, never per request.

Example::

    from flyte_iap.local_proxy import TokenSource, user_token_fetcher

    source = TokenSource(user_token_fetcher(audience))


    async def forward() -> None:
        token = await source.get()  # no I/O while the token has more than min_valid seconds left
        source.reject(token)  # IAP said it expired: the next get() fetches a new one

``fetch`` is the same blocking call ``flyte-iap token`` / ``sa-token`` make (the on-disk cache, its
cross-process lock, the refresh grant or the service account's credentials), run in the default executor
so that the event loop keeps serving. Concurrent callers share one fetch in flight.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from flyte_iap.errors import InvalidTokenError
from flyte_iap.idtoken import DEFAULT_MIN_VALID, decode_claims

#: A refresh starts in the background this many seconds before the token stops being served.
REFRESH_AHEAD = 120.0
#: After a background refresh failed, the next one waits this long (the token is still served).
RETRY_AFTER = 10.0

Fetch = Callable[[str | None], str]


class TokenSource:
    """The current ID token for the proxy's upstream.

    Args:
        fetch: blocking; returns a token with more than ``min_valid`` seconds left. Its argument is a
            token IAP just refused (or ``None``), which must not be returned again.
        min_valid: a token is served while it has more than this many seconds left.
        clock: seconds since the epoch, for tests.
        on_background_error: called with the exception of a failed background refresh.
    """

    def __init__(
        self,
        fetch: Fetch,
        *,
        min_valid: float = DEFAULT_MIN_VALID,
        clock: Callable[[], float] = time.time,
        on_background_error: Callable[[BaseException], None] | None = None,
    ) -> None:
        self._on_background_error = on_background_error
        self._retry_at = 0.0
        self._fetch = fetch
        self._min_valid = min_valid
        self._clock = clock
        self._token: str | None = None
        self._expires = 0.0
        self._rejected: str | None = None
        self._inflight: asyncio.Future[str] | None = None
        #: completed calls of ``fetch`` (the cache makes most of them cheap), for tests and benchmarks
        self.fetches = 0

    def prime(self, token: str) -> None:
        """Start with ``token`` (fetched before the event loop ran, e.g. after an interactive login)."""
        self._store(token)

    @property
    def email(self) -> str | None:
        """The ``email`` claim of the current token, if any."""
        if self._token is None:
            return None
        email = decode_claims(self._token).get("email")
        return email if isinstance(email, str) else None

    async def get(self) -> str:
        """The token to send; fetches (once, however many callers wait) only when it is due.

        Raises:
            FlyteIapError: the fetch failed (login needed, credentials refused, Google unreachable).
        """
        left = self._expires - self._clock()
        if self._token is not None and left > self._min_valid:
            due = left <= self._min_valid + REFRESH_AHEAD and self._clock() >= self._retry_at
            if due and self._inflight is None:
                # Served from memory now; the next callers get the new one without waiting.
                self._start_fetch().add_done_callback(self._background_done)
            return self._token
        return await asyncio.shield(self._inflight or self._start_fetch())

    def reject(self, token: str) -> None:
        """IAP refused ``token`` (expired by its clock): the next :meth:`get` fetches a new one."""
        if token == self._token:
            self._rejected = token
            self._token = None
            self._expires = 0.0

    def _start_fetch(self) -> asyncio.Future[str]:
        loop = asyncio.get_running_loop()
        rejected = self._rejected
        future = loop.run_in_executor(None, self._fetch_checked, rejected)
        self._inflight = future

        def done(f: asyncio.Future[str]) -> None:
            self._inflight = None
            if f.cancelled():
                return
            if f.exception() is not None:
                self._retry_at = self._clock() + RETRY_AFTER
                return
            self.fetches += 1
            self._store(f.result())

        future.add_done_callback(done)
        return future

    def _fetch_checked(self, rejected: str | None) -> str:
        """``fetch``, whose answer must be a JWT with an expiry: else its callers get the error."""
        token = self._fetch(rejected)
        _expiry(token)
        return token

    def _store(self, token: str) -> None:
        self._expires = _expiry(token)
        self._token = token
        self._rejected = None

    def _background_done(self, future: asyncio.Future[str]) -> None:
        # The token in memory is still served; a later get() retries after RETRY_AFTER.
        if future.cancelled():
            return
        exc = future.exception()
        if exc is not None and self._on_background_error is not None:
            self._on_background_error(exc)


def _expiry(token: object) -> float:
    """The ``exp`` of an ID token.

    Raises:
        InvalidTokenError: not a JWT, or no numeric ``exp``.
    """
    if not isinstance(token, str):
        raise InvalidTokenError(
            f"the token source returned {type(token).__name__}, not an ID token",
            "a TokenSource fetch must return the ID token as text",
        )
    exp = decode_claims(token).get("exp")
    if not isinstance(exp, int | float) or isinstance(exp, bool):
        raise InvalidTokenError("the ID token has no expiry (exp)", "report this: Google always sets exp")
    return float(exp)
