"""Google ID tokens for a person: sign in once in a browser, then refresh quietly from a stored grant.

Example::

    import flyte_iap

    flyte_iap.login_user(  # once, in a terminal: opens a browser
        "123-web.apps.googleusercontent.com",  # the IAP app's OAuth client ID (the token audience)
        client_id="456-desktop.apps.googleusercontent.com",
        client_secret_gcp_secret="projects/my-proj/secrets/flyte-desktop-secret",
    )
    token = flyte_iap.get_user_id_token("123-web.apps.googleusercontent.com")  # anywhere, any time after
    flyte_iap.logout_user("123-web.apps.googleusercontent.com", revoke=True)

What is stored, per (audience, Desktop client ID), in the :class:`~flyte_iap.cache.TokenCache` record of
kind ``user`` whose principal is the client ID:

* ``id_token``: the current ID token for the audience (what ``flyte-iap token`` prints);
* ``client_id``, ``email``, ``store`` (``file`` or ``keyring``) and ``secret_source`` (how the client
  secret was obtained, to name it in hints; never the secret itself);
* with ``store: file``: ``refresh_token`` and ``client_secret``, protected by the cache's 0600 file mode;
  with ``store: keyring``: both live in the OS keyring (service ``flyte-iap:<audience>``, user the client
  ID) instead.

The client secret is stored with the grant so that a refresh never calls Secret Manager again.

Refreshing: a cached ID token with more than ``min_valid`` seconds left is returned with no network call.
Otherwise the record is refreshed under the cache's cross-process lock, after re-reading it, so N
concurrent callers make one request to the token endpoint and all return the same token. A refresh that
Google answers with ``invalid_grant`` drops the stale grant. With no usable grant, an interactive caller
(stdin and stderr are terminals) signs in through the browser; anyone else gets a
:class:`~flyte_iap.errors.LoginRequiredError` at once whose hint is the exact ``flyte-iap login`` command.
"""

from __future__ import annotations

import contextlib
import json
import logging
import shlex
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from flyte_iap import browser_login, endpoints, grants, transport
from flyte_iap.cache import TokenCache
from flyte_iap.client_secrets import SecretSource
from flyte_iap.errors import (
    CacheError,
    ConfigurationError,
    FlyteIapError,
    InvalidTokenError,
    LoginError,
    LoginRequiredError,
    OAuthError,
    TransportError,
)
from flyte_iap.idtoken import (
    DEFAULT_MIN_VALID,
    check_id_token,
    checked_seconds,
    decode_claims,
    seconds_left,
    usable_id_token,
)

_log = logging.getLogger(__name__)

KIND = "user"
_REVOKED = "the stored sign-in was revoked or has expired (invalid_grant)"
_NO_REFRESH_TOKEN = "the stored sign-in has no refresh token"
STORES = ("file", "keyring")
#: When Google cannot be reached, a cached token with at least this many seconds left is still returned.
STALE_MARGIN = 30.0
#: Seconds to wait for another process's refresh (less when a command deadline ends sooner).
LOCK_TIMEOUT = 60.0
KEYRING_SERVICE_PREFIX = "flyte-iap:"
_TOKEN_ENDPOINT = "Google's token endpoint"
_CLIENT_PLACEHOLDER = "<DESKTOP_CLIENT_ID>"
_SOURCE_PLACEHOLDER = ["--client-secrets-file", "<DESKTOP_CLIENT_JSON>"]


@dataclass(frozen=True)
class UserLogin:
    """The result of a browser sign-in."""

    audience: str
    client_id: str
    email: str | None
    store: str
    id_token: str = field(repr=False)


# -- public API ---------------------------------------------------------------------------------


