"""Service-account signed JWTs for IAP: programmatic access without any OAuth client.

Example::

    from flyte_iap.signed_jwt import get_service_account_jwt

    token = get_service_account_jwt(
        "https://flyte.example.com",  # the app's URL
        impersonate_service_account="flyte-ci@my-project.iam.gserviceaccount.com",  # optional
    )

IAP accepts, besides Google ID tokens, "a self-signed or Google-issued JWT token for a service account"
(Google's "Programmatic authentication" page for IAP, ``iap/docs/authentication-howto``). This is the
way in for CI and workloads when the app uses the Google-managed OAuth client, which grants no
programmatic access of its own (``iap/docs/custom-oauth-configuration``; docs/deploy/oauth-clients.md
links both pages). The claims are those of Google's
own sample (GoogleCloudPlatform/python-docs-samples, ``iap/generate_self_signed_jwt.py``):
``iss`` = ``sub`` = the service account's email, ``aud`` = the URL of the IAP-secured resource, ``iat``
= now, ``exp`` = ``iat`` + 3600. An ``aud`` of ``https://HOST/*`` covers every path of the app, which
flytekit's gRPC calls (``/flyteidl.service.AdminService/...``) need; :func:`jwt_audience` makes it from
the app's URL.

How it is signed, from the credentials :func:`flyte_iap.service_account.find_credentials` finds:

* a service-account key (``--key-file``, or a key file as application default credentials): locally,
  RS256, with the key's ``private_key_id`` as ``kid``, so IAP finds the public key Google publishes;
* anything else (a user login with ``impersonate_service_account``, an impersonated or federated
  credential file, the metadata server): IAM Credentials ``signJwt`` on the service account, which signs
  with a Google-managed key of that account. The caller needs ``iam.serviceAccounts.signJwt`` on it,
  which ``roles/iam.serviceAccountTokenCreator`` holds (``roles/iam.serviceAccountOpenIdTokenCreator``,
  enough for ID tokens, does not).

Tokens are cached like ID tokens (kind ``"jwt"``, the ``aud``, the service account as principal), so a
warm :func:`cached_jwt` is answered with the standard library alone.
"""

from __future__ import annotations

import json
import os
import time

from flyte_iap import endpoints
from flyte_iap.cache import TokenCache
from flyte_iap.errors import (
    ConfigurationError,
    CredentialsError,
    FlyteIapError,
    InvalidTokenError,
    PermissionDeniedError,
)
from flyte_iap.idtoken import DEFAULT_MIN_VALID, decode_claims, seconds_left

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from flyte_iap.service_account import CredentialSource, _Caller

#: Cache kind of service-account JWTs.
KIND = "jwt"
#: Lifetime of the JWTs minted (``exp - iat``): Google's sample uses 3600 s. Google's page, as crawled,
#: states no other limit; a longer lifetime is not attempted.
LIFETIME = 3600
#: The role that holds ``iam.serviceAccounts.signJwt``.
TOKEN_CREATOR = "roles/iam.serviceAccountTokenCreator"
_URL_HINT = "pass the app's URL as users open it, e.g. --url https://flyte.example.com"


def jwt_audience(url: str) -> str:
    """The ``aud`` for the IAP app at ``url``: ``https://HOST/*`` for a bare URL, else ``url`` as given.

    Args:
        url: ``https://flyte.example.com`` (every path), or a URL with a path or ending in ``*``.

    Returns:
        The audience.

    Raises:
        ConfigurationError: ``url`` is not an ``https://`` (or ``http://``) URL with a host.
    """
    value = url.strip()
    scheme, sep, rest = value.partition("://")
    host = rest.split("/", 1)[0]
    if not sep or scheme not in ("https", "http") or not host or any(c.isspace() for c in value):
        raise ConfigurationError(f"--url {url!r} is not the URL of an app", _URL_HINT)
    path = rest[len(host) :]
    if path in ("", "/"):
        return f"{scheme}://{host}/*"
    return value


