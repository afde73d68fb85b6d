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

_FORMATS = ("token", "json", "exec-credential")

# typing costs milliseconds at import; the annotations are strings (PEP 563) and type checkers read this
# constant as True.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

# option name -> canonical key. Every option of the command is listed, those a cache hit ignores too: the
# fast path checks each value as click would, so a bad one exits 2 on a warm cache as on a cold one. An
# option not listed here sends the run to click.
_USER_OPTIONS = {
    "--audience": "audience",
    "--client-id": "client_id",
    "--min-valid": "min_valid",
    "--client-secret": "client_secret",
    "--client-secrets-file": "client_secrets_file",
    "--client-secret-gcp-secret": "client_secret_gcp_secret",
    "--store": "store",
    "--port": "port",
    "--timeout": "timeout",
    "--no-browser": "no_browser",
    "--format": "format",
    "--endpoint": "endpoint",
    "--profile": "profile",
}
#: Options that take no value.
_FLAGS = frozenset({"--no-browser"})
_COMPAT_USER_OPTIONS = {
    "--webapp_client_id": "audience",
    "--desktop_client_id": "client_id",
    "--desktop_client_secret_gcp_secret_name": "secret_name",
    "--project": "project",
}
# The environment variables click reads for these options (flyte_iap.cli._common.option names them).
_ENV = {
    "audience": "FLYTE_IAP_AUDIENCE",
    "client_id": "FLYTE_IAP_CLIENT_ID",
    "min_valid": "FLYTE_IAP_MIN_VALID",
    "client_secret": "FLYTE_IAP_CLIENT_SECRET",
    "client_secrets_file": "FLYTE_IAP_CLIENT_SECRETS_FILE",
    "client_secret_gcp_secret": "FLYTE_IAP_CLIENT_SECRET_GCP_SECRET",
    "store": "FLYTE_IAP_STORE",
    "port": "FLYTE_IAP_PORT",
    "timeout": "FLYTE_IAP_TIMEOUT",
    "no_browser": "FLYTE_IAP_NO_BROWSER",
    "endpoint": "FLYTE_IAP_ENDPOINT",
    "profile": "FLYTE_IAP_PROFILE",
}
# The compat command's options read the variables click derives from their own names.
_COMPAT_ENV = {
    "audience": "FLYTE_IAP_WEBAPP_CLIENT_ID",
    "client_id": "FLYTE_IAP_DESKTOP_CLIENT_ID",
    "secret_name": "FLYTE_IAP_DESKTOP_CLIENT_SECRET_GCP_SECRET_NAME",
    "project": "FLYTE_IAP_PROJECT",
}
_COMPAT_USER_REQUIRED = ("audience", "client_id", "secret_name", "project")


def _number(value: str, kind: Callable[[str], float], low: float, high: float) -> bool:
    try:
        number = kind(value)
    except ValueError:
        return False
    return low <= number <= high


def _not_a_directory(value: str) -> bool:
    return not os.path.isdir(value)  # as click.Path(dir_okay=False) checks it: no ~ expansion


def _readable_file(value: str) -> bool:  # click.Path(exists=True, dir_okay=False)
    return os.path.exists(value) and not os.path.isdir(value) and os.access(value, os.R_OK)


_INF = float("inf")
# canonical key -> whether click would accept the value (click.IntRange, FloatRange, Choice, Path, flag).
_VALID: dict[str, Callable[[str], bool]] = {
    "min_valid": lambda v: _number(v, float, 0, _INF) and float(v) != _INF,  # NaN fails the range
    "timeout": lambda v: _number(v, float, 1, _INF) and float(v) != _INF,
    "port": lambda v: _number(v, int, 0, 65535),
    "store": lambda v: v in ("file", "keyring"),
    "no_browser": lambda v: (
        v.strip().lower() in ("1", "true", "t", "yes", "y", "on", "0", "false", "f", "no", "n", "off", "")
    ),
    "client_secrets_file": _not_a_directory,
    "key_file": _not_a_directory,
    "service_account_key": _readable_file,
    "format": lambda v: v in _FORMATS,
}


