"""`flyte-iap proxy`: a local authenticating reverse proxy to Flyte behind IAP (flyte_iap.local_proxy)."""

from __future__ import annotations

import sys

import click

from flyte_iap.cli import cli
from flyte_iap.cli._common import AUDIENCE_HELP, option, profile_option, token_cache, with_profile
from flyte_iap.errors import ConfigurationError


def _say(message: str) -> None:
    click.echo(message, err=True)


@cli.command("proxy", short_help="Local proxy that adds the IAP token to every request.")
@option(
    "--endpoint",
    metavar="URL",
    help="The Flyte deployment behind IAP: https://flyte.example.com (the only origin it forwards to). "
    "Required unless --profile gives it.",
)
@option("--audience", metavar="CLIENT_ID", help=AUDIENCE_HELP + " Required unless --profile gives it.")
@profile_option
@option(
    "--port",
    type=click.IntRange(0, 65535),
    default=0,
    envvar="FLYTE_IAP_PROXY_PORT",
    help="Port to listen on [default: a free one, printed on stdout].",
)
@option(
    "--bind",
    default="127.0.0.1",
    show_default=True,
    metavar="ADDRESS",
    envvar="FLYTE_IAP_PROXY_BIND",
    help="Address to listen on; a non-loopback one also needs --allow-remote and --require-secret.",
)
@option(
    "--allow-remote",
    is_flag=True,
    envvar="FLYTE_IAP_PROXY_ALLOW_REMOTE",
    help=(
        "Accept a non-loopback --bind: others who reach it act as you (with the secret). "
        "Plain HTTP: the secret and all traffic cross the network unencrypted; prefer an SSH tunnel."
    ),
)
@option(
    "--require-secret",
    is_flag=True,
    envvar="FLYTE_IAP_PROXY_REQUIRE_SECRET",
    help="Only serve requests that carry the session secret (FLYTE_IAP_PROXY_SECRET, or a new random one "
    "printed on stderr) in x-flyte-iap-proxy-secret or proxy-authorization.",
)
@option(
    "--sa",
    "service_account",
    is_flag=True,
    envvar="FLYTE_IAP_PROXY_SA",
    help="Use a service account's token, as `flyte-iap sa-token`, instead of the signed-in user's.",
)
@option("--client-id", metavar="CLIENT_ID", help="User tokens: the Desktop client of the stored sign-in.")
@option(
    "--impersonate-service-account",
    metavar="SA_EMAIL",
    help="With --sa: mint the token for this service account (as `flyte-iap sa-token`).",
)
@option(
    "--key-file",
    metavar="FILE",
    type=click.Path(dir_okay=False),
    help="With --sa: a service-account key JSON instead of looking for credentials.",
)
@option(
    "--ca-cert",
    metavar="FILE",
    type=click.Path(dir_okay=False),
    help="PEM of the CA that signs the endpoint's certificate [default: the system's CAs].",
)
@option(
    "--max-connections",
    type=click.IntRange(1, 10000),
    default=256,
    show_default=True,
    envvar="FLYTE_IAP_PROXY_MAX_CONNECTIONS",
    help="Client connections served at once.",
)
def proxy_command(
    endpoint: str | None,
    audience: str | None,
    profile: str | None,
    port: int,
    bind: str,
    allow_remote: bool,
    require_secret: bool,
    service_account: bool,
    client_id: str | None,
    impersonate_service_account: str | None,
    key_file: str | None,
    ca_cert: str | None,
    max_connections: int,
) -> None:
    """Listen on 127.0.0.1 and forward every request to --endpoint with IAP's header added.

    For clients that cannot send `proxy-authorization` themselves: flytectl's PKCE and client-secret
    token requests (flyte#6089), the Flyte 2 SDK, curl, scripts and notebooks. Point them at the printed
    address (`admin.endpoint: dns:///127.0.0.1:PORT` with `insecure: true`); they need no proxyCommand.
    HTTP/1.1 and HTTP/2 (gRPC) are both served on the port. The token comes from the same cache as
    `flyte-iap token` (or `sa-token` with --sa) and is refreshed before it expires. The URL goes to stdout;
    how to use it, and any hint about IAP's answers, to stderr. Stop it with Ctrl-C or SIGTERM.
    """
    from flyte_iap import local_proxy

    local_proxy.require_stack()
    if profile:
        from flyte_iap.profiles import get_profile

        mode = get_profile(profile).get("mode", "user")
        if mode == "service-account-jwt":
            raise ConfigurationError(
                f"profile {profile!r} uses mode service-account-jwt; the proxy sends ID tokens",
                "use a profile whose mode is user or service-account, or give --endpoint and --audience",
            )
        service_account = service_account or mode == "service-account"
        # Only the fields of the token kind in use: a service-account profile's client_id is not ours.
        given = (
            {"impersonate_service_account": impersonate_service_account, "key_file": key_file}
            if service_account
            else {"client_id": client_id}
        )
        filled = with_profile(profile, endpoint=endpoint, audience=audience, **given)
        endpoint, audience = filled["endpoint"], filled["audience"]
        client_id = filled.get("client_id", client_id)
        impersonate_service_account = filled.get("impersonate_service_account", impersonate_service_account)
        key_file = filled.get("key_file", key_file)
        # Google-managed client with an allowlisted Desktop client: that client's ID is the audience.
        audience = audience or (None if service_account else client_id)
    if not endpoint:
        raise click.UsageError("Missing option '--endpoint' (or a --profile that sets it).")
    if not audience:
        raise click.UsageError("Missing option '--audience' (or a --profile that sets it).")
    if not service_account and (impersonate_service_account or key_file):
        raise ConfigurationError(
            "--impersonate-service-account and --key-file are for service-account tokens",
            "add --sa, or drop them to use your own sign-in",
        )
    if service_account and client_id:
        raise ConfigurationError("--client-id is for user sign-ins, not --sa", "drop --client-id or --sa")
    secret = None
    if require_secret:
        import os
        import secrets

        secret = os.environ.get("FLYTE_IAP_PROXY_SECRET") or secrets.token_urlsafe(24)

    if service_account:
        fetch = local_proxy.service_account_token_fetcher(
            audience, impersonate_service_account=impersonate_service_account, key_file=key_file
        )
    else:
        fetch = local_proxy.user_token_fetcher(audience, client_id=client_id)

    def background_error(exc: BaseException) -> None:
        message = getattr(exc, "message", type(exc).__name__)
        hint = getattr(exc, "hint", "the proxy retries shortly")
        _say(f"warning: refreshing the token failed: {message}\nhint: {hint}")

    tokens = local_proxy.TokenSource(fetch, on_background_error=background_error)
    # Checks the endpoint and the address before anything is fetched.
    proxy = local_proxy.LocalProxy(
        endpoint,
        tokens,
        host=bind,
        port=port,
        allow_remote=allow_remote,
        secret=secret,
        ca_cert=ca_cert,
        max_connections=max_connections,
        log=_say,
    )
    # The first token is fetched here, in the foreground: a user in a terminal may sign in in the
    # browser now; anywhere else a missing sign-in fails at once with the login command.
    with token_cache() as cache:
        if service_account:
            from flyte_iap.service_account import get_service_account_id_token

            first = get_service_account_id_token(
                audience,
                impersonate_service_account=impersonate_service_account,
                key_file=key_file,
                cache=cache,
            )
        else:
            from flyte_iap.user_tokens import get_user_id_token

            first = get_user_id_token(audience, client_id=client_id, notify=_say, cache=cache)
    tokens.prime(first)
    import asyncio

    asyncio.run(_serve(proxy))