def check_signed_jwt(
    token: str, audience: str, *, min_valid: float = 0, now: float | None = None
) -> dict[str, Any]:
    """Check a service-account JWT before it is cached or printed: ``aud``, ``iss`` = ``sub``, lifetime.

    Args:
        token: the JWT.
        audience: the expected ``aud``.
        min_valid: seconds of validity that must remain.
        now: the current time, for tests.

    Returns:
        The claims.

    Raises:
        InvalidTokenError: it is not one.
    """
    claims = decode_claims(token)
    if claims.get("aud") != audience:
        raise InvalidTokenError(
            f"JWT audience is {claims.get('aud')!r}, expected {audience!r}",
            "check the FLYTE_IAP_IAMCREDENTIALS_URI override",
        )
    if not isinstance(claims.get("iss"), str) or claims.get("iss") != claims.get("sub"):
        raise InvalidTokenError("JWT issuer and subject are not one service account", _URL_HINT)
    left = seconds_left(claims, now)
    if left <= min_valid:
        raise InvalidTokenError(
            f"JWT expires in {left:.0f} s, less than the {min_valid:.0f} s required",
            f"the machine clock may be wrong (check NTP), or lower --min-valid (JWTs live {LIFETIME} s)",
        )
    return claims


def _usable(token: object, audience: str, min_valid: float, rejected: str | None = None) -> str | None:
    if not isinstance(token, str) or not token or token == rejected:
        return None
    try:
        check_signed_jwt(token, audience, min_valid=min_valid)
    except InvalidTokenError:
        return None
    return token


def cached_jwt(
    url: str,
    *,
    impersonate_service_account: str | None = None,
    key_file: str | os.PathLike[str] | None = None,
    min_valid: float = DEFAULT_MIN_VALID,
    cache: TokenCache | None = None,
) -> str | None:
    """A cached JWT with more than ``min_valid`` seconds left, or ``None``; never a network call.

    Args:
        url: the app's URL (see :func:`jwt_audience`).
        impersonate_service_account: as for :func:`get_service_account_jwt`.
        key_file: as for :func:`get_service_account_jwt`.
        min_valid: seconds the token must still be valid.
        cache: the token store.

    Returns:
        The JWT, or ``None`` on a miss or any doubt.
    """
    from flyte_iap import service_account

    if not min_valid >= 0:
        return None
    try:
        audience = jwt_audience(url)
        principal, _ = service_account._principal(impersonate_service_account, key_file)
    except FlyteIapError:
        return None
    cache = cache if cache is not None else TokenCache()
    record = cache.read(KIND, audience, principal) or {}
    token = _usable(record.get("jwt"), audience, min_valid)
    return None if cache.warnings else token


def get_service_account_jwt(
    url: str,
    *,
    impersonate_service_account: str | None = None,
    key_file: str | os.PathLike[str] | None = None,
    min_valid: float = DEFAULT_MIN_VALID,
    cache: TokenCache | None = None,
    rejected_token: str | None = None,
) -> str:
    """Return a service-account signed JWT for the IAP app at ``url``, from the cache if possible.

    Args:
        url: the app's URL; the JWT's ``aud`` is :func:`jwt_audience` of it.
        impersonate_service_account: the service account to sign for, through IAM Credentials
            ``signJwt``, with whatever credentials are found (they need
            ``roles/iam.serviceAccountTokenCreator`` on it).
        key_file: a service-account key JSON to sign with locally.
        min_valid: seconds of validity a returned JWT must have left (at most :data:`LIFETIME`).
        cache: the token store.
        rejected_token: a JWT the server just refused: a new one is made.

    Returns:
        The JWT.

    Raises:
        ConfigurationError: a bad ``url`` or ``min_valid``.
        CredentialsError: no usable credentials.
        PermissionDeniedError: IAM Credentials answered 403.
        TransportError: Google or the metadata server could not be reached.
        CacheError: the token store cannot be written.
    """
    from flyte_iap import service_account

    audience = jwt_audience(url)
    if not 0 <= min_valid < LIFETIME:
        raise ConfigurationError(
            f"--min-valid {min_valid:g} is not between 0 and the JWT lifetime ({LIFETIME} s)",
            "pass a smaller number of seconds",
        )
    cache = cache if cache is not None else TokenCache()
    principal, source = service_account._principal(impersonate_service_account, key_file)
    token = _usable(
        (cache.read(KIND, audience, principal) or {}).get("jwt"), audience, min_valid, rejected_token
    )
    if token:
        return token
    with cache.lock(KIND, audience, principal):
        token = _usable(
            (cache.read(KIND, audience, principal) or {}).get("jwt"), audience, min_valid, rejected_token
        )
        if token:
            return token
        source = source or service_account.find_credentials(key_file)
        target = (
            service_account._check_service_account(impersonate_service_account)
            if impersonate_service_account
            else None
        )
        token = _mint(source, audience, target)
        claims = check_signed_jwt(token, audience, min_valid=min_valid)
        cache.write(
            KIND, audience, principal, {"jwt": token, "email": claims["iss"], "source": source.origin}
        )
    return token