def get_user_id_token(
    audience: str,
    *,
    client_id: str | None = None,
    client_secret: str | None = None,
    client_secrets_file: str | None = None,
    client_secret_gcp_secret: str | None = None,
    store: str | None = None,
    min_valid: float = DEFAULT_MIN_VALID,
    interactive: bool | None = None,
    rejected_token: str | None = None,
    port: int = 0,
    timeout: float = browser_login.DEFAULT_TIMEOUT,
    open_browser: bool = True,
    opener: browser_login.Opener | None = None,
    notify: browser_login.Notify | None = None,
    cache: TokenCache | None = None,
    http: transport.HttpRequest | None = None,
) -> str:
    """Return a Google ID token for the signed-in user whose ``aud`` is ``audience``.

    Args:
        audience: the OAuth client ID of the IAP-protected app.
        client_id: the Desktop OAuth client ID; default: the one of the newest login for ``audience``.
        client_secret: the Desktop client's secret, when it is not stored yet.
        client_secrets_file: or the client JSON downloaded from the Cloud console (key ``installed``).
        client_secret_gcp_secret: or a Secret Manager secret, ``projects/P/secrets/S[/versions/V]``.
        store: where a new login keeps its refresh token, ``file`` (default) or ``keyring``.
        min_valid: a cached token is returned only with more than this many seconds left.
        interactive: whether a browser sign-in may start when there is no usable grant; default: when
            stdin and stderr are terminals.
        rejected_token: a token the server just refused (HTTP 401): a new one is obtained even if it
            looks valid.
        port, timeout, open_browser, opener, notify: for a browser sign-in, see
            :func:`flyte_iap.browser_login.authorize`.
        cache: the token store; default ``TokenCache()``. Its ``warnings`` list collects skipped files.
        http: an injected google-auth style transport.

    Returns:
        The ID token.

    Raises:
        LoginRequiredError: no usable grant and not interactive (the hint, and its ``login_command``,
            is the command to run).
        OAuthError: the token endpoint refused (``invalid_client``, ...).
        LoginError: the browser sign-in failed.
        InvalidTokenError: Google returned a token that fails the ``aud``/``iss``/``exp`` checks.
        TransportError: Google cannot be reached.
        CacheError: the store cannot be written.
    """
    min_valid = checked_seconds(min_valid)
    timeout = checked_seconds(timeout, "--timeout", minimum=1)
    with _cache_in_use(cache) as cache:
        return _get_user_id_token(
            audience,
            client_id=client_id,
            source=SecretSource.from_options(client_secret, client_secrets_file, client_secret_gcp_secret),
            store=store,
            min_valid=min_valid,
            interactive=interactive,
            rejected_token=rejected_token,
            login_options={"port": port, "timeout": timeout, "open_browser": open_browser, "opener": opener},
            notify=notify,
            cache=cache,
            http=http,
        )


def login_user(
    audience: str,
    *,
    client_id: str | None = None,
    client_secret: str | None = None,
    client_secrets_file: str | None = None,
    client_secret_gcp_secret: str | None = None,
    store: str = "file",
    port: int = 0,
    timeout: float = browser_login.DEFAULT_TIMEOUT,
    open_browser: bool = True,
    opener: browser_login.Opener | None = None,
    notify: browser_login.Notify | None = None,
    cache: TokenCache | None = None,
    http: transport.HttpRequest | None = None,
) -> UserLogin:
    """Sign in through the browser and store the grant for ``audience``.

    Args:
        audience: the OAuth client ID of the IAP-protected app.
        client_id: the Desktop OAuth client ID; optional with ``client_secrets_file`` (which names it) or
            when a previous login for ``audience`` stored one (the newest is reused).
        client_secret, client_secrets_file, client_secret_gcp_secret: one way of getting the Desktop
            client's secret; may be omitted when a previous login for this client stored it.
        store: ``file`` (default) or ``keyring`` for the refresh token and client secret.
        port: loopback port, 0 for an ephemeral one.
        timeout: seconds to wait for the browser.
        open_browser: False shows the URL (through ``notify``) instead of launching a browser.
        opener: launches a browser on a URL; :mod:`webbrowser` by default.
        notify: shows a line to the user; a log warning by default.
        cache: the token store.
        http: an injected google-auth style transport.

    Returns:
        The :class:`UserLogin`, whose ``id_token`` is already cached.

    Raises:
        ConfigurationError: no client ID or secret, or a bad ``store``.
        LoginError: the browser sign-in failed (denied, timed out, port in use, wrong state).
        OAuthError: the code exchange or the first refresh was refused.
        TransportError, CacheError, InvalidTokenError: as for :func:`get_user_id_token`.
    """
    timeout = checked_seconds(timeout, "--timeout", minimum=1)
    with _cache_in_use(cache) as cache:
        source = SecretSource.from_options(client_secret, client_secrets_file, client_secret_gcp_secret)
        if source is not None and source.kind == "file" and not client_id:
            client_id = source.resolve(None)[0]
        # Without a client, signing in again reuses the newest stored login's client and secret.
        record = _find(cache, audience, client_id) if client_id or source is None else None
        if record is not None:
            client_id = record["principal"]
        return _login(
            audience,
            client_id,
            source,
            store,
            record,
            {"port": port, "timeout": timeout, "open_browser": open_browser, "opener": opener},
            notify,
            cache,
            http,
        )