async def _serve(proxy: object) -> None:
    import asyncio
    import signal

    from flyte_iap.local_proxy.server import SECRET_HEADER, LocalProxy

    assert isinstance(proxy, LocalProxy)
    await proxy.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    _announce(proxy, SECRET_HEADER)
    sys.stdout.write(proxy.url + "\n")
    sys.stdout.flush()
    await stop.wait()
    await proxy.stop()
    _say(f"flyte-iap proxy: stopped ({proxy.forwarded} requests forwarded).")


def _announce(proxy: object, secret_header: str) -> None:
    from flyte_iap.local_proxy.server import LocalProxy

    assert isinstance(proxy, LocalProxy)
    who = proxy.tokens.email or "the token's account"
    target = proxy.url.removeprefix("http://")
    lines = [
        f"flyte-iap proxy: {proxy.url} -> {proxy.endpoint} as {who}",
        "flytekit / flytectl config (no proxyCommand):",
        "  admin:",
        f"    endpoint: dns:///{target}",
        "    insecure: true",
        f"flytekit by environment: export FLYTE_PLATFORM_URL={target} FLYTE_PLATFORM_INSECURE=True",
    ]
    if proxy.secret is None:
        lines.append(f"curl: curl {proxy.url}/api/v1/projects")
    else:
        lines += [
            f"export FLYTE_IAP_PROXY_SECRET={proxy.secret}",
            f'curl: curl -H "{secret_header}: $FLYTE_IAP_PROXY_SECRET" {proxy.url}/api/v1/projects',
            "flytekit / flytectl: proxyCommand: [sh, -c, 'echo $FLYTE_IAP_PROXY_SECRET'] sends it",
        ]
    lines.append("Stop with Ctrl-C.")
    _say("\n".join(lines))
