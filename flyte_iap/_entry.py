"""The ``flyte-iap`` console script: a cached token is printed before click is even imported.

Example::

    $ flyte-iap token --audience 123-web.apps.googleusercontent.com     # warm cache: answered here
    $ FLYTE_IAP_NO_FAST_PATH=1 flyte-iap token --audience ...           # always the click CLI

flytekit and flytectl run the proxy command at least twice per ``pyflyte`` call and again after every
401, so a warm ``flyte-iap token`` must cost little more than starting Python. This module answers the
token commands from the cache with the standard library alone; anything it does not fully understand
(an unknown option, a miss, an expiring token, a cache warning) falls through to the click CLI in
:mod:`flyte_iap.cli`, which does the same thing the slow way and reports any problem properly.
"""

from __future__ import annotations

import os
import sys

from flyte_iap.idtoken import DEFAULT_MIN_VALID

# typing costs milliseconds at import; the annotations are strings (PEP 563) and type checkers read this
# constant as True.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

# option name -> canonical key, or None for an option a cache hit ignores. An option not listed here sends
# the run to click.
_USER_OPTIONS = {
    "--audience": "audience",
    "--client-id": "client_id",
    "--min-valid": "min_valid",
    # accepted and irrelevant for a cache hit:
    "--client-secret": None,
    "--client-secrets-file": None,
    "--client-secret-gcp-secret": None,
    "--store": None,
    "--port": None,
    "--timeout": None,
    "--no-browser": None,
}
#: Options that take no value.
_FLAGS = frozenset({"--no-browser"})
_COMPAT_USER_OPTIONS = {
    "--webapp_client_id": "audience",
    "--desktop_client_id": "client_id",
    "--desktop_client_secret_gcp_secret_name": None,
    "--project": None,
}
_ENV = {
    "audience": "FLYTE_IAP_AUDIENCE",
    "client_id": "FLYTE_IAP_CLIENT_ID",
    "min_valid": "FLYTE_IAP_MIN_VALID",
}
# The compat command's options read the variables click derives from their own names.
_COMPAT_ENV = {
    "audience": "FLYTE_IAP_WEBAPP_CLIENT_ID",
    "client_id": "FLYTE_IAP_DESKTOP_CLIENT_ID",
}


def _parse(args: list[str], table: dict[str, str | None]) -> dict[str, str] | None:
    """Parse ``--opt value`` / ``--opt=value`` pairs; ``None`` on anything unexpected."""
    out: dict[str, str] = {}
    i = 0
    while i < len(args):
        arg = args[i]
        name, eq, value = arg.partition("=")
        if name not in table:
            return None
        if name in _FLAGS:
            if eq:
                return None
            i += 1
            continue
        if not eq:
            i += 1
            if i >= len(args):
                return None
            value = args[i]
        key = table[name]
        if key is not None:
            out[key] = value
        i += 1
    return out


def _options(
    args: list[str], table: dict[str, str | None], env_names: dict[str, str]
) -> tuple[dict[str, str], float] | None:
    """The options given, then those from the environment, and ``--min-valid``; ``None`` on any doubt."""
    opts = _parse(args, table)
    if opts is None:
        return None
    for key, env in env_names.items():
        if key not in opts and os.environ.get(env):
            opts[key] = os.environ[env]
    if not opts.get("audience"):
        return None
    try:
        min_valid = float(opts.get("min_valid", DEFAULT_MIN_VALID))
    except ValueError:
        return None
    if not min_valid >= 0:  # negative or NaN: click rejects it on the slow path
        return None
    return opts, min_valid


def _user_token(args: list[str], table: dict[str, str | None], env_names: dict[str, str]) -> str | None:
    parsed = _options(args, table, env_names)
    if parsed is None:
        return None
    opts, min_valid = parsed
    audience = opts["audience"]

    from flyte_iap.cache import TokenCache
    from flyte_iap.idtoken import check_id_token

    cache = TokenCache()
    if opts.get("client_id"):
        record = cache.read("user", audience, opts["client_id"])
    else:
        found = cache.find("user", audience)
        record = found[0] if found else None
    if record is None or cache.warnings or not isinstance(record.get("id_token"), str):
        return None
    check_id_token(record["id_token"], audience, min_valid=min_valid)
    return record["id_token"]


# Service-account tokens (flyte_iap.service_account): option -> key; env names as click derives them.
_SA_OPTIONS: dict[str, str | None] = {
    "--audience": "audience",
    "--impersonate-service-account": "impersonate_service_account",
    "--key-file": "key_file",
    "--min-valid": "min_valid",
}
_SA_ENV = {
    "audience": "FLYTE_IAP_AUDIENCE",
    "impersonate_service_account": "FLYTE_IAP_IMPERSONATE_SERVICE_ACCOUNT",
    "key_file": "FLYTE_IAP_KEY_FILE",
    "min_valid": "FLYTE_IAP_MIN_VALID",
}
_COMPAT_SA_OPTIONS: dict[str, str | None] = {
    "--webapp_client_id": "audience",
    "--service_account_key": "key_file",
}
_COMPAT_SA_ENV = {"audience": "FLYTE_IAP_WEBAPP_CLIENT_ID", "key_file": "FLYTE_IAP_SERVICE_ACCOUNT_KEY"}


def _sa_token(
    args: list[str], table: dict[str, str | None], env_names: dict[str, str], key_file_is_adc: bool = False
) -> str | None:
    parsed = _options(args, table, env_names)
    if parsed is None:
        return None
    opts, min_valid = parsed
    from flyte_iap.service_account import cached_token

    key_file = opts.get("key_file") or None
    if key_file and key_file_is_adc:
        # The plugin's --service_account_key is GOOGLE_APPLICATION_CREDENTIALS, as in flyte_iap.cli.
        os.environ["GOOGLE_APPLICATION_CREDENTIALS"] = key_file
        key_file = None
    return cached_token(
        opts["audience"],
        impersonate_service_account=opts.get("impersonate_service_account") or None,
        key_file=key_file,
        min_valid=min_valid,
    )


#: command name -> function returning a cached token or None. Other token commands register here.
FAST_COMMANDS: dict[str, Callable[[list[str]], str | None]] = {
    "token": lambda args: _user_token(args, _USER_OPTIONS, _ENV),
    "generate-user-id-token": lambda args: _user_token(args, _COMPAT_USER_OPTIONS, _COMPAT_ENV),
    "sa-token": lambda args: _sa_token(args, _SA_OPTIONS, _SA_ENV),
    "generate-service-account-id-token": lambda args: _sa_token(
        args, _COMPAT_SA_OPTIONS, _COMPAT_SA_ENV, key_file_is_adc=True
    ),
}


def main() -> None:
    """Entry point of the ``flyte-iap`` console script."""
    argv = sys.argv[1:]
    if argv and argv[0] in FAST_COMMANDS and os.environ.get("FLYTE_IAP_NO_FAST_PATH") != "1":
        try:
            token = FAST_COMMANDS[argv[0]](argv[1:])
        except Exception:  # any doubt goes to the slow path, which reports it properly
            token = None
        if token:
            sys.stdout.write(token + "\n")
            sys.stdout.flush()
            return
    from flyte_iap.cli import main as cli_main

    cli_main()


if __name__ == "__main__":
    main()
