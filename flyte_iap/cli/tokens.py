"""Token commands: login, token, logout and sa-token, and the old plugin's names for them."""

from __future__ import annotations

import os

import click

from flyte_iap.cli import cli
from flyte_iap.cli._common import (
    AUDIENCE_HELP,
    Decorator,
    Seconds,
    emit_token,
    format_option,
    min_valid_option,
    option,
    options,
    profile_option,
    token_cache,
    with_profile,
)
from flyte_iap.errors import printable
from flyte_iap.idtoken import DEFAULT_MIN_VALID

# -- user ID tokens: login / token / logout / generate-user-id-token (flyte_iap.user_tokens) ----------


def _notify(message: str) -> None:
    click.echo(message, err=True)


def _sign_in_settings(
    profile: str | None,
    endpoint: str | None,
    audience: str | None,
    client_id: str | None,
    client_secrets_file: str | None,
    client_secret_gcp_secret: str | None,
    store: str | None,
) -> tuple[str, str | None, str | None, str | None, str | None]:
    """`login`'s and `token`'s settings: the options, then the profile, then the discovered audience."""
    o = with_profile(
        profile,
        audience=audience,
        client_id=client_id,
        client_secrets_file=client_secrets_file,
        client_secret_gcp_secret=client_secret_gcp_secret,
        store=store,
    )
    audience = _audience(o["audience"], o["client_id"], o["client_secrets_file"], endpoint)
    return audience, o["client_id"], o["client_secrets_file"], o["client_secret_gcp_secret"], o["store"]


def _audience(
    audience: str | None, client_id: str | None, client_secrets_file: str | None, endpoint: str | None = None
) -> str:
    """--audience; else from IAP's sign-in redirect at --endpoint; else the Desktop client's own ID.

    With --endpoint, a given --audience is checked against the app's client too (one request, made only
    on the click path: a warm `token --audience ...` never gets here).
    """
    desktop = client_id
    if not desktop and client_secrets_file:
        from flyte_iap.client_secrets import SecretSource

        source = SecretSource.from_options(None, client_secrets_file, None)
        if source is not None:
            desktop = source.resolve(None)[0]
    if endpoint:
        from flyte_iap.discovery import choose_audience, discover_client_id, managed_client_hint

        discovered = discover_client_id(endpoint)
        chosen, mode = choose_audience(discovered, desktop)
        if audience is None:
            return chosen
        if audience == desktop or (audience == discovered and mode == "custom"):
            return audience
        from flyte_iap.errors import ConfigurationError

        if mode == "custom":
            hint = f"use --audience {discovered} (or leave --audience out with --endpoint)"
        else:
            hint = managed_client_hint(endpoint, discovered)
        raise ConfigurationError(
            f"--audience {audience} is not an audience IAP at {endpoint} accepts from this sign-in: the "
            f"app's OAuth client is {discovered}",
            hint,
        )
    if audience:
        return audience
    if desktop:
        return desktop
    raise click.UsageError(
        "Missing option '--audience' (the IAP app's OAuth client ID; or --endpoint URL to find it; with the "
        "Google-managed client, pass --client-id alone: the Desktop client's ID is then the audience)."
    )


def _user_login_options(store_default: str | None) -> Decorator:
    """The options `login` and `token` share: which Desktop client, its secret, the store, the browser."""
    return options(
        option(
            "--audience",
            metavar="CLIENT_ID",
            help=AUDIENCE_HELP + " With the Google-managed client, the allowlisted Desktop client's ID: the "
            "default when --client-id (or --client-secrets-file) is given and --audience is not.",
        ),
        option(
            "--endpoint",
            metavar="URL",
            help="The app behind IAP (https://flyte.example.com): find the audience from IAP's sign-in "
            "redirect, or check --audience against it (one request, only when no cached token is used).",
        ),
        option(
            "--client-id",
            metavar="CLIENT_ID",
            help="Desktop OAuth client ID to sign in with [default: the one stored by login].",
        ),
        option(
            "--client-secret",
            metavar="SECRET",
            help="The Desktop client's secret. Visible to other users in `ps` and kept in shell history: "
            "prefer the FLYTE_IAP_CLIENT_SECRET environment variable or --client-secrets-file.",
        ),
        option(
            "--client-secrets-file",
            metavar="FILE",
            type=click.Path(dir_okay=False),
            help="Or the Desktop client's JSON downloaded from the Cloud console (key 'installed').",
        ),
        option(
            "--client-secret-gcp-secret",
            metavar="projects/P/secrets/S[/versions/V]",
            help="Or a Secret Manager secret holding it, read with application default credentials.",
        ),
        option(
            "--store",
            type=click.Choice(["file", "keyring"]),
            default=store_default,
            show_default=store_default is not None,
            help="Where the refresh token and client secret are kept: 0600 files under "
            "FLYTE_IAP_CACHE_DIR, or the OS keyring.",
        ),
        option(
            "--port",
            type=click.IntRange(0, 65535),
            default=0,
            help="Loopback port for the sign-in redirect [default: a free one].",
        ),
        option(
            "--timeout",
            type=Seconds(min=1),
            default=300.0,
            show_default=True,
            help="Seconds to wait for the browser sign-in.",
        ),
        option(
            "--no-browser",
            is_flag=True,
            help="Print the sign-in URL on stderr instead of opening a browser (remote or SSH sessions).",
        ),
    )


