"""Deployment commands: config (client config files), doctor (a live deployment), check (manifests)."""

from __future__ import annotations

import gc
import sys
from typing import TYPE_CHECKING, Any

import click
from click.core import ParameterSource

from flyte_iap.cli import cli
from flyte_iap.cli._common import (
    AUDIENCE_HELP,
    Seconds,
    echo_warnings,
    option,
)

if TYPE_CHECKING:
    from flyte_iap.client_config import LoadedConfig

# -- client configuration: config (flyte_iap.client_config) -----------------------------------------


@cli.command("config", short_help="Print or write ~/.flyte/config.yaml.")
@option(
    "--endpoint", metavar="URL", help="flyteadmin behind IAP: https://flyte.example.com [or the profile's]."
)
@option(
    "--audience",
    metavar="CLIENT_ID",
    help=AUDIENCE_HELP + " [default: found from IAP's sign-in redirect at --endpoint, or the profile's].",
)
@option(
    "--profile",
    metavar="NAME",
    help="Write a config whose proxy command calls this profile (`flyte-iap token --profile NAME`).",
)
@option("--service-account-jwt", is_flag=True, help="Service-account JWT mode: `flyte-iap sa-jwt`.")
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
@option(
    "--sdk",
    type=click.Choice(["flytekit", "flyte2"]),
    default="flytekit",
    show_default=True,
    help="flytekit/flytectl (Flyte 1: admin.proxyCommand) or the flyte SDK 2.x (Flyte 2: authType "
    "ExternalCommand with admin.command).",
)
@click.option("--project", metavar="NAME", help="With --sdk flyte2: the default project (task.project).")
@click.option("--domain", metavar="NAME", help="With --sdk flyte2: the default domain (task.domain).")
def config_command(
    endpoint: str | None,
    audience: str | None,
    profile: str | None,
    service_account_jwt: bool,
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
    sdk: str,
    project: str | None,
    domain: str | None,
) -> None:
    """Print a Flyte client config (~/.flyte/config.yaml) for flytekit and flytectl behind IAP.

    With --sdk flyte2, the config for the flyte SDK 2.x (Flyte 2) instead.
    """
    from flyte_iap import client_config

    mode = "service-account" if service_account or impersonate_service_account else "user"
    if service_account_jwt:
        mode = "service-account-jwt"
    if profile:
        from flyte_iap.profiles import get_profile

        values = get_profile(profile)
        endpoint = endpoint or values.get("endpoint")
        audience = audience or values.get("audience")
        if not (service_account or impersonate_service_account or service_account_jwt):
            mode = values.get("mode", "user")
    if not endpoint:
        raise click.UsageError("Missing option '--endpoint' (or a --profile that sets it).")
    if mode == "user" and not audience and not profile:
        from flyte_iap.discovery import choose_audience, discover_client_id

        audience = choose_audience(discover_client_id(endpoint), client_id)[0]
    settings = client_config.ClientConfig(
        endpoint=endpoint,
        audience=audience or "",
        mode=mode,
        profile=profile,
        client_id=None if profile else client_id,
        impersonate_service_account=impersonate_service_account,
        admin_auth=admin_auth,
        admin_client_id=admin_client_id,
        admin_client_secret_location=admin_client_secret_location,
        admin_client_secret_env_var=admin_client_secret_env_var,
        insecure=insecure,
        ca_cert_file=ca_cert,
        command=client_config.installed_command() if absolute_command else "flyte-iap",
        sdk=sdk,
        project=project,
        domain=domain,
    )
    text = client_config.render(settings)
    echo_warnings(client_config.audience_warnings(audience or ""))
    if output is None:
        click.echo(text, nl=False)
        return
    path = client_config.write(text, output, force=force)
    click.echo(f"wrote {path}", err=True)


# -- deployment checks: doctor (flyte_iap.doctor) ----------------------------------------------------


