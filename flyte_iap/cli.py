"""The ``flyte-iap`` command line: a thin layer over the library.

Example::

    $ flyte-iap login --audience 123-web.apps.googleusercontent.com \\
        --client-id 456-desktop.apps.googleusercontent.com \\
        --client-secret-gcp-secret projects/my-proj/secrets/flyte-desktop
    $ flyte-iap token --audience 123-web.apps.googleusercontent.com      # the ID token on stdout

Results go to stdout (for the token commands: the token and a newline, nothing else); messages go to
stderr. A :class:`~flyte_iap.errors.FlyteIapError` becomes ``error: ...`` and ``hint: ...`` on stderr
and its exit code, never a traceback. Options made with :func:`option` can also be set as
``FLYTE_IAP_<OPTION>`` (``--client-id`` is ``FLYTE_IAP_CLIENT_ID``).
"""

from __future__ import annotations

import contextlib
import os
import sys
import traceback
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import click

from flyte_iap import __version__
from flyte_iap.errors import FlyteIapError
from flyte_iap.idtoken import DEFAULT_MIN_VALID

if TYPE_CHECKING:
    from flyte_iap.cache import TokenCache

Decorator = Callable[[Callable[..., Any]], Callable[..., Any]]


def option(*names: str, **kwargs: Any) -> Decorator:
    """``click.option`` whose environment variable is ``FLYTE_IAP_<LONGEST NAME>``.

    Args:
        names: the option's names (``"--client-id"``).
        kwargs: ``click.option``'s keyword arguments; ``envvar`` and ``show_envvar`` may override ours.

    Returns:
        The decorator.
    """
    # A boolean pair "--insecure/--secure" is named after its first half: FLYTE_IAP_INSECURE.
    longest = max((n.split("/")[0] for n in names if n.startswith("--")), key=len)
    kwargs.setdefault("envvar", "FLYTE_IAP_" + longest.lstrip("-").replace("-", "_").upper())
    kwargs.setdefault("show_envvar", True)
    return click.option(*names, **kwargs)


def echo_warnings(warnings: list[str]) -> None:
    """Print library warnings (e.g. skipped cache files) on stderr, once each.

    Args:
        warnings: the messages; the list is emptied.
    """
    for message in dict.fromkeys(warnings):
        click.echo(f"warning: {message}", err=True)
    warnings.clear()


def emit_token(token: str) -> None:
    """Write a token to stdout: the token and a newline, nothing else.

    Args:
        token: what flytekit and flytectl send as ``proxy-authorization: Bearer <token>``.
    """
    sys.stdout.write(token + "\n")
    sys.stdout.flush()


@contextlib.contextmanager
def token_cache() -> Iterator[TokenCache]:
    """A token cache for one command.

    Returns:
        A context manager giving a new :class:`~flyte_iap.cache.TokenCache`, whose warnings are printed
        on stderr when the block ends.
    """
    from flyte_iap.cache import TokenCache

    cache = TokenCache()
    try:
        yield cache
    finally:
        echo_warnings(cache.warnings)


def options(*decorators: Decorator) -> Decorator:
    """Several options as one decorator.

    Args:
        decorators: options (from :func:`option`), listed in ``--help`` in this order.

    Returns:
        The decorator.
    """

    def apply(func: Callable[..., Any]) -> Callable[..., Any]:
        for decorator in reversed(decorators):
            func = decorator(func)
        return func

    return apply


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="flyte-iap")
def cli() -> None:
    """Google ID tokens for Flyte behind Identity-Aware Proxy, and checks for the deployment.

    Use `flyte-iap token` (users) or `flyte-iap sa-token` (CI, workloads) as flytekit's and flytectl's
    `admin.proxyCommand`.
    """