@cli.command("login", short_help="Sign in with Google in a browser, once.")
@_user_login_options(store_default=None)
@profile_option
def login_command(
    audience: str | None,
    endpoint: str | None,
    client_id: str | None,
    client_secret: str | None,
    client_secrets_file: str | None,
    client_secret_gcp_secret: str | None,
    store: str | None,
    port: int,
    timeout: float,
    no_browser: bool,
    profile: str | None,
) -> None:
    """Sign in with Google in a browser and store the grant for --audience (file store by default).

    Uses OAuth 2.0 for installed apps (PKCE, loopback redirect on 127.0.0.1) with a Desktop OAuth client
    in the IAP app's project. Afterwards `flyte-iap token --audience ...` prints ID tokens without a
    browser.
    """
    from flyte_iap.user_tokens import login_user

    audience, client_id, client_secrets_file, client_secret_gcp_secret, store = _sign_in_settings(
        profile, endpoint, audience, client_id, client_secrets_file, client_secret_gcp_secret, store
    )
    store = store or "file"
    with token_cache() as cache:
        result = login_user(
            audience,
            client_id=client_id,
            client_secret=client_secret,
            client_secrets_file=client_secrets_file,
            client_secret_gcp_secret=client_secret_gcp_secret,
            store=store,
            port=port,
            timeout=timeout,
            open_browser=not no_browser,
            notify=_notify,
            cache=cache,
        )
    who = printable(result.email) if result.email else "your Google account"
    click.echo(f"Signed in as {who} for audience {audience} (refresh token in the {store} store).", err=True)
    command = (
        f"[flyte-iap, token, --profile, {profile}]"
        if profile
        else f"[flyte-iap, token, --audience, {audience}]"
    )
    click.echo(f"Set admin.proxyCommand to: {command}", err=True)
    # The flyte SDK 2.x cannot use proxyCommand (flyte 2.12.1: see docs/flyte2/client.md).
    click.echo("Flyte 2 (flyte SDK): write its config with `flyte-iap config --sdk flyte2`.", err=True)


@cli.command("token", short_help="Print the user's ID token for IAP.")
@_user_login_options(store_default=None)
@min_valid_option("Refresh when the cached token has fewer seconds left than this.")
@format_option
@profile_option
def token_command(
    audience: str | None,
    endpoint: str | None,
    client_id: str | None,
    client_secret: str | None,
    client_secrets_file: str | None,
    client_secret_gcp_secret: str | None,
    store: str | None,
    port: int,
    timeout: float,
    no_browser: bool,
    min_valid: float,
    output_format: str,
    profile: str | None,
) -> None:
    """Print the user's Google ID token for --audience on stdout, for admin.proxyCommand.

    A cached token is printed without any network call; otherwise the stored refresh token is used.
    Without a usable sign-in it runs the browser login when stdin and stderr are terminals, and fails at
    once (exit 1, with the login command to run) when they are not, as under flytekit. It ends within
    60 s (FLYTE_IAP_COMMAND_DEADLINE), the time spent signing in in a browser excepted.
    """
    from flyte_iap.user_tokens import get_user_id_token

    audience, client_id, client_secrets_file, client_secret_gcp_secret, store = _sign_in_settings(
        profile, endpoint, audience, client_id, client_secrets_file, client_secret_gcp_secret, store
    )
    with token_cache(deadline=True) as cache:
        token = get_user_id_token(
            audience,
            client_id=client_id,
            client_secret=client_secret,
            client_secrets_file=client_secrets_file,
            client_secret_gcp_secret=client_secret_gcp_secret,
            store=store,
            min_valid=min_valid,
            port=port,
            timeout=timeout,
            open_browser=not no_browser,
            notify=_notify,
            cache=cache,
        )
    emit_token(token, output_format)