@cli.command("doctor", short_help="Check a live deployment behind IAP.")
@option(
    "--endpoint",
    metavar="URL",
    help="flyteadmin behind IAP: https://flyte.example.com [default: admin.endpoint of the client config].",
)
@option(
    "--audience",
    metavar="CLIENT_ID",
    help=AUDIENCE_HELP + " [default: --audience of the client config's proxyCommand]",
)
@option(
    "--config",
    "config_file",
    metavar="FILE",
    type=click.Path(dir_okay=False),
    help="The Flyte client config to take missing settings from [default: the one flytekit uses: "
    "$FLYTECTL_CONFIG, else ~/.flyte/config.yaml].",
)
@option("--client-id", metavar="CLIENT_ID", help="User mode: the Desktop OAuth client of the stored sign-in.")
@option("--service-account", is_flag=True, help="Mint a service account's token instead of the user's.")
@option(
    "--service-account-jwt",
    is_flag=True,
    help="Mint a service account's signed JWT (`flyte-iap sa-jwt`; for apps on the Google-managed "
    "OAuth client): its audience is the endpoint's URL, so no --audience.",
)
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
    type=Seconds(min=0.1),
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
@option(
    "--sdk",
    type=click.Choice(["flytekit", "flyte2"]),
    default="flytekit",
    show_default=True,
    help="flytekit: Flyte 1 (HTTP and gRPC checks); flyte2: the flyte SDK 2.x (its config file and a "
    "Connect call).",
)
def doctor_command(
    endpoint: str | None,
    audience: str | None,
    config_file: str | None,
    client_id: str | None,
    service_account: bool,
    service_account_jwt: bool,
    impersonate_service_account: str | None,
    key_file: str | None,
    ca_cert: str | None,
    timeout: float,
    output_format: str,
    sdk: str,
) -> None:
    """Check a deployment behind IAP from here: DNS, TLS, IAP, the token, HTTP and gRPC through IAP.

    Settings not given as options come from the Flyte client config (--config, else the file flytekit
    would use): the endpoint, the proxy command's --audience, its token mode and --client-id, and the
    CA file. Prints one line per check (PASS, FAIL or SKIP) and, for a failure, how to fix it. Exits 0
    only when every check passed.

    With --sdk flyte2 the checks are those of the flyte SDK 2.x: its config file (--config, else the
    one the SDK would read) is checked, its admin.command mints the token, and a Connect call goes
    through IAP; the endpoint and audience default to that file's admin.endpoint and --audience.
    """
    import json

    from flyte_iap import client_config
    from flyte_iap.doctor import FAIL, PASS, run_checks
    from flyte_iap.errors import ConfigurationError

    jwt_url = None
    # FLYTE_IAP_AUDIENCE may be set for other commands; a signed JWT has no use for it
    audience_from_env = (
        click.get_current_context().get_parameter_source("audience") is ParameterSource.ENVIRONMENT
    )
    if service_account_jwt and audience is not None:
        if not audience_from_env:
            raise ConfigurationError(
                "--audience does not apply to --service-account-jwt",
                "a service account's signed JWT names the endpoint's URL (https://HOST/*): drop --audience",
            )
        echo_warnings(["FLYTE_IAP_AUDIENCE is not used with --service-account-jwt"])
        audience = None
    if service_account_jwt and client_id:
        raise ConfigurationError(
            "--client-id (a Desktop OAuth client) is for user mode",
            "a service account's signed JWT needs no OAuth client: drop --client-id",
        )
    if sdk == "flyte2" and service_account_jwt:
        raise ConfigurationError(
            "--service-account-jwt is not checked with --sdk flyte2",
            "check the signed JWT with --sdk flytekit (the HTTP checks through IAP are the same)",
        )
    if sdk == "flyte2":
        report = _doctor_flyte2(
            endpoint,
            audience,
            flyte_config=config_file,
            service_account=service_account,
            impersonate_service_account=impersonate_service_account,
            key_file=key_file,
            client_id=client_id,
            ca_cert=ca_cert,
            timeout=timeout,
        )
    else:
        if (
            audience is None
            and not service_account_jwt
            and endpoint
            and config_file is None
            and client_config.default_config_path() is None
        ):
            # no client config to read: IAP's own sign-in redirect names the app's client
            from flyte_iap.discovery import choose_audience, discover_client_id

            discovered = discover_client_id(endpoint, timeout=timeout, ca_cert=ca_cert)
            audience, how = choose_audience(discovered, client_id)
            click.echo(f"audience {audience} ({how}), from IAP's sign-in redirect", err=True)
        if endpoint is None or (audience is None and not service_account_jwt):
            loaded = _doctor_config(config_file)
            endpoint = endpoint or loaded.endpoint
            if loaded.mode and loaded.profile and (audience is None or audience_from_env):
                raise ConfigurationError(
                    f"{loaded.path}: the proxy command takes its settings from profile {loaded.profile!r}, "
                    "which doctor does not read",
                    "pass them as options: flyte-iap doctor --endpoint URL with --audience, or with "
                    "--service-account-jwt (and --key-file or --impersonate-service-account, as in it)",
                )
            if loaded.mode == "service-account-jwt" and (audience is None or audience_from_env):
                # the proxy command is `flyte-iap sa-jwt --url URL`: its JWT names that URL
                if audience is not None:
                    echo_warnings(
                        [f"FLYTE_IAP_AUDIENCE is not used: {loaded.path}'s proxy command is sa-jwt"]
                    )
                    audience = None
                service_account_jwt = True
                jwt_url = _sa_jwt_url(loaded)
                impersonate_service_account = (
                    impersonate_service_account or loaded.impersonate_service_account
                )
                key_file = key_file or loaded.key_file
            elif audience is None and not service_account_jwt:
                audience = loaded.audience
                # the token mode travels with the audience: both describe the same proxy command
                client_id = client_id or loaded.client_id
                service_account = service_account or loaded.mode == "service-account"
                impersonate_service_account = (
                    impersonate_service_account or loaded.impersonate_service_account
                )
                key_file = key_file or loaded.key_file
            ca_cert = ca_cert or loaded.ca_cert_file
            if audience is None and not service_account_jwt:
                raise ConfigurationError(
                    f"{loaded.path} has no flyte-iap proxy command to take the audience from",
                    "pass --audience, the IAP OAuth client ID (or write the file with flyte-iap config)",
                )
            named = (
                f"the signed JWT's URL {jwt_url or endpoint}"
                if service_account_jwt
                else f"audience {audience}"
            )
            click.echo(f"settings from {loaded.path}: endpoint {endpoint}, {named}", err=True)
        if audience is not None:
            echo_warnings(client_config.audience_warnings(audience))
        report = run_checks(
            endpoint,
            audience,
            service_account=service_account,
            service_account_jwt=service_account_jwt,
            jwt_url=jwt_url,
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


def _sa_jwt_url(loaded: LoadedConfig) -> str:
    """The ``--url`` a config's ``flyte-iap sa-jwt`` proxy command signs for (else ``FLYTE_IAP_URL``,
    as that command reads it).

    Raises:
        ConfigurationError: neither is set, or it is not the URL of an app: the command itself fails.
    """
    import os

    from flyte_iap.errors import ConfigurationError
    from flyte_iap.signed_jwt import jwt_audience

    fix = "write it with flyte-iap config --service-account-jwt --endpoint URL"
    url = loaded.url or os.environ.get("FLYTE_IAP_URL") or None
    if url is None:
        raise ConfigurationError(f"{loaded.path}: the proxy command `flyte-iap sa-jwt` has no --url", fix)
    try:
        jwt_audience(url)
    except ConfigurationError:
        raise ConfigurationError(
            f"{loaded.path}: the proxy command's --url {url!r} is not the URL of an app", fix
        ) from None
    return url


def _doctor_config(config_file: str | None) -> LoadedConfig:
    """The client config doctor takes missing settings from: --config, else flytekit's choice."""
    from flyte_iap import client_config
    from flyte_iap.errors import ConfigurationError

    path = config_file or client_config.default_config_path()
    if path is None:
        raise ConfigurationError(
            "no --endpoint and --audience, and no Flyte client config to read them from",
            "pass --endpoint and --audience, or --config FILE (flyte-iap config writes one; flytekit "
            "reads $FLYTECTL_CONFIG, else ~/.flyte/config.yaml)",
        )
    return client_config.read_config(path)


def _doctor_flyte2(
    endpoint: str | None, audience: str | None, *, flyte_config: str | None, **token: Any
) -> Any:
    """doctor --sdk flyte2: the config file the SDK would read (or --config) mints the token."""
    import flyte_iap
    from flyte_iap.doctor_flyte2 import find_flyte_config, run_flyte2_checks, settings_from_config
    from flyte_iap.errors import ConfigurationError

    if flyte_config is None:
        found = find_flyte_config()
        flyte_config = str(found) if found else None
    if (endpoint is None or audience is None) and flyte_config is not None:
        from_file = settings_from_config(flyte_config)
        endpoint = endpoint or from_file[0]
        audience = audience or from_file[1]
        click.echo(f"settings from {flyte_config}: endpoint {endpoint}, audience {audience}", err=True)
    if endpoint is None or audience is None:
        raise ConfigurationError(
            "no --endpoint and --audience, and no flyte SDK config to read them from",
            "pass --endpoint and --audience, or --config FILE (flyte-iap config --sdk flyte2 writes one)",
        )
    provider = None
    sa = token["service_account"] or token["impersonate_service_account"] or token["key_file"]
    if flyte_config is not None and (sa or token["client_id"]):
        echo_warnings(
            [
                f"the token comes from admin.command in {flyte_config}, as the flyte SDK gets it; "
                "--service-account, --impersonate-service-account, --key-file and --client-id are not used"
            ]
        )
    if flyte_config is None:

        def provider() -> str:
            if sa:
                return flyte_iap.get_service_account_id_token(
                    audience,
                    impersonate_service_account=token["impersonate_service_account"],
                    key_file=token["key_file"],
                )
            return flyte_iap.get_user_id_token(audience, client_id=token["client_id"], interactive=False)

    return run_flyte2_checks(
        endpoint,
        audience,
        flyte_config=flyte_config,
        ca_cert=token["ca_cert"],
        timeout=token["timeout"],
        token_provider=provider,
    )


# -- manifest checks: check (flyte_iap.manifest_check) -----------------------------------------------


@cli.command("check", short_help="Lint Kubernetes manifests for IAP.")
@click.argument("paths", nargs=-1, metavar="[FILE|DIR|-]...")
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="text: one block per finding, summary on stderr; json: a machine-readable report on stdout "
    "(an error document when the input cannot be checked).",
)
@option(
    "--partial",
    is_flag=True,
    help="The input is knowingly incomplete: do not report references to objects outside it.",
)
@option(
    "--strict",
    is_flag=True,
    help="A reference to an object that is not in the input is an error, not a warning.",
)
@option(
    "--per-dir",
    is_flag=True,
    help="Check the files of each directory as a deployment of its own (for a tree of alternatives).",
)
@option("--ignore", metavar="RULE", multiple=True, help="Skip a rule (repeatable, or comma-separated IDs).")
@click.option("--list-rules", is_flag=True, help="List the rules and exit.")
def check_command(
    paths: tuple[str, ...],
    output_format: str,
    partial: bool,
    strict: bool,
    per_dir: bool,
    ignore: tuple[str, ...],
    list_rules: bool,
) -> None:
    """Check Kubernetes manifests for the mistakes that defeat IAP on GKE.

    Reads multi-document YAML from files, directories (*.yaml, *.yml) and - (stdin), all checked
    together as one deployment, e.g. `helm template flyte flyteorg/flyte-binary -f values.yaml |
    flyte-iap check - gke/` (with --per-dir, each directory apart). In a directory only regular files
    are read (a FIFO or device named *.yaml is skipped with a warning); a file is read up to 64 MiB.
    Kinds it does not know are ignored. An object can switch rules off with the annotation
    `flyte-iap/ignore: IAP002,IAP032`.

    Exit status: 0 no errors (warnings allowed), 1 errors found, 2 input that cannot be checked
    (unreadable, invalid YAML, no Kubernetes object at all).
    """
    from flyte_iap import manifest_check
    from flyte_iap.errors import FlyteIapError

    if list_rules:
        for rule_id, rule in sorted(manifest_check.RULES.items()):
            click.echo(f"{rule_id}  {rule.severity:<7}  {rule.title}")
        return
    if not paths:
        raise click.UsageError("give manifest files, directories, or - for standard input")
    skipped: list[str] = []
    # A large rendering makes millions of small objects and no reference cycles worth collecting:
    # the cyclic collector would rescan them again and again (a third of the time at 100k objects).
    gc.disable()
    try:
        manifests, files = manifest_check.load_paths(
            paths, on_skip=lambda path, why: skipped.append(f"skipped {path}: {why}")
        )
        echo_warnings([manifest_check.printable(w) for w in skipped])
        shown = ", ".join(manifest_check.printable(p) for p in paths)
        if not files:
            raise manifest_check.ManifestError(
                f"no manifest files (*.yaml, *.yml) in {shown}",
                "give the files or directories that hold the manifests, or - for standard input",
            )
        if not manifests:
            raise manifest_check.ManifestError(
                f"no Kubernetes objects (documents with kind and apiVersion) in {shown}",
                "check rendered manifests: helm template ... | flyte-iap check -",
            )
        skip = [part for value in ignore for part in value.split(",")]
        findings = []
        for group in manifest_check.deployments(manifests, per_dir=per_dir):
            findings += manifest_check.check_manifests(group, partial=partial, ignore=skip, strict=strict)
    except FlyteIapError as exc:
        if output_format == "json":
            click.echo(manifest_check.format_json_error(exc.message, exc.hint), nl=False)
        raise
    finally:
        gc.enable()
    if output_format == "json":
        click.echo(manifest_check.format_json(findings, files=files, objects=len(manifests)), nl=False)
    else:
        if findings:
            click.echo(manifest_check.format_text(findings), nl=False)
        click.echo(manifest_check.summary_line(findings, files=files, objects=len(manifests)), err=True)
    if any(f.severity == manifest_check.ERROR for f in findings):
        sys.exit(1)