def _parse(args: list[str], table: dict[str, str]) -> dict[str, str] | None:
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
            out[table[name]] = "true"
            i += 1
            continue
        if not eq:
            i += 1
            if i >= len(args):
                return None
            value = args[i]
        out[table[name]] = value
        i += 1
    return out


def _options(
    args: list[str],
    table: dict[str, str],
    env_names: dict[str, str],
    required: tuple[str, ...] = ("audience",),
) -> tuple[dict[str, str], float] | None:
    """The options given, then those from the environment, and ``--min-valid``; ``None`` on any doubt.

    Doubt includes a value click would refuse (exit 2 with its message), a missing required option,
    and anything else the slow path reports better.
    """
    opts = _parse(args, table)
    if opts is None:
        return None
    for key, env in env_names.items():
        if key not in opts and os.environ.get(env):
            opts[key] = os.environ[env]
    if opts.get("profile"):
        from flyte_iap.profiles import get_profile

        values = get_profile(opts["profile"])  # a bad file raises: the click path reports it
        for key in ("audience", "client_id", "impersonate_service_account", "key_file"):
            field = "endpoint" if key == "audience" and table is _JWT_OPTIONS else key
            if key not in opts and key in table.values() and values.get(field):
                opts[key] = values[field]
    if (
        not opts.get("audience")
        and opts.get("client_id")
        and not opts.get("endpoint")
        and table is _USER_OPTIONS
    ):
        # Google-managed client: the allowlisted Desktop client's own ID is the audience (as in the CLI;
        # with --endpoint the CLI finds the audience from IAP's redirect instead).
        opts["audience"] = opts["client_id"]
    if not all(opts.get(key) for key in required):
        return None
    for key, value in opts.items():
        check = _VALID.get(key)
        if check is not None and not check(value):
            return None
    return opts, float(opts.get("min_valid", DEFAULT_MIN_VALID))


def _user_token(
    args: list[str],
    table: dict[str, str],
    env_names: dict[str, str],
    required: tuple[str, ...] = ("audience",),
) -> str | None:
    parsed = _options(args, table, env_names, required)
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
_SA_OPTIONS: dict[str, str] = {
    "--audience": "audience",
    "--impersonate-service-account": "impersonate_service_account",
    "--key-file": "key_file",
    "--min-valid": "min_valid",
    "--format": "format",
    "--profile": "profile",
}
_SA_ENV = {
    "audience": "FLYTE_IAP_AUDIENCE",
    "impersonate_service_account": "FLYTE_IAP_IMPERSONATE_SERVICE_ACCOUNT",
    "key_file": "FLYTE_IAP_KEY_FILE",
    "min_valid": "FLYTE_IAP_MIN_VALID",
    "profile": "FLYTE_IAP_PROFILE",
}
# Service-account JWTs (flyte_iap.signed_jwt): --url plays the audience's part.
_JWT_OPTIONS: dict[str, str] = {**_SA_OPTIONS, "--url": "audience"}
del _JWT_OPTIONS["--audience"]
_JWT_ENV = {**_SA_ENV, "audience": "FLYTE_IAP_URL"}
_COMPAT_SA_OPTIONS: dict[str, str] = {
    "--webapp_client_id": "audience",
    "--service_account_key": "key_file",
}
_COMPAT_SA_ENV = {"audience": "FLYTE_IAP_WEBAPP_CLIENT_ID", "key_file": "FLYTE_IAP_SERVICE_ACCOUNT_KEY"}