def logout_user(
    audience: str,
    *,
    client_id: str | None = None,
    revoke: bool = False,
    cache: TokenCache | None = None,
    http: transport.HttpRequest | None = None,
) -> list[UserLogin]:
    """Forget the stored grants for ``audience`` (one client, or all), optionally revoking them at Google.

    A refresh token Google already considers revoked or expired is not an error. If revoking fails for
    any other reason nothing is forgotten, so the command can be run again.

    Args:
        audience: the OAuth client ID of the IAP-protected app.
        client_id: only this Desktop client's login; default all logins for ``audience``.
        revoke: also revoke each refresh token at Google's revoke endpoint.
        cache: the token store.
        http: an injected google-auth style transport.

    Returns:
        The logins that were forgotten (``id_token`` empty).

    Raises:
        TransportError, OAuthError: revoking failed (nothing was forgotten).
        CacheError: the OS keyring could not be read for a revoke.
    """
    with _cache_in_use(cache) as cache:
        if client_id:
            one = cache.read(KIND, audience, client_id)
            records = [one] if one else []
        else:
            records = cache.find(KIND, audience)
        forgotten: list[UserLogin] = []
        for record in records:
            principal = record["principal"]
            with cache.lock(KIND, audience, principal, timeout=transport.time_left(LOCK_TIMEOUT)):
                current = cache.read(KIND, audience, principal) or record
                store = current.get("store", "file")
                if revoke:
                    refresh_token = _secrets_of(current, audience, cache).get("refresh_token")
                    if refresh_token:
                        _revoke(refresh_token, http)
                if store == "keyring":
                    try:
                        _keyring_delete(audience, principal)
                    except FlyteIapError as exc:
                        cache.warnings.append(f"could not remove the keyring entry: {exc.message}")
            cache.delete(KIND, audience, principal)
            store = grants.grant_store(cache)
            if store is not None:
                store.delete(grants.KIND, audience, principal)
            forgotten.append(UserLogin(audience, principal, current.get("email"), store, id_token=""))
        if client_id and not forgotten:
            cache.discard(KIND, audience, client_id)  # an unreadable record is still something to forget
        return forgotten


def login_command(
    audience: str,
    client_id: str | None = None,
    source: SecretSource | None = None,
    store: str | None = None,
) -> str:
    """The ``flyte-iap login ...`` command line that signs in for these settings (for hints and docs).

    Args:
        audience: the OAuth client ID of the IAP-protected app.
        client_id: the Desktop OAuth client ID; a placeholder when unknown.
        source: where the client secret comes from; a ``--client-secrets-file`` placeholder when unknown.
        store: ``keyring`` adds ``--store keyring``.

    Returns:
        The command, shell-quoted, placeholders in ``<ANGLE_BRACKETS>``.
    """
    argv = ["flyte-iap", "login", "--audience", audience, "--client-id", client_id or _CLIENT_PLACEHOLDER]
    argv += source.cli_args() if source is not None else _SOURCE_PLACEHOLDER
    if store == "keyring":
        argv += ["--store", "keyring"]
    return " ".join(a if a.startswith("<") else shlex.quote(a) for a in argv)