def main(argv: list[str] | None = None) -> None:
    """Run the CLI; turn library errors into one-line messages and exit codes.

    Args:
        argv: the arguments; ``sys.argv[1:]`` by default.
    """
    try:
        cli.main(args=argv, prog_name="flyte-iap", standalone_mode=False)
    except FlyteIapError as exc:
        click.echo(f"error: {exc.message}", err=True)
        click.echo(f"hint: {exc.hint}", err=True)
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        # click turns Ctrl-C (and EOF at a prompt) into Abort.
        click.echo("error: aborted", err=True)
        click.echo(_INTERRUPTED_HINT, err=True)
        sys.exit(130)
    except click.UsageError as exc:
        if type(exc).__name__ == "NoArgsIsHelpError":  # click >= 8.2: no arguments shows the help
            exc.show()
            sys.exit(exc.exit_code)
        # The same two lines as every other failure, instead of click's usage block.
        command = exc.ctx.command_path if exc.ctx is not None else "flyte-iap"
        click.echo(f"error: {exc.format_message()}", err=True)
        click.echo(f"hint: see `{command} --help`", err=True)
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        click.echo("error: interrupted", err=True)
        click.echo(_INTERRUPTED_HINT, err=True)
        sys.exit(130)
    except Exception as exc:
        # A bug. Its message is left out: it may quote a request or a file that holds a secret.
        if os.environ.get("FLYTE_IAP_TRACEBACK") == "1":
            raise
        frame = traceback.extract_tb(exc.__traceback__)[-1]
        where = f"{os.path.basename(frame.filename)}:{frame.lineno}"
        click.echo(f"error: unexpected {type(exc).__name__} at {where} (a bug in flyte-iap)", err=True)
        click.echo(
            "hint: run it again with FLYTE_IAP_TRACEBACK=1 to see the traceback, and report it", err=True
        )
        sys.exit(1)


_INTERRUPTED_HINT = "hint: nothing was stored; run the command again when you are ready"


# -- options several commands share -----------------------------------------------------------------

_AUDIENCE_HELP = "OAuth client ID of the IAP-protected app: the token's audience (aud)."
_audience_option = option("--audience", required=True, metavar="CLIENT_ID", help=_AUDIENCE_HELP)
_endpoint_option = option(
    "--endpoint", required=True, metavar="URL", help="flyteadmin behind IAP: https://flyte.example.com."
)


def _min_valid_option(help_text: str) -> Decorator:
    return option(
        "--min-valid",
        type=click.FloatRange(min=0),
        default=DEFAULT_MIN_VALID,
        show_default=True,
        help=help_text,
    )


# Commands are defined below, one block per area, each a thin wrapper over a library module.


# -- user ID tokens: login / token / logout / generate-user-id-token (flyte_iap.user_tokens) ----------


def _notify(message: str) -> None:
    click.echo(message, err=True)


