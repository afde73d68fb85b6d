"""A scripted user in a browser: open an authorization URL, consent, land on the client's loopback page.

Example::

    from flyte_iap.testing.browser import browse

    result = browse(authorization_url)  # what a login flow would open with webbrowser.open()
    assert result.ok and result.code

:meth:`flyte_iap.testing.FakeGoogle.browser` and ``python -m flyte_iap.testing browse URL`` use this.
Standard library only, so the ``browse`` command starts fast.
"""

from __future__ import annotations

import re
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any

__all__ = ["BrowserResult", "browse"]


@dataclass
class BrowserResult:
    """What the scripted user saw: the consent screen and the loopback page it was sent to.

    Attributes:
        status: HTTP status of the last page (the loopback page after a redirect, else the consent page),
            0 when a page could not be reached.
        body: text of that page.
        url: URL of that page.
        redirect_url: where the consent screen redirected (the loopback URL with ``code`` or ``error``),
            or None when it showed an error page instead.
        error: the OAuth error (``access_denied``, ``redirect_uri_mismatch``, ...) or a connection error.
        code: the authorization code in the redirect, if any.
        state: the ``state`` in the redirect, if any.
    """

    status: int
    body: str
    url: str
    redirect_url: str | None = None
    error: str | None = None
    code: str | None = None
    state: str | None = None

    @property
    def ok(self) -> bool:
        """True when consent was given and the loopback page answered 2xx."""
        return self.error is None and 200 <= self.status < 300


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def _fetch(url: str, timeout: float) -> tuple[int, dict[str, str], str]:
    opener = urllib.request.build_opener(_NoRedirect)
    try:
        with opener.open(url, timeout=timeout) as response:
            return response.status, dict(response.headers.items()), response.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, dict(exc.headers.items()), exc.read().decode("utf-8", "replace")


def browse(url: str, *, timeout: float = 30.0) -> BrowserResult:
    """Act as the user's browser: open ``url``, follow redirects, and return what the last page said.

    The consent screen of :class:`FakeGoogle` answers with a redirect to the client's loopback URL; this
    follows it (and up to 5 further redirects) and reads the page the client serves there.

    Args:
        url: usually the authorization URL a login flow opened.
        timeout: seconds to wait for each page.

    Returns:
        A :class:`BrowserResult`; ``status`` is 0 with ``error`` set when a page could not be reached.
    """
    redirect_url: str | None = None
    error: str | None = None
    code = state = None
    for _ in range(7):
        try:
            status, headers, body = _fetch(url, timeout)
        except (OSError, ValueError) as exc:
            reason = getattr(exc, "reason", exc)
            return BrowserResult(
                0, "", url, redirect_url, error or f"cannot open {url}: {reason}", code, state
            )
        location = headers.get("Location") or headers.get("location")
        if 300 <= status < 400 and location:
            location = urllib.parse.urljoin(url, location)
            if redirect_url is None:
                redirect_url = location
                params = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(location).query))
                error, code, state = params.get("error"), params.get("code"), params.get("state")
            url = location
            continue
        if redirect_url is None and status >= 400:
            match = re.search(r"Error \d+: ([a-z_]+)", body)
            error = match.group(1) if match else f"HTTP {status}"
        return BrowserResult(status, body, url, redirect_url, error, code, state)
    return BrowserResult(0, "", url, redirect_url, "too many redirects", code, state)
