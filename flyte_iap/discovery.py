"""Find which OAuth client an IAP-protected app signs people in with, from IAP's own redirect.

Example::

    from flyte_iap.discovery import choose_audience, discover_client_id

    client = discover_client_id("https://flyte.example.com")  # "123-abc.apps.googleusercontent.com"
    audience, mode = choose_audience(client, desktop_client_id="123-desk.apps.googleusercontent.com")

IAP answers a browser that has no session with a redirect to Google's sign-in page whose ``client_id``
is the app's OAuth client: the custom client's ID, or with the Google-managed client, Google's. A
command-line client cannot get ID tokens for the Google-managed client (which, Google's custom-OAuth
page says, gives no programmatic access), and Google mints ID tokens for another client only within
one project, so a client from another project than the Desktop client means: sign in with the Desktop
client on the app's programmatic-client allowlist, with its own ID as the audience (or use
``flyte-iap sa-jwt`` for service accounts). Which requests IAP treats as a browser's is not documented;
this module sends what a browser sends on a first visit (``GET``, ``Accept: text/html``).

Standard library only; one request, no redirects followed, a bounded read.
"""

from __future__ import annotations

import urllib.error
import urllib.parse
import urllib.request

from flyte_iap.errors import ConfigurationError, TransportError

_TIMEOUT = 10.0
_HEADERS = {
    "Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
    "User-Agent": "Mozilla/5.0 (compatible; flyte-iap audience discovery)",
}


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


def _app_url(endpoint: str) -> str:
    text = endpoint.strip()
    if text.startswith("dns:///"):
        text = "https://" + text[len("dns:///") :]
    if "://" not in text:
        text = "https://" + text
    parts = urllib.parse.urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigurationError(
            f"--endpoint {endpoint!r} is not the URL of an app", "pass it as https://flyte.example.com"
        )
    return f"{parts.scheme}://{parts.netloc}/"


def discover_client_id(endpoint: str, *, timeout: float = _TIMEOUT, ca_cert: str | None = None) -> str:
    """The ``client_id`` of the sign-in page IAP at ``endpoint`` redirects a browser to.

    Args:
        endpoint: the app: ``https://flyte.example.com`` (or ``host``, ``dns:///host:port``).
        timeout: seconds for the one request.
        ca_cert: a PEM bundle to trust instead of the system roots.

    Returns:
        The OAuth client ID.

    Raises:
        ConfigurationError: a bad endpoint, or no IAP sign-in redirect there (IAP off, another proxy).
        TransportError: the endpoint cannot be reached.
    """
    url = _app_url(endpoint)
    handlers: list[urllib.request.BaseHandler] = [_NoRedirect()]
    if ca_cert:
        import ssl

        handlers.append(urllib.request.HTTPSHandler(context=ssl.create_default_context(cafile=ca_cert)))
    opener = urllib.request.build_opener(*handlers)
    request = urllib.request.Request(url, headers=_HEADERS, method="GET")
    status, location = 0, ""
    try:
        with opener.open(request, timeout=timeout) as response:
            status = response.status
    except urllib.error.HTTPError as exc:
        status, location = exc.code, exc.headers.get("Location", "") or ""
        exc.close()
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise TransportError(
            f"cannot reach {url} to find its OAuth client: {reason}", "check --endpoint and the network"
        ) from None
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(location[:8192]).query)
    client = (query.get("client_id") or [""])[0].strip()
    if status not in (301, 302, 303, 307) or not client:
        raise ConfigurationError(
            f"{url} did not redirect to Google's sign-in page (HTTP {status}): no IAP OAuth client found",
            "check that IAP protects the app at --endpoint, or pass --audience",
        )
    return client


def project_of(client_id: str) -> str:
    """The project number an OAuth client ID starts with (``123456789012-....apps.googleusercontent.com``)."""
    return client_id.partition("-")[0]


def choose_audience(discovered: str, desktop_client_id: str | None) -> tuple[str, str]:
    """The audience to ask Google for, given the app's client and the Desktop client signing in.

    Args:
        discovered: from :func:`discover_client_id`.
        desktop_client_id: the Desktop OAuth client, if known.

    Returns:
        ``(audience, mode)``: ``(discovered, "custom")`` when the Desktop client is in the app client's
        project (or unknown), else ``(desktop_client_id, "allowlisted-desktop")``: the app uses the
        Google-managed client (or a client Google will not mint tokens for from this Desktop client).
    """
    if desktop_client_id and project_of(desktop_client_id) != project_of(discovered):
        return desktop_client_id, "allowlisted-desktop"
    return discovered, "custom"


def managed_client_hint(endpoint: str, discovered: str) -> str:
    """What to do when the app's client is one no ID token can be minted for."""
    return (
        f"IAP at {endpoint} signs in with OAuth client {discovered}, which is not in your Desktop client's "
        "project: the Google-managed client. Add your Desktop client to the app's programmatic clients and "
        "use its own ID as the audience (`flyte-iap token --client-id DESKTOP_CLIENT_ID`), or for a service "
        "account use `flyte-iap sa-jwt --url " + _app_url(endpoint).rstrip("/") + "`"
    )