# -- the logic --------------------------------------------------------------------------------


def _get_user_id_token(
    audience: str,
    *,
    client_id: str | None,
    source: SecretSource | None,
    store: str | None,
    min_valid: float,
    interactive: bool | None,
    rejected_token: str | None,
    login_options: dict[str, Any],
    notify: browser_login.Notify | None,
    cache: TokenCache,
    http: transport.HttpRequest | None,
) -> str:
    if store is not None and store not in STORES:
        raise ConfigurationError(f"unknown store {store!r}", "use --store file or --store keyring")
    if source is not None and source.kind == "file" and not client_id:
        client_id = source.resolve(None)[0]
    record = _find(cache, audience, client_id) or _record_from_grant(cache, audience, client_id)
    token = _usable_token(record, audience, min_valid, rejected_token)
    if token:
        return token
    if record is not None:
        client_id = record["principal"]
    if not client_id:
        return _login_or_fail(
            audience,
            None,
            source,
            store,
            None,
            "no login stored",
            interactive,
            login_options,
            notify,
            cache,
            http,
        )

    reason = "no login stored"
    with cache.lock(KIND, audience, client_id, timeout=transport.time_left(LOCK_TIMEOUT)):
        # Another process may have refreshed while this one waited for the lock.
        record = cache.read(KIND, audience, client_id)
        token = _usable_token(record, audience, min_valid, rejected_token)
        if token:
            return token
        record = _migrate(cache, audience, client_id, record)
        if record is not None:
            stored = _secrets_of(record, audience, cache)
            if stored.get("refresh_token"):
                try:
                    return _refresh_and_store(audience, client_id, record, stored, source, cache, http)
                except TransportError as exc:
                    # Google unreachable, but the cached token still works for a while: better than failing.
                    fallback = _usable_token(record, audience, STALE_MARGIN, rejected_token)
                    if fallback is None:
                        raise
                    left = seconds_left(decode_claims(fallback))
                    cache.warnings.append(
                        f"{exc.message}; using the cached token, valid for {left:.0f} s more"
                    )
                    return fallback
                except OAuthError as exc:
                    if exc.error != "invalid_grant":
                        raise
                    _drop_grant(cache, audience, client_id, record)
                    reason = _REVOKED
                    _log.debug("refresh token refused with invalid_grant; dropped")
            else:
                # Say why the grant is gone on every later run too, not only the one that dropped it.
                reason = (
                    _REVOKED if record.get("grant_dropped") else "the stored sign-in has no refresh token"
                )
    return _login_or_fail(
        audience, client_id, source, store, record, reason, interactive, login_options, notify, cache, http
    )


def _login_or_fail(
    audience: str,
    client_id: str | None,
    source: SecretSource | None,
    store: str | None,
    record: dict[str, Any] | None,
    reason: str,
    interactive: bool | None,
    login_options: dict[str, Any],
    notify: browser_login.Notify | None,
    cache: TokenCache,
    http: transport.HttpRequest | None,
) -> str:
    # Say why no sign-in starts: a caller that passed interactive=False may well be in a terminal.
    why_not = "signing in was not allowed (interactive=False)"
    if interactive is None:
        interactive = _is_terminal()
        why_not = "no terminal to sign in from"
    if not interactive:
        hint_source = source or _stored_source(record)
        hint_store = store or (record or {}).get("store")
        command = login_command(audience, client_id, hint_source, hint_store)
        raise LoginRequiredError(
            f"not signed in for audience {audience}: {reason}, and {why_not}",
            "run this in a terminal, then retry: " + command,
            reason=reason,
            login_command=command,
        )
    if notify is not None and record is not None:
        notify(f"Signing in again: {reason}.")
    return _login(audience, client_id, source, store, record, login_options, notify, cache, http).id_token