def _user_login_options(store_default: str | None) -> Decorator:
    """The options `login` and `token` share: which Desktop client, its secret, the store, the browser."""
    return options(
        _audience_option,
        option(
            "--client-id",
            metavar="CLIENT_ID",
            help="Desktop OAuth client ID to sign in with [default: the one stored by login].",
        ),
        option("--client-secret", metavar="SECRET", help="The Desktop client's secret."),
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
            type=click.FloatRange(min=1),
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
    who = result.email or "your Google account"
    click.echo(f"Signed in as {who} for audience {audience} (refresh token in the {store} store).", err=True)
    click.echo(
        f"Set admin.proxyCommand to: [flyte-iap, token, --audience, {audience}]",
        err=True,
    )


@cli.command("token", short_help="Print the user's ID token for IAP.")
@_user_login_options(store_default=None)
@_min_valid_option("Refresh when the cached token has fewer seconds left than this.")
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
    once (exit 1, with the login command to run) when they are not, as under flytekit.
    """
    from flyte_iap.user_tokens import get_user_id_token

    with token_cache() as cache:
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
@_audience_option
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
        who = login.email or f"client {login.client_id}"
        done = "signed out and revoked" if revoke else "signed out"
        click.echo(f"{who}: {done} for audience {audience}.", err=True)


@cli.command("generate-user-id-token", short_help="The old plugin's name for `token`.")
@option("--desktop_client_id", required=True, help="Desktop OAuth client ID.")
@option(
    "--desktop_client_secret_gcp_secret_name",
    required=True,
    help="Name of the Secret Manager secret holding the Desktop client's secret.",
)
@option("--webapp_client_id", required=True, help=_AUDIENCE_HELP)
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
    with token_cache() as cache:
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

    with token_cache() as cache:
        token = get_service_account_id_token(
            audience,
            impersonate_service_account=impersonate,
            key_file=key_file,
            min_valid=min_valid,
            cache=cache,
        )
    emit_token(token)


@cli.command("sa-token", short_help="Print a service account's ID token.")
@_audience_option
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
@_min_valid_option("Mint a new token when the cached one has fewer seconds left than this.")
def sa_token_command(
    audience: str, impersonate_service_account: str | None, key_file: str | None, min_valid: float
) -> None:
    """Print a service account's Google ID token for --audience on stdout: for CI and workloads.

    Credentials, first found wins: --key-file; the file in GOOGLE_APPLICATION_CREDENTIALS or gcloud's
    application default credentials (service account key, impersonated service account, Workload
    Identity Federation, or a user login with --impersonate-service-account); the metadata server
    (GCE, GKE Workload Identity, Cloud Run). A cached token is printed without any network call.
    """
    _print_sa_token(audience, impersonate_service_account, key_file, min_valid)


@cli.command("generate-service-account-id-token", short_help="The old plugin's name for `sa-token`.")
@option("--webapp_client_id", required=True, help=_AUDIENCE_HELP)
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


# -- client configuration: config (flyte_iap.client_config) -----------------------------------------


@cli.command("config", short_help="Print or write ~/.flyte/config.yaml.")
@_endpoint_option
@_audience_option
@option(
    "--client-id",
    metavar="CLIENT_ID",
    help="User mode: the Desktop OAuth client to sign in with (written into the token command).",
)
@option("--service-account", is_flag=True, help="Service-account mode (CI, workloads): `flyte-iap sa-token`.")
@option(
    "--impersonate-service-account",
    metavar="SA_EMAIL",
    help="Service-account mode, minting tokens for this account (implies --service-account).",
)
@option(
    "--admin-auth",
    type=click.Choice(["none", "pkce", "client-secret"]),
    default="none",
    show_default=True,
    help="flyteadmin's own auth: none (authType left out), pkce (people), client-secret (CI).",
)
@option("--admin-client-id", metavar="ID", help="With --admin-auth client-secret: flyteadmin's client.")
@option(
    "--admin-client-secret-location",
    metavar="FILE",
    help="With --admin-auth client-secret: a file holding the client's secret.",
)
@option(
    "--admin-client-secret-env-var",
    metavar="NAME",
    help="Or the environment variable holding it.",
)
@option(
    "--insecure/--secure",
    default=None,
    help="Plaintext connection (local tests only) [default: from the endpoint's scheme, else secure].",
)
@option(
    "--ca-cert",
    metavar="FILE",
    type=click.Path(exists=True, dir_okay=False),
    help="A PEM bundle to trust instead of the system roots (admin.caCertFilePath).",
)
@option(
    "--absolute-command",
    is_flag=True,
    help="Write flyte-iap's absolute path, for IDEs, notebooks and cron jobs whose PATH lacks it.",
)
@click.option(
    "--output",
    "-o",
    metavar="FILE",
    type=click.Path(dir_okay=False),
    help="Write the file (0600, atomically) instead of printing it, e.g. ~/.flyte/config.yaml.",
)
@click.option("--force", is_flag=True, help="With --output: replace an existing file.")
def config_command(
    endpoint: str,
    audience: str,
    client_id: str | None,
    service_account: bool,
    impersonate_service_account: str | None,
    admin_auth: str,
    admin_client_id: str | None,
    admin_client_secret_location: str | None,
    admin_client_secret_env_var: str | None,
    insecure: bool | None,
    ca_cert: str | None,
    absolute_command: bool,
    output: str | None,
    force: bool,
) -> None:
    """Print a Flyte client config (~/.flyte/config.yaml) for flytekit and flytectl behind IAP."""
    from flyte_iap import client_config

    settings = client_config.ClientConfig(
        endpoint=endpoint,
        audience=audience,
        mode="service-account" if service_account or impersonate_service_account else "user",
        client_id=client_id,
        impersonate_service_account=impersonate_service_account,
        admin_auth=admin_auth,
        admin_client_id=admin_client_id,
        admin_client_secret_location=admin_client_secret_location,
        admin_client_secret_env_var=admin_client_secret_env_var,
        insecure=insecure,
        ca_cert_file=ca_cert,
        command=client_config.installed_command() if absolute_command else "flyte-iap",
    )
    text = client_config.render(settings)
    if output is None:
        click.echo(text, nl=False)
        return
    path = client_config.write(text, output, force=force)
    click.echo(f"wrote {path}", err=True)


# -- deployment checks: doctor (flyte_iap.doctor) ----------------------------------------------------


@cli.command("doctor", short_help="Check a live deployment behind IAP.")
@_endpoint_option
@_audience_option
@option("--client-id", metavar="CLIENT_ID", help="User mode: the Desktop OAuth client of the stored sign-in.")
@option("--service-account", is_flag=True, help="Mint a service account's token instead of the user's.")
@option("--impersonate-service-account", metavar="SA_EMAIL", help="Service-account mode, for this account.")
@option(
    "--key-file",
    metavar="FILE",
    type=click.Path(exists=True, dir_okay=False),
    help="Service-account mode, with this key file.",
)
@option(
    "--ca-cert",
    metavar="FILE",
    type=click.Path(exists=True, dir_okay=False),
    help="A PEM bundle to trust instead of the system roots (private CAs, local fakes).",
)
@option(
    "--timeout",
    type=click.FloatRange(min=0.1),
    default=10.0,
    show_default=True,
    envvar="FLYTE_IAP_DOCTOR_TIMEOUT",
    help="Seconds for each network operation.",
)
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="text: one line per check; json: a machine-readable report.",
)
def doctor_command(
    endpoint: str,
    audience: str,
    client_id: str | None,
    service_account: bool,
    impersonate_service_account: str | None,
    key_file: str | None,
    ca_cert: str | None,
    timeout: float,
    output_format: str,
) -> None:
    """Check a deployment behind IAP from here: DNS, TLS, IAP, the token, HTTP and gRPC through IAP.

    Prints one line per check (PASS, FAIL or SKIP) and, for a failure, how to fix it. Exits 0 only when
    every check passed.
    """
    import json

    from flyte_iap.doctor import FAIL, PASS, run_checks

    report = run_checks(
        endpoint,
        audience,
        service_account=service_account,
        impersonate_service_account=impersonate_service_account,
        key_file=key_file,
        client_id=client_id,
        ca_cert=ca_cert,
        timeout=timeout,
    )
    if output_format == "json":
        click.echo(json.dumps(report.as_dict(), indent=2))
    else:
        width = max(len(c.name) for c in report.checks)
        for check in report.checks:
            mark = {PASS: "PASS", FAIL: "FAIL"}.get(check.status, "SKIP")
            click.echo(f"{mark}  {check.name:<{width}}  {check.detail}")
            if check.fix and check.status == FAIL:
                click.echo(f"      {'':<{width}}  fix: {check.fix}")
        passed = sum(c.status == PASS for c in report.checks)
        click.echo(f"{passed}/{len(report.checks)} checks passed", err=True)
    if not report.ok:
        sys.exit(1)


# -- manifest checks: check (flyte_iap.manifest_check) -----------------------------------------------


@cli.command("check", short_help="Lint Kubernetes manifests for IAP.")
@click.argument("paths", nargs=-1, metavar="[FILE|DIR|-]...")
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="text: one block per finding, summary on stderr; json: a machine-readable report on stdout.",
)
@option(
    "--partial",
    is_flag=True,
    help="The input is knowingly incomplete: do not report references to objects outside it.",
)
@option("--ignore", metavar="RULE", multiple=True, help="Skip a rule (repeatable, or comma-separated IDs).")
@click.option("--list-rules", is_flag=True, help="List the rules and exit.")
def check_command(
    paths: tuple[str, ...], output_format: str, partial: bool, ignore: tuple[str, ...], list_rules: bool
) -> None:
    """Check Kubernetes manifests for the mistakes that defeat IAP on GKE.

    Reads multi-document YAML from files, directories (*.yaml, *.yml) and - (stdin), all checked
    together as one deployment, e.g. `helm template flyte flyteorg/flyte-binary -f values.yaml |
    flyte-iap check - gke/`. Kinds it does not know are ignored. An object can switch rules off
    with the annotation `flyte-iap/ignore: IAP002,IAP032`.

    Exit status: 0 no errors (warnings allowed), 1 errors found, 2 unreadable input.
    """
    from flyte_iap import manifest_check

    if list_rules:
        for rule_id, rule in sorted(manifest_check.RULES.items()):
            click.echo(f"{rule_id}  {rule.severity:<7}  {rule.title}")
        return
    if not paths:
        raise click.UsageError("give manifest files, directories, or - for standard input")
    manifests, files = manifest_check.load_paths(paths)
    skip = [part for value in ignore for part in value.split(",")]
    findings = manifest_check.check_manifests(manifests, partial=partial, ignore=skip)
    if not manifests:
        echo_warnings([f"no Kubernetes objects found in {', '.join(paths)}"])
    if output_format == "json":
        click.echo(manifest_check.format_json(findings, files=files, objects=len(manifests)), nl=False)
    else:
        if findings:
            click.echo(manifest_check.format_text(findings), nl=False)
        click.echo(manifest_check.summary_line(findings, files=files, objects=len(manifests)), err=True)
    if any(f.severity == manifest_check.ERROR for f in findings):
        sys.exit(1)
