"""Where sign-in grants live: refresh tokens and client secrets, apart from the deletable token cache.

Example::

    from flyte_iap.cache import TokenCache
    from flyte_iap.grants import grant_store

    store = grant_store(TokenCache())  # None: grants stay in the cache's records
    if store is not None:
        store.read("grant", audience, client_id)  # {"refresh_token": ..., "client_secret": ...}

A cache directory is meant to be deletable; a sign-in is not. So with the default directories the
``file`` store keeps each sign-in's refresh token and client secret in the platform's *state* directory
(``$XDG_STATE_HOME/flyte-iap``, else ``~/.local/state/flyte-iap``; macOS
``~/Library/Application Support/flyte-iap``; as platformdirs names them), one record per (audience,
Desktop client), while ID tokens stay in the cache. The records are :class:`~flyte_iap.cache.TokenCache`
records of kind ``grant``: the same 0600 files, locking and owner checks. ``FLYTE_IAP_STATE_DIR`` names
the directory; with only ``FLYTE_IAP_CACHE_DIR`` set (or a cache directory given explicitly) everything
stays in that one directory, as before. On Windows the cache directory (``%LOCALAPPDATA%\\flyte-iap``) is
already the state directory there. A record written by an older flyte-iap, with the grant inside, is
moved once, under the record's lock, the next time it is refreshed.

Standard library only.
"""

from __future__ import annotations

import os
import sys

from flyte_iap.cache import TokenCache

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

#: Record kind of a grant.
KIND = "grant"
#: What a grant holds.
FIELDS = ("refresh_token", "client_secret")


def state_dir() -> str | None:
    """``FLYTE_IAP_STATE_DIR``; else the platform's state dir, or ``None`` when that is the cache's own.

    With ``FLYTE_IAP_CACHE_DIR`` set and no ``FLYTE_IAP_STATE_DIR``, ``None``: everything in that one
    directory (tests and shared CI machines rely on it).
    """
    explicit = os.environ.get("FLYTE_IAP_STATE_DIR")
    if explicit:
        return os.path.expanduser(explicit)
    if os.environ.get("FLYTE_IAP_CACHE_DIR") or sys.platform == "win32":
        return None
    if sys.platform == "darwin":  # pragma: no cover - macOS only
        return os.path.join(os.path.expanduser("~"), "Library", "Application Support", "flyte-iap")
    xdg = os.environ.get("XDG_STATE_HOME")
    base = xdg if xdg and os.path.isabs(xdg) else os.path.join(os.path.expanduser("~"), ".local", "state")
    return os.path.join(base, "flyte-iap")


def grant_store(cache: TokenCache) -> TokenCache | None:
    """The store for grants next to ``cache``, or ``None`` when grants stay in ``cache``'s records.

    A cache given an explicit directory other than the default keeps its grants (a caller that chose a
    directory chose it for everything).
    """
    from flyte_iap.cache import default_cache_dir

    where = state_dir()
    if where is None:
        return None
    own = os.path.abspath(os.fspath(cache.directory))
    explicit_state = bool(os.environ.get("FLYTE_IAP_STATE_DIR"))
    if not explicit_state and own != os.path.abspath(os.fspath(default_cache_dir())):
        return None
    if os.path.abspath(where) == own:
        return None
    # The platform's state dir is ours to tighten; one named in FLYTE_IAP_STATE_DIR is the user's.
    store = TokenCache(where, own=not explicit_state, setting="FLYTE_IAP_STATE_DIR")
    store.warnings = cache.warnings  # one list: the CLI prints them all
    return store


def legacy_fields(record: dict[str, Any] | None) -> dict[str, str]:
    """The grant fields an older flyte-iap kept inside a cache record."""
    return {k: record[k] for k in FIELDS if isinstance((record or {}).get(k), str)}
