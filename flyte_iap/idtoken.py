"""Read and check the claims of a Google ID token without verifying its signature.

Example::

    >>> from flyte_iap.idtoken import decode_claims, check_id_token
    >>> claims = check_id_token(token, audience="123-abc.apps.googleusercontent.com")  # doctest: +SKIP
    >>> claims["email"]                                                               # doctest: +SKIP
    'alice@example.com'

The client does not need to verify the signature: IAP does, and the token came straight from Google over
TLS. What the client must check before caching or printing is that the token is for the right audience,
was issued by Google and is not about to expire, so that a misconfiguration surfaces here with a clear
message instead of as an opaque 401 from IAP. This module is on the hot path: standard library only.
"""

from __future__ import annotations

import binascii
import json
import time

from flyte_iap.endpoints import GOOGLE_ISSUERS
from flyte_iap.errors import ConfigurationError, InvalidTokenError

# typing costs milliseconds at import; the annotations are strings (PEP 563) and type checkers read this
# constant as True.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

# base64url -> base64: binascii decodes it as base64.urlsafe_b64decode would, without importing base64.
_URLSAFE = str.maketrans("-_", "+/")

#: Seconds of validity a cached token must have left to be used, unless the caller asks otherwise.
DEFAULT_MIN_VALID = 300.0

_HINT = "the token endpoint returned something that is not a Google ID token; check FLYTE_IAP_* overrides"


def checked_seconds(value: float, name: str = "--min-valid", *, minimum: float = 0) -> float:
    """``value`` as a float, if it is a finite number of seconds of at least ``minimum``.

    NaN compares false with everything, so a ``nan`` threshold would pass an expired token as valid;
    infinity never expires. Both are refused, as is anything below ``minimum``.

    Args:
        value: the number given.
        name: the option or argument, for the message.
        minimum: the smallest value allowed.

    Returns:
        ``float(value)``.

    Raises:
        ConfigurationError: not a finite number >= ``minimum``.
    """
    number = float(value)
    if not minimum <= number < float("inf"):
        raise ConfigurationError(
            f"{name} {value!r} is not a finite number of seconds >= {minimum:g}",
            f"pass a number of seconds, e.g. {name} 300" if name.startswith("--") else None,
        )
    return number


def decode_claims(token: str) -> dict[str, Any]:
    """Return the payload of a JWT as a dict.

    Args:
        token: a compact JWS (``header.payload.signature``).

    Returns:
        The decoded claims.

    Raises:
        InvalidTokenError: the token is not a well-formed JWT.
    """
    parts = token.split(".")
    if len(parts) != 3 or not all(parts[:2]):
        raise InvalidTokenError("malformed ID token: expected three dot-separated parts", _HINT)
    payload = parts[1]
    try:
        raw = binascii.a2b_base64(payload.translate(_URLSAFE) + "=" * (-len(payload) % 4))
        claims = json.loads(raw)
    except (binascii.Error, ValueError) as exc:
        raise InvalidTokenError(f"malformed ID token: payload is not base64url JSON ({exc})", _HINT) from exc
    if not isinstance(claims, dict):
        raise InvalidTokenError("malformed ID token: payload is not a JSON object", _HINT)
    return claims


def seconds_left(claims: dict[str, Any], now: float | None = None) -> float:
    """Seconds until a token expires.

    Args:
        claims: the token's claims (:func:`decode_claims`).
        now: the current time, for tests.

    Returns:
        Seconds until ``exp``; negative once expired, ``-inf`` without a usable ``exp``.
    """
    exp = claims.get("exp")
    if not isinstance(exp, int | float) or isinstance(exp, bool):
        return float("-inf")
    return float(exp) - (time.time() if now is None else now)


def check_id_token(
    token: str, audience: str, *, min_valid: float = 0, now: float | None = None
) -> dict[str, Any]:
    """Check that ``token`` is a Google ID token for ``audience`` with more than ``min_valid`` s left.

    Args:
        token: the ID token.
        audience: the expected ``aud`` (the IAP OAuth client ID).
        min_valid: seconds of validity that must remain.
        now: the current time, for tests.

    Returns:
        The token's claims.

    Raises:
        InvalidTokenError: wrong ``aud`` or ``iss``, expired, or malformed.
        ConfigurationError: ``min_valid`` is negative, NaN or infinite.
    """
    min_valid = checked_seconds(min_valid, "min_valid")
    claims = decode_claims(token)
    aud = claims.get("aud")
    if aud != audience:
        raise InvalidTokenError(
            f"ID token audience is {aud!r}, expected {audience!r}",
            "--audience must be the OAuth client ID of the IAP-protected app "
            "(Security > Identity-Aware Proxy > the backend's menu > Edit OAuth client)",
        )
    if claims.get("iss") not in GOOGLE_ISSUERS:
        raise InvalidTokenError(
            f"ID token issuer is {claims.get('iss')!r}, not Google",
            "IAP accepts only Google-issued ID tokens; check the FLYTE_IAP_TOKEN_URI override",
        )
    left = seconds_left(claims, now)
    if left <= min_valid:
        raise InvalidTokenError(
            f"ID token expires in {left:.0f} s, less than the {min_valid:.0f} s required",
            "the machine clock may be wrong (check NTP), or lower --min-valid",
        )
    return claims


def usable_id_token(
    token: object, audience: str, *, min_valid: float = 0, rejected: str | None = None
) -> str | None:
    """``token`` if a cached value may be used as it is, else ``None``: the caller gets a new one.

    Args:
        token: a cached value, usually a record's ``id_token`` (anything but a non-empty string is unusable).
        audience: the expected ``aud``.
        min_valid: seconds of validity that must remain.
        rejected: a token the server just refused (HTTP 401), unusable however valid it looks.

    Returns:
        The token when it passes :func:`check_id_token`, else ``None``.
    """
    if not isinstance(token, str) or not token or token == rejected:
        return None
    try:
        check_id_token(token, audience, min_valid=min_valid)
    except InvalidTokenError:
        return None
    return token
