"""The exceptions flyte-iap raises. Each carries a one-line message and a hint for a human.

Example::

    import flyte_iap

    try:
        token = flyte_iap.get_user_id_token(audience)
    except flyte_iap.errors.FlyteIapError as exc:
        print(f"error: {exc}\\nhint: {exc.hint}")

The CLI prints ``error: <message>`` and ``hint: <hint>`` on stderr and exits with ``exc.exit_code``;
it never shows a traceback for these. Messages never contain a token, refresh token or client secret.
"""

from __future__ import annotations

#: The most characters of text from outside (an OAuth error_description, a Google API message) put in one
#: message: enough for any real description, not a page.
MAX_QUOTED = 300


def printable(text: str, limit: int = MAX_QUOTED) -> str:
    """``text`` safe to show on a terminal: control characters escaped, at most ``limit`` characters.

    Anything a server, a redirect or a file supplies may hold terminal escape sequences (``\\x1b]...``
    retitles a window, ``\\x1b[2J`` clears the screen) or bidirectional overrides; they are shown as
    Python escapes instead (``\\x1b``), as ``repr`` would.

    Args:
        text: the untrusted text.
        limit: the longest result before ``...`` is appended.

    Returns:
        One line of printable characters.
    """
    safe = "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)
    return safe if len(safe) <= limit else safe[: limit - 3] + "..."


class FlyteIapError(Exception):
    """Base class: something a user can act on. ``hint`` says how."""

    exit_code = 1
    default_hint = "run the command again with --help to see its options"

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint or self.default_hint

    def __str__(self) -> str:
        return self.message


class ConfigurationError(FlyteIapError):
    """Bad or missing input: options, files, environment."""

    exit_code = 2


class CacheError(FlyteIapError):
    """The token store cannot be read or written."""


class LoginRequiredError(FlyteIapError):
    """No usable sign-in, and none may start here (no terminal, or the caller asked for none).

    Besides ``message`` and ``hint``, it carries the parts a caller needs to word its own message:
    ``reason`` (why the stored sign-in cannot be used, e.g. ``no login stored``) and ``login_command``
    (the ``flyte-iap login ...`` command that signs in), each None when not known.
    """

    def __init__(
        self,
        message: str,
        hint: str | None = None,
        *,
        reason: str | None = None,
        login_command: str | None = None,
    ) -> None:
        super().__init__(message, hint)
        self.reason = reason
        self.login_command = login_command


class LoginError(FlyteIapError):
    """The browser login did not complete (denied, timed out, wrong state, port in use)."""


class OAuthError(FlyteIapError):
    """Google's OAuth endpoints answered with an error (``invalid_grant``, ``invalid_client``, ...)."""

    def __init__(self, message: str, hint: str | None = None, *, error: str | None = None) -> None:
        super().__init__(message, hint)
        self.error = error


class TransportError(FlyteIapError):
    """A request could not be completed: connection refused, timeout, repeated 5xx."""


class InvalidTokenError(FlyteIapError):
    """A token came back that must not be used: wrong ``aud``, ``iss``, expired or malformed."""


class CredentialsError(FlyteIapError):
    """No usable Google credentials for a service-account token, or they were refused."""


class PermissionDeniedError(CredentialsError):
    """Google answered 403: a role is missing."""
