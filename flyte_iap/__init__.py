"""flyte-iap: Google ID tokens for Flyte clients behind Identity-Aware Proxy.

Example::

    import flyte_iap

    token = flyte_iap.get_user_id_token("123-web.apps.googleusercontent.com")

The package root stays import-cheap: public names are loaded on first use (PEP 562), so
``flyte-iap token`` on a warm cache never pays for google-auth, requests or click.
"""

from __future__ import annotations

# typing costs milliseconds at import; the annotations are strings (PEP 563) and type checkers read this
# constant as True.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__version__ = "0.1.0"

#: Where the guide is published; error hints and check findings link to its pages.
DOCS_URL = "https://flyte-iap.readthedocs.io/en/latest"

#: public name -> module that defines it
_LAZY: dict[str, str] = {
    # user ID tokens
    "get_user_id_token": "flyte_iap.user_tokens",
    "login_user": "flyte_iap.user_tokens",
    "logout_user": "flyte_iap.user_tokens",
    "UserLogin": "flyte_iap.user_tokens",
    "IapAuth": "flyte_iap.requests_auth",
    # service-account ID tokens
    "get_service_account_id_token": "flyte_iap.service_account",
    # service-account signed JWTs
    "get_service_account_jwt": "flyte_iap.signed_jwt",
    # manifest checks (flyte-iap check)
    "check_paths": "flyte_iap.manifest_check",
    "check_text": "flyte_iap.manifest_check",
}

__all__ = ["DOCS_URL", "__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'flyte_iap' has no attribute {name!r}")
    import importlib  # only here: importing it costs the hot path half a millisecond

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