def _claims(email: str, audience: str) -> dict[str, Any]:
    now = int(time.time())
    return {"iss": email, "sub": email, "aud": audience, "iat": now, "exp": now + LIFETIME}


def _mint(source: CredentialSource, audience: str, target: str | None) -> str:
    from flyte_iap import service_account as sa

    http = sa._http()
    if source.type == "metadata":
        caller, email = sa.metadata_caller(source, http)
        return _sign_jwt(caller, target or email, [], audience)
    info = source.info or {}
    if target is None and source.type == "service_account":
        return _sign_locally(source, audience)
    if target is None:
        target = sa._impersonation_target(info)
        if target is None:
            raise CredentialsError(f"{source.origin}: no service account to sign a JWT for", sa._GUIDE)
        delegates = sa._chain(info, drop=target)
    else:
        delegates = [*sa._chain(info, drop=target), *sa._via(info, drop=target)]
    return _sign_jwt(sa._caller(source, info, http), target, delegates, audience)


def _sign_locally(source: CredentialSource, audience: str) -> str:
    from google.auth import crypt
    from google.auth import jwt as google_jwt

    from flyte_iap import service_account as sa

    info = source.info or {}
    email = str(info.get("client_email", ""))
    try:
        signer = crypt.RSASigner.from_service_account_info(info)
    except Exception as exc:  # a key google-auth cannot load: a bad file
        raise CredentialsError(
            f"{source.origin}: malformed service-account key: {sa._reason(exc)}", sa._KEY_HINT
        ) from None
    return google_jwt.encode(signer, _claims(email, audience)).decode("ascii")


def _sign_jwt(caller: _Caller, target: str, delegates: list[str], audience: str) -> str:
    """IAM Credentials ``signJwt`` for ``target``, called by ``caller``."""
    from flyte_iap import service_account as sa
    from flyte_iap import transport

    what = "iamcredentials signJwt"
    body: dict[str, Any] = {"payload": json.dumps(_claims(target, audience))}
    if delegates:
        body["delegates"] = [f"projects/-/serviceAccounts/{d}" for d in delegates]
    response = transport.request(
        "POST",
        endpoints.sign_jwt_url(target),
        what=what,
        json_body=body,
        headers={"Authorization": f"Bearer {caller.token}"},
    )
    if response.status == 403:
        member = caller.member or "the principal behind these credentials"
        through = f" through {', '.join(delegates)}" if delegates else ""
        grant = (
            f"gcloud iam service-accounts add-iam-policy-binding {target} --role={TOKEN_CREATOR} "
            f"--member={member}"
            if caller.member and not delegates
            else f"grant {member} {TOKEN_CREATOR} on {delegates[0] if delegates else target}"
        )
        raise PermissionDeniedError(
            f"{caller.description} may not sign JWTs for {target}{through}: iamcredentials answered HTTP 403 "
            f"({_api_message(response)})",
            grant,
        )
    return sa.iamcredentials_result(response, target, what, "signedJwt", "a signed JWT")


def _api_message(response: Any) -> str:
    try:
        message = response.json()["error"]["message"]
    except (ValueError, KeyError, TypeError):
        return "no details"
    text = " ".join(str(message).split())
    return text if len(text) <= 200 else text[:197] + "..."