def _login(
    audience: str,
    client_id: str | None,
    source: SecretSource | None,
    store: str | None,
    record: dict[str, Any] | None,
    login_options: dict[str, Any],
    notify: browser_login.Notify | None,
    cache: TokenCache,
    http: transport.HttpRequest | None,
) -> UserLogin:
    store = store or (record or {}).get("store") or "file"
    if store not in STORES:
        raise ConfigurationError(f"unknown store {store!r}", "use --store file or --store keyring")
    if store == "keyring" and client_id:
        _keyring_get(audience, client_id)  # a missing backend must fail before the browser opens
    if not client_id:
        raise ConfigurationError(
            f"no Desktop OAuth client ID to sign in for audience {audience}",
            "pass --client-id (or --client-secrets-file), e.g. "
            + login_command(audience, None, source, store),
        )
    if source is not None:
        client_id, client_secret = source.resolve(client_id)
        secret_source = source
    else:
        client_secret = (_secrets_of(record, audience, cache).get("client_secret") if record else None) or ""
        secret_source = _stored_source(record)
        if not client_secret:
            raise ConfigurationError(
                f"no client secret for Desktop client {client_id}",
                "pass one of --client-secret, --client-secrets-file or --client-secret-gcp-secret",
            )

    with cache.lock(KIND, audience, client_id, timeout=transport.time_left(LOCK_TIMEOUT)):
        pass  # a token store that cannot be written must fail now, not after the sign-in in the browser
    with transport.deadline_paused():  # the person in the browser takes the time they need
        grant = browser_login.authorize(client_id, notify=notify, **login_options)
    reply = transport.post_oauth(
        endpoints.token_uri(),
        {
            "grant_type": "authorization_code",
            "code": grant.code,
            "client_id": client_id,
            "client_secret": client_secret,
            "redirect_uri": grant.redirect_uri,
            "code_verifier": grant.code_verifier,
        },
        what=_TOKEN_ENDPOINT,
        http=http,
    )
    refresh_token = reply.get("refresh_token")
    if not isinstance(refresh_token, str) or not refresh_token:
        raise LoginError(
            "Google returned no refresh token for this sign-in",
            f"remove the app's access at {endpoints.ACCOUNT_PERMISSIONS_PAGE}, then sign in again",
        )
    # The code exchange yields a token for the Desktop client; IAP needs one for its own client ID.
    id_token, claims = _refresh(audience, client_id, client_secret, refresh_token, http)
    new_record: dict[str, Any] = {
        "client_id": client_id,
        "email": claims.get("email"),
        "store": store,
        "secret_source": _source_fields(secret_source),
        "id_token": id_token,
    }
    secrets_ = {"refresh_token": refresh_token, "client_secret": client_secret}
    with cache.lock(KIND, audience, client_id, timeout=transport.time_left(LOCK_TIMEOUT)):
        previous = cache.read(KIND, audience, client_id)
        if store == "keyring":
            _keyring_set(audience, client_id, secrets_)
        else:
            _keep_grant(cache, audience, client_id, new_record, secrets_)
            if previous and previous.get("store") == "keyring":
                try:
                    _keyring_delete(audience, client_id)
                except FlyteIapError as exc:
                    cache.warnings.append(f"could not remove the old keyring entry: {exc.message}")
        cache.write(KIND, audience, client_id, new_record)
    return UserLogin(audience, client_id, claims.get("email"), store, id_token)


