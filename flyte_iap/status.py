"""What flyte-iap holds: every stored identity, its audience and expiry, never a token or a secret.

Example::

    from flyte_iap.status import render, stored_identities

    identities = stored_identities(audience="123-iap.apps.googleusercontent.com")  # or all of them
    print(render(identities, "text"))
    usable = any(i["usable"] for i in identities)

One entry per token-store record:

* ``user`` (``flyte-iap login``): the Desktop client, the store of its grant (``file`` or ``keyring``),
  where the client secret came from, whether a refresh grant is held;
* ``service-account`` (``flyte-iap sa-token``) and ``service-account-jwt`` (``flyte-iap sa-jwt``): the
  service account and the credentials it was minted from. These are minted again from those credentials
  whenever needed; the entry says what is cached now.

An identity is *usable* when its cached token is still valid, or (people) a refresh grant is stored. The
keyring is not opened (it may prompt): a keyring grant counts as held unless Google refused it.

Standard library only, and nothing but the token store's small files is read: the fast path
(:mod:`flyte_iap._entry`) answers ``flyte-iap status`` with it.
"""

from __future__ import annotations

import json
import os
import time

from flyte_iap.cache import TokenCache
from flyte_iap.errors import InvalidTokenError
from flyte_iap.idtoken import decode_claims

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

#: Cache kind -> the kind shown.
KINDS = {"user": "user", "sa": "service-account", "jwt": "service-account-jwt"}
#: At most this many store files are looked at (a token store holds a handful).
MAX_RECORDS = 1000
LOGIN_HINT = (
    "sign in with `flyte-iap login --audience IAP_CLIENT_ID --client-id DESKTOP_CLIENT_ID ...` (people), or "
    "run `flyte-iap sa-token` / `flyte-iap sa-jwt` (service accounts)"
)


def stored_identities(
    cache: TokenCache | None = None, *, audience: str | None = None, now: float | None = None
) -> list[dict[str, Any]]:
    """The identities in the token store, newest first.

    Args:
        cache: the token store; ``TokenCache()`` by default. Skipped files end up in its ``warnings``.
        audience: only those for this audience (an OAuth client ID, or a JWT's URL audience).
        now: the current time, for tests.

    Returns:
        One dict per identity: ``kind``, ``email``, ``audience``, ``store``, ``client_id``,
        ``secret_source``, ``credentials_source``, ``expiry`` (RFC 3339 UTC or None), ``seconds_left``,
        ``token_valid``, ``refresh_grant`` and ``usable``. No token, no secret.
    """
    cache = cache if cache is not None else TokenCache()
    now = time.time() if now is None else now
    directory = os.fspath(cache.directory)
    try:
        names = sorted(e.name for e in os.scandir(directory) if e.name.endswith(".json") and e.is_file())
    except FileNotFoundError:
        return []
    except OSError as exc:
        cache.warnings.append(f"cannot list token store {directory}: {exc.strerror}")
        return []
    from flyte_iap.grants import KIND as GRANT
    from flyte_iap.grants import grant_store, legacy_fields

    store = grant_store(cache)
    found: list[tuple[float, dict[str, Any]]] = []
    for name in names[:MAX_RECORDS]:
        kind = name.split("-", 1)[0]
        if kind not in KINDS:
            continue
        record = cache._load(os.path.join(directory, name))
        if record is None or not isinstance(record.get("audience"), str):
            continue
        if audience is not None and record["audience"] != audience:
            continue
        if kind == "user" and store is not None and record.get("store") != "keyring":
            # the grant lives in the state dir (flyte_iap.grants): only whether it is there is shown
            grant = store.read(GRANT, record["audience"], str(record.get("principal", "")))
            record = {**record, **legacy_fields(grant)}
        found.append((_number(record.get("updated")), _identity(kind, record, now)))
    found.sort(key=lambda item: item[0], reverse=True)
    return [identity for _, identity in found]


def _number(value: object) -> float:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0.0


def _identity(kind: str, record: dict[str, Any], now: float) -> dict[str, Any]:
    token = record.get("jwt" if kind == "jwt" else "id_token")
    claims: dict[str, Any] = {}
    if isinstance(token, str) and token:
        try:
            claims = decode_claims(token)
        except InvalidTokenError:
            claims = {}
    exp = claims.get("exp")
    has_exp = isinstance(exp, int | float) and not isinstance(exp, bool)
    left = int(exp - now) if has_exp else None
    valid = left is not None and left > 0 and claims.get("aud") == record["audience"]
    email = record.get("email") if isinstance(record.get("email"), str) else claims.get("email")
    identity: dict[str, Any] = {
        "kind": KINDS[kind],
        "email": email if isinstance(email, str) else None,
        "audience": record["audience"],
        "store": "file",
        "client_id": None,
        "secret_source": None,
        "credentials_source": None,
        "expiry": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(exp)) if has_exp else None,
        "seconds_left": max(left, 0) if left is not None else None,
        "token_valid": valid,
        "refresh_grant": False,
    }
    if kind == "user":
        store = record.get("store") if record.get("store") in ("file", "keyring") else "file"
        dropped = bool(record.get("grant_dropped"))
        held = isinstance(record.get("refresh_token"), str) if store == "file" else True
        identity.update(
            store=store,
            client_id=record.get("principal") if isinstance(record.get("principal"), str) else None,
            secret_source=_secret_source(record.get("secret_source")),
            refresh_grant=held and not dropped,
        )
    else:
        source = record.get("source")
        identity["credentials_source"] = source if isinstance(source, str) else None
    identity["usable"] = bool(identity["token_valid"] or identity["refresh_grant"])
    return identity


def _secret_source(fields: object) -> str | None:
    if not isinstance(fields, dict):
        return None
    kind, location = fields.get("kind"), fields.get("location")
    if kind == "value":
        return "--client-secret"
    if kind == "file":
        return f"--client-secrets-file {location}"
    if kind == "gcp-secret":
        return f"Secret Manager {location}"
    return None


def _left(seconds: int | None) -> str:
    if seconds is None:
        return "no token"
    if seconds <= 0:
        return "expired"
    hours, rest = divmod(seconds, 3600)
    return f"{hours}h{rest // 60:02d}m left" if hours else f"{rest // 60}m{rest % 60:02d}s left"


def render(identities: list[dict[str, Any]], fmt: str = "text") -> str:
    """``identities`` as text for people or as JSON (``{"identities": [...]}``), without a final newline.

    Raises:
        ValueError: an unknown format.
    """
    if fmt == "json":
        return json.dumps({"identities": identities}, indent=2)
    if fmt != "text":
        raise ValueError(f"unknown format {fmt!r}")
    if not identities:
        return "No stored identities."
    blocks = []
    for i in identities:
        state = "usable" if i["usable"] else "not usable"
        lines = [f"{i['email'] or '(unknown account)'} ({i['kind']}, {state})"]
        lines.append(f"  audience:     {i['audience']}")
        if i["expiry"]:
            lines.append(f"  token:        expires {i['expiry']} ({_left(i['seconds_left'])})")
        else:
            lines.append("  token:        none cached")
        if i["kind"] == "user":
            lines.append(f"  client ID:    {i['client_id']}")
            grant = "held" if i["refresh_grant"] else "none (sign in again)"
            lines.append(f"  refresh:      {grant}, {i['store']} store")
            if i["secret_source"]:
                lines.append(f"  secret from:  {i['secret_source']}")
        elif i["credentials_source"]:
            lines.append(f"  minted from:  {i['credentials_source']}")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)