def _sa_token(args: list[str], table: dict[str, str], env_names: dict[str, str]) -> str | None:
    parsed = _options(args, table, env_names)
    if parsed is None:
        return None
    opts, min_valid = parsed
    from flyte_iap.service_account import cached_token

    key_file = opts.get("key_file") or None
    if opts.get("service_account_key"):
        # The plugin's --service_account_key is GOOGLE_APPLICATION_CREDENTIALS, as in flyte_iap.cli.
        os.environ["GOOGLE_APPLICATION_CREDENTIALS"] = opts["service_account_key"]
    return cached_token(
        opts["audience"],
        impersonate_service_account=opts.get("impersonate_service_account") or None,
        key_file=key_file,
        min_valid=min_valid,
    )


def _sa_jwt(args: list[str]) -> str | None:
    parsed = _options(args, _JWT_OPTIONS, _JWT_ENV)
    if parsed is None:
        return None
    opts, min_valid = parsed
    from flyte_iap.signed_jwt import cached_jwt

    return cached_jwt(
        opts["audience"],
        impersonate_service_account=opts.get("impersonate_service_account") or None,
        key_file=opts.get("key_file") or None,
        min_valid=min_valid,
    )


def _output_format(args: list[str]) -> str:
    """The --format a fast command was given (already validated by its parser), else ``token``."""
    for i, arg in enumerate(args):
        name, eq, value = arg.partition("=")
        if name == "--format":
            return value if eq else args[i + 1]
    return "token"


#: command name -> function returning a cached token or None. Other token commands register here.
FAST_COMMANDS: dict[str, Callable[[list[str]], str | None]] = {
    "token": lambda args: _user_token(args, _USER_OPTIONS, _ENV),
    "generate-user-id-token": lambda args: _user_token(
        args, _COMPAT_USER_OPTIONS, _COMPAT_ENV, _COMPAT_USER_REQUIRED
    ),
    "sa-token": lambda args: _sa_token(args, _SA_OPTIONS, _SA_ENV),
    "sa-jwt": _sa_jwt,
    "generate-service-account-id-token": lambda args: _sa_token(args, _COMPAT_SA_OPTIONS, _COMPAT_SA_ENV),
}


def _status(args: list[str]) -> int | None:
    """``flyte-iap status`` without click (the same output as :mod:`flyte_iap.cli.status`), or None."""
    opts = _parse(args, {"--audience": "audience", "--format": "format"})
    if opts is None:
        return None
    fmt = opts.get("format") or "text"
    audience = opts.get("audience") or os.environ.get("FLYTE_IAP_AUDIENCE") or None
    if fmt not in ("text", "json"):
        return None
    from flyte_iap.cache import TokenCache
    from flyte_iap.status import LOGIN_HINT, render, stored_identities

    cache = TokenCache()
    identities = stored_identities(cache, audience=audience)
    out = render(identities, fmt) + "\n"
    for message in dict.fromkeys(cache.warnings):
        sys.stderr.write(f"warning: {message}\n")
    sys.stdout.write(out)
    sys.stdout.flush()
    if any(i["usable"] for i in identities):
        return 0
    where = f" for audience {audience}" if audience else ""
    sys.stderr.write(f"error: nothing usable is stored{where}\nhint: {LOGIN_HINT}\n")
    return 1


def main() -> None:
    """Entry point of the ``flyte-iap`` console script."""
    argv = sys.argv[1:]
    if argv and argv[0] == "status" and os.environ.get("FLYTE_IAP_NO_FAST_PATH") != "1":
        code = _status(argv[1:])
        if code is not None:
            sys.exit(code)
    if argv and argv[0] in FAST_COMMANDS and os.environ.get("FLYTE_IAP_NO_FAST_PATH") != "1":
        try:
            token = FAST_COMMANDS[argv[0]](argv[1:])
        except Exception:  # any doubt goes to the slow path, which reports it properly
            token = None
        if token:
            fmt = "token" if argv[0].startswith("generate-") else _output_format(argv[1:])
            if fmt != "token":
                from flyte_iap.token_output import render

                token = render(token, fmt)
            sys.stdout.write(token + "\n")
            sys.stdout.flush()
            return
    from flyte_iap.cli import main as cli_main

    cli_main()


if __name__ == "__main__":
    main()
