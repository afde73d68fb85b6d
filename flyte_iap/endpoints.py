"""Every Google URL flyte-iap calls, in one place, each overridable from the environment.

Example::

    >>> from flyte_iap import endpoints
    >>> endpoints.token_uri()                      # doctest: +SKIP
    'https://oauth2.googleapis.com/token'

Overrides exist for Private Service Connect endpoints in locked-down VPCs and for the local fakes in
:mod:`flyte_iap.testing`. They are read on every call, never cached at import, so a test or a shell can
change them at any time. The metadata server keeps google-auth's own ``GCE_METADATA_HOST`` and
``GCE_METADATA_IP`` variables; :func:`metadata_host` only reports what google-auth will use.
"""

from __future__ import annotations

import os

_AUTH_URI = "https://accounts.google.com/o/oauth2/v2/auth"
_TOKEN_URI = "https://oauth2.googleapis.com/token"
_REVOKE_URI = "https://oauth2.googleapis.com/revoke"
_IAMCREDENTIALS_URI = "https://iamcredentials.googleapis.com"
_SECRETMANAGER_URI = "https://secretmanager.googleapis.com"
_STS_URI = "https://sts.googleapis.com"
_METADATA_HOST = "metadata.google.internal"
_METADATA_IP = "169.254.169.254"
#: Issuers Google puts in the ``iss`` claim of its ID tokens.
GOOGLE_ISSUERS = ("https://accounts.google.com", "accounts.google.com")
#: OAuth scope (an identifier, not an endpoint) of access tokens that may call iamcredentials.
CLOUD_PLATFORM_SCOPE = "https://www.googleapis.com/auth/cloud-platform"
#: Google Cloud's status page, named in hints (a page for people, never called: not overridable).
STATUS_PAGE = "https://status.cloud.google.com"
#: Where a person removes an app's access to their Google account, named in hints.
ACCOUNT_PERMISSIONS_PAGE = "https://myaccount.google.com/permissions"

#: Environment variable -> default, for every endpoint that can be overridden.
OVERRIDES: dict[str, str] = {
    "FLYTE_IAP_AUTH_URI": _AUTH_URI,
    "FLYTE_IAP_TOKEN_URI": _TOKEN_URI,
    "FLYTE_IAP_REVOKE_URI": _REVOKE_URI,
    "FLYTE_IAP_IAMCREDENTIALS_URI": _IAMCREDENTIALS_URI,
    "FLYTE_IAP_SECRETMANAGER_URI": _SECRETMANAGER_URI,
    "FLYTE_IAP_STS_URI": _STS_URI,
}


def _get(name: str) -> str:
    value = os.environ.get(name, "").strip()
    return (value or OVERRIDES[name]).rstrip("/")


def auth_uri() -> str:
    """The OAuth 2.0 authorization endpoint (``FLYTE_IAP_AUTH_URI``)."""
    return _get("FLYTE_IAP_AUTH_URI")


def token_uri() -> str:
    """The OAuth 2.0 token endpoint (``FLYTE_IAP_TOKEN_URI``)."""
    return _get("FLYTE_IAP_TOKEN_URI")


def revoke_uri() -> str:
    """The OAuth 2.0 token revocation endpoint (``FLYTE_IAP_REVOKE_URI``)."""
    return _get("FLYTE_IAP_REVOKE_URI")


def iamcredentials_uri() -> str:
    """The IAM Service Account Credentials API root (``FLYTE_IAP_IAMCREDENTIALS_URI``)."""
    return _get("FLYTE_IAP_IAMCREDENTIALS_URI")


def secretmanager_uri() -> str:
    """The Secret Manager API root (``FLYTE_IAP_SECRETMANAGER_URI``)."""
    return _get("FLYTE_IAP_SECRETMANAGER_URI")


def sts_uri() -> str:
    """The Security Token Service root (``FLYTE_IAP_STS_URI``)."""
    return _get("FLYTE_IAP_STS_URI")


def generate_id_token_url(service_account: str) -> str:
    """iamcredentials ``generateIdToken`` for one service account.

    Args:
        service_account: the account's email.

    Returns:
        The method's URL under :func:`iamcredentials_uri`.
    """
    return f"{iamcredentials_uri()}/v1/projects/-/serviceAccounts/{service_account}:generateIdToken"


def sign_jwt_url(service_account: str) -> str:
    """iamcredentials ``signJwt`` for one service account (``projects/-/``: the wildcard is required).

    Args:
        service_account: the account's email.

    Returns:
        The method's URL under :func:`iamcredentials_uri`.
    """
    return f"{iamcredentials_uri()}/v1/projects/-/serviceAccounts/{service_account}:signJwt"


def secret_version_access_url(resource: str) -> str:
    """Secret Manager ``versions/*:access`` for one secret version.

    Args:
        resource: ``projects/P/secrets/S/versions/V``.

    Returns:
        The method's URL under :func:`secretmanager_uri`.
    """
    return f"{secretmanager_uri()}/v1/{resource}:access"


def sts_token_url() -> str:
    """The STS token-exchange URL used by Workload Identity Federation."""
    return f"{sts_uri()}/v1/token"


def metadata_host() -> str:
    """The metadata server google-auth talks to (``GCE_METADATA_HOST``, then ``GCE_METADATA_ROOT``)."""
    return os.environ.get("GCE_METADATA_HOST") or os.environ.get("GCE_METADATA_ROOT") or _METADATA_HOST


def metadata_root() -> str:
    """The root of the metadata server's API on :func:`metadata_host`, with a trailing slash."""
    return f"http://{metadata_host()}/computeMetadata/v1/"


def metadata_ip() -> str:
    """The address google-auth pings to detect a metadata server (``GCE_METADATA_IP``)."""
    return os.environ.get("GCE_METADATA_IP") or _METADATA_IP
