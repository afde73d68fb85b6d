"""`flyte-iap profile set|list`: named deployments for `--profile` (flyte_iap.profiles)."""

from __future__ import annotations

import json

import click

from flyte_iap.cli import cli
from flyte_iap.cli._common import AUDIENCE_HELP


@cli.group("profile", short_help="Named deployments for --profile.")
def profile_group() -> None:
    """Keep each deployment's endpoint, audience and credentials under a name, in the profiles file
    (`FLYTE_IAP_CONFIG_DIR`, else the platform's config dir: ~/.config/flyte-iap/profiles.toml on Linux).

    Then `flyte-iap token --profile NAME` (or FLYTE_IAP_PROFILE=NAME), and `flyte-iap config --profile NAME`
    for a client config that calls it. The file holds no secret, only where secrets are.
    """


@profile_group.command("set", short_help="Create or update a profile.")
@click.argument("name")
@click.option("--endpoint", metavar="URL", help="The app behind IAP: https://flyte.example.com.")
@click.option("--audience", metavar="CLIENT_ID", help=AUDIENCE_HELP + " [default: found at --endpoint].")
@click.option("--client-id", metavar="CLIENT_ID", help="The Desktop OAuth client people sign in with.")
@click.option("--client-secrets-file", metavar="FILE", help="Its downloaded JSON.")
@click.option(
    "--client-secret-gcp-secret", metavar="projects/P/secrets/S", help="Or its Secret Manager secret."
)
@click.option("--store", type=click.Choice(["file", "keyring"]), help="Where sign-ins keep their grant.")
@click.option(
    "--mode",
    type=click.Choice(["user", "service-account", "service-account-jwt"]),
    help="Which token command the profile is for: token, sa-token or sa-jwt [default: user].",
)
@click.option("--impersonate-service-account", metavar="SA_EMAIL", help="Service-account modes: the account.")
@click.option("--key-file", metavar="FILE", help="Service-account modes: a key file.")
def profile_set_command(name: str, **values: str | None) -> None:
    """Create or update profile NAME; options not given keep their stored value.

    In user mode without --audience, the audience is found once, here, from IAP's sign-in redirect at
    --endpoint (the app's custom OAuth client, or with the Google-managed client the Desktop client's own
    ID), so that token commands never need to ask.
    """
    from flyte_iap.profiles import load_profiles, set_profile

    current = load_profiles().get(name, {})
    merged = {**current, **{k: v for k, v in values.items() if v is not None}}
    if merged.get("mode", "user") == "user" and not merged.get("audience") and merged.get("endpoint"):
        from flyte_iap.discovery import choose_audience, discover_client_id

        audience, how = choose_audience(discover_client_id(merged["endpoint"]), merged.get("client_id"))
        values["audience"] = audience
        note = (
            "the app's OAuth client"
            if how == "custom"
            else "the Desktop client's own ID (Google-managed client)"
        )
        click.echo(f"audience {audience}: {note}, from IAP's sign-in redirect", err=True)
    path = set_profile(name, values)
    click.echo(f"profile {name} saved in {path}", err=True)
    mode = load_profiles(path).get(name, {}).get("mode", "user")
    click.echo(f"use: flyte-iap {_verb(mode)} --profile {name}", err=True)


def _verb(mode: str) -> str:
    return {"user": "token", "service-account": "sa-token", "service-account-jwt": "sa-jwt"}[mode]


@profile_group.command("list", short_help="List the profiles.")
@click.option(
    "--format", "output_format", type=click.Choice(["text", "json"]), default="text", show_default=True
)
def profile_list_command(output_format: str) -> None:
    """Print every profile and its settings (no secrets are stored in the file)."""
    from flyte_iap.profiles import load_profiles, profiles_path

    profiles = load_profiles()
    if output_format == "json":
        click.echo(json.dumps({"path": profiles_path(), "profiles": profiles}, indent=2))
        return
    if not profiles:
        click.echo(f"No profiles in {profiles_path()}.")
        return
    for name in sorted(profiles):
        click.echo(f"{name}:")
        for key, value in profiles[name].items():
            click.echo(f"  {key}: {value}")