@cli.command("logout", short_help="Forget (and --revoke) a sign-in.")
@option("--audience", metavar="CLIENT_ID", help=AUDIENCE_HELP + " Required unless --profile gives it.")
@option("--client-id", metavar="CLIENT_ID", help="Only this Desktop client's sign-in [default: all].")
@option("--revoke", is_flag=True, help="Also revoke the refresh token at Google.")
@profile_option
def logout_command(audience: str | None, client_id: str | None, revoke: bool, profile: str | None) -> None:
    """Forget the stored sign-in for --audience (ID token, refresh token, client secret)."""
    from flyte_iap.user_tokens import logout_user

    o = with_profile(profile, audience=audience, client_id=client_id)
    audience = o["audience"] or (o["client_id"] if profile else None)
    if not audience:
        raise click.UsageError("Missing option '--audience' (or a --profile that sets it).")

    with token_cache() as cache:
        forgotten = logout_user(audience, client_id=client_id, revoke=revoke, cache=cache)
    if not forgotten:
        click.echo(f"Nothing was stored for audience {audience}.", err=True)
    for login in forgotten:
        who = printable(login.email or f"client {login.client_id}")
        done = "signed out and revoked" if revoke else "signed out"
        click.echo(f"{who}: {done} for audience {audience}.", err=True)


@cli.command("generate-user-id-token", short_help="The old plugin's name for `token`.")
@option("--desktop_client_id", required=True, help="Desktop OAuth client ID.")
@option(
    "--desktop_client_secret_gcp_secret_name",
    required=True,
    help="Name of the Secret Manager secret holding the Desktop client's secret.",
)
@option("--webapp_client_id", required=True, help=AUDIENCE_HELP)
@option("--project", required=True, help="Project of the Secret Manager secret.")
def generate_user_id_token_command(
    desktop_client_id: str,
    desktop_client_secret_gcp_secret_name: str,
    webapp_client_id: str,
    project: str,
) -> None:
    """The old plugin's command, kept so existing proxyCommand configs work: same as `token`.

    The secret is read from Secret Manager only when no sign-in is stored yet, then kept with it.
    """
    from flyte_iap.user_tokens import get_user_id_token

    name = desktop_client_secret_gcp_secret_name.strip().strip("/")
    if not name.startswith("projects/"):
        name = f"projects/{project}/secrets/{name}"
    with token_cache(deadline=True) as cache:
        token = get_user_id_token(
            webapp_client_id,
            client_id=desktop_client_id,
            client_secret_gcp_secret=name,
            notify=_notify,
            cache=cache,
        )
    emit_token(token)


# -- service-account ID tokens: sa-token / generate-service-account-id-token (flyte_iap.service_account) --


def _print_sa_token(
    audience: str, impersonate: str | None, key_file: str | None, min_valid: float, fmt: str = "token"
) -> None:
    from flyte_iap.service_account import get_service_account_id_token

    with token_cache(deadline=True) as cache:
        token = get_service_account_id_token(
            audience,
            impersonate_service_account=impersonate,
            key_file=key_file,
            min_valid=min_valid,
            cache=cache,
        )
    emit_token(token, fmt)


_IMPERSONATE_HELP = (
    "Mint the token for this service account through iamcredentials generateIdToken, using the "
    "credentials found (needs roles/iam.serviceAccountOpenIdTokenCreator on it). Required with user "
    "credentials."
)
_KEY_FILE_HELP = "A service-account key JSON, used instead of looking for credentials."