def _refresh_and_store(
    audience: str,
    client_id: str,
    record: dict[str, Any],
    stored: dict[str, Any],
    source: SecretSource | None,
    cache: TokenCache,
    http: transport.HttpRequest | None,
) -> str:
    # An explicit secret or file is cheap to read and wins (the secret may have been rotated); a Secret
    # Manager secret is read only when nothing is stored, which is what keeps refreshes off that API.
    if source is not None and source.kind in ("value", "file"):
        client_secret = source.resolve(client_id)[1]
        from_store = client_secret == stored.get("client_secret")
    elif stored.get("client_secret"):
        client_secret, from_store = stored["client_secret"], True
    else:
        source = source or _stored_source(record)
        if source is None or (source.kind == "value" and source.value is None):
            raise ConfigurationError(
                f"no client secret stored for Desktop client {client_id}",
                "pass one of --client-secret, --client-secrets-file or --client-secret-gcp-secret",
            )
        client_secret, from_store = source.resolve(client_id)[1], False
    try:
        id_token, _ = _refresh(audience, client_id, client_secret, stored["refresh_token"], http)
    except OAuthError as exc:
        # A rotated secret in Secret Manager: read it again once rather than send the user to a login.
        fresh_source = source or _stored_source(record)
        if (
            exc.error != "invalid_client"
            or not from_store
            or fresh_source is None
            or fresh_source.kind != "gcp-secret"
        ):
            raise
        new_secret = fresh_source.resolve(client_id)[1]
        if new_secret == client_secret:
            raise
        client_secret = new_secret
        id_token, _ = _refresh(audience, client_id, client_secret, stored["refresh_token"], http)
        from_store = False
    updated = dict(record)
    updated["id_token"] = id_token
    if not from_store:
        if updated.get("store") == "keyring":
            _keyring_set(audience, client_id, {**stored, "client_secret": client_secret})
        else:
            _keep_grant(cache, audience, client_id, updated, {**stored, "client_secret": client_secret})
    cache.write(KIND, audience, client_id, updated)
    return id_token


def _refresh(
    audience: str,
    client_id: str,
    client_secret: str,
    refresh_token: str,
    http: transport.HttpRequest | None,
) -> tuple[str, dict[str, Any]]:
    """One refresh-token grant with ``audience``; returns the checked ID token and its claims."""
    try:
        reply = transport.post_oauth(
            endpoints.token_uri(),
            {
                "grant_type": "refresh_token",
                "refresh_token": refresh_token,
                "client_id": client_id,
                "client_secret": client_secret,
                "audience": audience,
            },
            what=_TOKEN_ENDPOINT,
            http=http,
        )
    except OAuthError as exc:
        if exc.error == "invalid_grant":
            exc.hint = "the stored sign-in was revoked or has expired; sign in again with `flyte-iap login`"
        elif exc.error == "invalid_audience":
            exc.hint = (
                f"Google mints ID tokens for another client ({audience}) only when it is in the Desktop "
                "client's project; if the app uses the Google-managed OAuth client, use the allowlisted "
                f"Desktop client's own ID as the audience (--audience {client_id}, or leave --audience out)"
            )
        raise
    id_token = reply.get("id_token")
    if not isinstance(id_token, str) or not id_token:
        raise InvalidTokenError(
            f"{_TOKEN_ENDPOINT} returned no ID token",
            "the sign-in must include the openid scope; run `flyte-iap login` again",
        )
    try:
        claims = check_id_token(id_token, audience)
    except InvalidTokenError as exc:
        if "audience" in exc.message:
            exc.hint = (
                "Google issues tokens for --audience only when the Desktop client is in the same project as "
                "the IAP app's OAuth client; check --audience and --client-id"
            )
        raise
    return id_token, claims


def _revoke(refresh_token: str, http: transport.HttpRequest | None) -> None:
    try:
        transport.post_oauth(
            endpoints.revoke_uri(), {"token": refresh_token}, what="Google's revoke endpoint", http=http
        )
    except OAuthError as exc:
        if exc.error != "invalid_token":  # already revoked or expired: the goal is reached
            exc.hint = "nothing was forgotten; run logout again, or without --revoke to only forget locally"
            raise
    except TransportError as exc:
        exc.hint = (
            "nothing was forgotten; run logout again when Google can be reached, or without --revoke to "
            f"only forget locally ({exc.hint})"
        )
        raise


