"""`flyte-iap status`: what is stored, per identity, like `gh auth status` (flyte_iap.status)."""

from __future__ import annotations

import sys

import click

from flyte_iap.cli import cli
from flyte_iap.cli._common import option, token_cache


@cli.command("status", short_help="Show the stored identities, their audiences and expiry.")
@option("--audience", metavar="AUDIENCE", help="Only identities for this audience (client ID or JWT URL).")
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help='Text for people, or JSON ({"identities": [...]}) for scripts.',
)
def status_command(audience: str | None, output_format: str) -> None:
    """Show each stored identity: kind, account, audience, store, client ID, token expiry and time left,
    where the client secret came from. Never a token or a secret.

    Exits 1, with the command to sign in, when nothing usable is stored.
    """
    from flyte_iap.status import LOGIN_HINT, render, stored_identities

    with token_cache() as cache:
        identities = stored_identities(cache, audience=audience)
    click.echo(render(identities, output_format))
    if not any(i["usable"] for i in identities):
        where = f" for audience {audience}" if audience else ""
        click.echo(f"error: nothing usable is stored{where}", err=True)
        click.echo(f"hint: {LOGIN_HINT}", err=True)
        sys.exit(1)
