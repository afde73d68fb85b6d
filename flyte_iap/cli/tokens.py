"""Token commands: login, token, logout and sa-token, and the old plugin's names for them."""

from __future__ import annotations

import os

import click

from flyte_iap.cli import cli
from flyte_iap.cli._common import (
    AUDIENCE_HELP,
    Decorator,
    Seconds,
    audience_option,
    emit_token,
    min_valid_option,
    option,
    options,
    token_cache,
)
from flyte_iap.errors import printable
from flyte_iap.idtoken import DEFAULT_MIN_VALID

# -- user ID tokens: login / token / logout / generate-user-id-token (flyte_iap.user_tokens) ----------


def _notify(message: str) -> None:
    click.echo(message, err=True)


def _user_login_options(store_default: str | None) -> Decorator:
    """The options `login` and `token` share: which Desktop client, its secret, the store, the browser."""
    return options(
        audience_option,
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
@_user_login_options(store_default="file")
def login_command(
    audience: str,
    client_id: str | None,
    client_secret: str | None,
    client_secrets_file: str | None,
    client_secret_gcp_secret: str | None,
    store: str,
    port: int,
    timeout: float,
    no_browser: bool,
) -> None:
    """Sign in with Google in a browser and store the grant for --audience.

    Uses OAuth 2.0 for installed apps (PKCE, loopback redirect on 127.0.0.1) with a Desktop OAuth client
    in the IAP app's project. Afterwards `flyte-iap token --audience ...` prints ID tokens without a
    browser.
    """
    from flyte_iap.user_tokens import login_user

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
    click.echo(
        f"Set admin.proxyCommand to: [flyte-iap, token, --audience, {audience}]",
        err=True,
    )


@cli.command("token", short_help="Print the user's ID token for IAP.")
@_user_login_options(store_default=None)
@min_valid_option("Refresh when the cached token has fewer seconds left than this.")
def token_command(
    audience: str,
    client_id: str | None,
    client_secret: str | None,
    client_secrets_file: str | None,
    client_secret_gcp_secret: str | None,
    store: str | None,
    port: int,
    timeout: float,
    no_browser: bool,
    min_valid: float,
) -> None:
    """Print the user's Google ID token for --audience on stdout, for admin.proxyCommand.

    A cached token is printed without any network call; otherwise the stored refresh token is used.
    Without a usable sign-in it runs the browser login when stdin and stderr are terminals, and fails at
    once (exit 1, with the login command to run) when they are not, as under flytekit. It ends within
    60 s (FLYTE_IAP_COMMAND_DEADLINE), the time spent signing in in a browser excepted.
    """
    from flyte_iap.user_tokens import get_user_id_token

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
    emit_token(token)


@cli.command("logout", short_help="Forget (and --revoke) a sign-in.")
@audience_option
@option("--client-id", metavar="CLIENT_ID", help="Only this Desktop client's sign-in [default: all].")
@option("--revoke", is_flag=True, help="Also revoke the refresh token at Google.")
def logout_command(audience: str, client_id: str | None, revoke: bool) -> None:
    """Forget the stored sign-in for --audience (ID token, refresh token, client secret)."""
    from flyte_iap.user_tokens import logout_user

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


def _print_sa_token(audience: str, impersonate: str | None, key_file: str | None, min_valid: float) -> None:
    from flyte_iap.service_account import get_service_account_id_token

    with token_cache(deadline=True) as cache:
        token = get_service_account_id_token(
            audience,
            impersonate_service_account=impersonate,
            key_file=key_file,
            min_valid=min_valid,
            cache=cache,
        )
    emit_token(token)


@cli.command("sa-token", short_help="Print a service account's ID token.")
@audience_option
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
def sa_token_command(
    audience: str, impersonate_service_account: str | None, key_file: str | None, min_valid: float
) -> None:
    """Print a service account's Google ID token for --audience on stdout: for CI and workloads.

    Credentials, first found wins: --key-file; the file in GOOGLE_APPLICATION_CREDENTIALS or gcloud's
    application default credentials (service account key, impersonated service account, Workload
    Identity Federation, or a user login with --impersonate-service-account); the metadata server
    (GCE, GKE Workload Identity, Cloud Run). A cached token is printed without any network call.
    It ends within 60 s (FLYTE_IAP_COMMAND_DEADLINE).
    """
    _print_sa_token(audience, impersonate_service_account, key_file, min_valid)


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