# -- records --------------------------------------------------------------------------------


def _find(cache: TokenCache, audience: str, client_id: str | None) -> dict[str, Any] | None:
    if client_id:
        return cache.read(KIND, audience, client_id)
    found = cache.find(KIND, audience)
    return found[0] if found else None


def _usable_token(
    record: dict[str, Any] | None, audience: str, min_valid: float, rejected: str | None
) -> str | None:
    """The record's ID token if it passes the same checks as the fast path in ``flyte_iap._entry``."""
    token = record.get("id_token") if record else None
    return usable_id_token(token, audience, min_valid=min_valid, rejected=rejected)


def _drop_grant(cache: TokenCache, audience: str, client_id: str, record: dict[str, Any]) -> None:
    updated = {k: v for k, v in record.items() if k not in ("refresh_token", "id_token")}
    updated["grant_dropped"] = "invalid_grant"
    if record.get("store") == "keyring":
        try:
            secret = _keyring_get(audience, client_id) or {}
            secret.pop("refresh_token", None)
            _keyring_set(audience, client_id, secret)
        except FlyteIapError as exc:
            cache.warnings.append(f"could not drop the refresh token from the keyring: {exc.message}")
    else:
        store = grants.grant_store(cache)
        if store is not None:
            kept = grants.legacy_fields(store.read(grants.KIND, audience, client_id))
            kept.pop("refresh_token", None)
            store.write(grants.KIND, audience, client_id, kept)
    cache.write(KIND, audience, client_id, updated)


def _secrets_of(
    record: dict[str, Any] | None, audience: str, cache: TokenCache | None = None
) -> dict[str, Any]:
    """``refresh_token`` and ``client_secret`` from wherever the record's store keeps them.

    The ``file`` store keeps them in the grant store (:mod:`flyte_iap.grants`) when there is one, else
    (and in records of older versions) in the record itself.
    """
    if not record:
        return {}
    if record.get("store") == "keyring":
        return _keyring_get(audience, record["principal"]) or {}
    found = grants.legacy_fields(record)
    store = grants.grant_store(cache) if cache is not None else None
    if store is not None:
        found.update(grants.legacy_fields(store.read(grants.KIND, audience, record["principal"])))
    return found


def _keep_grant(
    cache: TokenCache, audience: str, client_id: str, record: dict[str, Any], secrets_: dict[str, Any]
) -> None:
    """Store a file-store grant where it belongs: the grant store, else ``record`` (written by the caller)."""
    store = grants.grant_store(cache)
    if store is None:
        record.update(secrets_)
        return
    for key in grants.FIELDS:
        record.pop(key, None)
    store.write(grants.KIND, audience, client_id, {k: v for k, v in secrets_.items() if k in grants.FIELDS})


def _record_from_grant(cache: TokenCache, audience: str, client_id: str | None) -> dict[str, Any] | None:
    """After the cache was deleted: a record for a grant the grant store still holds, so no new sign-in."""
    store = grants.grant_store(cache)
    if store is None:
        return None
    if client_id:
        found = store.read(grants.KIND, audience, client_id)
    else:
        candidates = store.find(grants.KIND, audience)
        found = candidates[0] if candidates else None
    if not found or not grants.legacy_fields(found).get("refresh_token"):
        return None
    principal = str(found["principal"])
    with cache.lock(KIND, audience, principal, timeout=transport.time_left(LOCK_TIMEOUT)):
        if cache.read(KIND, audience, principal) is None:
            cache.write(KIND, audience, principal, {"client_id": principal, "store": "file"})
    return cache.read(KIND, audience, principal)