@cli.command("sa-token", short_help="Print a service account's ID token.")
@option("--audience", metavar="CLIENT_ID", help=AUDIENCE_HELP + " Required unless --profile gives it.")
@option(
    "--impersonate-service-account",
    metavar="SA_EMAIL",
    help="Mint the token for this service account through iamcredentials generateIdToken, using the "
    "credentials found (needs roles/iam.serviceAccountOpenIdTokenCreator on it). Required with user "
    "credentials.",
)
@option(
    "--key-file",
    metavar="FILE",
    type=click.Path(dir_okay=False),
    help="A service-account key JSON, used instead of looking for credentials.",
)
@min_valid_option("Mint a new token when the cached one has fewer seconds left than this.")
@format_option
@profile_option
def sa_token_command(
    audience: str | None,
    impersonate_service_account: str | None,
    key_file: str | None,
    min_valid: float,
    output_format: str,
    profile: str | None,
) -> None:
    """Print a service account's Google ID token for --audience on stdout: for CI and workloads.

    Credentials, first found wins: --key-file; the file in GOOGLE_APPLICATION_CREDENTIALS or gcloud's
    application default credentials (service account key, impersonated service account, Workload
    Identity Federation, or a user login with --impersonate-service-account); the metadata server
    (GCE, GKE Workload Identity, Cloud Run). A cached token is printed without any network call.
    It ends within 60 s (FLYTE_IAP_COMMAND_DEADLINE).
    For an app that uses the Google-managed OAuth client, use `flyte-iap sa-jwt` instead.
    """
    o = with_profile(
        profile, audience=audience, impersonate_service_account=impersonate_service_account, key_file=key_file
    )
    if not o["audience"]:
        raise click.UsageError("Missing option '--audience' (or a --profile that sets it).")
    _print_sa_token(o["audience"], o["impersonate_service_account"], o["key_file"], min_valid, output_format)


@cli.command("sa-jwt", short_help="Print a service account's signed JWT (no OAuth client needed).")
@option(
    "--url",
    metavar="URL",
    help="The IAP app's URL, https://flyte.example.com: the JWT's audience is `URL/*` (every path); a "
    "URL with a path, or ending in `*`, is used as it is. Required unless --profile gives an endpoint.",
)
@option(
    "--impersonate-service-account",
    metavar="SA_EMAIL",
    help="Sign for this service account through iamcredentials signJwt, using the credentials found (needs "
    "roles/iam.serviceAccountTokenCreator on it). Required with user credentials.",
)
@option(
    "--key-file", metavar="FILE", type=click.Path(dir_okay=False), help=_KEY_FILE_HELP + " Signs locally."
)
@min_valid_option("Sign a new JWT when the cached one has fewer seconds left than this (JWTs live 3600 s).")
@format_option
@profile_option
def sa_jwt_command(
    url: str | None,
    impersonate_service_account: str | None,
    key_file: str | None,
    min_valid: float,
    output_format: str,
    profile: str | None,
) -> None:
    """Print a service-account signed JWT for the IAP app at --url on stdout: for CI and workloads.

    IAP accepts it whatever OAuth client the app uses, including the Google-managed one, which gives ID
    tokens no programmatic access. Claims: iss = sub = the service account, aud = `URL/*`, a lifetime of one
    hour. Credentials are found as for `sa-token`; a key file signs locally, anything else calls IAM
    Credentials signJwt. A cached JWT is printed without any network call.
    """
    from flyte_iap.signed_jwt import get_service_account_jwt

    o = with_profile(
        profile, url=url, impersonate_service_account=impersonate_service_account, key_file=key_file
    )
    if not o["url"]:
        raise click.UsageError("Missing option '--url' (or a --profile that sets an endpoint).")
    with token_cache(deadline=True) as cache:
        token = get_service_account_jwt(
            o["url"],
            impersonate_service_account=o["impersonate_service_account"],
            key_file=o["key_file"],
            min_valid=min_valid,
            cache=cache,
        )
    emit_token(token, output_format)


@cli.command("generate-service-account-id-token", short_help="The old plugin's name for `sa-token`.")
@option("--webapp_client_id", required=True, help=AUDIENCE_HELP)
@option(
    "--service_account_key",
    type=click.Path(exists=True, dir_okay=False),
    help="A service-account key JSON [default: application default credentials or the metadata server].",
)
def generate_service_account_id_token_command(webapp_client_id: str, service_account_key: str | None) -> None:
    """The old plugin's command, kept so existing proxyCommand configs work: same as `sa-token`."""
    if service_account_key:
        # As the plugin did: the file becomes GOOGLE_APPLICATION_CREDENTIALS, so an
        # impersonated_service_account file works too, not only a key (flyte_iap._entry does the same).
        os.environ["GOOGLE_APPLICATION_CREDENTIALS"] = service_account_key
    _print_sa_token(webapp_client_id, None, None, DEFAULT_MIN_VALID)
