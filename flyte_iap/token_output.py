"""How a token command prints its token: bare (the default), JSON, or a Kubernetes ExecCredential.

Example::

    >>> from flyte_iap.token_output import render
    >>> render(token, "json")                      # doctest: +SKIP
    '{"token": "eyJ...", "expiry": "2026-11-30T10:00:00Z"}'

Standard library only: the fast path (:mod:`flyte_iap._entry`) prints through it.
"""

from __future__ import annotations

import json
import time

from flyte_iap.idtoken import decode_claims

#: ``--format`` values: the bare token (for ``admin.proxyCommand``), ``{"token", "expiry"}``, or an
#: ``ExecCredential`` (client.authentication.k8s.io/v1) for tools that run credential plugins.
FORMATS = ("token", "json", "exec-credential")


def expiry(token: str) -> str | None:
    """The token's ``exp`` as RFC 3339 UTC (``2026-11-30T10:00:00Z``), or ``None`` without one."""
    exp = decode_claims(token).get("exp")
    if not isinstance(exp, int | float) or isinstance(exp, bool):
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(exp))


def render(token: str, fmt: str = "token") -> str:
    """The text to print for ``token`` in ``fmt`` (one of :data:`FORMATS`), without the final newline.

    Raises:
        ValueError: an unknown format.
    """
    if fmt == "token":
        return token
    if fmt == "json":
        return json.dumps({"token": token, "expiry": expiry(token)})
    if fmt == "exec-credential":
        status: dict[str, str] = {"token": token}
        when = expiry(token)
        if when:
            status["expirationTimestamp"] = when
        document = {
            "apiVersion": "client.authentication.k8s.io/v1",
            "kind": "ExecCredential",
            "status": status,
        }
        return json.dumps(document)
    raise ValueError(f"unknown format {fmt!r}")