def _migrate(
    cache: TokenCache, audience: str, client_id: str, record: dict[str, Any] | None
) -> dict[str, Any] | None:
    """Move a grant an older flyte-iap kept in the cache record to the grant store, once (under the lock)."""
    legacy = grants.legacy_fields(record)
    store = grants.grant_store(cache)
    if record is None or not legacy or store is None or record.get("store") == "keyring":
        return record
    current = grants.legacy_fields(store.read(grants.KIND, audience, client_id))
    store.write(grants.KIND, audience, client_id, {**legacy, **current})
    moved = {k: v for k, v in record.items() if k not in grants.FIELDS}
    cache.write(KIND, audience, client_id, moved)
    return cache.read(KIND, audience, client_id) or moved


def _source_fields(source: SecretSource | None) -> dict[str, str] | None:
    if source is None:
        return None
    return {"kind": source.kind, "location": source.location}


def _stored_source(record: dict[str, Any] | None) -> SecretSource | None:
    fields = (record or {}).get("secret_source")
    if not isinstance(fields, dict) or fields.get("kind") not in ("file", "gcp-secret", "value"):
        return None
    return SecretSource(fields["kind"], str(fields.get("location", "")))


def _is_terminal() -> bool:
    try:
        return bool(sys.stdin and sys.stdin.isatty() and sys.stderr and sys.stderr.isatty())
    except (ValueError, OSError):  # closed or detached streams
        return False


@contextlib.contextmanager
def _cache_in_use(cache: TokenCache | None) -> Iterator[TokenCache]:
    """``cache``, or a new ``TokenCache`` whose warnings are logged at the end: no caller will show them."""
    if cache is not None:
        yield cache
        return
    own = TokenCache()
    try:
        yield own
    finally:
        for message in dict.fromkeys(own.warnings):
            _log.warning("%s", message)
        own.warnings.clear()


# -- the OS keyring --------------------------------------------------------------------------


def _keyring_module() -> Any:
    try:
        import keyring
        import keyring.errors
    except ImportError:
        from flyte_iap.extras import install_hint

        raise ConfigurationError(
            "--store keyring needs the keyring package, which is not installed",
            f"{install_hint('keyring')}, or use --store file",
        ) from None
    return keyring


def _keyring_call(action: str, call: Any, *args: Any) -> Any:
    keyring = _keyring_module()
    try:
        return call(keyring, *args)
    except keyring.errors.NoKeyringError:
        raise CacheError(
            f"cannot {action}: no OS keyring backend is available",
            "install and unlock one (macOS Keychain, Windows Credential Locker, Secret Service on Linux; "
            "`keyring --list-backends` shows what is found), or sign in with --store file",
        ) from None
    except Exception as exc:  # backends also raise their own types (D-Bus, secretstorage, keychain)
        raise CacheError(
            f"cannot {action}: the OS keyring failed ({type(exc).__name__})",
            "unlock the keyring and retry, or sign in with --store file",
        ) from None


def _keyring_service(audience: str) -> str:
    return KEYRING_SERVICE_PREFIX + audience


def _keyring_get(audience: str, client_id: str) -> dict[str, Any] | None:
    raw = _keyring_call(
        "read the OS keyring", lambda k: k.get_password(_keyring_service(audience), client_id)
    )
    if not raw:
        return None
    try:
        value = json.loads(raw)
    except (ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


def _keyring_set(audience: str, client_id: str, value: dict[str, Any]) -> None:
    data = json.dumps({k: v for k, v in value.items() if v})
    _keyring_call(
        "write the OS keyring", lambda k: k.set_password(_keyring_service(audience), client_id, data)
    )


def _keyring_delete(audience: str, client_id: str) -> None:
    def delete(k: Any) -> None:
        # Nothing stored is already forgotten.
        with contextlib.suppress(k.errors.PasswordDeleteError):
            k.delete_password(_keyring_service(audience), client_id)

    _keyring_call("remove the OS keyring entry", delete)


__all__ = ["UserLogin", "get_user_id_token", "login_command", "login_user", "logout_user"]
